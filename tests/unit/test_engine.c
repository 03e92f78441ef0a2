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
static bool one(ds_store *s, ds_engine *e, fx_rng *r, int n, stats *st, ds_buf *body)
{
    const ds_model *m = store_model_current(s, DEMO_MODEL);
    int64_t seq = store_model_seq(s, DEMO_MODEL);
    req_kind kind;
    const char *dim;
    fx_random_body(body, m, r, seq, &kind, &dim);
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

static void compare_run(uint64_t seed, int commands)
{
    ds_store *s = fx_open_demo(3000, seed);
    engine_opts o;
    engine_opts_default(&o);
    o.change_cap = 1 << 20;
    o.create_cap = 3000;
    ds_engine *e = fx_engine_from(s, &o);
    ck_assert_uint_eq(fx_store_sum(s), engine_checksum(e));
    fx_rng r = {seed};
    stats st = {0};
    ds_buf body;
    ds_buf_init(&body, 1 << 20);
    for (int n = 0; n < commands; n++) {
        one(s, e, &r, n, &st, &body);
        if (n % 25 == 24)
            ck_assert_msg(fx_store_sum(s) == engine_checksum(e), "facts differ after command %d",
                          n);
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

Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, engine_matches_the_store, 0, 4);
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
