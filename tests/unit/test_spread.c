/* Rule-by-rule tests of the spreading engine (spread.c). The randomized
 * comparison with the GMP reference lives in test_spread_ref.c. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "spread.h"

/* A flat tree: root with n leaves (ids 100..). */
static int32_t flat_parent[64], flat_id[64];

static spread_tree flat(int n)
{
    flat_parent[0] = -1;
    flat_id[0] = 99;
    for (int i = 1; i <= n; i++) {
        flat_parent[i] = 0;
        flat_id[i] = 99 + i;
    }
    return (spread_tree){.n = n + 1, .parent = flat_parent, .id = flat_id};
}

typedef struct run {
    int rc;
    spread_plan plan;
    int64_t out[64];
    ds_i128 total;
    ds_error err;
} run;

/* Runs plan + apportion over one flat tree of n leaves. */
static run spread_flat(spread_method m, spread_form f, ds_i128 amount, int n, const int64_t *vals,
                       const uint8_t *held)
{
    static spread_tree tree;
    static int32_t coord[64];
    tree = flat(n);
    for (int i = 0; i < n; i++)
        coord[i] = i + 1;
    spread_cells c = {
        .n = (size_t)n, .ntrees = 1, .trees = &tree, .coord = coord, .value = vals, .held = held};
    spread_params p = {
        .method = m, .form = f, .amount = amount, .seq = 7, .leaf_max = DEC_LEAF_MAX};
    run r;
    memset(&r, 0, sizeof r);
    spread_totals t;
    spread_totals_of(&c, &t);
    r.rc = spread_plan_make(&p, &t, &r.plan, &r.err);
    if (r.rc == 0)
        r.rc = spread_apportion(&p, &r.plan, &c, r.out, &r.total, &r.err);
    return r;
}

static int64_t sum(const int64_t *v, int n)
{
    int64_t s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s;
}

START_TEST(proportional_exact)
{
    int64_t v[] = {100, 200, 300, 400};
    run r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_SET, 500, 4, v, NULL);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.out[0], 50);
    ck_assert_int_eq(r.out[1], 100);
    ck_assert_int_eq(r.out[2], 150);
    ck_assert_int_eq(r.out[3], 200);
    ck_assert(r.total == 500);
    /* 100 over 1,1,1: 34 + 33 + 33 in hash order, exact sum */
    int64_t ones[] = {1, 1, 1};
    r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_SET, 100, 3, ones, NULL);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(sum(r.out, 3), 100);
    for (int i = 0; i < 3; i++)
        ck_assert(r.out[i] == 33 || r.out[i] == 34);
}
END_TEST

START_TEST(proportional_zeros_stay)
{
    int64_t v[] = {0, 10, 0, 30};
    run r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_SET, 8, 4, v, NULL);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.out[0], 0);
    ck_assert_int_eq(r.out[2], 0);
    ck_assert_int_eq(r.out[1], 2);
    ck_assert_int_eq(r.out[3], 6);
}
END_TEST

START_TEST(all_zero_becomes_equal)
{
    int64_t v[] = {0, 0, 0, 0};
    run r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_SET, 10, 4, v, NULL);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.plan.method, SPREAD_EQUAL);
    ck_assert(r.plan.dense);
    ck_assert_int_eq(sum(r.out, 4), 10);
    for (int i = 0; i < 4; i++)
        ck_assert(r.out[i] == 2 || r.out[i] == 3);
}
END_TEST

START_TEST(signs_cancel_refused)
{
    int64_t v[] = {5000, -4999, 0}; /* |1| < 9999 / 1000 */
    run r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_SET, 10, 3, v, NULL);
    ck_assert_int_eq(r.rc, -DS_SIGNS_CANCEL);
    ck_assert_int_eq(r.err.code, DS_SIGNS_CANCEL);
    ck_assert_ptr_nonnull(strstr(r.err.message, "equal"));
    int64_t z[] = {5, -5};
    r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_SET, 10, 2, z, NULL);
    ck_assert_int_eq(r.rc, -DS_SIGNS_CANCEL);
    /* mixed signs that do not nearly cancel are fine: 10 = 20 - 10 */
    int64_t m[] = {20, -10};
    r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_SET, 30, 2, m, NULL);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.out[0], 60);
    ck_assert_int_eq(r.out[1], -30);
}
END_TEST

START_TEST(holds)
{
    int64_t v[] = {10, 20, 30};
    uint8_t h[] = {0, 1, 0};
    run r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_SET, 100, 3, v, h);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.out[1], 20);
    ck_assert_int_eq(r.out[0], 20); /* 80 * 10/40 */
    ck_assert_int_eq(r.out[2], 60);
    uint8_t all[] = {1, 1, 1};
    r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_SET, 100, 3, v, all);
    ck_assert_int_eq(r.rc, -DS_HELD);
    r = spread_flat(SPREAD_EQUAL, SPREAD_SET, 60, 3, v, all); /* T == h */
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.out[2], 30);
}
END_TEST

START_TEST(equal_and_negative)
{
    int64_t v[] = {1, 2, 3};
    run r = spread_flat(SPREAD_EQUAL, SPREAD_SET, -10, 3, v, NULL);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(sum(r.out, 3), -10);
    for (int i = 0; i < 3; i++)
        ck_assert(r.out[i] == -3 || r.out[i] == -4);
}
END_TEST

START_TEST(repeat_forms)
{
    int64_t v[] = {10, 0, -4};
    uint8_t h[] = {0, 0, 1};
    run r = spread_flat(SPREAD_REPEAT, SPREAD_SET, 7, 3, v, h);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.out[0], 7);
    ck_assert_int_eq(r.out[1], 7);
    ck_assert_int_eq(r.out[2], -4);
    ck_assert(r.total == 10);
    r = spread_flat(SPREAD_REPEAT, SPREAD_DELTA, 5, 3, v, NULL);
    ck_assert_int_eq(r.out[0], 15);
    ck_assert_int_eq(r.out[1], 5);
    ck_assert_int_eq(r.out[2], 1);
    /* +15%: 10 -> 11.5 -> 12 (half away), -4 -> -4.6 -> -5 */
    r = spread_flat(SPREAD_REPEAT, SPREAD_PERCENT, 15, 3, v, NULL);
    ck_assert_int_eq(r.out[0], 12);
    ck_assert_int_eq(r.out[1], 0);
    ck_assert_int_eq(r.out[2], -5);
}
END_TEST

START_TEST(delta_and_percent_targets)
{
    int64_t v[] = {100, 300};
    run r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_DELTA, 40, 2, v, NULL);
    ck_assert_int_eq(r.rc, 0);
    ck_assert(r.plan.target == 440);
    ck_assert_int_eq(r.out[0], 110);
    ck_assert_int_eq(r.out[1], 330);
    /* -10% of 400 = 360 */
    r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_PERCENT, -10, 2, v, NULL);
    ck_assert(r.plan.target == 360);
    ck_assert_int_eq(r.out[0], 90);
    /* the total is rounded half away before spreading */
    int64_t w[] = {401};
    r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_PERCENT, 5, 1, w, NULL);
    ck_assert_int_eq(r.rc, 0); /* p = 5 at scale 0: +5% -> 421.05 -> 421 */
    ck_assert(r.plan.target == 421);
}
END_TEST

/* percent: T itself is rounded half away from zero: held -10, unheld 5,
 * -50%: T = -10 + 2.5 = -7.5 -> -8, so the unheld leaf gets 2. */
START_TEST(percent_rounds_the_total)
{
    int64_t v[] = {-10, 5};
    uint8_t h[] = {1, 0};
    run r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_PERCENT, -50, 2, v, h);
    ck_assert_int_eq(r.rc, 0);
    ck_assert(r.plan.target == -8);
    ck_assert_int_eq(r.out[1], 2);
}
END_TEST

START_TEST(out_of_range)
{
    int64_t v[] = {1, 1};
    run r = spread_flat(SPREAD_PROPORTIONAL, SPREAD_SET, (ds_i128)DEC_LEAF_MAX * 3, 2, v, NULL);
    ck_assert_int_eq(r.rc, -DS_OUT_OF_RANGE);
    r = spread_flat(SPREAD_REPEAT, SPREAD_DELTA, DEC_LEAF_MAX, 2, v, NULL);
    ck_assert_int_eq(r.rc, -DS_OUT_OF_RANGE);
    r = spread_flat(SPREAD_EQUAL, SPREAD_SET, dec_pow10(37), 2, v, NULL);
    ck_assert_int_eq(r.rc, -DS_OUT_OF_RANGE);
    /* just fits */
    r = spread_flat(SPREAD_EQUAL, SPREAD_SET, (ds_i128)DEC_LEAF_MAX * 2, 2, v, NULL);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_int_eq(r.out[0], DEC_LEAF_MAX);
}
END_TEST

/* 1,000 units over 3 families x 1,000 products, equal: 333 or 334 each. */
START_TEST(equal_is_fair_per_family)
{
    enum { F = 3, P = 1000, N = 1 + F + F * P };
    static int32_t parent[N], id[N], coord[F * P];
    static int64_t vals[F * P], out[F * P];
    parent[0] = -1;
    id[0] = 1;
    int node = 1, cell = 0;
    for (int f = 0; f < F; f++) {
        int fam = node++;
        parent[fam] = 0;
        id[fam] = 10 + f;
        for (int p = 0; p < P; p++) {
            parent[node] = fam;
            id[node] = 1000 + f * P + p;
            coord[cell++] = node++;
        }
    }
    spread_tree t = {.n = N, .parent = parent, .id = id};
    spread_cells c = {.n = F * P, .ntrees = 1, .trees = &t, .coord = coord, .value = vals};
    for (uint64_t seq = 1; seq <= 20; seq++) {
        spread_params p = {
            .method = SPREAD_EQUAL, .amount = 1000, .seq = seq, .leaf_max = DEC_LEAF_MAX};
        spread_totals tot;
        spread_plan plan;
        ds_i128 after;
        spread_totals_of(&c, &tot);
        ck_assert_int_eq(spread_plan_make(&p, &tot, &plan, NULL), 0);
        ck_assert_int_eq(spread_apportion(&p, &plan, &c, out, &after, NULL), 0);
        int64_t all = 0;
        for (int f = 0; f < F; f++) {
            int64_t fs = 0;
            for (int i = 0; i < P; i++) {
                ck_assert(out[f * P + i] == 0 || out[f * P + i] == 1);
                fs += out[f * P + i];
            }
            ck_assert_msg(fs == 333 || fs == 334, "family %d got %lld", f, (long long)fs);
            all += fs;
        }
        ck_assert_int_eq(all, 1000);
    }
}
END_TEST

/* Two dimensions (product x time), checked by hand. */
START_TEST(two_dimensions)
{
    /* product: root -> A, B ; time: root -> Q1 -> {M1, M2} */
    int32_t pp[] = {-1, 0, 0}, pid[] = {1, 2, 3};
    int32_t tp[] = {-1, 0, 1, 1}, tid[] = {10, 11, 12, 13};
    spread_tree trees[] = {{3, pp, pid}, {4, tp, tid}};
    int32_t coord[] = {1, 2, 1, 3, 2, 2, 2, 3}; /* A.M1 A.M2 B.M1 B.M2 */
    int64_t vals[] = {10, 30, 20, 40}, out[4];
    spread_cells c = {.n = 4, .ntrees = 2, .trees = trees, .coord = coord, .value = vals};
    spread_params p = {
        .method = SPREAD_PROPORTIONAL, .amount = 50, .seq = 3, .leaf_max = DEC_LEAF_MAX};
    spread_totals tot;
    spread_plan plan;
    ds_i128 after;
    spread_totals_of(&c, &tot);
    ck_assert(tot.total == 100);
    ck_assert_int_eq(spread_plan_make(&p, &tot, &plan, NULL), 0);
    ck_assert_int_eq(spread_apportion(&p, &plan, &c, out, &after, NULL), 0);
    ck_assert_int_eq(out[0], 5);
    ck_assert_int_eq(out[1], 15);
    ck_assert_int_eq(out[2], 10);
    ck_assert_int_eq(out[3], 20);
    ck_assert(after == 50);
    /* 51: A gets 20.4 -> 20 or 21, B 30.6 -> 30 or 31; A.M1 5.1, A.M2 15.3 */
    p.amount = 51;
    spread_plan_make(&p, &tot, &plan, NULL);
    ck_assert_int_eq(spread_apportion(&p, &plan, &c, out, &after, NULL), 0);
    ck_assert_int_eq(out[0] + out[1] + out[2] + out[3], 51);
    ck_assert(out[0] + out[1] == 20); /* B has the larger fraction (.6) */
    ck_assert(out[2] + out[3] == 31);
}
END_TEST

/* A spread big enough to walk on two threads (> 65,536 cells), checked by
 * its properties: every family and every leaf gets the floor or ceiling
 * of its exact share, the sum is exact, and shuffled input gives the same
 * values per cell. */
START_TEST(big_spread_on_two_threads)
{
    enum { F = 7, P = 12000, N = 1 + F + F * P, CELLS = F * P };
    int32_t *parent = malloc(N * sizeof *parent), *id = malloc(N * sizeof *id);
    int32_t *coord = malloc(CELLS * sizeof *coord), *coord2 = malloc(CELLS * sizeof *coord2);
    int64_t *vals = malloc(CELLS * sizeof *vals), *vals2 = malloc(CELLS * sizeof *vals2);
    int64_t *out = malloc(CELLS * sizeof *out), *out2 = malloc(CELLS * sizeof *out2);
    parent[0] = -1;
    id[0] = 1;
    int node = 1, cell = 0;
    ds_i128 total = 0;
    for (int f = 0; f < F; f++) {
        int fam = node++;
        parent[fam] = 0;
        id[fam] = 10 + f;
        for (int p = 0; p < P; p++) {
            parent[node] = fam;
            id[node] = 100 + node;
            coord[cell] = node++;
            vals[cell] = (int64_t)(ds_mix64((uint64_t)cell) % 1000) + 1;
            total += vals[cell++];
        }
    }
    spread_tree t = {.n = N, .parent = parent, .id = id};
    spread_cells c = {.n = CELLS, .ntrees = 1, .trees = &t, .coord = coord, .value = vals};
    ds_i128 target = total * 7 / 3 + 12345;
    spread_params p = {
        .method = SPREAD_PROPORTIONAL, .amount = target, .seq = 99, .leaf_max = DEC_LEAF_MAX};
    spread_totals tot;
    spread_plan plan;
    ds_i128 after;
    spread_totals_of(&c, &tot);
    ck_assert_int_eq(spread_plan_make(&p, &tot, &plan, NULL), 0);
    ck_assert_int_eq(spread_apportion(&p, &plan, &c, out, &after, NULL), 0);
    ds_i128 sum = 0;
    for (int f = 0; f < F; f++) {
        ds_i128 fo = 0, fn = 0;
        for (int i = f * P; i < (f + 1) * P; i++) {
            ds_i128 q, r;
            ck_assert(dec_muldiv(target, vals[i], total, &q, &r));
            ck_assert(out[i] == q || (r != 0 && out[i] == q + 1));
            fo += vals[i];
            fn += out[i];
        }
        ds_i128 q, r;
        ck_assert(dec_muldiv(target, fo, total, &q, &r));
        ck_assert(fn == q || (r != 0 && fn == q + 1));
        sum += fn;
    }
    ck_assert(sum == target && after == target);
    /* reversed input order: the same value for every cell */
    for (int i = 0; i < CELLS; i++) {
        coord2[i] = coord[CELLS - 1 - i];
        vals2[i] = vals[CELLS - 1 - i];
    }
    spread_cells c2 = {.n = CELLS, .ntrees = 1, .trees = &t, .coord = coord2, .value = vals2};
    ck_assert_int_eq(spread_apportion(&p, &plan, &c2, out2, &after, NULL), 0);
    for (int i = 0; i < CELLS; i++)
        ck_assert(out2[i] == out[CELLS - 1 - i]);
    free(parent);
    free(id);
    free(coord);
    free(coord2);
    free(vals);
    free(vals2);
    free(out);
    free(out2);
}
END_TEST

START_TEST(bad_input_is_internal)
{
    int32_t parent[] = {-1, 0, 0}, id[] = {1, 2, 3};
    spread_tree t = {3, parent, id};
    int32_t coord[] = {1, 1}; /* the same leaf twice */
    int64_t vals[] = {1, 2}, out[2];
    spread_cells c = {.n = 2, .ntrees = 1, .trees = &t, .coord = coord, .value = vals};
    spread_params p = {.method = SPREAD_PROPORTIONAL, .amount = 9, .leaf_max = DEC_LEAF_MAX};
    spread_totals tot;
    spread_plan plan;
    ds_i128 after;
    spread_totals_of(&c, &tot);
    ck_assert_int_eq(spread_plan_make(&p, &tot, &plan, NULL), 0);
    ck_assert_int_eq(spread_apportion(&p, &plan, &c, out, &after, NULL), -DS_INTERNAL);
    coord[1] = 0; /* not a leaf */
    ck_assert_int_eq(spread_apportion(&p, &plan, &c, out, &after, NULL), -DS_INTERNAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spread");
    TCase *tc = tcase_create("rules");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, proportional_exact);
    tcase_add_test(tc, proportional_zeros_stay);
    tcase_add_test(tc, all_zero_becomes_equal);
    tcase_add_test(tc, signs_cancel_refused);
    tcase_add_test(tc, holds);
    tcase_add_test(tc, equal_and_negative);
    tcase_add_test(tc, repeat_forms);
    tcase_add_test(tc, delta_and_percent_targets);
    tcase_add_test(tc, percent_rounds_the_total);
    tcase_add_test(tc, out_of_range);
    tcase_add_test(tc, equal_is_fair_per_family);
    tcase_add_test(tc, two_dimensions);
    tcase_add_test(tc, big_spread_on_two_threads);
    tcase_add_test(tc, bad_input_is_internal);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
