/* The engine (src/engine*.c) against the slow reference of its write rules
 * (ref_engine.c): both start from the same demo facts (loaded from a
 * DuckDB store) and get the same entries of the request stream (canonical
 * commands, as the writer feeds them): random leaf writes, batches, spreads
 * of every method and form, holds, if_seq (also above the model's seq and
 * on member operations), member operations, keys with a scope, retries
 * (duplicates) and request_ids reused with another body. Every status, seq
 * and whole error must agree, and for an applied command every change set:
 * target, method, count of changed leaves, the totals list in order, the
 * changed leaves as a multiset; every 25 commands the facts (checksum of
 * catalog and values, live facts), the catalog (ordinals and struct seqs
 * too) and reads of random cells. Directed cases: totals past 2^63,
 * signs_cancel, too_many_cells, each wording of out_of_range, a batch
 * refused halfway, stale in each form, facts_to and force, the ledger's
 * retention, and change lists cut at a small cap.
 *
 * Under valgrind (or with ENGINE_REF_COMMANDS=n) the random runs are
 * shorter: the reference is quadratic on purpose. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "demo.h"
#include "engine.h"
#include "engine_fixture.h"
#include "ref_engine.h"
#include "request.h"
#include "store.h"

#define DEMO_FACTS    2000
#define COMMANDS      500 /* per random run */
#define VG_COMMANDS   40  /* per random run under valgrind */
#define CHECK_EVERY   25
#define HISTORY       64
#define ID_MAX        32
#define BODY_MAX      (1 << 20)
#define IF_SEQ_PREFIX "{\"if_seq\":"

/* ---- the two, side by side --------------------------------------------------- */

typedef struct stats {
    int applied, refused, duplicates, reused, skipped, spreads, members, batch_refused;
    int codes[DS_CODE_COUNT];
} stats;

/* An entry sent before and what became of it the first time. */
typedef struct sent {
    char user[8], rid[ID_MAX];
    char *cmd;
    size_t cmd_len;
    char hash[65];
    int64_t seq;
    int code;
} sent;

typedef struct pair {
    ds_engine *e;
    ref_engine *r;
    engine_opts o;
    stats st;
    int n;      /* entries sent: request ids and stream times */
    int64_t ts; /* the next entry's time */
    sent hist[HISTORY];
    int nhist;
    engine_status last_status;
    ds_error last_err; /* of the last refusal */
} pair;

static int load_fact(void *ctx, int64_t rowid, const int32_t *members, const int64_t *values,
                     const int64_t *stamps, uint64_t has, ds_error *err)
{
    (void)rowid;
    (void)err;
    ref_engine_load_fact(ctx, members, values, stamps, has);
    return 0;
}

static void load_request(void *ctx, const char *model, const char *user, const char *rid,
                         const char *hash, int64_t seq, int code, int64_t ts_ms)
{
    if (strcmp(model, DEMO_MODEL) == 0)
        ref_engine_load_request(ctx, user, rid, hash, seq, code, ts_ms);
}

static void pair_open(pair *p, uint64_t seed, const engine_opts *o)
{
    memset(p, 0, sizeof *p);
    p->o = *o;
    p->ts = 1000;
    ds_store *s = fx_open_demo(DEMO_FACTS, seed);
    p->e = fx_engine_from(s, o);
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    p->r = ref_engine_new(m, store_model_seq(s, DEMO_MODEL), o);
    store_model_release(s, m);
    ds_error err;
    ck_assert_msg(store_facts_each(s, DEMO_MODEL, load_fact, p->r, &err) == 0, "%s", err.message);
    ck_assert_msg(store_requests_load(s, load_request, p->r, &err) == 0, "%s", err.message);
    ref_engine_load_done(p->r);
    store_close(s);
    fx_remove_dir();
    ck_assert_uint_eq(engine_checksum(p->e), ref_engine_checksum(p->r));
}

static void pair_close(pair *p)
{
    for (int i = 0; i < p->nhist; i++)
        free(p->hist[i].cmd);
    engine_free(p->e);
    ref_engine_free(p->r);
}

static engine_opts test_opts(size_t change_cap, int64_t create_cap)
{
    engine_opts o;
    engine_opts_default(&o);
    o.change_cap = change_cap;
    o.create_cap = create_cap;
    return o;
}

/* ---- comparing ------------------------------------------------------------------ */

static bool same_change(const ds_change *a, const ds_change *b)
{
    return memcmp(&a->cell, &b->cell, sizeof a->cell) == 0 && a->measure == b->measure &&
           a->old_value == b->old_value && a->new_value == b->new_value;
}

static char *fmt_change(const ds_change *c, char *buf, size_t n)
{
    char o[DEC_BUFSZ], v[DEC_BUFSZ];
    dec_format(c->old_value, 0, o);
    dec_format(c->new_value, 0, v);
    snprintf(buf, n, "[%d %d %d %d] q%d %s -> %s", c->cell.m[0], c->cell.m[1], c->cell.m[2],
             c->cell.m[3], c->measure, o, v);
    return buf;
}

/* A leaf as it is sorted: the change and in_totals. */
typedef struct leaf {
    ds_change c;
    bool in_totals;
} leaf;

static int cmp_leaf(const void *a, const void *b)
{
    const leaf *x = a, *y = b;
    int c = memcmp(&x->c.cell, &y->c.cell, sizeof x->c.cell);
    if (c == 0)
        c = x->c.measure - y->c.measure;
    return c;
}

static leaf *sorted_leaves(const ds_changeset *s)
{
    leaf *l = xmalloc_array(s->nleaves + 1, sizeof *l);
    for (size_t i = 0; i < s->nleaves; i++)
        l[i] = (leaf){.c = s->leaves[i], .in_totals = s->in_totals[i]};
    qsort(l, s->nleaves, sizeof *l, cmp_leaf);
    return l;
}

/* The engine's leaves equal the reference's as a multiset; when the
 * engine cuts them at the cap, they are the cap's worth of them. */
static void same_leaves(const ds_changeset *e, const ds_changeset *r, size_t cap, const char *what)
{
    ck_assert_msg(e->leaves_truncated == r->leaves_truncated, "%s: leaves_truncated differs", what);
    size_t want = r->nleaves < cap ? r->nleaves : cap;
    ck_assert_msg(e->nleaves == want, "%s: %zu leaves listed, the reference %zu (cap %zu)", what,
                  e->nleaves, r->nleaves, cap);
    leaf *a = sorted_leaves(e), *b = sorted_leaves(r);
    size_t j = 0;
    char x[200], y[200];
    for (size_t i = 0; i < e->nleaves; i++) {
        while (j < r->nleaves && cmp_leaf(&b[j], &a[i]) < 0)
            j++;
        ck_assert_msg(j < r->nleaves && same_change(&a[i].c, &b[j].c) &&
                          a[i].in_totals == b[j].in_totals,
                      "%s: leaf %s (in_totals %d) is not the reference's %s", what,
                      fmt_change(&a[i].c, x, sizeof x), a[i].in_totals,
                      j < r->nleaves ? fmt_change(&b[j].c, y, sizeof y) : "(none)");
        j++;
    }
    free(a);
    free(b);
}

static void same_set(const ds_changeset *e, const ds_changeset *r, size_t cap, const char *body,
                     size_t i)
{
    char what[64], x[200], y[200];
    snprintf(what, sizeof what, "write %zu", i);
    ck_assert_msg(same_change(&e->target, &r->target), "%s of %s: target %s, reference %s", what,
                  body, fmt_change(&e->target, x, sizeof x), fmt_change(&r->target, y, sizeof y));
    ck_assert_msg(e->leaf == r->leaf, "%s of %s: leaf differs", what, body);
    ck_assert_msg(e->method == r->method, "%s of %s: method %s, reference %s", what, body,
                  spread_method_name(e->method), spread_method_name(r->method));
    ck_assert_msg(e->leaves_changed == r->leaves_changed,
                  "%s of %s: %lld leaves changed, reference %lld", what, body,
                  (long long)e->leaves_changed, (long long)r->leaves_changed);
    ck_assert_msg(e->truncated == r->truncated, "%s of %s: truncated %d, reference %d", what, body,
                  e->truncated, r->truncated);
    size_t n = e->nchanges < r->nchanges ? e->nchanges : r->nchanges;
    for (size_t j = 0; j < n; j++)
        ck_assert_msg(same_change(&e->changes[j], &r->changes[j]),
                      "%s of %s: total %zu is %s, the reference's %s", what, body, j,
                      fmt_change(&e->changes[j], x, sizeof x),
                      fmt_change(&r->changes[j], y, sizeof y));
    ck_assert_msg(e->nchanges == r->nchanges, "%s of %s: %zu totals, reference %zu", what, body,
                  e->nchanges, r->nchanges);
    same_leaves(e, r, cap, what);
}

static void same_error(const ds_error *e, const ds_error *r, const char *body)
{
    ck_assert_msg(e->code == r->code, "%s: engine %s (%s), reference %s (%s)", body,
                  ds_code_name(e->code), e->message, ds_code_name(r->code), r->message);
    ck_assert_msg(strcmp(e->message, r->message) == 0, "%s: messages differ:\n  %s\n  %s", body,
                  e->message, r->message);
    ck_assert_str_eq(e->target, r->target);
    ck_assert_msg(e->has_seq == r->has_seq && (!e->has_seq || e->seq == r->seq),
                  "%s: error seq differs", body);
    ck_assert_msg(e->has_count == r->has_count &&
                      (!e->has_count || (e->count == r->count && e->limit == r->limit)),
                  "%s: count %lld/%lld, reference %lld/%lld", body, (long long)e->count,
                  (long long)e->limit, (long long)r->count, (long long)r->limit);
    ck_assert_int_eq(e->ncandidates, r->ncandidates);
}

static const char *status_name(engine_status s)
{
    static const char *const names[] = {"applied", "refused", "duplicate", "reused"};
    return names[s];
}

static void same_result(const pair *p, const engine_result *e, const ref_result *r,
                        const char *body)
{
    ck_assert_msg(e->status == r->status, "%s: engine %s (%s), reference %s (%s)", body,
                  status_name(e->status), e->err.message, status_name(r->status), r->err.message);
    ck_assert_msg(e->seq == r->seq && e->code == r->code, "%s: seq %lld code %d, reference %lld %d",
                  body, (long long)e->seq, e->code, (long long)r->seq, r->code);
    if (e->status == ENGINE_REFUSED || e->status == ENGINE_REUSED)
        same_error(&e->err, &r->err, body);
    if (e->status != ENGINE_APPLIED)
        return;
    ck_assert_int_eq(e->out.seq, r->out.seq);
    ck_assert_int_eq(e->out.ts_us, r->out.ts_us);
    ck_assert_uint_eq(e->out.nsets, r->out.nsets);
    for (size_t i = 0; i < e->out.nsets; i++)
        same_set(&e->out.sets[i], &r->out.sets[i], p->o.change_cap, body, i);
}

static void same_catalog(const ds_model *a, const ds_model *b)
{
    ck_assert_int_eq(a->struct_seq, b->struct_seq);
    ck_assert_int_eq(a->ndims, b->ndims);
    ck_assert_uint_eq(model_checksum(a), model_checksum(b));
    for (int k = 0; k < a->ndims; k++) {
        const ds_dim *x = &a->dims[k], *y = &b->dims[k];
        ck_assert_int_eq(x->nmembers, y->nmembers);
        ck_assert_int_eq(x->root, y->root);
        for (int32_t i = 0; i < x->nmembers; i++) {
            const ds_member *u = &x->members[i], *v = &y->members[i];
            ck_assert_int_eq(u->alive, v->alive);
            if (!u->alive)
                continue;
            ck_assert_msg(u->parent == v->parent && u->ordinal == v->ordinal &&
                              u->struct_seq == v->struct_seq,
                          "member %s of %s: parent %d ordinal %d struct_seq %lld, reference %d %d "
                          "%lld",
                          u->key, x->name, u->parent, u->ordinal, (long long)u->struct_seq,
                          v->parent, v->ordinal, (long long)v->struct_seq);
            ck_assert_str_eq(u->key, v->key);
            ck_assert_str_eq(u->name, v->name);
        }
    }
}

static int32_t random_member(const ds_dim *d, fx_rng *g)
{
    for (;;) {
        int32_t x = (int32_t)(fx_next(g) % (uint64_t)d->nmembers);
        if (d->members[x].alive)
            return x;
    }
}

/* Facts, live facts, seq, catalog and reads of random cells agree. */
static void same_state(pair *p, fx_rng *g, int reads)
{
    ck_assert_int_eq(engine_seq(p->e), ref_engine_seq(p->r));
    ck_assert_msg(engine_checksum(p->e) == ref_engine_checksum(p->r),
                  "facts differ after %d entries", p->n);
    engine_stats es;
    engine_get_stats(p->e, &es);
    ck_assert_uint_eq(es.live_facts, ref_engine_live_facts(p->r));
    const ds_model *m = engine_model_acquire(p->e);
    same_catalog(m, ref_engine_model(p->r));
    for (int i = 0; i < reads; i++) {
        ds_cell c;
        memset(&c, 0, sizeof c);
        for (int k = 0; k < m->ndims; k++)
            c.m[k] = fx_next(g) % 3 ? random_member(&m->dims[k], g) : m->dims[k].root;
        int q = (int)(fx_next(g) % (uint64_t)m->nmeasures);
        ds_i128 v;
        int64_t seq;
        ds_error err;
        ck_assert(engine_read_cell(p->e, &c, q, &v, &seq, &err) == 0);
        ck_assert_msg(v == ref_engine_value(p->r, c.m, q), "a read differs after %d entries", p->n);
        ck_assert_int_eq(seq, ref_engine_seq(p->r));
    }
    engine_model_release(p->e, m);
}

/* ---- sending -------------------------------------------------------------------------- */

static void remember(pair *p, const engine_input *in, const engine_result *res)
{
    if (res->status != ENGINE_APPLIED && res->status != ENGINE_REFUSED)
        return; /* not recorded */
    int at = p->nhist < HISTORY ? p->nhist++ : (int)((unsigned)p->n % HISTORY);
    sent *h = &p->hist[at];
    free(h->cmd);
    snprintf(h->user, sizeof h->user, "%s", in->user);
    snprintf(h->rid, sizeof h->rid, "%s", in->rid);
    h->cmd = xstrndup(in->cmd, in->cmd_len);
    h->cmd_len = in->cmd_len;
    snprintf(h->hash, sizeof h->hash, "%s", in->hash);
    h->seq = res->seq;
    h->code = res->code;
}

/* One entry to both; compared. Returns the engine's code (DS_OK when
 * applied or a duplicate of an applied one). */
static int send(pair *p, const engine_input *in, const ds_command *cmd, const char *body)
{
    engine_result er;
    ref_result rr;
    ds_error err;
    ck_assert(engine_submit(p->e, in, &er, &err) == 0);
    ref_engine_submit(p->r, in, &rr);
    same_result(p, &er, &rr, body);
    stats *st = &p->st;
    switch (er.status) {
    case ENGINE_APPLIED:
        st->applied++;
        for (size_t i = 0; i < er.out.nsets; i++)
            st->spreads += !er.out.sets[i].leaf;
        st->members += cmd && cmd->kind == COMMAND_MEMBER;
        break;
    case ENGINE_REFUSED:
        st->refused++;
        st->codes[er.code]++;
        st->batch_refused += cmd && cmd->nwrites > 1;
        break;
    case ENGINE_DUPLICATE:
        st->duplicates++;
        break;
    case ENGINE_REUSED:
        st->reused++;
        break;
    }
    remember(p, in, &er);
    p->last_status = er.status;
    if (er.status == ENGINE_REFUSED)
        p->last_err = er.err;
    int code = er.code;
    if (er.status == ENGINE_APPLIED && cmd && cmd->kind == COMMAND_MEMBER) {
        const ds_model *m = engine_model_acquire(p->e);
        same_catalog(m, ref_engine_model(p->r));
        engine_model_release(p->e, m);
    }
    engine_result_clear(&er);
    ref_result_clear(&rr);
    return code;
}

typedef struct route {
    const char *user, *rid;
    const char *scope_dim, *scope_member;
} route;

/* Resolves body against the engine's catalog and sends its canonical
 * form; -1 when it does not resolve (nothing sent). */
static int send_body(pair *p, const ds_buf *body, req_kind kind, const char *dim, const route *rt)
{
    const ds_model *m = engine_model_acquire(p->e);
    ds_arena a = {0};
    req_decoded d;
    int code = -1;
    char rid[ID_MAX];
    snprintf(rid, sizeof rid, "r%d", p->n);
    if (fx_resolve(body->data, body->len, kind, m, dim, &a, &d)) {
        engine_input in = {.cmd = d.canonical,
                           .cmd_len = d.canonical_len,
                           .user = rt && rt->user ? rt->user : "u",
                           .rid = rt && rt->rid ? rt->rid : rid,
                           .hash = d.hash,
                           .scope_dim = rt ? rt->scope_dim : NULL,
                           .scope_member = rt ? rt->scope_member : NULL,
                           .ts_ms = p->ts++};
        p->n++;
        code = send(p, &in, &d.cmd, body->data);
    } else {
        p->st.skipped++;
    }
    ds_arena_free(&a);
    engine_model_release(p->e, m);
    return code;
}

/* Sends an entry sent before again (a retry): the first outcome. */
static void send_again(pair *p, const sent *h)
{
    engine_input in = {.cmd = h->cmd,
                       .cmd_len = h->cmd_len,
                       .user = h->user,
                       .rid = h->rid,
                       .hash = h->hash,
                       .ts_ms = p->ts++};
    int64_t seq = h->seq;
    int code = h->code;
    p->n++;
    send(p, &in, NULL, h->cmd);
    ck_assert_int_eq(p->last_status, ENGINE_DUPLICATE);
    engine_result er;
    ds_error err;
    in.ts_ms = p->ts++;
    ck_assert(engine_submit(p->e, &in, &er, &err) == 0);
    ck_assert(er.seq == seq && er.code == code);
    engine_result_clear(&er);
    ref_result rr;
    ref_engine_submit(p->r, &in, &rr);
    ck_assert(rr.seq == seq && rr.code == code);
    ref_result_clear(&rr);
}

/* Runs a body (printf-style) on both; asserts it resolved; the code. */
static int run(pair *p, req_kind kind, const char *dim, const route *rt, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int run(pair *p, req_kind kind, const char *dim, const route *rt, const char *fmt, ...)
{
    ds_buf b;
    ds_buf_init(&b, BODY_MAX);
    va_list ap;
    va_start(ap, fmt);
    ds_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    int code = send_body(p, &b, kind, dim, rt);
    ck_assert_msg(code >= 0, "%s does not resolve", b.data);
    ds_buf_free(&b);
    return code;
}

/* ---- random entries ----------------------------------------------------------------------- */

/* Puts "if_seq": v in front of the body's fields. */
static void with_if_seq(ds_buf *b, int64_t v)
{
    ds_buf c;
    ds_buf_init(&c, BODY_MAX);
    ds_buf_printf(&c, IF_SEQ_PREFIX "%lld,%s", (long long)v, b->data + 1);
    ds_buf_reset(b);
    ds_buf_append(b, c.data, c.len);
    ds_buf_free(&c);
}

/* A write with an amount at the edge of the range on a random cell (a
 * leaf, or any member in each dimension): out_of_range in its forms. */
static void extreme_body(const ds_model *m, fx_rng *g, ds_buf *b)
{
    static const char *const amounts[] = {"\"value\":999999999999999999",
                                          "\"value\":-999999999999999999",
                                          "\"delta\":999999999999999999",
                                          "\"delta\":-900000000000000000",
                                          "\"percent\":\"1000000000\"",
                                          "\"percent\":-250",
                                          "\"value\":\"1000000000000000000000\"",
                                          "\"value\":\"1000000000000000000000000000000000000\""};
    static const char *const methods[] = {"proportional", "equal", "repeat"};
    bool leaves_only = fx_next(g) % 2;
    ds_buf_reset(b);
    ds_buf_printf(b, "{\"column\":\"%s\",\"cell\":{", fx_next(g) % 2 ? "quantity" : "net_amount");
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        int32_t x = random_member(d, g);
        while (leaves_only && !model_is_leaf(d, x))
            x = random_member(d, g);
        ds_buf_printf(b, "%s\"%s\":\"%s\"", k ? "," : "", d->name, d->members[x].key);
    }
    ds_buf_printf(b, "},%s,\"method\":\"%s\"}", amounts[fx_next(g) % DS_ARRAY_LEN(amounts)],
                  methods[fx_next(g) % 3]);
}

/* A spread over a wide region (each dimension's member at most `depth`
 * levels down: brands, years, regions), any method and form, sometimes
 * with a hold: big sparse and dense regions. */
static void wide_body(const ds_model *m, fx_rng *g, ds_buf *b)
{
    static const char *const methods[] = {"proportional", "equal", "repeat"};
    static const int depth[] = {2, 1, 1, 1};
    ds_buf_reset(b);
    ds_buf_printf(b, "{\"column\":\"%s\",\"cell\":{", fx_next(g) % 2 ? "quantity" : "net_amount");
    bool first = true;
    for (int k = 0; k < m->ndims; k++) {
        const ds_dim *d = &m->dims[k];
        int32_t x = random_member(d, g);
        while (d->members[x].depth > depth[k < 4 ? k : 3])
            x = random_member(d, g);
        if (x == d->root)
            continue;
        ds_buf_printf(b, "%s\"%s\":\"%s\"", first ? "" : ",", d->name, d->members[x].key);
        first = false;
    }
    uint64_t f = fx_next(g) % 3;
    int64_t amount = (int64_t)(fx_next(g) % 2000000) - 500000;
    ds_buf_printf(b, "},\"%s\":%lld,\"method\":\"%s\"",
                  f == 0   ? "value"
                  : f == 1 ? "delta"
                           : "percent",
                  (long long)(f == 2 ? amount % 80 : amount), methods[fx_next(g) % 3]);
    if (fx_next(g) % 2) {
        const ds_dim *d = &m->dims[fx_next(g) % (uint64_t)m->ndims];
        ds_buf_printf(b, ",\"holds\":[{\"%s\":\"%s\"}]", d->name,
                      d->members[random_member(d, g)].key);
    }
    ds_buf_puts(b, "}");
}

/* One random entry: a body from the fixture, sometimes with if_seq above
 * the model's seq, or on a member operation; sometimes from another user,
 * or with a key scoped to a member; sometimes a retry of an entry sent
 * before, or its request_id with this body. */
static void random_entry(pair *p, fx_rng *g, ds_buf *body)
{
    uint64_t pick = fx_next(g) % 100;
    if (pick < 6 && p->nhist > 0) {
        send_again(p, &p->hist[fx_next(g) % (uint64_t)p->nhist]);
        return;
    }
    const ds_model *m = engine_model_acquire(p->e);
    int64_t seq = engine_seq(p->e);
    req_kind kind;
    const char *dim;
    fx_random_body(body, m, g, seq, &kind, &dim);
    uint64_t own = fx_next(g) % 24;
    if (own < 3) {
        if (own < 2)
            extreme_body(m, g, body);
        else
            wide_body(m, g, body);
        kind = REQ_CELL;
        dim = NULL;
    }
    bool has_if = strncmp(body->data, IF_SEQ_PREFIX, strlen(IF_SEQ_PREFIX)) == 0;
    uint64_t v = fx_next(g) % 40;
    if (!has_if && v < 2)
        with_if_seq(body, seq + 1 + (int64_t)(fx_next(g) % 3));
    else if (!has_if && kind == REQ_MEMBER && v < 20) {
        int64_t back = seq - (int64_t)(fx_next(g) % 30);
        with_if_seq(body, back < 0 ? 0 : back);
    }
    route rt = {0};
    char scope[DS_IDENT_MAX + 1];
    if (pick < 10 && p->nhist > 0) { /* reused: a request_id sent before */
        const sent *h = &p->hist[fx_next(g) % (uint64_t)p->nhist];
        rt.user = h->user;
        rt.rid = h->rid;
    } else if (pick < 15) {
        rt.user = "v";
    } else if (pick < 20) {
        const ds_dim *d = &m->dims[fx_next(g) % (uint64_t)m->ndims];
        snprintf(scope, sizeof scope, "%s", d->members[random_member(d, g)].key);
        rt.scope_dim = d->name;
        rt.scope_member = scope;
    }
    char rid[ID_MAX];
    if (rt.rid) { /* the history may be overwritten by this very entry */
        snprintf(rid, sizeof rid, "%s", rt.rid);
        rt.rid = rid;
    }
    send_body(p, body, kind, dim, &rt);
    engine_model_release(p->e, m);
}

static int commands_per_run(void)
{
    const char *s = getenv("ENGINE_REF_COMMANDS");
    if (s && *s)
        return atoi(s);
    return fx_on_valgrind() ? VG_COMMANDS : COMMANDS;
}

/* The random runs: seed, change_cap, create_cap (a small one makes
 * too_many_cells frequent; a large one lets big equal spreads through). */
static const struct {
    uint64_t seed;
    size_t change_cap;
    int64_t create_cap;
} runs[] = {
    {1, (size_t)1 << 20, 3000}, {2, (size_t)1 << 20, 400}, {3, (size_t)1 << 20, 60}, {11, 4, 200}};

static void random_run(int run)
{
    uint64_t seed = runs[run].seed;
    size_t change_cap = runs[run].change_cap;
    engine_opts o = test_opts(change_cap, runs[run].create_cap);
    pair p;
    pair_open(&p, seed, &o);
    fx_rng g = {seed * 7919};
    ds_buf body;
    ds_buf_init(&body, BODY_MAX);
    int n = commands_per_run();
    for (int i = 0; i < n; i++) {
        random_entry(&p, &g, &body);
        if (i % CHECK_EVERY == CHECK_EVERY - 1)
            same_state(&p, &g, 20);
    }
    same_state(&p, &g, 20);
    const stats *st = &p.st;
    fprintf(stderr,
            "engine vs reference (seed %llu, caps %zu and %lld): %d applied (%d spreads, %d member "
            "ops), "
            "%d refused (%d batches), %d duplicates, %d reused, %d did not resolve\n",
            (unsigned long long)seed, change_cap, (long long)o.create_cap, st->applied, st->spreads,
            st->members, st->refused, st->batch_refused, st->duplicates, st->reused, st->skipped);
    for (int c = 0; c < DS_CODE_COUNT; c++)
        if (st->codes[c])
            fprintf(stderr, "  %s: %d\n", ds_code_name((ds_code)c), st->codes[c]);
    if (n >= COMMANDS) { /* the generator reaches every kind of outcome */
        ck_assert_int_gt(st->applied, n / 3);
        ck_assert_int_gt(st->spreads, n / 10);
        ck_assert_int_gt(st->members, 0);
        ck_assert_int_gt(st->duplicates, 0);
        ck_assert_int_gt(st->reused, 0);
        ck_assert_int_gt(st->batch_refused, 0);
        ck_assert_int_gt(st->codes[DS_STALE], 0);
        ck_assert_int_gt(st->codes[DS_HELD], 0);
        ck_assert_int_gt(st->codes[DS_OUT_OF_SCOPE], 0);
        ck_assert_int_gt(st->codes[DS_OUT_OF_RANGE], 0);
        if (runs[run].create_cap <= 200)
            ck_assert_int_gt(st->codes[DS_TOO_MANY_CELLS], 0);
    }
    ds_buf_free(&body);
    pair_close(&p);
}

/* The last run cuts change lists at a small cap: the totals are a prefix,
 * the leaves the cap's worth of the reference's. */
START_TEST(random_commands_match)
{
    random_run(_i);
}
END_TEST

/* ---- directed cases ------------------------------------------------------------------------ */

/* The demo's leaves, for directed cases. */
typedef struct demo_keys {
    const ds_model *m;
    int32_t *pl, *cl, *tl;
    size_t np, nc, nt;
} demo_keys;

static void keys_open(demo_keys *k, pair *p)
{
    k->m = engine_model_acquire(p->e);
    k->np = model_leaves(&k->m->dims[0], k->m->dims[0].root, &k->pl);
    k->nc = model_leaves(&k->m->dims[1], k->m->dims[1].root, &k->cl);
    k->nt = model_leaves(&k->m->dims[2], k->m->dims[2].root, &k->tl);
}

static void keys_close(demo_keys *k, pair *p)
{
    free(k->pl);
    free(k->cl);
    free(k->tl);
    engine_model_release(p->e, k->m);
}

static const char *key(const demo_keys *k, int dim, int32_t x)
{
    return k->m->dims[dim].members[x].key;
}

/* The ancestor `up` levels above product leaf i. */
static const char *product_up(const demo_keys *k, size_t i, int up)
{
    int32_t x = k->pl[i];
    while (up-- > 0)
        x = k->m->dims[0].members[x].parent;
    return key(k, 0, x);
}

#define LEAF_CELL "{\"product\":\"%s\",\"customer\":\"%s\",\"time\":\"%s\"}"

/* A leaf write of quantity: product leaf i, customer leaf j, month t. */
static int leaf_write(pair *p, const demo_keys *k, size_t i, size_t j, size_t t, const char *what)
{
    return run(p, REQ_CELL, NULL, NULL, "{\"column\":\"quantity\",\"cell\":" LEAF_CELL ",%s}",
               key(k, 0, k->pl[i]), key(k, 1, k->cl[j]), key(k, 2, k->tl[t]), what);
}

/* Totals beyond int64 (the engine's cube gives up and sums the facts in
 * 128 bits), signs that cancel, and an equal spread over too many cells;
 * reads of every family in every year then agree. */
START_TEST(edges_match)
{
    engine_opts o = test_opts((size_t)1 << 20, 3000);
    pair p;
    pair_open(&p, 41, &o);
    demo_keys k;
    keys_open(&k, &p);
    for (size_t i = 0; i < 12; i++) /* 12 x 9e17 > 2^63 beneath one family */
        ck_assert_int_eq(leaf_write(&p, &k, 0, i % k.nc, i / k.nc, "\"value\":900000000000000000"),
                         DS_OK);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},\"percent\":-50}",
                         product_up(&k, 0, 1)),
                     DS_OK);
    ck_assert_int_eq(
        run(&p, REQ_CELL, NULL, NULL, "{\"column\":\"quantity\",\"cell\":{},\"delta\":7}"), DS_OK);
    same_state(&p, &(fx_rng){1}, 0);
    /* signs that cancel: two leaves of one brand made +x and -x, the rest 0 */
    size_t last = k.np - 1;
    const char *brand = product_up(&k, last, 2);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"net_amount\",\"cell\":{\"product\":\"%s\"},"
                         "\"method\":\"repeat\",\"value\":0}",
                         brand),
                     DS_OK);
    ck_assert_int_eq(run(&p, REQ_BATCH, NULL, NULL,
                         "{\"writes\":[{\"column\":\"net_amount\",\"cell\":" LEAF_CELL
                         ",\"value\":5},{\"column\":\"net_amount\",\"cell\":" LEAF_CELL
                         ",\"value\":-5}]}",
                         key(&k, 0, k.pl[last]), key(&k, 1, k.cl[0]), key(&k, 2, k.tl[0]),
                         key(&k, 0, k.pl[last]), key(&k, 1, k.cl[1]), key(&k, 2, k.tl[0])),
                     DS_OK);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"net_amount\",\"cell\":{\"product\":\"%s\"},\"value\":100}",
                         brand),
                     DS_SIGNS_CANCEL);
    /* an equal spread of the grand total fills more than create_cap cells */
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"quantity\",\"cell\":{},\"method\":\"equal\",\"value\":1}"),
                     DS_TOO_MANY_CELLS);
    /* with a hold the count leaves the held cells out */
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"quantity\",\"cell\":{},\"method\":\"repeat\",\"value\":1,"
                         "\"holds\":[{\"product\":\"%s\"}]}",
                         brand),
                     DS_TOO_MANY_CELLS);
    const ds_dim *pd = &k.m->dims[0], *td = &k.m->dims[2];
    for (int32_t f = 0; f < pd->nmembers; f++)
        for (int32_t y = 0; y < td->nmembers; y++) {
            if (pd->members[f].depth != 3 || td->members[y].depth != 1)
                continue;
            ds_cell c;
            memset(&c, 0, sizeof c);
            for (int d = 0; d < k.m->ndims; d++)
                c.m[d] = k.m->dims[d].root;
            c.m[0] = f;
            c.m[2] = y;
            ds_i128 v;
            int64_t seq;
            ds_error err;
            ck_assert(engine_read_cell(p.e, &c, 0, &v, &seq, &err) == 0);
            ck_assert(v == ref_engine_value(p.r, c.m, 0));
        }
    same_state(&p, &(fx_rng){2}, 50);
    keys_close(&k, &p);
    pair_close(&p);
}
END_TEST

/* Each wording of out_of_range the engine can reach. */
START_TEST(out_of_range_matches)
{
    engine_opts o = test_opts((size_t)1 << 20, 3000);
    pair p;
    pair_open(&p, 43, &o);
    demo_keys k;
    keys_open(&k, &p);
    const char *e36 = "1000000000000000000000000000000000000";
    /* a leaf: delta and percent beyond 18 digits */
    ck_assert_int_eq(leaf_write(&p, &k, 1, 0, 0, "\"value\":5"), DS_OK);
    ck_assert_int_eq(leaf_write(&p, &k, 1, 0, 0, "\"delta\":999999999999999999"), DS_OUT_OF_RANGE);
    ck_assert_int_eq(leaf_write(&p, &k, 1, 0, 0, "\"value\":100000000000000000"), DS_OK);
    ck_assert_int_eq(leaf_write(&p, &k, 1, 0, 0, "\"percent\":1000"), DS_OUT_OF_RANGE);
    /* a brand made 0 with one leaf -5 held: T - h beyond 10^36 */
    const char *brand = product_up(&k, 0, 2);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},"
                         "\"method\":\"repeat\",\"value\":0}",
                         brand),
                     DS_OK);
    ck_assert_int_eq(leaf_write(&p, &k, 0, 0, 0, "\"value\":-5"), DS_OK);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},\"value\":\"%s\","
                         "\"holds\":[{\"product\":\"%s\"}]}",
                         brand, e36, key(&k, 0, k.pl[0])),
                     DS_OUT_OF_RANGE);
    /* +500 and -499: a share of 10^36 * 500 does not fit 128 bits */
    ck_assert_int_eq(leaf_write(&p, &k, 0, 0, 0, "\"value\":500"), DS_OK);
    ck_assert_int_eq(leaf_write(&p, &k, 0, 1, 0, "\"value\":-499"), DS_OK);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},\"value\":\"%s\"}",
                         brand, e36),
                     DS_OUT_OF_RANGE);
    /* a leaf beyond range: proportional, equal, repeat with a percent */
    const char *fam = product_up(&k, k.np - 1, 1);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},"
                         "\"value\":\"1000000000000000000000\"}",
                         fam),
                     DS_OUT_OF_RANGE);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},"
                         "\"method\":\"equal\",\"value\":\"1000000000000000000000\"}",
                         fam),
                     DS_OUT_OF_RANGE);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},"
                         "\"method\":\"repeat\",\"delta\":999999999999999999}",
                         fam),
                     DS_OUT_OF_RANGE);
    ck_assert_int_eq(p.st.codes[DS_OUT_OF_RANGE], 7);
    same_state(&p, &(fx_rng){3}, 20);
    keys_close(&k, &p);
    pair_close(&p);
}
END_TEST

/* A batch refused at its last write changes nothing (the facts its spread
 * created are gone); its retry is a duplicate of the refusal, its
 * request_id with another body request_id_reused; a request_id is per
 * user. */
START_TEST(batch_refused_halfway_and_ledger)
{
    engine_opts o = test_opts((size_t)1 << 20, 3000);
    pair p;
    pair_open(&p, 44, &o);
    demo_keys k;
    keys_open(&k, &p);
    uint64_t before = engine_checksum(p.e);
    engine_stats s0, s1;
    engine_get_stats(p.e, &s0);
    int64_t seq = engine_seq(p.e);
    const char *fam = product_up(&k, 2, 1);
    char batch[2048];
    snprintf(batch, sizeof batch,
             "{\"writes\":[{\"column\":\"quantity\",\"cell\":" LEAF_CELL ",\"value\":7},"
             "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},\"method\":\"equal\","
             "\"value\":100000},"
             "{\"column\":\"quantity\",\"cell\":" LEAF_CELL ",\"delta\":999999999999999999}]}",
             key(&k, 0, k.pl[2]), key(&k, 1, k.cl[0]), key(&k, 2, k.tl[0]), fam,
             key(&k, 0, k.pl[2]), key(&k, 1, k.cl[0]), key(&k, 2, k.tl[1]));
    route b1 = {.rid = "b1"};
    ck_assert_int_eq(run(&p, REQ_BATCH, NULL, &b1, "%s", batch), DS_OUT_OF_RANGE);
    ck_assert_uint_eq(engine_checksum(p.e), before);
    engine_get_stats(p.e, &s1);
    ck_assert_uint_eq(s1.live_facts, s0.live_facts);
    ck_assert_uint_eq(s1.facts, s0.facts); /* no row left of the facts it created */
    ck_assert_int_eq(engine_seq(p.e), seq);
    same_state(&p, &(fx_rng){4}, 20);
    ck_assert_int_eq(run(&p, REQ_BATCH, NULL, &b1, "%s", batch), DS_OUT_OF_RANGE);
    ck_assert_int_eq(p.last_status, ENGINE_DUPLICATE);
    ck_assert_int_eq(leaf_write(&p, &k, 0, 0, 0, "\"value\":1"), DS_OK);
    ck_assert_int_eq(
        run(&p, REQ_CELL, NULL, &b1, "{\"column\":\"quantity\",\"cell\":{},\"delta\":1}"),
        DS_REQUEST_ID_REUSED);
    route v1 = {.user = "v", .rid = "b1"}; /* another user's b1 */
    ck_assert_int_eq(
        run(&p, REQ_CELL, NULL, &v1, "{\"column\":\"quantity\",\"cell\":{},\"delta\":1}"), DS_OK);
    ck_assert_int_eq(
        run(&p, REQ_CELL, NULL, &v1, "{\"column\":\"quantity\",\"cell\":{},\"delta\":1}"), DS_OK);
    ck_assert_int_eq(p.last_status, ENGINE_DUPLICATE);
    /* a batch refused at its second write by a hold over everything */
    ck_assert_int_eq(run(&p, REQ_BATCH, NULL, NULL,
                         "{\"writes\":[{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},"
                         "\"delta\":10},{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},"
                         "\"delta\":10,\"holds\":[{\"product\":\"%s\"}]}]}",
                         fam, fam, fam),
                     DS_HELD);
    same_state(&p, &(fx_rng){5}, 20);
    keys_close(&k, &p);
    pair_close(&p);
}
END_TEST

/* if_seq in each form: above the model's seq, a cell changed since, the
 * same cell twice in one batch, a spread over a changed cell, a member
 * added beneath the target, a member operation on a changed member. */
START_TEST(stale_matches)
{
    engine_opts o = test_opts((size_t)1 << 20, 3000);
    pair p;
    pair_open(&p, 45, &o);
    demo_keys k;
    keys_open(&k, &p);
    int64_t s = engine_seq(p.e);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"if_seq\":%lld,\"column\":\"quantity\",\"cell\":{},\"delta\":1}",
                         (long long)s + 1),
                     DS_STALE);
    ck_assert_int_eq(leaf_write(&p, &k, 3, 0, 0, "\"value\":11"), DS_OK);
    s = engine_seq(p.e);
    char w[256];
    snprintf(w, sizeof w, "\"value\":12,\"if_seq\":%lld", (long long)s - 1);
    ck_assert_int_eq(leaf_write(&p, &k, 3, 0, 0, w), DS_STALE);
    snprintf(w, sizeof w, "\"value\":11,\"if_seq\":%lld", (long long)s - 1); /* unchanged */
    ck_assert_int_eq(leaf_write(&p, &k, 3, 0, 0, w), DS_OK);
    ck_assert_int_eq(
        run(&p, REQ_BATCH, NULL, NULL,
            "{\"if_seq\":%lld,\"writes\":[{\"column\":\"quantity\",\"cell\":" LEAF_CELL
            ",\"value\":1},{\"column\":\"quantity\",\"cell\":" LEAF_CELL ",\"value\":2}]}",
            (long long)engine_seq(p.e), key(&k, 0, k.pl[3]), key(&k, 1, k.cl[0]),
            key(&k, 2, k.tl[0]), key(&k, 0, k.pl[3]), key(&k, 1, k.cl[0]), key(&k, 2, k.tl[0])),
        DS_OK);
    const char *fam = product_up(&k, 3, 1);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"if_seq\":%lld,\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},"
                         "\"percent\":50}",
                         (long long)engine_seq(p.e) - 1, fam),
                     DS_STALE);
    ck_assert_int_eq(run(&p, REQ_MEMBER, "product", NULL,
                         "{\"op\":\"add\",\"parent\":\"%s\",\"key\":\"NEW1\"}", fam),
                     DS_OK);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"if_seq\":%lld,\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},"
                         "\"percent\":50}",
                         (long long)engine_seq(p.e) - 1, fam),
                     DS_STALE);
    ck_assert_int_eq(run(&p, REQ_MEMBER, "product", NULL,
                         "{\"if_seq\":%lld,\"op\":\"move\",\"member\":\"NEW1\",\"parent\":\"%s\"}",
                         (long long)engine_seq(p.e) - 1, product_up(&k, 0, 1)),
                     DS_STALE);
    ck_assert_int_eq(run(&p, REQ_MEMBER, "product", NULL,
                         "{\"if_seq\":%lld,\"op\":\"delete\",\"member\":\"NEW1\"}",
                         (long long)engine_seq(p.e)),
                     DS_OK);
    ck_assert_int_eq(p.st.codes[DS_STALE], 5);
    same_state(&p, &(fx_rng){6}, 20);
    keys_close(&k, &p);
    pair_close(&p);
}
END_TEST

/* A product leaf with facts (its quantity total is not zero). */
static size_t leaf_with_facts(pair *p, const demo_keys *k, size_t from)
{
    for (size_t i = from; i < k->np; i++) {
        ds_cell c;
        memset(&c, 0, sizeof c);
        for (int d = 0; d < k->m->ndims; d++)
            c.m[d] = k->m->dims[d].root;
        c.m[0] = k->pl[i];
        ds_i128 v;
        int64_t seq;
        ds_error err;
        if (engine_read_cell(p->e, &c, 0, &v, &seq, &err) == 0 && v != 0)
            return i;
    }
    ck_abort_msg("no product leaf has facts");
    return 0;
}

/* Member operations and their refusals: facts_to for a new child or a
 * moved member under a leaf with facts, force, the root, a member beneath
 * itself, a key taken, rename. */
START_TEST(member_operations_match)
{
    engine_opts o = test_opts((size_t)1 << 20, 3000);
    pair p;
    pair_open(&p, 46, &o);
    demo_keys k;
    keys_open(&k, &p);
    size_t a = leaf_with_facts(&p, &k, 0), b = leaf_with_facts(&p, &k, a + 1);
    const char *pa = key(&k, 0, k.pl[a]), *pb = key(&k, 0, k.pl[b]);
    const char *fam = product_up(&k, k.np - 1, 1), *root = key(&k, 0, k.m->dims[0].root);
    struct {
        const char *fmt, *x, *y;
        int code;
    } ops[] = {
        {"{\"op\":\"add\",\"parent\":\"%s\",\"key\":\"A1\"}", pa, NULL, DS_INVALID_VALUE},
        {"{\"op\":\"add\",\"parent\":\"%s\",\"key\":\"A1\",\"facts_to\":\"%s\"}", pa, pb,
         DS_INVALID_VALUE},
        {"{\"op\":\"add\",\"parent\":\"%s\",\"key\":\"A1\",\"facts_to\":\"A1\"}", pa, NULL, DS_OK},
        {"{\"op\":\"add\",\"parent\":\"%s\",\"key\":\"A1\"}", fam, NULL, DS_INVALID_VALUE},
        {"{\"op\":\"add\",\"parent\":\"%s\",\"key\":\"E1\"}", fam, NULL, DS_OK},
        {"{\"op\":\"move\",\"member\":\"E1\",\"parent\":\"%s\"}", pb, NULL, DS_INVALID_VALUE},
        {"{\"op\":\"move\",\"member\":\"E1\",\"parent\":\"%s\",\"facts_to\":\"%s\"}", pb, pa,
         DS_INVALID_VALUE},
        {"{\"op\":\"move\",\"member\":\"A1\",\"parent\":\"%s\",\"facts_to\":\"A1\"}", pb, NULL,
         DS_INVALID_VALUE},
        {"{\"op\":\"move\",\"member\":\"E1\",\"parent\":\"%s\",\"facts_to\":\"E1\"}", pb, NULL,
         DS_OK},
        {"{\"op\":\"move\",\"member\":\"%s\",\"parent\":\"%s\"}", root, fam, DS_INVALID_VALUE},
        {"{\"op\":\"move\",\"member\":\"%s\",\"parent\":\"E1\"}", pb, NULL, DS_INVALID_VALUE},
        {"{\"op\":\"move\",\"member\":\"%s\",\"parent\":\"%s\"}", pa, fam, DS_OK},
        {"{\"op\":\"delete\",\"member\":\"%s\"}", root, NULL, DS_INVALID_VALUE},
        {"{\"op\":\"delete\",\"member\":\"%s\"}", pb, NULL, DS_INVALID_VALUE},
        {"{\"op\":\"delete\",\"member\":\"%s\",\"force\":true}", pb, NULL, DS_OK},
        {"{\"op\":\"rename\",\"member\":\"A1\",\"name\":\"Renamed\"}", NULL, NULL, DS_OK},
        {"{\"op\":\"add\",\"parent\":\"%s\",\"key\":\"%s\"}", fam, pb, DS_OK}, /* a key freed */
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(ops); i++) {
        char body[1024];
        snprintf(body, sizeof body, ops[i].fmt, ops[i].x, ops[i].y);
        ck_assert_msg(run(&p, REQ_MEMBER, "product", NULL, "%s", body) == ops[i].code, "%s", body);
    }
    /* writes after the moves: spreads over the changed trees */
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},\"delta\":1001}",
                         fam),
                     DS_OK);
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, NULL,
                         "{\"column\":\"net_amount\",\"cell\":{\"product\":\"%s\"},"
                         "\"method\":\"repeat\",\"percent\":3,\"holds\":[{\"product\":\"%s\"}]}",
                         product_up(&k, k.np - 1, 2), fam),
                     DS_OK);
    same_state(&p, &(fx_rng){7}, 40);
    keys_close(&k, &p);
    pair_close(&p);
}
END_TEST

/* The ledger forgets a request_id after the retention window (in stream
 * time): the same id then applies anew. */
START_TEST(retention_matches)
{
    engine_opts o = test_opts((size_t)1 << 20, 3000);
    o.retention_ms = 1000;
    pair p;
    pair_open(&p, 47, &o);
    route t1 = {.rid = "t1"};
    const char *b1 = "{\"column\":\"quantity\",\"cell\":{},\"delta\":3}";
    const char *b2 = "{\"column\":\"quantity\",\"cell\":{},\"delta\":4}";
    int64_t t0 = p.ts;
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, &t1, "%s", b1), DS_OK);
    p.ts = t0 + 500;
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, &t1, "%s", b2), DS_REQUEST_ID_REUSED);
    p.ts = t0 + 1000; /* the last moment it is remembered */
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, &t1, "%s", b1), DS_OK);
    ck_assert_int_eq(p.last_status, ENGINE_DUPLICATE);
    p.ts = t0 + 1001;
    ck_assert_int_eq(run(&p, REQ_CELL, NULL, &t1, "%s", b2), DS_OK);
    ck_assert_int_eq(p.last_status, ENGINE_APPLIED);
    same_state(&p, &(fx_rng){8}, 10);
    pair_close(&p);
}
END_TEST

/* The too_many_cells count at the cap and one below: the missing cells an
 * equal spread over a brand fills, and with a hold the unheld ones. */
START_TEST(fill_cap_boundary)
{
    const char *fmt[] = {
        "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},\"method\":\"equal\","
        "\"value\":100000}",
        "{\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},\"method\":\"repeat\","
        "\"value\":7,\"holds\":[{\"time\":\"2025\"}]}"};
    for (size_t f = 0; f < DS_ARRAY_LEN(fmt); f++) {
        int64_t count = 0;
        for (int step = 0; step < 3; step++) { /* cap 0, then the count, then one below */
            int64_t cap = step == 0 ? 0 : step == 1 ? count : count - 1;
            engine_opts o = test_opts((size_t)1 << 20, cap);
            pair p;
            pair_open(&p, 48, &o);
            demo_keys k;
            keys_open(&k, &p);
            int code = run(&p, REQ_CELL, NULL, NULL, fmt[f], product_up(&k, 5, 2));
            ck_assert_int_eq(code, step == 1 ? DS_OK : DS_TOO_MANY_CELLS);
            if (step == 0)
                count = p.last_err.count;
            else if (step == 2)
                ck_assert_int_eq(p.last_err.count, count);
            ck_assert_int_gt(count, 0);
            same_state(&p, &(fx_rng){9}, 5);
            keys_close(&k, &p);
            pair_close(&p);
        }
    }
}
END_TEST

Suite *engine_ref_suite(void)
{
    Suite *s = suite_create("engine_ref");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, random_commands_match, 0, (int)DS_ARRAY_LEN(runs));
    tcase_add_test(tc, edges_match);
    tcase_add_test(tc, out_of_range_matches);
    tcase_add_test(tc, batch_refused_halfway_and_ledger);
    tcase_add_test(tc, stale_matches);
    tcase_add_test(tc, member_operations_match);
    tcase_add_test(tc, retention_matches);
    tcase_add_test(tc, fill_cap_boundary);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(engine_ref_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
