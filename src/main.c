/* main.c: the duckspread command line. Each subcommand parses its own
 * options and has a --help that exits 0. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "decimal.h"
#include "demo.h"
#include "store.h"

#define DS_VERSION "0.1.0"
#define DB_FILE    "duckspread.db"

static const char usage_main[] =
    "usage: duckspread <command> [options]\n"
    "\n"
    "duckspread is a real-time, multi-user planning spreadsheet server: hierarchical\n"
    "numbers that roll up into totals and spread down from them, exactly.\n"
    "\n"
    "commands:\n"
    "  demo      load the demo model 'sales' into a data directory and print totals\n"
    "  version   print the version\n"
    "  help      print this help\n"
    "\n"
    "Run 'duckspread <command> --help' for a command's options.\n";

static const char usage_demo[] =
    "usage: duckspread demo --data DIR [--scale N] [--seed S]\n"
    "\n"
    "Creates DIR if needed, opens DIR/" DB_FILE ", loads the demo model 'sales'\n"
    "(product x customer x time, quantity and net_amount) unless it is there, and\n"
    "prints a few totals.\n"
    "\n"
    "  --data DIR   data directory (required)\n"
    "  --scale N    about how many facts to generate (default 1000000, which\n"
    "               loads in about a second; 10000000 for the large benchmarks)\n"
    "  --seed S     generator seed (default 42)\n"
    "  --help       this help\n";

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0750) == 0 || errno == EEXIST)
        return 0;
    fprintf(stderr, "duckspread: cannot create data directory %s: %s\n", dir, strerror(errno));
    return -1;
}

static int print_total(ds_reader *r, const ds_model *m, const char *label, const char *dim,
                       const char *member, int measure)
{
    ds_cell cell;
    ds_error err;
    for (int k = 0; k < m->ndims; k++)
        cell.m[k] = m->dims[k].root;
    if (dim) {
        int k = model_find_dim(m, dim, strlen(dim));
        if (k < 0 || model_resolve_member(&m->dims[k], member, strlen(member), &cell.m[k], &err))
            return -1;
    }
    ds_i128 v;
    int64_t seq;
    if (store_read_cell(r, m, &cell, measure, &v, &seq, &err)) {
        fprintf(stderr, "duckspread: %s\n", err.message);
        return -1;
    }
    char buf[DEC_BUFSZ];
    dec_format(v, m->measures[measure].scale, buf);
    printf("  %-28s %-10s %20s   (seq %" PRId64 ")\n", label, m->measures[measure].name, buf, seq);
    return 0;
}

static int cmd_demo(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                         {"scale", required_argument, NULL, 'f'},
                                         {"seed", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *data = NULL;
    demo_opts d;
    demo_opts_default(&d);
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'd':
            data = optarg;
            break;
        case 'f':
            d.facts = strtoll(optarg, &end, 10);
            if (!*optarg || *end || d.facts < 1 || d.facts > 100000000) {
                fprintf(stderr, "duckspread demo: --scale takes 1 to 100000000 (facts)\n");
                return 2;
            }
            break;
        case 's':
            d.seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end) {
                fprintf(stderr, "duckspread demo: --seed takes a whole number\n");
                return 2;
            }
            break;
        case 'h':
            fputs(usage_demo, stdout);
            return 0;
        default:
            fputs(usage_demo, stderr);
            return 2;
        }
    }
    if (!data) {
        fputs("duckspread demo: --data DIR is required\n", stderr);
        return 2;
    }
    if (make_dir(data))
        return 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data, DB_FILE);
    ds_store *s;
    ds_error err;
    if (store_open(path, NULL, &s, &err)) {
        fprintf(stderr, "duckspread: %s\n", err.message);
        return 1;
    }
    bool loaded;
    int64_t facts;
    double t0 = ds_now_ms();
    if (demo_load(s, &d, &loaded, &facts, &err)) {
        fprintf(stderr, "duckspread: loading the demo failed: %s\n", err.message);
        store_close(s);
        return 1;
    }
    if (loaded)
        printf("loaded the demo model '%s': %" PRId64 " facts in %.0f ms into %s\n", DEMO_MODEL,
               facts, ds_now_ms() - t0, path);
    else
        printf("the demo model '%s' is already in %s\n", DEMO_MODEL, path);
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    ds_reader *r = store_reader_new(s);
    int rc = 0;
    rc |= print_total(r, m, "all products, all time", NULL, NULL, 0);
    rc |= print_total(r, m, "all products, all time", NULL, NULL, 1);
    rc |= print_total(r, m, "Brand X", "product", "Brand X", 0);
    rc |= print_total(r, m, "Brand X", "product", "Brand X", 1);
    rc |= print_total(r, m, "2025", "time", "2025", 1);
    store_reader_free(r);
    store_model_release(s, m);
    store_close(s);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    ds_tune_malloc();
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("duckspread %s\n", DS_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "demo"))
        return cmd_demo(argc - 1, argv + 1);
    fprintf(stderr, "duckspread: unknown command '%s'\n\n%s", cmd, usage_main);
    return 2;
}
