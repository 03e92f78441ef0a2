/* store_persist.c: writing what the engine applied, a group of commands
 * per transaction: fact values (the last of each fact and measure in the
 * group) by rowid, new facts appended in ordinal order (row i of a fact
 * table is the engine's fact i: rows are never deleted), facts moved by
 * member operations, the leaf change log, the command log, the request
 * ledger, the catalog of member operations and each model's seq. Part of
 * the store. */
#include "store_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "crash.h"

/* The last value of every (fact, measure) a group changed. */
typedef struct last_map {
    size_t cap, n;
    uint64_t *key; /* fact * 64 + measure + 1; 0 empty */
    int64_t *val, *stamp;
    uint8_t *has;
} last_map;

static void last_init(last_map *l, size_t expect)
{
    memset(l, 0, sizeof *l);
    l->cap = 64;
    while (l->cap < 2 * expect)
        l->cap *= 2;
    l->key = xcalloc(l->cap, sizeof *l->key);
    l->val = xmalloc_array(l->cap, sizeof *l->val);
    l->stamp = xmalloc_array(l->cap, sizeof *l->stamp);
    l->has = xmalloc_array(l->cap, 1);
}

static void last_free(last_map *l)
{
    free(l->key);
    free(l->val);
    free(l->stamp);
    free(l->has);
}

static void last_put(last_map *l, uint32_t fact, int q, bool has, int64_t v, int64_t stamp)
{
    uint64_t k = (uint64_t)fact * 64 + (uint64_t)q + 1;
    size_t i = ds_mix64(k) & (l->cap - 1);
    while (l->key[i] && l->key[i] != k)
        i = (i + 1) & (l->cap - 1);
    l->n += l->key[i] == 0;
    l->key[i] = k;
    l->val[i] = v;
    l->stamp[i] = stamp;
    l->has[i] = has;
}

/* ---- one model's share of a group ------------------------------------------ */

typedef struct model_part {
    model_slot *slot;
    const ds_model *m;
    const store_item **items; /* in order */
    size_t n;
    const ds_model *catalog; /* the last member operation's catalog, or NULL */
    bool dims[DS_MAX_DIMS];  /* dimensions member operations changed */
    int64_t seq;             /* the last applied seq, or -1 */
    uint32_t nfacts;         /* facts after the group */
} model_part;

/* Facts new in this group: their final cells (a new fact may have moved). */
static int32_t *new_cells(const model_part *p, int64_t rows)
{
    int nd = p->m->ndims;
    size_t nnew = p->nfacts > rows ? (size_t)(p->nfacts - rows) : 0;
    int32_t *cells = xmalloc_array(nnew * (size_t)nd + 1, sizeof *cells);
    for (size_t i = 0; i < p->n; i++) {
        const engine_delta *d = p->items[i]->delta;
        for (size_t r = 0; r < d->nrows; r++)
            if (d->rows[r].fact >= rows)
                memcpy(cells + (d->rows[r].fact - rows) * (size_t)nd, d->row_cells + r * (size_t)nd,
                       (size_t)nd * sizeof *cells);
    }
    return cells;
}

static int append_facts(ds_store *s, const model_part *p, const last_map *l, int64_t rows,
                        ds_error *err)
{
    if (p->nfacts <= rows)
        return 0;
    const ds_model *m = p->m;
    int32_t *cells = new_cells(p, rows);
    chunk_app app;
    int rc = store__facts_open(s, m, &app, err);
    for (int64_t f = rows; rc == 0 && f < p->nfacts; f++) {
        const int32_t *cell = cells + (size_t)(f - rows) * (size_t)m->ndims;
        for (int k = 0; k < m->ndims; k++)
            ((int32_t *)store__chunk_col(&app, k))[app.n] = cell[k];
        for (int q = 0; q < m->nmeasures; q++) {
            uint64_t key = (uint64_t)f * 64 + (uint64_t)q + 1;
            size_t i = ds_mix64(key) & (l->cap - 1);
            while (l->key[i] && l->key[i] != key)
                i = (i + 1) & (l->cap - 1);
            bool has = l->key[i] && l->has[i];
            ((int64_t *)store__chunk_col(&app, m->ndims + 2 * q))[app.n] = has ? l->val[i] : 0;
            ((int64_t *)store__chunk_col(&app, m->ndims + 2 * q + 1))[app.n] =
                l->key[i] ? l->stamp[i] : 0;
            store__chunk_null(&app, m->ndims + 2 * q, !has);
            store__chunk_null(&app, m->ndims + 2 * q + 1, !l->key[i]);
        }
        rc = store__chunk_end_row(&app, err);
    }
    if (rc == 0)
        rc = store__chunk_close(&app, false, err);
    else
        store__chunk_close(&app, true, NULL);
    free(cells);
    return rc;
}

static int run_sql(ds_store *s, ds_buf *sql, ds_error *err)
{
    return store__exec(s->con, sql->data, err);
}

/* UPDATE f SET m = <value or NULL>, s = <stamp> for the existing rows
 * of measure q in l (present or missing as `present` says). */
static int update_measure(ds_store *s, const model_part *p, const last_map *l, int64_t rows, int q,
                          bool present, ds_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < l->cap; i++)
        n += l->key[i] && (int)((l->key[i] - 1) % 64) == q &&
             (int64_t)((l->key[i] - 1) / 64) < rows && (bool)l->has[i] == present;
    if (n == 0)
        return 0;
    int64_t *rid = xmalloc_array(n, sizeof *rid), *val = xmalloc_array(n, sizeof *val),
            *stamp = xmalloc_array(n, sizeof *stamp);
    int64_t lo = INT64_MAX, hi = -1;
    size_t j = 0;
    for (size_t i = 0; i < l->cap; i++) {
        if (!l->key[i] || (int)((l->key[i] - 1) % 64) != q)
            continue;
        int64_t f = (int64_t)((l->key[i] - 1) / 64);
        if (f >= rows || (bool)l->has[i] != present)
            continue;
        rid[j] = f;
        val[j] = l->val[i];
        stamp[j++] = l->stamp[i];
        lo = f < lo ? f : lo;
        hi = f > hi ? f : hi;
    }
    store__rowmap_set(&s->rows, rid, val, n);
    store__rowmap_set(&s->stamps, rid, stamp, n);
    const ds_measure *ms = &p->m->measures[q];
    ds_buf sql;
    ds_buf_init(&sql, 1 << 12);
    ds_buf_puts(&sql, "UPDATE ");
    store__table(&sql, 'f', p->m->id);
    ds_buf_puts(&sql, " SET ");
    store__column(&sql, 'm', ms->id);
    if (present)
        ds_buf_printf(&sql, " = ds_rowval_%d(rowid), ", ms->scale);
    else
        ds_buf_puts(&sql, " = NULL, ");
    store__column(&sql, 's', ms->id);
    ds_buf_printf(&sql,
                  " = ds_rowstamp(rowid) WHERE rowid BETWEEN %" PRId64 " AND %" PRId64
                  " AND ds_rowhas(rowid)",
                  lo, hi);
    int rc = run_sql(s, &sql, err);
    ds_buf_free(&sql);
    store__rowmap_free(&s->rows);
    store__rowmap_free(&s->stamps);
    free(rid);
    free(val);
    free(stamp);
    return rc;
}

/* Facts moved by member operations: their member of one dimension. */
static int move_rows(ds_store *s, const model_part *p, int64_t rows, ds_error *err)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        const engine_delta *d = p->items[i]->delta;
        size_t n = 0;
        int64_t *rid = xmalloc_array(d->nmoves + 1, sizeof *rid);
        int64_t *val = xmalloc_array(d->nmoves + 1, sizeof *val);
        for (size_t j = 0; j < d->nmoves; j++)
            if (d->moves[j] < rows) {
                rid[n] = d->moves[j];
                val[n++] = d->move_to;
            }
        if (n) {
            store__rowmap_set(&s->rows, rid, val, n);
            ds_buf sql;
            ds_buf_init(&sql, 1 << 12);
            ds_buf_puts(&sql, "UPDATE ");
            store__table(&sql, 'f', p->m->id);
            ds_buf_puts(&sql, " SET ");
            store__column(&sql, 'd', p->m->dims[d->move_dim].id);
            ds_buf_printf(&sql, " = %" PRId32 " WHERE ds_rowhas(rowid)", d->move_to);
            rc = run_sql(s, &sql, err);
            ds_buf_free(&sql);
            store__rowmap_free(&s->rows);
        }
        free(rid);
        free(val);
    }
    return rc;
}

static int append_log(ds_store *s, const model_part *p, ds_error *err)
{
    if (!s->opts.leaf_log)
        return 0;
    const ds_model *m = p->m;
    chunk_app app;
    int rc = store__log_open(s, m, &app, err);
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        const engine_delta *d = p->items[i]->delta;
        for (size_t r = 0; rc == 0 && r < d->nrows; r++) {
            const engine_row *row = &d->rows[r];
            ((int64_t *)store__chunk_col(&app, 0))[app.n] = d->seq;
            ((int16_t *)store__chunk_col(&app, 1))[app.n] = (int16_t)m->measures[row->measure].id;
            for (int k = 0; k < m->ndims; k++)
                ((int32_t *)store__chunk_col(&app, 2 + k))[app.n] =
                    d->row_cells[r * (size_t)m->ndims + (size_t)k];
            ((int64_t *)store__chunk_col(&app, 2 + m->ndims))[app.n] = row->old_v;
            ((int64_t *)store__chunk_col(&app, 3 + m->ndims))[app.n] = row->new_v;
            rc = store__chunk_end_row(&app, err);
        }
    }
    if (rc == 0)
        rc = store__chunk_close(&app, false, err);
    else
        store__chunk_close(&app, true, NULL);
    return rc;
}

static void append_text(duckdb_appender ap, const char *v)
{
    if (v)
        duckdb_append_varchar(ap, v);
    else
        duckdb_append_null(ap);
}

static int append_commands(ds_store *s, const model_part *p, ds_error *err)
{
    duckdb_appender ap;
    int rc = store__appender(s, "ds_command", &ap, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < p->n; i++) {
        const store_item *it = p->items[i];
        for (size_t j = 0; j < it->ncmds; j++) {
            const store_command_row *c = &it->cmds[j];
            duckdb_append_int32(ap, p->m->id);
            duckdb_append_int64(ap, it->delta->seq);
            duckdb_append_int32(ap, c->part);
            duckdb_append_timestamp(ap, (duckdb_timestamp){.micros = it->ts_ms * 1000});
            append_text(ap, it->user);
            append_text(ap, it->rid);
            append_text(ap, c->kind);
            if (c->measure_id >= 0)
                duckdb_append_int32(ap, c->measure_id);
            else
                duckdb_append_null(ap);
            append_text(ap, c->target);
            append_text(ap, c->method);
            append_text(ap, c->form);
            append_text(ap, c->amount);
            if (c->has_values) {
                duckdb_append_hugeint(ap, store__hugeint(c->old_value));
                duckdb_append_hugeint(ap, store__hugeint(c->new_value));
            } else {
                duckdb_append_null(ap);
                duckdb_append_null(ap);
            }
            duckdb_append_int64(ap, c->leaves_changed);
            append_text(ap, c->detail);
            duckdb_appender_end_row(ap);
        }
    }
    return store__appender_close(&ap, err);
}

static int append_requests(ds_store *s, const model_part *p, ds_error *err)
{
    duckdb_appender ap;
    int rc = store__appender(s, "ds_request", &ap, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < p->n; i++) {
        const store_item *it = p->items[i];
        size_t zlen = 0;
        char *z =
            it->body_len >= PACK_MIN ? store__pack_body(s, it->body, it->body_len, &zlen) : NULL;
        duckdb_append_int32(ap, p->m->id);
        duckdb_append_varchar(ap, it->user);
        duckdb_append_varchar(ap, it->rid);
        duckdb_append_varchar(ap, it->hash);
        if (it->delta->seq >= 0)
            duckdb_append_int64(ap, it->delta->seq);
        else
            duckdb_append_null(ap);
        duckdb_append_int32(ap, it->code);
        if (z) /* body: when short, or compression failed */
            duckdb_append_null(ap);
        else
            duckdb_append_varchar_length(ap, it->body, it->body_len);
        duckdb_append_timestamp(ap, (duckdb_timestamp){.micros = it->ts_ms * 1000});
        if (z)
            duckdb_append_blob(ap, z, zlen);
        else
            duckdb_append_null(ap);
        size_t zclen = 0;
        char *zc = it->cmd && it->cmd_len >= PACK_MIN
                       ? store__pack_body(s, it->cmd, it->cmd_len, &zclen)
                       : NULL;
        if (zc)
            duckdb_append_blob(ap, zc, zclen);
        else if (it->cmd && it->cmd_len && it->cmd[0] == '{')
            duckdb_append_blob(ap, it->cmd, it->cmd_len);
        else
            duckdb_append_null(ap);
        duckdb_appender_end_row(ap);
        free(z);
        free(zc);
    }
    return store__appender_close(&ap, err);
}

static int write_seq(ds_store *s, const model_part *p, const ds_model *cat, ds_error *err)
{
    if (!s->seq_update) {
        int rc =
            store__prepare(s->con, "UPDATE ds_model SET seq = ?, struct_seq = ? WHERE model_id = ?",
                           &s->seq_update, err);
        if (rc)
            return rc;
    }
    duckdb_bind_int64(s->seq_update, 1, p->seq);
    duckdb_bind_int64(s->seq_update, 2, cat->struct_seq);
    duckdb_bind_int32(s->seq_update, 3, p->m->id);
    return store__run(s->seq_update, NULL, err);
}

static int persist_part(ds_store *s, model_part *p, ds_error *err)
{
    int64_t rows = p->slot->facts_rows;
    size_t nrows = 0;
    for (size_t i = 0; i < p->n; i++)
        nrows += p->items[i]->delta->nrows;
    last_map l;
    last_init(&l, nrows);
    for (size_t i = 0; i < p->n; i++) {
        const engine_delta *d = p->items[i]->delta;
        for (size_t r = 0; r < d->nrows; r++)
            last_put(&l, d->rows[r].fact, d->rows[r].measure, d->rows[r].new_has, d->rows[r].new_v,
                     d->seq);
    }
    int rc = 0;
    int64_t t0 = ds_now_ns();
    for (int q = 0; rc == 0 && q < p->m->nmeasures; q++) {
        rc = update_measure(s, p, &l, rows, q, true, err);
        if (rc == 0)
            rc = update_measure(s, p, &l, rows, q, false, err);
    }
    if (nrows > 100000)
        crash_point("mid_persist"); /* a big spread half written */
    if (rc == 0)
        rc = move_rows(s, p, rows, err);
    int64_t t1 = ds_now_ns();
    s->times.update_s += (double)(t1 - t0) / 1e9;
    if (rc == 0)
        rc = append_facts(s, p, &l, rows, err);
    last_free(&l);
    if (rc == 0 && nrows)
        rc = append_log(s, p, err);
    if (rc == 0)
        rc = append_commands(s, p, err);
    if (rc == 0)
        rc = append_requests(s, p, err);
    const ds_model *cat = p->catalog ? p->catalog : p->m;
    for (int k = 0; rc == 0 && k < cat->ndims; k++)
        if (p->dims[k]) {
            rc = store__write_members(s, cat, k, err);
            if (rc == 0)
                rc = store__write_closure(s, cat, k, err);
        }
    if (rc == 0 && p->seq >= 0)
        rc = write_seq(s, p, cat, err);
    s->times.append_s += (double)(ds_now_ns() - t1) / 1e9;
    return rc;
}

/* Splits the group by model, in the order models first appear. */
static size_t split(ds_store *s, const store_item *items, size_t n, model_part *parts,
                    ds_error *err, int *rc)
{
    size_t np = 0;
    *rc = 0;
    (void)err;
    for (size_t i = 0; i < n && *rc == 0; i++) {
        if (items[i].skip)
            continue;
        size_t j = 0;
        while (j < np && strcmp(parts[j].m->name, items[i].model) != 0)
            j++;
        if (j == np) {
            model_slot *slot = store__slot(s, items[i].model, strlen(items[i].model));
            if (!slot) /* dropped since: what it had queued goes with it */
                continue;
            parts[np] = (model_part){.slot = slot, .m = slot->model, .seq = -1};
            parts[np].items = xmalloc_array(n, sizeof *parts[np].items);
            parts[np].nfacts = (uint32_t)slot->facts_rows;
            np++;
        }
        model_part *p = &parts[j];
        const engine_delta *d = items[i].delta;
        p->items[p->n++] = &items[i];
        if (d->seq >= 0) {
            p->seq = d->seq;
            p->nfacts = d->nfacts;
        }
        if (d->catalog) {
            p->catalog = d->catalog;
            p->dims[d->member_dim] = true;
        }
    }
    return np;
}

int store_persist(ds_store *s, const store_item *items, size_t n, ds_error *err)
{
    if (n == 0)
        return 0;
    model_part *parts = xcalloc(n, sizeof *parts);
    int rc;
    size_t np = split(s, items, n, parts, err, &rc);
    if (rc == 0)
        rc = store__exec(s->con, "BEGIN TRANSACTION", err);
    bool open = rc == 0;
    for (size_t j = 0; rc == 0 && j < np; j++)
        rc = persist_part(s, &parts[j], err);
    if (rc == 0)
        crash_point("before_commit");
    int64_t t0 = ds_now_ns();
    if (rc == 0)
        rc = store__exec(s->con, "COMMIT", err);
    s->times.commit_s += (double)(ds_now_ns() - t0) / 1e9;
    if (rc && open)
        store__exec(s->con, "ROLLBACK", NULL);
    for (size_t j = 0; j < np; j++) {
        model_part *p = &parts[j];
        if (rc == 0) {
            p->slot->facts_rows = p->nfacts;
            pthread_mutex_lock(&s->lock); /* store_model_seq() reads it */
            if (p->seq >= 0)
                p->slot->seq = p->seq;
            pthread_mutex_unlock(&s->lock);
            if (p->catalog)
                store__set_model(s, p->slot, model_clone(p->catalog));
        }
        free(p->items);
    }
    free(parts);
    return rc;
}

store_persist_times store_persist_timing(const ds_store *s)
{
    return s->times;
}
