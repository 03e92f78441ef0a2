/* store_backup.c: what backups (backup.h) ask of the database: the file's
 * path and size, a copy marked as a backup in its ds_meta, a backup read
 * back without writing to it, and (for the benchmark that compares) a copy
 * made by DuckDB itself. Part of the store. */
#include "store_internal.h"

#include <sys/stat.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The ds_meta keys of a backup. */
static const char *const meta_keys[] = {"backup_name", "backup_taken", "backup_source",
                                        "backup_ms"};

const char *store_path(const ds_store *s)
{
    return s->path;
}

int64_t store_file_bytes(const ds_store *s)
{
    struct stat st;
    return stat(s->path, &st) == 0 ? (int64_t)st.st_size : -1;
}

void store_backup_meta_free(store_backup_meta *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nmodels; i++)
        free(m->models[i]);
    free(m->models);
    free(m->seqs);
    m->models = NULL;
    m->seqs = NULL;
    m->nmodels = 0;
}

/* A database of its own (one thread, a small cache), or read-only. */
static int open_own(const char *path, bool read_only, duckdb_database *db, duckdb_connection *con,
                    ds_error *err)
{
    duckdb_config cfg;
    char *open_err = NULL;
    duckdb_create_config(&cfg);
    duckdb_set_config(cfg, "threads", "1");
    duckdb_set_config(cfg, "memory_limit", "256MB");
    if (read_only)
        duckdb_set_config(cfg, "access_mode", "READ_ONLY");
    duckdb_state st = duckdb_open_ext(path, db, cfg, &open_err);
    duckdb_destroy_config(&cfg);
    if (st == DuckDBError) {
        int rc = ds_fail(err, DS_INVALID_VALUE, "file", "cannot open %s as a database: %s", path,
                         open_err ? open_err : "unknown error");
        duckdb_free(open_err);
        return rc;
    }
    if (duckdb_connect(*db, con) == DuckDBError) {
        duckdb_close(db);
        return ds_fail(err, DS_INTERNAL, NULL, "cannot connect to database %s", path);
    }
    return 0;
}

static void close_own(duckdb_database *db, duckdb_connection *con)
{
    duckdb_disconnect(con);
    duckdb_close(db);
}

/* Each model's name and seq (ds_model), by name. */
static int read_seqs(duckdb_connection con, store_backup_meta *m, ds_error *err)
{
    duckdb_result res;
    if (duckdb_query(con, "SELECT name, seq FROM ds_model ORDER BY name", &res) == DuckDBError) {
        int rc = ds_fail(err, DS_INVALID_VALUE, "file", "not a duckspread database: %s",
                         duckdb_result_error(&res));
        duckdb_destroy_result(&res);
        return rc;
    }
    store_backup_meta_free(m);
    row_iter it;
    store__rows_init(&it, &res);
    while (store__rows_next(&it)) {
        uint32_t len;
        const char *name = store__rows_str(&it, 0, &len);
        m->models = xrealloc(m->models, (m->nmodels + 1) * sizeof *m->models);
        m->seqs = xrealloc(m->seqs, (m->nmodels + 1) * sizeof *m->seqs);
        m->models[m->nmodels] = xstrndup(name, len);
        m->seqs[m->nmodels++] = store__rows_null(&it, 1) ? 0 : store__rows_i64(&it, 1);
    }
    store__rows_done(&it);
    duckdb_destroy_result(&res);
    return 0;
}

static int put_meta(duckdb_connection con, const store_backup_meta *m, ds_error *err)
{
    char ms[32];
    snprintf(ms, sizeof ms, "%" PRId64, m->ms);
    const char *vals[] = {m->name, m->taken, m->source, ms};
    duckdb_prepared_statement del = NULL, ins = NULL;
    int rc = store__prepare(con, "DELETE FROM ds_meta WHERE key = ?", &del, err);
    if (rc == 0)
        rc = store__prepare(con, "INSERT INTO ds_meta VALUES (?, ?)", &ins, err);
    for (size_t i = 0; rc == 0 && i < DS_ARRAY_LEN(meta_keys); i++) {
        duckdb_bind_varchar(del, 1, meta_keys[i]);
        rc = store__run(del, NULL, err);
        duckdb_bind_varchar(ins, 1, meta_keys[i]);
        duckdb_bind_varchar(ins, 2, vals[i]);
        if (rc == 0)
            rc = store__run(ins, NULL, err);
    }
    duckdb_destroy_prepare(&del);
    duckdb_destroy_prepare(&ins);
    return rc;
}

int store_backup_mark(const char *path, store_backup_meta *m, ds_error *err)
{
    duckdb_database db;
    duckdb_connection con;
    int rc = open_own(path, false, &db, &con, err);
    if (rc)
        return rc;
    rc = store__exec(con, "BEGIN TRANSACTION", err);
    if (rc == 0)
        rc = put_meta(con, m, err);
    if (rc == 0)
        rc = store__exec(con, "COMMIT", err);
    else
        store__exec(con, "ROLLBACK", NULL);
    if (rc == 0)
        rc = read_seqs(con, m, err);
    if (rc == 0) /* the rows into the file itself: no write-ahead log beside it */
        rc = store__exec(con, "CHECKPOINT", err);
    close_own(&db, &con);
    return rc;
}

static void copy_meta(char *dst, size_t n, const char *v, uint32_t len)
{
    snprintf(dst, n, "%.*s", (int)(len < n ? len : n - 1), v);
}

int store_backup_read(const char *path, store_backup_meta *m, ds_error *err)
{
    memset(m, 0, sizeof *m);
    duckdb_database db;
    duckdb_connection con;
    int rc = open_own(path, true, &db, &con, err);
    if (rc)
        return rc;
    duckdb_result res;
    if (duckdb_query(con, "SELECT key, value FROM ds_meta", &res) == DuckDBError) {
        rc = ds_fail(err, DS_INVALID_VALUE, "file", "%s is not a duckspread database: %s", path,
                     duckdb_result_error(&res));
        duckdb_destroy_result(&res);
        close_own(&db, &con);
        return rc;
    }
    row_iter it;
    store__rows_init(&it, &res);
    bool named = false;
    while (store__rows_next(&it)) {
        uint32_t kl, vl = 0;
        const char *k = store__rows_str(&it, 0, &kl);
        const char *v = store__rows_null(&it, 1) ? "" : store__rows_str(&it, 1, &vl);
        if (kl == 11 && memcmp(k, "backup_name", 11) == 0) {
            copy_meta(m->name, sizeof m->name, v, vl);
            named = true;
        } else if (kl == 12 && memcmp(k, "backup_taken", 12) == 0) {
            copy_meta(m->taken, sizeof m->taken, v, vl);
        } else if (kl == 13 && memcmp(k, "backup_source", 13) == 0) {
            copy_meta(m->source, sizeof m->source, v, vl);
        } else if (kl == 9 && memcmp(k, "backup_ms", 9) == 0) {
            char ms[32];
            copy_meta(ms, sizeof ms, v, vl);
            m->ms = strtoll(ms, NULL, 10);
        }
    }
    store__rows_done(&it);
    duckdb_destroy_result(&res);
    if (!named)
        rc = ds_fail(err, DS_INVALID_VALUE, "file",
                     "%s is a duckspread database but not a backup (no backup_name in ds_meta)",
                     path);
    if (rc == 0)
        rc = read_seqs(con, m, err);
    close_own(&db, &con);
    if (rc)
        store_backup_meta_free(m);
    return rc;
}

/* 'text' as an SQL string literal (for ATTACH, whose path DuckDB does not
 * take as a parameter): the caller made the text itself. */
static void literal(ds_buf *b, const char *text)
{
    ds_buf_putc(b, '\'');
    for (const char *p = text; *p; p++) {
        if (*p == '\'')
            ds_buf_putc(b, '\'');
        ds_buf_putc(b, *p);
    }
    ds_buf_putc(b, '\'');
}

int store_copy_database(ds_reader *r, const char *path, ds_error *err)
{
    duckdb_result res;
    if (duckdb_query(r->con, "SELECT current_database()", &res) == DuckDBError) {
        int rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(&res));
        duckdb_destroy_result(&res);
        return rc;
    }
    char *self = duckdb_value_varchar(&res, 0, 0);
    duckdb_destroy_result(&res);
    ds_buf sql;
    ds_buf_init(&sql, 8192);
    ds_buf_puts(&sql, "ATTACH ");
    literal(&sql, path);
    ds_buf_puts(&sql, " AS ds_backup_copy");
    int rc = store__exec(r->con, sql.data, err);
    if (rc == 0) {
        ds_buf_reset(&sql);
        ds_buf_puts(&sql, "COPY FROM DATABASE ");
        store__ident(&sql, self ? self : "memory");
        ds_buf_puts(&sql, " TO ds_backup_copy");
        rc = store__exec(r->con, sql.data, err);
        store__exec(r->con, "DETACH ds_backup_copy", rc ? NULL : err);
    }
    duckdb_free(self);
    ds_buf_free(&sql);
    return rc;
}
