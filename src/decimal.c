/* decimal.c: see decimal.h. No floating point anywhere in this file. */
#include "decimal.h"

#include <string.h>

#define I128_MAX ((ds_i128)(((ds_u128)1 << 127) - 1))

ds_i128 dec_pow10(int k)
{
    if (k < 0 || k > 38)
        return 0; /* callers check their scales; 0 makes a misuse visible */
    ds_i128 p = 1;
    for (int i = 0; i < k; i++)
        p *= 10;
    return p;
}

ds_i128 dec_abs(ds_i128 v)
{
    return v < 0 ? -v : v;
}

bool dec_add(ds_i128 a, ds_i128 b, ds_i128 *out)
{
    return !__builtin_add_overflow(a, b, out);
}

bool dec_mul(ds_i128 a, ds_i128 b, ds_i128 *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Splits the text into sign, digit runs and exponent; checks the grammar. */
typedef struct parts {
    bool neg;
    const char *ip; /* integer digits */
    size_t in;
    const char *fp; /* fraction digits */
    size_t fn;
    int64_t exp; /* saturated to +-2^40 */
} parts;

static bool split(const char *s, size_t len, dec_syntax syntax, parts *p)
{
    size_t i = 0;
    memset(p, 0, sizeof *p);
    if (i < len && s[i] == '-') {
        p->neg = true;
        i++;
    }
    p->ip = s + i;
    while (i < len && is_digit(s[i]))
        i++;
    p->in = (size_t)(s + i - p->ip);
    if (p->in == 0)
        return false;
    if (p->in > 1 && p->ip[0] == '0') /* "012": a leading zero, in JSON and in strings */
        return false;
    if (i < len && s[i] == '.') {
        i++;
        p->fp = s + i;
        while (i < len && is_digit(s[i]))
            i++;
        p->fn = (size_t)(s + i - p->fp);
        if (p->fn == 0)
            return false;
    }
    if (syntax == DEC_JSON && i < len && (s[i] == 'e' || s[i] == 'E')) {
        bool eneg = false;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        size_t start = i;
        int64_t e = 0;
        while (i < len && is_digit(s[i])) {
            if (e < ((int64_t)1 << 40))
                e = e * 10 + (s[i] - '0');
            i++;
        }
        if (i == start)
            return false;
        p->exp = eneg ? -e : e;
    }
    return i == len;
}

/* The i-th significant digit of integer-then-fraction digits. */
static int digit_at(const parts *p, size_t i)
{
    return i < p->in ? p->ip[i] - '0' : p->fp[i - p->in] - '0';
}

dec_status dec_parse(const char *s, size_t len, dec_syntax syntax, int scale, ds_i128 limit,
                     ds_i128 *out)
{
    parts p;
    if (scale < 0 || scale > DEC_MAX_SCALE || !split(s, len, syntax, &p))
        return DEC_ESYNTAX;

    /* value = D * 10^e, D the digit string without the point. */
    size_t first = 0, last = p.in + p.fn; /* significant digits [first, last) */
    int64_t e = p.exp - (int64_t)p.fn + scale;
    while (first < last && digit_at(&p, first) == 0)
        first++;
    if (first == last) {
        *out = 0;
        return DEC_OK;
    }
    while (digit_at(&p, last - 1) == 0) {
        last--;
        e++;
    }
    if (e < 0)
        return DEC_EPLACES;
    int64_t ndigits = (int64_t)(last - first) + e;
    if (ndigits > 38)
        return DEC_ERANGE;
    ds_i128 v = 0;
    for (size_t i = first; i < last; i++)
        v = v * 10 + digit_at(&p, i);
    v *= dec_pow10((int)e);
    if (v > limit)
        return DEC_ERANGE;
    *out = p.neg ? -v : v;
    return DEC_OK;
}

size_t dec_format(ds_i128 v, int scale, char *buf)
{
    char tmp[DEC_BUFSZ];
    size_t n = 0;
    ds_u128 m = v < 0 ? (ds_u128)0 - (ds_u128)v : (ds_u128)v;
    /* digits, least significant first, at least scale + 1 of them */
    do {
        tmp[n++] = (char)('0' + (int)(m % 10));
        m /= 10;
    } while (m || n <= (size_t)scale);
    size_t o = 0;
    if (v < 0)
        buf[o++] = '-';
    while (n > 0) {
        if (n == (size_t)scale)
            buf[o++] = '.';
        buf[o++] = tmp[--n];
    }
    buf[o] = '\0';
    return o;
}

/* 128 x 128 -> 256-bit unsigned product as (hi, lo). */
static void mul_u256(ds_u128 a, ds_u128 b, ds_u128 *hi, ds_u128 *lo)
{
    const ds_u128 mask = ((ds_u128)1 << 64) - 1;
    ds_u128 a0 = a & mask, a1 = a >> 64, b0 = b & mask, b1 = b >> 64;
    ds_u128 p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    ds_u128 mid = (p00 >> 64) + (p01 & mask) + (p10 & mask);
    *lo = (p00 & mask) | (mid << 64);
    *hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
}

/* (hi, lo) / c for 0 < c < 2^127, by shift and subtract. False when the
 * quotient needs more than 127 bits. */
static bool div_u256(ds_u128 hi, ds_u128 lo, ds_u128 c, ds_u128 *q, ds_u128 *r)
{
    if (hi >= c)
        return false; /* quotient >= 2^128 */
    ds_u128 rem = hi, quo = 0;
    for (int i = 127; i >= 0; i--) {
        rem = (rem << 1) | ((lo >> i) & 1); /* rem < 2c < 2^128 */
        quo <<= 1;
        if (rem >= c) {
            rem -= c;
            quo |= 1;
        }
    }
    if (quo >> 127)
        return false;
    *q = quo;
    *r = rem;
    return true;
}

static bool fits_i64(ds_i128 v)
{
    return v >= INT64_MIN && v <= INT64_MAX;
}

bool dec_muldiv(ds_i128 a, ds_i128 b, ds_i128 c, ds_i128 *q, ds_i128 *r)
{
    if (c <= 0)
        return false;
    if (fits_i64(a) && fits_i64(b)) {
        ds_i128 p = a * b; /* |p| < 2^126 */
        ds_i128 qq = p / c, rr = p % c;
        if (rr < 0) {
            qq -= 1;
            rr += c;
        }
        *q = qq;
        *r = rr;
        return true;
    }
    bool neg = (a < 0) != (b < 0);
    ds_u128 ua = a < 0 ? (ds_u128)0 - (ds_u128)a : (ds_u128)a;
    ds_u128 ub = b < 0 ? (ds_u128)0 - (ds_u128)b : (ds_u128)b;
    ds_u128 hi, lo, uq, ur;
    mul_u256(ua, ub, &hi, &lo);
    if (!div_u256(hi, lo, (ds_u128)c, &uq, &ur))
        return false;
    if (!neg) {
        *q = (ds_i128)uq;
        *r = (ds_i128)ur;
    } else if (ur == 0) {
        *q = -(ds_i128)uq;
        *r = 0;
    } else {
        *q = -(ds_i128)uq - 1;
        *r = c - (ds_i128)ur;
    }
    return true;
}

bool dec_muldiv_round(ds_i128 a, ds_i128 b, ds_i128 c, ds_i128 *out)
{
    ds_i128 q, r;
    if (!dec_muldiv(a, b, c, &q, &r))
        return false;
    /* value = q + r/c with 0 <= r/c < 1; negative exactly when q < 0 */
    bool up = q >= 0 ? r >= c - r : r > c - r;
    if (up && q == I128_MAX)
        return false;
    *out = up ? q + 1 : q;
    return true;
}
