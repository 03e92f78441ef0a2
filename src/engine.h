/* engine.h: one model's whole state in memory, and the only place where
 * the rules of writing live. The engine holds the catalog (members and
 * measures), every fact, a cube of totals, and the request ledger; it
 * applies commands in the order it is given them, each either as a whole
 * (one seq) or not at all, and answers reads at the seq it has reached.
 *
 * Log first: the writer feeds the engine the entries of the model's request
 * stream, in stream order. The engine decides everything: ledger hits
 * (a retry gets the first outcome; the same request_id with another body is
 * request_id_reused), the key's scope, every refusal of spreading (held,
 * signs_cancel, out_of_range, too_many_cells), if_seq (stale), and member
 * operations. What it returns is the outcome (what clients are told) and a
 * delta (what the persister writes to DuckDB). No SQL, no I/O, no clock:
 * the time of a command is the time of its stream entry. Deterministic: the
 * same state and the same entries give the same outcomes, seqs and values,
 * which recovery (re-applying pending entries after a restart) and
 * replicas rest on.
 *
 * Facts have ordinals: the i-th fact the engine ever held (loaded, then
 * created by writes) is fact i, and the persister keeps row i of the
 * model's fact table for it (DuckDB rowids). A fact whose every measure
 * became missing (a deleted member's) keeps its ordinal, as an empty row.
 *
 * Threads: one writer calls engine_submit(); any thread reads
 * (engine_read_*, engine_model_acquire). A read sees the state after a
 * whole command, never inside one, and says which seq that is. Readers
 * hold a read lock for the few microseconds of a cell or grid lookup in
 * the cube; a read that would scan facts (a model without a cube) holds it
 * for the scan. */
#ifndef DS_ENGINE_H
#define DS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "command.h"
#include "error.h"
#include "model.h"
#include "util.h"

typedef struct ds_engine ds_engine;

typedef struct engine_opts {
    size_t change_cap;    /* leaves (and totals) an outcome lists per write (1000) */
    int64_t create_cap;   /* missing cells one spread may fill (1,000,000) */
    size_t cube_budget;   /* bytes the cube of totals may take (1 GiB); beyond
                             it consolidated reads scan the facts */
    size_t memory_budget; /* bytes the model may take in all (0: no limit) */
    int64_t retention_ms; /* how long a request_id is remembered (7 days) */
    size_t ledger_max;    /* and at most how many of them (1,000,000; 0: no
                             limit): past either, a retry is applied again */
} engine_opts;

void engine_opts_default(engine_opts *o);

/* A new engine for a model (def is copied) whose state is at seq. Facts
 * and ledger rows are loaded next, then engine_load_done(). Caller frees
 * with engine_free(); engine_free(NULL) is a no-op. */
ds_engine *engine_new(const ds_model *def, int64_t seq, const engine_opts *o);
void engine_free(ds_engine *e);

/* ---- loading (one thread, before anyone reads) ------------------------ */

/* Appends the next fact (ordinal = facts loaded so far): members[ndims]
 * (leaves), values and stamps[nmeasures], has bit q set when measure q is
 * present. A duplicate cell or a member that is not a leaf is
 * DS_INTERNAL (a damaged database). */
int engine_load_fact(ds_engine *e, const int32_t *members, const int64_t *values,
                     const int64_t *stamps, uint64_t has, ds_error *err);
/* Remembers a request of the ledger (applied: seq >= 0 and code DS_OK;
 * refused: seq -1 and its code). hash is 64 hex digits. */
void engine_load_request(ds_engine *e, const char *user, const char *rid, const char *hash,
                         int64_t seq, int code, int64_t ts_ms);
/* Builds the cube and checks the memory budget: a model that does not fit
 * is refused (DS_UNAVAILABLE, saying the bytes per fact and the budget). */
int engine_load_done(ds_engine *e, ds_error *err);

/* ---- applying --------------------------------------------------------- */

/* One entry of the request stream. Strings are NUL-terminated. */
typedef struct engine_input {
    const char *cmd; /* canonical JSON of the command */
    size_t cmd_len;
    const char *user;
    const char *rid;                      /* request_id */
    const char *hash;                     /* 64 hex digits: SHA-256 of cmd */
    const char *scope_dim, *scope_member; /* the key's scope, or NULL */
    int64_t ts_ms;                        /* the stream entry's time */
} engine_input;

typedef enum engine_status {
    ENGINE_APPLIED = 0, /* applied now, at seq */
    ENGINE_REFUSED,     /* refused now (err); recorded in the ledger */
    ENGINE_DUPLICATE,   /* seen before with the same body: its first outcome
                           (seq, or -1 and code when it was refused) */
    ENGINE_REUSED,      /* seen before with another body (err:
                           request_id_reused); not recorded */
} engine_status;

/* One fact value change, for the persister (every changed leaf; the
 * outcome lists only up to the cap). */
typedef struct engine_row {
    uint32_t fact;         /* ordinal */
    int16_t measure;       /* index into the model's measures */
    bool old_has, new_has; /* present before / after */
    int64_t old_v, new_v;  /* minor units (0 when missing) */
} engine_row;

/* What one applied (or refused) command changes in the persisted state. */
typedef struct engine_delta {
    int64_t seq;  /* -1: refused (only its ledger row) */
    size_t nrows; /* fact value changes, in the order made */
    engine_row *rows;
    int32_t *row_cells; /* nrows * ndims: the cell of each row (after
                           a move: the new cell) */
    uint32_t first_new; /* facts first_new .. nfacts-1 were created */
    uint32_t nfacts;    /* facts after the command */
    size_t nmoves;      /* facts whose member in move_dim changed */
    uint32_t *moves;    /* their ordinals */
    int32_t move_to;    /* their new member of move_dim */
    int move_dim;
    const ds_model *catalog; /* a member operation: the catalog after it
                                (a reference, released with the delta) */
    int member_dim;          /* the dimension it changed */
} engine_delta;

typedef struct engine_result {
    engine_status status;
    int64_t seq;            /* applied or duplicate-applied: its seq; else -1 */
    int code;               /* DS_OK, or the refusal's code (also a duplicate's) */
    ds_error err;           /* refused, reused */
    ds_command cmd;         /* applied: the decoded command (arena) */
    ds_outcome out;         /* applied: the change sets */
    const ds_model *before; /* applied: the catalog the command saw (a
                               reference: member names in events) */
    const ds_model *after;  /* applied: the catalog after it */
    engine_delta delta;     /* applied or refused: for the persister */
    ds_arena arena;
} engine_result;

/* Applies the next entry of the stream. Returns 0 with *res filled (also
 * for refusals, duplicates and reuse: see res->status), or -DS_INTERNAL
 * when the entry cannot be decoded at all (nothing changed, nothing
 * recorded). Clear *res with engine_result_clear() (the delta may be
 * detached first with engine_delta_take()). */
int engine_submit(ds_engine *e, const engine_input *in, engine_result *res, ds_error *err);
void engine_result_clear(engine_result *res);
/* Moves the delta out of a result (the caller frees it with
 * engine_delta_free()). */
void engine_delta_take(engine_result *res, engine_delta *out);
void engine_delta_free(engine_delta *d);

/* ---- reading (any thread) ---------------------------------------------- */

/* The seq of the last applied command. */
int64_t engine_seq(ds_engine *e);
/* The catalog now (a reference: release with engine_model_release()). */
const ds_model *engine_model_acquire(ds_engine *e);
void engine_model_release(ds_engine *e, const ds_model *m);

/* Any cell (leaf or consolidated) of measure; *seq is the seq it reflects.
 * Members are checked against the engine's catalog (not_found). */
int engine_read_cell(ds_engine *e, const ds_cell *cell, int measure, ds_i128 *value, int64_t *seq,
                     ds_error *err);

/* values[r * ncols + c] at one seq. */
int engine_read_grid(ds_engine *e, const ds_grid_spec *g, ds_i128 *values, int64_t *seq,
                     ds_error *err);

/* A ledger lookup for the HTTP layer (a retry answered before queueing). */
typedef struct engine_request {
    char hash[65];
    int64_t seq; /* -1: refused */
    int code;
} engine_request;
bool engine_request_get(ds_engine *e, const char *user, const char *rid, engine_request *out);

/* A hash of the catalog and every fact (cell, measure, value), the same
 * function store_checksum_model() computes over the persisted model. */
uint64_t engine_checksum(ds_engine *e);

typedef struct engine_stats {
    int64_t seq;
    uint64_t facts;      /* ordinals (empty rows included) */
    uint64_t live_facts; /* facts with a measure present */
    size_t bytes;        /* memory held: facts, index, cube, ledger */
    size_t cube_bytes;   /* 0: no cube */
    size_t ledger_entries;
    uint64_t ledger_evicted; /* forgotten for ledger_max before their time */
} engine_stats;
void engine_get_stats(ds_engine *e, engine_stats *s);

#endif
