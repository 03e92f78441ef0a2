/* test_spread_ref.c: the spreading engine (src/spread.c) against the slow
 * GMP reference (ref_spread.c). Thousands of seeded random cases (ragged
 * trees, sparse and dense cells, holds, every method and form, refusals)
 * must give the same refusal or identical values; the invariants of
 * spreading (src/spread.h) are then checked with GMP independently of both
 * (sums, floor-or-ceiling of every node of the apportionment tree), and
 * the engine must be deterministic under reordering of the cells. Hand
 * computed cases check the reference itself and a few engine scenarios.
 *
 * Where spread.h is silent (the largest amount, repeat
 * with every cell held) the reference settles the point as the engine
 * does; ref_spread.h lists those choices.
 *
 * SPREAD_REF_KEEP_GOING=1 in the environment reports every failing random
 * case instead of stopping at the first. */
#include <check.h>
#include <gmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "ref_spread.h"
#include "spread.h"

#define MAX_TREES   3
#define MAX_NODES   64
#define MAX_DENSE   500
#define RANDOM_RUNS 6
#ifndef CASES_PER_RUN /* -DCASES_PER_RUN=100000 for a long soak */
#define CASES_PER_RUN 2000
#endif

static const ds_i128 I128_MAX = (ds_i128)(((ds_u128)1 << 127) - 1);

/* ---- small helpers ------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return ds_mix64(r->s);
}

static uint64_t rng_below(rng *r, uint64_t n)
{
    return n == 0 ? 0 : rng_next(r) % n;
}

/* Uniform in [lo, hi]. */
static int64_t rng_range(rng *r, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1;
    return (int64_t)((uint64_t)lo + (span == 0 ? rng_next(r) : rng_below(r, span)));
}

static bool rng_chance(rng *r, int pct)
{
    return (int)rng_below(r, 100) < pct;
}

static const char *i128_str(ds_i128 v, char *buf)
{
    dec_format(v, 0, buf);
    return buf;
}

static void set_i64(mpz_t z, int64_t v)
{
    ref_mpz_set_i128(z, (ds_i128)v);
}

static bool beneath(const spread_tree *t, int32_t a, int32_t y)
{
    for (int32_t i = a; i >= 0; i = t->parent[i])
        if (i == y)
            return true;
    return false;
}

/* rank[i]: i's position among the leaves of t (in index order), or -1. */
static int32_t leaf_ranks(const spread_tree *t, int32_t *rank)
{
    int32_t nleaves = 0;
    for (int32_t i = 0; i < t->n; i++)
        rank[i] = 0;
    for (int32_t i = 1; i < t->n; i++)
        rank[t->parent[i]] = -1;
    for (int32_t i = 0; i < t->n; i++)
        if (rank[i] == 0)
            rank[i] = nleaves++;
    return nleaves;
}

/* ---- cell sets ----------------------------------------------------- */

typedef struct cellset {
    size_t n, cap;
    int ntrees;
    const spread_tree *trees;
    int32_t *coord;
    int64_t *value;
    uint8_t *held;
} cellset;

static void cs_init(cellset *s, int ntrees, const spread_tree *trees, size_t cap)
{
    memset(s, 0, sizeof *s);
    s->ntrees = ntrees;
    s->trees = trees;
    s->cap = cap > 0 ? cap : 1;
    s->coord = xmalloc_array(s->cap * (size_t)ntrees, sizeof *s->coord);
    s->value = xmalloc_array(s->cap, sizeof *s->value);
    s->held = xmalloc_array(s->cap, sizeof *s->held);
}

static void cs_free(cellset *s)
{
    free(s->coord);
    free(s->value);
    free(s->held);
    memset(s, 0, sizeof *s);
}

static void cs_add(cellset *s, const int32_t *coord, int64_t value, bool held)
{
    ck_assert(s->n < s->cap);
    memcpy(s->coord + s->n * (size_t)s->ntrees, coord, sizeof *coord * (size_t)s->ntrees);
    s->value[s->n] = value;
    s->held[s->n] = held;
    s->n++;
}

static spread_cells cs_view(const cellset *s)
{
    spread_cells c = {s->n, s->ntrees, s->trees, s->coord, s->value, s->held};
    return c;
}

/* out = s with cells reordered: out cell j is s's cell perm[j]. */
static void cs_shuffle(const cellset *s, rng *r, cellset *out, size_t *perm)
{
    for (size_t i = 0; i < s->n; i++)
        perm[i] = i;
    for (size_t i = s->n; i > 1; i--) {
        size_t j = (size_t)rng_below(r, i), t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    cs_init(out, s->ntrees, s->trees, s->n);
    for (size_t j = 0; j < s->n; j++)
        cs_add(out, s->coord + perm[j] * (size_t)s->ntrees, s->value[perm[j]], s->held[perm[j]]);
}

/* ---- engine runs ------------------------------------------------------ */

/* Totals, plan and apportion on exactly the cells given. */
static int engine_spread(const spread_params *p, const spread_cells *c, spread_plan *plan,
                         int64_t *newv, ds_i128 *after)
{
    spread_totals t;
    ds_error err;
    ds_error_clear(&err);
    spread_totals_of(c, &t);
    int rc = spread_plan_make(p, &t, plan, &err);
    if (rc == 0)
        rc = spread_apportion(p, plan, c, newv, after, &err);
    ck_assert_msg(rc <= 0, "engine returned a positive code %d", rc);
    ck_assert_msg(rc == 0 || (int)err.code == -rc, "err.code %d for rc %d", err.code, rc);
    return rc;
}

/* Runs the reference and the engine on the same cells; they must agree. */
static int both_spread(const spread_params *p, const spread_cells *c, int64_t *newv,
                       spread_plan *plan)
{
    int64_t *refv = xmalloc_array(c->n + 1, sizeof *refv);
    ds_i128 after = 0, ref_after = 0;
    mpz_t za;
    mpz_init(za);
    spread_method eff;
    int rrc = ref_spread(p, c, refv, &eff, za);
    int erc = engine_spread(p, c, plan, newv, &after);
    ck_assert_int_eq(erc, rrc);
    if (rrc == 0) {
        ck_assert(ref_mpz_get_i128(za, &ref_after));
        ck_assert(after == ref_after);
        ck_assert_int_eq(plan->method, eff);
        for (size_t i = 0; i < c->n; i++)
            ck_assert_msg(newv[i] == refv[i], "cell %zu: engine %lld ref %lld", i,
                          (long long)newv[i], (long long)refv[i]);
    }
    mpz_clear(za);
    free(refv);
    return rrc;
}

/* ---- independent invariant checks --------------------------------------- */

static char inv_msg[512];

/* |a*W - need*w| < |W|: a is the floor or the ceiling of need * w / W. */
static bool floor_or_ceil(ds_i128 a, const mpz_t need, ds_i128 w, const mpz_t wsum)
{
    mpz_t x, y;
    mpz_inits(x, y, NULL);
    ref_mpz_set_i128(x, a);
    mpz_mul(x, x, wsum);
    ref_mpz_set_i128(y, w);
    mpz_mul(y, y, need);
    mpz_sub(x, x, y);
    mpz_abs(x, x);
    mpz_abs(y, wsum);
    bool ok = mpz_cmp(x, y) < 0;
    mpz_clears(x, y, NULL);
    return ok;
}

/* T as the form says: SET amount, DELTA total + amount, PERCENT within
 * half a unit of sum(U) (1 + p/100), ties away from zero. */
static bool target_formula(const spread_params *p, const spread_plan *plan, const mpz_t total,
                           const mpz_t held, const mpz_t usum)
{
    mpz_t t, need, x, den;
    mpz_inits(t, need, x, den, NULL);
    ref_mpz_set_i128(t, plan->target);
    ref_mpz_set_i128(need, plan->unheld_target);
    ref_mpz_set_i128(x, p->amount);
    mpz_sub(den, t, need);
    bool ok = mpz_cmp(den, held) == 0;
    if (p->form == SPREAD_SET) {
        ok = ok && mpz_cmp(t, x) == 0;
    } else if (p->form == SPREAD_DELTA) {
        mpz_add(x, x, total);
        ok = ok && mpz_cmp(t, x) == 0;
    } else {
        mpz_ui_pow_ui(den, 10, (unsigned long)p->pct_scale);
        mpz_mul_ui(den, den, 100);
        mpz_add(x, x, den);
        mpz_mul(x, x, usum); /* exact: x / den */
        mpz_mul(t, need, den);
        mpz_sub(t, t, x); /* (need - exact) * den */
        int away = mpz_sgn(t) == mpz_sgn(x) || mpz_sgn(t) == 0;
        mpz_abs(t, t);
        mpz_mul_ui(t, t, 2);
        int c = mpz_cmp(t, den);
        ok = ok && (c < 0 || (c == 0 && away));
    }
    mpz_clears(t, need, x, den, NULL);
    return ok;
}

/* Sums over all cells: held unchanged, total_after, T - h, T's formula. */
static bool check_sums(const spread_params *p, const spread_plan *plan, const spread_cells *c,
                       const int64_t *newv, ds_i128 after)
{
    mpz_t total, held, usum, all, unheld_new, v;
    mpz_inits(total, held, usum, all, unheld_new, v, NULL);
    bool ok = true;
    for (size_t i = 0; i < c->n; i++) {
        bool h = c->held && c->held[i];
        set_i64(v, c->value[i]);
        mpz_add(total, total, v);
        mpz_add(h ? held : usum, h ? held : usum, v);
        set_i64(v, newv[i]);
        mpz_add(all, all, v);
        if (!h)
            mpz_add(unheld_new, unheld_new, v);
        if (h && newv[i] != c->value[i] && ok)
            ok = (snprintf(inv_msg, sizeof inv_msg, "held cell %zu changed", i), false);
        if (!h && (newv[i] > p->leaf_max || newv[i] < -p->leaf_max) && ok)
            ok = (snprintf(inv_msg, sizeof inv_msg, "cell %zu beyond leaf_max", i), false);
    }
    ref_mpz_set_i128(v, after);
    if (ok && mpz_cmp(all, v) != 0)
        ok = (snprintf(inv_msg, sizeof inv_msg, "cells do not sum to total_after"), false);
    if (ok && plan->method != SPREAD_REPEAT) {
        ref_mpz_set_i128(v, plan->unheld_target);
        if (mpz_cmp(unheld_new, v) != 0)
            ok = (snprintf(inv_msg, sizeof inv_msg, "unheld cells do not sum to T - h"), false);
        else if (!target_formula(p, plan, total, held, usum))
            ok = (snprintf(inv_msg, sizeof inv_msg, "T or T - h is not what the form says"), false);
    }
    mpz_clears(total, held, usum, all, unheld_new, v, NULL);
    return ok;
}

/* Repeat: each unheld cell is exactly what the form says for it. */
static bool check_repeat(const spread_params *p, const spread_cells *c, const int64_t *newv)
{
    mpz_t x, den, v;
    mpz_inits(x, den, v, NULL);
    mpz_ui_pow_ui(den, 10, (unsigned long)p->pct_scale);
    mpz_mul_ui(den, den, 100);
    bool ok = true;
    for (size_t i = 0; i < c->n && ok; i++) {
        if (c->held && c->held[i])
            continue;
        if (p->form == SPREAD_SET)
            ok = newv[i] == p->amount;
        else if (p->form == SPREAD_DELTA)
            ok = (ds_i128)newv[i] == (ds_i128)c->value[i] + p->amount;
        else {
            ref_mpz_set_i128(x, p->amount);
            mpz_add(x, x, den);
            set_i64(v, c->value[i]);
            mpz_mul(x, x, v); /* exact: x / den */
            set_i64(v, newv[i]);
            mpz_mul(v, v, den);
            mpz_sub(v, v, x);
            int away = mpz_sgn(v) == mpz_sgn(x) || mpz_sgn(v) == 0;
            mpz_abs(v, v);
            mpz_mul_ui(v, v, 2);
            int cmp = mpz_cmp(v, den);
            ok = cmp < 0 || (cmp == 0 && away);
        }
        if (!ok)
            snprintf(inv_msg, sizeof inv_msg, "repeat: cell %zu is not what the form says", i);
    }
    mpz_clears(x, den, v, NULL);
    return ok;
}

/* The per-node sums of the apportionment tree, indexed by (k, prefix, y):
 * prefix numbers the leaf tuple of trees 0..k-1. Built by adding every
 * unheld cell to each of its ancestors, not by walking the tree. */
typedef struct node_sums {
    int ntrees;
    int32_t *rank[MAX_TREES];
    int32_t nleaves[MAX_TREES];
    size_t prefixes[MAX_TREES];
    ds_i128 *w[MAX_TREES]; /* W_node */
    ds_i128 *a[MAX_TREES]; /* the unheld cells' new values summed */
} node_sums;

static void node_sums_build(node_sums *ns, const spread_plan *plan, const spread_cells *c,
                            const int64_t *newv)
{
    ns->ntrees = c->ntrees;
    size_t prefixes = 1;
    for (int k = 0; k < c->ntrees; k++) {
        const spread_tree *t = &c->trees[k];
        ns->rank[k] = xmalloc_array((size_t)t->n, sizeof(int32_t));
        ns->nleaves[k] = leaf_ranks(t, ns->rank[k]);
        ns->prefixes[k] = prefixes;
        ns->w[k] = xcalloc(prefixes * (size_t)t->n, sizeof(ds_i128));
        ns->a[k] = xcalloc(prefixes * (size_t)t->n, sizeof(ds_i128));
        prefixes *= (size_t)ns->nleaves[k];
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->held && c->held[i])
            continue;
        ds_i128 w = plan->method == SPREAD_PROPORTIONAL ? c->value[i] : 1;
        const int32_t *coord = c->coord + i * (size_t)c->ntrees;
        size_t prefix = 0;
        for (int k = 0; k < c->ntrees; k++) {
            const spread_tree *t = &c->trees[k];
            for (int32_t y = coord[k]; y > 0; y = t->parent[y]) {
                ns->w[k][prefix * (size_t)t->n + (size_t)y] += w;
                ns->a[k][prefix * (size_t)t->n + (size_t)y] += newv[i];
            }
            prefix = prefix * (size_t)ns->nleaves[k] + (size_t)ns->rank[k][coord[k]];
        }
    }
}

static void node_sums_free(node_sums *ns)
{
    for (int k = 0; k < ns->ntrees; k++) {
        free(ns->rank[k]);
        free(ns->w[k]);
        free(ns->a[k]);
    }
}

/* Every node (and so every cell) gets the floor or ceiling of its share. */
static bool check_nodes(const spread_plan *plan, const spread_cells *c, const int64_t *newv)
{
    node_sums ns;
    node_sums_build(&ns, plan, c, newv);
    mpz_t need, wsum;
    mpz_inits(need, wsum, NULL);
    ref_mpz_set_i128(need, plan->unheld_target);
    ds_i128 ws = 0;
    for (size_t i = 0; i < c->n; i++)
        if (!(c->held && c->held[i]))
            ws += plan->method == SPREAD_PROPORTIONAL ? c->value[i] : 1;
    ref_mpz_set_i128(wsum, ws);
    bool ok = true;
    for (int k = 0; k < c->ntrees && ok && ws != 0; k++) {
        int32_t n = c->trees[k].n;
        for (size_t j = 0; j < ns.prefixes[k] * (size_t)n && ok; j++) {
            if (j % (size_t)n == 0)
                continue; /* a tree's root is not a node of its own */
            ok = floor_or_ceil(ns.a[k][j], need, ns.w[k][j], wsum);
            if (!ok)
                snprintf(inv_msg, sizeof inv_msg,
                         "node (k=%d, prefix #%zu, y=%zu) is not the floor or ceiling of "
                         "its share",
                         k, j / (size_t)n, j % (size_t)n);
        }
    }
    for (size_t i = 0; i < c->n && ok && ws != 0; i++) {
        if (c->held && c->held[i])
            continue;
        ds_i128 w = plan->method == SPREAD_PROPORTIONAL ? c->value[i] : 1;
        ok = floor_or_ceil(newv[i], need, w, wsum);
        if (ok && plan->method == SPREAD_PROPORTIONAL && c->value[i] == 0)
            ok = newv[i] == 0;
        if (!ok)
            snprintf(inv_msg, sizeof inv_msg, "cell %zu is off its exact share", i);
    }
    mpz_clears(need, wsum, NULL);
    node_sums_free(&ns);
    return ok;
}

/* All invariants of a successful spread; NULL or what is wrong. */
static const char *check_invariants(const spread_params *p, const spread_plan *plan,
                                    const spread_cells *c, const int64_t *newv, ds_i128 after)
{
    if (!check_sums(p, plan, c, newv, after))
        return inv_msg;
    if (plan->method == SPREAD_REPEAT)
        return check_repeat(p, c, newv) ? NULL : inv_msg;
    return check_nodes(plan, c, newv) ? NULL : inv_msg;
}

/* ---- random case generation -------------------------------------------- */

typedef struct gen_tree {
    int32_t n;
    int32_t parent[MAX_NODES];
    int32_t id[MAX_NODES];
} gen_tree;

typedef struct gen_case {
    uint64_t seed;
    int ntrees;
    gen_tree t[MAX_TREES];
    spread_tree trees[MAX_TREES];
    int32_t *leaves[MAX_TREES];
    int32_t nleaves[MAX_TREES];
    size_t dense; /* cells in the cross product */
    int hold_tree;
    int32_t hold_member; /* everything beneath it is held; -1 none */
    int hold_pct;        /* and this share of the cells, by a hash */
    uint64_t hold_salt;
    int value_mode;
    spread_params p;
} gen_case;

/* Preorder: each child is numbered, then its own subtree. */
static void gen_subtree(rng *r, gen_tree *t, int32_t node, int depth, int maxdepth, int fan,
                        int cap, int bushy)
{
    if (depth >= maxdepth || (depth > 0 && !rng_chance(r, bushy)))
        return;
    int k = 1 + (int)rng_below(r, (uint64_t)fan);
    for (int i = 0; i < k && t->n < cap; i++) {
        int32_t c = t->n++;
        t->parent[c] = node;
        gen_subtree(r, t, c, depth + 1, maxdepth, fan, cap, bushy);
    }
}

static void gen_tree_make(rng *r, gen_tree *t, int cap)
{
    t->n = 1;
    t->parent[0] = -1;
    bool big = rng_chance(r, 50); /* half the trees bushier, for larger regions */
    int maxdepth = big ? 2 + (int)rng_below(r, 3) : 1 + (int)rng_below(r, 4);
    int fan = big ? 3 + (int)rng_below(r, 3) : 1 + (int)rng_below(r, 5);
    gen_subtree(r, t, 0, 0, maxdepth, fan, cap, (int)rng_range(r, 40, 95));
    for (int32_t i = 0; i < t->n; i++) {
        bool dup;
        do {
            t->id[i] = rng_chance(r, 50) ? (int32_t)rng_range(r, -50, 1000)
                                         : (int32_t)(uint32_t)rng_next(r);
            dup = false;
            for (int32_t j = 0; j < i; j++)
                dup = dup || t->id[j] == t->id[i];
        } while (dup);
    }
}

static void gen_trees(rng *r, gen_case *g)
{
    static const int caps[MAX_TREES + 1] = {0, 60, 30, 12};
    do {
        g->ntrees = 1 + (int)rng_below(r, MAX_TREES);
        g->dense = 1;
        for (int k = 0; k < g->ntrees; k++) {
            gen_tree_make(r, &g->t[k], caps[g->ntrees]);
            g->trees[k] = (spread_tree){g->t[k].n, g->t[k].parent, g->t[k].id};
            int32_t rank[MAX_NODES];
            g->nleaves[k] = leaf_ranks(&g->trees[k], rank);
            g->dense *= (size_t)g->nleaves[k];
        }
    } while (g->dense > MAX_DENSE);
    for (int k = 0; k < g->ntrees; k++) {
        int32_t rank[MAX_NODES], m = 0;
        leaf_ranks(&g->trees[k], rank);
        g->leaves[k] = xmalloc_array((size_t)g->nleaves[k], sizeof(int32_t));
        for (int32_t i = 0; i < g->trees[k].n; i++)
            if (rank[i] >= 0)
                g->leaves[k][m++] = i;
    }
}

static void gen_case_free(gen_case *g)
{
    for (int k = 0; k < g->ntrees; k++)
        free(g->leaves[k]);
}

/* The cross product's d-th tuple of leaves. */
static void dense_coord(const gen_case *g, size_t d, int32_t *coord)
{
    for (int k = g->ntrees - 1; k >= 0; k--) {
        coord[k] = g->leaves[k][d % (size_t)g->nleaves[k]];
        d /= (size_t)g->nleaves[k];
    }
}

/* The hold rule, a function of the coordinates only (so a missing cell
 * filled in later is held exactly when the stored one would be). */
static bool held_rule(const gen_case *g, const int32_t *coord)
{
    if (g->hold_member >= 0 &&
        beneath(&g->trees[g->hold_tree], coord[g->hold_tree], g->hold_member))
        return true;
    uint64_t h = ds_mix64(g->hold_salt);
    for (int k = 0; k < g->ntrees; k++)
        h = ds_mix64(h ^ (uint64_t)(uint32_t)coord[k]);
    return (int)(h % 100) < g->hold_pct;
}

static int64_t gen_value(rng *r, int mode, int64_t lm)
{
    int64_t v = 0;
    if (mode == 0)
        v = rng_chance(r, 30) ? 0 : rng_range(r, 1, 100);
    else if (mode == 1)
        v = rng_chance(r, 20) ? 0 : rng_range(r, -100, 100);
    else if (mode == 2 && !rng_chance(r, 20)) {
        int64_t mag = (int64_t)dec_pow10((int)rng_below(r, 19));
        v = rng_range(r, 0, mag < lm ? mag : lm) * (rng_chance(r, 50) ? 1 : -1);
    } else if (mode == 4)
        v = rng_range(r, -1000, 1000);
    else if (mode == 6) /* near the leaf limit: products beyond 128 bits */
        v = (lm - rng_range(r, 0, 1000)) * (rng_chance(r, 90) ? 1 : -1);
    return v > lm ? lm : v < -lm ? -lm : v;
}

/* Pushes the unheld sum of s close to the signs_cancel threshold. */
static void near_cancel(rng *r, cellset *s, int64_t lm)
{
    size_t unheld = 0;
    for (size_t i = 0; i < s->n; i++)
        unheld += !s->held[i];
    if (unheld < 2)
        return;
    size_t pick = (size_t)rng_below(r, unheld), j = 0; /* j: the pick-th unheld cell */
    for (size_t seen = 0;; j++)
        if (!s->held[j] && seen++ == pick)
            break;
    int option = (int)rng_below(r, 5), sign = rng_chance(r, 50) ? 1 : -1;
    for (int iter = 0; iter < 4; iter++) {
        ds_i128 sum = 0, abs = 0;
        for (size_t i = 0; i < s->n; i++)
            if (!s->held[i]) {
                sum += s->value[i];
                abs += s->value[i] < 0 ? -(ds_i128)s->value[i] : s->value[i];
            }
        ds_i128 want = option == 0 ? 0 : abs / 1000 + (option - 2); /* -1, 0, +1, +2 */
        ds_i128 v = s->value[j] + sign * want - sum;
        s->value[j] = (int64_t)(v > lm ? lm : v < -lm ? -lm : v);
    }
}

/* The cells: the cross product, or a random subset of it when sparse. */
static void gen_cells(rng *r, const gen_case *g, bool sparse, cellset *s)
{
    cs_init(s, g->ntrees, g->trees, g->dense);
    int present = sparse ? (int)rng_range(r, 10, 100) : 100;
    int32_t coord[MAX_TREES];
    for (size_t d = 0; d < g->dense; d++) {
        int64_t v = gen_value(r, g->value_mode, g->p.leaf_max);
        if (!rng_chance(r, present))
            continue;
        dense_coord(g, d, coord);
        cs_add(s, coord, v, held_rule(g, coord));
    }
    if (g->value_mode == 4)
        near_cancel(r, s, g->p.leaf_max);
    if (g->value_mode == 5 && s->n > 0)
        s->value[rng_below(r, s->n)] = rng_chance(r, 50) ? rng_range(r, 1, 1000) : -7;
}

/* Near the largest amounts: int128's end, or around the 10^36 bound. */
static ds_i128 gen_huge(rng *r)
{
    ds_i128 sign = rng_chance(r, 50) ? 1 : -1;
    if (rng_chance(r, 30))
        return sign * (I128_MAX - (ds_i128)rng_below(r, 1000));
    return sign * (dec_pow10(REF_LIMIT_DIGITS) + rng_range(r, -1000, 3));
}

static ds_i128 gen_amount(rng *r, spread_params *p, size_t ncells)
{
    ds_i128 lm = p->leaf_max, sign = rng_chance(r, 50) ? 1 : -1;
    if (p->form == SPREAD_PERCENT) {
        p->pct_scale = (int)rng_below(r, SPREAD_PCT_MAX_SCALE + 1);
        ds_i128 unit = dec_pow10(p->pct_scale);
        switch (rng_below(r, 10)) {
        case 0:
            return -100 * unit;
        case 1:
            return gen_huge(r);
        case 2:
            return rng_range(r, -999, 999);
        case 3:
            return unit * 50 + sign * (unit / 2);
        default:
            return rng_range(r, -200, 300) * unit + (ds_i128)rng_below(r, (uint64_t)unit);
        }
    }
    switch (rng_below(r, 12)) {
    case 0:
        return gen_huge(r);
    case 1:
        return sign * (lm + (ds_i128)rng_below(r, 2));
    case 2:
        return sign * lm * (ds_i128)rng_range(r, 1, (int64_t)ncells + 1) + rng_range(r, -2, 2);
    case 3:
        return rng_range(r, -1000000, 1000000);
    case 4:
        return rng_range(r, -1000000000000LL, 1000000000000LL);
    case 5:
        return 0;
    case 6:
        return rng_range(r, -50, 50);
    default:
        return rng_range(r, -1000, 1000);
    }
}

/* A whole random case: trees, hold rule, params and the first cells. */
static void gen_case_make(uint64_t seed, gen_case *g, cellset *cells)
{
    rng r = {seed};
    memset(g, 0, sizeof *g);
    g->seed = seed;
    gen_trees(&r, g);
    g->hold_member = -1;
    int hold_mode = (int)rng_below(&r, 10);
    if (hold_mode == 1 || hold_mode == 3) {
        g->hold_tree = (int)rng_below(&r, (uint64_t)g->ntrees);
        g->hold_member = (int32_t)rng_below(&r, (uint64_t)g->trees[g->hold_tree].n);
    }
    if (hold_mode == 2 || hold_mode == 3)
        g->hold_pct = (int)rng_range(&r, 5, 60);
    if (hold_mode == 4)
        g->hold_pct = 100;
    g->hold_salt = rng_next(&r);
    g->value_mode = (int)rng_below(&r, 7);
    spread_params *p = &g->p;
    uint64_t m = rng_below(&r, 4);
    p->method = m < 2 ? SPREAD_PROPORTIONAL : m == 2 ? SPREAD_EQUAL : SPREAD_REPEAT;
    p->form = (spread_form)rng_below(&r, 3);
    p->seq = rng_chance(&r, 10) ? rng_below(&r, 5) : rng_next(&r);
    p->leaf_max = rng_chance(&r, 15) ? rng_range(&r, 1, 5000) : DEC_LEAF_MAX;
    gen_cells(&r, g, p->method == SPREAD_PROPORTIONAL, cells);
    p->amount = gen_amount(&r, p, g->dense);
}

/* The cross product, taking values from s (missing ones are 0). */
static void densify(const gen_case *g, const cellset *s, cellset *out)
{
    long *at = xmalloc_array(g->dense, sizeof *at);
    for (size_t d = 0; d < g->dense; d++)
        at[d] = -1;
    for (size_t i = 0; i < s->n; i++) {
        size_t d = 0;
        for (int k = 0; k < g->ntrees; k++) {
            int32_t rank[MAX_NODES];
            leaf_ranks(&g->trees[k], rank);
            d = d * (size_t)g->nleaves[k] + (size_t)rank[s->coord[i * (size_t)g->ntrees + k]];
        }
        at[d] = (long)i;
    }
    cs_init(out, g->ntrees, g->trees, g->dense);
    int32_t coord[MAX_TREES];
    for (size_t d = 0; d < g->dense; d++) {
        dense_coord(g, d, coord);
        if (at[d] >= 0)
            cs_add(out, coord, s->value[at[d]], s->held[at[d]]);
        else
            cs_add(out, coord, 0, held_rule(g, coord));
    }
    free(at);
}

/* ---- one random case ------------------------------------------------------- */

/* What each side produced for one case. */
typedef struct outcome {
    int rc;
    bool planned;
    spread_plan plan;
    const cellset *cells; /* the cells the values are for */
    int64_t *newv;
    ds_i128 after;
    spread_method method; /* the reference's effective method */
    mpz_t ref_target, ref_need;
} outcome;

static const char *method_names[] = {"proportional", "equal", "repeat"};
static const char *form_names[] = {"set", "delta", "percent"};

static void dump_case(const gen_case *g, const char *why, const outcome *e, const outcome *f)
{
    char b1[DEC_BUFSZ], b2[DEC_BUFSZ];
    const spread_params *p = &g->p;
    fprintf(stderr, "\n=== MISMATCH seed=%llu: %s\n", (unsigned long long)g->seed, why);
    for (int k = 0; k < g->ntrees; k++) {
        fprintf(stderr, "tree %d (n=%d): parent/id =", k, g->trees[k].n);
        for (int32_t i = 0; i < g->trees[k].n; i++)
            fprintf(stderr, " %d:%d/%d", i, g->trees[k].parent[i], g->trees[k].id[i]);
        fprintf(stderr, "\n");
    }
    fprintf(stderr, "params: method=%s form=%s amount=%s pct_scale=%d seq=%llu leaf_max=%lld\n",
            method_names[p->method], form_names[p->form], i128_str(p->amount, b1), p->pct_scale,
            (unsigned long long)p->seq, (long long)p->leaf_max);
    fprintf(stderr, "engine: rc=%d", e->rc);
    if (e->planned)
        fprintf(stderr, " plan{method=%s target=%s need=%s dense=%d}", method_names[e->plan.method],
                i128_str(e->plan.target, b1), i128_str(e->plan.unheld_target, b2), e->plan.dense);
    fprintf(stderr, " after=%s\n", i128_str(e->after, b1));
    fprintf(stderr, "ref:    rc=%d method=%s target=", f->rc, method_names[f->method]);
    mpz_out_str(stderr, 10, f->ref_target);
    fprintf(stderr, " need=");
    mpz_out_str(stderr, 10, f->ref_need);
    fprintf(stderr, " after=%s\n", i128_str(f->after, b1));
    const cellset *s = f->cells ? f->cells : e->cells;
    for (size_t i = 0; s && i < s->n; i++) {
        fprintf(stderr, "  cell %zu (", i);
        for (int k = 0; k < s->ntrees; k++)
            fprintf(stderr, "%s%d", k ? "," : "", s->coord[i * (size_t)s->ntrees + k]);
        fprintf(stderr, ") value=%lld held=%d", (long long)s->value[i], s->held[i]);
        if (e->rc == 0 && e->cells == s)
            fprintf(stderr, " engine=%lld", (long long)e->newv[i]);
        if (f->rc == 0)
            fprintf(stderr, " ref=%lld", (long long)f->newv[i]);
        fprintf(stderr, "\n");
    }
}

/* The engine's flow: plan on the given cells, then apportion on them or,
 * when the plan is dense and they were sparse, on the cross product. */
static void run_engine(const gen_case *g, const cellset *given, bool given_dense, cellset *dense,
                       outcome *e)
{
    spread_cells c = cs_view(given);
    spread_totals t, t2;
    ds_error err;
    ds_error_clear(&err);
    spread_totals_of(&c, &t);
    e->cells = given;
    e->rc = spread_plan_make(&g->p, &t, &e->plan, &err);
    e->planned = e->rc == 0;
    if (e->rc == 0 && e->plan.dense && !given_dense) {
        if (dense->coord == NULL)
            densify(g, given, dense);
        e->cells = dense;
        c = cs_view(dense);
        spread_totals_of(&c, &t2);
        ck_assert(t.total == t2.total && t.held == t2.held && t.unheld == t2.unheld &&
                  t.unheld_abs == t2.unheld_abs);
    }
    e->newv = xmalloc_array(e->cells->n + 1, sizeof *e->newv);
    if (e->rc == 0)
        e->rc = spread_apportion(&g->p, &e->plan, &c, e->newv, &e->after, &err);
    ck_assert_msg(e->rc == 0 || (int)err.code == -e->rc, "err.code %d for rc %d", err.code, e->rc);
}

/* The reference on the given cells, or on the cross product when its own
 * effective method needs the missing cells too. */
static void run_ref(const gen_case *g, const cellset *given, bool given_dense, cellset *dense,
                    outcome *f)
{
    spread_cells c = cs_view(given);
    mpz_inits(f->ref_target, f->ref_need, NULL);
    ref_plan(&g->p, &c, &f->method, f->ref_target, f->ref_need);
    f->cells = given;
    if (f->method != SPREAD_PROPORTIONAL && !given_dense) {
        if (dense->coord == NULL)
            densify(g, given, dense);
        f->cells = dense;
        c = cs_view(dense);
    }
    f->newv = xmalloc_array(f->cells->n + 1, sizeof *f->newv);
    mpz_t after;
    mpz_init(after);
    f->rc = ref_spread(&g->p, &c, f->newv, &f->method, after);
    if (f->rc == 0)
        ck_assert(ref_mpz_get_i128(after, &f->after));
    mpz_clear(after);
}

/* Engine and reference agree: same refusal, or same plan and values. */
static const char *compare(const outcome *e, const outcome *f)
{
    if (e->rc != f->rc)
        return "different return codes";
    if (e->planned && e->plan.method != f->method)
        return "different effective methods";
    if (e->planned && e->plan.dense != (e->plan.method != SPREAD_PROPORTIONAL))
        return "plan.dense does not match the method";
    if (e->planned && e->plan.method != SPREAD_REPEAT) {
        mpz_t x;
        mpz_init(x);
        ref_mpz_set_i128(x, e->plan.target);
        bool same = mpz_cmp(x, f->ref_target) == 0;
        ref_mpz_set_i128(x, e->plan.unheld_target);
        same = same && mpz_cmp(x, f->ref_need) == 0;
        mpz_clear(x);
        if (!same)
            return "different T or T - h";
    }
    if (e->rc != 0)
        return NULL;
    if (e->cells != f->cells)
        return "engine and reference used different cell sets";
    if (e->after != f->after)
        return "different total_after";
    for (size_t i = 0; i < e->cells->n; i++)
        if (e->newv[i] != f->newv[i])
            return "different values";
    return NULL;
}

/* Same values per cell on a second run and on shuffled cells. */
static const char *determinism(const gen_case *g, const outcome *e, rng *r)
{
    spread_cells c = cs_view(e->cells);
    spread_plan plan;
    ds_i128 after;
    int64_t *v = xmalloc_array(e->cells->n + 1, sizeof *v);
    const char *why = NULL;
    if (engine_spread(&g->p, &c, &plan, v, &after) != 0 || after != e->after ||
        memcmp(v, e->newv, sizeof *v * e->cells->n) != 0)
        why = "a second run differs";
    cellset sh;
    size_t *perm = xmalloc_array(e->cells->n + 1, sizeof *perm);
    cs_shuffle(e->cells, r, &sh, perm);
    c = cs_view(&sh);
    if (!why && (engine_spread(&g->p, &c, &plan, v, &after) != 0 || after != e->after))
        why = "shuffled cells: refused or a different total";
    for (size_t j = 0; j < sh.n && !why; j++)
        if (v[j] != e->newv[perm[j]])
            why = "shuffled cells get different values";
    cs_free(&sh);
    free(perm);
    free(v);
    return why;
}

/* Counts of outcomes over a run, to show the generator covers them. */
typedef struct tally {
    int ok, held, signs, range, fallback, failures;
} tally;

static void one_case(uint64_t seed, tally *tl, bool keep_going)
{
    gen_case g;
    cellset given, dense;
    memset(&dense, 0, sizeof dense);
    gen_case_make(seed, &g, &given);
    outcome e, f;
    memset(&e, 0, sizeof e);
    memset(&f, 0, sizeof f);
    bool given_dense = g.p.method != SPREAD_PROPORTIONAL;
    run_engine(&g, &given, given_dense, &dense, &e);
    run_ref(&g, &given, given_dense, &dense, &f);
    const char *why = compare(&e, &f);
    if (!why && e.rc == 0) {
        spread_cells c = cs_view(e.cells);
        why = check_invariants(&g.p, &e.plan, &c, e.newv, e.after);
    }
    rng r = {seed ^ 0x5eed};
    if (!why && e.rc == 0)
        why = determinism(&g, &e, &r);
    tl->ok += e.rc == 0;
    tl->held += e.rc == -DS_HELD;
    tl->signs += e.rc == -DS_SIGNS_CANCEL;
    tl->range += e.rc == -DS_OUT_OF_RANGE;
    tl->fallback += e.planned && g.p.method == SPREAD_PROPORTIONAL && e.plan.method == SPREAD_EQUAL;
    if (why) {
        dump_case(&g, why, &e, &f);
        tl->failures++;
        ck_assert_msg(keep_going, "random case seed %llu: %s (details on stderr)",
                      (unsigned long long)seed, why);
    }
    free(e.newv);
    free(f.newv);
    mpz_clears(f.ref_target, f.ref_need, NULL);
    cs_free(&given);
    if (dense.coord)
        cs_free(&dense);
    gen_case_free(&g);
}

START_TEST(random_against_reference)
{
    const char *kg = getenv("SPREAD_REF_KEEP_GOING");
    bool keep_going = kg != NULL && kg[0] == '1';
    tally tl = {0};
    for (int i = 0; i < CASES_PER_RUN; i++)
        one_case((uint64_t)_i * 1000003u + (uint64_t)i + 1, &tl, keep_going);
    printf("random run %d: %d cases: %d spread, %d held, %d signs_cancel, %d out_of_range, "
           "%d proportional->equal, %d failures\n",
           _i, CASES_PER_RUN, tl.ok, tl.held, tl.signs, tl.range, tl.fallback, tl.failures);
    fflush(stdout);
    ck_assert_int_eq(tl.failures, 0);
    /* the generator must reach every outcome */
    ck_assert_int_gt(tl.ok, CASES_PER_RUN / 3);
    ck_assert_int_gt(tl.held, 0);
    ck_assert_int_gt(tl.signs, 0);
    ck_assert_int_gt(tl.range, 0);
    ck_assert_int_gt(tl.fallback, 0);
}
END_TEST

/* ---- hand-computed cases ------------------------------------------------------ */

static spread_params params(spread_method m, spread_form f, ds_i128 amount, uint64_t seq)
{
    spread_params p = {m, f, amount, 0, seq, DEC_LEAF_MAX};
    return p;
}

static void expect_values(const int64_t *got, const int64_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "cell %zu: got %lld want %lld", i, (long long)got[i],
                      (long long)want[i]);
}

/* The index (0..n-1) whose single id ranks first by the tie hash. */
static int hash_winner(uint64_t seq, const int32_t *ids, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (ref_tie_hash(seq, &ids[i], 1) > ref_tie_hash(seq, &ids[best], 1))
            best = i;
    return best;
}

/* Root with three leaves (ids 11, 12, 13). */
static const int32_t flat_parent[] = {-1, 0, 0, 0};
static const int32_t flat_id[] = {7, 11, 12, 13};
static const spread_tree flat_tree = {4, flat_parent, flat_id};
static const int32_t flat_coord[] = {1, 2, 3};

START_TEST(reference_by_hand)
{
    int64_t v[3], got[3];
    mpz_t after;
    mpz_init(after);
    spread_method eff;
    int win = hash_winner(42, flat_id + 1, 3);
    /* 100 over 1, 1, 1: 33 each and the hash winner one more */
    int64_t ones[] = {1, 1, 1};
    spread_cells c = {3, 1, &flat_tree, flat_coord, ones, NULL};
    spread_params p = params(SPREAD_PROPORTIONAL, SPREAD_SET, 100, 42);
    ck_assert_int_eq(ref_spread(&p, &c, v, &eff, after), 0);
    ck_assert_int_eq(eff, SPREAD_PROPORTIONAL);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(v[i], 33 + (i == win));
    ck_assert_int_eq(mpz_get_si(after), 100);
    ck_assert_int_eq(both_spread(&p, &c, got, &(spread_plan){0}), 0);
    /* 10 over three leaves, equal: 3 each, the winner 4; -10: -4 for the
     * last by hash, -3 for the other two (floors, remainders >= 0) */
    int64_t mixed[] = {0, 5, -2};
    c.value = mixed;
    p = params(SPREAD_EQUAL, SPREAD_SET, 10, 42);
    ck_assert_int_eq(ref_spread(&p, &c, v, &eff, after), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(v[i], 3 + (i == win));
    p.amount = -10;
    ck_assert_int_eq(ref_spread(&p, &c, v, &eff, after), 0);
    int lose = 0;
    for (int i = 1; i < 3; i++)
        if (ref_tie_hash(42, &flat_id[1 + i], 1) < ref_tie_hash(42, &flat_id[1 + lose], 1))
            lose = i;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(v[i], i == lose ? -4 : -3);
    ck_assert_int_eq(both_spread(&p, &c, got, &(spread_plan){0}), 0);
    /* a held leaf is untouched: 100 over 10, [20], 30 -> 20, 20, 60 */
    int64_t vals[] = {10, 20, 30};
    uint8_t held[] = {0, 1, 0};
    spread_cells ch = {3, 1, &flat_tree, flat_coord, vals, held};
    p = params(SPREAD_PROPORTIONAL, SPREAD_SET, 100, 9);
    ck_assert_int_eq(ref_spread(&p, &ch, v, &eff, after), 0);
    ck_assert(v[0] == 20 && v[1] == 20 && v[2] == 60);
    ck_assert_int_eq(both_spread(&p, &ch, got, &(spread_plan){0}), 0);
    /* percent: 5 * 1.10 = 5.5 rounds half away to 6 (-5.5 to -6), 2 each */
    int64_t five[] = {1, 2, 2}, minus_five[] = {-1, -2, -2};
    spread_cells cp = {3, 1, &flat_tree, flat_coord, five, NULL};
    p = params(SPREAD_EQUAL, SPREAD_PERCENT, 10, 4);
    ck_assert_int_eq(ref_spread(&p, &cp, v, &eff, after), 0);
    ck_assert(v[0] == 2 && v[1] == 2 && v[2] == 2);
    ck_assert_int_eq(both_spread(&p, &cp, got, &(spread_plan){0}), 0);
    cp.value = minus_five;
    p.pct_scale = 1, p.amount = 100; /* 10.0 percent */
    ck_assert_int_eq(ref_spread(&p, &cp, v, &eff, after), 0);
    ck_assert(v[0] == -2 && v[1] == -2 && v[2] == -2);
    ck_assert_int_eq(both_spread(&p, &cp, got, &(spread_plan){0}), 0);
    mpz_clear(after);
}
END_TEST

/* Ragged equal: root -> A -> {a1, a2}; B is a leaf. 4 units: 4/3 each, so
 * A (8/3) gets 3 and B (4/3) gets 1; a1 or a2 gets 2 by the hash. */
START_TEST(reference_ragged_equal)
{
    static const int32_t parent[] = {-1, 0, 1, 1, 0};
    static const int32_t id[] = {1, 2, 3, 4, 5};
    static const spread_tree t = {5, parent, id};
    static const int32_t coord[] = {2, 3, 4};
    int64_t zeros[3] = {0, 0, 0}, v[3], got[3];
    spread_cells c = {3, 1, &t, coord, zeros, NULL};
    spread_params p = params(SPREAD_EQUAL, SPREAD_SET, 4, 77);
    mpz_t after;
    mpz_init(after);
    spread_method eff;
    ck_assert_int_eq(ref_spread(&p, &c, v, &eff, after), 0);
    int win = hash_winner(77, &id[2], 2);
    ck_assert_int_eq(v[0], win == 0 ? 2 : 1);
    ck_assert_int_eq(v[1], win == 1 ? 2 : 1);
    ck_assert_int_eq(v[2], 1);
    ck_assert_int_eq(both_spread(&p, &c, got, &(spread_plan){0}), 0);
    mpz_clear(after);
}
END_TEST

/* Sibling order breaks ties the hash leaves. Distinct member ids never
 * tie (ds_mix64 is a bijection), so the ids are repeated on purpose. */
START_TEST(sibling_order_breaks_hash_ties)
{
    static const int32_t same_id[] = {7, 11, 11, 11};
    static const spread_tree t = {4, flat_parent, same_id};
    int64_t ones[] = {1, 1, 1}, v[3];
    spread_plan plan;
    spread_cells c = {3, 1, &t, flat_coord, ones, NULL};
    spread_params p = params(SPREAD_PROPORTIONAL, SPREAD_SET, 100, 8);
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    expect_values(v, (const int64_t[]){34, 33, 33}, 3);
    p.amount = -100; /* -33.33 each: floors -34, the first two get -33 */
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    expect_values(v, (const int64_t[]){-33, -33, -34}, 3);
}
END_TEST

START_TEST(tie_hash_matches_doc)
{
    rng r = {99};
    int32_t ids[6];
    for (int i = 0; i < 2000; i++) {
        int n = (int)rng_below(&r, 6) + 1;
        for (int j = 0; j < n; j++)
            ids[j] = (int32_t)(uint32_t)rng_next(&r);
        uint64_t seq = rng_chance(&r, 20) ? rng_below(&r, 3) : rng_next(&r);
        ck_assert(spread_tie_hash(seq, ids, n) == ref_tie_hash(seq, ids, n));
    }
}
END_TEST

/* Equal 1,000 over 3 families x 1,000 products: each family 333 or 334,
 * every product 0 or 1, and the extra units are not the first products. */
START_TEST(equal_thousand_over_three_thousand)
{
    enum { FAM = 3, PROD = 1000, N = 1 + FAM * (PROD + 1) };
    int32_t *parent = xmalloc_array(N, sizeof *parent), *id = xmalloc_array(N, sizeof *id);
    int32_t *coord = xmalloc_array(FAM * PROD, sizeof *coord);
    int64_t *zeros = xcalloc(FAM * PROD, sizeof *zeros);
    int64_t *v = xmalloc_array(FAM * PROD, sizeof *v);
    parent[0] = -1;
    id[0] = 1;
    for (int f = 0, i = 1, m = 0; f < FAM; f++) {
        int fam = i;
        parent[i] = 0, id[i] = 10 + f, i++;
        for (int q = 0; q < PROD; q++, i++) {
            parent[i] = fam, id[i] = 1000 + f * PROD + q;
            coord[m++] = i;
        }
    }
    spread_tree t = {N, parent, id};
    spread_cells c = {FAM * PROD, 1, &t, coord, zeros, NULL};
    spread_params p = params(SPREAD_EQUAL, SPREAD_SET, 1000, 12345);
    spread_plan plan;
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    int64_t sum = 0;
    for (int f = 0; f < FAM; f++) {
        int64_t fam = 0;
        bool prefix = true;
        for (int q = 0; q < PROD; q++) {
            int64_t x = v[f * PROD + q];
            ck_assert(x == 0 || x == 1);
            fam += x;
            prefix = prefix && (x == 1) == (q < 333);
        }
        ck_assert_msg(fam == 333 || fam == 334, "family %d got %lld", f, (long long)fam);
        ck_assert_msg(!prefix, "family %d: the units piled on its first products", f);
        sum += fam;
    }
    ck_assert_int_eq(sum, 1000);
    free(parent), free(id), free(coord), free(zeros), free(v);
}
END_TEST

/* Product (root -> A -> {a1, a2}, B -> b1) x time (root -> Q1, Q2). */
static const int32_t prod_parent[] = {-1, 0, 1, 1, 0, 4};
static const int32_t prod_id[] = {100, 101, 102, 103, 104, 105};
static const int32_t time_parent[] = {-1, 0, 0};
static const int32_t time_id[] = {200, 201, 202};
static const spread_tree pt_trees[] = {{6, prod_parent, prod_id}, {3, time_parent, time_id}};
static const int32_t pt_coord[] = {2, 1, 2, 2, 3, 1, 3, 2, 5, 1, 5, 2};
static const int64_t pt_values[] = {10, 20, 30, 40, 0, 100};

START_TEST(two_dimensions_by_hand)
{
    int64_t v[6];
    spread_plan plan;
    spread_cells c = {6, 2, pt_trees, pt_coord, pt_values, NULL};
    spread_params p = params(SPREAD_PROPORTIONAL, SPREAD_SET, 400, 5);
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    expect_values(v, (const int64_t[]){20, 40, 60, 80, 0, 200}, 6);
    p = params(SPREAD_PROPORTIONAL, SPREAD_DELTA, -100, 5); /* T = 100 */
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    expect_values(v, (const int64_t[]){5, 10, 15, 20, 0, 50}, 6);
    /* a2 held: h = 70, 230 over a1 (10, 20) and b1 (0, 100): the root
     * splits 53.08 / 176.92 -> A 53, B 177; a1 17.69 / 35.38 -> 18, 35 */
    static const uint8_t a2_held[] = {0, 0, 1, 1, 0, 0};
    c.held = a2_held;
    p = params(SPREAD_PROPORTIONAL, SPREAD_SET, 300, 5);
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    expect_values(v, (const int64_t[]){18, 35, 30, 40, 0, 177}, 6);
    /* equal 7 over 6 cells: A (4 cells, 4.67) 5, B (2.33) 2; b1's quarters
     * 1 and 1; a1 or a2 (by hash) 3, split 2/1 by the hash of (a, Q) */
    c.held = NULL;
    p = params(SPREAD_EQUAL, SPREAD_SET, 7, 31);
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    int wa = hash_winner(31, &prod_id[2], 2);
    int32_t q1[2] = {prod_id[2 + wa], 201}, q2[2] = {prod_id[2 + wa], 202};
    int wq = ref_tie_hash(31, q2, 2) > ref_tie_hash(31, q1, 2);
    int64_t want[6] = {1, 1, 1, 1, 1, 1};
    want[wa * 2 + wq] = 2;
    expect_values(v, want, 6);
}
END_TEST

/* 200 leaves near the leaf limit: (T - h) * w is far beyond 128 bits. */
START_TEST(wide_products_near_leaf_max)
{
    enum { N = 200 };
    int32_t parent[N + 1], id[N + 1], coord[N];
    int64_t vals[N], v[N];
    parent[0] = -1, id[0] = 5;
    for (int i = 1; i <= N; i++) {
        parent[i] = 0, id[i] = 100 + i, coord[i - 1] = i;
        vals[i - 1] = DEC_LEAF_MAX - i % 7;
    }
    spread_tree t = {N + 1, parent, id};
    spread_cells c = {N, 1, &t, coord, vals, NULL};
    ds_i128 sum = 0;
    for (int i = 0; i < N; i++)
        sum += vals[i];
    static const spread_method methods[] = {SPREAD_PROPORTIONAL, SPREAD_EQUAL};
    for (int m = 0; m < 2; m++) {
        spread_params p = params(methods[m], SPREAD_SET, sum - 12345, 7);
        spread_plan plan;
        ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
        ck_assert_ptr_null(check_invariants(&p, &plan, &c, v, sum - 12345));
        p.amount = -sum + 999;
        ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
        ck_assert_ptr_null(check_invariants(&p, &plan, &c, v, -sum + 999));
    }
}
END_TEST

START_TEST(all_zero_proportional_becomes_equal)
{
    spread_params p = params(SPREAD_PROPORTIONAL, SPREAD_SET, 9, 3);
    spread_totals t;
    spread_plan plan;
    ds_error err;
    spread_cells none = {0, 1, &flat_tree, flat_coord, NULL, NULL};
    spread_totals_of(&none, &t);
    ck_assert_int_eq(spread_plan_make(&p, &t, &plan, &err), 0);
    ck_assert_int_eq(plan.method, SPREAD_EQUAL);
    ck_assert(plan.dense);
    int64_t zeros[] = {0, 0, 0}, v[3];
    spread_cells c = {3, 1, &flat_tree, flat_coord, zeros, NULL};
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    ck_assert_int_eq(plan.method, SPREAD_EQUAL);
    expect_values(v, (const int64_t[]){3, 3, 3}, 3);
}
END_TEST

START_TEST(signs_cancel_refused)
{
    int64_t v[3];
    spread_plan plan;
    int64_t cancel[] = {5, -5, 0}, near[] = {1000, -999, 0}, edge[] = {1001, -999, 0};
    spread_cells c = {3, 1, &flat_tree, flat_coord, cancel, NULL};
    spread_params p = params(SPREAD_PROPORTIONAL, SPREAD_SET, 4, 1);
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), -DS_SIGNS_CANCEL);
    c.value = near; /* |1| * 1000 < 1999 */
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), -DS_SIGNS_CANCEL);
    c.value = edge; /* |2| * 1000 == 2000: allowed */
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    expect_values(v, (const int64_t[]){2002, -1998, 0}, 3);
    static const uint8_t held[] = {0, 1, 0};
    c.value = cancel;
    c.held = held; /* the held -5 does not count */
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    expect_values(v, (const int64_t[]){9, -5, 0}, 3);
    c.held = NULL;
    p.method = SPREAD_EQUAL; /* equal does not care about signs */
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
}
END_TEST

START_TEST(out_of_range_and_held_refused)
{
    int64_t v[3];
    spread_plan plan;
    int64_t vals[] = {1, 1, -1};
    static const uint8_t held[] = {0, 0, 1};
    spread_cells c = {3, 1, &flat_tree, flat_coord, vals, held};
    spread_params p = params(SPREAD_PROPORTIONAL, SPREAD_SET, I128_MAX, 1);
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), -DS_OUT_OF_RANGE); /* T - h overflows */
    p = params(SPREAD_EQUAL, SPREAD_DELTA, I128_MAX, 1);
    c.held = NULL;
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), -DS_OUT_OF_RANGE); /* T overflows */
    p = params(SPREAD_PROPORTIONAL, SPREAD_SET, 2 * (ds_i128)DEC_LEAF_MAX, 1);
    int64_t ones[] = {1, 1, 1};
    c.value = ones; /* a total beyond one leaf's range is fine */
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    p.amount = 3 * (ds_i128)DEC_LEAF_MAX + 1;
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), -DS_OUT_OF_RANGE);
    p = params(SPREAD_PROPORTIONAL, SPREAD_SET, 300, 1);
    p.leaf_max = 100;
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    p.amount = 301;
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), -DS_OUT_OF_RANGE);
    p = params(SPREAD_REPEAT, SPREAD_SET, 101, 1);
    p.leaf_max = 100;
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), -DS_OUT_OF_RANGE);
    p = params(SPREAD_REPEAT, SPREAD_PERCENT, 99, 1); /* 100 * (1 + 99%) = 199 */
    int64_t hundred[] = {100, 1, 1};
    c.value = hundred;
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    expect_values(v, (const int64_t[]){199, 2, 2}, 3);
    p.leaf_max = 198;
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), -DS_OUT_OF_RANGE);
    static const uint8_t all_held[] = {1, 1, 1};
    c.held = all_held;
    p = params(SPREAD_EQUAL, SPREAD_SET, 5, 1);
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), -DS_HELD);
    p.amount = 102; /* T == h: nothing to do */
    ck_assert_int_eq(both_spread(&p, &c, v, &plan), 0);
    expect_values(v, hundred, 3);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spread_ref");
    TCase *tc = tcase_create("hand");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, reference_by_hand);
    tcase_add_test(tc, reference_ragged_equal);
    tcase_add_test(tc, sibling_order_breaks_hash_ties);
    tcase_add_test(tc, tie_hash_matches_doc);
    tcase_add_test(tc, equal_thousand_over_three_thousand);
    tcase_add_test(tc, two_dimensions_by_hand);
    tcase_add_test(tc, wide_products_near_leaf_max);
    tcase_add_test(tc, all_zero_proportional_becomes_equal);
    tcase_add_test(tc, signs_cancel_refused);
    tcase_add_test(tc, out_of_range_and_held_refused);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("random");
    tcase_set_timeout(tr, 240);
    tcase_add_loop_test(tr, random_against_reference, 0, RANDOM_RUNS);
    suite_add_tcase(s, tr);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
