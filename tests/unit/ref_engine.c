/* ref_engine.c: the reference of the engine's write rules (see
 * ref_engine.h). Slow on purpose: facts are a sorted array scanned whole
 * for every total, ancestry walks parent links, children are found by
 * scanning the members, a command refused halfway puts back a copy of the
 * facts, and spreads are computed by the GMP reference (ref_spread.c).
 * Nothing here is shared with src/engine*.c or src/spread.c; the catalog
 * is changed with the model_* functions and commands are decoded with the
 * request.h functions, as the engine does. */
#include "ref_engine.h"

#include <gmp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "json.h"
#include "ref_spread.h"
#include "request.h"

/* |amount| and |T - h| of a proportional or equal spread: 10^36. */
#define REF_TARGET_DIGITS 36
/* A region's cell count is counted up to 2^62 (the engine's bound). */
#define REF_REGION_COUNT_MAX ((ds_i128)1 << 62)

_Static_assert(REF_ENGINE_MAX_MEASURES <= 64, "a fact's measures are bits of a uint64_t");
_Static_assert(REF_TARGET_DIGITS == REF_LIMIT_DIGITS, "ref_spread bounds T - h the same way");

typedef struct ref_fact {
    int32_t cell[DS_MAX_DIMS]; /* unused dimensions are 0 */
    uint64_t has;              /* bit q: measure q present */
    int64_t val[REF_ENGINE_MAX_MEASURES];
    int64_t stamp[REF_ENGINE_MAX_MEASURES]; /* the seq that last changed it */
} ref_fact;

typedef struct ref_request {
    char *user, *rid;
    char hash[65];
    int64_t seq, ts_ms;
    int code;
} ref_request;

struct ref_engine {
    engine_opts o;
    ds_model *model;
    int64_t seq;
    size_t nfacts, facts_alloc;
    ref_fact *facts; /* sorted by cell, each with a measure present */
    size_t nreq, req_alloc;
    ref_request *req;
};

static void ref_die(const char *what)
{
    fprintf(stderr, "ref_engine: %s\n", what);
    abort();
}

/* ---- the catalog, by parent links ------------------------------------------- */

static bool alive(const ds_dim *d, int32_t x)
{
    return x >= 0 && x < d->nmembers && d->members[x].alive;
}

/* a is b or lies beneath b. */
static bool beneath(const ds_dim *d, int32_t a, int32_t b)
{
    for (int32_t x = a; x >= 0; x = d->members[x].parent)
        if (x == b)
            return true;
    return false;
}

/* The alive children of x in sibling order (ordinal, then id) into out
 * (room for d->nmembers); their number. */
static int32_t children(const ds_dim *d, int32_t x, int32_t *out)
{
    int32_t n = 0;
    for (int32_t y = 0; y < d->nmembers; y++)
        if (d->members[y].alive && d->members[y].parent == x)
            out[n++] = y;
    for (int32_t i = 1; i < n; i++)
        for (int32_t j = i; j > 0; j--) {
            const ds_member *a = &d->members[out[j - 1]], *b = &d->members[out[j]];
            if (a->ordinal < b->ordinal || (a->ordinal == b->ordinal && out[j - 1] < out[j]))
                break;
            int32_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

static bool is_leaf(const ds_dim *d, int32_t x)
{
    for (int32_t y = 0; y < d->nmembers; y++)
        if (d->members[y].alive && d->members[y].parent == x)
            return false;
    return true;
}

static bool cell_is_leaf(const ds_model *m, const int32_t *cell)
{
    for (int k = 0; k < m->ndims; k++)
        if (!is_leaf(&m->dims[k], cell[k]))
            return false;
    return true;
}

/* The leaf cell lies beneath cell (every dimension). */
static bool cell_beneath(const ds_model *m, const int32_t *leaf, const int32_t *cell)
{
    for (int k = 0; k < m->ndims; k++)
        if (!beneath(&m->dims[k], leaf[k], cell[k]))
            return false;
    return true;
}

static bool hold_covers(const ds_model *m, const ds_hold *h, const int32_t *leaf)
{
    for (int k = 0; k < m->ndims; k++)
        if (h->m[k] >= 0 && !beneath(&m->dims[k], leaf[k], h->m[k]))
            return false;
    return true;
}

static bool held_by(const ds_model *m, const ds_write *w, const int32_t *leaf)
{
    for (int i = 0; i < w->nholds; i++)
        if (hold_covers(m, &w->holds[i], leaf))
            return true;
    return false;
}

/* x and every ancestor: the structure at or beneath them changed at seq. */
static void touch(ds_dim *d, int32_t x, int64_t seq)
{
    for (; x >= 0; x = d->members[x].parent)
        d->members[x].struct_seq = seq;
}

/* The ordinal of a member that becomes parent's last child. */
static int32_t last_ordinal(const ds_dim *d, int32_t parent)
{
    int32_t o = -1;
    for (int32_t y = 0; y < d->nmembers; y++)
        if (d->members[y].alive && d->members[y].parent == parent && d->members[y].ordinal > o)
            o = d->members[y].ordinal;
    return o + 1;
}

/* ---- facts ----------------------------------------------------------------- */

static int fact_cmp(const void *a, const void *b)
{
    const ref_fact *x = a, *y = b;
    for (int k = 0; k < DS_MAX_DIMS; k++)
        if (x->cell[k] != y->cell[k])
            return x->cell[k] < y->cell[k] ? -1 : 1;
    return 0;
}

static ref_fact *find_fact(const ref_engine *r, const int32_t *cell)
{
    ref_fact key;
    memset(key.cell, 0, sizeof key.cell);
    memcpy(key.cell, cell, (size_t)r->model->ndims * sizeof *cell);
    return bsearch(&key, r->facts, r->nfacts, sizeof *r->facts, fact_cmp);
}

/* Appends facts (cells that have none) and sorts again. */
static void add_facts(ref_engine *r, const ref_fact *add, size_t n)
{
    if (r->nfacts + n > r->facts_alloc) {
        r->facts_alloc = 2 * (r->nfacts + n);
        r->facts = xrealloc(r->facts, r->facts_alloc * sizeof *r->facts);
    }
    if (n)
        memcpy(r->facts + r->nfacts, add, n * sizeof *add);
    r->nfacts += n;
    qsort(r->facts, r->nfacts, sizeof *r->facts, fact_cmp);
    for (size_t i = 1; i < r->nfacts; i++)
        if (fact_cmp(&r->facts[i - 1], &r->facts[i]) == 0)
            ref_die("two facts for one cell");
}

/* A fact with only measure q present (for a cell that has no fact). */
static ref_fact new_fact(const ds_model *m, const int32_t *cell, int q, int64_t v, int64_t seq)
{
    ref_fact f;
    memset(&f, 0, sizeof f);
    memcpy(f.cell, cell, (size_t)m->ndims * sizeof *cell);
    f.has = UINT64_C(1) << q;
    f.val[q] = v;
    f.stamp[q] = seq;
    return f;
}

/* Sets measure q of a fact that exists. */
static void set_value(ref_fact *f, int q, int64_t v, int64_t seq)
{
    f->has |= UINT64_C(1) << q;
    f->val[q] = v;
    f->stamp[q] = seq;
}

/* Every fact whose cell is at or beneath cell: the sum of measure q. */
static ds_i128 total_of(const ref_engine *r, const int32_t *cell, int q)
{
    ds_i128 s = 0;
    for (size_t i = 0; i < r->nfacts; i++)
        if ((r->facts[i].has >> q & 1) && cell_beneath(r->model, r->facts[i].cell, cell))
            s += r->facts[i].val[q];
    return s;
}

/* Facts (any measure) whose member of dimension dim is x or beneath it. */
static int64_t facts_beneath(const ref_engine *r, int dim, int32_t x)
{
    int64_t n = 0;
    for (size_t i = 0; i < r->nfacts; i++)
        n += beneath(&r->model->dims[dim], r->facts[i].cell[dim], x);
    return n;
}

/* ---- lifecycle and loading ---------------------------------------------------- */

ref_engine *ref_engine_new(const ds_model *def, int64_t seq, const engine_opts *o)
{
    if (def->nmeasures > REF_ENGINE_MAX_MEASURES)
        ref_die("more measures than REF_ENGINE_MAX_MEASURES");
    ref_engine *r = xcalloc(1, sizeof *r);
    if (o)
        r->o = *o;
    else
        engine_opts_default(&r->o);
    r->model = model_clone(def);
    r->seq = seq;
    return r;
}

void ref_engine_free(ref_engine *r)
{
    if (!r)
        return;
    model_free(r->model);
    free(r->facts);
    for (size_t i = 0; i < r->nreq; i++) {
        free(r->req[i].user);
        free(r->req[i].rid);
    }
    free(r->req);
    free(r);
}

void ref_engine_load_fact(ref_engine *r, const int32_t *members, const int64_t *values,
                          const int64_t *stamps, uint64_t has)
{
    if (!has)
        return;
    ref_fact f;
    memset(&f, 0, sizeof f);
    memcpy(f.cell, members, (size_t)r->model->ndims * sizeof *members);
    f.has = has;
    for (int q = 0; q < r->model->nmeasures; q++) {
        f.val[q] = has >> q & 1 ? values[q] : 0;
        f.stamp[q] = stamps[q];
    }
    if (r->nfacts == r->facts_alloc) {
        r->facts_alloc = r->facts_alloc ? 2 * r->facts_alloc : 1024;
        r->facts = xrealloc(r->facts, r->facts_alloc * sizeof *r->facts);
    }
    r->facts[r->nfacts++] = f;
}

void ref_engine_load_done(ref_engine *r)
{
    add_facts(r, NULL, 0);
}

static void record(ref_engine *r, const char *user, const char *rid, const char *hash, int64_t seq,
                   int code, int64_t ts_ms)
{
    if (r->nreq == r->req_alloc) {
        r->req_alloc = r->req_alloc ? 2 * r->req_alloc : 64;
        r->req = xrealloc(r->req, r->req_alloc * sizeof *r->req);
    }
    ref_request *q = &r->req[r->nreq++];
    q->user = xstrdup(user);
    q->rid = xstrdup(rid);
    snprintf(q->hash, sizeof q->hash, "%s", hash);
    q->seq = seq;
    q->code = code;
    q->ts_ms = ts_ms;
}

void ref_engine_load_request(ref_engine *r, const char *user, const char *rid, const char *hash,
                             int64_t seq, int code, int64_t ts_ms)
{
    record(r, user, rid, hash, seq, code, ts_ms);
}

/* ---- reading ------------------------------------------------------------------ */

int64_t ref_engine_seq(const ref_engine *r)
{
    return r->seq;
}

const ds_model *ref_engine_model(const ref_engine *r)
{
    return r->model;
}

ds_i128 ref_engine_value(const ref_engine *r, const int32_t *cell, int q)
{
    return total_of(r, cell, q);
}

uint64_t ref_engine_live_facts(const ref_engine *r)
{
    return r->nfacts;
}

uint64_t ref_engine_checksum(const ref_engine *r)
{
    uint64_t h = model_checksum(r->model);
    for (size_t i = 0; i < r->nfacts; i++)
        for (int q = 0; q < r->model->nmeasures; q++)
            if (r->facts[i].has >> q & 1)
                h += model_fact_hash(r->model, q, r->facts[i].cell, r->facts[i].val[q]);
    return h;
}

/* ---- errors -------------------------------------------------------------------- */

/* A stale refusal says the seq the model is at. */
static int at_seq(int rc, ds_error *err, int64_t now)
{
    err->has_seq = true;
    err->seq = now;
    return rc;
}

/* A cell the command would change was changed after if_seq. */
static int stale_cell(ds_error *err, int64_t if_seq, int64_t now)
{
    return at_seq(ds_fail(err, DS_STALE, "cell",
                          "a cell this command would change was changed after seq %" PRId64,
                          if_seq),
                  err, now);
}

#define LEAF_RANGE "a leaf would get a value beyond the measure's range"

/* if_seq against the catalog: a member of the cell whose structure (at or
 * beneath it) changed after if_seq. */
static int stale_structure(const ds_model *m, const int32_t *cell, int64_t if_seq, int64_t now,
                           ds_error *err)
{
    for (int k = 0; k < m->ndims; k++)
        if (m->dims[k].members[cell[k]].struct_seq > if_seq)
            return at_seq(ds_fail(err, DS_STALE, "cell",
                                  "the members beneath the cell in dimension '%s' changed after "
                                  "seq %" PRId64,
                                  m->dims[k].name, if_seq),
                          err, now);
    return 0;
}

static int too_many_cells(ds_error *err, int64_t count, int64_t cap)
{
    int rc = ds_fail(err, DS_TOO_MANY_CELLS, "cell",
                     "the spread would fill %" PRId64 " missing cells; the limit is %" PRId64,
                     count, cap);
    err->has_count = true;
    err->count = count;
    err->limit = cap;
    return rc;
}

/* ---- one write's result --------------------------------------------------------- */

/* What a write decided: the target's values and the leaves it changes. */
typedef struct decision {
    ds_change target;
    spread_method method;
    bool leaf;
    size_t n, alloc;
    ds_change *chg; /* changed leaves */
    bool *in_totals;
} decision;

static void decision_add(decision *d, const int32_t *cell, int q, int64_t old, int64_t nv,
                         bool in_totals)
{
    if (d->n == d->alloc) {
        d->alloc = d->alloc ? 2 * d->alloc : 16;
        d->chg = xrealloc(d->chg, d->alloc * sizeof *d->chg);
        d->in_totals = xrealloc(d->in_totals, d->alloc * sizeof *d->in_totals);
    }
    ds_change *c = &d->chg[d->n];
    memset(c, 0, sizeof *c);
    memcpy(c->cell.m, cell, sizeof c->cell.m);
    c->measure = q;
    c->old_value = old;
    c->new_value = nv;
    d->in_totals[d->n++] = in_totals;
}

/* ---- leaf writes ------------------------------------------------------------------ */

static void mpz_of_i128(mpz_t z, ds_i128 v)
{
    ref_mpz_set_i128(z, v);
}

/* The new value of a leaf: value, old + delta, or old * (1 + p/100) rounded
 * half away from zero; out_of_range beyond 18 digits. */
static int leaf_value(const ds_write *w, int64_t old, int64_t *out, ds_error *err)
{
    mpz_t v, a, den;
    mpz_inits(v, a, den, NULL);
    mpz_of_i128(a, w->amount);
    bool ok = true;
    if (w->form == SPREAD_SET) {
        mpz_set(v, a);
    } else if (w->form == SPREAD_DELTA) {
        mpz_of_i128(v, (ds_i128)old);
        mpz_add(v, v, a);
    } else if (w->pct_scale < 0 || w->pct_scale > SPREAD_PCT_MAX_SCALE) {
        ok = false;
    } else {
        mpz_ui_pow_ui(den, 10, (unsigned long)w->pct_scale);
        mpz_mul_ui(den, den, 100);
        mpz_add(a, a, den);
        mpz_of_i128(v, (ds_i128)old);
        mpz_mul(v, v, a);
        ref_round_half_away(v, v, den);
    }
    ds_i128 x = 0;
    ok = ok && ref_mpz_get_i128(v, &x) && x <= DEC_LEAF_MAX && x >= -(ds_i128)DEC_LEAF_MAX;
    mpz_clears(v, a, den, NULL);
    if (!ok)
        return ds_fail(err, DS_OUT_OF_RANGE, "value",
                       "the value is beyond the measure's range (at most 18 digits)");
    *out = (int64_t)x;
    return 0;
}

static int decide_leaf(const ref_engine *r, const ds_command *cmd, const ds_write *w, int64_t seq,
                       decision *d, ds_error *err)
{
    const ds_model *m = r->model;
    int q = w->measure;
    const ref_fact *f = find_fact(r, w->cell.m);
    int64_t old = f && (f->has >> q & 1) ? f->val[q] : 0, stamp = f ? f->stamp[q] : 0, nv = 0;
    int rc = leaf_value(w, old, &nv, err);
    if (rc)
        return rc;
    if (held_by(m, w, w->cell.m))
        return ds_fail(err, DS_HELD, "cell", "the cell is held by this command's holds");
    if (cmd->if_seq >= 0 && (rc = stale_structure(m, w->cell.m, cmd->if_seq, seq - 1, err)))
        return rc;
    /* a stamp of this seq is an earlier write of the same command */
    if (cmd->if_seq >= 0 && nv != old && stamp > cmd->if_seq && stamp != seq)
        return stale_cell(err, cmd->if_seq, seq - 1);
    d->leaf = true;
    d->method = w->method;
    d->target = (ds_change){.cell = w->cell, .measure = q, .old_value = old, .new_value = nv};
    if (nv != old)
        decision_add(d, w->cell.m, q, old, nv, true);
    return 0;
}

/* ---- spreads: the region ------------------------------------------------------------ */

/* The subtree beneath a member in preorder, siblings in order. */
typedef struct ref_tree {
    int32_t n;
    int32_t *id;     /* local node -> member */
    int32_t *parent; /* local node -> local parent, -1 at the top */
    int32_t *local;  /* member -> local node, -1 outside (nmembers) */
    int32_t *leaf;   /* the local nodes that are leaves, in preorder */
    int32_t nleaves;
} ref_tree;

static void tree_visit(const ds_dim *d, int32_t x, int32_t up, ref_tree *t)
{
    int32_t me = t->n++;
    t->id[me] = x;
    t->parent[me] = up;
    t->local[x] = me;
    int32_t *kids = xmalloc_array((size_t)d->nmembers, sizeof *kids);
    int32_t nk = children(d, x, kids);
    if (nk == 0)
        t->leaf[t->nleaves++] = me;
    for (int32_t i = 0; i < nk; i++)
        tree_visit(d, kids[i], me, t);
    free(kids);
}

typedef struct region {
    int nk;
    int kdim[DS_MAX_DIMS]; /* the consolidated dimensions, in model order */
    ref_tree t[DS_MAX_DIMS];
    spread_tree st[DS_MAX_DIMS];
} region;

static void region_init(region *g, const ds_model *m, const ds_cell *c)
{
    memset(g, 0, sizeof *g);
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        if (is_leaf(d, c->m[k]))
            continue;
        int j = g->nk++;
        g->kdim[j] = k;
        ref_tree *t = &g->t[j];
        size_t nm = (size_t)d->nmembers;
        t->id = xmalloc_array(nm, sizeof *t->id);
        t->parent = xmalloc_array(nm, sizeof *t->parent);
        t->leaf = xmalloc_array(nm, sizeof *t->leaf);
        t->local = xmalloc_array(nm, sizeof *t->local);
        for (size_t i = 0; i < nm; i++)
            t->local[i] = -1;
        tree_visit(d, c->m[k], -1, t);
        g->st[j] = (spread_tree){.n = t->n, .parent = t->parent, .id = t->id};
    }
}

static void region_free(region *g)
{
    for (int j = 0; j < g->nk; j++) {
        free(g->t[j].id);
        free(g->t[j].parent);
        free(g->t[j].local);
        free(g->t[j].leaf);
    }
}

/* The cells given to ref_spread. */
typedef struct cells {
    size_t n, alloc;
    int nk;
    ds_cell *cell;
    int32_t *coord; /* n * nk local nodes */
    int64_t *value; /* 0 when missing */
    int64_t *stamp; /* 0 without a fact */
    uint8_t *held;
    bool *missing; /* no fact, or its measure is not present */
} cells;

static void cells_push(cells *c, const region *g, const ds_model *m, const ds_write *w,
                       const int32_t *cell, const ref_fact *f)
{
    if (c->n == c->alloc) {
        c->alloc = c->alloc ? 2 * c->alloc : 256;
        size_t k = (size_t)(c->nk ? c->nk : 1);
        c->cell = xrealloc(c->cell, c->alloc * sizeof *c->cell);
        c->coord = xrealloc(c->coord, c->alloc * k * sizeof *c->coord);
        c->value = xrealloc(c->value, c->alloc * sizeof *c->value);
        c->stamp = xrealloc(c->stamp, c->alloc * sizeof *c->stamp);
        c->held = xrealloc(c->held, c->alloc);
        c->missing = xrealloc(c->missing, c->alloc * sizeof *c->missing);
    }
    size_t i = c->n++;
    int q = w->measure;
    memset(&c->cell[i], 0, sizeof c->cell[i]);
    memcpy(c->cell[i].m, cell, (size_t)m->ndims * sizeof *cell);
    for (int j = 0; j < g->nk; j++)
        c->coord[i * (size_t)g->nk + (size_t)j] = g->t[j].local[cell[g->kdim[j]]];
    c->missing[i] = !f || !(f->has >> q & 1);
    c->value[i] = c->missing[i] ? 0 : f->val[q];
    c->stamp[i] = f ? f->stamp[q] : 0;
    c->held[i] = held_by(m, w, cell);
}

static void cells_free(cells *c)
{
    free(c->cell);
    free(c->coord);
    free(c->value);
    free(c->stamp);
    free(c->held);
    free(c->missing);
    memset(c, 0, sizeof *c);
}

static bool in_region(const ds_model *m, const ds_cell *target, const int32_t *cell)
{
    return cell_beneath(m, cell, target->m);
}

/* The facts of the region where measure q is present; *rows counts the
 * region's facts with any measure. */
static void sparse_cells(const ref_engine *r, const region *g, const ds_write *w, cells *c,
                         size_t *rows)
{
    *rows = 0;
    for (size_t i = 0; i < r->nfacts; i++) {
        const ref_fact *f = &r->facts[i];
        if (!in_region(r->model, &w->cell, f->cell))
            continue;
        ++*rows;
        if (f->has >> w->measure & 1)
            cells_push(c, g, r->model, w, f->cell, f);
    }
}

/* Every cell of the region: the cross product of the leaves beneath the
 * target in each consolidated dimension. */
static void dense_cells(const ref_engine *r, const region *g, const ds_write *w, cells *c)
{
    int32_t at[DS_MAX_DIMS] = {0};
    for (;;) {
        ds_cell cell = w->cell;
        for (int j = 0; j < g->nk; j++)
            cell.m[g->kdim[j]] = g->t[j].id[g->t[j].leaf[at[j]]];
        cells_push(c, g, r->model, w, cell.m, find_fact(r, cell.m));
        int j = g->nk - 1;
        while (j >= 0 && ++at[j] == g->t[j].nleaves)
            at[j--] = 0;
        if (j < 0)
            break;
    }
}

static spread_cells as_spread_cells(const region *g, const cells *c)
{
    return (spread_cells){.n = c->n,
                          .ntrees = g->nk,
                          .trees = g->st,
                          .coord = c->coord,
                          .value = c->value,
                          .held = c->held};
}

/* ---- spreads: refusals' wording ------------------------------------------------------ */

static bool beyond_target(const mpz_t z)
{
    mpz_t lim;
    mpz_init(lim);
    mpz_ui_pow_ui(lim, 10, REF_TARGET_DIGITS);
    bool beyond = mpz_cmpabs(z, lim) > 0;
    mpz_clear(lim);
    return beyond;
}

/* The percent factor 100 * 10^s + p over 100 * 10^s; false when the
 * scale is not allowed or the factor does not fit 128 bits. */
static bool percent_factor(const spread_params *p, mpz_t num, mpz_t den)
{
    if (p->pct_scale < 0 || p->pct_scale > SPREAD_PCT_MAX_SCALE)
        return false;
    mpz_ui_pow_ui(den, 10, (unsigned long)p->pct_scale);
    mpz_mul_ui(den, den, 100);
    mpz_of_i128(num, p->amount);
    mpz_add(num, num, den);
    ds_i128 x;
    return ref_mpz_get_i128(num, &x);
}

/* A plan beyond range: the amount or T - h beyond 10^36 ("the target"),
 * or for a percent, floor(sum(U) * (1 + p/100)) beyond it. */
static int plan_range(const spread_params *p, const cells *c, ds_error *err)
{
    mpz_t a, num, den, usum;
    mpz_inits(a, num, den, usum, NULL);
    mpz_of_i128(a, p->amount);
    bool pct = false;
    if (!beyond_target(a) && p->form == SPREAD_PERCENT) {
        pct = !percent_factor(p, num, den);
        for (size_t i = 0; !pct && i < c->n; i++)
            if (!c->held[i]) {
                mpz_of_i128(a, c->value[i]);
                mpz_add(usum, usum, a);
            }
        if (!pct) {
            mpz_mul(usum, usum, num);
            mpz_fdiv_q(usum, usum, den);
            pct = beyond_target(usum);
        }
    }
    mpz_clears(a, num, den, usum, NULL);
    if (pct)
        return ds_fail(err, DS_OUT_OF_RANGE, "value", "the percent gives a total out of range");
    return ds_fail(err, DS_OUT_OF_RANGE, "value", "the target is out of range");
}

/* Cell i's coordinates come before cell j's (the apportionment tree's
 * depth-first order). */
static bool coord_before(const cells *c, size_t i, size_t j)
{
    for (int k = 0; k < c->nk; k++) {
        int32_t a = c->coord[i * (size_t)c->nk + (size_t)k],
                b = c->coord[j * (size_t)c->nk + (size_t)k];
        if (a != b)
            return a < b;
    }
    return false;
}

/* An apportionment beyond range. Repeat: a percent factor that cannot be
 * formed, else a leaf. Proportional and equal: the first cell taking part
 * (depth-first order) whose share's floor (T - h) * w / W does not fit
 * 128 bits is "the spread", one beyond leaf_max + 1 "a leaf"; no such
 * cell: a leaf after the apportionment. */
static int apportion_range(const spread_params *p, spread_method eff, const cells *c,
                           const mpz_t need, ds_error *err)
{
    mpz_t num, den, w, share;
    mpz_inits(num, den, w, share, NULL);
    const char *msg = LEAF_RANGE;
    if (eff == SPREAD_REPEAT && p->form == SPREAD_PERCENT && !percent_factor(p, num, den))
        msg = "the percent is out of range";
    size_t n = 0, *order = xmalloc_array(c->n + 1, sizeof *order);
    for (size_t i = 0; eff != SPREAD_REPEAT && i < c->n; i++) {
        if (c->held[i] || (eff == SPREAD_PROPORTIONAL && c->value[i] == 0))
            continue;
        mpz_of_i128(w, eff == SPREAD_EQUAL ? 1 : c->value[i]);
        mpz_add(den, den, w);
        size_t at = n++;
        for (; at > 0 && coord_before(c, i, order[at - 1]); at--)
            order[at] = order[at - 1];
        order[at] = i;
    }
    mpz_set(num, need);
    if (mpz_sgn(den) < 0) {
        mpz_neg(num, num);
        mpz_neg(den, den);
    }
    for (size_t k = 0; k < n; k++) {
        mpz_of_i128(w, eff == SPREAD_EQUAL ? 1 : c->value[order[k]]);
        mpz_mul(share, num, w);
        mpz_fdiv_q(share, share, den);
        ds_i128 s;
        if (!ref_mpz_get_i128(share, &s)) {
            msg = "the spread is out of range";
            break;
        }
        if (s > (ds_i128)p->leaf_max + 1 || s < -((ds_i128)p->leaf_max + 1))
            break;
    }
    free(order);
    mpz_clears(num, den, w, share, NULL);
    return ds_fail(err, DS_OUT_OF_RANGE, "value", "%s", msg);
}

/* ---- spreads: deciding ------------------------------------------------------------------ */

/* Equal and repeat fill missing cells: c becomes every cell of the region,
 * unless that would fill more than the cap (too_many_cells). The count is
 * the missing cells no hold covers; a region with holds too large to list
 * (more than 4 * (cap + its facts) + 10^6 cells) counts every missing cell,
 * held or not (the engine does not list it to find the held ones). */
static int fill_region(const ref_engine *r, const region *g, const ds_write *w, size_t rows,
                       cells *c, ds_error *err)
{
    ds_i128 count = 1, cap = r->o.create_cap;
    for (int j = 0; j < g->nk; j++) {
        count *= g->t[j].nleaves;
        if (count > REF_REGION_COUNT_MAX)
            count = REF_REGION_COUNT_MAX;
    }
    ds_i128 fill = count - (ds_i128)c->n; /* c: the cells with a value */
    bool listable = count <= 4 * (cap + (ds_i128)rows) + 1000000;
    cells dense = {.nk = g->nk};
    bool listed = w->nholds > 0 && listable;
    if (listed) {
        dense_cells(r, g, w, &dense);
        fill = 0;
        for (size_t i = 0; i < dense.n; i++)
            fill += dense.missing[i] && !dense.held[i];
    }
    if (fill > cap) {
        cells_free(&dense);
        return too_many_cells(err, (int64_t)fill, (int64_t)cap);
    }
    if (!listed)
        dense_cells(r, g, w, &dense);
    cells_free(c);
    *c = dense;
    return 0;
}

/* if_seq over a spread: the target's structure, then any cell it changes
 * that an earlier command changed after if_seq. */
static int stale_region(const ref_engine *r, const ds_command *cmd, const ds_write *w,
                        const cells *c, const int64_t *nv, int64_t seq, ds_error *err)
{
    if (cmd->if_seq < 0)
        return 0;
    int rc = stale_structure(r->model, w->cell.m, cmd->if_seq, seq - 1, err);
    for (size_t i = 0; rc == 0 && i < c->n; i++)
        if (nv[i] != c->value[i] && c->stamp[i] > cmd->if_seq && c->stamp[i] != seq)
            rc = stale_cell(err, cmd->if_seq, seq - 1);
    return rc;
}

static int decide_spread(const ref_engine *r, const ds_command *cmd, const ds_write *w, int64_t seq,
                         decision *d, ds_error *err)
{
    const ds_model *m = r->model;
    region g;
    region_init(&g, m, &w->cell);
    cells c = {.nk = g.nk};
    size_t rows;
    sparse_cells(r, &g, w, &c, &rows);
    spread_params p = {.method = w->method,
                       .form = w->form,
                       .amount = w->amount,
                       .pct_scale = w->pct_scale,
                       .seq = (uint64_t)seq,
                       .leaf_max = DEC_LEAF_MAX};
    mpz_t target, need, after;
    mpz_inits(target, need, after, NULL);
    spread_method eff;
    spread_cells sc = as_spread_cells(&g, &c);
    int rc = ref_plan(&p, &sc, &eff, target, need);
    if (rc == -DS_SIGNS_CANCEL)
        rc = ds_fail(err, DS_SIGNS_CANCEL, "value",
                     "the leaves beneath the cell have values whose signs cancel (their sum is "
                     "near zero), so a proportional spread is undefined; use method \"equal\"");
    else if (rc)
        rc = plan_range(&p, &c, err);
    if (rc == 0 && eff != SPREAD_PROPORTIONAL)
        rc = fill_region(r, &g, w, rows, &c, err);
    int64_t *nv = xmalloc_array(c.n + 1, sizeof *nv);
    if (rc == 0) {
        sc = as_spread_cells(&g, &c);
        spread_method eff2;
        rc = ref_spread(&p, &sc, nv, &eff2, after);
        if (rc == 0 && eff2 != eff)
            ref_die("the plan's method changed with the missing cells");
        if (rc == -DS_HELD)
            rc = ds_fail(err, DS_HELD, "cell", "every leaf beneath the cell is held");
        else if (rc)
            rc = apportion_range(&p, eff, &c, need, err);
    }
    if (rc == 0)
        rc = stale_region(r, cmd, w, &c, nv, seq, err);
    if (rc == 0) {
        ds_i128 t_after;
        if (!ref_mpz_get_i128(after, &t_after))
            ref_die("a total beyond 128 bits");
        d->method = eff;
        d->target = (ds_change){.cell = w->cell,
                                .measure = w->measure,
                                .old_value = total_of(r, w->cell.m, w->measure),
                                .new_value = t_after};
        for (size_t i = 0; i < c.n; i++) {
            if (nv[i] == c.value[i])
                continue;
            int k0 = g.kdim[0];
            bool child = g.nk == 1 && m->dims[k0].members[c.cell[i].m[k0]].parent == w->cell.m[k0];
            decision_add(d, c.cell[i].m, w->measure, c.value[i], nv[i], child);
        }
    }
    free(nv);
    mpz_clears(target, need, after, NULL);
    cells_free(&c);
    region_free(&g);
    return rc;
}

/* ---- the totals a write lists ------------------------------------------------------------ */

typedef struct totals {
    size_t n, alloc;
    ds_cell *cell;
    ds_i128 *before, *after;
    size_t nabove; /* cells 0 .. nabove-1 are above the target, then children */
    bool listed;   /* false: too many cells above to list */
} totals;

static void totals_add(totals *t, const ds_cell *c)
{
    if (t->n == t->alloc) {
        t->alloc = t->alloc ? 2 * t->alloc : 64;
        t->cell = xrealloc(t->cell, t->alloc * sizeof *t->cell);
    }
    t->cell[t->n++] = *c;
}

/* The cells above c: in each dimension where c is not the root, c's member
 * or one of its ancestors, not all c's own; nearest first (fewest steps up
 * in all), then fewer steps up in earlier dimensions first. */
static void above(const ds_model *m, const ds_cell *c, totals *t)
{
    int nd = 0, dim[DS_MAX_DIMS], len[DS_MAX_DIMS];
    int32_t chain[DS_MAX_DIMS][REF_ABOVE_MAX_DEPTH + 1];
    size_t size = 1;
    t->listed = true;
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        if (c->m[k] == d->root)
            continue;
        int n = 0;
        for (int32_t x = c->m[k]; x >= 0; x = d->members[x].parent) {
            if (n > REF_ABOVE_MAX_DEPTH) {
                t->listed = false;
                return;
            }
            chain[nd][n++] = x;
        }
        dim[nd] = k;
        len[nd++] = n;
        size *= (size_t)n;
        if (size > REF_ABOVE_MAX_LATTICE) {
            t->listed = false;
            return;
        }
    }
    int maxd = 0;
    for (int i = 0; i < nd; i++)
        maxd += len[i] - 1;
    for (int dist = 1; dist <= maxd; dist++) {
        int at[DS_MAX_DIMS] = {0}; /* steps up per dimension, an odometer */
        for (;;) {
            int sum = 0;
            for (int i = 0; i < nd; i++)
                sum += at[i];
            if (sum == dist) {
                ds_cell a = *c;
                for (int i = 0; i < nd; i++)
                    a.m[dim[i]] = chain[i][at[i]];
                totals_add(t, &a);
            }
            int i = nd - 1;
            while (i >= 0 && ++at[i] == len[i])
                at[i--] = 0;
            if (i < 0)
                break;
        }
    }
}

/* The cells a write lists besides its target, with their values now. */
static void totals_init(const ref_engine *r, const ds_write *w, totals *t)
{
    const ds_model *m = r->model;
    memset(t, 0, sizeof *t);
    above(m, &w->cell, t);
    t->nabove = t->n;
    for (int k = 0; t->listed && k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        int32_t *kids = xmalloc_array((size_t)d->nmembers, sizeof *kids);
        int32_t n = children(d, w->cell.m[k], kids);
        for (int32_t i = 0; i < n; i++) {
            ds_cell c = w->cell;
            c.m[k] = kids[i];
            totals_add(t, &c);
        }
        free(kids);
    }
    t->before = xmalloc_array(t->n + 1, sizeof *t->before);
    t->after = xmalloc_array(t->n + 1, sizeof *t->after);
    for (size_t i = 0; i < t->n; i++)
        t->before[i] = total_of(r, t->cell[i].m, w->measure);
}

static void totals_free(totals *t)
{
    free(t->cell);
    free(t->before);
    free(t->after);
}

static void change_add(ds_changeset *set, size_t cap, const ds_cell *c, int q, ds_i128 old,
                       ds_i128 nv)
{
    if (set->nchanges == cap) {
        set->truncated = true;
        return;
    }
    set->changes = xrealloc(set->changes, (set->nchanges + 1) * sizeof *set->changes);
    set->changes[set->nchanges++] =
        (ds_change){.cell = *c, .measure = q, .old_value = old, .new_value = nv};
}

/* The change set: the target, the cells above, the children whose total
 * changed (cut at the cap), and every changed leaf. */
static void fill_set(const ref_engine *r, const ds_write *w, const decision *d, totals *t,
                     ds_changeset *set)
{
    size_t cap = r->o.change_cap;
    for (size_t i = 0; i < t->n; i++)
        t->after[i] = total_of(r, t->cell[i].m, w->measure);
    set->target = d->target;
    set->method = d->method;
    set->leaf = d->leaf;
    set->leaves_changed = (int64_t)d->n;
    change_add(set, cap, &w->cell, w->measure, d->target.old_value, d->target.new_value);
    if (!t->listed)
        set->truncated = true;
    for (size_t i = 0; i < t->n; i++)
        if (i < t->nabove || t->before[i] != t->after[i])
            change_add(set, cap, &t->cell[i], w->measure, t->before[i], t->after[i]);
    if (d->n) {
        set->leaves = xmalloc_array(d->n, sizeof *set->leaves);
        set->in_totals = xmalloc_array(d->n, sizeof *set->in_totals);
        memcpy(set->leaves, d->chg, d->n * sizeof *d->chg);
        memcpy(set->in_totals, d->in_totals, d->n * sizeof *d->in_totals);
    }
    set->nleaves = d->n;
    set->leaves_truncated = d->n > cap;
}

/* ---- one write ------------------------------------------------------------------------------- */

static void apply_decision(ref_engine *r, const decision *d, int64_t seq)
{
    ref_fact *add = xmalloc_array(d->n + 1, sizeof *add);
    size_t nadd = 0;
    for (size_t i = 0; i < d->n; i++) {
        const ds_change *c = &d->chg[i];
        ref_fact *f = find_fact(r, c->cell.m);
        if (f)
            set_value(f, c->measure, (int64_t)c->new_value, seq);
        else
            add[nadd++] = new_fact(r->model, c->cell.m, c->measure, (int64_t)c->new_value, seq);
    }
    if (nadd)
        add_facts(r, add, nadd);
    free(add);
}

static int check_names(const ds_model *m, const ds_write *w, ds_error *err)
{
    if (w->measure < 0 || w->measure >= m->nmeasures)
        return ds_fail(err, DS_NOT_FOUND, "column", "no such measure");
    for (int k = 0; k < m->ndims; k++)
        if (!alive(&m->dims[k], w->cell.m[k]))
            return ds_fail(err, DS_NOT_FOUND, "cell", "dimension '%s' has no such member",
                           m->dims[k].name);
    for (int h = 0; h < w->nholds; h++)
        for (int k = 0; k < m->ndims; k++)
            if (w->holds[h].m[k] != -1 && !alive(&m->dims[k], w->holds[h].m[k]))
                return ds_fail(err, DS_NOT_FOUND, "cell", "a hold names no member of '%s'",
                               m->dims[k].name);
    return 0;
}

static int write_one(ref_engine *r, const ds_command *cmd, const ds_write *w, int64_t seq,
                     ds_changeset *set, ds_error *err)
{
    int rc = check_names(r->model, w, err);
    if (rc)
        return rc;
    totals t;
    totals_init(r, w, &t);
    decision d;
    memset(&d, 0, sizeof d);
    if (cell_is_leaf(r->model, w->cell.m))
        rc = decide_leaf(r, cmd, w, seq, &d, err);
    else
        rc = decide_spread(r, cmd, w, seq, &d, err);
    if (rc == 0) {
        apply_decision(r, &d, seq);
        fill_set(r, w, &d, &t, set);
    }
    free(d.chg);
    free(d.in_totals);
    totals_free(&t);
    return rc;
}

/* ---- member operations ----------------------------------------------------------------------- */

static int stale_member(const ref_engine *r, const ds_dim *d, int32_t x, int64_t if_seq,
                        ds_error *err)
{
    if (if_seq < 0 || !alive(d, x) || d->members[x].struct_seq <= if_seq)
        return 0;
    return at_seq(ds_fail(err, DS_STALE, "cell",
                          "member '%s' of dimension '%s' changed after seq %" PRId64,
                          d->members[x].key, d->name, if_seq),
                  err, r->seq);
}

static bool key_taken(const ds_dim *d, const char *key)
{
    size_t len = strlen(key);
    for (int32_t x = 0; x < d->nmembers; x++)
        if (d->members[x].alive && strlen(d->members[x].key) == len &&
            memcmp(d->members[x].key, key, len) == 0)
            return true;
    return false;
}

/* The facts of leaf `from` go to leaf `to` (dimension dim), their values
 * stamped with seq. */
static void move_facts(ref_engine *r, int dim, int32_t from, int32_t to, int64_t seq)
{
    for (size_t i = 0; i < r->nfacts; i++) {
        ref_fact *f = &r->facts[i];
        if (f->cell[dim] != from)
            continue;
        f->cell[dim] = to;
        for (int q = 0; q < r->model->nmeasures; q++)
            if (f->has >> q & 1)
                f->stamp[q] = seq;
    }
    qsort(r->facts, r->nfacts, sizeof *r->facts, fact_cmp);
}

/* The facts at or beneath member x of dimension dim are deleted. */
static void drop_facts(ref_engine *r, int dim, int32_t x)
{
    size_t kept = 0;
    for (size_t i = 0; i < r->nfacts; i++)
        if (!beneath(&r->model->dims[dim], r->facts[i].cell[dim], x))
            r->facts[kept++] = r->facts[i];
    r->nfacts = kept;
}

/* A leaf with facts that a new child or a moved member goes under: its
 * facts must go to a leaf without facts (facts_to). *takes: they move. */
static int facts_to_check(const ref_engine *r, const ds_member_op *op, int32_t under, bool *takes,
                          ds_error *err)
{
    const ds_dim *d = &r->model->dims[op->dim];
    *takes = false;
    int64_t n = is_leaf(d, under) ? facts_beneath(r, op->dim, under) : 0;
    if (n == 0)
        return 0;
    if (op->facts_to == -1)
        return ds_fail(err, DS_INVALID_VALUE, "facts_to",
                       "member '%s' has %" PRId64
                       " facts; say which new child takes them (facts_to)",
                       d->members[under].key, n);
    if (op->kind == MEMBER_ADD && op->facts_to != -2)
        return ds_fail(err, DS_INVALID_VALUE, "facts_to",
                       "when adding a child under a leaf with facts, facts_to must be the new "
                       "member");
    if (op->kind == MEMBER_MOVE) {
        int32_t to = op->facts_to;
        if (!alive(d, to) || !beneath(d, to, op->member) || !is_leaf(d, to))
            return ds_fail(err, DS_INVALID_VALUE, "facts_to",
                           "facts_to must be a leaf at or beneath the member being moved");
        if (facts_beneath(r, op->dim, to) > 0)
            return ds_fail(err, DS_INVALID_VALUE, "facts_to",
                           "facts_to '%s' has facts of its own; choose a leaf without facts",
                           d->members[to].key);
    }
    *takes = true;
    return 0;
}

static int member_add(ref_engine *r, const ds_command *cmd, int64_t seq, ds_model **out,
                      ds_error *err)
{
    const ds_member_op *op = &cmd->member;
    const ds_dim *d = &r->model->dims[op->dim];
    if (!alive(d, op->parent))
        return ds_fail(err, DS_NOT_FOUND, "cell", "the parent is not a member of '%s'", d->name);
    const char *name = op->name ? op->name : op->key;
    int rc = model_check_name(op->key, strlen(op->key), "key", err);
    if (rc == 0)
        rc = model_check_name(name, strlen(name), "name", err);
    if (rc)
        return rc;
    if (key_taken(d, op->key))
        return ds_fail(err, DS_INVALID_VALUE, "key", "dimension '%s' already has a member '%s'",
                       d->name, op->key);
    bool takes;
    if ((rc = stale_member(r, d, op->parent, cmd->if_seq, err)) ||
        (rc = facts_to_check(r, op, op->parent, &takes, err)))
        return rc;
    ds_model *m2 = model_clone(r->model);
    ds_dim *d2 = &m2->dims[op->dim];
    int id = model_add_member(d2, op->parent, op->key, name, last_ordinal(d, op->parent), err);
    if (id < 0) {
        model_free(m2);
        return id;
    }
    model_dim_index(d2);
    touch(d2, id, seq);
    if (takes)
        move_facts(r, op->dim, op->parent, id, seq);
    *out = m2;
    return 0;
}

static int member_move(ref_engine *r, const ds_command *cmd, int64_t seq, ds_model **out,
                       ds_error *err)
{
    const ds_member_op *op = &cmd->member;
    const ds_dim *d = &r->model->dims[op->dim];
    if (!alive(d, op->member) || !alive(d, op->parent))
        return ds_fail(err, DS_NOT_FOUND, "cell", "no such member in '%s'", d->name);
    if (op->member == d->root)
        return ds_fail(err, DS_INVALID_VALUE, "member", "the root of '%s' cannot move", d->name);
    if (beneath(d, op->parent, op->member))
        return ds_fail(err, DS_INVALID_VALUE, "parent", "'%s' cannot move beneath itself",
                       d->members[op->member].key);
    int32_t old_parent = d->members[op->member].parent;
    bool takes = false;
    int rc = stale_member(r, d, op->member, cmd->if_seq, err);
    if (rc == 0)
        rc = stale_member(r, d, op->parent, cmd->if_seq, err);
    if (rc == 0 && op->parent != old_parent)
        rc = facts_to_check(r, op, op->parent, &takes, err);
    if (rc)
        return rc;
    ds_model *m2 = model_clone(r->model);
    ds_dim *d2 = &m2->dims[op->dim];
    touch(d2, old_parent, seq);
    d2->members[op->member].parent = op->parent;
    d2->members[op->member].ordinal = last_ordinal(d, op->parent);
    model_dim_index(d2);
    touch(d2, op->member, seq);
    if (takes)
        move_facts(r, op->dim, op->parent, op->facts_to, seq);
    *out = m2;
    return 0;
}

static int member_delete(ref_engine *r, const ds_command *cmd, int64_t seq, ds_model **out,
                         ds_error *err)
{
    const ds_member_op *op = &cmd->member;
    const ds_dim *d = &r->model->dims[op->dim];
    if (!alive(d, op->member))
        return ds_fail(err, DS_NOT_FOUND, "cell", "no such member in '%s'", d->name);
    if (op->member == d->root)
        return ds_fail(err, DS_INVALID_VALUE, "member", "the root of '%s' cannot be deleted",
                       d->name);
    int rc = stale_member(r, d, op->member, cmd->if_seq, err);
    if (rc)
        return rc;
    int64_t n = facts_beneath(r, op->dim, op->member);
    if (n > 0 && !op->force)
        return ds_fail(err, DS_INVALID_VALUE, "force",
                       "'%s' has %" PRId64 " facts beneath it; delete with force to delete them "
                       "too",
                       d->members[op->member].key, n);
    drop_facts(r, op->dim, op->member);
    ds_model *m2 = model_clone(r->model);
    ds_dim *d2 = &m2->dims[op->dim];
    for (int32_t x = 0; x < d->nmembers; x++)
        if (alive(d, x) && beneath(d, x, op->member))
            model_kill_member(d2, x);
    touch(d2, d->members[op->member].parent, seq);
    model_dim_index(d2);
    *out = m2;
    return 0;
}

static int member_rename(ref_engine *r, const ds_command *cmd, ds_model **out, ds_error *err)
{
    const ds_member_op *op = &cmd->member;
    const ds_dim *d = &r->model->dims[op->dim];
    if (!alive(d, op->member))
        return ds_fail(err, DS_NOT_FOUND, "cell", "no such member in '%s'", d->name);
    const char *name = op->name ? op->name : "";
    int rc = model_check_name(name, strlen(name), "name", err);
    if (rc)
        return rc;
    ds_model *m2 = model_clone(r->model);
    ds_member *mb = &m2->dims[op->dim].members[op->member];
    free(mb->name);
    mb->name = xstrdup(name);
    model_dim_index(&m2->dims[op->dim]);
    *out = m2;
    return 0;
}

static int member_op(ref_engine *r, const ds_command *cmd, int64_t seq, ds_model **out,
                     ds_error *err)
{
    const ds_member_op *op = &cmd->member;
    *out = NULL;
    if (op->dim < 0 || op->dim >= r->model->ndims)
        return ds_fail(err, DS_NOT_FOUND, "dimension", "no such dimension");
    switch (op->kind) {
    case MEMBER_ADD:
        return member_add(r, cmd, seq, out, err);
    case MEMBER_MOVE:
        return member_move(r, cmd, seq, out, err);
    case MEMBER_DELETE:
        return member_delete(r, cmd, seq, out, err);
    case MEMBER_RENAME:
        return member_rename(r, cmd, out, err);
    }
    return ds_fail(err, DS_INVALID_VALUE, "op", "unknown member operation");
}

/* ---- commands
 * ------------------------------------------------------------------------------------ */

static int decode(const ref_engine *r, const engine_input *in, ds_arena *a, ds_command *cmd,
                  ds_error *err)
{
    json_val *root = NULL;
    req_decoded dec;
    int rc = json_parse(in->cmd, in->cmd_len, NULL, &root, err);
    if (rc == 0)
        rc = request_check(root, REQ_CANONICAL, err);
    if (rc == 0)
        rc = request_resolve(root, REQ_CANONICAL, r->model, NULL, a, &dec, err);
    if (rc == 0)
        rc = request_scope(r->model, &dec.cmd, in->scope_dim, in->scope_member, err);
    if (rc == 0)
        *cmd = dec.cmd;
    json_free(root);
    return rc;
}

static int writes(ref_engine *r, const ds_command *cmd, int64_t seq, ds_outcome *out, ds_error *err)
{
    if (cmd->nwrites == 0)
        return ds_fail(err, DS_INVALID_VALUE, "cells", "the command has no writes");
    out->sets = xcalloc(cmd->nwrites, sizeof *out->sets);
    out->nsets = cmd->nwrites;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < cmd->nwrites; i++)
        rc = write_one(r, cmd, &cmd->writes[i], seq, &out->sets[i], err);
    return rc;
}

/* Decides and applies one command; on a refusal the facts are put back
 * as they were before it. */
static int command(ref_engine *r, const engine_input *in, ref_result *res)
{
    int64_t seq = r->seq + 1;
    ds_arena arena = {0};
    ds_command cmd;
    ds_error *err = &res->err;
    int rc = decode(r, in, &arena, &cmd, err);
    if (rc == 0 && cmd.if_seq > r->seq) {
        rc = ds_fail(err, DS_STALE, "if_seq",
                     "if_seq %" PRId64 " is newer than the model, which is at seq %" PRId64,
                     cmd.if_seq, r->seq);
        err->has_seq = true;
        err->seq = r->seq;
    }
    size_t nfacts = r->nfacts;
    ref_fact *copy = xmalloc_array(nfacts + 1, sizeof *copy);
    memcpy(copy, r->facts, nfacts * sizeof *copy);
    ds_model *after = NULL;
    res->out.seq = seq;
    res->out.ts_us = in->ts_ms * 1000;
    if (rc == 0 && cmd.kind == COMMAND_WRITE)
        rc = writes(r, &cmd, seq, &res->out, err);
    else if (rc == 0)
        rc = member_op(r, &cmd, seq, &after, err);
    if (rc) {
        free(r->facts);
        r->facts = copy;
        r->nfacts = r->facts_alloc = nfacts;
        outcome_clear(&res->out);
        model_free(after);
    } else {
        free(copy);
        if (after) {
            after->struct_seq = seq;
            model_free(r->model);
            r->model = after;
        }
        r->seq = seq;
    }
    ds_arena_free(&arena);
    return rc;
}

/* The ledger: requests recorded before `before` are forgotten. */
static void forget(ref_engine *r, int64_t before)
{
    size_t kept = 0;
    for (size_t i = 0; i < r->nreq; i++) {
        if (r->req[i].ts_ms >= before) {
            r->req[kept++] = r->req[i];
            continue;
        }
        free(r->req[i].user);
        free(r->req[i].rid);
    }
    r->nreq = kept;
}

static const ref_request *lookup(const ref_engine *r, const char *user, const char *rid)
{
    for (size_t i = 0; i < r->nreq; i++)
        if (strcmp(r->req[i].user, user) == 0 && strcmp(r->req[i].rid, rid) == 0)
            return &r->req[i];
    return NULL;
}

void ref_engine_submit(ref_engine *r, const engine_input *in, ref_result *res)
{
    memset(res, 0, sizeof *res);
    res->seq = -1;
    forget(r, in->ts_ms - r->o.retention_ms);
    const ref_request *seen = lookup(r, in->user, in->rid);
    if (seen && strcmp(seen->hash, in->hash) == 0) {
        res->status = ENGINE_DUPLICATE;
        res->seq = seen->seq;
        res->code = seen->code;
    } else if (seen) {
        res->status = ENGINE_REUSED;
        res->code = DS_REQUEST_ID_REUSED;
        ds_fail(&res->err, DS_REQUEST_ID_REUSED, "request_id",
                "request_id '%s' was used before with another body", in->rid);
    } else if (command(r, in, res) == 0) {
        res->status = ENGINE_APPLIED;
        res->seq = r->seq;
        res->code = DS_OK;
        record(r, in->user, in->rid, in->hash, r->seq, DS_OK, in->ts_ms);
    } else {
        res->status = ENGINE_REFUSED;
        res->code = res->err.code;
        record(r, in->user, in->rid, in->hash, -1, res->err.code, in->ts_ms);
    }
}

void ref_result_clear(ref_result *res)
{
    outcome_clear(&res->out);
    memset(res, 0, sizeof *res);
}
