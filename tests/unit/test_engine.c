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

static char dir[256];

static ds_store *open_demo(int64_t facts, uint64_t seed)
{
    snprintf(dir, sizeof dir, "%s/ds-engine-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[300];
    snprintf(path, sizeof path, "%s/t.db", dir);
    ds_store_opts o;
    store_opts_default(&o);
    o.change_cap = 1 << 20; /* nothing truncated: lists compare whole */
    o.no_fast_path = true;
    o.create_cap = 3000; /* some equal spreads are too_many_cells */
    ds_store *s;
    ds_error e;
    ck_assert(store_open(path, &o, &s, &e) == 0);
    demo_opts d = {.seed = seed, .facts = facts};
    bool loaded;
    int64_t n;
    ck_assert_msg(demo_load(s, &d, &loaded, &n, &e) == 0, "%s", e.message);
    return s;
}

static void remove_dir(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static int load_fact(void *ctx, int64_t rowid, const int32_t *members, const int64_t *values,
                     const int64_t *stamps, uint64_t has, ds_error *err)
{
    (void)rowid;
    return engine_load_fact(ctx, members, values, stamps, has, err);
}

static ds_engine *engine_from(ds_store *s, const engine_opts *o)
{
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    ds_engine *e = engine_new(m, store_model_seq(s, DEMO_MODEL), o);
    store_model_release(s, m);
    ds_error err;
    ck_assert_msg(store_facts_each(s, DEMO_MODEL, load_fact, e, &err) == 0, "%s", err.message);
    ck_assert_msg(engine_load_done(e, &err) == 0, "%s", err.message);
    return e;
}

static int store_hash_fact(void *ctx, int64_t rowid, const int32_t *members, const int64_t *values,
                           const int64_t *stamps, uint64_t has, ds_error *err)
{
    (void)rowid;
    (void)stamps;
    (void)err;
    void **c = ctx;
    const ds_model *m = c[0];
    uint64_t *h = c[1];
    for (int q = 0; q < m->nmeasures; q++)
        if (has >> q & 1)
            *h += model_fact_hash(m, q, members, values[q]);
    return 0;
}

static uint64_t store_sum(ds_store *s)
{
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    uint64_t h = model_checksum(m);
    void *ctx[2] = {(void *)m, &h};
    ds_error e;
    ck_assert(store_facts_each(s, DEMO_MODEL, store_hash_fact, ctx, &e) == 0);
    store_model_release(s, m);
    return h;
}

/* ---- random requests ------------------------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t next(rng *r)
{
    return r->s = ds_mix64(r->s + 0x9e3779b97f4a7c15u);
}

static int32_t pick(const ds_dim *d, int want, rng *r) /* want: 1 leaf, 0 any, -1 inner */
{
    for (;;) {
        int32_t x = (int32_t)(next(r) % (uint64_t)d->nmembers);
        if (!d->members[x].alive)
            continue;
        bool leaf = model_is_leaf(d, x);
        if (want == 0 || (want == 1) == leaf)
            return x;
    }
}

static void put_cell(ds_buf *b, const ds_model *m, rng *r, bool spread)
{
    ds_buf_puts(b, "\"cell\":{");
    bool first = true;
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        int want = spread ? (next(r) % 3 == 0 ? 0 : (next(r) % 2 ? -1 : 1)) : 1;
        int32_t x = pick(d, want, r);
        if (spread && x == d->root)
            continue;
        ds_buf_printf(b, "%s\"%s\":\"%s\"", first ? "" : ",", d->name, d->members[x].key);
        first = false;
    }
    ds_buf_puts(b, "}");
}

static void put_write(ds_buf *b, const ds_model *m, rng *r, int64_t seq)
{
    bool spread = next(r) % 3 == 0;
    ds_buf_printf(b, "{\"column\":\"%s\",", next(r) % 2 ? "quantity" : "net_amount");
    put_cell(b, m, r, spread);
    uint64_t f = next(r) % 10;
    int64_t amount = (int64_t)(next(r) % 5000) - 1000;
    if (f < 5)
        ds_buf_printf(b, ",\"value\":%lld", (long long)amount);
    else if (f < 8)
        ds_buf_printf(b, ",\"delta\":%lld", (long long)(amount / 10));
    else
        ds_buf_printf(b, ",\"percent\":%lld", (long long)(amount % 60));
    if (next(r) % 50 == 0)
        ds_buf_puts(b, ",\"value\":\"999999999999999999999\"");
    if (spread) {
        static const char *const methods[] = {"proportional", "equal", "repeat"};
        uint64_t mm = next(r) % 10;
        ds_buf_printf(b, ",\"method\":\"%s\"", methods[mm < 6 ? 0 : mm < 9 ? 1 : 2]);
        if (next(r) % 2 == 0) {
            const ds_dim *d = &m->dims[next(r) % (uint64_t)m->ndims];
            ds_buf_printf(b, ",\"holds\":[{\"%s\":\"%s\"}]", d->name,
                          d->members[pick(d, 0, r)].key);
        }
    }
    (void)seq;
    ds_buf_puts(b, "}");
}

/* A request body of kind *kind for the model at seq. */
static void random_body(ds_buf *b, const ds_model *m, rng *r, int64_t seq, req_kind *kind,
                        const char **dim)
{
    ds_buf_reset(b);
    uint64_t k = next(r) % 20;
    if (k >= 18) { /* a member operation on product */
        const ds_dim *d = &m->dims[0];
        *kind = REQ_MEMBER;
        *dim = d->name;
        uint64_t op = next(r) % 4;
        if (op == 0) {
            int32_t parent = pick(d, next(r) % 2 ? -1 : 1, r);
            ds_buf_printf(b, "{\"op\":\"add\",\"parent\":\"%s\",\"key\":\"N%llu\"",
                          d->members[parent].key, (unsigned long long)(next(r) % 100000));
            if (model_is_leaf(d, parent) && next(r) % 2)
                ds_buf_puts(b, ",\"facts_to\":\"new\"");
            ds_buf_puts(b, "}");
        } else if (op == 1) {
            ds_buf_printf(b, "{\"op\":\"rename\",\"member\":\"%s\",\"name\":\"R%llu\"}",
                          d->members[pick(d, 0, r)].key, (unsigned long long)(next(r) % 1000));
        } else if (op == 2) {
            int32_t x = pick(d, 0, r), p = pick(d, -1, r);
            ds_buf_printf(b, "{\"op\":\"move\",\"member\":\"%s\",\"parent\":\"%s\"}",
                          d->members[x].key, d->members[p].key);
        } else {
            ds_buf_printf(b, "{\"op\":\"delete\",\"member\":\"%s\"%s}",
                          d->members[pick(d, next(r) % 2 ? 1 : 0, r)].key,
                          next(r) % 2 ? ",\"force\":true" : "");
        }
        return;
    }
    bool batch = k >= 15;
    *kind = batch ? REQ_BATCH : REQ_CELL;
    *dim = NULL;
    ds_buf_puts(b, "{");
    if (next(r) % 5 == 0 && seq > 0)
        ds_buf_printf(b, "\"if_seq\":%lld,", (long long)(seq - (int64_t)(next(r) % 40)));
    if (batch) {
        ds_buf_puts(b, "\"writes\":[");
        int n = 1 + (int)(next(r) % 4);
        for (int i = 0; i < n; i++) {
            if (i)
                ds_buf_puts(b, ",");
            put_write(b, m, r, seq);
        }
        ds_buf_puts(b, "]}");
    } else {
        ds_buf b2;
        ds_buf_init(&b2, 1 << 20);
        put_write(&b2, m, r, seq);
        ds_buf_append(b, b2.data + 1, b2.len - 1); /* merge into this object */
        ds_buf_free(&b2);
    }
}

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
static bool one(ds_store *s, ds_engine *e, rng *r, int n, stats *st, ds_buf *body)
{
    const ds_model *m = store_model_current(s, DEMO_MODEL);
    int64_t seq = store_model_seq(s, DEMO_MODEL);
    req_kind kind;
    const char *dim;
    random_body(body, m, r, seq, &kind, &dim);
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
    ds_store *s = open_demo(3000, seed);
    engine_opts o;
    engine_opts_default(&o);
    o.change_cap = 1 << 20;
    o.create_cap = 3000;
    ds_engine *e = engine_from(s, &o);
    ck_assert_uint_eq(store_sum(s), engine_checksum(e));
    rng r = {seed};
    stats st = {0};
    ds_buf body;
    ds_buf_init(&body, 1 << 20);
    for (int n = 0; n < commands; n++) {
        one(s, e, &r, n, &st, &body);
        if (n % 25 == 24)
            ck_assert_msg(store_sum(s) == engine_checksum(e), "facts differ after command %d", n);
    }
    ck_assert_uint_eq(store_sum(s), engine_checksum(e));
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
    remove_dir();
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
