/* http_url.c: the request's URL, taken whole. The head check
 * (http_head.c) has refused a request line or header that libmicrohttpd
 * would cut at a NUL byte ("GET /health\0/x" would be /health), so what it
 * hands over is whole. The path's captures ({m}, {d}, {v}) and the query's
 * parameters are %-decoded here, each with its length: a bad escape, a
 * control character (%00 too) or bytes that are not UTF-8 are a 400, a
 * parameter given twice or one the route does not take a 400 naming it, and
 * a capture that is no name (too long, white space at an end, invisible
 * characters) a 422 reported where the route judges names. */
#include "http_internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* ---- %-decoding ------------------------------------------------------------------------- */

/* Decodes s[0..n) (%XX; libmicrohttpd has turned a query's '+' into a
 * space) into arena memory. NULL and *why when an escape is bad or the text
 * holds a control character (NUL included) or is not UTF-8. */
static char *url_decode(const char *s, size_t n, ds_arena *a, size_t *len, const char **why)
{
    char *out = ds_arena_alloc(a, n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < n ? ds_hexval(s[i + 1]) : -1,
                lo = i + 2 < n ? ds_hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *why = "is not validly %-escaped";
                return NULL;
            }
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            *why = "holds a control character";
            return NULL;
        }
        out[o++] = (char)c;
    }
    for (size_t i = 0; i < o;) {
        size_t k = ds_utf8_len((const unsigned char *)out + i, o - i);
        unsigned char c1 = (unsigned char)out[i];
        if (!k) {
            *why = "is not UTF-8";
            return NULL;
        }
        if (c1 == 0xc2 && (unsigned char)out[i + 1] <= 0x9f) { /* U+0080-009F */
            *why = "holds a control character";
            return NULL;
        }
        i += k;
    }
    out[o] = '\0';
    *len = o;
    return out;
}

/* ---- the path ---------------------------------------------------------------------------- */

int http__path_name(req *r, const char *raw, size_t n, char kind, ds_error *err)
{
    static const struct {
        char kind;
        const char *target, *what;
    } names[] = {{'m', "table", "table name"},
                 {'d', "dimension", "dimension name"},
                 {'v', "view", "view name"}};
    size_t i = kind == 'm' ? 0 : kind == 'd' ? 1 : 2;
    char *dst = kind == 'm' ? r->model : kind == 'd' ? r->dim : r->view;
    _Static_assert(sizeof r->model == DS_IDENT_MAX + 1 && sizeof r->dim == DS_IDENT_MAX + 1 &&
                       sizeof r->view == DS_IDENT_MAX + 1,
                   "a path's name fits whole");
    const char *why = NULL;
    size_t len;
    char *s = url_decode(raw, n, &r->arena, &len, &why);
    if (!s)
        return ds_fail(err, DS_MALFORMED, "path", "the path segment '%.*s' %s",
                       (int)(n > 80 ? 80 : n), raw, why);
    if (!r->name_bad &&
        model_check_text(s, len, DS_IDENT_MAX, names[i].what, names[i].target, &r->name_err)) {
        r->name_bad = true; /* judged with the names: after the 401, 400s and 403 */
        r->name_bad_model = kind == 'm';
    }
    if (len <= DS_IDENT_MAX)
        memcpy(dst, s, len + 1);
    return 0;
}

int http__path_names(req *r, ds_error *err)
{
    if (!r->name_bad)
        return 0;
    if (r->name_bad_model && !r->public_route && r->who.model[0])
        return ds_fail(err, DS_FORBIDDEN, "model", "this key works on model '%s' only",
                       r->who.model);
    *err = r->name_err;
    return -(int)err->code;
}

/* ---- the query --------------------------------------------------------------------------- */

bool http__int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || (s[0] == '0' && s[1]))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

typedef struct query_walk {
    req *r;
    const char *const *known; /* NULL-terminated */
    bool any;                 /* other names are the route's to judge */
    ds_error *err;
    int rc;
} query_walk;

static bool known_name(const query_walk *q, const char *k, size_t klen)
{
    for (size_t i = 0; q->known[i]; i++)
        if (strlen(q->known[i]) == klen && memcmp(q->known[i], k, klen) == 0)
            return true;
    return false;
}

static enum MHD_Result walk_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    query_walk *q = cls;
    req *r = q->r;
    const char *why = NULL;
    size_t klen, vlen = 0;
    char *k = url_decode(key, key_size, &r->arena, &klen, &why);
    if (!k) {
        q->rc = ds_fail(q->err, DS_MALFORMED, "query", "the query parameter name '%.*s' %s",
                        (int)(key_size > 80 ? 80 : key_size), key, why);
        return MHD_NO;
    }
    char *v = value ? url_decode(value, value_size, &r->arena, &vlen, &why) : NULL;
    if (value && !v)
        q->rc = ds_fail(q->err, DS_MALFORMED, k, "the query parameter '%.*s' %s",
                        (int)(klen > 80 ? 80 : klen), k, why);
    else if (http__param(r, k, klen))
        q->rc = ds_fail(q->err, DS_MALFORMED, k, "the query parameter '%.*s' is given twice",
                        (int)(klen > 80 ? 80 : klen), k);
    else if (!q->any && !known_name(q, k, klen))
        q->rc = ds_fail(q->err, DS_MALFORMED, k, "this route takes no query parameter '%.*s'",
                        (int)(klen > 80 ? 80 : klen), k);
    else if (r->nparams == HTTP_PARAMS_MAX)
        q->rc = ds_fail(q->err, DS_MALFORMED, "query", "a query has at most %d parameters",
                        HTTP_PARAMS_MAX);
    if (q->rc)
        return MHD_NO;
    r->params[r->nparams++] = (http_param){k, klen, v, vlen};
    return MHD_YES;
}

int http__query_parse(req *r, const char *const *known, bool any, ds_error *err)
{
    query_walk q = {.r = r, .known = known, .any = any, .err = err};
    r->nparams = 0;
    MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, walk_param, &q);
    return q.rc;
}

const http_param *http__param(const req *r, const char *name, size_t len)
{
    for (int i = 0; i < r->nparams; i++)
        if (r->params[i].klen == len && memcmp(r->params[i].key, name, len) == 0)
            return &r->params[i];
    return NULL;
}

const char *http__arg(req *r, const char *name)
{
    const http_param *p = http__param(r, name, strlen(name));
    return !p ? NULL : p->val ? p->val : "";
}

int http__url(req *r, ds_error *err)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < r->ncaps; i++)
        rc = http__path_name(r, r->caps[i].raw, r->caps[i].len, r->caps[i].kind, err);
    if (rc == 0)
        rc = http__query_parse(r, r->known_params ? r->known_params : (const char *const[]){NULL},
                               r->any_params, err);
    return rc;
}
