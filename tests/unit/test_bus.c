/* Tests of bus.c against a real redis-server: the request stream and its
 * consumer group, pending re-reads, the lease and its epoch, the fenced
 * publish, the response stream, and Redis going away and coming back. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis.h>

#include "bus.h"
#include "redis_fixture.h"

static redis_fixture R;
static ds_bus *B;
static ds_error E;

static void setup(void)
{
    ck_assert(redis_fixture_start(&R));
    bus_opts o;
    bus_opts_default(&o);
    o.url = R.url;
    o.io_timeout_ms = 1000;
    ck_assert(bus_open(&o, &B, &E) == 0);
}

static void teardown(void)
{
    bus_close(B);
    redis_fixture_free(&R);
}

typedef struct seen {
    int n;
    char ids[16][32];
    char cmd[16][64];
    int empty;
} seen;

static void on_entry(void *ctx, const bus_entry *e)
{
    seen *s = ctx;
    ck_assert_str_eq(e->model, "sales");
    snprintf(s->ids[s->n], sizeof s->ids[0], "%s", e->id);
    s->cmd[s->n][0] = 0;
    for (int i = 0; i < e->nfields; i++)
        if (strcmp(e->fields[i].name, "cmd") == 0)
            snprintf(s->cmd[s->n], sizeof s->cmd[0], "%.*s", (int)e->fields[i].len,
                     e->fields[i].value);
    s->empty += e->nfields == 0;
    s->n++;
}

START_TEST(streams_group_and_pending)
{
    ck_assert_int_eq(bus_ping(B, &E), 0);
    ck_assert_int_eq(bus_group_ensure(B, "sales", &E), 0);
    ck_assert_int_eq(bus_group_ensure(B, "sales", &E), 0); /* idempotent */
    char id[32];
    for (int i = 0; i < 3; i++) {
        char cmd[16];
        snprintf(cmd, sizeof cmd, "c%d", i);
        bus_field f[] = {{"rid", "r", 1}, {"cmd", cmd, strlen(cmd)}};
        ck_assert_int_eq(bus_enqueue(B, "sales", f, 2, id, NULL, &E), 0);
    }
    const char *models[] = {"sales"};
    seen s = {0};
    ck_assert_int_eq(bus_read(B, "w1", models, 1, false, 10, 100, on_entry, &s, &E), 3);
    ck_assert_str_eq(s.cmd[0], "c0");
    ck_assert_str_eq(s.cmd[2], "c2");
    /* nothing new: a blocking read times out with zero */
    seen none = {0};
    ck_assert_int_eq(bus_read(B, "w1", models, 1, false, 10, 50, on_entry, &none, &E), 0);
    /* unacknowledged entries come back as pending */
    seen p = {0};
    ck_assert_int_eq(bus_read(B, "w1", models, 1, true, 10, 0, on_entry, &p, &E), 3);
    ck_assert_str_eq(p.ids[1], s.ids[1]);
    /* publishing under the lease acknowledges them */
    int64_t epoch;
    ck_assert_int_eq(bus_lease_acquire(B, "sales", "w1", 5000, &epoch, &E), 0);
    ck_assert_int_gt(epoch, 0);
    bus_event ev[] = {{1, "r", "{\"seq\":1}", 9}, {2, NULL, "{\"seq\":2}", 9}};
    const char *acks[] = {s.ids[0], s.ids[1], s.ids[2]};
    ck_assert_int_eq(bus_publish(B, "sales", "w1", epoch, ev, 2, acks, 3, 1000, &E), 0);
    seen after = {0};
    ck_assert_int_eq(bus_read(B, "w1", models, 1, true, 10, 0, on_entry, &after, &E), 0);
    int64_t last;
    ck_assert_int_eq(bus_last_seq(B, "sales", &last, &E), 0);
    ck_assert_int_eq(last, 2);
}
END_TEST

static void on_id(void *ctx, const bus_entry *e)
{
    char(*ids)[32] = ctx;
    int i = 0;
    while (ids[i][0])
        i++;
    snprintf(ids[i], sizeof ids[i], "%s", e->id);
}

static long long xlen(const char *key)
{
    redisContext *c = redisConnectUnix(R.sock);
    ck_assert(c && !c->err);
    redisReply *r = redisCommand(c, "XLEN %s", key);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* Acknowledged request entries leave the stream; pending ones stay. */
START_TEST(acked_requests_are_trimmed)
{
    ck_assert_int_eq(bus_group_ensure(B, "sales", &E), 0);
    char id[32];
    enum { N = 1000 };
    for (int i = 0; i < N; i++) {
        bus_field f[] = {{"cmd", "x", 1}};
        ck_assert_int_eq(bus_enqueue(B, "sales", f, 1, id, NULL, &E), 0);
    }
    ck_assert_int_eq(xlen("{sales}:request_duck"), N);
    static char ids[N + 1][32];
    memset(ids, 0, sizeof ids);
    const char *models[] = {"sales"};
    ck_assert_int_eq(bus_read(B, "w1", models, 1, false, N, 100, on_id, ids, &E), N);
    int64_t epoch;
    ck_assert_int_eq(bus_lease_acquire(B, "sales", "w1", 5000, &epoch, &E), 0);
    /* the first 900 done, the last 100 still pending */
    const char *acks[900];
    for (int i = 0; i < 900; i++)
        acks[i] = ids[i];
    ck_assert_int_eq(bus_publish(B, "sales", "w1", epoch, NULL, 0, acks, 900, 1000, &E), 0);
    long long left = xlen("{sales}:request_duck");
    ck_assert_msg(left >= 100 && left < 300, "%lld entries left", left);
    /* the pending ones are still there to be re-read */
    static char again[N + 1][32];
    memset(again, 0, sizeof again);
    ck_assert_int_eq(bus_read(B, "w1", models, 1, true, N, 0, on_id, again, &E), 100);
    ck_assert_str_eq(again[0], ids[900]);
}
END_TEST

START_TEST(lease_and_fencing)
{
    int64_t e1, e2;
    ck_assert_int_eq(bus_lease_acquire(B, "m", "alpha", 300, &e1, &E), 0);
    ck_assert_int_eq(bus_lease_acquire(B, "m", "beta", 300, &e2, &E), 0);
    ck_assert_int_eq(e2, -1); /* held by alpha */
    ck_assert_int_eq(bus_lease_renew(B, "m", "alpha", e1, 300, &E), 1);
    ck_assert_int_eq(bus_lease_renew(B, "m", "beta", e1, 300, &E), 0);
    struct timespec t = {0, 400 * 1000 * 1000};
    nanosleep(&t, NULL); /* alpha's lease expires */
    ck_assert_int_eq(bus_lease_acquire(B, "m", "beta", 5000, &e2, &E), 0);
    ck_assert_int_gt(e2, e1);
    ck_assert_int_eq(bus_lease_renew(B, "m", "alpha", e1, 300, &E), 0);
    /* a stale writer cannot publish */
    bus_event ev = {7, "r", "{}", 2};
    ck_assert_int_eq(bus_publish(B, "m", "alpha", e1, &ev, 1, NULL, 0, 100, &E), -DS_FORBIDDEN);
    int64_t last;
    ck_assert_int_eq(bus_last_seq(B, "m", &last, &E), 0);
    ck_assert_int_eq(last, -1);
    ck_assert_int_eq(bus_publish(B, "m", "beta", e2, &ev, 1, NULL, 0, 100, &E), 0);
    ck_assert_int_eq(bus_last_seq(B, "m", &last, &E), 0);
    ck_assert_int_eq(last, 7);
}
END_TEST

static void on_event(void *ctx, int64_t seq, const char *json, size_t len)
{
    int64_t *next = ctx;
    ck_assert_int_eq(seq, *next);
    ck_assert(len > 0 && json[0] == '{');
    (*next)++;
}

START_TEST(recent_events_oldest_first)
{
    int64_t epoch, next = 3;
    ck_assert_int_eq(bus_lease_acquire(B, "m", "w", 5000, &epoch, &E), 0);
    for (int64_t s = 1; s <= 5; s++) {
        bus_event ev = {s, NULL, "{}", 2};
        ck_assert_int_eq(bus_publish(B, "m", "w", epoch, &ev, 1, NULL, 0, 1000, &E), 0);
    }
    ck_assert_int_eq(bus_recent_events(B, "m", 3, on_event, &next, &E), 0);
    ck_assert_int_eq(next, 6);
}
END_TEST

START_TEST(redis_down_then_back)
{
    ck_assert_int_eq(bus_ping(B, &E), 0);
    redis_fixture_stop(&R, false);
    ck_assert_int_eq(bus_ping(B, &E), -DS_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(E.message, "Redis"));
    char id[32];
    bus_field f[] = {{"cmd", "x", 1}};
    bool maybe_sent = true;
    ck_assert_int_eq(bus_enqueue(B, "sales", f, 1, id, &maybe_sent, &E), -DS_UNAVAILABLE);
    ck_assert(!maybe_sent); /* nothing could be sent: nothing is queued */
    ck_assert(redis_fixture_restart(&R));
    ck_assert_int_eq(bus_ping(B, &E), 0); /* the same bus reconnects by itself */
    ck_assert_int_eq(bus_enqueue(B, "sales", f, 1, id, NULL, &E), 0);
    /* a connection Redis closed while idle: the next command still goes through */
    redis_fixture_stop(&R, false);
    ck_assert(redis_fixture_restart(&R));
    ck_assert_int_eq(bus_enqueue(B, "sales", f, 1, id, &maybe_sent, &E), 0);
}
END_TEST

START_TEST(bad_urls)
{
    ds_bus *b;
    bus_opts o;
    bus_opts_default(&o);
    o.url = "http://x";
    ck_assert_int_eq(bus_open(&o, &b, &E), -DS_INVALID_VALUE);
    o.url = "redis://:6379";
    ck_assert_int_eq(bus_open(&o, &b, &E), -DS_INVALID_VALUE);
    o.url = "redis://127.0.0.1:1";
    ck_assert_int_eq(bus_open(&o, &b, &E), 0);
    ck_assert_int_eq(bus_ping(b, &E), -DS_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(E.message, "127.0.0.1:1"));
    bus_close(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bus");
    TCase *tc = tcase_create("bus");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, streams_group_and_pending);
    tcase_add_test(tc, lease_and_fencing);
    tcase_add_test(tc, acked_requests_are_trimmed);
    tcase_add_test(tc, recent_events_oldest_first);
    tcase_add_test(tc, redis_down_then_back);
    tcase_add_test(tc, bad_urls);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
