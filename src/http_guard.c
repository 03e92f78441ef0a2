/* http_guard.c: slow clients. libmicrohttpd closes a connection that stays
 * silent for --idle-timeout, but one that trickles a byte now and then
 * keeps its thread's attention and its memory forever. Here every
 * connection must deliver each request's headers and body within
 * --request-timeout seconds of opening or of its previous answer; a reaper
 * thread shuts down (does not close: the socket stays libmicrohttpd's) the
 * socket of one that does not, and libmicrohttpd then closes it as it
 * closes any connection whose peer went away. A connection whose request
 * is being answered (a long-poll, an event stream, a WebSocket) has no
 * deadline.
 *
 * A request whose head is in but whose body is not whole by then (a
 * Content-Length larger than what came, a chunked body without its last
 * chunk, a body trickled too slowly) is answered 408 first, with the JSON
 * error shape, so that its client learns why. A head that is not whole is
 * cut without an answer (slowloris).
 *
 * libmicrohttpd also waits for the rest of a body after the client has
 * ended its side of the connection, when it read that end after the head
 * (it closes at once when it sees the end with the head). So the reaper
 * peeks at each connection whose head is in and whose body is awaited:
 * when it reads the end (nothing left unread, the client's side closed)
 * and the request is still not whole LATE_BODY_NS later (libmicrohttpd
 * hands a whole body on as soon as it has read it), the body never will
 * be: it answers 400 (target body) and shuts the socket down.
 *
 * In both cases libmicrohttpd is only waiting for bytes, so nothing else
 * writes on the socket. */
#include "http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"

static const int64_t LATE_BODY_NS = (int64_t)400 * 1000000;

typedef struct guard_conn {
    struct guard_conn *next, *prev;
    MHD_socket fd;
    int64_t deadline_ns; /* 0: none */
    bool in_body;        /* the head is in and the body awaited */
    int64_t ended_ns;    /* when its client was first seen to have ended its side; 0: not */
} guard_conn;

struct http_guard {
    pthread_mutex_t lock;
    pthread_t thread;
    bool stop;
    int64_t timeout_ns;
    guard_conn *head;
    ds_metrics *metrics;
    int route; /* "unknown": the 408s and 400s it answers */
};

/* Under g->lock: the answer to a request whose body will not be whole. */
static void answer_body(http_guard *g, guard_conn *c, bool ended)
{
    char body[256], msg[512];
    int b = ended
                ? snprintf(body, sizeof body,
                           "{\"error\":{\"code\":\"malformed\",\"message\":\"the client ended its "
                           "side of the connection before the body was whole\",\"target\":"
                           "\"body\"}}")
                : snprintf(body, sizeof body,
                           "{\"error\":{\"code\":\"request_timeout\",\"message\":\"the body did "
                           "not arrive whole within %lld s (--request-timeout)\",\"target\":"
                           "\"body\"}}",
                           (long long)(g->timeout_ns / 1000000000));
    int status = ended ? 400 : 408;
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nCache-Control: "
                     "no-store\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
                     status, ended ? "Bad Request" : "Request Timeout", b, body);
    if (n > 0 && (size_t)n < sizeof msg &&
        send(c->fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
        metrics_request(g->metrics, g->route, status);
}

/* Under g->lock: whether c's client ended its side, with nothing of its
 * body left unread, LATE_BODY_NS ago or more. */
static bool body_ended(guard_conn *c, int64_t now)
{
    char b;
    if (!c->in_body || recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 0) {
        c->ended_ns = 0; /* bytes to read, or the client still sending */
        return false;
    }
    if (!c->ended_ns)
        c->ended_ns = now;
    return now - c->ended_ns >= LATE_BODY_NS;
}

static void *reaper_main(void *arg)
{
    ds_thread_name("ds-reaper");
    http_guard *g = arg;
    for (;;) {
        struct timespec t = {0, 200 * 1000 * 1000};
        nanosleep(&t, NULL);
        int64_t now = ds_now_ns();
        int cut = 0, ended_n = 0;
        pthread_mutex_lock(&g->lock);
        bool stop = g->stop;
        for (guard_conn *c = g->head; c && !stop; c = c->next) {
            bool late = c->deadline_ns && now > c->deadline_ns;
            bool ended = c->deadline_ns && !late && body_ended(c, now);
            if (late || ended) {
                if (c->in_body)
                    answer_body(g, c, ended);
                shutdown(c->fd, SHUT_RDWR); /* under the lock: the fd is still open */
                c->deadline_ns = 0;
                c->in_body = false;
                cut += late;
                ended_n += ended;
            }
        }
        pthread_mutex_unlock(&g->lock);
        if (stop)
            return NULL;
        if (cut)
            log_info("http: closed %d connection(s) that did not send a whole request within "
                     "%lld s",
                     cut, (long long)(g->timeout_ns / 1000000000));
        if (ended_n)
            log_info("http: answered 400 to %d connection(s) whose client ended its side before "
                     "the body was whole",
                     ended_n);
        log_flush(false); /* the summaries of bursts that are over */
    }
}

http_guard *http__guard_new(int timeout_s, ds_metrics *metrics)
{
    http_guard *g = xcalloc(1, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    g->metrics = metrics;
    g->route = metrics_route(metrics, "unknown");
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
    c->in_body = false;
    c->ended_ns = 0;
    pthread_mutex_unlock(&g->lock);
}

void http__guard_body(http_server *h, struct MHD_Connection *conn)
{
    http_guard *g = h->guard;
    const union MHD_ConnectionInfo *ci =
        g ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
    guard_conn *c = ci ? ci->socket_context : NULL;
    if (!c)
        return;
    pthread_mutex_lock(&g->lock);
    c->in_body = c->deadline_ns != 0;
    c->ended_ns = 0;
    pthread_mutex_unlock(&g->lock);
}
