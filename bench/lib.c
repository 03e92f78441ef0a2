/* lib.c: see bench_lib.h. */
#include "bench_lib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo.h"
#include "json.h"
#include "persist.h"
#include "store_internal.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_percentile(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

double bench_rss_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return (double)rss * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

void bench_die(const char *prog, const char *what, const ds_error *e)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, e ? e->message : "failed");
    exit(1);
}

/* ---- the demo through the engine and the store ------------------------------ */

ds_store *bench_demo(const char *prog, char *dir, int64_t facts)
{
    char path[64];
    snprintf(dir, 32, "/tmp/ds-bench-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(path, sizeof path, "%s/bench.db", dir);
    ds_store *s;
    ds_error e;
    if (store_open(path, NULL, &s, &e))
        bench_die(prog, "open", &e);
    demo_opts d = {.seed = 1, .facts = facts};
    bool loaded;
    int64_t n;
    if (demo_load(s, &d, &loaded, &n, &e))
        bench_die(prog, "demo", &e);
    return s;
}

void bench_demo_remove(const char *prog, ds_store *s, const char *dir)
{
    char cmd[64];
    store_close(s);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "%s: could not remove %s\n", prog, dir);
}

static int load_fact(void *ctx, int64_t rowid, const int32_t *members, const int64_t *values,
                     const int64_t *stamps, uint64_t has, ds_error *err)
{
    (void)rowid;
    return engine_load_fact(ctx, members, values, stamps, has, err);
}

ds_engine *bench_engine(const char *prog, ds_store *s, const engine_opts *o)
{
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    ds_engine *e = engine_new(m, store_model_seq(s, DEMO_MODEL), o);
    store_model_release(s, m);
    ds_error err;
    if (store_facts_each(s, DEMO_MODEL, load_fact, e, &err) || engine_load_done(e, &err))
        bench_die(prog, "load", &err);
    return e;
}

req_decoded bench_resolve(const char *prog, const ds_model *m, req_kind kind, const char *body,
                          ds_arena *a)
{
    json_val *root;
    ds_error e;
    req_decoded d;
    if (json_parse(body, strlen(body), NULL, &root, &e) || request_check(root, kind, &e) ||
        request_resolve(root, kind, m, NULL, a, &d, &e))
        bench_die(prog, body, &e);
    json_free(root);
    return d;
}

void bench_submit(const char *prog, ds_engine *e, const req_decoded *d, int n, bench_cmd *c)
{
    snprintf(c->rid, sizeof c->rid, "b%d", n);
    c->in = (engine_input){.cmd = d->canonical,
                           .cmd_len = d->canonical_len,
                           .user = "bench",
                           .rid = c->rid,
                           .hash = d->hash,
                           .ts_ms = 1000 + n};
    ds_error err;
    if (engine_submit(e, &c->in, &c->res, &err))
        bench_die(prog, "submit", &err);
    if (c->res.status != ENGINE_APPLIED)
        bench_die(prog, "submit", &c->res.err);
}

double bench_persist(const char *prog, ds_store *s, bench_cmd *c, size_t n)
{
    double t0 = ds_now_ms();
    persist_item **its = xmalloc_array(n, sizeof *its);
    store_item *items = xmalloc_array(n, sizeof *items);
    for (size_t i = 0; i < n; i++) {
        its[i] = persist_item_from(DEMO_MODEL, &c[i].in, &c[i].res, "{}", 2);
        items[i] = persist_store_item(its[i]);
    }
    ds_error err;
    if (store_persist(s, items, n, &err))
        bench_die(prog, "persist", &err);
    double ms = ds_now_ms() - t0;
    for (size_t i = 0; i < n; i++) {
        persist_item_free(its[i]);
        engine_result_clear(&c[i].res);
    }
    free(its);
    free(items);
    return ms;
}

double bench_update(const char *prog, ds_store *s, const ds_model *m, bool up)
{
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE \"f_%d\" SET \"m0\" = \"m0\" * %s", (int)m->id,
             up ? "2" : "0.5");
    ds_error e;
    double t0 = ds_now_ms();
    if (store__exec(s->con, "BEGIN TRANSACTION", &e) || store__exec(s->con, sql, &e) ||
        store__exec(s->con, "COMMIT", &e))
        bench_die(prog, "update", &e);
    return ds_now_ms() - t0;
}
