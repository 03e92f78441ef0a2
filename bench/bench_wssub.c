/* bench_wssub: WebSocket subscribers for the end-to-end figures
 * (bench/e2e.sh). N clients in one epoll loop connect to
 * ws://host:port/v1/models/{m}/ws (upgrade with a random key, the accept
 * checked with SHA-1 + base64 from OpenSSL), answer pings, follow
 * fragmented messages and 16/64-bit lengths, and for every event note the
 * receive time (CLOCK_MONOTONIC) with the event's top-level "seq" and
 * "request_id". Each subscriber must see seqs strictly increasing without
 * gaps (from --since + 1 when given, else from its first event).
 *
 * It runs until --duration-s, until every subscriber has --expect events,
 * or --idle-s after the last event (SIGINT/SIGTERM also end it), and prints
 *
 *   e2e subscribers: subscribers=1000 events=200000 gaps=0 dups=0 closed=0 failed=0
 *
 * With --sent-log FILE (written by bench_load at its end; waited for up to
 * --log-wait-s) it matches request ids and prints the POST -> event latency
 * over every (subscriber, event) pair:
 *
 *   e2e latency: p50_ms=3.20 p99_ms=8.10 n=200000
 *
 * Grid mode (--grids FILE: one grid per line, the JSON body of POST
 * /v1/models/{m}/grid): subscriber i sends {"op": "subscribe", "id": "gK",
 * "grid": line K} (K = i mod the number of lines) after the upgrade and
 * follows its grid: the snapshot (its values and seq), then patches, each
 * of whose seq must be greater than the last (else counted as disorder),
 * applied to its copy of the values. With --contiguous (every command
 * changes each grid: they hold a total every write changes) a patch's seq
 * must also be the last + 1. At the end (after --idle-s without a message)
 * each subscriber subscribes its grid again as "check": the fresh
 * snapshot's values must equal its copy (else mismatched), and with
 * --contiguous its last seq must be the snapshot's (the model's final
 * seq). It prints
 *
 *   e2e grid subscribers: subscribers=1000 grids=50 patches=.. missed=0 p50_ms=.. p99_ms=..
 *     mismatched=0 unchecked=0 resnapshots=0 disorder=0 errors=0 closed=0 failed=0
 *
 * (one line) where missed counts, with --contiguous, the (subscriber, seq)
 * patches that never came (gaps, seqs a fresh snapshot stood in for, and
 * those short of the final seq); without it, the mismatched subscribers;
 * unchecked, the subscribers whose check snapshot did not come in time.
 * The latency is from the POST whose answer carried a patch's seq
 * (bench_load's --sent-log) to the patch's arrival, over every
 * (subscriber, patch) pair; patches of commands outside the log are
 * unmatched.
 *
 * Start it first; --ready-file FILE is created once every subscriber is
 * open (in grid mode: has its snapshot), so a script can wait for it
 * before starting the load. */
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
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "bench_net.h"
#include "util.h"

enum {
    MAX_MSG = 64 * 1024 * 1024,
    READ_CHUNK = 64 * 1024,
    MAX_GRID_LINE = 64 * 1024,
    CHECK_WAIT_S = 20, /* for the check snapshots at the end */
};

#define NS_PER_S  BENCH_NS_PER_S
#define NS_PER_MS BENCH_NS_PER_MS
#define WS_GUID   "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct opts {
    const char *url, *model, *path, *api_key, *sent_log, *ready_file, *grids_file;
    char host[256], port[16], path_buf[512];
    int subscribers, verbose;
    bool contiguous;
    int64_t since, expect;
    double duration_s, log_wait_s, connect_s, idle_s;
} opts;

static volatile sig_atomic_t stop_requested; /* SIGINT / SIGTERM: report and exit */

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void die(const char *fmt, const char *arg) __attribute__((noreturn));
static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench_wssub: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

/* ---- pure helpers: URL, handshake, frames, event scan -------------------- */

/* accept = base64(SHA-1(key + GUID)), RFC 6455 section 4.2.2. */
static void ws_accept_for(const char *key, char out[32])
{
    char cat[128];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n = snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
    if (!EVP_Digest(cat, (size_t)n, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        die("%s", "SHA-1 failed");
    EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 chars + NUL */
}

typedef struct upgrade_resp {
    int status;
    bool upgrade, connection, accept_ok;
    size_t head_len;
} upgrade_resp;

/* The answer to the upgrade request: 1 when its head is complete, 0 when
 * more bytes are needed, -1 when malformed. */
static int parse_upgrade(const char *b, size_t n, const char *want_accept, upgrade_resp *r)
{
    memset(r, 0, sizeof *r);
    const char *eol = bench_find_crlf(b, n);
    if (!eol)
        return n > BENCH_MAX_HEAD ? -1 : 0;
    if (eol - b < 12 || strncmp(b, "HTTP/1.", 7) != 0 || b[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++)
        if (b[i] < '0' || b[i] > '9')
            return -1;
    r->status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    const char *p = eol + 2, *end = b + n;
    for (;;) {
        const char *e = bench_find_crlf(p, (size_t)(end - p));
        if (!e)
            return n > BENCH_MAX_HEAD ? -1 : 0;
        if (e == p)
            break;
        size_t len = (size_t)(e - p), vn;
        const char *v;
        if ((v = bench_header_value(p, len, "upgrade", &vn)))
            r->upgrade = bench_has_token(v, vn, "websocket");
        else if ((v = bench_header_value(p, len, "connection", &vn)))
            r->connection = bench_has_token(v, vn, "upgrade");
        else if ((v = bench_header_value(p, len, "sec-websocket-accept", &vn)))
            r->accept_ok = vn == strlen(want_accept) && memcmp(v, want_accept, vn) == 0;
        p = e + 2;
    }
    r->head_len = (size_t)(p + 2 - b);
    return 1;
}

typedef struct ws_frame {
    bool fin;
    int op;
    uint64_t len;
    size_t hdr;
} ws_frame;

/* A server frame's header: 1 when complete, 0 when more bytes are needed,
 * -1 on a protocol error (reserved bits, a masked server frame, a bad
 * opcode, a fragmented or long control frame, a 64-bit length >= 2^63). */
static int ws_frame_head(const unsigned char *b, size_t n, ws_frame *f)
{
    if (n < 2)
        return 0;
    if ((b[0] & 0x70) || (b[1] & 0x80))
        return -1;
    f->fin = (b[0] & 0x80) != 0;
    f->op = b[0] & 0x0f;
    f->len = b[1] & 0x7f;
    f->hdr = 2;
    if (f->len == 126) {
        if (n < 4)
            return 0;
        f->len = (uint64_t)b[2] << 8 | b[3];
        f->hdr = 4;
    } else if (f->len == 127) {
        if (n < 10)
            return 0;
        f->len = 0;
        for (int i = 2; i < 10; i++)
            f->len = f->len << 8 | b[i];
        if (f->len >> 63)
            return -1;
        f->hdr = 10;
    }
    if (f->op > 2 && f->op < 8)
        return -1;
    if (f->op > 10 || (f->op >= 8 && (!f->fin || f->len > 125)))
        return -1;
    return 1;
}

/* The top-level "seq" (an integer) and "request_id" (a string: the raw
 * bytes between its quotes) of an event object (the server writes both
 * first, so the changes are not scanned). False without a seq. */
static bool scan_event(const char *s, size_t n, int64_t *seq, const char **rid, size_t *rlen)
{
    *rid = bench_json_field(s, n, "request_id", rlen);
    if (*rid && *rlen >= 2 && (*rid)[0] == '"') {
        (*rid)++;
        *rlen -= 2;
    } else {
        *rid = NULL;
        *rlen = 0;
    }
    return bench_json_int(s, n, "seq", seq);
}

/* A JSON number's text as an integer at its own scale ("12.50" -> 1250):
 * the values of one grid all have its measure's scale, so these compare
 * exactly. */
static bool parse_scaled(const char *p, size_t n, int64_t *v)
{
    bool neg = n > 0 && p[0] == '-';
    int64_t x = 0;
    int digits = 0;
    for (size_t i = neg; i < n; i++) {
        if (p[i] == '.')
            continue;
        if (p[i] < '0' || p[i] > '9' || ++digits > 18)
            return false;
        x = x * 10 + (p[i] - '0');
    }
    *v = neg ? -x : x;
    return digits > 0;
}

/* A read position in JSON array text. */
typedef struct cursor {
    const char *s;
    size_t n, i;
} cursor;

static void cur_skip(cursor *c)
{
    while (c->i < c->n &&
           (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\r' || c->s[c->i] == '\n'))
        c->i++;
}

/* Skips blanks; true (and steps past it) when the next byte is ch. */
static bool cur_take(cursor *c, char ch)
{
    cur_skip(c);
    if (c->i < c->n && c->s[c->i] == ch) {
        c->i++;
        return true;
    }
    return false;
}

static bool cur_number(cursor *c, int64_t *v)
{
    cur_skip(c);
    size_t b = c->i;
    while (c->i < c->n && strchr("-.0123456789", c->s[c->i]))
        c->i++;
    return parse_scaled(c->s + b, c->i - b, v);
}

/* Grid values [[v, ...], ...] into *vals (grown as needed; *alloc is its
 * size), *rows by *cols; false when malformed or ragged. */
static bool read_values(const char *p, size_t n, int64_t **vals, size_t *alloc, int *rows,
                        int *cols)
{
    cursor c = {p, n, 0};
    size_t nv = 0;
    *rows = 0;
    *cols = -1;
    if (!cur_take(&c, '['))
        return false;
    if (cur_take(&c, ']'))
        return true;
    do {
        int k = 0;
        if (!cur_take(&c, '['))
            return false;
        do {
            if (nv == *alloc) {
                *alloc = *alloc ? *alloc * 2 : 256;
                *vals = xrealloc(*vals, *alloc * sizeof **vals);
            }
            if (!cur_number(&c, &(*vals)[nv++]))
                return false;
            k++;
        } while (cur_take(&c, ','));
        if (!cur_take(&c, ']') || (*cols >= 0 && k != *cols))
            return false;
        *cols = k;
        (*rows)++;
    } while (cur_take(&c, ','));
    return cur_take(&c, ']');
}

/* ---- subscribers ----------------------------------------------------------- */

typedef enum { S_DOWN, S_CONNECTING, S_HANDSHAKE, S_OPEN } sub_state;

typedef struct sub {
    int fd, id, msg_op, close_code;
    sub_state state;
    bool want_out, in_msg, got_first, ever_open;
    char key[32], accept[32];
    ds_buf in, out, msg;
    size_t out_off;
    int64_t last_seq, events, gaps, dups, bad;
    /* grid mode: events are patches, dups patches out of order, gaps the
     * seqs missed (--contiguous) */
    int grid, rows, cols;
    bool checked, mismatched;
    int64_t check_seq, resnapshots, errors;
    int64_t *vals; /* the copy: the snapshot with every patch applied */
    size_t vals_alloc;
} sub;

typedef struct ev_pair {
    int64_t recv_ns;
    int64_t key; /* the interned request id; in grid mode the seq */
} ev_pair;

typedef struct wss {
    opts o;
    int ep, nopen, nfailed, nclosed, shown;
    int64_t last_event_ns; /* receive time of the latest event, 0 before any */
    struct addrinfo *addr;
    sub *subs;
    uint64_t rng;
    ds_strmap ids; /* request id -> index; keys live in the arena */
    ds_arena arena;
    uint32_t nids;
    ev_pair *pairs;
    size_t npairs, apairs;
    char **grids; /* grid mode: the lines of --grids */
    int ngrids, nsnap, nchecked;
    int64_t *scratch; /* the check snapshot's values */
    size_t scratch_alloc;
} wss;

static void ep_set(wss *W, sub *s, bool want_out)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)s->id};
    s->want_out = want_out;
    epoll_ctl(W->ep, EPOLL_CTL_MOD, s->fd, &ev);
}

/* Closes the socket for good (subscribers are not reconnected). */
static void sub_drop(wss *W, sub *s, const char *why)
{
    if (s->fd < 0)
        return;
    if (s->state == S_OPEN)
        W->nopen--;
    if (s->ever_open)
        W->nclosed++;
    else
        W->nfailed++;
    if (why && (W->o.verbose || W->shown < 3)) {
        W->shown++;
        fprintf(stderr, "bench_wssub: subscriber %d: %s\n", s->id, why);
    }
    close(s->fd);
    s->fd = -1;
    s->state = S_DOWN;
}

static void sub_flush(wss *W, sub *s)
{
    while (s->out_off < s->out.len) {
        ssize_t w = send(s->fd, s->out.data + s->out_off, s->out.len - s->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!s->want_out)
                ep_set(W, s, true);
            return;
        }
        if (w < 0) {
            sub_drop(W, s, strerror(errno));
            return;
        }
        s->out_off += (size_t)w;
    }
    ds_buf_reset(&s->out);
    s->out_off = 0;
    if (s->want_out)
        ep_set(W, s, false);
}

/* Queues a masked client frame (FIN set) and sends what it can. */
static void send_frame(wss *W, sub *s, int op, const char *p, size_t n)
{
    unsigned char h[14];
    size_t hn = 0;
    h[hn++] = (unsigned char)(0x80 | op);
    if (n < 126) {
        h[hn++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        h[hn++] = 0x80 | 126;
        h[hn++] = (unsigned char)(n >> 8);
        h[hn++] = (unsigned char)n;
    } else {
        h[hn++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[hn++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    W->rng += 0x9e3779b97f4a7c15ULL;
    uint64_t m = ds_mix64(W->rng);
    unsigned char mask[4] = {(unsigned char)m, (unsigned char)(m >> 8), (unsigned char)(m >> 16),
                             (unsigned char)(m >> 24)};
    memcpy(h + hn, mask, 4);
    hn += 4;
    ds_buf_append(&s->out, (const char *)h, hn);
    for (size_t i = 0; i < n; i++)
        ds_buf_putc(&s->out, (char)(p[i] ^ mask[i & 3]));
    sub_flush(W, s);
}

static uint32_t intern_id(wss *W, const char *rid, size_t rlen)
{
    int32_t v;
    if (ds_strmap_get(&W->ids, rid, rlen, &v))
        return (uint32_t)v;
    char *k = ds_arena_strndup(&W->arena, rid, rlen);
    ds_strmap_put(&W->ids, k, rlen, (int32_t)W->nids);
    return W->nids++;
}

static void poll_once(wss *W, int timeout_ms);

static void add_pair(wss *W, int64_t now, int64_t key)
{
    if (W->npairs == W->apairs) {
        W->apairs = W->apairs ? W->apairs * 2 : 1 << 16;
        W->pairs = xrealloc(W->pairs, W->apairs * sizeof *W->pairs);
    }
    W->pairs[W->npairs++] = (ev_pair){now, key};
}

/* ---- grid subscriptions ------------------------------------------------------ */

static void grid_subscribe(wss *W, sub *s, const char *id)
{
    ds_buf m;
    ds_buf_init(&m, MAX_GRID_LINE + 256);
    ds_buf_printf(&m, "{\"op\":\"subscribe\",\"id\":\"%s\",\"grid\":%s}", id, W->grids[s->grid]);
    send_frame(W, s, 1, m.data, m.len);
    ds_buf_free(&m);
}

static void grid_bad(wss *W, sub *s, const char *what, const char *p, size_t n)
{
    if (s->bad++ == 0 && W->shown++ < 3)
        fprintf(stderr, "bench_wssub: subscriber %d: %s: %.*s\n", s->id, what,
                (int)(n < 300 ? n : 300), p);
}

/* The "check" snapshot at the end: equal to the copy? */
static void grid_check(wss *W, sub *s, const char *v, size_t vn, int64_t seq)
{
    int rows, cols;
    if (s->checked)
        return; /* its patches, if the model moved on */
    s->checked = true;
    s->check_seq = seq;
    W->nchecked++;
    if (!v || !read_values(v, vn, &W->scratch, &W->scratch_alloc, &rows, &cols)) {
        grid_bad(W, s, "check snapshot without values", v ? v : "", v ? vn : 0);
        s->mismatched = true;
        return;
    }
    s->mismatched = rows != s->rows || cols != s->cols ||
                    memcmp(W->scratch, s->vals, (size_t)rows * (size_t)cols * sizeof *s->vals) != 0;
}

static void grid_snapshot(wss *W, sub *s, const char *p, size_t n, int64_t seq, int64_t now)
{
    size_t vn;
    const char *v = bench_json_field(p, n, "values", &vn);
    if (!v || !read_values(v, vn, &s->vals, &s->vals_alloc, &s->rows, &s->cols)) {
        grid_bad(W, s, "snapshot without values", p, n);
        return;
    }
    if (!s->got_first) {
        W->nsnap++;
    } else { /* it fell behind: its queued patches were dropped */
        s->resnapshots++;
        if (W->o.contiguous && seq > s->last_seq)
            s->gaps += seq - s->last_seq;
    }
    s->got_first = true;
    s->last_seq = seq;
    W->last_event_ns = now;
}

/* [[row, col, value], ...] into the copy; false when malformed. */
static bool grid_apply(sub *s, const char *p, size_t n)
{
    cursor c = {p, n, 0};
    if (!cur_take(&c, '['))
        return false;
    if (cur_take(&c, ']'))
        return true;
    do {
        int64_t r, k, v;
        if (!cur_take(&c, '[') || !cur_number(&c, &r) || !cur_take(&c, ',') ||
            !cur_number(&c, &k) || !cur_take(&c, ',') || !cur_number(&c, &v) ||
            !cur_take(&c, ']') || r < 0 || r >= s->rows || k < 0 || k >= s->cols)
            return false;
        s->vals[r * s->cols + k] = v;
    } while (cur_take(&c, ','));
    return cur_take(&c, ']');
}

static void grid_patch(wss *W, sub *s, const char *p, size_t n, int64_t seq, int64_t now)
{
    size_t cn;
    const char *cells = bench_json_field(p, n, "cells", &cn);
    if (!s->got_first) {
        grid_bad(W, s, "patch before the snapshot", p, n);
        return;
    }
    if (seq <= s->last_seq) {
        s->dups++;
        return;
    }
    if (W->o.contiguous && seq > s->last_seq + 1)
        s->gaps += seq - s->last_seq - 1;
    if (!cells || !grid_apply(s, cells, cn))
        grid_bad(W, s, "patch with bad cells", p, n);
    s->last_seq = seq;
    s->events++;
    W->last_event_ns = now;
    if (W->o.sent_log)
        add_pair(W, now, seq);
}

/* A message on a grid subscriber's connection. Change-feed events sent
 * before the subscription took effect have no "op" and are skipped. */
static void grid_message(wss *W, sub *s, const char *p, size_t n, int64_t now)
{
    size_t on, in;
    const char *op = bench_json_field(p, n, "op", &on), *id = bench_json_field(p, n, "id", &in);
    int64_t seq = 0;
    if (!op)
        return;
    bool check = id && in == 7 && memcmp(id, "\"check\"", 7) == 0;
    if (on == 7 && memcmp(op, "\"error\"", 7) == 0) {
        s->errors++;
        grid_bad(W, s, "error", p, n);
        return;
    }
    if (!bench_json_int(p, n, "seq", &seq)) {
        grid_bad(W, s, "message without a seq", p, n);
        return;
    }
    if (on == 10 && memcmp(op, "\"snapshot\"", 10) == 0) {
        if (check) {
            const char *v = bench_json_field(p, n, "values", &in);
            grid_check(W, s, v, in, seq);
        } else {
            grid_snapshot(W, s, p, n, seq, now);
        }
    } else if (on == 7 && memcmp(op, "\"patch\"", 7) == 0) {
        if (!check)
            grid_patch(W, s, p, n, seq, now);
    } else {
        grid_bad(W, s, "unknown op", p, n);
    }
}

/* The end: every subscriber with a snapshot asks for a fresh one of its
 * grid ("check"), compared with its copy as it comes. */
static void grid_check_all(wss *W)
{
    int want = 0;
    for (int i = 0; i < W->o.subscribers; i++) {
        sub *s = &W->subs[i];
        if (s->state == S_OPEN && s->got_first) {
            grid_subscribe(W, s, "check");
            want++;
        }
    }
    int64_t until = ds_now_ns() + CHECK_WAIT_S * NS_PER_S;
    while (W->nchecked < want && W->nopen > 0 && ds_now_ns() < until && !stop_requested)
        poll_once(W, 50);
    if (W->nchecked < want)
        fprintf(stderr, "bench_wssub: %d of %d check snapshots came\n", W->nchecked, want);
}

static void on_message(wss *W, sub *s, const char *p, size_t n, int64_t now)
{
    int64_t seq = 0;
    const char *rid;
    size_t rlen;
    if (W->grids) {
        grid_message(W, s, p, n, now);
        return;
    }
    if (!scan_event(p, n, &seq, &rid, &rlen)) {
        if (s->bad++ == 0)
            fprintf(stderr, "bench_wssub: message without a seq: %.200s\n", p);
        return;
    }
    int64_t want = s->got_first ? s->last_seq + 1 : W->o.since >= 0 ? W->o.since + 1 : seq;
    if (seq < want && (s->got_first || W->o.since >= 0)) { /* seen, or not asked for */
        s->dups++;
        return;
    }
    if (seq > want)
        s->gaps += seq - want;
    s->got_first = true;
    s->last_seq = seq;
    W->last_event_ns = now;
    s->events++;
    if (W->o.sent_log && rid)
        add_pair(W, now, intern_id(W, rid, rlen));
}

static void on_close_frame(wss *W, sub *s, const unsigned char *p, size_t n)
{
    s->close_code = n >= 2 ? p[0] << 8 | p[1] : 1005;
    char why[200];
    snprintf(why, sizeof why, "closed by the server: code %d %.*s", s->close_code,
             n > 2 ? (int)(n - 2 < 120 ? n - 2 : 120) : 0, (const char *)p + 2);
    send_frame(W, s, 8, (const char *)p, n >= 2 ? 2 : 0); /* echo the code */
    sub_drop(W, s, why);
}

static void on_frame(wss *W, sub *s, const ws_frame *f, const char *p, int64_t now)
{
    size_t n = (size_t)f->len;
    switch (f->op) {
    case 1:
    case 2:
        if (s->in_msg) {
            sub_drop(W, s, "new message inside a fragmented one");
            return;
        }
        if (f->fin) {
            if (f->op == 1)
                on_message(W, s, p, n, now);
            return;
        }
        s->in_msg = true;
        s->msg_op = f->op;
        ds_buf_reset(&s->msg);
        ds_buf_append(&s->msg, p, n);
        return;
    case 0:
        if (!s->in_msg) {
            sub_drop(W, s, "continuation without a message");
            return;
        }
        ds_buf_append(&s->msg, p, n);
        if (s->msg.overflow) {
            sub_drop(W, s, "message too large");
            return;
        }
        if (f->fin) {
            s->in_msg = false;
            if (s->msg_op == 1)
                on_message(W, s, s->msg.data, s->msg.len, now);
        }
        return;
    case 8:
        on_close_frame(W, s, (const unsigned char *)p, n);
        return;
    case 9:
        send_frame(W, s, 10, p, n); /* pong with the ping's payload */
        return;
    default:
        return; /* a pong */
    }
}

/* Handles every complete frame in the input buffer. */
static void sub_frames(wss *W, sub *s, int64_t now)
{
    size_t off = 0;
    while (s->fd >= 0) {
        ws_frame f;
        int r = ws_frame_head((const unsigned char *)s->in.data + off, s->in.len - off, &f);
        if (r < 0) {
            sub_drop(W, s, "protocol error in a frame header");
            return;
        }
        if (r == 0)
            break;
        if (f.len > MAX_MSG) {
            sub_drop(W, s, "frame too large");
            return;
        }
        if (s->in.len - off < f.hdr + f.len)
            break;
        const char *p = s->in.data + off + f.hdr;
        off += f.hdr + (size_t)f.len;
        on_frame(W, s, &f, p, now);
    }
    if (s->fd < 0)
        return;
    memmove(s->in.data, s->in.data + off, s->in.len - off);
    s->in.len -= off;
    s->in.data[s->in.len] = '\0';
}

static void sub_handshake_reply(wss *W, sub *s, int64_t now)
{
    upgrade_resp r;
    int h = parse_upgrade(s->in.data, s->in.len, s->accept, &r);
    if (h == 0)
        return;
    char why[400];
    if (h < 0 || r.status != 101 || !r.upgrade || !r.connection || !r.accept_ok) {
        snprintf(why, sizeof why, "upgrade refused: status %d%s%s%s: %.300s", h < 0 ? 0 : r.status,
                 r.upgrade ? "" : ", no Upgrade: websocket",
                 r.connection ? "" : ", no Connection: Upgrade",
                 r.accept_ok ? "" : ", bad Sec-WebSocket-Accept",
                 h < 0 || r.status == 101 ? "" : s->in.data + r.head_len);
        sub_drop(W, s, why);
        return;
    }
    s->state = S_OPEN;
    s->ever_open = true;
    W->nopen++;
    memmove(s->in.data, s->in.data + r.head_len, s->in.len - r.head_len);
    s->in.len -= r.head_len;
    s->in.data[s->in.len] = '\0';
    if (W->grids) {
        char id[16];
        snprintf(id, sizeof id, "g%d", s->grid);
        grid_subscribe(W, s, id);
    }
    if (s->fd >= 0)
        sub_frames(W, s, now);
}

static void sub_send_upgrade(wss *W, sub *s)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        die("%s", "RAND_bytes failed");
    EVP_EncodeBlock((unsigned char *)s->key, raw, sizeof raw); /* 24 chars */
    ws_accept_for(s->key, s->accept);
    ds_buf_printf(&s->out,
                  "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
                  W->o.path, W->o.host, W->o.port, s->key);
    if (W->o.api_key)
        ds_buf_printf(&s->out, "Authorization: Bearer %s\r\n", W->o.api_key);
    ds_buf_puts(&s->out, "\r\n");
    s->state = S_HANDSHAKE;
    sub_flush(W, s);
}

static void sub_event(wss *W, sub *s, uint32_t events)
{
    if (s->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            sub_drop(W, s, strerror(err));
            return;
        }
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            sub_send_upgrade(W, s);
        return;
    }
    if (events & EPOLLOUT)
        sub_flush(W, s);
    if (s->fd < 0 || !(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    char buf[READ_CHUNK];
    ssize_t n = recv(s->fd, buf, sizeof buf, 0);
    int64_t now = ds_now_ns();
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        sub_drop(W, s, n < 0 ? strerror(errno) : "connection closed without a close frame");
        return;
    }
    ds_buf_append(&s->in, buf, (size_t)n);
    if (s->in.overflow) {
        sub_drop(W, s, "input buffer full");
        return;
    }
    if (s->state == S_HANDSHAKE)
        sub_handshake_reply(W, s, now);
    else
        sub_frames(W, s, now);
}

static void sub_open(wss *W, sub *s)
{
    s->fd = socket(W->addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->state = S_CONNECTING;
    if (connect(s->fd, W->addr->ai_addr, W->addr->ai_addrlen) && errno != EINPROGRESS) {
        sub_drop(W, s, strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)s->id};
    s->want_out = true;
    if (epoll_ctl(W->ep, EPOLL_CTL_ADD, s->fd, &ev))
        die("epoll_ctl: %s", strerror(errno));
}

static void poll_once(wss *W, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(W->ep, evs, 256, timeout_ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        sub *s = &W->subs[evs[i].data.u32];
        if (s->fd >= 0)
            sub_event(W, s, evs[i].events);
    }
}

static bool all_expected(const wss *W)
{
    if (W->o.expect <= 0 || W->nopen == 0)
        return false;
    for (int i = 0; i < W->o.subscribers; i++)
        if (W->subs[i].state == S_OPEN && W->subs[i].events < W->o.expect)
            return false;
    return true;
}

/* Says goodbye (close 1000) to every open subscriber and closes it; these
 * do not count as closed. */
static void finish(wss *W)
{
    static const char normal[2] = {0x03, (char)0xe8};
    for (int i = 0; i < W->o.subscribers; i++) {
        sub *s = &W->subs[i];
        if (s->fd < 0)
            continue;
        if (s->state == S_OPEN)
            send_frame(W, s, 8, normal, 2);
        if (s->fd >= 0) {
            shutdown(s->fd, SHUT_WR);
            close(s->fd);
            s->fd = -1;
        }
    }
}

static void run(wss *W)
{
    int64_t t0 = ds_now_ns(), deadline = t0 + (int64_t)(W->o.connect_s * 1e9);
    for (int i = 0; i < W->o.subscribers; i++)
        sub_open(W, &W->subs[i]);
    while (W->nopen + W->nfailed < W->o.subscribers && ds_now_ns() < deadline && !stop_requested)
        poll_once(W, 50);
    if (W->nopen == 0) {
        fprintf(stderr, "bench_wssub: no subscriber could open %s\n", W->o.path);
        return;
    }
    fprintf(stderr, "bench_wssub: %d of %d subscribers open (%.0f ms)\n", W->nopen,
            W->o.subscribers, (double)(ds_now_ns() - t0) / 1e6);
    if (W->grids) { /* every open subscriber has its snapshot */
        while (W->nsnap < W->nopen && ds_now_ns() < deadline && !stop_requested)
            poll_once(W, 50);
        fprintf(stderr, "bench_wssub: %d snapshots of %d grids (%.0f ms)\n", W->nsnap, W->ngrids,
                (double)(ds_now_ns() - t0) / 1e6);
    }
    if (W->o.ready_file) {
        FILE *f = fopen(W->o.ready_file, "w");
        if (!f || fclose(f))
            die("cannot create %s", W->o.ready_file);
    }
    int64_t end = ds_now_ns() + (int64_t)(W->o.duration_s * 1e9);
    int64_t idle = (int64_t)(W->o.idle_s * 1e9);
    for (int64_t now = ds_now_ns(); now < end && W->nopen > 0 && !stop_requested;
         now = ds_now_ns()) {
        if (all_expected(W) || (idle && W->last_event_ns && now - W->last_event_ns >= idle))
            break;
        poll_once(W, 20);
    }
    if (W->grids && !stop_requested)
        grid_check_all(W);
    finish(W);
}

/* ---- POST -> event latency ------------------------------------------------- */

/* A sent-log line's request: its send time and the seq of its answer. */
typedef struct sent_req {
    int64_t seq, ns;
} sent_req;

static int cmp_seq(const void *a, const void *b)
{
    const sent_req *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Reads the "request_id send_ns seq" lines of the sent log (waiting for the
 * file to appear): by interned request id into send_ns (ids no event
 * carried are skipped), or in grid mode into *by_seq (sorted by seq; lines
 * without a seq are skipped), *nseq of them. */
static int64_t *read_sent_log(wss *W, const char *file, sent_req **by_seq, size_t *nseq)
{
    int64_t until = ds_now_ns() + (int64_t)(W->o.log_wait_s * 1e9);
    struct stat st;
    while (stat(file, &st) != 0) {
        if (ds_now_ns() >= until)
            die("%s did not appear", file);
        usleep(100 * 1000);
    }
    FILE *f = fopen(file, "r");
    if (!f)
        die("cannot open %s", file);
    int64_t *send_ns = xmalloc_array(W->nids ? W->nids : 1, sizeof *send_ns);
    for (uint32_t i = 0; i < W->nids; i++)
        send_ns[i] = INT64_MIN;
    size_t alloc = 0;
    *by_seq = NULL;
    *nseq = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' '), *end;
        if (!sp)
            continue;
        int64_t ns = strtoll(sp + 1, &end, 10), seq = strtoll(end, NULL, 10);
        int32_t idx;
        if (!W->grids && ds_strmap_get(&W->ids, line, (size_t)(sp - line), &idx))
            send_ns[idx] = ns;
        if (W->grids && seq > 0) {
            if (*nseq == alloc) {
                alloc = alloc ? alloc * 2 : 1 << 16;
                *by_seq = xrealloc(*by_seq, alloc * sizeof **by_seq);
            }
            (*by_seq)[(*nseq)++] = (sent_req){seq, ns};
        }
    }
    fclose(f);
    qsort(*by_seq, *nseq, sizeof **by_seq, cmp_seq);
    return send_ns;
}

/* The POST -> event (or patch) latencies in ns, sorted; *n of them. */
static int64_t *latencies(wss *W, size_t *n)
{
    sent_req *by_seq;
    size_t nseq, unmatched = 0;
    int64_t *send_ns = read_sent_log(W, W->o.sent_log, &by_seq, &nseq);
    int64_t *lat = xmalloc_array(W->npairs ? W->npairs : 1, sizeof *lat);
    *n = 0;
    for (size_t i = 0; i < W->npairs; i++) {
        int64_t s = INT64_MIN;
        if (W->grids) {
            sent_req key = {W->pairs[i].key, 0},
                     *hit = bsearch(&key, by_seq, nseq, sizeof *by_seq, cmp_seq);
            if (hit)
                s = hit->ns;
        } else {
            s = send_ns[W->pairs[i].key];
        }
        if (s == INT64_MIN)
            unmatched++;
        else
            lat[(*n)++] = W->pairs[i].recv_ns - s;
    }
    qsort(lat, *n, sizeof *lat, bench_cmp_i64);
    fprintf(stderr,
            "bench_wssub: latency p90_ms=%.2f p999_ms=%.2f max_ms=%.2f min_ms=%.2f "
            "unmatched=%zu\n",
            bench_pct_ms(lat, *n, 0.90), bench_pct_ms(lat, *n, 0.999), bench_pct_ms(lat, *n, 1.0),
            *n ? (double)lat[0] / 1e6 : 0.0, unmatched);
    free(send_ns);
    free(by_seq);
    return lat;
}

static void report_latency(wss *W)
{
    size_t n;
    int64_t *lat = latencies(W, &n);
    printf("e2e latency: p50_ms=%.2f p99_ms=%.2f n=%zu\n", bench_pct_ms(lat, n, 0.50),
           bench_pct_ms(lat, n, 0.99), n);
    free(lat);
}

static void report_grids(wss *W)
{
    int64_t patches = 0, missed = 0, resnaps = 0, disorder = 0, errors = 0, bad = 0;
    int mismatched = 0, unchecked = 0;
    for (int i = 0; i < W->o.subscribers; i++) {
        const sub *s = &W->subs[i];
        if (!s->ever_open)
            continue;
        patches += s->events;
        resnaps += s->resnapshots;
        disorder += s->dups;
        errors += s->errors;
        bad += s->bad;
        mismatched += s->mismatched;
        unchecked += s->got_first && !s->checked;
        if (W->o.contiguous) /* gaps, and what it lacks of the final seq */
            missed += s->gaps +
                      (s->checked && s->check_seq > s->last_seq ? s->check_seq - s->last_seq : 0);
    }
    if (!W->o.contiguous)
        missed = mismatched;
    size_t n = 0;
    int64_t *lat = W->o.sent_log ? latencies(W, &n) : NULL;
    printf("e2e grid subscribers: subscribers=%d grids=%d patches=%" PRId64 " missed=%" PRId64
           " p50_ms=%.2f p99_ms=%.2f mismatched=%d unchecked=%d resnapshots=%" PRId64
           " disorder=%" PRId64 " errors=%" PRId64 " closed=%d failed=%d\n",
           W->o.subscribers, W->ngrids < W->o.subscribers ? W->ngrids : W->o.subscribers, patches,
           missed, bench_pct_ms(lat, n, 0.50), bench_pct_ms(lat, n, 0.99), mismatched, unchecked,
           resnaps, disorder, errors, W->nclosed, W->nfailed);
    fprintf(stderr, "bench_wssub: grid mode: latency n=%zu bad_messages=%" PRId64 "\n", n, bad);
    fflush(stdout);
    free(lat);
}

static void report(wss *W)
{
    int64_t events = 0, gaps = 0, dups = 0, bad = 0, lo = INT64_MAX, hi = 0;
    int64_t first_last = INT64_MAX, last_last = 0;
    for (int i = 0; i < W->o.subscribers; i++) {
        const sub *s = &W->subs[i];
        if (!s->ever_open)
            continue;
        events += s->events;
        gaps += s->gaps;
        dups += s->dups;
        bad += s->bad;
        lo = s->events < lo ? s->events : lo;
        hi = s->events > hi ? s->events : hi;
        if (s->got_first) {
            first_last = s->last_seq < first_last ? s->last_seq : first_last;
            last_last = s->last_seq > last_last ? s->last_seq : last_last;
        }
    }
    printf("e2e subscribers: subscribers=%d events=%" PRId64 " gaps=%" PRId64 " dups=%" PRId64
           " closed=%d failed=%d\n",
           W->o.subscribers, events, gaps, dups, W->nclosed, W->nfailed);
    fprintf(stderr,
            "bench_wssub: events per subscriber min=%" PRId64 " max=%" PRId64
            " last seq min=%" PRId64 " max=%" PRId64 " without_seq=%" PRId64 "\n",
            lo == INT64_MAX ? 0 : lo, hi, first_last == INT64_MAX ? 0 : first_last, last_last, bad);
    fflush(stdout);
}

/* ---- options ------------------------------------------------------------ */

static const char usage[] =
    "usage: bench_wssub [options]\n"
    "  --url URL           server (ws://127.0.0.1:8080; http:// also works)\n"
    "  --model M           model (sales): path /v1/models/M/ws\n"
    "  --path P            explicit path (with query), instead of --model\n"
    "  --since N           ask for events after seq N and expect N+1 first\n"
    "  --subscribers N     1..100000 (1)\n"
    "  --duration-s S      stop after S seconds of listening (30)\n"
    "  --expect N          stop once every open subscriber has N events\n"
    "  --idle-s S          stop S seconds after the last event (0: off)\n"
    "  --sent-log FILE     bench_load's log: report POST -> event latency\n"
    "  --log-wait-s S      wait this long for the log to appear (60)\n"
    "  --connect-s S       time allowed to open every subscriber (10)\n"
    "  --ready-file FILE   created once the subscribers are open (grid mode: have\n"
    "                      their snapshots)\n"
    "  --grids FILE        grid mode: one grid (POST .../grid body) per line;\n"
    "                      subscriber i takes line i mod their number\n"
    "  --contiguous        grid mode: every command changes every grid, so each\n"
    "                      patch's seq is the last + 1\n"
    "  --api-key KEY       Authorization: Bearer KEY\n"
    "  --verbose\n";

static void parse_args(opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if (strcmp(a, "--verbose") == 0) {
            o->verbose++;
            continue;
        }
        if (strcmp(a, "--contiguous") == 0) {
            o->contiguous = true;
            continue;
        }
        if (i + 1 >= argc)
            die("%s needs a value (see --help)", a);
        const char *v = argv[++i];
        if (strcmp(a, "--url") == 0)
            o->url = v;
        else if (strcmp(a, "--model") == 0)
            o->model = v;
        else if (strcmp(a, "--path") == 0)
            o->path = v;
        else if (strcmp(a, "--since") == 0)
            o->since = (int64_t)bench_num_arg("bench_wssub", a, v, 0, 1e18);
        else if (strcmp(a, "--subscribers") == 0)
            o->subscribers = (int)bench_num_arg("bench_wssub", a, v, 1, 100000);
        else if (strcmp(a, "--duration-s") == 0)
            o->duration_s = bench_num_arg("bench_wssub", a, v, 0, 1e7);
        else if (strcmp(a, "--expect") == 0)
            o->expect = (int64_t)bench_num_arg("bench_wssub", a, v, 0, 1e15);
        else if (strcmp(a, "--idle-s") == 0)
            o->idle_s = bench_num_arg("bench_wssub", a, v, 0, 1e6);
        else if (strcmp(a, "--sent-log") == 0)
            o->sent_log = v;
        else if (strcmp(a, "--log-wait-s") == 0)
            o->log_wait_s = bench_num_arg("bench_wssub", a, v, 0, 1e6);
        else if (strcmp(a, "--connect-s") == 0)
            o->connect_s = bench_num_arg("bench_wssub", a, v, 0.1, 1e6);
        else if (strcmp(a, "--ready-file") == 0)
            o->ready_file = v;
        else if (strcmp(a, "--api-key") == 0)
            o->api_key = v;
        else if (strcmp(a, "--grids") == 0)
            o->grids_file = v;
        else
            die("unknown option %s (see --help)", a);
    }
    if (o->grids_file && o->since >= 0)
        die("%s", "--since is for the change feed, not --grids");
    if (o->contiguous && !o->grids_file)
        die("%s", "--contiguous needs --grids");
    if (bench_parse_url(o->url, o->host, sizeof o->host, o->port, sizeof o->port))
        die("bad --url %s (ws://host:port)", o->url);
    if (!o->path) {
        int n = snprintf(o->path_buf, sizeof o->path_buf, "/v1/models/%s/ws", o->model);
        if (o->since >= 0)
            snprintf(o->path_buf + n, sizeof o->path_buf - (size_t)n, "?since=%" PRId64, o->since);
        o->path = o->path_buf;
    }
}

/* The non-empty lines of FILE, each a JSON object (a grid). */
static int read_grids(const char *file, char ***out)
{
    FILE *f = fopen(file, "r");
    if (!f)
        die("cannot open %s", file);
    char *line = xmalloc(MAX_GRID_LINE);
    int n = 0;
    *out = NULL;
    while (fgets(line, MAX_GRID_LINE, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        if (len == 0)
            continue;
        if (line[0] != '{')
            die("--grids: each line is a JSON object, not: %.200s", line);
        *out = xrealloc(*out, (size_t)(n + 1) * sizeof **out);
        (*out)[n++] = xstrdup(line);
    }
    fclose(f);
    free(line);
    if (n == 0)
        die("no grid in %s", file);
    return n;
}

int main(int argc, char **argv)
{
    static wss W; /* zeroed */
    W.o = (opts){.url = "ws://127.0.0.1:8080",
                 .model = "sales",
                 .subscribers = 1,
                 .since = -1,
                 .duration_s = 30,
                 .log_wait_s = 60,
                 .connect_s = 10};
    parse_args(&W.o, argc, argv);
    if (W.o.grids_file)
        W.ngrids = read_grids(W.o.grids_file, &W.grids);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(W.o.host, W.o.port, &hints, &W.addr);
    if (rc)
        die("cannot resolve host: %s", gai_strerror(rc));
    bench_raise_fd_limit(W.o.subscribers);
    W.ep = epoll_create1(EPOLL_CLOEXEC);
    if (W.ep < 0)
        die("epoll: %s", strerror(errno));
    W.rng = (uint64_t)ds_now_ns();
    ds_strmap_init(&W.ids, 1 << 16);
    W.subs = xcalloc((size_t)W.o.subscribers, sizeof *W.subs);
    for (int i = 0; i < W.o.subscribers; i++) {
        sub *s = &W.subs[i];
        s->id = i;
        s->fd = -1;
        ds_buf_init(&s->in, MAX_MSG + BENCH_MAX_HEAD);
        s->grid = W.ngrids ? i % W.ngrids : 0;
        ds_buf_init(&s->out, 1 << 20);
        ds_buf_init(&s->msg, MAX_MSG);
    }
    run(&W);
    if (W.grids) {
        report_grids(&W);
    } else {
        report(&W);
        if (W.o.sent_log)
            report_latency(&W);
    }
    int64_t gaps = 0, dups = 0, bad = 0;
    for (int i = 0; i < W.o.subscribers; i++)
        gaps += W.subs[i].gaps, dups += W.subs[i].dups,
            bad += W.subs[i].mismatched + W.subs[i].errors;
    return gaps || dups || bad || W.nclosed || W.nfailed ? 1 : 0;
}
