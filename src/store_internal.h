/* store_internal.h: shared by the store's files (store.c: connection,
 * schema, catalog, loads, reads; store_write.c: commands). Only the store
 * includes duckdb.h. */
#ifndef DS_STORE_INTERNAL_H
#define DS_STORE_INTERNAL_H

#include <duckdb.h>
#include <pthread.h>

#include "store.h"
#include "util.h"

/* Prepared statements of one model, created on first use. */
typedef struct model_stmts {
    duckdb_prepared_statement leaf_select[DS_MAX_MEASURES];
    duckdb_prepared_statement leaf_update[DS_MAX_MEASURES];
    duckdb_prepared_statement leaf_insert[DS_MAX_MEASURES];
    duckdb_prepared_statement log_insert;
} model_stmts;

/* The fast path's memory of one model (store_fast.c): every fact (cell ->
 * value and stamp per measure), the totals of every member combination,
 * and the leaf writes of the open group not yet written to DuckDB. */
typedef struct fact_index {
    bool valid;
    int shift[DS_MAX_DIMS]; /* bit offset of each dimension in a packed cell */
    size_t cap, n;
    uint64_t *keys;       /* packed cell + 1; 0: empty */
    int64_t *val, *stamp; /* cap * nmeasures */
    uint8_t *has;         /* cap * nmeasures: the measure has a value */
    int64_t *rowid;       /* cap: the row's DuckDB rowid, -1 unknown (new rows
                             until a flush looks them up) */
    int64_t max_rowid;    /* rows above it have not been looked up */
} fact_index;

typedef struct agg_cube {
    bool valid;
    size_t size; /* cells: every member combination */
    size_t stride[DS_MAX_DIMS];
    int32_t *ix[DS_MAX_DIMS]; /* member id -> position in its dimension */
    int64_t *tot;             /* nmeasures * size */
} agg_cube;

typedef struct pending_write {
    uint64_t key;
    ds_cell cell;
    int measure;
    int64_t old_value, new_value, seq;
    bool existed; /* the row existed before the group */
} pending_write;

typedef struct pending_command {
    int64_t seq, ts_us;
    int part, measure_id; /* -1: none */
    char *user, *rid, *kind, *target, *method, *form, *amount, *detail;
    bool has_values;
    ds_i128 old_value, new_value;
    int64_t leaves_changed;
} pending_command;

typedef struct fast_state {
    fact_index idx;
    agg_cube cube;
    pending_write *pw;
    size_t npw, pw_alloc;
    pending_command *pc;
    size_t npc, pc_alloc;
    int64_t pending_seq; /* seq to record in ds_model at flush, or -1 */
    bool appended;       /* rows were appended whose rowids are not known */
} fast_state;

typedef struct model_slot {
    ds_model *model; /* committed snapshot (holds one reference) */
    int64_t seq;     /* committed seq */
    ds_model *work;  /* inside a group: the changed catalog, else NULL */
    bool touched;    /* inside a group: work_seq is valid */
    int64_t work_seq;
    model_stmts stmts;
    fast_state fast;
    int64_t facts_rows; /* rows in the fact table (the persister's next rowid) */
} model_slot;

/* rowid -> new value, read by the update functions during one UPDATE. */
typedef struct rowmap {
    bool dense;
    int64_t base; /* dense: vals[rowid - base] */
    size_t span;
    int64_t *vals;
    uint8_t *has;
    size_t cap; /* hash: open addressing, key -1 is empty */
    int64_t *keys;
    int64_t *hvals;
} rowmap;

/* Lets DuckDB read the fast path's pending rows (see ds_pending). */
typedef struct pending_export {
    size_t n;
    const uint64_t *keys;
    const int64_t *vals, *seqs, *rowids;
} pending_export;

/* A ledger row waiting for its group's COMMIT. */
typedef struct pending_request {
    int32_t model_id;
    char *user, *rid, *hash;
    char *zbody; /* the body, compressed (store__pack_body), or plain when */
    size_t zlen; /* compression failed (plain) */
    bool plain;
    int64_t seq;
    int code;
} pending_request;

struct ds_store {
    char *path; /* the database file (":memory:" for tests) */
    duckdb_database db;
    duckdb_connection con; /* the writer's */
    ds_store_opts opts;
    pthread_mutex_t lock; /* slots[] and snapshot references */
    model_slot **slots;
    size_t nslots;
    bool in_txn;
    bool rows_deleted;         /* facts were deleted since the last store_checkpoint */
    bool poisoned;             /* a command failed after it wrote: the group must roll back */
    bool wrote;                /* the current command has issued writing SQL */
    pending_request *requests; /* ledger rows of the open group */
    size_t nrequests, requests_alloc;
    pending_export exp; /* read by the ds_pending table function */
    size_t cube_budget; /* bytes one model's cube may take */
    rowmap rows;
    rowmap stamps, keys;                  /* the fast path's UPDATE: rowid -> stamp, packed cell */
    duckdb_prepared_statement seq_update; /* ds_model's seq at a flush */
    struct ZSTD_CCtx_s *zctx;             /* compresses ledger bodies */
};

struct ds_reader {
    ds_store *store;
    duckdb_connection con;
};

/* SQL helpers: all return 0 or -DS_INTERNAL with the DuckDB message. */
int store__exec(duckdb_connection con, const char *sql, ds_error *err);
int store__prepare(duckdb_connection con, const char *sql, duckdb_prepared_statement *out,
                   ds_error *err);
/* Executes; *res (when not NULL) must be destroyed by the caller. */
int store__run(duckdb_prepared_statement st, duckdb_result *res, ds_error *err);

/* The one function that writes identifiers into SQL: double-quoted. */
void store__ident(ds_buf *b, const char *name);
/* "f_<id>", "l_<id>", "d<id>", "m<id>", "s<id>", quoted. */
void store__table(ds_buf *b, char prefix, int32_t model_id);
void store__column(ds_buf *b, char prefix, int32_t id);

/* Appends "AND <dimension k in the subtree of cell->m[k]>" for every
 * dimension not at its root; binds go to args. */
typedef struct sql_args {
    int64_t *v;
    int n, cap;
} sql_args;
void store__arg(sql_args *a, int64_t v);
void store__args_free(sql_args *a);
void store__region(ds_buf *sql, sql_args *a, const ds_model *m, const ds_cell *cell,
                   const char *alias);
/* Appends "(<dimension dim's column is in x's subtree>)". */
void store__in_subtree(ds_buf *sql, sql_args *a, const ds_model *m, int dim, int32_t x,
                       const char *alias);
int store__bind_args(duckdb_prepared_statement st, const sql_args *a, int first, ds_error *err);

duckdb_hugeint store__hugeint(ds_i128 v);
ds_i128 store__from_hugeint(duckdb_hugeint h);

/* First column of the first row as an exact integer (NULL -> 0): works on
 * BIGINT, HUGEINT and DECIMAL results. */
int store__scalar_i128(duckdb_result *res, ds_i128 *out, ds_error *err);

/* Walks a result chunk by chunk: while (store__rows_next(&it)) read with
 * the typed getters (the caller knows the column types). */
typedef struct row_iter {
    duckdb_result *res;
    duckdb_data_chunk chunk;
    idx_t n, i;
} row_iter;
void store__rows_init(row_iter *it, duckdb_result *res);
bool store__rows_next(row_iter *it);
bool store__rows_null(const row_iter *it, idx_t col);
int32_t store__rows_i32(const row_iter *it, idx_t col);
int64_t store__rows_i64(const row_iter *it, idx_t col);  /* BIGINT, DECIMAL(18) */
ds_i128 store__rows_i128(const row_iter *it, idx_t col); /* HUGEINT, DECIMAL(38) */
const char *store__rows_str(const row_iter *it, idx_t col, uint32_t *len);
/* Frees the current chunk (call when leaving a loop early). */
void store__rows_done(row_iter *it);

/* Ledger bodies, stored zstd-compressed (store.c). */
char *store__pack_body(ds_store *s, const char *body, size_t len, size_t *out_len);
char *store__unpack_body(const char *z, size_t len, size_t *out_len);
/* The body of a ds_request row from its columns body (col) and zbody
 * (col + 1): malloc'd, or NULL when the stored bytes are damaged. */
char *store__row_body(const row_iter *it, idx_t col, size_t *len);
/* A chunk at a time: returns the rows in the next chunk (0 at the end);
 * then read whole columns. valid is NULL when every row is valid. */
idx_t store__chunk_next(row_iter *it);
void *store__chunk_data(const row_iter *it, idx_t col);
uint64_t *store__chunk_valid(const row_iter *it, idx_t col);

model_slot *store__slot(ds_store *s, const char *name, size_t len);
/* The catalog a command sees: the working copy inside a group. */
const ds_model *store__current(const model_slot *slot);
int64_t store__current_seq(const model_slot *slot);
/* Installs a changed model as the working copy (inside a txn) or commits
 * it as the new snapshot; takes ownership. */
void store__set_model(ds_store *s, model_slot *slot, ds_model *m);
void store__stmts_free(model_stmts *st);

/* Adds a slot for a newly created model (seq 0). */
void store__add_slot(ds_store *s, ds_model *m, int64_t seq);
/* Creates an appender on a table of the main schema. */
int store__appender(ds_store *s, const char *table, duckdb_appender *out, ds_error *err);
/* The bare (unquoted) name "<prefix>_<model_id>" for appenders. */
void store__table_name(char *buf, size_t n, char prefix, int32_t model_id);
/* Flushes and destroys an appender, reporting its error. */
int store__appender_close(duckdb_appender *ap, ds_error *err);

/* Appends whole data chunks to a table (fast bulk inserts inside the
 * connection's transaction). Fill the current row through col() and
 * set_null(), then end_row(). */
typedef struct chunk_app {
    duckdb_appender ap;
    duckdb_data_chunk chunk;
    idx_t n, cap;
    int ncols;
} chunk_app;
int store__chunk_open(ds_store *s, const char *table, duckdb_logical_type *types, int ncols,
                      chunk_app *c, ds_error *err);
void *store__chunk_col(chunk_app *c, int col);
void store__chunk_null(chunk_app *c, int col, bool null);
int store__chunk_end_row(chunk_app *c, ds_error *err);
/* Flushes (unless abandon) and frees. */
int store__chunk_close(chunk_app *c, bool abandon, ds_error *err);
/* Opens a chunk appender on the facts (prefix 'f') or the leaf log ('l'). */
int store__facts_open(ds_store *s, const ds_model *m, chunk_app *c, ds_error *err);
int store__log_open(ds_store *s, const ds_model *m, chunk_app *c, ds_error *err);

/* The new value of a leaf write (value, delta or percent of old); out of
 * range beyond 18 digits (store_write.c). */
int store__leaf_value(const ds_write *w, int64_t old, int64_t *out, ds_error *err);

/* ---- the fast path (store_fast.c) ---- */
/* True when the command can take the fast path (leaf writes in a group). */
bool store__fast_eligible(ds_store *s, model_slot *slot, const ds_command *cmd);
/* Applies a command of leaf writes through the index; changes are queued. */
int store__fast_apply(ds_store *s, model_slot *slot, const ds_command *cmd, int64_t seq,
                      ds_outcome *out, ds_error *err);
/* Writes the slot's queued changes (before anything reads DuckDB, and
 * before COMMIT). */
int store__fast_flush(ds_store *s, model_slot *slot, ds_error *err);
/* After a rollback or a structural change: forget the index and cube. */
void store__fast_drop(model_slot *slot);
/* After a COMMIT: learns the rowids of the rows the group appended. */
void store__fast_committed(ds_store *s, model_slot *slot);
void store__fast_free(model_slot *slot);
/* Queues a ds_command row (copied); the flush appends them. */
void store__fast_command(model_slot *slot, const pending_command *c);
/* A spread changing more leaves drops the index instead of noting them. */
#define STORE_NOTE_MAX 65536
/* A spread changed these leaves (full cells): keep index and cube exact. */
void store__fast_note(model_slot *slot, const ds_model *m, int measure, const int32_t *cell,
                      int64_t old_value, int64_t new_value, int64_t seq);
/* The cube's current total of a cell, when the cube is valid. */
bool store__cube_total(model_slot *slot, const ds_model *m, int measure, const int32_t *cell,
                       int64_t *out);
int store__register_fast(ds_store *s, ds_error *err);

/* The change list and the cells above a target (store_write.c). */
typedef struct change_list {
    ds_changeset *cs;
    size_t cap, alloc;
} change_list;
void store__list_add(change_list *l, const ds_cell *c, int measure, ds_i128 old_v, ds_i128 new_v);
int store__add_above(ds_store *s, model_slot *slot, const ds_model *m, const ds_write *w,
                     ds_i128 delta, change_list *out, ds_error *err);
int store__log_write(ds_store *s, model_slot *slot, const ds_command *cmd, int64_t seq, int64_t ts,
                     size_t part, const ds_changeset *cs, ds_error *err);
/* Writes the pending ledger rows (before COMMIT) / drops them. */
int store__flush_requests(ds_store *s, ds_error *err);
void store__drop_requests(ds_store *s);

/* Points the update functions at rowid -> value pairs (copied). */
void store__rowmap_set(rowmap *rm, const int64_t *rowids, const int64_t *vals, size_t n);
void store__rowmap_free(rowmap *rm);

/* Member operations (store_member.c); called by store_apply inside its
 * transaction with the seq the command gets. */
int store__apply_member(ds_store *s, model_slot *slot, const ds_command *cmd, int64_t seq,
                        int64_t ts_us, ds_error *err);
/* Records one change-log row of a command (ds_command). */
typedef struct command_row {
    int part;
    const char *kind;
    int measure_id; /* -1: none */
    const char *target, *method, *form, *amount, *detail;
    bool has_values;
    ds_i128 old_value, new_value;
    int64_t leaves_changed;
} command_row;
int store__log_command(ds_store *s, model_slot *slot, const ds_command *cmd, int64_t seq,
                       int64_t ts_us, const command_row *row, ds_error *err);

/* Rewrites the closure rows of one dimension from the in-memory tree. */
int store__write_closure(ds_store *s, const ds_model *m, int dim, ds_error *err);
/* Rewrites one dimension's member rows. */
int store__write_members(ds_store *s, const ds_model *m, int dim, ds_error *err);

#endif
