/* decimal.h: exact decimal numbers as scaled integers.
 *
 * A measure with scale s stores every value as an integer count of minor
 * units of 10^-s ("12.50" at scale 2 is 1250). This module parses such
 * numbers from their text, formats them back, and does the few wide
 * integer operations spreading needs (a*b/c with a 256-bit intermediate,
 * rounding half away from zero). Binary floating point is never used.
 * Pure: no I/O, no library beyond libc. */
#ifndef DS_DECIMAL_H
#define DS_DECIMAL_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* Scales beyond 18 do not fit the int64 minor units of a stored fact. */
#define DEC_MAX_SCALE 18
/* A stored leaf value: |v| <= 10^18 - 1 minor units (DECIMAL(18, s)). */
#define DEC_LEAF_MAX ((int64_t)999999999999999999LL)
/* Buffer size that holds any formatted ds_i128 at any scale. */
#define DEC_BUFSZ 48

typedef enum dec_status {
    DEC_OK = 0,
    DEC_ESYNTAX = -1, /* not a number of the accepted grammar */
    DEC_EPLACES = -2, /* non-zero digits beyond the scale */
    DEC_ERANGE = -3,  /* magnitude above the limit */
} dec_status;

/* Grammar accepted by dec_parse. */
typedef enum dec_syntax {
    DEC_JSON,   /* a JSON number: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? */
    DEC_STRING, /* a decimal string: -?(0|[1-9]\d*)(\.\d+)? (no leading zero, as JSON) */
} dec_syntax;

/* Parses s[0..len) at `scale` into minor units. Trailing zeros beyond the
 * scale are accepted ("1.500" at scale 2 is 150); any other digit beyond
 * it is DEC_EPLACES. |value| > limit is DEC_ERANGE (limit >= 0). "-0" is
 * zero. Exponents are applied exactly ("1.5e3" is 1500). */
dec_status dec_parse(const char *s, size_t len, dec_syntax syntax, int scale, ds_i128 limit,
                     ds_i128 *out);

/* Writes v at `scale` ("-12.50", "0.05", "7") into buf (DEC_BUFSZ bytes)
 * and returns the length. */
size_t dec_format(ds_i128 v, int scale, char *buf);

/* 10^k for 0 <= k <= 38; 0 for any other k. */
ds_i128 dec_pow10(int k);

/* Floor division with a positive divisor: q = floor(a*b / c) and
 * r = a*b - q*c, so 0 <= r < c. The product is exact (256 bits). Returns
 * false, leaving *q and *r untouched, when c <= 0 or q does not fit. */
bool dec_muldiv(ds_i128 a, ds_i128 b, ds_i128 c, ds_i128 *q, ds_i128 *r);

/* round(a*b / c) half away from zero, c > 0. False on overflow. */
bool dec_muldiv_round(ds_i128 a, ds_i128 b, ds_i128 c, ds_i128 *out);

/* Overflow-checked int128 addition and multiplication. */
bool dec_add(ds_i128 a, ds_i128 b, ds_i128 *out);
bool dec_mul(ds_i128 a, ds_i128 b, ds_i128 *out);

ds_i128 dec_abs(ds_i128 v);

#endif
