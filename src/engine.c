/* engine.c: see engine.h. Lifecycle, the lock between readers and the
 * writer, submitting a command (ledger, decoding, scope, undo of a command
 * refused halfway), reads and the checksum. */
#include "engine_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "request.h"

void engine_opts_default(engine_opts *o)
{
    memset(o, 0, sizeof *o);
    o->change_cap = 1000;
    o->create_cap = 1000000;
    o->cube_budget = (size_t)1 << 30;
    o->memory_budget = 0;
    o->retention_ms = INT64_C(7) * 24 * 3600 * 1000;
    o->ledger_max = 1000000;
}

void engine__model_ref(const ds_model *m)
{
    __atomic_add_fetch(&((ds_model *)m)->refs, 1, __ATOMIC_ACQ_REL);
}

void engine__model_unref(const ds_model *m)
{
    if (m && __atomic_sub_fetch(&((ds_model *)m)->refs, 1, __ATOMIC_ACQ_REL) == 0)
        model_free((ds_model *)m);
}

ds_engine *engine_new(const ds_model *def, int64_t seq, const engine_opts *o)
{
    ds_engine *e = xcalloc(1, sizeof *e);
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* a steady stream of readers must not starve the writer */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&e->lock, &a);
    pthread_rwlockattr_destroy(&a);
    if (o)
        e->o = *o;
    else
        engine_opts_default(&e->o);
    e->model = model_clone(def);
    e->model->refs = 1;
    e->seq = seq;
    facts__init(&e->f, def->ndims, def->nmeasures);
    ledger__init(&e->ledger);
    return e;
}

void engine_free(ds_engine *e)
{
    if (!e)
        return;
    engine__model_unref(e->model);
    facts__free(&e->f);
    cube__free(&e->c);
    ledger__free(&e->ledger);
    free(e->undo.old_stamp);
    pthread_rwlock_destroy(&e->lock);
    free(e);
}

/* ---- loading -------------------------------------------------------------- */

int engine_load_fact(ds_engine *e, const int32_t *members, const int64_t *values,
                     const int64_t *stamps, uint64_t has, ds_error *err)
{
    const ds_model *m = e->model;
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        int32_t x = members[k];
        bool ok = x >= 0 && x < d->nmembers;
        /* a fact of a deleted member stays as an empty row */
        if (ok && d->members[x].alive && !model_is_leaf(d, x))
            ok = false;
        if (!ok || (has && !d->members[x].alive))
            return ds_fail(err, DS_INTERNAL, NULL,
                           "fact %" PRIu32 " of '%s' names member %" PRId32
                           " of '%s', which is not a leaf",
                           e->f.n, m->name, x, d->name);
    }
    if (facts__find(&e->f, members) >= 0)
        return ds_fail(err, DS_INTERNAL, NULL, "model '%s' has two facts for one cell", m->name);
    int64_t i = facts__add(&e->f, members);
    if (i < 0)
        return ds_fail(err, DS_UNAVAILABLE, NULL, "model '%s' has more facts than %" PRIu32,
                       m->name, FACTS_MAX);
    for (int q = 0; q < m->nmeasures; q++) {
        e->f.val[q][i] = has >> q & 1 ? values[q] : 0;
        e->f.stamp[q][i] = stamps[q];
    }
    e->f.has[i] = has;
    e->f.live += has != 0;
    for (int q = 0; q < m->nmeasures; q++)
        facts__abs(&e->f, q, false, 0, has >> q & 1, e->f.val[q][i]);
    return 0;
}

void engine_load_request(ds_engine *e, const char *user, const char *rid, const char *hash,
                         int64_t seq, int code, int64_t ts_ms)
{
    ledger__put(&e->ledger, user, rid, hash, seq, code, ts_ms);
    ledger__trim(&e->ledger, e->o.ledger_max); /* loaded oldest first: the newest stay */
}

int engine_load_done(ds_engine *e, ds_error *err)
{
    size_t cells, cube_bytes = cube__bytes(e->model, &cells);
    size_t facts_bytes = facts__bytes(&e->f);
    size_t per_fact =
        (size_t)e->model->ndims * 4 + 8 + (size_t)e->model->nmeasures * 16 + 2 * sizeof(uint32_t);
    size_t need = facts_bytes + (cube_bytes <= e->o.cube_budget ? cube_bytes : 0);
    if (e->o.memory_budget && need > e->o.memory_budget)
        return ds_fail(err, DS_UNAVAILABLE, NULL,
                       "model '%s' needs %zu MiB in memory (%" PRIu32 " facts at about %zu bytes "
                       "each, cube %zu MiB) but the memory budget is %zu MiB",
                       e->model->name, need >> 20, e->f.n, per_fact,
                       cube_bytes <= e->o.cube_budget ? cube_bytes >> 20 : 0,
                       e->o.memory_budget >> 20);
    cube__build(&e->c, e->model, &e->f, e->o.cube_budget);
    e->loaded = true;
    return 0;
}

/* ---- the delta being built ------------------------------------------------ */

void engine__reserve(ds_engine *e, size_t n)
{
    engine_delta *d = e->d;
    if (d->nrows + n <= e->rows_alloc)
        return;
    size_t a = e->rows_alloc ? e->rows_alloc : 64;
    while (a < d->nrows + n)
        a *= 2;
    int nd = e->model->ndims;
    d->rows = xrealloc(d->rows, a * sizeof *d->rows);
    d->row_cells = xrealloc(d->row_cells, a * (size_t)nd * sizeof *d->row_cells);
    if (e->undo.alloc < a) {
        e->undo.old_stamp = xrealloc(e->undo.old_stamp, a * sizeof *e->undo.old_stamp);
        e->undo.alloc = a;
    }
    e->rows_alloc = a;
}

void engine__row(ds_engine *e, uint32_t fact, int q, bool old_has, int64_t old_v, bool new_has,
                 int64_t new_v, int64_t old_stamp)
{
    engine_delta *d = e->d;
    int nd = e->model->ndims;
    if (d->nrows == e->rows_alloc)
        engine__reserve(e, 1);
    d->rows[d->nrows] = (engine_row){.fact = fact,
                                     .measure = (int16_t)q,
                                     .old_has = old_has,
                                     .new_has = new_has,
                                     .old_v = old_v,
                                     .new_v = new_v};
    memcpy(d->row_cells + d->nrows * (size_t)nd, facts__cell(&e->f, fact),
           (size_t)nd * sizeof *d->row_cells);
    e->undo.old_stamp[d->nrows] = old_stamp;
    d->nrows++;
}

int64_t engine__set(ds_engine *e, int64_t i, const int32_t *cell, int q, bool has, int64_t v,
                    int64_t seq, bool cube_too)
{
    facts *f = &e->f;
    /* a cell without a value may still have a row (every measure missing) */
    if (i < 0 && (i = facts__find(f, cell)) < 0 && (i = facts__add(f, cell)) < 0)
        return -1;
    uint64_t before = f->has[i];
    bool old_has = before >> q & 1;
    int64_t old = f->val[q][i];
    engine__row(e, (uint32_t)i, q, old_has, old, has, has ? v : 0, f->stamp[q][i]);
    facts__abs(f, q, old_has, old, has, v);
    f->has[i] = has ? before | (UINT64_C(1) << q) : before & ~(UINT64_C(1) << q);
    f->val[q][i] = has ? v : 0;
    f->stamp[q][i] = seq;
    f->live += (before == 0 && f->has[i] != 0) - (before != 0 && f->has[i] == 0);
    if (cube_too)
        cube__add_leaf(&e->c, e->model, q, cell, (has ? v : 0) - old);
    return i;
}

/* Puts back what a refused command changed: values in reverse order,
 * then the facts it created; the cube follows (rebuilt after many). */
static void undo(ds_engine *e, uint32_t facts_before)
{
    engine_delta *d = e->d;
    facts *f = &e->f;
    bool rebuild = d->nrows > 4096 || !e->c.valid;
    int nd = e->model->ndims;
    for (size_t r = d->nrows; r-- > 0;) {
        const engine_row *row = &d->rows[r];
        uint32_t i = row->fact;
        int q = row->measure;
        uint64_t before = f->has[i];
        f->has[i] = row->old_has ? before | (UINT64_C(1) << q) : before & ~(UINT64_C(1) << q);
        facts__abs(f, q, row->new_has, row->new_v, row->old_has, row->old_v);
        f->val[q][i] = row->old_v;
        f->stamp[q][i] = e->undo.old_stamp[r];
        f->live += (before == 0 && f->has[i] != 0) - (before != 0 && f->has[i] == 0);
        if (!rebuild)
            cube__add_leaf(&e->c, e->model, q, d->row_cells + r * (size_t)nd,
                           row->old_v - row->new_v);
    }
    while (f->n > facts_before)
        facts__pop(f);
    if (rebuild)
        cube__build(&e->c, e->model, f, e->o.cube_budget);
    d->nrows = 0;
}

/* ---- submitting --------------------------------------------------------------- */

/* Decodes the canonical command against the current catalog and checks
 * the key's scope. */
static int decode(ds_engine *e, const engine_input *in, engine_result *res, ds_error *err)
{
    json_val *root = NULL;
    req_decoded dec;
    int rc = json_parse(in->cmd, in->cmd_len, NULL, &root, err);
    if (rc == 0)
        rc = request_check(root, REQ_CANONICAL, err);
    if (rc == 0)
        rc = request_resolve_canonical(root, e->model, &res->arena, &dec, err);
    if (rc == 0)
        rc = request_scope(e->model, &dec.cmd, in->scope_dim, in->scope_member, err);
    if (rc == 0) {
        res->cmd = dec.cmd;
        res->cmd.user = in->user;
        res->cmd.request_id = in->rid;
    }
    json_free(root);
    return rc;
}

static void refuse(ds_engine *e, const engine_input *in, engine_result *res)
{
    res->status = ENGINE_REFUSED;
    res->code = res->err.code;
    res->seq = -1;
    res->delta.seq = -1;
    ledger__put(&e->ledger, in->user, in->rid, in->hash, -1, res->err.code, in->ts_ms);
}

static void apply(ds_engine *e, const engine_input *in, engine_result *res)
{
    int64_t seq = e->seq + 1;
    uint32_t facts_before = e->f.n;
    engine_delta *d = &res->delta;
    e->d = d;
    e->rows_alloc = 0;
    d->first_new = facts_before;
    d->move_dim = -1;
    d->member_dim = -1;
    res->out.seq = seq;
    res->out.ts_us = in->ts_ms * 1000;
    ds_error *err = &res->err;
    int rc = decode(e, in, res, err);
    if (rc == 0 && res->cmd.if_seq > e->seq) {
        rc = ds_fail(err, DS_STALE, "if_seq",
                     "if_seq %" PRId64 " is newer than the model, which is at seq %" PRId64,
                     res->cmd.if_seq, e->seq);
        err->has_seq = true;
        err->seq = e->seq;
    }
    ds_model *after = NULL;
    if (rc == 0 && res->cmd.kind == COMMAND_WRITE)
        rc = engine__writes(e, &res->cmd, seq, &res->out, err);
    else if (rc == 0)
        rc = engine__member(e, &res->cmd, seq, &after, err);
    if (rc) {
        undo(e, facts_before);
        outcome_clear(&res->out);
        engine__model_unref(d->catalog);
        d->catalog = NULL;
        free(d->moves);
        d->moves = NULL;
        d->nmoves = 0;
        refuse(e, in, res);
        return;
    }
    engine__model_ref(e->model);
    res->before = e->model;
    if (after) { /* the new catalog: the old one lives on in readers' hands */
        engine__model_unref(e->model);
        e->model = after;
        cube__build(&e->c, after, &e->f, e->o.cube_budget);
    }
    engine__model_ref(e->model);
    res->after = e->model;
    d->seq = seq;
    d->nfacts = e->f.n;
    __atomic_store_n(&e->seq, seq, __ATOMIC_RELEASE);
    res->status = ENGINE_APPLIED;
    res->seq = seq;
    res->code = DS_OK;
    ledger__put(&e->ledger, in->user, in->rid, in->hash, seq, DS_OK, in->ts_ms);
}

int engine_submit(ds_engine *e, const engine_input *in, engine_result *res, ds_error *err)
{
    (void)err;
    memset(res, 0, sizeof *res);
    res->seq = -1;
    res->delta.seq = -1;
    res->delta.move_dim = res->delta.member_dim = -1;
    pthread_rwlock_wrlock(&e->lock);
    ledger__expire(&e->ledger, in->ts_ms - e->o.retention_ms);
    ledger__trim(&e->ledger, e->o.ledger_max);
    const ledger_item *it = ledger__get(&e->ledger, in->user, in->rid);
    if (it) {
        char hex[65];
        ledger__hex(it->hash, hex);
        if (strcmp(hex, in->hash) == 0) {
            res->status = ENGINE_DUPLICATE;
            res->seq = it->seq;
            res->code = it->code;
        } else {
            res->status = ENGINE_REUSED;
            res->code = DS_REQUEST_ID_REUSED;
            ds_fail(&res->err, DS_REQUEST_ID_REUSED, "request_id",
                    "request_id '%s' was used before with another body", in->rid);
        }
    } else {
        apply(e, in, res);
    }
    e->d = NULL;
    pthread_rwlock_unlock(&e->lock);
    return 0;
}

void engine_delta_free(engine_delta *d)
{
    free(d->rows);
    free(d->row_cells);
    free(d->moves);
    engine__model_unref(d->catalog);
    memset(d, 0, sizeof *d);
}

void engine_delta_take(engine_result *res, engine_delta *out)
{
    *out = res->delta;
    memset(&res->delta, 0, sizeof res->delta);
}

void engine_result_clear(engine_result *res)
{
    outcome_clear(&res->out);
    engine_delta_free(&res->delta);
    engine__model_unref(res->before);
    engine__model_unref(res->after);
    ds_arena_free(&res->arena);
    memset(res, 0, sizeof *res);
}

/* ---- reading -------------------------------------------------------------------- */

int64_t engine_seq(ds_engine *e)
{
    return __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
}

const ds_model *engine_model_acquire(ds_engine *e)
{
    pthread_rwlock_rdlock(&e->lock);
    const ds_model *m = e->model;
    engine__model_ref(m);
    pthread_rwlock_unlock(&e->lock);
    return m;
}

void engine_model_release(ds_engine *e, const ds_model *m)
{
    (void)e;
    engine__model_unref(m);
}

static int check_read(const ds_model *m, const ds_cell *cell, int measure, ds_error *err)
{
    if (measure < 0 || measure >= m->nmeasures)
        return ds_fail(err, DS_NOT_FOUND, "column", "no such measure");
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        int32_t x = cell->m[k];
        if (x < 0 || x >= d->nmembers || !d->members[x].alive)
            return ds_fail(err, DS_NOT_FOUND, "cell", "dimension '%s' has no such member", d->name);
    }
    return 0;
}

int engine_read_cell(ds_engine *e, const ds_cell *cell, int measure, ds_i128 *value, int64_t *seq,
                     ds_error *err)
{
    pthread_rwlock_rdlock(&e->lock);
    int rc = check_read(e->model, cell, measure, err);
    if (rc == 0) {
        *value = engine__value(e, e->model, measure, cell->m);
        *seq = e->seq;
    }
    pthread_rwlock_unlock(&e->lock);
    return rc;
}

/* Without a cube: one scan, each fact added to every grid cell above it
 * (rows or columns may hold a member and its ancestor at once). */
static void grid_scan(const ds_engine *e, const ds_model *m, const ds_grid_spec *g, ds_i128 *values)
{
    const facts *f = &e->f;
    const ds_dim *dr = &m->dims[g->row_dim], *dc = &m->dims[g->col_dim];
    int32_t *rhead = xmalloc_array((size_t)dr->nmembers, sizeof *rhead);
    int32_t *chead = xmalloc_array((size_t)dc->nmembers, sizeof *chead);
    int32_t *rnext = xmalloc_array(g->nrows + 1, sizeof *rnext);
    int32_t *cnext = xmalloc_array(g->ncols + 1, sizeof *cnext);
    memset(rhead, 0xff, (size_t)dr->nmembers * sizeof *rhead);
    memset(chead, 0xff, (size_t)dc->nmembers * sizeof *chead);
    for (size_t r = g->nrows; r-- > 0;) {
        rnext[r] = rhead[g->rows[r]];
        rhead[g->rows[r]] = (int32_t)r;
    }
    for (size_t c = g->ncols; c-- > 0;) {
        cnext[c] = chead[g->cols[c]];
        chead[g->cols[c]] = (int32_t)c;
    }
    memset(values, 0, g->nrows * g->ncols * sizeof *values);
    int q = g->measure;
    for (uint32_t i = 0; i < f->n; i++) {
        if (!(f->has[i] >> q & 1))
            continue;
        const int32_t *cell = facts__cell(f, i);
        bool in = true;
        for (int k = 0; k < m->ndims && in; k++)
            if (k != g->row_dim && k != g->col_dim)
                in = model_is_under(&m->dims[k], cell[k], g->fixed.m[k]);
        if (!in)
            continue;
        for (int32_t a = cell[g->row_dim]; a >= 0; a = dr->members[a].parent)
            for (int32_t r = rhead[a]; r >= 0; r = rnext[r])
                for (int32_t b = cell[g->col_dim]; b >= 0; b = dc->members[b].parent)
                    for (int32_t c = chead[b]; c >= 0; c = cnext[c])
                        values[(size_t)r * g->ncols + (size_t)c] += f->val[q][i];
    }
    free(rhead);
    free(chead);
    free(rnext);
    free(cnext);
}

int engine_read_grid(ds_engine *e, const ds_grid_spec *g, ds_i128 *values, int64_t *seq,
                     ds_error *err)
{
    pthread_rwlock_rdlock(&e->lock);
    const ds_model *m = e->model;
    ds_cell c = g->fixed;
    int rc = 0;
    if (g->row_dim < 0 || g->row_dim >= m->ndims || g->col_dim < 0 || g->col_dim >= m->ndims ||
        g->row_dim == g->col_dim)
        rc = ds_fail(err, DS_NOT_FOUND, "dimension", "no such dimension");
    for (size_t r = 0; rc == 0 && r < g->nrows; r++) {
        c.m[g->row_dim] = g->rows[r];
        rc = check_read(m, &c, g->measure, err);
    }
    for (size_t k = 0; rc == 0 && k < g->ncols; k++) {
        c.m[g->col_dim] = g->cols[k];
        rc = check_read(m, &c, g->measure, err);
    }
    if (rc == 0 && g->nrows && g->ncols && !e->c.valid) {
        grid_scan(e, m, g, values);
    } else if (rc == 0) {
        for (size_t r = 0; r < g->nrows; r++)
            for (size_t k = 0; k < g->ncols; k++) {
                c.m[g->row_dim] = g->rows[r];
                c.m[g->col_dim] = g->cols[k];
                cube__get(&e->c, m, g->measure, c.m, &values[r * g->ncols + k]);
            }
    }
    if (rc == 0)
        *seq = e->seq;
    pthread_rwlock_unlock(&e->lock);
    return rc;
}

bool engine_request_get(ds_engine *e, const char *user, const char *rid, engine_request *out)
{
    pthread_rwlock_rdlock(&e->lock);
    const ledger_item *it = ledger__get(&e->ledger, user, rid);
    if (it) {
        ledger__hex(it->hash, out->hash);
        out->seq = it->seq;
        out->code = it->code;
    }
    pthread_rwlock_unlock(&e->lock);
    return it != NULL;
}

uint64_t engine_checksum(ds_engine *e)
{
    pthread_rwlock_rdlock(&e->lock);
    const ds_model *m = e->model;
    uint64_t h = model_checksum(m);
    const facts *f = &e->f;
    for (uint32_t i = 0; i < f->n; i++)
        for (int q = 0; q < m->nmeasures; q++)
            if (f->has[i] >> q & 1)
                h += model_fact_hash(m, q, facts__cell(f, i), f->val[q][i]);
    pthread_rwlock_unlock(&e->lock);
    return h;
}

void engine_get_stats(ds_engine *e, engine_stats *s)
{
    pthread_rwlock_rdlock(&e->lock);
    s->seq = e->seq;
    s->facts = e->f.n;
    s->live_facts = e->f.live;
    size_t cells;
    s->cube_bytes = e->c.valid ? cube__bytes(e->model, &cells) : 0;
    s->ledger_entries = e->ledger.n;
    s->ledger_evicted = e->ledger.evicted;
    s->bytes = facts__bytes(&e->f) + s->cube_bytes + ledger__bytes(&e->ledger);
    pthread_rwlock_unlock(&e->lock);
}
