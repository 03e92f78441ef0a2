/* ref_engine.h: a slow, obviously-right reference of the engine's write
 * rules (src/engine.h), written independently of src/engine*.c so that
 * the two can be compared on random commands (tests/unit/test_engine_ref.c).
 *
 * The state is naive: the catalog (a ds_model, changed by member
 * operations through the model_* functions) and a sorted array of leaf
 * facts (cell -> per measure: present, value, the seq that last changed
 * it). There is no cube: every total is a scan of every fact, every
 * ancestry test walks parent links, every list of children scans the
 * members. Spreads collect the region's cells by scanning (the cross
 * product of the leaves beneath the target when the method is equal or
 * repeat) and hand them to the GMP reference ref_spread(), never to
 * src/spread.c. A command refused halfway is undone by putting back a copy
 * of the facts taken before it.
 *
 * The rules, in the order a command is decided:
 * - the ledger: a request_id (per user) seen within the retention window
 *   with the same body hash is a duplicate (its first outcome); with
 *   another body request_id_reused (not recorded);
 * - decoding against the current catalog and the key's scope (the
 *   request.h functions), then if_seq above the model's seq (stale,
 *   target "if_seq");
 * - each write in order (a batch is one command, all or nothing): the
 *   measure, cell and holds must name alive members (not_found); a leaf
 *   cell gets value, old + delta or old scaled by the percent rounded half
 *   away from zero (out_of_range beyond 18 digits), is refused when a hold
 *   covers it (held), then if_seq: a member of the cell whose structure
 *   changed after if_seq, or a cell the write changes that was changed
 *   after if_seq by an earlier command (stale). A consolidated cell
 *   spreads: plan (out_of_range, signs_cancel), the missing cells equal or
 *   repeat would fill (too_many_cells), the apportionment (out_of_range,
 *   held), then the same if_seq checks over the region;
 * - member operations (add, rename, move, delete) with facts_to and force.
 * Messages, targets and extras are the engine's, word for word.
 *
 * Outcomes have the engine's shapes (command.h): per write, changes holds
 * the target, then every cell above it (each dimension where the target is
 * not the root: the target's member or an ancestor, at least one an
 * ancestor), nearest first and, at one distance, fewer steps up in earlier
 * dimensions first, then the target's children one level down in each
 * consolidated dimension whose total changed; the list is cut at
 * change_cap (truncated). leaves holds every changed leaf (not cut: the
 * engine's cut keeps the first change_cap in an order of its own;
 * leaves_truncated says whether it cuts), in_totals set when the leaf is
 * also among the totals. */
#ifndef DS_REF_ENGINE_H
#define DS_REF_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "command.h"
#include "engine.h"
#include "error.h"
#include "model.h"

/* Measures the reference holds per fact (the demo has two). */
#define REF_ENGINE_MAX_MEASURES 8

/* The cells above a target are listed only while the lattice of the
 * target's ancestors (itself included) has at most this many cells and no
 * member of the target is deeper than REF_ABOVE_MAX_DEPTH; otherwise the
 * list says truncated after the target and lists neither the cells above
 * nor the children (the engine's limits). */
#define REF_ABOVE_MAX_LATTICE 65536
#define REF_ABOVE_MAX_DEPTH   64

typedef struct ref_engine ref_engine;

typedef struct ref_result {
    engine_status status;
    int64_t seq;    /* applied or duplicate-applied: its seq; else -1 */
    int code;       /* DS_OK or the refusal's code (also a duplicate's) */
    ds_error err;   /* refused, reused */
    ds_outcome out; /* applied */
} ref_result;

/* A reference for a model (def is cloned) at seq. The options used are
 * change_cap, create_cap and retention_ms. Facts and ledger rows are
 * loaded next. Caller frees with ref_engine_free() (NULL is a no-op). */
ref_engine *ref_engine_new(const ds_model *def, int64_t seq, const engine_opts *o);
void ref_engine_free(ref_engine *r);

/* Loads a fact as engine_load_fact() takes it (a fact with no measure
 * present is no fact); ref_engine_load_done() after the last (it aborts on
 * two facts for one cell). */
void ref_engine_load_fact(ref_engine *r, const int32_t *members, const int64_t *values,
                          const int64_t *stamps, uint64_t has);
void ref_engine_load_done(ref_engine *r);
void ref_engine_load_request(ref_engine *r, const char *user, const char *rid, const char *hash,
                             int64_t seq, int code, int64_t ts_ms);

/* Applies the next entry of the request stream; *res is filled (clear it
 * with ref_result_clear()). */
void ref_engine_submit(ref_engine *r, const engine_input *in, ref_result *res);
void ref_result_clear(ref_result *res);

int64_t ref_engine_seq(const ref_engine *r);
/* The catalog now (borrowed, valid until the next submit). */
const ds_model *ref_engine_model(const ref_engine *r);
/* Any cell's value of measure q, by a scan of every fact. */
ds_i128 ref_engine_value(const ref_engine *r, const int32_t *cell, int q);
/* Facts with at least one measure present. */
uint64_t ref_engine_live_facts(const ref_engine *r);
/* model_checksum + model_fact_hash of every present value: what
 * engine_checksum() computes. */
uint64_t ref_engine_checksum(const ref_engine *r);

#endif
