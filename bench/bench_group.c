/* bench_group: the writer's group commit over the demo model, without HTTP
 * or Redis: groups of N single-leaf delta writes (random leaves) applied
 * with store_apply() between store_txn_begin() and store_txn_commit(), the
 * way the writer applies a batch. Prints the median time per group and
 * the edits per second the store alone can sustain:
 *   group 1M n=256: group_ms=.. apply_ms=.. commit_ms=.. edits_per_s=..
 * Usage: bench_group [facts [n [groups]]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "store.h"
#include "util.h"

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
    fprintf(stderr, "bench_group: %s: %s\n", what, e->message);
    exit(1);
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
    char dir[] = "/tmp/ds-bench-XXXXXX", path[64], cmd[96];
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/bench.db", dir);
    ds_store *s;
    ds_error e;
    if (store_open(path, NULL, &s, &e))
        die("open", &e);
    demo_opts d = {.seed = 1, .facts = facts};
    bool loaded;
    int64_t nf;
    if (demo_load(s, &d, &loaded, &nf, &e))
        die("demo", &e);
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    int32_t *leaves[DS_MAX_DIMS];
    size_t nleaves[DS_MAX_DIMS];
    for (int k = 0; k < m->ndims; k++)
        nleaves[k] = model_leaves(&m->dims[k], m->dims[k].root, &leaves[k]);
    uint64_t rng = 42;
    double *gt = xmalloc_array((size_t)groups, sizeof *gt);
    double *at = xmalloc_array((size_t)groups, sizeof *at);
    double *ct = xmalloc_array((size_t)groups, sizeof *ct);
    char rid[32];
    for (int g = -1; g < groups; g++) { /* group -1 warms up (builds the index) */
        double t0 = ds_now_ms();
        if (store_txn_begin(s, &e))
            die("begin", &e);
        for (int i = 0; i < n; i++) {
            ds_write w = {
                .measure = 1, .method = SPREAD_PROPORTIONAL, .form = SPREAD_DELTA, .amount = 100};
            for (int k = 0; k < m->ndims; k++) {
                rng = ds_mix64(rng + 1);
                w.cell.m[k] = leaves[k][rng % nleaves[k]];
            }
            snprintf(rid, sizeof rid, "r%d-%d", g, i);
            ds_command c = {.kind = COMMAND_WRITE,
                            .user = "bench",
                            .request_id = rid,
                            .if_seq = -1,
                            .nwrites = 1,
                            .writes = &w};
            ds_outcome o;
            if (store_apply(s, DEMO_MODEL, &c, &o, &e))
                die("apply", &e);
            outcome_clear(&o);
        }
        double t1 = ds_now_ms();
        if (store_txn_commit(s, &e))
            die("commit", &e);
        double t2 = ds_now_ms();
        if (g >= 0) {
            gt[g] = t2 - t0;
            at[g] = t1 - t0;
            ct[g] = t2 - t1;
        }
    }
    double mg = median(gt, groups), ma = median(at, groups), mc = median(ct, groups);
    printf("group %lldk n=%d: group_ms=%.2f apply_ms=%.2f commit_ms=%.2f edits_per_s=%.0f "
           "(median of %d groups)\n",
           (long long)(nf / 1000), n, mg, ma, mc, n * 1000.0 / mg, groups);
    for (int k = 0; k < m->ndims; k++)
        free(leaves[k]);
    free(gt);
    free(at);
    free(ct);
    store_model_release(s, m);
    store_close(s);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_group: could not remove %s\n", dir);
    return 0;
}
