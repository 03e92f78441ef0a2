/* engine_fixture.h: what engine, persister and writer tests share: a
 * DuckDB store with the demo, an engine loaded from it, a checksum of the
 * store computed like engine_checksum(), and random request bodies. */
#ifndef DS_ENGINE_FIXTURE_H
#define DS_ENGINE_FIXTURE_H

#include <stdint.h>

#include "engine.h"
#include "request.h"
#include "store.h"

/* A store in a fresh temporary directory (fx_dir) with the demo at `facts`
 * facts: no fast path, nothing truncated, create_cap 3000. */
extern char fx_dir[256];
ds_store *fx_open_demo(int64_t facts, uint64_t seed);
/* Reopens the store of fx_dir (after store_close). */
ds_store *fx_reopen(void);
void fx_remove_dir(void);
/* An engine loaded from the store's demo model (o NULL: defaults). */
ds_engine *fx_engine_from(ds_store *s, const engine_opts *o);
/* model_checksum + model_fact_hash over the stored facts. */
uint64_t fx_store_sum(ds_store *s);

typedef struct fx_rng {
    uint64_t s;
} fx_rng;
uint64_t fx_next(fx_rng *r);
/* A random request body for the model at seq (writes, batches, spreads of
 * every method and form, holds, if_seq, member operations on product). */
void fx_random_body(ds_buf *b, const ds_model *m, fx_rng *r, int64_t seq, req_kind *kind,
                    const char **dim);
/* Resolves a body into *d (arena a); false when it does not resolve. */
bool fx_resolve(const char *body, size_t len, req_kind kind, const ds_model *m, const char *dim,
                ds_arena *a, req_decoded *d);

#endif
