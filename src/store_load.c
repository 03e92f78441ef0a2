/* store_load.c: reading a whole model out of the database for the engine
 * (its facts in row order, with values and stamps). Part of the store. */
#include "store_internal.h"

#include <inttypes.h>
#include <string.h>

#include "log.h"

static void fact_select(ds_buf *sql, const ds_model *m)
{
    ds_buf_puts(sql, "SELECT rowid");
    for (int k = 0; k < m->ndims; k++) {
        ds_buf_puts(sql, ", ");
        store__column(sql, 'd', m->dims[k].id);
    }
    for (int q = 0; q < m->nmeasures; q++) {
        ds_buf_puts(sql, ", ");
        store__column(sql, 'm', m->measures[q].id);
        ds_buf_puts(sql, ", ");
        store__column(sql, 's', m->measures[q].id);
    }
    ds_buf_puts(sql, " FROM ");
    store__table(sql, 'f', m->id);
    ds_buf_puts(sql, " ORDER BY rowid");
}

/* Hands one chunk's rows to fn. */
static int each_row(const row_iter *it, idx_t n, const ds_model *m, store_fact_fn fn, void *ctx,
                    ds_error *err)
{
    int32_t cell[DS_MAX_DIMS];
    int64_t vals[DS_MAX_MEASURES], stamps[DS_MAX_MEASURES];
    const int64_t *rowid = store__chunk_data(it, 0);
    for (idx_t i = 0; i < n; i++) {
        for (int k = 0; k < m->ndims; k++)
            cell[k] = ((const int32_t *)store__chunk_data(it, (idx_t)k + 1))[i];
        uint64_t has = 0;
        for (int q = 0; q < m->nmeasures; q++) {
            idx_t cv = (idx_t)(m->ndims + 1 + 2 * q);
            uint64_t *valid = store__chunk_valid(it, cv);
            uint64_t *svalid = store__chunk_valid(it, cv + 1);
            bool present = !valid || duckdb_validity_row_is_valid(valid, i);
            vals[q] = present ? ((const int64_t *)store__chunk_data(it, cv))[i] : 0;
            stamps[q] = !svalid || duckdb_validity_row_is_valid(svalid, i)
                            ? ((const int64_t *)store__chunk_data(it, cv + 1))[i]
                            : 0;
            has |= (uint64_t)present << q;
        }
        int rc = fn(ctx, rowid[i], cell, vals, stamps, has, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Rows count and one past the largest rowid of the fact table. */
static int row_span(ds_store *s, const ds_model *m, int64_t *count, int64_t *span, ds_error *err)
{
    ds_buf sql;
    ds_buf_init(&sql, 1 << 10);
    ds_buf_puts(&sql, "SELECT count(*), COALESCE(max(rowid) + 1, 0) FROM ");
    store__table(&sql, 'f', m->id);
    duckdb_result res;
    int rc = 0;
    if (duckdb_query(s->con, sql.data, &res) == DuckDBError) {
        rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(&res));
    } else {
        row_iter it;
        store__rows_init(&it, &res);
        if (store__rows_next(&it)) {
            *count = store__rows_i64(&it, 0);
            *span = store__rows_i64(&it, 1);
        }
        store__rows_done(&it);
    }
    duckdb_destroy_result(&res);
    ds_buf_free(&sql);
    return rc;
}

/* Rewrites the fact table in rowid order without gaps. */
static int compact(ds_store *s, const ds_model *m, ds_error *err)
{
    ds_buf sql;
    ds_buf_init(&sql, 1 << 12);
    ds_buf_puts(&sql, "BEGIN TRANSACTION; CREATE TABLE ds_compacting AS SELECT * FROM ");
    store__table(&sql, 'f', m->id);
    ds_buf_puts(&sql, " ORDER BY rowid; DROP TABLE ");
    store__table(&sql, 'f', m->id);
    ds_buf_puts(&sql, "; ALTER TABLE ds_compacting RENAME TO ");
    store__table(&sql, 'f', m->id);
    ds_buf_puts(&sql, "; COMMIT");
    int rc = store__exec(s->con, sql.data, err);
    if (rc)
        store__exec(s->con, "ROLLBACK", NULL);
    ds_buf_free(&sql);
    return rc;
}

int store_facts_each(ds_store *s, const char *model, store_fact_fn fn, void *ctx, ds_error *err)
{
    model_slot *slot = store__slot(s, model, strlen(model));
    if (!slot)
        return ds_fail(err, DS_NOT_FOUND, "table", "no model named '%s'", model);
    const ds_model *m = slot->model;
    int64_t count = 0, span = 0;
    int rc = row_span(s, m, &count, &span, err);
    if (rc == 0 && count != span) {
        log_info("store: renumbering the %" PRId64 " fact rows of '%s' (deleted rows left gaps)",
                 count, m->name);
        rc = compact(s, m, err);
    }
    if (rc)
        return rc;
    slot->facts_rows = count;
    ds_buf sql;
    ds_buf_init(&sql, 1 << 16);
    fact_select(&sql, m);
    duckdb_result res;
    if (duckdb_query(s->con, sql.data, &res) == DuckDBError) {
        rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(&res));
    } else {
        row_iter it;
        store__rows_init(&it, &res);
        idx_t n;
        int64_t expect = 0;
        while (rc == 0 && (n = store__chunk_next(&it)) > 0) {
            const int64_t *rowid = store__chunk_data(&it, 0);
            for (idx_t i = 0; i < n && rc == 0; i++)
                if (rowid[i] != expect++)
                    rc = ds_fail(err, DS_INTERNAL, NULL,
                                 "fact row %" PRId64 " of '%s' has rowid %" PRId64, expect - 1,
                                 m->name, rowid[i]);
            if (rc == 0)
                rc = each_row(&it, n, m, fn, ctx, err);
        }
        store__rows_done(&it);
    }
    duckdb_destroy_result(&res);
    ds_buf_free(&sql);
    return rc;
}
