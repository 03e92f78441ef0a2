/* bench_load: the load generator of the end-to-end figures
 * (bench/e2e.sh). N HTTP/1.1 keep-alive connections in one epoll loop send
 * single-cell writes (POST /update_cell, delta +1/-1 on quantity by
 * default) to random leaf cells of the model (the demo's `sales`):
 *
 *   closed loop (--rate 0): each connection sends its next request as soon
 *     as the previous response is complete;
 *   open loop (--rate R): request i is due at t0 + i/R; it goes out on any
 *     idle connection, or waits for one (counted late). Its latency runs
 *     from the time it was due, so a slow server cannot hide its stalls
 *     (no coordinated omission).
 *
 * Statuses and latencies cover the requests started (due, in open loop)
 * in the measured window [t0 + warmup, t0 + warmup + duration); requests
 * still out at the end are waited for up to --drain-s. edits_per_s is the
 * number of 200 responses completed inside the window over its length;
 * latencies are those of the 200 and 202 answers (errors are counted, not
 * timed). One line on stdout:
 *
 *   e2e edits: clients=256 edits_per_s=8123.4 p50_ms=12.10 p99_ms=30.20 ok=81234 queued=0 errors=0
 *
 * (open loop adds rate= and late=); details go to stderr.
 *
 * --sent-log FILE writes "request_id send_ns seq" (CLOCK_MONOTONIC, the
 * due time in open loop; the seq of its 200 answer, 0 without one) for
 * every request started in the measured window, so bench_wssub can compute
 * the POST -> event latency of the same requests (matched by request id
 * on the change feed, by seq for grid patches; it reports the events of
 * warm-up requests as unmatched). Request ids are "<run>-<client>-<n>".
 *
 * Cells: a random leaf of each dimension in --dims, the leaves read from
 * GET /v1/models/{m}/dimensions/{d}/members?parent=.. at start; or the
 * demo's keys from --products and --customers; or --cells FILE. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "bench_net.h"
#include "util.h"

enum {
    FIRST_YEAR = 2024,
    MONTHS = 36,
    READ_CHUNK = 64 * 1024,
    MAX_STATUS = 600,
    TIMER_TAG = -1,
    MAX_DIMS = 8,
};

#define NS_PER_S  BENCH_NS_PER_S
#define NS_PER_MS BENCH_NS_PER_MS

typedef struct opts {
    const char *url, *model, *column, *path, *cells_file, *kind, *api_key, *sent_log, *dims;
    char run_id[64], host[256], port[16];
    int clients, products, customers, verbose;
    double duration_s, warmup_s, rate, drain_s;
    bool no_wait;
    uint64_t seed;
} opts;

/* ---- small helpers ---------------------------------------------------- */

static volatile sig_atomic_t stop_requested; /* SIGINT / SIGTERM: end the window now */

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench_load: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    return ds_mix64(*s);
}

/* ---- the load generator ------------------------------------------------ */

typedef enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY } conn_state;

typedef struct conn {
    int fd, id;
    conn_state state;
    bool measured, want_out;
    uint64_t n;                 /* requests sent by this client */
    size_t sent_idx;            /* its request in load.sent */
    int64_t start_ns, retry_ns; /* start: due (open) or sent (closed) */
    ds_buf in, out;
    size_t out_off;
} conn;

typedef struct sent_rec {
    uint32_t client;
    uint32_t n;
    int64_t ns;
    int64_t seq; /* of its 200 answer; 0 without one */
} sent_rec;

typedef struct dim_keys {
    char name[64];
    char **keys; /* leaf keys as JSON string text */
    size_t n, alloc;
} dim_keys;

typedef struct load {
    opts o;
    dim_keys dims[MAX_DIMS];
    int ndims;
    int ep, tfd;
    struct addrinfo *addr;
    conn *conns;
    int *idle, nidle, busy;
    char **cells;
    size_t ncells;
    uint64_t rng;
    int64_t t0, t_warm, t_end;
    uint64_t due_next, sent_next; /* open loop: backlog = due_next - sent_next */
    int64_t late, ok, queued, errors, window_ok, conn_errors, reconnects, timeouts;
    int64_t by_status[MAX_STATUS];
    int64_t *lat;
    size_t nlat, alat;
    sent_rec *sent;
    size_t nsent, asent;
    ds_buf body;
    int shown;
} load;

static void ep_set(load *L, conn *c, bool want_out)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)c->id};
    c->want_out = want_out;
    if (epoll_ctl(L->ep, EPOLL_CTL_MOD, c->fd, &ev))
        die("epoll_ctl: %s", strerror(errno));
}

static void conn_open(load *L, conn *c)
{
    c->fd = socket(L->addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ds_buf_reset(&c->in);
    ds_buf_reset(&c->out);
    c->out_off = 0;
    c->state = C_CONNECTING;
    if (connect(c->fd, L->addr->ai_addr, L->addr->ai_addrlen) && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        c->state = C_DOWN;
        c->retry_ns = ds_now_ns() + 100 * NS_PER_MS;
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)c->id};
    c->want_out = true;
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, c->fd, &ev))
        die("epoll_ctl: %s", strerror(errno));
}

static void idle_remove(load *L, conn *c)
{
    for (int i = 0; i < L->nidle; i++)
        if (L->idle[i] == c->id) {
            L->idle[i] = L->idle[--L->nidle];
            return;
        }
}

static bool in_window(const load *L, int64_t t)
{
    return t >= L->t_warm && t < L->t_end;
}

/* Drops the connection (a request in flight is an error) and reconnects:
 * at once after an orderly close, after 100 ms after a failure. */
static void conn_reset(load *L, conn *c, const char *why, bool failed)
{
    if (c->state == C_BUSY) {
        L->busy--;
        L->conn_errors++;
        if (c->measured) {
            L->errors++;
            L->by_status[0]++;
        }
        if (L->o.verbose)
            fprintf(stderr, "bench_load: client %d: %s\n", c->id, why);
    }
    if (c->state == C_IDLE)
        idle_remove(L, c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = C_DOWN;
    c->retry_ns = ds_now_ns() + (failed ? 100 * NS_PER_MS : 0);
    L->reconnects++;
}

static void conn_flush(load *L, conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out)
                ep_set(L, c, true);
            return;
        }
        if (w < 0) {
            conn_reset(L, c, strerror(errno), true);
            return;
        }
        c->out_off += (size_t)w;
    }
    if (c->want_out)
        ep_set(L, c, false);
}

static void put_body(load *L, conn *c, ds_buf *b)
{
    const opts *o = &L->o;
    uint64_t r = rng_next(&L->rng);
    ds_buf_printf(b, "{\"table\":\"%s\",\"column\":\"%s\",\"cell\":", o->model, o->column);
    if (L->ncells) {
        ds_buf_puts(b, L->cells[r % L->ncells]);
    } else {
        for (int i = 0; i < L->ndims; i++) {
            const dim_keys *d = &L->dims[i];
            ds_buf_printf(b, "%c\"%s\":\"%s\"", i ? ',' : '{', d->name,
                          d->keys[rng_next(&L->rng) % d->n]);
        }
        ds_buf_putc(b, '}');
    }
    if (strcmp(o->kind, "delta") == 0)
        ds_buf_printf(b, ",\"delta\":%d", (r >> 63) ? 1 : -1);
    else
        ds_buf_printf(b, ",\"value\":%d", (int)((r >> 50) % 100) + 1);
    ds_buf_printf(b, ",\"request_id\":\"%s-%d-%" PRIu64 "\"%s}", o->run_id, c->id, c->n,
                  o->no_wait ? ",\"wait\":false" : "");
}

/* Sends the client's next request; start is when it was due (open loop)
 * or now (closed loop). */
static void conn_send(load *L, conn *c, int64_t start)
{
    ds_buf *b = &L->body;
    ds_buf_reset(b);
    put_body(L, c, b);
    ds_buf_reset(&c->out);
    c->out_off = 0;
    ds_buf_printf(&c->out,
                  "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\n",
                  L->o.path, L->o.host, L->o.port, b->len);
    if (L->o.api_key)
        ds_buf_printf(&c->out, "Authorization: Bearer %s\r\n", L->o.api_key);
    ds_buf_puts(&c->out, "\r\n");
    ds_buf_append(&c->out, b->data, b->len);
    if (L->nsent == L->asent) {
        L->asent = L->asent ? L->asent * 2 : 65536;
        L->sent = xrealloc(L->sent, L->asent * sizeof *L->sent);
    }
    c->sent_idx = L->nsent;
    L->sent[L->nsent++] = (sent_rec){(uint32_t)c->id, (uint32_t)c->n, start, 0};
    c->n++;
    c->start_ns = start;
    c->measured = in_window(L, start);
    c->state = C_BUSY;
    L->busy++;
    conn_flush(L, c);
}

static void record(load *L, conn *c, int status, const ds_buf *body)
{
    int64_t now = ds_now_ns(), seq;
    if (status == 200 && in_window(L, now))
        L->window_ok++;
    if (status == 200 && bench_json_int(body->data, body->len, "seq", &seq))
        L->sent[c->sent_idx].seq = seq;
    if (status != 200 && status != 202 && L->shown < 3) {
        L->shown++;
        fprintf(stderr, "bench_load: status %d: %.300s\n", status, body->data);
    }
    if (!c->measured)
        return;
    L->by_status[status < MAX_STATUS ? status : 0]++;
    if (status != 200 && status != 202) {
        L->errors++;
        return;
    }
    if (status == 200)
        L->ok++;
    else
        L->queued++;
    if (L->nlat == L->alat) {
        L->alat = L->alat ? L->alat * 2 : 65536;
        L->lat = xrealloc(L->lat, L->alat * sizeof *L->lat);
    }
    L->lat[L->nlat++] = now - c->start_ns;
}

/* Parses every complete response in the input buffer. */
static void conn_parse(load *L, conn *c, bool eof)
{
    while (c->fd >= 0) {
        if (c->state != C_BUSY) {
            if (c->in.len)
                conn_reset(L, c, "bytes without a request", true);
            else if (eof)
                conn_reset(L, c, "closed", false);
            return;
        }
        bench_http_resp r;
        long used = bench_http_parse(c->in.data, c->in.len, &r, &L->body);
        if (used == 0 && eof && r.until_eof && r.head_len) {
            ds_buf_append(&L->body, c->in.data + r.head_len, c->in.len - r.head_len);
            used = (long)c->in.len;
        }
        if (used < 0 || (used == 0 && (eof || c->in.overflow))) {
            conn_reset(L, c, used < 0 ? "malformed response" : "closed mid-response", true);
            return;
        }
        if (used == 0)
            return;
        memmove(c->in.data, c->in.data + used, c->in.len - (size_t)used);
        c->in.len -= (size_t)used;
        c->in.data[c->in.len] = '\0';
        if (r.status < 200)
            continue; /* interim response */
        record(L, c, r.status, &L->body);
        c->state = C_IDLE;
        L->busy--;
        L->idle[L->nidle++] = c->id;
        if (r.close || eof) {
            conn_reset(L, c, "server closed", false);
            return;
        }
    }
}

static void conn_event(load *L, conn *c, uint32_t events)
{
    if (c->state == C_CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_reset(L, c, strerror(err), true);
            return;
        }
        c->state = C_IDLE;
        L->idle[L->nidle++] = c->id;
        ep_set(L, c, false);
        return;
    }
    if ((events & EPOLLOUT) && c->state == C_BUSY)
        conn_flush(L, c);
    if (c->fd < 0 || !(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    char buf[READ_CHUNK];
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        conn_reset(L, c, strerror(errno), true);
        return;
    }
    ds_buf_append(&c->in, buf, (size_t)n);
    conn_parse(L, c, n == 0);
}

static int64_t due_time(const load *L, uint64_t i)
{
    return L->t0 + (int64_t)((double)i * 1e9 / L->o.rate);
}

/* Starts what is due: every idle client in closed loop; in open loop the
 * requests due by now, on idle clients, oldest first. */
static void dispatch(load *L, int64_t now)
{
    if (L->o.rate <= 0) {
        while (now < L->t_end && L->nidle > 0)
            conn_send(L, &L->conns[L->idle[--L->nidle]], ds_now_ns());
        return;
    }
    /* late: no idle client is left for it once those due before it go out */
    for (int64_t t; (t = due_time(L, L->due_next)) <= now && t < L->t_end; L->due_next++)
        if (L->due_next - L->sent_next >= (uint64_t)L->nidle && in_window(L, t))
            L->late++;
    while (L->sent_next < L->due_next && L->nidle > 0) {
        conn_send(L, &L->conns[L->idle[--L->nidle]], due_time(L, L->sent_next));
        L->sent_next++;
    }
}

static int next_timeout_ms(load *L, int64_t now)
{
    int64_t wait = 50 * NS_PER_MS;
    if (L->o.rate > 0) {
        int64_t t = due_time(L, L->due_next);
        if (t < L->t_end && t - now < wait) {
            struct itimerspec its = {.it_value = {.tv_sec = t / NS_PER_S, .tv_nsec = t % NS_PER_S}};
            timerfd_settime(L->tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
    }
    return (int)(wait / NS_PER_MS);
}

static void reconnect_due(load *L, int64_t now)
{
    for (int i = 0; i < L->o.clients; i++)
        if (L->conns[i].state == C_DOWN && L->conns[i].retry_ns <= now)
            conn_open(L, &L->conns[i]);
}

static void poll_once(load *L, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(L->ep, evs, 256, timeout_ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        if ((int)evs[i].data.u32 == TIMER_TAG) {
            uint64_t x;
            if (read(L->tfd, &x, sizeof x) < 0 && errno != EAGAIN)
                die("timerfd: %s", strerror(errno));
            continue;
        }
        conn_event(L, &L->conns[evs[i].data.u32], evs[i].events);
    }
}

static void run(load *L)
{
    int64_t deadline = ds_now_ns() + 10 * NS_PER_S;
    for (int i = 0; i < L->o.clients; i++)
        conn_open(L, &L->conns[i]);
    while (L->nidle < L->o.clients && ds_now_ns() < deadline) {
        poll_once(L, 50);
        reconnect_due(L, ds_now_ns());
    }
    if (L->nidle == 0)
        die("could not connect to %s", L->o.url);
    if (L->nidle < L->o.clients)
        fprintf(stderr, "bench_load: only %d of %d clients connected\n", L->nidle, L->o.clients);
    L->t0 = ds_now_ns();
    L->t_warm = L->t0 + (int64_t)(L->o.warmup_s * 1e9);
    L->t_end = L->t_warm + (int64_t)(L->o.duration_s * 1e9);
    int64_t stop = L->t_end + (int64_t)(L->o.drain_s * 1e9);
    for (;;) {
        int64_t now = ds_now_ns();
        if (stop_requested && now < L->t_end) { /* first signal: end the window */
            stop_requested = 0;
            L->t_end = now > L->t_warm ? now : L->t_warm + 1;
            L->o.duration_s = (double)(L->t_end - L->t_warm) / 1e9;
        } else if (stop_requested) { /* second: stop waiting for answers */
            stop = now;
        }
        reconnect_due(L, now);
        dispatch(L, now);
        bool backlog = L->o.rate > 0 && L->sent_next < L->due_next;
        if (now >= stop || (now >= L->t_end && L->busy == 0 && !backlog))
            break;
        poll_once(L, next_timeout_ms(L, now));
    }
    for (int i = 0; i < L->o.clients; i++)
        if (L->conns[i].state == C_BUSY && L->conns[i].measured)
            L->timeouts++;
    for (uint64_t i = L->sent_next; i < L->due_next; i++)
        if (in_window(L, due_time(L, i)))
            L->timeouts++;
    L->errors += L->timeouts;
    L->by_status[0] += L->timeouts;
}

/* ---- setup and report ---------------------------------------------------- */

static void read_cells(load *L, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        die("cannot open %s", file);
    char line[4096];
    size_t alloc = 0;
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        if (line[0] != '{')
            die("cells file: each line must be a JSON object, not: %s", line);
        if (L->ncells == alloc) {
            alloc = alloc ? alloc * 2 : 256;
            L->cells = xrealloc(L->cells, alloc * sizeof *L->cells);
        }
        L->cells[L->ncells++] = xstrdup(line);
    }
    fclose(f);
    if (!L->ncells)
        die("no cells in %s", file);
}

/* Blocking GET of path; the body goes to out. Returns the status or -1. */
static int http_get(load *L, const char *path, ds_buf *out)
{
    int fd = socket(L->addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, L->addr->ai_addr, L->addr->ai_addrlen)) {
        close(fd);
        return -1;
    }
    ds_buf req, in;
    ds_buf_init(&req, 1 << 16);
    ds_buf_init(&in, BENCH_MAX_BODY);
    ds_buf_printf(&req, "GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n", path, L->o.host,
                  L->o.port);
    if (L->o.api_key)
        ds_buf_printf(&req, "Authorization: Bearer %s\r\n", L->o.api_key);
    ds_buf_puts(&req, "\r\n");
    int status = -1;
    if (send(fd, req.data, req.len, MSG_NOSIGNAL) == (ssize_t)req.len) {
        char buf[READ_CHUNK];
        bench_http_resp r;
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n > 0)
                ds_buf_append(&in, buf, (size_t)n);
            long used = bench_http_parse(in.data, in.len, &r, out);
            if (used == 0 && n == 0 && r.until_eof && r.head_len) {
                ds_buf_append(out, in.data + r.head_len, in.len - r.head_len);
                used = 1;
            }
            if (used > 0)
                status = r.status;
            if (used != 0 || n <= 0 || in.overflow)
                break;
        }
    }
    ds_buf_free(&req);
    ds_buf_free(&in);
    close(fd);
    return status;
}

static void keys_add(dim_keys *d, const char *k, size_t n)
{
    if (d->n == d->alloc) {
        d->alloc = d->alloc ? d->alloc * 2 : 64;
        d->keys = xrealloc(d->keys, d->alloc * sizeof *d->keys);
    }
    d->keys[d->n++] = xstrndup(k, n);
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

/* The members of one answer of GET .../members: leaf keys go to leaves,
 * the others to parents. Keys stay as their JSON text (escapes kept). */
static void scan_members(const char *s, dim_keys *leaves, dim_keys *parents)
{
    for (const char *p = strstr(s, "\"key\""); p; p = strstr(p, "\"key\"")) {
        p = skip_ws(p + 5);
        if (*p != ':' || *(p = skip_ws(p + 1)) != '"')
            continue;
        const char *k = ++p;
        while (*p && *p != '"')
            p += p[0] == '\\' && p[1] ? 2 : 1;
        if (!*p)
            return;
        const char *obj_end = strchr(p, '}'), *leaf = strstr(p, "\"leaf\"");
        bool is_leaf = false;
        if (leaf && (!obj_end || leaf < obj_end)) {
            leaf = skip_ws(leaf + 6);
            is_leaf = *leaf == ':' && strncmp(skip_ws(leaf + 1), "true", 4) == 0;
        }
        keys_add(is_leaf ? leaves : parents, k, (size_t)(p - k));
    }
}

/* The leaves of one dimension, walking GET .../members?parent= from the
 * root (one request per inner member). */
static void walk_dim(load *L, dim_keys *d)
{
    dim_keys parents = {0};
    ds_buf path, body;
    ds_buf_init(&path, 4096);
    ds_buf_init(&body, BENCH_MAX_BODY);
    for (size_t next = 0;; next++) {
        ds_buf_reset(&path);
        ds_buf_printf(&path, "/v1/models/%s/dimensions/%s/members", L->o.model, d->name);
        if (next > 0) {
            const char *k = parents.keys[next - 1];
            ds_buf_puts(&path, "?parent=");
            for (; *k; k++) /* percent-encode all but unreserved bytes */
                if (strchr("-._~", *k) || (*k >= '0' && *k <= '9') || (*k >= 'a' && *k <= 'z') ||
                    (*k >= 'A' && *k <= 'Z'))
                    ds_buf_putc(&path, *k);
                else
                    ds_buf_printf(&path, "%%%02X", (unsigned char)*k);
        }
        if (http_get(L, path.data, &body) != 200)
            die("GET %s failed; give --products and --customers, or --cells", path.data);
        scan_members(body.data, d, &parents);
        if (next >= parents.n)
            break;
    }
    for (size_t i = 0; i < parents.n; i++)
        free(parents.keys[i]);
    free(parents.keys);
    ds_buf_free(&path);
    ds_buf_free(&body);
    if (!d->n)
        die("dimension %s has no leaves", d->name);
}

/* The leaf keys of each dimension in --dims: from the server, or the
 * demo's keys when --products and --customers are given. */
static void find_leaves(load *L)
{
    char list[256];
    snprintf(list, sizeof list, "%s", L->o.dims);
    for (char *save, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (L->ndims == MAX_DIMS)
            die("at most %s dimensions", "8");
        snprintf(L->dims[L->ndims++].name, sizeof L->dims[0].name, "%s", t);
    }
    if (!L->o.products || !L->o.customers) {
        for (int i = 0; i < L->ndims; i++)
            walk_dim(L, &L->dims[i]);
    } else { /* product, customer, time of the demo */
        char k[32];
        L->ndims = 3;
        snprintf(L->dims[0].name, sizeof L->dims[0].name, "product");
        snprintf(L->dims[1].name, sizeof L->dims[1].name, "customer");
        snprintf(L->dims[2].name, sizeof L->dims[2].name, "time");
        for (int i = 1; i <= L->o.products; i++)
            keys_add(&L->dims[0], k, (size_t)snprintf(k, sizeof k, "P-%04d", i));
        for (int i = 1; i <= L->o.customers; i++)
            keys_add(&L->dims[1], k, (size_t)snprintf(k, sizeof k, "C-%04d", i));
        for (int m = 0; m < MONTHS; m++)
            keys_add(&L->dims[2], k,
                     (size_t)snprintf(k, sizeof k, "%d-%02d", FIRST_YEAR + m / 12, m % 12 + 1));
    }
    fprintf(stderr, "bench_load: model %s: leaves", L->o.model);
    for (int i = 0; i < L->ndims; i++)
        fprintf(stderr, " %s=%zu", L->dims[i].name, L->dims[i].n);
    fprintf(stderr, "\n");
}

static void write_sent_log(const load *L, const char *file)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    if (!f)
        die("cannot write %s", tmp);
    for (size_t i = 0; i < L->nsent; i++)
        if (in_window(L, L->sent[i].ns)) /* the requests the figures cover */
            fprintf(f, "%s-%" PRIu32 "-%" PRIu32 " %" PRId64 " %" PRId64 "\n", L->o.run_id,
                    L->sent[i].client, L->sent[i].n, L->sent[i].ns, L->sent[i].seq);
    if (fclose(f) || rename(tmp, file))
        die("cannot write %s", file);
}

static void report(load *L)
{
    qsort(L->lat, L->nlat, sizeof *L->lat, bench_cmp_i64);
    double secs = L->o.duration_s;
    printf("e2e edits: clients=%d edits_per_s=%.1f p50_ms=%.2f p99_ms=%.2f ok=%" PRId64
           " queued=%" PRId64 " errors=%" PRId64,
           L->o.clients, (double)L->window_ok / secs, bench_pct_ms(L->lat, L->nlat, 0.50),
           bench_pct_ms(L->lat, L->nlat, 0.99), L->ok, L->queued, L->errors);
    if (L->o.rate > 0)
        printf(" rate=%.1f late=%" PRId64, L->o.rate, L->late);
    printf("\n");
    fflush(stdout);
    fprintf(stderr,
            "bench_load: mode=%s run=%s duration_s=%.1f warmup_s=%.1f sent=%zu p90_ms=%.2f "
            "p999_ms=%.2f max_ms=%.2f conn_errors=%" PRId64 " reconnects=%" PRId64
            " timeouts=%" PRId64,
            L->o.rate > 0 ? "open" : "closed", L->o.run_id, L->o.duration_s, L->o.warmup_s,
            L->nsent, bench_pct_ms(L->lat, L->nlat, 0.90), bench_pct_ms(L->lat, L->nlat, 0.999),
            bench_pct_ms(L->lat, L->nlat, 1.0), L->conn_errors, L->reconnects, L->timeouts);
    for (int s = 1; s < MAX_STATUS; s++)
        if (L->by_status[s] && s != 200 && s != 202)
            fprintf(stderr, " status_%d=%" PRId64, s, L->by_status[s]);
    fprintf(stderr, "\n");
}

static const char usage[] =
    "usage: bench_load [options]\n"
    "  --url URL          server (http://127.0.0.1:8080)\n"
    "  --clients N        concurrent keep-alive connections (256)\n"
    "  --duration-s S     measured window (10)\n"
    "  --warmup-s S       unmeasured start (2)\n"
    "  --drain-s S        wait for answers after the window (15)\n"
    "  --rate R           open loop at R requests/s; 0 = closed loop (0)\n"
    "  --model M          model, sent as \"table\" (sales)\n"
    "  --column C         measure (quantity)\n"
    "  --path P           endpoint (/update_cell)\n"
    "  --kind delta|value delta +1/-1 (default) or a value 1..100\n"
    "  --cells FILE       one JSON cell object per line, e.g. {\"product\":\"P-0001\",...}\n"
    "  --dims LIST        dimensions of a cell (product,customer,time); their leaves\n"
    "                     come from GET /v1/models/{m}/dimensions/{d}/members?parent=..\n"
    "  --products N --customers N   instead, the demo's leaves P-0001..P-N x\n"
    "                     C-0001..C-N x 2024-01..2026-12 (no requests)\n"
    "  --no-wait          send \"wait\": false (expect 202)\n"
    "  --api-key KEY      Authorization: Bearer KEY\n"
    "  --run-id ID        request ids are ID-<client>-<n> (random)\n"
    "  --seed N           cell choice (random)\n"
    "  --sent-log FILE    write \"request_id send_ns seq\" lines at the end\n"
    "  --verbose\n";

static void parse_args(opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if (strcmp(a, "--no-wait") == 0) {
            o->no_wait = true;
            continue;
        }
        if (strcmp(a, "--verbose") == 0) {
            o->verbose++;
            continue;
        }
        if (i + 1 >= argc)
            die("%s needs a value (see --help)", a);
        const char *v = argv[++i];
        if (strcmp(a, "--url") == 0)
            o->url = v;
        else if (strcmp(a, "--clients") == 0)
            o->clients = (int)bench_num_arg("bench_load", a, v, 1, 100000);
        else if (strcmp(a, "--duration-s") == 0)
            o->duration_s = bench_num_arg("bench_load", a, v, 0.1, 1e6);
        else if (strcmp(a, "--warmup-s") == 0)
            o->warmup_s = bench_num_arg("bench_load", a, v, 0, 1e6);
        else if (strcmp(a, "--drain-s") == 0)
            o->drain_s = bench_num_arg("bench_load", a, v, 0, 1e6);
        else if (strcmp(a, "--rate") == 0)
            o->rate = bench_num_arg("bench_load", a, v, 0, 1e8);
        else if (strcmp(a, "--model") == 0)
            o->model = v;
        else if (strcmp(a, "--column") == 0)
            o->column = v;
        else if (strcmp(a, "--path") == 0)
            o->path = v;
        else if (strcmp(a, "--kind") == 0)
            o->kind = v;
        else if (strcmp(a, "--dims") == 0)
            o->dims = v;
        else if (strcmp(a, "--cells") == 0)
            o->cells_file = v;
        else if (strcmp(a, "--products") == 0)
            o->products = (int)bench_num_arg("bench_load", a, v, 1, 9999);
        else if (strcmp(a, "--customers") == 0)
            o->customers = (int)bench_num_arg("bench_load", a, v, 1, 9999);
        else if (strcmp(a, "--api-key") == 0)
            o->api_key = v;
        else if (strcmp(a, "--sent-log") == 0)
            o->sent_log = v;
        else if (strcmp(a, "--seed") == 0)
            o->seed = (uint64_t)bench_num_arg("bench_load", a, v, 0, 1e18);
        else if (strcmp(a, "--run-id") == 0) {
            if (!*v || strlen(v) >= sizeof o->run_id ||
                strspn(v, "abcdefghijklmnopqrstuvwxyz"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") != strlen(v))
                die("--run-id: 1 to 63 of [A-Za-z0-9_.], not %s", v);
            snprintf(o->run_id, sizeof o->run_id, "%s", v);
        } else
            die("unknown option %s (see --help)", a);
    }
    if (strcmp(o->kind, "delta") != 0 && strcmp(o->kind, "value") != 0)
        die("--kind is delta or value, not %s", o->kind);
    if (bench_parse_url(o->url, o->host, sizeof o->host, o->port, sizeof o->port))
        die("bad --url %s (http://host:port)", o->url);
}

static void opts_default(opts *o)
{
    memset(o, 0, sizeof *o);
    o->url = "http://127.0.0.1:8080";
    o->model = "sales";
    o->column = "quantity";
    o->path = "/update_cell";
    o->kind = "delta";
    o->dims = "product,customer,time";
    o->clients = 256;
    o->duration_s = 10;
    o->warmup_s = 2;
    o->drain_s = 15;
    o->seed = (uint64_t)ds_now_ns() ^ ((uint64_t)getpid() << 32);
    snprintf(o->run_id, sizeof o->run_id, "r%08" PRIx64, ds_mix64(o->seed) & 0xffffffffu);
}

static void setup(load *L)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(L->o.host, L->o.port, &hints, &res);
    if (rc)
        die("cannot resolve host: %s", gai_strerror(rc));
    L->addr = res;
    L->rng = L->o.seed;
    if (L->o.cells_file)
        read_cells(L, L->o.cells_file);
    else
        find_leaves(L);
    bench_raise_fd_limit(L->o.clients);
    L->ep = epoll_create1(EPOLL_CLOEXEC);
    L->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (L->ep < 0 || L->tfd < 0)
        die("epoll/timerfd: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)TIMER_TAG};
    epoll_ctl(L->ep, EPOLL_CTL_ADD, L->tfd, &ev);
    L->conns = xcalloc((size_t)L->o.clients, sizeof *L->conns);
    L->idle = xcalloc((size_t)L->o.clients, sizeof *L->idle);
    for (int i = 0; i < L->o.clients; i++) {
        conn *c = &L->conns[i];
        c->id = i;
        c->fd = -1;
        ds_buf_init(&c->in, BENCH_MAX_BODY + BENCH_MAX_HEAD);
        ds_buf_init(&c->out, 1 << 20);
    }
    ds_buf_init(&L->body, BENCH_MAX_BODY);
}

int main(int argc, char **argv)
{
    static load L; /* large; zeroed */
    opts_default(&L.o);
    parse_args(&L.o, argc, argv);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    setup(&L);
    run(&L);
    report(&L);
    if (L.o.sent_log)
        write_sent_log(&L, L.o.sent_log);
    return L.ok + L.queued > 0 ? 0 : 1;
}
