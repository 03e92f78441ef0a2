/* spread.c: the spreading engine; see spread.h for the rules.
 *
 * The fast path: the cells that take part are sorted into the depth-first
 * order of the apportionment tree (coordinates are preorder indexes, so a
 * lexicographic sort does it), each cell's exact share is split into a
 * floor and a remainder over the common denominator W, prefix sums of both
 * make any node's exact share an O(1) range sum, and one top-down walk
 * hands out the residual units node by node. No floating point. */
#include "spread.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

const char *spread_method_name(spread_method m)
{
    switch (m) {
    case SPREAD_PROPORTIONAL:
        return "proportional";
    case SPREAD_EQUAL:
        return "equal";
    case SPREAD_REPEAT:
        return "repeat";
    }
    return "?";
}

uint64_t spread_tie_hash(uint64_t seq, const int32_t *ids, int n)
{
    uint64_t h = ds_mix64(seq);
    for (int j = 0; j < n; j++)
        h = ds_mix64(h ^ (uint32_t)ids[j]);
    return h;
}

void spread_totals_of(const spread_cells *c, spread_totals *t)
{
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < c->n; i++) {
        ds_i128 v = c->value[i];
        t->total += v;
        if (c->held && c->held[i]) {
            t->held += v;
        } else {
            t->unheld += v;
            t->unheld_abs += dec_abs(v);
        }
    }
}

/* 100 * 10^k + p: the factor (1 + p/100) scaled by 100 * 10^k. */
static bool percent_factor(const spread_params *p, ds_i128 *num, ds_i128 *den)
{
    if (p->pct_scale < 0 || p->pct_scale > SPREAD_PCT_MAX_SCALE)
        return false;
    *den = 100 * dec_pow10(p->pct_scale);
    return dec_add(*den, p->amount, num);
}

/* T beyond this can never spread into leaves that fit; refusing early keeps
 * every intermediate sum far from int128 overflow. */
#define TARGET_MAX (dec_pow10(36))

int spread_plan_make(const spread_params *p, const spread_totals *t, spread_plan *plan,
                     ds_error *err)
{
    memset(plan, 0, sizeof *plan);
    plan->method = p->method;
    if (p->method == SPREAD_REPEAT) {
        plan->dense = true;
        return 0;
    }
    if (dec_abs(p->amount) > TARGET_MAX)
        return ds_fail(err, DS_OUT_OF_RANGE, "value", "the target is out of range");
    ds_i128 ut; /* T - h; no overflow: |amount| <= 10^36, sums of int64 leaves */
    switch (p->form) {
    case SPREAD_SET:
        ut = p->amount - t->held;
        break;
    case SPREAD_DELTA:
        ut = t->unheld + p->amount;
        break;
    case SPREAD_PERCENT: {
        /* T = h + sum(U) * num / den, rounded half away from zero as a
         * whole; with q, r the floor and remainder of the scaled part,
         * T's sign is the sign of h + q */
        ds_i128 num, den, q, r;
        if (!percent_factor(p, &num, &den) || !dec_muldiv(t->unheld, num, den, &q, &r) ||
            dec_abs(q) > TARGET_MAX)
            return ds_fail(err, DS_OUT_OF_RANGE, "value", "the percent gives a total out of range");
        bool up = q + t->held >= 0 ? r >= den - r : r > den - r;
        ut = q + up;
        break;
    }
    default:
        return ds_fail(err, DS_INTERNAL, NULL, "unknown spread form %d", (int)p->form);
    }
    if (dec_abs(ut) > TARGET_MAX)
        return ds_fail(err, DS_OUT_OF_RANGE, "value", "the target is out of range");
    plan->unheld_target = ut;
    plan->target = ut + t->held;
    if (plan->method == SPREAD_PROPORTIONAL) {
        if (t->unheld_abs == 0) {
            plan->method = SPREAD_EQUAL; /* every unheld leaf is zero */
        } else if (t->unheld == 0 || dec_abs(t->unheld) * 1000 < t->unheld_abs) {
            return ds_fail(err, DS_SIGNS_CANCEL, "value",
                           "the leaves beneath the cell have values whose signs cancel "
                           "(their sum is near zero), so a proportional spread is undefined; "
                           "use method \"equal\"");
        }
    }
    plan->dense = plan->method == SPREAD_EQUAL;
    return 0;
}

/* ---- the apportionment walk ------------------------------------------ */

/* One dimension's tree with derived shape. */
typedef struct tree_shape {
    int32_t n;
    const int32_t *id;
    int32_t *size;      /* nodes in the subtree, itself included */
    int32_t *kid_start; /* children of i: kids[kid_start[i] .. kid_start[i+1]) */
    int32_t *kids;
} tree_shape;

typedef struct kid {
    int32_t node;  /* member in the current tree */
    size_t lo, hi; /* its cells in sorted order */
    ds_i128 frac;  /* remainder over den */
    ds_i128 alloc;
    uint64_t hash;
} kid;

typedef struct walk {
    const spread_params *p;
    const spread_cells *c;
    tree_shape *shapes;
    const size_t *order; /* sorted position -> cell index */
    const int32_t *sc;   /* coordinates in sorted order, ntrees per position */
    ds_i128 *pf, *pr;    /* prefix sums of floors and remainders, m + 1 */
    size_t *pnz;         /* prefix counts of cells with a remainder, m + 1 */
    ds_i128 den;
    int64_t *newv;
    kid *kids; /* a stack: each node's children above its caller's */
    size_t nkids, kids_alloc;
    ds_error *err;
} walk;

static int shape_tree(const spread_tree *t, tree_shape *s)
{
    s->n = t->n;
    s->id = t->id;
    s->size = xmalloc_array((size_t)t->n, sizeof *s->size);
    s->kid_start = xcalloc((size_t)t->n + 1, sizeof *s->kid_start);
    s->kids = xmalloc_array((size_t)t->n, sizeof *s->kids);
    if (t->n < 1 || t->parent[0] != -1)
        return -1;
    for (int32_t i = 1; i < t->n; i++) {
        if (t->parent[i] < 0 || t->parent[i] >= i)
            return -1;
        s->kid_start[t->parent[i] + 1]++;
    }
    for (int32_t i = 0; i < t->n; i++)
        s->kid_start[i + 1] += s->kid_start[i];
    int32_t *fill = xmalloc_array((size_t)t->n, sizeof *fill);
    memcpy(fill, s->kid_start, (size_t)t->n * sizeof *fill);
    for (int32_t i = 1; i < t->n; i++)
        s->kids[fill[t->parent[i]]++] = i;
    free(fill);
    for (int32_t i = t->n - 1; i >= 0; i--) {
        s->size[i] = 1;
        for (int32_t j = s->kid_start[i]; j < s->kid_start[i + 1]; j++)
            s->size[i] += s->size[s->kids[j]];
    }
    /* preorder: every child's subtree follows its parent contiguously */
    for (int32_t i = 0; i < t->n; i++) {
        int32_t next = i + 1;
        for (int32_t j = s->kid_start[i]; j < s->kid_start[i + 1]; j++) {
            if (s->kids[j] != next)
                return -1;
            next += s->size[s->kids[j]];
        }
    }
    return 0;
}

static void free_shape(tree_shape *s)
{
    free(s->size);
    free(s->kid_start);
    free(s->kids);
}

static bool is_leaf(const tree_shape *s, int32_t y)
{
    return s->kid_start[y] == s->kid_start[y + 1];
}

static int32_t coord_of(const walk *w, size_t pos, int k)
{
    return w->sc[pos * (size_t)w->c->ntrees + (size_t)k];
}

/* First position in [lo, hi) whose coordinate k is >= v: galloping from
 * lo, since most ranges are short. */
static size_t lower_bound(const walk *w, size_t lo, size_t hi, int k, int32_t v)
{
    size_t step = 1, prev = lo;
    while (lo < hi && coord_of(w, lo, k) < v) {
        prev = lo + 1;
        lo = hi - lo > step ? lo + step : hi;
        step *= 2;
    }
    /* the answer is in [prev, lo] */
    size_t a = prev, b = lo;
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (coord_of(w, mid, k) < v)
            a = mid + 1;
        else
            b = mid;
    }
    return a;
}

/* The index in kids[] of the child of y whose subtree holds member x,
 * searching forward from index j (callers walk x upwards). */
static int32_t child_holding(const tree_shape *s, int32_t y, int32_t j, int32_t x)
{
    int32_t end = s->kid_start[y + 1] - 1;
    for (int n = 0; n < 8 && j < end && s->kids[j + 1] <= x; n++)
        j++;
    if (j < end && s->kids[j + 1] <= x) {
        int32_t lo = j + 1, hi = end; /* last child starting at or before x */
        while (lo < hi) {
            int32_t mid = lo + (hi - lo + 1) / 2;
            if (s->kids[mid] <= x)
                lo = mid;
            else
                hi = mid - 1;
        }
        j = lo;
    }
    return j;
}

static int kid_rank(const void *a, const void *b)
{
    const kid *x = a, *y = b;
    if (x->frac != y->frac)
        return x->frac > y->frac ? -1 : 1;
    if (x->hash != y->hash)
        return x->hash > y->hash ? -1 : 1;
    return x->node < y->node ? -1 : 1;
}

/* Sorts kids by kid_rank: insertion sort for the usual handful. */
static void rank_kids(kid *k, size_t n)
{
    if (n > 16) {
        qsort(k, n, sizeof *k, kid_rank);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        kid x = k[i];
        size_t j = i;
        while (j > 0 && kid_rank(&k[j - 1], &x) > 0) {
            k[j] = k[j - 1];
            j--;
        }
        k[j] = x;
    }
}

static size_t push_kid(walk *w)
{
    if (w->nkids == w->kids_alloc) {
        w->kids_alloc = w->kids_alloc ? w->kids_alloc * 2 : 256;
        w->kids = xrealloc(w->kids, w->kids_alloc * sizeof *w->kids);
    }
    return w->nkids++;
}

/* Splits [lo, hi) among y's children with cells beneath them, pushing one
 * kid each; returns the sum of their floors via *floors. */
static size_t split_kids(walk *w, int k, int32_t y, size_t lo, size_t hi, ds_i128 *floors)
{
    const tree_shape *s = &w->shapes[k];
    size_t base = w->nkids;
    *floors = 0;
    int32_t j = s->kid_start[y];
    for (size_t pos = lo; pos < hi;) {
        j = child_holding(s, y, j, coord_of(w, pos, k));
        int32_t ch = s->kids[j];
        size_t end = lower_bound(w, pos, hi, k, ch + s->size[ch]);
        size_t i = push_kid(w);
        kid *kd = &w->kids[i];
        ds_i128 r = w->pr[end] - w->pr[pos], q = 0;
        if (r >= w->den) { /* a single cell's remainder is always below den */
            q = r / w->den;
            r -= q * w->den;
        }
        kd->node = ch;
        kd->lo = pos;
        kd->hi = end;
        kd->alloc = w->pf[end] - w->pf[pos] + q;
        kd->frac = r;
        *floors += kd->alloc;
        pos = end;
    }
    return w->nkids - base;
}

/* A cell (a leaf of the last tree) gets its allocation. */
static int set_cell(walk *w, size_t lo, size_t hi, ds_i128 a)
{
    if (hi - lo != 1)
        return ds_fail(w->err, DS_INTERNAL, NULL, "two cells share one coordinate");
    if (a > w->p->leaf_max || a < -(ds_i128)w->p->leaf_max)
        return ds_fail(w->err, DS_OUT_OF_RANGE, "value",
                       "a leaf would get a value beyond the measure's range");
    w->newv[w->order[lo]] = (int64_t)a;
    return 0;
}

static int walk_node(walk *w, int k, int32_t y, size_t lo, size_t hi, ds_i128 a, uint64_t hstate);

/* Pushes y's children (with cells beneath) with their allocations out of
 * a: floors, plus one unit each for the best ranked. Returns how many. */
static int allocate_kids(walk *w, int k, int32_t y, size_t lo, size_t hi, ds_i128 a,
                         uint64_t hstate, size_t *nkids)
{
    size_t base = w->nkids;
    ds_i128 floors;
    size_t nk = split_kids(w, k, y, lo, hi, &floors);
    ds_i128 residual = a - floors;
    size_t nonzero = 0;
    for (size_t i = 0; i < nk; i++)
        nonzero += w->kids[base + i].frac != 0;
    if (residual < 0 || residual > (ds_i128)nonzero)
        return ds_fail(w->err, DS_INTERNAL, NULL, "apportionment residual out of bounds");
    if (residual > 0 && (size_t)residual < nonzero) { /* ties need the hash: only now */
        const tree_shape *sh = &w->shapes[k];
        for (size_t i = 0; i < nk; i++)
            w->kids[base + i].hash = ds_mix64(hstate ^ (uint32_t)sh->id[w->kids[base + i].node]);
        rank_kids(&w->kids[base], nk);
    }
    for (size_t i = 0; i < nk && residual > 0; i++) {
        if (w->kids[base + i].frac != 0) {
            w->kids[base + i].alloc++;
            residual--;
        }
    }
    *nkids = nk;
    return 0;
}

static int visit_kid(walk *w, int k, kid kd, uint64_t hstate)
{
    if (k + 1 == w->c->ntrees && is_leaf(&w->shapes[k], kd.node))
        return set_cell(w, kd.lo, kd.hi, kd.alloc);
    return walk_node(w, k, kd.node, kd.lo, kd.hi, kd.alloc, hstate);
}

/* When a node gets exactly the sum of its cells' floors, every node
 * beneath gets its floor (a residual is never negative), down to the
 * cells; when it gets the sum of their ceilings, every one its ceiling.
 * Either way the cells are known without walking: true when done. */
static bool settled(walk *w, size_t lo, size_t hi, ds_i128 a, int *rc)
{
    ds_i128 floors = w->pf[hi] - w->pf[lo];
    size_t nnz = w->pnz[hi] - w->pnz[lo];
    if (a != floors && a != floors + (ds_i128)nnz)
        return false;
    bool up = a != floors;
    *rc = 0;
    for (size_t i = lo; i < hi && *rc == 0; i++) {
        ds_i128 v = w->pf[i + 1] - w->pf[i] + (up && w->pnz[i + 1] != w->pnz[i]);
        *rc = set_cell(w, i, i + 1, v);
    }
    return true;
}

static int walk_node(walk *w, int k, int32_t y, size_t lo, size_t hi, ds_i128 a, uint64_t hstate)
{
    const tree_shape *s = &w->shapes[k];
    if (hi - lo == 1) /* one cell beneath: every node on its way gets all of a */
        return set_cell(w, lo, hi, a);
    int rc;
    if (settled(w, lo, hi, a, &rc))
        return rc;
    if (is_leaf(s, y)) {
        if (k + 1 < w->c->ntrees)
            return walk_node(w, k + 1, 0, lo, hi, a, ds_mix64(hstate ^ (uint32_t)s->id[y]));
        return set_cell(w, lo, hi, a);
    }
    size_t base = w->nkids, nk;
    rc = allocate_kids(w, k, y, lo, hi, a, hstate, &nk);
    for (size_t i = 0; rc == 0 && i < nk; i++)
        rc = visit_kid(w, k, w->kids[base + i], hstate); /* a copy: the stack may move */
    w->nkids = base;
    return rc;
}

/* Big spreads walk on two threads: the first node with several children
 * hands about half of its cells to a second thread. The halves write
 * disjoint cells and only read the shared arrays. */
enum { PARALLEL_MIN_CELLS = 65536 };

typedef struct half {
    walk w;
    int k;
    kid *kids;
    size_t n;
    uint64_t hstate;
    ds_error err;
    int rc;
} half;

static void *walk_half(void *arg)
{
    ds_thread_name("ds-spread");
    half *h = arg;
    h->rc = 0;
    for (size_t i = 0; h->rc == 0 && i < h->n; i++)
        h->rc = visit_kid(&h->w, h->k, h->kids[i], h->hstate);
    free(h->w.kids);
    return NULL;
}

static int walk_top(walk *w, int k, int32_t y, size_t lo, size_t hi, ds_i128 a, uint64_t hstate)
{
    const tree_shape *s = &w->shapes[k];
    int rc;
    if (hi - lo < PARALLEL_MIN_CELLS || is_leaf(s, y) || settled(w, lo, hi, a, &rc))
        return hi - lo < PARALLEL_MIN_CELLS || is_leaf(s, y) ? walk_node(w, k, y, lo, hi, a, hstate)
                                                             : rc;
    size_t base = w->nkids, nk;
    rc = allocate_kids(w, k, y, lo, hi, a, hstate, &nk);
    if (rc)
        return rc;
    if (nk == 1) {
        kid kd = w->kids[base];
        w->nkids = base;
        return walk_top(w, k, kd.node, kd.lo, kd.hi, kd.alloc, hstate);
    }
    size_t split = 1; /* kids [0, split) here, [split, nk) on the other thread */
    while (split < nk - 1 && w->kids[base + split].lo - lo < (hi - lo) / 2)
        split++;
    half h = {.w = *w, .k = k, .n = nk - split, .hstate = hstate};
    h.kids = xmalloc_array(h.n, sizeof *h.kids);
    memcpy(h.kids, &w->kids[base + split], h.n * sizeof *h.kids);
    h.w.kids = NULL;
    h.w.nkids = h.w.kids_alloc = 0;
    h.w.err = &h.err;
    pthread_t t;
    bool threaded = pthread_create(&t, NULL, walk_half, &h) == 0;
    if (!threaded)
        walk_half(&h);
    for (size_t i = 0; rc == 0 && i < split; i++)
        rc = visit_kid(w, k, w->kids[base + i], hstate);
    if (threaded)
        pthread_join(t, NULL);
    free(h.kids);
    w->nkids = base;
    if (rc == 0 && h.rc) {
        if (w->err)
            *w->err = h.err;
        rc = h.rc;
    }
    return rc;
}

/* ---- sorting cells into tree order ----------------------------------- */

typedef struct sort_ctx {
    const int32_t *coord;
    int ntrees;
} sort_ctx;

static _Thread_local sort_ctx g_sort; /* qsort has no context argument */

static int cmp_coords(const void *a, const void *b)
{
    const int32_t *x = g_sort.coord + *(const size_t *)a * (size_t)g_sort.ntrees;
    const int32_t *y = g_sort.coord + *(const size_t *)b * (size_t)g_sort.ntrees;
    for (int k = 0; k < g_sort.ntrees; k++)
        if (x[k] != y[k])
            return x[k] < y[k] ? -1 : 1;
    return 0;
}

static int bits_for(int32_t n)
{
    int b = 0;
    while (b < 31 && ((int32_t)1 << b) < n)
        b++;
    return b;
}

#define DS_MAX_TREES 16

/* Sorts idx[0..m) by coordinates: an LSD radix sort of 64-bit keys that
 * carry the packed coordinates above the cell index, when both fit;
 * qsort otherwise. Input that is already in order costs one pass. Returns
 * false when two cells share all coordinates. */
static bool sort_cells(const spread_cells *c, size_t *idx, size_t m)
{
    int cbits = 0, ib = bits_for(m > INT32_MAX ? INT32_MAX : (int32_t)m), bits[DS_MAX_TREES];
    for (int k = 0; k < c->ntrees && k < DS_MAX_TREES; k++)
        cbits += bits[k] = bits_for(c->trees[k].n);
    if (c->ntrees > DS_MAX_TREES || cbits + ib > 64 || m < 64 || m > INT32_MAX) {
        g_sort.coord = c->coord;
        g_sort.ntrees = c->ntrees;
        qsort(idx, m, sizeof *idx, cmp_coords);
        for (size_t i = 1; i < m; i++)
            if (cmp_coords(&idx[i - 1], &idx[i]) == 0)
                return false;
        return true;
    }
    uint64_t *key = xmalloc_array(m, sizeof *key);
    bool sorted = true;
    for (size_t i = 0; i < m; i++) {
        const int32_t *co = c->coord + idx[i] * (size_t)c->ntrees;
        uint64_t kv = 0;
        for (int k = 0; k < c->ntrees; k++)
            kv = (kv << bits[k]) | (uint32_t)co[k];
        key[i] = kv << ib | (uint64_t)i;
        sorted &= i == 0 || key[i] > key[i - 1];
    }
    if (!sorted) {
        int passes = (cbits + 11) / 12, digit = (cbits + passes - 1) / passes;
        size_t buckets = (size_t)1 << digit;
        uint64_t *tmp = xmalloc_array(m, sizeof *tmp);
        size_t *count = xmalloc_array(buckets, sizeof *count);
        for (int p = 0; p < passes; p++) {
            int shift = ib + p * digit;
            memset(count, 0, buckets * sizeof *count);
            for (size_t i = 0; i < m; i++)
                count[(key[i] >> shift) & (buckets - 1)]++;
            for (size_t b = 0, sum = 0; b < buckets; b++) {
                size_t t = count[b];
                count[b] = sum;
                sum += t;
            }
            for (size_t i = 0; i < m; i++)
                tmp[count[(key[i] >> shift) & (buckets - 1)]++] = key[i];
            uint64_t *t = key;
            key = tmp;
            tmp = t;
        }
        free(tmp);
        free(count);
    }
    size_t *orig = xmalloc_array(m, sizeof *orig);
    memcpy(orig, idx, m * sizeof *idx);
    uint64_t mask = ((uint64_t)1 << ib) - 1;
    bool distinct = true;
    for (size_t i = 0; i < m; i++) {
        idx[i] = orig[key[i] & mask];
        distinct &= i == 0 || key[i] >> ib != key[i - 1] >> ib;
    }
    free(orig);
    free(key);
    return distinct;
}

/* ---- entry points ----------------------------------------------------- */

static int check_leaf(const spread_params *p, ds_i128 v)
{
    return v > p->leaf_max || v < -(ds_i128)p->leaf_max ? -1 : 0;
}

static int apportion_repeat(const spread_params *p, const spread_cells *c, int64_t *newv,
                            ds_i128 *total_after, ds_error *err)
{
    ds_i128 num = 0, den = 1, total = 0;
    if (p->form == SPREAD_PERCENT && !percent_factor(p, &num, &den))
        return ds_fail(err, DS_OUT_OF_RANGE, "value", "the percent is out of range");
    size_t unheld = 0;
    for (size_t i = 0; i < c->n; i++) {
        ds_i128 v = c->value[i];
        if (!(c->held && c->held[i])) {
            unheld++;
            bool ok = true;
            if (p->form == SPREAD_SET)
                v = p->amount;
            else if (p->form == SPREAD_DELTA)
                ok = dec_add(v, p->amount, &v);
            else
                ok = dec_muldiv_round(v, num, den, &v);
            if (!ok || check_leaf(p, v))
                return ds_fail(err, DS_OUT_OF_RANGE, "value",
                               "a leaf would get a value beyond the measure's range");
        }
        newv[i] = (int64_t)v;
        total += v;
    }
    if (unheld == 0 && !(p->form == SPREAD_DELTA && p->amount == 0) &&
        !(p->form == SPREAD_PERCENT && p->amount == 0))
        return ds_fail(err, DS_HELD, "cell", "every leaf beneath the cell is held");
    *total_after = total;
    return 0;
}

/* Computes floor and remainder of every taking part cell's exact share. */
static int shares(const spread_params *p, const spread_cells *c, const size_t *order, size_t m,
                  bool equal, ds_i128 num, ds_i128 den, ds_i128 *pf, ds_i128 *pr, size_t *pnz,
                  ds_error *err)
{
    bool num64 = num >= INT64_MIN && num <= INT64_MAX, den64 = den <= INT64_MAX;
    pf[0] = pr[0] = 0;
    pnz[0] = 0;
    for (size_t i = 0; i < m; i++) {
        ds_i128 wgt = equal ? 1 : c->value[order[i]], q, r;
        if (num64) { /* |num * wgt| < 2^126: exact in 128 bits */
            ds_i128 prod = num * wgt;
            if (den64 && prod >= INT64_MIN && prod <= INT64_MAX) {
                int64_t a = (int64_t)prod, d = (int64_t)den, q64 = a / d, r64 = a % d;
                if (r64 < 0) {
                    q64--;
                    r64 += d;
                }
                q = q64;
                r = r64;
            } else {
                q = prod / den;
                r = prod % den;
                if (r < 0) {
                    q--;
                    r += den;
                }
            }
        } else if (!dec_muldiv(num, wgt, den, &q, &r)) {
            return ds_fail(err, DS_OUT_OF_RANGE, "value", "the spread is out of range");
        }
        if (dec_abs(q) > (ds_i128)p->leaf_max + 1)
            return ds_fail(err, DS_OUT_OF_RANGE, "value",
                           "a leaf would get a value beyond the measure's range");
        pf[i + 1] = pf[i] + q;
        pr[i + 1] = pr[i] + r;
        pnz[i + 1] = pnz[i] + (r != 0);
    }
    return 0;
}

int spread_apportion(const spread_params *p, const spread_plan *plan, const spread_cells *c,
                     int64_t *newv, ds_i128 *total_after, ds_error *err)
{
    if (plan->method == SPREAD_REPEAT)
        return apportion_repeat(p, c, newv, total_after, err);

    bool equal = plan->method == SPREAD_EQUAL;
    size_t m = 0;
    size_t *order = xmalloc_array(c->n ? c->n : 1, sizeof *order);
    ds_i128 wsum = 0, held = 0;
    for (size_t i = 0; i < c->n; i++) {
        newv[i] = c->value[i];
        if (c->held && c->held[i]) {
            held += c->value[i];
            continue;
        }
        if (equal || c->value[i] != 0) {
            order[m++] = i;
            wsum += equal ? 1 : c->value[i];
        }
    }
    ds_i128 ut = plan->unheld_target;
    int rc = 0;
    if (m == 0) {
        if (ut != 0)
            rc = ds_fail(err, DS_HELD, "cell", "every leaf beneath the cell is held");
        *total_after = held;
        free(order);
        return rc;
    }
    /* q_i = ut * w_i / wsum, with a positive denominator */
    ds_i128 num = wsum < 0 ? -ut : ut, den = dec_abs(wsum);
    ds_i128 *pf = xmalloc_array(m + 1, sizeof *pf), *pr = xmalloc_array(m + 1, sizeof *pr);
    size_t *pnz = xmalloc_array(m + 1, sizeof *pnz);
    tree_shape *shapes = xcalloc((size_t)c->ntrees + 1, sizeof *shapes);
    if (!sort_cells(c, order, m))
        rc = ds_fail(err, DS_INTERNAL, NULL, "two cells share one coordinate");
    if (rc == 0)
        rc = shares(p, c, order, m, equal, num, den, pf, pr, pnz, err);
    for (int k = 0; rc == 0 && k < c->ntrees; k++)
        if (shape_tree(&c->trees[k], &shapes[k]))
            rc = ds_fail(err, DS_INTERNAL, NULL, "tree %d is not in preorder", k);
    if (rc == 0 && c->ntrees == 0)
        rc = ds_fail(err, DS_INTERNAL, NULL, "a spread needs a consolidated dimension");
    for (size_t i = 0; rc == 0 && i < m; i++) {
        for (int k = 0; k < c->ntrees; k++) {
            int32_t x = c->coord[order[i] * (size_t)c->ntrees + (size_t)k];
            if (x < 0 || x >= shapes[k].n || !is_leaf(&shapes[k], x)) {
                rc = ds_fail(err, DS_INTERNAL, NULL, "a cell's coordinate is not a leaf");
                break;
            }
        }
    }
    if (rc == 0) {
        size_t nt = (size_t)c->ntrees;
        int32_t *sc = xmalloc_array(m * nt, sizeof *sc);
        for (size_t i = 0; i < m; i++)
            memcpy(sc + i * nt, c->coord + order[i] * nt, nt * sizeof *sc);
        walk w = {.p = p,
                  .c = c,
                  .shapes = shapes,
                  .order = order,
                  .sc = sc,
                  .pf = pf,
                  .pr = pr,
                  .pnz = pnz,
                  .den = den,
                  .newv = newv,
                  .err = err};
        rc = walk_top(&w, 0, 0, 0, m, ut, ds_mix64(p->seq));
        free(w.kids);
        free(sc);
    }
    for (int k = 0; k < c->ntrees; k++)
        free_shape(&shapes[k]);
    free(shapes);
    free(pf);
    free(pr);
    free(pnz);
    free(order);
    if (rc == 0)
        *total_after = ut + held;
    return rc;
}
