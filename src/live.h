/* live.h: the live change feed inside one server process. It keeps the
 * recent change events of every model in seq order (the retained history
 * that /get_updates, SSE and WebSocket subscribers read), wakes whoever
 * waits for newer events or for a queued command's outcome, and runs the
 * WebSocket connections handed over by the HTTP layer on a thread of its
 * own (wslay reads the clients' frames; what is sent is framed by
 * ws_out.c). Nothing here blocks on a client: a subscriber
 * that falls too far behind is cut off with a reason.
 *
 * Waiters are owned by their callers (embedded in a request's context);
 * live calls wake(arg) exactly once per live_wait()/live_expect(): when
 * the awaited thing happens, at the deadline, or at shutdown. */
#ifndef DS_LIVE_H
#define DS_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct ds_live ds_live;

typedef struct live_opts {
    size_t ring_events;      /* events kept per model (default 100,000) */
    size_t ring_bytes;       /* and at most this many bytes of them (default 256 MiB) */
    size_t max_lag;          /* events a subscriber may be behind before it is cut off */
    size_t max_ws_bytes;     /* bytes queued to one WebSocket before it is cut off */
    int ping_ms;             /* keep-alive period of SSE and WebSocket */
    int64_t max_subscribers; /* SSE + WebSocket subscribers of one model (0: no limit) */
} live_opts;

void live_opts_default(live_opts *o);
ds_live *live_new(const live_opts *o);
/* Stops the timer and WebSocket threads and wakes every waiter; later
 * waits answer at once. The feed stays readable until live_free(). */
void live_stop(ds_live *l);
/* Stops (if not yet) and frees: no thread may use l afterwards. */
void live_free(ds_live *l);

/* ---- events ------------------------------------------------------------ */

/* Appends an event (in seq order; older or duplicate seqs are ignored) and
 * wakes the model's waiters. json[d] is the event told at detail d
 * (req_detail: leaves, totals, none); each is copied. */
void live_publish_detail(ds_live *l, const char *model, int64_t seq, const char *const *json,
                         const size_t *len);
/* An event known only at detail leaves (read back from the response
 * stream), which then stands for every detail. */
void live_publish(ds_live *l, const char *model, int64_t seq, const char *json, size_t len);
/* The model's current seq, for a feed that has no events yet. */
void live_set_seq(ds_live *l, const char *model, int64_t seq);
/* Forgets a model (dropped). */
void live_forget(ds_live *l, const char *model);

typedef enum live_read {
    LIVE_EVENTS = 0, /* events appended (maybe none: nothing newer yet) */
    LIVE_GONE,       /* since is older than the retained history or newer than the model */
} live_read;

/* Appends the events with seq > since (at most max) at a detail to out,
 * separated by commas, and sets *next to the last seq appended (since when
 * none). *current and *oldest describe the feed for a 410. */
live_read live_collect(ds_live *l, const char *model, int64_t since, size_t max, int detail,
                       ds_buf *out, int64_t *next, int64_t *current, int64_t *oldest);
/* Like live_collect, but formatted as SSE messages (id, event, data). */
live_read live_collect_sse(ds_live *l, const char *model, int64_t since, size_t max_bytes,
                           int detail, ds_buf *out, int64_t *next, int64_t *current,
                           int64_t *oldest);

/* ---- waiting ------------------------------------------------------------
 * A waiter may name the socket of the client it answers (fd, else -1):
 * while it waits, the timer thread looks at that socket every
 * LIVE_HANGUP_MS and wakes the waiter with hung_up set once the client has
 * closed it or shut down its sending side (the FIN of a browser or
 * fetch() that gives up looks the same), so that what the waiter holds (a
 * key's open count, a subscriber place) is given back within a fraction of
 * a second instead of at the deadline. The caller keeps the socket open
 * until the wake; live only polls it. */

enum { LIVE_HANGUP_MS = 100 };

/* The longest outcome key (a request's key fits: see request.h). */
#define LIVE_KEY_MAX 1024

typedef struct live_waiter {
    /* set by live_wait / live_expect */
    void (*wake)(void *arg);
    void *arg;
    int64_t deadline_ns; /* CLOCK_MONOTONIC, 0 = none */
    int fd;              /* the client's socket, watched for a hang-up (-1: none) */
    /* an outcome delivered to an expecting waiter (body malloc'd; the
       waiter's owner frees it) */
    int status;
    char *body;
    size_t len;
    bool delivered, timed_out;
    bool hung_up; /* woken because the client closed fd */
    /* private */
    struct live_waiter *next, *prev;
    char key[LIVE_KEY_MAX + 1];
    int64_t since;
    uint64_t gen; /* which registration (the hang-up check's snapshot) */
    bool registered, outcome;
} live_waiter;

/* Wakes w once an event with seq > since exists for the model (at once
 * when one does), at the deadline, or when the client hangs up fd. */
void live_wait(ds_live *l, live_waiter *w, const char *model, int64_t since, int64_t deadline_ns,
               int fd, void (*wake)(void *), void *arg);
/* Waits for the outcome of a queued command (key: model, user and
 * request_id joined by '\n', at most LIVE_KEY_MAX bytes: a longer one is a
 * bug and aborts, never a cut key that no delivery would match);
 * live_deliver fills status and body. Woken at the deadline or a hang-up
 * of fd too. */
void live_expect(ds_live *l, live_waiter *w, const char *key, int64_t deadline_ns, int fd,
                 void (*wake)(void *), void *arg);
/* Removes a waiter that has not been woken; false when it was already woken
 * (or was never registered). */
bool live_cancel(ds_live *l, live_waiter *w);
/* Gives the outcome to every waiter expecting key. */
void live_deliver(ds_live *l, const char *key, int status, const char *body, size_t len);
/* Whether some waiter expects key (a retry while the first is in flight). */
bool live_expected(ds_live *l, const char *key);

/* ---- WebSocket ------------------------------------------------------------- */

/* Takes over an upgraded connection: sends the model's events with
 * seq > since, then every new one, until the client closes or falls
 * behind. extra (extra_len bytes, copied) is what the client sent after its
 * handshake and the HTTP layer read: the start of its WebSocket stream,
 * taken before the socket. done(arg) is called once the socket is no
 * longer used (the HTTP layer then releases it). The caller holds a live_subscribe() place for
 * the model; the connection gives it back when it ends. */
void live_ws_adopt(ds_live *l, int fd, const char *extra, size_t extra_len, const char *model,
                   int64_t since, int detail, const char *key_id, void (*done)(void *), void *arg);

/* ---- grid subscriptions on a WebSocket ---------------------------------------
 * A client sends text messages ({"op": "subscribe", ...}); the grid ops
 * (the HTTP layer, which knows the models) handle them and answer through
 * live_ws_send() or live_ws_send_many(), from any thread. A connection that
 * subscribes to a grid is put in grid mode (live_ws_grid_mode): from then on
 * it gets its grid messages only, not the change feed.
 *
 * Messages queued for a connection are framed and sent by the WebSocket
 * thread, in the order queued, everything a connection has at once in one
 * write. A grid message that would take a connection's unsent bytes past
 * max_ws_bytes is dropped; its subscription gets none of its messages
 * from then on until, once the connection's unsent bytes are all out,
 * resnapshot() was asked for it and its fresh snapshot came (a change-feed
 * connection that far behind is closed with 1008 instead). A connection is
 * dropped when it has more than twice max_ws_bytes unsent (a client that
 * keeps sending and reads none of the answers), when it has sent nothing
 * of what is waiting for LIVE_WS_STALL_MS, or when it has not finished
 * closing LIVE_WS_LINGER_MS after it began (or after its client stopped
 * sending). */

/* Bytes in one message a client may send. */
#define LIVE_WS_MSG_MAX 65536
/* How long a connection may take to finish closing (a client that reads
 * no more cannot hold it open). */
enum { LIVE_WS_LINGER_MS = 10000 };
/* How long a connection may read none of what waits for it. */
enum { LIVE_WS_STALL_MS = 60000 };

typedef struct live_conn live_conn; /* a WebSocket connection (opaque) */

typedef struct live_grid_ops {
    void (*message)(void *ctx, live_conn *c, const char *model, const char *text, size_t len);
    void (*closed)(void *ctx, live_conn *c); /* no message may be sent to c after it */
    void (*resnapshot)(void *ctx, live_conn *c, void *sub);
} live_grid_ops;

/* Sets the ops (before any WebSocket is adopted). */
void live_set_grid_ops(ds_live *l, const live_grid_ops *ops, void *ctx);
/* Queues text for c (copied); sub names the grid subscription it is for
 * (NULL: none; such a message is dropped only with the connection). */
void live_ws_send(ds_live *l, live_conn *c, void *sub, const char *text, size_t len);

/* One destination of live_ws_send_many: a connection, the subscription
 * the message is for, and the part of the text that is its own. */
typedef struct live_ws_to {
    live_conn *conn;
    void *sub;
    const char *id;
    size_t id_len;
} live_ws_to;
/* Queues head + to[i].id + tail for each of the n destinations (all
 * copied, the shared text once), with one lock and one wake-up of the
 * WebSocket thread for all of them. fresh: the message replaces the
 * subscription's earlier ones (a snapshot, or the error that ends it): it
 * is never dropped, and a subscription that fell behind gets its messages
 * again from it on. */
void live_ws_send_many(ds_live *l, const live_ws_to *to, size_t n, const char *head,
                       size_t head_len, const char *tail, size_t tail_len, bool fresh);
/* Only on the WebSocket thread, once sub has ended (no message for it is
 * queued after this call began): drops its queued messages and any fresh
 * snapshot owed to it, so sub is never handed to resnapshot() again. */
void live_ws_forget(ds_live *l, live_conn *c, void *sub);
/* Only on the WebSocket thread (from the message op). */
void live_ws_grid_mode(live_conn *c);
/* The API key id c was opened with. */
const char *live_ws_key_id(live_conn *c);

/* ---- credentials ------------------------------------------------------------ */

/* How the feed asks whether an API key (by id) is still valid. */
void live_set_auth(ds_live *l, bool (*alive)(void *ctx, const char *key_id), void *ctx);
/* A key was revoked: wakes every waiter for events early (its owner
 * re-checks its key and waits again; timed_out stays false) and has the
 * WebSocket loop close the connections of keys no longer alive. */
void live_revoked(ds_live *l);

typedef struct live_stats {
    int64_t sse, ws, waiting; /* current subscribers and waiters */
    int64_t cut_off;          /* subscribers cut off for lagging */
} live_stats;
void live_get_stats(ds_live *l, live_stats *s);
/* Counts SSE subscribers (the HTTP layer runs them). */
void live_sse_count(ds_live *l, int delta);

/* Takes one of the model's subscriber places (SSE or WebSocket): false
 * when all max_subscribers are taken; *count is then how many there are.
 * Every true is paired with one live_unsubscribe() (a WebSocket handed to
 * live_ws_adopt() gives its place back itself when it ends). */
bool live_subscribe(ds_live *l, const char *model, int64_t *count);
void live_unsubscribe(ds_live *l, const char *model);

#endif
