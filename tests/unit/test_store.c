/* Store tests against a real DuckDB file: the original cases 3, 4 and 5 at
 * engine level, multi-dimensional spreads, holds, member operations, group
 * commit, reads, and every refusal leaving the checksum unchanged. After
 * the store is closed some tests open the file with DuckDB directly to
 * check what anyone opening it sees (the view, the change log). */
#include <check.h>
#include <duckdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decimal.h"
#include "demo.h"
#include "store.h"

static char dir[256], path[300];
static ds_store *S;
static const ds_model *M;
static ds_reader *R;
static ds_error E;

static void open_store(size_t change_cap, int64_t create_cap)
{
    ds_store_opts o;
    store_opts_default(&o);
    o.change_cap = change_cap;
    o.create_cap = create_cap;
    o.threads = 2;
    ck_assert_msg(store_open(path, &o, &S, &E) == 0, "%s", E.message);
    M = store_model_acquire(S, DEMO_MODEL, strlen(DEMO_MODEL));
    ck_assert_ptr_nonnull(M);
    R = store_reader_new(S);
    ck_assert_ptr_nonnull(R);
}

static void close_store(void)
{
    store_reader_free(R);
    store_model_release(S, M);
    store_close(S);
    R = NULL;
    M = NULL;
    S = NULL;
}

/* A fresh data directory with the demo at 20,000 facts. */
static void setup_with(size_t change_cap, int64_t create_cap)
{
    snprintf(dir, sizeof dir, "%s/ds-store-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/test.db", dir);
    ds_store_opts o;
    store_opts_default(&o);
    ck_assert(store_open(path, &o, &S, &E) == 0);
    demo_opts d = {.seed = 7, .facts = 20000};
    bool loaded;
    int64_t n;
    ck_assert_msg(demo_load(S, &d, &loaded, &n, &E) == 0, "%s", E.message);
    ck_assert(loaded && n > 15000 && n < 25000);
    store_close(S);
    open_store(change_cap, create_cap);
}

static void setup(void)
{
    setup_with(1000, 1000000);
}

static void teardown(void)
{
    if (S)
        close_store();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
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

static ds_i128 read_cell(ds_cell c, int measure)
{
    ds_i128 v;
    int64_t seq;
    ck_assert_msg(store_read_cell(R, M, &c, measure, &v, &seq, &E) == 0, "%s", E.message);
    return v;
}

static int64_t seq_now(void)
{
    return store_model_seq(S, DEMO_MODEL);
}

static void refresh_model(void)
{
    store_model_release(S, M);
    M = store_model_acquire(S, DEMO_MODEL, strlen(DEMO_MODEL));
}

static int write_cell(ds_cell c, int measure, spread_method method, spread_form form,
                      ds_i128 amount, const ds_hold *holds, int nholds, int64_t if_seq,
                      ds_outcome *out)
{
    ds_write w = {.measure = measure,
                  .cell = c,
                  .method = method,
                  .form = form,
                  .amount = amount,
                  .holds = holds,
                  .nholds = nholds};
    ds_command cmd = {.kind = COMMAND_WRITE,
                      .user = "tester",
                      .request_id = "r-1",
                      .if_seq = if_seq,
                      .nwrites = 1,
                      .writes = &w};
    return store_apply(S, DEMO_MODEL, &cmd, out, &E);
}

static int member_op(ds_member_op op, ds_outcome *out)
{
    ds_command cmd = {.kind = COMMAND_MEMBER, .user = "admin", .if_seq = -1, .member = op};
    int rc = store_apply(S, DEMO_MODEL, &cmd, out, &E);
    if (rc == 0)
        refresh_model();
    return rc;
}

static uint64_t checksum(void)
{
    uint64_t h;
    ck_assert_msg(store_checksum(R, &h, &E) == 0, "%s", E.message);
    return h;
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

/* ---- original case 1 at engine level: a leaf write rolls up -------------- */

START_TEST(leaf_write_rolls_up)
{
    ds_cell leaf = cell3("product=P-0003", "customer=C-0002", "time=2025-03");
    ds_cell brand = cell3("product=S01-B1", "time=2025", NULL);
    ds_i128 before = read_cell(leaf, 0), brand_before = read_cell(brand, 0);
    int64_t seq0 = seq_now();
    ds_outcome o;
    ck_assert_msg(write_cell(leaf, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 777, NULL, 0, -1, &o) == 0,
                  "%s", E.message);
    ck_assert_int_eq(o.seq, seq0 + 1);
    ck_assert_int_eq(seq_now(), seq0 + 1);
    ck_assert(read_cell(leaf, 0) == 777);
    ck_assert(read_cell(brand, 0) == brand_before + 777 - before);
    ds_changeset *cs = &o.sets[0];
    ck_assert(cs->leaf);
    ck_assert(cs->target.old_value == before && cs->target.new_value == 777);
    ck_assert_int_eq(cs->leaves_changed, 777 != before);
    /* the target first, then every cell above it: 5 x 3 x 4 - 1 of them */
    ck_assert_uint_eq(cs->nchanges, 60);
    ck_assert(!cs->truncated);
    ck_assert(memcmp(&cs->changes[0].cell, &leaf, sizeof leaf) == 0);
    bool saw_brand = false;
    for (size_t i = 1; i < cs->nchanges; i++) {
        ds_change *c = &cs->changes[i];
        ck_assert(c->new_value - c->old_value == 777 - before);
        ck_assert(read_cell(c->cell, 0) == c->new_value);
        if (memcmp(&c->cell, &brand, sizeof brand) == 0)
            saw_brand = true;
    }
    ck_assert(saw_brand);
    /* writing the same value again is applied with a seq and changes nothing */
    outcome_clear(&o);
    ck_assert(write_cell(leaf, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 777, NULL, 0, -1, &o) == 0);
    ck_assert_int_eq(o.seq, seq0 + 2);
    ck_assert_int_eq(o.sets[0].leaves_changed, 0);
    outcome_clear(&o);
    /* delta and percent on a leaf; decimals at scale 2 */
    ck_assert(write_cell(leaf, 0, SPREAD_PROPORTIONAL, SPREAD_DELTA, 23, NULL, 0, -1, &o) == 0);
    ck_assert(read_cell(leaf, 0) == 800);
    outcome_clear(&o);
    ck_assert(write_cell(leaf, 0, SPREAD_PROPORTIONAL, SPREAD_PERCENT, -15, NULL, 0, -1, &o) == 0);
    ck_assert(read_cell(leaf, 0) == 680); /* -15% of 800 */
    outcome_clear(&o);
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
    ds_outcome o;
    ck_assert(write_cell(leaf, 1, SPREAD_PROPORTIONAL, SPREAD_SET, 1234567, NULL, 0, -1, &o) == 0);
    ck_assert(read_cell(leaf, 1) == 1234567);
    ck_assert(read_cell(c, 1) == total + 1234567);
    ck_assert(read_cell(leaf, 0) == 0); /* the other measure stays missing */
    outcome_clear(&o);
}
END_TEST

/* ---- original case 3: Brand X proportionally ---------------------------------- */

START_TEST(brand_x_proportional)
{
    close_store();
    open_store(1000000, 1000000);
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    ds_cell other = cell3("product=S01-B1", NULL, NULL);
    ds_i128 old_total = read_cell(bx, 0), other_before = read_cell(other, 0);
    ds_i128 target = old_total * 3 / 2 + 7;
    ds_outcome o;
    ck_assert_msg(write_cell(bx, 0, SPREAD_PROPORTIONAL, SPREAD_SET, target, NULL, 0, -1, &o) == 0,
                  "%s", E.message);
    ds_changeset *cs = &o.sets[0];
    ck_assert(!cs->truncated);
    ck_assert_int_eq(cs->method, SPREAD_PROPORTIONAL);
    ck_assert(cs->target.old_value == old_total && cs->target.new_value == target);
    ck_assert(read_cell(bx, 0) == target);
    ck_assert(read_cell(other, 0) == other_before);
    /* every changed leaf is the floor or ceiling of its exact share (leaves
     * whose value stays are not listed); the changes add up exactly */
    ds_i128 sum_new = 0, sum_old = 0;
    int64_t leaves = 0;
    for (size_t i = 0; i < cs->nchanges; i++) {
        ds_change *c = &cs->changes[i];
        bool is_leaf = true;
        for (int k = 0; k < M->ndims; k++)
            is_leaf &= model_is_leaf(&M->dims[k], c->cell.m[k]);
        if (!is_leaf)
            continue;
        leaves++;
        sum_new += c->new_value;
        sum_old += c->old_value;
        ck_assert(c->old_value != 0);
        assert_floor_or_ceil(c->new_value, target, c->old_value, old_total);
    }
    ck_assert_int_eq(leaves, cs->leaves_changed);
    ck_assert(sum_new - sum_old == target - old_total);
    /* families (children one level down) are floor or ceiling too */
    int32_t bxm = member("product", "Brand X");
    const ds_dim *pd = &M->dims[dim("product")];
    int fams = 0;
    for (int32_t j = pd->kid_start[bxm]; j < pd->kid_start[bxm + 1]; j++) {
        ds_cell f = bx;
        f.m[0] = pd->kids[j];
        for (size_t i = 1; i < cs->nchanges; i++)
            if (memcmp(&cs->changes[i].cell, &f, sizeof f) == 0) {
                assert_floor_or_ceil(cs->changes[i].new_value, target, cs->changes[i].old_value,
                                     old_total);
                ck_assert(read_cell(f, 0) == cs->changes[i].new_value);
                fams++;
            }
    }
    ck_assert_int_eq(fams, 4);
    outcome_clear(&o);
}
END_TEST

/* ---- original case 4: a parent whose children are all zero --------------------- */

START_TEST(all_zero_children_equal)
{
    ds_outcome o;
    int pk = dim("product");
    ds_member_op add = {.kind = MEMBER_ADD,
                        .dim = pk,
                        .parent = member("product", "Brand X"),
                        .key = "BX-NEW",
                        .name = "New family",
                        .facts_to = -1};
    ck_assert_msg(member_op(add, &o) == 0, "%s", E.message);
    outcome_clear(&o);
    const char *keys[] = {"BX-NEW-1", "BX-NEW-2", "BX-NEW-3"};
    for (int i = 0; i < 3; i++) {
        ds_member_op p = {.kind = MEMBER_ADD,
                          .dim = pk,
                          .parent = member("product", "BX-NEW"),
                          .key = keys[i],
                          .name = keys[i],
                          .facts_to = -1};
        ck_assert(member_op(p, &o) == 0);
        outcome_clear(&o);
    }
    ds_cell fam = cell3("product=BX-NEW", "customer=C-0001", "time=2025");
    ck_assert(read_cell(fam, 0) == 0);
    ds_cell bx = cell3("product=Brand X", "customer=C-0001", "time=2025");
    ds_i128 bx_before = read_cell(bx, 0);
    ck_assert_msg(write_cell(fam, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 100, NULL, 0, -1, &o) == 0,
                  "%s", E.message);
    ck_assert_int_eq(o.sets[0].method, SPREAD_EQUAL);
    /* 3 products x 12 months: 100/36 each -> 2 or 3, sum exact */
    ck_assert_int_eq(o.sets[0].leaves_changed, 36);
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
    outcome_clear(&o);
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
    ds_outcome o;
    ck_assert_msg(write_cell(c, 1, SPREAD_PROPORTIONAL, SPREAD_SET, target, NULL, 0, -1, &o) == 0,
                  "%s", E.message);
    ck_assert(read_cell(c, 1) == target);
    ck_assert(read_cell(y2024, 1) == keep);
    ck_assert(read_cell(all2025, 1) == all - old + target);
    /* children one level down in both dimensions: families and quarters.
     * Families lie on the apportionment path (the first dimension), so each
     * is the floor or ceiling of its exact share; quarters sum exactly. */
    ds_changeset *cs = &o.sets[0];
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
    outcome_clear(&o);
}
END_TEST

/* ---- holds ------------------------------------------------------------------------ */

START_TEST(holds_keep_values)
{
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    int32_t fam = member("product", "S01-B2-F2");
    ds_hold h;
    for (int k = 0; k < DS_MAX_DIMS; k++)
        h.m[k] = -1;
    h.m[0] = fam;
    ds_cell fc = bx;
    fc.m[0] = fam;
    ds_i128 held = read_cell(fc, 0), total = read_cell(bx, 0);
    ds_outcome o;
    ck_assert_msg(write_cell(bx, 0, SPREAD_PROPORTIONAL, SPREAD_SET, total * 2, &h, 1, -1, &o) == 0,
                  "%s", E.message);
    ck_assert(read_cell(fc, 0) == held);
    ck_assert(read_cell(bx, 0) == total * 2);
    outcome_clear(&o);
    /* a leaf write onto a held cell is refused */
    uint64_t sum = checksum();
    ds_cell leaf = cell3("customer=C-0003", "time=2024-05", NULL);
    leaf.m[0] = M->dims[0].kids[M->dims[0].kid_start[fam]]; /* a product of the family */
    ck_assert(model_is_leaf(&M->dims[0], leaf.m[0]));
    ck_assert_int_eq(write_cell(leaf, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 5, &h, 1, -1, &o),
                     -DS_HELD);
    /* a spread where every leaf is held and T != h is refused */
    ck_assert_int_eq(write_cell(fc, 0, SPREAD_PROPORTIONAL, SPREAD_SET, held + 1, &h, 1, -1, &o),
                     -DS_HELD);
    ck_assert(checksum() == sum);
    /* a hold in another dimension: 2024 keeps its value */
    ds_hold y;
    for (int k = 0; k < DS_MAX_DIMS; k++)
        y.m[k] = -1;
    y.m[2] = member("time", "2024");
    ds_cell b2024 = cell3("product=Brand X", "time=2024", NULL);
    ds_i128 v2024 = read_cell(b2024, 0);
    ck_assert(write_cell(bx, 0, SPREAD_EQUAL, SPREAD_DELTA, 1000, &y, 1, -1, &o) == 0);
    ck_assert(read_cell(b2024, 0) == v2024);
    ck_assert(read_cell(bx, 0) == total * 2 + 1000);
    outcome_clear(&o);
}
END_TEST

/* ---- refusals change nothing --------------------------------------------------------- */

START_TEST(refusals_change_nothing)
{
    ds_outcome o;
    ds_cell leaf = cell3("product=P-0005", "customer=C-0004", "time=2025-01");
    ds_cell q1 = cell3("product=P-0005", "customer=C-0004", "time=2025-Q1");
    /* arrange cancelling signs in Q1 of one product and customer */
    ds_cell m2 = leaf, m3 = leaf;
    m2.m[2] = member("time", "2025-02");
    m3.m[2] = member("time", "2025-03");
    ck_assert(write_cell(leaf, 0, 0, SPREAD_SET, 5000, NULL, 0, -1, &o) == 0);
    outcome_clear(&o);
    ck_assert(write_cell(m2, 0, 0, SPREAD_SET, -4999, NULL, 0, -1, &o) == 0);
    outcome_clear(&o);
    ck_assert(write_cell(m3, 0, 0, SPREAD_SET, 0, NULL, 0, -1, &o) == 0);
    outcome_clear(&o);
    int64_t seq = seq_now();
    uint64_t sum = checksum();

    ck_assert_int_eq(write_cell(q1, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 10, NULL, 0, -1, &o),
                     -DS_SIGNS_CANCEL);
    ck_assert_int_eq(E.code, DS_SIGNS_CANCEL);
    ck_assert_int_eq(write_cell(leaf, 0, 0, SPREAD_SET, (ds_i128)DEC_LEAF_MAX + 1, NULL, 0, -1, &o),
                     -DS_OUT_OF_RANGE);
    ck_assert_int_eq(write_cell(leaf, 0, 0, SPREAD_DELTA, DEC_LEAF_MAX, NULL, 0, -1, &o),
                     -DS_OUT_OF_RANGE);
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    ck_assert_int_eq(write_cell(bx, 0, 0, SPREAD_SET, dec_pow10(30), NULL, 0, -1, &o),
                     -DS_OUT_OF_RANGE);
    ck_assert_int_eq(write_cell(bx, 0, SPREAD_REPEAT, SPREAD_SET, dec_pow10(18), NULL, 0, -1, &o),
                     -DS_OUT_OF_RANGE);
    /* stale: the leaf changed after seq - 1 */
    ck_assert_int_eq(write_cell(q1, 0, SPREAD_EQUAL, SPREAD_SET, 30, NULL, 0, seq - 2, &o),
                     -DS_STALE);
    ck_assert(E.has_seq && E.seq == seq);
    /* unknown measure, dead or foreign member ids */
    ck_assert_int_eq(write_cell(leaf, 5, 0, SPREAD_SET, 1, NULL, 0, -1, &o), -DS_NOT_FOUND);
    ds_cell bad = leaf;
    bad.m[0] = 1 << 30;
    ck_assert_int_eq(write_cell(bad, 0, 0, SPREAD_SET, 1, NULL, 0, -1, &o), -DS_NOT_FOUND);
    /* member operations that must be refused */
    int pk = dim("product");
    ds_member_op ops[] = {
        {.kind = MEMBER_ADD, .dim = pk, .parent = leaf.m[0], .key = "X1", .facts_to = -1},
        {.kind = MEMBER_ADD,
         .dim = pk,
         .parent = member("product", "S01"),
         .key = "P-0001",
         .facts_to = -1},
        {.kind = MEMBER_ADD,
         .dim = pk,
         .parent = member("product", "S01"),
         .key = "",
         .facts_to = -1},
        {.kind = MEMBER_DELETE, .dim = pk, .member = member("product", "S01-B1"), .facts_to = -1},
        {.kind = MEMBER_DELETE,
         .dim = pk,
         .member = M->dims[pk].root,
         .force = true,
         .facts_to = -1},
        {.kind = MEMBER_MOVE,
         .dim = pk,
         .member = member("product", "S01"),
         .parent = member("product", "S01-B1"),
         .facts_to = -1},
        {.kind = MEMBER_MOVE,
         .dim = pk,
         .member = member("product", "S01-B1-F1"),
         .parent = leaf.m[0],
         .facts_to = -1},
        {.kind = MEMBER_ADD, .dim = 9, .parent = 0, .key = "Z", .facts_to = -1},
    };
    static const ds_code want[] = {DS_INVALID_VALUE, DS_INVALID_VALUE, DS_INVALID_VALUE,
                                   DS_INVALID_VALUE, DS_INVALID_VALUE, DS_INVALID_VALUE,
                                   DS_INVALID_VALUE, DS_NOT_FOUND};
    for (size_t i = 0; i < DS_ARRAY_LEN(ops); i++) {
        int rc = member_op(ops[i], &o);
        ck_assert_msg(rc == -(int)want[i], "member op %zu gave %d (%s)", i, rc, E.message);
    }
    ck_assert_int_eq(seq_now(), seq);
    ck_assert(checksum() == sum);
}
END_TEST

START_TEST(too_many_cells_refused)
{
    close_store();
    open_store(1000, 50);
    uint64_t sum = checksum();
    ds_outcome o;
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    ck_assert_int_eq(write_cell(bx, 0, SPREAD_EQUAL, SPREAD_SET, 5, NULL, 0, -1, &o),
                     -DS_TOO_MANY_CELLS);
    ck_assert(E.has_count && E.count > 50 && E.limit == 50);
    ck_assert(checksum() == sum);
    /* a small region fits: one product, one customer, one year (12 cells) */
    ds_cell small = cell3("product=P-0002", "customer=C-0002", "time=2026");
    ck_assert_msg(write_cell(small, 0, SPREAD_REPEAT, SPREAD_SET, 4, NULL, 0, -1, &o) == 0, "%s",
                  E.message);
    ck_assert(read_cell(small, 0) == 48);
    outcome_clear(&o);
}
END_TEST

/* ---- member operations ------------------------------------------------------------------ */

START_TEST(member_operations)
{
    ds_outcome o;
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
    ds_member_op mv = {.kind = MEMBER_MOVE, .dim = pk, .member = p, .parent = to, .facts_to = -1};
    ck_assert_msg(member_op(mv, &o) == 0, "%s", E.message);
    outcome_clear(&o);
    ck_assert(read_cell(cf, 0) == vf - vp);
    ck_assert(read_cell(ct, 0) == vt + vp);
    ck_assert(read_cell(all, 0) == grand);
    /* the family's ids are no longer one range: spreads and reads use the
     * closure; doubling it doubles the moved product too */
    ck_assert(!model_ids_contiguous(&M->dims[pk], to));
    ck_assert(write_cell(ct, 0, SPREAD_PROPORTIONAL, SPREAD_SET, 2 * (vt + vp), NULL, 0, -1, &o) ==
              0);
    outcome_clear(&o);
    ck_assert(read_cell(cp, 0) == 2 * vp);
    ck_assert(read_cell(ct, 0) == 2 * (vt + vp));
    ck_assert(read_cell(cf, 0) == vf - vp);
    ck_assert(read_cell(all, 0) == grand + vt + vp);
    ck_assert(write_cell(ct, 0, SPREAD_PROPORTIONAL, SPREAD_SET, vt + vp, NULL, 0, -1, &o) == 0);
    outcome_clear(&o);
    ck_assert(read_cell(all, 0) == grand);
    vp = read_cell(cp, 0);
    vt = read_cell(ct, 0) - vp;
    /* rename keeps the key */
    ds_member_op rn = {
        .kind = MEMBER_RENAME, .dim = pk, .member = p, .name = "Renamed", .facts_to = -1};
    ck_assert(member_op(rn, &o) == 0);
    outcome_clear(&o);
    ck_assert_str_eq(M->dims[pk].members[member("product", "P-0004")].name, "Renamed");
    ck_assert_int_eq(member("product", "Renamed"), p);
    /* a child under a leaf with facts takes them with facts_to */
    ds_member_op add = {.kind = MEMBER_ADD,
                        .dim = pk,
                        .parent = p,
                        .key = "P-0004-A",
                        .name = "Variant A",
                        .facts_to = -2};
    ck_assert_msg(member_op(add, &o) == 0, "%s", E.message);
    outcome_clear(&o);
    ds_cell ca = all;
    ca.m[pk] = member("product", "P-0004-A");
    ck_assert(read_cell(ca, 0) == vp);
    ck_assert(read_cell(cp, 0) == vp);
    /* delete with force deletes the facts beneath */
    ds_member_op del = {
        .kind = MEMBER_DELETE, .dim = pk, .member = p, .force = true, .facts_to = -1};
    ck_assert_msg(member_op(del, &o) == 0, "%s", E.message);
    outcome_clear(&o);
    ck_assert(read_cell(ct, 0) == vt);
    ck_assert(read_cell(all, 0) == grand - vp);
    ck_assert_int_lt(model_find_key(&M->dims[pk], "P-0004", 6), 0);
    /* it all survives a reopen, seq included */
    int64_t seq = seq_now();
    close_store();
    open_store(1000, 1000000);
    ck_assert_int_eq(seq_now(), seq);
    ck_assert_int_lt(model_find_key(&M->dims[pk], "P-0004", 6), 0);
    ck_assert_int_lt(model_find_key(&M->dims[pk], "P-0004-A", 8), 0);
    ck_assert_str_eq(M->dims[pk].members[member("product", "S02-B3-F4")].name, "Bags");
    ck_assert(read_cell(ct, 0) == vt);
    ck_assert(read_cell(all, 0) == grand - vp);
}
END_TEST

/* ---- regressions from review ---------------------------------------------------------- */

START_TEST(delete_then_more_member_ops)
{
    ds_outcome o;
    int pk = dim("product");
    ds_member_op del = {.kind = MEMBER_DELETE,
                        .dim = pk,
                        .member = member("product", "P-0002"),
                        .force = true,
                        .facts_to = -1};
    ck_assert(member_op(del, &o) == 0);
    ds_member_op rn = {.kind = MEMBER_RENAME,
                       .dim = pk,
                       .member = member("product", "P-0003"),
                       .name = "Three",
                       .facts_to = -1};
    ck_assert(member_op(rn, &o) == 0);
    ds_member_op add = {.kind = MEMBER_ADD,
                        .dim = pk,
                        .parent = member("product", "S01-B1-F1"),
                        .key = "P-NEW",
                        .name = "New",
                        .facts_to = -1};
    ck_assert(member_op(add, &o) == 0);
    int32_t new_id = member("product", "P-NEW");
    /* ids of deleted members are never reused, also after a restart */
    int64_t seq = seq_now();
    close_store();
    open_store(1000, 1000000);
    ck_assert_int_eq(seq_now(), seq);
    add.key = "P-NEWER";
    add.parent = member("product", "S01-B1-F1");
    ck_assert(member_op(add, &o) == 0);
    ck_assert_int_gt(member("product", "P-NEWER"), new_id);
    ck_assert_int_lt(model_find_key(&M->dims[pk], "P-0002", 6), 0);
}
END_TEST

START_TEST(read_with_an_older_model)
{
    int pk = dim("product");
    ds_cell p = cell3("product=P-0005", NULL, NULL);
    ds_i128 v = read_cell(p, 0);
    ck_assert(v != 0);
    const ds_model *old = store_model_acquire(S, DEMO_MODEL, strlen(DEMO_MODEL));
    ds_outcome o;
    ds_member_op add = {
        .kind = MEMBER_ADD, .dim = pk, .parent = p.m[pk], .key = "P-0005-X", .facts_to = -2};
    ck_assert_msg(member_op(add, &o) == 0, "%s", E.message);
    /* the facts moved to the new child; a read built from the old model
     * still reports the right value at the current seq */
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
    ds_cell a = cell3("product=P-0006", "customer=C-0002", "time=2024-02");
    int64_t seq = seq_now();
    ds_write w[2] = {{.measure = 0, .cell = a, .form = SPREAD_DELTA, .amount = 1},
                     {.measure = 0, .cell = a, .form = SPREAD_DELTA, .amount = 1}};
    ds_command cmd = {.kind = COMMAND_WRITE, .user = "u", .if_seq = seq, .nwrites = 2, .writes = w};
    ds_outcome o;
    ck_assert_msg(store_apply(S, DEMO_MODEL, &cmd, &o, &E) == 0, "%s", E.message);
    outcome_clear(&o);
    ds_cell q = cell3("product=P-0006", "customer=C-0002", "time=2024-Q1");
    w[0].cell = q;
    w[0].method = SPREAD_EQUAL;
    w[0].form = SPREAD_SET;
    w[0].amount = 90;
    cmd.if_seq = seq + 1;
    ck_assert_msg(store_apply(S, DEMO_MODEL, &cmd, &o, &E) == 0, "%s", E.message);
    outcome_clear(&o);
    /* an older if_seq is stale */
    cmd.if_seq = seq;
    ck_assert_int_eq(store_apply(S, DEMO_MODEL, &cmd, &o, &E), -DS_STALE);
}
END_TEST

START_TEST(group_poisoned_by_a_half_applied_command)
{
    ds_cell a = cell3("product=P-0008", "customer=C-0001", "time=2024-03");
    ds_cell q = cell3("product=P-0008", "customer=C-0001", "time=2024-Q1");
    ds_i128 before = read_cell(a, 0), qbefore = read_cell(q, 0);
    int64_t seq = seq_now();
    /* leaf writes only: decided before anything is written, the group lives on */
    ds_write w[2] = {{.measure = 0, .cell = a, .form = SPREAD_DELTA, .amount = 1},
                     {.measure = 0, .cell = a, .form = SPREAD_SET, .amount = dec_pow10(30)}};
    ds_command cmd = {.kind = COMMAND_WRITE, .user = "u", .if_seq = -1, .nwrites = 2, .writes = w};
    ds_outcome o;
    ck_assert(store_txn_begin(S, &E) == 0);
    ck_assert_int_eq(store_apply(S, DEMO_MODEL, &cmd, &o, NULL), -DS_OUT_OF_RANGE);
    ck_assert_int_eq(store_txn_commit(S, &E), 0);
    ck_assert(read_cell(a, 0) == before);
    ck_assert_int_eq(seq_now(), seq);
    /* a spread writes before the next write is refused: the group must roll back */
    w[0] = (ds_write){
        .measure = 0, .cell = q, .method = SPREAD_EQUAL, .form = SPREAD_SET, .amount = 300};
    ck_assert(store_txn_begin(S, &E) == 0);
    ck_assert_int_eq(store_apply(S, DEMO_MODEL, &cmd, &o, NULL), -DS_OUT_OF_RANGE);
    ck_assert_int_eq(store_txn_commit(S, &E), -DS_INTERNAL);
    ck_assert(read_cell(a, 0) == before);
    ck_assert(read_cell(q, 0) == qbefore);
    ck_assert_int_eq(seq_now(), seq);
    /* a view cannot be created inside a group */
    ck_assert(store_txn_begin(S, &E) == 0);
    ck_assert_int_eq(store_view_create(S, DEMO_MODEL, "v2", "SELECT 1", &E), -DS_INTERNAL);
    store_txn_rollback(S);
}
END_TEST

START_TEST(bad_holds_and_scales)
{
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    ds_hold h;
    for (int k = 0; k < DS_MAX_DIMS; k++)
        h.m[k] = -1;
    h.m[0] = 100000;
    ds_outcome o;
    ck_assert_int_eq(write_cell(bx, 0, 0, SPREAD_SET, 5, &h, 1, -1, &o), -DS_NOT_FOUND);
    ds_cell leaf = cell3("product=P-0001", "customer=C-0001", "time=2024-01");
    ds_write w = {.measure = 0, .cell = leaf, .form = SPREAD_PERCENT, .amount = 5, .pct_scale = 60};
    ds_command cmd = {.kind = COMMAND_WRITE, .user = "u", .if_seq = -1, .nwrites = 1, .writes = &w};
    ck_assert_int_eq(store_apply(S, DEMO_MODEL, &cmd, &o, &E), -DS_OUT_OF_RANGE);
}
END_TEST

/* ---- group commit ------------------------------------------------------------------------- */

START_TEST(group_commit_and_rollback)
{
    ds_cell leaf = cell3("product=P-0007", "customer=C-0001", "time=2024-01");
    ds_i128 before = read_cell(leaf, 0);
    int64_t seq = seq_now();
    uint64_t sum = checksum();
    ds_outcome o;
    ck_assert(store_txn_begin(S, &E) == 0);
    ck_assert(write_cell(leaf, 0, 0, SPREAD_DELTA, 1, NULL, 0, -1, &o) == 0);
    ck_assert_int_eq(o.seq, seq + 1);
    outcome_clear(&o);
    ck_assert(write_cell(leaf, 0, 0, SPREAD_DELTA, 1, NULL, 0, -1, &o) == 0);
    ck_assert_int_eq(o.seq, seq + 2);
    ck_assert(o.sets[0].target.old_value == before + 1);
    outcome_clear(&o);
    /* a refusal inside the group writes nothing and does not end it */
    ck_assert_int_eq(write_cell(leaf, 0, 0, SPREAD_SET, dec_pow10(20), NULL, 0, -1, &o),
                     -DS_OUT_OF_RANGE);
    ck_assert_int_eq(seq_now(), seq); /* not yet committed */
    store_txn_rollback(S);
    ck_assert_int_eq(seq_now(), seq);
    ck_assert(read_cell(leaf, 0) == before);
    ck_assert(checksum() == sum);
    ck_assert(store_txn_begin(S, &E) == 0);
    for (int i = 0; i < 5; i++) {
        ck_assert(write_cell(leaf, 0, 0, SPREAD_DELTA, 2, NULL, 0, -1, &o) == 0);
        outcome_clear(&o);
    }
    ck_assert(store_txn_commit(S, &E) == 0);
    ck_assert_int_eq(seq_now(), seq + 5);
    ck_assert(read_cell(leaf, 0) == before + 10);
}
END_TEST

/* ---- a batch is one command: one seq, all or nothing -------------------------------- */

START_TEST(batch_is_one_command)
{
    ds_cell a = cell3("product=P-0011", "customer=C-0001", "time=2026-01");
    ds_cell b = cell3("product=P-0011", "customer=C-0001", "time=2026-Q1");
    ds_i128 va = read_cell(a, 0);
    int64_t seq = seq_now();
    ds_write w[2] = {
        {.measure = 0, .cell = a, .form = SPREAD_DELTA, .amount = 10},
        {.measure = 0, .cell = b, .method = SPREAD_EQUAL, .form = SPREAD_SET, .amount = 30},
    };
    ds_command cmd = {.kind = COMMAND_WRITE, .user = "u", .if_seq = -1, .nwrites = 2, .writes = w};
    ds_outcome o;
    ck_assert_msg(store_apply(S, DEMO_MODEL, &cmd, &o, &E) == 0, "%s", E.message);
    ck_assert_int_eq(o.seq, seq + 1);
    ck_assert_uint_eq(o.nsets, 2);
    ck_assert(o.sets[0].target.new_value == va + 10);
    ck_assert(o.sets[1].target.old_value >= va + 10); /* the second sees the first */
    ck_assert(read_cell(b, 0) == 30);
    outcome_clear(&o);
    /* the second write is refused after the first wrote: nothing stays */
    uint64_t sum = checksum();
    w[1].amount = dec_pow10(30);
    ck_assert_int_eq(store_apply(S, DEMO_MODEL, &cmd, &o, &E), -DS_OUT_OF_RANGE);
    ck_assert(checksum() == sum);
    ck_assert_int_eq(seq_now(), seq + 1);
}
END_TEST

/* ---- reads ------------------------------------------------------------------------------------
 */

START_TEST(grid_matches_cells)
{
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
    ds_i128 v[8 * 4];
    int64_t seq;
    ck_assert_msg(store_read_grid(R, M, &g, v, &seq, &E) == 0, "%s", E.message);
    ck_assert_int_eq(seq, seq_now());
    for (size_t i = 0; i < nr; i++)
        for (int j = 0; j < 4; j++) {
            ds_cell c = g.fixed;
            c.m[pk] = rows[i];
            c.m[tk] = cols[j];
            ck_assert(v[i * 4 + (size_t)j] == read_cell(c, 1));
            ck_assert(v[i * 4 + (size_t)j] != 0);
        }
}
END_TEST

START_TEST(change_list_is_capped)
{
    ds_outcome o;
    ds_cell bx = cell3("product=Brand X", NULL, NULL);
    ck_assert(write_cell(bx, 0, SPREAD_PROPORTIONAL, SPREAD_PERCENT, 10, NULL, 0, -1, &o) == 0);
    ck_assert(o.sets[0].truncated);
    ck_assert_uint_eq(o.sets[0].nchanges, 1000);
    ck_assert_int_gt(o.sets[0].leaves_changed, 1000);
    /* the order: target, above (Supplier, All), children (4 families), leaves */
    ds_changeset *cs = &o.sets[0];
    ck_assert(memcmp(&cs->changes[0].cell, &bx, sizeof bx) == 0);
    ck_assert_int_eq(cs->changes[1].cell.m[0], M->dims[0].members[bx.m[0]].parent);
    ck_assert_int_eq(cs->changes[2].cell.m[0], M->dims[0].root);
    for (int i = 3; i < 7; i++)
        ck_assert_int_eq(M->dims[0].members[cs->changes[i].cell.m[0]].parent, bx.m[0]);
    outcome_clear(&o);
}
END_TEST

/* A family spread at leaf customer and month: its products are both the
 * children one level down and the leaves; each is listed once, and the
 * listed changes of the leaves add up to the target's change. */
START_TEST(change_list_lists_each_cell_once)
{
    ds_outcome o;
    ds_cell fam = cell3("product=S01-B2-F1", "customer=C-0009", "time=2025-05");
    ck_assert(write_cell(fam, 0, SPREAD_EQUAL, SPREAD_DELTA, 7 * 100, NULL, 0, -1, &o) == 0);
    ds_changeset *cs = &o.sets[0];
    ck_assert(!cs->truncated);
    int dp = dim("product");
    ds_i128 leaf_delta = 0;
    int leaves = 0;
    for (size_t i = 0; i < cs->nchanges; i++) {
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(memcmp(&cs->changes[i].cell, &cs->changes[j].cell,
                                 sizeof cs->changes[i].cell) != 0 ||
                              cs->changes[i].measure != cs->changes[j].measure,
                          "change %zu repeats change %zu", i, j);
        if (model_is_leaf(&M->dims[dp], cs->changes[i].cell.m[dp])) {
            leaf_delta += cs->changes[i].new_value - cs->changes[i].old_value;
            leaves++;
        }
    }
    ck_assert_int_eq(leaves, cs->leaves_changed);
    ck_assert(leaf_delta == 700);
    outcome_clear(&o);
}
END_TEST

/* ---- original case 5: the view equals the sums of the facts ---------------------------- */

static void q1(duckdb_connection con, const char *sql, long long *out)
{
    duckdb_result r;
    ck_assert_msg(duckdb_query(con, sql, &r) == DuckDBSuccess, "%s: %s", sql,
                  duckdb_result_error(&r));
    *out = duckdb_value_int64(&r, 0, 0);
    duckdb_destroy_result(&r);
}

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

START_TEST(view_matches_facts)
{
    ds_outcome o;
    ds_cell leaf = cell3("product=P-0009", "customer=C-0002", "time=2025-07");
    ck_assert(write_cell(leaf, 1, 0, SPREAD_SET, 99999, NULL, 0, -1, &o) == 0);
    outcome_clear(&o);
    ds_cell bx = cell3("product=Brand X", "time=2025-Q2", NULL);
    ck_assert(write_cell(bx, 0, SPREAD_PROPORTIONAL, SPREAD_DELTA, 321, NULL, 0, -1, &o) == 0);
    outcome_clear(&o);
    ds_cell fam = cell3("product=S02-B1-F3", "customer=C-0003", "time=2026-Q4");
    long long products_in_family = M->dims[0].leaf_count[fam.m[0]];
    ck_assert(write_cell(fam, 1, SPREAD_EQUAL, SPREAD_SET, 1000000, NULL, 0, -1, &o) == 0);
    outcome_clear(&o);
    int64_t seq = seq_now();
    close_store();

    duckdb_database db;
    duckdb_connection con;
    ck_assert(duckdb_open(path, &db) == DuckDBSuccess);
    ck_assert(duckdb_connect(db, &con) == DuckDBSuccess);
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
    /* the change log: every changed leaf with old and new, user and time */
    snprintf(sql, sizeof sql, "SELECT max(seq) FROM ds_command WHERE model_id = 1");
    q1(con, sql, &n);
    ck_assert_int_eq(n, seq);
    q1(con, "SELECT count(*) FROM ds_command WHERE user_name = 'tester' AND ts IS NOT NULL", &n);
    ck_assert_int_eq(n, 3);
    q1(con,
       "SELECT count(*) FROM l_1 WHERE seq = 1 AND old_value <> new_value AND new_value = 99999",
       &n);
    ck_assert_int_eq(n, 1);
    q1(con, "SELECT sum(new_value - old_value) FROM l_1 WHERE seq = 2", &n);
    ck_assert_int_eq(n, 321);
    q1(con, "SELECT count(*) FROM l_1 WHERE seq = 3", &n);
    ck_assert_int_eq(n, 3 * products_in_family);
    duckdb_disconnect(&con);
    duckdb_close(&db);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_set_timeout(tc, 120);
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
    tcase_add_test(tc, group_commit_and_rollback);
    tcase_add_test(tc, delete_then_more_member_ops);
    tcase_add_test(tc, read_with_an_older_model);
    tcase_add_test(tc, batch_with_if_seq_sees_its_own_writes);
    tcase_add_test(tc, group_poisoned_by_a_half_applied_command);
    tcase_add_test(tc, bad_holds_and_scales);
    tcase_add_test(tc, batch_is_one_command);
    tcase_add_test(tc, grid_matches_cells);
    tcase_add_test(tc, change_list_is_capped);
    tcase_add_test(tc, view_filters);
    tcase_add_test(tc, view_matches_facts);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
