/* store_fast.c: the fast path for leaf writes inside a group. Each model
 * keeps in memory an index of its facts (cell -> value, stamp per measure
 * and DuckDB rowid) and a cube with the total of every member combination,
 * both built from one scan when first needed. A leaf write then costs a few
 * hash and array operations: it reads the old value from the index, the
 * cells above it from the cube, updates both and queues its changes; the
 * group's flush writes every queued change with a handful of set-based
 * statements (an UPDATE of the listed rowids, checked against their cells;
 * a join with the ds_pending table function for rows whose rowid is not
 * known yet; one append each for new facts, the leaf log and the command
 * rows). Rowids of appended rows are learnt after the COMMIT.
 *
 * Spreads and member operations flush first and go through DuckDB; a
 * spread then notes its changed leaves (small ones) or drops the index
 * (big ones, rebuilt on the next leaf write); a member operation or a
 * rollback always drops it. Part of the store (see store.h). */
#include "store_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "log.h"

/* ---- packing cells -------------------------------------------------------------- */

static int bits_for(int32_t n)
{
    int b = 1;
    while (b < 31 && ((int32_t)1 << b) <= n)
        b++;
    return b;
}

/* Bit offsets per dimension, sized for room to grow; false when the model's
 * cells do not fit 63 bits (no fast path then). */
static bool plan_packing(const ds_model *m, int *shift)
{
    int total = 0;
    for (int k = m->ndims - 1; k >= 0; k--) {
        shift[k] = total;
        total += bits_for(m->dims[k].nmembers * 2 + 64);
    }
    return total <= 63;
}

static uint64_t pack(const fact_index *x, const ds_model *m, const int32_t *cell)
{
    uint64_t key = 0;
    for (int k = 0; k < m->ndims; k++)
        key |= (uint64_t)(uint32_t)cell[k] << x->shift[k];
    return key + 1;
}

static bool fits(const fact_index *x, const ds_model *m, const int32_t *cell)
{
    for (int k = 0; k < m->ndims; k++) {
        int width = (k ? x->shift[k - 1] : 63) - x->shift[k];
        if (cell[k] < 0 || (int64_t)cell[k] >= ((int64_t)1 << (width < 31 ? width : 31)))
            return false;
    }
    return true;
}

/* ---- the index -------------------------------------------------------------------- */

static void index_free(fact_index *x)
{
    free(x->keys);
    free(x->val);
    free(x->stamp);
    free(x->has);
    free(x->rowid);
    memset(x, 0, sizeof *x);
}

static size_t find_slot(const fact_index *x, uint64_t key)
{
    size_t i = (size_t)ds_mix64(key) & (x->cap - 1);
    while (x->keys[i] && x->keys[i] != key)
        i = (i + 1) & (x->cap - 1);
    return i;
}

static void index_alloc(fact_index *x, size_t cap, int nm)
{
    x->cap = cap;
    x->n = 0;
    x->keys = xcalloc(cap, sizeof *x->keys);
    x->val = xcalloc(cap * (size_t)nm, sizeof *x->val);
    x->stamp = xcalloc(cap * (size_t)nm, sizeof *x->stamp);
    x->has = xcalloc(cap * (size_t)nm, 1);
    x->rowid = xmalloc_array(cap, sizeof *x->rowid);
    for (size_t i = 0; i < cap; i++)
        x->rowid[i] = -1;
}

static void index_grow(fact_index *x, int nm)
{
    fact_index old = *x;
    index_alloc(x, old.cap * 2, nm);
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.keys[i])
            continue;
        size_t j = find_slot(x, old.keys[i]);
        x->keys[j] = old.keys[i];
        memcpy(x->val + j * (size_t)nm, old.val + i * (size_t)nm, (size_t)nm * sizeof *x->val);
        memcpy(x->stamp + j * (size_t)nm, old.stamp + i * (size_t)nm,
               (size_t)nm * sizeof *x->stamp);
        memcpy(x->has + j * (size_t)nm, old.has + i * (size_t)nm, (size_t)nm);
        x->rowid[j] = old.rowid[i];
        x->n++;
    }
    x->valid = true;
    x->max_rowid = old.max_rowid;
    memcpy(x->shift, old.shift, sizeof x->shift);
    free(old.keys);
    free(old.val);
    free(old.stamp);
    free(old.has);
    free(old.rowid);
}

/* The slot of key, inserted (without values) when absent. */
static size_t index_put(fact_index *x, uint64_t key, int nm, bool *inserted)
{
    if ((x->n + 1) * 2 > x->cap)
        index_grow(x, nm);
    size_t i = find_slot(x, key);
    *inserted = !x->keys[i];
    if (*inserted) {
        x->keys[i] = key;
        x->n++;
    }
    return i;
}

/* ---- the cube ---------------------------------------------------------------------- */

static void cube_free(agg_cube *c)
{
    for (int k = 0; k < DS_MAX_DIMS; k++)
        free(c->ix[k]);
    free(c->tot);
    memset(c, 0, sizeof *c);
}

static bool cube_alloc(agg_cube *c, const ds_model *m, size_t budget)
{
    size_t size = 1;
    for (int k = m->ndims - 1; k >= 0; k--) {
        const ds_dim *d = &m->dims[k];
        c->stride[k] = size;
        c->ix[k] = xmalloc_array((size_t)d->nmembers + 1, sizeof *c->ix[k]);
        for (int32_t j = 0; j < d->nmembers; j++)
            c->ix[k][j] = -1;
        for (int32_t p = 0; p < d->npre; p++)
            c->ix[k][d->pre[p]] = p;
        if (size > budget / (size_t)d->npre)
            return false;
        size *= (size_t)d->npre;
    }
    if (size > budget / sizeof(int64_t) / (size_t)m->nmeasures)
        return false;
    c->size = size;
    c->tot = xcalloc(size * (size_t)m->nmeasures, sizeof *c->tot);
    return true;
}

/* Adds delta to every cell above (and at) the leaf cell; false on int64
 * overflow (the cube is then dropped). */
static bool cube_add(agg_cube *c, const ds_model *m, int measure, const int32_t *leaf,
                     int64_t delta)
{
    int64_t *tot = c->tot + (size_t)measure * c->size;
    /* walk every combination of ancestors-or-self, odometer style */
    int32_t cur[DS_MAX_DIMS];
    size_t at = 0;
    for (int k = 0; k < m->ndims; k++) {
        cur[k] = leaf[k];
        at += (size_t)c->ix[k][leaf[k]] * c->stride[k];
    }
    bool ok = true;
    for (;;) {
        ok &= !__builtin_add_overflow(tot[at], delta, &tot[at]);
        int k = m->ndims - 1;
        for (; k >= 0; k--) {
            int32_t p = m->dims[k].members[cur[k]].parent;
            at -= (size_t)c->ix[k][cur[k]] * c->stride[k];
            if (p >= 0) {
                cur[k] = p;
                at += (size_t)c->ix[k][p] * c->stride[k];
                break;
            }
            cur[k] = leaf[k];
            at += (size_t)c->ix[k][leaf[k]] * c->stride[k];
        }
        if (k < 0)
            return ok;
    }
}

bool store__cube_total(model_slot *slot, const ds_model *m, int measure, const int32_t *cell,
                       int64_t *out)
{
    agg_cube *c = &slot->fast.cube;
    if (!c->valid)
        return false;
    size_t at = 0;
    for (int k = 0; k < m->ndims; k++) {
        if (cell[k] < 0 || cell[k] >= m->dims[k].nmembers || c->ix[k][cell[k]] < 0)
            return false;
        at += (size_t)c->ix[k][cell[k]] * c->stride[k];
    }
    *out = c->tot[(size_t)measure * c->size + at];
    return true;
}

/* DuckDB numbers the rows a transaction appends from here on (its
 * MAX_ROW_ID) until COMMIT gives them their place in the table. */
#define LOCAL_ROWID INT64_C(36028797018960000)

/* ---- building both from one scan ------------------------------------------------------ */

static int build(ds_store *s, model_slot *slot, ds_error *err)
{
    const ds_model *m = store__current(slot);
    fast_state *f = &slot->fast;

    index_free(&f->idx);
    cube_free(&f->cube);
    if (!plan_packing(m, f->idx.shift))
        return ds_fail(err, DS_INTERNAL, NULL, "cells of '%s' do not pack into 63 bits", m->name);
    ds_buf sql;
    ds_buf_init(&sql, 1 << 16);
    ds_buf_puts(&sql, "SELECT count(*) FROM ");
    store__table(&sql, 'f', m->id);
    duckdb_result res;
    int64_t rows = 0;
    if (duckdb_query(s->con, sql.data, &res) == DuckDBSuccess) {
        ds_i128 v;
        if (store__scalar_i128(&res, &v, NULL) == 0)
            rows = (int64_t)v;
    }
    duckdb_destroy_result(&res);
    size_t cap = 1024;
    while (cap < (size_t)rows * 2 + 1024)
        cap *= 2;
    int shift[DS_MAX_DIMS];
    memcpy(shift, f->idx.shift, sizeof shift);
    index_alloc(&f->idx, cap, m->nmeasures);
    memcpy(f->idx.shift, shift, sizeof shift);
    bool with_cube = cube_alloc(&f->cube, m, s->cube_budget);
    f->idx.max_rowid = -1;
    ds_buf_reset(&sql);
    ds_buf_puts(&sql, "SELECT rowid, ");
    for (int k = 0; k < m->ndims; k++) {
        store__column(&sql, 'd', m->dims[k].id);
        ds_buf_puts(&sql, ", ");
    }
    for (int q = 0; q < m->nmeasures; q++) {
        store__column(&sql, 'm', m->measures[q].id);
        ds_buf_puts(&sql, ", ");
        store__column(&sql, 's', m->measures[q].id);
        ds_buf_puts(&sql, q + 1 < m->nmeasures ? ", " : "");
    }
    ds_buf_puts(&sql, " FROM ");
    store__table(&sql, 'f', m->id);
    int rc = 0;
    if (duckdb_query(s->con, sql.data, &res) == DuckDBError) {
        rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(&res));
    } else {
        row_iter it;
        store__rows_init(&it, &res);
        int32_t cell[DS_MAX_DIMS];
        bool ok = true;
        idx_t n;
        while ((n = store__chunk_next(&it)) > 0) {
            for (idx_t i = 0; i < n; i++) {
                for (int k = 0; k < m->ndims; k++)
                    cell[k] = ((int32_t *)store__chunk_data(&it, (idx_t)k + 1))[i];
                bool ins;
                size_t at = index_put(&f->idx, pack(&f->idx, m, cell), m->nmeasures, &ins);
                int64_t rowid = ((int64_t *)store__chunk_data(&it, 0))[i];
                if (rowid >= LOCAL_ROWID) {
                    f->appended = true; /* learnt after the COMMIT */
                } else {
                    f->idx.rowid[at] = rowid;
                    if (rowid > f->idx.max_rowid)
                        f->idx.max_rowid = rowid;
                }
                for (int q = 0; q < m->nmeasures; q++) {
                    idx_t cv = (idx_t)(m->ndims + 1 + 2 * q);
                    uint64_t *valid = store__chunk_valid(&it, cv);
                    if (valid && !duckdb_validity_row_is_valid(valid, i))
                        continue;
                    int64_t v = ((int64_t *)store__chunk_data(&it, cv))[i];
                    uint64_t *sv = store__chunk_valid(&it, cv + 1);
                    size_t j = at * (size_t)m->nmeasures + (size_t)q;
                    f->idx.val[j] = v;
                    f->idx.has[j] = 1;
                    f->idx.stamp[j] = !sv || duckdb_validity_row_is_valid(sv, i)
                                          ? ((int64_t *)store__chunk_data(&it, cv + 1))[i]
                                          : 0;
                    if (with_cube)
                        ok &= cube_add(&f->cube, m, q, cell, v);
                }
            }
        }
        store__rows_done(&it);
        with_cube &= ok;
    }
    duckdb_destroy_result(&res);
    ds_buf_free(&sql);
    if (rc) {
        index_free(&f->idx);
        cube_free(&f->cube);
        return rc;
    }
    f->idx.valid = true;
    f->cube.valid = with_cube;
    if (!with_cube)
        cube_free(&f->cube);
    return 0;
}

void store__fast_drop(model_slot *slot)
{
    index_free(&slot->fast.idx);
    cube_free(&slot->fast.cube);
}

static void clear_pending(fast_state *f)
{
    for (size_t i = 0; i < f->npc; i++) {
        pending_command *c = &f->pc[i];
        free(c->user);
        free(c->rid);
        free(c->kind);
        free(c->target);
        free(c->method);
        free(c->form);
        free(c->amount);
        free(c->detail);
    }
    f->npw = f->npc = 0;
    f->pending_seq = -1;
}

void store__fast_free(model_slot *slot)
{
    clear_pending(&slot->fast);
    free(slot->fast.pw);
    free(slot->fast.pc);
    store__fast_drop(slot);
}

void store__fast_note(model_slot *slot, const ds_model *m, int measure, const int32_t *cell,
                      int64_t old_value, int64_t new_value, int64_t seq)
{
    fast_state *f = &slot->fast;
    if (!f->idx.valid)
        return;
    if (!fits(&f->idx, m, cell)) {
        store__fast_drop(slot);
        return;
    }
    bool ins;
    size_t at = index_put(&f->idx, pack(&f->idx, m, cell), m->nmeasures, &ins);
    f->appended |= ins;
    size_t j = at * (size_t)m->nmeasures + (size_t)measure;
    f->idx.val[j] = new_value;
    f->idx.has[j] = 1;
    f->idx.stamp[j] = seq;
    if (f->cube.valid && !cube_add(&f->cube, m, measure, cell, new_value - old_value))
        cube_free(&f->cube);
}

/* ---- leaf writes ------------------------------------------------------------------------ */

bool store__fast_eligible(ds_store *s, model_slot *slot, const ds_command *cmd)
{
    const ds_model *m = store__current(slot);
    if (!s->in_txn || s->opts.no_fast_path || cmd->kind != COMMAND_WRITE || cmd->nwrites == 0)
        return false;
    int shift[DS_MAX_DIMS];
    if (!plan_packing(m, shift))
        return false;
    for (size_t i = 0; i < cmd->nwrites; i++) {
        const ds_write *w = &cmd->writes[i];
        if (w->measure < 0 || w->measure >= m->nmeasures || w->nholds)
            return false;
        for (int k = 0; k < m->ndims; k++) {
            const ds_dim *d = &m->dims[k];
            int32_t x = w->cell.m[k];
            if (x < 0 || x >= d->nmembers || !d->members[x].alive || !model_is_leaf(d, x))
                return false;
        }
    }
    return true;
}

static void queue_write(fast_state *f, const pending_write *p)
{
    if (f->npw == f->pw_alloc) {
        f->pw_alloc = f->pw_alloc ? 2 * f->pw_alloc : 256;
        f->pw = xrealloc(f->pw, f->pw_alloc * sizeof *f->pw);
    }
    f->pw[f->npw++] = *p;
}

/* Decides every write of the command first (a refusal changes nothing),
 * then applies them to the index and cube and queues them. */
static int decide(model_slot *slot, const ds_model *m, const ds_command *cmd, int64_t seq,
                  int64_t *newv, ds_error *err)
{
    fact_index *x = &slot->fast.idx;
    int nm = m->nmeasures;
    for (size_t i = 0; i < cmd->nwrites; i++) {
        const ds_write *w = &cmd->writes[i];
        /* the old value: an earlier write of this command, else the index */
        int64_t old = 0, stamp = 0;
        bool found = false;
        for (size_t p = i; p-- > 0 && !found;)
            if (memcmp(&cmd->writes[p].cell, &w->cell, sizeof w->cell) == 0 &&
                cmd->writes[p].measure == w->measure) {
                old = newv[p];
                stamp = seq;
                found = true;
            }
        if (!found) {
            size_t at = find_slot(x, pack(x, m, w->cell.m));
            if (x->keys[at]) {
                old = x->val[at * (size_t)nm + (size_t)w->measure];
                stamp = x->stamp[at * (size_t)nm + (size_t)w->measure];
            }
        }
        int rc = store__leaf_value(w, old, &newv[i], err);
        if (rc)
            return rc;
        if (cmd->if_seq >= 0) {
            for (int k = 0; k < m->ndims; k++)
                if (m->dims[k].members[w->cell.m[k]].struct_seq > cmd->if_seq) {
                    rc = ds_fail(err, DS_STALE, "cell",
                                 "the cell's members changed after seq "
                                 "%" PRId64,
                                 cmd->if_seq);
                    break;
                }
            if (rc == 0 && newv[i] != old && stamp > cmd->if_seq && stamp != seq)
                rc = ds_fail(err, DS_STALE, "cell",
                             "a cell this command would change was changed after seq %" PRId64,
                             cmd->if_seq);
            if (rc) {
                err->has_seq = true;
                err->seq = seq - 1;
                return rc;
            }
        }
    }
    return 0;
}

static void apply_write(model_slot *slot, const ds_model *m, const ds_write *w, int64_t nv,
                        int64_t seq, int64_t *old_out)
{
    fast_state *f = &slot->fast;
    int nm = m->nmeasures;
    uint64_t key = pack(&f->idx, m, w->cell.m);
    size_t at = find_slot(&f->idx, key);
    bool present = f->idx.keys[at] != 0; /* a row exists or this group queued one */
    size_t j = at * (size_t)nm + (size_t)w->measure;
    int64_t old = present && f->idx.has[j] ? f->idx.val[j] : 0;
    *old_out = old;
    if (nv == old)
        return; /* no change: no row either */
    bool existed = present;
    for (size_t p = 0; p < f->npw && existed; p++) /* a row this group created */
        if (f->pw[p].key == key && !f->pw[p].existed)
            existed = false;
    bool inserted;
    at = index_put(&f->idx, key, nm, &inserted);
    j = at * (size_t)nm + (size_t)w->measure;
    f->idx.val[j] = nv;
    f->idx.has[j] = 1;
    f->idx.stamp[j] = seq;
    if (f->cube.valid && !cube_add(&f->cube, m, w->measure, w->cell.m, nv - old))
        cube_free(&f->cube);
    pending_write p = {.key = key,
                       .cell = w->cell,
                       .measure = w->measure,
                       .old_value = old,
                       .new_value = nv,
                       .seq = seq,
                       .existed = existed};
    queue_write(f, &p);
}

static void queue_command(fast_state *f, const pending_command *c)
{
    if (f->npc == f->pc_alloc) {
        f->pc_alloc = f->pc_alloc ? 2 * f->pc_alloc : 256;
        f->pc = xrealloc(f->pc, f->pc_alloc * sizeof *f->pc);
    }
    f->pc[f->npc++] = *c;
}

int store__fast_apply(ds_store *s, model_slot *slot, const ds_command *cmd, int64_t seq,
                      ds_outcome *out, ds_error *err)
{
    const ds_model *m = store__current(slot);
    fast_state *f = &slot->fast;
    int rc = f->idx.valid ? 0 : build(s, slot, err);
    if (rc)
        return rc;
    int64_t *newv = xmalloc_array(cmd->nwrites, sizeof *newv);
    rc = decide(slot, m, cmd, seq, newv, err);
    out->sets = rc ? NULL : xcalloc(cmd->nwrites, sizeof *out->sets);
    out->nsets = rc ? 0 : cmd->nwrites;
    for (size_t i = 0; rc == 0 && i < cmd->nwrites; i++) {
        const ds_write *w = &cmd->writes[i];
        ds_changeset *cs = &out->sets[i];
        int64_t old;
        apply_write(slot, m, w, newv[i], seq, &old);
        cs->leaf = true;
        cs->method = w->method;
        cs->target = (ds_change){
            .cell = w->cell, .measure = w->measure, .old_value = old, .new_value = newv[i]};
        cs->leaves_changed = newv[i] != old;
        change_list list = {.cs = cs, .cap = s->opts.change_cap};
        store__list_add(&list, &w->cell, w->measure, old, newv[i]);
        rc = store__add_above(s, slot, m, w, newv[i] - old, &list, err);
        if (rc == 0)
            rc = store__log_write(s, slot, cmd, seq, out->ts_us, i, cs, err);
    }
    free(newv);
    if (rc == 0)
        f->pending_seq = seq;
    return rc;
}

static char *dup_or_null(const char *v)
{
    return v ? xstrdup(v) : NULL;
}

void store__fast_command(model_slot *slot, const pending_command *c)
{
    pending_command copy = *c;
    copy.user = dup_or_null(c->user);
    copy.rid = dup_or_null(c->rid);
    copy.kind = dup_or_null(c->kind);
    copy.target = dup_or_null(c->target);
    copy.method = dup_or_null(c->method);
    copy.form = dup_or_null(c->form);
    copy.amount = dup_or_null(c->amount);
    copy.detail = dup_or_null(c->detail);
    queue_command(&slot->fast, &copy);
}

/* ---- flushing ------------------------------------------------------------------------- */

/* ds_pending(scale): the rows the store put in s->exp, as (k BIGINT,
 * v DECIMAL(18, scale), st BIGINT, r BIGINT): packed cell, value, stamp
 * and rowid. */
typedef struct pending_pos {
    size_t at;
} pending_pos;

static void pending_bind(duckdb_bind_info info)
{
    duckdb_value v = duckdb_bind_get_parameter(info, 0);
    int32_t scale = duckdb_get_int32(v);
    duckdb_destroy_value(&v);
    if (scale < 0 || scale > 18) {
        duckdb_bind_set_error(info, "ds_pending: scale is 0 to 18");
        return;
    }
    duckdb_logical_type b = duckdb_create_logical_type(DUCKDB_TYPE_BIGINT);
    duckdb_logical_type d = duckdb_create_decimal_type(18, (uint8_t)scale);
    duckdb_bind_add_result_column(info, "k", b);
    duckdb_bind_add_result_column(info, "v", d);
    duckdb_bind_add_result_column(info, "st", b);
    duckdb_bind_add_result_column(info, "r", b);
    duckdb_destroy_logical_type(&b);
    duckdb_destroy_logical_type(&d);
}

static void pending_init(duckdb_init_info info)
{
    pending_pos *p = xcalloc(1, sizeof *p);
    duckdb_init_set_init_data(info, p, free);
    duckdb_init_set_max_threads(info, 1);
}

static void pending_fn(duckdb_function_info info, duckdb_data_chunk out)
{
    const pending_export *e = duckdb_function_get_extra_info(info);
    pending_pos *p = duckdb_function_get_init_data(info);
    size_t n = e->n - p->at;
    if (n > duckdb_vector_size())
        n = duckdb_vector_size();
    int64_t *k = duckdb_vector_get_data(duckdb_data_chunk_get_vector(out, 0));
    int64_t *v = duckdb_vector_get_data(duckdb_data_chunk_get_vector(out, 1));
    int64_t *st = duckdb_vector_get_data(duckdb_data_chunk_get_vector(out, 2));
    int64_t *r = duckdb_vector_get_data(duckdb_data_chunk_get_vector(out, 3));
    for (size_t i = 0; i < n; i++) {
        k[i] = (int64_t)e->keys[p->at + i];
        v[i] = e->vals[p->at + i];
        st[i] = e->seqs[p->at + i];
        r[i] = e->rowids[p->at + i];
    }
    p->at += n;
    duckdb_data_chunk_set_size(out, n);
}

int store__register_fast(ds_store *s, ds_error *err)
{
    duckdb_table_function tf = duckdb_create_table_function();
    duckdb_logical_type i = duckdb_create_logical_type(DUCKDB_TYPE_INTEGER);
    duckdb_table_function_set_name(tf, "ds_pending");
    duckdb_table_function_add_parameter(tf, i);
    duckdb_table_function_set_extra_info(tf, &s->exp, NULL);
    duckdb_table_function_set_bind(tf, pending_bind);
    duckdb_table_function_set_init(tf, pending_init);
    duckdb_table_function_set_function(tf, pending_fn);
    duckdb_state st = duckdb_register_table_function(s->con, tf);
    duckdb_destroy_logical_type(&i);
    duckdb_destroy_table_function(&tf);
    return st == DuckDBError ? ds_fail(err, DS_INTERNAL, NULL, "cannot register ds_pending") : 0;
}

/* The last queued write of each (key, measure): indexes into pw, by a
 * scan from the end with a small open-addressing set of pw indexes. */
static size_t *last_writes(const fast_state *f, size_t *n)
{
    size_t cap = 16;
    while (cap < f->npw * 2)
        cap *= 2;
    size_t *seen = xmalloc_array(cap, sizeof *seen);
    for (size_t j = 0; j < cap; j++)
        seen[j] = SIZE_MAX;
    size_t *out = xmalloc_array(f->npw + 1, sizeof *out);
    *n = 0;
    for (size_t i = f->npw; i-- > 0;) {
        const pending_write *p = &f->pw[i];
        size_t j = (size_t)ds_mix64(p->key ^ ((uint64_t)p->measure << 58)) & (cap - 1);
        while (seen[j] != SIZE_MAX &&
               !(f->pw[seen[j]].key == p->key && f->pw[seen[j]].measure == p->measure))
            j = (j + 1) & (cap - 1);
        if (seen[j] != SIZE_MAX)
            continue;
        seen[j] = i;
        out[(*n)++] = i;
    }
    free(seen);
    return out;
}

/* New rows: one per new key with the group's last value of each measure. */
static int insert_new_rows(ds_store *s, const ds_model *m, fast_state *f, const size_t *last,
                           size_t nlast, ds_error *err)
{
    size_t nnew = 0;
    for (size_t i = 0; i < nlast; i++)
        nnew += !f->pw[last[i]].existed;
    if (nnew == 0)
        return 0;
    f->appended = true; /* their rowids are learnt after the COMMIT */
    chunk_app app;
    int rc = store__facts_open(s, m, &app, err);
    bool *done = xcalloc(nlast, 1);
    for (size_t i = 0; rc == 0 && i < nlast; i++) {
        const pending_write *p = &f->pw[last[i]];
        if (p->existed || done[i])
            continue;
        for (int k = 0; k < m->ndims; k++)
            ((int32_t *)store__chunk_col(&app, k))[app.n] = p->cell.m[k];
        for (int q = 0; q < m->nmeasures; q++) {
            store__chunk_null(&app, m->ndims + 2 * q, true);
            store__chunk_null(&app, m->ndims + 2 * q + 1, true);
        }
        for (size_t j = i; j < nlast; j++) { /* every measure of this key */
            const pending_write *o = &f->pw[last[j]];
            if (o->key != p->key || o->existed)
                continue;
            done[j] = true;
            ((int64_t *)store__chunk_col(&app, m->ndims + 2 * o->measure))[app.n] = o->new_value;
            ((int64_t *)store__chunk_col(&app, m->ndims + 2 * o->measure + 1))[app.n] = o->seq;
            store__chunk_null(&app, m->ndims + 2 * o->measure, false);
            store__chunk_null(&app, m->ndims + 2 * o->measure + 1, false);
        }
        rc = store__chunk_end_row(&app, err);
    }
    free(done);
    return rc == 0 ? store__chunk_close(&app, false, err)
                   : (store__chunk_close(&app, true, NULL), rc);
}

/* ((d0 << s0) | (d1 << s1) | ...) + 1, the packed key of a fact row. */
static void packed_key_sql(ds_buf *b, const ds_model *m, const fact_index *x)
{
    ds_buf_puts(b, "((");
    for (int k = 0; k < m->ndims; k++) {
        ds_buf_puts(b, k ? " | (CAST(" : "(CAST(");
        store__column(b, 'd', m->dims[k].id);
        ds_buf_printf(b, " AS BIGINT) << %d)", x->shift[k]);
    }
    ds_buf_puts(b, ") + 1)");
}

/* Learns the rowids of rows committed after the index last looked (the
 * rows groups appended): one range scan of the table's tail, outside any
 * transaction, so that every row has its final rowid. */
static int learn_rowids(ds_store *s, const ds_model *m, fact_index *x, ds_error *err)
{
    ds_buf sql;
    ds_buf_init(&sql, 256);
    ds_buf_puts(&sql, "SELECT rowid");
    for (int k = 0; k < m->ndims; k++) {
        ds_buf_puts(&sql, ", ");
        store__column(&sql, 'd', m->dims[k].id);
    }
    ds_buf_puts(&sql, " FROM ");
    store__table(&sql, 'f', m->id);
    ds_buf_printf(&sql, " WHERE rowid > %" PRId64, x->max_rowid);
    duckdb_result res;
    int rc = 0;
    if (duckdb_query(s->con, sql.data, &res) == DuckDBError) {
        rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(&res));
    } else {
        row_iter it;
        store__rows_init(&it, &res);
        int32_t cell[DS_MAX_DIMS];
        idx_t n;
        while ((n = store__chunk_next(&it)) > 0) {
            const int64_t *rowid = store__chunk_data(&it, 0);
            for (idx_t i = 0; i < n; i++) {
                for (int k = 0; k < m->ndims; k++)
                    cell[k] = ((int32_t *)store__chunk_data(&it, (idx_t)k + 1))[i];
                if (!fits(x, m, cell))
                    continue;
                size_t at = find_slot(x, pack(x, m, cell));
                if (x->keys[at])
                    x->rowid[at] = rowid[i];
                if (rowid[i] > x->max_rowid)
                    x->max_rowid = rowid[i];
            }
        }
        store__rows_done(&it);
    }
    duckdb_destroy_result(&res);
    ds_buf_free(&sql);
    return rc;
}

/* UPDATE of measure q for the exported rows. by_rowid: the listed rowids
 * (DuckDB still scans for them) whose rows must still hold their cells;
 * when some do not, the rows are written again through the join and every
 * rowid is learnt anew. Otherwise joined on the packed cell. */
static int update_measure(ds_store *s, const ds_model *m, fast_state *f, int q, bool by_rowid,
                          ds_error *err)
{
    fact_index *x = &f->idx;
    const pending_export *e = &s->exp;
    ds_buf sql;
    ds_buf_init(&sql, 1024 + e->n * 24);
    ds_buf_puts(&sql, "UPDATE ");
    store__table(&sql, 'f', m->id);
    ds_buf_puts(&sql, " SET ");
    store__column(&sql, 'm', m->measures[q].id);
    if (!by_rowid) {
        ds_buf_puts(&sql, " = t.v, ");
        store__column(&sql, 's', m->measures[q].id);
        ds_buf_printf(&sql, " = t.st FROM ds_pending(%d) t WHERE ", m->measures[q].scale);
        packed_key_sql(&sql, m, x);
        ds_buf_puts(&sql, " = t.k");
        int rc = store__exec(s->con, sql.data, err);
        ds_buf_free(&sql);
        return rc;
    }
    ds_buf_printf(&sql, " = ds_rowval_%d(rowid), ", m->measures[q].scale);
    store__column(&sql, 's', m->measures[q].id);
    ds_buf_puts(&sql, " = ds_rowstamp(rowid) WHERE rowid IN (");
    for (size_t i = 0; i < e->n; i++)
        ds_buf_printf(&sql, "%s%" PRId64, i ? ", " : "", e->rowids[i]);
    ds_buf_puts(&sql, ") AND ds_rowkey(rowid) = ");
    packed_key_sql(&sql, m, x);
    int64_t *keys = xmalloc_array(e->n, sizeof *keys);
    for (size_t i = 0; i < e->n; i++)
        keys[i] = (int64_t)e->keys[i];
    store__rowmap_set(&s->rows, e->rowids, e->vals, e->n);
    store__rowmap_set(&s->stamps, e->rowids, e->seqs, e->n);
    store__rowmap_set(&s->keys, e->rowids, keys, e->n);
    free(keys);
    duckdb_result res;
    int rc = 0;
    bool moved = false;
    if (duckdb_query(s->con, sql.data, &res) == DuckDBError)
        rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(&res));
    else
        moved = duckdb_rows_changed(&res) != (idx_t)e->n;
    duckdb_destroy_result(&res);
    store__rowmap_free(&s->rows);
    store__rowmap_free(&s->stamps);
    store__rowmap_free(&s->keys);
    ds_buf_free(&sql);
    if (moved) {
        /* A checkpoint vacuumed deleted rows and renumbered the rest: write
         * the same rows again by their cells (rows already written get the
         * same values) and learn every rowid anew after the COMMIT. */
        log_info("fast path: rows of '%s' were renumbered; relearning their rowids", m->name);
        rc = update_measure(s, m, f, q, false, err);
        for (size_t i = 0; i < x->cap; i++)
            x->rowid[i] = -1;
        x->max_rowid = -1;
        f->appended = true;
    }
    return rc;
}

static int update_rows(ds_store *s, const ds_model *m, fast_state *f, const size_t *last,
                       size_t nlast, ds_error *err)
{
    fact_index *x = &f->idx;
    uint64_t *keys = xmalloc_array(nlast + 1, sizeof *keys);
    int64_t *vals = xmalloc_array(nlast + 1, sizeof *vals), *seqs = xmalloc_array(nlast + 1, 8);
    int64_t *rowids = xmalloc_array(nlast + 1, sizeof *rowids);
    int rc = 0;
    for (int q = 0; rc == 0 && q < m->nmeasures; q++) {
        for (int by_rowid = 1; rc == 0 && by_rowid >= 0; by_rowid--) {
            size_t n = 0;
            for (size_t i = 0; i < nlast; i++) {
                const pending_write *p = &f->pw[last[i]];
                if (!p->existed || p->measure != q)
                    continue;
                int64_t r = x->rowid[find_slot(x, p->key)];
                if ((r >= 0) != by_rowid)
                    continue;
                keys[n] = p->key;
                vals[n] = p->new_value;
                seqs[n] = p->seq;
                rowids[n++] = r;
            }
            if (n == 0)
                continue;
            s->exp = (pending_export){
                .n = n, .keys = keys, .vals = vals, .seqs = seqs, .rowids = rowids};
            rc = update_measure(s, m, f, q, by_rowid, err);
            s->exp = (pending_export){0};
        }
    }
    free(keys);
    free(vals);
    free(seqs);
    free(rowids);
    return rc;
}

static int append_log(ds_store *s, const ds_model *m, const fast_state *f, ds_error *err)
{
    if (!s->opts.leaf_log || f->npw == 0)
        return 0;
    chunk_app app;
    int rc = store__log_open(s, m, &app, err);
    for (size_t i = 0; rc == 0 && i < f->npw; i++) {
        const pending_write *p = &f->pw[i];
        ((int64_t *)store__chunk_col(&app, 0))[app.n] = p->seq;
        ((int16_t *)store__chunk_col(&app, 1))[app.n] = (int16_t)m->measures[p->measure].id;
        for (int k = 0; k < m->ndims; k++)
            ((int32_t *)store__chunk_col(&app, 2 + k))[app.n] = p->cell.m[k];
        ((int64_t *)store__chunk_col(&app, 2 + m->ndims))[app.n] = p->old_value;
        ((int64_t *)store__chunk_col(&app, 3 + m->ndims))[app.n] = p->new_value;
        rc = store__chunk_end_row(&app, err);
    }
    return rc == 0 ? store__chunk_close(&app, false, err)
                   : (store__chunk_close(&app, true, NULL), rc);
}

static void append_text(duckdb_appender ap, const char *v)
{
    if (v)
        duckdb_append_varchar(ap, v);
    else
        duckdb_append_null(ap);
}

static int append_commands(ds_store *s, const ds_model *m, const fast_state *f, ds_error *err)
{
    if (f->npc == 0)
        return 0;
    duckdb_appender ap;
    int rc = store__appender(s, "ds_command", &ap, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < f->npc; i++) {
        const pending_command *c = &f->pc[i];
        duckdb_append_int32(ap, m->id);
        duckdb_append_int64(ap, c->seq);
        duckdb_append_int32(ap, c->part);
        duckdb_append_timestamp(ap, (duckdb_timestamp){.micros = c->ts_us});
        append_text(ap, c->user);
        append_text(ap, c->rid);
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
    return store__appender_close(&ap, err);
}

int store__fast_flush(ds_store *s, model_slot *slot, ds_error *err)
{
    fast_state *f = &slot->fast;
    const ds_model *m = store__current(slot);
    if (f->npw == 0 && f->npc == 0 && f->pending_seq < 0)
        return 0;
    size_t nlast = 0, *last = xmalloc(1);
    int rc = 0;
    if (f->npw) {
        free(last);
        last = last_writes(f, &nlast);
        rc = update_rows(s, m, f, last, nlast, err);
        if (rc == 0)
            rc = insert_new_rows(s, m, f, last, nlast, err);
        if (rc == 0)
            rc = append_log(s, m, f, err);
    }
    free(last);
    if (rc == 0)
        rc = append_commands(s, m, f, err);
    if (rc == 0 && f->pending_seq >= 0) {
        if (!s->seq_update) /* prepared once: it is in every group */
            rc = store__prepare(s->con,
                                "UPDATE ds_model SET seq = ?, struct_seq = ? WHERE model_id = ?",
                                &s->seq_update, err);
        if (rc == 0) {
            duckdb_bind_int64(s->seq_update, 1, f->pending_seq);
            duckdb_bind_int64(s->seq_update, 2, m->struct_seq);
            duckdb_bind_int32(s->seq_update, 3, m->id);
            rc = store__run(s->seq_update, NULL, err);
        }
    }
    clear_pending(f);
    if (rc)
        store__fast_drop(slot);
    return rc;
}

void store__fast_committed(ds_store *s, model_slot *slot)
{
    fast_state *f = &slot->fast;
    if (!f->appended || !f->idx.valid)
        return;
    ds_error err;
    if (learn_rowids(s, store__current(slot), &f->idx, &err) == 0) {
        f->appended = false;
    } else {
        log_warn("dropping the fact index: %s", err.message);
        store__fast_drop(slot);
    }
}
