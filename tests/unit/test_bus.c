/* Tests of bus.c against a real redis-server: the request stream and its
 * consumer group, pending re-reads, the lease and its epoch, the fenced
 * publish, the response stream, and Redis going away and coming back. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis.h>

#include "bus.h"
#include "bus_internal.h"
#include "redis_fixture.h"
#include "util.h"

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
    ck_assert_int_eq(bus_read(B, "w1", models, 1, NULL, 10, 100, on_entry, &s, &E), 3);
    ck_assert_str_eq(s.cmd[0], "c0");
    ck_assert_str_eq(s.cmd[2], "c2");
    /* nothing new: a blocking read times out with zero */
    seen none = {0};
    ck_assert_int_eq(bus_read(B, "w1", models, 1, NULL, 10, 50, on_entry, &none, &E), 0);
    /* unacknowledged entries come back as pending */
    seen p = {0};
    ck_assert_int_eq(bus_read(B, "w1", models, 1, "0", 10, 0, on_entry, &p, &E), 3);
    ck_assert_str_eq(p.ids[1], s.ids[1]);
    /* publishing under the lease acknowledges them */
    int64_t epoch;
    ck_assert_int_eq(bus_lease_acquire(B, "sales", "w1", 5000, &epoch, &E), 0);
    ck_assert_int_gt(epoch, 0);
    bus_event ev[] = {{.seq = 1, .request_id = "r", .json = "{\"seq\":1}", .len = 9},
                      {.seq = 2, .json = "{\"seq\":2}", .len = 9}};
    const char *acks[] = {s.ids[0], s.ids[1], s.ids[2]};
    ck_assert_int_eq(bus_publish(B, "sales", "w1", epoch, ev, 2, acks, 3, 1000, NULL, &E), 0);
    seen after = {0};
    ck_assert_int_eq(bus_read(B, "w1", models, 1, "0", 10, 0, on_entry, &after, &E), 0);
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
    enum { N = 21000, DONE = N - 100 };
    for (int i = 0; i < N; i++) {
        bus_field f[] = {{"cmd", "x", 1}};
        ck_assert_int_eq(bus_enqueue(B, "sales", f, 1, id, NULL, &E), 0);
    }
    ck_assert_int_eq(xlen("{sales}:request_duck"), N);
    static char ids[N + 1][32];
    memset(ids, 0, sizeof ids);
    const char *models[] = {"sales"};
    ck_assert_int_eq(bus_read(B, "w1", models, 1, NULL, N, 100, on_id, ids, &E), N);
    int64_t epoch;
    ck_assert_int_eq(bus_lease_acquire(B, "sales", "w1", 5000, &epoch, &E), 0);
    /* all but the last 100 done, in one call: more ids than Lua's
       unpack() takes at once */
    static const char *acks[DONE];
    for (int i = 0; i < DONE; i++)
        acks[i] = ids[i];
    ck_assert_int_eq(bus_publish(B, "sales", "w1", epoch, NULL, 0, acks, DONE, 1000, NULL, &E), 0);
    /* an approximate XTRIM removes at most 10,000 entries (Redis's default
       LIMIT): the next calls that acknowledge something carry on */
    for (int k = 0; k < 3 && xlen("{sales}:request_duck") >= 300; k++)
        ck_assert_int_eq(bus_publish(B, "sales", "w1", epoch, NULL, 0, acks, 1, 1000, NULL, &E), 0);
    long long left = xlen("{sales}:request_duck");
    ck_assert_msg(left >= 100 && left < 300, "%lld entries left", left);
    /* the pending ones are still there to be re-read */
    static char again[N + 1][32];
    memset(again, 0, sizeof again);
    ck_assert_int_eq(bus_read(B, "w1", models, 1, "0", N, 0, on_id, again, &E), 100);
    ck_assert_str_eq(again[0], ids[DONE]);
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
    bus_event ev = {.seq = 7, .request_id = "r", .json = "{}", .len = 2};
    ck_assert_int_eq(bus_publish(B, "m", "alpha", e1, &ev, 1, NULL, 0, 100, NULL, &E),
                     -DS_FORBIDDEN);
    int64_t last;
    ck_assert_int_eq(bus_last_seq(B, "m", &last, &E), 0);
    ck_assert_int_eq(last, -1);
    ck_assert_int_eq(bus_publish(B, "m", "beta", e2, &ev, 1, NULL, 0, 100, NULL, &E), 0);
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

/* A stream that lost events (a Redis failover or restart without them) is
 * named: the publish script publishes nothing and says where it ends. */
START_TEST(lost_events_are_named)
{
    int64_t epoch, expect = -1;
    ck_assert_int_eq(bus_lease_acquire(B, "m", "w", 5000, &epoch, &E), 0);
    for (int64_t s = 1; s <= 3; s++) {
        bus_event ev = {.seq = s, .json = "{}", .len = 2};
        ck_assert_int_eq(bus_publish(B, "m", "w", epoch, &ev, 1, NULL, 0, 1000, &expect, &E), 0);
        expect = s;
    }
    ck_assert_int_eq(xlen("{m}:response_duck"), 3);
    redisContext *c = redisConnectUnix(R.sock); /* a Redis that came back without them */
    ck_assert(c && !c->err);
    freeReplyObject(redisCommand(c, "DEL {m}:response_duck"));
    redisFree(c);
    bus_event ev = {.seq = 4, .json = "{}", .len = 2};
    ck_assert_int_eq(bus_publish(B, "m", "w", epoch, &ev, 1, NULL, 0, 1000, &expect, &E),
                     -DS_NOT_FOUND);
    ck_assert_int_eq(expect, -1);
    ck_assert_msg(strstr(E.message, "lost events") != NULL, "%s", E.message);
    ck_assert_int_eq(xlen("{m}:response_duck"), 0); /* nothing published */
    ck_assert_int_eq(bus_publish(B, "m", "w", epoch, &ev, 1, NULL, 0, 1000, &expect, &E), 0);
}
END_TEST

START_TEST(recent_events_oldest_first)
{
    int64_t epoch, next = 3;
    ck_assert_int_eq(bus_lease_acquire(B, "m", "w", 5000, &epoch, &E), 0);
    for (int64_t s = 1; s <= 5; s++) {
        bus_event ev = {.seq = s, .json = "{}", .len = 2};
        ck_assert_int_eq(bus_publish(B, "m", "w", epoch, &ev, 1, NULL, 0, 1000, NULL, &E), 0);
    }
    ck_assert_int_eq(bus_recent_events(B, "m", 3, on_event, &next, &E), 0);
    ck_assert_int_eq(next, 6);
}
END_TEST

/* What a replica reads: every published event with its seq, request id,
 * user, time and command; where a replica at a seq starts; the writer's
 * name in the lease. */
typedef struct followed {
    int n;
    int64_t seq[600];
    char last_id[48];
    bool fields_ok;
} followed;

static void on_followed(void *ctx, const bus_entry *e)
{
    followed *f = ctx;
    int64_t seq = -1, ts = -1;
    bool user = false, cmd = false;
    for (int i = 0; i < e->nfields; i++) {
        if (!strcmp(e->fields[i].name, "seq"))
            seq = strtoll(e->fields[i].value, NULL, 10);
        if (!strcmp(e->fields[i].name, "ts"))
            ts = strtoll(e->fields[i].value, NULL, 10);
        if (!strcmp(e->fields[i].name, "user"))
            user = !strcmp(e->fields[i].value, "ann");
        if (!strcmp(e->fields[i].name, "cmd"))
            cmd = !strcmp(e->fields[i].value, "{\"c\":1}");
    }
    f->fields_ok &= ts == 1700000000000 + seq && user && cmd;
    if (f->n < 600)
        f->seq[f->n++] = seq;
    snprintf(f->last_id, sizeof f->last_id, "%s", e->id);
}

START_TEST(replica_reads_and_seeks)
{
    int64_t epoch, first, last;
    char id[48], owner[256];
    ck_assert_int_eq(bus_lease_owner(B, "m", owner, sizeof owner, &E), 0);
    ck_assert_str_eq(owner, "");
    ck_assert_int_eq(bus_seek(B, "m", 5, id, sizeof id, &first, &last, &E), 0);
    ck_assert_str_eq(id, "0-0"); /* an empty stream */
    ck_assert_int_eq(first, -1);
    ck_assert_int_eq(bus_lease_acquire(B, "m", "host:/data", 5000, &epoch, &E), 0);
    ck_assert_int_eq(bus_lease_owner(B, "m", owner, sizeof owner, &E), 0);
    ck_assert_str_eq(owner, "host:/data");
    /* 500 events over several milliseconds, several per millisecond */
    for (int64_t s = 1; s <= 500;) {
        bus_event ev[25];
        for (int k = 0; k < 25; k++, s++)
            ev[k] = (bus_event){.seq = s,
                                .request_id = "r",
                                .user = "ann",
                                .ts_ms = 1700000000000 + s,
                                .json = "{}",
                                .len = 2,
                                .cmd = "{\"c\":1}",
                                .cmd_len = 7};
        ck_assert_int_eq(
            bus_publish(B, "m", "host:/data", epoch, ev, 25, NULL, 0, 100000, NULL, &E), 0);
        struct timespec t = {0, 1000 * 1000};
        nanosleep(&t, NULL);
    }
    const char *models[] = {"m"};
    for (int64_t at = 0; at <= 500; at += 37) {
        ck_assert_int_eq(bus_seek(B, "m", at, id, sizeof id, &first, &last, &E), 0);
        ck_assert_int_eq(first, 1);
        ck_assert_int_eq(last, 500);
        /* reading from there: everything after at comes, in order, and at
           most what one millisecond held before it */
        followed f = {.fields_ok = true};
        const char *after[] = {id};
        int got;
        while ((got = bus_follow(B, models, after, 1, 100, 0, on_followed, &f, &E)) > 0)
            after[0] = f.last_id;
        ck_assert_int_eq(got, 0);
        ck_assert(f.fields_ok);
        int k = 0;
        while (k < f.n && f.seq[k] <= at)
            k++;
        ck_assert_int_lt(k, 60);
        ck_assert_int_eq(f.n - k, 500 - at);
        for (int j = k; j < f.n; j++)
            ck_assert_int_eq(f.seq[j], at + 1 + (j - k));
    }
    /* a replica at or past the end starts after the last entry */
    ck_assert_int_eq(bus_seek(B, "m", 900, id, sizeof id, &first, &last, &E), 0);
    followed f = {.fields_ok = true};
    const char *after[] = {id};
    ck_assert_int_eq(bus_follow(B, models, after, 1, 100, 20, on_followed, &f, &E), 0);
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

/* bus_open with this URL (and TLS options): 0 and its description, or the
 * error. Either way the password "s3cr3t" must not show. */
static int open_url(const char *url, const char *ca, const char *cert, const char *key, char *out,
                    size_t n)
{
    bus_opts o;
    bus_opts_default(&o);
    o.url = url;
    o.tls_ca = ca;
    o.tls_cert = cert;
    o.tls_key = key;
    ds_bus *b = NULL;
    ds_error_clear(&E);
    int rc = bus_open(&o, &b, &E);
    if (rc == 0) {
        bus_describe(b, out, n);
        bus_close(b);
    } else {
        ck_assert_ptr_null(b);
        ck_assert_int_eq(E.code, DS_INVALID_VALUE);
        snprintf(out, n, "%s", E.message);
    }
    ck_assert_msg(!strstr(out, "s3cr3t") && !strstr(out, "s3%63r3t"), "password in '%s'", out);
    return rc;
}

START_TEST(url_forms)
{
    char d[600];
    static const struct {
        const char *url, *want;
    } ok[] = {
        {"redis://127.0.0.1", "redis://127.0.0.1:6379"},
        {"redis://h:7000/", "redis://h:7000"},
        {"redis://h:7000/0", "redis://h:7000"},
        {"redis://:s3cr3t@h:7000", "redis://:***@h:7000"},
        {"redis://s3cr3t@h:7000", "redis://:***@h:7000"}, /* a password, as redis-cli reads it */
        {"redis://duck:s3cr3t@h:7000", "redis://duck:***@h:7000"},
        {"redis://duck:s3%63r3t@h", "redis://duck:***@h:6379"},
        {"redis://d%75ck:p@ss:w@rd@h:1", "redis://duck:***@h:1"}, /* the last @ ends it */
        {"redis://[::1]:7001", "redis://[::1]:7001"},
        {"rediss://duck:s3cr3t@redis.example:6380",
         "rediss://duck:***@redis.example:6380 (TLS, certificate checked)"},
        {"rediss://[::1]", "rediss://[::1]:6379 (TLS, certificate checked)"},
        {"unix:///tmp/r.sock", "unix:///tmp/r.sock"},
        {"unix://duck:s3cr3t@/tmp/r.sock", "unix://duck:***@/tmp/r.sock"},
        {"unix://rel/r.sock", "unix://rel/r.sock"},
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(ok); i++) {
        ck_assert_msg(open_url(ok[i].url, NULL, NULL, NULL, d, sizeof d) == 0, "%s: %s", ok[i].url,
                      d);
        ck_assert_str_eq(d, ok[i].want);
    }
}
END_TEST

START_TEST(url_errors)
{
    char d[600];
    static const struct {
        const char *url, *says;
    } bad[] = {
        {"http://h", "must start with redis://, rediss:// (TLS) or unix://"},
        {"h:6379", "must start with"},
        {"redis://", "has no host"},
        {"redis://:6379", "has no host"},
        {"redis://duck:s3cr3t@:6379", "has no host"},
        {"redis://h:", "port '' is not a number from 1 to 65535"},
        {"redis://h:0", "port '0' is not"},
        {"redis://h:65536", "port '65536' is not"},
        {"redis://h:63a", "port '63a' is not"},
        {"redis://h:+63", "port '+63' is not"},
        {"redis://h:6379/2", "path '/2' selects a database: duckspread uses database 0 only"},
        {"rediss://h:6379?ssl_cert_reqs=none", "takes no ?options; TLS is set with --redis-ca"},
        {"redis://duck:s3cr3t%4@h", "a % not followed by two hex digits"},
        {"redis://duck:s3cr3t%zz@h", "a % not followed by two hex digits"},
        {"redis://[::1:6379", "a [ without its ]"},
        {"redis://[::1]x:6379", "text after the ]"},
        {"unix://", "socket path is empty"},
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(bad); i++) {
        ck_assert_msg(open_url(bad[i].url, NULL, NULL, NULL, d, sizeof d) == -DS_INVALID_VALUE,
                      "%s was accepted: %s", bad[i].url, d);
        ck_assert_msg(strstr(d, bad[i].says), "%s: '%s' does not say '%s'", bad[i].url, d,
                      bad[i].says);
    }
    char longpath[200];
    memset(longpath, 'x', sizeof longpath);
    memcpy(longpath, "unix:///", 8);
    longpath[sizeof longpath - 1] = '\0';
    ck_assert_int_eq(open_url(longpath, NULL, NULL, NULL, d, sizeof d), -DS_INVALID_VALUE);
    ck_assert_ptr_nonnull(strstr(d, "longer than 107 bytes"));
}
END_TEST

START_TEST(tls_options)
{
    char d[600];
    /* TLS settings only with rediss:// */
    ck_assert_int_eq(open_url("redis://h", "/nonexistent/ca.pem", NULL, NULL, d, sizeof d),
                     -DS_INVALID_VALUE);
    ck_assert_str_eq(d, "--redis-ca, --redis-cert, --redis-key and --redis-server-name need a "
                        "rediss:// URL");
    ck_assert_int_eq(open_url("unix:///tmp/r.sock", NULL, "c.pem", "k.pem", d, sizeof d),
                     -DS_INVALID_VALUE);
    ck_assert_int_eq(open_url("rediss://h", NULL, "c.pem", NULL, d, sizeof d), -DS_INVALID_VALUE);
    ck_assert_str_eq(d, "a client certificate needs both --redis-cert and --redis-key");
    ck_assert_int_eq(open_url("rediss://h", "/nonexistent/ca.pem", NULL, NULL, d, sizeof d),
                     -DS_INVALID_VALUE);
    ck_assert_str_eq(d, "cannot use the Redis CA file /nonexistent/ca.pem: No such file or "
                        "directory");
    /* a file that holds no certificate */
    char path[] = "/tmp/ds-test-ca-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "not a certificate\n", 18), 18);
    close(fd);
    ck_assert_int_eq(open_url("rediss://h", path, NULL, NULL, d, sizeof d), -DS_INVALID_VALUE);
    ck_assert_msg(strstr(d, "cannot use the Redis CA file") && strstr(d, path), "%s", d);
    ck_assert_int_eq(open_url("rediss://h", NULL, path, path, d, sizeof d), -DS_INVALID_VALUE);
    ck_assert_msg(strstr(d, "cannot use the Redis client certificate"), "%s", d);
    unlink(path);
    /* the system's CAs, and a server name of its own */
    bus_opts o;
    bus_opts_default(&o);
    o.url = "rediss://10.0.0.1:6380";
    o.tls_name = "redis.internal";
    ds_bus *b;
    ck_assert_int_eq(bus_open(&o, &b, &E), 0);
    bus_describe(b, d, sizeof d);
    ck_assert_str_eq(d, "rediss://10.0.0.1:6380 (TLS, certificate checked for redis.internal)");
    bus_close(b);
}
END_TEST

/* A plain unix socket needs no probe to be refused: the fixture's Redis
 * (no ACL) allows everything, and the check changes nothing. */
START_TEST(access_check)
{
    const char *models[] = {"sales", "other"};
    ck_assert_int_eq(bus_check_access(B, models, 2, &E), 0);
    ck_assert_int_eq(xlen("{sales}:request_duck"), 0);
    redisContext *c = redisConnectUnix(R.sock);
    ck_assert(c && !c->err);
    redisReply *r = redisCommand(c, "DBSIZE");
    ck_assert_int_eq(r->integer, 0);
    freeReplyObject(r);
    /* a user without XTRIM: named with its key */
    r = redisCommand(c, "ACL SETUSER limited on >pw ~* +@all -xtrim");
    ck_assert_str_eq(r->str, "OK");
    freeReplyObject(r);
    bus_opts o;
    bus_opts_default(&o);
    char url[400];
    snprintf(url, sizeof url, "unix://limited:pw@%s", R.sock);
    o.url = url;
    ds_bus *b;
    ck_assert_int_eq(bus_open(&o, &b, &E), 0);
    ck_assert_int_eq(bus_check_access(b, models, 2, &E), -DS_FORBIDDEN);
    ck_assert_msg(strstr(E.message, "Redis user 'limited' may not run XTRIM {sales}:request_duck"),
                  "%s", E.message);
    bus_close(b);
    /* a user without the keys of 'other' */
    r = redisCommand(c, "ACL SETUSER limited ~* resetkeys ~{sales}:* +xtrim");
    freeReplyObject(r);
    ck_assert_int_eq(bus_open(&o, &b, &E), 0);
    ck_assert_int_eq(bus_check_access(b, models, 1, &E), 0);
    ck_assert_int_eq(bus_check_access(b, models, 2, &E), -DS_FORBIDDEN);
    ck_assert_msg(strstr(E.message, "may not run XADD on {other}:request_duck (NOPERM"), "%s",
                  E.message);
    bus_close(b);
    /* a wrong password */
    snprintf(url, sizeof url, "unix://limited:s3cr3t@%s", R.sock);
    ck_assert_int_eq(bus_open(&o, &b, &E), 0);
    ck_assert_int_eq(bus_check_access(b, models, 1, &E), -DS_FORBIDDEN);
    ck_assert_msg(strstr(E.message, "refused the credentials of user limited: WRONGPASS"), "%s",
                  E.message);
    ck_assert_ptr_null(strstr(E.message, "s3cr3t"));
    bus_close(b);
    r = redisCommand(c, "DBSIZE");
    ck_assert_int_eq(r->integer, 0);
    freeReplyObject(r);
    /* no password where one is needed */
    r = redisCommand(c, "ACL SETUSER default on resetpass >adminpw");
    freeReplyObject(r);
    snprintf(url, sizeof url, "unix://%s", R.sock);
    ck_assert_int_eq(bus_open(&o, &b, &E), 0);
    ck_assert_int_eq(bus_check_access(b, models, 1, &E), -DS_FORBIDDEN);
    ck_assert_msg(strstr(E.message, "Redis refused PING: NOAUTH") &&
                      strstr(E.message, "the URL needs [user:]password@"),
                  "%s", E.message);
    bus_close(b);
    redisFree(c);
}
END_TEST

/* The slots of Redis Cluster's own CLUSTER KEYSLOT (redis-server 7.0),
 * hash tags included, and cluster mode's refusal of a unix socket. */
START_TEST(cluster_key_slots)
{
    static const struct {
        const char *key;
        int slot;
    } cases[] = {
        {"123456789", 12739},
        {"foo", 12182},
        {"{user1000}.following", 3443},
        {"user1000", 3443},
        {"foo{}{bar}", 8363},
        {"foo{{bar}}zap", 4015},
        {"foo{bar}{zap}", 5061},
        {"{sales}:request_duck", 2067},
        {"{a}", 15495},
        {"{", 4092},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(bus__key_slot(cases[i].key, strlen(cases[i].key)) == cases[i].slot,
                      "%s: %d, not %d", cases[i].key,
                      bus__key_slot(cases[i].key, strlen(cases[i].key)), cases[i].slot);
    bus_opts o;
    bus_opts_default(&o);
    o.url = "unix:///tmp/redis.sock";
    o.cluster = true;
    ds_bus *b = NULL;
    ck_assert_int_eq(bus_open(&o, &b, &E), -DS_INVALID_VALUE);
    ck_assert_msg(strstr(E.message, "Redis Cluster is reached over TCP"), "%s", E.message);
    o.url = "redis://127.0.0.1:1,127.0.0.1:2";
    ck_assert_int_eq(bus_open(&o, &b, &E), 0);
    char d[200];
    bus_describe(b, d, sizeof d);
    ck_assert_str_eq(d, "redis://127.0.0.1:1 (cluster)");
    ck_assert_int_eq(bus_ping(b, &E), -DS_UNAVAILABLE); /* no node answers CLUSTER SLOTS */
    ck_assert_msg(strstr(E.message, "127.0.0.1:2"), "%s", E.message);
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
    tcase_add_test(tc, lost_events_are_named);
    tcase_add_test(tc, replica_reads_and_seeks);
    tcase_add_test(tc, redis_down_then_back);
    tcase_add_test(tc, bad_urls);
    tcase_add_test(tc, url_forms);
    tcase_add_test(tc, url_errors);
    tcase_add_test(tc, tls_options);
    tcase_add_test(tc, access_check);
    tcase_add_test(tc, cluster_key_slots);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
