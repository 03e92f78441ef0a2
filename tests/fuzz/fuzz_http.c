/* fuzz_http.c: libFuzzer target for one HTTP request through the real
 * server: libmicrohttpd on a loopback port, the routes, authentication,
 * headers, body limits, reads from the demo model's engine and its DuckDB
 * file (in a temporary directory), the change feed, SSE and the WebSocket
 * upgrade.
 * No Redis and no writer: every write is decoded and then answered 503.
 * The admin key is "fuzz-admin-key" (Authorization: Bearer fuzz-admin-key).
 *
 * The input is text:
 *     METHOD TARGET
 *     Header: value        (any number of lines)
 *                          (an empty line)
 *     body...
 * The harness frames it as HTTP/1.1 (Host, Content-Length, Connection:
 * close; a framing header of the input is dropped), sends it on a new
 * connection and reads the answer. An input whose first line is "RAW" is
 * sent as it is (the rest of it, byte for byte: the request head checks,
 * smuggling, folded lines, bare CR and LF), and the harness then ends its
 * side of the connection. The answer must come within 5 s, have a
 * status the API documents (never 500), and a JSON answer must be strict
 * JSON (an error with its code). */
#define _XOPEN_SOURCE 700
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"
#include "engine.h"
#include "grids.h"
#include "http.h"
#include "json.h"
#include "keys.h"
#include "log.h"
#include "models.h"
#include "server.h"
#include "ws_grids.h"

#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_http: %s:%d: %s: ", __FILE__, __LINE__, #c);                     \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ds_server S;
static char dir[] = "/tmp/ds-fuzz-http-XXXXXX";
static char listen_on[64];
static int port;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The server runs until the process ends (libFuzzer exits from its own
 * thread, with requests possibly in flight); only its files go. */
static void remove_dir(void)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0,
          "no free port");
    close(fd);
    return ntohs(a.sin_port);
}

/* What server_run's start_all does, without Redis and the writer. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    if (!getenv("DS_LOG"))
        setenv("DS_LOG", "error", 0);
    CHECK(mkdtemp(dir), "mkdtemp");
    port = free_port();
    snprintf(listen_on, sizeof listen_on, "127.0.0.1:%d", port);

    S.lock_fd = -1;
    server_opts_default(&S.o);
    S.o.data_dir = dir;
    S.o.listen = listen_on;
    S.o.http_threads = 2;
    S.o.max_timeout_s = 1; /* long-polls end within a second */
    S.o.wait_ms = 200;
    S.o.request_timeout_s = 2; /* a raw head cut short is closed well within 5 s */
    S.o.body_max = 64 * 1024;
    snprintf(S.data_dir, sizeof S.data_dir, "%s", dir);
    /* nothing listens there: every XADD fails, so writes are 503 */
    snprintf(S.redis_url, sizeof S.redis_url, "unix://%s/no-redis.sock", dir);
    bus_opts_default(&S.bus);
    S.bus.url = S.redis_url;

    ds_error err;
    /* an admin key the corpus uses, and a scoped viewer key it cannot */
    S.o.api_key = "fuzz-admin-key";
    ds_key viewer = {.role = ROLE_VIEWER};
    snprintf(viewer.user, sizeof viewer.user, "viewer");
    snprintf(viewer.model, sizeof viewer.model, "sales");
    snprintf(viewer.scope_dim, sizeof viewer.scope_dim, "product");
    snprintf(viewer.scope_member, sizeof viewer.scope_member, "S01");
    char secret[96], id[KEY_ID_LEN + 1];
    CHECK(keys_create(dir, &viewer, secret, sizeof secret, id, &err) == 0, "%s", err.message);
    keyring_opts ko = {.dir = dir, .api_key = S.o.api_key};
    CHECK(keyring_open(&ko, &S.keys, &err) == 0, "%s", err.message);
    char path[4200];
    snprintf(path, sizeof path, "%s/duckspread.db", dir);
    ds_store_opts so;
    store_opts_default(&so);
    CHECK(store_open(path, &so, &S.store, &err) == 0, "%s", err.message);
    demo_opts d;
    demo_opts_default(&d);
    d.facts = 3000;
    bool loaded;
    int64_t n;
    CHECK(demo_load(S.store, &d, &loaded, &n, &err) == 0, "%s", err.message);
    live_opts lo;
    live_opts_default(&lo);
    S.live = live_new(&lo);
    S.models = models_new();
    engine_opts_default(&S.engine_opts);
    CHECK(server_load_models(&S, &err) == 0, "%s", err.message);
    S.grids = grids_new(ws_grids_send, &S);
    ws_grids_attach(&S);
    metrics_init(&S.metrics);
    CHECK(http_start(&S, &S.http, &err) == 0, "%s", err.message);
    atexit(remove_dir);
    return 0;
}

static bool token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", c);
}

/* Framing headers are the harness's. */
static bool framing(const char *h, size_t n)
{
    static const char *const names[] = {"content-length", "transfer-encoding", "host", "expect"};
    for (size_t i = 0; i < DS_ARRAY_LEN(names); i++) {
        size_t l = strlen(names[i]);
        if (n > l && strncasecmp(h, names[i], l) == 0 && (h[l] == ':' || h[l] == ' '))
            return true;
    }
    return false;
}

/* Builds the HTTP/1.1 request from the fuzz input into *b. */
static void frame(const char *in, size_t n, ds_buf *b)
{
    size_t i = 0, start = 0;
    while (i < n && in[i] != '\n')
        i++;
    /* request line: METHOD SP TARGET */
    size_t sp = start;
    while (sp < i && in[sp] != ' ')
        sp++;
    bool ok = sp > start && sp - start <= 16;
    for (size_t k = start; ok && k < sp; k++)
        ok = token_char((unsigned char)in[k]);
    if (ok)
        ds_buf_append(b, in + start, sp - start);
    else
        ds_buf_puts(b, "GET");
    ds_buf_putc(b, ' ');
    size_t t = sp < i ? sp + 1 : i;
    if (t == i || in[t] != '/')
        ds_buf_putc(b, '/');
    for (size_t k = t; k < i; k++) {
        unsigned char c = (unsigned char)in[k];
        if (c > 0x20 && c < 0x7f)
            ds_buf_putc(b, (char)c);
        else
            ds_buf_printf(b, "%%%02X", c);
    }
    ds_buf_puts(b, " HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    bool connection = false;
    /* header lines up to an empty line */
    i = i < n ? i + 1 : n;
    while (i < n) {
        size_t e = i;
        while (e < n && in[e] != '\n')
            e++;
        size_t len = e - i;
        if (len && in[i + len - 1] == '\r')
            len--;
        if (len == 0) {
            i = e < n ? e + 1 : n;
            break;
        }
        const char *colon = memchr(in + i, ':', len);
        bool good = colon && colon > in + i && !framing(in + i, len);
        for (size_t k = i; good && k < i + len; k++)
            good = in[k] != '\r' && in[k] != '\0';
        for (const char *k = in + i; good && k < colon; k++)
            good = token_char((unsigned char)*k);
        if (good) {
            connection |= len > 11 && strncasecmp(in + i, "connection:", 11) == 0;
            ds_buf_append(b, in + i, len);
            ds_buf_puts(b, "\r\n");
        }
        i = e < n ? e + 1 : n;
    }
    if (!connection)
        ds_buf_puts(b, "Connection: close\r\n");
    ds_buf_printf(b, "Content-Length: %zu\r\n\r\n", n - i);
    ds_buf_append(b, in + i, n - i);
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n - 3; /* ., .. and the directory's own */
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

typedef struct answer {
    int status;
    bool json, complete;
    size_t body_off, body_len; /* in the buffer read */
} answer;

/* Parses what arrived so far; true when the headers are in. */
static bool parse_head(const ds_buf *in, answer *a, long long *clen, bool *stream)
{
    const char *end = strstr(in->data, "\r\n\r\n");
    if (!end)
        return false;
    CHECK(sscanf(in->data, "HTTP/1.%*d %d", &a->status) == 1, "status line: %.80s", in->data);
    *clen = -1;
    *stream = false;
    a->json = false;
    for (const char *l = strstr(in->data, "\r\n") + 2; l < end; l = strstr(l, "\r\n") + 2) {
        if (strncasecmp(l, "Content-Length:", 15) == 0)
            *clen = atoll(l + 15);
        else if (strncasecmp(l, "Content-Type:", 13) == 0) {
            const char *v = l + 13;
            while (*v == ' ')
                v++;
            a->json = strncasecmp(v, "application/json", 16) == 0;
            *stream |= strncasecmp(v, "text/event-stream", 17) == 0;
        } else if (strncasecmp(l, "Transfer-Encoding:", 18) == 0)
            *stream = true;
    }
    a->body_off = (size_t)(end + 4 - in->data);
    a->body_len = in->len - a->body_off;
    return true;
}

/* Sends the request (then ends its side when end) and reads the answer:
 * all of it when it has a length; a stream (SSE) or an upgraded connection
 * until 100 ms of silence. */
static void exchange(const ds_buf *req, bool end, ds_buf *in, answer *a)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    /* libFuzzer's timer (SIGALRM) interrupts system calls: a connect goes on
     * in the background, the others are tried again */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno, err = 0;
        socklen_t len = sizeof err;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        while (e == EINTR && poll(&p, 1, 5000) < 0 && errno == EINTR)
            ;
        if (e == EINTR && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0)
            e = err;
        CHECK(e == 0, "connect: %s (%d fds open)", strerror(e), open_fds());
    }
    size_t off = 0;
    while (off < req->len) {
        ssize_t w = send(fd, req->data + off, req->len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* the server may answer (413) and close before it all went */
        off += (size_t)w;
    }
    if (end)
        shutdown(fd, SHUT_WR);
    bool no_body = strncmp(req->data, "HEAD ", 5) == 0; /* the answer is headers only */
    int64_t deadline = now_ms() + 5000;
    bool head = false, stream = false;
    long long clen = -1;
    memset(a, 0, sizeof *a);
    for (;;) {
        if (!head && (head = parse_head(in, a, &clen, &stream)) && a->status == 101)
            break;
        if (head && a->status >= 100 && a->status < 200) { /* 100 Continue: the answer follows */
            memmove(in->data, in->data + a->body_off, in->len - a->body_off + 1);
            in->len -= a->body_off;
            head = false;
            continue;
        }
        if (head && (no_body || a->status == 204 || a->status == 304)) {
            a->complete = false; /* a length without a body */
            break;
        }
        if (head && clen >= 0 && (long long)a->body_len >= clen) {
            a->complete = true;
            break;
        }
        int64_t left = deadline - now_ms();
        CHECK(left > 0, "no answer within 5 s to:\n%.300s\ngot: %.300s", req->data, in->data);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int wait = head && clen < 0 ? 100 : (int)left;
        int r = poll(&p, 1, wait);
        if (r == 0 && head && clen < 0)
            break;
        if (r <= 0)
            continue;
        char buf[16384];
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            a->complete = head && clen < 0 && !stream;
            break;
        }
        ds_buf_append(in, buf, (size_t)got);
        if (head)
            a->body_len += (size_t)got;
    }
    /* a reset, not TIME_WAIT: hundreds of connections a second would use
     * up the ephemeral ports within a minute */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    if (head)
        a->body_len = in->len - a->body_off;
    if (head && clen >= 0 && (long long)a->body_len > clen)
        a->body_len = (size_t)clen; /* the first answer (a raw input may pipeline more) */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 70000)
        return -1;
    ds_buf req, in;
    ds_buf_init(&req, 1 << 20);
    ds_buf_init(&in, 4 << 20);
    bool raw = size >= 4 && memcmp(data, "RAW\n", 4) == 0;
    if (raw)
        ds_buf_append(&req, (const char *)data + 4, size - 4);
    else
        frame((const char *)data, size, &req);
    answer a;
    exchange(&req, raw, &in, &a);
    if (!a.status) { /* closed without an answer: only for what HTTP/1.1 refuses */
        ds_buf_free(&req);
        ds_buf_free(&in);
        return 0;
    }
    static const int documented[] = {101, 200, 201, 202, 204, 304, 400, 401, 403,
                                     404, 405, 408, 409, 410, 411, 413, 414, 415,
                                     417, 422, 426, 429, 431, 501, 503, 505};
    bool known = false;
    for (size_t i = 0; i < DS_ARRAY_LEN(documented); i++)
        known |= a.status == documented[i];
    CHECK(known, "status %d for:\n%.500s\nanswer: %.500s", a.status, req.data, in.data);
    if (a.json && a.complete && a.status != 101) {
        json_val *root;
        ds_error e;
        int rc = json_parse(in.data + a.body_off, a.body_len, NULL, &root, &e);
        CHECK(rc == 0, "%s in the answer to:\n%.500s\nanswer: %.2000s", e.message, req.data,
              in.data);
        if (a.status >= 400 && !json_get(root, "ready")) { /* /ready's 503 is its report */
            json_val *err = json_get(root, "error");
            CHECK(err && json_kind_of(json_get(err, "code")) == JSON_STRING,
                  "error without a code: %.500s", in.data);
        }
        json_free(root);
    }
    ds_buf_free(&req);
    ds_buf_free(&in);
    return 0;
}
