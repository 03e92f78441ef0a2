/* fuzz_request.c: libFuzzer target for the request decoder (src/request.c)
 * the way the HTTP layer runs it: json_parse with the server's limits,
 * request_check (400s), the model the body names, request_resolve (404s,
 * 422s, exact values) against the demo model `sales` plus a dimension of
 * awkward names (a key that is another member's name, an ambiguous name,
 * UTF-8). The input's first byte picks the request kind and the path's
 * dimension; the rest is the body.
 *
 * Every error renders as strict JSON (request_put_error) with a code its
 * step may give. Every decoded command names live members, and its
 * canonical form decodes again (REQ_CANONICAL, as the writer does) to the
 * same canonical bytes and hash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "request.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_request: %s:%d: %s\n", __FILE__, __LINE__, #c);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ds_model *M;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    demo_opts o = {.seed = 7, .facts = 2000};
    M = demo_model(&o);
    /* names that resolution has to get right */
    CHECK(model_add_dim(M, 3, "scenario", "All", "All scenarios", NULL) == 3);
    ds_dim *d = &M->dims[3];
    int32_t plan = model_add_member(d, d->root, "Plan", "Actual", 0, NULL);
    model_add_member(d, d->root, "Actual", "Plan", 1, NULL);
    model_add_member(d, plan, "dup-a", "Twin", 0, NULL);
    model_add_member(d, plan, "dup-b", "Twin", 1, NULL);
    model_add_member(d, plan, "\xc3\xbc-1",
                     "\xc3\x9cn\xc3\xaf"
                     "code \xf0\x9f\x93\x88",
                     2, NULL);
    model_add_member(d, plan, "All products", "S01", 3, NULL);
    model_dim_index(d);
    CHECK(model_add_measure(M, 2, "price", 6, NULL) == 2);
    return 0;
}

/* The error renders as strict JSON, as the HTTP layer would send it. */
static void check_error(const ds_error *e, int rc, unsigned allowed)
{
    CHECK(rc < 0 && rc == -(int)e->code);
    if (!(allowed & (1u << e->code)))
        fprintf(stderr, "fuzz_request: unexpected %s: %s\n", ds_code_name(e->code), e->message);
    CHECK(allowed & (1u << e->code));
    ds_buf b;
    ds_buf_init(&b, 1 << 20);
    json_w w;
    jw_init(&w, &b);
    request_put_error(&w, e);
    json_val *root;
    ds_error e2;
    int prc = json_parse(b.data, b.len, NULL, &root, &e2);
    if (prc)
        fprintf(stderr, "fuzz_request: error response is not JSON (%s): %s\n", e2.message, b.data);
    CHECK(prc == 0);
    json_val *err = json_get(root, "error");
    size_t n;
    CHECK(err && json_kind_of(json_get(err, "code")) == JSON_STRING);
    CHECK(strcmp(json_str(json_get(err, "code"), &n), ds_code_name(e->code)) == 0);
    json_free(root);
    ds_buf_free(&b);
}

static void check_member(const ds_model *m, int dim, int32_t id, bool hold)
{
    CHECK(dim >= 0 && dim < m->ndims);
    if (hold && id == -1)
        return;
    CHECK(id >= 0 && id < m->dims[dim].nmembers && m->dims[dim].members[id].alive);
}

static void check_command(const ds_model *m, const req_decoded *d)
{
    if (d->cmd.kind == COMMAND_WRITE) {
        CHECK(d->cmd.nwrites >= 1);
        for (size_t i = 0; i < d->cmd.nwrites; i++) {
            const ds_write *w = &d->cmd.writes[i];
            CHECK(w->measure >= 0 && w->measure < m->nmeasures);
            CHECK(w->nholds >= 0 && w->nholds <= REQ_MAX_HOLDS);
            for (int k = 0; k < m->ndims; k++) {
                check_member(m, k, w->cell.m[k], false);
                for (int h = 0; h < w->nholds; h++)
                    check_member(m, k, w->holds[h].m[k], true);
            }
        }
    } else {
        const ds_member_op *op = &d->member;
        CHECK(op->kind >= MEMBER_ADD && op->kind <= MEMBER_DELETE);
        check_member(m, op->dim, op->parent, false);
        if (op->kind != MEMBER_ADD)
            check_member(m, op->dim, op->member, false);
        else
            CHECK(op->key != NULL);
        if (op->facts_to >= 0)
            check_member(m, op->dim, op->facts_to, false);
        else
            CHECK(op->facts_to == -1 || (op->facts_to == -2 && op->kind == MEMBER_ADD));
    }
}

static bool same_write(const ds_write *a, const ds_write *b, int ndims)
{
    if (a->measure != b->measure || a->method != b->method || a->form != b->form ||
        a->amount != b->amount || a->nholds != b->nholds ||
        (a->form == SPREAD_PERCENT && a->pct_scale != b->pct_scale))
        return false;
    for (int k = 0; k < ndims; k++) {
        if (a->cell.m[k] != b->cell.m[k])
            return false;
        for (int h = 0; h < a->nholds; h++)
            if (a->holds[h].m[k] != b->holds[h].m[k])
                return false;
    }
    return true;
}

/* The canonical form decodes (as the writer decodes it) to itself. */
static void check_canonical(const ds_model *m, const req_decoded *d)
{
    json_limits lim;
    json_limits_default(&lim);
    lim.max_bytes = (size_t)1 << 30;
    json_val *root;
    ds_error e;
    int rc = json_parse(d->canonical, d->canonical_len, &lim, &root, &e);
    if (rc == 0)
        rc = request_check(root, REQ_CANONICAL, &e);
    size_t tl;
    const char *t = rc == 0 ? request_table(root, &tl) : NULL;
    CHECK(rc != 0 || (t && tl == strlen(m->name) && memcmp(t, m->name, tl) == 0));
    ds_arena a = {0};
    req_decoded d2;
    if (rc == 0)
        rc = request_resolve(root, REQ_CANONICAL, m, NULL, &a, &d2, &e);
    if (rc)
        fprintf(stderr, "fuzz_request: canonical form refused (%s): %.*s\n", e.message,
                (int)d->canonical_len, d->canonical);
    CHECK(rc == 0);
    CHECK(d2.canonical_len == d->canonical_len &&
          memcmp(d2.canonical, d->canonical, d->canonical_len) == 0);
    CHECK(strcmp(d2.hash, d->hash) == 0 && strlen(d->hash) == 64);
    CHECK(d2.cmd.kind == d->cmd.kind && d2.if_seq == d->if_seq);
    CHECK(d2.request_id == NULL); /* the canonical form has none */
    if (d->cmd.kind == COMMAND_WRITE) {
        CHECK(d2.cmd.nwrites == d->cmd.nwrites && d2.cmd.batch == d->cmd.batch);
        for (size_t i = 0; i < d->cmd.nwrites; i++)
            CHECK(same_write(&d->cmd.writes[i], &d2.cmd.writes[i], m->ndims));
    } else {
        const ds_member_op *x = &d->member, *y = &d2.member;
        CHECK(x->kind == y->kind && x->dim == y->dim && x->member == y->member &&
              x->parent == y->parent && x->facts_to == y->facts_to && x->force == y->force);
        CHECK(!x->key == !y->key && (!x->key || strcmp(x->key, y->key) == 0));
        CHECK(!x->name == !y->name && (!x->name || strcmp(x->name, y->name) == 0));
    }
    ds_arena_free(&a);
    json_free(root);
}

#define BIT(c) (1u << (c))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const dims[] = {"product", "customer", "time",    "scenario",
                                       "nope",    "",         "Product", "time "};
    if (size < 1)
        return 0;
    req_kind kind = (req_kind)(data[0] % 5);
    const char *path_dim = kind == REQ_MEMBER ? dims[(data[0] >> 4) & 7] : NULL;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    /* http__body: the server's limits, then the shape */
    json_limits lim = {.max_bytes = 1 << 20, .max_depth = 32, .max_string = 64 * 1024};
    json_val *root;
    ds_error e;
    int rc = json_parse(body, len, &lim, &root, &e);
    if (rc == 0 && (rc = request_check(root, kind, &e)))
        json_free(root);
    if (rc) {
        check_error(&e, rc, BIT(DS_MALFORMED) | BIT(DS_TOO_LARGE));
        return 0;
    }
    /* write_model: the model the body names */
    size_t tl;
    const char *t = request_table(root, &tl);
    if ((kind == REQ_UPDATE_CELL || kind == REQ_CANONICAL) &&
        !(t && tl == strlen(M->name) && memcmp(t, M->name, tl) == 0)) {
        json_free(root);
        return 0;
    }
    ds_arena a = {0};
    req_decoded d;
    rc = request_resolve(root, kind, M, path_dim, &a, &d, &e);
    if (rc) {
        check_error(&e, rc,
                    BIT(DS_NOT_FOUND) | BIT(DS_INVALID_VALUE) | BIT(DS_OUT_OF_RANGE) |
                        BIT(DS_AMBIGUOUS_MEMBER) | BIT(DS_MALFORMED));
    } else {
        CHECK(d.canonical && d.canonical_len == strlen(d.canonical));
        CHECK(d.cmd.if_seq == d.if_seq && d.cmd.request_id == d.request_id);
        check_command(M, &d);
        check_canonical(M, &d);
    }
    ds_arena_free(&a);
    json_free(root);
    return 0;
}
