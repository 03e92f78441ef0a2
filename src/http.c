/* http.c: see http.h. Part one: the server, requests, auth, errors, the
 * write path and the change feed. Reads and admin routes are in
 * http_read.c; both share http_internal.h. */
#include "http_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "models.h"
#include "writer.h"

/* ---- per-thread resources -------------------------------------------------- */

static _Thread_local thread_res *t_res;

thread_res *http__res(http_server *h)
{
    if (t_res)
        return t_res;
    ds_reader *reader = store_reader_new(h->srv->store);
    if (!reader) { /* nothing kept: the thread's next request tries again */
        log_error("http: cannot open a database connection for a request thread");
        return NULL;
    }
    thread_res *r = xcalloc(1, sizeof *r);
    r->reader = reader;
    ds_error err;
    if (bus_open(&h->srv->bus, &r->bus, &err))
        log_error("http: %s", err.message);
    pthread_mutex_lock(&h->lock);
    r->next = h->res;
    h->res = r;
    pthread_mutex_unlock(&h->lock);
    t_res = r;
    return r;
}

/* ---- small helpers ---------------------------------------------------------- */

int http__status(ds_code code)
{
    switch (code) {
    case DS_OK:
        return 200;
    case DS_UNAUTHENTICATED:
        return 401;
    case DS_TOO_LARGE:
        return 413;
    case DS_NOT_JSON:
        return 415;
    case DS_MALFORMED:
        return 400;
    case DS_FORBIDDEN:
    case DS_OUT_OF_SCOPE:
        return 403;
    case DS_NOT_FOUND:
        return 404;
    case DS_INVALID_VALUE:
    case DS_OUT_OF_RANGE:
    case DS_AMBIGUOUS_MEMBER:
    case DS_TOO_MANY_CELLS:
        return 422;
    case DS_HELD:
    case DS_SIGNS_CANCEL:
    case DS_STALE:
    case DS_REQUEST_ID_REUSED:
        return 409;
    case DS_RATE_LIMITED:
        return 429;
    case DS_UNAVAILABLE:
        return 503;
    default:
        return 500;
    }
}

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s); /* path and arguments are decoded whole by http_url.c */
}

/* ---- responses ---------------------------------------------------------------- */

static void finish_metrics(req *r, int status)
{
    http_server *h = r->h;
    metrics_request(&h->srv->metrics, r->route_metric, status);
    metrics_observe(&h->srv->metrics.request_seconds, (double)(ds_now_ns() - r->start_ns) / 1e9);
}

enum MHD_Result http__reply(req *r, int status, const char *type, const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (r->allow)
        MHD_add_response_header(resp, "Allow", r->allow);
    if (r->retry_after)
        MHD_add_response_header(resp, "Retry-After", r->retry_after);
    if (r->extra_header)
        MHD_add_response_header(resp, r->extra_header, r->extra_value);
    if (r->close)
        MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    finish_metrics(r, status);
    r->replied = true;
    return ret;
}

enum MHD_Result http__json(req *r, int status, const ds_buf *b)
{
    return http__reply(r, status, "application/json", b->data, b->len);
}

enum MHD_Result http__error(req *r, const ds_error *e)
{
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 1 << 20);
    jw_init(&w, &b);
    request_put_error(&w, e);
    if (e->code == DS_RATE_LIMITED && !r->retry_after)
        r->retry_after = "1";
    enum MHD_Result ret = http__json(r, http__status(e->code), &b);
    ds_buf_free(&b);
    return ret;
}

/* An error whose status is not a ds_code (405, 410). */
enum MHD_Result http__error_raw(req *r, int status, const char *code, const char *msg, int64_t seq,
                                int64_t oldest)
{
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 1 << 16);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "error");
    jw_obj(&w);
    jw_key(&w, "code");
    jw_str(&w, code);
    jw_key(&w, "message");
    jw_str(&w, msg);
    if (seq >= -1 && status == 410) {
        jw_key(&w, "seq");
        jw_int(&w, seq);
        jw_key(&w, "oldest");
        jw_int(&w, oldest);
    }
    jw_obj_end(&w);
    jw_obj_end(&w);
    enum MHD_Result ret = http__json(r, status, &b);
    ds_buf_free(&b);
    return ret;
}

enum MHD_Result http__fail(req *r, ds_code code, const char *target, const char *msg)
{
    ds_error e;
    ds_fail(&e, code, target, "%s", msg);
    return http__error(r, &e);
}

int http__refusal(http_refusal *f, int status, const char *code, const char *target,
                  const char *fmt, ...)
{
    memset(f, 0, sizeof *f);
    f->status = status;
    f->code = code;
    snprintf(f->target, sizeof f->target, "%s", target);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
    return status;
}

enum MHD_Result http__refuse(req *r, const http_refusal *f)
{
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 1 << 16);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "error");
    jw_obj(&w);
    jw_key(&w, "code");
    jw_str(&w, f->code);
    jw_key(&w, "message");
    jw_str(&w, f->message);
    jw_key(&w, "target");
    jw_str(&w, f->target);
    jw_obj_end(&w);
    jw_obj_end(&w);
    r->extra_header = f->header;
    r->extra_value = f->header_value;
    enum MHD_Result ret = http__json(r, f->status, &b);
    ds_buf_free(&b);
    return ret;
}

/* ---- authentication ------------------------------------------------------------- */

/* No keys yet and listening on loopback: everyone is an admin, named by
 * X-User (a development convenience; other addresses refuse to start). */
static bool open_mode(http_server *h)
{
    return h->loopback && keyring_open_mode(h->srv->keys);
}

static int rate_limited(req *r, key_check kc, int retry, ds_error *err)
{
    snprintf(r->retry_buf, sizeof r->retry_buf, "%d", retry > 0 ? retry : 1);
    r->retry_after = r->retry_buf;
    if (kc == KEY_RATE)
        return ds_fail(err, DS_RATE_LIMITED, "key",
                       "this key is over its request rate (%g per second); retry in %d s",
                       r->h->srv->o.key_rate, retry > 0 ? retry : 1);
    return ds_fail(err, DS_RATE_LIMITED, "key",
                   "this key has %d requests and subscriptions open, its limit; retry when one "
                   "ends",
                   r->h->srv->o.key_open);
}

/* 0 when the request may go on (sets r->who and r->user). Keys never
 * appear in messages or logs. */
static int authenticate(req *r, bool public_route, bool ticket_ok, ds_error *err)
{
    http_server *h = r->h;
    memset(&r->who, 0, sizeof r->who);
    if (public_route) {
        snprintf(r->user, sizeof r->user, "anonymous");
        return 0;
    }
    if (open_mode(h)) {
        const char *xuser = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-User");
        if (xuser && !keys_valid_user(xuser)) /* whole: the head has no NUL (http__head_check) */
            return ds_fail(err, DS_MALFORMED, "X-User",
                           "X-User takes 1-%d printable ASCII characters without spaces",
                           KEY_USER_MAX);
        snprintf(r->who.user, sizeof r->who.user, "%s", xuser ? xuser : "api");
        snprintf(r->user, sizeof r->user, "%s", r->who.user);
        r->who.role = ROLE_ADMIN;
        return 0;
    }
    const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    const char *given = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-API-Key");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
        given = auth + 7;
    int retry = 0;
    key_check kc = KEY_UNKNOWN;
    if (given) {
        kc = keyring_check(h->srv->keys, given, strlen(given), &r->who, &retry);
    } else {
        /* the parameter whole: a longer value is refused by its length,
           never cut to a ticket */
        const char *t = ticket_ok ? http__arg(r, "ticket") : NULL;
        if (t && tickets_take(h->tickets, t, strlen(t), ds_now_ns(), &r->who) &&
            keyring_alive(h->srv->keys, r->who.id))
            kc = keyring_admit(h->srv->keys, &r->who, &retry);
    }
    if (kc == KEY_OK) {
        r->admitted = true;
        snprintf(r->user, sizeof r->user, "%s", r->who.user);
        return 0;
    }
    if (kc != KEY_UNKNOWN)
        return rate_limited(r, kc, retry, err);
    memset(&r->who, 0, sizeof r->who);
    return ds_fail(err, DS_UNAUTHENTICATED, NULL,
                   given ? "the API key is not valid (unknown or revoked)"
                   : ticket_ok
                       ? "this endpoint needs an API key (Authorization: Bearer <key>) or a "
                         "ticket from POST /v1/tickets (?ticket=)"
                       : "this endpoint needs an API key: Authorization: Bearer <key>");
}

int http__authorize(req *r, const char *model, ds_error *err)
{
    if (r->public_route)
        return 0;
    if (r->who.role < r->need)
        return ds_fail(err, DS_FORBIDDEN, "role", "this needs the %s role; %s is %s",
                       key_role_name(r->need), r->who.user, key_role_name(r->who.role));
    if (model && model[0] && r->who.model[0] && strcmp(model, r->who.model) != 0)
        return ds_fail(err, DS_FORBIDDEN, "model", "this key works on model '%s' only",
                       r->who.model);
    return 0;
}

int http__authorize_n(req *r, const char *model, size_t len, ds_error *err)
{
    int rc = http__authorize(r, NULL, err);
    if (rc == 0 && !r->public_route && model && r->who.model[0] &&
        (len != strlen(r->who.model) || memcmp(model, r->who.model, len) != 0))
        rc = ds_fail(err, DS_FORBIDDEN, "model", "this key works on model '%s' only", r->who.model);
    return rc;
}

/* ---- bodies --------------------------------------------------------------------------- */

/* Content type, parse, shape check (400s in the contract's order). */
int http__body(req *r, req_kind kind, json_val **root, ds_error *err)
{
    *root = NULL;
    if (r->too_large)
        return ds_fail(err, DS_TOO_LARGE, "body", "the body is larger than %zu bytes",
                       r->h->srv->o.body_max);
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    if (!ct || !strstr(ct, "json"))
        return ds_fail(err, DS_NOT_JSON, "body",
                       "the body must be JSON "
                       "(Content-Type: application/json)");
    json_limits lim = {.max_bytes = r->h->srv->o.body_max,
                       .max_depth = r->h->srv->o.json_depth,
                       .max_string = r->h->srv->o.json_string_max};
    int rc = json_parse(r->body.data, r->body.len, &lim, root, err);
    if (rc == 0 && kind != (req_kind)-1)
        rc = request_check(*root, kind, err);
    if (rc == 0)
        rc = http__authorize(r, r->model, err);
    if (rc == 0)
        rc = http__path_names(r, err); /* 422: a path's name that is none */
    if (rc) {
        json_free(*root);
        *root = NULL;
    }
    return rc;
}

/* ---- the write path ---------------------------------------------------------------------- */

static void wake_conn(void *arg)
{
    req *r = arg;
    MHD_resume_connection(r->conn);
}

/* The client's socket, for live to notice when it hangs up (-1: unknown). */
static int conn_fd(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* The answer to an outcome: applied -> 200 {"status":"applied", event...};
 * refused -> the error's status and body. */
static enum MHD_Result reply_outcome(req *r, int code, const char *body, size_t len)
{
    if (code != DS_OK)
        return http__reply(r, http__status((ds_code)code), "application/json", body, len);
    ds_buf b;
    ds_buf_init(&b, (size_t)1 << 30);
    ds_buf_puts(&b, "{\"status\":\"applied\",");
    if (len > 1)
        ds_buf_append(&b, body + 1, len - 1);
    enum MHD_Result ret = http__json(r, 200, &b);
    ds_buf_free(&b);
    return ret;
}

static enum MHD_Result reply_queued(req *r)
{
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 4096);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "status");
    jw_str(&w, "queued");
    jw_key(&w, "request_id");
    jw_str(&w, r->rid);
    jw_obj_end(&w);
    enum MHD_Result ret = http__json(r, 202, &b);
    ds_buf_free(&b);
    return ret;
}

/* A retry whose first outcome is in the database: that answer (true). */
static bool reply_stored(req *r, enum MHD_Result *ret)
{
    int code;
    int64_t seq;
    char *body = NULL;
    ds_error e;
    thread_res *res = http__res(r->h);
    if (!res || store_request_get(res->reader, r->model, r->user, r->rid, &code, &seq, &body, &e))
        return false;
    *ret = reply_outcome(r, code, body, strlen(body));
    free(body);
    return true;
}

static void make_request_id(char *out, size_t cap)
{
    unsigned char raw[12];
    RAND_bytes(raw, sizeof raw);
    size_t o = (size_t)snprintf(out, cap, "ds-");
    for (size_t i = 0; i < sizeof raw && o + 2 < cap; i++, o += 2)
        snprintf(out + o, 3, "%02x", raw[i]);
}

/* ---- the enqueuer --------------------------------------------------------------------
 * HTTP threads hand every write's XADD to one thread, which sends whatever
 * has gathered as one pipelined write on one connection: the HTTP threads
 * never wait for Redis, and Redis appends (and fsyncs) many commands at
 * once. The request stays suspended meanwhile; the enqueuer holds a
 * reference so that it can still answer it (503, or 202 for wait=false). */

typedef struct xadd_job {
    req *r;
    char model[DS_IDENT_MAX + 1], user[DS_IDENT_MAX + 1], rid[REQ_ID_MAX + 1], hash[65];
    char scope_dim[DS_IDENT_MAX + 1], scope_member[DS_IDENT_MAX + 1]; /* the writer checks again */
    char *cmd;
    size_t cmd_len;
    req_detail detail; /* of the answer (the writer renders it) */
    bool wait;
    bool maybe_sent; /* an earlier attempt may have reached Redis */
    int attempts;
    struct xadd_job *next;
} xadd_job;

enum { ENQ_BATCH = 512 };

static void req_free(req *r)
{
    free(r->w.body);
    ds_buf_free(&r->body);
    ds_arena_free(&r->arena);
    free(r);
}

static void req_release(req *r)
{
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
        req_free(r);
}

/* Answers a suspended request 202 queued from the enqueuer, unless its
 * outcome or its deadline got there first (then the waiter is gone and r
 * is left alone). A 503 goes through fail_unqueued (every waiter on the
 * request_id). */
static void answer_queued(http_server *h, req *r)
{
    if (!live_cancel(h->srv->live, &r->w))
        return;
    r->queued_only = true;
    r->waiting = false;
    MHD_resume_connection(r->conn);
}

/* The command surely is not in Redis: every request waiting for its
 * outcome (a retry with the same request_id waits for the first) gets
 * the 503. */
static void fail_unqueued(http_server *h, req *r, const ds_error *e)
{
    ds_buf b;
    json_w w;
    ds_buf_init(&b, 1 << 16);
    jw_init(&w, &b);
    request_put_error(&w, e);
    live_deliver(h->srv->live, r->key, e->code, b.data, b.len);
    ds_buf_free(&b);
}

static bool enq_stopping(http_server *h)
{
    pthread_mutex_lock(&h->lock);
    bool stop = h->enq_stop;
    pthread_mutex_unlock(&h->lock);
    return stop;
}

/* False once the enqueuer is stopping (the server drains). */
static bool enq_push(http_server *h, xadd_job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&h->lock);
    if (h->enq_stop && j->attempts == 0) {
        pthread_mutex_unlock(&h->lock);
        return false;
    }
    if (h->enq_tail)
        h->enq_tail->next = j;
    else
        h->enq_head = j;
    h->enq_tail = j;
    pthread_cond_signal(&h->enq_cond);
    pthread_mutex_unlock(&h->lock);
    return true;
}

/* What became of one job after its XADD attempt. */
static void enq_settle(http_server *h, xadd_job *j, const bus_xadd *x, const ds_error *err)
{
    if (x->ok) {
        if (!j->wait)
            answer_queued(h, j->r); /* 202 queued */
    } else if (!x->formatted || x->refused) {
        ds_error e;
        ds_fail(&e, DS_UNAVAILABLE, "redis", "the command was not queued: %s", x->error);
        fail_unqueued(h, j->r, &e);
    } else if ((x->maybe_sent || j->maybe_sent) && j->attempts < 2) {
        /* Redis may hold it: send it once more (the writer applies a
         * request_id once however often it is queued) */
        j->maybe_sent = true;
        enq_push(h, j);
        return;
    } else if (x->maybe_sent || j->maybe_sent) {
        /* still unknown: wait for the outcome as usual; without it the
         * answer is 202 queued, and a retry with the request_id is safe */
        h->srv->redis_up = 0;
        log_warn("http: request %s: Redis failed after the command was sent (%s); waiting for "
                 "its outcome",
                 j->rid, err->message);
        if (!j->wait)
            answer_queued(h, j->r); /* 202: it may be queued */
    } else {
        h->srv->redis_up = 0;
        ds_error e;
        ds_fail(&e, DS_UNAVAILABLE, "redis",
                "the command was not queued: Redis is unavailable (%s)", err->message);
        fail_unqueued(h, j->r, &e);
    }
    req_release(j->r);
    free(j->cmd);
    free(j);
}

static void *enqueuer_main(void *arg)
{
    ds_thread_name("ds-enqueuer");
    http_server *h = arg;
    xadd_job **jobs = xmalloc_array(ENQ_BATCH, sizeof *jobs);
    bus_xadd *x = xmalloc_array(ENQ_BATCH, sizeof *x);
    bus_field(*f)[7] = xmalloc_array(ENQ_BATCH, sizeof *f);
    static const char *const details[] = {"leaves", "totals", "none"};
    for (;;) {
        pthread_mutex_lock(&h->lock);
        while (!h->enq_head && !h->enq_stop)
            pthread_cond_wait(&h->enq_cond, &h->lock);
        int n = 0;
        while (h->enq_head && n < ENQ_BATCH) {
            jobs[n++] = h->enq_head;
            h->enq_head = h->enq_head->next;
        }
        if (!h->enq_head)
            h->enq_tail = NULL;
        bool stop = h->enq_stop;
        pthread_mutex_unlock(&h->lock);
        if (n == 0 && stop)
            break;
        for (int i = 0; i < n; i++) {
            xadd_job *j = jobs[i];
            j->attempts++;
            f[i][0] = (bus_field){"rid", j->rid, strlen(j->rid)};
            f[i][1] = (bus_field){"user", j->user, strlen(j->user)};
            f[i][2] = (bus_field){"hash", j->hash, strlen(j->hash)};
            f[i][3] = (bus_field){"cmd", j->cmd, j->cmd_len};
            f[i][4] = (bus_field){"detail", details[j->detail], strlen(details[j->detail])};
            f[i][5] = (bus_field){"scope_dim", j->scope_dim, strlen(j->scope_dim)};
            f[i][6] = (bus_field){"scope_member", j->scope_member, strlen(j->scope_member)};
            x[i] =
                (bus_xadd){.model = j->model, .fields = f[i], .nfields = j->scope_dim[0] ? 7 : 5};
        }
        ds_error err;
        ds_fail(&err, DS_UNAVAILABLE, "redis", "Redis is not reachable");
        if (h->enq_bus)
            bus_enqueue_many(h->enq_bus, n, x, &err);
        for (int i = 0; i < n; i++)
            enq_settle(h, jobs[i], &x[i], &err);
    }
    free(jobs);
    free(x);
    free(f);
    return NULL;
}

/* Queues a decoded command: answers at once (recorded request, wait=false,
 * Redis down) or suspends until the outcome or the wait limit. */
static enum MHD_Result enqueue(req *r, const req_decoded *d, ds_engine *engine)
{
    http_server *h = r->h;
    if (d->request_id)
        snprintf(r->rid, sizeof r->rid, "%s", d->request_id);
    else
        make_request_id(r->rid, sizeof r->rid);
    _Static_assert(REQUEST_KEY_MAX <= LIVE_KEY_MAX, "a request key fits a waiter whole");
    request_key(r->key, r->model, r->user, r->rid); /* r's parts are within their limits */
    /* a request_id the model's ledger knows with another body: 409 now;
       with the same body the retry is queued, and the writer answers it
       with the first one's outcome (once that is in the database) */
    engine_request known;
    if (engine_request_get(engine, r->user, r->rid, &known)) {
        if (strcmp(known.hash, d->hash) != 0)
            return http__fail(r, DS_REQUEST_ID_REUSED, "request_id",
                              "this request_id was used before with another body");
        enum MHD_Result ret;
        if (reply_stored(r, &ret)) /* already in the database: its answer now */
            return ret;
    }
    writer_stats ws;
    writer_get_stats(h->srv->writer, &ws);
    if (ws.persist_failing) { /* nothing is acknowledged that cannot be persisted */
        ds_error e;
        ds_fail(&e, DS_UNAVAILABLE, "database",
                "the command was not queued: the database refuses writes (%s)",
                ws.persist_why.message);
        r->retry_after = "5";
        return http__error(r, &e);
    }
    bool in_flight = live_expected(h->srv->live, r->key);
    if (enq_stopping(h))
        return http__fail(r, DS_UNAVAILABLE, "redis",
                          "the command was not queued: the server is stopping");
    r->waiting = true;
    r->no_wait = !d->wait;
    MHD_suspend_connection(r->conn);
    /* wait=false: the enqueuer answers once the XADD is settled (202, or
       503 when it surely failed); the wait limit is only a backstop (a
       retry waiting on the first of its request_id has no XADD of its own) */
    int64_t deadline = ds_now_ns() + (int64_t)h->srv->o.wait_ms * 1000000;
    /* not watched for a hang-up (fd -1): a retry while this one waits must
       find it and wait for the same outcome (it sends no XADD of its own),
       so the place is held until the outcome or the wait limit */
    live_expect(h->srv->live, &r->w, r->key, deadline, -1, wake_conn, r);
    if (in_flight)
        return MHD_YES; /* a retry while the first is in flight waits for it */
    xadd_job *j = xcalloc(1, sizeof *j);
    j->r = r;
    snprintf(j->model, sizeof j->model, "%s", r->model);
    snprintf(j->user, sizeof j->user, "%s", r->user);
    snprintf(j->rid, sizeof j->rid, "%s", r->rid);
    snprintf(j->hash, sizeof j->hash, "%s", d->hash);
    snprintf(j->scope_dim, sizeof j->scope_dim, "%s", r->who.scope_dim);
    snprintf(j->scope_member, sizeof j->scope_member, "%s", r->who.scope_member);
    j->cmd = xstrndup(d->canonical, d->canonical_len);
    j->cmd_len = d->canonical_len;
    j->detail = d->detail;
    j->wait = d->wait;
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
    if (!enq_push(h, j)) {
        ds_error e;
        ds_fail(&e, DS_UNAVAILABLE, "redis", "the command was not queued: the server is stopping");
        fail_unqueued(h, r, &e);
        req_release(r);
        free(j->cmd);
        free(j);
    }
    return MHD_YES;
}

/* The model a write names: the path's, or "table" of /update_cell. */
static const ds_model *write_model(req *r, const json_val *root, req_kind kind, model_ref **mr,
                                   ds_error *err)
{
    *mr = NULL;
    size_t len = 0;
    const char *t = request_table(root, &len);
    if (kind == REQ_UPDATE_CELL) {
        if (http__authorize_n(r, t, len, err) || request_table_name(t, len, err))
            return NULL;
        memcpy(r->model, t, len); /* a name: at most DS_IDENT_MAX bytes, no NUL */
        r->model[len] = '\0';
    } else if (t && request_table_name(t, len, err)) {
        return NULL;
    } else if (t && (len != strlen(r->model) || memcmp(t, r->model, len) != 0)) {
        ds_fail(err, DS_INVALID_VALUE, "table", "'table' names another model than the path");
        return NULL;
    }
    if (!(*mr = models_get(r->h->srv->models, r->model, strlen(r->model)))) {
        ds_fail(err, DS_NOT_FOUND, "table", "no table '%s'", r->model);
        return NULL;
    }
    return engine_model_acquire((*mr)->engine); /* what the writer will resolve against */
}

enum MHD_Result http__replica_refuse(req *r)
{
    ds_server *srv = r->h->srv;
    char name[256];
    writer_writer_name(srv->writer, name, sizeof name);
    const char *to = srv->o.writer_url ? srv->o.writer_url : name[0] ? name : NULL;
    ds_error e;
    if (!writer_follows(srv->writer))
        ds_fail(&e, DS_UNAVAILABLE, "writer",
                "another process took over as the writer of '%s' (this one lost its lease): "
                "send writes to it",
                r->model);
    else if (to)
        ds_fail(&e, DS_UNAVAILABLE, "writer",
                "this server is a read replica and answers reads only; send writes to the "
                "writer: %s",
                to);
    else
        ds_fail(&e, DS_UNAVAILABLE, "writer",
                "this server is a read replica and answers reads only; send writes to the "
                "writer (no writer holds the lease now)");
    r->retry_after = "1"; /* a standby may be the writer a moment later */
    return http__error(r, &e);
}

enum MHD_Result http__write(req *r, req_kind kind, const char *path_dim)
{
    if (writer_follows(r->h->srv->writer))
        return http__replica_refuse(r);
    if (r->queued_only)
        return reply_queued(r);
    if (r->waiting) { /* resumed */
        r->waiting = false;
        if (r->w.delivered && r->no_wait && r->w.status != DS_UNAVAILABLE) {
            free(r->w.body); /* wait=false answers queued, whatever came first */
            r->w.body = NULL;
            return reply_queued(r);
        }
        if (r->w.delivered) {
            enum MHD_Result ret = reply_outcome(r, r->w.status, r->w.body, r->w.len);
            free(r->w.body);
            r->w.body = NULL;
            return ret;
        }
        return reply_queued(r); /* the outcome did not arrive within the wait limit */
    }
    ds_error e;
    json_val *root;
    if (http__body(r, kind, &root, &e))
        return http__error(r, &e);
    model_ref *mr;
    const ds_model *m = write_model(r, root, kind, &mr, &e);
    if (m && writer_lease_foreign(r->h->srv->writer, r->model)) {
        engine_model_release(mr->engine, m);
        models_put(r->h->srv->models, mr);
        json_free(root);
        return http__replica_refuse(r);
    }
    ds_arena arena = {0};
    req_decoded d;
    int rc = m ? request_resolve(root, kind, m, path_dim, &arena, &d, &e) : -1;
    int64_t max = r->h->srv->o.batch_writes_max;
    if (rc == 0 && kind == REQ_BATCH && (int64_t)d.cmd.nwrites > max) {
        rc = ds_fail(&e, DS_TOO_MANY_CELLS, "writes",
                     "the batch has %zu writes; the limit is %" PRId64 " (--writes-max)",
                     d.cmd.nwrites, max);
        e.has_count = true;
        e.count = (int64_t)d.cmd.nwrites;
        e.limit = max;
    }
    if (rc == 0) /* the writer checks again: the tree may change before it applies */
        rc = request_scope(m, &d.cmd, r->who.scope_dim, r->who.scope_member, &e);
    enum MHD_Result ret = rc ? http__error(r, &e) : enqueue(r, &d, mr->engine);
    ds_arena_free(&arena);
    if (m)
        engine_model_release(mr->engine, m);
    models_put(r->h->srv->models, mr);
    json_free(root);
    return ret;
}

/* ---- the change feed ---------------------------------------------------------------- */

static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    return http__int(s, lo, hi, out);
}

static enum MHD_Result reply_updates(req *r, ds_buf *items, int64_t next)
{
    ds_buf b;
    ds_buf_init(&b, (size_t)1 << 30);
    ds_buf_printf(&b, "{\"updates\":[%s],\"next\":%" PRId64 "}", items->data, next);
    enum MHD_Result ret = http__json(r, 200, &b);
    ds_buf_free(&b);
    return ret;
}

/* The model's applied seq, or -1 when there is no such model. */
static int64_t model_seq(req *r)
{
    model_ref *mr = models_get(r->h->srv->models, r->model, strlen(r->model));
    int64_t seq = mr ? engine_seq(mr->engine) : -1;
    models_put(r->h->srv->models, mr);
    return seq;
}

/* GET /get_updates?table=&since=&timeout= and /v1/models/{m}/changes. */
enum MHD_Result http__changes(req *r, bool legacy)
{
    if (!r->waiting) {
        const char *t = legacy ? http__arg(r, "table") : NULL;
        const char *s = http__arg(r, "since"), *to = http__arg(r, "timeout");
        int64_t timeout = 0;
        ds_error e;
        if (legacy && !t)
            return http__fail(r, DS_MALFORMED, "table", "'table' is required");
        if (!s || !parse_int(s, 0, INT64_MAX / 2, &r->since))
            return http__fail(r, DS_MALFORMED, "since", "'since' must be a seq (0 or more)");
        if (to && !parse_int(to, 0, r->h->srv->o.max_timeout_s, &timeout))
            return http__fail(r, DS_MALFORMED, "timeout", "'timeout' must be 0 to 60 seconds");
        if (legacy) { /* t is whole: the query holds no NUL (http_url.c) */
            size_t len = strlen(t);
            if (http__authorize_n(r, t, len, &e) || request_table_name(t, len, &e))
                return http__error(r, &e);
            memcpy(r->model, t, len + 1);
        }
        const char *dv = http__arg(r, "detail");
        req_detail detail = DETAIL_LEAVES;
        if (dv && request_detail(dv, strlen(dv), &detail, &e))
            return http__error(r, &e);
        r->detail = (int)detail;
        if (model_seq(r) < 0) {
            ds_fail(&e, DS_NOT_FOUND, "table", "no table '%s'", r->model);
            return http__error(r, &e);
        }
        r->deadline_ns = ds_now_ns() + timeout * 1000000000;
    }
    ds_buf items;
    ds_buf_init(&items, (size_t)1 << 30);
    int64_t next, cur, oldest;
    live_read lr = live_collect(r->h->srv->live, r->model, r->since, 1000, r->detail, &items, &next,
                                &cur, &oldest);
    enum MHD_Result ret;
    if (lr == LIVE_GONE) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "since %" PRId64 " is outside the retained history (%" PRId64 "..%" PRId64
                 "): re-read what you show, then follow from seq %" PRId64,
                 r->since, oldest - 1, cur, cur);
        ret = http__error_raw(r, 410, "gone", msg, cur, oldest);
    } else if (r->waiting && !keyring_alive(r->h->srv->keys, r->who.id)) {
        r->waiting = false;
        ret = http__fail(r, DS_UNAUTHENTICATED, NULL, "the API key was revoked");
    } else if (items.len || (r->waiting && (r->w.timed_out || r->w.hung_up)) ||
               ds_now_ns() >= r->deadline_ns) {
        r->waiting = false;
        ret = reply_updates(r, &items, next);
    } else {
        r->waiting = true;
        MHD_suspend_connection(r->conn);
        live_wait(r->h->srv->live, &r->w, r->model, r->since, r->deadline_ns, conn_fd(r->conn),
                  wake_conn, r);
        /* a revocation between the check above and the wait woke nobody */
        if (!keyring_alive(r->h->srv->keys, r->who.id) && live_cancel(r->h->srv->live, &r->w))
            wake_conn(r);
        ret = MHD_YES;
    }
    ds_buf_free(&items);
    return ret;
}

/* ---- server-sent events -------------------------------------------------------------- */

/* Takes a subscriber place of r->model, or answers 429 (false). */
static bool take_subscriber_place(req *r, enum MHD_Result *ret)
{
    int64_t count;
    if (live_subscribe(r->h->srv->live, r->model, &count))
        return true;
    ds_error e;
    ds_fail(&e, DS_RATE_LIMITED, "subscribers",
            "table '%s' has %" PRId64 " live subscribers (SSE and WebSocket), the limit "
            "(--subscribers-max); retry later",
            r->model, count);
    e.has_count = true;
    e.count = count;
    e.limit = r->h->srv->o.subscribers_max;
    *ret = http__error(r, &e);
    return false;
}

typedef struct sse_sub {
    http_server *h;
    int detail; /* req_detail of its events */
    struct MHD_Connection *conn;
    char model[DS_IDENT_MAX + 1];
    int64_t cursor, last_write_ns;
    live_waiter w;
    bool waiting, ended;
    ds_buf out; /* formatted, not yet handed to MHD */
    size_t off;
    char key_id[KEY_ID_LEN + 1]; /* the stream ends when the key is revoked */
} sse_sub;

static void sse_wake(void *arg)
{
    sse_sub *s = arg;
    MHD_resume_connection(s->conn);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    sse_sub *s = cls;
    s->waiting = false;
    if (s->w.hung_up) /* the client left while the stream was parked: end it now */
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (s->off == s->out.len) {
        if (s->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        ds_buf_reset(&s->out);
        s->off = 0;
        int64_t next, cur, oldest;
        live_read lr = live_collect_sse(s->h->srv->live, s->model, s->cursor, 1 << 20, s->detail,
                                        &s->out, &next, &cur, &oldest);
        if (!keyring_alive(s->h->srv->keys, s->key_id)) {
            ds_buf_reset(&s->out);
            ds_buf_puts(&s->out, "event: error\ndata: {\"error\":{\"code\":\"unauthenticated\","
                                 "\"message\":\"the API key was revoked\"}}\n\n");
            s->ended = true;
        } else if (lr == LIVE_GONE || cur - s->cursor > (int64_t)s->h->lag_limit) {
            ds_buf_reset(&s->out);
            ds_buf_printf(
                &s->out, "event: error\ndata: {\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n\n",
                lr == LIVE_GONE ? "gone" : "too_slow",
                lr == LIVE_GONE ? "the history since your last event is gone"
                                : "the subscriber fell too far behind the feed");
            s->ended = true;
        } else {
            s->cursor = next;
        }
        int64_t now = ds_now_ns();
        if (s->out.len == 0 && now - s->last_write_ns > (int64_t)HTTP_PING_S * 1000000000)
            ds_buf_puts(&s->out, ": ping\n\n");
        if (s->out.len == 0) { /* nothing to send: park until an event or a ping */
            s->waiting = true;
            MHD_suspend_connection(s->conn);
            live_wait(s->h->srv->live, &s->w, s->model, s->cursor,
                      now + (int64_t)HTTP_PING_S * 1000000000, conn_fd(s->conn), sse_wake, s);
            /* a revocation between the check above and the wait woke nobody */
            if (!keyring_alive(s->h->srv->keys, s->key_id) && live_cancel(s->h->srv->live, &s->w))
                sse_wake(s);
            return 0;
        }
        s->last_write_ns = now;
    }
    size_t n = s->out.len - s->off < max ? s->out.len - s->off : max;
    memcpy(buf, s->out.data + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void sse_free(void *cls)
{
    sse_sub *s = cls;
    live_cancel(s->h->srv->live, &s->w);
    live_sse_count(s->h->srv->live, -1);
    live_unsubscribe(s->h->srv->live, s->model);
    ds_buf_free(&s->out);
    free(s);
}

enum MHD_Result http__events(req *r)
{
    const char *s = http__arg(r, "since");
    const char *last = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
    int64_t since = -1;
    if ((s || last) && !parse_int(s ? s : last, 0, INT64_MAX / 2, &since))
        return http__fail(r, DS_MALFORMED, s ? "since" : "Last-Event-ID",
                          "'since' (or Last-Event-ID) must be a seq (0 or more)");
    ds_error e;
    const char *dv = http__arg(r, "detail");
    req_detail detail = DETAIL_LEAVES;
    if (dv && request_detail(dv, strlen(dv), &detail, &e))
        return http__error(r, &e);
    int64_t seq = model_seq(r);
    if (seq < 0) {
        ds_fail(&e, DS_NOT_FOUND, "table", "no table '%s'", r->model);
        return http__error(r, &e);
    }
    if (since < 0)
        since = seq;
    enum MHD_Result refused;
    if (!take_subscriber_place(r, &refused))
        return refused;
    sse_sub *sub = xcalloc(1, sizeof *sub);
    sub->detail = (int)detail;
    sub->h = r->h;
    sub->conn = r->conn;
    snprintf(sub->model, sizeof sub->model, "%s", r->model);
    snprintf(sub->key_id, sizeof sub->key_id, "%s", r->who.id);
    sub->cursor = since;
    sub->last_write_ns = ds_now_ns();
    ds_buf_init(&sub->out, (size_t)1 << 30);
    ds_buf_puts(&sub->out, "retry: 2000\n\n");
    live_sse_count(r->h->srv->live, 1);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, sse_read, sub, sse_free);
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    finish_metrics(r, 200);
    r->replied = true;
    return ret;
}

/* ---- WebSocket ------------------------------------------------------------------------------ */

typedef struct ws_handoff {
    http_server *h;
    char model[DS_IDENT_MAX + 1];
    int64_t since;
    int detail;
    char key_id[KEY_ID_LEN + 1];
    bool admitted;                         /* counted open against the key */
    struct MHD_UpgradeResponseHandle *urh; /* set when upgraded */
} ws_handoff;

static void ws_done(void *arg)
{
    ws_handoff *hand = arg;
    if (hand->admitted)
        keyring_close(hand->h->srv->keys, hand->key_id);
    MHD_upgrade_action(hand->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(hand);
}

static void ws_upgraded(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra_in,
                        size_t extra_in_size, MHD_socket sock,
                        struct MHD_UpgradeResponseHandle *urh)
{
    (void)c;
    ws_handoff *hand = cls;
    req *r = con_cls;
    r->sub_handed = true; /* the live module gives the place back */
    hand->admitted = r->admitted;
    r->admitted = false; /* ws_done gives the key's open count back */
    hand->urh = urh;
    /* what the client sent after its handshake (a close frame in the same
       write, say) is the start of its WebSocket stream */
    live_ws_adopt(hand->h->srv->live, sock, extra_in, extra_in_size, hand->model, hand->since,
                  hand->detail, hand->key_id, ws_done, hand);
}

enum MHD_Result http__ws(req *r)
{
    char key[HTTP_WS_KEY_LEN + 1];
    http_refusal f;
    if (http__ws_check(r->conn, r->http10, key, &f))
        return http__refuse(r, &f);
    const char *s = http__arg(r, "since");
    int64_t since = -1;
    if (s && !parse_int(s, 0, INT64_MAX / 2, &since))
        return http__fail(r, DS_MALFORMED, "since", "'since' must be a seq (0 or more)");
    ds_error e;
    const char *dv = http__arg(r, "detail");
    req_detail detail = DETAIL_LEAVES;
    if (dv && request_detail(dv, strlen(dv), &detail, &e))
        return http__error(r, &e);
    int64_t seq = model_seq(r);
    if (seq < 0) {
        ds_fail(&e, DS_NOT_FOUND, "table", "no table '%s'", r->model);
        return http__error(r, &e);
    }
    if (since < 0)
        since = seq;
    enum MHD_Result refused;
    if (!take_subscriber_place(r, &refused))
        return refused;
    r->sub_held = true;
    r->detail = (int)detail;
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char in[HTTP_WS_KEY_LEN + sizeof guid];
    memcpy(in, key, HTTP_WS_KEY_LEN);
    memcpy(in + HTTP_WS_KEY_LEN, guid, sizeof guid);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_Digest(in, HTTP_WS_KEY_LEN + sizeof guid - 1, md, &mdlen, EVP_sha1(), NULL);
    unsigned char accept[64];
    EVP_EncodeBlock(accept, md, (int)mdlen);
    ws_handoff *hand = xcalloc(1, sizeof *hand);
    hand->h = r->h;
    snprintf(hand->model, sizeof hand->model, "%s", r->model);
    hand->since = since;
    hand->detail = r->detail;
    snprintf(hand->key_id, sizeof hand->key_id, "%s", r->who.id);
    struct MHD_Response *resp = MHD_create_response_for_upgrade(ws_upgraded, hand);
    MHD_add_response_header(resp, "Upgrade", "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", (const char *)accept);
    enum MHD_Result ret = MHD_queue_response(r->conn, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
    MHD_destroy_response(resp);
    finish_metrics(r, 101);
    r->replied = true;
    return ret;
}

/* ---- dispatch
 * -------------------------------------------------------------------------------------- */

static req *req_new(http_server *h, struct MHD_Connection *conn)
{
    req *r = xcalloc(1, sizeof *r);
    r->refs = 1;
    r->h = h;
    r->conn = conn;
    r->start_ns = ds_now_ns();
    ds_buf_init(&r->body, h->srv->o.body_max);
    return r;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the request line's URI before libmicrohttpd
 * splits it in place, noted for the head check (a NUL in it, a space or a
 * control character). The request's context starts here. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    req *r = req_new(cls, conn);
    http__uri_seen(uri, &r->uri);
    return r;
}

/* Routing, in the contract's order: 401 (before 404 and 405), then the
 * URL's 400s, then the role (403) and the path's names (422) unless the
 * body comes first. false: *ret is the answer. */
static bool admit(req *r, const char *url, const char *method, enum MHD_Result *ret)
{
    int rc = http__route(r, url, method);
    ds_error e, ue;
    int urc = rc ? 0 : http__url(r, &ue); /* before authenticate: the ticket is a parameter */
    if (rc && authenticate(r, r->public_route, false, &e)) {
        *ret = http__error(r, &e);
        return false;
    }
    if (rc == 405) {
        char msg[96];
        snprintf(msg, sizeof msg, "this route takes %s", r->allow);
        *ret = http__error_raw(r, 405, "method_not_allowed", msg, -2, 0);
        return false;
    }
    if (rc) {
        *ret = http__fail(r, DS_NOT_FOUND, "route", "no such route (see /openapi.json)");
        return false;
    }
    if (authenticate(r, r->public_route, r->ticket_ok, &e)) {
        *ret = http__error(r, &e);
        return false;
    }
    if (urc) {
        *ret = http__error(r, &ue);
        return false;
    }
    if (!r->body_route && (http__authorize(r, r->model, &e) || http__path_names(r, &e))) {
        *ret = http__error(r, &e);
        return false;
    }
    return true;
}

/* The first call, once the head is in and before any body byte is read:
 * the head check (sizes, a NUL, framing, smuggling); with Expect:
 * 100-continue, the route and the key too, so that a refusal comes instead
 * of 100 Continue (libmicrohttpd sends it when this call answers nothing,
 * and closes the connection when it answers before the body). */
static enum MHD_Result on_head(req *r, const http_line *l)
{
    http_head head;
    http_refusal f;
    enum MHD_Result ret;
    int rc = http__head_check(r->conn, l, &head, &f);
    r->http10 = head.http10;
    if (rc) {
        r->routed = r->close = true; /* nothing after it is taken as a request */
        r->route_metric = metrics_route(&r->h->srv->metrics, "unknown");
        return http__refuse(r, &f);
    }
    if (head.expect_continue) {
        r->admitted_early = true;
        if (!admit(r, l->url, l->method, &ret)) {
            r->routed = true;
            return ret;
        }
    }
    http__guard_body(r->h, r->conn); /* a body may follow */
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    http_server *h = cls;
    req *r = *con_cls;
    if (!r) /* every request line goes through on_uri first; never here */
        *con_cls = r = req_new(h, conn);
    if (!r->started) {
        r->started = true;
        return on_head(r, &(http_line){method, url, version, r->uri});
    }
    if (r->replied) /* answered before its body arrived */
        return MHD_YES;
    if (*upload_size) {
        ds_buf_append(&r->body, upload, *upload_size);
        r->too_large |= r->body.overflow;
        *upload_size = 0;
        return MHD_YES;
    }
    if (!r->routed) {
        r->routed = true;
        http__guard_arm(h, conn, false); /* the request is in: no deadline while it is answered */
        enum MHD_Result ret;
        if (!r->admitted_early && !admit(r, url, method, &ret))
            return ret;
        /* the handlers of keyed routes read with the thread's reader */
        if (!r->public_route && !http__res(h))
            return http__fail(r, DS_UNAVAILABLE, "database",
                              "cannot open a database connection; try again");
    }
    return r->handler(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    req *r = *con_cls;
    if (!r)
        return;
    if (r->waiting)
        live_cancel(r->h->srv->live, &r->w);
    if (r->admitted)
        keyring_close(r->h->srv->keys, r->who.id);
    if (r->sub_held && !r->sub_handed)
        live_unsubscribe(r->h->srv->live, r->model); /* the upgrade did not happen */
    else if (!r->sub_handed && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        http__guard_arm(r->h, conn, true); /* keep-alive: the next request's clock */
    *con_cls = NULL;
    req_release(r); /* freed here unless the enqueuer still holds it */
}

/* libmicrohttpd's messages: each of its formats is one template for the
 * burst limit (a thousand connections cut at once are one summary). */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    log_vtemplate(LOG_WARN, fmt, "http: ", fmt, ap);
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, bool *loopback,
                        ds_error *err)
{
    const char *colon = strrchr(listen, ':');
    char host[256];
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host)
        return ds_fail(err, DS_INVALID_VALUE, "listen", "--listen takes HOST:PORT, not '%s'",
                       listen);
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    char *hp = host;
    if (hp[0] == '[' && hp[strlen(hp) - 1] == ']') {
        hp[strlen(hp) - 1] = '\0';
        hp++;
    }
    int64_t port;
    if (!parse_int(colon + 1, 0, 65535, &port))
        return ds_fail(err, DS_INVALID_VALUE, "listen", "'%s' is not a port", colon + 1);
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, strcmp(hp, "localhost") ? hp : "127.0.0.1", &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    } else if (inet_pton(AF_INET6, hp, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    } else {
        return ds_fail(err, DS_INVALID_VALUE, "listen", "'%s' is not an IP address", hp);
    }
    return 0;
}

/* Every 250 ms: re-reads DIR/keys when it changed; when a key was revoked,
 * wakes long-polls and SSE subscribers and has the WebSocket loop check its
 * connections, so what the key holds open closes within a second. */
static void *keys_main(void *arg)
{
    ds_thread_name("ds-keys");
    http_server *h = arg;
    while (!h->keys_stop) {
        struct timespec t = {0, 250 * 1000 * 1000};
        nanosleep(&t, NULL);
        bool revoked = false;
        keyring_refresh(h->srv->keys, &revoked);
        if (revoked) {
            log_info("keys: a key was revoked; closing what it holds open");
            live_revoked(h->srv->live);
        }
    }
    return NULL;
}

static bool key_alive(void *ctx, const char *id)
{
    return keyring_alive(ctx, id);
}

static void keys_watch_stop(http_server *h)
{
    if (!h->keys_started)
        return;
    h->keys_stop = true;
    pthread_join(h->keys_thread, NULL);
    h->keys_started = false;
}

/* Sends what is queued, then stops the enqueuer and closes its connection;
 * later writes are answered 503. */
static void enqueuer_stop(http_server *h)
{
    if (!h->enq_started)
        return;
    pthread_mutex_lock(&h->lock);
    h->enq_stop = true;
    pthread_cond_signal(&h->enq_cond);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->enq_thread, NULL);
    h->enq_started = false;
    bus_close(h->enq_bus);
    h->enq_bus = NULL;
}

int http_start(ds_server *srv, http_server **out, ds_error *err)
{
    struct sockaddr_storage ss;
    bool loopback = false;
    int rc = parse_listen(srv->o.listen, &ss, &loopback, err);
    if (rc)
        return rc;
    if (!loopback && keyring_count(srv->keys) == 0)
        return ds_fail(err, DS_FORBIDDEN, "listen",
                       "refusing to listen on %s without API keys: create one with `duckspread "
                       "keys create --data %s --user NAME --role admin`, or listen on 127.0.0.1",
                       srv->o.listen, srv->o.data_dir);
    if (loopback && keyring_open_mode(srv->keys))
        log_warn("keys: none in %s/keys: every request on %s is an admin (open mode, loopback "
                 "only) until a key is created",
                 srv->o.data_dir, srv->o.listen);
    http_server *h = xcalloc(1, sizeof *h);
    h->srv = srv;
    h->loopback = loopback;
    h->lag_limit = 50000;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->enq_cond, NULL);
    if (bus_open(&srv->bus, &h->enq_bus, err)) {
        pthread_cond_destroy(&h->enq_cond);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return -DS_UNAVAILABLE;
    }
    if (pthread_create(&h->enq_thread, NULL, enqueuer_main, h) != 0) {
        bus_close(h->enq_bus);
        free(h);
        return ds_fail(err, DS_INTERNAL, NULL, "cannot start the enqueuer thread");
    }
    h->enq_started = true;
    live_set_auth(srv->live, key_alive, srv->keys);
    h->keys_started = pthread_create(&h->keys_thread, NULL, keys_main, h) == 0;
    if (!h->keys_started) { /* without it, revocations would never be seen */
        enqueuer_stop(h);
        pthread_cond_destroy(&h->enq_cond);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return ds_fail(err, DS_INTERNAL, NULL, "cannot start the keys watcher thread");
    }
    h->tickets = tickets_new();
    http__load_static(h);
    h->guard = http__guard_new(srv->o.request_timeout_s, &srv->metrics);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(srv->o.http_threads > 0 ? srv->o.http_threads : 2),
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(srv->o.idle_timeout_s > 0 ? srv->o.idle_timeout_s : 120),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION,
        http__guard_notify, h, MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, h,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_CONNECTION_LIMIT, (unsigned)20000,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MHD_POOL, MHD_OPTION_END);
    if (!h->d) {
        int e = errno;
        keys_watch_stop(h);
        enqueuer_stop(h);
        http__guard_free(h->guard);
        http__free_static(h);
        tickets_free(h->tickets);
        free(h);
        return ds_fail(err, DS_UNAVAILABLE, "listen", "cannot listen on %s: %s", srv->o.listen,
                       strerror(e));
    }
    *out = h;
    return 0;
}

void http_quiesce(http_server *h)
{
    if (h && h->d) {
        MHD_socket s = MHD_quiesce_daemon(h->d);
        if (s != MHD_INVALID_SOCKET)
            close(s);
    }
    if (h)
        enqueuer_stop(h); /* what was accepted reaches Redis before the writer stops */
}

void http_stop(http_server *h)
{
    if (!h)
        return;
    keys_watch_stop(h);
    MHD_stop_daemon(h->d);
    http__guard_free(h->guard); /* every connection is closed */
    enqueuer_stop(h);           /* (if http_quiesce did not) */
    pthread_cond_destroy(&h->enq_cond);
    while (h->res) {
        thread_res *r = h->res;
        h->res = r->next;
        bus_close(r->bus);
        store_reader_free(r->reader);
        free(r);
    }
    http__free_static(h);
    tickets_free(h->tickets);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
