/* spread.h: the spreading engine and its rules. Pure: inputs in, new leaf
 * values out; no I/O, no floating point.
 *
 * Writing value T to a consolidated cell C works in two steps. The store
 * reads the existing leaf facts beneath C and sums them (spread_totals).
 * spread_plan_make() turns the request into a plan: the effective method
 * (proportional falls back to equal when every unheld leaf is zero), the
 * target T and the part T - h the unheld leaves must reach, or a refusal.
 * Equal and repeat visit missing cells too (plan.dense), so the store then
 * lists every cell of the region. spread_apportion() computes each cell's
 * new value.
 *
 * Apportionment tree. Only dimensions where C's member has children take
 * part ("consolidated" dimensions, in model order); each is described by
 * the subtree beneath C's member (spread_tree). The tree the units flow
 * down is: C's member's children in the first consolidated dimension, then
 * theirs, down to its leaves; beneath each leaf of dimension k, C's
 * member's children in dimension k + 1, and so on; below the leaf of the
 * last dimension sit the cells. A node of that tree is written
 * (k, x_0..x_{k-1}, y): the leaf members x_j chosen in the earlier
 * dimensions and a member y of tree k.
 *
 * Exact fair apportionment. Let w be each unheld cell's weight (its value
 * for proportional, 1 for equal) and W their sum. A node's exact share is
 * (T - h) * W_node / W, a rational. The root gets T - h. A node given the
 * integer A gives each child the floor of its exact share, and one more
 * unit to the (A - sum of floors) children ranked first by: larger
 * fractional part of the exact share, then larger spread_tie_hash of the
 * child, then earlier in sibling order. So every node along the tree gets
 * the floor or the ceiling of its exact share, every cell too, and the
 * cells sum exactly to T - h. Held cells keep their value. */
#ifndef DS_SPREAD_H
#define DS_SPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "util.h"

typedef enum spread_method {
    SPREAD_PROPORTIONAL = 0,
    SPREAD_EQUAL,
    SPREAD_REPEAT,
} spread_method;

typedef enum spread_form {
    SPREAD_SET = 0, /* amount is the new value T */
    SPREAD_DELTA,   /* amount is d: T = current + d (repeat: each leaf + d) */
    SPREAD_PERCENT, /* amount is p * 10^pct_scale: T - h = sum(U) * (1 + p/100) */
} spread_form;

/* Share-nothing cap for percent's decimal places. */
#define SPREAD_PCT_MAX_SCALE 9

typedef struct spread_params {
    spread_method method;
    spread_form form;
    ds_i128 amount;   /* minor units of the measure, or the scaled percent */
    int pct_scale;    /* places of a percent amount, 0..SPREAD_PCT_MAX_SCALE */
    uint64_t seq;     /* the seq the command will get: seeds the tie hash */
    int64_t leaf_max; /* every leaf result must satisfy |v| <= leaf_max */
} spread_params;

/* Sums over the existing facts beneath C (missing facts are zero). */
typedef struct spread_totals {
    ds_i128 total;      /* every leaf: C's current value */
    ds_i128 held;       /* h: held leaves */
    ds_i128 unheld;     /* sum(U) */
    ds_i128 unheld_abs; /* sum |u| over U */
} spread_totals;

typedef struct spread_plan {
    spread_method method;  /* effective method */
    ds_i128 target;        /* T: C's value after, for SET/DELTA/PERCENT of
                              proportional and equal; for repeat it is
                              known only after spread_apportion */
    ds_i128 unheld_target; /* T - h (proportional and equal) */
    bool dense;            /* the cells must include missing ones */
} spread_plan;

/* One consolidated dimension: the subtree beneath C's member, in preorder
 * (every subtree is a contiguous run [i, i + size); siblings in model
 * order). parent[0] = -1 and parent[i] < i. id[i] is the member's stable
 * id, which seeds the tie hash. */
typedef struct spread_tree {
    int32_t n;
    const int32_t *parent;
    const int32_t *id;
} spread_tree;

/* The cells of the region, in any order. coord[i * ntrees + k] is cell i's
 * node in trees[k], always a leaf of that tree; no two cells share all
 * coordinates. held may be NULL (nothing held). */
typedef struct spread_cells {
    size_t n;
    int ntrees;
    const spread_tree *trees;
    const int32_t *coord;
    const int64_t *value;
    const uint8_t *held;
} spread_cells;

/* Sums value and held over the cells (a helper for callers and tests). */
void spread_totals_of(const spread_cells *c, spread_totals *t);

/* Decides the effective method and T, or refuses: signs_cancel when
 * sum(U) is zero or |sum(U)| < sum|u| / 1000 while some u is not zero
 * (proportional only); out_of_range when T does not fit. Returns 0 or a
 * negative ds_code with *err filled. */
int spread_plan_make(const spread_params *p, const spread_totals *t, spread_plan *plan,
                     ds_error *err);

/* Computes every cell's new value into newv[0..c->n) (held cells keep
 * theirs). For a dense plan the cells must be the whole region. Refuses
 * with held (every cell held and T != h) or out_of_range (a result beyond
 * leaf_max). On success *total_after is C's value after (for repeat this
 * is T * |U| + h). Returns 0 or a negative ds_code. */
int spread_apportion(const spread_params *p, const spread_plan *plan, const spread_cells *c,
                     int64_t *newv, ds_i128 *total_after, ds_error *err);

/* The tie hash of an apportionment node: ids are the member ids along
 * its identity (x_0 .. x_{k-1}, y), n of them. h = mix64(seq), then
 * h = mix64(h ^ (uint32_t)ids[j]) for each j (ds_mix64 of util.h). */
uint64_t spread_tie_hash(uint64_t seq, const int32_t *ids, int n);

const char *spread_method_name(spread_method m);

#endif
