/* http_internal.h: shared by http.c (server, auth, writes, feed) and
 * http_read.c (routes, reads, admin, static files). Only these include
 * microhttpd.h. */
#ifndef DS_HTTP_INTERNAL_H
#define DS_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>

#include "http.h"
#include "json.h"
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
} ticket;

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
};

typedef struct req req;
typedef enum MHD_Result (*handler_fn)(req *r);

struct req {
    http_server *h;
    struct MHD_Connection *conn;
    int64_t start_ns;
    ds_buf body;
    bool too_large, routed, replied, public_route, ticket_ok;
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
    bool waiting, queued_only, has_deferred;
    ds_error deferred;
    int64_t since, deadline_ns;
};

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
bool http__ticket_take(http_server *h, const char *t);
void http__ticket_new(http_server *h, char *out, size_t cap);

enum MHD_Result http__write(req *r, req_kind kind, const char *path_dim);
enum MHD_Result http__changes(req *r, bool legacy);
enum MHD_Result http__events(req *r);
enum MHD_Result http__ws(req *r);

/* Picks the handler for method + url (fills r->model etc.): 0, 404 or 405. */
int http__route(req *r, const char *url, const char *method);
void http__load_static(http_server *h);
void http__free_static(http_server *h);

#endif
