/* http_guard.c: hostile connections. Message framing: a request whose
 * headers frame its body ambiguously is refused before any byte of it is
 * read (a proxy in front could frame it otherwise: request smuggling).
 * Slow clients (slowloris): libmicrohttpd closes a
 * connection that stays silent for --idle-timeout, but one that trickles a
 * byte now and then keeps its thread's attention and its memory forever.
 * Here every connection must deliver each request's headers and body
 * within --request-timeout seconds of opening or of its previous answer;
 * a reaper thread shuts down (does not close: the socket stays libmicro-
 * httpd's) the socket of one that does not, and libmicrohttpd then closes
 * it as it closes any connection whose peer went away. A connection whose
 * request is being answered (a long-poll, an event stream, a WebSocket)
 * has no deadline. */
#include "http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"

typedef struct guard_conn {
    struct guard_conn *next, *prev;
    MHD_socket fd;
    int64_t deadline_ns; /* 0: none */
} guard_conn;

struct http_guard {
    pthread_mutex_t lock;
    pthread_t thread;
    bool stop;
    int64_t timeout_ns;
    guard_conn *head;
};

static void *reaper_main(void *arg)
{
    http_guard *g = arg;
    for (;;) {
        struct timespec t = {0, 200 * 1000 * 1000};
        nanosleep(&t, NULL);
        int64_t now = ds_now_ns();
        int cut = 0;
        pthread_mutex_lock(&g->lock);
        bool stop = g->stop;
        for (guard_conn *c = g->head; c && !stop; c = c->next) {
            if (c->deadline_ns && now > c->deadline_ns) {
                shutdown(c->fd, SHUT_RDWR); /* under the lock: the fd is still open */
                c->deadline_ns = 0;
                cut++;
            }
        }
        pthread_mutex_unlock(&g->lock);
        if (stop)
            return NULL;
        if (cut)
            log_info("http: closed %d connection(s) that did not send a whole request within "
                     "%lld s",
                     cut, (long long)(g->timeout_ns / 1000000000));
        log_flush(false); /* the summaries of bursts that are over */
    }
}

http_guard *http__guard_new(int timeout_s)
{
    http_guard *g = xcalloc(1, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    g->timeout_ns = (int64_t)(timeout_s > 0 ? timeout_s : 30) * 1000000000;
    if (pthread_create(&g->thread, NULL, reaper_main, g) != 0) {
        pthread_mutex_destroy(&g->lock);
        free(g);
        return NULL;
    }
    return g;
}

/* After MHD_stop_daemon: every connection has been closed (and unlisted). */
void http__guard_free(http_guard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stop = true;
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->thread, NULL);
    log_flush(true);
    while (g->head) {
        guard_conn *c = g->head;
        g->head = c->next;
        free(c);
    }
    pthread_mutex_destroy(&g->lock);
    free(g);
}

void http__guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe)
{
    http_server *h = cls;
    http_guard *g = h->guard;
    if (!g)
        return;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        guard_conn *c = xcalloc(1, sizeof *c);
        c->fd = ci ? ci->connect_fd : MHD_INVALID_SOCKET;
        c->deadline_ns = c->fd != MHD_INVALID_SOCKET ? ds_now_ns() + g->timeout_ns : 0;
        pthread_mutex_lock(&g->lock);
        c->next = g->head;
        if (g->head)
            g->head->prev = c;
        g->head = c;
        pthread_mutex_unlock(&g->lock);
        *socket_context = c;
        return;
    }
    guard_conn *c = *socket_context; /* MHD_CONNECTION_NOTIFY_CLOSED: before the close */
    if (!c)
        return;
    pthread_mutex_lock(&g->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        g->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&g->lock);
    *socket_context = NULL;
    free(c);
}

void http__guard_arm(http_server *h, struct MHD_Connection *conn, bool armed)
{
    http_guard *g = h->guard;
    const union MHD_ConnectionInfo *ci =
        g ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
    guard_conn *c = ci ? ci->socket_context : NULL;
    if (!c)
        return;
    pthread_mutex_lock(&g->lock);
    c->deadline_ns = armed ? ds_now_ns() + g->timeout_ns : 0;
    pthread_mutex_unlock(&g->lock);
}

/* ---- framing ------------------------------------------------------------------------------ */

typedef struct framing {
    const char *cl;      /* the first Content-Length */
    int ncl, nte;        /* Content-Length and Transfer-Encoding headers */
    bool cl_differs;     /* a later Content-Length differs from the first */
    bool te_not_chunked; /* a Transfer-Encoding other than chunked */
    bool bad_name;       /* whitespace (a folded line taken as a header), a colon, a control */
    char name[64];       /* the offending header */
} framing;

static enum MHD_Result each_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    framing *f = cls;
    for (size_t i = 0; i < key_size; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c <= 0x20 || c == 0x7f || c == ':')
            f->bad_name = true;
    }
    (void)value_size;
    if (f->bad_name) {
        snprintf(f->name, sizeof f->name, "%.*s", (int)(key_size < 60 ? key_size : 60), key);
        return MHD_NO;
    }
    if (strcasecmp(key, "Content-Length") == 0) {
        if (f->ncl++ == 0)
            f->cl = value;
        else if (strcmp(f->cl, value ? value : "") != 0)
            f->cl_differs = true;
    } else if (strcasecmp(key, "Transfer-Encoding") == 0) {
        f->nte++;
        f->te_not_chunked |= !value || strcasecmp(value, "chunked") != 0;
    }
    return MHD_YES;
}

int http__framing_check(struct MHD_Connection *conn, ds_error *err)
{
    framing f = {0};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, each_header, &f);
    if (f.bad_name)
        return ds_fail(err, DS_MALFORMED, "headers",
                       "the header name '%s' contains whitespace or a control character", f.name);
    if (f.cl_differs)
        return ds_fail(err, DS_MALFORMED, "Content-Length",
                       "Content-Length is given twice with different values");
    if (f.nte && f.ncl)
        return ds_fail(err, DS_MALFORMED, "Transfer-Encoding",
                       "Transfer-Encoding and Content-Length together frame the body twice");
    if (f.nte > 1 || f.te_not_chunked)
        return ds_fail(err, DS_MALFORMED, "Transfer-Encoding",
                       "the only Transfer-Encoding taken is a single 'chunked'");
    return 0;
}
