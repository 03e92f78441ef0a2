/* http_internal.h: shared by http.c (server, auth, writes, feed) and
 * http_read.c (routes, reads, admin, static files). Only these include
 * microhttpd.h. */
#ifndef DS_HTTP_INTERNAL_H
#define DS_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "http.h"
#include "json.h"
#include "keys.h"
#include "live.h"
#include "request.h"

enum { HTTP_TICKETS = 1024, HTTP_TICKET_S = 30, HTTP_PING_S = 15 };

typedef struct thread_res {
    struct thread_res *next;
    ds_bus *bus;
    ds_reader *reader;
} thread_res;

typedef struct ticket {
    char value[48];
    int64_t expires_ns;
    ds_principal who; /* whose key asked for it */
} ticket;

typedef struct http_guard http_guard; /* slow clients (http_guard.c) */

typedef struct static_file {
    const char *path; /* URL */
    const char *type;
    char *data;
    size_t len;
} static_file;

struct http_server {
    ds_server *srv;
    struct MHD_Daemon *d;
    pthread_mutex_t lock;
    thread_res *res;
    ticket tickets[HTTP_TICKETS];
    unsigned next_ticket;
    size_t lag_limit;
    static_file files[8];
    int nfiles;
    /* the enqueuer: every write's XADD, pipelined on one connection */
    pthread_t enq_thread;
    bool enq_started, enq_stop;
    ds_bus *enq_bus;
    pthread_cond_t enq_cond;
    struct xadd_job *enq_head, *enq_tail;
    http_guard *guard;
    /* keys: open mode on loopback while there are none; the watcher
       re-reads DIR/keys and closes what a revoked key holds open */
    bool loopback;
    pthread_t keys_thread;
    bool keys_started;
    atomic_bool keys_stop; /* set by http_stop, read by the keys watcher */
};

typedef struct req req;
typedef enum MHD_Result (*handler_fn)(req *r);

struct req {
    http_server *h;
    struct MHD_Connection *conn;
    int64_t start_ns;
    ds_buf body;
    bool too_large, routed, replied, public_route, ticket_ok;
    bool close;      /* the answer closes the connection (its framing was refused) */
    bool body_route; /* its role is checked after the body's 413/415/400, before a 404 */
    key_role need;   /* the role the route needs */
    ds_principal who;
    bool admitted; /* counted open against who's key (released when completed) */
    char retry_buf[16];
    handler_fn handler;
    int route_metric;
    const char *allow, *retry_after;
    char allow_buf[32]; /* the methods of a path, for 405 */
    char user[DS_IDENT_MAX + 1];
    char model[DS_IDENT_MAX + 1];
    char dim[DS_IDENT_MAX + 1];
    char view[DS_IDENT_MAX + 1];
    char rid[REQ_ID_MAX + 1];
    char key[600];
    /* suspended: waiting for an outcome or for events */
    live_waiter w;
    int refs; /* MHD's, plus one while the enqueuer holds the request */
    bool waiting, queued_only;
    bool no_wait; /* wait=false: answered 202 once queued */
    /* a WebSocket's subscriber place: taken at the handshake, handed to
       the live module at the upgrade (else given back at completion) */
    bool sub_held, sub_handed;
    int64_t since, deadline_ns;
};

/* The calling thread's Redis connection (NULL when its URL is unusable)
 * and database reader, opened by its first request. NULL when the database
 * connection cannot be opened; never NULL in the handler of a route that
 * is not public (the dispatcher answered 503 before). */
thread_res *http__res(http_server *h);
int http__status(ds_code code);
bool http__unescape(const char *in, size_t n, bool plus, char *out, size_t cap, size_t *len);
const char *http__arg(req *r, const char *name, char *buf, size_t cap);
enum MHD_Result http__reply(req *r, int status, const char *type, const char *body, size_t len);
enum MHD_Result http__json(req *r, int status, const ds_buf *b);
enum MHD_Result http__error(req *r, const ds_error *e);
enum MHD_Result http__error_raw(req *r, int status, const char *code, const char *msg, int64_t seq,
                                int64_t oldest);
enum MHD_Result http__fail(req *r, ds_code code, const char *target, const char *msg);
int http__body(req *r, req_kind kind, json_val **root, ds_error *err);
bool http__ticket_take(http_server *h, const char *t, ds_principal *who);
/* false when no random numbers could be had */
bool http__ticket_new(http_server *h, const ds_principal *who, char *out, size_t cap);
/* 403 forbidden unless the request's principal has the route's role and
 * (when model is given and the key is limited to one) that model. */
int http__authorize(req *r, const char *model, ds_error *err);

enum MHD_Result http__write(req *r, req_kind kind, const char *path_dim);
enum MHD_Result http__changes(req *r, bool legacy);
enum MHD_Result http__events(req *r);
enum MHD_Result http__ws(req *r);

/* Slow clients: a reaper closes connections that do not deliver a whole
 * request within the request timeout (http_guard.c). */
http_guard *http__guard_new(int timeout_s);
void http__guard_free(http_guard *g);
/* MHD_OPTION_NOTIFY_CONNECTION (cls: the http_server). */
void http__guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe);
/* Starts (armed) or stops the connection's clock for its next request. */
void http__guard_arm(http_server *h, struct MHD_Connection *conn, bool armed);
/* 400 malformed when the request's headers frame its body ambiguously
 * (request smuggling): Content-Length twice with different values,
 * Transfer-Encoding with Content-Length, twice, or other than chunked, a
 * header name with whitespace (as libmicrohttpd takes some folded lines). */
int http__framing_check(struct MHD_Connection *conn, ds_error *err);

/* Picks the handler for method + url (fills r->model etc.): 0, 404 or 405. */
int http__route(req *r, const char *url, const char *method);
void http__load_static(http_server *h);
void http__free_static(http_server *h);

#endif
