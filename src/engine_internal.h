/* engine_internal.h: shared by the engine's files.
 *   engine.c         lifecycle, locking, submit (ledger, decoding, scope,
 *                    undo of a refused command), reads, checksum
 *   engine_facts.c   the fact table and its hash index; the cube of totals
 *   engine_write.c   leaf writes and spreads (DESIGN rules, via spread.h)
 *   engine_member.c  member add, rename, move, delete
 *   engine_ledger.c  request ids with retention */
#ifndef DS_ENGINE_INTERNAL_H
#define DS_ENGINE_INTERNAL_H

#include <pthread.h>

#include "engine.h"

/* ---- facts ------------------------------------------------------------- */

typedef struct facts {
    int ndims, nmeasures;
    uint32_t n, cap;
    int32_t *cell;                    /* cap * ndims member ids */
    uint64_t *has;                    /* cap: bit q = measure q present */
    int64_t *val[DS_MAX_MEASURES];    /* cap each: minor units (0 if missing) */
    int64_t *stamp[DS_MAX_MEASURES];  /* cap each: seq that last changed it */
    uint32_t *slot;                   /* hash index: ordinal + 1, 0 empty */
    size_t nslots;                    /* a power of two, at least 2 * n */
    uint64_t live;                    /* facts with any measure present */
    ds_u128 abs_sum[DS_MAX_MEASURES]; /* sum of |value| per measure: while it
                                         is below 2^62 no total can overflow */
} facts;

/* Keeps abs_sum as a value of measure q changes. */
static inline void facts__abs(facts *f, int q, bool old_has, int64_t old_v, bool new_has,
                              int64_t new_v)
{
    if (old_has)
        f->abs_sum[q] -= (ds_u128)(old_v < 0 ? -(ds_i128)old_v : old_v);
    if (new_has)
        f->abs_sum[q] += (ds_u128)(new_v < 0 ? -(ds_i128)new_v : new_v);
}

/* No total of measure q, and no difference of two, can overflow int64. */
static inline bool facts__small(const facts *f, int q)
{
    return f->abs_sum[q] < ((ds_u128)1 << 62);
}

/* Facts cap: ordinals are uint32 and the index needs room. */
#define FACTS_MAX (UINT32_C(1) << 30)

void facts__init(facts *f, int ndims, int nmeasures);
void facts__free(facts *f);
/* The ordinal of a cell's fact, or -1. */
int64_t facts__find(const facts *f, const int32_t *cell);
/* Appends a fact for a cell that has none (every measure missing); its
 * ordinal. -1 when FACTS_MAX is reached. */
int64_t facts__add(facts *f, const int32_t *cell);
/* Removes the last fact (undo of a creation). */
void facts__pop(facts *f);
/* Gives fact i another member of dimension dim (facts moving with a
 * member operation); false when that cell has a fact already. */
bool facts__rekey(facts *f, uint32_t i, int dim, int32_t member);
static inline const int32_t *facts__cell(const facts *f, uint32_t i)
{
    return f->cell + (size_t)i * (size_t)f->ndims;
}
size_t facts__bytes(const facts *f);

/* ---- the cube of totals --------------------------------------------------
 * tot[q][sum over k of pos_k(member) * stride[k]] is the total of measure q
 * of that cell, for every combination of alive members (pos: preorder
 * position). Kept only within the budget and while no total overflows
 * int64; otherwise consolidated values are summed from the facts. */
#define CUBE_DEPTH_MAX 64 /* deeper trees get no cube */

typedef struct cube {
    bool valid;
    size_t size;
    size_t stride[DS_MAX_DIMS];
    int nmeasures;
    int64_t *tot[DS_MAX_MEASURES];
    int64_t *scratch; /* the local array of a region update, kept */
    size_t scratch_n;
} cube;

/* Builds the cube of m's catalog from the facts, within budget bytes.
 * Leaves it invalid (and freed) when it would not fit or overflows. */
void cube__build(cube *c, const ds_model *m, const facts *f, size_t budget);
void cube__free(cube *c);
size_t cube__bytes(const ds_model *m, size_t *cells);
/* Adds delta to every total above (and at) a leaf cell; invalidates the
 * cube on overflow. */
void cube__add_leaf(cube *c, const ds_model *m, int q, const int32_t *leaf, int64_t delta);
/* Adds many leaf deltas beneath cell `top` at once (a spread): rows[i]'s
 * cell is cells[i * ndims] and delta new - old. small: no sum can
 * overflow (facts__small before and after), so nothing is checked. */
void cube__add_region(cube *c, const ds_model *m, int q, const ds_cell *top, const engine_row *rows,
                      const int32_t *cells, size_t n, bool small);
/* A cell's total from the cube; false when the cube cannot say. */
bool cube__get(const cube *c, const ds_model *m, int q, const int32_t *cell, ds_i128 *out);

/* ---- the ledger --------------------------------------------------------- */

typedef struct ledger_item {
    struct ledger_item *next; /* in its bucket */
    int64_t seq, ts_ms;
    int code;
    uint8_t hash[32];
    uint32_t ulen, rlen;
    char key[]; /* user, NUL, rid, NUL */
} ledger_item;

typedef struct req_ledger {
    ledger_item **bucket;
    size_t nbuckets, n;
    ledger_item **fifo;          /* in the order they were recorded (time order) */
    size_t head, tail, fifo_cap; /* ring of fifo_cap */
    uint64_t evicted;            /* forgotten for the count limit, not their age */
} req_ledger;

void ledger__init(req_ledger *l);
void ledger__free(req_ledger *l);
ledger_item *ledger__get(const req_ledger *l, const char *user, const char *rid);
void ledger__put(req_ledger *l, const char *user, const char *rid, const char *hash_hex,
                 int64_t seq, int code, int64_t ts_ms);
/* Forgets requests recorded before ts_ms. */
void ledger__expire(req_ledger *l, int64_t before_ms);
/* Forgets the oldest requests while more than max are kept (0: no limit). */
void ledger__trim(req_ledger *l, size_t max);
size_t ledger__bytes(const req_ledger *l);
/* Lowercase hex of the 32 bytes into out (65 bytes). */
void ledger__hex(const uint8_t *hash, char *out);

/* ---- the engine ------------------------------------------------------------ */

/* The changes one command made, in order, so a refusal after some of
 * them (a batch's later write) can be undone. */
typedef struct undo_log {
    size_t n, alloc;
    int64_t *old_stamp; /* per row of the delta */
} undo_log;

struct ds_engine {
    pthread_rwlock_t lock; /* readers vs the writer's commands */
    engine_opts o;
    ds_model *model; /* the current catalog (shared with readers by refs) */
    int64_t seq;     /* last applied (atomic for engine_seq) */
    facts f;
    cube c;
    req_ledger ledger;
    bool loaded;
    /* per command (writer thread only) */
    engine_delta *d; /* the delta being built */
    size_t rows_alloc;
    undo_log undo;
};

/* Makes room for n more rows in the delta being built. */
void engine__reserve(ds_engine *e, size_t n);
/* Appends a row to the delta being built (and its undo stamp). */
void engine__row(ds_engine *e, uint32_t fact, int q, bool old_has, int64_t old_v, bool new_has,
                 int64_t new_v, int64_t old_stamp);
/* Sets measure q of fact i (creating the fact for a missing cell when
 * i < 0 and the value is not missing), records the row and keeps the
 * cube. Returns the ordinal, or -1 when no fact can be created. */
int64_t engine__set(ds_engine *e, int64_t i, const int32_t *cell, int q, bool has, int64_t v,
                    int64_t seq, bool cube_too);

/* Applies the writes of a command (leaf writes and spreads) at seq. A
 * refusal leaves rows in the delta for the caller to undo. */
int engine__writes(ds_engine *e, const ds_command *cmd, int64_t seq, ds_outcome *out,
                   ds_error *err);
/* Applies a member operation at seq; on success *after is the new catalog
 * (with one reference for the caller). Decides before changing anything. */
int engine__member(ds_engine *e, const ds_command *cmd, int64_t seq, ds_model **after,
                   ds_error *err);

/* The value of any cell of measure q: the cube, else a scan. */
ds_i128 engine__value(const ds_engine *e, const ds_model *m, int q, const int32_t *cell);

/* A model reference shared with readers. */
void engine__model_ref(const ds_model *m);
void engine__model_unref(const ds_model *m);

#endif
