/* http_head.c: the request head (request line and header fields) is checked
 * before anything else, and before any byte of a body is read: a head that
 * a proxy in front could read otherwise than libmicrohttpd does (request
 * smuggling), that HTTP/1.1 forbids, or that libmicrohttpd would cut short
 * at a NUL byte, is refused here with the JSON error shape and the
 * connection is closed. One walk over the head decides, in one order (see
 * http__head_check in http_internal.h): the version, the sizes, then what
 * the request line holds, then each field line, then what the fields mean.
 *
 * libmicrohttpd 0.9.75 is lenient where RFC 9112 says to refuse: it folds a
 * line that starts with a space or tab (obs-fold) into the previous field's
 * NAME (so "Transfer-Encoding:\r\n chunked" becomes a field
 * "Transfer-Encodingchunked" and the body is framed by Content-Length), it
 * ends a line at a bare LF, keeps a bare CR in a value, and keeps the
 * request line and the fields as C strings, so a NUL byte ends the text it
 * is in ("GET /health\0/x" is /health, "X-API-Key: key\0junk" the key). It
 * parses the head in place, in one buffer that holds the whole head while
 * the request is processed: the request line from the method's first byte,
 * then each field line, with the CR and LF of each line end, the space
 * after the method and before the version and the colon after each name
 * replaced by NULs, for header_size bytes
 * (MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE). So where every part it hands
 * over lies tells what it did to the line: the target must end one byte
 * before the version and be as long as the URI log callback saw it up to a
 * NUL; each field line must start exactly two bytes (CRLF) after the
 * previous one's value ended, and the head must end two bytes after the
 * last. A name that lies elsewhere was moved by a fold; one byte short is a
 * bare LF; bytes left over are what a NUL cut off. Positions are compared
 * as integers; the only bytes read besides the parts handed over are the
 * spaces after the method and after each colon, once their bounds are
 * checked. A libmicrohttpd that lays the head out otherwise has every
 * request refused (fail closed), which every black-box test would show at
 * once. One case positions cannot tell: a NUL right before a bare LF
 * ("a\0\n") is laid out exactly as CR LF, and the buffer no longer holds the
 * difference.
 *
 * What libmicrohttpd refuses itself, before the application sees a request,
 * it answers with its own HTML page: a head beyond its buffer
 * (HTTP_MHD_POOL: 414 or 431), a request line it cannot parse (400; a NUL in
 * the version too) or a major version other than 1 (505), a field line
 * without a colon (400), a Content-Length that is not a number (400) or too
 * large (413), a broken chunk (400 or 413). The limits below are smaller
 * than its buffer so that every head up to it gets the JSON answer. */
#include "http_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Measured with libmicrohttpd 0.9.75: a 64 KiB pool takes heads of 24 KB in
 * 480 fields and request lines of 60 KB; 32 KiB (its default) refused heads
 * of 15 KB in 300 fields. */
_Static_assert(HTTP_HEAD_MAX * 3 <= HTTP_MHD_POOL && HTTP_TARGET_MAX < HTTP_HEAD_MAX,
               "libmicrohttpd's buffer holds every head the limits take");

typedef enum head_problem {
    HEAD_OK,
    HEAD_FOLDED,    /* a line starting with a space or tab (obs-fold) */
    HEAD_BARE_LF,   /* a line ended by LF alone */
    HEAD_CUT,       /* bytes not handed over (a NUL in a value, a line without a name) */
    HEAD_NAME,      /* a name that is not a token */
    HEAD_VALUE,     /* a control character (a bare CR) in a value */
    HEAD_UNEXPECTED /* any other layout: refused (fail closed) */
} head_problem;

typedef struct head_walk {
    uintptr_t start, end, cursor; /* the head; where the next field line must start */
    head_problem problem;
    char name[64]; /* the field with the problem, printable */
    /* framing */
    const char *cl;
    size_t cl_len;
    int ncl, nte, nhost;
    bool cl_differs, te_not_chunked, host_bad, expect_continue;
} head_walk;

/* RFC 9110 tchar */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A field value's bytes: HTAB, SP, VCHAR and obs-text, nothing else. */
static bool value_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* RFC 3986 host [":" port]: unreserved, pct-encoded, sub-delims, ':', '[', ']'. */
static bool host_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c && strchr("-._~%!$&'()*+,;=:[]", c))))
            return false;
    }
    return true;
}

static size_t trim_ows(const char *v, size_t n)
{
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return n;
}

static bool is_field(const char *key, size_t key_size, const char *name)
{
    return key_size == strlen(name) && strncasecmp(key, name, key_size) == 0;
}

static void name_problem(head_walk *w, head_problem p, const char *key, size_t key_size)
{
    w->problem = p;
    size_t n = key_size < sizeof w->name - 1 ? key_size : sizeof w->name - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        w->name[i] = c > 0x20 && c < 0x7f ? (char)c : '?';
    }
    w->name[n] = '\0';
}

/* Where a field line lies, its name and its value's bytes. */
static bool field_layout(head_walk *w, const char *key, size_t key_size, const char *value,
                         size_t value_size)
{
    uintptr_t k = (uintptr_t)key, v = (uintptr_t)value;
    if (k != w->cursor) {
        head_problem p = k < w->start || k >= w->end ? HEAD_FOLDED
                         : k + 1 == w->cursor        ? HEAD_BARE_LF
                         : k > w->cursor             ? HEAD_CUT
                                                     : HEAD_UNEXPECTED;
        name_problem(w, p, key, key_size);
        return false;
    }
    if (key_size == 0 || v < k + key_size + 1 || v + value_size + 2 > w->end) {
        name_problem(w, HEAD_UNEXPECTED, key, key_size);
        return false;
    }
    for (const char *p = key + key_size + 1; p < value; p++) { /* after the colon: OWS only */
        if (*p != ' ' && *p != '\t') {
            name_problem(w, HEAD_VALUE, key, key_size);
            return false;
        }
    }
    for (size_t i = 0; i < key_size; i++) {
        if (!is_tchar((unsigned char)key[i])) {
            /* a first field line that starts with whitespace is a fold too */
            bool fold = key[0] == ' ' || key[0] == '\t';
            name_problem(w, fold ? HEAD_FOLDED : HEAD_NAME, key, key_size);
            return false;
        }
    }
    if (!value_ok(value, value_size)) {
        name_problem(w, HEAD_VALUE, key, key_size);
        return false;
    }
    w->cursor = v + value_size + 2;
    return true;
}

/* What the fields say about framing, the host and Expect. Content-Length
 * and Transfer-Encoding are compared as libmicrohttpd reads them, whole
 * (it does not take "chunked " with a trailing space as chunked). */
static void field_meaning(head_walk *w, const char *key, size_t key_size, const char *value,
                          size_t value_size)
{
    if (is_field(key, key_size, "Content-Length")) {
        if (w->ncl++ == 0) {
            w->cl = value;
            w->cl_len = value_size;
        } else if (value_size != w->cl_len || memcmp(value, w->cl, value_size) != 0) {
            w->cl_differs = true;
        }
    } else if (is_field(key, key_size, "Transfer-Encoding")) {
        w->nte++;
        w->te_not_chunked |= value_size != 7 || strncasecmp(value, "chunked", 7) != 0;
    } else if (is_field(key, key_size, "Host")) {
        w->nhost++;
        w->host_bad |= !host_ok(value, trim_ows(value, value_size));
    } else if (is_field(key, key_size, "Expect")) {
        size_t n = trim_ows(value, value_size);
        w->expect_continue |= n == 12 && strncasecmp(value, "100-continue", 12) == 0;
    }
}

static enum MHD_Result each_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    head_walk *w = cls;
    if (!key || !value) {
        w->problem = HEAD_UNEXPECTED;
        snprintf(w->name, sizeof w->name, "a field without a name or value");
        return MHD_NO;
    }
    if (!field_layout(w, key, key_size, value, value_size))
        return MHD_NO;
    field_meaning(w, key, key_size, value, value_size);
    return MHD_YES;
}

void http__uri_seen(const char *uri, http_uri *u)
{
    u->len = uri ? strlen(uri) : 0;
    u->ctl = false;
    for (size_t i = 0; i < u->len; i++)
        u->ctl |= (unsigned char)uri[i] <= 0x20 || uri[i] == 0x7f;
}

/* The request line's version, where its parts lie (the target's raw bytes
 * run from url to the NUL before version) and the target's length. */
static int line_layout(const http_line *l, uintptr_t end, http_refusal *f)
{
    bool v11 = strcmp(l->version, "HTTP/1.1") == 0;
    if (!v11 && strcmp(l->version, "HTTP/1.0") != 0)
        return http__refusal(f, 505, "version_not_supported", "version",
                             "HTTP/1.1 and HTTP/1.0 are served; not '%.16s'", l->version);
    uintptr_t m = (uintptr_t)l->method, u = (uintptr_t)l->url, v = (uintptr_t)l->version;
    if (u < m + strlen(l->method) + 1 || v <= u || v + strlen(l->version) + 2 > end)
        return http__refusal(f, 400, "malformed", "request line",
                             "the request line could not be read exactly");
    if (v - u - 1 > HTTP_TARGET_MAX)
        return http__refusal(f, 414, "too_large", "uri",
                             "the request target has %zu bytes; the limit is %d",
                             (size_t)(v - u - 1), HTTP_TARGET_MAX);
    return 0;
}

/* What the request line holds: no NUL (libmicrohttpd ends the method at
 * its first NUL, so the bytes from there to the target are not only the
 * spaces it skipped; the target's bytes up to a NUL are fewer than its
 * place), a method that is a token, a target without a space or control
 * character (as read: its query's '+' are not spaces). */
static int line_content(const http_line *l, http_refusal *f)
{
    size_t mlen = strlen(l->method);
    for (const char *p = l->method + mlen + 1; p < l->url; p++)
        if (*p != ' ')
            return http__refusal(f, 400, "malformed", "url", "the method holds a NUL byte");
    if ((size_t)(l->version - l->url) != l->uri.len + 1)
        return http__refusal(f, 400, "malformed", "url", "the request target holds a NUL byte");
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar((unsigned char)l->method[i]))
            return http__refusal(f, 400, "malformed", "request line", "the method is not a token");
    if (l->uri.ctl)
        return http__refusal(f, 400, "malformed", "request line",
                             "the request target (path or query) contains a space, a CR or "
                             "another control character");
    return 0;
}

/* The end of the head: two bytes (CRLF) after the last field line. */
static void head_end(head_walk *w)
{
    if (w->problem != HEAD_OK || w->cursor + 2 == w->end)
        return;
    w->problem = w->cursor + 2 > w->end ? HEAD_BARE_LF : HEAD_CUT;
    snprintf(w->name, sizeof w->name, "the end of the head");
}

static int layout_refusal(const head_walk *w, http_refusal *f)
{
    switch (w->problem) {
    case HEAD_OK:
        return 0;
    case HEAD_FOLDED:
        return http__refusal(f, 400, "malformed", "headers",
                             "obsolete line folding (a header line that starts with a space or "
                             "tab) is refused (RFC 9112 section 5.2)");
    case HEAD_BARE_LF:
        return http__refusal(f, 400, "malformed", "headers",
                             "a line ends with a bare LF (before '%s'); lines end with CRLF",
                             w->name);
    case HEAD_CUT:
        return http__refusal(f, 400, "malformed", "headers",
                             "a header value contains a NUL byte, or a header line has no name "
                             "(the line before '%s')",
                             w->name);
    case HEAD_NAME:
        return http__refusal(f, 400, "malformed", "headers",
                             "the header name '%s' is not a token (whitespace, a colon or a "
                             "control character)",
                             w->name);
    case HEAD_VALUE:
        return http__refusal(f, 400, "malformed", "headers",
                             "the value of '%s' contains a bare CR, a LF or another control "
                             "character",
                             w->name);
    default:
        return http__refusal(f, 400, "malformed", "headers",
                             "the header section could not be read exactly (at '%s')", w->name);
    }
}

/* Content-Length and Transfer-Encoding must frame the body one way only,
 * a 100-continue expects one (libmicrohttpd sends 100 Continue and then
 * fails to answer when a request without a body is followed by bytes), and
 * HTTP/1.1 names exactly one valid host. */
static int framing_refusal(const head_walk *w, bool v11, http_refusal *f)
{
    if (w->cl_differs)
        return http__refusal(f, 400, "malformed", "Content-Length",
                             "Content-Length is given twice with different values");
    if (w->nte && !v11)
        return http__refusal(f, 400, "malformed", "Transfer-Encoding",
                             "Transfer-Encoding is not taken on HTTP/1.0 (RFC 9112 section 6.1)");
    if (w->nte && w->ncl)
        return http__refusal(f, 400, "malformed", "Transfer-Encoding",
                             "Transfer-Encoding and Content-Length together frame the body twice");
    if (w->nte > 1 || w->te_not_chunked)
        return http__refusal(f, 400, "malformed", "Transfer-Encoding",
                             "the only Transfer-Encoding taken is a single 'chunked'");
    if (v11 && w->expect_continue && !w->ncl && !w->nte) /* RFC 9110 10.1.1 */
        return http__refusal(f, 400, "malformed", "Expect",
                             "Expect: 100-continue is for a request with a body (Content-Length "
                             "or Transfer-Encoding)");
    if (v11 ? w->nhost != 1 : w->nhost > 1)
        return http__refusal(f, 400, "malformed", "Host",
                             "an HTTP/1.1 request has exactly one Host header (this one has %d)",
                             w->nhost);
    if (w->host_bad)
        return http__refusal(f, 400, "malformed", "Host", "the Host header is not a host[:port]");
    return 0;
}

int http__head_check(struct MHD_Connection *conn, const http_line *l, http_head *head,
                     http_refusal *f)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    size_t size = ci ? ci->header_size : 0;
    bool v11 = strcmp(l->version, "HTTP/1.1") == 0;
    head->http10 = strcmp(l->version, "HTTP/1.0") == 0;
    head->expect_continue = false;
    head_walk w = {.start = (uintptr_t)l->method};
    w.end = w.start + size;
    int rc = line_layout(l, w.end, f);
    if (rc)
        return rc;
    int fields = MHD_get_connection_values(conn, MHD_HEADER_KIND, NULL, NULL);
    if (size > HTTP_HEAD_MAX || fields > HTTP_FIELDS_MAX)
        return http__refusal(f, 431, "too_large", "headers",
                             "the head has %zu bytes in %d header lines; the limits are %d bytes "
                             "and %d lines",
                             size, fields, HTTP_HEAD_MAX, HTTP_FIELDS_MAX);
    rc = line_content(l, f);
    if (rc)
        return rc;
    w.cursor = (uintptr_t)l->version + strlen(l->version) + 2;
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, each_field, &w);
    head_end(&w);
    rc = layout_refusal(&w, f);
    if (!rc)
        rc = framing_refusal(&w, v11, f);
    head->expect_continue = v11 && w.expect_continue;
    return rc;
}

/* ---- the WebSocket handshake (RFC 6455 section 4.2.1) ------------------------------------- */

typedef struct ws_walk {
    bool upgrade_ws, connection_upgrade;
    int nkey, nversion;
    const char *key, *version;
    size_t key_len, version_len;
} ws_walk;

/* A comma-separated list holds token (case-insensitively, whole). */
static bool list_has(const char *v, size_t n, const char *token)
{
    size_t t = strlen(token), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = trim_ows(v + s, i - s);
        if (e == t && strncasecmp(v + s, token, t) == 0)
            return true;
    }
    return false;
}

static enum MHD_Result each_ws_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                     size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    ws_walk *w = cls;
    if (!value)
        return MHD_YES;
    size_t n = trim_ows(value, value_size);
    if (is_field(key, key_size, "Upgrade"))
        w->upgrade_ws |= list_has(value, n, "websocket");
    else if (is_field(key, key_size, "Connection"))
        w->connection_upgrade |= list_has(value, n, "upgrade");
    else if (is_field(key, key_size, "Sec-WebSocket-Key") && w->nkey++ == 0)
        w->key = value, w->key_len = n;
    else if (is_field(key, key_size, "Sec-WebSocket-Version") && w->nversion++ == 0)
        w->version = value, w->version_len = n;
    return MHD_YES;
}

/* base64 of 16 bytes: 21 characters, one whose low four bits are zero, "==". */
static bool ws_key_ok(const char *k, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n != HTTP_WS_KEY_LEN || k[22] != '=' || k[23] != '=' || !strchr("AQgw", k[21]))
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!k[i] || !strchr(b64, k[i]))
            return false;
    return true;
}

int http__ws_check(struct MHD_Connection *conn, bool http10, char key[HTTP_WS_KEY_LEN + 1],
                   http_refusal *f)
{
    ws_walk w = {0};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, each_ws_field, &w);
    if (http10)
        return http__refusal(f, 400, "malformed", "version",
                             "a WebSocket handshake is an HTTP/1.1 request");
    if (!w.upgrade_ws)
        return http__refusal(f, 400, "malformed", "Upgrade",
                             "a WebSocket handshake is expected: Upgrade: websocket");
    if (!w.connection_upgrade)
        return http__refusal(f, 400, "malformed", "Connection",
                             "a WebSocket handshake is expected: Connection: Upgrade");
    if (w.nversion != 1 || w.version_len != 2 || memcmp(w.version, "13", 2) != 0) {
        http__refusal(f, 426, "upgrade_required", "Sec-WebSocket-Version",
                      "the WebSocket version served is 13 (Sec-WebSocket-Version: 13, once)");
        f->header = "Sec-WebSocket-Version";
        f->header_value = "13";
        return 426;
    }
    if (w.nkey != 1 || !ws_key_ok(w.key, w.key_len))
        return http__refusal(f, 400, "malformed", "Sec-WebSocket-Key",
                             "Sec-WebSocket-Key must be given once: 16 bytes in base64 (24 "
                             "characters)");
    memcpy(key, w.key, HTTP_WS_KEY_LEN);
    key[HTTP_WS_KEY_LEN] = '\0';
    return 0;
}
