/* http_read.c: routes, reads (models, members, cell, grid, views),
 * model administration, operations endpoints and static files. */
#include "http_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "log.h"
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
    bool ready = redis && writer && srv->redis_up;
    ds_buf b;
    ds_buf_init(&b, 4096);
    ds_buf_printf(&b, "{\"ready\":%s,\"redis\":%s,\"writer\":%s,\"lag\":%" PRId64 "}",
                  ready ? "true" : "false", redis ? "true" : "false", writer ? "true" : "false",
                  srv->writer ? writer_lag(srv->writer) : 0);
    enum MHD_Result ret = http__json(r, ready ? 200 : 503, &b);
    ds_buf_free(&b);
    return ret;
}

static enum MHD_Result h_metrics(req *r)
{
    ds_server *srv = r->h->srv;
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
                  ls.sse, ls.ws, ls.waiting, ls.cut_off, srv->writer ? writer_lag(srv->writer) : 0);
    char **names;
    size_t n = store_model_names(srv->store, &names);
    ds_buf_puts(&b, "# HELP duckspread_seq The last applied seq of each model.\n"
                    "# TYPE duckspread_seq gauge\n");
    for (size_t i = 0; i < n; i++) {
        ds_buf_puts(&b, "duckspread_seq{model=\"");
        for (const char *p = names[i]; *p; p++) { /* label escaping */
            if (*p == '"' || *p == '\\')
                ds_buf_putc(&b, '\\');
            ds_buf_putc(&b, *p == '\n' ? ' ' : *p);
        }
        ds_buf_printf(&b, "\"} %" PRId64 "\n", store_model_seq(srv->store, names[i]));
        free(names[i]);
    }
    free(names);
    enum MHD_Result ret = http__reply(r, 200, "text/plain; version=0.0.4", b.data, b.len);
    ds_buf_free(&b);
    return ret;
}

static enum MHD_Result h_static(req *r)
{
    for (int i = 0; i < r->h->nfiles; i++)
        if (strcmp(r->h->files[i].path, r->view) == 0 && r->h->files[i].data)
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

static const ds_model *model_or_404(req *r)
{
    const ds_model *m = store_model_acquire(r->h->srv->store, r->model, strlen(r->model));
    if (!m) {
        ds_error e;
        ds_fail(&e, DS_NOT_FOUND, "table", "no table '%s'", r->model);
        http__error(r, &e);
    }
    return m;
}

static enum MHD_Result h_models(req *r)
{
    ds_store *s = r->h->srv->store;
    char **names;
    size_t n = store_model_names(s, &names);
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
        jw_obj(&w);
        jw_key(&w, "name");
        jw_str(&w, names[i]);
        jw_key(&w, "seq");
        jw_int(&w, store_model_seq(s, names[i]));
        jw_obj_end(&w);
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
    const ds_model *m = model_or_404(r);
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
    jw_int(&w, store_model_seq(r->h->srv->store, m->name));
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
    store_model_release(r->h->srv->store, m);
    enum MHD_Result ret = http__json(r, 200, &b);
    ds_buf_free(&b);
    return ret;
}

static enum MHD_Result h_model_drop(req *r)
{
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

/* Builds a model from {"name", "dimensions": [{"name", "root": {"key",
 * "name"}, "members": [{"key", "name", "parent"}]}], "measures": [...]}. */
static const char *const model_fields[] = {"name", "dimensions", "measures", NULL},
                         *dim_fields[] = {"name", "root", "members", NULL},
                         *root_fields[] = {"key", "name", NULL},
                         *member_fields[] = {"key", "name", "parent", NULL},
                         *measure_fields[] = {"name", "scale", NULL};

static int parse_definition(const json_val *body, ds_model **out, ds_error *err)
{
    if (request_only_fields(body, model_fields, "", err))
        return -DS_MALFORMED;
    json_val *name = json_get(body, "name"), *dims = json_get(body, "dimensions"),
             *meas = json_get(body, "measures");
    if (!name || json_kind_of(name) != JSON_STRING || !dims || json_kind_of(dims) != JSON_ARRAY ||
        !meas || json_kind_of(meas) != JSON_ARRAY)
        return ds_fail(err, DS_MALFORMED, "body",
                       "a model needs 'name', 'dimensions' (array) and 'measures' (array)");
    size_t len;
    const char *n = json_str(name, &len);
    int rc = model_check_name(n, len, "table", err);
    if (rc)
        return rc;
    ds_model *m = model_new(0, n);
    for (size_t k = 0; rc == 0 && k < json_len(dims); k++) {
        json_val *d = json_at(dims, k), *dn = json_get(d, "name"), *root = json_get(d, "root"),
                 *mem = json_get(d, "members");
        if (!dn || json_kind_of(dn) != JSON_STRING || (mem && json_kind_of(mem) != JSON_ARRAY)) {
            rc = ds_fail(err, DS_MALFORMED, "dimensions",
                         "a dimension needs 'name' and an array 'members'");
            break;
        }
        if ((rc = request_only_fields(d, dim_fields, "dimensions[].", err)) ||
            (root && (rc = request_only_fields(root, root_fields, "root.", err))))
            break;
        size_t l1, l2;
        json_val *rk = root ? json_get(root, "key") : NULL,
                 *rn = root ? json_get(root, "name") : NULL;
        const char *rkey = rk && json_kind_of(rk) == JSON_STRING ? json_str(rk, &l1) : "All";
        const char *rname = rn && json_kind_of(rn) == JSON_STRING ? json_str(rn, &l2) : rkey;
        rc = model_add_dim(m, (int32_t)k, json_str(dn, &len), rkey, rname, err);
        if (rc < 0)
            break;
        rc = 0;
        ds_dim *dim = &m->dims[m->ndims - 1];
        for (size_t i = 0; rc == 0 && mem && i < json_len(mem); i++) {
            json_val *x = json_at(mem, i), *key = json_get(x, "key"), *mn = json_get(x, "name"),
                     *par = json_get(x, "parent");
            if (!key || json_kind_of(key) != JSON_STRING) {
                rc = ds_fail(err, DS_MALFORMED, "members", "a member needs a 'key'");
                break;
            }
            if ((rc = request_only_fields(x, member_fields, "members[].", err)))
                break;
            int32_t parent = dim->root;
            if (par && json_kind_of(par) == JSON_STRING) {
                const char *p = json_str(par, &len);
                model_dim_index(dim);
                parent = model_find_key(dim, p, len);
                if (parent < 0) {
                    rc = ds_fail(err, DS_NOT_FOUND, "cell",
                                 "parent '%.100s' is not listed before its children", p);
                    break;
                }
            }
            const char *k2 = json_str(key, &len);
            const char *nm = mn && json_kind_of(mn) == JSON_STRING ? json_str(mn, &l1) : k2;
            if (model_find_key(dim, k2, len) >= 0) {
                rc = ds_fail(err, DS_INVALID_VALUE, "key", "member key '%.100s' is listed twice",
                             k2);
                break;
            }
            rc = model_add_member(dim, parent, k2, nm, (int32_t)i, err);
            rc = rc < 0 ? rc : 0;
            model_dim_index(dim);
        }
    }
    for (size_t k = 0; rc == 0 && k < json_len(meas); k++) {
        json_val *x = json_at(meas, k), *mn = json_get(x, "name"), *sc = json_get(x, "scale");
        if (!mn || json_kind_of(mn) != JSON_STRING) {
            rc = ds_fail(err, DS_MALFORMED, "measures", "a measure needs a 'name'");
            break;
        }
        if ((rc = request_only_fields(x, measure_fields, "measures[].", err)))
            break;
        int64_t scale = 0;
        if (sc) {
            size_t sl;
            bool exact;
            const char *t = json_num(sc, &sl, &exact);
            ds_i128 v = 0;
            if (json_kind_of(sc) != JSON_NUMBER || dec_parse(t, sl, DEC_JSON, 0, 18, &v))
                rc = ds_fail(err, DS_INVALID_VALUE, "scale", "'scale' is 0 to 18");
            scale = (int64_t)v;
        }
        if (rc == 0)
            rc = model_add_measure(m, (int32_t)k, json_str(mn, &len), (int)scale, err);
        rc = rc < 0 ? rc : 0;
    }
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

static enum MHD_Result h_model_create(req *r)
{
    ds_error e;
    json_val *root;
    if (http__body(r, (req_kind)-1, &root, &e))
        return http__error(r, &e);
    ds_model *def = NULL;
    size_t nlen = 0;
    const json_val *nv = json_get(root, "name");
    const char *name = nv ? json_str(nv, &nlen) : NULL;
    char nbuf[DS_IDENT_MAX + 1];
    snprintf(nbuf, sizeof nbuf, "%.*s", (int)(nlen < DS_IDENT_MAX ? nlen : DS_IDENT_MAX),
             name ? name : "");
    int rc = http__authorize(r, nbuf, &e); /* 403 before the definition's 404s and 422s */
    if (rc == 0)
        rc = parse_definition(root, &def, &e);
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
    const ds_model *m = model_or_404(r);
    if (!m)
        return MHD_YES;
    enum MHD_Result ret;
    ds_error e;
    int k = model_find_dim(m, r->dim, strlen(r->dim));
    char pb[DS_IDENT_MAX * 3 + 1];
    const char *p = http__arg(r, "parent", pb, sizeof pb);
    int32_t parent = k >= 0 ? m->dims[k].root : -1;
    if (!p && MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "parent")) {
        /* not the root's children: the client named a parent */
        ret = http__fail(r, DS_MALFORMED, "parent",
                         "'parent' is not validly %-escaped, holds a NUL byte or is too long");
    } else if (k < 0) {
        ds_fail(&e, DS_NOT_FOUND, "dimension", "table '%s' has no dimension '%.100s'", m->name,
                r->dim);
        ret = http__error(r, &e);
    } else if (p && request_member(m, k, p, strlen(p), &parent, &e)) {
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
        jw_int(&w, store_model_seq(r->h->srv->store, m->name));
        jw_obj_end(&w);
        ret = http__json(r, 200, &b);
        ds_buf_free(&b);
    }
    store_model_release(r->h->srv->store, m);
    return ret;
}

static enum MHD_Result h_member_op(req *r)
{
    return http__write(r, REQ_MEMBER, r->dim);
}

/* ---- cells and grids ------------------------------------------------------------------- */

typedef struct cell_args {
    req *r;
    const ds_model *m;
    ds_cell cell;
    int measure;
    ds_error e;
    bool failed;
} cell_args;

static enum MHD_Result each_cell_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    cell_args *a = cls;
    char k[DS_IDENT_MAX * 3 + 1], v[DS_IDENT_MAX * 3 + 1];
    size_t kl, vl;
    if (a->failed)
        return MHD_NO;
    if (!http__unescape(key, strlen(key), true, k, sizeof k, &kl) ||
        !http__unescape(value ? value : "", value ? strlen(value) : 0, true, v, sizeof v, &vl)) {
        ds_fail(&a->e, DS_MALFORMED, "query",
                "a query parameter is not validly %%-escaped, holds a NUL byte or is too long");
        a->failed = true;
        return MHD_NO;
    }
    if (strcmp(k, "measure") == 0) {
        a->measure = model_find_measure(a->m, v, vl);
        if (a->measure < 0) {
            ds_fail(&a->e, DS_NOT_FOUND, "column", "table '%s' has no column '%.100s'", a->m->name,
                    v);
            a->failed = true;
        }
        return a->failed ? MHD_NO : MHD_YES;
    }
    if (strcmp(k, "ticket") == 0)
        return MHD_YES;
    int d = model_find_dim(a->m, k, kl);
    if (d < 0) {
        ds_fail(&a->e, DS_NOT_FOUND, "dimension", "table '%s' has no dimension '%.100s'",
                a->m->name, k);
        a->failed = true;
    } else if (request_member(a->m, d, v, vl, &a->cell.m[d], &a->e)) {
        a->failed = true;
    }
    return a->failed ? MHD_NO : MHD_YES;
}

static enum MHD_Result h_cell(req *r)
{
    const ds_model *m = model_or_404(r);
    if (!m)
        return MHD_YES;
    cell_args a = {.r = r, .m = m, .measure = -1};
    for (int k = 0; k < m->ndims; k++)
        a.cell.m[k] = m->dims[k].root;
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, each_cell_arg, &a);
    if (!a.failed && a.measure < 0) {
        ds_fail(&a.e, DS_MALFORMED, "measure", "'measure' is required");
        a.failed = true;
    }
    ds_i128 v;
    int64_t seq;
    if (!a.failed &&
        store_read_cell(http__res(r->h)->reader, m, &a.cell, a.measure, &v, &seq, &a.e))
        a.failed = true;
    enum MHD_Result ret;
    if (a.failed) {
        ret = http__error(r, &a.e);
    } else {
        ds_buf b;
        json_w w;
        ds_buf_init(&b, 4096);
        jw_init(&w, &b);
        jw_obj(&w);
        jw_key(&w, "value");
        jw_dec(&w, v, m->measures[a.measure].scale);
        jw_key(&w, "seq");
        jw_int(&w, seq);
        jw_obj_end(&w);
        ret = http__json(r, 200, &b);
        ds_buf_free(&b);
    }
    store_model_release(r->h->srv->store, m);
    return ret;
}

/* {"dimension": d, "members": [...]} -> dim index and member ids. */
static int grid_axis(const ds_model *m, json_val *axis, const char *what, int *dim, int32_t **ids,
                     size_t *n, ds_error *err)
{
    static const char *const axis_fields[] = {"dimension", "members", NULL};
    if (axis && json_kind_of(axis) == JSON_OBJECT) {
        char where[16];
        snprintf(where, sizeof where, "%s.", what);
        if (request_only_fields(axis, axis_fields, where, err))
            return -DS_MALFORMED;
    }
    json_val *d = axis ? json_get(axis, "dimension") : NULL;
    json_val *mem = axis ? json_get(axis, "members") : NULL;
    if (!d || json_kind_of(d) != JSON_STRING || !mem || json_kind_of(mem) != JSON_ARRAY ||
        json_len(mem) == 0 || json_len(mem) > 10000)
        return ds_fail(err, DS_MALFORMED, what, "'%s' needs 'dimension' and 1 to 10000 'members'",
                       what);
    size_t len;
    const char *dn = json_str(d, &len);
    *dim = model_find_dim(m, dn, len);
    if (*dim < 0)
        return ds_fail(err, DS_NOT_FOUND, "dimension", "table '%s' has no dimension '%.100s'",
                       m->name, dn);
    *n = json_len(mem);
    *ids = xmalloc_array(*n, sizeof **ids);
    for (size_t i = 0; i < *n; i++) {
        json_val *x = json_at(mem, i);
        if (json_kind_of(x) != JSON_STRING)
            return ds_fail(err, DS_MALFORMED, what, "members are keys or names (strings)");
        const char *s = json_str(x, &len);
        int rc = request_member(m, *dim, s, len, &(*ids)[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

static void put_grid(json_w *w, const ds_model *m, const ds_grid_spec *g, const ds_i128 *v,
                     int64_t seq)
{
    jw_obj(w);
    jw_key(w, "rows");
    jw_arr(w);
    for (size_t i = 0; i < g->nrows; i++)
        jw_str(w, m->dims[g->row_dim].members[g->rows[i]].key);
    jw_arr_end(w);
    jw_key(w, "cols");
    jw_arr(w);
    for (size_t j = 0; j < g->ncols; j++)
        jw_str(w, m->dims[g->col_dim].members[g->cols[j]].key);
    jw_arr_end(w);
    jw_key(w, "measure");
    jw_str(w, m->measures[g->measure].name);
    jw_key(w, "values");
    jw_arr(w);
    for (size_t i = 0; i < g->nrows; i++) {
        jw_arr(w);
        for (size_t j = 0; j < g->ncols; j++)
            jw_dec(w, v[i * g->ncols + j], m->measures[g->measure].scale);
        jw_arr_end(w);
    }
    jw_arr_end(w);
    jw_key(w, "seq");
    jw_int(w, seq);
    jw_obj_end(w);
}

static int grid_spec(const ds_model *m, json_val *root, ds_grid_spec *g, int32_t **rows,
                     int32_t **cols, ds_error *err)
{
    static const char *const grid_fields[] = {"measure", "rows", "cols", "filters", NULL};
    if (request_only_fields(root, grid_fields, "", err))
        return -DS_MALFORMED;
    json_val *mv = json_get(root, "measure"), *f = json_get(root, "filters");
    if (!mv || json_kind_of(mv) != JSON_STRING)
        return ds_fail(err, DS_MALFORMED, "measure", "'measure' is required");
    if (f && json_kind_of(f) != JSON_OBJECT)
        return ds_fail(err, DS_MALFORMED, "filters", "'filters' is an object");
    int rc = grid_axis(m, json_get(root, "rows"), "rows", &g->row_dim, rows, &g->nrows, err);
    if (rc == 0)
        rc = grid_axis(m, json_get(root, "cols"), "cols", &g->col_dim, cols, &g->ncols, err);
    if (rc)
        return rc;
    size_t len;
    const char *mn = json_str(mv, &len);
    g->measure = model_find_measure(m, mn, len);
    if (g->measure < 0)
        return ds_fail(err, DS_NOT_FOUND, "column", "table '%s' has no column '%.100s'", m->name,
                       mn);
    for (int k = 0; k < m->ndims; k++)
        g->fixed.m[k] = m->dims[k].root;
    size_t it = 0, klen;
    const char *key;
    json_val *v;
    while (f && json_next(f, &it, &key, &klen, &v)) {
        int d = model_find_dim(m, key, klen);
        if (d < 0)
            return ds_fail(err, DS_NOT_FOUND, "dimension", "table '%s' has no dimension '%.100s'",
                           m->name, key);
        if (json_kind_of(v) != JSON_STRING)
            return ds_fail(err, DS_MALFORMED, "filters", "filters name members (strings)");
        const char *s = json_str(v, &len);
        if ((rc = request_member(m, d, s, len, &g->fixed.m[d], err)))
            return rc;
    }
    g->rows = *rows;
    g->cols = *cols;
    return 0;
}

static enum MHD_Result h_grid(req *r)
{
    ds_error e;
    json_val *root;
    if (http__body(r, (req_kind)-1, &root, &e))
        return http__error(r, &e);
    const ds_model *m = model_or_404(r);
    if (!m) {
        json_free(root);
        return MHD_YES;
    }
    ds_grid_spec g = {0};
    int32_t *rows = NULL, *cols = NULL;
    ds_i128 *v = NULL;
    int64_t seq;
    int rc = grid_spec(m, root, &g, &rows, &cols, &e);
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
        rc = store_read_grid(http__res(r->h)->reader, m, &g, v, &seq, &e);
    }
    enum MHD_Result ret;
    if (rc) {
        ret = http__error(r, &e);
    } else {
        ds_buf b;
        json_w w;
        ds_buf_init(&b, (size_t)1 << 30);
        jw_init(&w, &b);
        put_grid(&w, m, &g, v, seq);
        ret = http__json(r, 200, &b);
        ds_buf_free(&b);
    }
    free(v);
    free(rows);
    free(cols);
    json_free(root);
    store_model_release(r->h->srv->store, m);
    return ret;
}

/* ---- views --------------------------------------------------------------------------------- */

static enum MHD_Result h_views(req *r)
{
    const ds_model *m = model_or_404(r);
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
    store_model_release(r->h->srv->store, m);
    enum MHD_Result ret = http__json(r, 200, &b);
    ds_buf_free(&b);
    return ret;
}

enum { VIEW_FILTERS = 16 };

typedef struct view_args {
    char *cols[VIEW_FILTERS], *vals[VIEW_FILTERS];
    int n;
    int64_t limit;
    bool bad;
} view_args;

static enum MHD_Result each_view_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    view_args *a = cls;
    char k[DS_IDENT_MAX * 3 + 1], v[4096];
    size_t kl, vl;
    if (!http__unescape(key, strlen(key), true, k, sizeof k, &kl) ||
        !http__unescape(value ? value : "", value ? strlen(value) : 0, true, v, sizeof v, &vl) ||
        a->n == VIEW_FILTERS) {
        a->bad = true;
        return MHD_NO;
    }
    if (strcmp(k, "limit") == 0) {
        char *end;
        a->limit = strtoll(v, &end, 10);
        a->bad |= *end || a->limit < 1 || a->limit > 100000;
        return MHD_YES;
    }
    if (strcmp(k, "ticket") == 0)
        return MHD_YES;
    a->cols[a->n] = xstrdup(k);
    a->vals[a->n++] = xstrdup(v);
    return MHD_YES;
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
    const ds_model *m = model_or_404(r);
    if (!m)
        return MHD_YES;
    view_args a = {.limit = 10000};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, each_view_arg, &a);
    ds_error e;
    ds_table t;
    int64_t seq;
    enum MHD_Result ret;
    if (a.bad)
        ret = http__fail(r, DS_MALFORMED, "query",
                         "bad query: at most 16 filters, limit 1 to 100000, valid escapes");
    else if (store_read_view(http__res(r->h)->reader, m, r->view, (const char *const *)a.cols,
                             (const char *const *)a.vals, a.n, (size_t)a.limit, &t, &seq, &e))
        ret = http__error(r, &e);
    else {
        ds_buf b;
        json_w w;
        ds_buf_init(&b, (size_t)1 << 30);
        jw_init(&w, &b);
        put_table(&w, &t, seq);
        ret = http__json(r, 200, &b);
        ds_buf_free(&b);
        store_table_free(&t);
    }
    for (int i = 0; i < a.n; i++) {
        free(a.cols[i]);
        free(a.vals[i]);
    }
    store_model_release(r->h->srv->store, m);
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
    bool body; /* the role is checked after the body */
} route;

static const route routes[] = {
    {"GET", "/health", h_health, "health", true, false, ROLE_NONE, false},
    {"GET", "/ready", h_ready, "ready", false, false, ROLE_VIEWER, false},
    {"GET", "/metrics", h_metrics, "metrics", false, false, ROLE_ADMIN, false},
    {"GET", "/openapi.json", h_static, "static", true, false, ROLE_NONE, false},
    {"GET", "/docs", h_static, "static", true, false, ROLE_NONE, false},
    {"GET", "/docs/*", h_static, "static", true, false, ROLE_NONE, false},
    {"POST", "/update_cell", h_update_cell, "update_cell", false, false, ROLE_EDITOR, true},
    {"GET", "/get_updates", h_get_updates, "get_updates", false, false, ROLE_VIEWER, false},
    {"GET", "/v1/models", h_models, "models", false, false, ROLE_VIEWER, false},
    {"POST", "/v1/models", h_model_create, "models_create", false, false, ROLE_ADMIN, true},
    {"GET", "/v1/models/{m}", h_model, "model", false, false, ROLE_VIEWER, false},
    {"DELETE", "/v1/models/{m}", h_model_drop, "model_delete", false, false, ROLE_ADMIN, false},
    {"GET", "/v1/models/{m}/dimensions/{d}/members", h_members, "members", false, false,
     ROLE_VIEWER, false},
    {"POST", "/v1/models/{m}/dimensions/{d}/members", h_member_op, "member_op", false, false,
     ROLE_ADMIN, true},
    {"GET", "/v1/models/{m}/cell", h_cell, "cell", false, false, ROLE_VIEWER, false},
    {"POST", "/v1/models/{m}/grid", h_grid, "grid", false, false, ROLE_VIEWER, true},
    {"GET", "/v1/models/{m}/views", h_views, "views", false, false, ROLE_VIEWER, false},
    {"GET", "/v1/models/{m}/views/{v}", h_view, "view", false, false, ROLE_VIEWER, false},
    {"POST", "/v1/models/{m}/cells", h_cells, "cells", false, false, ROLE_EDITOR, true},
    {"POST", "/v1/models/{m}/cells:batch", h_batch, "cells_batch", false, false, ROLE_EDITOR, true},
    {"GET", "/v1/models/{m}/changes", h_changes, "changes", false, false, ROLE_VIEWER, false},
    {"GET", "/v1/models/{m}/events", http__events, "events", false, true, ROLE_VIEWER, false},
    {"GET", "/v1/models/{m}/ws", http__ws, "ws", false, true, ROLE_VIEWER, false},
    {"POST", "/v1/tickets", h_ticket, "tickets", false, false, ROLE_VIEWER, false},
};

/* Matches url against a pattern; captures go to r. */
static bool match(req *r, const char *pattern, const char *url)
{
    const char *p = pattern, *u = url;
    while (*p && *u) {
        if (*p != '/' || *u != '/')
            return false;
        p++;
        u++;
        const char *pe = p + strcspn(p, "/"), *ue = u + strcspn(u, "/");
        if (*p == '*') {
            snprintf(r->view, sizeof r->view, "%s", url);
            return true;
        }
        if (*p == '{') {
            char *dst = p[1] == 'm' ? r->model : p[1] == 'd' ? r->dim : r->view;
            size_t len;
            if (ue == u || !http__unescape(u, (size_t)(ue - u), false, dst, DS_IDENT_MAX + 1, &len))
                return false;
        } else if (pe - p != ue - u || memcmp(p, u, (size_t)(pe - p)) != 0) {
            return false;
        }
        p = pe;
        u = ue;
    }
    if (*p == 0 && *u == 0 && strcmp(pattern, "/openapi.json") == 0)
        snprintf(r->view, sizeof r->view, "%s", url);
    if (*p == 0 && *u == 0 && strcmp(pattern, "/docs") == 0)
        snprintf(r->view, sizeof r->view, "%s", url);
    return *p == 0 && *u == 0;
}

int http__route(req *r, const char *url, const char *method)
{
    bool path_ok = false;
    r->allow_buf[0] = 0;
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
        r->route_metric = metrics_route(&r->h->srv->metrics, routes[i].metric);
        return 0;
    }
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
    };
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
