/* store_internal.h: shared by the store's files (store.c: connection,
 * SQL helpers, the update functions, schema, catalog load, snapshots;
 * store_catalog.c: models, members, views, appenders, bulk loads, the
 * ledger table; store_load.c: facts for the engine; store_persist.c: what
 * the engine applied; store_read.c: reads). Only the store includes
 * duckdb.h. */
#ifndef DS_STORE_INTERNAL_H
#define DS_STORE_INTERNAL_H

#include <duckdb.h>
#include <pthread.h>

#include "store.h"
#include "util.h"

typedef struct model_slot {
    ds_model *model;    /* the snapshot (holds one reference) */
    int64_t seq;        /* the last persisted seq */
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

struct ds_store {
    char *path; /* the database file (":memory:" for tests) */
    duckdb_database db;
    duckdb_connection con; /* the persister's (the writer's) */
    ds_store_opts opts;
    pthread_mutex_t lock; /* slots[] and snapshot references */
    model_slot **slots;
    size_t nslots;
    rowmap rows, stamps;                  /* what the update functions read */
    duckdb_prepared_statement seq_update; /* ds_model's seq after a group */
    struct ZSTD_CCtx_s *zctx;             /* compresses ledger bodies */
    store_persist_times times;            /* store_persist's phases */
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

/* Ledger bodies and commands (store.c): zstd-compressed from PACK_MIN
 * bytes on (a frame starts with zstd's magic number); shorter ones are
 * kept as they are (a body in ds_request.body, a command, which is a JSON
 * object starting with '{', in zcmd as it is): DuckDB compresses its
 * columns itself, and a small frame saved too little for its time. */
#define PACK_MIN 1024
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

/* The slot of a model by its whole name, or NULL. */
model_slot *store__slot(ds_store *s, const char *name, size_t len);
/* Publishes a changed catalog as the model's new snapshot; takes
 * ownership. */
void store__set_model(ds_store *s, model_slot *slot, ds_model *m);

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

/* Points the update functions at rowid -> value pairs (copied). */
void store__rowmap_set(rowmap *rm, const int64_t *rowids, const int64_t *vals, size_t n);
void store__rowmap_free(rowmap *rm);

/* Rewrites the closure rows of one dimension from the in-memory tree. */
int store__write_closure(ds_store *s, const ds_model *m, int dim, ds_error *err);
/* Rewrites one dimension's member rows. */
int store__write_members(ds_store *s, const ds_model *m, int dim, ds_error *err);

#endif
