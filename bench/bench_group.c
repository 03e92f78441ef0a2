/* bench_group: the persister's group commit over the demo model, without
 * HTTP or Redis: groups of N single-leaf delta writes (random leaves), each
 * decided by the engine (engine_submit), then the group persisted in one
 * transaction (store_persist), the way the writer and the persister handle
 * a batch. Prints the median time per group and the edits per second the
 * engine and the store alone can sustain:
 *   group 1M n=256: group_ms=.. apply_ms=.. commit_ms=.. edits_per_s=..
 * (apply_ms: the engine; commit_ms: store_persist, COMMIT included).
 * Usage: bench_group [facts [n [groups]]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_lib.h"
#include "demo.h"
#include "util.h"

static const char *const PROG = "bench_group";

/* n random single-leaf delta writes, resolved (decoding is not timed). */
static req_decoded *make_writes(const ds_model *m, int n, uint64_t *rng, ds_arena *a)
{
    req_decoded *d = xmalloc_array((size_t)n, sizeof *d);
    for (int i = 0; i < n; i++) {
        ds_buf b;
        ds_buf_init(&b, 4096);
        ds_buf_puts(&b, "{\"column\":\"net_amount\",\"cell\":{");
        for (int k = 0; k < m->ndims; k++) {
            const ds_dim *dm = &m->dims[k];
            int32_t x;
            do {
                *rng = ds_mix64(*rng + 1);
                x = (int32_t)(*rng % (uint64_t)dm->nmembers);
            } while (!dm->members[x].alive || !model_is_leaf(dm, x));
            ds_buf_printf(&b, "%s\"%s\":\"%s\"", k ? "," : "", dm->name, dm->members[x].key);
        }
        ds_buf_puts(&b, "},\"delta\":1}");
        d[i] = bench_resolve(PROG, m, REQ_CELL, b.data, a);
        ds_buf_free(&b);
    }
    return d;
}

int main(int argc, char **argv)
{
    int64_t facts = argc > 1 ? atoll(argv[1]) : 1000000;
    int n = argc > 2 ? atoi(argv[2]) : 256;
    int groups = argc > 3 ? atoi(argv[3]) : 41;
    if (facts < 1000 || n < 1 || groups < 3) {
        fprintf(stderr, "usage: bench_group [facts>=1000 [n>=1 [groups>=3]]]\n");
        return 2;
    }
    ds_tune_malloc();
    char dir[32];
    ds_store *s = bench_demo(PROG, dir, facts);
    ds_engine *e = bench_engine(PROG, s, NULL);
    engine_stats st;
    engine_get_stats(e, &st);
    const ds_model *m = engine_model_acquire(e);
    uint64_t rng = 42;
    double *gt = xmalloc_array((size_t)groups, sizeof *gt);
    double *at = xmalloc_array((size_t)groups, sizeof *at);
    double *ct = xmalloc_array((size_t)groups, sizeof *ct);
    bench_cmd *cmds = xcalloc((size_t)n, sizeof *cmds);
    int rid = 0;
    for (int g = -1; g < groups; g++) { /* group -1 warms up */
        ds_arena a = {0};
        req_decoded *d = make_writes(m, n, &rng, &a);
        double t0 = ds_now_ms();
        for (int i = 0; i < n; i++)
            bench_submit(PROG, e, &d[i], rid++, &cmds[i]);
        double t1 = ds_now_ms();
        bench_persist(PROG, s, cmds, (size_t)n);
        double t2 = ds_now_ms();
        if (g >= 0) {
            gt[g] = t2 - t0;
            at[g] = t1 - t0;
            ct[g] = t2 - t1;
        }
        free(d);
        ds_arena_free(&a);
    }
    double mg = bench_median(gt, groups), ma = bench_median(at, groups),
           mc = bench_median(ct, groups);
    printf("group %lldk n=%d: group_ms=%.2f apply_ms=%.2f commit_ms=%.2f edits_per_s=%.0f "
           "(median of %d groups)\n",
           (long long)(st.facts / 1000), n, mg, ma, mc, n * 1000.0 / mg, groups);
    free(cmds);
    free(gt);
    free(at);
    free(ct);
    engine_model_release(e, m);
    engine_free(e);
    bench_demo_remove(PROG, s, dir);
    return 0;
}
