/* bench_engine: the in-memory engine over the demo (default 1M facts):
 * how long loading takes and how much memory a fact costs, an exact
 * proportional spread of the grand total answered by the engine next to a
 * plain UPDATE ... SET m = m * k of the same rows in DuckDB (same file,
 * same run), single leaf writes per second through engine_submit, and a
 * 1000 x 12 grid from the engine next to DuckDB's GROUP BY. Prints one
 * fixed line per figure:
 *   engine load: facts=.. load_ms=.. bytes_per_fact=.. rss_mb=..
 *   engine spread 1M: engine_ms=.. update_ms=.. ratio=..
 *   engine leaf writes: per_s=.. us_each=..
 *   engine grid 1000x12: engine_ms=.. duckdb_ms=.. ratio=..
 * Usage: bench_engine [FACTS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_lib.h"
#include "decimal.h"
#include "demo.h"
#include "engine.h"
#include "request.h"
#include "store.h"

enum { RUNS = 11 };

static const char *const PROG = "bench_engine";

static void spread_figures(ds_store *s, ds_engine *e, const ds_model *m)
{
    double eng[RUNS], up[RUNS];
    ds_cell root;
    for (int k = 0; k < m->ndims; k++)
        root.m[k] = m->dims[k].root;
    int64_t leaves = 0, seq;
    for (int i = 0; i < RUNS; i++) {
        ds_i128 total;
        ds_error err;
        if (engine_read_cell(e, &root, 0, &total, &seq, &err))
            bench_die(PROG, "read", &err);
        char body[160], amount[DEC_BUFSZ];
        dec_format(i % 2 ? total / 2 : total * 2, 0, amount);
        snprintf(body, sizeof body, "{\"column\":\"quantity\",\"cell\":{},\"value\":%s}", amount);
        ds_arena a = {0};
        req_decoded d = bench_resolve(PROG, m, REQ_CELL, body, &a);
        bench_cmd c;
        double t0 = ds_now_ms();
        bench_submit(PROG, e, &d, 1000000 + i, &c);
        eng[i] = ds_now_ms() - t0;
        leaves = c.res.out.sets[0].leaves_changed;
        engine_result_clear(&c.res);
        ds_arena_free(&a);
        up[i] = bench_update(PROG, s, m, i % 2 == 0);
    }
    double me = bench_median(eng, RUNS), mu = bench_median(up, RUNS);
    printf("engine spread 1M: engine_ms=%.1f update_ms=%.1f ratio=%.2f (leaves=%lld, median of "
           "%d)\n",
           me, mu, me / mu, (long long)leaves, RUNS);
}

static void leaf_figures(ds_engine *e, const ds_model *m)
{
    enum { N = 200000 };
    const ds_dim *p = &m->dims[0], *c = &m->dims[1], *t = &m->dims[2];
    int32_t *pl, *cl, *tl;
    size_t np = model_leaves(p, p->root, &pl), nc = model_leaves(c, c->root, &cl),
           nt = model_leaves(t, t->root, &tl);
    ds_arena a = {0};
    req_decoded *d = xmalloc_array(1000, sizeof *d);
    for (int i = 0; i < 1000; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"column\":\"quantity\",\"cell\":{\"%s\":\"%s\",\"%s\":\"%s\",\"%s\":\"%s\"},"
                 "\"delta\":1}",
                 p->name, p->members[pl[(size_t)i * 7 % np]].key, c->name,
                 c->members[cl[(size_t)i * 13 % nc]].key, t->name,
                 t->members[tl[(size_t)i * 3 % nt]].key);
        d[i] = bench_resolve(PROG, m, REQ_CELL, body, &a);
    }
    bench_cmd cmd;
    double t0 = ds_now_ms();
    for (int i = 0; i < N; i++) {
        bench_submit(PROG, e, &d[i % 1000], 2000000 + i, &cmd);
        engine_result_clear(&cmd.res);
    }
    double ms = ds_now_ms() - t0;
    printf("engine leaf writes: per_s=%.0f us_each=%.2f (delta writes through engine_submit, "
           "decoding included)\n",
           N / (ms / 1000), ms * 1000 / N);
    ds_arena_free(&a);
    free(d);
    free(pl);
    free(cl);
    free(tl);
}

static void grid_figures(ds_store *s, ds_engine *e, const ds_model *m)
{
    const ds_dim *p = &m->dims[0], *t = &m->dims[2];
    int32_t *rows, *cols;
    size_t nr = model_leaves(p, p->root, &rows);
    if (nr > 1000)
        nr = 1000;
    cols = xmalloc_array(12, sizeof *cols);
    size_t nc = 0;
    for (int32_t x = 0; x < t->nmembers && nc < 12; x++)
        if (model_is_leaf(t, x))
            cols[nc++] = x;
    ds_grid_spec g = {.measure = 0,
                      .row_dim = 0,
                      .col_dim = 2,
                      .nrows = nr,
                      .ncols = nc,
                      .rows = rows,
                      .cols = cols};
    for (int k = 0; k < m->ndims; k++)
        g.fixed.m[k] = m->dims[k].root;
    ds_i128 *v = xmalloc_array(nr * nc, sizeof *v);
    double eng[RUNS], db[RUNS];
    ds_reader *r = store_reader_new(s);
    for (int i = 0; i < RUNS; i++) {
        int64_t seq;
        ds_error err;
        double t0 = ds_now_ms();
        if (engine_read_grid(e, &g, v, &seq, &err))
            bench_die(PROG, "grid", &err);
        eng[i] = ds_now_ms() - t0;
        t0 = ds_now_ms();
        if (store_read_grid(r, m, &g, v, &seq, &err))
            bench_die(PROG, "store grid", &err);
        db[i] = ds_now_ms() - t0;
    }
    double me = bench_median(eng, RUNS), md = bench_median(db, RUNS);
    printf("engine grid %zux%zu: engine_ms=%.3f duckdb_ms=%.1f ratio=%.4f\n", nr, nc, me, md,
           me / md);
    store_reader_free(r);
    free(v);
    free(rows);
    free(cols);
}

int main(int argc, char **argv)
{
    int64_t facts = argc > 1 ? atoll(argv[1]) : 1000000;
    ds_tune_malloc();
    char dir[32];
    ds_store *s = bench_demo(PROG, dir, facts);
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    double rss0 = bench_rss_mb(), t0 = ds_now_ms();
    ds_engine *e = bench_engine(PROG, s, NULL);
    double load_ms = ds_now_ms() - t0, rss1 = bench_rss_mb();
    engine_stats st;
    engine_get_stats(e, &st);
    printf("engine load: facts=%llu load_ms=%.0f bytes_per_fact=%.1f cube_mb=%.1f rss_mb=%.0f "
           "(rss grew %.0f MB)\n",
           (unsigned long long)st.facts, load_ms, (double)(st.bytes - st.cube_bytes) / st.facts,
           st.cube_bytes / 1048576.0, rss1, rss1 - rss0);
    fflush(stdout);
    const char *only = getenv("BENCH_ONLY"); /* spread, leaf or grid: one figure */
    if (!only || strcmp(only, "spread") == 0)
        spread_figures(s, e, m);
    fflush(stdout);
    if (!only || strcmp(only, "leaf") == 0)
        leaf_figures(e, m);
    fflush(stdout);
    if (!only || strcmp(only, "grid") == 0)
        grid_figures(s, e, m);
    engine_free(e);
    store_model_release(s, m);
    bench_demo_remove(PROG, s, dir);
    return 0;
}
