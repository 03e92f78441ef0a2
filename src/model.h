/* model.h: a model's catalog in memory: dimensions (trees of members with
 * unique keys and display names, ragged allowed), measures with a decimal
 * scale, and the lookups every request needs (dimension and measure by
 * name, member by key or unique display name, ancestry). Pure: no I/O.
 *
 * Member ids are stable small integers per dimension (facts store them);
 * a deleted member's id is never reused. After changing a dimension's
 * members call model_dim_index() to rebuild its derived lookups. A model
 * handed out by the store is immutable: changes go to a model_clone(). */
#ifndef DS_MODEL_H
#define DS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "spread.h"
#include "util.h"

#define DS_MAX_DIMS     16
#define DS_MAX_MEASURES 64
#define DS_IDENT_MAX    256 /* bytes in a key, name or identifier */

typedef struct ds_member {
    char *key;
    char *name;
    int32_t parent;     /* member id; -1 for the root */
    int32_t ordinal;    /* order among siblings */
    int32_t depth;      /* root 0 */
    int64_t struct_seq; /* last seq that changed the structure at or beneath it */
    bool alive;
} ds_member;

typedef struct ds_dim {
    int32_t id; /* stable within the model */
    char *name;
    int32_t root;
    int32_t nmembers; /* ids 0 .. nmembers - 1, deleted ones not alive */
    int32_t alloc;
    ds_member *members;
    /* derived by model_dim_index(): */
    int32_t *kid_start, *kids; /* children of id in sibling order */
    int32_t *pre;              /* alive members in preorder */
    int32_t *pos, *end;        /* id -> preorder index; one past its subtree */
    int32_t *leaf_count;       /* id -> leaves at or beneath it */
    int32_t *id_min, *id_max;  /* id -> smallest and largest id in its subtree */
    int32_t npre;
    ds_strmap by_key;
    ds_strmap by_name;       /* display name -> first member id with it */
    int32_t *next_same_name; /* id -> next member id with the same name, or -1 */
} ds_dim;

typedef struct ds_measure {
    int32_t id;
    char *name;
    int scale;
} ds_measure;

typedef struct ds_model {
    int refs; /* the owner's reference count (the store's snapshots) */
    int32_t id;
    int64_t struct_seq; /* seq of the last member operation (0: none) */
    char *name;
    int ndims;
    ds_dim dims[DS_MAX_DIMS];
    int nmeasures;
    ds_measure measures[DS_MAX_MEASURES];
} ds_model;

/* Caller frees with model_free(); model_free(NULL) is a no-op. */
ds_model *model_new(int32_t id, const char *name);
void model_free(ds_model *m);
ds_model *model_clone(const ds_model *m);

/* Building. Return the new index, or a negative ds_code with *err set
 * (duplicate or invalid names, too many dimensions or measures). */
int model_add_dim(ds_model *m, int32_t id, const char *name, const char *root_key,
                  const char *root_name, ds_error *err);
int model_add_measure(ds_model *m, int32_t id, const char *name, int scale, ds_error *err);
/* Adds member `id` (must be dim->nmembers: ids are dense) under parent id.
 * The caller calls model_dim_index() once after a series of additions. */
int model_add_member(ds_dim *d, int32_t parent, const char *key, const char *name, int32_t ordinal,
                     ds_error *err);
/* Puts member `id` in place when loading a stored catalog (ids may have
 * gaps where members were deleted; parent -1 makes it the root). */
void model_put_member(ds_dim *d, int32_t id, int32_t parent, const char *key, const char *name,
                      int32_t ordinal, int64_t struct_seq);
/* Marks a member deleted (its id is never reused) and frees its strings. */
void model_kill_member(ds_dim *d, int32_t id);
/* Makes ids below next_id taken (dead placeholders), so a reloaded
 * dimension never reuses the id of a member deleted before. */
void model_reserve_ids(ds_dim *d, int32_t next_id);
/* Rebuilds children, preorder, depths, leaf counts and the name maps. */
void model_dim_index(ds_dim *d);

/* Validates a name (an identifier, a member key or display name, a
 * request_id): 1..max bytes of valid UTF-8 with no control character
 * (U+0000-001F, U+007F-009F), no invisible character (soft hyphen,
 * zero-width space, word joiner, byte order mark, the direction marks,
 * embeddings, overrides and isolates, fillers, tags: names that look the
 * same must be the same bytes) and no white space at either end. It is
 * not normalised: NFC and NFD spellings, full-width letters and letters of
 * other scripts that look alike are distinct names. A name is never cut:
 * s[0..len) is checked whole. `what` names it in the message; `target` is
 * the error's target. 422 invalid_value. */
int model_check_text(const char *s, size_t len, size_t max, const char *what, const char *target,
                     ds_error *err);
/* model_check_text with DS_IDENT_MAX, `what` as the target too. */
int model_check_name(const char *s, size_t len, const char *what, ds_error *err);

/* Lookups by exact bytes. Return the index, or -1. */
int model_find_dim(const ds_model *m, const char *name, size_t len);
int model_find_measure(const ds_model *m, const char *name, size_t len);
int32_t model_find_key(const ds_dim *d, const char *key, size_t len);

/* A member by key or, if no key matches, by a unique display name.
 * not_found (target "cell") or ambiguous_member with the candidate keys. */
int model_resolve_member(const ds_dim *d, const char *text, size_t len, int32_t *id, ds_error *err);

static inline bool model_is_leaf(const ds_dim *d, int32_t id)
{
    return d->kid_start[id] == d->kid_start[id + 1];
}

/* True when member a is b or beneath b. */
static inline bool model_is_under(const ds_dim *d, int32_t a, int32_t b)
{
    return d->pos[b] <= d->pos[a] && d->pos[a] < d->end[b];
}

/* The subtree beneath member id as a spread_tree (preorder, local node i is
 * d->pre[d->pos[id] + i]). Arrays are caller-freed with free(). */
void model_subtree(const ds_dim *d, int32_t id, spread_tree *t, int32_t **parent, int32_t **ids);

/* True when the ids in id's subtree are exactly [id_min, id_max], so a
 * range test on ids selects the subtree's facts and nothing else. */
static inline bool model_ids_contiguous(const ds_dim *d, int32_t id)
{
    return d->id_max[id] - d->id_min[id] + 1 == d->end[id] - d->pos[id];
}

/* A hash of the catalog: name, dimensions, measures and alive members
 * (id, parent, key, name). */
uint64_t model_checksum(const ds_model *m);
/* The hash of one present fact value (measure q of a cell); a model's
 * facts hash to the sum, mod 2^64, of these. With model_checksum() the
 * engine and the persisted model are compared. */
uint64_t model_fact_hash(const ds_model *m, int q, const int32_t *cell, int64_t v);

/* The leaves at or beneath id, in preorder, into *out (caller frees). */
size_t model_leaves(const ds_dim *d, int32_t id, int32_t **out);

#endif
