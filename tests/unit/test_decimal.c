/* Unit tests for decimal.c: parsing, formatting and wide arithmetic,
 * including randomized comparisons against GMP. */
#include <check.h>
#include <gmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

static const ds_i128 BIG = (ds_i128)DEC_LEAF_MAX;

static dec_status parse(const char *s, dec_syntax syn, int scale, ds_i128 *v)
{
    return dec_parse(s, strlen(s), syn, scale, BIG, v);
}

static const char *fmt(ds_i128 v, int scale)
{
    static char buf[DEC_BUFSZ];
    dec_format(v, scale, buf);
    return buf;
}

START_TEST(parse_valid)
{
    static const struct {
        const char *s;
        int scale;
        long long want;
    } cases[] = {
        {"0", 0, 0},
        {"-0", 2, 0},
        {"12.50", 2, 1250},
        {"12.5", 2, 1250},
        {"12", 2, 1200},
        {"-3.07", 2, -307},
        {"0.05", 2, 5},
        {"1.500", 2, 150},
        {"1.5e3", 0, 1500},
        {"1.5E+3", 2, 150000},
        {"125e-2", 2, 125},
        {"1e0", 0, 1},
        {"-0.0", 0, 0},
        {"0e99999999999", 0, 0},
        {"100e-2", 0, 1},
        {"999999999999999999", 0, 999999999999999999LL},
        {"-9999999999999999.99", 2, -999999999999999999LL},
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(cases); i++) {
        ds_i128 v = 42;
        ck_assert_msg(parse(cases[i].s, DEC_JSON, cases[i].scale, &v) == DEC_OK, "%s", cases[i].s);
        ck_assert_msg(v == cases[i].want, "%s -> %s", cases[i].s, fmt(v, 0));
    }
}
END_TEST

START_TEST(parse_refusals)
{
    static const struct {
        const char *s;
        dec_syntax syn;
        int scale;
        dec_status want;
    } cases[] = {
        {"", DEC_JSON, 2, DEC_ESYNTAX},
        {"-", DEC_JSON, 2, DEC_ESYNTAX},
        {"01", DEC_JSON, 2, DEC_ESYNTAX},
        {"1.", DEC_JSON, 2, DEC_ESYNTAX},
        {".5", DEC_JSON, 2, DEC_ESYNTAX},
        {"+1", DEC_JSON, 2, DEC_ESYNTAX},
        {"1e", DEC_JSON, 2, DEC_ESYNTAX},
        {"1e+", DEC_JSON, 2, DEC_ESYNTAX},
        {"NaN", DEC_JSON, 2, DEC_ESYNTAX},
        {"Infinity", DEC_JSON, 2, DEC_ESYNTAX},
        {"-Infinity", DEC_JSON, 2, DEC_ESYNTAX},
        {"1 ", DEC_JSON, 2, DEC_ESYNTAX},
        {"0x10", DEC_JSON, 2, DEC_ESYNTAX},
        {"1,5", DEC_JSON, 2, DEC_ESYNTAX},
        {"1e3", DEC_STRING, 2, DEC_ESYNTAX},
        {"--1", DEC_STRING, 2, DEC_ESYNTAX},
        {"1.005", DEC_JSON, 2, DEC_EPLACES},
        {"0.1", DEC_JSON, 0, DEC_EPLACES},
        {"1e-1", DEC_JSON, 0, DEC_EPLACES},
        {"1e-99999999999", DEC_JSON, 2, DEC_EPLACES},
        {"1e400", DEC_JSON, 2, DEC_ERANGE},
        {"1e18", DEC_JSON, 0, DEC_ERANGE},
        {"1000000000000000000", DEC_JSON, 0, DEC_ERANGE},
        {"99999999999999999999999999999999999999999", DEC_JSON, 0, DEC_ERANGE},
        {"10000000000000000.00", DEC_JSON, 2, DEC_ERANGE},
        {"1", DEC_JSON, 19, DEC_ESYNTAX},
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(cases); i++) {
        ds_i128 v = 42;
        dec_status st = parse(cases[i].s, cases[i].syn, cases[i].scale, &v);
        ck_assert_msg(st == cases[i].want, "'%s' gave %d want %d", cases[i].s, st, cases[i].want);
        ck_assert_msg(v == 42, "'%s' wrote the output on failure", cases[i].s);
    }
    /* a leading zero is refused in strings as in JSON ("012" is no 12);
       a lone zero before the point is no leading zero */
    ds_i128 v;
    static const char *const lead[] = {"007.10", "012", "-012", "00", "-00.5", "01.0"};
    for (size_t i = 0; i < DS_ARRAY_LEN(lead); i++)
        ck_assert_msg(parse(lead[i], DEC_STRING, 2, &v) == DEC_ESYNTAX, "took '%s'", lead[i]);
    ck_assert_int_eq(parse("0.10", DEC_STRING, 2, &v), DEC_OK);
    ck_assert(v == 10);
    ck_assert_int_eq(parse("-0", DEC_STRING, 2, &v), DEC_OK);
    ck_assert(v == 0);
    ck_assert_int_eq(parse("10.5", DEC_STRING, 2, &v), DEC_OK);
    ck_assert(v == 1050);
    /* an embedded NUL is not part of a number */
    ck_assert_int_eq(dec_parse("1\0002", 3, DEC_JSON, 0, BIG, &v), DEC_ESYNTAX);
}
END_TEST

START_TEST(format_values)
{
    ck_assert_str_eq(fmt(1250, 2), "12.50");
    ck_assert_str_eq(fmt(-5, 2), "-0.05");
    ck_assert_str_eq(fmt(0, 2), "0.00");
    ck_assert_str_eq(fmt(0, 0), "0");
    ck_assert_str_eq(fmt(-7, 0), "-7");
    ck_assert_str_eq(fmt(123, 3), "0.123");
    ds_i128 min = (ds_i128)((ds_u128)1 << 127);
    ck_assert_str_eq(fmt(min, 0), "-170141183460469231731687303715884105728");
    ck_assert_str_eq(fmt(min, 18), "-170141183460469231731.687303715884105728");
}
END_TEST

/* Random decimals: format(parse(text)) == canonical text, and back. */
START_TEST(roundtrip_random)
{
    srand(12345);
    char text[80], out[DEC_BUFSZ];
    for (int i = 0; i < 20000; i++) {
        int scale = rand() % 7;
        long long ip = rand() % 3 == 0 ? 0 : ((long long)rand() << 20) ^ rand();
        int fdigits = rand() % (scale + 1);
        long long fp = fdigits ? rand() % (long long)dec_pow10(fdigits) : 0;
        int neg = rand() % 2;
        if (fdigits)
            snprintf(text, sizeof text, "%s%lld.%0*lld", neg ? "-" : "", ip, fdigits, fp);
        else
            snprintf(text, sizeof text, "%s%lld", neg ? "-" : "", ip);
        ds_i128 v, w, lim = dec_pow10(36);
        ck_assert_msg(dec_parse(text, strlen(text), DEC_JSON, scale, lim, &v) == DEC_OK, "%s",
                      text);
        dec_format(v, scale, out);
        ck_assert_msg(dec_parse(out, strlen(out), DEC_JSON, scale, lim, &w) == DEC_OK, "%s", out);
        ck_assert_msg(v == w, "%s -> %s", text, out);
        /* compare with GMP: value * 10^scale */
        mpq_t q;
        mpq_init(q);
        char gm[96];
        if (fdigits)
            snprintf(gm, sizeof gm, "%s%lld%0*lld", neg ? "-" : "", ip, fdigits, fp);
        else
            snprintf(gm, sizeof gm, "%s%lld", neg ? "-" : "", ip);
        mpq_set_str(q, gm, 10);
        mpz_t z;
        mpz_init(z);
        mpz_ui_pow_ui(z, 10, (unsigned long)(scale - fdigits));
        mpz_mul(z, z, mpq_numref(q));
        char *want = mpz_get_str(NULL, 10, z);
        char got[DEC_BUFSZ];
        dec_format(v, 0, got);
        ck_assert_msg(strcmp(want, got) == 0 || (strcmp(want, "0") == 0 && strcmp(got, "0") == 0),
                      "%s: want %s got %s", text, want, got);
        free(want);
        mpz_clear(z);
        mpq_clear(q);
    }
}
END_TEST

static void to_mpz(mpz_t z, ds_i128 v)
{
    char buf[DEC_BUFSZ];
    dec_format(v, 0, buf);
    mpz_set_str(z, buf, 10);
}

static ds_i128 rand_i128(int bits)
{
    ds_u128 v = 0;
    for (int i = 0; i < 5; i++)
        v = (v << 31) ^ (ds_u128)rand();
    if (bits < 127)
        v &= ((ds_u128)1 << bits) - 1;
    else
        v &= ((ds_u128)1 << 126) - 1;
    return rand() % 2 ? -(ds_i128)v : (ds_i128)v;
}

START_TEST(muldiv_random)
{
    srand(777);
    mpz_t a, b, c, p, q, r, gq;
    mpz_inits(a, b, c, p, q, r, gq, NULL);
    int slow = 0;
    for (int i = 0; i < 50000; i++) {
        ds_i128 x = rand_i128(1 + rand() % 126), y = rand_i128(1 + rand() % 126);
        ds_i128 z = dec_abs(rand_i128(1 + rand() % 126));
        if (z == 0)
            z = 1;
        to_mpz(a, x);
        to_mpz(b, y);
        to_mpz(c, z);
        mpz_mul(p, a, b);
        mpz_fdiv_qr(q, r, p, c);
        ds_i128 dq, dr;
        bool ok = dec_muldiv(x, y, z, &dq, &dr);
        /* fits when -2^127 < q < 2^127 - 1 */
        bool fits = mpz_sizeinbase(q, 2) <= 126;
        if (fits)
            ck_assert_msg(ok, "muldiv refused a quotient that fits");
        if (ok) {
            to_mpz(gq, dq);
            ck_assert(mpz_cmp(gq, q) == 0);
            to_mpz(gq, dr);
            ck_assert(mpz_cmp(gq, r) == 0);
            slow += !(x >= INT64_MIN && x <= INT64_MAX && y >= INT64_MIN && y <= INT64_MAX);
        }
    }
    ck_assert_int_gt(slow, 1000); /* the 256-bit path was exercised */
    mpz_clears(a, b, c, p, q, r, gq, NULL);
}
END_TEST

START_TEST(muldiv_round_half_away)
{
    ds_i128 v;
    ck_assert(dec_muldiv_round(5, 1, 2, &v) && v == 3);   /* 2.5 -> 3 */
    ck_assert(dec_muldiv_round(-5, 1, 2, &v) && v == -3); /* -2.5 -> -3 */
    ck_assert(dec_muldiv_round(7, 1, 3, &v) && v == 2);   /* 2.33 -> 2 */
    ck_assert(dec_muldiv_round(-7, 1, 3, &v) && v == -2);
    ck_assert(dec_muldiv_round(8, 1, 3, &v) && v == 3); /* 2.67 -> 3 */
    ck_assert(dec_muldiv_round(-8, 1, 3, &v) && v == -3);
    ck_assert(dec_muldiv_round(-1, 1, 2, &v) && v == -1); /* -0.5 -> -1 */
    ck_assert(dec_muldiv_round(1, 1, 2, &v) && v == 1);
    ck_assert(dec_muldiv_round(-1, 1, 3, &v) && v == 0);
    ck_assert(!dec_muldiv(1, 1, 0, &v, &v));
    ck_assert(!dec_muldiv(1, 1, -3, &v, &v));
}
END_TEST

START_TEST(checked_ops)
{
    ds_i128 max = (ds_i128)(((ds_u128)1 << 127) - 1), v;
    ck_assert(!dec_add(max, 1, &v));
    ck_assert(dec_add(max, -1, &v) && v == max - 1);
    ck_assert(!dec_mul(max / 2 + 1, 2, &v));
    ck_assert(dec_pow10(38) / dec_pow10(37) == 10);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("decimal");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, parse_valid);
    tcase_add_test(tc, parse_refusals);
    tcase_add_test(tc, format_values);
    tcase_add_test(tc, roundtrip_random);
    tcase_add_test(tc, muldiv_random);
    tcase_add_test(tc, muldiv_round_half_away);
    tcase_add_test(tc, checked_ops);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
