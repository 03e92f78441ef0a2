/* bench_spread: an exact proportional spread over 10k, 100k and 1M leaves
 * through the store's write call (file-backed, COMMIT included), next to a
 * plain UPDATE ... SET v = v * k of the same rows in the same file and run.
 * Prints medians and one fixed line per size:
 *   spread 1M: spread_ms=.. update_ms=.. ratio=.. ratio_with_log=..
 * and checks the gates at 1M (ratio <= 3, ratio_with_log <= 5).
 * It reaches into the store's internals (store_internal.h) only to run the
 * plain UPDATE on the same connection and to switch the leaf log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo.h"
#include "store_internal.h"

enum { RUNS = 11 };

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what, const ds_error *e)
{
    fprintf(stderr, "bench_spread: %s: %s\n", what, e->message);
    exit(1);
}

/* One proportional spread of the grand total of quantity: T = 2x or x/2. */
static double spread_once(ds_store *s, const ds_model *m, bool up, int64_t *leaves)
{
    ds_reader *r = store_reader_new(s);
    ds_cell c;
    for (int k = 0; k < m->ndims; k++)
        c.m[k] = m->dims[k].root;
    ds_i128 total;
    int64_t seq;
    ds_error e;
    if (!r) {
        ds_fail(&e, DS_INTERNAL, NULL, "cannot open a database connection");
        die("read", &e);
    }
    if (store_read_cell(r, m, &c, 0, &total, &seq, &e))
        die("read", &e);
    store_reader_free(r);
    ds_write w = {.measure = 0,
                  .cell = c,
                  .method = SPREAD_PROPORTIONAL,
                  .form = SPREAD_SET,
                  .amount = up ? total * 2 : total / 2};
    ds_command cmd = {
        .kind = COMMAND_WRITE, .user = "bench", .if_seq = -1, .nwrites = 1, .writes = &w};
    ds_outcome o;
    double t0 = ds_now_ms();
    if (store_apply(s, DEMO_MODEL, &cmd, &o, &e))
        die("spread", &e);
    double ms = ds_now_ms() - t0;
    *leaves = o.sets[0].leaves_changed;
    outcome_clear(&o);
    return ms;
}

static double update_once(ds_store *s, const ds_model *m, bool up)
{
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE \"f_%d\" SET \"m0\" = \"m0\" * %s", (int)m->id,
             up ? "2" : "0.5");
    ds_error e;
    double t0 = ds_now_ms();
    if (store__exec(s->con, "BEGIN TRANSACTION", &e) || store__exec(s->con, sql, &e) ||
        store__exec(s->con, "COMMIT", &e))
        die("update", &e);
    return ds_now_ms() - t0;
}

static int bench_size(const char *label, int64_t facts, bool gate)
{
    char dir[] = "/tmp/ds-bench-XXXXXX", path[64], cmd[96];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(path, sizeof path, "%s/bench.db", dir);
    ds_store *s;
    ds_error e;
    if (store_open(path, NULL, &s, &e))
        die("open", &e);
    demo_opts d = {.seed = 1, .facts = facts};
    bool loaded;
    int64_t n, leaves = 0;
    if (demo_load(s, &d, &loaded, &n, &e))
        die("demo", &e);
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    double sp[RUNS], spl[RUNS], up[RUNS];
    /* warm up both paths once */
    s->opts.leaf_log = false;
    spread_once(s, m, true, &leaves);
    update_once(s, m, false);
    for (int i = 0; i < RUNS; i++) {
        s->opts.leaf_log = false;
        sp[i] = spread_once(s, m, i % 2 == 0, &leaves);
        up[i] = update_once(s, m, i % 2 != 0);
        s->opts.leaf_log = true;
        spl[i] = spread_once(s, m, i % 2 != 0, &leaves);
        update_once(s, m, i % 2 == 0);
    }
    double ms = median(sp, RUNS), msl = median(spl, RUNS), mu = median(up, RUNS);
    printf("spread %s: spread_ms=%.1f update_ms=%.1f ratio=%.2f ratio_with_log=%.2f "
           "(leaves=%lld, facts=%lld, log_ms=%.1f, median of %d)\n",
           label, ms, mu, ms / mu, msl / mu, (long long)leaves, (long long)n, msl, RUNS);
    fflush(stdout);
    store_model_release(s, m);
    store_close(s);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_spread: could not remove %s\n", dir);
    if (!gate)
        return 0;
    int fail = 0;
    if (ms / mu > 3.0) {
        printf("gate: spread %s ratio %.2f > 3\n", label, ms / mu);
        fail = 1;
    }
    if (msl / mu > 5.0) {
        printf("gate: spread %s ratio_with_log %.2f > 5\n", label, msl / mu);
        fail = 1;
    }
    if (!fail)
        printf("gate: spread %s ok (ratio <= 3, ratio_with_log <= 5)\n", label);
    return fail;
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    ds_tune_malloc(); /* as the server does */
    int fail = 0;
    if (!getenv("DS_BENCH_ONLY_1M")) {
        fail |= bench_size("10k", 10000, false);
        fail |= bench_size("100k", 100000, false);
    }
    if (!quick)
        fail |= bench_size("1M", 1000000, true);
    return fail;
}
