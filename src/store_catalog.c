/* store_catalog.c: creating and dropping models, their member and closure
 * rows, views, and bulk loads of facts. Part of the store (see store.h). */
#include "store_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store__table_name(char *buf, size_t n, char prefix, int32_t model_id)
{
    snprintf(buf, n, "%c_%" PRId32, prefix, model_id);
}

int store__appender(ds_store *s, const char *table, duckdb_appender *out, ds_error *err)
{
    if (duckdb_appender_create(s->con, NULL, table, out) == DuckDBError) {
        int rc = ds_fail(err, DS_INTERNAL, NULL, "database: cannot append to %s: %s", table,
                         duckdb_appender_error(*out));
        duckdb_appender_destroy(out);
        return rc;
    }
    return 0;
}

int store__appender_close(duckdb_appender *ap, ds_error *err)
{
    int rc = 0;
    if (duckdb_appender_close(*ap) == DuckDBError)
        rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_appender_error(*ap));
    duckdb_appender_destroy(ap);
    return rc;
}

/* Runs sql with integer arguments. */
static int exec_args(ds_store *s, const char *sql, const int64_t *args, int n, ds_error *err)
{
    duckdb_prepared_statement st = NULL;
    int rc = store__prepare(s->con, sql, &st, err);
    for (int i = 0; rc == 0 && i < n; i++)
        if (duckdb_bind_int64(st, (idx_t)i + 1, args[i]) == DuckDBError)
            rc = ds_fail(err, DS_INTERNAL, NULL, "database: cannot bind");
    if (rc == 0)
        rc = store__run(st, NULL, err);
    duckdb_destroy_prepare(&st);
    return rc;
}

int store__write_members(ds_store *s, const ds_model *m, int dim, ds_error *err)
{
    const ds_dim *d = &m->dims[dim];
    int64_t args[] = {m->id, d->id};
    int rc = exec_args(s, "DELETE FROM ds_member WHERE model_id = ? AND dim_id = ?", args, 2, err);
    duckdb_appender ap;
    if (rc || (rc = store__appender(s, "ds_member", &ap, err)))
        return rc;
    for (int32_t i = 0; i < d->nmembers; i++) {
        const ds_member *mb = &d->members[i];
        if (!mb->alive)
            continue;
        duckdb_append_int32(ap, m->id);
        duckdb_append_int32(ap, d->id);
        duckdb_append_int32(ap, i);
        if (mb->parent < 0)
            duckdb_append_null(ap);
        else
            duckdb_append_int32(ap, mb->parent);
        duckdb_append_int32(ap, mb->ordinal);
        duckdb_append_varchar(ap, mb->key);
        duckdb_append_varchar(ap, mb->name);
        duckdb_append_int64(ap, mb->struct_seq);
        duckdb_appender_end_row(ap);
    }
    rc = store__appender_close(&ap, err);
    int64_t next[] = {d->nmembers, m->id, d->id};
    if (rc == 0)
        rc = exec_args(s,
                       "UPDATE ds_dimension SET next_member_id = ? WHERE model_id = ? AND "
                       "dim_id = ?",
                       next, 3, err);
    return rc;
}

int store__write_closure(ds_store *s, const ds_model *m, int dim, ds_error *err)
{
    const ds_dim *d = &m->dims[dim];
    int64_t args[] = {m->id, d->id};
    int rc = exec_args(s, "DELETE FROM ds_closure WHERE model_id = ? AND dim_id = ?", args, 2, err);
    duckdb_appender ap;
    if (rc || (rc = store__appender(s, "ds_closure", &ap, err)))
        return rc;
    for (int32_t i = 0; i < d->nmembers; i++) {
        if (!d->members[i].alive)
            continue;
        int32_t dist = 0;
        for (int32_t a = i; a >= 0; a = d->members[a].parent, dist++) {
            duckdb_append_int32(ap, m->id);
            duckdb_append_int32(ap, d->id);
            duckdb_append_int32(ap, a);
            duckdb_append_int32(ap, i);
            duckdb_append_int32(ap, dist);
            duckdb_appender_end_row(ap);
        }
    }
    return store__appender_close(&ap, err);
}

static int insert_catalog_rows(ds_store *s, const ds_model *m, ds_error *err)
{
    duckdb_prepared_statement st = NULL;
    int rc = store__prepare(s->con, "INSERT INTO ds_model VALUES (?, ?, 0, now(), 0)", &st, err);
    if (rc)
        return rc;
    duckdb_bind_int32(st, 1, m->id);
    duckdb_bind_varchar(st, 2, m->name);
    rc = store__run(st, NULL, err);
    duckdb_destroy_prepare(&st);
    if (rc ||
        (rc = store__prepare(s->con, "INSERT INTO ds_dimension VALUES (?, ?, ?, ?, ?)", &st, err)))
        return rc;
    for (int k = 0; rc == 0 && k < m->ndims; k++) {
        duckdb_bind_int32(st, 1, m->id);
        duckdb_bind_int32(st, 2, m->dims[k].id);
        duckdb_bind_int32(st, 3, k);
        duckdb_bind_varchar(st, 4, m->dims[k].name);
        duckdb_bind_int32(st, 5, m->dims[k].nmembers);
        rc = store__run(st, NULL, err);
    }
    duckdb_destroy_prepare(&st);
    if (rc ||
        (rc = store__prepare(s->con, "INSERT INTO ds_measure VALUES (?, ?, ?, ?, ?)", &st, err)))
        return rc;
    for (int k = 0; rc == 0 && k < m->nmeasures; k++) {
        duckdb_bind_int32(st, 1, m->id);
        duckdb_bind_int32(st, 2, m->measures[k].id);
        duckdb_bind_int32(st, 3, k);
        duckdb_bind_varchar(st, 4, m->measures[k].name);
        duckdb_bind_int32(st, 5, m->measures[k].scale);
        rc = store__run(st, NULL, err);
    }
    duckdb_destroy_prepare(&st);
    for (int k = 0; rc == 0 && k < m->ndims; k++) {
        rc = store__write_members(s, m, k, err);
        if (rc == 0)
            rc = store__write_closure(s, m, k, err);
    }
    return rc;
}

/* CREATE TABLE f_<id> (d.. INTEGER, m.. DECIMAL(18,s), s.. BIGINT) and the
 * leaf change log l_<id> (seq, measure_id, d.., old_value, new_value). */
static int create_tables(ds_store *s, const ds_model *m, ds_error *err)
{
    ds_buf b;
    ds_buf_init(&b, 1 << 20);
    ds_buf_puts(&b, "CREATE TABLE ");
    store__table(&b, 'f', m->id);
    ds_buf_puts(&b, " (");
    for (int k = 0; k < m->ndims; k++) {
        store__column(&b, 'd', m->dims[k].id);
        ds_buf_puts(&b, " INTEGER NOT NULL, ");
    }
    for (int k = 0; k < m->nmeasures; k++) {
        store__column(&b, 'm', m->measures[k].id);
        ds_buf_printf(&b, " DECIMAL(18, %d), ", m->measures[k].scale);
        store__column(&b, 's', m->measures[k].id);
        ds_buf_puts(&b, k + 1 < m->nmeasures ? " BIGINT, " : " BIGINT)");
    }
    int rc = store__exec(s->con, b.data, err);
    ds_buf_reset(&b);
    ds_buf_puts(&b, "CREATE TABLE ");
    store__table(&b, 'l', m->id);
    ds_buf_puts(&b, " (seq BIGINT NOT NULL, measure_id SMALLINT NOT NULL, ");
    for (int k = 0; k < m->ndims; k++) {
        store__column(&b, 'd', m->dims[k].id);
        ds_buf_puts(&b, " INTEGER, ");
    }
    ds_buf_puts(&b, "old_value BIGINT, new_value BIGINT)");
    if (rc == 0)
        rc = store__exec(s->con, b.data, err);
    ds_buf_free(&b);
    return rc;
}

int store_model_create(ds_store *s, const ds_model *def, ds_error *err)
{
    int rc = model_check_name(def->name, strlen(def->name), "table", err);
    if (rc)
        return rc;
    if (def->ndims < 1 || def->nmeasures < 1)
        return ds_fail(err, DS_INVALID_VALUE, "table",
                       "a model needs at least one dimension and one measure");
    if (store__slot(s, def->name, strlen(def->name)))
        return ds_fail(err, DS_INVALID_VALUE, "table", "a model named '%s' already exists",
                       def->name);
    int32_t id = 1;
    for (size_t i = 0; i < s->nslots; i++)
        if (s->slots[i]->model->id >= id)
            id = s->slots[i]->model->id + 1;
    ds_model *m = model_clone(def);
    m->id = id;
    rc = store__exec(s->con, "BEGIN TRANSACTION", err);
    if (rc == 0)
        rc = insert_catalog_rows(s, m, err);
    if (rc == 0)
        rc = create_tables(s, m, err);
    if (rc == 0)
        rc = store__exec(s->con, "COMMIT", err);
    if (rc) {
        store__exec(s->con, "ROLLBACK", NULL);
        model_free(m);
        return rc;
    }
    store__add_slot(s, m, 0);
    return 0;
}

int store_view_create(ds_store *s, const char *model, const char *name, const char *select_sql,
                      ds_error *err)
{
    model_slot *slot = store__slot(s, model, strlen(model));
    if (!slot)
        return ds_fail(err, DS_NOT_FOUND, "table", "no model named '%s'", model);
    int rc = model_check_name(name, strlen(name), "view", err);
    if (rc)
        return rc;
    ds_buf b;
    ds_buf_init(&b, 1 << 20);
    ds_buf_puts(&b, "CREATE OR REPLACE VIEW ");
    store__ident(&b, name);
    ds_buf_puts(&b, " AS ");
    ds_buf_puts(&b, select_sql);
    duckdb_prepared_statement st = NULL;
    rc = store__exec(s->con, "BEGIN TRANSACTION", err);
    if (rc == 0)
        rc = store__exec(s->con, b.data, err);
    if (rc == 0)
        rc = store__prepare(s->con,
                            "INSERT INTO ds_view SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM "
                            "ds_view WHERE model_id = ? AND name = ?)",
                            &st, err);
    if (rc == 0) {
        duckdb_bind_int32(st, 1, slot->model->id);
        duckdb_bind_varchar(st, 2, name);
        duckdb_bind_int32(st, 3, slot->model->id);
        duckdb_bind_varchar(st, 4, name);
        rc = store__run(st, NULL, err);
    }
    duckdb_destroy_prepare(&st);
    if (rc == 0)
        rc = store__exec(s->con, "COMMIT", err);
    if (rc)
        store__exec(s->con, "ROLLBACK", NULL);
    ds_buf_free(&b);
    return rc;
}

/* Names of a model's views (caller frees each and the array). */
static size_t view_names(ds_store *s, int32_t model_id, char ***out, ds_error *err)
{
    duckdb_prepared_statement st = NULL;
    duckdb_result res;
    *out = NULL;
    if (store__prepare(s->con, "SELECT name FROM ds_view WHERE model_id = ?", &st, err))
        return 0;
    duckdb_bind_int32(st, 1, model_id);
    size_t n = 0;
    if (store__run(st, &res, err) == 0) {
        row_iter it;
        store__rows_init(&it, &res);
        while (store__rows_next(&it)) {
            uint32_t len;
            const char *v = store__rows_str(&it, 0, &len);
            *out = xrealloc(*out, (n + 1) * sizeof **out);
            (*out)[n++] = xstrndup(v, len);
        }
        store__rows_done(&it);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
    return n;
}

int store_views_materialize(ds_store *s, const char *model, ds_error *err)
{
    model_slot *slot = store__slot(s, model, strlen(model));
    if (!slot)
        return ds_fail(err, DS_NOT_FOUND, "table", "no table '%s'", model);
    char **names;
    size_t n = view_names(s, slot->model->id, &names, err);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        ds_buf sql;
        ds_buf_init(&sql, 4096);
        char table[DS_IDENT_MAX + 32];
        snprintf(table, sizeof table, "ds_baseline_%s", names[i]);
        ds_buf_puts(&sql, "CREATE OR REPLACE TABLE ");
        store__ident(&sql, table);
        ds_buf_puts(&sql, " AS SELECT * FROM ");
        store__ident(&sql, names[i]);
        if (rc == 0)
            rc = store__exec(s->con, sql.data, err);
        ds_buf_free(&sql);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int drop_rows(ds_store *s, int32_t id, ds_error *err)
{
    static const char *const tables[] = {"ds_model",   "ds_dimension", "ds_measure", "ds_member",
                                         "ds_closure", "ds_command",   "ds_view",    "ds_request"};
    int rc = 0;
    char **views;
    size_t nv = view_names(s, id, &views, err);
    for (size_t i = 0; i < nv; i++) {
        ds_buf b;
        ds_buf_init(&b, 4096);
        ds_buf_puts(&b, "DROP VIEW IF EXISTS ");
        store__ident(&b, views[i]);
        if (rc == 0)
            rc = store__exec(s->con, b.data, err);
        ds_buf_free(&b);
        free(views[i]);
    }
    free(views);
    for (size_t i = 0; rc == 0 && i < DS_ARRAY_LEN(tables); i++) {
        char sql[96];
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE model_id = ?", tables[i]);
        int64_t arg = id;
        rc = exec_args(s, sql, &arg, 1, err);
    }
    for (int t = 0; rc == 0 && t < 2; t++) {
        ds_buf b;
        ds_buf_init(&b, 256);
        ds_buf_puts(&b, "DROP TABLE IF EXISTS ");
        store__table(&b, t ? 'l' : 'f', id);
        rc = store__exec(s->con, b.data, err);
        ds_buf_free(&b);
    }
    return rc;
}

int store_model_drop(ds_store *s, const char *name, ds_error *err)
{
    model_slot *slot = store__slot(s, name, strlen(name));
    if (!slot)
        return ds_fail(err, DS_NOT_FOUND, "table", "no model named '%s'", name);
    int rc = store__exec(s->con, "BEGIN TRANSACTION", err);
    if (rc == 0)
        rc = drop_rows(s, slot->model->id, err);
    if (rc == 0)
        rc = store__exec(s->con, "COMMIT", err);
    if (rc) {
        store__exec(s->con, "ROLLBACK", NULL);
        return rc;
    }
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nslots; i++) {
        if (s->slots[i] == slot) {
            memmove(&s->slots[i], &s->slots[i + 1], (s->nslots - i - 1) * sizeof *s->slots);
            s->nslots--;
            break;
        }
    }
    if (--slot->model->refs == 0)
        model_free(slot->model);
    free(slot);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ---- chunk appenders ------------------------------------------------------ */

int store__chunk_open(ds_store *s, const char *table, duckdb_logical_type *types, int ncols,
                      chunk_app *c, ds_error *err)
{
    memset(c, 0, sizeof *c);
    int rc = store__appender(s, table, &c->ap, err);
    if (rc)
        return rc;
    c->chunk = duckdb_create_data_chunk(types, (idx_t)ncols);
    c->cap = duckdb_vector_size();
    c->ncols = ncols;
    return 0;
}

void *store__chunk_col(chunk_app *c, int col)
{
    return duckdb_vector_get_data(duckdb_data_chunk_get_vector(c->chunk, (idx_t)col));
}

void store__chunk_null(chunk_app *c, int col, bool null)
{
    duckdb_vector v = duckdb_data_chunk_get_vector(c->chunk, (idx_t)col);
    duckdb_vector_ensure_validity_writable(v);
    uint64_t *valid = duckdb_vector_get_validity(v);
    if (null)
        duckdb_validity_set_row_invalid(valid, c->n);
    else
        duckdb_validity_set_row_valid(valid, c->n);
}

static int chunk_flush(chunk_app *c, ds_error *err)
{
    if (c->n == 0)
        return 0;
    duckdb_data_chunk_set_size(c->chunk, c->n);
    int rc = 0;
    if (duckdb_append_data_chunk(c->ap, c->chunk) == DuckDBError)
        rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_appender_error(c->ap));
    duckdb_data_chunk_reset(c->chunk);
    c->n = 0;
    return rc;
}

int store__chunk_end_row(chunk_app *c, ds_error *err)
{
    c->n++;
    return c->n == c->cap ? chunk_flush(c, err) : 0;
}

int store__chunk_close(chunk_app *c, bool abandon, ds_error *err)
{
    int rc = abandon ? 0 : chunk_flush(c, err);
    if (abandon)
        duckdb_appender_destroy(&c->ap);
    else {
        int rc2 = store__appender_close(&c->ap, rc ? NULL : err);
        if (rc == 0)
            rc = rc2;
    }
    duckdb_destroy_data_chunk(&c->chunk);
    return rc;
}

int store__facts_open(ds_store *s, const ds_model *m, chunk_app *c, ds_error *err)
{
    duckdb_logical_type types[DS_MAX_DIMS + 2 * DS_MAX_MEASURES];
    int n = 0;
    for (int k = 0; k < m->ndims; k++)
        types[n++] = duckdb_create_logical_type(DUCKDB_TYPE_INTEGER);
    for (int k = 0; k < m->nmeasures; k++) {
        types[n++] = duckdb_create_decimal_type(18, (uint8_t)m->measures[k].scale);
        types[n++] = duckdb_create_logical_type(DUCKDB_TYPE_BIGINT);
    }
    char table[32];
    store__table_name(table, sizeof table, 'f', m->id);
    int rc = store__chunk_open(s, table, types, n, c, err);
    for (int k = 0; k < n; k++)
        duckdb_destroy_logical_type(&types[k]);
    return rc;
}

int store__log_open(ds_store *s, const ds_model *m, chunk_app *c, ds_error *err)
{
    duckdb_logical_type types[DS_MAX_DIMS + 4];
    int n = 0;
    types[n++] = duckdb_create_logical_type(DUCKDB_TYPE_BIGINT);
    types[n++] = duckdb_create_logical_type(DUCKDB_TYPE_SMALLINT);
    for (int k = 0; k < m->ndims; k++)
        types[n++] = duckdb_create_logical_type(DUCKDB_TYPE_INTEGER);
    types[n++] = duckdb_create_logical_type(DUCKDB_TYPE_BIGINT);
    types[n++] = duckdb_create_logical_type(DUCKDB_TYPE_BIGINT);
    char table[32];
    store__table_name(table, sizeof table, 'l', m->id);
    int rc = store__chunk_open(s, table, types, n, c, err);
    for (int k = 0; k < n; k++)
        duckdb_destroy_logical_type(&types[k]);
    return rc;
}

/* ---- bulk loads ---------------------------------------------------------------- */

struct ds_loader {
    ds_store *s;
    const ds_model *m;
    chunk_app app;
};

int store_load_begin(ds_store *s, const char *model, ds_loader **out, ds_error *err)
{
    model_slot *slot = store__slot(s, model, strlen(model));
    if (!slot)
        return ds_fail(err, DS_NOT_FOUND, "table", "no model named '%s'", model);
    ds_loader *l = xcalloc(1, sizeof *l);
    l->s = s;
    l->m = slot->model;
    int rc = store__exec(s->con, "BEGIN TRANSACTION", err);
    if (rc == 0 && (rc = store__facts_open(s, l->m, &l->app, err)))
        store__exec(s->con, "ROLLBACK", NULL);
    if (rc) {
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

int store_load_add(ds_loader *l, const int32_t *members, const int64_t *values, const bool *present,
                   ds_error *err)
{
    const ds_model *m = l->m;
    idx_t row = l->app.n;
    for (int k = 0; k < m->ndims; k++)
        ((int32_t *)store__chunk_col(&l->app, k))[row] = members[k];
    for (int k = 0; k < m->nmeasures; k++) {
        bool missing = present && !present[k];
        ((int64_t *)store__chunk_col(&l->app, m->ndims + 2 * k))[row] = values[k];
        ((int64_t *)store__chunk_col(&l->app, m->ndims + 2 * k + 1))[row] = 0;
        store__chunk_null(&l->app, m->ndims + 2 * k, missing);
        store__chunk_null(&l->app, m->ndims + 2 * k + 1, missing);
    }
    return store__chunk_end_row(&l->app, err);
}

int store_load_end(ds_loader *l, bool commit, ds_error *err)
{
    int rc = store__chunk_close(&l->app, !commit, err);
    if (rc == 0 && commit)
        rc = store__exec(l->s->con, "COMMIT", err);
    if (rc || !commit)
        store__exec(l->s->con, "ROLLBACK", NULL);
    free(l);
    return rc;
}

/* ---- the request ledger ------------------------------------------------------- */

int store_requests_expire(ds_store *s, int64_t before_ms, ds_error *err)
{
    return exec_args(s, "DELETE FROM ds_request WHERE ts < epoch_ms(?)", &before_ms, 1, err);
}

int store_requests_load(ds_store *s, store_request_fn fn, void *ctx, ds_error *err)
{
    duckdb_result res;
    if (duckdb_query(s->con,
                     "SELECT m.name, r.user_name, r.request_id, r.body_hash, "
                     "COALESCE(r.seq, -1), r.code, COALESCE(epoch_ms(r.ts), 0) FROM ds_request r "
                     "JOIN ds_model m USING (model_id) ORDER BY r.ts, r.seq",
                     &res) == DuckDBError) {
        int rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(&res));
        duckdb_destroy_result(&res);
        return rc;
    }
    row_iter it;
    store__rows_init(&it, &res);
    while (store__rows_next(&it)) {
        uint32_t l0, l1, l2, l3;
        const char *a = store__rows_str(&it, 0, &l0), *b = store__rows_str(&it, 1, &l1);
        const char *c = store__rows_str(&it, 2, &l2), *d = store__rows_str(&it, 3, &l3);
        char *m = xstrndup(a, l0), *u = xstrndup(b, l1), *r = xstrndup(c, l2), *h = xstrndup(d, l3);
        fn(ctx, m, u, r, h, store__rows_i64(&it, 4), store__rows_i32(&it, 5),
           store__rows_i64(&it, 6));
        free(m);
        free(u);
        free(r);
        free(h);
    }
    store__rows_done(&it);
    duckdb_destroy_result(&res);
    return 0;
}

int store_events_after(ds_store *s, const char *model, int64_t after, store_event_fn fn, void *ctx,
                       ds_error *err)
{
    model_slot *slot = store__slot(s, model, strlen(model));
    if (!slot)
        return ds_fail(err, DS_NOT_FOUND, "table", "no model named '%s'", model);
    duckdb_prepared_statement st = NULL;
    int rc = store__prepare(
        s->con,
        "SELECT seq, request_id, body, zbody, zcmd, user_name, epoch_ms(ts) FROM ds_request "
        "WHERE "
        "model_id = ? AND seq > ? ORDER BY seq",
        &st, err);
    duckdb_result res;
    if (rc == 0) {
        duckdb_bind_int32(st, 1, slot->model->id);
        duckdb_bind_int64(st, 2, after);
        rc = store__run(st, &res, err);
    }
    if (rc == 0) {
        row_iter it;
        store__rows_init(&it, &res);
        while (store__rows_next(&it)) {
            uint32_t lr;
            size_t lb;
            const char *rid = store__rows_str(&it, 1, &lr);
            char *r = xstrndup(rid, lr), *body = store__row_body(&it, 2, &lb), *cmd = NULL;
            size_t lc = 0;
            if (!store__rows_null(&it, 4)) {
                uint32_t zl;
                const char *z = store__rows_str(&it, 4, &zl);
                cmd = store__unpack_body(z, zl, &lc);
            }
            uint32_t lu;
            const char *user = store__rows_str(&it, 5, &lu);
            char *u = xstrndup(user ? user : "", user ? lu : 0);
            int64_t ts = store__rows_null(&it, 6) ? 0 : store__rows_i64(&it, 6);
            if (body)
                fn(ctx, store__rows_i64(&it, 0), r, u, ts, body, lb, cmd, lc);
            else
                rc = ds_fail(err, DS_INTERNAL, NULL,
                             "the stored event of seq %" PRId64 " is damaged",
                             store__rows_i64(&it, 0));
            free(r);
            free(u);
            free(body);
            free(cmd);
        }
        store__rows_done(&it);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
    return rc;
}
