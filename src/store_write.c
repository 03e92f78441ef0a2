/* store_write.c: applying commands. Every refusal is decided in C before a
 * command issues any writing SQL (DuckDB has no savepoints); then facts,
 * the leaf change log, the command log and the seq are written in the
 * caller's transaction. Part of the store (see store.h). */
#include "store_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decimal.h"

/* ---- transactions ------------------------------------------------------ */

int store_txn_begin(ds_store *s, ds_error *err)
{
    if (s->in_txn)
        return ds_fail(err, DS_INTERNAL, NULL, "a group is already open");
    int rc = store__exec(s->con, "BEGIN TRANSACTION", err);
    if (rc == 0) {
        s->in_txn = true;
        s->poisoned = false;
    }
    return rc;
}

static void end_group(ds_store *s, bool committed)
{
    store__drop_requests(s);
    for (size_t i = 0; i < s->nslots && !committed; i++) {
        fast_state *f = &s->slots[i]->fast;
        if (f->npw || f->npc || f->pending_seq >= 0 || s->slots[i]->touched)
            store__fast_drop(s->slots[i]); /* it holds what was rolled back */
        f->npw = 0;
        for (size_t j = 0; j < f->npc; j++) {
            free(f->pc[j].user);
            free(f->pc[j].rid);
            free(f->pc[j].kind);
            free(f->pc[j].target);
            free(f->pc[j].method);
            free(f->pc[j].form);
            free(f->pc[j].amount);
            free(f->pc[j].detail);
        }
        f->npc = 0;
        f->pending_seq = -1;
    }
    s->in_txn = false;
    s->poisoned = false;
    for (size_t i = 0; i < s->nslots; i++) {
        model_slot *slot = s->slots[i];
        if (committed && slot->touched) {
            pthread_mutex_lock(&s->lock);
            slot->seq = slot->work_seq;
            pthread_mutex_unlock(&s->lock);
        }
        ds_model *work = slot->work;
        slot->work = NULL;
        slot->touched = false;
        if (work && committed)
            store__set_model(s, slot, work);
        else
            model_free(work);
    }
}

int store_txn_commit(ds_store *s, ds_error *err)
{
    if (!s->in_txn)
        return ds_fail(err, DS_INTERNAL, NULL, "no group is open");
    if (s->poisoned) {
        store_txn_rollback(s);
        return ds_fail(err, DS_INTERNAL, NULL,
                       "a refused command had already written; the group was rolled back");
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < s->nslots; i++)
        rc = store__fast_flush(s, s->slots[i], err);
    if (rc == 0)
        rc = store__flush_requests(s, err);
    if (rc == 0)
        rc = store__exec(s->con, "COMMIT", err);
    if (rc) {
        store__exec(s->con, "ROLLBACK", NULL);
        end_group(s, false);
        return rc;
    }
    end_group(s, true);
    for (size_t i = 0; i < s->nslots; i++)
        store__fast_committed(s, s->slots[i]);
    return 0;
}

int store_checkpoint(ds_store *s, ds_error *err)
{
    if (s->in_txn)
        return ds_fail(err, DS_INTERNAL, NULL, "a checkpoint cannot run inside a group");
    int rc = store__exec(s->con, "CHECKPOINT", err);
    if (rc == 0 && s->rows_deleted) {
        /* vacuuming deleted rows renumbers the rest: the fast path's rowids
         * are stale (it would notice, at the cost of a replayed batch) */
        for (size_t i = 0; i < s->nslots; i++)
            store__fast_drop(s->slots[i]);
        s->rows_deleted = false;
    }
    return rc;
}

void store_txn_rollback(ds_store *s)
{
    if (!s->in_txn)
        return;
    store__exec(s->con, "ROLLBACK", NULL);
    end_group(s, false);
}

/* ---- shared pieces ------------------------------------------------------- */

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static bool cell_is_leaf(const ds_model *m, const ds_cell *c)
{
    for (int k = 0; k < m->ndims; k++)
        if (!model_is_leaf(&m->dims[k], c->m[k]))
            return false;
    return true;
}

static int check_cell(const ds_model *m, const ds_cell *c, ds_error *err)
{
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        if (c->m[k] < 0 || c->m[k] >= d->nmembers || !d->members[c->m[k]].alive)
            return ds_fail(err, DS_NOT_FOUND, "cell", "dimension '%s' has no such member", d->name);
    }
    return 0;
}

static int check_hold(const ds_model *m, const ds_hold *h, ds_error *err)
{
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        if (h->m[k] != -1 && (h->m[k] < 0 || h->m[k] >= d->nmembers || !d->members[h->m[k]].alive))
            return ds_fail(err, DS_NOT_FOUND, "cell", "a hold names no member of '%s'", d->name);
    }
    return 0;
}

/* True when the leaf cell (members per dimension) lies under the hold. */
static bool hold_covers(const ds_model *m, const ds_hold *h, const int32_t *leaf)
{
    for (int k = 0; k < m->ndims; k++)
        if (h->m[k] >= 0 && !model_is_under(&m->dims[k], leaf[k], h->m[k]))
            return false;
    return true;
}

static bool is_held(const ds_model *m, const ds_write *w, const int32_t *leaf)
{
    for (int i = 0; i < w->nholds; i++)
        if (hold_covers(m, &w->holds[i], leaf))
            return true;
    return false;
}

static int check_structure(const ds_model *m, const ds_cell *c, int64_t if_seq, int64_t cur,
                           ds_error *err)
{
    for (int k = 0; k < m->ndims; k++) {
        if (m->dims[k].members[c->m[k]].struct_seq > if_seq) {
            int rc = ds_fail(err, DS_STALE, "cell",
                             "the members beneath the cell in dimension '%s' changed after "
                             "seq %" PRId64,
                             m->dims[k].name, if_seq);
            if (err) {
                err->has_seq = true;
                err->seq = cur;
            }
            return rc;
        }
    }
    return 0;
}

static int stale(ds_error *err, int64_t if_seq, int64_t cur)
{
    int rc = ds_fail(err, DS_STALE, "cell",
                     "a cell this command would change was changed after seq %" PRId64, if_seq);
    if (err) {
        err->has_seq = true;
        err->seq = cur;
    }
    return rc;
}

void store__list_add(change_list *l, const ds_cell *c, int measure, ds_i128 old_v, ds_i128 new_v)
{
    ds_changeset *cs = l->cs;
    if (cs->nchanges >= l->cap) {
        cs->truncated = true;
        return;
    }
    if (cs->nchanges == l->alloc) {
        l->alloc = l->alloc ? 2 * l->alloc : 16;
        cs->changes = xrealloc(cs->changes, l->alloc * sizeof *cs->changes);
    }
    cs->changes[cs->nchanges++] =
        (ds_change){.cell = *c, .measure = measure, .old_value = old_v, .new_value = new_v};
}

/* ---- cells above the target -----------------------------------------------
 * Every cell whose member in each dimension is the target's or one of its
 * ancestors. One scan groups the facts by "level": for each dimension the
 * nearest ancestor of the target's member that holds the fact's member;
 * then an above cell's total is the sum over the levels at or below its
 * own. Values are read after the write, so old = new - delta. */

#define ABOVE_MAX_LATTICE 65536

typedef struct lattice {
    const ds_model *m;
    int nd; /* dimensions whose target member is not the root */
    int dim[DS_MAX_DIMS];
    int32_t *chain[DS_MAX_DIMS]; /* target's member, its parent, ... , root */
    int len[DS_MAX_DIMS];
    size_t stride[DS_MAX_DIMS], size;
    ds_i128 *sum;
} lattice;

static void lattice_free(lattice *l)
{
    for (int i = 0; i < l->nd; i++)
        free(l->chain[i]);
    free(l->sum);
}

static bool lattice_init(lattice *l, const ds_model *m, const ds_cell *c)
{
    memset(l, 0, sizeof *l);
    l->m = m;
    l->size = 1;
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        if (c->m[k] == d->root)
            continue;
        int i = l->nd++;
        l->dim[i] = k;
        int n = d->members[c->m[k]].depth + 1;
        l->chain[i] = xmalloc_array((size_t)n, sizeof *l->chain[i]);
        for (int32_t x = c->m[k], j = 0; x >= 0; x = d->members[x].parent)
            l->chain[i][j++] = x;
        l->len[i] = n;
    }
    for (int i = l->nd - 1; i >= 0; i--) {
        l->stride[i] = l->size;
        l->size *= (size_t)l->len[i];
        if (l->size > ABOVE_MAX_LATTICE)
            return false;
    }
    l->sum = xcalloc(l->size, sizeof *l->sum);
    return true;
}

static void lattice_sql(const lattice *l, int measure_id, ds_buf *sql, sql_args *a)
{
    ds_buf_puts(sql, "SELECT ");
    for (int i = 0; i < l->nd; i++) {
        ds_buf_puts(sql, "CASE");
        for (int j = 0; j + 1 < l->len[i]; j++) {
            ds_buf_puts(sql, " WHEN ");
            store__in_subtree(sql, a, l->m, l->dim[i], l->chain[i][j], NULL);
            ds_buf_printf(sql, " THEN %d", j);
        }
        ds_buf_printf(sql, " ELSE %d END, ", l->len[i] - 1);
    }
    ds_buf_puts(sql, "SUM(");
    store__column(sql, 'm', measure_id);
    ds_buf_puts(sql, ") FROM ");
    store__table(sql, 'f', l->m->id);
    ds_buf_puts(sql, " WHERE ");
    store__column(sql, 'm', measure_id);
    ds_buf_puts(sql, " IS NOT NULL GROUP BY ALL");
}

static int lattice_fill(ds_store *s, lattice *l, int measure, ds_error *err)
{
    ds_buf sql;
    sql_args a = {0};
    ds_buf_init(&sql, 1 << 20);
    lattice_sql(l, l->m->measures[measure].id, &sql, &a);
    duckdb_prepared_statement st = NULL;
    int rc = store__prepare(s->con, sql.data, &st, err);
    if (rc == 0)
        rc = store__bind_args(st, &a, 1, err);
    duckdb_result res;
    if (rc == 0 && (rc = store__run(st, &res, err)) == 0) {
        row_iter it;
        store__rows_init(&it, &res);
        while (store__rows_next(&it)) {
            size_t at = 0;
            for (int i = 0; i < l->nd; i++)
                at += (size_t)store__rows_i32(&it, (idx_t)i) * l->stride[i];
            if (!store__rows_null(&it, (idx_t)l->nd))
                l->sum[at] += store__rows_i128(&it, (idx_t)l->nd);
        }
        store__rows_done(&it);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
    ds_buf_free(&sql);
    store__args_free(&a);
    if (rc)
        return rc;
    /* prefix sums: each point becomes the sum over points at or below it */
    for (int i = 0; i < l->nd; i++)
        for (size_t p = 0; p < l->size; p++)
            if ((p / l->stride[i]) % (size_t)l->len[i] > 0)
                l->sum[p] += l->sum[p - l->stride[i]];
    return 0;
}

static size_t point_distance(const lattice *l, size_t p)
{
    size_t d = 0;
    for (int i = 0; i < l->nd; i++)
        d += (p / l->stride[i]) % (size_t)l->len[i];
    return d;
}

/* The totals of the lattice's cells from the cube (already after the
 * write); false when the cube cannot say. */
static bool lattice_from_cube(model_slot *slot, const ds_model *m, lattice *l, const ds_write *w)
{
    for (size_t p = 0; p < l->size; p++) {
        ds_cell c = w->cell;
        for (int i = 0; i < l->nd; i++)
            c.m[l->dim[i]] = l->chain[i][(p / l->stride[i]) % (size_t)l->len[i]];
        int64_t v;
        if (!store__cube_total(slot, m, w->measure, c.m, &v))
            return false;
        l->sum[p] = v;
    }
    return true;
}

/* Lists the cells above the target, nearest first: from the cube when it
 * is kept, else from one grouped scan (after writing queued changes). */
int store__add_above(ds_store *s, model_slot *slot, const ds_model *m, const ds_write *w,
                     ds_i128 delta, change_list *out, ds_error *err)
{
    lattice l;
    if (!lattice_init(&l, m, &w->cell)) {
        out->cs->truncated = true; /* too many to list */
        lattice_free(&l);
        return 0;
    }
    int rc = 0;
    if (l.size > 1 && out->cs->nchanges < out->cap && !lattice_from_cube(slot, m, &l, w)) {
        memset(l.sum, 0, l.size * sizeof *l.sum);
        rc = store__fast_flush(s, slot, err);
        if (rc == 0)
            rc = lattice_fill(s, &l, w->measure, err);
    }
    size_t maxd = 0;
    for (int i = 0; i < l.nd; i++)
        maxd += (size_t)l.len[i] - 1;
    for (size_t dist = 1; rc == 0 && dist <= maxd && !out->cs->truncated; dist++) {
        for (size_t p = 0; p < l.size; p++) {
            if (point_distance(&l, p) != dist)
                continue;
            ds_cell c = w->cell;
            for (int i = 0; i < l.nd; i++)
                c.m[l.dim[i]] = l.chain[i][(p / l.stride[i]) % (size_t)l.len[i]];
            store__list_add(out, &c, w->measure, l.sum[p] - delta, l.sum[p]);
        }
    }
    lattice_free(&l);
    return rc;
}

/* ---- statements of a model ---------------------------------------------- */

static void where_leaf(ds_buf *b, const ds_model *m)
{
    ds_buf_puts(b, " WHERE ");
    for (int k = 0; k < m->ndims; k++) {
        if (k)
            ds_buf_puts(b, " AND ");
        store__column(b, 'd', m->dims[k].id);
        ds_buf_puts(b, " = ?");
    }
}

static int prepare_leaf(ds_store *s, model_slot *slot, int measure, ds_error *err)
{
    model_stmts *st = &slot->stmts;
    if (st->leaf_select[measure])
        return 0;
    duckdb_prepared_statement sel = NULL, upd = NULL, ins = NULL;
    const ds_model *m = store__current(slot);
    int32_t mid = m->measures[measure].id;
    ds_buf b;
    ds_buf_init(&b, 1 << 16);
    ds_buf_puts(&b, "SELECT rowid, ");
    store__column(&b, 'm', mid);
    ds_buf_puts(&b, ", ");
    store__column(&b, 's', mid);
    ds_buf_puts(&b, " FROM ");
    store__table(&b, 'f', m->id);
    where_leaf(&b, m);
    int rc = store__prepare(s->con, b.data, &sel, err);
    ds_buf_reset(&b);
    ds_buf_puts(&b, "UPDATE ");
    store__table(&b, 'f', m->id);
    ds_buf_puts(&b, " SET ");
    store__column(&b, 'm', mid);
    ds_buf_puts(&b, " = ?, ");
    store__column(&b, 's', mid);
    ds_buf_puts(&b, " = ? WHERE rowid = ?");
    if (rc == 0)
        rc = store__prepare(s->con, b.data, &upd, err);
    ds_buf_reset(&b);
    ds_buf_puts(&b, "INSERT INTO ");
    store__table(&b, 'f', m->id);
    ds_buf_puts(&b, " (");
    for (int k = 0; k < m->ndims; k++) {
        store__column(&b, 'd', m->dims[k].id);
        ds_buf_puts(&b, ", ");
    }
    store__column(&b, 'm', mid);
    ds_buf_puts(&b, ", ");
    store__column(&b, 's', mid);
    ds_buf_puts(&b, ") VALUES (");
    for (int k = 0; k < m->ndims + 2; k++)
        ds_buf_puts(&b, k ? ", ?" : "?");
    ds_buf_puts(&b, ")");
    if (rc == 0)
        rc = store__prepare(s->con, b.data, &ins, err);
    ds_buf_free(&b);
    if (rc) { /* all or none are cached */
        duckdb_destroy_prepare(&sel);
        duckdb_destroy_prepare(&upd);
        duckdb_destroy_prepare(&ins);
        return rc;
    }
    st->leaf_select[measure] = sel;
    st->leaf_update[measure] = upd;
    st->leaf_insert[measure] = ins;
    return 0;
}

static int prepare_logs(ds_store *s, model_slot *slot, ds_error *err)
{
    model_stmts *st = &slot->stmts;
    if (st->log_insert)
        return 0;
    const ds_model *m = store__current(slot);
    ds_buf b;
    ds_buf_init(&b, 1 << 16);
    ds_buf_puts(&b, "INSERT INTO ");
    store__table(&b, 'l', m->id);
    ds_buf_puts(&b, " VALUES (?, ?");
    for (int k = 0; k < m->ndims + 2; k++)
        ds_buf_puts(&b, ", ?");
    ds_buf_puts(&b, ")");
    int rc = store__prepare(s->con, b.data, &st->log_insert, err);
    ds_buf_free(&b);
    return rc;
}

int store__log_command(ds_store *s, model_slot *slot, const ds_command *cmd, int64_t seq,
                       int64_t ts_us, const command_row *row, ds_error *err)
{
    (void)s;
    (void)err;
    pending_command c = {.seq = seq,
                         .ts_us = ts_us,
                         .part = row->part,
                         .measure_id = row->measure_id,
                         .user = (char *)cmd->user,
                         .rid = (char *)cmd->request_id,
                         .kind = (char *)row->kind,
                         .target = (char *)row->target,
                         .method = (char *)row->method,
                         .form = (char *)row->form,
                         .amount = (char *)row->amount,
                         .detail = (char *)row->detail,
                         .has_values = row->has_values,
                         .old_value = row->old_value,
                         .new_value = row->new_value,
                         .leaves_changed = row->leaves_changed};
    store__fast_command(slot, &c); /* appended with the group's flush */
    return 0;
}

/* ---- leaf writes ----------------------------------------------------------- */

int store__leaf_value(const ds_write *w, int64_t old, int64_t *out, ds_error *err)
{
    ds_i128 v = w->amount;
    bool ok = true;
    if (w->form == SPREAD_DELTA) {
        ok = dec_add(old, w->amount, &v);
    } else if (w->form == SPREAD_PERCENT) {
        ok = w->pct_scale >= 0 && w->pct_scale <= SPREAD_PCT_MAX_SCALE;
        ds_i128 den = ok ? 100 * dec_pow10(w->pct_scale) : 1, num;
        ok = ok && dec_add(den, w->amount, &num) && dec_muldiv_round(old, num, den, &v);
    }
    if (!ok || dec_abs(v) > DEC_LEAF_MAX)
        return ds_fail(err, DS_OUT_OF_RANGE, "value",
                       "the value is beyond the measure's range (at most 18 digits)");
    *out = (int64_t)v;
    return 0;
}

typedef struct leaf_row {
    bool exists, has;
    int64_t rowid, value, stamp;
} leaf_row;

static int read_leaf(model_slot *slot, const ds_write *w, leaf_row *lr, ds_error *err)
{
    const ds_model *m = store__current(slot);
    duckdb_prepared_statement st = slot->stmts.leaf_select[w->measure];
    for (int k = 0; k < m->ndims; k++)
        duckdb_bind_int32(st, (idx_t)k + 1, w->cell.m[k]);
    duckdb_result res;
    int rc = store__run(st, &res, err);
    if (rc)
        return rc;
    memset(lr, 0, sizeof *lr);
    row_iter it;
    store__rows_init(&it, &res);
    if (store__rows_next(&it)) {
        lr->exists = true;
        lr->rowid = store__rows_i64(&it, 0);
        lr->has = !store__rows_null(&it, 1);
        lr->value = lr->has ? store__rows_i64(&it, 1) : 0;
        lr->stamp = store__rows_null(&it, 2) ? 0 : store__rows_i64(&it, 2);
    }
    store__rows_done(&it);
    duckdb_destroy_result(&res);
    return 0;
}

static int log_leaf(ds_store *s, model_slot *slot, int64_t seq, int measure, const int32_t *cell,
                    int64_t old_v, int64_t new_v, ds_error *err)
{
    if (!s->opts.leaf_log)
        return 0;
    const ds_model *m = store__current(slot);
    duckdb_prepared_statement st = slot->stmts.log_insert;
    duckdb_bind_int64(st, 1, seq);
    duckdb_bind_int16(st, 2, (int16_t)m->measures[measure].id);
    for (int k = 0; k < m->ndims; k++)
        duckdb_bind_int32(st, (idx_t)k + 3, cell[k]);
    duckdb_bind_int64(st, (idx_t)m->ndims + 3, old_v);
    duckdb_bind_int64(st, (idx_t)m->ndims + 4, new_v);
    return store__run(st, NULL, err);
}

static int write_leaf(ds_store *s, model_slot *slot, const ds_write *w, const leaf_row *lr,
                      int64_t nv, int64_t seq, ds_error *err)
{
    const ds_model *m = store__current(slot);
    int rc;
    if (lr->exists) {
        duckdb_prepared_statement st = slot->stmts.leaf_update[w->measure];
        duckdb_decimal d = {.width = 18,
                            .scale = (uint8_t)m->measures[w->measure].scale,
                            .value = store__hugeint(nv)};
        duckdb_bind_decimal(st, 1, d);
        duckdb_bind_int64(st, 2, seq);
        duckdb_bind_int64(st, 3, lr->rowid);
        rc = store__run(st, NULL, err);
    } else {
        duckdb_prepared_statement st = slot->stmts.leaf_insert[w->measure];
        for (int k = 0; k < m->ndims; k++)
            duckdb_bind_int32(st, (idx_t)k + 1, w->cell.m[k]);
        duckdb_decimal d = {.width = 18,
                            .scale = (uint8_t)m->measures[w->measure].scale,
                            .value = store__hugeint(nv)};
        duckdb_bind_decimal(st, (idx_t)m->ndims + 1, d);
        duckdb_bind_int64(st, (idx_t)m->ndims + 2, seq);
        rc = store__run(st, NULL, err);
    }
    if (rc == 0)
        rc = log_leaf(s, slot, seq, w->measure, w->cell.m, lr->value, nv, err);
    return rc;
}

static int apply_leaf(ds_store *s, model_slot *slot, const ds_command *cmd, const ds_write *w,
                      int64_t seq, bool *wrote, ds_changeset *cs, ds_error *err)
{
    const ds_model *m = store__current(slot);
    leaf_row lr;
    ds_i128 nv = 0;
    int rc = prepare_leaf(s, slot, w->measure, err);
    if (rc == 0)
        rc = prepare_logs(s, slot, err);
    if (rc == 0)
        rc = read_leaf(slot, w, &lr, err);
    if (rc)
        return rc;
    int64_t nv64;
    if ((rc = store__leaf_value(w, lr.value, &nv64, err)))
        return rc;
    nv = nv64;
    if (is_held(m, w, w->cell.m))
        return ds_fail(err, DS_HELD, "cell", "the cell is held by this command's holds");
    bool changed = nv != lr.value;
    if (cmd->if_seq >= 0 && (rc = check_structure(m, &w->cell, cmd->if_seq, seq - 1, err)))
        return rc;
    /* a stamp of this very seq is an earlier write of the same batch */
    if (cmd->if_seq >= 0 && changed && lr.stamp > cmd->if_seq && lr.stamp != seq)
        return stale(err, cmd->if_seq, seq - 1);
    cs->leaf = true;
    cs->method = w->method;
    cs->target =
        (ds_change){.cell = w->cell, .measure = w->measure, .old_value = lr.value, .new_value = nv};
    cs->leaves_changed = changed;
    if (changed) {
        *wrote = true;
        rc = write_leaf(s, slot, w, &lr, (int64_t)nv, seq, err);
        if (rc == 0)
            store__fast_note(slot, m, w->measure, w->cell.m, lr.value, (int64_t)nv, seq);
    }
    return rc;
}

/* ---- spreads ----------------------------------------------------------------- */

/* The target's region: the consolidated dimensions with their subtrees. */
typedef struct region {
    const ds_model *m;
    ds_cell c;
    int nk;
    int kdim[DS_MAX_DIMS];
    spread_tree trees[DS_MAX_DIMS];
    int32_t *tparent[DS_MAX_DIMS], *tids[DS_MAX_DIMS];
    int32_t *leaves[DS_MAX_DIMS]; /* leaf members in preorder */
    size_t nleaves[DS_MAX_DIMS];
    int32_t *leaf_at[DS_MAX_DIMS];   /* member id -> index in leaves, or -1 */
    const int32_t *pre[DS_MAX_DIMS]; /* local node -> member id */
} region;

static void region_init(region *r, const ds_model *m, const ds_cell *c)
{
    memset(r, 0, sizeof *r);
    r->m = m;
    r->c = *c;
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        if (model_is_leaf(d, c->m[k]))
            continue;
        int i = r->nk++;
        r->kdim[i] = k;
        r->pre[i] = d->pre + d->pos[c->m[k]];
        model_subtree(d, c->m[k], &r->trees[i], &r->tparent[i], &r->tids[i]);
        r->nleaves[i] = model_leaves(d, c->m[k], &r->leaves[i]);
        r->leaf_at[i] = xmalloc_array((size_t)d->nmembers, sizeof *r->leaf_at[i]);
        for (int32_t j = 0; j < d->nmembers; j++)
            r->leaf_at[i][j] = -1;
        for (size_t j = 0; j < r->nleaves[i]; j++)
            r->leaf_at[i][r->leaves[i][j]] = (int32_t)j;
    }
}

static void region_free(region *r)
{
    for (int i = 0; i < r->nk; i++) {
        free(r->tparent[i]);
        free(r->tids[i]);
        free(r->leaves[i]);
        free(r->leaf_at[i]);
    }
}

/* The local tree node of member x of consolidated dimension i. */
static int32_t local_node(const region *r, int i, int32_t x)
{
    const ds_dim *d = &r->m->dims[r->kdim[i]];
    return d->pos[x] - d->pos[r->c.m[r->kdim[i]]];
}

/* The cells a spread works on, with everything the write-back needs. */
typedef struct cellset {
    size_t n, alloc;
    int nk;
    int32_t *coord; /* n * nk local tree nodes (cell_member() gives ids) */
    int64_t *value; /* current (0 when missing) */
    int64_t *rowid; /* -1: no row */
    int64_t *stamp; /* seq stamp, 0 when missing */
    uint8_t *has;   /* the measure has a value */
    uint8_t *held;
} cellset;

static void cellset_grow(cellset *cs, size_t need)
{
    if (need <= cs->alloc)
        return;
    size_t a = cs->alloc ? cs->alloc : 1024;
    while (a < need)
        a *= 2;
    size_t k = (size_t)(cs->nk ? cs->nk : 1);
    cs->coord = xrealloc(cs->coord, a * k * sizeof *cs->coord);
    cs->value = xrealloc(cs->value, a * sizeof *cs->value);
    cs->rowid = xrealloc(cs->rowid, a * sizeof *cs->rowid);
    cs->stamp = xrealloc(cs->stamp, a * sizeof *cs->stamp);
    cs->has = xrealloc(cs->has, a);
    cs->held = xrealloc(cs->held, a);
    cs->alloc = a;
}

static void cellset_free(cellset *cs)
{
    free(cs->coord);
    free(cs->value);
    free(cs->rowid);
    free(cs->stamp);
    free(cs->has);
    free(cs->held);
    memset(cs, 0, sizeof *cs);
}

/* The member of consolidated dimension j in cell i. */
static inline int32_t cell_member(const region *r, const cellset *cs, size_t i, int j)
{
    return r->pre[j][cs->coord[i * (size_t)r->nk + (size_t)j]];
}

/* The full cell (members of every dimension) of cell i. */
static void full_cell(const region *r, const cellset *cs, size_t i, int32_t *out)
{
    for (int k = 0; k < r->m->ndims; k++)
        out[k] = r->c.m[k];
    for (int j = 0; j < r->nk; j++)
        out[r->kdim[j]] = cell_member(r, cs, i, j);
}

/* Reads every fact row of the region (rows where the measure is missing
 * too: equal and repeat reuse them). */
static int read_region(ds_store *s, const region *r, int measure, bool stamps, cellset *cs,
                       ds_error *err)
{
    const ds_model *m = r->m;
    int32_t mid = m->measures[measure].id;
    ds_buf sql;
    sql_args a = {0};
    ds_buf_init(&sql, 1 << 20);
    ds_buf_puts(&sql, "SELECT rowid, ");
    store__column(&sql, 'm', mid);
    if (stamps) { /* only if_seq needs them: the column is costly to read */
        ds_buf_puts(&sql, ", ");
        store__column(&sql, 's', mid);
    }
    for (int j = 0; j < r->nk; j++) {
        ds_buf_puts(&sql, ", ");
        store__column(&sql, 'd', m->dims[r->kdim[j]].id);
    }
    ds_buf_puts(&sql, " FROM ");
    store__table(&sql, 'f', m->id);
    ds_buf_puts(&sql, " WHERE true");
    store__region(&sql, &a, m, &r->c, NULL);
    duckdb_prepared_statement st = NULL;
    int rc = store__prepare(s->con, sql.data, &st, err);
    if (rc == 0)
        rc = store__bind_args(st, &a, 1, err);
    duckdb_result res;
    if (rc == 0 && (rc = store__run(st, &res, err)) == 0) {
        cellset_grow(cs, (size_t)duckdb_row_count(&res));
        row_iter it;
        store__rows_init(&it, &res);
        idx_t n;
        while ((n = store__chunk_next(&it)) > 0) {
            size_t base = cs->n, nk = (size_t)r->nk;
            cellset_grow(cs, base + n);
            const int64_t *rid = store__chunk_data(&it, 0), *val = store__chunk_data(&it, 1);
            const int64_t *stamp = stamps ? store__chunk_data(&it, 2) : NULL;
            const uint64_t *vv = store__chunk_valid(&it, 1);
            const uint64_t *sv = stamps ? store__chunk_valid(&it, 2) : NULL;
            for (idx_t i = 0; i < n; i++) {
                bool has = !vv || duckdb_validity_row_is_valid((uint64_t *)vv, i);
                cs->rowid[base + i] = rid[i];
                cs->has[base + i] = has;
                cs->value[base + i] = has ? val[i] : 0;
                cs->stamp[base + i] =
                    stamp && (!sv || duckdb_validity_row_is_valid((uint64_t *)sv, i)) ? stamp[i]
                                                                                      : 0;
            }
            idx_t first_dim = stamps ? 3 : 2;
            for (int j = 0; j < r->nk; j++) {
                const int32_t *x = store__chunk_data(&it, (idx_t)j + first_dim);
                const ds_dim *d = &m->dims[r->kdim[j]];
                int32_t top = d->pos[r->c.m[r->kdim[j]]];
                for (idx_t i = 0; i < n; i++) {
                    cs->coord[(base + i) * nk + (size_t)j] = d->pos[x[i]] - top;
                }
            }
            cs->n += n;
        }
        store__rows_done(&it);
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&st);
    ds_buf_free(&sql);
    store__args_free(&a);
    return rc;
}

static void mark_held(const region *r, const ds_write *w, cellset *cs)
{
    int32_t full[DS_MAX_DIMS];
    for (size_t i = 0; i < cs->n; i++) {
        if (w->nholds == 0) {
            cs->held[i] = 0;
            continue;
        }
        full_cell(r, cs, i, full);
        cs->held[i] = is_held(r->m, w, full);
    }
}

/* Regions with holds are listed to count the cells to fill exactly while
 * they are at most a few times the cap and the rows; beyond, every missing
 * cell counts. */
static bool listable(ds_i128 count, int64_t cap, size_t rows)
{
    return count <= 4 * ((ds_i128)cap + (ds_i128)rows) + 1000000;
}

static int too_many(ds_error *err, ds_i128 count, int64_t cap)
{
    int rc = ds_fail(err, DS_TOO_MANY_CELLS, "cell",
                     "the spread would fill %" PRId64 " missing cells; the limit is %" PRId64,
                     (int64_t)count, cap);
    if (err) {
        err->has_count = true;
        err->count = (int64_t)count;
        err->limit = cap;
    }
    return rc;
}

/* Replaces the sparse rows by every cell of the region (dense), in
 * preorder of each dimension, keeping rows' values and rowids. */
static int densify(const region *r, const ds_write *w, int64_t cap, cellset *cs, ds_error *err)
{
    ds_i128 count = 1;
    for (int j = 0; j < r->nk; j++) {
        count *= (ds_i128)r->nleaves[j];
        if (count > (ds_i128)1 << 62)
            count = (ds_i128)1 << 62;
    }
    size_t with_value = 0;
    for (size_t i = 0; i < cs->n; i++)
        with_value += cs->has[i];
    /* cells without a value; with holds the held ones are not filled, so
     * they are counted exactly below when the region can be listed */
    ds_i128 missing = count - (ds_i128)with_value;
    if (missing > cap && (w->nholds == 0 || !listable(count, cap, cs->n)))
        return too_many(err, missing, cap);
    size_t n = (size_t)count;
    int64_t *row_of = xmalloc_array(n, sizeof *row_of);
    for (size_t i = 0; i < n; i++)
        row_of[i] = -1;
    for (size_t i = 0; i < cs->n; i++) {
        size_t at = 0;
        for (int j = 0; j < r->nk; j++)
            at = at * r->nleaves[j] + (size_t)r->leaf_at[j][cell_member(r, cs, i, j)];
        row_of[at] = (int64_t)i;
    }
    cellset d = {.nk = r->nk};
    cellset_grow(&d, n);
    for (size_t at = 0; at < n; at++) {
        size_t rest = at;
        for (int j = r->nk - 1; j >= 0; j--) {
            int32_t x = r->leaves[j][rest % r->nleaves[j]];
            rest /= r->nleaves[j];
            d.coord[at * (size_t)r->nk + (size_t)j] = local_node(r, j, x);
        }
        int64_t src = row_of[at];
        d.rowid[at] = src >= 0 ? cs->rowid[src] : -1;
        d.value[at] = src >= 0 ? cs->value[src] : 0;
        d.stamp[at] = src >= 0 ? cs->stamp[src] : 0;
        d.has[at] = src >= 0 ? cs->has[src] : 0;
    }
    d.n = n;
    free(row_of);
    cellset_free(cs);
    *cs = d;
    mark_held(r, w, cs);
    int64_t fill = 0;
    for (size_t i = 0; i < n; i++)
        fill += !cs->has[i] && !cs->held[i];
    return fill > cap ? too_many(err, fill, cap) : 0;
}

/* Appends the cells that have no row yet and become non-zero. */
static int insert_cells(ds_store *s, const region *r, const ds_write *w, const cellset *cs,
                        const int64_t *nv, int64_t seq, ds_error *err)
{
    const ds_model *m = r->m;
    chunk_app app;
    int rc = store__facts_open(s, m, &app, err);
    int32_t full[DS_MAX_DIMS];
    for (size_t i = 0; rc == 0 && i < cs->n; i++) {
        if (cs->rowid[i] >= 0 || nv[i] == cs->value[i])
            continue;
        full_cell(r, cs, i, full);
        for (int k = 0; k < m->ndims; k++)
            ((int32_t *)store__chunk_col(&app, k))[app.n] = full[k];
        for (int k = 0; k < m->nmeasures; k++) {
            bool mine = k == w->measure;
            ((int64_t *)store__chunk_col(&app, m->ndims + 2 * k))[app.n] = mine ? nv[i] : 0;
            ((int64_t *)store__chunk_col(&app, m->ndims + 2 * k + 1))[app.n] = mine ? seq : 0;
            store__chunk_null(&app, m->ndims + 2 * k, !mine);
            store__chunk_null(&app, m->ndims + 2 * k + 1, !mine);
        }
        rc = store__chunk_end_row(&app, err);
    }
    if (rc == 0)
        rc = store__chunk_close(&app, false, err);
    else
        store__chunk_close(&app, true, NULL);
    return rc;
}

/* Appends " WHERE ds_rowhas(rowid) AND <d BETWEEN lo AND hi>..." (the id
 * ranges only prune the scan; ds_rowhas decides). */
/* When every row of the region changes (the usual proportional spread),
 * the exact region predicate replaces the per-row lookup. */
static void where_changed(ds_buf *sql, sql_args *a, const region *r, bool every_row)
{
    const ds_model *m = r->m;
    if (every_row) {
        ds_buf_puts(sql, " WHERE true");
        store__region(sql, a, m, &r->c, NULL);
        return;
    }
    ds_buf_puts(sql, " WHERE ds_rowhas(rowid)");
    for (int k = 0; k < m->ndims; k++) {
        int32_t x = r->c.m[k];
        if (x == m->dims[k].root)
            continue;
        ds_buf_puts(sql, " AND ");
        store__column(sql, 'd', m->dims[k].id);
        ds_buf_puts(sql, " BETWEEN ? AND ?");
        store__arg(a, m->dims[k].id_min[x]);
        store__arg(a, m->dims[k].id_max[x]);
    }
}

static int run_sql(ds_store *s, const ds_buf *sql, const sql_args *a, ds_error *err)
{
    duckdb_prepared_statement st = NULL;
    int rc = store__prepare(s->con, sql->data, &st, err);
    if (rc == 0) {
        rc = store__bind_args(st, a, 1, err);
        if (rc == 0)
            rc = store__run(st, NULL, err);
        duckdb_destroy_prepare(&st);
    }
    return rc;
}

/* The leaf log of the rows about to change, read from the facts before the
 * UPDATE (one parallel scan; faster than appending from C). */
static int log_rows(ds_store *s, const region *r, const ds_write *w, int64_t seq, bool every_row,
                    ds_error *err)
{
    const ds_model *m = r->m;
    const ds_measure *ms = &m->measures[w->measure];
    ds_buf sql;
    sql_args a = {0};
    ds_buf_init(&sql, 1 << 20);
    ds_buf_puts(&sql, "INSERT INTO ");
    store__table(&sql, 'l', m->id);
    ds_buf_printf(&sql, " SELECT %" PRId64 ", %" PRId32, seq, ms->id);
    for (int k = 0; k < m->ndims; k++) {
        ds_buf_puts(&sql, ", ");
        store__column(&sql, 'd', m->dims[k].id);
    }
    ds_buf_printf(&sql, ", COALESCE(ds_raw_%d(", ms->scale);
    store__column(&sql, 'm', ms->id);
    ds_buf_puts(&sql, "), 0), ds_rowraw(rowid) FROM ");
    store__table(&sql, 'f', m->id);
    where_changed(&sql, &a, r, every_row);
    int rc = run_sql(s, &sql, &a, err);
    ds_buf_free(&sql);
    store__args_free(&a);
    return rc;
}

/* Logs, then UPDATEs the rows through the rowid map; appends the cells
 * without a row. */
static int write_spread(ds_store *s, const region *r, const ds_write *w, const cellset *cs,
                        const int64_t *nv, int64_t seq, ds_error *err)
{
    const ds_model *m = r->m;
    const ds_measure *ms = &m->measures[w->measure];
    size_t nup = 0, nins = 0, rows = 0;
    for (size_t i = 0; i < cs->n; i++) {
        rows += cs->rowid[i] >= 0;
        if (nv[i] == cs->value[i])
            continue;
        if (cs->rowid[i] >= 0)
            nup++;
        else
            nins++;
    }
    bool every_row = nup == rows;
    int rc = 0;
    if (nup) {
        int64_t *rid = xmalloc_array(nup, sizeof *rid), *val = xmalloc_array(nup, sizeof *val);
        size_t j = 0;
        for (size_t i = 0; i < cs->n; i++)
            if (nv[i] != cs->value[i] && cs->rowid[i] >= 0) {
                rid[j] = cs->rowid[i];
                val[j++] = nv[i];
            }
        store__rowmap_set(&s->rows, rid, val, nup);
        free(rid);
        free(val);
        if (s->opts.leaf_log)
            rc = log_rows(s, r, w, seq, every_row, err);
        ds_buf sql;
        sql_args a = {0};
        ds_buf_init(&sql, 1 << 20);
        ds_buf_puts(&sql, "UPDATE ");
        store__table(&sql, 'f', m->id);
        ds_buf_puts(&sql, " SET ");
        store__column(&sql, 'm', ms->id);
        ds_buf_printf(&sql, " = ds_rowval_%d(rowid), ", ms->scale);
        store__column(&sql, 's', ms->id);
        ds_buf_printf(&sql, " = %" PRId64, seq);
        where_changed(&sql, &a, r, every_row);
        if (rc == 0)
            rc = run_sql(s, &sql, &a, err);
        ds_buf_free(&sql);
        store__args_free(&a);
        store__rowmap_free(&s->rows);
    }
    if (rc == 0 && nins)
        rc = insert_cells(s, r, w, cs, nv, seq, err);
    return rc;
}

/* The leaf log of the cells that had no row (they were appended). */
static int log_cells(ds_store *s, const region *r, const ds_write *w, const cellset *cs,
                     const int64_t *nv, int64_t seq, ds_error *err)
{
    if (!s->opts.leaf_log)
        return 0;
    const ds_model *m = r->m;
    chunk_app app;
    int rc = store__log_open(s, m, &app, err);
    int16_t mid = (int16_t)m->measures[w->measure].id;
    size_t nk = (size_t)r->nk;
    int64_t *cseq = NULL, *cold = NULL, *cnew = NULL;
    int16_t *cmeas = NULL;
    int32_t *cdim[DS_MAX_DIMS];
    for (size_t i = 0; rc == 0 && i < cs->n; i++) {
        if (nv[i] == cs->value[i] || cs->rowid[i] >= 0)
            continue;
        if (app.n == 0) { /* a fresh chunk: its column pointers */
            cseq = store__chunk_col(&app, 0);
            cmeas = store__chunk_col(&app, 1);
            for (int k = 0; k < m->ndims; k++)
                cdim[k] = store__chunk_col(&app, 2 + k);
            cold = store__chunk_col(&app, 2 + m->ndims);
            cnew = store__chunk_col(&app, 3 + m->ndims);
        }
        idx_t row = app.n;
        cseq[row] = seq;
        cmeas[row] = mid;
        for (int k = 0; k < m->ndims; k++)
            cdim[k][row] = r->c.m[k];
        for (size_t j = 0; j < nk; j++)
            cdim[r->kdim[j]][row] = cell_member(r, cs, i, (int)j);
        cold[row] = cs->value[i];
        cnew[row] = nv[i];
        rc = store__chunk_end_row(&app, err);
    }
    if (rc == 0)
        rc = store__chunk_close(&app, false, err);
    else
        store__chunk_close(&app, true, NULL);
    return rc;
}

/* The target's children one level down in each consolidated dimension,
 * then the changed leaves (sorted by cell) not listed yet (with one
 * consolidated dimension a child can be a leaf), into the change list. */
static void add_children_and_leaves(const region *r, const ds_write *w, const cellset *cs,
                                    const int64_t *nv, change_list *out)
{
    for (int j = 0; j < r->nk && !out->cs->truncated; j++) {
        const ds_dim *d = &r->m->dims[r->kdim[j]];
        int32_t top = r->c.m[r->kdim[j]];
        int32_t nkids = d->kid_start[top + 1] - d->kid_start[top];
        ds_i128 *old_s = xcalloc((size_t)nkids, sizeof *old_s);
        ds_i128 *new_s = xcalloc((size_t)nkids, sizeof *new_s);
        /* local node -> index of the child of top above it */
        const spread_tree *t = &r->trees[j];
        int32_t *kid_of = xmalloc_array((size_t)t->n, sizeof *kid_of);
        kid_of[0] = -1;
        for (int32_t x = 1, next = 0; x < t->n; x++)
            kid_of[x] = t->parent[x] == 0 ? next++ : kid_of[t->parent[x]];
        for (size_t i = 0; i < cs->n; i++) {
            int32_t kx = kid_of[cs->coord[i * (size_t)r->nk + (size_t)j]];
            old_s[kx] += cs->value[i];
            new_s[kx] += nv[i];
        }
        for (int32_t c = 0; c < nkids; c++) {
            if (old_s[c] == new_s[c])
                continue;
            ds_cell cell = r->c;
            cell.m[r->kdim[j]] = d->kids[d->kid_start[top] + c];
            store__list_add(out, &cell, w->measure, old_s[c], new_s[c]);
        }
        free(kid_of);
        free(old_s);
        free(new_s);
    }
    for (size_t i = 0; i < cs->n && !out->cs->truncated; i++) {
        if (nv[i] == cs->value[i])
            continue;
        ds_cell cell = r->c;
        for (int j = 0; j < r->nk; j++)
            cell.m[r->kdim[j]] = cell_member(r, cs, i, j);
        if (r->nk == 1) {
            int32_t dim = r->kdim[0];
            if (r->m->dims[dim].members[cell.m[dim]].parent == r->c.m[dim])
                continue; /* listed as a child */
        }
        store__list_add(out, &cell, w->measure, cs->value[i], nv[i]);
    }
}

/* Decides a spread completely in C: plan, cells, apportionment, if_seq. */
static int decide_spread(ds_store *s, const region *r, const ds_command *cmd, const ds_write *w,
                         int64_t seq, cellset *cs, int64_t **nv, spread_plan *plan,
                         spread_totals *tot, ds_i128 *after, ds_error *err)
{
    int rc = read_region(s, r, w->measure, cmd->if_seq >= 0, cs, err);
    if (rc)
        return rc;
    mark_held(r, w, cs);
    spread_cells cells = {.n = cs->n,
                          .ntrees = r->nk,
                          .trees = r->trees,
                          .coord = cs->coord,
                          .value = cs->value,
                          .held = cs->held};
    spread_totals_of(&cells, tot);
    spread_params p = {.method = w->method,
                       .form = w->form,
                       .amount = w->amount,
                       .pct_scale = w->pct_scale,
                       .seq = (uint64_t)seq,
                       .leaf_max = DEC_LEAF_MAX};
    if ((rc = spread_plan_make(&p, tot, plan, err)))
        return rc;
    if (plan->dense && (rc = densify(r, w, s->opts.create_cap, cs, err)))
        return rc;
    cells = (spread_cells){.n = cs->n,
                           .ntrees = r->nk,
                           .trees = r->trees,
                           .coord = cs->coord,
                           .value = cs->value,
                           .held = cs->held};
    *nv = xmalloc_array(cs->n ? cs->n : 1, sizeof **nv);
    if ((rc = spread_apportion(&p, plan, &cells, *nv, after, err)))
        return rc;
    if (cmd->if_seq >= 0) {
        if ((rc = check_structure(r->m, &r->c, cmd->if_seq, seq - 1, err)))
            return rc;
        for (size_t i = 0; i < cs->n; i++)
            if ((*nv)[i] != cs->value[i] && cs->stamp[i] > cmd->if_seq && cs->stamp[i] != seq)
                return stale(err, cmd->if_seq, seq - 1);
    }
    return 0;
}

/* Keeps the fast path's index and cube exact after a spread, or drops
 * them when the spread changed too many leaves to note one by one. */
static void note_spread(model_slot *slot, const region *r, const ds_write *w, const cellset *cs,
                        const int64_t *nv, int64_t seq, int64_t changed)
{
    if (!slot->fast.idx.valid)
        return;
    if (changed > STORE_NOTE_MAX) {
        store__fast_drop(slot);
        return;
    }
    int32_t full[DS_MAX_DIMS];
    for (size_t i = 0; i < cs->n; i++) {
        if (nv[i] == cs->value[i])
            continue;
        full_cell(r, cs, i, full);
        store__fast_note(slot, r->m, w->measure, full, cs->value[i], nv[i], seq);
    }
}

static int apply_spread(ds_store *s, model_slot *slot, const ds_command *cmd, const ds_write *w,
                        int64_t seq, bool *wrote, change_list *out, ds_error *err)
{
    region r;
    cellset cs = {0};
    int64_t *nv = NULL;
    spread_plan plan;
    spread_totals tot;
    ds_i128 after = 0;
    region_init(&r, store__current(slot), &w->cell);
    cs.nk = r.nk;
    int rc = decide_spread(s, &r, cmd, w, seq, &cs, &nv, &plan, &tot, &after, err);
    if (rc == 0) {
        ds_changeset *c = out->cs;
        c->method = plan.method;
        c->target = (ds_change){
            .cell = w->cell, .measure = w->measure, .old_value = tot.total, .new_value = after};
        for (size_t i = 0; i < cs.n; i++)
            c->leaves_changed += nv[i] != cs.value[i];
        if (c->leaves_changed) {
            *wrote = true;
            rc = write_spread(s, &r, w, &cs, nv, seq, err);
            if (rc == 0)
                rc = log_cells(s, &r, w, &cs, nv, seq, err);
            if (rc == 0)
                note_spread(slot, &r, w, &cs, nv, seq, c->leaves_changed);
        }
        if (rc == 0) {
            store__list_add(out, &w->cell, w->measure, tot.total, after);
            rc = store__add_above(s, slot, r.m, w, after - tot.total, out, err);
            add_children_and_leaves(&r, w, &cs, nv, out);
        }
    }
    free(nv);
    cellset_free(&cs);
    region_free(&r);
    return rc;
}

/* ---- commands ---------------------------------------------------------------- */

static const char *form_name(spread_form f)
{
    return f == SPREAD_DELTA ? "delta" : f == SPREAD_PERCENT ? "percent" : "value";
}

static void target_text(const ds_model *m, const ds_cell *c, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int k = 0; k < m->ndims && o < n; k++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRId32, k ? "," : "", c->m[k]);
}

int store__log_write(ds_store *s, model_slot *slot, const ds_command *cmd, int64_t seq, int64_t ts,
                     size_t part, const ds_changeset *cs, ds_error *err)
{
    const ds_model *m = store__current(slot);
    const ds_write *w = &cmd->writes[part];
    char target[DS_MAX_DIMS * 12 + 1], amount[DEC_BUFSZ];
    target_text(m, &w->cell, target, sizeof target);
    dec_format(w->amount, w->form == SPREAD_PERCENT ? w->pct_scale : m->measures[w->measure].scale,
               amount);
    command_row row = {.part = (int)part,
                       .kind = cs->leaf ? "leaf" : "spread",
                       .measure_id = m->measures[w->measure].id,
                       .target = target,
                       .method = spread_method_name(cs->method),
                       .form = form_name(w->form),
                       .amount = amount,
                       .has_values = true,
                       .old_value = cs->target.old_value,
                       .new_value = cs->target.new_value,
                       .leaves_changed = cs->leaves_changed};
    return store__log_command(s, slot, cmd, seq, ts, &row, err);
}

static int apply_writes(ds_store *s, model_slot *slot, const ds_command *cmd, int64_t seq,
                        ds_outcome *out, ds_error *err)
{
    const ds_model *m = store__current(slot);
    if (cmd->nwrites == 0)
        return ds_fail(err, DS_INVALID_VALUE, "cells", "the command has no writes");
    out->sets = xcalloc(cmd->nwrites, sizeof *out->sets);
    out->nsets = cmd->nwrites;
    bool wrote = false;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < cmd->nwrites; i++) {
        const ds_write *w = &cmd->writes[i];
        if (w->measure < 0 || w->measure >= m->nmeasures)
            rc = ds_fail(err, DS_NOT_FOUND, "column", "no such measure");
        if (rc == 0)
            rc = check_cell(m, &w->cell, err);
        for (int h = 0; rc == 0 && h < w->nholds; h++)
            rc = check_hold(m, &w->holds[h], err);
        if (rc)
            break;
        change_list list = {.cs = &out->sets[i], .cap = s->opts.change_cap};
        if (cell_is_leaf(m, &w->cell)) {
            rc = apply_leaf(s, slot, cmd, w, seq, &wrote, out->sets + i, err);
            if (rc == 0) {
                ds_changeset *c = out->sets + i;
                store__list_add(&list, &w->cell, w->measure, c->target.old_value,
                                c->target.new_value);
                rc = store__add_above(s, slot, m, w, c->target.new_value - c->target.old_value,
                                      &list, err);
            }
        } else {
            rc = apply_spread(s, slot, cmd, w, seq, &wrote, &list, err);
        }
        if (rc == 0)
            rc = store__log_write(s, slot, cmd, seq, out->ts_us, i, out->sets + i, err);
    }
    if (wrote)
        s->wrote = true;
    return rc;
}

int store_apply(ds_store *s, const char *model, const ds_command *cmd, ds_outcome *out,
                ds_error *err)
{
    memset(out, 0, sizeof *out);
    model_slot *slot = store__slot(s, model, strlen(model));
    if (!slot)
        return ds_fail(err, DS_NOT_FOUND, "table", "no model named '%s'", model);
    bool own = !s->in_txn;
    int rc = own ? store_txn_begin(s, err) : 0;
    if (rc)
        return rc;
    if (!slot->touched) {
        slot->touched = true;
        slot->work_seq = slot->seq;
    }
    int64_t seq = slot->work_seq + 1;
    out->seq = seq;
    s->wrote = false;
    out->ts_us = now_us();
    if (cmd->if_seq > seq - 1) { /* a seq the model has not reached: the client's is no read */
        rc = ds_fail(err, DS_STALE, "if_seq",
                     "if_seq %" PRId64 " is above the model's seq %" PRId64, cmd->if_seq, seq - 1);
        if (err) {
            err->has_seq = true;
            err->seq = seq - 1;
        }
    } else if (store__fast_eligible(s, slot, cmd)) {
        rc = store__fast_apply(s, slot, cmd, seq, out, err);
    } else {
        rc = store__fast_flush(s, slot, err); /* DuckDB must see queued writes */
        if (rc == 0 && cmd->kind == COMMAND_WRITE)
            rc = apply_writes(s, slot, cmd, seq, out, err);
        else if (rc == 0)
            rc = store__apply_member(s, slot, cmd, seq, out->ts_us, err);
        if (cmd->kind == COMMAND_MEMBER || (rc && s->wrote))
            store__fast_drop(slot); /* rebuilt on the next leaf write */
    }
    if (rc == 0)
        slot->fast.pending_seq = seq; /* ds_model.seq is written by the flush */

    if (rc == 0)
        slot->work_seq = seq;
    else if (s->wrote)
        s->poisoned = true; /* failed after writing: the group must not commit */
    if (own) {
        if (rc == 0)
            rc = store_txn_commit(s, err);
        else
            store_txn_rollback(s);
    }
    if (rc)
        outcome_clear(out);
    return rc;
}
