/* The store against a real DuckDB file, written the way the server writes
 * it: every command is decided by an engine loaded from the file and its
 * delta persisted with store_persist (engine_fixture.c: fx_apply). What is
 * checked is what the file holds: cells and grids summed by SQL
 * (store_read_cell, store_read_grid, each also equal to the engine's
 * answer), the original cases 3, 4 and 5 (Brand X proportionally, a parent
 * whose children are all zero, the view equal to the sums of the facts),
 * multi-dimensional spreads, holds, member operations in ds_member and
 * ds_closure (also after reopening), refusals that leave the checksum of
 * catalog and facts unchanged while the ledger records them, and, with
 * DuckDB opened directly after the store is closed, the view, the command
 * log ds_command and the leaf log l_<id>. */
#include <check.h>
#include <duckdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decimal.h"
#include "demo.h"
#include "engine_fixture.h"
#include "persist.h"
#include "store.h"

static char path[300];
static ds_store *S;
static ds_engine *ENG;
static const ds_model *M; /* the store's snapshot: the persisted catalog */
static ds_reader *R;
static ds_error E;

/* Reopens the file with an engine loaded from it (change_cap: entries an
 * outcome lists; create_cap: cells a spread may fill). */
static void open_store(size_t change_cap, int64_t create_cap)
{
    S = fx_reopen();
    engine_opts o;
    engine_opts_default(&o);
    o.change_cap = change_cap;
    o.create_cap = create_cap;
    ENG = fx_engine_from(S, &o);
    M = store_model_acquire(S, DEMO_MODEL, strlen(DEMO_MODEL));
    ck_assert_ptr_nonnull(M);
    R = store_reader_new(S);
    ck_assert_ptr_nonnull(R);
}

static void close_store(void)
{
    store_reader_free(R);
    store_model_release(S, M);
    engine_free(ENG);
    store_close(S);
    R = NULL;
    M = NULL;
    ENG = NULL;
    S = NULL;
}

/* The demo at 20,000 facts, made once; each test gets a copy of its file
 * in a fresh data directory. */
static char demo_dir[sizeof fx_dir];

static void make_demo(void)
{
    store_close(fx_open_demo(20000, 7));
    memcpy(demo_dir, fx_dir, sizeof demo_dir);
}

static void remove_demo(void)
{
    memcpy(fx_dir, demo_dir, sizeof fx_dir);
    fx_remove_dir();
}

static void setup(void)
{
    fx_copy_dir(demo_dir);
    snprintf(path, sizeof path, "%s/t.db", fx_dir);
    open_store(1000, 1000000);
}

static void teardown(void)
{
    if (S)
        close_store();
    fx_remove_dir();
}

static int dim(const char *name)
{
    int k = model_find_dim(M, name, strlen(name));
    ck_assert_int_ge(k, 0);
    return k;
}

static int32_t member(const char *d, const char *text)
{
    int32_t id;
    ck_assert_msg(model_resolve_member(&M->dims[dim(d)], text, strlen(text), &id, &E) == 0,
                  "%s: %s", text, E.message);
    return id;
}

/* A cell from up to three "dim=member" pairs (NULL ends). */
static ds_cell cell3(const char *a, const char *b, const char *c)
{
    ds_cell x = {{0}};
    for (int k = 0; k < M->ndims; k++)
        x.m[k] = M->dims[k].root;
    const char *parts[] = {a, b, c};
    for (int i = 0; i < 3 && parts[i]; i++) {
        const char *eq = strchr(parts[i], '=');
        char d[64];
        snprintf(d, sizeof d, "%.*s", (int)(eq - parts[i]), parts[i]);
        x.m[dim(d)] = member(d, eq + 1);
    }
    return x;
}

/* A cell's value summed by SQL from the file; the engine must agree. */
static ds_i128 read_cell(ds_cell c, int measure)
{
    ds_i128 v, ev;
    int64_t seq, eseq;
    ck_assert_msg(store_read_cell(R, M, &c, measure, &v, &seq, &E) == 0, "%s", E.message);
    ck_assert_msg(engine_read_cell(ENG, &c, measure, &ev, &eseq, &E) == 0, "%s", E.message);
    ck_assert_msg(v == ev, "cell (%d,%d,%d) measure %d: file %lld, engine %lld", c.m[0], c.m[1],
                  c.m[2], measure, (long long)v, (long long)ev);
    ck_assert_int_eq(seq, eseq);
    return v;
}

/* The persisted seq, which the engine's must equal. */
static int64_t seq_now(void)
{
    int64_t seq = store_model_seq(S, DEMO_MODEL);
    ck_assert_int_eq(seq, engine_seq(ENG));
    return seq;
}

static void refresh_model(void)
{
    store_model_release(S, M);
    M = store_model_acquire(S, DEMO_MODEL, strlen(DEMO_MODEL));
}

/* The file's facts and catalog hash equal to the engine's. */
static void same_as_engine(void)
{
    ck_assert_uint_eq(fx_store_sum(S), engine_checksum(ENG));
}

static uint64_t checksum(void)
{
    uint64_t h;
    ck_assert_msg(store_checksum(R, &h, &E) == 0, "%s", E.message);
    return h;
}

/* Applies a body (printf-style) of kind (dim: the path's dimension of
 * REQ_MEMBER) through the engine and persists it: 0, or the negative code
 * of the refusal (E says why). res (NULL: not kept) holds the engine's
 * result; clear it with engine_result_clear(). */
static int apply_v(req_kind kind, const char *dim, engine_result *res, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static int apply_v(req_kind kind, const char *dim, engine_result *res, const char *fmt, va_list ap)
{
    ds_buf b;
    fx_vformat(&b, fmt, ap);
    int rc = fx_apply(S, ENG, b.data, kind, dim, res, &E);
    ds_buf_free(&b);
    return rc;
}

static int apply(req_kind kind, engine_result *res, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int apply(req_kind kind, engine_result *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = apply_v(kind, NULL, res, fmt, ap);
    va_end(ap);
    return rc;
}

/* A member operation on product (body printf-style); the snapshot M
 * follows it. */
static int member_op(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int member_op(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = apply_v(REQ_MEMBER, "product", NULL, fmt, ap);
    va_end(ap);
    if (rc == 0)
        refresh_model();
    return rc;
}

/* "cell":{...} of a cell by member keys (roots left out). */
static void put_cell(ds_buf *b, const ds_cell *c)
{
    ds_buf_puts(b, "\"cell\":{");
    bool first = true;
    for (int k = 0; k < M->ndims; k++) {
        const ds_dim *d = &M->dims[k];
        if (c->m[k] == d->root)
            continue;
        ds_buf_printf(b, "%s\"%s\":\"%s\"", first ? "" : ",", d->name, d->members[c->m[k]].key);
        first = false;
    }
    ds_buf_puts(b, "}");
}

/* One write of amount (minor units of the measure; whole percent) with a
 * method, holds (a JSON array, or NULL) and if_seq (-1: none). */
static int write_cell(ds_cell c, int measure, spread_method method, spread_form form,
                      ds_i128 amount, const char *holds, int64_t if_seq, engine_result *res)
{
    static const char *const forms[] = {"value", "delta", "percent"};
    static const char *const methods[] = {"proportional", "equal", "repeat"};
    char num[DEC_BUFSZ];
    dec_format(amount, form == SPREAD_PERCENT ? 0 : M->measures[measure].scale, num);
    ds_buf b;
    ds_buf_init(&b, 1 << 20);
    ds_buf_printf(&b, "{\"column\":\"%s\",", M->measures[measure].name);
    put_cell(&b, &c);
    ds_buf_printf(&b, ",\"%s\":\"%s\",\"method\":\"%s\"", forms[form], num, methods[method]);
    if (holds)
        ds_buf_printf(&b, ",\"holds\":%s", holds);
    if (if_seq >= 0)
        ds_buf_printf(&b, ",\"if_seq\":%lld", (long long)if_seq);
    ds_buf_puts(&b, "}");
    int rc = fx_apply(S, ENG, b.data, REQ_CELL, NULL, res, &E);
    ds_buf_free(&b);
    return rc;
}

/* floor(a*b/c) and whether it is exact. */
static ds_i128 share_floor(ds_i128 a, ds_i128 b, ds_i128 c, bool *exact)
{
    ds_i128 q, r;
    if (c < 0) {
        a = -a;
        c = -c;
    }
    ck_assert(dec_muldiv(a, b, c, &q, &r));
    *exact = r == 0;
    return q;
}

static void assert_floor_or_ceil(ds_i128 got, ds_i128 a, ds_i128 b, ds_i128 c)
{
    bool exact;
    ds_i128 f = share_floor(a, b, c, &exact);
    ck_assert_msg(got == f || (!exact && got == f + 1),
                  "value %lld is not floor/ceil of %lld*%lld/%lld", (long long)got, (long long)a,
                  (long long)b, (long long)c);
}

static bool same_cell(const ds_cell *a, const ds_cell *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

static bool is_leaf_cell(const ds_cell *c)
{
    for (int k = 0; k < M->ndims; k++)
        if (!model_is_leaf(&M->dims[k], c->m[k]))
            return false;
    return true;
}

/* ---- the original case 1: a leaf write rolls up -------------------------------- */

START_TEST(leaf_write_rolls_up)
{
    ds_cell leaf = cell3("product=P-0003", "customer=C-0002", "time=2025-03");
    ds_cell brand = cell3("product=S01-B1", "time=2025", NULL);
    ds_i128 before = read_cell(leaf, 0), brand_before = read_cell(brand, 0);
    int64_t seq0 = seq_now();
    engine_result res;
    ck_assert_msg(write_cell(leaf, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 777, NULL, -1, &res) == 0,
                  "%s", E.message);
    ck_assert_int_eq(res.seq, seq0 + 1);
    ck_assert_int_eq(seq_now(), seq0 + 1);
    ck_assert(read_cell(leaf, 0) == 777);
    ck_assert(read_cell(brand, 0) == brand_before + 777 - before);
    ds_changeset *cs = &res.out.sets[0];
    ck_assert(cs->leaf);
    ck_assert(cs->target.old_value == before && cs->target.new_value == 777);
    ck_assert_int_eq(cs->leaves_changed, 777 != before);
    /* the target first, then every cell above it: 5 x 3 x 4 - 1 of them,
     * each as the file sums it */
    ck_assert_uint_eq(cs->nchanges, 60);
    ck_assert(!cs->truncated);
    ck_assert(same_cell(&cs->changes[0].cell, &leaf));
    bool saw_brand = false;
    for (size_t i = 1; i < cs->nchanges; i++) {
        ds_change *c = &cs->changes[i];
        ck_assert(c->new_value - c->old_value == 777 - before);
        ck_assert(read_cell(c->cell, 0) == c->new_value);
        saw_brand |= same_cell(&c->cell, &brand);
    }
    ck_assert(saw_brand);
    engine_result_clear(&res);
    /* writing the same value again is applied with a seq and changes nothing */
    ck_assert(write_cell(leaf, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 777, NULL, -1, &res) == 0);
    ck_assert_int_eq(res.seq, seq0 + 2);
    ck_assert_int_eq(seq_now(), seq0 + 2);
    ck_assert_int_eq(res.out.sets[0].leaves_changed, 0);
    engine_result_clear(&res);
    /* delta and percent on a leaf */
    ck_assert(write_cell(leaf, 0, SPREAD_PROPORTIONAL, SPREAD_DELTA, 23, NULL, -1, NULL) == 0);
    ck_assert(read_cell(leaf, 0) == 800);
    ck_assert(write_cell(leaf, 0, SPREAD_PROPORTIONAL, SPREAD_PERCENT, -15, NULL, -1, NULL) == 0);
    ck_assert(read_cell(leaf, 0) == 680); /* -15% of 800 */
    same_as_engine();
}
END_TEST

START_TEST(leaf_write_creates_missing_fact)
{
    /* find a missing cell: a customer with no fact in some month */
    ds_cell c = cell3("product=P-0001", "customer=C-0001", NULL);
    int32_t *months;
    size_t n = model_leaves(&M->dims[2], M->dims[2].root, &months);
    ds_cell leaf = c;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        leaf.m[2] = months[i];
        found = read_cell(leaf, 0) == 0;
    }
    free(months);
    ck_assert(found);
    ds_i128 total = read_cell(c, 1);
    ck_assert(write_cell(leaf, 1, SPREAD_PROPORTIONAL, SPREAD_SET, 1234567, NULL, -1, NULL) == 0);
    ck_assert(read_cell(leaf, 1) == 1234567);
    ck_assert(read_cell(c, 1) == total + 1234567);
    ck_assert(read_cell(leaf, 0) == 0); /* the other measure stays missing */
    same_as_engine();
}
END_TEST

/* ---- the original case 3: Brand X proportionally ---------------------------------- */

START_TEST(brand_x_proportional)
{
    close_store();
    open_store(1000000, 1000000);
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    ds_cell other = cell3("product=S01-B1", NULL, NULL);
    ds_i128 old_total = read_cell(bx, 0), other_before = read_cell(other, 0);
    ds_i128 target = old_total * 3 / 2 + 7;
    engine_result res;
    ck_assert_msg(write_cell(bx, 0, SPREAD_PROPORTIONAL, SPREAD_SET, target, NULL, -1, &res) == 0,
                  "%s", E.message);
    ds_changeset *cs = &res.out.sets[0];
    ck_assert(!cs->truncated && !cs->leaves_truncated);
    ck_assert_int_eq(cs->method, SPREAD_PROPORTIONAL);
    ck_assert(cs->target.old_value == old_total && cs->target.new_value == target);
    ck_assert(read_cell(bx, 0) == target);
    ck_assert(read_cell(other, 0) == other_before);
    /* every changed leaf is the floor or ceiling of its exact share (leaves
     * whose value stays are not listed) and holds its value in the file;
     * the changes add up exactly */
    ds_i128 sum_new = 0, sum_old = 0;
    for (size_t i = 0; i < cs->nleaves; i++) {
        ds_change *c = &cs->leaves[i];
        ck_assert(is_leaf_cell(&c->cell));
        sum_new += c->new_value;
        sum_old += c->old_value;
        ck_assert(c->old_value != 0);
        assert_floor_or_ceil(c->new_value, target, c->old_value, old_total);
        if (i % 97 == 0)
            ck_assert(read_cell(c->cell, 0) == c->new_value);
    }
    ck_assert_int_eq((int64_t)cs->nleaves, cs->leaves_changed);
    ck_assert(sum_new - sum_old == target - old_total);
    /* families (children one level down) are floor or ceiling too */
    int32_t bxm = member("product", "Brand X");
    const ds_dim *pd = &M->dims[dim("product")];
    int fams = 0;
    for (int32_t j = pd->kid_start[bxm]; j < pd->kid_start[bxm + 1]; j++) {
        ds_cell f = bx;
        f.m[0] = pd->kids[j];
        for (size_t i = 1; i < cs->nchanges; i++)
            if (same_cell(&cs->changes[i].cell, &f)) {
                assert_floor_or_ceil(cs->changes[i].new_value, target, cs->changes[i].old_value,
                                     old_total);
                ck_assert(read_cell(f, 0) == cs->changes[i].new_value);
                fams++;
            }
    }
    ck_assert_int_eq(fams, 4);
    engine_result_clear(&res);
    same_as_engine();
}
END_TEST

/* ---- the original case 4: a parent whose children are all zero ------------------ */

START_TEST(all_zero_children_equal)
{
    ck_assert_msg(member_op("{\"op\":\"add\",\"parent\":\"Brand X\",\"key\":\"BX-NEW\","
                            "\"name\":\"New family\"}") == 0,
                  "%s", E.message);
    const char *keys[] = {"BX-NEW-1", "BX-NEW-2", "BX-NEW-3"};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(member_op("{\"op\":\"add\",\"parent\":\"BX-NEW\",\"key\":\"%s\"}", keys[i]) ==
                          0,
                      "%s", E.message);
    ds_cell fam = cell3("product=BX-NEW", "customer=C-0001", "time=2025");
    ck_assert(read_cell(fam, 0) == 0);
    ds_cell bx = cell3("product=Brand X", "customer=C-0001", "time=2025");
    ds_i128 bx_before = read_cell(bx, 0);
    engine_result res;
    ck_assert_msg(write_cell(fam, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 100, NULL, -1, &res) == 0,
                  "%s", E.message);
    ck_assert_int_eq(res.out.sets[0].method, SPREAD_EQUAL);
    /* 3 products x 12 months: 100/36 each -> 2 or 3, sum exact */
    ck_assert_int_eq(res.out.sets[0].leaves_changed, 36);
    engine_result_clear(&res);
    ck_assert(read_cell(fam, 0) == 100);
    ck_assert(read_cell(bx, 0) == bx_before + 100);
    for (int i = 0; i < 3; i++) {
        char pc[32];
        snprintf(pc, sizeof pc, "product=%s", keys[i]);
        ds_i128 p = read_cell(cell3(pc, "customer=C-0001", "time=2025"), 0);
        assert_floor_or_ceil(p, 100, 12, 36); /* each product: 33 or 34 */
        for (int q = 1; q <= 4; q++) {
            char t[32];
            snprintf(t, sizeof t, "time=2025-Q%d", q);
            ds_i128 v = read_cell(cell3(pc, "customer=C-0001", t), 0);
            ck_assert(v >= 8 && v <= 9); /* 100*3/36 = 8.33 */
        }
    }
    same_as_engine();
}
END_TEST

/* ---- a multi-dimensional target: Brand X in 2025 ------------------------------ */

START_TEST(multidimensional_brand_x_2025)
{
    close_store();
    open_store(1000000, 1000000);
    ds_cell c = cell3("product=Brand X", "time=2025", NULL);
    ds_cell y2024 = cell3("product=Brand X", "time=2024", NULL);
    ds_cell all2025 = cell3("time=2025", NULL, NULL);
    ds_i128 old = read_cell(c, 1), keep = read_cell(y2024, 1), all = read_cell(all2025, 1);
    ds_i128 target = 123456789; /* 1,234,567.89 */
    engine_result res;
    ck_assert_msg(write_cell(c, 1, SPREAD_PROPORTIONAL, SPREAD_SET, target, NULL, -1, &res) == 0,
                  "%s", E.message);
    ck_assert(read_cell(c, 1) == target);
    ck_assert(read_cell(y2024, 1) == keep);
    ck_assert(read_cell(all2025, 1) == all - old + target);
    /* children one level down in both dimensions: families and quarters.
     * Families lie on the apportionment path (the first dimension), so each
     * is the floor or ceiling of its exact share; quarters sum exactly. */
    ds_changeset *cs = &res.out.sets[0];
    int fam = 0, quarters = 0;
    ds_i128 qsum = 0;
    for (size_t i = 1; i < cs->nchanges; i++) {
        ds_change *ch = &cs->changes[i];
        bool under = model_is_under(&M->dims[0], ch->cell.m[0], c.m[0]) &&
                     model_is_under(&M->dims[2], ch->cell.m[2], c.m[2]);
        if (!under || ch->cell.m[1] != M->dims[1].root)
            continue;
        if (M->dims[0].members[ch->cell.m[0]].depth == 3 && ch->cell.m[2] == c.m[2]) {
            fam++;
            assert_floor_or_ceil(ch->new_value, target, ch->old_value, old);
        } else if (ch->cell.m[0] == c.m[0] && M->dims[2].members[ch->cell.m[2]].depth == 2) {
            quarters++;
            qsum += ch->new_value;
        } else {
            continue;
        }
        ck_assert(read_cell(ch->cell, 1) == ch->new_value);
    }
    ck_assert_int_eq(fam, 4);
    ck_assert_int_eq(quarters, 4);
    ck_assert(qsum == target);
    engine_result_clear(&res);
    same_as_engine();
}
END_TEST

/* ---- holds ------------------------------------------------------------------------ */

START_TEST(holds_keep_values)
{
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    ds_cell fc = cell3("product=S01-B2-F2", NULL, NULL);
    const char *hold = "[{\"product\":\"S01-B2-F2\"}]";
    ds_i128 held = read_cell(fc, 0), total = read_cell(bx, 0);
    ck_assert_msg(write_cell(bx, 0, SPREAD_PROPORTIONAL, SPREAD_SET, total * 2, hold, -1, NULL) ==
                      0,
                  "%s", E.message);
    ck_assert(read_cell(fc, 0) == held);
    ck_assert(read_cell(bx, 0) == total * 2);
    /* a leaf write onto a held cell is refused */
    uint64_t sum = checksum();
    int64_t seq = seq_now();
    ds_cell leaf = cell3("customer=C-0003", "time=2024-05", NULL);
    leaf.m[0] = M->dims[0].kids[M->dims[0].kid_start[fc.m[0]]]; /* a product of the family */
    ck_assert(model_is_leaf(&M->dims[0], leaf.m[0]));
    ck_assert_int_eq(write_cell(leaf, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 5, hold, -1, NULL),
                     -DS_HELD);
    /* a spread where every leaf is held and T != h is refused */
    ck_assert_int_eq(write_cell(fc, 0, SPREAD_PROPORTIONAL, SPREAD_SET, held + 1, hold, -1, NULL),
                     -DS_HELD);
    ck_assert(checksum() == sum);
    ck_assert_int_eq(seq_now(), seq);
    /* a hold in another dimension: 2024 keeps its value */
    ds_cell b2024 = cell3("product=Brand X", "time=2024", NULL);
    ds_i128 v2024 = read_cell(b2024, 0);
    ck_assert(write_cell(bx, 0, SPREAD_EQUAL, SPREAD_DELTA, 1000, "[{\"time\":\"2024\"}]", -1,
                         NULL) == 0);
    ck_assert(read_cell(b2024, 0) == v2024);
    ck_assert(read_cell(bx, 0) == total * 2 + 1000);
    same_as_engine();
}
END_TEST

/* ---- refusals change nothing --------------------------------------------------------- */

typedef struct ledger_count {
    int refused, applied;
    int codes[DS_CODE_COUNT];
} ledger_count;

static void count_request(void *ctx, const char *model, const char *user, const char *rid,
                          const char *hash, int64_t seq, int code, int64_t ts_ms)
{
    (void)model;
    (void)user;
    (void)rid;
    (void)hash;
    (void)ts_ms;
    ledger_count *c = ctx;
    if (seq < 0) {
        c->refused++;
        if (code > 0 && code < DS_CODE_COUNT)
            c->codes[code]++;
    } else {
        c->applied++;
    }
}

static ledger_count ledger_now(void)
{
    ledger_count c = {0};
    ck_assert_msg(store_requests_load(S, count_request, &c, &E) == 0, "%s", E.message);
    return c;
}

START_TEST(refusals_change_nothing)
{
    ds_cell leaf = cell3("product=P-0005", "customer=C-0004", "time=2025-01");
    ds_cell q1 = cell3("product=P-0005", "customer=C-0004", "time=2025-Q1");
    /* arrange cancelling signs in Q1 of one product and customer */
    ds_cell m2 = leaf, m3 = leaf;
    m2.m[2] = member("time", "2025-02");
    m3.m[2] = member("time", "2025-03");
    ck_assert(write_cell(leaf, 0, 0, SPREAD_SET, 5000, NULL, -1, NULL) == 0);
    ck_assert(write_cell(m2, 0, 0, SPREAD_SET, -4999, NULL, -1, NULL) == 0);
    ck_assert(write_cell(m3, 0, 0, SPREAD_SET, 0, NULL, -1, NULL) == 0);
    int64_t seq = seq_now();
    uint64_t sum = checksum();
    ledger_count before = ledger_now();
    ck_assert_int_eq(before.refused, 0);

    /* refusals of the engine: each recorded in the ledger, nothing else */
    ck_assert_int_eq(write_cell(q1, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 10, NULL, -1, NULL),
                     -DS_SIGNS_CANCEL);
    ck_assert_int_eq(E.code, DS_SIGNS_CANCEL);
    ck_assert_int_eq(write_cell(leaf, 0, 0, SPREAD_DELTA, DEC_LEAF_MAX, NULL, -1, NULL),
                     -DS_OUT_OF_RANGE);
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    ck_assert_int_eq(write_cell(bx, 0, 0, SPREAD_SET, dec_pow10(30), NULL, -1, NULL),
                     -DS_OUT_OF_RANGE);
    ck_assert_int_eq(write_cell(bx, 0, SPREAD_REPEAT, SPREAD_SET, dec_pow10(18), NULL, -1, NULL),
                     -DS_OUT_OF_RANGE);
    /* stale: the leaf changed after seq - 2 */
    ck_assert_int_eq(write_cell(q1, 0, SPREAD_EQUAL, SPREAD_SET, 30, NULL, seq - 2, NULL),
                     -DS_STALE);
    ck_assert(E.has_seq && E.seq == seq);
    static const char *const engine_ops[] = {
        "{\"op\":\"add\",\"parent\":\"P-0005\",\"key\":\"X1\"}",      /* a leaf with facts */
        "{\"op\":\"add\",\"parent\":\"S01\",\"key\":\"P-0001\"}",     /* a key taken */
        "{\"op\":\"delete\",\"member\":\"S01-B1\"}",                  /* facts beneath */
        "{\"op\":\"move\",\"member\":\"S01\",\"parent\":\"S01-B1\"}", /* under itself */
        "{\"op\":\"move\",\"member\":\"S01-B1-F1\",\"parent\":\"P-0005\"}",
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(engine_ops); i++) {
        int rc = member_op("%s", engine_ops[i]);
        ck_assert_msg(rc == -DS_INVALID_VALUE, "member op %zu gave %d (%s)", i, rc, E.message);
    }
    const ds_dim *pd = &M->dims[dim("product")];
    ck_assert_int_eq(member_op("{\"op\":\"delete\",\"member\":\"%s\",\"force\":true}",
                               pd->members[pd->root].key),
                     -DS_INVALID_VALUE);
    ledger_count after = ledger_now();
    int nops = (int)DS_ARRAY_LEN(engine_ops) + 1, engine_refusals = 5 + nops;
    ck_assert_int_eq(after.refused, engine_refusals);
    ck_assert_int_eq(after.applied, before.applied);
    ck_assert_int_eq(after.codes[DS_SIGNS_CANCEL], 1);
    ck_assert_int_eq(after.codes[DS_OUT_OF_RANGE], 3);
    ck_assert_int_eq(after.codes[DS_STALE], 1);
    ck_assert_int_eq(after.codes[DS_INVALID_VALUE], nops);

    /* refusals of the request (a leaf value beyond 18 digits, a total
     * beyond 36, unknown names, an empty key): they reach neither the
     * engine nor the file */
    ck_assert_int_eq(write_cell(leaf, 0, 0, SPREAD_SET, (ds_i128)DEC_LEAF_MAX + 1, NULL, -1, NULL),
                     -DS_OUT_OF_RANGE);
    ck_assert_int_eq(write_cell(bx, 0, 0, SPREAD_SET, dec_pow10(37), NULL, -1, NULL),
                     -DS_OUT_OF_RANGE);
    ck_assert_int_eq(apply(REQ_CELL, NULL, "{\"column\":\"nope\",\"cell\":{},\"value\":1}"),
                     -DS_NOT_FOUND);
    ck_assert_int_eq(apply(REQ_CELL, NULL,
                           "{\"column\":\"quantity\",\"cell\":{\"product\":\"P-9999\"},"
                           "\"value\":1}"),
                     -DS_NOT_FOUND);
    ck_assert_int_eq(write_cell(bx, 0, 0, SPREAD_SET, 5, "[{\"product\":\"P-9999\"}]", -1, NULL),
                     -DS_NOT_FOUND);
    ck_assert_int_eq(member_op("{\"op\":\"add\",\"parent\":\"S01\",\"key\":\"\"}"),
                     -DS_INVALID_VALUE);
    ds_error e;
    ck_assert_int_eq(fx_apply(S, ENG, "{\"op\":\"add\",\"parent\":\"S01\",\"key\":\"Z\"}",
                              REQ_MEMBER, "nope", NULL, &e),
                     -DS_NOT_FOUND);
    ck_assert_int_eq(ledger_now().refused, engine_refusals);

    ck_assert_int_eq(seq_now(), seq);
    ck_assert(checksum() == sum);
    same_as_engine();
}
END_TEST

START_TEST(too_many_cells_refused)
{
    close_store();
    open_store(1000, 50);
    uint64_t sum = checksum();
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    ck_assert_int_eq(write_cell(bx, 0, SPREAD_EQUAL, SPREAD_SET, 5, NULL, -1, NULL),
                     -DS_TOO_MANY_CELLS);
    ck_assert(E.has_count && E.count > 50 && E.limit == 50);
    ck_assert(checksum() == sum);
    /* a small region fits: one product, one customer, one year (12 cells) */
    ds_cell small = cell3("product=P-0002", "customer=C-0002", "time=2026");
    ck_assert_msg(write_cell(small, 0, SPREAD_REPEAT, SPREAD_SET, 4, NULL, -1, NULL) == 0, "%s",
                  E.message);
    ck_assert(read_cell(small, 0) == 48);
    same_as_engine();
}
END_TEST

/* ---- member operations ------------------------------------------------------------------ */

static void q1(duckdb_connection con, const char *sql, long long *out)
{
    duckdb_result r;
    ck_assert_msg(duckdb_query(con, sql, &r) == DuckDBSuccess, "%s: %s", sql,
                  duckdb_result_error(&r));
    *out = duckdb_value_int64(&r, 0, 0);
    duckdb_destroy_result(&r);
}

/* The file opened with DuckDB itself, after the store is closed. */
typedef struct file_conn {
    duckdb_database db;
    duckdb_connection con;
} file_conn;

static void open_file(file_conn *f)
{
    close_store();
    ck_assert(duckdb_open(path, &f->db) == DuckDBSuccess);
    ck_assert(duckdb_connect(f->db, &f->con) == DuckDBSuccess);
}

static void close_file(file_conn *f)
{
    duckdb_disconnect(&f->con);
    duckdb_close(&f->db);
}

/* ds_closure holds, for every member in ds_member, exactly the chain of
 * its parents (itself at distance 0), computed here by recursion. */
static void closure_matches_members(duckdb_connection con)
{
    static const char *const chains =
        "WITH RECURSIVE c(dim_id, member_id, ancestor_id, distance) AS (SELECT dim_id, "
        "member_id, member_id, 0 FROM ds_member WHERE model_id = 1 UNION ALL SELECT c.dim_id, "
        "c.member_id, p.parent_id, c.distance + 1 FROM c JOIN ds_member p ON p.model_id = 1 AND "
        "p.dim_id = c.dim_id AND p.member_id = c.ancestor_id WHERE p.parent_id IS NOT NULL) ";
    char sql[2048];
    long long n;
    snprintf(sql, sizeof sql,
             "%s SELECT count(*) FROM (SELECT * FROM c EXCEPT ALL SELECT dim_id, member_id, "
             "ancestor_id, distance FROM ds_closure WHERE model_id = 1)",
             chains);
    q1(con, sql, &n);
    ck_assert_int_eq(n, 0);
    snprintf(sql, sizeof sql,
             "%s SELECT count(*) FROM (SELECT dim_id, member_id, ancestor_id, distance FROM "
             "ds_closure WHERE model_id = 1 EXCEPT ALL SELECT * FROM c)",
             chains);
    q1(con, sql, &n);
    ck_assert_int_eq(n, 0);
}

/* What the file holds after member_operations: ds_member without the
 * deleted members (p and its child a), p10 under to, the closure of every
 * member, no value left at a deleted leaf (its rows stay, empty: row i is
 * fact i), the command log of each operation, the struct_seq. */
static void member_rows_in_file(int32_t p, int32_t a, int32_t p10, int32_t to, int64_t seq)
{
    file_conn f;
    open_file(&f);
    duckdb_connection con = f.con;
    long long n;
    char sql[512];
    q1(con, "SELECT count(*) FROM ds_member WHERE model_id = 1 AND key IN ('P-0004', 'P-0004-A')",
       &n);
    ck_assert_int_eq(n, 0);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM ds_member WHERE model_id = 1 AND dim_id = 0 AND member_id = %d "
             "AND parent_id = %d",
             p10, to);
    q1(con, sql, &n);
    ck_assert_int_eq(n, 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM ds_closure WHERE model_id = 1 AND dim_id = 0 AND member_id = "
             "%d AND ancestor_id = %d AND distance = 1",
             p10, to);
    q1(con, sql, &n);
    ck_assert_int_eq(n, 1);
    closure_matches_members(con);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM f_1 WHERE d0 IN (%d, %d) AND (m0 IS NOT NULL OR m1 IS NOT NULL)",
             p, a);
    q1(con, sql, &n);
    ck_assert_int_eq(n, 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM f_1 WHERE d0 IN (%d, %d)", p, a);
    q1(con, sql, &n);
    ck_assert_int_gt(n, 0);
    q1(con, "SELECT count(*) FROM ds_command WHERE model_id = 1 AND kind = 'member'", &n);
    ck_assert_int_eq(n, 5);
    q1(con, "SELECT struct_seq FROM ds_model WHERE model_id = 1", &n);
    ck_assert_int_eq(n, seq); /* the last command was a member operation */
    close_file(&f);
}

START_TEST(member_operations)
{
    int pk = dim("product");
    ds_cell all = cell3("time=2025", NULL, NULL);
    ds_i128 grand = read_cell(all, 0);
    int32_t p = member("product", "P-0004");
    int32_t from = M->dims[pk].members[p].parent, to = member("product", "S02-B3-F4");
    ds_cell cp = all, cf = all, ct = all;
    cp.m[pk] = p;
    cf.m[pk] = from;
    ct.m[pk] = to;
    ds_i128 vp = read_cell(cp, 0), vf = read_cell(cf, 0), vt = read_cell(ct, 0);
    ck_assert(vp != 0);
    /* move a product to another brand's family */
    ck_assert_msg(member_op("{\"op\":\"move\",\"member\":\"P-0004\",\"parent\":\"S02-B3-F4\"}") ==
                      0,
                  "%s", E.message);
    ck_assert(read_cell(cf, 0) == vf - vp);
    ck_assert(read_cell(ct, 0) == vt + vp);
    ck_assert(read_cell(all, 0) == grand);
    /* the family's ids are no longer one range: spreads and reads use the
     * closure; doubling it doubles the moved product too */
    ck_assert(!model_ids_contiguous(&M->dims[pk], to));
    ck_assert(write_cell(ct, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 2 * (vt + vp), NULL, -1, NULL) ==
              0);
    ck_assert(read_cell(cp, 0) == 2 * vp);
    ck_assert(read_cell(ct, 0) == 2 * (vt + vp));
    ck_assert(read_cell(cf, 0) == vf - vp);
    ck_assert(read_cell(all, 0) == grand + vt + vp);
    ck_assert(write_cell(ct, 0, SPREAD_PROPORTIONAL, SPREAD_SET, vt + vp, NULL, -1, NULL) == 0);
    ck_assert(read_cell(all, 0) == grand);
    vp = read_cell(cp, 0);
    vt = read_cell(ct, 0) - vp;
    /* rename keeps the key */
    ck_assert(member_op("{\"op\":\"rename\",\"member\":\"P-0004\",\"name\":\"Renamed\"}") == 0);
    ck_assert_str_eq(M->dims[pk].members[member("product", "P-0004")].name, "Renamed");
    ck_assert_int_eq(member("product", "Renamed"), p);
    /* a child under a leaf with facts takes them with facts_to */
    ck_assert_msg(member_op("{\"op\":\"add\",\"parent\":\"P-0004\",\"key\":\"P-0004-A\","
                            "\"name\":\"Variant A\",\"facts_to\":\"P-0004-A\"}") == 0,
                  "%s", E.message);
    ds_cell ca = all;
    int32_t a = member("product", "P-0004-A");
    ca.m[pk] = a;
    ck_assert(read_cell(ca, 0) == vp);
    ck_assert(read_cell(cp, 0) == vp);
    /* a product that stays moved, for the closure after reopening */
    ck_assert(member_op("{\"op\":\"move\",\"member\":\"P-0010\",\"parent\":\"S02-B3-F4\"}") == 0);
    int32_t p10 = member("product", "P-0010");
    /* delete with force empties the facts beneath */
    ck_assert_msg(member_op("{\"op\":\"delete\",\"member\":\"P-0004\",\"force\":true}") == 0, "%s",
                  E.message);
    ck_assert(read_cell(ct, 0) == vt + read_cell(cell3("product=P-0010", "time=2025", NULL), 0));
    ck_assert(read_cell(all, 0) == grand - vp);
    ck_assert_int_lt(model_find_key(&M->dims[pk], "P-0004", 6), 0);
    same_as_engine();
    /* it all survives a reopen, seq included */
    int64_t seq = seq_now();
    grand = read_cell(all, 0);
    close_store();
    open_store(1000, 1000000);
    ck_assert_int_eq(seq_now(), seq);
    ck_assert_int_lt(model_find_key(&M->dims[pk], "P-0004", 6), 0);
    ck_assert_int_lt(model_find_key(&M->dims[pk], "P-0004-A", 8), 0);
    ck_assert_str_eq(M->dims[pk].members[member("product", "S02-B3-F4")].name, "Bags");
    ck_assert_int_eq(M->dims[pk].members[p10].parent, to);
    ck_assert(read_cell(all, 0) == grand);
    same_as_engine();
    member_rows_in_file(p, a, p10, to, seq);
}
END_TEST

/* Ids of deleted members are never reused, also after a restart. */
START_TEST(delete_then_more_member_ops)
{
    int pk = dim("product");
    ck_assert(member_op("{\"op\":\"delete\",\"member\":\"P-0002\",\"force\":true}") == 0);
    ck_assert(member_op("{\"op\":\"rename\",\"member\":\"P-0003\",\"name\":\"Three\"}") == 0);
    ck_assert(member_op("{\"op\":\"add\",\"parent\":\"S01-B1-F1\",\"key\":\"P-NEW\","
                        "\"name\":\"New\"}") == 0);
    int32_t new_id = member("product", "P-NEW");
    int64_t seq = seq_now();
    close_store();
    open_store(1000, 1000000);
    ck_assert_int_eq(seq_now(), seq);
    ck_assert_str_eq(M->dims[pk].members[member("product", "P-0003")].name, "Three");
    ck_assert_int_eq(member("product", "P-NEW"), new_id);
    ck_assert(member_op("{\"op\":\"add\",\"parent\":\"S01-B1-F1\",\"key\":\"P-NEWER\"}") == 0);
    ck_assert_int_gt(member("product", "P-NEWER"), new_id);
    ck_assert_int_lt(model_find_key(&M->dims[pk], "P-0002", 6), 0);
    same_as_engine();
}
END_TEST

/* A read built from a snapshot older than a member operation that moved
 * facts still reports the right value at the current seq. */
START_TEST(read_with_an_older_model)
{
    ds_cell p = cell3("product=P-0005", NULL, NULL);
    ds_i128 v = read_cell(p, 0);
    ck_assert(v != 0);
    const ds_model *old = store_model_acquire(S, DEMO_MODEL, strlen(DEMO_MODEL));
    ck_assert_msg(member_op("{\"op\":\"add\",\"parent\":\"P-0005\",\"key\":\"P-0005-X\","
                            "\"facts_to\":\"P-0005-X\"}") == 0,
                  "%s", E.message);
    ck_assert(old != M);
    ds_i128 got;
    int64_t seq;
    ck_assert(store_read_cell(R, old, &p, 0, &got, &seq, &E) == 0);
    ck_assert(got == v);
    ck_assert_int_eq(seq, seq_now());
    store_model_release(S, old);
}
END_TEST

START_TEST(batch_with_if_seq_sees_its_own_writes)
{
    int64_t seq = seq_now();
    const char *leaf = "\"cell\":{\"product\":\"P-0006\",\"customer\":\"C-0002\","
                       "\"time\":\"2024-02\"}";
    ds_cell a = cell3("product=P-0006", "customer=C-0002", "time=2024-02");
    ds_i128 va = read_cell(a, 0);
    ck_assert_msg(apply(REQ_BATCH, NULL,
                        "{\"if_seq\":%lld,\"writes\":[{\"column\":\"quantity\",%s,\"delta\":1},"
                        "{\"column\":\"quantity\",%s,\"delta\":1}]}",
                        (long long)seq, leaf, leaf) == 0,
                  "%s", E.message);
    ck_assert(read_cell(a, 0) == va + 2);
    const char *q = "\"cell\":{\"product\":\"P-0006\",\"customer\":\"C-0002\","
                    "\"time\":\"2024-Q1\"}";
    const char *fmt = "{\"if_seq\":%lld,\"writes\":[{\"column\":\"quantity\",%s,\"method\":"
                      "\"equal\",\"value\":90},{\"column\":\"quantity\",%s,\"delta\":1}]}";
    ck_assert_msg(apply(REQ_BATCH, NULL, fmt, (long long)seq + 1, q, leaf) == 0, "%s", E.message);
    ck_assert(read_cell(cell3("product=P-0006", "customer=C-0002", "time=2024-Q1"), 0) == 91);
    /* an older if_seq is stale */
    ck_assert_int_eq(apply(REQ_BATCH, NULL, fmt, (long long)seq, q, leaf), -DS_STALE);
    same_as_engine();
}
END_TEST

/* ---- a batch is one command: one seq, all or nothing -------------------------------- */

START_TEST(batch_is_one_command)
{
    ds_cell a = cell3("product=P-0011", "customer=C-0001", "time=2026-01");
    ds_cell b = cell3("product=P-0011", "customer=C-0001", "time=2026-Q1");
    ds_i128 va = read_cell(a, 0);
    int64_t seq = seq_now();
    const char *fmt =
        "{\"writes\":[{\"column\":\"quantity\",\"cell\":{\"product\":\"P-0011\",\"customer\":"
        "\"C-0001\",\"time\":\"2026-01\"},\"delta\":10},{\"column\":\"quantity\",\"cell\":{"
        "\"product\":\"P-0011\",\"customer\":\"C-0001\",\"time\":\"2026-Q1\"},\"method\":"
        "\"equal\",\"%s\":%s}]}";
    engine_result res;
    ck_assert_msg(apply(REQ_BATCH, &res, fmt, "value", "30") == 0, "%s", E.message);
    ck_assert_int_eq(res.seq, seq + 1);
    ck_assert_uint_eq(res.out.nsets, 2);
    ck_assert(res.out.sets[0].target.new_value == va + 10);
    ck_assert(res.out.sets[1].target.old_value >= va + 10); /* the second sees the first */
    engine_result_clear(&res);
    ck_assert(read_cell(b, 0) == 30);
    ck_assert_int_eq(seq_now(), seq + 1);
    /* the second write is refused after the first wrote: nothing stays */
    uint64_t sum = checksum();
    ck_assert_int_eq(apply(REQ_BATCH, NULL, fmt, "value", "\"1000000000000000000000000000000\""),
                     -DS_OUT_OF_RANGE);
    ck_assert_int_eq(apply(REQ_BATCH, NULL, fmt, "delta", "\"1000000000000000000000\""),
                     -DS_OUT_OF_RANGE);
    ck_assert(checksum() == sum);
    ck_assert_int_eq(seq_now(), seq + 1);
    same_as_engine();
}
END_TEST

/* ---- reads ------------------------------------------------------------------------------- */

START_TEST(grid_matches_cells)
{
    ck_assert(write_cell(cell3("product=Brand X", "time=2025-Q2", NULL), 1, SPREAD_PROPORTIONAL,
                         SPREAD_PERCENT, 7, NULL, -1, NULL) == 0);
    int pk = dim("product"), tk = dim("time");
    int32_t bx = member("product", "Brand X");
    const ds_dim *pd = &M->dims[pk];
    int32_t rows[8], cols[4];
    size_t nr = 0;
    for (int32_t j = pd->kid_start[bx]; j < pd->kid_start[bx + 1]; j++)
        rows[nr++] = pd->kids[j];
    rows[nr++] = bx;
    rows[nr++] = pd->kids[pd->kid_start[bx]]; /* listed twice */
    const char *qs[] = {"2025-Q1", "2025-Q2", "2025-Q3", "2025"};
    for (int i = 0; i < 4; i++)
        cols[i] = member("time", qs[i]);
    ds_grid_spec g = {.measure = 1,
                      .row_dim = pk,
                      .col_dim = tk,
                      .nrows = nr,
                      .ncols = 4,
                      .rows = rows,
                      .cols = cols};
    for (int k = 0; k < M->ndims; k++)
        g.fixed.m[k] = M->dims[k].root;
    g.fixed.m[dim("customer")] = member("customer", "North");
    ds_i128 v[8 * 4], ev[8 * 4];
    int64_t seq, eseq;
    ck_assert_msg(store_read_grid(R, M, &g, v, &seq, &E) == 0, "%s", E.message);
    ck_assert_msg(engine_read_grid(ENG, &g, ev, &eseq, &E) == 0, "%s", E.message);
    ck_assert_int_eq(seq, seq_now());
    ck_assert_int_eq(eseq, seq);
    for (size_t i = 0; i < nr; i++)
        for (int j = 0; j < 4; j++) {
            ds_cell c = g.fixed;
            c.m[pk] = rows[i];
            c.m[tk] = cols[j];
            ck_assert(v[i * 4 + (size_t)j] == read_cell(c, 1));
            ck_assert(v[i * 4 + (size_t)j] == ev[i * 4 + (size_t)j]);
            ck_assert(v[i * 4 + (size_t)j] != 0);
        }
}
END_TEST

/* The lists of an outcome are cut at the cap; the file has every change. */
START_TEST(change_list_is_capped)
{
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    ds_i128 before = read_cell(bx, 0);
    engine_result res;
    ck_assert(write_cell(bx, 0, SPREAD_PROPORTIONAL, SPREAD_PERCENT, 10, NULL, -1, &res) == 0);
    ds_changeset *cs = &res.out.sets[0];
    ck_assert(cs->leaves_truncated);
    ck_assert_uint_eq(cs->nleaves, 1000);
    ck_assert_int_gt(cs->leaves_changed, 1000);
    /* the totals: target, above (Supplier, All), children (4 families) */
    ck_assert(same_cell(&cs->changes[0].cell, &bx));
    ck_assert_int_eq(cs->changes[1].cell.m[0], M->dims[0].members[bx.m[0]].parent);
    ck_assert_int_eq(cs->changes[2].cell.m[0], M->dims[0].root);
    for (int i = 3; i < 7; i++)
        ck_assert_int_eq(M->dims[0].members[cs->changes[i].cell.m[0]].parent, bx.m[0]);
    ck_assert(read_cell(bx, 0) == cs->target.new_value);
    ck_assert(cs->target.old_value == before);
    engine_result_clear(&res);
    same_as_engine();
}
END_TEST

/* A family spread at leaf customer and month: its products are both the
 * children one level down and the leaves; each list holds each cell once,
 * and the changes of the leaves add up to the target's change. */
START_TEST(change_list_lists_each_cell_once)
{
    ds_cell fam = cell3("product=S01-B2-F1", "customer=C-0009", "time=2025-05");
    engine_result res;
    ck_assert(write_cell(fam, 0, SPREAD_EQUAL, SPREAD_DELTA, 7 * 100, NULL, -1, &res) == 0);
    ds_changeset *cs = &res.out.sets[0];
    ck_assert(!cs->truncated && !cs->leaves_truncated);
    for (size_t i = 0; i < cs->nchanges; i++)
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(!same_cell(&cs->changes[i].cell, &cs->changes[j].cell) ||
                              cs->changes[i].measure != cs->changes[j].measure,
                          "total %zu repeats total %zu", i, j);
    ds_i128 leaf_delta = 0;
    for (size_t i = 0; i < cs->nleaves; i++) {
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(!same_cell(&cs->leaves[i].cell, &cs->leaves[j].cell),
                          "leaf %zu repeats leaf %zu", i, j);
        ck_assert(is_leaf_cell(&cs->leaves[i].cell));
        ck_assert(read_cell(cs->leaves[i].cell, 0) == cs->leaves[i].new_value);
        leaf_delta += cs->leaves[i].new_value - cs->leaves[i].old_value;
    }
    ck_assert_int_eq((int64_t)cs->nleaves, cs->leaves_changed);
    ck_assert(leaf_delta == 700);
    engine_result_clear(&res);
    same_as_engine();
}
END_TEST

/* Equality filters on the view; a value that is not UTF-8 matches no row
 * (DuckDB refuses to bind it: it was a 500). */
START_TEST(view_filters)
{
    const char *cols[] = {"supplier_key", "month"};
    const char *vals[] = {"S01", "2025-03"};
    ds_table t;
    int64_t seq;
    ck_assert_msg(store_read_view(R, M, DEMO_VIEW, cols, vals, 2, 1000, &t, &seq, &E) == 0, "%s",
                  E.message);
    ck_assert_int_gt(t.nrows, 0);
    store_table_free(&t);
    const char *bad[] = {"S\xb0"
                         "1",
                         "2025-03"};
    ck_assert_msg(store_read_view(R, M, DEMO_VIEW, cols, bad, 2, 1000, &t, &seq, &E) == 0, "%s",
                  E.message);
    ck_assert_int_eq(t.nrows, 0);
    ck_assert_int_gt(t.ncols, 0);
    store_table_free(&t);
}
END_TEST

/* ---- the original case 5: the view equals the sums of the facts ---------------------- */

START_TEST(view_matches_facts)
{
    ds_cell leaf = cell3("product=P-0009", "customer=C-0002", "time=2025-07");
    ck_assert(write_cell(leaf, 1, 0, SPREAD_SET, 99999, NULL, -1, NULL) == 0);
    ds_cell bx = cell3("product=Brand X", "time=2025-Q2", NULL);
    ck_assert(write_cell(bx, 0, SPREAD_PROPORTIONAL, SPREAD_DELTA, 321, NULL, -1, NULL) == 0);
    ds_cell fam = cell3("product=S02-B1-F3", "customer=C-0003", "time=2026-Q4");
    long long products_in_family = M->dims[0].leaf_count[fam.m[0]];
    engine_result res;
    ck_assert(write_cell(fam, 1, SPREAD_EQUAL, SPREAD_SET, 1000000, NULL, -1, &res) == 0);
    long long equal_changed = res.out.sets[0].leaves_changed;
    engine_result_clear(&res);
    int64_t seq = seq_now();
    same_as_engine();
    file_conn f;
    open_file(&f);
    duckdb_connection con = f.con;
    long long n;
    /* an independent GROUP BY of the facts, compared with the view at every grouping set */
    const char *expected =
        "WITH x AS (SELECT s.key sk, b.key bk, fm.key fk, mo.key mk, f.m0 q, f.m1 a FROM f_1 f "
        "JOIN ds_member p ON p.model_id = 1 AND p.dim_id = 0 AND p.member_id = f.d0 "
        "JOIN ds_member fm ON fm.model_id = 1 AND fm.dim_id = 0 AND fm.member_id = p.parent_id "
        "JOIN ds_member b ON b.model_id = 1 AND b.dim_id = 0 AND b.member_id = fm.parent_id "
        "JOIN ds_member s ON s.model_id = 1 AND s.dim_id = 0 AND s.member_id = b.parent_id "
        "JOIN ds_member mo ON mo.model_id = 1 AND mo.dim_id = 2 AND mo.member_id = f.d2), "
        "e AS (SELECT sk, bk, fk, mk, COALESCE(sum(q), 0) q, COALESCE(sum(a), 0) a, 0 g FROM x "
        "GROUP BY 1, 2, 3, 4 UNION ALL SELECT sk, bk, NULL, mk, COALESCE(sum(q), 0), "
        "COALESCE(sum(a), 0), 2 FROM x GROUP BY 1, 2, 4 UNION ALL SELECT sk, NULL, NULL, mk, "
        "COALESCE(sum(q), 0), COALESCE(sum(a), 0), 6 FROM x GROUP BY 1, 4) ";
    char sql[4096];
    snprintf(sql, sizeof sql,
             "%s SELECT count(*) FROM (SELECT * FROM e EXCEPT ALL SELECT supplier_key, brand_key, "
             "family_key, month, quantity, net_amount, grouping_id FROM "
             "sales_summary_by_product_family)",
             expected);
    q1(con, sql, &n);
    ck_assert_int_eq(n, 0);
    snprintf(sql, sizeof sql,
             "%s SELECT count(*) FROM (SELECT supplier_key, brand_key, family_key, month, "
             "quantity, net_amount, grouping_id FROM sales_summary_by_product_family EXCEPT ALL "
             "SELECT * FROM e)",
             expected);
    q1(con, sql, &n);
    ck_assert_int_eq(n, 0);
    q1(con, "SELECT count(*) FROM sales_summary_by_product_family", &n);
    ck_assert_int_gt(n, 1000);
    q1(con,
       "SELECT count(*) FROM sales_summary_by_product_family WHERE family = 'Shoes' AND "
       "brand = 'Brand X' AND month = '2025-07'",
       &n);
    ck_assert_int_eq(n, 1);
    /* the names and display columns exist as specified */
    q1(con,
       "SELECT count(*) FROM (SELECT supplier, brand, family, supplier_key, brand_key, "
       "family_key, month, quantity, net_amount, grouping_id FROM "
       "sales_summary_by_product_family)",
       &n);
    ck_assert_int_gt(n, 0);
    /* the command log: one row per write, with user and time, and the seq */
    q1(con, "SELECT max(seq) FROM ds_command WHERE model_id = 1", &n);
    ck_assert_int_eq(n, seq);
    q1(con, "SELECT count(*) FROM ds_command WHERE user_name = 'tester' AND ts IS NOT NULL", &n);
    ck_assert_int_eq(n, 3);
    q1(con,
       "SELECT count(*) FROM ds_command WHERE seq = 3 AND kind = 'spread' AND method = 'equal' "
       "AND new_value = 1000000",
       &n);
    ck_assert_int_eq(n, 1);
    /* the leaf log: every changed leaf with old and new value */
    q1(con,
       "SELECT count(*) FROM l_1 WHERE seq = 1 AND old_value <> new_value AND new_value = 99999",
       &n);
    ck_assert_int_eq(n, 1);
    q1(con, "SELECT sum(new_value - old_value) FROM l_1 WHERE seq = 2", &n);
    ck_assert_int_eq(n, 321);
    q1(con, "SELECT count(*) FROM l_1 WHERE seq = 3", &n);
    ck_assert_int_eq(n, equal_changed);
    ck_assert_int_le(equal_changed, 3 * products_in_family);
    ck_assert_int_gt(equal_changed, 0);
    q1(con, "SELECT sum(new_value) FROM l_1 WHERE seq = 3", &n);
    /* each of the 3 x products cells is 1000000 / cells, floor or ceiling */
    ck_assert_int_le(n, 1000000);
    /* the request ledger: one row per command, applied */
    q1(con, "SELECT count(*) FROM ds_request WHERE model_id = 1 AND seq IS NOT NULL AND code = 0",
       &n);
    ck_assert_int_eq(n, 3);
    close_file(&f);
}
END_TEST

/* ---- the request ledger ------------------------------------------------------------------ */

typedef struct cmds_seen {
    int n;
    char *cmd[4];
} cmds_seen;

static void collect_cmd(void *ctx, int64_t seq, const char *rid, const char *user, int64_t ts_ms,
                        const char *event, size_t len, const char *cmd, size_t cmd_len)
{
    (void)seq, (void)rid, (void)event, (void)len;
    cmds_seen *c = ctx;
    /* what a replica needs to apply the command again comes with it */
    ck_assert(user && user[0]);
    ck_assert_int_gt(ts_ms, 0);
    if (c->n < 4)
        c->cmd[c->n++] = cmd ? xstrndup(cmd, cmd_len) : NULL;
}

/* Answers and commands come back as they were stored, short ones (kept as
 * they are) and long ones (compressed) alike; rows past the retention
 * window go and the others stay. */
START_TEST(ledger_bodies_and_expiry)
{
    static const char write[] = "{\"column\":\"quantity\",\"cell\":{\"product\":\"P-0003\","
                                "\"customer\":\"C-0002\",\"time\":\"2025-03\"},\"delta\":1}";
    ds_buf big;
    ds_buf_init(&big, 1 << 20);
    ds_buf_puts(&big, "{\"pad\":\"");
    for (int i = 0; i < 5000; i++)
        ds_buf_putc(&big, (char)('a' + i % 26));
    ds_buf_puts(&big, "\"}");
    const char *texts[2] = {"{\"short\":true}", big.data};
    int64_t seqs[2];
    for (int i = 0; i < 2; i++) {
        const ds_model *m = engine_model_acquire(ENG);
        ds_arena a = {0};
        req_decoded d;
        ck_assert(fx_resolve(write, strlen(write), REQ_CELL, m, NULL, &a, &d));
        engine_model_release(ENG, m);
        char rid[16];
        snprintf(rid, sizeof rid, "led-%d", i);
        engine_input in = {.cmd = d.canonical,
                           .cmd_len = d.canonical_len,
                           .user = "tester",
                           .rid = rid,
                           .hash = d.hash,
                           .ts_ms = 1000 * (i + 1)};
        engine_result res;
        ck_assert_msg(engine_submit(ENG, &in, &res, &E) == 0, "%s", E.message);
        ck_assert_int_eq(res.status, ENGINE_APPLIED);
        seqs[i] = res.seq;
        persist_item *it = persist_item_from(DEMO_MODEL, &in, &res, texts[i], strlen(texts[i]));
        it->cmd = xstrdup(texts[i]);
        it->cmd_len = strlen(texts[i]);
        store_item item = persist_store_item(it);
        ck_assert_msg(store_persist(S, &item, 1, &E) == 0, "%s", E.message);
        persist_item_free(it);
        engine_result_clear(&res);
        ds_arena_free(&a);
    }
    for (int i = 0; i < 2; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "led-%d", i);
        int code;
        int64_t seq;
        char *body = NULL;
        ck_assert_msg(store_request_get(R, DEMO_MODEL, "tester", rid, &code, &seq, &body, &E) == 0,
                      "%s", E.message);
        ck_assert_int_eq(seq, seqs[i]);
        ck_assert_str_eq(body, texts[i]);
        free(body);
    }
    cmds_seen seen = {0};
    ck_assert_msg(store_events_after(S, DEMO_MODEL, seqs[0] - 1, collect_cmd, &seen, &E) == 0, "%s",
                  E.message);
    ck_assert_int_eq(seen.n, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_nonnull(seen.cmd[i]);
        ck_assert_str_eq(seen.cmd[i], texts[i]);
        free(seen.cmd[i]);
    }
    /* stream time 1500: the first (at 1000) goes, the second (at 2000) stays */
    ck_assert_msg(store_requests_expire(S, 1500, &E) == 0, "%s", E.message);
    int code;
    int64_t seq;
    char *body = NULL;
    ck_assert_int_eq(store_request_get(R, DEMO_MODEL, "tester", "led-0", &code, &seq, &body, &E),
                     -DS_NOT_FOUND);
    ck_assert_msg(store_request_get(R, DEMO_MODEL, "tester", "led-1", &code, &seq, &body, &E) == 0,
                  "%s", E.message);
    ck_assert_str_eq(body, texts[1]);
    free(body);
    ds_buf_free(&big);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, make_demo, remove_demo);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, leaf_write_rolls_up);
    tcase_add_test(tc, leaf_write_creates_missing_fact);
    tcase_add_test(tc, brand_x_proportional);
    tcase_add_test(tc, all_zero_children_equal);
    tcase_add_test(tc, change_list_lists_each_cell_once);
    tcase_add_test(tc, multidimensional_brand_x_2025);
    tcase_add_test(tc, holds_keep_values);
    tcase_add_test(tc, refusals_change_nothing);
    tcase_add_test(tc, too_many_cells_refused);
    tcase_add_test(tc, member_operations);
    tcase_add_test(tc, delete_then_more_member_ops);
    tcase_add_test(tc, read_with_an_older_model);
    tcase_add_test(tc, batch_with_if_seq_sees_its_own_writes);
    tcase_add_test(tc, batch_is_one_command);
    tcase_add_test(tc, grid_matches_cells);
    tcase_add_test(tc, change_list_is_capped);
    tcase_add_test(tc, view_filters);
    tcase_add_test(tc, view_matches_facts);
    tcase_add_test(tc, ledger_bodies_and_expiry);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
