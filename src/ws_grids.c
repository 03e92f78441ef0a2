/* ws_grids.c: see ws_grids.h. Runs on the WebSocket thread (messages,
 * closes, fresh snapshots) and, for send, on whichever thread the hub
 * sends from (the writer's for patches). */
#include "ws_grids.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "models.h"
#include "request.h"

/* The longest id a client may give a subscription. */
#define GRID_ID_MAX 128

void ws_grids_send(void *ctx, const grid_to *to, size_t n, const char *head, size_t head_len,
                   const char *tail, size_t tail_len, int64_t seq, bool fresh)
{
    (void)seq;
    ds_server *srv = ctx;
    enum { CHUNK = 64 };
    live_ws_to lt[CHUNK];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < k; j++)
            lt[j] = (live_ws_to){to[i + j].conn, to[i + j].sub, to[i + j].id, to[i + j].id_len};
        live_ws_send_many(srv->live, lt, k, head, head_len, tail, tail_len, fresh);
    }
}

static void send_error(ds_server *srv, live_conn *c, const char *id, size_t id_len,
                       const ds_error *e)
{
    ds_buf b, inner;
    json_w w;
    ds_buf_init(&b, 1 << 16);
    ds_buf_init(&inner, 1 << 16);
    jw_init(&w, &inner);
    request_put_error(&w, e); /* {"error":{...}} */
    ds_buf_puts(&b, "{\"op\":\"error\"");
    if (id) {
        ds_buf_puts(&b, ",\"id\":");
        jw_init(&w, &b);
        jw_strn(&w, id, id_len);
    }
    ds_buf_puts(&b, ",");
    ds_buf_append(&b, inner.data + 1, inner.len - 1);
    live_ws_send(srv->live, c, NULL, b.data, b.len);
    ds_buf_free(&b);
    ds_buf_free(&inner);
}

/* The message's op and id: 400s for its shape. */
static int message_shape(const json_val *root, const char **op, size_t *op_len, const char **id,
                         size_t *id_len, ds_error *err)
{
    static const char *const fields[] = {"op", "id", "grid", NULL};
    if (json_kind_of(root) != JSON_OBJECT)
        return ds_fail(err, DS_MALFORMED, "message", "a message is a JSON object");
    if (request_only_fields(root, fields, "", err))
        return -DS_MALFORMED;
    json_val *o = json_get(root, "op"), *i = json_get(root, "id");
    if (json_kind_of(o) != JSON_STRING)
        return ds_fail(err, DS_MALFORMED, "op", "'op' is subscribe or unsubscribe");
    if (json_kind_of(i) != JSON_STRING)
        return ds_fail(err, DS_MALFORMED, "id", "'id' (a string) names the subscription");
    *op = json_str(o, op_len);
    *id = json_str(i, id_len);
    if (*id_len == 0 || *id_len > GRID_ID_MAX)
        return ds_fail(err, DS_INVALID_VALUE, "id", "'id' is 1 to %d bytes", GRID_ID_MAX);
    return model_check_name(*id, *id_len, "id", err);
}

static int subscribe(ds_server *srv, live_conn *c, const char *model, const json_val *root,
                     const char *id, size_t id_len, ds_error *err)
{
    json_val *grid = json_get(root, "grid");
    if (json_kind_of(grid) != JSON_OBJECT)
        return ds_fail(err, DS_MALFORMED, "grid", "'grid' is {rows, cols, measure, filters}");
    if (grids_find(srv->grids, c, id, id_len))
        return ds_fail(err, DS_INVALID_VALUE, "id", "this connection has a subscription '%.*s'",
                       (int)id_len, id);
    int rc = request_grid_shape(grid, err);
    if (rc)
        return rc;
    model_ref *mr = models_get(srv->models, model, strlen(model));
    if (!mr)
        return ds_fail(err, DS_NOT_FOUND, "table", "no table '%s'", model);
    const ds_model *m = engine_model_acquire(mr->engine);
    ds_grid_spec g = {0};
    int32_t *rows = NULL, *cols = NULL;
    rc = request_grid(m, grid, &g, &rows, &cols, err);
    int64_t cells = (int64_t)g.nrows * (int64_t)g.ncols, max = srv->o.cells_max;
    if (rc == 0 && cells > max) {
        rc = ds_fail(err, DS_TOO_MANY_CELLS, "grid",
                     "the grid has %" PRId64 " cells; the limit is %" PRId64 " (--cells-max)",
                     cells, max);
        err->has_count = true;
        err->count = cells;
        err->limit = max;
    }
    grid_sub *sub;
    if (rc == 0) {
        live_ws_grid_mode(c); /* grid messages only from now on */
        rc = grids_subscribe(srv->grids, model, mr->engine, &g, c, id, id_len, &sub, err);
    }
    free(rows);
    free(cols);
    engine_model_release(mr->engine, m);
    models_put(srv->models, mr);
    return rc;
}

static void on_message(void *ctx, live_conn *c, const char *model, const char *text, size_t len)
{
    ds_server *srv = ctx;
    json_limits lim;
    json_limits_default(&lim);
    lim.max_bytes = LIVE_WS_MSG_MAX;
    lim.max_depth = srv->o.json_depth;
    json_val *root = NULL;
    ds_error err;
    const char *op = NULL, *id = NULL;
    size_t op_len = 0, id_len = 0;
    int rc = json_parse(text, len, &lim, &root, &err);
    if (rc == 0)
        rc = message_shape(root, &op, &op_len, &id, &id_len, &err);
    if (rc == 0 && op_len == 9 && memcmp(op, "subscribe", 9) == 0) {
        rc = subscribe(srv, c, model, root, id, id_len, &err);
    } else if (rc == 0 && op_len == 11 && memcmp(op, "unsubscribe", 11) == 0) {
        grid_sub *sub = grids_find(srv->grids, c, id, id_len);
        if (sub) {
            grids_unsubscribe(srv->grids, sub);
            live_ws_forget(srv->live, c, sub); /* compares the pointer only */
        } else
            rc = ds_fail(&err, DS_NOT_FOUND, "id", "this connection has no subscription '%.*s'",
                         (int)(id_len > 128 ? 128 : id_len), id);
    } else if (rc == 0) {
        rc = ds_fail(&err, DS_MALFORMED, "op", "'op' is subscribe or unsubscribe");
    }
    if (rc)
        send_error(srv, c, id, id_len, &err);
    json_free(root);
}

static void on_closed(void *ctx, live_conn *c)
{
    ds_server *srv = ctx;
    grids_unsubscribe_conn(srv->grids, c);
}

static void on_resnapshot(void *ctx, live_conn *c, void *sub)
{
    (void)c;
    ds_server *srv = ctx;
    const char *model = grids_model(sub);
    model_ref *mr = models_get(srv->models, model, strlen(model));
    if (mr)
        grids_resnapshot(srv->grids, sub, mr->engine);
    models_put(srv->models, mr);
}

void ws_grids_attach(ds_server *srv)
{
    live_grid_ops ops = {.message = on_message, .closed = on_closed, .resnapshot = on_resnapshot};
    live_set_grid_ops(srv->live, &ops, srv);
}
