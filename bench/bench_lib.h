/* bench_lib.h: helpers shared by the bench programs (bench/lib.c). */
#ifndef DS_BENCH_LIB_H
#define DS_BENCH_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "request.h"
#include "store.h"

/* The median of v[0..n) (sorts v). */
double bench_median(double *v, int n);
/* The value at fraction p (0..1) of v[0..n) (sorts v). */
double bench_percentile(double *v, size_t n, double p);
/* This process's resident memory in MiB (from /proc/self/statm). */
double bench_rss_mb(void);

/* Prints "<prog>: <what>: <message>" and exits 1. */
void bench_die(const char *prog, const char *what, const ds_error *e);

/* ---- the demo through the engine and the store ------------------------------ */

/* A fresh temporary directory (dir, at least 32 bytes) with the demo at
 * `facts` facts in dir/bench.db (seed 1). */
ds_store *bench_demo(const char *prog, char *dir, int64_t facts);
/* Closes the store and removes its directory. */
void bench_demo_remove(const char *prog, ds_store *s, const char *dir);
/* An engine loaded from the store's demo model (o NULL: defaults). */
ds_engine *bench_engine(const char *prog, ds_store *s, const engine_opts *o);
/* The canonical form of a body of kind (REQ_CELL or REQ_BATCH) against m,
 * in arena a; exits when it does not resolve. */
req_decoded bench_resolve(const char *prog, const ds_model *m, req_kind kind, const char *body,
                          ds_arena *a);
/* One command on its way through the engine into the store. */
typedef struct bench_cmd {
    char rid[32];
    engine_input in;
    engine_result res;
} bench_cmd;
/* Submits d as request "b<n>" of user "bench" (stream time 1000 + n);
 * exits unless it was applied. */
void bench_submit(const char *prog, ds_engine *e, const req_decoded *d, int n, bench_cmd *c);
/* Persists n submitted commands as one group (persist_item_from, then one
 * store_persist: COMMIT included) and clears their results. Returns the
 * milliseconds it took. */
double bench_persist(const char *prog, ds_store *s, bench_cmd *c, size_t n);
/* The baseline: a plain UPDATE f SET m0 = m0 * 2 (up) or * 0.5 of every
 * row of the model's facts on the store's own connection, committed.
 * Returns the milliseconds it took. */
double bench_update(const char *prog, ds_store *s, const ds_model *m, bool up);

#endif
