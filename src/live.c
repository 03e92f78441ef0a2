/* live.c: see live.h. One mutex guards the feeds and the waiters; wake
 * callbacks run after it is released. A timer thread handles deadlines and
 * clients that hang up; a WebSocket thread runs an epoll loop over the
 * adopted sockets. */
#define _GNU_SOURCE /* POLLRDHUP */
#include "live.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "ws_out.h"

/* One event as it is told at each detail (req_detail order: leaves,
 * totals, none); events read back from the response stream at a start
 * have only leaves, which then stands for all three. */
enum { DETAILS = 3 };

typedef struct event {
    int64_t seq;
    char *buf;           /* one allocation for all the texts below */
    char *json[DETAILS]; /* into buf, each NUL-terminated; NULL: none */
    size_t len[DETAILS];
} event;

static const char *event_json(const event *e, int detail, size_t *len)
{
    int d = detail >= 0 && detail < DETAILS && e->json[detail] ? detail : 0;
    *len = e->len[d];
    return e->json[d];
}

static size_t event_bytes(const event *e)
{
    return e->len[0] + e->len[1] + e->len[2];
}

typedef struct feed {
    char *model;
    int64_t seq; /* newest seq known (events or live_set_seq) */
    event *ring; /* circular: ring[(start + i) % cap], i < count */
    size_t cap, start, count, bytes;
    live_waiter *waiters; /* waiting for events */
    int64_t subscribers;  /* SSE and WebSocket places taken (live_subscribe) */
} feed;

typedef struct ws_conn ws_conn;

enum { OUTCOME_BUCKETS = 4096 };

struct ds_live {
    live_opts o;
    pthread_mutex_t lock;
    feed **feeds;
    size_t nfeeds;
    live_waiter *outcomes[OUTCOME_BUCKETS];
    bool stopping;
    pthread_t timer;
    int64_t sse, waiting, cut_off;
    uint64_t next_gen; /* of waiter registrations */
    /* WebSocket loop */
    pthread_t ws_thread;
    int epfd, evfd;
    atomic_bool ws_woken; /* evfd written, the loop has not read it yet */
    ws_conn *conns;
    int64_t nws;
    ws_conn *adopted; /* handed over, not yet in the loop */
    ws_conn *dirty;   /* connections with queued messages (linked by dirty_next) */
    /* credentials: the WebSocket loop re-checks its connections' keys */
    bool (*alive)(void *ctx, const char *key_id);
    void *alive_ctx;
    bool auth_check;
    /* grid subscriptions on WebSockets (set before any connection) */
    live_grid_ops grid_ops;
    void *grid_ctx;
};

void live_opts_default(live_opts *o)
{
    memset(o, 0, sizeof *o);
    o->ring_events = 100000;
    o->ring_bytes = (size_t)256 << 20;
    o->max_lag = 50000;
    o->max_ws_bytes = (size_t)16 << 20;
    o->ping_ms = 15000;
    o->max_subscribers = 0;
}

/* ---- feeds -------------------------------------------------------------- */

static feed *find_feed(ds_live *l, const char *model, bool create)
{
    for (size_t i = 0; i < l->nfeeds; i++)
        if (strcmp(l->feeds[i]->model, model) == 0)
            return l->feeds[i];
    if (!create)
        return NULL;
    feed *f = xcalloc(1, sizeof *f);
    f->model = xstrdup(model);
    f->cap = l->o.ring_events ? l->o.ring_events : 1;
    f->ring = xcalloc(f->cap, sizeof *f->ring);
    f->seq = -1;
    l->feeds = xrealloc(l->feeds, (l->nfeeds + 1) * sizeof *l->feeds);
    l->feeds[l->nfeeds++] = f;
    return f;
}

static void drop_oldest(feed *f)
{
    event *e = &f->ring[f->start];
    f->bytes -= event_bytes(e);
    free(e->buf);
    e->buf = NULL;
    for (int d = 0; d < DETAILS; d++)
        e->json[d] = NULL;
    f->start = (f->start + 1) % f->cap;
    f->count--;
}

static event *event_at(const feed *f, size_t i)
{
    return &f->ring[(f->start + i) % f->cap];
}

/* Index of the first event with seq > since (count when none). */
static size_t first_after(const feed *f, int64_t since)
{
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (event_at(f, mid)->seq <= since)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Moves the waiters of a list to the wake list `out` (linked by next). */
typedef struct wake_list {
    void (*fn[64])(void *);
    void *arg[64];
    int n;
} wake_list;

static void unlink_waiter(live_waiter **head, live_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        *head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->registered = false;
}

static void push_waiter(live_waiter **head, live_waiter *w)
{
    w->prev = NULL;
    w->next = *head;
    if (*head)
        (*head)->prev = w;
    *head = w;
    w->registered = true;
}

static void flush_wakes(wake_list *wl)
{
    for (int i = 0; i < wl->n; i++)
        wl->fn[i](wl->arg[i]);
    wl->n = 0;
}

/* Takes w off its list and queues its wake; flushes when the batch is
 * full (the caller holds the lock: flushing must happen unlocked, so a
 * full batch is woken by the caller after unlocking and re-locking). */
static bool queue_wake(wake_list *wl, live_waiter **head, live_waiter *w)
{
    unlink_waiter(head, w);
    wl->fn[wl->n] = w->wake;
    wl->arg[wl->n++] = w->arg;
    return wl->n == 64;
}

/* One write to the eventfd until the loop has read it: a burst of events
 * costs one wake-up, not a system call each. */
static void wake_ws_loop(ds_live *l)
{
    if (atomic_exchange(&l->ws_woken, true))
        return;
    uint64_t one = 1;
    if (write(l->evfd, &one, sizeof one) < 0 && errno != EAGAIN)
        perror("duckspread: eventfd");
}

/* Wakes the waiters of feed f for events older than seq, or (f NULL)
 * every waiter for events; then the WebSocket loop. Called with the lock
 * held; returns without it. */
static void wake_waiters(ds_live *l, wake_list *wl, feed *f, int64_t seq)
{
    for (;;) {
        bool full = false;
        for (size_t i = 0; i < (f ? 1 : l->nfeeds) && !full; i++) {
            feed *g = f ? f : l->feeds[i];
            for (live_waiter *w = g->waiters, *next; w && !full; w = next) {
                next = w->next;
                if (f && w->since >= seq)
                    continue;
                l->waiting--; /* (waiters woken by an event were never uncounted) */
                full = queue_wake(wl, &g->waiters, w);
            }
        }
        if (!full)
            break;
        pthread_mutex_unlock(&l->lock);
        flush_wakes(wl);
        pthread_mutex_lock(&l->lock);
    }
    bool ws = l->nws > 0; /* the loop serves events only to its connections */
    pthread_mutex_unlock(&l->lock);
    flush_wakes(wl);
    if (ws)
        wake_ws_loop(l);
}

void live_publish_detail(ds_live *l, const char *model, int64_t seq, const char *const *json,
                         const size_t *len)
{
    wake_list wl = {.n = 0};
    size_t total = 0;
    for (int d = 0; d < DETAILS; d++)
        total += json[d] ? len[d] : 0;
    pthread_mutex_lock(&l->lock);
    feed *f = find_feed(l, model, true);
    if (f->count == 0 || seq > event_at(f, f->count - 1)->seq) {
        while (f->count > 0 && (f->count == f->cap || f->bytes + total > l->o.ring_bytes))
            drop_oldest(f);
        event *e = &f->ring[(f->start + f->count) % f->cap];
        e->seq = seq;
        size_t all = 0;
        for (int d = 0; d < DETAILS; d++)
            all += json[d] ? len[d] + 1 : 0;
        char *p = e->buf = xmalloc(all ? all : 1);
        for (int d = 0; d < DETAILS; d++) {
            e->json[d] = json[d] ? p : NULL;
            e->len[d] = json[d] ? len[d] : 0;
            if (json[d]) {
                memcpy(p, json[d], len[d]);
                p[len[d]] = '\0';
                p += len[d] + 1;
            }
        }
        f->count++;
        f->bytes += total;
        if (seq > f->seq)
            f->seq = seq;
    }
    wake_waiters(l, &wl, f, seq);
}

void live_publish(ds_live *l, const char *model, int64_t seq, const char *json, size_t len)
{
    const char *j[DETAILS] = {json, NULL, NULL};
    size_t n[DETAILS] = {len, 0, 0};
    live_publish_detail(l, model, seq, j, n);
}

void live_set_seq(ds_live *l, const char *model, int64_t seq)
{
    pthread_mutex_lock(&l->lock);
    feed *f = find_feed(l, model, true);
    if (seq > f->seq)
        f->seq = seq;
    pthread_mutex_unlock(&l->lock);
}

void live_forget(ds_live *l, const char *model)
{
    wake_list wl = {.n = 0};
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->nfeeds; i++) {
        feed *f = l->feeds[i];
        if (strcmp(f->model, model) != 0)
            continue;
        while (f->waiters) { /* woken waiters find the model gone */
            if (queue_wake(&wl, &f->waiters, f->waiters)) {
                pthread_mutex_unlock(&l->lock);
                flush_wakes(&wl);
                pthread_mutex_lock(&l->lock);
            }
        }
        while (f->count)
            drop_oldest(f);
        f->seq = -1;
    }
    pthread_mutex_unlock(&l->lock);
    flush_wakes(&wl);
}

/* Checks since against the feed; the lock is held. */
static live_read check_since(const feed *f, int64_t since, int64_t *current, int64_t *oldest)
{
    *current = f ? f->seq : -1;
    *oldest = f && f->count ? event_at(f, 0)->seq : *current + 1;
    if (since > *current || since < *oldest - 1)
        return LIVE_GONE;
    return LIVE_EVENTS;
}

live_read live_collect(ds_live *l, const char *model, int64_t since, size_t max, int detail,
                       ds_buf *out, int64_t *next, int64_t *current, int64_t *oldest)
{
    pthread_mutex_lock(&l->lock);
    feed *f = find_feed(l, model, false);
    *next = since;
    live_read r = check_since(f, since, current, oldest);
    if (r == LIVE_EVENTS && f) {
        size_t i = first_after(f, since), n = 0;
        for (; i < f->count && n < max; i++, n++) {
            event *e = event_at(f, i);
            size_t len;
            const char *json = event_json(e, detail, &len);
            if (n)
                ds_buf_putc(out, ',');
            ds_buf_append(out, json, len);
            *next = e->seq;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return r;
}

live_read live_collect_sse(ds_live *l, const char *model, int64_t since, size_t max_bytes,
                           int detail, ds_buf *out, int64_t *next, int64_t *current,
                           int64_t *oldest)
{
    pthread_mutex_lock(&l->lock);
    feed *f = find_feed(l, model, false);
    *next = since;
    live_read r = check_since(f, since, current, oldest);
    if (r == LIVE_EVENTS && f) {
        for (size_t i = first_after(f, since); i < f->count; i++) {
            event *e = event_at(f, i);
            size_t len;
            const char *json = event_json(e, detail, &len);
            if (out->len && out->len + len + 64 > max_bytes)
                break;
            ds_buf_printf(out, "id: %" PRId64 "\nevent: change\ndata: ", e->seq);
            ds_buf_append(out, json, len);
            ds_buf_puts(out, "\n\n");
            *next = e->seq;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return r;
}

/* ---- waiters -------------------------------------------------------------- */

static size_t bucket_of(const char *key)
{
    return (size_t)ds_hash_bytes(key, strlen(key), 0) % OUTCOME_BUCKETS;
}

void live_wait(ds_live *l, live_waiter *w, const char *model, int64_t since, int64_t deadline_ns,
               int fd, void (*wake)(void *), void *arg)
{
    w->wake = wake;
    w->arg = arg;
    w->deadline_ns = deadline_ns;
    w->fd = fd;
    w->since = since;
    w->outcome = false;
    w->timed_out = w->hung_up = false;
    pthread_mutex_lock(&l->lock);
    feed *f = find_feed(l, model, true);
    bool now =
        l->stopping || (f->count && event_at(f, f->count - 1)->seq > since) || since > f->seq;
    if (!now) {
        w->gen = ++l->next_gen;
        push_waiter(&f->waiters, w);
        l->waiting++;
    }
    pthread_mutex_unlock(&l->lock);
    if (now)
        wake(arg);
}

void live_expect(ds_live *l, live_waiter *w, const char *key, int64_t deadline_ns, int fd,
                 void (*wake)(void *), void *arg)
{
    w->wake = wake;
    w->arg = arg;
    w->deadline_ns = deadline_ns;
    w->fd = fd;
    w->outcome = true;
    w->delivered = w->timed_out = w->hung_up = false;
    w->body = NULL;
    size_t klen = strlen(key);
    if (klen > LIVE_KEY_MAX) { /* the callers' keys are bounded below it (static asserts) */
        fprintf(stderr, "live_expect: a key of %zu bytes (limit %d)\n", klen, LIVE_KEY_MAX);
        abort();
    }
    memcpy(w->key, key, klen + 1);
    pthread_mutex_lock(&l->lock);
    bool now = l->stopping;
    if (!now) {
        w->gen = ++l->next_gen;
        push_waiter(&l->outcomes[bucket_of(w->key)], w);
        l->waiting++;
    }
    pthread_mutex_unlock(&l->lock);
    if (now)
        wake(arg);
}

/* The list a registered waiter is on; the lock is held. */
static live_waiter **list_of(ds_live *l, live_waiter *w)
{
    if (w->outcome)
        return &l->outcomes[bucket_of(w->key)];
    for (size_t i = 0; i < l->nfeeds; i++)
        for (live_waiter *x = l->feeds[i]->waiters; x; x = x->next)
            if (x == w)
                return &l->feeds[i]->waiters;
    return NULL;
}

bool live_cancel(ds_live *l, live_waiter *w)
{
    pthread_mutex_lock(&l->lock);
    bool was = w->registered;
    live_waiter **head = was ? list_of(l, w) : NULL;
    if (head) {
        unlink_waiter(head, w);
        l->waiting--;
    }
    pthread_mutex_unlock(&l->lock);
    return was;
}

void live_deliver(ds_live *l, const char *key, int status, const char *body, size_t len)
{
    wake_list wl = {.n = 0};
    pthread_mutex_lock(&l->lock);
    live_waiter **head = &l->outcomes[bucket_of(key)];
    for (live_waiter *w = *head, *next; w; w = next) {
        next = w->next;
        if (strcmp(w->key, key) != 0)
            continue;
        w->status = status;
        w->body = xstrndup(body, len);
        w->len = len;
        w->delivered = true;
        l->waiting--;
        if (queue_wake(&wl, head, w)) {
            pthread_mutex_unlock(&l->lock);
            flush_wakes(&wl);
            pthread_mutex_lock(&l->lock);
            next = *head; /* the list may have changed meanwhile */
        }
    }
    pthread_mutex_unlock(&l->lock);
    flush_wakes(&wl);
}

bool live_expected(ds_live *l, const char *key)
{
    bool found = false;
    pthread_mutex_lock(&l->lock);
    for (live_waiter *w = l->outcomes[bucket_of(key)]; w && !found; w = w->next)
        found = strcmp(w->key, key) == 0;
    pthread_mutex_unlock(&l->lock);
    return found;
}

/* Wakes every registered waiter that pick() chooses (pick may mark it);
 * a waiter pick() does not choose stays. Takes and releases the lock. */
static void sweep(ds_live *l, bool (*pick)(live_waiter *w, void *ctx), void *ctx)
{
    wake_list wl = {.n = 0};
    pthread_mutex_lock(&l->lock);
    for (;;) {
        bool full = false;
        for (size_t i = 0; i < l->nfeeds && !full; i++)
            for (live_waiter *w = l->feeds[i]->waiters, *next; w && !full; w = next) {
                next = w->next;
                if (pick(w, ctx)) {
                    l->waiting--;
                    full = queue_wake(&wl, &l->feeds[i]->waiters, w);
                }
            }
        for (size_t b = 0; b < OUTCOME_BUCKETS && !full; b++)
            for (live_waiter *w = l->outcomes[b], *next; w && !full; w = next) {
                next = w->next;
                if (pick(w, ctx)) {
                    l->waiting--;
                    full = queue_wake(&wl, &l->outcomes[b], w);
                }
            }
        if (!full)
            break;
        pthread_mutex_unlock(&l->lock);
        flush_wakes(&wl);
        pthread_mutex_lock(&l->lock);
    }
    pthread_mutex_unlock(&l->lock);
    flush_wakes(&wl);
}

typedef struct expiry {
    int64_t now;
    bool all;
} expiry;

static bool pick_expired(live_waiter *w, void *ctx)
{
    const expiry *x = ctx;
    if (!x->all && !(w->deadline_ns && w->deadline_ns <= x->now))
        return false;
    w->timed_out = true;
    return true;
}

/* Wakes waiters past their deadline (all of them when stopping). */
static void expire(ds_live *l, int64_t now, bool all)
{
    expiry x = {now, all};
    sweep(l, pick_expired, &x);
}

/* ---- clients that hang up ---------------------------------------------------
 * The timer thread's own arrays (no other thread sees them): a snapshot of
 * the watched waiters, polled without the lock; a waiter is only woken if
 * it is still registered with the same gen when the lock is taken again
 * (its socket may have been closed and its number reused meanwhile: a
 * poll of it is harmless, and the stale answer is dropped). */

typedef struct watched {
    live_waiter *w; /* compared, never followed, until found registered */
    uint64_t gen;
} watched;

typedef struct hangup_scan {
    watched *v;
    struct pollfd *pfd;
    size_t n, cap;
} hangup_scan;

static bool pick_watched(live_waiter *w, void *ctx)
{
    hangup_scan *s = ctx;
    if (w->fd < 0)
        return false;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
        s->pfd = xrealloc(s->pfd, s->cap * sizeof *s->pfd);
    }
    s->v[s->n] = (watched){w, w->gen};
    s->pfd[s->n++] = (struct pollfd){.fd = w->fd, .events = POLLRDHUP};
    return false;
}

static int by_waiter(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const watched *)a)->w, y = (uintptr_t)((const watched *)b)->w;
    return x < y ? -1 : x > y;
}

static bool pick_hung_up(live_waiter *w, void *ctx)
{
    hangup_scan *s = ctx;
    watched key = {w, 0};
    const watched *h = s->n ? bsearch(&key, s->v, s->n, sizeof *s->v, by_waiter) : NULL;
    if (!h || h->gen != w->gen)
        return false;
    w->hung_up = true;
    return true;
}

/* Wakes the waiters whose client closed its socket. */
static void check_hangups(ds_live *l, hangup_scan *s)
{
    s->n = 0;
    sweep(l, pick_watched, s); /* picks none: only takes the snapshot */
    if (s->n == 0 || poll(s->pfd, s->n, 0) <= 0)
        return;
    size_t hung = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR))
            s->v[hung++] = s->v[i];
    s->n = hung;
    if (hung == 0)
        return;
    qsort(s->v, hung, sizeof *s->v, by_waiter);
    sweep(l, pick_hung_up, s);
}

static void *timer_main(void *arg)
{
    ds_thread_name("ds-live-timer");
    ds_live *l = arg;
    hangup_scan scan = {0};
    int64_t next_scan = 0;
    for (;;) {
        struct timespec t = {0, 20 * 1000 * 1000};
        nanosleep(&t, NULL);
        pthread_mutex_lock(&l->lock);
        bool stop = l->stopping;
        pthread_mutex_unlock(&l->lock);
        if (stop)
            break;
        int64_t now = ds_now_ns();
        expire(l, now, false);
        if (now >= next_scan) {
            check_hangups(l, &scan);
            next_scan = now + (int64_t)LIVE_HANGUP_MS * 1000000;
        }
    }
    free(scan.v);
    free(scan.pfd);
    return NULL;
}

void live_sse_count(ds_live *l, int delta)
{
    pthread_mutex_lock(&l->lock);
    l->sse += delta;
    pthread_mutex_unlock(&l->lock);
}

bool live_subscribe(ds_live *l, const char *model, int64_t *count)
{
    pthread_mutex_lock(&l->lock);
    feed *f = find_feed(l, model, true);
    bool ok = l->o.max_subscribers <= 0 || f->subscribers < l->o.max_subscribers;
    if (ok)
        f->subscribers++;
    *count = f->subscribers;
    pthread_mutex_unlock(&l->lock);
    return ok;
}

void live_unsubscribe(ds_live *l, const char *model)
{
    pthread_mutex_lock(&l->lock);
    feed *f = find_feed(l, model, false);
    if (f && f->subscribers > 0)
        f->subscribers--;
    pthread_mutex_unlock(&l->lock);
}

void live_get_stats(ds_live *l, live_stats *s)
{
    pthread_mutex_lock(&l->lock);
    s->sse = l->sse;
    s->ws = l->nws;
    s->waiting = l->waiting;
    s->cut_off = l->cut_off;
    pthread_mutex_unlock(&l->lock);
}

/* ---- WebSocket -------------------------------------------------------------
 * The WebSocket thread owns the connections. Server -> client data frames
 * are framed here into each connection's ws_out and flushed with one send()
 * per connection and pass; wslay reads the client's frames and answers
 * pings and closes, its control frames going through the same ws_out (its
 * send callback only appends), so the stream stays in order. Other threads
 * queue text under l->lock (live_ws_send_many: one block per call, one
 * message in it per connection, a connection with queued messages on the
 * dirty list); the thread takes every dirty connection's messages in one
 * lock per pass. */

typedef struct out_block out_block;

/* One queued message: block->head + id + block->tail. */
typedef struct out_msg {
    struct out_msg *next;
    out_block *block;
    void *sub;  /* the grid subscription it belongs to, or NULL */
    bool fresh; /* it replaces the subscription's earlier messages (a snapshot) */
    const char *id;
    size_t id_len;
} out_msg;

/* The text of one live_ws_send_many() call and its messages, in one
 * allocation; freed when the last message is framed or dropped (by the
 * WebSocket thread: refs is its own once the block is queued). */
struct out_block {
    size_t refs;
    const char *head, *tail;
    size_t head_len, tail_len;
    out_msg msgs[];
};

static size_t out_msg_len(const out_msg *m)
{
    return m->block->head_len + m->id_len + m->block->tail_len;
}

static void out_release(out_msg *m)
{
    out_block *b = m->block;
    if (--b->refs == 0)
        free(b);
}

static void out_release_all(out_msg *m)
{
    for (out_msg *next; m; m = next) {
        next = m->next;
        out_release(m);
    }
}

struct ws_conn {
    ws_conn *next; /* in l->conns */
    ds_live *l;
    int fd;
    char *model;
    int64_t cursor; /* last seq framed */
    int64_t last_ping_ns;
    int64_t linger_ns; /* since when it is closing or its client stopped sending; 0: not */
    wslay_event_context_ptr ctx;
    void (*done)(void *);
    void *done_arg;
    bool closing;
    char key_id[16]; /* the API key it was opened with ("" in open mode) */
    char *early;     /* bytes read with the handshake, taken before the socket's */
    size_t early_len, early_off;
    int detail;     /* of the change feed's events */
    bool grid_mode; /* it subscribed to grids: grid messages only, no feed */
    uint32_t armed; /* the epoll events asked for */
    ws_out out;     /* framed, not yet sent */
    /* queued by other threads, under l->lock */
    out_msg *q_head, *q_tail;
    size_t q_bytes;
    bool dirty;          /* on l->dirty */
    ws_conn *dirty_next; /* in l->dirty */
    /* the WebSocket thread's: taken from the queue for this pass */
    out_msg *taken;
    size_t taken_bytes;
    /* grid subscriptions whose messages were dropped, each waiting for a
       fresh snapshot (asked: resnapshot() was called for it) */
    struct behind {
        void *sub;
        bool asked;
    } * behind;
    size_t nbehind, behind_alloc;
    int64_t progress_ns; /* when the last byte went out or nothing was left to send */
};

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    ws_conn *c = user;
    if (c->early_off < c->early_len) {
        size_t n = c->early_len - c->early_off < len ? c->early_len - c->early_off : len;
        memcpy(buf, c->early + c->early_off, n);
        c->early_off += n;
        return (ssize_t)n;
    }
    ssize_t r = recv(c->fd, buf, len, 0);
    if (r < 0) {
        wslay_event_set_error(ctx, errno == EAGAIN || errno == EINTR ? WSLAY_ERR_WOULDBLOCK
                                                                     : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    if (r == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return r;
}

/* wslay's frames (pongs, pings, the close) join the data frames in the
 * connection's buffer; ws_serve sends them. */
static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)ctx;
    (void)flags;
    ws_conn *c = user;
    ws_out_raw(&c->out, data, len);
    return (ssize_t)len;
}

/* Text from the client: grid subscriptions (the grid ops decide); pings
 * and closes are answered by wslay. */
static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user)
{
    (void)ctx;
    ws_conn *c = user;
    ds_live *l = c->l;
    if (arg->opcode != WSLAY_TEXT_FRAME || c->closing)
        return;
    if (!l->grid_ops.message) {
        static const char no[] = "{\"op\":\"error\",\"error\":{\"code\":\"malformed\","
                                 "\"message\":\"this WebSocket takes no messages\"}}";
        live_ws_send(l, (live_conn *)c, NULL, no, sizeof no - 1);
        return;
    }
    l->grid_ops.message(l->grid_ctx, (live_conn *)c, c->model, (const char *)arg->msg,
                        arg->msg_length);
}

static void ws_close(ws_conn *c, uint16_t code, const char *reason)
{
    if (c->closing)
        return;
    c->closing = true;
    wslay_event_queue_close(c->ctx, code, (const uint8_t *)reason, strlen(reason));
}

/* No data frame may follow: a close was queued (by us, or by wslay
 * answering the client's) or sending failed. */
static bool ws_sending_over(ws_conn *c)
{
    return c->closing || wslay_event_get_close_received(c->ctx) ||
           !wslay_event_get_write_enabled(c->ctx);
}

static void ws_frame_msg(ws_conn *c, const out_msg *m)
{
    ws_part parts[3] = {{m->block->head, m->block->head_len},
                        {m->id, m->id_len},
                        {m->block->tail, m->block->tail_len}};
    ws_out_text(&c->out, parts, 3);
}

/* Its index in c->behind, or -1. */
static ptrdiff_t behind_index(const ws_conn *c, const void *sub)
{
    for (size_t i = 0; i < c->nbehind; i++)
        if (c->behind[i].sub == sub)
            return (ptrdiff_t)i;
    return -1;
}

static void behind_remove(ws_conn *c, ptrdiff_t i)
{
    c->behind[i] = c->behind[--c->nbehind];
}

static void note_behind(ws_conn *c, void *sub)
{
    if (c->nbehind == c->behind_alloc) {
        c->behind_alloc = c->behind_alloc ? 2 * c->behind_alloc : 8;
        c->behind = xrealloc(c->behind, c->behind_alloc * sizeof *c->behind);
    }
    c->behind[c->nbehind++] = (struct behind){sub, false};
}

/* Frames the messages taken from the queue, in order, while the unsent
 * bytes stay within max_ws_bytes. A grid message that does not fit is
 * dropped and its subscription falls behind: none of its messages go out
 * (a patch after a gap is no use) until a fresh one, its snapshot, which
 * goes out whatever its size (so a snapshot larger than max_ws_bytes is
 * not dropped and asked for again forever). */
static void ws_take_out(ds_live *l, ws_conn *c)
{
    out_msg *m = c->taken;
    bool sending = !ws_sending_over(c);
    int64_t fell = 0;
    c->taken = NULL;
    c->taken_bytes = 0;
    for (out_msg *next; m; m = next) {
        next = m->next;
        if (sending && m->sub) {
            ptrdiff_t i = behind_index(c, m->sub);
            if (m->fresh) {
                if (i >= 0)
                    behind_remove(c, i);
                ws_frame_msg(c, m);
            } else if (i < 0 && ws_out_pending(&c->out) + out_msg_len(m) > l->o.max_ws_bytes) {
                note_behind(c, m->sub);
                fell++;
            } else if (i < 0) {
                ws_frame_msg(c, m);
            }
        } else if (sending) {
            ws_frame_msg(c, m);
        }
        out_release(m);
    }
    if (fell) {
        pthread_mutex_lock(&l->lock);
        l->cut_off += fell;
        pthread_mutex_unlock(&l->lock);
    }
}

/* Once everything unsent went out: a fresh snapshot for each subscription
 * that fell behind and has not asked yet (its message is queued, and
 * framed next pass). */
static void ws_ask_snapshots(ds_live *l, ws_conn *c)
{
    if (c->nbehind == 0 || ws_out_pending(&c->out) || ws_sending_over(c) || !l->grid_ops.resnapshot)
        return;
    for (size_t i = 0; i < c->nbehind; i++)
        if (!c->behind[i].asked) {
            c->behind[i].asked = true;
            l->grid_ops.resnapshot(l->grid_ctx, (live_conn *)c, c->behind[i].sub);
        }
}

/* Frames the events after the cursor; cuts off a subscriber that lags. */
static void ws_feed(ds_live *l, ws_conn *c)
{
    pthread_mutex_lock(&l->lock);
    feed *f = find_feed(l, c->model, false);
    size_t lag = 0;
    bool gone = false;
    if (f) {
        int64_t cur, old;
        gone = check_since(f, c->cursor, &cur, &old) == LIVE_GONE;
        size_t i = gone ? f->count : first_after(f, c->cursor);
        lag = f->count - i;
        for (; i < f->count && !gone; i++) {
            event *e = event_at(f, i);
            ws_part p;
            p.p = event_json(e, c->detail, &p.len);
            ws_out_text(&c->out, &p, 1);
            c->cursor = e->seq;
            if (ws_out_pending(&c->out) > l->o.max_ws_bytes)
                break;
        }
    }
    bool slow = ws_out_pending(&c->out) > l->o.max_ws_bytes || lag > l->o.max_lag;
    if (slow || gone)
        l->cut_off++;
    pthread_mutex_unlock(&l->lock);
    if (gone)
        ws_close(c, 1008, "history gone: resubscribe with a newer since");
    else if (slow)
        ws_close(c, 1008, "too slow: the subscriber fell behind the change feed");
}

/* Asks epoll for what the connection waits for, when that changed. */
static void ws_arm(ds_live *l, ws_conn *c, bool in, bool out)
{
    uint32_t want = (in ? EPOLLIN | EPOLLRDHUP : 0) | (out ? EPOLLOUT : 0);
    if (want == c->armed)
        return;
    struct epoll_event ev = {.data.ptr = c, .events = want};
    epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->armed = want;
}

static void ws_free(ds_live *l, ws_conn *c)
{
    if (l->grid_ops.closed) /* no grid message is queued for it after this */
        l->grid_ops.closed(l->grid_ctx, (live_conn *)c);
    pthread_mutex_lock(&l->lock);
    out_msg *q = c->q_head;
    c->q_head = c->q_tail = NULL;
    if (c->dirty)
        for (ws_conn **p = &l->dirty; *p; p = &(*p)->dirty_next)
            if (*p == c) {
                *p = c->dirty_next;
                break;
            }
    pthread_mutex_unlock(&l->lock);
    out_release_all(q);
    out_release_all(c->taken);
    ws_out_free(&c->out);
    free(c->behind);
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    wslay_event_context_free(c->ctx);
    c->done(c->done_arg);
    live_unsubscribe(l, c->model);
    free(c->model);
    free(c->early);
    free(c);
    pthread_mutex_lock(&l->lock);
    l->nws--;
    pthread_mutex_unlock(&l->lock);
}

static void ws_take_adopted(ds_live *l)
{
    pthread_mutex_lock(&l->lock);
    ws_conn *a = l->adopted;
    l->adopted = NULL;
    pthread_mutex_unlock(&l->lock);
    while (a) {
        ws_conn *next = a->next;
        a->next = l->conns;
        l->conns = a;
        a->armed = EPOLLIN | EPOLLRDHUP;
        struct epoll_event ev = {.data.ptr = a, .events = a->armed};
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, a->fd, &ev);
        /* bytes that came with the handshake: no epoll event announces them */
        if (a->early_len && wslay_event_recv(a->ctx) != 0)
            wslay_event_shutdown_read(a->ctx);
        /* checked once here: a revocation after this sets auth_check */
        if (l->alive && !l->alive(l->alive_ctx, a->key_id))
            ws_close(a, 1008, "the API key was revoked");
        a = next;
    }
}

/* One connection's turn in a pass: frame what is new, send it, ask epoll
 * for what it waits for. False when the connection is over. */
static bool ws_serve(ds_live *l, ws_conn *c, int64_t now, bool check)
{
    if (check && !l->alive(l->alive_ctx, c->key_id))
        ws_close(c, 1008, "the API key was revoked");
    ws_take_out(l, c);
    if (!c->grid_mode && !ws_sending_over(c))
        ws_feed(l, c);
    if (now - c->last_ping_ns > (int64_t)l->o.ping_ms * 1000000) {
        struct wslay_event_msg ping = {WSLAY_PING, NULL, 0};
        wslay_event_queue_msg(c->ctx, &ping);
        c->last_ping_ns = now;
    }
    if (wslay_event_send(c->ctx) != 0)
        return false;
    size_t before = ws_out_pending(&c->out);
    if (before && ws_out_flush(&c->out, c->fd) < 0)
        return false;
    ws_ask_snapshots(l, c);
    size_t left = ws_out_pending(&c->out);
    if (left == 0 || left < before)
        c->progress_ns = now;
    /* grid messages beyond max_ws_bytes are dropped and the feed's cut off:
       only a client that sends (pings, messages) and reads none of the
       answers passes twice that; one that reads nothing for
       LIVE_WS_STALL_MS holds its buffer and place no longer */
    if (left > 2 * l->o.max_ws_bytes ||
        now - c->progress_ns > (int64_t)LIVE_WS_STALL_MS * 1000000) {
        pthread_mutex_lock(&l->lock);
        l->cut_off++;
        pthread_mutex_unlock(&l->lock);
        return false;
    }
    bool reading = wslay_event_want_read(c->ctx);
    if (!reading && !wslay_event_want_write(c->ctx) && left == 0)
        return false;
    if ((c->closing || !reading) && c->linger_ns == 0)
        c->linger_ns = now;
    if (c->linger_ns && now - c->linger_ns > (int64_t)LIVE_WS_LINGER_MS * 1000000)
        return false;
    ws_arm(l, c, reading, left > 0);
    return true;
}

/* One pass over every connection: take what other threads queued (one
 * lock), frame, send, drop the dead. */
static void ws_service(ds_live *l, int64_t now)
{
    pthread_mutex_lock(&l->lock);
    bool check = l->auth_check && l->alive;
    l->auth_check = false;
    for (ws_conn *c = l->dirty; c; c = c->dirty_next) {
        c->dirty = false;
        c->taken = c->q_head; /* ws_take_out consumed the last pass's */
        c->taken_bytes = c->q_bytes;
        c->q_head = c->q_tail = NULL;
        c->q_bytes = 0;
    }
    l->dirty = NULL;
    pthread_mutex_unlock(&l->lock);
    for (ws_conn **pp = &l->conns; *pp;) {
        ws_conn *c = *pp;
        if (!ws_serve(l, c, now, check)) {
            *pp = c->next;
            ws_free(l, c);
            continue;
        }
        pp = &c->next;
    }
}

/* Pacing: after a pass the loop rests LIVE_WS_PACE times as long as the
 * pass took (at most LIVE_WS_PACE_MAX_MS) before the next one. Under load,
 * what is queued meanwhile leaves in fewer, larger writes (a pass over
 * 1,000 grid subscribers is a send() each, whether it carries one patch or
 * five), and the loop spends at most 1 / (LIVE_WS_PACE + 1) of its time in
 * passes; after a quiet spell a message goes at once. */
enum { LIVE_WS_PACE = 4, LIVE_WS_PACE_MAX_MS = 20 };

static void ws_rest_until(int64_t until_ns)
{
    int64_t left = until_ns - ds_now_ns();
    if (left <= 0)
        return;
    struct timespec t = {left / 1000000000, left % 1000000000};
    nanosleep(&t, NULL);
}

static void *ws_main(void *arg)
{
    ds_thread_name("ds-websocket");
    ds_live *l = arg;
    struct epoll_event evs[64];
    int64_t rest_until = 0;
    for (;;) {
        int n = epoll_wait(l->epfd, evs, 64, 1000);
        pthread_mutex_lock(&l->lock);
        bool stop = l->stopping;
        pthread_mutex_unlock(&l->lock);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t v;
                if (read(l->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
                    perror("duckspread: eventfd");
                /* after the read, before ws_service below: what was
                   published before this is served now, what comes after
                   writes the eventfd again */
                atomic_store(&l->ws_woken, false);
                continue;
            }
            ws_conn *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                if (wslay_event_want_read(c->ctx) && wslay_event_recv(c->ctx) != 0)
                    wslay_event_shutdown_read(c->ctx);
        }
        ws_take_adopted(l);
        if (stop) {
            for (ws_conn *c = l->conns; c; c = c->next) {
                ws_close(c, 1001, "the server is shutting down");
                wslay_event_send(c->ctx);
                ws_out_flush(&c->out, c->fd);
            }
            while (l->conns) {
                ws_conn *c = l->conns;
                l->conns = c->next;
                ws_free(l, c);
            }
            return NULL;
        }
        if (n < (int)(sizeof evs / sizeof evs[0]))
            ws_rest_until(rest_until); /* not when more may be ready to read */
        int64_t start = ds_now_ns();
        ws_service(l, start);
        int64_t took = ds_now_ns() - start;
        int64_t most = (int64_t)LIVE_WS_PACE_MAX_MS * 1000000;
        rest_until = start + took + (LIVE_WS_PACE * took < most ? LIVE_WS_PACE * took : most);
    }
}

void live_ws_adopt(ds_live *l, int fd, const char *extra, size_t extra_len, const char *model,
                   int64_t since, int detail, const char *key_id, void (*done)(void *), void *arg)
{
    static const struct wslay_event_callbacks cbs = {ws_recv, ws_send, NULL,     NULL,
                                                     NULL,    NULL,    ws_on_msg};
    ws_conn *c = xcalloc(1, sizeof *c);
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    /* each pass sends a connection's frames in one write: no delay for
       them (fails harmlessly on a socket that is not TCP) */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->l = l;
    c->fd = fd;
    c->progress_ns = ds_now_ns();
    c->model = xstrdup(model);
    c->cursor = since;
    c->detail = detail;
    c->done = done;
    c->done_arg = arg;
    if (extra_len) {
        c->early = xmalloc(extra_len);
        memcpy(c->early, extra, extra_len);
        c->early_len = extra_len;
    }
    snprintf(c->key_id, sizeof c->key_id, "%s", key_id);
    c->last_ping_ns = ds_now_ns();
    wslay_event_context_server_init(&c->ctx, &cbs, c);
    wslay_event_config_set_max_recv_msg_length(c->ctx, LIVE_WS_MSG_MAX);
    pthread_mutex_lock(&l->lock);
    c->next = l->adopted;
    l->adopted = c;
    l->nws++;
    pthread_mutex_unlock(&l->lock);
    wake_ws_loop(l);
}

void live_set_grid_ops(ds_live *l, const live_grid_ops *ops, void *ctx)
{
    pthread_mutex_lock(&l->lock);
    l->grid_ops = *ops;
    l->grid_ctx = ctx;
    pthread_mutex_unlock(&l->lock);
}

void live_ws_send_many(ds_live *l, const live_ws_to *to, size_t n, const char *head,
                       size_t head_len, const char *tail, size_t tail_len, bool fresh)
{
    if (n == 0)
        return;
    size_t ids = 0;
    for (size_t i = 0; i < n; i++)
        ids += to[i].id_len;
    out_block *b = xmalloc(sizeof *b + n * sizeof *b->msgs + head_len + tail_len + ids);
    char *p = (char *)&b->msgs[n];
    b->refs = n;
    b->head = p;
    b->head_len = head_len;
    if (head_len)
        memcpy(p, head, head_len);
    p += head_len;
    b->tail = p;
    b->tail_len = tail_len;
    if (tail_len)
        memcpy(p, tail, tail_len);
    p += tail_len;
    for (size_t i = 0; i < n; i++) {
        out_msg *m = &b->msgs[i];
        m->next = NULL;
        m->block = b;
        m->sub = to[i].sub;
        m->fresh = fresh;
        m->id = p;
        m->id_len = to[i].id_len;
        if (m->id_len)
            memcpy(p, to[i].id, m->id_len);
        p += to[i].id_len;
    }
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < n; i++) {
        ws_conn *c = (ws_conn *)to[i].conn;
        out_msg *m = &b->msgs[i];
        if (c->q_tail)
            c->q_tail->next = m;
        else
            c->q_head = m;
        c->q_tail = m;
        c->q_bytes += out_msg_len(m);
        if (!c->dirty) {
            c->dirty = true;
            c->dirty_next = l->dirty;
            l->dirty = c;
        }
    }
    pthread_mutex_unlock(&l->lock);
    wake_ws_loop(l);
}

void live_ws_send(ds_live *l, live_conn *conn, void *sub, const char *text, size_t len)
{
    live_ws_to to = {conn, sub, NULL, 0};
    live_ws_send_many(l, &to, 1, text, len, NULL, 0, false);
}

void live_ws_forget(ds_live *l, live_conn *conn, void *sub)
{
    ws_conn *c = (ws_conn *)conn;
    ptrdiff_t i = behind_index(c, sub);
    if (i >= 0)
        behind_remove(c, i);
    out_msg *gone = NULL;
    pthread_mutex_lock(&l->lock);
    out_msg *keep = NULL, **tail = &keep;
    c->q_tail = NULL;
    for (out_msg *m = c->q_head, *next; m; m = next) {
        next = m->next;
        if (m->sub == sub) {
            c->q_bytes -= out_msg_len(m);
            m->next = gone;
            gone = m;
        } else {
            *tail = m;
            tail = &m->next;
            c->q_tail = m;
        }
    }
    *tail = NULL;
    c->q_head = keep;
    pthread_mutex_unlock(&l->lock);
    out_release_all(gone);
}

void live_ws_grid_mode(live_conn *conn)
{
    ((ws_conn *)conn)->grid_mode = true; /* the WebSocket thread's own field */
}

const char *live_ws_key_id(live_conn *conn)
{
    return ((ws_conn *)conn)->key_id;
}

void live_set_auth(ds_live *l, bool (*alive)(void *ctx, const char *key_id), void *ctx)
{
    pthread_mutex_lock(&l->lock);
    l->alive = alive;
    l->alive_ctx = ctx;
    pthread_mutex_unlock(&l->lock);
}

void live_revoked(ds_live *l)
{
    wake_list wl = {.n = 0};
    pthread_mutex_lock(&l->lock);
    l->auth_check = true;
    wake_waiters(l, &wl, NULL, 0);
}

/* ---- lifetime --------------------------------------------------------------- */

ds_live *live_new(const live_opts *o)
{
    ds_live *l = xcalloc(1, sizeof *l);
    if (o)
        l->o = *o;
    else
        live_opts_default(&l->o);
    pthread_mutex_init(&l->lock, NULL);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev);
    pthread_create(&l->timer, NULL, timer_main, l);
    pthread_create(&l->ws_thread, NULL, ws_main, l);
    return l;
}

void live_stop(ds_live *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    bool was = l->stopping;
    l->stopping = true;
    pthread_mutex_unlock(&l->lock);
    if (was)
        return;
    wake_ws_loop(l);
    pthread_join(l->timer, NULL);
    pthread_join(l->ws_thread, NULL);
    expire(l, 0, true);
}

void live_free(ds_live *l)
{
    if (!l)
        return;
    live_stop(l);
    for (size_t i = 0; i < l->nfeeds; i++) {
        feed *f = l->feeds[i];
        while (f->count)
            drop_oldest(f);
        free(f->ring);
        free(f->model);
        free(f);
    }
    free(l->feeds);
    close(l->epfd);
    close(l->evfd);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
