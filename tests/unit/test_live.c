/* Unit tests for live.c's waiters and the clients that hang up: a waiter
 * that names its client's socket is woken (hung_up) once the peer closes
 * or shuts down its sending side, and only then; waiters without a socket,
 * or whose peer stays, wait for their event or deadline as before. Sockets
 * are socketpairs; every wait is for a condition, with a deadline. */
#include <check.h>
#include <pthread.h>
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

int main(void)
{
    Suite *s = suite_create("live");
    TCase *tc = tcase_create("live");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, a_waiter_whose_client_closes_is_woken_hung_up);
    tcase_add_test(tc, a_cancelled_waiter_is_not_woken_by_its_socket);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
