/* json.h: the only user of the JSON library (json-c). Parsing is strict
 * (RFC 8259: json-c alone accepts NaN, Infinity, single-quoted keys, raw
 * control characters and lone surrogates), bounded (size, depth, string
 * length), and keeps the exact text of every number so values never pass
 * through binary floating point. Of duplicate keys the last one wins. An
 * object key never holds a control character (U+0000-001F, U+007F-009F):
 * json-c keeps keys as C strings, so a NUL would cut one short; such a
 * document is refused (malformed). String values keep every byte.
 * The writer builds responses and events into a ds_buf and writes numbers
 * from their exact decimal text. */
#ifndef DS_JSON_H
#define DS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "util.h"

typedef struct json_val json_val; /* a borrowed node of a parsed document */

typedef enum json_kind {
    JSON_NULL = 0,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_kind;

typedef struct json_limits {
    size_t max_bytes;  /* the whole document */
    int max_depth;     /* nesting of arrays and objects */
    size_t max_string; /* bytes in one string or key */
} json_limits;

void json_limits_default(json_limits *l);

/* Parses buf[0..len). On failure *root is NULL and err says why: too_large
 * (target "body") or malformed (with the byte offset). Caller frees the
 * document with json_free(root). The document `null` is a NULL *root
 * (json_kind_of(NULL) is JSON_NULL). */
int json_parse(const char *buf, size_t len, const json_limits *lim, json_val **root, ds_error *err);
void json_free(json_val *root);

json_kind json_kind_of(const json_val *v);
const char *json_kind_name(json_kind k);
/* Member of an object, or NULL. */
json_val *json_get(const json_val *obj, const char *key);
/* Iterates an object's members in document order: start with *i = 0. */
bool json_next(const json_val *obj, size_t *i, const char **key, size_t *klen, json_val **val);
size_t json_len(const json_val *v); /* array elements or object members */
json_val *json_at(const json_val *arr, size_t i);
/* The string's bytes (may contain NUL) and length. */
const char *json_str(const json_val *v, size_t *len);
bool json_truth(const json_val *v);
/* A number's exact text. *exact is false for an integer json-c saturated
 * (beyond 64 bits): its text is then not the client's. */
const char *json_num(const json_val *v, size_t *len, bool *exact);

/* ---- writing ---------------------------------------------------------- */

typedef struct json_w {
    ds_buf *b;
    int depth;
    uint64_t first; /* bit d: no element written yet at depth d */
    bool after_key; /* the next value follows a key */
} json_w;

void jw_init(json_w *w, ds_buf *b);
void jw_obj(json_w *w);     /* { */
void jw_obj_end(json_w *w); /* } */
void jw_arr(json_w *w);     /* [ */
void jw_arr_end(json_w *w); /* ] */
void jw_key(json_w *w, const char *key);
void jw_str(json_w *w, const char *s);
void jw_strn(json_w *w, const char *s, size_t n);
void jw_int(json_w *w, int64_t v);
void jw_bool(json_w *w, bool v);
void jw_null(json_w *w);
/* A number from an exact decimal: minor units at a scale ("12.50"). */
void jw_dec(json_w *w, ds_i128 v, int scale);
/* Pre-serialised JSON (an object or array written by jw_*). */
void jw_raw(json_w *w, const char *json, size_t n);

#endif
