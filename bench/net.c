/* net.c: see bench_net.h. */
#include "bench_net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

int bench_parse_url(const char *url, char *host, size_t hsz, char *port, size_t psz)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strncmp(p, "ws://", 5) == 0)
        p += 5;
    else if (strstr(p, "://"))
        return -1; /* https and wss are not supported */
    size_t len = strcspn(p, "/?#");
    const char *hs = p, *he, *colon = NULL;
    if (*p == '[') {
        he = memchr(p, ']', len);
        if (!he)
            return -1;
        hs = p + 1;
        if (he + 1 < p + len && he[1] == ':')
            colon = he + 1;
    } else {
        colon = memchr(p, ':', len);
        he = colon ? colon : p + len;
    }
    size_t hn = (size_t)(he - hs), pn = colon ? (size_t)(p + len - colon - 1) : 2;
    if (hn == 0 || hn >= hsz || pn == 0 || pn >= psz)
        return -1;
    memcpy(host, hs, hn);
    host[hn] = '\0';
    if (colon) {
        memcpy(port, colon + 1, pn);
        port[pn] = '\0';
    } else {
        snprintf(port, psz, "80");
    }
    return 0;
}

const char *bench_find_crlf(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '\r' && s[i + 1] == '\n')
            return s + i;
    return NULL;
}

bool bench_has_token(const char *v, size_t n, const char *tok)
{
    size_t t = strlen(tok);
    for (size_t i = 0; i + t <= n; i++)
        if (strncasecmp(v + i, tok, t) == 0)
            return true;
    return false;
}

const char *bench_header_value(const char *line, size_t len, const char *name, size_t *vlen)
{
    size_t n = strlen(name);
    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
        return NULL;
    const char *v = line + n + 1, *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *vlen = (size_t)(e - v);
    return v;
}

/* ---- HTTP responses ------------------------------------------------------- */

static int parse_header_line(const char *line, size_t len, bench_http_resp *r)
{
    const char *v;
    size_t vn;
    if ((v = bench_header_value(line, len, "content-length", &vn))) {
        int64_t cl = 0;
        if (vn == 0 || vn > 15)
            return -1;
        for (size_t i = 0; i < vn; i++) {
            if (v[i] < '0' || v[i] > '9')
                return -1;
            cl = cl * 10 + (v[i] - '0');
        }
        if (r->content_length >= 0 && r->content_length != cl)
            return -1;
        r->content_length = cl;
    } else if ((v = bench_header_value(line, len, "transfer-encoding", &vn))) {
        r->chunked = bench_has_token(v, vn, "chunked");
    } else if ((v = bench_header_value(line, len, "connection", &vn))) {
        if (bench_has_token(v, vn, "close"))
            r->close = true;
        else if (bench_has_token(v, vn, "keep-alive"))
            r->close = false;
    }
    return 0;
}

/* Status line and headers: 1 when complete, 0 when more bytes are needed,
 * -1 when malformed. */
static int parse_head(const char *b, size_t n, bench_http_resp *r)
{
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    const char *eol = bench_find_crlf(b, n);
    if (!eol)
        return n > BENCH_MAX_HEAD ? -1 : 0;
    if (eol - b < 12 || strncmp(b, "HTTP/1.", 7) != 0 || b[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++)
        if (b[i] < '0' || b[i] > '9')
            return -1;
    r->status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    r->close = b[7] == '0'; /* HTTP/1.0 closes unless keep-alive */
    const char *p = eol + 2, *end = b + n;
    for (;;) {
        const char *e = bench_find_crlf(p, (size_t)(end - p));
        if (!e)
            return n > BENCH_MAX_HEAD ? -1 : 0;
        if (e == p)
            break;
        if (parse_header_line(p, (size_t)(e - p), r))
            return -1;
        p = e + 2;
    }
    r->head_len = (size_t)(p + 2 - b);
    if (r->status < 200 || r->status == 204 || r->status == 304) {
        r->chunked = false;
        r->content_length = 0;
    }
    if (r->chunked)
        r->content_length = -1;
    else if (r->content_length < 0)
        r->until_eof = r->close = true;
    return 1;
}

/* A chunked body at b: the bytes it takes (trailers included) when
 * complete, with the data appended to out; 0 when more are needed. */
static long parse_chunked(const char *b, size_t n, ds_buf *out)
{
    size_t i = 0;
    for (;;) {
        const char *e = bench_find_crlf(b + i, n - i);
        if (!e)
            return n - i > 1024 ? -1 : 0;
        size_t line_end = (size_t)(e - b) + 2, size = 0, k = i;
        int digits = 0;
        for (; k < line_end - 2; k++, digits++) {
            int d = ds_hexval((unsigned char)b[k]);
            if (d < 0)
                break;
            if (digits >= 10)
                return -1;
            size = size * 16 + (size_t)d;
        }
        if (!digits || (k < line_end - 2 && b[k] != ';' && b[k] != ' ' && b[k] != '\t'))
            return -1;
        if (size == 0) { /* trailers up to an empty line */
            for (size_t j = line_end;;) {
                const char *t = bench_find_crlf(b + j, n - j);
                if (!t)
                    return n - j > BENCH_MAX_HEAD ? -1 : 0;
                if (t == b + j)
                    return (long)(j + 2);
                j = (size_t)(t - b) + 2;
            }
        }
        if (size > BENCH_MAX_BODY)
            return -1;
        if (n - line_end < size + 2)
            return 0;
        if (b[line_end + size] != '\r' || b[line_end + size + 1] != '\n')
            return -1;
        ds_buf_append(out, b + line_end, size);
        i = line_end + size + 2;
    }
}

long bench_http_parse(const char *b, size_t n, bench_http_resp *r, ds_buf *body)
{
    ds_buf_reset(body);
    int h = parse_head(b, n, r);
    if (h <= 0)
        return h;
    if (r->until_eof)
        return 0;
    if (r->chunked) {
        long c = parse_chunked(b + r->head_len, n - r->head_len, body);
        return c <= 0 ? c : (long)r->head_len + c;
    }
    if (r->content_length > BENCH_MAX_BODY)
        return -1;
    size_t total = r->head_len + (size_t)r->content_length;
    if (n < total)
        return 0;
    ds_buf_append(body, b + r->head_len, (size_t)r->content_length);
    return (long)total;
}

/* ---- JSON fields ------------------------------------------------------------ */

/* Index just past the JSON string starting at s[i] == '"', or n. */
static size_t skip_string(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return n;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i;
}

/* Index just past the JSON value at s[i] (scalars end at , } ] or space). */
static size_t skip_value(const char *s, size_t n, size_t i)
{
    if (i >= n)
        return n;
    if (s[i] == '"')
        return skip_string(s, n, i);
    if (s[i] != '{' && s[i] != '[') {
        while (i < n && !strchr(",}] \t\r\n", s[i]))
            i++;
        return i;
    }
    int depth = 0;
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, n, i);
            continue;
        }
        depth += (c == '{' || c == '[') - (c == '}' || c == ']');
        i++;
        if (depth == 0)
            return i;
    }
    return n;
}

const char *bench_json_field(const char *s, size_t n, const char *key, size_t *vlen)
{
    size_t klen = strlen(key), i = skip_ws(s, n, 0);
    if (i >= n || s[i] != '{')
        return NULL;
    for (i++;;) {
        i = skip_ws(s, n, i);
        if (i >= n || s[i] != '"')
            return NULL;
        size_t ke = skip_string(s, n, i);
        bool match = ke - i - 2 == klen && memcmp(s + i + 1, key, klen) == 0;
        i = skip_ws(s, n, ke);
        if (i >= n || s[i] != ':')
            return NULL;
        i = skip_ws(s, n, i + 1);
        size_t ve = skip_value(s, n, i);
        if (match) {
            *vlen = ve - i;
            return s + i;
        }
        i = skip_ws(s, n, ve);
        if (i >= n || s[i] != ',')
            return NULL;
        i++;
    }
}

bool bench_json_int(const char *s, size_t n, const char *key, int64_t *v)
{
    size_t len;
    const char *p = bench_json_field(s, n, key, &len);
    if (!p || len == 0 || len > 18)
        return false;
    bool neg = p[0] == '-';
    int64_t x = 0;
    for (size_t i = neg; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        x = x * 10 + (p[i] - '0');
    }
    *v = neg ? -x : x;
    return len > (size_t)neg;
}

/* ---- figures and options ---------------------------------------------------- */

int bench_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

double bench_pct_ms(const int64_t *sorted, size_t n, double p)
{
    if (!n)
        return 0;
    size_t k = (size_t)(p * (double)n + 0.999999);
    k = k ? k - 1 : 0;
    return (double)sorted[k < n ? k : n - 1] / 1e6;
}

void bench_raise_fd_limit(int need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)need + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

double bench_num_arg(const char *prog, const char *name, const char *v, double lo, double hi)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || d < lo || d > hi) {
        fprintf(stderr, "%s: bad value for %s\n", prog, name);
        exit(2);
    }
    return d;
}
