/* bench_net.h: helpers shared by the bench programs that talk to a server
 * over sockets (bench_load, bench_wssub, bench_floor; bench/net.c): URLs,
 * HTTP/1.1 response heads and bodies, the top-level fields of a JSON
 * object, latency percentiles, command-line numbers. Pure except
 * bench_raise_fd_limit and bench_num_arg (which exits). */
#ifndef DS_BENCH_NET_H
#define DS_BENCH_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum {
    BENCH_MAX_HEAD = 64 * 1024,        /* longest response head */
    BENCH_MAX_BODY = 64 * 1024 * 1024, /* largest response body */
};

#define BENCH_NS_PER_S  1000000000LL
#define BENCH_NS_PER_MS 1000000LL

/* host and port of http://host[:port][/...] or ws://... ([v6] too; port 80
 * when absent); -1 for https, wss, or what does not fit. */
int bench_parse_url(const char *url, char *host, size_t hsz, char *port, size_t psz);

/* The first "\r\n" in s[0..n), or NULL. */
const char *bench_find_crlf(const char *s, size_t n);
/* Whether tok occurs in v[0..n), ignoring case. */
bool bench_has_token(const char *v, size_t n, const char *tok);
/* The trimmed value of header `name` in the line "name: value" (case
 * ignored) and its length; NULL when the line is another header. */
const char *bench_header_value(const char *line, size_t len, const char *name, size_t *vlen);

typedef struct bench_http_resp {
    int status;
    bool chunked, close, until_eof;
    int64_t content_length; /* -1 when absent */
    size_t head_len;
} bench_http_resp;

/* One complete HTTP/1.x response at the start of b: the bytes it takes,
 * with its body in `body` (reset first, chunks joined); 0 when more bytes
 * are needed (also for a body that runs to the end of the connection:
 * r->until_eof, r->head_len say so); -1 when malformed. */
long bench_http_parse(const char *b, size_t n, bench_http_resp *r, ds_buf *body);

/* The raw text of the value of the first top-level `key` of the JSON
 * object in s[0..n) (a string with its quotes), or NULL. Stops at the
 * first match, so fields written first are found fast. */
const char *bench_json_field(const char *s, size_t n, const char *key, size_t *vlen);
/* A top-level integer field: true and *v when present. */
bool bench_json_int(const char *s, size_t n, const char *key, int64_t *v);

/* qsort comparator of int64_t. */
int bench_cmp_i64(const void *a, const void *b);
/* Nearest-rank percentile p (0..1) of sorted nanoseconds, in ms; 0 when
 * n is 0. */
double bench_pct_ms(const int64_t *sorted, size_t n, double p);

/* Raises the open-file limit to the hard limit when `need` descriptors
 * (plus a margin) do not fit. */
void bench_raise_fd_limit(int need);
/* The number v of option `name`, in [lo, hi]; else prints
 * "<prog>: bad value for <name>" and exits 2. */
double bench_num_arg(const char *prog, const char *name, const char *v, double lo, double hi);

#endif
