/* store_read.c: reads on a reader's own connection, each in one snapshot
 * transaction so the value and its seq agree. Part of the store. */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

ds_reader *store_reader_new(ds_store *s)
{
    ds_reader *r = xcalloc(1, sizeof *r);
    r->store = s;
    if (duckdb_connect(s->db, &r->con) == DuckDBError) {
        free(r);
        return NULL;
    }
    return r;
}

void store_reader_free(ds_reader *r)
{
    if (!r)
        return;
    duckdb_disconnect(&r->con);
    free(r);
}

/* Reads seq and struct_seq of a model in the open transaction. */
static int read_seqs(ds_reader *r, int32_t model_id, int64_t *seq, int64_t *sseq, ds_error *err)
{
    duckdb_prepared_statement st = NULL;
    int rc =
        store__prepare(r->con, "SELECT seq, struct_seq FROM ds_model WHERE model_id = ?", &st, err);
    if (rc)
        return rc;
    duckdb_bind_int32(st, 1, model_id);
    duckdb_result res;
    rc = store__run(st, &res, err);
    if (rc == 0) {
        row_iter it;
        store__rows_init(&it, &res);
        if (store__rows_next(&it)) {
            *seq = store__rows_i64(&it, 0);
            *sseq = store__rows_i64(&it, 1);
        } else {
            rc = ds_fail(err, DS_NOT_FOUND, "table", "the model no longer exists");
        }
        store__rows_done(&it);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
    return rc;
}

/* Opens a snapshot transaction whose member structure is the one of the
 * model the SQL is built from: m itself, or (when a member operation
 * committed since m was taken) the store's newer snapshot, waited for
 * briefly while the writer publishes it. *use is released by
 * snapshot_end(). */
static int snapshot_begin(ds_reader *r, const ds_model *m, const ds_model **use, int64_t *seq,
                          ds_error *err)
{
    const ds_model *cur = m;
    for (int attempt = 0; attempt < 2000; attempt++) {
        int64_t sseq = 0;
        int rc = store__exec(r->con, "BEGIN TRANSACTION", err);
        if (rc == 0)
            rc = read_seqs(r, m->id, seq, &sseq, err);
        if (rc == 0 && sseq == cur->struct_seq) {
            *use = cur;
            return 0;
        }
        store__exec(r->con, "ROLLBACK", NULL);
        if (cur != m)
            store_model_release(r->store, cur);
        if (rc)
            return rc;
        cur = store_model_acquire(r->store, m->name, strlen(m->name));
        if (!cur)
            return ds_fail(err, DS_NOT_FOUND, "table", "the model no longer exists");
        if (cur->struct_seq != sseq) {
            struct timespec t = {0, 500 * 1000};
            nanosleep(&t, NULL);
        }
    }
    if (cur != m)
        store_model_release(r->store, cur);
    return ds_fail(err, DS_UNAVAILABLE, NULL, "the model's members are changing; try again");
}

/* Members that the snapshot in use no longer has are not_found. */
static int check_ids(const ds_model *m, const ds_cell *c, int measure, ds_error *err)
{
    if (measure < 0 || measure >= m->nmeasures)
        return ds_fail(err, DS_NOT_FOUND, "column", "no such column");
    for (int k = 0; c && k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        if (c->m[k] < 0 || c->m[k] >= d->nmembers || !d->members[c->m[k]].alive)
            return ds_fail(err, DS_NOT_FOUND, "cell", "dimension '%s' has no such member", d->name);
    }
    return 0;
}

static int snapshot_end(ds_reader *r, const ds_model *m, const ds_model *use, int rc, ds_error *err)
{
    if (use && use != m)
        store_model_release(r->store, use);
    if (rc) {
        store__exec(r->con, "ROLLBACK", NULL);
        return rc;
    }
    return store__exec(r->con, "COMMIT", err);
}

int store_read_cell(ds_reader *r, const ds_model *m, const ds_cell *cell, int measure,
                    ds_i128 *value, int64_t *seq, ds_error *err)
{
    const ds_model *use = NULL;
    int rc = snapshot_begin(r, m, &use, seq, err);
    if (rc)
        return rc;
    rc = check_ids(use, cell, measure, err);
    ds_buf sql;
    sql_args a = {0};
    ds_buf_init(&sql, 1 << 16);
    ds_buf_puts(&sql, "SELECT SUM(");
    if (rc == 0) {
        store__column(&sql, 'm', use->measures[measure].id);
        ds_buf_puts(&sql, ") FROM ");
        store__table(&sql, 'f', use->id);
        ds_buf_puts(&sql, " WHERE true");
        store__region(&sql, &a, use, cell, NULL);
    }
    duckdb_prepared_statement st = NULL;
    if (rc == 0)
        rc = store__prepare(r->con, sql.data, &st, err);
    if (rc == 0)
        rc = store__bind_args(st, &a, 1, err);
    duckdb_result res;
    if (rc == 0 && (rc = store__run(st, &res, err)) == 0) {
        rc = store__scalar_i128(&res, value, err);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
    ds_buf_free(&sql);
    store__args_free(&a);
    return snapshot_end(r, m, use, rc, err);
}

/* Appends ", " separated "?" placeholders binding ids. */
static void in_list(ds_buf *sql, const int32_t *ids, size_t n, int64_t **extra, size_t *nextra)
{
    ds_buf_putc(sql, '(');
    for (size_t i = 0; i < n; i++) {
        ds_buf_puts(sql, i ? ", ?" : "?");
        *extra = xrealloc(*extra, (*nextra + 1) * sizeof **extra);
        (*extra)[(*nextra)++] = ids[i];
    }
    ds_buf_putc(sql, ')');
}

/* Positions of each member id in a row or column list: first[id] and a
 * chain next[i] for members listed more than once. */
typedef struct positions {
    int32_t *first, *next;
} positions;

static void positions_init(positions *p, const ds_dim *d, const int32_t *ids, size_t n)
{
    p->first = xmalloc_array((size_t)d->nmembers + 1, sizeof *p->first);
    p->next = xmalloc_array(n + 1, sizeof *p->next);
    for (int32_t i = 0; i <= d->nmembers; i++)
        p->first[i] = -1;
    for (size_t i = n; i-- > 0;) {
        p->next[i] = p->first[ids[i]];
        p->first[ids[i]] = (int32_t)i;
    }
}

static void positions_free(positions *p)
{
    free(p->first);
    free(p->next);
}

static void closure_join(ds_buf *sql, const char *alias, const ds_model *m, int dim)
{
    ds_buf_puts(sql, " JOIN ds_closure ");
    store__ident(sql, alias);
    ds_buf_puts(sql, " ON ");
    store__ident(sql, alias);
    ds_buf_puts(sql, ".model_id = ? AND ");
    store__ident(sql, alias);
    ds_buf_puts(sql, ".dim_id = ? AND ");
    store__ident(sql, alias);
    ds_buf_puts(sql, ".member_id = f.");
    store__column(sql, 'd', m->dims[dim].id);
}

static bool alive_member(const ds_dim *d, int32_t x)
{
    return x >= 0 && x < d->nmembers && d->members[x].alive;
}

/* The grid query inside an open snapshot, with m's structure. */
static int grid_query(ds_reader *r, const ds_model *m, const ds_grid_spec *g, ds_i128 *values,
                      ds_error *err)
{
    if (g->row_dim == g->col_dim || g->row_dim < 0 || g->col_dim < 0 || g->row_dim >= m->ndims ||
        g->col_dim >= m->ndims)
        return ds_fail(err, DS_INVALID_VALUE, "dimension",
                       "rows and columns need two different dimensions");
    for (size_t i = 0; i < g->nrows; i++)
        if (!alive_member(&m->dims[g->row_dim], g->rows[i]))
            return ds_fail(err, DS_NOT_FOUND, "cell", "a grid row is not a member");
    for (size_t j = 0; j < g->ncols; j++)
        if (!alive_member(&m->dims[g->col_dim], g->cols[j]))
            return ds_fail(err, DS_NOT_FOUND, "cell", "a grid column is not a member");
    ds_cell fixed = g->fixed;
    fixed.m[g->row_dim] = m->dims[g->row_dim].root;
    fixed.m[g->col_dim] = m->dims[g->col_dim].root;
    int rc = check_ids(m, &fixed, g->measure, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < g->nrows * g->ncols; i++)
        values[i] = 0;
    ds_buf sql;
    sql_args a = {0};
    int64_t *ids = NULL;
    size_t nids = 0;
    ds_buf_init(&sql, 1 << 22);
    ds_buf_puts(&sql, "SELECT r.ancestor_id, c.ancestor_id, SUM(f.");
    store__column(&sql, 'm', m->measures[g->measure].id);
    ds_buf_puts(&sql, ") FROM ");
    store__table(&sql, 'f', m->id);
    ds_buf_puts(&sql, " f");
    closure_join(&sql, "r", m, g->row_dim);
    closure_join(&sql, "c", m, g->col_dim);
    ds_buf_puts(&sql, " WHERE r.ancestor_id IN ");
    in_list(&sql, g->rows, g->nrows, &ids, &nids);
    ds_buf_puts(&sql, " AND c.ancestor_id IN ");
    in_list(&sql, g->cols, g->ncols, &ids, &nids);
    store__region(&sql, &a, m, &fixed, "f");
    ds_buf_puts(&sql, " GROUP BY ALL");
    duckdb_prepared_statement st = NULL;
    rc = store__prepare(r->con, sql.data, &st, err);
    if (rc == 0) {
        idx_t p = 1;
        duckdb_bind_int64(st, p++, m->id);
        duckdb_bind_int64(st, p++, m->dims[g->row_dim].id);
        duckdb_bind_int64(st, p++, m->id);
        duckdb_bind_int64(st, p++, m->dims[g->col_dim].id);
        for (size_t i = 0; i < nids; i++)
            duckdb_bind_int64(st, p++, ids[i]);
        rc = store__bind_args(st, &a, (int)p, err);
    }
    duckdb_result res;
    if (rc == 0 && (rc = store__run(st, &res, err)) == 0) {
        positions pr, pc;
        positions_init(&pr, &m->dims[g->row_dim], g->rows, g->nrows);
        positions_init(&pc, &m->dims[g->col_dim], g->cols, g->ncols);
        row_iter it;
        store__rows_init(&it, &res);
        while (store__rows_next(&it)) {
            int32_t rm = store__rows_i32(&it, 0), cm = store__rows_i32(&it, 1);
            ds_i128 v = store__rows_null(&it, 2) ? 0 : store__rows_i128(&it, 2);
            for (int32_t i = pr.first[rm]; i >= 0; i = pr.next[i])
                for (int32_t j = pc.first[cm]; j >= 0; j = pc.next[j])
                    values[(size_t)i * g->ncols + (size_t)j] = v;
        }
        store__rows_done(&it);
        positions_free(&pr);
        positions_free(&pc);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
    free(ids);
    ds_buf_free(&sql);
    store__args_free(&a);
    return rc;
}

int store_read_grid(ds_reader *r, const ds_model *caller, const ds_grid_spec *g, ds_i128 *values,
                    int64_t *seq, ds_error *err)
{
    const ds_model *m = NULL;
    int rc = snapshot_begin(r, caller, &m, seq, err);
    if (rc)
        return rc;
    rc = grid_query(r, m, g, values, err);
    return snapshot_end(r, caller, m, rc, err);
}

/* Sum of row hashes and row count of one table, mixed into *h. table_sql
 * is a catalog table's constant name or store__table() output, never input. */
static int hash_table(ds_reader *r, const char *table_sql, uint64_t *h, ds_error *err)
{
    ds_buf sql;
    ds_buf_init(&sql, 4096);
    ds_buf_printf(&sql,
                  "SELECT count(*)::HUGEINT * 1000003 + COALESCE(SUM(hash(t)::HUGEINT), 0) "
                  "FROM %s t",
                  table_sql);
    duckdb_result res;
    int rc = 0;
    if (duckdb_query(r->con, sql.data, &res) == DuckDBError) {
        rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(&res));
        duckdb_destroy_result(&res);
    } else {
        ds_i128 v;
        rc = store__scalar_i128(&res, &v, err);
        duckdb_destroy_result(&res);
        *h = ds_mix64(*h ^ (uint64_t)v ^ ds_mix64((uint64_t)(v >> 64)));
    }
    ds_buf_free(&sql);
    return rc;
}

int store_checksum(ds_reader *r, uint64_t *out, ds_error *err)
{
    static const char *const catalog[] = {"ds_model",  "ds_dimension", "ds_measure",
                                          "ds_member", "ds_closure",   "ds_view"};
    uint64_t h = 0;
    int rc = store__exec(r->con, "BEGIN TRANSACTION", err);
    for (size_t i = 0; rc == 0 && i < DS_ARRAY_LEN(catalog); i++)
        rc = hash_table(r, catalog[i], &h, err);
    char **names;
    size_t n = store_model_names(r->store, &names);
    for (size_t i = 0; i < n; i++) {
        const ds_model *m = rc ? NULL : store_model_acquire(r->store, names[i], strlen(names[i]));
        if (m) {
            ds_buf t;
            ds_buf_init(&t, 256);
            store__table(&t, 'f', m->id);
            rc = hash_table(r, t.data, &h, err);
            ds_buf_free(&t);
            store_model_release(r->store, m);
        }
        free(names[i]);
    }
    free(names);
    *out = h;
    return snapshot_end(r, NULL, NULL, rc, err);
}

/* ---- the request ledger -------------------------------------------------------- */

int store_request_get(ds_reader *r, const char *model, const char *user, const char *rid, int *code,
                      int64_t *seq, char **body, ds_error *err)
{
    duckdb_prepared_statement st = NULL;
    int rc =
        store__prepare(r->con,
                       "SELECT r.code, COALESCE(r.seq, -1), r.body, r.zbody FROM ds_request r JOIN "
                       "ds_model m USING (model_id) WHERE m.name = ? AND r.user_name = ? AND "
                       "r.request_id = ? LIMIT 1",
                       &st, err);
    duckdb_result res;
    if (rc == 0) {
        duckdb_bind_varchar(st, 1, model);
        duckdb_bind_varchar(st, 2, user);
        duckdb_bind_varchar(st, 3, rid);
        rc = store__run(st, &res, err);
    }
    *body = NULL;
    if (rc == 0) {
        row_iter it;
        store__rows_init(&it, &res);
        if (store__rows_next(&it)) {
            size_t len;
            *code = store__rows_i32(&it, 0);
            *seq = store__rows_i64(&it, 1);
            *body = store__row_body(&it, 2, &len);
            if (!*body)
                rc =
                    ds_fail(err, DS_INTERNAL, NULL, "the stored answer of this request is damaged");
        } else {
            rc = ds_fail(err, DS_NOT_FOUND, "request_id", "no such request");
        }
        store__rows_done(&it);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
    return rc;
}

/* ---- views --------------------------------------------------------------------------- */

void store_table_free(ds_table *t)
{
    for (int c = 0; c < t->ncols; c++)
        free(t->names[c]);
    for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
        free(t->cells[i]);
    free(t->names);
    free(t->kinds);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

size_t store_view_list(ds_reader *r, const ds_model *m, char ***names)
{
    duckdb_prepared_statement st = NULL;
    duckdb_result res;
    size_t n = 0;
    *names = NULL;
    if (store__prepare(r->con, "SELECT name FROM ds_view WHERE model_id = ? ORDER BY name", &st,
                       NULL) == 0) {
        duckdb_bind_int32(st, 1, m->id);
        if (store__run(st, &res, NULL) == 0) {
            row_iter it;
            store__rows_init(&it, &res);
            while (store__rows_next(&it)) {
                uint32_t len;
                const char *v = store__rows_str(&it, 0, &len);
                *names = xrealloc(*names, (n + 1) * sizeof **names);
                (*names)[n++] = xstrndup(v, len);
            }
            store__rows_done(&it);
            duckdb_destroy_result(&res);
        }
    }
    duckdb_destroy_prepare(&st);
    return n;
}

static ds_col_kind kind_of(duckdb_type t)
{
    switch (t) {
    case DUCKDB_TYPE_TINYINT:
    case DUCKDB_TYPE_SMALLINT:
    case DUCKDB_TYPE_INTEGER:
    case DUCKDB_TYPE_BIGINT:
    case DUCKDB_TYPE_HUGEINT:
    case DUCKDB_TYPE_UTINYINT:
    case DUCKDB_TYPE_USMALLINT:
    case DUCKDB_TYPE_UINTEGER:
    case DUCKDB_TYPE_UBIGINT:
    case DUCKDB_TYPE_DECIMAL:
        return COL_NUMBER;
    case DUCKDB_TYPE_BOOLEAN:
        return COL_BOOL;
    default:
        return COL_STRING;
    }
}

/* Column names and kinds of a view (LIMIT 0). */
static int view_columns(ds_reader *r, const char *view, ds_table *t, ds_error *err)
{
    ds_buf sql;
    ds_buf_init(&sql, 4096);
    ds_buf_puts(&sql, "SELECT * FROM ");
    store__ident(&sql, view);
    ds_buf_puts(&sql, " LIMIT 0");
    duckdb_result res;
    int rc = 0;
    if (duckdb_query(r->con, sql.data, &res) == DuckDBError)
        rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(&res));
    else {
        t->ncols = (int)duckdb_column_count(&res);
        t->names = xcalloc((size_t)t->ncols, sizeof *t->names);
        t->kinds = xcalloc((size_t)t->ncols, sizeof *t->kinds);
        for (int c = 0; c < t->ncols; c++) {
            t->names[c] = xstrdup(duckdb_column_name(&res, (idx_t)c));
            t->kinds[c] = kind_of(duckdb_column_type(&res, (idx_t)c));
        }
    }
    duckdb_destroy_result(&res);
    ds_buf_free(&sql);
    return rc;
}

static bool model_has_view(ds_reader *r, const ds_model *m, const char *view)
{
    char **names;
    size_t n = store_view_list(r, m, &names);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        found |= strcmp(names[i], view) == 0;
        free(names[i]);
    }
    free(names);
    return found;
}

static bool utf8_valid(const char *s)
{
    size_t n = strlen(s), len;
    for (size_t i = 0; i < n; i += len)
        if (!(len = ds_utf8_len((const unsigned char *)s + i, n - i)))
            return false;
    return true;
}

static int view_rows(ds_reader *r, const char *view, const char *const *cols,
                     const char *const *vals, int nfilters, size_t limit, ds_table *t,
                     ds_error *err)
{
    /* a value that is not UTF-8 equals no text of the view (and DuckDB
     * refuses to bind it): no rows */
    for (int i = 0; i < nfilters; i++)
        if (!utf8_valid(vals[i]))
            return 0;
    ds_buf sql;
    ds_buf_init(&sql, 1 << 16);
    ds_buf_puts(&sql, "SELECT ");
    for (int c = 0; c < t->ncols; c++) {
        ds_buf_puts(&sql, c ? ", CAST(" : "CAST(");
        store__ident(&sql, t->names[c]);
        ds_buf_puts(&sql, " AS VARCHAR)");
    }
    ds_buf_puts(&sql, " FROM ");
    store__ident(&sql, view);
    ds_buf_puts(&sql, " WHERE true");
    for (int i = 0; i < nfilters; i++) {
        ds_buf_puts(&sql, " AND CAST(");
        store__ident(&sql, cols[i]);
        ds_buf_puts(&sql, " AS VARCHAR) = ?");
    }
    ds_buf_printf(&sql, " LIMIT %zu", limit);
    duckdb_prepared_statement st = NULL;
    duckdb_result res;
    int rc = store__prepare(r->con, sql.data, &st, err);
    for (int i = 0; rc == 0 && i < nfilters; i++)
        if (duckdb_bind_varchar(st, (idx_t)i + 1, vals[i]) == DuckDBError)
            rc = ds_fail(err, DS_INTERNAL, NULL, "database: cannot bind the filter of '%.100s'",
                         cols[i]);
    if (rc == 0 && (rc = store__run(st, &res, err)) == 0) {
        row_iter it;
        store__rows_init(&it, &res);
        while (store__rows_next(&it)) {
            t->cells = xrealloc(t->cells, (t->nrows + 1) * (size_t)t->ncols * sizeof *t->cells);
            for (int c = 0; c < t->ncols; c++) {
                uint32_t len;
                char **cell = &t->cells[t->nrows * (size_t)t->ncols + (size_t)c];
                if (store__rows_null(&it, (idx_t)c)) {
                    *cell = NULL;
                } else {
                    const char *v = store__rows_str(&it, (idx_t)c, &len);
                    *cell = xstrndup(v, len);
                }
            }
            t->nrows++;
        }
        store__rows_done(&it);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
    ds_buf_free(&sql);
    return rc;
}

int store_read_view(ds_reader *r, const ds_model *m, const char *view, const char *const *cols,
                    const char *const *vals, int nfilters, size_t limit, ds_table *out,
                    int64_t *seq, ds_error *err)
{
    memset(out, 0, sizeof *out);
    const ds_model *use = NULL;
    int rc = snapshot_begin(r, m, &use, seq, err);
    if (rc)
        return rc;
    if (!model_has_view(r, use, view))
        rc = ds_fail(err, DS_NOT_FOUND, "view", "table '%s' has no view '%.100s'", use->name, view);
    if (rc == 0)
        rc = view_columns(r, view, out, err);
    for (int i = 0; rc == 0 && i < nfilters; i++) {
        bool known = false;
        for (int c = 0; c < out->ncols; c++)
            known |= strcmp(out->names[c], cols[i]) == 0;
        if (!known)
            rc = ds_fail(err, DS_MALFORMED, cols[i], "view '%.100s' has no column '%.100s'", view,
                         cols[i]);
    }
    if (rc == 0)
        rc = view_rows(r, view, cols, vals, nfilters, limit, out, err);
    if (rc)
        store_table_free(out);
    return snapshot_end(r, m, use, rc, err);
}
