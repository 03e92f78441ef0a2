/* ref_spread.c: the reference spreading implementation for tests (see
 * ref_spread.h). Slow on purpose: every number is an exact GMP integer or
 * rational, the apportionment tree is built explicitly and recursively
 * node by node, and the cells beneath a node are found by scanning every
 * cell and walking parent links. Nothing here is shared with
 * src/spread.c except the public types of spread.h. */
#include "ref_spread.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A node (k, x_0..x_{k-1}, y) of the apportionment tree. */
typedef struct ref_node {
    int k;
    int32_t x[REF_MAX_TREES]; /* x[0..k-1]: leaf members of the earlier trees */
    int32_t y;                /* a member of tree k */
} ref_node;

/* The state of one apportionment. */
typedef struct ref_run {
    const spread_params *p;
    const spread_cells *c;
    spread_method method;
    mpz_t need; /* T - h */
    mpz_t wsum; /* W: the unheld cells' weights summed */
    int64_t *out;
    bool out_of_range;
} ref_run;

static void ref_die(const char *what)
{
    fprintf(stderr, "ref_spread: internal error: %s\n", what);
    abort();
}

void ref_mpz_set_i128(mpz_t z, ds_i128 v)
{
    ds_u128 u = v < 0 ? -(ds_u128)v : (ds_u128)v;
    uint64_t words[2] = {(uint64_t)u, (uint64_t)(u >> 64)};
    mpz_import(z, 2, -1, sizeof(uint64_t), 0, 0, words);
    if (v < 0)
        mpz_neg(z, z);
}

bool ref_mpz_get_i128(const mpz_t z, ds_i128 *out)
{
    mpz_t a;
    mpz_init(a);
    mpz_abs(a, z);
    bool is_min = mpz_sgn(z) < 0 && mpz_sizeinbase(a, 2) == 128 && mpz_scan1(a, 0) == 127;
    if (mpz_sizeinbase(a, 2) > 127 && !is_min) {
        mpz_clear(a);
        return false;
    }
    uint64_t words[2] = {0, 0};
    size_t count = 0;
    mpz_export(words, &count, -1, sizeof(uint64_t), 0, 0, a);
    ds_u128 u = ((ds_u128)words[1] << 64) | words[0];
    *out = mpz_sgn(z) < 0 ? (ds_i128)(-u) : (ds_i128)u;
    mpz_clear(a);
    return true;
}

uint64_t ref_tie_hash(uint64_t seq, const int32_t *ids, int n)
{
    uint64_t h = ds_mix64(seq);
    for (int j = 0; j < n; j++)
        h = ds_mix64(h ^ (uint64_t)(uint32_t)ids[j]);
    return h;
}

void ref_round_half_away(mpz_t out, const mpz_t num, const mpz_t den)
{
    /* sign(num) * floor((2|num| + den) / (2 den)) */
    mpz_t a, d;
    mpz_inits(a, d, NULL);
    mpz_abs(a, num);
    mpz_mul_ui(a, a, 2);
    mpz_add(a, a, den);
    mpz_mul_ui(d, den, 2);
    mpz_fdiv_q(a, a, d);
    if (mpz_sgn(num) < 0)
        mpz_neg(a, a);
    mpz_set(out, a);
    mpz_clears(a, d, NULL);
}

/* int64 -> mpz without assuming long is 64 bits. */
static void set_i64(mpz_t z, int64_t v)
{
    ref_mpz_set_i128(z, (ds_i128)v);
}

/* The percent factor 1 + p/100 as num/den, p = amount / 10^pct_scale. */
static void percent_factor(const spread_params *p, mpz_t num, mpz_t den)
{
    if (p->pct_scale < 0 || p->pct_scale > SPREAD_PCT_MAX_SCALE)
        ref_die("pct_scale out of range");
    mpz_ui_pow_ui(den, 10, (unsigned long)p->pct_scale);
    mpz_mul_ui(den, den, 100);
    ref_mpz_set_i128(num, p->amount);
    mpz_add(num, num, den);
}

static bool cell_held(const spread_cells *c, size_t i)
{
    return c->held != NULL && c->held[i] != 0;
}

/* a == y or a lies beneath y in tree t (walking parent links). */
static bool is_beneath(const spread_tree *t, int32_t a, int32_t y)
{
    for (int32_t i = a; i >= 0; i = t->parent[i])
        if (i == y)
            return true;
    return false;
}

static bool is_leaf(const spread_tree *t, int32_t y)
{
    for (int32_t i = 0; i < t->n; i++)
        if (t->parent[i] == y)
            return false;
    return true;
}

/* Does cell i lie beneath node nd? */
static bool cell_beneath(const spread_cells *c, size_t i, const ref_node *nd)
{
    const int32_t *coord = c->coord + i * (size_t)c->ntrees;
    for (int j = 0; j < nd->k; j++)
        if (coord[j] != nd->x[j])
            return false;
    return is_beneath(&c->trees[nd->k], coord[nd->k], nd->y);
}

/* W_node: the summed weight of the unheld cells beneath nd. */
static void node_weight(const ref_run *r, const ref_node *nd, mpz_t w)
{
    mpz_set_ui(w, 0);
    for (size_t i = 0; i < r->c->n; i++) {
        if (cell_held(r->c, i) || !cell_beneath(r->c, i, nd))
            continue;
        if (r->method == SPREAD_PROPORTIONAL) {
            mpz_t v;
            mpz_init(v);
            set_i64(v, r->c->value[i]);
            mpz_add(w, w, v);
            mpz_clear(v);
        } else {
            mpz_add_ui(w, w, 1);
        }
    }
}

static uint64_t node_hash(const ref_run *r, const ref_node *nd)
{
    int32_t ids[REF_MAX_TREES + 1];
    for (int j = 0; j < nd->k; j++)
        ids[j] = r->c->trees[j].id[nd->x[j]];
    ids[nd->k] = r->c->trees[nd->k].id[nd->y];
    return ref_tie_hash(r->p->seq, ids, nd->k + 1);
}

/* The children of nd in sibling order; *out is malloc'ed (caller frees).
 * Returns -1 when nd is a cell (a leaf of the last tree). */
static int node_children(const ref_run *r, const ref_node *nd, ref_node **out)
{
    const spread_tree *t = &r->c->trees[nd->k];
    ref_node base = *nd;
    int32_t parent = nd->y;
    if (is_leaf(t, nd->y)) {
        if (nd->k == r->c->ntrees - 1)
            return -1;
        base.x[nd->k] = nd->y; /* beneath leaf y: the next tree's root's children */
        base.k = nd->k + 1;
        t = &r->c->trees[base.k];
        parent = 0;
    }
    ref_node *kids = malloc(sizeof *kids * (size_t)(t->n > 0 ? t->n : 1));
    if (kids == NULL)
        ref_die("out of memory");
    int m = 0;
    for (int32_t i = 0; i < t->n; i++) {
        if (t->parent[i] != parent)
            continue;
        kids[m] = base;
        kids[m].y = i;
        m++;
    }
    if (m == 0)
        ref_die("a tree's root has no children");
    *out = kids;
    return m;
}

/* The index of the cell at node nd (a leaf of the last tree), or -1. */
static long find_cell(const spread_cells *c, const ref_node *nd)
{
    long found = -1;
    for (size_t i = 0; i < c->n; i++) {
        const int32_t *coord = c->coord + i * (size_t)c->ntrees;
        bool same = coord[nd->k] == nd->y;
        for (int j = 0; j < nd->k && same; j++)
            same = coord[j] == nd->x[j];
        if (same) {
            if (found >= 0)
                ref_die("two cells share all coordinates");
            found = (long)i;
        }
    }
    return found;
}

/* A cell node receives `units`. */
static void give_cell(ref_run *r, const ref_node *nd, const mpz_t units)
{
    long i = find_cell(r->c, nd);
    if (i < 0 || cell_held(r->c, (size_t)i)) {
        if (mpz_sgn(units) != 0)
            ref_die("units given to a missing or held cell");
        return;
    }
    ds_i128 v;
    if (!ref_mpz_get_i128(units, &v) || v > r->p->leaf_max || v < -(ds_i128)r->p->leaf_max) {
        r->out_of_range = true;
        return;
    }
    r->out[i] = (int64_t)v;
}

/* Is child a ranked before child b for an extra unit? */
static bool ranks_before(const ref_run *r, const ref_node *kids, mpq_t *frac, int a, int b)
{
    int cmp = mpq_cmp(frac[a], frac[b]);
    if (cmp != 0)
        return cmp > 0;
    uint64_t ha = node_hash(r, &kids[a]), hb = node_hash(r, &kids[b]);
    if (ha != hb)
        return ha > hb;
    return a < b;
}

/* Node nd was given the integer `units`: hand them to its children. */
static void apportion_node(ref_run *r, const ref_node *nd, const mpz_t units)
{
    ref_node *kids = NULL;
    int m = node_children(r, nd, &kids);
    if (m < 0) {
        give_cell(r, nd, units);
        return;
    }
    mpq_t *frac = malloc(sizeof *frac * (size_t)m);
    mpz_t *got = malloc(sizeof *got * (size_t)m);
    bool *picked = calloc((size_t)m, sizeof *picked);
    if (frac == NULL || got == NULL || picked == NULL)
        ref_die("out of memory");
    mpz_t left, w;
    mpz_inits(left, w, NULL);
    mpz_set(left, units);
    for (int i = 0; i < m; i++) {
        mpq_init(frac[i]);
        mpz_init(got[i]);
        node_weight(r, &kids[i], w);
        mpz_mul(mpq_numref(frac[i]), r->need, w); /* exact share (T-h) W_i / W */
        mpz_set(mpq_denref(frac[i]), r->wsum);
        mpq_canonicalize(frac[i]);
        mpz_fdiv_q(got[i], mpq_numref(frac[i]), mpq_denref(frac[i]));
        mpq_t fl;
        mpq_init(fl);
        mpq_set_z(fl, got[i]);
        mpq_sub(frac[i], frac[i], fl); /* fractional part, in [0, 1) */
        mpq_clear(fl);
        mpz_sub(left, left, got[i]);
    }
    if (mpz_sgn(left) < 0 || mpz_cmp_si(left, m) > 0)
        ref_die("remainder outside [0, children]");
    for (long t = mpz_get_si(left); t > 0; t--) {
        int best = -1;
        for (int i = 0; i < m; i++)
            if (!picked[i] && (best < 0 || ranks_before(r, kids, frac, i, best)))
                best = i;
        picked[best] = true;
        mpz_add_ui(got[best], got[best], 1);
    }
    for (int i = 0; i < m; i++) {
        apportion_node(r, &kids[i], got[i]);
        mpq_clear(frac[i]);
        mpz_clear(got[i]);
    }
    mpz_clears(left, w, NULL);
    free(frac);
    free(got);
    free(picked);
    free(kids);
}

/* |z| <= 10^36: the bound on amounts and on T - h (see ref_spread.h). */
static bool within_limit(const mpz_t z)
{
    mpz_t lim, a;
    mpz_inits(lim, a, NULL);
    mpz_ui_pow_ui(lim, 10, REF_LIMIT_DIGITS);
    mpz_abs(a, z);
    bool ok = mpz_cmp(a, lim) <= 0;
    mpz_clears(lim, a, NULL);
    return ok;
}

/* The sums the plan needs, over every cell. */
typedef struct ref_sums {
    mpz_t total, held, usum, uabs;
    bool any_nonzero; /* some unheld value is not zero */
} ref_sums;

static void sums_of(const spread_cells *c, ref_sums *s)
{
    mpz_t v;
    mpz_init(v);
    mpz_inits(s->total, s->held, s->usum, s->uabs, NULL);
    s->any_nonzero = false;
    for (size_t i = 0; i < c->n; i++) {
        set_i64(v, c->value[i]);
        mpz_add(s->total, s->total, v);
        if (cell_held(c, i)) {
            mpz_add(s->held, s->held, v);
            continue;
        }
        mpz_add(s->usum, s->usum, v);
        mpz_abs(v, v);
        mpz_add(s->uabs, s->uabs, v);
        s->any_nonzero = s->any_nonzero || c->value[i] != 0;
    }
    mpz_clear(v);
}

/* T and T - h from the form; false when beyond the limit. */
static bool form_target(const spread_params *p, const ref_sums *s, mpz_t target, mpz_t need)
{
    mpz_t a, num, den;
    mpz_inits(a, num, den, NULL);
    ref_mpz_set_i128(a, p->amount);
    if (p->form == SPREAD_SET || p->form == SPREAD_DELTA) {
        mpz_set(target, a);
        if (p->form == SPREAD_DELTA)
            mpz_add(target, target, s->total);
        mpz_sub(need, target, s->held);
    } else {
        /* percent: T = h + sum(U) * (1 + p/100), rounded as a whole */
        percent_factor(p, num, den);
        mpz_mul(num, num, s->usum);
        mpz_addmul(num, s->held, den);
        ref_round_half_away(target, num, den);
        mpz_sub(need, target, s->held);
    }
    bool ok = within_limit(a) && within_limit(need);
    mpz_clears(a, num, den, NULL);
    return ok;
}

int ref_plan(const spread_params *p, const spread_cells *c, spread_method *effective, mpz_t target,
             mpz_t need)
{
    ref_sums s;
    sums_of(c, &s);
    int rc = 0;
    spread_method m = p->method;
    mpz_set_ui(target, 0);
    mpz_set_ui(need, 0);
    if (m != SPREAD_REPEAT && !form_target(p, &s, target, need))
        rc = -DS_OUT_OF_RANGE;
    if (rc == 0 && m == SPREAD_PROPORTIONAL && !s.any_nonzero)
        m = SPREAD_EQUAL;
    if (rc == 0 && m == SPREAD_PROPORTIONAL) {
        mpz_t x;
        mpz_init(x);
        mpz_abs(x, s.usum);
        mpz_mul_ui(x, x, 1000);
        if (mpz_sgn(s.usum) == 0 || mpz_cmp(x, s.uabs) < 0)
            rc = -DS_SIGNS_CANCEL;
        mpz_clear(x);
    }
    *effective = m;
    mpz_clears(s.total, s.held, s.usum, s.uabs, NULL);
    return rc;
}

/* Repeat: every unheld cell gets amount, u + amount or u * (1 + p/100). */
static void repeat_cells(ref_run *r, mpz_t total_after)
{
    const spread_params *p = r->p;
    mpz_t v, num, den;
    mpz_inits(v, num, den, NULL);
    if (p->form == SPREAD_PERCENT)
        percent_factor(p, num, den);
    mpz_set_ui(total_after, 0);
    for (size_t i = 0; i < r->c->n; i++) {
        set_i64(v, r->c->value[i]);
        if (!cell_held(r->c, i)) {
            if (p->form == SPREAD_SET) {
                ref_mpz_set_i128(v, p->amount);
            } else if (p->form == SPREAD_DELTA) {
                mpz_t a;
                mpz_init(a);
                ref_mpz_set_i128(a, p->amount);
                mpz_add(v, v, a);
                mpz_clear(a);
            } else {
                mpz_mul(v, v, num);
                ref_round_half_away(v, v, den);
            }
            ds_i128 x;
            if (!ref_mpz_get_i128(v, &x) || x > p->leaf_max || x < -(ds_i128)p->leaf_max)
                r->out_of_range = true;
            else
                r->out[i] = (int64_t)x;
        }
        mpz_add(total_after, total_after, v);
    }
    mpz_clears(v, num, den, NULL);
}

/* Repeat with a percent: 100 * 10^pct_scale + amount must fit a ds_i128
 * (the factor must be formable); see ref_spread.h. */
static bool repeat_factor_fits(const spread_params *p)
{
    if (p->form != SPREAD_PERCENT)
        return true;
    mpz_t num, den;
    mpz_inits(num, den, NULL);
    percent_factor(p, num, den);
    ds_i128 x;
    bool ok = ref_mpz_get_i128(num, &x);
    mpz_clears(num, den, NULL);
    return ok;
}

/* Repeat with every cell held is refused unless it is the identity
 * (DELTA 0 or PERCENT 0); see ref_spread.h. */
static bool repeat_all_held(const spread_params *p, const spread_cells *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (!cell_held(c, i))
            return false;
    return p->form == SPREAD_SET || p->amount != 0;
}

/* Proportional and equal: W, then the tree from the root down. */
static int apportion_all(ref_run *r, mpz_t total_after)
{
    mpz_t w;
    mpz_init(w);
    mpz_set_ui(r->wsum, 0);
    size_t unheld = 0;
    for (size_t i = 0; i < r->c->n; i++) {
        if (cell_held(r->c, i))
            continue;
        unheld++;
        if (r->method == SPREAD_PROPORTIONAL)
            set_i64(w, r->c->value[i]);
        else
            mpz_set_ui(w, 1);
        mpz_add(r->wsum, r->wsum, w);
    }
    int rc = 0;
    if (unheld == 0 && mpz_sgn(r->need) != 0)
        rc = -DS_HELD;
    else if (unheld > 0) {
        if (mpz_sgn(r->wsum) == 0)
            ref_die("zero weight sum after planning");
        ref_node root;
        memset(&root, 0, sizeof root);
        apportion_node(r, &root, r->need);
    }
    mpz_set_ui(total_after, 0);
    for (size_t i = 0; i < r->c->n; i++) {
        set_i64(w, r->out[i]);
        mpz_add(total_after, total_after, w);
    }
    mpz_clear(w);
    return rc;
}

int ref_spread(const spread_params *p, const spread_cells *c, int64_t *newv,
               spread_method *effective, mpz_t total_after)
{
    if (c->ntrees < 1 || c->ntrees > REF_MAX_TREES)
        ref_die("unsupported number of trees");
    ref_run r;
    memset(&r, 0, sizeof r);
    r.p = p;
    r.c = c;
    mpz_inits(r.need, r.wsum, NULL);
    mpz_t target;
    mpz_init(target);
    int rc = ref_plan(p, c, &r.method, target, r.need);
    *effective = r.method;
    r.out = malloc(sizeof *r.out * (c->n > 0 ? c->n : 1));
    if (r.out == NULL)
        ref_die("out of memory");
    for (size_t i = 0; i < c->n; i++)
        r.out[i] = c->value[i];
    mpz_t after;
    mpz_init(after);
    if (rc == 0 && r.method == SPREAD_REPEAT && !repeat_factor_fits(p))
        rc = -DS_OUT_OF_RANGE;
    else if (rc == 0 && r.method == SPREAD_REPEAT && repeat_all_held(p, c))
        rc = -DS_HELD;
    else if (rc == 0 && r.method == SPREAD_REPEAT)
        repeat_cells(&r, after);
    else if (rc == 0)
        rc = apportion_all(&r, after);
    if (rc == 0 && r.out_of_range)
        rc = -DS_OUT_OF_RANGE;
    if (rc == 0) {
        memcpy(newv, r.out, sizeof *r.out * c->n);
        mpz_set(total_after, after);
    }
    free(r.out);
    mpz_clears(r.need, r.wsum, target, after, NULL);
    return rc;
}
