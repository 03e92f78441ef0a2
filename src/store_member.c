/* store_member.c: member operations (add, rename, move, delete). A leaf
 * that has facts keeps them only by naming the leaf that takes them
 * (facts_to); deleting a member with facts beneath it needs force, and its
 * facts go in the same transaction. Every
 * refusal is decided before anything is written. Part of the store. */
#include "store_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run_args(ds_store *s, const char *sql, const sql_args *a, ds_error *err)
{
    duckdb_prepared_statement st = NULL;
    int rc = store__prepare(s->con, sql, &st, err);
    if (rc == 0) {
        rc = store__bind_args(st, a, 1, err);
        if (rc == 0)
            rc = store__run(st, NULL, err);
        duckdb_destroy_prepare(&st);
    }
    return rc;
}

/* Facts (rows with any measure) at or beneath member x of dimension dim. */
static int count_facts(ds_store *s, const ds_model *m, int dim, int32_t x, int64_t *count,
                       ds_error *err)
{
    ds_buf sql;
    sql_args a = {0};
    ds_buf_init(&sql, 1 << 16);
    ds_buf_puts(&sql, "SELECT count(*) FROM ");
    store__table(&sql, 'f', m->id);
    ds_buf_puts(&sql, " WHERE ");
    store__in_subtree(&sql, &a, m, dim, x, NULL);
    duckdb_prepared_statement st = NULL;
    int rc = store__prepare(s->con, sql.data, &st, err);
    if (rc == 0) {
        duckdb_result res;
        rc = store__bind_args(st, &a, 1, err);
        if (rc == 0 && (rc = store__run(st, &res, err)) == 0) {
            ds_i128 v;
            rc = store__scalar_i128(&res, &v, err);
            *count = (int64_t)v;
            duckdb_destroy_result(&res);
        }
        duckdb_destroy_prepare(&st);
    }
    ds_buf_free(&sql);
    store__args_free(&a);
    return rc;
}

/* Writes the leaf log rows for facts of member `from` that now belong to
 * `to` (to < 0: they are deleted): old cell v -> 0, new cell 0 -> v. */
static int log_fact_moves(ds_store *s, const ds_model *m, int dim, int32_t from, int32_t to,
                          int64_t seq, ds_error *err)
{
    int rc = 0;
    for (int side = 0; rc == 0 && side < (to >= 0 ? 2 : 1); side++) {
        for (int q = 0; rc == 0 && q < m->nmeasures; q++) {
            ds_buf sql;
            sql_args a = {0};
            ds_buf_init(&sql, 1 << 16);
            ds_buf_puts(&sql, "INSERT INTO ");
            store__table(&sql, 'l', m->id);
            ds_buf_printf(&sql, " SELECT %" PRId64 ", %" PRId32, seq, m->measures[q].id);
            for (int k = 0; k < m->ndims; k++) {
                ds_buf_puts(&sql, ", ");
                if (k == dim && side == 1) {
                    ds_buf_puts(&sql, "?::INTEGER");
                    store__arg(&a, to);
                } else {
                    store__column(&sql, 'd', m->dims[k].id);
                }
            }
            ds_buf_puts(&sql, side == 0 ? ", " : ", 0, ");
            /* the value in minor units: m * 10^scale is exact */
            ds_buf_puts(&sql, "CAST(");
            store__column(&sql, 'm', m->measures[q].id);
            ds_buf_puts(&sql, " * 1");
            for (int z = 0; z < m->measures[q].scale; z++)
                ds_buf_putc(&sql, '0');
            ds_buf_puts(&sql, " AS BIGINT)");
            ds_buf_puts(&sql, side == 0 ? ", 0 FROM " : " FROM ");
            store__table(&sql, 'f', m->id);
            ds_buf_puts(&sql, " WHERE ");
            store__column(&sql, 'm', m->measures[q].id);
            ds_buf_puts(&sql, " IS NOT NULL AND ");
            store__in_subtree(&sql, &a, m, dim, from, NULL);
            rc = run_args(s, sql.data, &a, err);
            ds_buf_free(&sql);
            store__args_free(&a);
        }
    }
    return rc;
}

/* Re-points the facts of leaf `from` to leaf `to` (or deletes the facts at
 * or beneath `from` when to < 0). */
static int move_facts(ds_store *s, const ds_model *m, int dim, int32_t from, int32_t to,
                      int64_t seq, ds_error *err)
{
    s->wrote = true;
    int rc = s->opts.leaf_log ? log_fact_moves(s, m, dim, from, to, seq, err) : 0;
    ds_buf sql;
    sql_args a = {0};
    ds_buf_init(&sql, 1 << 16);
    if (to >= 0) {
        ds_buf_puts(&sql, "UPDATE ");
        store__table(&sql, 'f', m->id);
        ds_buf_puts(&sql, " SET ");
        store__column(&sql, 'd', m->dims[dim].id);
        ds_buf_puts(&sql, " = ?");
        store__arg(&a, to);
        for (int q = 0; q < m->nmeasures; q++) { /* the moved facts changed at this seq */
            ds_buf_puts(&sql, ", ");
            store__column(&sql, 's', m->measures[q].id);
            ds_buf_puts(&sql, " = CASE WHEN ");
            store__column(&sql, 'm', m->measures[q].id);
            ds_buf_printf(&sql, " IS NULL THEN NULL ELSE %" PRId64 " END", seq);
        }
        ds_buf_puts(&sql, " WHERE ");
    } else {
        ds_buf_puts(&sql, "DELETE FROM ");
        store__table(&sql, 'f', m->id);
        ds_buf_puts(&sql, " WHERE ");
        s->rows_deleted = true; /* a checkpoint may renumber rows (store_checkpoint) */
    }
    store__in_subtree(&sql, &a, m, dim, from, NULL);
    if (rc == 0)
        rc = run_args(s, sql.data, &a, err);
    ds_buf_free(&sql);
    store__args_free(&a);
    return rc;
}

static void bump(ds_dim *d, int32_t x, int64_t seq)
{
    for (; x >= 0; x = d->members[x].parent)
        d->members[x].struct_seq = seq;
}

static int32_t next_ordinal(const ds_dim *d, int32_t parent)
{
    int32_t o = 0;
    for (int32_t j = d->kid_start[parent]; j < d->kid_start[parent + 1]; j++)
        if (d->members[d->kids[j]].ordinal >= o)
            o = d->members[d->kids[j]].ordinal + 1;
    return o;
}

static bool alive(const ds_dim *d, int32_t x)
{
    return x >= 0 && x < d->nmembers && d->members[x].alive;
}

static int stale_member(const ds_dim *d, int32_t x, int64_t if_seq, int64_t cur, ds_error *err)
{
    if (if_seq < 0 || !alive(d, x) || d->members[x].struct_seq <= if_seq)
        return 0;
    int rc =
        ds_fail(err, DS_STALE, "cell", "member '%s' of dimension '%s' changed after seq %" PRId64,
                d->members[x].key, d->name, if_seq);
    if (err) {
        err->has_seq = true;
        err->seq = cur;
    }
    return rc;
}

/* Refuses when leaf `parent` has facts and `facts_to` does not name a
 * leaf that will be beneath it and has none itself. */
static int check_facts_to(ds_store *s, const ds_model *m, int dim, int32_t parent, int32_t facts_to,
                          int32_t moving, bool *move, ds_error *err)
{
    const ds_dim *d = &m->dims[dim];
    *move = false;
    if (!model_is_leaf(d, parent))
        return 0;
    int64_t n = 0;
    int rc = count_facts(s, m, dim, parent, &n, err);
    if (rc || n == 0)
        return rc;
    if (facts_to == -1)
        return ds_fail(err, DS_INVALID_VALUE, "facts_to",
                       "member '%s' has %" PRId64 " facts; say which new child takes them "
                       "(facts_to)",
                       d->members[parent].key, n);
    if (moving >= 0) {
        if (!alive(d, facts_to) || !model_is_under(d, facts_to, moving) ||
            !model_is_leaf(d, facts_to))
            return ds_fail(err, DS_INVALID_VALUE, "facts_to",
                           "facts_to must be a leaf at or beneath the member being moved");
        int64_t own = 0;
        if ((rc = count_facts(s, m, dim, facts_to, &own, err)))
            return rc;
        if (own)
            return ds_fail(err, DS_INVALID_VALUE, "facts_to",
                           "facts_to '%s' has facts of its own; choose a leaf without facts",
                           d->members[facts_to].key);
    }
    *move = true;
    return 0;
}

static int op_add(ds_store *s, const ds_model *m, const ds_command *cmd, int64_t seq,
                  ds_model **out, ds_error *err)
{
    const ds_member_op *op = &cmd->member;
    const ds_dim *d = &m->dims[op->dim];
    if (!alive(d, op->parent))
        return ds_fail(err, DS_NOT_FOUND, "cell", "the parent is not a member of '%s'", d->name);
    const char *name = op->name ? op->name : op->key;
    int rc = model_check_name(op->key, strlen(op->key), "key", err);
    if (rc == 0)
        rc = model_check_name(name, strlen(name), "name", err);
    if (rc)
        return rc;
    if (model_find_key(d, op->key, strlen(op->key)) >= 0)
        return ds_fail(err, DS_INVALID_VALUE, "key", "dimension '%s' already has a member '%s'",
                       d->name, op->key);
    bool move;
    if ((rc = stale_member(d, op->parent, cmd->if_seq, seq - 1, err)) ||
        (rc = check_facts_to(s, m, op->dim, op->parent, op->facts_to, -1, &move, err)))
        return rc;
    if (move && op->facts_to != -2)
        return ds_fail(err, DS_INVALID_VALUE, "facts_to",
                       "when adding a child under a leaf with facts, facts_to must be the new "
                       "member");
    ds_model *m2 = model_clone(m);
    ds_dim *d2 = &m2->dims[op->dim];
    int id = model_add_member(d2, op->parent, op->key, name, next_ordinal(d, op->parent), err);
    if (id < 0) {
        model_free(m2);
        return id;
    }
    model_dim_index(d2);
    bump(d2, id, seq);
    rc = move ? move_facts(s, m, op->dim, op->parent, id, seq, err) : 0;
    *out = m2;
    return rc;
}

static int op_move(ds_store *s, const ds_model *m, const ds_command *cmd, int64_t seq,
                   ds_model **out, ds_error *err)
{
    const ds_member_op *op = &cmd->member;
    const ds_dim *d = &m->dims[op->dim];
    if (!alive(d, op->member) || !alive(d, op->parent))
        return ds_fail(err, DS_NOT_FOUND, "cell", "no such member in '%s'", d->name);
    if (op->member == d->root)
        return ds_fail(err, DS_INVALID_VALUE, "member", "the root of '%s' cannot move", d->name);
    if (model_is_under(d, op->parent, op->member))
        return ds_fail(err, DS_INVALID_VALUE, "parent", "'%s' cannot move beneath itself",
                       d->members[op->member].key);
    int32_t old_parent = d->members[op->member].parent;
    bool move;
    int rc = stale_member(d, op->member, cmd->if_seq, seq - 1, err);
    if (rc == 0)
        rc = stale_member(d, op->parent, cmd->if_seq, seq - 1, err);
    if (rc == 0 && op->parent != old_parent)
        rc = check_facts_to(s, m, op->dim, op->parent, op->facts_to, op->member, &move, err);
    else
        move = false;
    if (rc)
        return rc;
    ds_model *m2 = model_clone(m);
    ds_dim *d2 = &m2->dims[op->dim];
    bump(d2, old_parent, seq);
    d2->members[op->member].parent = op->parent;
    d2->members[op->member].ordinal = next_ordinal(d, op->parent);
    model_dim_index(d2);
    bump(d2, op->member, seq);
    rc = move ? move_facts(s, m, op->dim, op->parent, op->facts_to, seq, err) : 0;
    *out = m2;
    return rc;
}

static int op_delete(ds_store *s, const ds_model *m, const ds_command *cmd, int64_t seq,
                     ds_model **out, ds_error *err)
{
    const ds_member_op *op = &cmd->member;
    const ds_dim *d = &m->dims[op->dim];
    if (!alive(d, op->member))
        return ds_fail(err, DS_NOT_FOUND, "cell", "no such member in '%s'", d->name);
    if (op->member == d->root)
        return ds_fail(err, DS_INVALID_VALUE, "member", "the root of '%s' cannot be deleted",
                       d->name);
    int64_t n = 0;
    int rc = stale_member(d, op->member, cmd->if_seq, seq - 1, err);
    if (rc == 0)
        rc = count_facts(s, m, op->dim, op->member, &n, err);
    if (rc)
        return rc;
    if (n > 0 && !op->force)
        return ds_fail(err, DS_INVALID_VALUE, "force",
                       "'%s' has %" PRId64 " facts beneath it; delete with force to delete "
                       "them too",
                       d->members[op->member].key, n);
    ds_model *m2 = model_clone(m);
    ds_dim *d2 = &m2->dims[op->dim];
    for (int32_t i = d->pos[op->member]; i < d->end[op->member]; i++)
        model_kill_member(d2, d->pre[i]);
    bump(d2, d->members[op->member].parent, seq);
    model_dim_index(d2);
    rc = n > 0 ? move_facts(s, m, op->dim, op->member, -1, seq, err) : 0;
    *out = m2;
    return rc;
}

static const char *const op_names[] = {"add", "rename", "move", "delete"};

int store__apply_member(ds_store *s, model_slot *slot, const ds_command *cmd, int64_t seq,
                        int64_t ts_us, ds_error *err)
{
    const ds_model *m = store__current(slot);
    const ds_member_op *op = &cmd->member;
    if (op->dim < 0 || op->dim >= m->ndims)
        return ds_fail(err, DS_NOT_FOUND, "dimension", "no such dimension");
    if ((unsigned)op->kind >= DS_ARRAY_LEN(op_names))
        return ds_fail(err, DS_INVALID_VALUE, "op", "unknown member operation");
    ds_model *m2 = NULL;
    int rc;
    switch (op->kind) {
    case MEMBER_ADD:
        rc = op_add(s, m, cmd, seq, &m2, err);
        break;
    case MEMBER_MOVE:
        rc = op_move(s, m, cmd, seq, &m2, err);
        break;
    case MEMBER_DELETE:
        rc = op_delete(s, m, cmd, seq, &m2, err);
        break;
    default: { /* rename */
        const ds_dim *d = &m->dims[op->dim];
        if (!alive(d, op->member))
            return ds_fail(err, DS_NOT_FOUND, "cell", "no such member in '%s'", d->name);
        const char *name = op->name ? op->name : "";
        if ((rc = model_check_name(name, strlen(name), "name", err)))
            return rc;
        m2 = model_clone(m);
        free(m2->dims[op->dim].members[op->member].name);
        m2->dims[op->dim].members[op->member].name = xstrdup(name);
        model_dim_index(&m2->dims[op->dim]);
        break;
    }
    }
    if (rc == 0) {
        m2->struct_seq = seq;
        s->wrote = true;
        rc = store__write_members(s, m2, op->dim, err);
    }
    if (rc == 0 && op->kind != MEMBER_RENAME)
        rc = store__write_closure(s, m2, op->dim, err);
    if (rc == 0) {
        char detail[160];
        snprintf(detail, sizeof detail,
                 "%s dim=%" PRId32 " member=%" PRId32 " parent=%" PRId32 " facts_to=%" PRId32
                 " force=%d",
                 op_names[op->kind], m->dims[op->dim].id, op->member, op->parent, op->facts_to,
                 op->force);
        command_row row = {.kind = "member", .measure_id = -1, .detail = detail};
        rc = store__log_command(s, slot, cmd, seq, ts_us, &row, err);
    }
    if (rc) {
        model_free(m2);
        return rc;
    }
    store__set_model(s, slot, m2);
    return 0;
}
