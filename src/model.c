/* model.c: see model.h. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

ds_model *model_new(int32_t id, const char *name)
{
    ds_model *m = xcalloc(1, sizeof *m);
    m->id = id;
    m->name = xstrdup(name);
    return m;
}

static void dim_free_index(ds_dim *d)
{
    free(d->kid_start);
    free(d->kids);
    free(d->pre);
    free(d->pos);
    free(d->end);
    free(d->leaf_count);
    free(d->id_min);
    free(d->id_max);
    free(d->next_same_name);
    if (d->by_key.cap)
        ds_strmap_free(&d->by_key);
    if (d->by_name.cap)
        ds_strmap_free(&d->by_name);
    d->kid_start = d->kids = d->pre = d->pos = d->end = d->leaf_count = NULL;
    d->id_min = d->id_max = NULL;
    d->next_same_name = NULL;
}

void model_free(ds_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->ndims; i++) {
        ds_dim *d = &m->dims[i];
        dim_free_index(d);
        for (int32_t j = 0; j < d->nmembers; j++) {
            free(d->members[j].key);
            free(d->members[j].name);
        }
        free(d->members);
        free(d->name);
    }
    for (int i = 0; i < m->nmeasures; i++)
        free(m->measures[i].name);
    free(m->name);
    free(m);
}

ds_model *model_clone(const ds_model *src)
{
    ds_model *m = model_new(src->id, src->name);
    m->struct_seq = src->struct_seq;
    m->ndims = src->ndims;
    for (int i = 0; i < src->ndims; i++) {
        const ds_dim *s = &src->dims[i];
        ds_dim *d = &m->dims[i];
        d->id = s->id;
        d->name = xstrdup(s->name);
        d->root = s->root;
        d->nmembers = s->nmembers;
        d->alloc = s->nmembers ? s->nmembers : 1;
        d->members = xmalloc_array((size_t)d->alloc, sizeof *d->members);
        for (int32_t j = 0; j < s->nmembers; j++) {
            d->members[j] = s->members[j];
            d->members[j].key = s->members[j].alive ? xstrdup(s->members[j].key) : NULL;
            d->members[j].name = s->members[j].alive ? xstrdup(s->members[j].name) : NULL;
        }
        model_dim_index(d);
    }
    m->nmeasures = src->nmeasures;
    for (int i = 0; i < src->nmeasures; i++) {
        m->measures[i] = src->measures[i];
        m->measures[i].name = xstrdup(src->measures[i].name);
    }
    return m;
}

/* The code point of the valid UTF-8 sequence of n bytes at u. */
static unsigned code_point(const unsigned char *u, size_t n)
{
    static const unsigned char lead_mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    unsigned cp = u[0] & lead_mask[n];
    for (size_t k = 1; k < n; k++)
        cp = cp << 6 | (u[k] & 0x3f);
    return cp;
}

static bool is_control(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

/* Characters that show nothing (or reorder what is shown): two names that
 * look the same would differ by them. ZWNJ and ZWJ (U+200C, U+200D) stay:
 * scripts and emoji sequences need them. */
static bool is_invisible(unsigned cp)
{
    static const unsigned ranges[][2] = {
        {0x00ad, 0x00ad},   {0x034f, 0x034f}, {0x061c, 0x061c},   {0x115f, 0x1160},
        {0x17b4, 0x17b5},   {0x180b, 0x180f}, {0x200b, 0x200b},   {0x200e, 0x200f},
        {0x2028, 0x202e},   {0x2060, 0x206f}, {0x3164, 0x3164},   {0xfeff, 0xfeff},
        {0xffa0, 0xffa0},   {0xfff9, 0xfffb}, {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a},
        {0xe0000, 0xe007f},
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(ranges); i++)
        if (cp >= ranges[i][0] && cp <= ranges[i][1])
            return true;
    return false;
}

/* White space (Unicode White_Space beyond the controls). */
static bool is_space(unsigned cp)
{
    return cp == 0x20 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

int model_check_text(const char *s, size_t len, size_t max, const char *what, const char *target,
                     ds_error *err)
{
    if (len == 0)
        return ds_fail(err, DS_INVALID_VALUE, target, "the %s is empty", what);
    if (len > max)
        return ds_fail(err, DS_INVALID_VALUE, target, "the %s has %zu bytes; the limit is %zu",
                       what, len, max);
    const unsigned char *u = (const unsigned char *)s;
    unsigned first = 0, last = 0;
    for (size_t i = 0; i < len;) {
        size_t n = ds_utf8_len(u + i, len - i);
        if (!n)
            return ds_fail(err, DS_INVALID_VALUE, target, "the %s is not valid UTF-8 at byte %zu",
                           what, i);
        unsigned cp = code_point(u + i, n);
        if (is_control(cp))
            return ds_fail(err, DS_INVALID_VALUE, target,
                           "the %s holds the control character U+%04X at byte %zu", what, cp, i);
        if (is_invisible(cp))
            return ds_fail(err, DS_INVALID_VALUE, target,
                           "the %s holds the invisible character U+%04X at byte %zu", what, cp, i);
        if (i == 0)
            first = cp;
        last = cp;
        i += n;
    }
    if (is_space(first) || is_space(last))
        return ds_fail(err, DS_INVALID_VALUE, target, "the %s %s with white space (U+%04X)", what,
                       is_space(first) ? "starts" : "ends", is_space(first) ? first : last);
    return 0;
}

int model_check_name(const char *s, size_t len, const char *what, ds_error *err)
{
    return model_check_text(s, len, DS_IDENT_MAX, what, what, err);
}

int model_find_dim(const ds_model *m, const char *name, size_t len)
{
    for (int i = 0; i < m->ndims; i++)
        if (strlen(m->dims[i].name) == len && memcmp(m->dims[i].name, name, len) == 0)
            return i;
    return -1;
}

int model_find_measure(const ds_model *m, const char *name, size_t len)
{
    for (int i = 0; i < m->nmeasures; i++)
        if (strlen(m->measures[i].name) == len && memcmp(m->measures[i].name, name, len) == 0)
            return i;
    return -1;
}

int model_add_dim(ds_model *m, int32_t id, const char *name, const char *root_key,
                  const char *root_name, ds_error *err)
{
    int rc = model_check_name(name, strlen(name), "dimension", err);
    if (rc)
        return rc;
    if (m->ndims >= DS_MAX_DIMS)
        return ds_fail(err, DS_INVALID_VALUE, "dimension", "a model has at most %d dimensions",
                       DS_MAX_DIMS);
    if (model_find_dim(m, name, strlen(name)) >= 0 ||
        model_find_measure(m, name, strlen(name)) >= 0)
        return ds_fail(err, DS_INVALID_VALUE, "dimension", "the name '%s' is already used", name);
    ds_dim *d = &m->dims[m->ndims];
    memset(d, 0, sizeof *d);
    d->id = id;
    d->name = xstrdup(name);
    d->root = 0;
    rc = model_add_member(d, -1, root_key, root_name, 0, err);
    if (rc) {
        free(d->name);
        free(d->members);
        memset(d, 0, sizeof *d);
        return rc;
    }
    model_dim_index(d);
    return m->ndims++;
}

int model_add_measure(ds_model *m, int32_t id, const char *name, int scale, ds_error *err)
{
    int rc = model_check_name(name, strlen(name), "measure", err);
    if (rc)
        return rc;
    if (m->nmeasures >= DS_MAX_MEASURES)
        return ds_fail(err, DS_INVALID_VALUE, "measure", "a model has at most %d measures",
                       DS_MAX_MEASURES);
    if (id < 0 || id > INT16_MAX)
        return ds_fail(err, DS_INVALID_VALUE, "measure", "a measure id is 0 to %d", INT16_MAX);
    if (scale < 0 || scale > 18)
        return ds_fail(err, DS_INVALID_VALUE, "scale", "a measure's scale is 0 to 18, not %d",
                       scale);
    if (model_find_dim(m, name, strlen(name)) >= 0 ||
        model_find_measure(m, name, strlen(name)) >= 0)
        return ds_fail(err, DS_INVALID_VALUE, "measure", "the name '%s' is already used", name);
    m->measures[m->nmeasures] = (ds_measure){.id = id, .name = xstrdup(name), .scale = scale};
    return m->nmeasures++;
}

int model_add_member(ds_dim *d, int32_t parent, const char *key, const char *name, int32_t ordinal,
                     ds_error *err)
{
    int rc = model_check_name(key, strlen(key), "key", err);
    if (!rc)
        rc = model_check_name(name, strlen(name), "name", err);
    if (rc)
        return rc;
    if (parent >= d->nmembers || (parent < 0 && d->nmembers > 0) ||
        (parent >= 0 && !d->members[parent].alive))
        return ds_fail(err, DS_NOT_FOUND, "cell", "the parent member does not exist");
    if (d->nmembers == d->alloc) {
        d->alloc = d->alloc ? d->alloc * 2 : 16;
        d->members = xrealloc(d->members, (size_t)d->alloc * sizeof *d->members);
    }
    d->members[d->nmembers] = (ds_member){.key = xstrdup(key),
                                          .name = xstrdup(name),
                                          .parent = parent,
                                          .ordinal = ordinal,
                                          .alive = true};
    return d->nmembers++;
}

void model_put_member(ds_dim *d, int32_t id, int32_t parent, const char *key, const char *name,
                      int32_t ordinal, int64_t struct_seq)
{
    model_reserve_ids(d, id + 1);
    free(d->members[id].key);
    free(d->members[id].name);
    d->members[id] = (ds_member){.key = xstrdup(key),
                                 .name = xstrdup(name),
                                 .parent = parent,
                                 .ordinal = ordinal,
                                 .struct_seq = struct_seq,
                                 .alive = true};
    if (parent < 0)
        d->root = id;
}

void model_kill_member(ds_dim *d, int32_t id)
{
    ds_member *mb = &d->members[id];
    free(mb->key);
    free(mb->name);
    mb->key = mb->name = NULL;
    mb->alive = false;
}

void model_reserve_ids(ds_dim *d, int32_t next_id)
{
    if (next_id > d->alloc) {
        int32_t a = d->alloc ? d->alloc : 16;
        while (a < next_id)
            a *= 2;
        d->members = xrealloc(d->members, (size_t)a * sizeof *d->members);
        d->alloc = a;
    }
    while (d->nmembers < next_id)
        d->members[d->nmembers++] = (ds_member){.parent = -1, .alive = false};
}

/* Sorts one parent's children by ordinal, then id (insertion sort: runs are
 * short and usually already in order). */
static void sort_kids(const ds_dim *d, int32_t *k, int32_t n)
{
    for (int32_t i = 1; i < n; i++) {
        int32_t x = k[i], j = i - 1;
        while (j >= 0 && (d->members[k[j]].ordinal > d->members[x].ordinal ||
                          (d->members[k[j]].ordinal == d->members[x].ordinal && k[j] > x))) {
            k[j + 1] = k[j];
            j--;
        }
        k[j + 1] = x;
    }
}

static void index_children(ds_dim *d)
{
    int32_t n = d->nmembers;
    d->kid_start = xcalloc((size_t)n + 1, sizeof *d->kid_start);
    d->kids = xmalloc_array((size_t)n + 1, sizeof *d->kids);
    for (int32_t i = 0; i < n; i++)
        if (d->members[i].alive && d->members[i].parent >= 0)
            d->kid_start[d->members[i].parent + 1]++;
    for (int32_t i = 0; i < n; i++)
        d->kid_start[i + 1] += d->kid_start[i];
    int32_t *fill = xmalloc_array((size_t)n + 1, sizeof *fill);
    memcpy(fill, d->kid_start, (size_t)n * sizeof *fill);
    for (int32_t i = 0; i < n; i++)
        if (d->members[i].alive && d->members[i].parent >= 0)
            d->kids[fill[d->members[i].parent]++] = i;
    free(fill);
    for (int32_t i = 0; i < n; i++)
        sort_kids(d, d->kids + d->kid_start[i], d->kid_start[i + 1] - d->kid_start[i]);
}

/* Preorder with an explicit stack (trees can be deep). */
static void index_preorder(ds_dim *d)
{
    int32_t n = d->nmembers;
    d->pre = xmalloc_array((size_t)n + 1, sizeof *d->pre);
    d->pos = xmalloc_array((size_t)n + 1, sizeof *d->pos);
    d->end = xmalloc_array((size_t)n + 1, sizeof *d->end);
    d->leaf_count = xcalloc((size_t)n + 1, sizeof *d->leaf_count);
    d->id_min = xmalloc_array((size_t)n + 1, sizeof *d->id_min);
    d->id_max = xmalloc_array((size_t)n + 1, sizeof *d->id_max);
    for (int32_t i = 0; i < n; i++)
        d->pos[i] = d->end[i] = -1;
    int32_t *stack = xmalloc_array((size_t)n + 1, sizeof *stack);
    int32_t sp = 0, np = 0;
    stack[sp++] = d->root;
    d->members[d->root].depth = 0;
    while (sp > 0) {
        int32_t x = stack[--sp];
        d->pos[x] = np;
        d->pre[np++] = x;
        for (int32_t j = d->kid_start[x + 1] - 1; j >= d->kid_start[x]; j--) {
            int32_t c = d->kids[j];
            d->members[c].depth = d->members[x].depth + 1;
            stack[sp++] = c;
        }
    }
    d->npre = np;
    free(stack);
    /* subtree ends and leaf counts, children before parents */
    for (int32_t i = np - 1; i >= 0; i--) {
        int32_t x = d->pre[i], e = i + 1;
        if (d->kid_start[x] == d->kid_start[x + 1])
            d->leaf_count[x] = 1;
        d->id_min[x] = d->id_max[x] = x;
        for (int32_t j = d->kid_start[x]; j < d->kid_start[x + 1]; j++) {
            int32_t c = d->kids[j];
            d->leaf_count[x] += d->leaf_count[c];
            if (d->id_min[c] < d->id_min[x])
                d->id_min[x] = d->id_min[c];
            if (d->id_max[c] > d->id_max[x])
                d->id_max[x] = d->id_max[c];
            if (d->end[c] > e)
                e = d->end[c];
        }
        d->end[x] = e;
    }
}

void model_dim_index(ds_dim *d)
{
    dim_free_index(d);
    index_children(d);
    index_preorder(d);
    ds_strmap_init(&d->by_key, (size_t)d->nmembers);
    ds_strmap_init(&d->by_name, (size_t)d->nmembers);
    d->next_same_name = xmalloc_array((size_t)d->nmembers + 1, sizeof *d->next_same_name);
    for (int32_t i = d->nmembers - 1; i >= 0; i--) {
        const ds_member *mb = &d->members[i];
        d->next_same_name[i] = -1;
        if (!mb->alive)
            continue;
        ds_strmap_put(&d->by_key, mb->key, strlen(mb->key), i);
        int32_t first;
        if (ds_strmap_get(&d->by_name, mb->name, strlen(mb->name), &first))
            d->next_same_name[i] = first;
        ds_strmap_put(&d->by_name, mb->name, strlen(mb->name), i);
    }
}

int32_t model_find_key(const ds_dim *d, const char *key, size_t len)
{
    int32_t id;
    return ds_strmap_get(&d->by_key, key, len, &id) ? id : -1;
}

int model_resolve_member(const ds_dim *d, const char *text, size_t len, int32_t *id, ds_error *err)
{
    int32_t found = model_find_key(d, text, len);
    if (found >= 0) {
        *id = found;
        return 0;
    }
    int32_t first;
    if (!ds_strmap_get(&d->by_name, text, len, &first))
        return ds_fail(err, DS_NOT_FOUND, "cell", "dimension '%s' has no member '%.*s'", d->name,
                       (int)(len > 200 ? 200 : len), text);
    if (d->next_same_name[first] < 0) {
        *id = first;
        return 0;
    }
    int n = 0;
    for (int32_t x = first; x >= 0; x = d->next_same_name[x])
        n++;
    int rc = ds_fail(err, DS_AMBIGUOUS_MEMBER, "cell",
                     "'%.*s' is the name of %d members of dimension '%s'; give a key",
                     (int)(len > 200 ? 200 : len), text, n, d->name);
    for (int32_t x = first; x >= 0 && err; x = d->next_same_name[x])
        ds_error_add_candidate(err, d->members[x].key);
    return rc;
}

void model_subtree(const ds_dim *d, int32_t id, spread_tree *t, int32_t **parent, int32_t **ids)
{
    int32_t base = d->pos[id], n = d->end[id] - base;
    *parent = xmalloc_array((size_t)n, sizeof **parent);
    *ids = xmalloc_array((size_t)n, sizeof **ids);
    for (int32_t i = 0; i < n; i++) {
        int32_t x = d->pre[base + i];
        (*ids)[i] = x;
        (*parent)[i] = i == 0 ? -1 : d->pos[d->members[x].parent] - base;
    }
    t->n = n;
    t->parent = *parent;
    t->id = *ids;
}

size_t model_leaves(const ds_dim *d, int32_t id, int32_t **out)
{
    size_t n = 0;
    *out = xmalloc_array((size_t)d->leaf_count[id], sizeof **out);
    for (int32_t i = d->pos[id]; i < d->end[id]; i++)
        if (model_is_leaf(d, d->pre[i]))
            (*out)[n++] = d->pre[i];
    return n;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return ds_hash_bytes(s ? s : "", n, ds_mix64(h ^ n));
}

uint64_t model_checksum(const ds_model *m)
{
    uint64_t h = hash_str(0x6d6f64656c, m->name);
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        h = hash_str(ds_mix64(h ^ (uint32_t)d->id), d->name);
        for (int32_t x = 0; x < d->nmembers; x++) {
            const ds_member *mb = &d->members[x];
            if (!mb->alive)
                continue;
            h = ds_mix64(h ^ (uint32_t)x);
            h = ds_mix64(h ^ (uint32_t)mb->parent);
            h = hash_str(hash_str(h, mb->key), mb->name);
        }
    }
    for (int q = 0; q < m->nmeasures; q++)
        h = hash_str(
            ds_mix64(h ^ (uint32_t)m->measures[q].id ^ (uint64_t)m->measures[q].scale << 32),
            m->measures[q].name);
    return h;
}

uint64_t model_fact_hash(const ds_model *m, int q, const int32_t *cell, int64_t v)
{
    uint64_t h = ds_mix64(0x66616374 ^ (uint32_t)m->measures[q].id);
    for (int k = 0; k < m->ndims; k++)
        h = ds_mix64(h ^ (uint32_t)cell[k]);
    return ds_mix64(h ^ (uint64_t)v);
}
