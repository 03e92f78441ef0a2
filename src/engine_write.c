/* engine_write.c: cell writes in memory, with the rules of spreading:
 * a leaf write sets the leaf (value, delta or percent), a write to a
 * consolidated cell spreads over the leaves beneath it (spread.h decides
 * the plan and the exact shares). Holds, if_seq (stale), the creation cap
 * (too_many_cells) and the range of a leaf (out_of_range) are decided here
 * and nowhere else. The outcome lists the totals (target, cells above,
 * children one level down) and the changed leaves, each up to the cap.
 * Part of the engine. */
#include "engine_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "spread.h"

/* Cells above a target listed at most (the lattice of its ancestors). */
#define ABOVE_MAX_LATTICE 65536

/* ---- checks -------------------------------------------------------------- */

static bool alive(const ds_dim *d, int32_t x)
{
    return x >= 0 && x < d->nmembers && d->members[x].alive;
}

static int check_cell(const ds_model *m, const ds_cell *c, ds_error *err)
{
    for (int k = 0; k < m->ndims; k++)
        if (!alive(&m->dims[k], c->m[k]))
            return ds_fail(err, DS_NOT_FOUND, "cell", "dimension '%s' has no such member",
                           m->dims[k].name);
    return 0;
}

static int check_hold(const ds_model *m, const ds_hold *h, ds_error *err)
{
    for (int k = 0; k < m->ndims; k++)
        if (h->m[k] != -1 && !alive(&m->dims[k], h->m[k]))
            return ds_fail(err, DS_NOT_FOUND, "cell", "a hold names no member of '%s'",
                           m->dims[k].name);
    return 0;
}

static bool cell_is_leaf(const ds_model *m, const ds_cell *c)
{
    for (int k = 0; k < m->ndims; k++)
        if (!model_is_leaf(&m->dims[k], c->m[k]))
            return false;
    return true;
}

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

static int stale_with_seq(int rc, ds_error *err, int64_t cur)
{
    if (err) {
        err->has_seq = true;
        err->seq = cur;
    }
    return rc;
}

/* if_seq against the structure beneath the cell: a member operation at or
 * beneath any of its members after if_seq. */
static int check_structure(const ds_model *m, const ds_cell *c, int64_t if_seq, int64_t cur,
                           ds_error *err)
{
    for (int k = 0; k < m->ndims; k++)
        if (m->dims[k].members[c->m[k]].struct_seq > if_seq)
            return stale_with_seq(ds_fail(err, DS_STALE, "cell",
                                          "the members beneath the cell in dimension '%s' "
                                          "changed after seq %" PRId64,
                                          m->dims[k].name, if_seq),
                                  err, cur);
    return 0;
}

static int stale_cell(ds_error *err, int64_t if_seq, int64_t cur)
{
    return stale_with_seq(ds_fail(err, DS_STALE, "cell",
                                  "a cell this command would change was changed after seq "
                                  "%" PRId64,
                                  if_seq),
                          err, cur);
}

/* The new value of a leaf: the value, old + delta, or old scaled by the
 * percent (rounded half away from zero); out_of_range beyond 18 digits. */
static int leaf_value(const ds_write *w, int64_t old, int64_t *out, ds_error *err)
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

/* ---- change lists ---------------------------------------------------------- */

typedef struct list {
    ds_change **items;
    size_t *n;
    size_t cap, alloc;
    bool *truncated;
} list;

static void list_add(list *l, const ds_cell *c, int q, ds_i128 old_v, ds_i128 new_v)
{
    if (*l->n >= l->cap) {
        *l->truncated = true;
        return;
    }
    if (*l->n == l->alloc) {
        l->alloc = l->alloc ? 2 * l->alloc : 16;
        *l->items = xrealloc(*l->items, l->alloc * sizeof **l->items);
    }
    (*l->items)[(*l->n)++] =
        (ds_change){.cell = *c, .measure = q, .old_value = old_v, .new_value = new_v};
}

static void leaves_add(ds_changeset *cs, size_t cap, const ds_cell *c, int q, int64_t old_v,
                       int64_t new_v, bool in_totals)
{
    if (cs->nleaves >= cap) {
        cs->leaves_truncated = true;
        return;
    }
    if (cs->nleaves == 0) {
        size_t first = cap < 16 ? cap : 16;
        cs->leaves = xmalloc_array(first, sizeof *cs->leaves);
        cs->in_totals = xmalloc_array(first, sizeof *cs->in_totals);
    } else if ((cs->nleaves & (cs->nleaves - 1)) == 0 && cs->nleaves >= 16) {
        cs->leaves = xrealloc(cs->leaves, 2 * cs->nleaves * sizeof *cs->leaves);
        cs->in_totals = xrealloc(cs->in_totals, 2 * cs->nleaves * sizeof *cs->in_totals);
    }
    cs->leaves[cs->nleaves] =
        (ds_change){.cell = *c, .measure = q, .old_value = old_v, .new_value = new_v};
    cs->in_totals[cs->nleaves++] = in_totals;
}

/* ---- values and the cells above ---------------------------------------------- */

static bool under_cell(const ds_model *m, const int32_t *leaf, const int32_t *cell)
{
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        int32_t p = d->pos[leaf[k]];
        if (p < d->pos[cell[k]] || p >= d->end[cell[k]])
            return false;
    }
    return true;
}

ds_i128 engine__value(const ds_engine *e, const ds_model *m, int q, const int32_t *cell)
{
    ds_i128 v = 0;
    if (cube__get(&e->c, m, q, cell, &v))
        return v;
    const facts *f = &e->f;
    for (uint32_t i = 0; i < f->n; i++)
        if ((f->has[i] >> q & 1) && under_cell(m, facts__cell(f, i), cell))
            v += f->val[q][i];
    return v;
}

/* Every cell whose member in each dimension is the target's or one of its
 * ancestors (the target excluded), nearest first. */
typedef struct lattice {
    int nd;
    int dim[DS_MAX_DIMS];
    int32_t chain[DS_MAX_DIMS][CUBE_DEPTH_MAX + 1]; /* member, parent, ..., root */
    int len[DS_MAX_DIMS];
    size_t stride[DS_MAX_DIMS], size;
} lattice;

static bool lattice_init(lattice *l, const ds_model *m, const ds_cell *c)
{
    l->nd = 0;
    l->size = 1;
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        if (c->m[k] == d->root)
            continue;
        if (d->members[c->m[k]].depth > CUBE_DEPTH_MAX)
            return false;
        int i = l->nd++;
        l->dim[i] = k;
        l->len[i] = 0;
        for (int32_t x = c->m[k]; x >= 0; x = d->members[x].parent)
            l->chain[i][l->len[i]++] = x;
    }
    for (int i = l->nd - 1; i >= 0; i--) {
        l->stride[i] = l->size;
        l->size *= (size_t)l->len[i];
        if (l->size > ABOVE_MAX_LATTICE)
            return false;
    }
    return true;
}

static void point_cell(const lattice *l, size_t p, ds_cell *c)
{
    for (int i = 0; i < l->nd; i++)
        c->m[l->dim[i]] = l->chain[i][(p / l->stride[i]) % (size_t)l->len[i]];
}

/* Without a cube: one scan puts each fact at its "level" per dimension
 * (the nearest chain member holding it), then prefix sums make each point
 * the total at or below it. */
static void lattice_scan(const ds_engine *e, const ds_model *m, const lattice *l, int q,
                         ds_i128 *sum)
{
    const facts *f = &e->f;
    memset(sum, 0, l->size * sizeof *sum);
    for (uint32_t i = 0; i < f->n; i++) {
        if (!(f->has[i] >> q & 1))
            continue;
        const int32_t *cell = facts__cell(f, i);
        size_t at = 0; /* every fact is beneath the roots the chains end at */
        for (int i2 = 0; i2 < l->nd; i2++) {
            const ds_dim *d = &m->dims[l->dim[i2]];
            int j = 0;
            while (j + 1 < l->len[i2] && !model_is_under(d, cell[l->dim[i2]], l->chain[i2][j]))
                j++;
            at += (size_t)j * l->stride[i2];
        }
        sum[at] += f->val[q][i];
    }
    for (int i = 0; i < l->nd; i++)
        for (size_t p = 0; p < l->size; p++)
            if ((p / l->stride[i]) % (size_t)l->len[i] > 0)
                sum[p] += sum[p - l->stride[i]];
}

/* Lists the cells above the write's target (values after the write; old =
 * new - delta). */
static void add_above(const ds_engine *e, const ds_model *m, const ds_write *w, ds_i128 delta,
                      list *out)
{
    lattice l;
    if (!lattice_init(&l, m, &w->cell)) {
        *out->truncated = true; /* too many to list */
        return;
    }
    if (l.size <= 1 || *out->n >= out->cap) {
        if (l.size > 1)
            *out->truncated = true;
        return;
    }
    /* each point's distance from the target (its steps up the chains),
       with its total from the cube, walking the points in order (the
       last chain fastest); then the points listed nearest first */
    ds_i128 *sum = xmalloc_array(l.size, sizeof *sum);
    uint16_t *dist = xmalloc_array(l.size, sizeof *dist);
    size_t *order = xmalloc_array(l.size, sizeof *order);
    size_t maxd = 0, count[DS_MAX_DIMS * (CUBE_DEPTH_MAX + 1) + 2] = {0};
    int step[DS_MAX_DIMS] = {0};
    ds_cell c = w->cell;
    for (size_t p = 0; p < l.size; p++) {
        size_t d = 0;
        for (int i = 0; i < l.nd; i++) {
            d += (size_t)step[i];
            c.m[l.dim[i]] = l.chain[i][step[i]];
        }
        dist[p] = (uint16_t)d;
        count[d + 1]++;
        if (d > maxd)
            maxd = d;
        if (e->c.valid)
            cube__get(&e->c, m, w->measure, c.m, &sum[p]);
        for (int i = l.nd - 1; i >= 0 && ++step[i] == l.len[i]; i--)
            step[i] = 0;
    }
    if (!e->c.valid)
        lattice_scan(e, m, &l, w->measure, sum);
    for (size_t d = 1; d <= maxd + 1; d++)
        count[d] += count[d - 1];
    for (size_t p = 0; p < l.size; p++)
        order[count[dist[p]]++] = p;
    for (size_t k = 0; k < l.size && !*out->truncated; k++) {
        size_t p = order[k];
        if (dist[p] == 0)
            continue; /* the target itself */
        c = w->cell;
        point_cell(&l, p, &c);
        list_add(out, &c, w->measure, sum[p] - delta, sum[p]);
    }
    free(order);
    free(dist);
    free(sum);
}

/* ---- leaf writes ------------------------------------------------------------- */

static int leaf_write(ds_engine *e, const ds_command *cmd, const ds_write *w, int64_t seq,
                      ds_changeset *cs, ds_error *err)
{
    const ds_model *m = e->model;
    facts *f = &e->f;
    int q = w->measure;
    int64_t i = facts__find(f, w->cell.m);
    bool has = i >= 0 && (f->has[i] >> q & 1);
    int64_t old = has ? f->val[q][i] : 0, stamp = i >= 0 ? f->stamp[q][i] : 0, nv = 0;
    int rc = leaf_value(w, old, &nv, err);
    if (rc)
        return rc;
    if (is_held(m, w, w->cell.m))
        return ds_fail(err, DS_HELD, "cell", "the cell is held by this command's holds");
    bool changed = nv != old;
    if (cmd->if_seq >= 0 && (rc = check_structure(m, &w->cell, cmd->if_seq, seq - 1, err)))
        return rc;
    /* a stamp of this very seq is an earlier write of the same command */
    if (cmd->if_seq >= 0 && changed && stamp > cmd->if_seq && stamp != seq)
        return stale_cell(err, cmd->if_seq, seq - 1);
    if (changed && engine__set(e, i, w->cell.m, q, true, nv, seq, true) < 0)
        return ds_fail(err, DS_TOO_MANY_CELLS, "cell", "the model holds the most facts it can");
    cs->leaf = true;
    cs->method = w->method;
    cs->target = (ds_change){.cell = w->cell, .measure = q, .old_value = old, .new_value = nv};
    cs->leaves_changed = changed;
    list l = {.items = &cs->changes,
              .n = &cs->nchanges,
              .cap = e->o.change_cap,
              .truncated = &cs->truncated};
    list_add(&l, &w->cell, q, old, nv);
    add_above(e, m, w, (ds_i128)nv - old, &l);
    if (changed)
        leaves_add(cs, e->o.change_cap, &w->cell, q, old, nv, true);
    return 0;
}

/* ---- spreads ------------------------------------------------------------------- */

/* The target's region: its consolidated dimensions with their subtrees. */
typedef struct region {
    const ds_model *m;
    ds_cell c;
    int nk;
    int kdim[DS_MAX_DIMS];
    spread_tree trees[DS_MAX_DIMS];
    int32_t *tparent[DS_MAX_DIMS], *tids[DS_MAX_DIMS];
    int32_t *leaves[DS_MAX_DIMS]; /* leaf members in preorder */
    size_t nleaves[DS_MAX_DIMS];
    int32_t *leaf_at[DS_MAX_DIMS];            /* local node -> index in leaves, or -1 */
    const int32_t *pre[DS_MAX_DIMS];          /* local node -> member id */
    int32_t lo[DS_MAX_DIMS], hi[DS_MAX_DIMS]; /* preorder range per dimension */
} region;

static void region_init(region *r, const ds_model *m, const ds_cell *c)
{
    memset(r, 0, sizeof *r);
    r->m = m;
    r->c = *c;
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        r->lo[k] = d->pos[c->m[k]];
        r->hi[k] = d->end[c->m[k]];
        if (model_is_leaf(d, c->m[k]))
            continue;
        int i = r->nk++;
        r->kdim[i] = k;
        r->pre[i] = d->pre + d->pos[c->m[k]];
        model_subtree(d, c->m[k], &r->trees[i], &r->tparent[i], &r->tids[i]);
        r->nleaves[i] = model_leaves(d, c->m[k], &r->leaves[i]);
        int32_t n = r->trees[i].n;
        r->leaf_at[i] = xmalloc_array((size_t)n, sizeof *r->leaf_at[i]);
        for (int32_t j = 0; j < n; j++)
            r->leaf_at[i][j] = -1;
        for (size_t j = 0; j < r->nleaves[i]; j++)
            r->leaf_at[i][d->pos[r->leaves[i][j]] - r->lo[k]] = (int32_t)j;
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

/* The cells a spread works on. */
typedef struct cellset {
    size_t n, alloc;
    int nk;
    int32_t *coord; /* n * nk local tree nodes */
    int64_t *value; /* current (0 when missing) */
    int64_t *fact;  /* ordinal, -1: no fact */
    int64_t *stamp;
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
    cs->fact = xrealloc(cs->fact, a * sizeof *cs->fact);
    cs->stamp = xrealloc(cs->stamp, a * sizeof *cs->stamp);
    cs->held = xrealloc(cs->held, a);
    cs->alloc = a;
}

static void cellset_free(cellset *cs)
{
    free(cs->coord);
    free(cs->value);
    free(cs->fact);
    free(cs->stamp);
    free(cs->held);
    memset(cs, 0, sizeof *cs);
}

static inline int32_t cell_member(const region *r, const cellset *cs, size_t i, int j)
{
    return r->pre[j][cs->coord[i * (size_t)r->nk + (size_t)j]];
}

static void full_cell(const region *r, const cellset *cs, size_t i, int32_t *out)
{
    for (int k = 0; k < r->m->ndims; k++)
        out[k] = r->c.m[k];
    for (int j = 0; j < r->nk; j++)
        out[r->kdim[j]] = cell_member(r, cs, i, j);
}

/* Every fact beneath the target that has any measure (cells where this
 * measure is missing too: equal and repeat reuse them). */
static void read_region(const ds_engine *e, const region *r, int q, cellset *cs)
{
    const facts *f = &e->f;
    const ds_model *m = r->m;
    int nd = m->ndims;
    for (uint32_t i = 0; i < f->n; i++) {
        if (!f->has[i])
            continue;
        const int32_t *cell = facts__cell(f, i);
        bool in = true;
        for (int k = 0; k < nd && in; k++) {
            int32_t p = m->dims[k].pos[cell[k]];
            in = p >= r->lo[k] && p < r->hi[k];
        }
        if (!in)
            continue;
        cellset_grow(cs, cs->n + 1);
        size_t at = cs->n++;
        for (int j = 0; j < r->nk; j++)
            cs->coord[at * (size_t)r->nk + (size_t)j] =
                m->dims[r->kdim[j]].pos[cell[r->kdim[j]]] - r->lo[r->kdim[j]];
        bool has = f->has[i] >> q & 1;
        cs->value[at] = has ? f->val[q][i] : 0;
        cs->stamp[at] = f->stamp[q][i];
        cs->fact[at] = i;
    }
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

/* Regions with holds are listed to count the cells to fill exactly while
 * they are at most a few times the cap and the facts; beyond, every
 * missing cell counts. */
static bool listable(ds_i128 count, int64_t cap, size_t rows)
{
    return count <= 4 * ((ds_i128)cap + (ds_i128)rows) + 1000000;
}

/* Replaces the sparse cells by every cell of the region (dense), in
 * preorder of each dimension, keeping facts' values. */
static int densify(const region *r, const ds_write *w, int q, const facts *f, int64_t cap,
                   cellset *cs, ds_error *err)
{
    ds_i128 count = 1;
    for (int j = 0; j < r->nk; j++) {
        count *= (ds_i128)r->nleaves[j];
        if (count > (ds_i128)1 << 62)
            count = (ds_i128)1 << 62;
    }
    size_t with_value = 0;
    for (size_t i = 0; i < cs->n; i++)
        with_value += f->has[cs->fact[i]] >> q & 1;
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
            at = at * r->nleaves[j] +
                 (size_t)r->leaf_at[j][cs->coord[i * (size_t)r->nk + (size_t)j]];
        row_of[at] = (int64_t)i;
    }
    cellset d = {.nk = r->nk};
    cellset_grow(&d, n);
    for (size_t at = 0; at < n; at++) {
        size_t rest = at;
        for (int j = r->nk - 1; j >= 0; j--) {
            int32_t x = r->leaves[j][rest % r->nleaves[j]];
            rest /= r->nleaves[j];
            const ds_dim *dd = &r->m->dims[r->kdim[j]];
            d.coord[at * (size_t)r->nk + (size_t)j] = dd->pos[x] - r->lo[r->kdim[j]];
        }
        int64_t src = row_of[at];
        d.fact[at] = src >= 0 ? cs->fact[src] : -1;
        d.value[at] = src >= 0 ? cs->value[src] : 0;
        d.stamp[at] = src >= 0 ? cs->stamp[src] : 0;
    }
    d.n = n;
    free(row_of);
    cellset_free(cs);
    *cs = d;
    mark_held(r, w, cs);
    int64_t fill = 0;
    for (size_t i = 0; i < n; i++)
        fill += (cs->fact[i] < 0 || !(f->has[cs->fact[i]] >> q & 1)) && !cs->held[i];
    return fill > cap ? too_many(err, fill, cap) : 0;
}

typedef struct spread_run {
    region r;
    cellset cs;
    int64_t *nv;
    spread_plan plan;
    spread_totals tot;
    ds_i128 after;
} spread_run;

/* Decides a spread completely before anything changes: plan, cells,
 * apportionment, if_seq. */
static int decide_spread(ds_engine *e, const ds_command *cmd, const ds_write *w, int64_t seq,
                         spread_run *s, ds_error *err)
{
    region *r = &s->r;
    cellset *cs = &s->cs;
    read_region(e, r, w->measure, cs);
    mark_held(r, w, cs);
    spread_cells cells = {.n = cs->n,
                          .ntrees = r->nk,
                          .trees = r->trees,
                          .coord = cs->coord,
                          .value = cs->value,
                          .held = cs->held};
    spread_totals_of(&cells, &s->tot);
    spread_params p = {.method = w->method,
                       .form = w->form,
                       .amount = w->amount,
                       .pct_scale = w->pct_scale,
                       .seq = (uint64_t)seq,
                       .leaf_max = DEC_LEAF_MAX};
    int rc = spread_plan_make(&p, &s->tot, &s->plan, err);
    if (rc)
        return rc;
    if (s->plan.dense && (rc = densify(r, w, w->measure, &e->f, e->o.create_cap, cs, err)))
        return rc;
    cells = (spread_cells){.n = cs->n,
                           .ntrees = r->nk,
                           .trees = r->trees,
                           .coord = cs->coord,
                           .value = cs->value,
                           .held = cs->held};
    s->nv = xmalloc_array(cs->n ? cs->n : 1, sizeof *s->nv);
    if ((rc = spread_apportion(&p, &s->plan, &cells, s->nv, &s->after, err)))
        return rc;
    if (cmd->if_seq >= 0) {
        if ((rc = check_structure(r->m, &r->c, cmd->if_seq, seq - 1, err)))
            return rc;
        for (size_t i = 0; i < cs->n; i++)
            if (s->nv[i] != cs->value[i] && cs->stamp[i] > cmd->if_seq && cs->stamp[i] != seq)
                return stale_cell(err, cmd->if_seq, seq - 1);
    }
    return 0;
}

/* The target's children one level down in each consolidated dimension,
 * then the changed leaves (a child that is a leaf is marked in_totals). */
static void add_children_and_leaves(ds_engine *e, const spread_run *s, const ds_write *w, list *out,
                                    ds_changeset *set)
{
    const region *r = &s->r;
    const cellset *cs = &s->cs;
    for (int j = 0; j < r->nk && !*out->truncated; j++) {
        const ds_dim *d = &r->m->dims[r->kdim[j]];
        int32_t top = r->c.m[r->kdim[j]];
        int32_t nkids = d->kid_start[top + 1] - d->kid_start[top];
        ds_i128 *old_s = xcalloc((size_t)nkids, sizeof *old_s);
        ds_i128 *new_s = xcalloc((size_t)nkids, sizeof *new_s);
        const spread_tree *t = &r->trees[j];
        int32_t *kid_of = xmalloc_array((size_t)t->n, sizeof *kid_of);
        kid_of[0] = -1;
        for (int32_t x = 1, next = 0; x < t->n; x++)
            kid_of[x] = t->parent[x] == 0 ? next++ : kid_of[t->parent[x]];
        for (size_t i = 0; i < cs->n; i++) {
            int32_t kx = kid_of[cs->coord[i * (size_t)r->nk + (size_t)j]];
            old_s[kx] += cs->value[i];
            new_s[kx] += s->nv[i];
        }
        for (int32_t c = 0; c < nkids; c++) {
            if (old_s[c] == new_s[c])
                continue;
            ds_cell cell = r->c;
            cell.m[r->kdim[j]] = d->kids[d->kid_start[top] + c];
            list_add(out, &cell, w->measure, old_s[c], new_s[c]);
        }
        free(kid_of);
        free(old_s);
        free(new_s);
    }
    for (size_t i = 0; i < cs->n && !set->leaves_truncated; i++) {
        if (s->nv[i] == cs->value[i])
            continue;
        ds_cell cell = r->c;
        for (int j = 0; j < r->nk; j++)
            cell.m[r->kdim[j]] = cell_member(r, cs, i, j);
        bool child = false;
        if (r->nk == 1) {
            int32_t dim = r->kdim[0];
            child = r->m->dims[dim].members[cell.m[dim]].parent == r->c.m[dim];
        }
        leaves_add(set, e->o.change_cap, &cell, w->measure, cs->value[i], s->nv[i], child);
    }
}

/* Writes the spread's new values into the facts (creating missing ones)
 * and updates the cube once for the whole region. */
static int write_spread(ds_engine *e, const spread_run *s, const ds_write *w, int64_t seq,
                        int64_t changed, ds_error *err)
{
    engine_delta *d = e->d;
    size_t first_row = d->nrows;
    int q = w->measure;
    bool small = facts__small(&e->f, q);
    engine__reserve(e, (size_t)changed);
    int32_t full[DS_MAX_DIMS];
    for (size_t i = 0; i < s->cs.n; i++) {
        if (s->nv[i] == s->cs.value[i])
            continue;
        full_cell(&s->r, &s->cs, i, full);
        if (engine__set(e, s->cs.fact[i], full, q, true, s->nv[i], seq, false) < 0)
            return ds_fail(err, DS_TOO_MANY_CELLS, "cell", "the model holds the most facts it can");
    }
    small &= facts__small(&e->f, q);
    cube__add_region(&e->c, e->model, q, &w->cell, d->rows + first_row,
                     d->row_cells + first_row * (size_t)e->model->ndims, d->nrows - first_row,
                     small);
    return 0;
}

static int spread_write(ds_engine *e, const ds_command *cmd, const ds_write *w, int64_t seq,
                        ds_changeset *set, ds_error *err)
{
    spread_run s = {0};
    region_init(&s.r, e->model, &w->cell);
    s.cs.nk = s.r.nk;
    int rc = decide_spread(e, cmd, w, seq, &s, err);
    if (rc == 0) {
        set->method = s.plan.method;
        set->target = (ds_change){
            .cell = w->cell, .measure = w->measure, .old_value = s.tot.total, .new_value = s.after};
        for (size_t i = 0; i < s.cs.n; i++)
            set->leaves_changed += s.nv[i] != s.cs.value[i];
        if (set->leaves_changed)
            rc = write_spread(e, &s, w, seq, set->leaves_changed, err);
    }
    if (rc == 0) {
        list l = {.items = &set->changes,
                  .n = &set->nchanges,
                  .cap = e->o.change_cap,
                  .truncated = &set->truncated};
        list_add(&l, &w->cell, w->measure, s.tot.total, s.after);
        add_above(e, e->model, w, s.after - s.tot.total, &l);
        add_children_and_leaves(e, &s, w, &l, set);
    }
    free(s.nv);
    cellset_free(&s.cs);
    region_free(&s.r);
    return rc;
}

/* ---- commands ------------------------------------------------------------------ */

int engine__writes(ds_engine *e, const ds_command *cmd, int64_t seq, ds_outcome *out, ds_error *err)
{
    const ds_model *m = e->model;
    if (cmd->nwrites == 0)
        return ds_fail(err, DS_INVALID_VALUE, "cells", "the command has no writes");
    out->sets = xcalloc(cmd->nwrites, sizeof *out->sets);
    out->nsets = cmd->nwrites;
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
        if (cell_is_leaf(m, &w->cell))
            rc = leaf_write(e, cmd, w, seq, &out->sets[i], err);
        else
            rc = spread_write(e, cmd, w, seq, &out->sets[i], err);
    }
    return rc;
}
