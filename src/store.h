/* store.h: everything that talks to DuckDB. The store owns one database
 * file: the catalog (models, dimensions, measures, members), the facts of
 * each model, the change logs, the request ledger and the views. It does
 * not decide writes (the engine does): it creates and drops models, loads
 * facts in bulk, hands a model's facts to an engine, persists what engines
 * applied (store_persist, a group of commands per transaction) and answers
 * SQL reads.
 *
 * Threads: the store and its write connection belong to one thread (the
 * persister). Other threads read through their own ds_reader. Models
 * handed out by store_model_acquire() are immutable snapshots, valid until
 * store_model_release(). */
#ifndef DS_STORE_H
#define DS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "command.h"
#include "engine.h"
#include "error.h"
#include "model.h"

typedef struct ds_store ds_store;
typedef struct ds_reader ds_reader;

typedef struct ds_store_opts {
    bool leaf_log;                    /* keep every leaf's old and new value (default true;
                                         false exists only so benchmarks can measure it) */
    int threads;                      /* DuckDB worker threads, 0 = DuckDB's default */
    const char *memory_limit;         /* DuckDB memory_limit, NULL = default */
    const char *checkpoint_threshold; /* write-ahead log size that makes DuckDB
                                         checkpoint at a commit (NULL: DuckDB's
                                         16MB, which keeps scans after big
                                         spreads fast) */
} ds_store_opts;

void store_opts_default(ds_store_opts *o);

/* Opens or creates the database file at path (":memory:" for tests that do
 * not need a file). Caller frees with store_close(). */
int store_open(const char *path, const ds_store_opts *opts, ds_store **out, ds_error *err);
void store_close(ds_store *s);

/* ---- catalog --------------------------------------------------------- */

/* Creates a model from a built definition (dimensions with members,
 * measures; ids as in the definition). Its seq starts at 0. */
int store_model_create(ds_store *s, const ds_model *def, ds_error *err);
/* Drops a model with its facts, change log and views. */
int store_model_drop(ds_store *s, const char *name, ds_error *err);
/* The current snapshot of a model, or NULL (no such model). */
const ds_model *store_model_acquire(ds_store *s, const char *name, size_t len);
void store_model_release(ds_store *s, const ds_model *m);
/* Names of all models (caller frees each and the array); count returned. */
size_t store_model_names(ds_store *s, char ***names);
/* The last persisted seq of a model, or -1 (no such model). */
int64_t store_model_seq(ds_store *s, const char *name);

/* ---- persisting what the engine applied ------------------------------------ */

/* One row of the command log (ds_command): a write's part, or a member
 * operation (measure_id -1, detail says what). */
typedef struct store_command_row {
    int part;
    const char *kind; /* "leaf", "spread", "member" */
    int measure_id;   /* -1: none */
    const char *target, *method, *form, *amount, *detail;
    bool has_values;
    ds_i128 old_value, new_value;
    int64_t leaves_changed;
} store_command_row;

/* One command the engine applied (delta->seq >= 0) or refused (-1). */
typedef struct store_item {
    const char *model;
    const engine_delta *delta;
    int64_t ts_ms; /* the stream entry's time */
    const char *user, *rid, *hash;
    int code;         /* DS_OK, or the refusal's code */
    const char *body; /* the answer: event or error JSON */
    size_t body_len;
    const store_command_row *cmds; /* applied: its command log rows */
    size_t ncmds;
    const char *cmd; /* its canonical form, kept with the ledger row (may be NULL) */
    size_t cmd_len;
    bool skip; /* nothing to write (kept in the group for its order) */
} store_item;

/* Writes a group of commands, in order, in one transaction: fact values,
 * new facts (appended as rows: row i of a model's facts is the engine's
 * fact i), moved facts, the leaf log, the command log, the ledger, the
 * catalog of member operations and each model's seq. All or nothing. */
int store_persist(ds_store *s, const store_item *items, size_t n, ds_error *err);

/* Where store_persist's time went, summed over every call (seconds): the
 * UPDATEs of existing facts (and moves), the appends (new facts, the leaf
 * and command logs, the ledger, members) and the COMMIT. Read it on the
 * thread that calls store_persist. */
typedef struct store_persist_times {
    double update_s, append_s, commit_s;
} store_persist_times;
store_persist_times store_persist_timing(const ds_store *s);

/* ---- loading a model into memory ----------------------------------------- */

/* Every fact row of a model in rowid order: members[ndims], values and
 * stamps[nmeasures] (0 when NULL), has bit q when measure q is present.
 * A non-zero return of fn stops the scan and is returned. Rows are first
 * renumbered 0..n-1 if deleted rows left gaps (files of older versions):
 * the persister then writes fact i at rowid i. */
typedef int (*store_fact_fn)(void *ctx, int64_t rowid, const int32_t *members,
                             const int64_t *values, const int64_t *stamps, uint64_t has,
                             ds_error *err);
int store_facts_each(ds_store *s, const char *model, store_fact_fn fn, void *ctx, ds_error *err);

/* ---- bulk load -------------------------------------------------------- */

typedef struct ds_loader ds_loader;
/* Appends facts to an empty model in one transaction (demo, import). The
 * caller guarantees leaf members and distinct cells. */
int store_load_begin(ds_store *s, const char *model, ds_loader **out, ds_error *err);
/* members[ndims]; values[nmeasures]; present[k] false leaves measure k
 * missing. */
int store_load_add(ds_loader *l, const int32_t *members, const int64_t *values, const bool *present,
                   ds_error *err);
/* Commits (or rolls back when commit is false) and frees the loader. */
int store_load_end(ds_loader *l, bool commit, ds_error *err);
/* Creates (or replaces) a named view of a model from a SELECT written by
 * the program itself (never user input), e.g. the demo's summary view. */
int store_view_create(ds_store *s, const char *model, const char *name, const char *select_sql,
                      ds_error *err);

/* Benchmarks only: recomputes every view of the model into a table
 * ds_baseline_<view>, as the original design did after each write. */
int store_views_materialize(ds_store *s, const char *model, ds_error *err);

/* Bytes in the write-ahead log (0 when there is none). */
int64_t store_wal_bytes(ds_store *s);

/* Folds the write-ahead log into the database file (CHECKPOINT). Fails
 * while another connection has a transaction open. */
int store_checkpoint(ds_store *s, ds_error *err);

/* ---- backups (store_backup.c; backup.h takes them) ------------------------- */

/* The database file's path (borrowed) and its size in bytes now (-1 when
 * it cannot be stat'ed). */
const char *store_path(const ds_store *s);
int64_t store_file_bytes(const ds_store *s);

/* What ds_meta says of a backup, and each model's seq in the file. */
typedef struct store_backup_meta {
    char name[128];
    char taken[40];    /* ISO 8601, UTC */
    char source[4096]; /* the data directory it was taken from */
    int64_t ms;        /* how long taking it took, up to the mark */
    size_t nmodels;
    char **models; /* by name; malloc'd: store_backup_meta_free() */
    int64_t *seqs;
} store_backup_meta;
void store_backup_meta_free(store_backup_meta *m);

/* Opens the database file at path with a DuckDB instance of its own (a
 * copy without its write-ahead log: the state of its last checkpoint),
 * writes name, taken, source and ms into ds_meta (bound values), reads
 * each model's seq into m, checkpoints (so the rows are in the file, no
 * log beside it) and closes. */
int store_backup_mark(const char *path, store_backup_meta *m, ds_error *err);
/* Reads a backup's ds_meta rows and its models' seqs, opening path
 * read-only. invalid_value (target "file") when it is no DuckDB file, no
 * duckspread database, or not a backup. Free m with
 * store_backup_meta_free(). */
int store_backup_read(const char *path, store_backup_meta *m, ds_error *err);
/* The alternative the benchmark measures: ATTACH path (a new file; the
 * caller built the path itself, never from user input) and COPY FROM
 * DATABASE into it on the reader's connection (one snapshot; the
 * persister is not held), DETACH. */
int store_copy_database(ds_reader *r, const char *path, ds_error *err);

/* ---- the request ledger (ds_request) ------------------------------------ */

typedef void (*store_request_fn)(void *ctx, const char *model, const char *user, const char *rid,
                                 const char *hash, int64_t seq, int code, int64_t ts_ms);
/* Every ledger row (without bodies), oldest first, for the in-memory
 * ledger at start. */
int store_requests_load(ds_store *s, store_request_fn fn, void *ctx, ds_error *err);
/* Forgets the ledger rows of requests older than before_ms (stream time,
 * ms since the epoch): past the retention window the engines have
 * forgotten them too. On the persister's connection. */
int store_requests_expire(ds_store *s, int64_t before_ms, ds_error *err);
/* The stored outcome of one request; *body is malloc'd (caller frees). */
int store_request_get(ds_reader *r, const char *model, const char *user, const char *rid, int *code,
                      int64_t *seq, char **body, ds_error *err);
/* The events of a model's applied commands with seq > after, oldest first
 * (to publish what was committed but not yet published). */
typedef void (*store_event_fn)(void *ctx, int64_t seq, const char *rid, const char *user,
                               int64_t ts_ms, const char *event, size_t len, const char *cmd,
                               size_t cmd_len);
int store_events_after(ds_store *s, const char *model, int64_t after, store_event_fn fn, void *ctx,
                       ds_error *err);

/* ---- reads ------------------------------------------------------------ */

/* A read connection for one thread, or NULL when DuckDB cannot open one.
 * Caller frees with store_reader_free(). */
ds_reader *store_reader_new(ds_store *s);
void store_reader_free(ds_reader *r);

/* The value of any cell (leaf or consolidated) and the seq it reflects. */
int store_read_cell(ds_reader *r, const ds_model *m, const ds_cell *cell, int measure,
                    ds_i128 *value, int64_t *seq, ds_error *err);

/* values[r * ncols + c], and the seq it reflects. */
int store_read_grid(ds_reader *r, const ds_model *m, const ds_grid_spec *g, ds_i128 *values,
                    int64_t *seq, ds_error *err);

/* A view's rows as text: column names and kinds, and nrows * ncols cells
 * (NULL for SQL NULL). Free with store_table_free(). */
typedef enum ds_col_kind { COL_STRING = 0, COL_NUMBER, COL_BOOL } ds_col_kind;
typedef struct ds_table {
    int ncols;
    char **names;
    ds_col_kind *kinds;
    size_t nrows;
    char **cells;
} ds_table;
void store_table_free(ds_table *t);

/* Rows of a model's view with equality filters (column = text), at most
 * limit. not_found (target "view") for a view the model does not have;
 * malformed (target the column) for a filter on a column it lacks. */
int store_read_view(ds_reader *r, const ds_model *m, const char *view, const char *const *cols,
                    const char *const *vals, int nfilters, size_t limit, ds_table *out,
                    int64_t *seq, ds_error *err);
/* Names of a model's views (caller frees each and the array). */
size_t store_view_list(ds_reader *r, const ds_model *m, char ***names);

/* A hash of catalog, members and facts of every model: equal before and
 * after anything that must change nothing. */
int store_checksum(ds_reader *r, uint64_t *out, ds_error *err);

#endif
