/* grids.c: see grids.h. */
#include "grids.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "request.h"

struct grid_sub {
    struct grid_sub *next; /* in its grid */
    struct grid *grid;
    void *conn;
    char *id; /* the client's, as a JSON string literal with quotes */
    size_t id_len;
    char *raw_id; /* the client's bytes */
    size_t raw_len;
    int64_t since; /* patches with a seq above this go out */
};

typedef struct grid {
    struct grid *next;
    char *model;
    ds_grid_spec spec; /* rows and cols are the grid's own */
    int32_t *rows, *cols;
    char *key; /* the spec in bytes: equal grids share one */
    size_t key_len;
    ds_i128 *values; /* at seq */
    int64_t seq;
    uint8_t *row_cover, *col_cover; /* member id -> beneath some row (column) */
    int32_t row_n, col_n;           /* members those arrays span */
    bool dead;                      /* ended with an error: kept until its subscribers leave */
    grid_sub *subs;
} grid;

struct ds_grids {
    pthread_mutex_t lock;
    grid_send_fn send;
    void *send_ctx;
    grid *grids;
    grids_stats stats;
    grid_to *to; /* the subscribers of the message being sent */
    size_t to_alloc;
};

ds_grids *grids_new(grid_send_fn send, void *ctx)
{
    ds_grids *g = xcalloc(1, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    g->send = send;
    g->send_ctx = ctx;
    return g;
}

static void grid_free(grid *x)
{
    for (grid_sub *s = x->subs, *n; s; s = n) {
        n = s->next;
        free(s->id);
        free(s->raw_id);
        free(s);
    }
    free(x->model);
    free(x->rows);
    free(x->cols);
    free(x->key);
    free(x->values);
    free(x->row_cover);
    free(x->col_cover);
    free(x);
}

void grids_free(ds_grids *g)
{
    if (!g)
        return;
    for (grid *x = g->grids, *n; x; x = n) {
        n = x->next;
        grid_free(x);
    }
    pthread_mutex_destroy(&g->lock);
    free(g->to);
    free(g);
}

/* ---- one grid ------------------------------------------------------------- */

static void spec_key(const char *model, const ds_grid_spec *s, char **key, size_t *len)
{
    ds_buf b;
    ds_buf_init(&b, (size_t)1 << 30);
    ds_buf_append(&b, model, strlen(model) + 1);
    int32_t head[4] = {s->measure, s->row_dim, s->col_dim, (int32_t)s->nrows};
    ds_buf_append(&b, (const char *)head, sizeof head);
    ds_buf_append(&b, (const char *)&s->fixed, sizeof s->fixed);
    ds_buf_append(&b, (const char *)s->rows, s->nrows * sizeof *s->rows);
    ds_buf_append(&b, (const char *)s->cols, s->ncols * sizeof *s->cols);
    *len = b.len;
    *key = ds_buf_steal(&b);
}

/* Which members of a dimension lie beneath one of the given members. */
static uint8_t *cover(const ds_dim *d, const int32_t *ids, size_t n)
{
    uint8_t *c = xcalloc((size_t)d->nmembers + 1, 1);
    for (size_t i = 0; i < n; i++) {
        int32_t x = ids[i];
        if (x < 0 || x >= d->nmembers || d->pos[x] < 0)
            continue;
        for (int32_t p = d->pos[x]; p < d->end[x]; p++)
            c[d->pre[p]] = 1;
    }
    return c;
}

static void set_covers(grid *x, const ds_model *m)
{
    free(x->row_cover);
    free(x->col_cover);
    x->row_cover = cover(&m->dims[x->spec.row_dim], x->rows, x->spec.nrows);
    x->col_cover = cover(&m->dims[x->spec.col_dim], x->cols, x->spec.ncols);
    x->row_n = m->dims[x->spec.row_dim].nmembers;
    x->col_n = m->dims[x->spec.col_dim].nmembers;
}

static grid *grid_new(const char *model, const ds_grid_spec *s, char *key, size_t key_len)
{
    grid *x = xcalloc(1, sizeof *x);
    x->model = xstrdup(model);
    x->spec = *s;
    x->rows = xmalloc_array(s->nrows, sizeof *x->rows);
    x->cols = xmalloc_array(s->ncols, sizeof *x->cols);
    memcpy(x->rows, s->rows, s->nrows * sizeof *x->rows);
    memcpy(x->cols, s->cols, s->ncols * sizeof *x->cols);
    x->spec.rows = x->rows;
    x->spec.cols = x->cols;
    x->key = key;
    x->key_len = key_len;
    x->values = xcalloc(s->nrows * s->ncols, sizeof *x->values);
    x->seq = -1;
    return x;
}

/* Does a changed leaf of measure q lie beneath one of the grid's cells? */
static bool touches(const grid *x, const ds_model *m, int q, const int32_t *leaf)
{
    if (q != x->spec.measure)
        return false;
    int rd = x->spec.row_dim, cd = x->spec.col_dim;
    if (leaf[rd] < 0 || leaf[rd] >= x->row_n || !x->row_cover[leaf[rd]] || leaf[cd] < 0 ||
        leaf[cd] >= x->col_n || !x->col_cover[leaf[cd]])
        return false;
    for (int k = 0; k < m->ndims; k++)
        if (k != rd && k != cd && !model_is_under(&m->dims[k], leaf[k], x->spec.fixed.m[k]))
            return false;
    return true;
}

/* ---- messages --------------------------------------------------------------- */

static void put_id(ds_buf *b, const char *id, size_t len)
{
    json_w w;
    jw_init(&w, b);
    jw_strn(&w, id, len);
}

/* Each message is HEAD + the subscriber's id + a tail the same for all. */
static const char SNAPSHOT_HEAD[] = "{\"op\":\"snapshot\",\"id\":";
static const char PATCH_HEAD[] = "{\"op\":\"patch\",\"id\":";
static const char ERROR_HEAD[] = "{\"op\":\"error\",\"id\":";

/* The grid's values at its seq: what follows the id in a snapshot. */
static void snapshot_tail(ds_buf *b, const grid *x, const ds_model *m)
{
    int scale = m->measures[x->spec.measure].scale;
    ds_buf_printf(b, ",\"seq\":%lld,\"measure\":", (long long)x->seq);
    json_w w;
    jw_init(&w, b);
    jw_str(&w, m->measures[x->spec.measure].name);
    ds_buf_puts(b, ",\"rows\":");
    jw_init(&w, b);
    jw_arr(&w);
    for (size_t i = 0; i < x->spec.nrows; i++)
        jw_str(&w, m->dims[x->spec.row_dim].members[x->rows[i]].key);
    jw_arr_end(&w);
    ds_buf_puts(b, ",\"cols\":");
    jw_init(&w, b);
    jw_arr(&w);
    for (size_t j = 0; j < x->spec.ncols; j++)
        jw_str(&w, m->dims[x->spec.col_dim].members[x->cols[j]].key);
    jw_arr_end(&w);
    ds_buf_puts(b, ",\"values\":");
    jw_init(&w, b);
    jw_arr(&w);
    for (size_t i = 0; i < x->spec.nrows; i++) {
        jw_arr(&w);
        for (size_t j = 0; j < x->spec.ncols; j++)
            jw_dec(&w, x->values[i * x->spec.ncols + j], scale);
        jw_arr_end(&w);
    }
    jw_arr_end(&w);
    ds_buf_puts(b, "}");
}

static void error_tail(ds_buf *b, const ds_error *e)
{
    ds_buf_puts(b, ",");
    ds_buf tmp;
    ds_buf_init(&tmp, 1 << 16);
    json_w w;
    jw_init(&w, &tmp);
    request_put_error(&w, e); /* {"error":{...}}: its inside goes here */
    ds_buf_append(b, tmp.data + 1, tmp.len - 1);
    ds_buf_free(&tmp);
}

/* The lock is held. */
static void add_to(ds_grids *g, size_t *n, grid_sub *s)
{
    if (*n == g->to_alloc) {
        g->to_alloc = g->to_alloc ? 2 * g->to_alloc : 64;
        g->to = xrealloc(g->to, g->to_alloc * sizeof *g->to);
    }
    g->to[(*n)++] = (grid_to){s->conn, s, s->id, s->id_len};
}

static void send_snapshot(ds_grids *g, grid *x, grid_sub *s, const ds_model *m)
{
    ds_buf b;
    ds_buf_init(&b, (size_t)1 << 30);
    snapshot_tail(&b, x, m);
    grid_to to = {s->conn, s, s->id, s->id_len};
    g->send(g->send_ctx, &to, 1, SNAPSHOT_HEAD, sizeof SNAPSHOT_HEAD - 1, b.data, b.len, x->seq,
            true);
    g->stats.snapshots++;
    s->since = x->seq;
    ds_buf_free(&b);
}

/* Reads the grid from the engine at its current seq into x->values;
 * fills *changed with the cells that differ ([row, col, v] text). */
static int refresh(grid *x, ds_engine *e, const ds_model *m, ds_buf *changed, ds_error *err)
{
    size_t n = x->spec.nrows * x->spec.ncols;
    ds_i128 *v = xmalloc_array(n ? n : 1, sizeof *v);
    int64_t seq;
    int rc = engine_read_grid(e, &x->spec, v, &seq, err);
    if (rc == 0) {
        int scale = m->measures[x->spec.measure].scale;
        json_w w;
        jw_init(&w, changed);
        for (size_t i = 0; changed && i < n; i++) {
            if (x->seq >= 0 && v[i] == x->values[i])
                continue;
            jw_arr(&w);
            jw_int(&w, (int64_t)(i / x->spec.ncols));
            jw_int(&w, (int64_t)(i % x->spec.ncols));
            jw_dec(&w, v[i], scale);
            jw_arr_end(&w);
        }
        memcpy(x->values, v, n * sizeof *v);
        x->seq = seq;
    }
    free(v);
    return rc;
}

/* The grid ends: each subscriber is told why; the handles stay valid
 * until unsubscribed. */
static void end_subs(ds_grids *g, grid *x, const ds_error *e)
{
    x->dead = true;
    size_t n = 0;
    for (grid_sub *s = x->subs; s; s = s->next)
        add_to(g, &n, s);
    ds_buf b;
    ds_buf_init(&b, 1 << 16);
    error_tail(&b, e);
    g->send(g->send_ctx, g->to, n, ERROR_HEAD, sizeof ERROR_HEAD - 1, b.data, b.len, x->seq, true);
    ds_buf_free(&b);
}

static void unlink_grid(ds_grids *g, grid *x)
{
    for (grid **p = &g->grids; *p; p = &(*p)->next)
        if (*p == x) {
            *p = x->next;
            g->stats.grids--;
            return;
        }
}

/* ---- the API ------------------------------------------------------------------ */

int grids_subscribe(ds_grids *g, const char *model, ds_engine *e, const ds_grid_spec *spec,
                    void *conn, const char *id, size_t id_len, grid_sub **out, ds_error *err)
{
    char *key;
    size_t key_len;
    spec_key(model, spec, &key, &key_len);
    const ds_model *m = engine_model_acquire(e);
    pthread_mutex_lock(&g->lock);
    grid *x = g->grids;
    while (x && (x->dead || !(x->key_len == key_len && memcmp(x->key, key, key_len) == 0)))
        x = x->next;
    int rc = 0;
    if (x) {
        free(key);
    } else {
        x = grid_new(model, spec, key, key_len);
        set_covers(x, m);
        rc = refresh(x, e, m, NULL, err);
        if (rc) {
            grid_free(x);
            pthread_mutex_unlock(&g->lock);
            engine_model_release(e, m);
            return rc;
        }
        x->next = g->grids;
        g->grids = x;
        g->stats.grids++;
    }
    grid_sub *s = xcalloc(1, sizeof *s);
    ds_buf ib;
    ds_buf_init(&ib, id_len * 6 + 16);
    put_id(&ib, id, id_len);
    s->id_len = ib.len;
    s->id = ds_buf_steal(&ib);
    s->raw_id = xstrndup(id, id_len);
    s->raw_len = id_len;
    s->conn = conn;
    s->grid = x;
    s->next = x->subs;
    x->subs = s;
    g->stats.subscribers++;
    send_snapshot(g, x, s, m);
    pthread_mutex_unlock(&g->lock);
    engine_model_release(e, m);
    *out = s;
    return 0;
}

static void drop_sub(ds_grids *g, grid_sub *sub)
{
    grid *x = sub->grid;
    for (grid_sub **p = &x->subs; *p; p = &(*p)->next)
        if (*p == sub) {
            *p = sub->next;
            break;
        }
    free(sub->id);
    free(sub->raw_id);
    free(sub);
    g->stats.subscribers--;
    if (!x->subs) {
        unlink_grid(g, x);
        grid_free(x);
    }
}

void grids_unsubscribe(ds_grids *g, grid_sub *sub)
{
    if (!sub)
        return;
    pthread_mutex_lock(&g->lock);
    drop_sub(g, sub);
    pthread_mutex_unlock(&g->lock);
}

grid_sub *grids_find(ds_grids *g, void *conn, const char *id, size_t id_len)
{
    grid_sub *found = NULL;
    pthread_mutex_lock(&g->lock);
    for (grid *x = g->grids; x && !found; x = x->next)
        for (grid_sub *s = x->subs; s && !found; s = s->next)
            if (s->conn == conn && s->raw_len == id_len && memcmp(s->raw_id, id, id_len) == 0)
                found = s;
    pthread_mutex_unlock(&g->lock);
    return found;
}

const char *grids_model(const grid_sub *sub)
{
    return sub->grid->model;
}

void grids_unsubscribe_conn(ds_grids *g, void *conn)
{
    pthread_mutex_lock(&g->lock);
    for (grid *x = g->grids, *nx; x; x = nx) {
        nx = x->next;
        for (grid_sub *s = x->subs, *ns; s; s = ns) {
            ns = s->next;
            if (s->conn == conn)
                drop_sub(g, s); /* may free x: nx was read first */
        }
    }
    pthread_mutex_unlock(&g->lock);
}

/* A member operation: every grid of the model is read again (or ends,
 * when a row, column or filter member is gone). */
static bool restructured(ds_grids *g, grid *x, ds_engine *e, const ds_model *m, ds_buf *changed)
{
    ds_error err;
    set_covers(x, m);
    if (refresh(x, e, m, changed, &err) == 0)
        return true;
    end_subs(g, x, &err);
    return false;
}

void grids_applied(ds_grids *g, const char *model, ds_engine *e, const engine_delta *d)
{
    if (d->seq < 0)
        return;
    const ds_model *m = engine_model_acquire(e);
    pthread_mutex_lock(&g->lock);
    ds_buf changed, tail;
    ds_buf_init(&changed, (size_t)1 << 30);
    ds_buf_init(&tail, (size_t)1 << 30);
    for (grid *x = g->grids, *nx; x; x = nx) {
        nx = x->next;
        if (strcmp(x->model, model) != 0)
            continue;
        ds_buf_reset(&changed);
        bool hit = d->catalog != NULL;
        for (size_t r = 0; !hit && r < d->nrows; r++)
            hit = touches(x, m, d->rows[r].measure, d->row_cells + r * (size_t)m->ndims);
        if (!hit)
            continue;
        if (x->dead || (d->catalog && !restructured(g, x, e, m, &changed)))
            continue;
        ds_error err;
        if (!d->catalog && refresh(x, e, m, &changed, &err) != 0)
            continue;
        if (changed.len == 0)
            continue; /* the leaves changed, the grid's totals did not */
        g->stats.patches++;
        size_t n = 0;
        for (grid_sub *s = x->subs; s; s = s->next) {
            if (x->seq <= s->since)
                continue;
            add_to(g, &n, s);
            s->since = x->seq;
        }
        ds_buf_reset(&tail);
        ds_buf_printf(&tail, ",\"seq\":%lld,\"cells\":[", (long long)x->seq);
        ds_buf_append(&tail, changed.data, changed.len);
        ds_buf_puts(&tail, "]}");
        if (n)
            g->send(g->send_ctx, g->to, n, PATCH_HEAD, sizeof PATCH_HEAD - 1, tail.data, tail.len,
                    x->seq, false);
    }
    ds_buf_free(&changed);
    ds_buf_free(&tail);
    pthread_mutex_unlock(&g->lock);
    engine_model_release(e, m);
}

void grids_resnapshot(ds_grids *g, grid_sub *sub, ds_engine *e)
{
    const ds_model *m = engine_model_acquire(e);
    pthread_mutex_lock(&g->lock);
    /* the grid's values are at its seq, the last one patched */
    if (!sub->grid->dead)
        send_snapshot(g, sub->grid, sub, m);
    pthread_mutex_unlock(&g->lock);
    engine_model_release(e, m);
}

void grids_forget(ds_grids *g, const char *model)
{
    ds_error err;
    ds_fail(&err, DS_NOT_FOUND, "table", "table '%s' was dropped", model);
    pthread_mutex_lock(&g->lock);
    for (grid *x = g->grids, *nx; x; x = nx) {
        nx = x->next;
        if (strcmp(x->model, model) == 0 && !x->dead)
            end_subs(g, x, &err);
    }
    pthread_mutex_unlock(&g->lock);
}

void grids_get_stats(ds_grids *g, grids_stats *s)
{
    pthread_mutex_lock(&g->lock);
    *s = g->stats;
    pthread_mutex_unlock(&g->lock);
}
