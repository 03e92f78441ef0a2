/* http_read.c: routes, reads (models, members, cell, grid, views),
 * model administration, operations endpoints and static files. */
#include "http_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "grids.h"
#include "log.h"
#include "models.h"
#include "writer.h"

/* ---- operations -------------------------------------------------------------- */

static enum MHD_Result h_health(req *r)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    return http__reply(r, 200, "application/json", ok, sizeof ok - 1);
}

static enum MHD_Result h_ready(req *r)
{
    ds_server *srv = r->h->srv;
    thread_res *res = http__res(r->h);
    bool redis = res->bus && bus_ping(res->bus, NULL) == 0;
    bool writer = srv->writer && writer_alive(srv->writer);
    writer_stats ws = {0};
    if (srv->writer)
        writer_get_stats(srv->writer, &ws);
    replica_stats rs[64];
    int nrs = writer_replica_stats(srv->writer, rs, 64);
    bool stalled = false;
    for (int i = 0; i < nrs; i++)
        stalled |= rs[i].stalled;
    char **names;
    size_t nn = models_names(srv->models, &names);
    bool lost = false;
    for (size_t i = 0; i < nn; i++) {
        lost |= writer_lease_foreign(srv->writer, names[i]);
        free(names[i]);
    }
    free(names);
    int acked;
    bool repl_short;
    writer_replicas(srv->writer, &acked, &repl_short);
    bool ready =
        redis && writer && srv->redis_up && !ws.persist_failing && !stalled && !lost && !repl_short;
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 4096);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "ready");
    jw_bool(&w, ready);
    jw_key(&w, "redis");
    jw_bool(&w, redis);
    jw_key(&w, "writer");
    jw_bool(&w, writer);
    jw_key(&w, "lag");
    jw_int(&w, ws.reading_lag);
    jw_key(&w, "persist_lag");
    jw_int(&w, ws.persist_lag);
    jw_key(&w, "persist_lag_ms");
    jw_int(&w, ws.persist_lag_ms);
    jw_key(&w, "backpressure");
    jw_bool(&w, ws.backpressure);
    jw_key(&w, "ack");
    jw_str(&w, srv->o.ack_persisted ? "persisted" : "logged");
    if (ws.persist_failing) {
        jw_key(&w, "persist_error");
        jw_str(&w, ws.persist_why.message);
    }
    if (lost) {
        jw_key(&w, "lease_lost");
        jw_bool(&w, true);
    }
    if (srv->o.redis_replicas > 0) {
        jw_key(&w, "redis_replicas");
        jw_obj(&w);
        jw_key(&w, "want");
        jw_int(&w, srv->o.redis_replicas);
        jw_key(&w, "acked");
        jw_int(&w, acked);
        jw_obj_end(&w);
    }
    char lost_why[1024];
    if (writer_redis_lost(srv->writer, lost_why, sizeof lost_why)) {
        jw_key(&w, "redis_lost");
        jw_str(&w, lost_why);
    }
    jw_key(&w, "role");
    bool follows = writer_follows(srv->writer);
    jw_str(&w, !follows ? "writer" : srv->o.replica ? "replica" : "standby");
    if (follows) {
        jw_key(&w, "replica");
        jw_arr(&w);
        for (int i = 0; i < nrs; i++) {
            jw_obj(&w);
            jw_key(&w, "model");
            jw_str(&w, rs[i].model);
            jw_key(&w, "seq");
            jw_int(&w, rs[i].applied);
            jw_key(&w, "writer_seq");
            jw_int(&w, rs[i].stream);
            jw_key(&w, "lag");
            jw_int(&w, rs[i].stream - rs[i].applied);
            jw_key(&w, "lag_ms");
            jw_int(&w, rs[i].lag_ms);
            jw_key(&w, "stalled");
            jw_bool(&w, rs[i].stalled);
            char why[600];
            model_ref *mr = models_get(srv->models, rs[i].model, strlen(rs[i].model));
            if (mr && models_stalled(srv->models, mr, why, sizeof why)) {
                jw_key(&w, "error");
                jw_str(&w, why);
            }
            models_put(srv->models, mr);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
    }
    jw_obj_end(&w);
    enum MHD_Result ret = http__json(r, ready ? 200 : 503, &b);
    ds_buf_free(&b);
    return ret;
}

/* A Prometheus label value: quotes and backslashes escaped, no newline. */
static void metrics_label(ds_buf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            ds_buf_putc(b, '\\');
        ds_buf_putc(b, *p == '\n' ? ' ' : *p);
    }
}

static enum MHD_Result h_metrics(req *r)
{
    ds_server *srv = r->h->srv;
    writer_stats ws = {0};
    if (srv->writer)
        writer_get_stats(srv->writer, &ws);
    ds_buf b;
    ds_buf_init(&b, (size_t)16 << 20);
    metrics_render(&srv->metrics, &b);
    live_stats ls;
    live_get_stats(srv->live, &ls);
    ds_buf_printf(&b,
                  "# HELP duckspread_subscribers Live subscribers by kind.\n"
                  "# TYPE duckspread_subscribers gauge\n"
                  "duckspread_subscribers{kind=\"sse\"} %" PRId64 "\n"
                  "duckspread_subscribers{kind=\"ws\"} %" PRId64 "\n"
                  "duckspread_subscribers{kind=\"waiting\"} %" PRId64 "\n"
                  "# TYPE duckspread_subscribers_cut_off_total counter\n"
                  "duckspread_subscribers_cut_off_total %" PRId64 "\n"
                  "# HELP duckspread_queue_depth Commands read by the writer and not yet done.\n"
                  "# TYPE duckspread_queue_depth gauge\nduckspread_queue_depth %" PRId64 "\n",
                  ls.sse, ls.ws, ls.waiting, ls.cut_off, ws.reading_lag);
    grids_stats gs;
    grids_get_stats(srv->grids, &gs);
    ds_buf_printf(
        &b,
        "# HELP duckspread_persist_lag Commands applied and not yet committed to DuckDB.\n"
        "# TYPE duckspread_persist_lag gauge\nduckspread_persist_lag %" PRId64 "\n"
        "# HELP duckspread_persist_lag_seconds Age of the oldest of those.\n"
        "# TYPE duckspread_persist_lag_seconds gauge\n"
        "duckspread_persist_lag_seconds %.3f\n"
        "# HELP duckspread_backpressure 1 while the writer waits for the persister.\n"
        "# TYPE duckspread_backpressure gauge\nduckspread_backpressure %d\n"
        "# HELP duckspread_persist_failing 1 while DuckDB refuses the persister.\n"
        "# TYPE duckspread_persist_failing gauge\nduckspread_persist_failing %d\n"
        "# TYPE duckspread_persist_groups_total counter\n"
        "duckspread_persist_groups_total %" PRId64 "\n"
        "# TYPE duckspread_persist_commands_total counter\n"
        "duckspread_persist_commands_total %" PRId64 "\n"
        "# TYPE duckspread_persist_failures_total counter\n"
        "duckspread_persist_failures_total %" PRId64 "\n"
        "# TYPE duckspread_checkpoints_total counter\n"
        "duckspread_checkpoints_total %" PRId64 "\n"
        "# HELP duckspread_persist_seconds_total The persister's time by phase: UPDATEs of\n"
        "# existing facts, appends (new facts, logs, ledger), COMMIT, CHECKPOINT.\n"
        "# TYPE duckspread_persist_seconds_total counter\n"
        "duckspread_persist_seconds_total{phase=\"update\"} %.3f\n"
        "duckspread_persist_seconds_total{phase=\"append\"} %.3f\n"
        "duckspread_persist_seconds_total{phase=\"commit\"} %.3f\n"
        "duckspread_persist_seconds_total{phase=\"checkpoint\"} %.3f\n"
        "# HELP duckspread_grids Distinct grids with subscribers, and the subscribers.\n"
        "# TYPE duckspread_grids gauge\nduckspread_grids{kind=\"grids\"} %" PRId64 "\n"
        "duckspread_grids{kind=\"subscribers\"} %" PRId64 "\n"
        "# TYPE duckspread_grid_patches_total counter\n"
        "duckspread_grid_patches_total %" PRId64 "\n",
        ws.persist_lag, (double)ws.persist_lag_ms / 1000, ws.backpressure, ws.persist_failing,
        ws.persist.groups, ws.persist.commands, ws.persist.failures, ws.persist.checkpoints,
        ws.persist.times.update_s, ws.persist.times.append_s, ws.persist.times.commit_s,
        ws.persist.checkpoint_s, gs.grids, gs.subscribers, gs.patches);
    replica_stats rs[64];
    int nrs = writer_replica_stats(srv->writer, rs, 64);
    static const char *const rfamily[][2] = {
        {"duckspread_replica_lag", "A replica: seqs the writer's stream holds beyond its own."},
        {"duckspread_replica_lag_last_seconds",
         "A replica: the last command applied, from the writer's publish to here."},
        {"duckspread_replica_stalled",
         "A replica: 1 when it cannot follow the model (/ready says why)."},
    };
    for (size_t k = 0; nrs && k < DS_ARRAY_LEN(rfamily); k++) {
        ds_buf_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n", rfamily[k][0], rfamily[k][1],
                      rfamily[k][0]);
        for (int i = 0; i < nrs; i++) {
            ds_buf_printf(&b, "%s{model=\"", rfamily[k][0]);
            metrics_label(&b, rs[i].model);
            if (k == 0)
                ds_buf_printf(&b, "\"} %" PRId64 "\n", rs[i].stream - rs[i].applied);
            else if (k == 1)
                ds_buf_printf(&b, "\"} %.3f\n", (double)rs[i].lag_ms / 1000);
            else
                ds_buf_printf(&b, "\"} %d\n", rs[i].stalled);
        }
    }
    char **names;
    size_t n = models_names(srv->models, &names);
    engine_stats *st = xcalloc(n + 1, sizeof *st);
    int64_t *persisted = xcalloc(n + 1, sizeof *persisted);
    bool *have = xcalloc(n + 1, sizeof *have);
    char **label = xcalloc(n + 1, sizeof *label);
    for (size_t i = 0; i < n; i++) {
        ds_buf l;
        ds_buf_init(&l, 4096);
        metrics_label(&l, names[i]);
        label[i] = l.data;
        model_ref *mr = models_get(srv->models, names[i], strlen(names[i]));
        if (mr) {
            engine_get_stats(mr->engine, &st[i]);
            persisted[i] = models_persisted(srv->models, mr);
            have[i] = true;
        }
        models_put(srv->models, mr);
    }
    /* each family's samples together, as the text format wants */
    static const char *const family[][3] = {
        {"duckspread_seq", "gauge", "The last applied seq of each model."},
        {"duckspread_persisted_seq", "gauge", "The seq of each model in DuckDB."},
        {"duckspread_engine_bytes", "gauge", "Memory an engine holds (facts, cube, request ids)."},
        {"duckspread_request_ids", "gauge", "Request ids a model remembers (retries answered)."},
        {"duckspread_request_ids_evicted_total", "counter",
         "Request ids forgotten for --request-id-max before --request-id-days."},
    };
    for (size_t k = 0; k < DS_ARRAY_LEN(family); k++) {
        ds_buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", family[k][0], family[k][2], family[k][0],
                      family[k][1]);
        for (size_t i = 0; i < n; i++) {
            if (!have[i])
                continue;
            int64_t v[] = {st[i].seq, persisted[i], (int64_t)st[i].bytes,
                           (int64_t)st[i].ledger_entries, (int64_t)st[i].ledger_evicted};
            ds_buf_printf(&b, "%s{model=\"%s\"} %" PRId64 "\n", family[k][0], label[i], v[k]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(label[i]);
        free(names[i]);
    }
    http__backup_metrics(r->h, &b);
    free(label);
    free(have);
    free(persisted);
    free(st);
    free(names);
    enum MHD_Result ret = http__reply(r, 200, "text/plain; version=0.0.4", b.data, b.len);
    ds_buf_free(&b);
    return ret;
}

static enum MHD_Result h_static(req *r)
{
    for (int i = 0; i < r->h->nfiles; i++)
        if (strcmp(r->h->files[i].path, r->url) == 0 && r->h->files[i].data)
            return http__reply(r, 200, r->h->files[i].type, r->h->files[i].data,
                               r->h->files[i].len);
    return http__fail(r, DS_NOT_FOUND, "route", "this file is not installed on the server");
}

/* POST /v1/tickets: 201, or 429 when the key holds TICKETS_PER_KEY unused
 * ones (Retry-After: until its oldest expires). */
static enum MHD_Result h_ticket(req *r)
{
    char t[TICKET_LEN + 1];
    int retry = 0;
    ds_error e;
    if (tickets_mint(r->h->tickets, &r->who, ds_now_ns(), t, &retry, &e)) {
        if (retry > 0) {
            snprintf(r->retry_buf, sizeof r->retry_buf, "%d", retry);
            r->retry_after = r->retry_buf;
        }
        return http__error(r, &e);
    }
    ds_buf b;
    ds_buf_init(&b, 4096);
    ds_buf_printf(&b, "{\"ticket\":\"%s\",\"expires_in\":%d}", t, TICKET_TTL_S);
    enum MHD_Result ret = http__json(r, 201, &b);
    ds_buf_free(&b);
    return ret;
}

/* ---- models ---------------------------------------------------------------------- */

/* A read of a model: its catalog as the engine has it, once the engine
 * reflects min_seq (when the request gives one). */
typedef struct reading {
    model_ref *mr;
    const ds_model *m;
} reading;

/* NULL after answering: 404 (no such model), 400 (min_seq is no seq), 503
 * (min_seq not reached within --min-seq-wait, with Retry-After). */
static const ds_model *read_begin(req *r, reading *rd)
{
    ds_server *srv = r->h->srv;
    ds_error e;
    rd->m = NULL;
    rd->mr = models_get(srv->models, r->model, strlen(r->model));
    if (!rd->mr) {
        ds_fail(&e, DS_NOT_FOUND, "table", "no table '%s'", r->model);
        http__error(r, &e);
        return NULL;
    }
    const char *ms = http__arg(r, "min_seq");
    int64_t min = 0;
    char why[600];
    if (models_stalled(srv->models, rd->mr, why, sizeof why)) {
        ds_fail(&e, DS_UNAVAILABLE, "table", "%s", why);
    } else if (ms && !http__int(ms, 0, INT64_MAX / 2, &min)) {
        ds_fail(&e, DS_MALFORMED, "min_seq", "'min_seq' must be a seq (0 or more)");
    } else if (ms && !models_wait_applied(srv->models, rd->mr, min,
                                          ds_now_ns() + srv->o.min_seq_wait_ms * 1000000)) {
        ds_fail(&e, DS_UNAVAILABLE, "min_seq",
                "table '%s' has not reached seq %" PRId64 " (it is at %" PRId64 "); retry",
                r->model, min, engine_seq(rd->mr->engine));
        r->retry_after = "1";
    } else {
        rd->m = engine_model_acquire(rd->mr->engine);
        return rd->m;
    }
    models_put(srv->models, rd->mr);
    rd->mr = NULL;
    http__error(r, &e);
    return NULL;
}

static void read_end(req *r, reading *rd)
{
    if (rd->m)
        engine_model_release(rd->mr->engine, rd->m);
    models_put(r->h->srv->models, rd->mr);
}

/* For SQL reads: waits until DuckDB reflects every write acknowledged
 * before this request began (the engine's seq now) and min_seq. False
 * after answering 503. */
static bool read_persisted(req *r, reading *rd, int64_t min_seq)
{
    ds_server *srv = r->h->srv;
    int64_t want = engine_seq(rd->mr->engine);
    if (min_seq > want)
        want = min_seq;
    int64_t limit = srv->o.min_seq_wait_ms > 0 ? srv->o.min_seq_wait_ms : 10000;
    if (models_persisted(srv->models, rd->mr) < want)
        writer_hurry(srv->writer);
    if (models_wait_persisted(srv->models, rd->mr, want, ds_now_ns() + limit * 1000000))
        return true;
    ds_error e;
    ds_fail(&e, DS_UNAVAILABLE, "table",
            "the database has not caught up with seq %" PRId64 " of '%s' yet; retry", want,
            r->model);
    r->retry_after = "1";
    http__error(r, &e);
    return false;
}

static enum MHD_Result h_models(req *r)
{
    ds_models *ms = r->h->srv->models;
    char **names;
    size_t n = models_names(ms, &names);
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 1 << 20);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "models");
    jw_arr(&w);
    for (size_t i = 0; i < n; i++) {
        if (r->who.model[0] && strcmp(r->who.model, names[i]) != 0) { /* a key for one model */
            free(names[i]);
            continue;
        }
        model_ref *mr = models_get(ms, names[i], strlen(names[i]));
        if (mr) {
            jw_obj(&w);
            jw_key(&w, "name");
            jw_str(&w, names[i]);
            jw_key(&w, "seq");
            jw_int(&w, engine_seq(mr->engine));
            jw_obj_end(&w);
        }
        models_put(ms, mr);
        free(names[i]);
    }
    free(names);
    jw_arr_end(&w);
    jw_obj_end(&w);
    enum MHD_Result ret = http__json(r, 200, &b);
    ds_buf_free(&b);
    return ret;
}

static enum MHD_Result h_model(req *r)
{
    reading rd;
    const ds_model *m = read_begin(r, &rd);
    if (!m)
        return MHD_YES;
    char **views;
    size_t nv = store_view_list(http__res(r->h)->reader, m, &views);
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 1 << 20);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "name");
    jw_str(&w, m->name);
    jw_key(&w, "seq");
    jw_int(&w, engine_seq(rd.mr->engine));
    jw_key(&w, "dimensions");
    jw_arr(&w);
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        jw_obj(&w);
        jw_key(&w, "name");
        jw_str(&w, d->name);
        jw_key(&w, "root");
        jw_str(&w, d->members[d->root].key);
        jw_key(&w, "members");
        jw_int(&w, d->npre);
        jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_key(&w, "measures");
    jw_arr(&w);
    for (int k = 0; k < m->nmeasures; k++) {
        jw_obj(&w);
        jw_key(&w, "name");
        jw_str(&w, m->measures[k].name);
        jw_key(&w, "scale");
        jw_int(&w, m->measures[k].scale);
        jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_key(&w, "views");
    jw_arr(&w);
    for (size_t i = 0; i < nv; i++) {
        jw_str(&w, views[i]);
        free(views[i]);
    }
    free(views);
    jw_arr_end(&w);
    jw_obj_end(&w);
    read_end(r, &rd);
    enum MHD_Result ret = http__json(r, 200, &b);
    ds_buf_free(&b);
    return ret;
}

static enum MHD_Result h_model_drop(req *r)
{
    if (writer_follows(r->h->srv->writer))
        return http__replica_refuse(r);
    ds_error e;
    if (writer_drop_model(r->h->srv->writer, r->model, &e))
        return http__error(r, &e);
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 4096);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "deleted");
    jw_str(&w, r->model);
    jw_obj_end(&w);
    enum MHD_Result ret = http__json(r, 200, &b);
    ds_buf_free(&b);
    return ret;
}

static enum MHD_Result h_model_create(req *r)
{
    if (writer_follows(r->h->srv->writer))
        return http__replica_refuse(r);
    ds_error e;
    json_val *root;
    if (http__body(r, (req_kind)-1, &root, &e))
        return http__error(r, &e);
    ds_model *def = NULL;
    size_t nlen = 0;
    const json_val *nv = json_get(root, "name");
    const char *name = json_kind_of(nv) == JSON_STRING ? json_str(nv, &nlen) : NULL;
    int rc = request_model(root, &def, &e);
    ds_error ae; /* 403 after the definition's 400s, before its 404s and 422s */
    if (rc != -DS_MALFORMED && http__authorize_n(r, name, nlen, &ae)) {
        rc = -DS_FORBIDDEN;
        e = ae;
    }
    json_free(root);
    if (rc == 0)
        rc = writer_create_model(r->h->srv->writer, def, &e);
    if (rc) {
        model_free(def);
        return http__error(r, &e);
    }
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 4096);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "name");
    jw_str(&w, def->name);
    jw_key(&w, "seq");
    jw_int(&w, 0);
    jw_obj_end(&w);
    model_free(def);
    enum MHD_Result ret = http__json(r, 201, &b);
    ds_buf_free(&b);
    return ret;
}

/* ---- members -------------------------------------------------------------------------- */

static enum MHD_Result h_members(req *r)
{
    reading rd;
    const ds_model *m = read_begin(r, &rd);
    if (!m)
        return MHD_YES;
    enum MHD_Result ret;
    ds_error e;
    int k = request_dim(m, r->dim, strlen(r->dim), &e);
    const char *p = http__arg(r, "parent"); /* whole: http_url.c refused a NUL */
    int32_t parent = k >= 0 ? m->dims[k].root : -1;
    if (k < 0 || (p && request_member(m, k, p, strlen(p), &parent, &e))) {
        ret = http__error(r, &e);
    } else {
        const ds_dim *d = &m->dims[k];
        ds_buf b;
        json_w w;
        ds_buf_init(&b, (size_t)1 << 28);
        jw_init(&w, &b);
        jw_obj(&w);
        jw_key(&w, "members");
        jw_arr(&w);
        for (int32_t j = d->kid_start[parent]; j < d->kid_start[parent + 1]; j++) {
            int32_t x = d->kids[j];
            jw_obj(&w);
            jw_key(&w, "key");
            jw_str(&w, d->members[x].key);
            jw_key(&w, "name");
            jw_str(&w, d->members[x].name);
            jw_key(&w, "leaf");
            jw_bool(&w, model_is_leaf(d, x));
            jw_key(&w, "children");
            jw_int(&w, d->kid_start[x + 1] - d->kid_start[x]);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_key(&w, "seq");
        jw_int(&w, engine_seq(rd.mr->engine));
        jw_obj_end(&w);
        ret = http__json(r, 200, &b);
        ds_buf_free(&b);
    }
    read_end(r, &rd);
    return ret;
}

static enum MHD_Result h_member_op(req *r)
{
    return http__write(r, REQ_MEMBER, r->dim);
}

/* ---- cells and grids ------------------------------------------------------------------- */

/* measure=M&<dim>=<member>...: every parameter is whole and given once
 * (http_url.c); each other name is a dimension. */
static int cell_args(req *r, const ds_model *m, ds_cell *cell, int *measure, ds_error *err)
{
    for (int k = 0; k < m->ndims; k++)
        cell->m[k] = m->dims[k].root;
    const char *mv = http__arg(r, "measure");
    if (!mv)
        return ds_fail(err, DS_MALFORMED, "measure", "'measure' is required");
    req_errors fe = {0};
    for (int i = 0; i < r->nparams; i++) {
        const http_param *p = &r->params[i];
        const char *v = p->val ? p->val : "";
        ds_error e;
        if ((p->klen == 7 && memcmp(p->key, "measure", 7) == 0) ||
            (p->klen == 7 && memcmp(p->key, "min_seq", 7) == 0))
            continue;
        int d = request_dim(m, p->key, p->klen, &e);
        if (d < 0 || request_member(m, d, v, p->val ? p->vlen : 0, &cell->m[d], &e))
            request_note(&fe, &e);
    }
    ds_error e;
    if ((*measure = request_measure(m, mv, strlen(mv), &e)) < 0)
        request_note(&fe, &e);
    if (fe.have)
        *err = fe.e;
    return fe.have ? -(int)fe.e.code : 0;
}

static enum MHD_Result h_cell(req *r)
{
    reading rd;
    const ds_model *m = read_begin(r, &rd);
    if (!m)
        return MHD_YES;
    ds_cell cell;
    int measure = -1;
    ds_error e;
    ds_i128 v;
    int64_t seq;
    enum MHD_Result ret;
    if (cell_args(r, m, &cell, &measure, &e) ||
        engine_read_cell(rd.mr->engine, &cell, measure, &v, &seq, &e)) {
        ret = http__error(r, &e);
    } else {
        ds_buf b;
        json_w w;
        ds_buf_init(&b, 4096);
        jw_init(&w, &b);
        jw_obj(&w);
        jw_key(&w, "value");
        jw_dec(&w, v, m->measures[measure].scale);
        jw_key(&w, "seq");
        jw_int(&w, seq);
        jw_obj_end(&w);
        ret = http__json(r, 200, &b);
        ds_buf_free(&b);
    }
    read_end(r, &rd);
    return ret;
}

static enum MHD_Result h_grid(req *r)
{
    ds_error e;
    json_val *root;
    if (http__body(r, (req_kind)-1, &root, &e))
        return http__error(r, &e);
    if (request_grid_shape(root, &e)) { /* 400s before the model's 404 */
        json_free(root);
        return http__error(r, &e);
    }
    reading rd;
    const ds_model *m = read_begin(r, &rd);
    if (!m) {
        json_free(root);
        return MHD_YES;
    }
    ds_grid_spec g = {0};
    int32_t *rows = NULL, *cols = NULL;
    ds_i128 *v = NULL;
    int64_t seq;
    int rc = request_grid(m, root, &g, &rows, &cols, &e);
    int64_t cells = (int64_t)g.nrows * (int64_t)g.ncols, max = r->h->srv->o.cells_max;
    if (rc == 0 && cells > max) {
        rc = ds_fail(&e, DS_TOO_MANY_CELLS, "grid",
                     "the grid has %" PRId64 " cells; the limit is %" PRId64 " (--cells-max)",
                     cells, max);
        e.has_count = true;
        e.count = cells;
        e.limit = max;
    }
    if (rc == 0) {
        v = xmalloc_array(g.nrows * g.ncols, sizeof *v);
        rc = engine_read_grid(rd.mr->engine, &g, v, &seq, &e);
    }
    enum MHD_Result ret;
    if (rc) {
        ret = http__error(r, &e);
    } else {
        ds_buf b;
        json_w w;
        ds_buf_init(&b, (size_t)1 << 30);
        jw_init(&w, &b);
        request_put_grid(&w, m, &g, v, seq);
        ret = http__json(r, 200, &b);
        ds_buf_free(&b);
    }
    free(v);
    free(rows);
    free(cols);
    json_free(root);
    read_end(r, &rd);
    return ret;
}

/* ---- views --------------------------------------------------------------------------------- */

static enum MHD_Result h_views(req *r)
{
    reading rd;
    const ds_model *m = read_begin(r, &rd);
    if (!m)
        return MHD_YES;
    char **names;
    size_t n = store_view_list(http__res(r->h)->reader, m, &names);
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 1 << 20);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "views");
    jw_arr(&w);
    for (size_t i = 0; i < n; i++) {
        jw_str(&w, names[i]);
        free(names[i]);
    }
    free(names);
    jw_arr_end(&w);
    jw_obj_end(&w);
    read_end(r, &rd);
    enum MHD_Result ret = http__json(r, 200, &b);
    ds_buf_free(&b);
    return ret;
}

enum { VIEW_FILTERS = 16 };

/* limit=N and col=value filters (every parameter whole and given once:
 * http_url.c). */
static int view_args(req *r, const char **cols, const char **vals, int *n, int64_t *limit,
                     ds_error *err)
{
    *n = 0;
    *limit = 10000;
    for (int i = 0; i < r->nparams; i++) {
        const http_param *p = &r->params[i];
        if (p->klen == 7 && memcmp(p->key, "min_seq", 7) == 0)
            continue;
        if (p->klen == 5 && memcmp(p->key, "limit", 5) == 0) {
            if (!http__int(p->val, 1, 100000, limit))
                return ds_fail(err, DS_MALFORMED, "limit", "'limit' is 1 to 100000");
            continue;
        }
        if (*n == VIEW_FILTERS)
            return ds_fail(err, DS_MALFORMED, "query", "a view takes at most %d filters",
                           VIEW_FILTERS);
        cols[*n] = p->key;
        vals[(*n)++] = p->val ? p->val : "";
    }
    return 0;
}

static void put_table(json_w *w, const ds_table *t, int64_t seq)
{
    jw_obj(w);
    jw_key(w, "rows");
    jw_arr(w);
    for (size_t i = 0; i < t->nrows; i++) {
        jw_obj(w);
        for (int c = 0; c < t->ncols; c++) {
            const char *v = t->cells[i * (size_t)t->ncols + (size_t)c];
            jw_key(w, t->names[c]);
            if (!v)
                jw_null(w);
            else if (t->kinds[c] == COL_NUMBER)
                jw_raw(w, v, strlen(v));
            else if (t->kinds[c] == COL_BOOL)
                jw_bool(w, strcmp(v, "true") == 0);
            else
                jw_str(w, v);
        }
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_key(w, "seq");
    jw_int(w, seq);
    jw_obj_end(w);
}

static enum MHD_Result h_view(req *r)
{
    reading rd;
    const ds_model *m = read_begin(r, &rd);
    if (!m)
        return MHD_YES;
    const char *cols[VIEW_FILTERS], *vals[VIEW_FILTERS];
    int n;
    int64_t limit, min_seq = 0;
    ds_error e;
    ds_table t;
    int64_t seq;
    enum MHD_Result ret = MHD_YES;
    const char *ms = http__arg(r, "min_seq"); /* checked by read_begin */
    if (ms)
        http__int(ms, 0, INT64_MAX / 2, &min_seq);
    ds_store *st = r->h->srv->store;
    const ds_model *sm = NULL; /* the catalog the database has */
    if (view_args(r, cols, vals, &n, &limit, &e)) {
        ret = http__error(r, &e);
    } else if (!read_persisted(r, &rd, min_seq)) {
        ret = MHD_YES;
    } else if (!(sm = store_model_acquire(st, r->model, strlen(r->model))) ||
               store_read_view(http__res(r->h)->reader, sm, r->view, cols, vals, n, (size_t)limit,
                               &t, &seq, &e)) {
        if (!sm)
            ds_fail(&e, DS_NOT_FOUND, "table", "no table '%s'", r->model);
        ret = http__error(r, &e);
    } else {
        ds_buf b;
        json_w w;
        ds_buf_init(&b, (size_t)1 << 30);
        jw_init(&w, &b);
        put_table(&w, &t, seq);
        ret = http__json(r, 200, &b);
        ds_buf_free(&b);
        store_table_free(&t);
    }
    if (sm)
        store_model_release(st, sm);
    read_end(r, &rd);
    return ret;
}

/* ---- the rest of the write and feed routes ----------------------------------------------- */

static enum MHD_Result h_update_cell(req *r)
{
    return http__write(r, REQ_UPDATE_CELL, NULL);
}

static enum MHD_Result h_cells(req *r)
{
    return http__write(r, REQ_CELL, NULL);
}

static enum MHD_Result h_batch(req *r)
{
    return http__write(r, REQ_BATCH, NULL);
}

static enum MHD_Result h_get_updates(req *r)
{
    return http__changes(r, true);
}

static enum MHD_Result h_changes(req *r)
{
    return http__changes(r, false);
}

/* ---- routing ------------------------------------------------------------------------------------
 */

typedef struct route {
    const char *method;
    const char *pattern; /* segments; {m} {d} {v} capture, * takes the rest */
    handler_fn fn;
    const char *metric;
    bool public_route, ticket_ok;
    key_role need;
    bool body;                 /* the role is checked after the body */
    const char *const *params; /* the query parameters it takes (NULL: none) */
    bool any_params;           /* and other names: dimensions, a view's columns */
} route;

static const char *const q_updates[] = {"table", "since", "timeout", "detail", NULL},
                         *q_changes[] = {"since", "timeout", "detail", NULL},
                         *q_stream[] = {"since", "ticket", "detail", NULL},
                         *q_members[] = {"parent", "min_seq", NULL},
                         *q_cell[] = {"measure", "min_seq", NULL},
                         *q_view[] = {"limit", "min_seq", NULL}, *q_read[] = {"min_seq", NULL};

static const route routes[] = {
    {"GET", "/", h_static, "static", true, false, ROLE_NONE, false, NULL, false},
    {"GET", "/grid/*", h_static, "static", true, false, ROLE_NONE, false, NULL, false},
    {"GET", "/health", h_health, "health", true, false, ROLE_NONE, false, NULL, false},
    {"GET", "/ready", h_ready, "ready", false, false, ROLE_VIEWER, false, NULL, false},
    {"GET", "/metrics", h_metrics, "metrics", false, false, ROLE_ADMIN, false, NULL, false},
    {"GET", "/openapi.json", h_static, "static", true, false, ROLE_NONE, false, NULL, false},
    {"GET", "/docs", h_static, "static", true, false, ROLE_NONE, false, NULL, false},
    {"GET", "/docs/*", h_static, "static", true, false, ROLE_NONE, false, NULL, false},
    {"POST", "/update_cell", h_update_cell, "update_cell", false, false, ROLE_EDITOR, true, NULL,
     false},
    {"GET", "/get_updates", h_get_updates, "get_updates", false, false, ROLE_VIEWER, false,
     q_updates, false},
    {"GET", "/v1/models", h_models, "models", false, false, ROLE_VIEWER, false, NULL, false},
    {"POST", "/v1/models", h_model_create, "models_create", false, false, ROLE_ADMIN, true, NULL,
     false},
    {"GET", "/v1/models/{m}", h_model, "model", false, false, ROLE_VIEWER, false, q_read, false},
    {"DELETE", "/v1/models/{m}", h_model_drop, "model_delete", false, false, ROLE_ADMIN, false,
     NULL, false},
    {"GET", "/v1/models/{m}/dimensions/{d}/members", h_members, "members", false, false,
     ROLE_VIEWER, false, q_members, false},
    {"POST", "/v1/models/{m}/dimensions/{d}/members", h_member_op, "member_op", false, false,
     ROLE_ADMIN, true, NULL, false},
    {"GET", "/v1/models/{m}/cell", h_cell, "cell", false, false, ROLE_VIEWER, false, q_cell, true},
    {"POST", "/v1/models/{m}/grid", h_grid, "grid", false, false, ROLE_VIEWER, true, q_read, false},
    {"GET", "/v1/models/{m}/views", h_views, "views", false, false, ROLE_VIEWER, false, q_read,
     false},
    {"GET", "/v1/models/{m}/views/{v}", h_view, "view", false, false, ROLE_VIEWER, false, q_view,
     true},
    {"POST", "/v1/models/{m}/cells", h_cells, "cells", false, false, ROLE_EDITOR, true, NULL,
     false},
    {"POST", "/v1/models/{m}/cells:batch", h_batch, "cells_batch", false, false, ROLE_EDITOR, true,
     NULL, false},
    {"GET", "/v1/models/{m}/changes", h_changes, "changes", false, false, ROLE_VIEWER, false,
     q_changes, false},
    {"GET", "/v1/models/{m}/events", http__events, "events", false, true, ROLE_VIEWER, false,
     q_stream, false},
    {"GET", "/v1/models/{m}/ws", http__ws, "ws", false, true, ROLE_VIEWER, false, q_stream, false},
    {"POST", "/v1/tickets", h_ticket, "tickets", false, false, ROLE_VIEWER, false, NULL, false},
    /* backups (http_backup.c) */
    {"POST", "/v1/backups", http__backup_create, "backups_create", false, false, ROLE_ADMIN, true,
     NULL, false},
    {"GET", "/v1/backups", http__backup_list, "backups", false, false, ROLE_ADMIN, false, NULL,
     false},
    {"GET", "/v1/backups/*", http__backup_get, "backup", false, false, ROLE_ADMIN, false, NULL,
     false},
};

/* Matches url against a pattern; the captures, undecoded, go to r (decoded
 * by http__url once the route is chosen). */
static bool match(req *r, const char *pattern, const char *url)
{
    const char *p = pattern, *u = url;
    r->ncaps = 0;
    while (*p && *u) {
        if (*p != '/' || *u != '/')
            return false;
        p++;
        u++;
        const char *pe = p + strcspn(p, "/"), *ue = u + strcspn(u, "/");
        if (*p == '*')
            return true;
        if (*p == '{') {
            if (ue == u || r->ncaps == HTTP_CAPS_MAX)
                return false;
            r->caps[r->ncaps++] = (http_cap){u, (size_t)(ue - u), p[1]};
        } else if (pe - p != ue - u || memcmp(p, u, (size_t)(pe - p)) != 0) {
            return false;
        }
        p = pe;
        u = ue;
    }
    return *p == 0 && *u == 0;
}

int http__route(req *r, const char *url, const char *method)
{
    bool path_ok = false;
    r->allow_buf[0] = 0;
    r->url = url;
    for (size_t i = 0; i < DS_ARRAY_LEN(routes); i++) {
        if (!match(r, routes[i].pattern, url))
            continue;
        path_ok = true;
        if (strcmp(routes[i].method, method) != 0) {
            r->public_route |= routes[i].public_route; /* its 405 needs no key */
            if (!strstr(r->allow_buf, routes[i].method)) {
                size_t n = strlen(r->allow_buf);
                snprintf(r->allow_buf + n, sizeof r->allow_buf - n, "%s%s", n ? ", " : "",
                         routes[i].method);
            }
            continue;
        }
        r->handler = routes[i].fn;
        r->public_route = routes[i].public_route;
        r->ticket_ok = routes[i].ticket_ok;
        r->need = routes[i].need;
        r->body_route = routes[i].body;
        r->known_params = routes[i].params;
        r->any_params = routes[i].any_params;
        r->route_metric = metrics_route(&r->h->srv->metrics, routes[i].metric);
        return 0;
    }
    r->ncaps = 0;
    r->route_metric = metrics_route(&r->h->srv->metrics, path_ok ? "method" : "unknown");
    if (path_ok)
        r->allow = r->allow_buf;
    return path_ok ? 405 : 404;
}

/* ---- static files -----------------------------------------------------------------------------
 */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    ds_buf b;
    ds_buf_init(&b, (size_t)64 << 20);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        ds_buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    return ds_buf_steal(&b);
}

void http__load_static(http_server *h)
{
    static const struct {
        const char *url, *file, *type;
    } files[] = {
        {"/openapi.json", "web/openapi.json", "application/json"},
        {"/docs", "web/docs.html", "text/html; charset=utf-8"},
        {"/docs/assets/redoc.standalone.js", "node_modules/redoc/bundles/redoc.standalone.js",
         "application/javascript"},
        /* the live grid (web/grid/, docs/architecture.md "The web grid") */
        {"/", "web/grid/index.html", "text/html; charset=utf-8"},
        {"/grid/grid.js", "web/grid/grid.js", "application/javascript"},
        {"/grid/grid.css", "web/grid/grid.css", "text/css"},
    };
    _Static_assert(DS_ARRAY_LEN(files) <= sizeof h->files / sizeof h->files[0],
                   "http_server.files holds every static file");
    for (size_t i = 0; i < DS_ARRAY_LEN(files); i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", h->srv->o.web_dir ? h->srv->o.web_dir : ".",
                 files[i].file);
        static_file *f = &h->files[h->nfiles++];
        f->path = files[i].url;
        f->type = files[i].type;
        f->data = slurp(path, &f->len);
        if (!f->data)
            log_warn("http: %s is not installed (%s): %s answers 404", files[i].file, path,
                     files[i].url);
    }
}

void http__free_static(http_server *h)
{
    for (int i = 0; i < h->nfiles; i++)
        free(h->files[i].data);
    h->nfiles = 0;
}
