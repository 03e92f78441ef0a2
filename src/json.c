/* json.c: see json.h. A strict lexical scan runs first (json-c's strict
 * mode lets NaN, Infinity, single quotes, raw control characters and lone
 * \u surrogates through); json-c then builds the tree. */
#include "json.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

void json_limits_default(json_limits *l)
{
    l->max_bytes = 1 << 20;
    l->max_depth = 32;
    l->max_string = 64 * 1024;
}

typedef struct scan {
    const unsigned char *s;
    size_t n, i;
    const json_limits *lim;
    ds_error *err;
    /* the string just scanned: its first control character (U+0000-001F,
       U+007F-009F), as code point and byte offset; offset SIZE_MAX: none */
    unsigned ctl;
    size_t ctl_at;
} scan;

static bool is_control(unsigned u)
{
    return u < 0x20 || (u >= 0x7f && u <= 0x9f);
}

static void note_control(scan *sc, unsigned u, size_t at)
{
    if (is_control(u) && sc->ctl_at == SIZE_MAX) {
        sc->ctl = u;
        sc->ctl_at = at;
    }
}

static int bad(scan *sc, const char *what)
{
    return ds_fail(sc->err, DS_MALFORMED, "body", "malformed JSON at byte %zu: %s", sc->i, what);
}

static int hex4(scan *sc, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        if (sc->i >= sc->n)
            return bad(sc, "truncated \\u escape");
        unsigned char c = sc->s[sc->i++];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return bad(sc, "invalid \\u escape");
    }
    *out = v;
    return 0;
}

static int scan_escape(scan *sc)
{
    size_t at = sc->i - 1; /* the backslash */
    if (sc->i >= sc->n)
        return bad(sc, "truncated escape");
    unsigned char c = sc->s[sc->i++];
    static const char simple[] = "\"\\/bfnrt", value[] = "\"\\/\b\f\n\r\t";
    const char *k = c ? strchr(simple, c) : NULL;
    if (k) {
        note_control(sc, (unsigned char)value[k - simple], at);
        return 0;
    }
    if (c != 'u')
        return bad(sc, "invalid escape");
    unsigned u, lo;
    int rc = hex4(sc, &u);
    if (rc == 0)
        note_control(sc, u, at);
    if (rc || u < 0xd800 || u > 0xdfff)
        return rc;
    if (u >= 0xdc00)
        return bad(sc, "unpaired low surrogate");
    if (sc->i + 1 >= sc->n || sc->s[sc->i] != '\\' || sc->s[sc->i + 1] != 'u')
        return bad(sc, "unpaired high surrogate");
    sc->i += 2;
    if ((rc = hex4(sc, &lo)))
        return rc;
    return lo >= 0xdc00 && lo <= 0xdfff ? 0 : bad(sc, "unpaired high surrogate");
}

static int scan_string(scan *sc)
{
    size_t start = ++sc->i;
    sc->ctl_at = SIZE_MAX;
    while (sc->i < sc->n) {
        unsigned char c = sc->s[sc->i];
        if (c == '"') {
            if (sc->i - start > sc->lim->max_string)
                return ds_fail(sc->err, DS_TOO_LARGE, "body",
                               "a string at byte %zu is longer than %zu bytes", start,
                               sc->lim->max_string);
            sc->i++;
            return 0;
        }
        if (c < 0x20)
            return bad(sc, "control character in a string");
        if (c == '\\') {
            sc->i++;
            int rc = scan_escape(sc);
            if (rc)
                return rc;
            continue;
        }
        size_t len = ds_utf8_len(sc->s + sc->i, sc->n - sc->i);
        if (!len)
            return bad(sc, "invalid UTF-8");
        if (c == 0x7f || (c == 0xc2 && sc->s[sc->i + 1] <= 0x9f)) /* DEL, U+0080-009F */
            note_control(sc, c == 0x7f ? 0x7f : sc->s[sc->i + 1], sc->i);
        sc->i += len;
    }
    return bad(sc, "unterminated string");
}

static size_t digits(scan *sc)
{
    size_t start = sc->i;
    while (sc->i < sc->n && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')
        sc->i++;
    return sc->i - start;
}

/* -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? */
static int scan_number(scan *sc)
{
    if (sc->s[sc->i] == '-')
        sc->i++;
    size_t start = sc->i, n = digits(sc);
    if (n == 0)
        return bad(sc, "invalid number");
    if (n > 1 && sc->s[start] == '0')
        return bad(sc, "leading zero in a number");
    if (sc->i < sc->n && sc->s[sc->i] == '.') {
        sc->i++;
        if (digits(sc) == 0)
            return bad(sc, "digits expected after the decimal point");
    }
    if (sc->i < sc->n && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
        sc->i++;
        if (sc->i < sc->n && (sc->s[sc->i] == '+' || sc->s[sc->i] == '-'))
            sc->i++;
        if (digits(sc) == 0)
            return bad(sc, "digits expected in the exponent");
    }
    return 0;
}

static int scan_literal(scan *sc)
{
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (sc->n - sc->i >= l && memcmp(sc->s + sc->i, lits[k], l) == 0) {
            sc->i += l;
            return 0;
        }
    }
    return bad(sc, "unexpected character");
}

/* An object key (a string followed by ':') holds no control character:
 * json-c keeps keys as C strings (a NUL would cut one short, and two keys
 * would become one), and every key of a request is a field or a dimension
 * name, neither of which holds one. */
static int check_key(scan *sc)
{
    size_t j = sc->i;
    while (j < sc->n && strchr(" \t\n\r", sc->s[j]) && sc->s[j])
        j++;
    if (sc->ctl_at == SIZE_MAX || j >= sc->n || sc->s[j] != ':')
        return 0;
    return ds_fail(sc->err, DS_MALFORMED, "body",
                   "malformed JSON at byte %zu: an object key holds the control character "
                   "U+%04X (keys are field and dimension names)",
                   sc->ctl_at, sc->ctl);
}

/* Lexical validation and nesting depth; json-c checks the structure. */
static int strict_scan(scan *sc)
{
    int depth = 0, rc = 0;
    while (rc == 0 && sc->i < sc->n) {
        unsigned char c = sc->s[sc->i];
        switch (c) {
        case ' ':
        case '\t':
        case '\n':
        case '\r':
        case ':':
        case ',':
            sc->i++;
            break;
        case '{':
        case '[':
            if (++depth > sc->lim->max_depth)
                return ds_fail(sc->err, DS_MALFORMED, "body",
                               "JSON nested deeper than %d levels at byte %zu", sc->lim->max_depth,
                               sc->i);
            sc->i++;
            break;
        case '}':
        case ']':
            depth--;
            sc->i++;
            break;
        case '"':
            if ((rc = scan_string(sc)) == 0)
                rc = check_key(sc);
            break;
        default:
            if (c == '-' || (c >= '0' && c <= '9'))
                rc = scan_number(sc);
            else
                rc = scan_literal(sc);
        }
    }
    return rc;
}

/* One tokener per thread, reset for each document: a new one costs a
 * zeroed stack of max_depth frames and a print buffer, which was a third
 * of the parse of a small body. Freed when its thread ends. */
typedef struct tokener {
    struct json_tokener *tok;
    int depth;
} tokener;

static pthread_key_t tok_key;
static pthread_once_t tok_once = PTHREAD_ONCE_INIT;

static void tokener_free(void *p)
{
    tokener *t = p;
    json_tokener_free(t->tok);
    free(t);
}

static void tok_key_make(void)
{
    pthread_key_create(&tok_key, tokener_free);
}

static struct json_tokener *thread_tokener(int depth)
{
    pthread_once(&tok_once, tok_key_make);
    tokener *t = pthread_getspecific(tok_key);
    if (t && t->depth != depth) {
        json_tokener_free(t->tok);
        t->tok = NULL;
    }
    if (!t) {
        t = xcalloc(1, sizeof *t);
        pthread_setspecific(tok_key, t);
    }
    if (!t->tok) {
        t->tok = json_tokener_new_ex(depth);
        if (!t->tok) {
            fprintf(stderr, "duckspread: out of memory for a JSON tokener\n");
            abort();
        }
        t->depth = depth;
        json_tokener_set_flags(t->tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    } else {
        json_tokener_reset(t->tok);
    }
    return t->tok;
}

int json_parse(const char *buf, size_t len, const json_limits *lim, json_val **root, ds_error *err)
{
    json_limits def;
    if (!lim) {
        json_limits_default(&def);
        lim = &def;
    }
    *root = NULL;
    if (len > lim->max_bytes)
        return ds_fail(err, DS_TOO_LARGE, "body", "the body has %zu bytes; the limit is %zu", len,
                       lim->max_bytes);
    scan sc = {.s = (const unsigned char *)buf, .n = len, .lim = lim, .err = err};
    int rc = strict_scan(&sc);
    if (rc)
        return rc;
    struct json_tokener *tok = thread_tokener(lim->max_depth + 1);
    struct json_object *o = json_tokener_parse_ex(tok, buf, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (e == json_tokener_continue) {
        /* a number or literal at the very end ("1", "true") waits for the
         * next byte: a NUL ends it */
        o = json_tokener_parse_ex(tok, "", 1);
        e = json_tokener_get_error(tok);
        if (e == json_tokener_success)
            end = len;
        else
            e = json_tokener_continue;
    }
    /* the document null is a NULL object */
    if (e == json_tokener_success && end < len) {
        size_t i = end;
        while (i < len && strchr(" \t\n\r", buf[i]) && buf[i])
            i++;
        if (i < len) {
            json_object_put(o);
            o = NULL;
            rc = ds_fail(err, DS_MALFORMED, "body",
                         "malformed JSON at byte %zu: data after the document", i);
        }
    } else if (e != json_tokener_success) {
        json_object_put(o);
        o = NULL;
        rc = ds_fail(err, DS_MALFORMED, "body", "malformed JSON at byte %zu: %s", end,
                     e == json_tokener_continue ? "truncated" : json_tokener_error_desc(e));
    }
    *root = (json_val *)o;
    return rc;
}

void json_free(json_val *root)
{
    json_object_put((struct json_object *)root);
}

static struct json_object *J(const json_val *v)
{
    return (struct json_object *)v;
}

json_kind json_kind_of(const json_val *v)
{
    switch (json_object_get_type(J(v))) {
    case json_type_boolean:
        return JSON_BOOL;
    case json_type_double:
    case json_type_int:
        return JSON_NUMBER;
    case json_type_string:
        return JSON_STRING;
    case json_type_array:
        return JSON_ARRAY;
    case json_type_object:
        return JSON_OBJECT;
    default:
        return JSON_NULL;
    }
}

const char *json_kind_name(json_kind k)
{
    static const char *const names[] = {"null", "boolean", "number", "string", "array", "object"};
    return names[k];
}

json_val *json_get(const json_val *obj, const char *key)
{
    struct json_object *v;
    if (json_kind_of(obj) != JSON_OBJECT || !json_object_object_get_ex(J(obj), key, &v))
        return NULL;
    return (json_val *)v;
}

bool json_next(const json_val *obj, size_t *i, const char **key, size_t *klen, json_val **val)
{
    if (json_kind_of(obj) != JSON_OBJECT)
        return false;
    struct lh_entry *e = *i ? (struct lh_entry *)*i : json_object_get_object(J(obj))->head;
    if (*i == SIZE_MAX || !e)
        return false;
    *key = (const char *)lh_entry_k(e);
    *klen = strlen(*key); /* whole: json_parse refuses a key with a NUL */
    *val = (json_val *)lh_entry_v(e);
    *i = e->next ? (size_t)e->next : SIZE_MAX;
    return true;
}

size_t json_len(const json_val *v)
{
    if (json_kind_of(v) == JSON_ARRAY)
        return json_object_array_length(J(v));
    if (json_kind_of(v) == JSON_OBJECT)
        return (size_t)json_object_object_length(J(v));
    return 0;
}

json_val *json_at(const json_val *arr, size_t i)
{
    return (json_val *)json_object_array_get_idx(J(arr), i);
}

const char *json_str(const json_val *v, size_t *len)
{
    *len = (size_t)json_object_get_string_len(J(v));
    return json_object_get_string(J(v));
}

bool json_truth(const json_val *v)
{
    return json_object_get_boolean(J(v));
}

const char *json_num(const json_val *v, size_t *len, bool *exact)
{
    const char *s = json_object_get_string(J(v));
    *len = strlen(s);
    *exact = true;
    /* json-c saturates integers beyond 64 bits to these (doubles keep the
     * client's text) */
    if (json_object_get_type(J(v)) == json_type_int)
        *exact = strcmp(s, "9223372036854775807") != 0 && strcmp(s, "-9223372036854775808") != 0 &&
                 strcmp(s, "18446744073709551615") != 0;
    return s;
}

/* ---- writing ---------------------------------------------------------- */

void jw_init(json_w *w, ds_buf *b)
{
    w->b = b;
    w->depth = 0;
    w->first = 1;
    w->after_key = false;
}

/* A comma unless this is the first element at this depth (a key's value
 * never takes one: keys write theirs). */
static void sep(json_w *w)
{
    uint64_t bit = (uint64_t)1 << w->depth;
    if (w->first & bit)
        w->first &= ~bit;
    else
        ds_buf_putc(w->b, ',');
}

static void open(json_w *w, char c)
{
    ds_buf_putc(w->b, c);
    w->depth++;
    w->first |= (uint64_t)1 << w->depth;
}

static void close_(json_w *w, char c)
{
    w->depth--;
    ds_buf_putc(w->b, c);
}

/* A value after a key writes no comma: the key did. */
static void value_sep(json_w *w)
{
    if (w->after_key)
        w->after_key = false;
    else
        sep(w);
}

void jw_obj(json_w *w)
{
    value_sep(w);
    open(w, '{');
}

void jw_obj_end(json_w *w)
{
    close_(w, '}');
}

void jw_arr(json_w *w)
{
    value_sep(w);
    open(w, '[');
}

void jw_arr_end(json_w *w)
{
    close_(w, ']');
}

/* A JSON string. Bytes that are not UTF-8 (a client's identifier echoed
 * in a message, a message cut inside a character) become U+FFFD, so that
 * every answer is valid JSON text. */
static void put_string(ds_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    ds_buf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t len = ds_utf8_len((const unsigned char *)s + i, n - i);
            if (len) {
                i += len - 1;
                continue;
            }
            ds_buf_append(b, s + run, i - run);
            ds_buf_puts(b, "\xef\xbf\xbd");
            run = i + 1;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        ds_buf_append(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0};
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
        }
        ds_buf_append(b, esc, strlen(esc));
    }
    ds_buf_append(b, s + run, n - run);
    ds_buf_putc(b, '"');
}

void jw_key(json_w *w, const char *key)
{
    sep(w);
    put_string(w->b, key, strlen(key));
    ds_buf_putc(w->b, ':');
    w->after_key = true;
}

void jw_strn(json_w *w, const char *s, size_t n)
{
    value_sep(w);
    put_string(w->b, s, n);
}

void jw_str(json_w *w, const char *s)
{
    jw_strn(w, s, strlen(s));
}

void jw_int(json_w *w, int64_t v)
{
    value_sep(w);
    char t[24];
    int n = snprintf(t, sizeof t, "%lld", (long long)v);
    ds_buf_append(w->b, t, (size_t)n);
}

void jw_bool(json_w *w, bool v)
{
    value_sep(w);
    ds_buf_puts(w->b, v ? "true" : "false");
}

void jw_null(json_w *w)
{
    value_sep(w);
    ds_buf_puts(w->b, "null");
}

void jw_dec(json_w *w, ds_i128 v, int scale)
{
    char buf[DEC_BUFSZ];
    size_t n = dec_format(v, scale, buf);
    value_sep(w);
    ds_buf_append(w->b, buf, n);
}

void jw_raw(json_w *w, const char *json, size_t n)
{
    value_sep(w);
    ds_buf_append(w->b, json, n);
}
