/* The engine and the persister against a real DuckDB file: after random
 * commands (leaf writes, batches, spreads of every method, holds, if_seq,
 * member operations, refusals) the persisted facts and catalog equal the
 * engine's (checksum), also after reopening the file; the ledger survives;
 * and the engine is deterministic: the same entries give the same outcomes,
 * seqs and values in a second engine, and in an engine loaded from the file
 * halfway through (what recovery does). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "engine_fixture.h"
#include "persist.h"

/* What a command did, to compare engines. */
typedef struct summary {
    engine_status status;
    int64_t seq;
    int code;
    char message[512];
    ds_i128 old_v, new_v;
    int64_t leaves;
    uint64_t checksum; /* every 25 commands, else 0 */
} summary;

/* One recorded entry of the stream. */
typedef struct input {
    char *cmd;
    size_t len;
    char rid[32], hash[65];
    int64_t ts;
} input;

static void summarize(const engine_result *r, summary *s)
{
    memset(s, 0, sizeof *s);
    s->status = r->status;
    s->seq = r->seq;
    s->code = r->code;
    snprintf(s->message, sizeof s->message, "%s", r->err.message);
    if (r->status == ENGINE_APPLIED && r->out.nsets) {
        s->old_v = r->out.sets[r->out.nsets - 1].target.old_value;
        s->new_v = r->out.sets[r->out.nsets - 1].target.new_value;
        for (size_t i = 0; i < r->out.nsets; i++)
            s->leaves += r->out.sets[i].leaves_changed;
    }
}

static void same_summary(const summary *a, const summary *b, int n)
{
    ck_assert_msg(a->status == b->status && a->seq == b->seq && a->code == b->code,
                  "command %d: status %d/%d seq %lld/%lld code %d/%d", n, a->status, b->status,
                  (long long)a->seq, (long long)b->seq, a->code, b->code);
    ck_assert_str_eq(a->message, b->message);
    ck_assert_msg(a->old_v == b->old_v && a->new_v == b->new_v && a->leaves == b->leaves,
                  "command %d: values differ", n);
    ck_assert_msg(a->checksum == b->checksum, "command %d: facts differ", n);
}

/* Makes n random inputs, resolving each against e's catalog as it goes
 * (applying them to e); fills sum for each. */
static input *make_inputs(ds_engine *e, int n, uint64_t seed, summary *sum, ds_persist *p,
                          int persist_upto)
{
    input *in = xcalloc((size_t)n, sizeof *in);
    fx_rng r = {seed};
    ds_buf body;
    ds_buf_init(&body, 1 << 20);
    for (int i = 0; i < n; i++) {
        const ds_model *m = engine_model_acquire(e);
        req_kind kind;
        const char *dim;
        ds_arena a = {0};
        req_decoded d;
        do
            fx_random_body(&body, m, &r, engine_seq(e), &kind, &dim);
        while (!fx_resolve(body.data, body.len, kind, m, dim, &a, &d));
        engine_model_release(e, m);
        in[i].cmd = xstrndup(d.canonical, d.canonical_len);
        in[i].len = d.canonical_len;
        /* now and then a retry of an earlier request, or a reuse */
        snprintf(in[i].rid, sizeof in[i].rid, "r%d", i % 37 == 36 ? i - 5 : i);
        snprintf(in[i].hash, sizeof in[i].hash, "%s", d.hash);
        in[i].ts = 1000 + i;
        ds_arena_free(&a);
        engine_input ei = {.cmd = in[i].cmd,
                           .cmd_len = in[i].len,
                           .user = "u",
                           .rid = in[i].rid,
                           .hash = in[i].hash,
                           .ts_ms = in[i].ts};
        engine_result res;
        ds_error err;
        ck_assert(engine_submit(e, &ei, &res, &err) == 0);
        summarize(&res, &sum[i]);
        if (i % 25 == 24)
            sum[i].checksum = engine_checksum(e);
        if (p && i < persist_upto && (res.status == ENGINE_APPLIED || res.status == ENGINE_REFUSED))
            persist_submit(p, persist_item_from(DEMO_MODEL, &ei, &res, "{}", 2));
        engine_result_clear(&res);
    }
    ds_buf_free(&body);
    return in;
}

static void replay(ds_engine *e, const input *in, int from, int n, const summary *want,
                   ds_persist *p)
{
    for (int i = from; i < n; i++) {
        engine_input ei = {.cmd = in[i].cmd,
                           .cmd_len = in[i].len,
                           .user = "u",
                           .rid = in[i].rid,
                           .hash = in[i].hash,
                           .ts_ms = in[i].ts};
        engine_result res;
        ds_error err;
        ck_assert(engine_submit(e, &ei, &res, &err) == 0);
        summary s;
        summarize(&res, &s);
        if (i % 25 == 24)
            s.checksum = engine_checksum(e);
        same_summary(&want[i], &s, i);
        if (p && (res.status == ENGINE_APPLIED || res.status == ENGINE_REFUSED))
            persist_submit(p, persist_item_from(DEMO_MODEL, &ei, &res, "{}", 2));
        engine_result_clear(&res);
    }
}

static void free_inputs(input *in, int n)
{
    for (int i = 0; i < n; i++)
        free(in[i].cmd);
    free(in);
}

static int sum_job(ds_store *s, void *arg, ds_error *err)
{
    (void)err;
    *(uint64_t *)arg = fx_store_sum(s);
    return 0;
}

static engine_opts opts(void)
{
    engine_opts o;
    engine_opts_default(&o);
    o.change_cap = 1 << 20;
    o.create_cap = 3000;
    return o;
}

START_TEST(persisted_equals_engine_and_replays_the_same)
{
    enum { N = 300, HALF = 150 };
    uint64_t seed = 77 + (uint64_t)_i;
    ds_store *s = fx_open_demo(3000, seed);
    engine_opts o = opts();
    ds_engine *e1 = fx_engine_from(s, &o), *e2 = fx_engine_from(s, &o);
    ds_persist *p;
    ds_error err;
    ck_assert(persist_start(s, NULL, NULL, NULL, &p, &err) == 0);
    summary *sum = xcalloc(N, sizeof *sum);
    input *in = make_inputs(e1, N, seed, sum, p, HALF);
    ck_assert(persist_wait_lag(p, 0, 0, 60000));
    persist_stop(p, 1000);
    persist_free(p);
    int applied = 0, refused = 0, dup = 0;
    for (int i = 0; i < N; i++) {
        applied += sum[i].status == ENGINE_APPLIED;
        refused += sum[i].status == ENGINE_REFUSED;
        dup += sum[i].status == ENGINE_DUPLICATE || sum[i].status == ENGINE_REUSED;
    }
    fprintf(stderr, "persist (seed %llu): %d applied, %d refused, %d retries or reuses\n",
            (unsigned long long)seed, applied, refused, dup);
    ck_assert_int_gt(applied, N / 2);
    ck_assert_int_gt(refused, 0);
    ck_assert_int_gt(dup, 0);
    /* determinism: a second engine from the same start */
    replay(e2, in, 0, N, sum, NULL);
    ck_assert_uint_eq(engine_checksum(e1), engine_checksum(e2));
    /* what was persisted (the first HALF) reopens as the engine was then */
    store_close(s);
    s = fx_reopen();
    ds_engine *e3 = fx_engine_from(s, &o);
    int64_t half_seq = 0;
    for (int i = 0; i < HALF; i++)
        half_seq = sum[i].seq > half_seq ? sum[i].seq : half_seq;
    ck_assert_int_eq(engine_seq(e3), half_seq);
    for (int i = 0; i < HALF; i++) { /* the ledger came back */
        engine_request got;
        ck_assert(engine_request_get(e3, "u", in[i].rid, &got));
    }
    /* recovery: the rest applied again to the reloaded engine, persisted */
    ck_assert(persist_start(s, NULL, NULL, NULL, &p, &err) == 0);
    replay(e3, in, HALF, N, sum, p);
    ck_assert_uint_eq(engine_checksum(e1), engine_checksum(e3));
    ck_assert(persist_wait_lag(p, 0, 0, 60000));
    uint64_t stored = 0;
    ck_assert(persist_run(p, sum_job, &stored, &err) == 0);
    ck_assert_msg(stored == engine_checksum(e1), "the file differs from the engine");
    persist_stop(p, 1000);
    persist_free(p);
    engine_free(e3);
    free_inputs(in, N);
    free(sum);
    engine_free(e1);
    engine_free(e2);
    store_close(s);
    fx_remove_dir();
}
END_TEST

/* Every command persisted: the file equals the engine, and an engine
 * reloaded from it too. */
START_TEST(everything_persisted_reloads_equal)
{
    enum { N = 250 };
    uint64_t seed = 500 + (uint64_t)_i;
    ds_store *s = fx_open_demo(3000, seed);
    engine_opts o = opts();
    ds_engine *e = fx_engine_from(s, &o);
    ds_persist *p;
    ds_error err;
    ck_assert(persist_start(s, NULL, NULL, NULL, &p, &err) == 0);
    summary *sum = xcalloc(N, sizeof *sum);
    input *in = make_inputs(e, N, seed, sum, p, N);
    ck_assert(persist_wait_lag(p, 0, 0, 60000));
    uint64_t stored = 0;
    ck_assert(persist_run(p, sum_job, &stored, &err) == 0);
    ck_assert_msg(stored == engine_checksum(e), "the file differs from the engine");
    persist_stop(p, 1000);
    persist_free(p);
    store_close(s);
    s = fx_reopen();
    ds_engine *e2 = fx_engine_from(s, &o);
    ck_assert_uint_eq(engine_checksum(e2), engine_checksum(e));
    ck_assert_int_eq(engine_seq(e2), engine_seq(e));
    ck_assert_int_eq(store_model_seq(s, DEMO_MODEL), engine_seq(e));
    free_inputs(in, N);
    free(sum);
    engine_free(e);
    engine_free(e2);
    store_close(s);
    fx_remove_dir();
}
END_TEST

/* One leaf write applied to e, queued for the persister. */
static void submit_one(ds_engine *e, ds_persist *p, int i)
{
    static const char body[] = "{\"column\":\"quantity\",\"cell\":{\"product\":\"P-0001\","
                               "\"customer\":\"C-0001\",\"time\":\"2025-01\"},\"delta\":1}";
    const ds_model *m = engine_model_acquire(e);
    ds_arena a = {0};
    req_decoded d;
    ck_assert(fx_resolve(body, strlen(body), REQ_CELL, m, NULL, &a, &d));
    engine_model_release(e, m);
    char rid[32];
    snprintf(rid, sizeof rid, "pace-%d", i);
    engine_input ei = {.cmd = d.canonical,
                       .cmd_len = d.canonical_len,
                       .user = "u",
                       .rid = rid,
                       .hash = d.hash,
                       .ts_ms = 1000 + i};
    engine_result res;
    ds_error err;
    ck_assert(engine_submit(e, &ei, &res, &err) == 0);
    ck_assert_int_eq(res.status, ENGINE_APPLIED);
    persist_submit(p, persist_item_from(DEMO_MODEL, &ei, &res, "{}", 2));
    engine_result_clear(&res);
    ds_arena_free(&a);
}

/* The persister's pace: the first group goes at once; the next waits its
 * interval (here ten minutes) unless someone hurries it, and a hurry asked
 * for before the command is queued still counts. */
START_TEST(a_group_waits_its_interval_unless_hurried)
{
    ds_store *s = fx_open_demo(3000, 5);
    engine_opts o = opts();
    ds_engine *e = fx_engine_from(s, &o);
    persist_opts po;
    persist_opts_default(&po);
    po.interval_ms = 600000;
    ds_persist *p;
    ds_error err;
    ck_assert(persist_start(s, &po, NULL, NULL, &p, &err) == 0);
    submit_one(e, p, 0);
    ck_assert(persist_wait_lag(p, 0, 0, 60000));
    submit_one(e, p, 1);
    /* not within 300 ms of a ten-minute interval */
    ck_assert(!persist_wait_lag(p, 0, 0, 300));
    persist_hurry(p);
    ck_assert(persist_wait_lag(p, 0, 0, 60000));
    persist_hurry(p); /* nothing queued yet */
    submit_one(e, p, 2);
    ck_assert(persist_wait_lag(p, 0, 0, 60000));
    persist_stats st;
    persist_get_stats(p, &st);
    ck_assert_int_eq(st.groups, 3);
    ck_assert_int_eq(st.commands, 3);
    persist_stop(p, 1000);
    persist_free(p);
    engine_free(e);
    store_close(s);
    fx_remove_dir();
}
END_TEST

Suite *persist_suite(void)
{
    Suite *s = suite_create("persist");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, everything_persisted_reloads_equal, 0, 3);
    tcase_add_loop_test(tc, persisted_equals_engine_and_replays_the_same, 0, 2);
    tcase_add_test(tc, a_group_waits_its_interval_unless_hurried);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(persist_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
