/* engine_fixture.c: see engine_fixture.h. */
#include "engine_fixture.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#include "demo.h"
#include "json.h"
#include "persist.h"

char fx_dir[256];

/* The stream time of fx_apply()'s first request (2023-11-14). */
#define FX_T0_MS INT64_C(1700000000000)

static void make_dir(void)
{
    snprintf(fx_dir, sizeof fx_dir, "%s/ds-engine-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(fx_dir));
}

ds_store *fx_open_demo(int64_t facts, uint64_t seed)
{
    make_dir();
    char path[300];
    snprintf(path, sizeof path, "%s/t.db", fx_dir);
    ds_store *s;
    ds_error e;
    ck_assert_msg(store_open(path, NULL, &s, &e) == 0, "%s", e.message);
    demo_opts d = {.seed = seed, .facts = facts};
    bool loaded;
    int64_t n;
    ck_assert_msg(demo_load(s, &d, &loaded, &n, &e) == 0, "%s", e.message);
    return s;
}

void fx_copy_dir(const char *from)
{
    make_dir();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp '%s/t.db' '%s/t.db'", from, fx_dir);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

void fx_remove_dir(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", fx_dir);
}

static int load_fact(void *ctx, int64_t rowid, const int32_t *members, const int64_t *values,
                     const int64_t *stamps, uint64_t has, ds_error *err)
{
    (void)rowid;
    return engine_load_fact(ctx, members, values, stamps, has, err);
}

static void load_request(void *ctx, const char *model, const char *user, const char *rid,
                         const char *hash, int64_t seq, int code, int64_t ts_ms)
{
    if (strcmp(model, DEMO_MODEL) == 0)
        engine_load_request(ctx, user, rid, hash, seq, code, ts_ms);
}

ds_engine *fx_engine_from(ds_store *s, const engine_opts *o)
{
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    ds_engine *e = engine_new(m, store_model_seq(s, DEMO_MODEL), o);
    store_model_release(s, m);
    ds_error err;
    ck_assert_msg(store_facts_each(s, DEMO_MODEL, load_fact, e, &err) == 0, "%s", err.message);
    ck_assert_msg(store_requests_load(s, load_request, e, &err) == 0, "%s", err.message);
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

uint64_t fx_store_sum(ds_store *s)
{
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    uint64_t h = model_checksum(m);
    void *ctx[2] = {(void *)m, &h};
    ds_error e;
    ck_assert(store_facts_each(s, DEMO_MODEL, store_hash_fact, ctx, &e) == 0);
    store_model_release(s, m);
    return h;
}

bool fx_on_valgrind(void)
{
    return RUNNING_ON_VALGRIND != 0;
}

/* ---- random requests ------------------------------------------------------ */

uint64_t fx_next(fx_rng *r)
{
    return r->s = ds_mix64(r->s + 0x9e3779b97f4a7c15u);
}

static int32_t pick(const ds_dim *d, int want, fx_rng *r) /* want: 1 leaf, 0 any, -1 inner */
{
    for (;;) {
        int32_t x = (int32_t)(fx_next(r) % (uint64_t)d->nmembers);
        if (!d->members[x].alive)
            continue;
        bool leaf = model_is_leaf(d, x);
        if (want == 0 || (want == 1) == leaf)
            return x;
    }
}

static void put_cell(ds_buf *b, const ds_model *m, fx_rng *r, bool spread)
{
    ds_buf_puts(b, "\"cell\":{");
    bool first = true;
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        int want = spread ? (fx_next(r) % 3 == 0 ? 0 : (fx_next(r) % 2 ? -1 : 1)) : 1;
        int32_t x = pick(d, want, r);
        if (spread && x == d->root)
            continue;
        ds_buf_printf(b, "%s\"%s\":\"%s\"", first ? "" : ",", d->name, d->members[x].key);
        first = false;
    }
    ds_buf_puts(b, "}");
}

static void put_write(ds_buf *b, const ds_model *m, fx_rng *r, int64_t seq)
{
    bool spread = fx_next(r) % 3 == 0;
    ds_buf_printf(b, "{\"column\":\"%s\",", fx_next(r) % 2 ? "quantity" : "net_amount");
    put_cell(b, m, r, spread);
    uint64_t f = fx_next(r) % 10;
    int64_t amount = (int64_t)(fx_next(r) % 5000) - 1000;
    if (f < 5)
        ds_buf_printf(b, ",\"value\":%lld", (long long)amount);
    else if (f < 8)
        ds_buf_printf(b, ",\"delta\":%lld", (long long)(amount / 10));
    else
        ds_buf_printf(b, ",\"percent\":%lld", (long long)(amount % 60));
    if (fx_next(r) % 50 == 0)
        ds_buf_puts(b, ",\"value\":\"999999999999999999999\"");
    if (spread) {
        static const char *const methods[] = {"proportional", "equal", "repeat"};
        uint64_t mm = fx_next(r) % 10;
        ds_buf_printf(b, ",\"method\":\"%s\"", methods[mm < 6 ? 0 : mm < 9 ? 1 : 2]);
        if (fx_next(r) % 2 == 0) {
            const ds_dim *d = &m->dims[fx_next(r) % (uint64_t)m->ndims];
            ds_buf_printf(b, ",\"holds\":[{\"%s\":\"%s\"}]", d->name,
                          d->members[pick(d, 0, r)].key);
        }
    }
    (void)seq;
    ds_buf_puts(b, "}");
}

/* A request body of kind *kind for the model at seq. */
void fx_random_body(ds_buf *b, const ds_model *m, fx_rng *r, int64_t seq, req_kind *kind,
                    const char **dim)
{
    ds_buf_reset(b);
    uint64_t k = fx_next(r) % 20;
    if (k >= 18) { /* a member operation on product */
        const ds_dim *d = &m->dims[0];
        *kind = REQ_MEMBER;
        *dim = d->name;
        uint64_t op = fx_next(r) % 4;
        if (op == 0) {
            int32_t parent = pick(d, fx_next(r) % 2 ? -1 : 1, r);
            ds_buf_printf(b, "{\"op\":\"add\",\"parent\":\"%s\",\"key\":\"N%llu\"",
                          d->members[parent].key, (unsigned long long)(fx_next(r) % 100000));
            if (model_is_leaf(d, parent) && fx_next(r) % 2)
                ds_buf_puts(b, ",\"facts_to\":\"new\"");
            ds_buf_puts(b, "}");
        } else if (op == 1) {
            ds_buf_printf(b, "{\"op\":\"rename\",\"member\":\"%s\",\"name\":\"R%llu\"}",
                          d->members[pick(d, 0, r)].key, (unsigned long long)(fx_next(r) % 1000));
        } else if (op == 2) {
            int32_t x = pick(d, 0, r), p = pick(d, -1, r);
            ds_buf_printf(b, "{\"op\":\"move\",\"member\":\"%s\",\"parent\":\"%s\"}",
                          d->members[x].key, d->members[p].key);
        } else {
            ds_buf_printf(b, "{\"op\":\"delete\",\"member\":\"%s\"%s}",
                          d->members[pick(d, fx_next(r) % 2 ? 1 : 0, r)].key,
                          fx_next(r) % 2 ? ",\"force\":true" : "");
        }
        return;
    }
    bool batch = k >= 15;
    *kind = batch ? REQ_BATCH : REQ_CELL;
    *dim = NULL;
    ds_buf_puts(b, "{");
    if (fx_next(r) % 5 == 0 && seq > 0)
        ds_buf_printf(b, "\"if_seq\":%lld,", (long long)(seq - (int64_t)(fx_next(r) % 40)));
    if (batch) {
        ds_buf_puts(b, "\"writes\":[");
        int n = 1 + (int)(fx_next(r) % 4);
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

void fx_vformat(ds_buf *b, const char *fmt, va_list ap)
{
    ds_buf_init(b, 1 << 20);
    ds_buf_vprintf(b, fmt, ap);
}

bool fx_resolve(const char *body, size_t len, req_kind kind, const ds_model *m, const char *dim,
                ds_arena *a, req_decoded *d)
{
    json_val *root = NULL;
    ds_error err;
    ck_assert_msg(json_parse(body, len, NULL, &root, &err) == 0, "%s: %s", body, err.message);
    int rc = request_check(root, kind, &err);
    if (rc == 0)
        rc = request_resolve(root, kind, m, dim, a, d, &err);
    json_free(root);
    return rc == 0;
}

ds_store *fx_reopen(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/t.db", fx_dir);
    ds_store *s;
    ds_error e;
    ck_assert_msg(store_open(path, NULL, &s, &e) == 0, "%s", e.message);
    return s;
}

/* ---- applying and persisting ------------------------------------------------ */

int fx_submit(ds_store *s, ds_engine *e, const req_decoded *d, const char *rid, int64_t ts_ms,
              engine_result *res, ds_error *err)
{
    engine_input in = {.cmd = d->canonical,
                       .cmd_len = d->canonical_len,
                       .user = "tester",
                       .rid = rid,
                       .hash = d->hash,
                       .ts_ms = ts_ms};
    ck_assert_msg(engine_submit(e, &in, res, err) == 0, "%s", err->message);
    if (res->status == ENGINE_APPLIED || res->status == ENGINE_REFUSED) {
        persist_item *it = persist_item_from(DEMO_MODEL, &in, res, "{}", 2);
        store_item item = persist_store_item(it);
        ck_assert_msg(store_persist(s, &item, 1, err) == 0, "%s", err->message);
        persist_item_free(it);
    }
    if (res->status == ENGINE_APPLIED || (res->status == ENGINE_DUPLICATE && res->seq >= 0))
        return 0;
    if (res->status == ENGINE_DUPLICATE)
        return ds_fail(err, (ds_code)res->code, NULL, "a retry of a refused request");
    *err = res->err;
    return -(int)res->err.code;
}

int fx_apply(ds_store *s, ds_engine *e, const char *body, req_kind kind, const char *dim,
             engine_result *res, ds_error *err)
{
    engine_result local;
    engine_result *r = res ? res : &local;
    memset(r, 0, sizeof *r);
    const ds_model *m = engine_model_acquire(e);
    json_val *root = NULL;
    ck_assert_msg(json_parse(body, strlen(body), NULL, &root, err) == 0, "%s: %s", body,
                  err->message);
    ds_arena a = {0};
    req_decoded d;
    int rc = request_check(root, kind, err);
    if (rc == 0)
        rc = request_resolve(root, kind, m, dim, &a, &d, err);
    json_free(root);
    engine_model_release(e, m);
    if (rc == 0) {
        engine_stats st;
        engine_get_stats(e, &st);
        char rid[32];
        snprintf(rid, sizeof rid, "fx-%zu", st.ledger_entries);
        rc = fx_submit(s, e, &d, rid, FX_T0_MS + (int64_t)st.ledger_entries, r, err);
    }
    ds_arena_free(&a);
    if (!res)
        engine_result_clear(r);
    return rc;
}
