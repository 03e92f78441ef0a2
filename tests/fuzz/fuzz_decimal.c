/* fuzz_decimal.c: libFuzzer target for src/decimal.c.
 *
 * Parse mode (first byte's top bit clear): the first byte picks the scale
 * (0..18) and the syntax, the second the limit, the rest is the text.
 * Checked against a slow reference in GMP (grammar, exact value, places,
 * range), and formatting what was parsed gives it back:
 * parse(format(parse(s))) == parse(s) in both syntaxes, and
 * format(parse(s)) == s exactly when s is canonical at that scale.
 *
 * Arithmetic mode (top bit set): three 128-bit integers a, b, c and
 * dec_muldiv / dec_muldiv_round / dec_add / dec_mul against GMP. */
#include <gmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_decimal: %s:%d: %s\n", __FILE__, __LINE__, #c);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void mpz_set_i128(mpz_t z, ds_i128 v)
{
    ds_u128 m = v < 0 ? (ds_u128)0 - (ds_u128)v : (ds_u128)v;
    mpz_set_ui(z, (unsigned long)(uint64_t)(m >> 64));
    mpz_mul_2exp(z, z, 64);
    mpz_add_ui(z, z, (unsigned long)(uint64_t)m);
    if (v < 0)
        mpz_neg(z, z);
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The grammar, written out again: digits of the integer and fraction
 * parts into *digs (no point), count of fraction digits, exponent. */
typedef struct ref_num {
    bool neg;
    char *digs;
    size_t nfrac;
    long long exp; /* clamped to +-10^12 */
} ref_num;

static bool ref_split(const char *s, size_t n, dec_syntax syn, ref_num *r)
{
    size_t i = 0, o = 0;
    r->neg = false;
    r->nfrac = 0;
    r->exp = 0;
    if (i < n && s[i] == '-')
        r->neg = true, i++;
    size_t start = i;
    while (i < n && digit(s[i]))
        r->digs[o++] = s[i++];
    if (i == start)
        return false;
    if (i - start > 1 && s[start] == '0') /* no leading zero, in JSON or in strings */
        return false;
    if (i < n && s[i] == '.') {
        size_t f = ++i;
        while (i < n && digit(s[i]))
            r->digs[o++] = s[i++];
        if (i == f)
            return false;
        r->nfrac = i - f;
    }
    if (syn == DEC_JSON && i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        size_t f = i;
        while (i < n && digit(s[i])) {
            if (r->exp < 1000000000000LL)
                r->exp = r->exp * 10 + (s[i] - '0');
            i++;
        }
        if (i == f)
            return false;
        if (eneg)
            r->exp = -r->exp;
    }
    r->digs[o] = '\0';
    return i == n;
}

/* What dec_parse must answer, from first principles. */
static dec_status ref_parse(const char *s, size_t n, dec_syntax syn, int scale, ds_i128 limit,
                            mpz_t out)
{
    ref_num r;
    r.digs = malloc(n + 1);
    if (!ref_split(s, n, syn, &r)) {
        free(r.digs);
        return DEC_ESYNTAX;
    }
    mpz_t d, lim, p;
    mpz_inits(d, lim, p, NULL);
    mpz_set_str(d, r.digs, 10);
    size_t nd = strlen(r.digs);
    free(r.digs);
    long long e = r.exp - (long long)r.nfrac + scale; /* value = d * 10^e */
    dec_status st = DEC_OK;
    if (mpz_sgn(d) == 0) {
        mpz_set_ui(out, 0);
    } else if (e < -(long long)nd - 1) {
        st = DEC_EPLACES; /* d < 10^nd cannot be a multiple of 10^-e */
    } else if (e > 60) {
        st = DEC_ERANGE; /* at least 10^60 */
    } else if (e < 0) {
        mpz_ui_pow_ui(p, 10, (unsigned long)-e);
        if (!mpz_divisible_p(d, p))
            st = DEC_EPLACES;
        else
            mpz_divexact(out, d, p);
    } else {
        mpz_ui_pow_ui(p, 10, (unsigned long)e);
        mpz_mul(out, d, p);
    }
    mpz_set_i128(lim, limit);
    if (st == DEC_OK && mpz_cmp(out, lim) > 0)
        st = DEC_ERANGE;
    if (st == DEC_OK && r.neg)
        mpz_neg(out, out);
    mpz_clears(d, lim, p, NULL);
    return st;
}

/* -?(0|[1-9]\d*)(\.\d{scale})? with the fraction exactly when scale > 0,
 * and not a negative zero: what dec_format writes. */
static bool canonical(const char *s, size_t n, int scale)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    size_t start = i;
    while (i < n && digit(s[i]))
        i++;
    if (i == start || (i - start > 1 && s[start] == '0'))
        return false;
    if (scale > 0) {
        if (i >= n || s[i] != '.')
            return false;
        size_t f = ++i;
        while (i < n && digit(s[i]))
            i++;
        if (i - f != (size_t)scale)
            return false;
    }
    if (i != n)
        return false;
    if (s[0] == '-') { /* "-0", "-0.00" */
        for (size_t k = 1; k < n; k++)
            if (s[k] != '0' && s[k] != '.')
                return true;
        return false;
    }
    return true;
}

static const ds_i128 *limits(void)
{
    static ds_i128 l[8];
    if (!l[1]) {
        l[0] = 0;
        l[1] = 18;
        l[2] = (ds_i128)1 << 62;
        l[3] = DEC_LEAF_MAX;
        l[4] = dec_pow10(18);
        l[5] = dec_pow10(36);
        l[6] = dec_pow10(38) - 1;
        l[7] = 999;
    }
    return l;
}

static void parse_mode(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    int scale = (data[0] & 0x3f) % (DEC_MAX_SCALE + 1);
    dec_syntax syn = (data[0] & 0x40) ? DEC_STRING : DEC_JSON;
    ds_i128 limit = limits()[data[1] & 7];
    const char *s = (const char *)data + 2;
    size_t n = size - 2;

    ds_i128 v = 12345;
    dec_status st = dec_parse(s, n, syn, scale, limit, &v);
    mpz_t want, got;
    mpz_inits(want, got, NULL);
    dec_status rst = ref_parse(s, n, syn, scale, limit, want);
    if (st != rst)
        fprintf(stderr, "fuzz_decimal: '%.*s' scale %d: status %d, reference %d\n", (int)n, s,
                scale, st, rst);
    CHECK(st == rst);
    if (st == DEC_OK) {
        mpz_set_i128(got, v);
        CHECK(mpz_cmp(got, want) == 0);
        CHECK(dec_abs(v) <= limit);

        char buf[DEC_BUFSZ + 8];
        memset(buf, 'x', sizeof buf);
        size_t fl = dec_format(v, scale, buf);
        CHECK(fl < DEC_BUFSZ && buf[fl] == '\0' && strlen(buf) == fl);
        CHECK(canonical(buf, fl, scale));
        ds_i128 v2 = 0, v3 = 0;
        CHECK(dec_parse(buf, fl, DEC_STRING, scale, limit, &v2) == DEC_OK && v2 == v);
        CHECK(dec_parse(buf, fl, DEC_JSON, scale, limit, &v3) == DEC_OK && v3 == v);
        bool same = fl == n && memcmp(buf, s, n) == 0;
        CHECK(same == canonical(s, n, scale));
    } else {
        CHECK(v == 12345); /* *out untouched on failure */
        CHECK(!canonical(s, n, scale) || st == DEC_ERANGE);
    }
    mpz_clears(want, got, NULL);
}

static ds_i128 get_i128(const uint8_t *p)
{
    ds_u128 u = 0;
    for (int i = 0; i < 16; i++)
        u = (u << 8) | p[i];
    return (ds_i128)u;
}

static void arith_mode(const uint8_t *data, size_t size)
{
    if (size < 49)
        return;
    ds_i128 a = get_i128(data + 1), b = get_i128(data + 17), c = get_i128(data + 33);
    /* small operands as often as large ones: the top byte shifts them down */
    int shift = data[0] & 0x7f;
    if (shift < 127) {
        a >>= shift;
        b >>= (shift * 7) % 127;
        c >>= (shift * 3) % 127;
    }
    mpz_t za, zb, zc, p, q, r, t, lo, hi;
    mpz_inits(za, zb, zc, p, q, r, t, lo, hi, NULL);
    mpz_set_i128(za, a);
    mpz_set_i128(zb, b);
    mpz_set_i128(zc, c);
    mpz_set_i128(hi, (ds_i128)(((ds_u128)1 << 127) - 1));
    mpz_neg(lo, hi);
    mpz_sub_ui(lo, lo, 1);
    mpz_mul(p, za, zb);

    ds_i128 out;
    mpz_add(t, za, zb);
    bool fits = mpz_cmp(t, lo) >= 0 && mpz_cmp(t, hi) <= 0;
    CHECK(dec_add(a, b, &out) == fits);
    if (fits) {
        mpz_set_i128(q, out);
        CHECK(mpz_cmp(q, t) == 0);
    }
    fits = mpz_cmp(p, lo) >= 0 && mpz_cmp(p, hi) <= 0;
    CHECK(dec_mul(a, b, &out) == fits);
    if (fits) {
        mpz_set_i128(q, out);
        CHECK(mpz_cmp(q, p) == 0);
    }

    ds_i128 dq = 7, dr = 7;
    bool ok = dec_muldiv(a, b, c, &dq, &dr);
    if (c <= 0) {
        CHECK(!ok && dq == 7 && dr == 7);
    } else {
        mpz_fdiv_qr(q, r, p, zc);
        /* the quotient must fit; dec_muldiv may also refuse a quotient of
         * exactly -2^127 (its magnitude needs 128 bits) */
        fits = mpz_cmp(q, lo) > 0 && mpz_cmp(q, hi) <= 0;
        if (ok) {
            mpz_set_i128(t, dq);
            CHECK(mpz_cmp(t, q) == 0);
            mpz_set_i128(t, dr);
            CHECK(mpz_cmp(t, r) == 0);
        } else {
            CHECK(!fits);
            CHECK(dq == 7 && dr == 7);
        }
        CHECK(ok || !fits);
        CHECK(!fits || ok);

        /* round half away from zero: q + (2r >= c, or 2r > c below zero) */
        ds_i128 rnd = 7;
        bool rok = dec_muldiv_round(a, b, c, &rnd);
        mpz_mul_2exp(t, r, 1);
        int cmp = mpz_cmp(t, zc);
        bool up = mpz_sgn(q) >= 0 ? cmp >= 0 : cmp > 0;
        if (up)
            mpz_add_ui(q, q, 1);
        CHECK(rok == (ok && mpz_cmp(q, hi) <= 0));
        if (rok) {
            mpz_set_i128(t, rnd);
            CHECK(mpz_cmp(t, q) == 0);
        }
    }
    mpz_clears(za, zb, zc, p, q, r, t, lo, hi, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 0x80)
        arith_mode(data, size);
    else
        parse_mode(data, size);
    return 0;
}
