/* request.h: request bodies <-> commands, and outcomes <-> JSON.
 *
 * Decoding runs in two steps so errors come in the API's order of checks
 * (docs/api.md, Errors): request_check() looks only at the body's shape (an object,
 * known fields, types, exactly one of value/delta/percent: 400
 * malformed), then request_resolve() resolves names against a model
 * snapshot (404 naming table, column, dimension or cell; 422
 * ambiguous_member) and parses values exactly at the measure's scale (422
 * invalid_value, out_of_range). The result is a ds_command plus its
 * canonical form: the same request with members named by key, which is
 * what goes on the request stream and what the writer decodes again.
 * Encoding writes events and responses with members by key and values at
 * the measure's scale. Pure: JSON through json.h only. */
#ifndef DS_REQUEST_H
#define DS_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "command.h"
#include "error.h"
#include "json.h"
#include "model.h"
#include "util.h"

typedef enum req_kind {
    REQ_UPDATE_CELL = 0, /* POST /update_cell: "table" names the model */
    REQ_CELL,            /* POST /v1/models/{m}/cells: one write */
    REQ_BATCH,           /* POST /v1/models/{m}/cells:batch: "writes" */
    REQ_MEMBER,          /* POST /v1/models/{m}/dimensions/{d}/members */
    REQ_CANONICAL,       /* a command from the request stream */
} req_kind;

#define REQ_ID_MAX    128 /* bytes in a request_id */
#define REQ_MAX_HOLDS 64

/* What an event's "changes" lists: the changed leaves (the default), the
 * totals (target, cells above, children one level down) then the leaves,
 * or nothing. */
typedef enum req_detail { DETAIL_LEAVES = 0, DETAIL_TOTALS, DETAIL_NONE } req_detail;

/* "leaves", "totals" or "none"; else invalid_value (target "detail"). */
int request_detail(const char *s, size_t len, req_detail *out, ds_error *err);

/* The key a request waits for its outcome under (the live feed) and the
 * engine's ledger scopes request_ids by: model, user and request_id joined
 * by '\n'. */
#define REQUEST_KEY_MAX (DS_IDENT_MAX + 1 + DS_IDENT_MAX + 1 + REQ_ID_MAX)
/* Into buf (REQUEST_KEY_MAX + 1 bytes). False, with buf "", when a part is
 * over its limit (model and user DS_IDENT_MAX, request_id REQ_ID_MAX
 * bytes): a key is never cut. */
bool request_key(char *buf, const char *model, const char *user, const char *rid);

typedef struct req_decoded {
    ds_command cmd;         /* points into the arena */
    ds_member_op member;    /* for REQ_MEMBER (cmd.member is a copy) */
    const char *request_id; /* NULL when the client gave none */
    int64_t if_seq;         /* -1: none */
    bool wait;              /* default true */
    req_detail detail;      /* of the answer (default leaves) */
    char *canonical;        /* arena; no request_id and no wait */
    size_t canonical_len;
    char hash[65]; /* SHA-256 of canonical, hex */
} req_decoded;

/* 400 malformed unless obj is an object whose keys are all in names
 * (NULL-terminated); where prefixes field names in messages ("rows."). */
int request_only_fields(const json_val *obj, const char *const *names, const char *where,
                        ds_error *err);

/* 400s: body must be an object of known fields with the right types. */
int request_check(const json_val *body, req_kind kind, ds_error *err);

/* The model a body names ("table"), for REQ_UPDATE_CELL and
 * REQ_CANONICAL; NULL with *len 0 when absent (other kinds). */
const char *request_table(const json_val *body, size_t *len);

/* 404/422s and values. path_dim names the dimension for REQ_MEMBER (from
 * the path). Fills *out from arena memory. */
int request_resolve(const json_val *body, req_kind kind, const ds_model *m, const char *path_dim,
                    ds_arena *arena, req_decoded *out, ds_error *err);
/* request_resolve of a REQ_CANONICAL body without rendering its canonical
 * form and hash again (out->canonical NULL, out->hash empty): the writer's
 * decode of a stream entry, which carries both. */
int request_resolve_canonical(const json_val *body, const ds_model *m, ds_arena *arena,
                              req_decoded *out, ds_error *err);

/* Of several name errors, the one the contract reports first: a 404
 * beats a 422; otherwise the earliest. */
typedef struct req_errors {
    bool have;
    ds_error e;
} req_errors;
void request_note(req_errors *f, const ds_error *e);

/* The lookups every request uses, by the text's whole bytes: first 422
 * invalid_value when the text is no name at all (model_check_text: empty,
 * too long, a control or invisible character, white space at an end: it
 * could never have been created), then 404 not_found when no such thing
 * exists.
 * A member named by key, by "All" style root key, or by unique display
 * name; target "cell" (and 422 ambiguous_member). */
int request_member(const ds_model *m, int dim, const char *text, size_t len, int32_t *id,
                   ds_error *err);
/* A dimension's index (target "dimension") or a measure's (target
 * "column"), or a negative ds_code. */
int request_dim(const ds_model *m, const char *name, size_t len, ds_error *err);
int request_measure(const ds_model *m, const char *name, size_t len, ds_error *err);
/* A model's name from a client (the "table" of a body, a path, a query):
 * 422 invalid_value (target "table") unless it is a name. */
int request_table_name(const char *name, size_t len, ds_error *err);

/* 403 out_of_scope unless every write of cmd lies inside the subtree of
 * member (a key) of dimension dim: a write whose cell leaves dim out (its
 * root) or names a member above or beside it would spread outside. A
 * member operation, or dim NULL or "", passes. */
int request_scope(const ds_model *m, const ds_command *cmd, const char *dim, const char *member,
                  ds_error *err);

/* A model from its definition (POST /v1/models): {"name", "dimensions":
 * [{"name", "root": {"key", "name"}, "members": [{"key", "name",
 * "parent"}]}], "measures": [{"name", "scale"}]}. The 400s of its shape
 * come first (unknown fields, types), then every name is checked whole
 * (422 invalid_value: a NUL or any control character never cuts one), then
 * parents (404 cell: listed before their children) and duplicates (422).
 * Caller frees *out with model_free(). */
int request_model(const json_val *body, ds_model **out, ds_error *err);

/* A grid ({"measure", "rows": {"dimension", "members"}, "cols": ...,
 * "filters": {dim: member}}): request_grid_shape() has the 400s (all of
 * them before any name is judged), request_grid() also resolves it (404,
 * 422; a filter on the rows' or columns' dimension, rows and cols of one
 * dimension: 422). *rows and *cols are caller-freed (also on failure). */
int request_grid_shape(const json_val *root, ds_error *err);
int request_grid(const ds_model *m, const json_val *root, ds_grid_spec *g, int32_t **rows,
                 int32_t **cols, ds_error *err);

/* ---- encoding ---------------------------------------------------------- */

/* {"dim": "key", ...} for every dimension not at its root. */
void request_put_cell(json_w *w, const ds_model *m, const ds_cell *c);

/* The change event of an applied command (what /get_updates and the
 * subscribers get): seq, request_id, user, ts, and per kind the target,
 * method, leaves_changed, changes and truncated of a write; "writes" for
 * a batch; "member" for a member operation. */
void request_put_event(json_w *w, const ds_model *m, const ds_command *cmd, const ds_outcome *o,
                       const char *request_id, const char *user);

/* The change event of an applied command at a detail (cap: entries one
 * write's "changes" lists at most, totals and leaves together); member,
 * when not NULL, is the canonical member operation (JSON) of a member
 * command. */
void request_put_event_at(json_w *w, const ds_model *m, const ds_command *cmd, const ds_outcome *o,
                          const char *request_id, const char *user, req_detail detail, size_t cap,
                          const char *member, size_t member_len);

/* The canonical object of a member operation ({"op", "dimension", ...}),
 * named with the model before the operation. */
void request_put_member(json_w *w, const ds_model *m, const ds_member_op *op);

/* A grid's values at seq: {"rows": [keys], "cols": [keys], "measure",
 * "values": [[...]], "seq"}. */
void request_put_grid(json_w *w, const ds_model *m, const ds_grid_spec *g, const ds_i128 *v,
                      int64_t seq);

/* {"error": {"code", "message", "target", ...extras}} */
void request_put_error(json_w *w, const ds_error *e);

/* ISO 8601 UTC with microseconds from microseconds since the epoch. */
void request_format_ts(int64_t us, char *buf, size_t n);

#endif
