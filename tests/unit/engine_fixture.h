/* engine_fixture.h: what engine, persister and store tests share: a
 * DuckDB store with the demo, an engine loaded from it, commands applied
 * through the engine and persisted into the file as the writer and the
 * persister do, a checksum of the store computed like engine_checksum(),
 * and random request bodies. */
#ifndef DS_ENGINE_FIXTURE_H
#define DS_ENGINE_FIXTURE_H

#include <stdarg.h>
#include <stdint.h>

#include "engine.h"
#include "request.h"
#include "store.h"

/* A store in a fresh temporary directory (fx_dir, the file fx_dir/t.db)
 * with the demo at `facts` facts. */
extern char fx_dir[256];
ds_store *fx_open_demo(int64_t facts, uint64_t seed);
/* A fresh temporary directory (fx_dir) holding a copy of the database
 * file of directory from (a closed store: one demo made once for many
 * tests). */
void fx_copy_dir(const char *from);
/* Reopens the store of fx_dir (after store_close). */
ds_store *fx_reopen(void);
void fx_remove_dir(void);
/* An engine loaded from the store's demo model (o NULL: defaults). */
ds_engine *fx_engine_from(ds_store *s, const engine_opts *o);
/* model_checksum + model_fact_hash over the stored facts. */
uint64_t fx_store_sum(ds_store *s);

/* True when the test runs under valgrind (which makes it tens of times
 * slower: long random runs are cut short there). */
bool fx_on_valgrind(void);

typedef struct fx_rng {
    uint64_t s;
} fx_rng;
uint64_t fx_next(fx_rng *r);
/* A random request body for the model at seq (writes, batches, spreads of
 * every method and form, holds, if_seq, member operations on product). */
void fx_random_body(ds_buf *b, const ds_model *m, fx_rng *r, int64_t seq, req_kind *kind,
                    const char **dim);
/* Initialises *b and prints fmt into it (free with ds_buf_free). */
void fx_vformat(ds_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Resolves a body into *d (arena a); false when it does not resolve. */
bool fx_resolve(const char *body, size_t len, req_kind kind, const ds_model *m, const char *dim,
                ds_arena *a, req_decoded *d);

/* Submits a resolved request to the engine (user "tester", request_id
 * rid, the stream entry's time ts_ms) and persists what it applied or
 * refused into the file in one group (persist_item_from, store_persist),
 * as the writer and the persister do; a retry (a duplicate, a reused
 * request_id) persists nothing. Returns 0 (applied or a duplicate) or the
 * negative code of the refusal (err says why). *res keeps the engine's
 * result without its delta (clear it with engine_result_clear()). */
int fx_submit(ds_store *s, ds_engine *e, const req_decoded *d, const char *rid, int64_t ts_ms,
              engine_result *res, ds_error *err);
/* Resolves body (kind; dim: the path's dimension of REQ_MEMBER) against
 * the engine's catalog, then fx_submit()s it under a request_id new to the
 * engine's ledger. A body that does not resolve reaches neither the engine
 * nor the file: its negative code is returned, err says why, and *res is
 * left cleared. res NULL: the result is cleared here. */
int fx_apply(ds_store *s, ds_engine *e, const char *body, req_kind kind, const char *dim,
             engine_result *res, ds_error *err);

#endif
