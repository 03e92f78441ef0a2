/* The engine against what it persists: random commands (leaf writes,
 * batches, spreads of every method and form, holds, if_seq, member
 * operations, refusals) are applied by an engine loaded from a DuckDB file
 * with the demo, and each delta is persisted into that file with
 * store_persist, as the writer and the persister do. Then the file must
 * hold what the engine holds: the checksum of catalog and facts
 * (engine_checksum against the file's rows), and random cells, leaves and
 * totals of every level, read from the engine (its cube) and summed by SQL
 * from the file (store_read_cell), also past 2^63 where the cube gives up;
 * an engine loaded again from the file agrees with the first. (The write
 * rules themselves are checked against an independent reference in
 * test_engine_ref.c.) */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decimal.h"
#include "demo.h"
#include "engine.h"
#include "engine_fixture.h"
#include "json.h"
#include "request.h"
#include "store.h"

typedef struct stats {
    int applied, refused, skipped, spreads, members;
    int codes[DS_CODE_COUNT];
} stats;

/* One request body through the engine into the file; false when it does
 * not resolve against the engine's catalog. */
static bool step(ds_store *s, ds_engine *e, const ds_buf *body, req_kind kind, const char *dim,
                 int n, stats *st)
{
    const ds_model *m = engine_model_acquire(e);
    ds_arena arena = {0};
    req_decoded d;
    bool ok = fx_resolve(body->data, body->len, kind, m, dim, &arena, &d);
    engine_model_release(e, m);
    if (!ok) {
        st->skipped++;
        ds_arena_free(&arena);
        return false;
    }
    char rid[32];
    snprintf(rid, sizeof rid, "r%d", n);
    engine_result res;
    ds_error err;
    int rc = fx_submit(s, e, &d, rid, 1000 + n, &res, &err);
    if (rc) {
        ck_assert_int_eq(res.status, ENGINE_REFUSED);
        st->refused++;
        st->codes[err.code]++;
    } else {
        ck_assert_int_eq(res.status, ENGINE_APPLIED);
        ck_assert_int_eq(res.seq, store_model_seq(s, DEMO_MODEL));
        for (size_t i = 0; i < res.out.nsets; i++)
            st->spreads += !res.out.sets[i].leaf;
        st->members += res.cmd.kind == COMMAND_MEMBER;
        st->applied++;
    }
    engine_result_clear(&res);
    ds_arena_free(&arena);
    return true;
}

static engine_opts big_opts(void)
{
    engine_opts o;
    engine_opts_default(&o);
    o.change_cap = 1 << 20;
    o.create_cap = 3000;
    return o;
}

/* Runs body (printf-style) through the engine into the file; asserts it
 * resolved. */
static void run(ds_store *s, ds_engine *e, int *n, stats *st, req_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void run(ds_store *s, ds_engine *e, int *n, stats *st, req_kind kind, const char *fmt, ...)
{
    ds_buf b;
    va_list ap;
    va_start(ap, fmt);
    fx_vformat(&b, fmt, ap);
    va_end(ap);
    ck_assert_msg(step(s, e, &b, kind, NULL, (*n)++, st), "%s does not resolve", b.data);
    ds_buf_free(&b);
}

/* Reads cell c of measure q from the engine (its cube, or its facts) and
 * from the file (SQL sums): the two must agree, at the same seq. */
static void same_cell(ds_engine *e, ds_reader *rd, const ds_model *sm, const ds_cell *c, int q)
{
    ds_i128 a, b;
    int64_t sa, sb;
    ds_error err;
    ck_assert_msg(engine_read_cell(e, c, q, &a, &sa, &err) == 0, "%s", err.message);
    ck_assert_msg(store_read_cell(rd, sm, c, q, &b, &sb, &err) == 0, "%s", err.message);
    ck_assert_msg(a == b, "cell (%d,%d,%d) measure %d: engine %lld, file %lld", c->m[0], c->m[1],
                  c->m[2], q, (long long)a, (long long)b);
    ck_assert_int_eq(sa, sb);
}

/* Random cells (leaves and totals of every level) read from the engine
 * and from the file must agree (a fifth of n under valgrind). */
static void same_reads(ds_store *s, ds_engine *e, fx_rng *r, int n)
{
    if (fx_on_valgrind())
        n /= 5;
    const ds_model *m = engine_model_acquire(e);
    const ds_model *sm = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    ds_reader *rd = store_reader_new(s);
    ck_assert_ptr_nonnull(rd);
    for (int i = 0; i < n; i++) {
        ds_cell c;
        for (int k = 0; k < m->ndims; k++) {
            const ds_dim *d = &m->dims[k];
            int32_t x;
            do
                x = (int32_t)(fx_next(r) % (uint64_t)d->nmembers);
            while (!d->members[x].alive);
            c.m[k] = fx_next(r) % 4 == 0 ? d->root : x;
        }
        same_cell(e, rd, sm, &c, (int)(fx_next(r) % (uint64_t)m->nmeasures));
    }
    store_reader_free(rd);
    store_model_release(s, sm);
    engine_model_release(e, m);
}

/* Every family x every year of quantity read from the engine and from
 * the file; returns how many are past 2^63. */
static int families_by_year(ds_store *s, ds_engine *e)
{
    const ds_model *m = engine_model_acquire(e);
    const ds_model *sm = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    ds_reader *r = store_reader_new(s);
    ck_assert_ptr_nonnull(r);
    const ds_dim *p = &m->dims[0], *t = &m->dims[2];
    int big = 0;
    for (int32_t f = 0; f < p->nmembers; f++)
        for (int32_t y = 0; y < t->nmembers; y++) {
            if (p->members[f].depth != 3 || t->members[y].depth != 1)
                continue;
            ds_cell cell;
            for (int k = 0; k < m->ndims; k++)
                cell.m[k] = m->dims[k].root;
            cell.m[0] = f;
            cell.m[2] = y;
            same_cell(e, r, sm, &cell, 0);
            ds_i128 v;
            int64_t seq;
            ds_error err;
            ck_assert(engine_read_cell(e, &cell, 0, &v, &seq, &err) == 0);
            big += v > (ds_i128)INT64_MAX;
        }
    store_reader_free(r);
    store_model_release(s, sm);
    engine_model_release(e, m);
    return big;
}

/* Totals beyond int64 (the cube gives up, sums come from the facts in 128
 * bits), signs that cancel, and an equal spread over too many cells: the
 * file holds what the engine holds, and reads agree. */
START_TEST(edges_match_the_file)
{
    ds_store *s = fx_open_demo(3000, 41);
    engine_opts o = big_opts();
    ds_engine *e = fx_engine_from(s, &o);
    const ds_model *m = engine_model_acquire(e);
    const ds_dim *p = &m->dims[0], *c = &m->dims[1], *t = &m->dims[2];
    int32_t *pl, *cl, *tl;
    size_t np = model_leaves(p, p->root, &pl), nc = model_leaves(c, c->root, &cl);
    model_leaves(t, t->root, &tl);
    stats st = {0};
    int n = 0;
    for (size_t i = 0; i < 12; i++) /* 12 x 9e17 > 2^63 beneath one family */
        run(s, e, &n, &st, REQ_CELL,
            "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\",\"customer\":\"%s\","
            "\"time\":\"%s\"},\"value\":900000000000000000}",
            p->members[pl[0]].key, c->members[cl[i % nc]].key, t->members[tl[i / nc]].key);
    /* reads of every family x every year, past 2^63 beneath the first, and
     * of random cells (the grand total too is past 2^63) */
    ck_assert_int_gt(families_by_year(s, e), 0);
    fx_rng rng = {41};
    same_reads(s, e, &rng, 300);
    const char *fam = p->members[p->members[pl[0]].parent].key;
    run(s, e, &n, &st, REQ_CELL,
        "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},\"percent\":-50}", fam);
    run(s, e, &n, &st, REQ_CELL, "{\"column\":\"quantity\",\"cell\":{},\"delta\":7}");
    ck_assert_uint_eq(fx_store_sum(s), engine_checksum(e));
    /* signs that cancel: two leaves of one brand made +x and -x, the rest 0 */
    const char *brand = p->members[p->members[p->members[pl[np - 1]].parent].parent].key;
    run(s, e, &n, &st, REQ_CELL,
        "{\"column\":\"net_amount\",\"cell\":{\"product\":\"%s\"},\"method\":\"repeat\","
        "\"value\":0}",
        brand);
    run(s, e, &n, &st, REQ_BATCH,
        "{\"writes\":[{\"column\":\"net_amount\",\"cell\":{\"product\":\"%s\","
        "\"customer\":\"%s\",\"time\":\"%s\"},\"value\":5},{\"column\":\"net_amount\","
        "\"cell\":{\"product\":\"%s\",\"customer\":\"%s\",\"time\":\"%s\"},\"value\":-5}]}",
        p->members[pl[np - 1]].key, c->members[cl[0]].key, t->members[tl[0]].key,
        p->members[pl[np - 1]].key, c->members[cl[1]].key, t->members[tl[0]].key);
    run(s, e, &n, &st, REQ_CELL,
        "{\"column\":\"net_amount\",\"cell\":{\"product\":\"%s\"},\"value\":100}", brand);
    /* an equal spread of the grand total fills more than create_cap cells */
    run(s, e, &n, &st, REQ_CELL,
        "{\"column\":\"quantity\",\"cell\":{},\"method\":\"equal\",\"value\":1}");
    ck_assert_int_eq(st.codes[DS_SIGNS_CANCEL], 1);
    ck_assert_int_eq(st.codes[DS_TOO_MANY_CELLS], 1);
    ck_assert_int_eq(st.refused, 2);
    ck_assert_uint_eq(fx_store_sum(s), engine_checksum(e));
    ck_assert_int_eq(families_by_year(s, e), 0);
    same_reads(s, e, &rng, 300);
    free(pl);
    free(cl);
    free(tl);
    engine_model_release(e, m);
    engine_free(e);
    store_close(s);
    fx_remove_dir();
}
END_TEST

static void compare_run(uint64_t seed, int commands)
{
    ds_store *s = fx_open_demo(3000, seed);
    engine_opts o = big_opts();
    ds_engine *e = fx_engine_from(s, &o);
    ck_assert_uint_eq(fx_store_sum(s), engine_checksum(e));
    fx_rng r = {seed};
    stats st = {0};
    ds_buf body;
    ds_buf_init(&body, 1 << 20);
    for (int n = 0; n < commands; n++) {
        const ds_model *m = engine_model_acquire(e);
        req_kind kind;
        const char *dim;
        fx_random_body(&body, m, &r, engine_seq(e), &kind, &dim);
        engine_model_release(e, m);
        step(s, e, &body, kind, dim, n, &st);
        if (n % 25 == 24) {
            ck_assert_msg(fx_store_sum(s) == engine_checksum(e), "facts differ after command %d",
                          n);
            same_reads(s, e, &r, 200);
        }
    }
    ck_assert_uint_eq(fx_store_sum(s), engine_checksum(e));
    ck_assert_int_eq(engine_seq(e), store_model_seq(s, DEMO_MODEL));
    fprintf(stderr,
            "engine into the file (seed %llu): %d applied (%d spreads, %d member ops), %d "
            "refused, %d did not resolve\n",
            (unsigned long long)seed, st.applied, st.spreads, st.members, st.refused, st.skipped);
    for (int c = 0; c < DS_CODE_COUNT; c++)
        if (st.codes[c])
            fprintf(stderr, "  %s: %d\n", ds_code_name((ds_code)c), st.codes[c]);
    ck_assert_int_gt(st.applied, commands / 3);
    ck_assert_int_gt(st.refused, 0);
    ck_assert_int_gt(st.spreads, 0);
    ck_assert_int_gt(st.members, 0);
    /* the file reopened: an engine loaded from it is the same engine */
    uint64_t sum = engine_checksum(e);
    int64_t seq = engine_seq(e);
    engine_free(e);
    store_close(s);
    s = fx_reopen();
    e = fx_engine_from(s, &o);
    ck_assert_uint_eq(engine_checksum(e), sum);
    ck_assert_int_eq(engine_seq(e), seq);
    same_reads(s, e, &r, 200);
    ds_buf_free(&body);
    engine_free(e);
    store_close(s);
    fx_remove_dir();
}

START_TEST(engine_matches_the_file)
{
    compare_run(1 + (uint64_t)_i, fx_on_valgrind() ? 50 : 400);
}
END_TEST

/* A row with every measure missing at a live leaf (a row the database
 * keeps) takes the value of an equal spread: no second fact for its cell. */
START_TEST(an_empty_row_is_reused)
{
    ds_model *m = model_new(0, "t");
    ds_error err;
    ck_assert(model_add_dim(m, 0, "d", "All", "All", &err) == 0);
    model_add_member(&m->dims[0], 0, "a", "a", 0, &err);
    model_add_member(&m->dims[0], 0, "b", "b", 1, &err);
    model_dim_index(&m->dims[0]);
    ck_assert(model_add_measure(m, 0, "q", 0, &err) == 0);
    ds_engine *e = engine_new(m, 0, NULL);
    int32_t a = 1, b = 2;
    int64_t v0 = 0, v5 = 5, st = 0;
    ck_assert(engine_load_fact(e, &a, &v0, &st, 0, &err) == 0);
    ck_assert(engine_load_fact(e, &b, &v5, &st, 1, &err) == 0);
    ck_assert(engine_load_done(e, &err) == 0);
    const char *body = "{\"column\":\"q\",\"cell\":{},\"value\":10,\"method\":\"equal\"}";
    ds_arena ar = {0};
    req_decoded d;
    ck_assert(fx_resolve(body, strlen(body), REQ_CELL, m, NULL, &ar, &d));
    engine_input in = {.cmd = d.canonical,
                       .cmd_len = d.canonical_len,
                       .user = "u",
                       .rid = "r1",
                       .hash = d.hash,
                       .ts_ms = 1};
    engine_result res;
    ck_assert(engine_submit(e, &in, &res, &err) == 0);
    ck_assert_int_eq(res.status, ENGINE_APPLIED);
    ck_assert_uint_eq(res.delta.nfacts, 2);
    for (size_t i = 0; i < res.delta.nrows; i++)
        ck_assert_uint_lt(res.delta.rows[i].fact, 2);
    ds_cell c = {{1}};
    ds_i128 v;
    int64_t seq;
    ck_assert(engine_read_cell(e, &c, 0, &v, &seq, &err) == 0);
    ck_assert(v == 5);
    engine_result_clear(&res);
    ds_arena_free(&ar);
    engine_free(e);
    model_free(m);
}
END_TEST

/* A request_id is remembered for the retention window and, at most, for
 * the newest ledger_max of them: an older retry is applied again, a newer
 * one gets its first answer; loading keeps the newest too. */
START_TEST(request_ids_are_remembered_within_their_limits)
{
    ds_model *m = model_new(0, "t");
    ds_error err;
    ck_assert(model_add_dim(m, 0, "d", "All", "All", &err) == 0);
    model_add_member(&m->dims[0], 0, "a", "a", 0, &err);
    model_dim_index(&m->dims[0]);
    ck_assert(model_add_measure(m, 0, "q", 0, &err) == 0);
    engine_opts o;
    engine_opts_default(&o);
    o.ledger_max = 3;
    o.retention_ms = 1000;
    ds_engine *e = engine_new(m, 0, &o);
    /* loading five keeps the newest three */
    char hash[65];
    memset(hash, 'a', 64);
    hash[64] = 0;
    for (int i = 0; i < 5; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "old%d", i);
        engine_load_request(e, "u", rid, hash, -1, DS_HELD, i);
    }
    ck_assert(engine_load_done(e, &err) == 0);
    engine_stats st;
    engine_get_stats(e, &st);
    ck_assert_uint_eq(st.ledger_entries, 3);
    ck_assert_uint_eq(st.ledger_evicted, 2);
    const char *body = "{\"column\":\"q\",\"cell\":{\"d\":\"a\"},\"delta\":1}";
    ds_arena ar = {0};
    req_decoded d;
    ck_assert(fx_resolve(body, strlen(body), REQ_CELL, m, NULL, &ar, &d));
    engine_input in = {
        .cmd = d.canonical, .cmd_len = d.canonical_len, .user = "u", .hash = d.hash, .ts_ms = 10};
    engine_result res;
    /* r0..r4: the first two are forgotten for the count, r4 is known */
    for (int i = 0; i < 5; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "r%d", i);
        in.rid = rid;
        ck_assert(engine_submit(e, &in, &res, &err) == 0);
        ck_assert_int_eq(res.status, ENGINE_APPLIED);
        engine_result_clear(&res);
    }
    in.rid = "r4";
    ck_assert(engine_submit(e, &in, &res, &err) == 0);
    ck_assert_int_eq(res.status, ENGINE_DUPLICATE);
    ck_assert_int_eq(res.seq, 5);
    engine_result_clear(&res);
    in.rid = "r0";
    ck_assert(engine_submit(e, &in, &res, &err) == 0);
    ck_assert_int_eq(res.status, ENGINE_APPLIED); /* forgotten: applied again */
    ck_assert_int_eq(res.seq, 6);
    engine_result_clear(&res);
    /* past the retention window (stream time), r4 is forgotten too */
    in.rid = "r4";
    in.ts_ms = 10 + 1001;
    ck_assert(engine_submit(e, &in, &res, &err) == 0);
    ck_assert_int_eq(res.status, ENGINE_APPLIED);
    engine_result_clear(&res);
    engine_get_stats(e, &st);
    ck_assert_uint_le(st.ledger_entries, 3);
    ds_arena_free(&ar);
    engine_free(e);
    model_free(m);
}
END_TEST

/* The seeds of engine_matches_the_file: four, but two in the ASan build,
 * where each takes about 40 s and the whole sanitizer run has 10 minutes
 * (the plain and valgrind runs keep all four). */
#if defined(__SANITIZE_ADDRESS__)
enum { FILE_SEEDS = 2 };
#else
enum { FILE_SEEDS = 4 };
#endif

Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, engine_matches_the_file, 0, FILE_SEEDS);
    tcase_add_test(tc, edges_match_the_file);
    tcase_add_test(tc, an_empty_row_is_reused);
    tcase_add_test(tc, request_ids_are_remembered_within_their_limits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(engine_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
