/* Grid subscriptions: several subscribers (some to the same grid) follow
 * random commands (leaf writes, spreads, member operations); after every
 * command each subscriber's copy (its snapshot with every patch applied)
 * equals a fresh read of its grid at the same seq, patches come in seq
 * order, and a grid no command touched gets none. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "demo.h"
#include "engine_fixture.h"
#include "grids.h"
#include "json.h"

typedef struct sub_state {
    ds_grid_spec spec;
    int32_t rows[8], cols[8];
    ds_i128 values[64];
    int64_t seq;
    int patches, snapshots;
    bool ended;
    grid_sub *h;
    int scale;
    char id[16];
} sub_state;

static ds_i128 number(json_val *v, int scale)
{
    size_t len;
    bool exact;
    const char *t = json_num(v, &len, &exact);
    ds_i128 out = 0;
    ck_assert(t && dec_parse(t, len, DEC_JSON, scale, dec_pow10(37), &out) == DEC_OK);
    return out;
}

/* Applies one message to the subscriber's copy. */
static void on_message(sub_state *st, const char *text, size_t len, int64_t seq)
{
    json_val *root;
    ds_error e;
    ck_assert_msg(json_parse(text, len, NULL, &root, &e) == 0, "%.*s", (int)len, text);
    size_t n;
    const char *op = json_str(json_get(root, "op"), &n);
    const char *id = json_str(json_get(root, "id"), &n);
    ck_assert_msg(id && n == strlen(st->id) && memcmp(id, st->id, n) == 0, "%.*s", (int)len, text);
    if (strcmp(op, "error") == 0) {
        st->ended = true;
        json_free(root);
        return;
    }
    int64_t mseq = atoll(json_num(json_get(root, "seq"), &n, &(bool){0}));
    ck_assert_int_eq(mseq, seq);
    if (strcmp(op, "snapshot") == 0) {
        json_val *vals = json_get(root, "values");
        ck_assert_uint_eq(json_len(vals), st->spec.nrows);
        for (size_t i = 0; i < st->spec.nrows; i++)
            for (size_t j = 0; j < st->spec.ncols; j++)
                st->values[i * st->spec.ncols + j] =
                    number(json_at(json_at(vals, i), j), st->scale);
        st->snapshots++;
    } else {
        ck_assert_str_eq(op, "patch");
        ck_assert_msg(mseq > st->seq, "patch %lld after %lld", (long long)mseq, (long long)st->seq);
        json_val *cells = json_get(root, "cells");
        ck_assert_uint_gt(json_len(cells), 0);
        for (size_t i = 0; i < json_len(cells); i++) {
            json_val *c = json_at(cells, i);
            size_t r = (size_t)atoll(json_num(json_at(c, 0), &n, &(bool){0}));
            size_t k = (size_t)atoll(json_num(json_at(c, 1), &n, &(bool){0}));
            st->values[r * st->spec.ncols + k] = number(json_at(c, 2), st->scale);
        }
        st->patches++;
    }
    st->seq = mseq;
    json_free(root);
}

/* A message to several subscribers: each gets head + its id + tail. */
static void on_send(void *ctx, const grid_to *to, size_t n, const char *head, size_t head_len,
                    const char *tail, size_t tail_len, int64_t seq, bool fresh)
{
    (void)ctx;
    ck_assert(fresh == (memcmp(head, "{\"op\":\"patch\"", 13) != 0));
    ds_buf b;
    ds_buf_init(&b, 1 << 20);
    for (size_t i = 0; i < n; i++) {
        ds_buf_reset(&b);
        ds_buf_append(&b, head, head_len);
        ds_buf_append(&b, to[i].id, to[i].id_len);
        ds_buf_append(&b, tail, tail_len);
        sub_state *st = to[i].conn;
        ck_assert(to[i].sub == st->h || st->h == NULL); /* NULL: still subscribing */
        on_message(st, b.data, b.len, seq);
    }
    ds_buf_free(&b);
}

static void pick_members(const ds_dim *d, fx_rng *r, int32_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int32_t x;
        do
            x = (int32_t)(fx_next(r) % (uint64_t)d->nmembers);
        while (!d->members[x].alive || d->members[x].depth > 2);
        out[i] = x;
    }
}

START_TEST(patches_equal_fresh_reads)
{
    enum { SUBS = 12, COMMANDS = 300 };
    ds_store *s = fx_open_demo(3000, 900 + (uint64_t)_i);
    ds_engine *e = fx_engine_from(s, NULL);
    ds_grids *g = grids_new(on_send, NULL);
    const ds_model *m = engine_model_acquire(e);
    fx_rng r = {31 + (uint64_t)_i};
    sub_state *st = xcalloc(SUBS, sizeof *st);
    for (int i = 0; i < SUBS; i++) {
        sub_state *x = &st[i];
        if (i % 4 == 3) { /* the same grid as the one before */
            x->spec = st[i - 1].spec;
            memcpy(x->rows, st[i - 1].rows, sizeof x->rows);
            memcpy(x->cols, st[i - 1].cols, sizeof x->cols);
        } else {
            x->spec.measure = (int)(fx_next(&r) % 2);
            x->spec.row_dim = 0;
            x->spec.col_dim = 2;
            x->spec.nrows = 1 + fx_next(&r) % 8;
            x->spec.ncols = 1 + fx_next(&r) % 8;
            pick_members(&m->dims[0], &r, x->rows, x->spec.nrows);
            pick_members(&m->dims[2], &r, x->cols, x->spec.ncols);
            for (int k = 0; k < m->ndims; k++)
                x->spec.fixed.m[k] = m->dims[k].root;
            if (i % 3 == 1)
                pick_members(&m->dims[1], &r, &x->spec.fixed.m[1], 1);
        }
        x->spec.rows = x->rows;
        x->spec.cols = x->cols;
        x->scale = m->measures[x->spec.measure].scale;
        x->seq = -1;
        ds_error err;
        snprintf(x->id, sizeof x->id, "g%d", i);
        ck_assert(
            grids_subscribe(g, DEMO_MODEL, e, &x->spec, x, x->id, strlen(x->id), &x->h, &err) == 0);
        ck_assert_int_eq(x->snapshots, 1);
    }
    engine_model_release(e, m);
    ds_buf body;
    ds_buf_init(&body, 1 << 20);
    int applied = 0;
    for (int n = 0; n < COMMANDS; n++) {
        const ds_model *cur = engine_model_acquire(e);
        req_kind kind;
        const char *dim;
        ds_arena a = {0};
        req_decoded d;
        fx_random_body(&body, cur, &r, engine_seq(e), &kind, &dim);
        bool ok = fx_resolve(body.data, body.len, kind, cur, dim, &a, &d);
        engine_model_release(e, cur);
        if (!ok) {
            ds_arena_free(&a);
            continue;
        }
        char rid[16];
        snprintf(rid, sizeof rid, "r%d", n);
        engine_input in = {.cmd = d.canonical,
                           .cmd_len = d.canonical_len,
                           .user = "u",
                           .rid = rid,
                           .hash = d.hash,
                           .ts_ms = n};
        engine_result res;
        ds_error err;
        ck_assert(engine_submit(e, &in, &res, &err) == 0);
        applied += res.status == ENGINE_APPLIED;
        grids_applied(g, DEMO_MODEL, e, &res.delta);
        engine_result_clear(&res);
        ds_arena_free(&a);
        for (int i = 0; i < SUBS; i++) {
            if (st[i].ended)
                continue;
            ds_i128 fresh[64];
            int64_t seq;
            if (engine_read_grid(e, &st[i].spec, fresh, &seq, &err) != 0)
                continue; /* a member is gone: its error came */
            for (size_t c = 0; c < st[i].spec.nrows * st[i].spec.ncols; c++)
                ck_assert_msg(fresh[c] == st[i].values[c],
                              "subscriber %d cell %zu differs after command %d", i, c, n);
        }
    }
    int patches = 0;
    for (int i = 0; i < SUBS; i++)
        patches += st[i].patches;
    fprintf(stderr, "grids: %d commands applied, %d patches to %d subscribers\n", applied, patches,
            SUBS);
    ck_assert_int_gt(patches, SUBS);
    for (int i = 0; i < SUBS; i++)
        grids_unsubscribe(g, st[i].h);
    grids_stats gs;
    grids_get_stats(g, &gs);
    ck_assert_int_eq(gs.subscribers, 0);
    ck_assert_int_eq(gs.grids, 0);
    ds_buf_free(&body);
    free(st);
    grids_free(g);
    engine_free(e);
    store_close(s);
    fx_remove_dir();
}
END_TEST

Suite *grids_suite(void)
{
    Suite *s = suite_create("grids");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, patches_equal_fresh_reads, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(grids_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
