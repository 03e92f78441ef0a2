/* The engine against the DuckDB store's SQL path: the same random commands
 * (leaf writes, batches, spreads of every method and form, holds, if_seq,
 * member operations) go to a store with the demo (one transaction each) and
 * to an engine loaded from the same facts; every status, whole error, seq,
 * target, method, count of changed leaves and change list must agree, and
 * after every few commands the facts (checksum of catalog and values).
 * Also: determinism (two engines, one sequence), undo of a batch refused
 * halfway, the ledger (duplicates, reuse, retention), reads and grids with
 * and without the cube. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decimal.h"
#include "demo.h"
#include "engine.h"
#include "json.h"
#include "request.h"
#include "store.h"
#include "engine_fixture.h"

/* ---- comparing ------------------------------------------------------------- */

static int cmp_change(const void *a, const void *b)
{
    const ds_change *x = a, *y = b;
    int c = memcmp(&x->cell, &y->cell, sizeof x->cell);
    return c ? c : x->measure - y->measure;
}

static bool same_change(const ds_change *a, const ds_change *b)
{
    return memcmp(&a->cell, &b->cell, sizeof a->cell) == 0 && a->measure == b->measure &&
           a->old_value == b->old_value && a->new_value == b->new_value;
}

/* The store lists totals then leaves in one list; the engine in two. */
static void same_set(const ds_changeset *s, const ds_changeset *e, size_t i)
{
    ck_assert_msg(same_change(&s->target, &e->target), "write %zu: targets differ", i);
    ck_assert_int_eq(s->method, e->method);
    ck_assert_int_eq(s->leaves_changed, e->leaves_changed);
    ck_assert(!s->truncated && !e->truncated && !e->leaves_truncated);
    size_t nt = e->nchanges, nl = 0;
    ck_assert_uint_ge(s->nchanges, nt);
    for (size_t j = 0; j < nt; j++)
        ck_assert_msg(same_change(&s->changes[j], &e->changes[j]), "write %zu: total %zu differs",
                      i, j);
    ds_change *rest = xmalloc_array(e->nleaves + 1, sizeof *rest);
    for (size_t j = 0; j < e->nleaves; j++)
        if (!e->in_totals[j])
            rest[nl++] = e->leaves[j];
    ck_assert_uint_eq(s->nchanges - nt, nl);
    ds_change *theirs = xmalloc_array(nl + 1, sizeof *theirs);
    memcpy(theirs, s->changes + nt, nl * sizeof *theirs);
    qsort(rest, nl, sizeof *rest, cmp_change);
    qsort(theirs, nl, sizeof *theirs, cmp_change);
    for (size_t j = 0; j < nl; j++)
        ck_assert_msg(same_change(&rest[j], &theirs[j]), "write %zu: leaf %zu differs", i, j);
    free(rest);
    free(theirs);
}

static void same_error(const ds_error *a, const ds_error *b)
{
    ck_assert_msg(a->code == b->code, "codes differ: store %s (%s), engine %s (%s)",
                  ds_code_name(a->code), a->message, ds_code_name(b->code), b->message);
    ck_assert_str_eq(a->message, b->message);
    ck_assert_str_eq(a->target, b->target);
    ck_assert(a->has_seq == b->has_seq && (!a->has_seq || a->seq == b->seq));
    ck_assert(a->has_count == b->has_count &&
              (!a->has_count || (a->count == b->count && a->limit == b->limit)));
}

typedef struct stats {
    int applied, refused, skipped, spreads, members;
    int codes[DS_CODE_COUNT];
} stats;

/* One random request to both; false when it does not resolve. */
/* One request body to both; false when it does not resolve. */
static bool both(ds_store *s, ds_engine *e, const ds_buf *body, req_kind kind, const char *dim,
                 int n, stats *st)
{
    const ds_model *m = store_model_current(s, DEMO_MODEL);
    json_val *root = NULL;
    ds_error err;
    ck_assert_msg(json_parse(body->data, body->len, NULL, &root, &err) == 0, "%s: %s", body->data,
                  err.message);
    ds_arena arena = {0};
    req_decoded d;
    int rc = request_check(root, kind, &err);
    if (rc == 0)
        rc = request_resolve(root, kind, m, dim, &arena, &d, &err);
    if (rc) {
        st->skipped++;
        json_free(root);
        ds_arena_free(&arena);
        return false;
    }
    char rid[32];
    snprintf(rid, sizeof rid, "r%d", n);
    d.cmd.user = "u";
    d.cmd.request_id = rid;
    ds_outcome so;
    ds_error serr;
    int src = store_apply(s, DEMO_MODEL, &d.cmd, &so, &serr);
    engine_input in = {.cmd = d.canonical,
                       .cmd_len = d.canonical_len,
                       .user = "u",
                       .rid = rid,
                       .hash = d.hash,
                       .ts_ms = 1000 + n};
    engine_result res;
    ck_assert(engine_submit(e, &in, &res, &err) == 0);
    if (src) {
        ck_assert_msg(res.status == ENGINE_REFUSED,
                      "%s: the store refused (%s), the engine did not", body->data, serr.message);
        same_error(&serr, &res.err);
        st->refused++;
        st->codes[serr.code]++;
    } else {
        ck_assert_msg(res.status == ENGINE_APPLIED, "%s: the engine refused: %s", body->data,
                      res.err.message);
        ck_assert_int_eq(so.seq, res.seq);
        ck_assert_uint_eq(so.nsets, res.out.nsets);
        for (size_t i = 0; i < so.nsets; i++) {
            same_set(&so.sets[i], &res.out.sets[i], i);
            st->spreads += !so.sets[i].leaf;
        }
        st->members += d.cmd.kind == COMMAND_MEMBER;
        st->applied++;
        outcome_clear(&so);
    }
    engine_result_clear(&res);
    json_free(root);
    ds_arena_free(&arena);
    return true;
}

/* One random request to both. */
static bool one(ds_store *s, ds_engine *e, fx_rng *r, int n, stats *st, ds_buf *body)
{
    const ds_model *m = store_model_current(s, DEMO_MODEL);
    req_kind kind;
    const char *dim;
    fx_random_body(body, m, r, store_model_seq(s, DEMO_MODEL), &kind, &dim);
    return both(s, e, body, kind, dim, n, st);
}

static engine_opts big_opts(void)
{
    engine_opts o;
    engine_opts_default(&o);
    o.change_cap = 1 << 20;
    o.create_cap = 3000;
    return o;
}

/* Runs body (printf-style) on both; asserts it resolved. */
static void run(ds_store *s, ds_engine *e, int *n, stats *st, req_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void run(ds_store *s, ds_engine *e, int *n, stats *st, req_kind kind, const char *fmt, ...)
{
    ds_buf b;
    ds_buf_init(&b, 1 << 20);
    va_list ap;
    va_start(ap, fmt);
    ds_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    ck_assert_msg(both(s, e, &b, kind, NULL, (*n)++, st), "%s does not resolve", b.data);
    ds_buf_free(&b);
}

/* Totals beyond int64 (the cube gives up, sums come from the facts in 128
 * bits), signs that cancel, and an equal spread over too many cells: each
 * exactly as the store decides, and reads equal. */
START_TEST(edges_match_the_store)
{
    ds_store *s = fx_open_demo(3000, 41);
    engine_opts o = big_opts();
    ds_engine *e = fx_engine_from(s, &o);
    const ds_model *m = store_model_current(s, DEMO_MODEL);
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
    ck_assert_uint_eq(fx_store_sum(s), engine_checksum(e));
    /* reads: every family x every year, without a cube past 2^63 */
    ds_reader *r = store_reader_new(s);
    for (int32_t f = 0; f < p->nmembers; f++)
        for (int32_t y = 0; y < t->nmembers; y++) {
            if (p->members[f].depth != 3 || t->members[y].depth != 1)
                continue;
            ds_cell cell = {{0}};
            for (int k = 0; k < m->ndims; k++)
                cell.m[k] = m->dims[k].root;
            cell.m[0] = f;
            cell.m[2] = y;
            ds_i128 a, b;
            int64_t sa, sb;
            ds_error err;
            ck_assert(store_read_cell(r, m, &cell, 0, &a, &sa, &err) == 0);
            ck_assert(engine_read_cell(e, &cell, 0, &b, &sb, &err) == 0);
            ck_assert(a == b && sa == sb);
        }
    store_reader_free(r);
    free(pl);
    free(cl);
    free(tl);
    engine_free(e);
    store_close(s);
    fx_remove_dir();
}
END_TEST

/* Random cells (leaves and totals of every level) read from the engine
 * (its cube) and from the store (SQL sums) must agree. */
static void same_reads(ds_store *s, ds_engine *e, fx_rng *r, int n)
{
    const ds_model *m = engine_model_acquire(e);
    const ds_model *sm = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    ds_reader *rd = store_reader_new(s);
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
        int q = (int)(fx_next(r) % (uint64_t)m->nmeasures);
        ds_i128 a, b;
        int64_t sa, sb;
        ds_error err;
        ck_assert_msg(engine_read_cell(e, &c, q, &a, &sa, &err) == 0, "%s", err.message);
        ck_assert_msg(store_read_cell(rd, sm, &c, q, &b, &sb, &err) == 0, "%s", err.message);
        ck_assert_msg(a == b, "cell %d (%d,%d,%d) measure %d: engine %lld, store %lld", i, c.m[0],
                      c.m[1], c.m[2], q, (long long)a, (long long)b);
    }
    store_reader_free(rd);
    store_model_release(s, sm);
    engine_model_release(e, m);
}

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
        one(s, e, &r, n, &st, &body);
        if (n % 25 == 24) {
            ck_assert_msg(fx_store_sum(s) == engine_checksum(e), "facts differ after command %d",
                          n);
            same_reads(s, e, &r, 200);
        }
    }
    ck_assert_uint_eq(fx_store_sum(s), engine_checksum(e));
    ck_assert_int_eq(engine_seq(e), store_model_seq(s, DEMO_MODEL));
    fprintf(stderr,
            "engine vs store (seed %llu): %d applied (%d spreads, %d member ops), %d refused, "
            "%d did not resolve\n",
            (unsigned long long)seed, st.applied, st.spreads, st.members, st.refused, st.skipped);
    for (int c = 0; c < DS_CODE_COUNT; c++)
        if (st.codes[c])
            fprintf(stderr, "  %s: %d\n", ds_code_name((ds_code)c), st.codes[c]);
    ck_assert_int_gt(st.applied, commands / 3);
    ck_assert_int_gt(st.refused, 0);
    ck_assert_int_gt(st.spreads, 0);
    ds_buf_free(&body);
    engine_free(e);
    store_close(s);
    fx_remove_dir();
}

START_TEST(engine_matches_the_store)
{
    compare_run(1 + (uint64_t)_i, 400);
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

Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, engine_matches_the_store, 0, 4);
    tcase_add_test(tc, edges_match_the_store);
    tcase_add_test(tc, an_empty_row_is_reused);
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
