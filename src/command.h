/* command.h: what the store applies and what it answers, as plain data.
 * A command is one user intention: one or more cell writes (a batch gets a
 * single seq) or one member operation. Its outcome is a change set per
 * write (what an answer's and an event's `changes` list). Everything names
 * members by id; the request layer resolves names to ids against the model
 * first. Pure. */
#ifndef DS_COMMAND_H
#define DS_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "spread.h"

/* One member per dimension, in model order; a root means "left out". */
typedef struct ds_cell {
    int32_t m[DS_MAX_DIMS];
} ds_cell;

/* A hold: a member for some dimensions (-1 for the others). */
typedef struct ds_hold {
    int32_t m[DS_MAX_DIMS];
} ds_hold;

typedef struct ds_write {
    int measure; /* index into the model's measures */
    ds_cell cell;
    spread_method method;
    spread_form form;
    ds_i128 amount; /* minor units, or the percent scaled by 10^pct_scale */
    int pct_scale;
    int nholds;
    const ds_hold *holds;
} ds_write;

typedef enum member_op_kind {
    MEMBER_ADD = 0,
    MEMBER_RENAME,
    MEMBER_MOVE,
    MEMBER_DELETE,
} member_op_kind;

typedef struct ds_member_op {
    member_op_kind kind;
    int dim;          /* index into the model's dimensions */
    int32_t member;   /* rename, move, delete: the member */
    int32_t parent;   /* add, move: the new parent */
    const char *key;  /* add: the new member's key */
    const char *name; /* add, rename: the display name */
    int32_t facts_to; /* add, move under a leaf with facts: which leaf takes
                         them (for add, -2 means the new member); else -1 */
    bool force;       /* delete: also delete the facts beneath */
} ds_member_op;

typedef enum command_kind {
    COMMAND_WRITE = 0,
    COMMAND_MEMBER,
} command_kind;

typedef struct ds_command {
    command_kind kind;
    const char *user;       /* who: recorded in the change log */
    const char *request_id; /* may be NULL */
    int64_t if_seq;         /* -1: no optimistic check */
    size_t nwrites;         /* COMMAND_WRITE: ordered, one seq */
    bool batch;             /* sent as a batch (its event says "batch") */
    const ds_write *writes;
    ds_member_op member; /* COMMAND_MEMBER */
} ds_command;

typedef struct ds_change {
    ds_cell cell;
    int measure;
    ds_i128 old_value, new_value;
} ds_change;

/* The outcome of one write, in two lists a client picks from (its
 * "detail"): changes holds the target, every cell above it and its
 * children one level down in each dimension (the totals), leaves the
 * changed leaf cells; each list is cut at the cap (truncated says so).
 * A leaf listed among the totals too (the target of a leaf write, a child
 * that is a leaf) has in_totals set. */
typedef struct ds_changeset {
    ds_change target;
    spread_method method; /* the effective method */
    bool leaf;            /* the target was a leaf cell */
    int64_t leaves_changed;
    size_t nchanges;
    ds_change *changes;
    bool truncated;
    size_t nleaves;
    ds_change *leaves;
    bool *in_totals; /* nleaves */
    bool leaves_truncated;
} ds_changeset;

typedef struct ds_outcome {
    int64_t seq;
    int64_t ts_us; /* commit time, microseconds since the epoch */
    size_t nsets;  /* one per write; 0 for a member operation */
    ds_changeset *sets;
} ds_outcome;

/* A grid: rows of one dimension by columns of another, the other
 * dimensions fixed, of one measure. */
typedef struct ds_grid_spec {
    int measure;
    int row_dim, col_dim;
    size_t nrows, ncols;
    const int32_t *rows, *cols; /* members of row_dim and col_dim */
    ds_cell fixed;              /* members of the other dimensions */
} ds_grid_spec;

/* Frees what engine_submit() put into *o; safe on a zeroed outcome. */
void outcome_clear(ds_outcome *o);

#endif
