/* engine_facts.c: the engine's fact table (ordinals, values, stamps and a
 * hash index by cell) and its cube of totals. Part of the engine. */
#include "engine_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- facts -------------------------------------------------------------- */

void facts__init(facts *f, int ndims, int nmeasures)
{
    memset(f, 0, sizeof *f);
    f->ndims = ndims;
    f->nmeasures = nmeasures;
}

void facts__free(facts *f)
{
    free(f->cell);
    free(f->has);
    for (int q = 0; q < f->nmeasures; q++) {
        free(f->val[q]);
        free(f->stamp[q]);
    }
    free(f->slot);
    memset(f, 0, sizeof *f);
}

static uint64_t cell_hash(const int32_t *cell, int ndims)
{
    uint64_t h = 0x9e3779b97f4a7c15u;
    for (int k = 0; k < ndims; k++)
        h = ds_mix64(h ^ (uint32_t)cell[k]);
    return h;
}

static bool same_cell(const int32_t *a, const int32_t *b, int ndims)
{
    for (int k = 0; k < ndims; k++)
        if (a[k] != b[k])
            return false;
    return true;
}

/* The index slot of cell: its fact's, or the empty one where it goes. */
static size_t find_slot(const facts *f, const int32_t *cell)
{
    size_t mask = f->nslots - 1;
    for (size_t at = cell_hash(cell, f->ndims) & mask;; at = (at + 1) & mask) {
        uint32_t s = f->slot[at];
        if (s == 0 || same_cell(facts__cell(f, s - 1), cell, f->ndims))
            return at;
    }
}

int64_t facts__find(const facts *f, const int32_t *cell)
{
    if (f->nslots == 0)
        return -1;
    uint32_t s = f->slot[find_slot(f, cell)];
    return s ? (int64_t)s - 1 : -1;
}

static void rehash(facts *f, size_t nslots)
{
    free(f->slot);
    f->slot = xcalloc(nslots, sizeof *f->slot);
    f->nslots = nslots;
    for (uint32_t i = 0; i < f->n; i++)
        f->slot[find_slot(f, facts__cell(f, i))] = i + 1;
}

static void grow(facts *f)
{
    uint32_t cap = f->cap ? f->cap * 2 : 1024;
    if (cap > FACTS_MAX)
        cap = FACTS_MAX;
    f->cell = xrealloc(f->cell, (size_t)cap * (size_t)f->ndims * sizeof *f->cell);
    f->has = xrealloc(f->has, (size_t)cap * sizeof *f->has);
    for (int q = 0; q < f->nmeasures; q++) {
        f->val[q] = xrealloc(f->val[q], (size_t)cap * sizeof *f->val[q]);
        f->stamp[q] = xrealloc(f->stamp[q], (size_t)cap * sizeof *f->stamp[q]);
    }
    f->cap = cap;
}

int64_t facts__add(facts *f, const int32_t *cell)
{
    if (f->n >= FACTS_MAX)
        return -1;
    if (f->n == f->cap)
        grow(f);
    if ((size_t)(f->n + 1) * 2 > f->nslots)
        rehash(f, f->nslots ? f->nslots * 2 : 2048);
    uint32_t i = f->n++;
    memcpy(f->cell + (size_t)i * (size_t)f->ndims, cell, (size_t)f->ndims * sizeof *cell);
    f->has[i] = 0;
    for (int q = 0; q < f->nmeasures; q++) {
        f->val[q][i] = 0;
        f->stamp[q][i] = 0;
    }
    f->slot[find_slot(f, cell)] = i + 1;
    return i;
}

/* Empties index slot `hole`; backward-shift deletion keeps linear probing
 * free of tombstones. */
static void unlink_slot(facts *f, size_t hole)
{
    size_t mask = f->nslots - 1;
    f->slot[hole] = 0;
    for (size_t at = (hole + 1) & mask; f->slot[at]; at = (at + 1) & mask) {
        size_t home = cell_hash(facts__cell(f, f->slot[at] - 1), f->ndims) & mask;
        /* move it back when its home is not in (hole, at] (cyclically) */
        bool between = hole < at ? (home > hole && home <= at) : (home > hole || home <= at);
        if (!between) {
            f->slot[hole] = f->slot[at];
            f->slot[at] = 0;
            hole = at;
        }
    }
}

void facts__pop(facts *f)
{
    uint32_t i = f->n - 1;
    unlink_slot(f, find_slot(f, facts__cell(f, i)));
    f->n--;
}

bool facts__rekey(facts *f, uint32_t i, int dim, int32_t member)
{
    int32_t cell[DS_MAX_DIMS];
    memcpy(cell, facts__cell(f, i), (size_t)f->ndims * sizeof *cell);
    cell[dim] = member;
    if (facts__find(f, cell) >= 0)
        return false;
    unlink_slot(f, find_slot(f, facts__cell(f, i)));
    f->cell[(size_t)i * (size_t)f->ndims + (size_t)dim] = member;
    f->slot[find_slot(f, cell)] = i + 1;
    return true;
}

size_t facts__bytes(const facts *f)
{
    size_t per = (size_t)f->ndims * 4 + 8 + (size_t)f->nmeasures * 16;
    return (size_t)f->cap * per + f->nslots * sizeof *f->slot;
}

/* ---- the cube ----------------------------------------------------------- */

size_t cube__bytes(const ds_model *m, size_t *cells)
{
    size_t size = 1;
    for (int k = 0; k < m->ndims; k++) {
        size_t n = (size_t)m->dims[k].npre;
        if (n && size > SIZE_MAX / 8 / 64 / n) {
            *cells = SIZE_MAX;
            return SIZE_MAX;
        }
        size *= n;
    }
    *cells = size;
    return size * 8 * (size_t)m->nmeasures;
}

void cube__free(cube *c)
{
    for (int q = 0; q < c->nmeasures; q++)
        free(c->tot[q]);
    free(c->scratch);
    memset(c, 0, sizeof *c);
}

static size_t offset_of(const cube *c, const ds_model *m, const int32_t *cell)
{
    size_t at = 0;
    for (int k = 0; k < m->ndims; k++)
        at += (size_t)m->dims[k].pos[cell[k]] * c->stride[k];
    return at;
}

/* Rolls every dimension's members up into their parents: afterwards each
 * entry is the total beneath it. Works on one measure's array. */
static bool roll_up(int64_t *t, const cube *c, const ds_model *m)
{
    bool ok = true;
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        size_t inner = c->stride[k];
        size_t outer = c->size / (inner * (size_t)d->npre);
        for (int32_t p = d->npre - 1; p > 0; p--) {
            int32_t x = d->pre[p];
            int32_t parent = d->members[x].parent;
            size_t from = (size_t)p * inner, to = (size_t)d->pos[parent] * inner;
            for (size_t o = 0; o < outer; o++) {
                int64_t *src = t + o * (size_t)d->npre * inner + from;
                int64_t *dst = t + o * (size_t)d->npre * inner + to;
                for (size_t j = 0; j < inner; j++)
                    ok &= !__builtin_add_overflow(dst[j], src[j], &dst[j]);
            }
        }
    }
    return ok;
}

void cube__build(cube *c, const ds_model *m, const facts *f, size_t budget)
{
    cube__free(c);
    size_t cells;
    if (m->ndims == 0 || cube__bytes(m, &cells) > budget || cells == 0)
        return;
    for (int k = 0; k < m->ndims; k++)
        for (int32_t p = 0; p < m->dims[k].npre; p++)
            if (m->dims[k].members[m->dims[k].pre[p]].depth >= CUBE_DEPTH_MAX)
                return;
    c->size = cells;
    c->nmeasures = m->nmeasures;
    size_t stride = 1;
    for (int k = m->ndims - 1; k >= 0; k--) {
        c->stride[k] = stride;
        stride *= (size_t)m->dims[k].npre;
    }
    bool ok = true;
    for (int q = 0; q < m->nmeasures && ok; q++) {
        int64_t *t = c->tot[q] = xcalloc(cells, sizeof *t);
        for (uint32_t i = 0; i < f->n && ok; i++)
            if (f->has[i] >> q & 1) {
                size_t at = offset_of(c, m, facts__cell(f, i));
                ok = !__builtin_add_overflow(t[at], f->val[q][i], &t[at]);
            }
        ok = ok && roll_up(t, c, m);
    }
    c->valid = ok;
    if (!ok)
        cube__free(c);
}

void cube__add_leaf(cube *c, const ds_model *m, int q, const int32_t *leaf, int64_t delta)
{
    if (!c->valid || delta == 0)
        return;
    /* each dimension's chain of positions from the leaf up to the root */
    size_t off[DS_MAX_DIMS][CUBE_DEPTH_MAX];
    int len[DS_MAX_DIMS], at[DS_MAX_DIMS];
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        len[k] = 0;
        for (int32_t x = leaf[k]; x >= 0; x = d->members[x].parent) {
            if (len[k] == CUBE_DEPTH_MAX) { /* cube__build refuses such trees */
                cube__free(c);
                return;
            }
            off[k][len[k]++] = (size_t)d->pos[x] * c->stride[k];
        }
        at[k] = 0;
    }
    int64_t *t = c->tot[q];
    bool ok = true;
    for (;;) {
        size_t o = 0;
        for (int k = 0; k < m->ndims; k++)
            o += off[k][at[k]];
        ok &= !__builtin_add_overflow(t[o], delta, &t[o]);
        int k = m->ndims - 1;
        while (k >= 0 && ++at[k] == len[k])
            at[k--] = 0;
        if (k < 0)
            break;
    }
    if (!ok)
        cube__free(c);
}

/* Per dimension of a region update: global positions to visit and the
 * local index (into the subtree of the region's member) each maps to. */
typedef struct axis {
    size_t n;
    size_t *global; /* offsets (position * stride) */
    size_t *local;  /* index into the local array along this axis */
} axis;

/* dst[j] += src[j] for j < n; false when a sum overflows (checked). */
static bool add_block(int64_t *restrict dst, const int64_t *restrict src, size_t n, bool small)
{
    if (small) { /* nothing can overflow: a loop the compiler vectorizes */
        for (size_t j = 0; j < n; j++)
            dst[j] += src[j];
        return true;
    }
    bool ok = true;
    for (size_t j = 0; j < n; j++)
        ok &= !__builtin_add_overflow(dst[j], src[j], &dst[j]);
    return ok;
}

/* The local array: the deltas summed at every node of the region's
 * subtrees (accumulated at the leaves, then rolled up per dimension). */
static bool local_totals(cube *c, const ds_model *m, const ds_cell *top, const engine_row *rows,
                         const int32_t *cells, size_t n, const size_t *span, const size_t *lstride,
                         size_t lsize, bool small)
{
    int nd = m->ndims;
    if (c->scratch_n < lsize) {
        free(c->scratch);
        c->scratch = xmalloc_array(lsize, sizeof *c->scratch);
        c->scratch_n = lsize;
    }
    int64_t *loc = c->scratch;
    memset(loc, 0, lsize * sizeof *loc);
    int32_t base[DS_MAX_DIMS];
    const int32_t *pos[DS_MAX_DIMS];
    for (int k = 0; k < nd; k++) {
        base[k] = m->dims[k].pos[top->m[k]];
        pos[k] = m->dims[k].pos;
    }
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        const int32_t *cell = cells + i * (size_t)nd;
        size_t at = 0;
        for (int k = 0; k < nd; k++)
            at += (size_t)(pos[k][cell[k]] - base[k]) * lstride[k];
        int64_t dv = rows[i].new_v - rows[i].old_v;
        if (small)
            loc[at] += dv;
        else
            ok &= !__builtin_add_overflow(loc[at], dv, &loc[at]);
    }
    for (int k = 0; k < nd && ok; k++) {
        const ds_dim *d = &m->dims[k];
        size_t inner = lstride[k], outer = lsize / (inner * span[k]);
        for (size_t p = span[k] - 1; p > 0; p--) {
            int32_t x = d->pre[base[k] + (int32_t)p];
            size_t to = (size_t)(d->pos[d->members[x].parent] - base[k]);
            for (size_t o = 0; o < outer && ok; o++)
                ok = add_block(loc + (o * span[k] + to) * inner, loc + (o * span[k] + p) * inner,
                               inner, small);
        }
    }
    return ok;
}

void cube__add_region(cube *c, const ds_model *m, int q, const ds_cell *top, const engine_row *rows,
                      const int32_t *cells, size_t n, bool small)
{
    int nd = m->ndims;
    if (!c->valid || n == 0 || nd == 0)
        return;
    /* the local array spans the subtree of top's member in each dimension */
    size_t span[DS_MAX_DIMS], lstride[DS_MAX_DIMS], lsize = 1, per_leaf = 1;
    for (int k = nd - 1; k >= 0; k--) {
        const ds_dim *d = &m->dims[k];
        int32_t x = top->m[k];
        span[k] = (size_t)(d->end[x] - d->pos[x]);
        lstride[k] = lsize;
        lsize *= span[k];
        per_leaf *= (size_t)d->members[cells[k]].depth + 1; /* the first leaf's chain */
    }
    /* few leaves: each one up its chains is cheaper than the local array */
    if (n * per_leaf < lsize + lsize / 2) {
        for (size_t i = 0; i < n && c->valid; i++)
            cube__add_leaf(c, m, q, cells + i * (size_t)nd, rows[i].new_v - rows[i].old_v);
        return;
    }
    bool ok = local_totals(c, m, top, rows, cells, n, span, lstride, lsize, small);
    /* every cube entry whose members are ancestors of top's or in its
     * subtrees: ancestors take the subtree root's (local 0) totals */
    axis ax[DS_MAX_DIMS] = {{0}};
    for (int k = 0; k < nd; k++) {
        const ds_dim *d = &m->dims[k];
        int32_t x = top->m[k];
        size_t na = (size_t)d->members[x].depth;
        ax[k].n = na + span[k];
        ax[k].global = xmalloc_array(ax[k].n, sizeof *ax[k].global);
        ax[k].local = xmalloc_array(ax[k].n, sizeof *ax[k].local);
        size_t j = 0;
        for (int32_t a = d->members[x].parent; a >= 0; a = d->members[a].parent, j++) {
            ax[k].global[j] = (size_t)d->pos[a] * c->stride[k];
            ax[k].local[j] = 0;
        }
        for (size_t s = 0; s < span[k]; s++, j++) {
            ax[k].global[j] = ((size_t)d->pos[x] + s) * c->stride[k];
            ax[k].local[j] = s * lstride[k];
        }
    }
    const int64_t *loc = c->scratch;
    int64_t *t = c->tot[q];
    size_t at[DS_MAX_DIMS] = {0};
    const axis *in = &ax[nd - 1];
    /* the innermost axis is contiguous in both arrays past its ancestors */
    size_t na_in = in->n - span[nd - 1];
    while (ok) {
        size_t g = 0, l = 0;
        for (int k = 0; k < nd - 1; k++) {
            g += ax[k].global[at[k]];
            l += ax[k].local[at[k]];
        }
        for (size_t j = 0; j < na_in; j++)
            ok &= !__builtin_add_overflow(t[g + in->global[j]], loc[l], &t[g + in->global[j]]);
        ok = ok && add_block(t + g + in->global[na_in], loc + l, span[nd - 1], small);
        int k = nd - 2;
        while (k >= 0 && ++at[k] == ax[k].n)
            at[k--] = 0;
        if (k < 0)
            break;
    }
    for (int k = 0; k < nd; k++) {
        free(ax[k].global);
        free(ax[k].local);
    }
    if (!ok)
        cube__free(c);
}

bool cube__get(const cube *c, const ds_model *m, int q, const int32_t *cell, ds_i128 *out)
{
    if (!c->valid)
        return false;
    *out = c->tot[q][offset_of(c, m, cell)];
    return true;
}
