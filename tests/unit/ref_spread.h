/* ref_spread.h: a slow, obviously-right reference implementation of
 * spreading (the rules in the top comment of src/spread.h) in exact
 * GMP arithmetic, written independently of src/spread.c so that the two
 * can be compared on random inputs (tests/unit/test_spread_ref.c).
 *
 * It takes the same inputs as the engine and does plan and apportionment
 * in one go, treating the given cells as the whole region (pass the dense
 * cross product when the effective method is equal or repeat).
 *
 * Two points spread.h leaves open are settled here as the
 * engine settles them (found by the comparison; confirm or change both):
 * - "T does not fit": for proportional and equal, |amount| and |T - h|
 *   must be at most 10^REF_LIMIT_DIGITS, else out_of_range; this is
 *   checked first, before signs_cancel and held. Repeat has no such bound
 *   (each leaf must be within leaf_max), except that a percent's factor
 *   100 * 10^pct_scale + amount must fit a ds_i128 (out_of_range, checked
 *   before held).
 * - Repeat when every cell is held is refused (held) unless the command is
 *   the identity (DELTA 0 or PERCENT 0); the rule as first written said
 *   only "every leaf held and T != h". */
#ifndef DS_REF_SPREAD_H
#define DS_REF_SPREAD_H

#include <gmp.h>
#include <stdint.h>

#include "spread.h"

/* The bound on amounts and T - h: 10^36. */
#define REF_LIMIT_DIGITS 36

/* The most trees (consolidated dimensions) the reference handles. */
#define REF_MAX_TREES 8

/* mpz <-> ds_i128, by 64-bit halves. ref_mpz_get_i128 returns false (and
 * leaves *out alone) when z does not fit. */
void ref_mpz_set_i128(mpz_t z, ds_i128 v);
bool ref_mpz_get_i128(const mpz_t z, ds_i128 *out);

/* The tie hash as documented in spread.h, rebuilt from ds_mix64 so that
 * the reference does not depend on the engine's copy. */
uint64_t ref_tie_hash(uint64_t seq, const int32_t *ids, int n);

/* round(num / den) half away from zero, den > 0. */
void ref_round_half_away(mpz_t out, const mpz_t num, const mpz_t den);

/* The planning step: the effective method, and for proportional and equal
 * T (*target) and T - h (*need). Independent of whether missing cells are
 * listed. Returns 0, -DS_SIGNS_CANCEL, or -DS_OUT_OF_RANGE when the amount
 * or T - h is beyond 10^REF_LIMIT_DIGITS. For repeat both are set to 0. */
int ref_plan(const spread_params *p, const spread_cells *c, spread_method *effective, mpz_t target,
             mpz_t need);

/* Plan and apportion: fills newv[0..c->n) (held cells keep their value),
 * *effective and total_after (C's value after). Returns 0 or a negative
 * ds_code (-DS_HELD, -DS_SIGNS_CANCEL, -DS_OUT_OF_RANGE); on a refusal
 * newv is left untouched. */
int ref_spread(const spread_params *p, const spread_cells *c, int64_t *newv,
               spread_method *effective, mpz_t total_after);

#endif
