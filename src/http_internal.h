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
#include "tickets.h"

enum { HTTP_PING_S = 15 };

/* The request head (http_head.c): beyond these, 414 and 431 with the JSON
 * error shape. libmicrohttpd's own buffer (MHD_OPTION_CONNECTION_MEMORY_
 * LIMIT) is larger, so it refuses (with its HTML page) only heads far beyond. */
enum {
    HTTP_TARGET_MAX = 8192, /* bytes of the request target (path and query) */
    HTTP_HEAD_MAX = 16384,  /* bytes of the request line and header lines */
    HTTP_FIELDS_MAX = 100,  /* header lines */
    HTTP_MHD_POOL = 65536,  /* libmicrohttpd's memory per connection */
    HTTP_WS_KEY_LEN = 24,   /* Sec-WebSocket-Key: 16 bytes in base64 */
};

typedef struct thread_res {
    struct thread_res *next;
    ds_bus *bus;
    ds_reader *reader;
} thread_res;

typedef struct http_guard http_guard; /* slow clients (http_guard.c) */

/* What the URI log callback saw of the request target, before
 * libmicrohttpd split it in place (its '?', '&' and '=' become NULs, a '+'
 * in the query a space): the bytes up to a NUL, and whether a space or a
 * control character is among them. */
typedef struct http_uri {
    size_t len;
    bool ctl;
} http_uri;

/* The request line as the access handler gets it, and its target as read. */
typedef struct http_line {
    const char *method, *url, *version;
    http_uri uri;
} http_line;

/* What the head check learnt. */
typedef struct http_head {
    bool http10;          /* else HTTP/1.1 */
    bool expect_continue; /* Expect: 100-continue on HTTP/1.1 */
} http_head;

/* An answer decided outside the ds_code table (a head refused with 400,
 * 414, 431, 505; a WebSocket handshake with 400 or 426). */
typedef struct http_refusal {
    int status;
    const char *code; /* wire name: "malformed", "too_large", ... */
    char target[32];
    char message[300];
    const char *header, *header_value; /* an extra response header, or NULL */
} http_refusal;

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
    ds_tickets *tickets; /* for browsers' SSE and WebSocket (tickets.h) */
    size_t lag_limit;
    static_file files[16];
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

/* A query parameter, %-decoded: key and value are whole (no NUL, no control
 * character, UTF-8); val NULL when the parameter has no '='. */
typedef struct http_param {
    const char *key;
    size_t klen;
    const char *val;
    size_t vlen;
} http_param;

/* A path capture ({m}, {d}, {v}) as it stands in the URL. */
typedef struct http_cap {
    const char *raw;
    size_t len;
    char kind; /* 'm', 'd', 'v' */
} http_cap;

enum { HTTP_PARAMS_MAX = 32, HTTP_CAPS_MAX = 3 };

struct req {
    http_server *h;
    struct MHD_Connection *conn;
    int64_t start_ns;
    ds_buf body;
    bool too_large, routed, replied, public_route, ticket_ok;
    bool close;          /* the answer closes the connection (its head was refused) */
    bool admitted_early; /* routed and authenticated before the body (Expect) */
    bool http10;         /* an HTTP/1.0 request */
    bool body_route;     /* its role is checked after the body's 413/415/400, before a 404 */
    key_role need;       /* the role the route needs */
    ds_principal who;
    bool admitted; /* counted open against who's key (released when completed) */
    char retry_buf[16];
    handler_fn handler;
    int route_metric;
    const char *allow, *retry_after;
    const char *extra_header, *extra_value; /* e.g. Sec-WebSocket-Version on a 426 */
    char allow_buf[32];                     /* the methods of a path, for 405 */
    char user[DS_IDENT_MAX + 1];
    /* the URL, whole (http_url.c): the path's names (decoded; "" when one is
       no name: name_err says why), the query's parameters */
    const char *url; /* libmicrohttpd's, undecoded: the static files' */
    http_uri uri;    /* the request target as read (http__uri_seen) */
    bool started;    /* on_request has seen the head */
    http_cap caps[HTTP_CAPS_MAX];
    int ncaps;
    const char *const *known_params; /* the route's query parameters */
    bool any_params;                 /* and other names (dimensions, columns) */
    http_param params[HTTP_PARAMS_MAX];
    int nparams;
    bool name_bad, name_bad_model;
    ds_error name_err;
    ds_arena arena; /* decoded text, freed with r */
    char model[DS_IDENT_MAX + 1];
    char dim[DS_IDENT_MAX + 1];
    char view[DS_IDENT_MAX + 1];
    char rid[REQ_ID_MAX + 1];
    char key[REQUEST_KEY_MAX + 1]; /* model, user and rid: the ledger and the waiter */
    /* suspended: waiting for an outcome or for events */
    live_waiter w;
    int refs; /* MHD's, plus one while the enqueuer holds the request */
    bool waiting, queued_only;
    bool no_wait; /* wait=false: answered 202 once queued */
    /* a WebSocket's subscriber place: taken at the handshake, handed to
       the live module at the upgrade (else given back at completion) */
    bool sub_held, sub_handed;
    int64_t since, deadline_ns;
    int detail; /* a feed's req_detail */
};

/* The calling thread's Redis connection (NULL when its URL is unusable)
 * and database reader, opened by its first request. NULL when the database
 * connection cannot be opened; never NULL in the handler of a route that
 * is not public (the dispatcher answered 503 before). */
thread_res *http__res(http_server *h);
int http__status(ds_code code);
/* The decoded value of query parameter `name` ("" when it has no '='), or
 * NULL when absent. Valid while r is. */
const char *http__arg(req *r, const char *name);
const http_param *http__param(const req *r, const char *name, size_t len);
/* A whole number lo..hi written plainly: digits only, no sign, no space, no
 * leading zero ("0" itself is one). */
bool http__int(const char *s, int64_t lo, int64_t hi, int64_t *out);
enum MHD_Result http__reply(req *r, int status, const char *type, const char *body, size_t len);
enum MHD_Result http__json(req *r, int status, const ds_buf *b);
enum MHD_Result http__error(req *r, const ds_error *e);
/* A replica's answer to a write: 503 unavailable naming the writer. */
enum MHD_Result http__replica_refuse(req *r);
enum MHD_Result http__error_raw(req *r, int status, const char *code, const char *msg, int64_t seq,
                                int64_t oldest);
enum MHD_Result http__fail(req *r, ds_code code, const char *target, const char *msg);
/* Fills *f and returns its status (to be returned by checks). */
int http__refusal(http_refusal *f, int status, const char *code, const char *target,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
enum MHD_Result http__refuse(req *r, const http_refusal *f);
int http__body(req *r, req_kind kind, json_val **root, ds_error *err);
/* 403 forbidden unless the request's principal has the route's role and
 * (when model is given and the key is limited to one) that model. */
int http__authorize(req *r, const char *model, ds_error *err);
/* The same with a model named by a client's bytes (a body's "table"), whole:
 * one that is not the key's model byte for byte is a 403. */
int http__authorize_n(req *r, const char *model, size_t len, ds_error *err);

enum MHD_Result http__write(req *r, req_kind kind, const char *path_dim);
enum MHD_Result http__changes(req *r, bool legacy);
enum MHD_Result http__events(req *r);
enum MHD_Result http__ws(req *r);

/* The backup routes (http_backup.c) and their /metrics lines. */
enum MHD_Result http__backup_create(req *r);
enum MHD_Result http__backup_list(req *r);
enum MHD_Result http__backup_get(req *r);
void http__backup_metrics(http_server *h, ds_buf *b);

/* Slow clients: a reaper closes connections that do not deliver a whole
 * request within the request timeout (http_guard.c). */
http_guard *http__guard_new(int timeout_s, ds_metrics *metrics);
void http__guard_free(http_guard *g);
/* MHD_OPTION_NOTIFY_CONNECTION (cls: the http_server). */
void http__guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe);
/* Starts (armed) or stops the connection's clock for its next request. */
void http__guard_arm(http_server *h, struct MHD_Connection *conn, bool armed);
/* The request's head is in and its body may follow: should the body not be
 * whole by the deadline, the reaper answers 408 before it cuts. */
void http__guard_body(http_server *h, struct MHD_Connection *conn);
/* The request head (http_head.c), checked when it is complete and before
 * any body byte is read, in this order: 0, or the status of a refusal (*f):
 * 505 a version other than HTTP/1.0 and 1.1; 414 and 431 beyond the limits
 * above; 400 "url" for a NUL byte in the method or the request target
 * (which libmicrohttpd would end it at); 400 "request line" for a method
 * that is not a token or a space or control character in the target; 400
 * "headers" for obsolete line folding, a bare LF line end (the request
 * line's too), a bare CR or another control character or a NUL in a value,
 * a name that is not a token; then Content-Length twice with different
 * values, Transfer-Encoding on HTTP/1.0, with Content-Length, twice or
 * other than "chunked", Expect: 100-continue without a body, and an
 * HTTP/1.1 request without exactly one valid Host (each its header's
 * name). The connection is closed after the answer. */
int http__head_check(struct MHD_Connection *conn, const http_line *l, http_head *head,
                     http_refusal *f);
/* MHD_OPTION_URI_LOG_CALLBACK's URI (NULL: none), noted for the head check. */
void http__uri_seen(const char *uri, http_uri *u);
/* The WebSocket handshake's headers (RFC 6455 section 4.2.1): 0 and the
 * key, or 400 (not HTTP/1.1; Upgrade without the token websocket;
 * Connection without the token upgrade; a Sec-WebSocket-Key that is absent,
 * given twice or not 16 bytes in base64) or 426 with Sec-WebSocket-Version:
 * 13 (a version other than 13, absent or given twice). */
int http__ws_check(struct MHD_Connection *conn, bool http10, char key[HTTP_WS_KEY_LEN + 1],
                   http_refusal *f);

/* Picks the handler for method + url (notes the path's captures and the
 * route's query parameters): 0, 404 or 405. */
int http__route(req *r, const char *url, const char *method);

/* The URL whole (http_url.c), once http__head_check has taken the head (no
 * NUL byte cuts a name or a value of it). http__url:
 * decodes the path's captures into r->model, r->dim and r->view and the
 * query into r->params: 400 malformed for a bad escape, a control
 * character, bytes that are not UTF-8 (target "path", "query" or the
 * parameter), a parameter given twice or one the route does not take
 * (target: it); a capture that is no name is kept for http__path_names:
 * 422 invalid_value (target "table", "dimension", "view"; 403 when a key for
 * one model names no model), judged after the role. */
int http__url(req *r, ds_error *err);
int http__path_name(req *r, const char *raw, size_t n, char kind, ds_error *err);
int http__query_parse(req *r, const char *const *known, bool any, ds_error *err);
int http__path_names(req *r, ds_error *err);
void http__load_static(http_server *h);
void http__free_static(http_server *h);

#endif
