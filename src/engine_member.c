/* engine_member.c: member operations (add, rename, move, delete) on the
 * engine's catalog and facts. A leaf that has facts keeps them only by
 * naming the leaf that takes them (facts_to); deleting a member with facts
 * beneath it needs force, and its facts go with it. Every refusal is
 * decided before anything changes. Part of the engine. */
#include "engine_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static bool alive(const ds_dim *d, int32_t x)
{
    return x >= 0 && x < d->nmembers && d->members[x].alive;
}

/* Facts (with any measure) at or beneath member x of dimension dim. */
static int64_t count_facts(const facts *f, const ds_dim *d, int dim, int32_t x)
{
    int64_t n = 0;
    for (uint32_t i = 0; i < f->n; i++)
        if (f->has[i] && model_is_under(d, facts__cell(f, i)[dim], x))
            n++;
    return n;
}

/* The facts of leaf `from` now belong to leaf `to`: in the change log the
 * old cell goes from v to missing and the new one from missing to v; the
 * moved values are stamped with seq. */
static int move_facts(ds_engine *e, int dim, int32_t from, int32_t to, int64_t seq, ds_error *err)
{
    facts *f = &e->f;
    engine_delta *d = e->d;
    for (uint32_t i = 0; i < f->n; i++) {
        if (!f->has[i] || facts__cell(f, i)[dim] != from)
            continue;
        for (int q = 0; q < f->nmeasures; q++)
            if (f->has[i] >> q & 1)
                engine__row(e, i, q, true, f->val[q][i], false, 0, f->stamp[q][i]);
        if (!facts__rekey(f, i, dim, to))
            return ds_fail(err, DS_INTERNAL, NULL, "a moved fact met a fact of its new cell");
        for (int q = 0; q < f->nmeasures; q++)
            if (f->has[i] >> q & 1) {
                engine__row(e, i, q, false, 0, true, f->val[q][i], f->stamp[q][i]);
                f->stamp[q][i] = seq;
            }
        d->moves = xrealloc(d->moves, (d->nmoves + 1) * sizeof *d->moves);
        d->moves[d->nmoves++] = i;
    }
    d->move_dim = dim;
    d->move_to = to;
    return 0;
}

/* The facts at or beneath member x (of catalog m) lose every measure. */
static void kill_facts(ds_engine *e, const ds_dim *dm, int dim, int32_t x, int64_t seq)
{
    facts *f = &e->f;
    for (uint32_t i = 0; i < f->n; i++) {
        if (!f->has[i] || !model_is_under(dm, facts__cell(f, i)[dim], x))
            continue;
        for (int q = 0; q < f->nmeasures; q++)
            if (f->has[i] >> q & 1) {
                engine__row(e, i, q, true, f->val[q][i], false, 0, f->stamp[q][i]);
                facts__abs(f, q, true, f->val[q][i], false, 0);
                f->val[q][i] = 0;
                f->stamp[q][i] = seq;
            }
        f->has[i] = 0;
        f->live--;
    }
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
 * leaf that will be beneath it and has none itself; *move says whether
 * the facts move. */
static int check_facts_to(const ds_engine *e, const ds_dim *d, int dim, int32_t parent,
                          int32_t facts_to, int32_t moving, bool *move, ds_error *err)
{
    *move = false;
    if (!model_is_leaf(d, parent))
        return 0;
    int64_t n = count_facts(&e->f, d, dim, parent);
    if (n == 0)
        return 0;
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
        if (count_facts(&e->f, d, dim, facts_to))
            return ds_fail(err, DS_INVALID_VALUE, "facts_to",
                           "facts_to '%s' has facts of its own; choose a leaf without facts",
                           d->members[facts_to].key);
    }
    *move = true;
    return 0;
}

static int op_add(ds_engine *e, const ds_command *cmd, int64_t seq, ds_model **out, ds_error *err)
{
    const ds_model *m = e->model;
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
        (rc = check_facts_to(e, d, op->dim, op->parent, op->facts_to, -1, &move, err)))
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
    *out = m2;
    return move ? move_facts(e, op->dim, op->parent, id, seq, err) : 0;
}

static int op_move(ds_engine *e, const ds_command *cmd, int64_t seq, ds_model **out, ds_error *err)
{
    const ds_model *m = e->model;
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
    bool move = false;
    int rc = stale_member(d, op->member, cmd->if_seq, seq - 1, err);
    if (rc == 0)
        rc = stale_member(d, op->parent, cmd->if_seq, seq - 1, err);
    if (rc == 0 && op->parent != old_parent)
        rc = check_facts_to(e, d, op->dim, op->parent, op->facts_to, op->member, &move, err);
    if (rc)
        return rc;
    ds_model *m2 = model_clone(m);
    ds_dim *d2 = &m2->dims[op->dim];
    bump(d2, old_parent, seq);
    d2->members[op->member].parent = op->parent;
    d2->members[op->member].ordinal = next_ordinal(d, op->parent);
    model_dim_index(d2);
    bump(d2, op->member, seq);
    *out = m2;
    return move ? move_facts(e, op->dim, op->parent, op->facts_to, seq, err) : 0;
}

static int op_delete(ds_engine *e, const ds_command *cmd, int64_t seq, ds_model **out,
                     ds_error *err)
{
    const ds_model *m = e->model;
    const ds_member_op *op = &cmd->member;
    const ds_dim *d = &m->dims[op->dim];
    if (!alive(d, op->member))
        return ds_fail(err, DS_NOT_FOUND, "cell", "no such member in '%s'", d->name);
    if (op->member == d->root)
        return ds_fail(err, DS_INVALID_VALUE, "member", "the root of '%s' cannot be deleted",
                       d->name);
    int rc = stale_member(d, op->member, cmd->if_seq, seq - 1, err);
    if (rc)
        return rc;
    int64_t n = count_facts(&e->f, d, op->dim, op->member);
    if (n > 0 && !op->force)
        return ds_fail(err, DS_INVALID_VALUE, "force",
                       "'%s' has %" PRId64 " facts beneath it; delete with force to delete "
                       "them too",
                       d->members[op->member].key, n);
    if (n > 0)
        kill_facts(e, d, op->dim, op->member, seq);
    ds_model *m2 = model_clone(m);
    ds_dim *d2 = &m2->dims[op->dim];
    for (int32_t i = d->pos[op->member]; i < d->end[op->member]; i++)
        model_kill_member(d2, d->pre[i]);
    bump(d2, d->members[op->member].parent, seq);
    model_dim_index(d2);
    *out = m2;
    return 0;
}

static int op_rename(ds_engine *e, const ds_command *cmd, ds_model **out, ds_error *err)
{
    const ds_member_op *op = &cmd->member;
    const ds_dim *d = &e->model->dims[op->dim];
    if (!alive(d, op->member))
        return ds_fail(err, DS_NOT_FOUND, "cell", "no such member in '%s'", d->name);
    const char *name = op->name ? op->name : "";
    int rc = model_check_name(name, strlen(name), "name", err);
    if (rc)
        return rc;
    ds_model *m2 = model_clone(e->model);
    free(m2->dims[op->dim].members[op->member].name);
    m2->dims[op->dim].members[op->member].name = xstrdup(name);
    model_dim_index(&m2->dims[op->dim]);
    *out = m2;
    return 0;
}

int engine__member(ds_engine *e, const ds_command *cmd, int64_t seq, ds_model **after,
                   ds_error *err)
{
    const ds_member_op *op = &cmd->member;
    *after = NULL;
    if (op->dim < 0 || op->dim >= e->model->ndims)
        return ds_fail(err, DS_NOT_FOUND, "dimension", "no such dimension");
    ds_model *m2 = NULL;
    int rc;
    switch (op->kind) {
    case MEMBER_ADD:
        rc = op_add(e, cmd, seq, &m2, err);
        break;
    case MEMBER_MOVE:
        rc = op_move(e, cmd, seq, &m2, err);
        break;
    case MEMBER_DELETE:
        rc = op_delete(e, cmd, seq, &m2, err);
        break;
    case MEMBER_RENAME:
        rc = op_rename(e, cmd, &m2, err);
        break;
    default:
        rc = ds_fail(err, DS_INVALID_VALUE, "op", "unknown member operation");
    }
    if (rc) {
        model_free(m2);
        return rc;
    }
    m2->struct_seq = seq;
    m2->refs = 1;
    e->d->catalog = m2;
    e->d->member_dim = op->dim;
    engine__model_ref(m2); /* one for the delta, one for the caller */
    *after = m2;
    return 0;
}
