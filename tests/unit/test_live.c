/* Unit tests for live.c's waiters and the clients that hang up: a waiter
 * that names its client's socket is woken (hung_up) once the peer closes
 * or shuts down its sending side, and only then; waiters without a socket,
 * or whose peer stays, wait for their event or deadline as before. And the
 * WebSocket output of grid subscriptions: a subscriber that stops reading
 * loses its queued messages past max_ws_bytes, gets none until it has read
 * what was sent, then a fresh snapshot (asked of the grid ops), while one
 * that reads gets every message in order. Sockets are socketpairs; every
 * wait is for a condition, with a deadline. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "live.h"

typedef struct probe {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int woken;
} probe;

static probe P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void on_wake(void *arg)
{
    int *flag = arg;
    pthread_mutex_lock(&P.lock);
    (*flag)++;
    P.woken++;
    pthread_cond_broadcast(&P.cond);
    pthread_mutex_unlock(&P.lock);
}

/* Waits until *flag is set (at most 10 s); returns it. */
static int wait_flag(int *flag)
{
    int64_t end = ds_now_ns() + 10 * 1000000000LL;
    pthread_mutex_lock(&P.lock);
    while (!*flag && ds_now_ns() < end) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 20 * 1000000;
        if (t.tv_nsec >= 1000000000) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&P.cond, &P.lock, &t);
    }
    int v = *flag;
    pthread_mutex_unlock(&P.lock);
    return v;
}

static int read_flag(int *flag)
{
    pthread_mutex_lock(&P.lock);
    int v = *flag;
    pthread_mutex_unlock(&P.lock);
    return v;
}

START_TEST(a_waiter_whose_client_closes_is_woken_hung_up)
{
    ds_live *l = live_new(NULL);
    live_set_seq(l, "m", 5);
    int gone[2], stays[2], half[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, gone), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, stays), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, half), 0);
    live_waiter wg, ws, wh, wn;
    memset(&wg, 0, sizeof wg);
    memset(&ws, 0, sizeof ws);
    memset(&wh, 0, sizeof wh);
    memset(&wn, 0, sizeof wn);
    int fg = 0, fs = 0, fh = 0, fn = 0;
    live_wait(l, &wg, "m", 5, 0, gone[0], on_wake, &fg);
    live_wait(l, &ws, "m", 5, 0, stays[0], on_wake, &fs);
    live_expect(l, &wh, "m\nu\nr1", 0, half[0], on_wake, &fh);
    live_wait(l, &wn, "m", 5, 0, -1, on_wake, &fn);
    live_stats st;
    live_get_stats(l, &st);
    ck_assert_int_eq(st.waiting, 4);

    close(gone[1]); /* the client went away */
    ck_assert_int_eq(wait_flag(&fg), 1);
    ck_assert(wg.hung_up);
    ck_assert(!wg.timed_out);
    shutdown(half[1], SHUT_WR); /* a client that gives up may only half-close */
    ck_assert_int_eq(wait_flag(&fh), 1);
    ck_assert(wh.hung_up);
    ck_assert(!wh.delivered);
    /* the scans that found those looked at the others too: they wait on */
    ck_assert_int_eq(read_flag(&fs), 0);
    ck_assert_int_eq(read_flag(&fn), 0);
    live_get_stats(l, &st);
    ck_assert_int_eq(st.waiting, 2);
    ck_assert(!live_cancel(l, &wg)); /* woken once: nothing left to cancel */

    /* an event wakes the rest, not as hung up */
    live_publish(l, "m", 6, "{}", 2);
    ck_assert_int_eq(wait_flag(&fs), 1);
    ck_assert_int_eq(wait_flag(&fn), 1);
    ck_assert(!ws.hung_up);
    ck_assert(!wn.hung_up);
    live_get_stats(l, &st);
    ck_assert_int_eq(st.waiting, 0);

    /* a waiter registered again on a socket whose peer is gone: woken again,
       exactly once */
    fg = 0;
    live_wait(l, &wg, "m", 6, 0, gone[0], on_wake, &fg);
    ck_assert_int_eq(wait_flag(&fg), 1);
    ck_assert(wg.hung_up);
    live_free(l);
    ck_assert_int_eq(fg, 1);
    ck_assert_int_eq(fs, 1);
    ck_assert_int_eq(fh, 1);
    ck_assert_int_eq(fn, 1);
    for (int i = 0; i < 2; i++) {
        close(gone[i]);
        close(stays[i]);
        close(half[i]);
    }
}
END_TEST

START_TEST(a_cancelled_waiter_is_not_woken_by_its_socket)
{
    ds_live *l = live_new(NULL);
    live_set_seq(l, "m", 1);
    int a[2], b[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
    live_waiter wa, wb;
    memset(&wa, 0, sizeof wa);
    memset(&wb, 0, sizeof wb);
    int fa = 0, fb = 0;
    live_wait(l, &wa, "m", 1, 0, a[0], on_wake, &fa);
    live_wait(l, &wb, "m", 1, 0, b[0], on_wake, &fb);
    ck_assert(live_cancel(l, &wa)); /* its owner took it back (as a request that ends) */
    close(a[1]);
    close(b[1]);
    ck_assert_int_eq(wait_flag(&fb), 1); /* the scan that saw b's hang-up saw a's socket too */
    ck_assert_int_eq(read_flag(&fa), 0);
    live_free(l);
    ck_assert_int_eq(fa, 0);
    close(a[0]);
    close(b[0]);
}
END_TEST

/* ---- WebSocket grid output ---------------------------------------------- */

typedef struct ws_state {
    ds_live *l;
    live_conn *conn[2]; /* by the letter the client sent: 'a', 'b' */
    int resnapshots[2];
    void *resnapshot_sub;
    int done[2];
} ws_state;

static int sub_a, sub_b; /* stand for two grid subscriptions */

static int conn_index(ws_state *st, live_conn *c)
{
    return c == st->conn[0] ? 0 : c == st->conn[1] ? 1 : -1;
}

static void on_ws_message(void *ctx, live_conn *c, const char *model, const char *text, size_t len)
{
    (void)model;
    ws_state *st = ctx;
    ck_assert_uint_eq(len, 1);
    live_ws_grid_mode(c);
    pthread_mutex_lock(&P.lock);
    st->conn[text[0] == 'a' ? 0 : 1] = c;
    P.woken++;
    pthread_cond_broadcast(&P.cond);
    pthread_mutex_unlock(&P.lock);
}

static void on_ws_closed(void *ctx, live_conn *c)
{
    (void)ctx;
    (void)c;
}

/* As the grid hub does: a fresh snapshot for the subscription, larger
 * than max_ws_bytes (it must go out all the same, once). */
enum { SNAPSHOT_LEN = 100000 };

static void on_resnapshot(void *ctx, live_conn *c, void *sub)
{
    ws_state *st = ctx;
    pthread_mutex_lock(&P.lock);
    int i = conn_index(st, c);
    ck_assert_int_ge(i, 0);
    st->resnapshots[i]++;
    st->resnapshot_sub = sub;
    pthread_mutex_unlock(&P.lock);
    static char snap[SNAPSHOT_LEN];
    memset(snap, '#', sizeof snap);
    memcpy(snap, "snapshot", 8);
    live_ws_to to = {c, sub, NULL, 0};
    live_ws_send_many(st->l, &to, 1, snap, sizeof snap, NULL, 0, true);
}

static void on_ws_done(void *arg)
{
    int *flag = arg;
    pthread_mutex_lock(&P.lock);
    (*flag)++;
    pthread_mutex_unlock(&P.lock);
}

/* The client's side of a WebSocket: bytes read, not yet parsed. */
typedef struct ws_client {
    int fd;
    uint8_t buf[1 << 18];
    size_t len;
} ws_client;

/* The next text frame's payload (NUL-terminated, at most cap - 1 bytes),
 * waiting at most 10 s; false when none came. */
static bool next_text(ws_client *cl, char *out, size_t cap)
{
    int64_t end = ds_now_ns() + 10 * 1000000000LL;
    for (;;) {
        if (cl->len >= 2) {
            ck_assert_int_eq(cl->buf[1] & 0x80, 0); /* a server's frames are unmasked */
            size_t h = 2, n = cl->buf[1] & 0x7f;
            if (n == 126) {
                h = 4;
                n = cl->len >= h ? (size_t)cl->buf[2] << 8 | cl->buf[3] : SIZE_MAX / 2;
            } else if (n == 127) {
                h = 10;
                n = 0;
                for (size_t i = 0; i < 8; i++)
                    n = cl->len >= h ? n << 8 | cl->buf[2 + i] : SIZE_MAX / 2;
            }
            if (cl->len >= h + n) {
                ck_assert_int_eq(cl->buf[0], 0x81); /* a whole text frame */
                ck_assert_uint_lt(n, cap);
                memcpy(out, cl->buf + h, n);
                out[n] = 0;
                memmove(cl->buf, cl->buf + h + n, cl->len - h - n);
                cl->len -= h + n;
                return true;
            }
        }
        int left_ms = (int)((end - ds_now_ns()) / 1000000);
        if (left_ms <= 0)
            return false;
        struct pollfd pf = {cl->fd, POLLIN, 0};
        if (poll(&pf, 1, left_ms) <= 0)
            continue;
        ssize_t r = read(cl->fd, cl->buf + cl->len, sizeof cl->buf - cl->len);
        ck_assert_int_gt(r, 0);
        cl->len += (size_t)r;
    }
}

/* A masked (with key 0) text frame from the client. */
static void client_send(int fd, char letter)
{
    uint8_t f[7] = {0x81, 0x81, 0, 0, 0, 0, (uint8_t)letter};
    ck_assert_int_eq(write(fd, f, sizeof f), (ssize_t)sizeof f);
}

START_TEST(a_grid_subscriber_that_stops_reading_gets_a_fresh_snapshot_others_every_patch)
{
    enum { N = 600, MSG = 1000 };
    live_opts o;
    live_opts_default(&o);
    o.max_ws_bytes = 64 << 10;
    o.ping_ms = 600000;
    ds_live *l = live_new(&o);
    live_set_seq(l, "m", 0);
    static ws_state st; /* the WebSocket thread uses it until live_free */
    memset(&st, 0, sizeof st);
    st.l = l;
    live_grid_ops ops = {on_ws_message, on_ws_closed, on_resnapshot};
    live_set_grid_ops(l, &ops, &st);
    static ws_client cl[2];
    for (int i = 0; i < 2; i++) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        int small = 4096;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].fd = sv[1];
        int64_t count;
        ck_assert(live_subscribe(l, "m", &count));
        live_ws_adopt(l, sv[0], NULL, 0, "m", 0, 0, "", on_ws_done, &st.done[i]);
        client_send(sv[1], i == 0 ? 'a' : 'b');
    }
    int64_t end = ds_now_ns() + 10 * 1000000000LL;
    pthread_mutex_lock(&P.lock);
    while ((!st.conn[0] || !st.conn[1]) && ds_now_ns() < end) {
        pthread_mutex_unlock(&P.lock);
        usleep(1000);
        pthread_mutex_lock(&P.lock);
    }
    pthread_mutex_unlock(&P.lock);
    ck_assert(st.conn[0] && st.conn[1]);

    /* N messages of MSG bytes to both; b reads as they come, a reads nothing */
    char *text = malloc(MSG + 1), *got = malloc(SNAPSHOT_LEN + 1);
    memset(text, '.', MSG);
    text[MSG] = 0;
    int b_next = 0;
    for (int i = 0; i < N; i++) {
        char head[16];
        snprintf(head, sizeof head, "m%05d", i);
        memcpy(text, head, 6);
        live_ws_send(l, st.conn[0], &sub_a, text, MSG);
        live_ws_send(l, st.conn[1], &sub_b, text, MSG);
        if (i % 10 == 9)
            for (; b_next <= i; b_next++) {
                ck_assert(next_text(&cl[1], got, MSG + 1));
                ck_assert_int_eq(atoi(got + 1), b_next);
                ck_assert_uint_eq(strlen(got), MSG);
            }
    }
    live_stats ls;
    live_get_stats(l, &ls);
    ck_assert_int_ge(ls.cut_off, 1);
    pthread_mutex_lock(&P.lock);
    ck_assert_int_eq(st.resnapshots[0], 0); /* a has not read what was sent */
    pthread_mutex_unlock(&P.lock);

    /* a reads: the messages that fit, in order; then, after the gap, the
       snapshot */
    int a_got = 0, last = -1;
    for (;;) {
        ck_assert(next_text(&cl[0], got, SNAPSHOT_LEN + 1));
        if (memcmp(got, "snapshot", 8) == 0) {
            ck_assert_uint_eq(strlen(got), SNAPSHOT_LEN);
            break;
        }
        int k = atoi(got + 1);
        ck_assert_int_eq(k, last + 1); /* a prefix: nothing after the gap */
        last = k;
        a_got++;
    }
    ck_assert_int_lt(a_got, N);
    ck_assert_int_gt(a_got, 0);
    pthread_mutex_lock(&P.lock);
    ck_assert_int_eq(st.resnapshots[0], 1);
    ck_assert_int_eq(st.resnapshots[1], 0);
    ck_assert_ptr_eq(st.resnapshot_sub, &sub_a);
    pthread_mutex_unlock(&P.lock);
    /* caught up: its messages flow again, and b's never stopped */
    memcpy(text, "m99999", 6);
    live_ws_send(l, st.conn[0], &sub_a, text, MSG);
    live_ws_send(l, st.conn[1], &sub_b, text, MSG);
    for (int i = 0; i < 2; i++) {
        ck_assert(next_text(&cl[i], got, MSG + 1));
        ck_assert_int_eq(atoi(got + 1), 99999);
    }
    pthread_mutex_lock(&P.lock);
    ck_assert_int_eq(st.resnapshots[0], 1); /* its snapshot, larger than the cap, went once */
    pthread_mutex_unlock(&P.lock);
    live_free(l);
    ck_assert_int_eq(st.done[0], 1);
    ck_assert_int_eq(st.done[1], 1);
    for (int i = 0; i < 2; i++)
        close(cl[i].fd);
    free(text);
    free(got);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("live");
    TCase *tc = tcase_create("live");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, a_waiter_whose_client_closes_is_woken_hung_up);
    tcase_add_test(tc, a_cancelled_waiter_is_not_woken_by_its_socket);
    tcase_add_test(tc,
                   a_grid_subscriber_that_stops_reading_gets_a_fresh_snapshot_others_every_patch);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
