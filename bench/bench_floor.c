/* bench_floor: the floor under the end-to-end figures on this machine, for
 * the gates it cannot meet (bench/floor.sh). N closed-loop clients in one
 * epoll loop, each sending its next request as soon as the previous answer
 * is complete, for --duration-s after --warmup-s:
 *
 *   xadd: XADD {floor}:request_duck * with the fields of a write's entry in
 *     the request stream (rid, user, hash, cmd, detail: about 290 bytes,
 *     a fresh request id and a random cell each) to a redis-server on a
 *     unix socket (the script starts it with appendonly yes, appendfsync
 *     always, in a directory on the data disk): the most a durable log of
 *     these writes can take here, with nothing else in the way;
 *       floor xadd 8: per_s=.. p50_ms=.. p99_ms=.. errors=..
 *   http: GET --path (default /health) over HTTP/1.1 keep-alive: what the
 *     HTTP layer alone costs;
 *       floor http 256: per_s=.. p50_ms=.. p99_ms=.. errors=..
 *
 * per_s counts the answers completed in the window over its length; the
 * latencies are those of the requests sent in it (errors are counted, not
 * timed). The stream key is deleted first, so runs against one
 * redis-server do not grow it.
 * Usage: bench_floor xadd --unix PATH [--clients N] [--duration-s S] [--warmup-s S]
 *        bench_floor http --url http://HOST:PORT [--path P] [--clients N] ... */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis.h>

#include "bench_net.h"
#include "util.h"

enum { READ_CHUNK = 64 * 1024, MAX_EVENTS = 256 };

#define STREAM_KEY "{floor}:request_duck"

typedef struct opts {
    const char *mode, *unix_path, *url, *path;
    char host[256], port[16];
    int clients;
    double duration_s, warmup_s, drain_s;
} opts;

typedef struct fconn {
    int fd, id;
    bool busy, measured;
    int64_t start_ns;
    uint64_t n; /* requests sent */
    ds_buf in, out;
    size_t out_off;
    redisReader *rr; /* xadd */
} fconn;

typedef struct floor_run {
    opts o;
    bool xadd;
    int ep;
    fconn *conns;
    struct addrinfo *addr;
    uint64_t rng, run_id;
    int64_t t_warm, t_end, window_ok, errors;
    int64_t *lat;
    size_t nlat, alat;
    ds_buf body;
} floor_run;

static void die(const char *fmt, const char *arg) __attribute__((noreturn));
static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench_floor: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

/* ---- connections ------------------------------------------------------------ */

static int connect_to(floor_run *F)
{
    int fd;
    if (F->xadd) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(F->o.unix_path) >= sizeof sa.sun_path)
            die("socket path too long: %s", F->o.unix_path);
        memcpy(sa.sun_path, F->o.unix_path, strlen(F->o.unix_path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa))
            die("cannot connect to %s", F->o.unix_path);
    } else {
        fd = socket(F->addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, F->addr->ai_addr, F->addr->ai_addrlen))
            die("cannot connect to %s", F->o.url);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

/* The next request of c into c->out. */
static void put_request(floor_run *F, fconn *c)
{
    ds_buf_reset(&c->out);
    c->out_off = 0;
    if (!F->xadd) {
        ds_buf_printf(&c->out, "GET %s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", F->o.path, F->o.host,
                      F->o.port);
        return;
    }
    char rid[64], hash[65], cmd[320];
    F->rng += 0x9e3779b97f4a7c15ULL;
    uint64_t r = ds_mix64(F->rng);
    snprintf(rid, sizeof rid, "f%08" PRIx64 "-%d-%" PRIu64, F->run_id, c->id, c->n);
    for (int i = 0; i < 4; i++)
        snprintf(hash + 16 * i, 17, "%016" PRIx64, ds_mix64(r + (uint64_t)i));
    snprintf(cmd, sizeof cmd,
             "{\"table\":\"sales\",\"writes\":[{\"column\":\"quantity\",\"cell\":{\"product\":"
             "\"P-%04d\",\"customer\":\"C-%04d\",\"time\":\"%d-%02d\"},\"delta\":\"%s\","
             "\"method\":\"proportional\"}]}",
             (int)(r % 432) + 1, (int)((r >> 16) % 129) + 1, 2024 + (int)((r >> 32) % 3),
             (int)((r >> 40) % 12) + 1, (r >> 63) ? "1" : "-1");
    const char *argv[] = {"XADD", STREAM_KEY, "*",   "rid", rid,      "user",  "api",
                          "hash", hash,       "cmd", cmd,   "detail", "leaves"};
    size_t lens[DS_ARRAY_LEN(argv)];
    for (size_t i = 0; i < DS_ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    char *out;
    int len = redisFormatCommandArgv(&out, (int)DS_ARRAY_LEN(argv), argv, lens);
    if (len < 0)
        die("%s", "out of memory formatting XADD");
    ds_buf_append(&c->out, out, (size_t)len);
    redisFreeCommand(out);
}

static void ep_mod(floor_run *F, fconn *c, bool want_out)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)c->id};
    if (epoll_ctl(F->ep, EPOLL_CTL_MOD, c->fd, &ev))
        die("epoll_ctl: %s", strerror(errno));
}

static void conn_flush(floor_run *F, fconn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ep_mod(F, c, true);
            return;
        }
        if (w < 0)
            die("send: %s", strerror(errno));
        c->out_off += (size_t)w;
    }
}

static void conn_send(floor_run *F, fconn *c, int64_t now)
{
    put_request(F, c);
    c->n++;
    c->busy = true;
    c->start_ns = now;
    c->measured = now >= F->t_warm && now < F->t_end;
    conn_flush(F, c);
}

static void record(floor_run *F, fconn *c, bool ok, int64_t now)
{
    c->busy = false;
    if (ok && now >= F->t_warm && now < F->t_end)
        F->window_ok++;
    if (!c->measured)
        return;
    if (!ok) {
        F->errors++;
        return;
    }
    if (F->nlat == F->alat) {
        F->alat = F->alat ? F->alat * 2 : 1 << 16;
        F->lat = xrealloc(F->lat, F->alat * sizeof *F->lat);
    }
    F->lat[F->nlat++] = now - c->start_ns;
}

/* Every complete answer in c's input: 1 when one completed, 0 when more
 * bytes are needed. */
static int take_answer(floor_run *F, fconn *c, int64_t now)
{
    if (F->xadd) {
        void *reply = NULL;
        if (redisReaderGetReply(c->rr, &reply) != REDIS_OK)
            die("%s", "bad reply from Redis");
        if (!reply)
            return 0;
        redisReply *r = reply;
        if (r->type == REDIS_REPLY_ERROR && F->errors < 3)
            fprintf(stderr, "bench_floor: %s\n", r->str);
        record(F, c, r->type == REDIS_REPLY_STRING, now);
        freeReplyObject(reply);
        return 1;
    }
    bench_http_resp r;
    long used = bench_http_parse(c->in.data, c->in.len, &r, &F->body);
    if (used < 0 || (used == 0 && r.until_eof))
        die("%s", "malformed or unframed HTTP response");
    if (used == 0)
        return 0;
    memmove(c->in.data, c->in.data + used, c->in.len - (size_t)used);
    c->in.len -= (size_t)used;
    if (r.status < 200)
        return take_answer(F, c, now);
    record(F, c, r.status == 200, now);
    if (r.close)
        die("%s", "the server closed a keep-alive connection");
    return 1;
}

static void conn_read(floor_run *F, fconn *c)
{
    char buf[READ_CHUNK];
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        die("connection lost: %s", n < 0 ? strerror(errno) : "closed");
    int64_t now = ds_now_ns();
    if (F->xadd)
        redisReaderFeed(c->rr, buf, (size_t)n);
    else
        ds_buf_append(&c->in, buf, (size_t)n);
    if (c->busy && take_answer(F, c, now) && now < F->t_end)
        conn_send(F, c, now);
}

/* ---- the run ------------------------------------------------------------------- */

/* DEL the stream on a fresh connection, waiting for the answer. */
static void delete_stream(floor_run *F)
{
    int fd = connect_to(F);
    const char *argv[] = {"DEL", STREAM_KEY};
    size_t lens[] = {3, strlen(STREAM_KEY)};
    char *cmd, buf[256];
    int len = redisFormatCommandArgv(&cmd, 2, argv, lens);
    if (len < 0 || send(fd, cmd, (size_t)len, MSG_NOSIGNAL) != len ||
        recv(fd, buf, sizeof buf, 0) <= 0)
        die("%s", "DEL of the stream failed");
    redisFreeCommand(cmd);
    close(fd);
}

static void setup(floor_run *F)
{
    F->xadd = strcmp(F->o.mode, "xadd") == 0;
    if (!F->xadd) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
        int rc = getaddrinfo(F->o.host, F->o.port, &hints, &F->addr);
        if (rc)
            die("cannot resolve host: %s", gai_strerror(rc));
    } else {
        delete_stream(F);
    }
    F->rng = (uint64_t)ds_now_ns() ^ ((uint64_t)getpid() << 32);
    F->run_id = ds_mix64(F->rng) & 0xffffffffu;
    bench_raise_fd_limit(F->o.clients);
    F->ep = epoll_create1(EPOLL_CLOEXEC);
    if (F->ep < 0)
        die("epoll: %s", strerror(errno));
    ds_buf_init(&F->body, BENCH_MAX_BODY);
    F->conns = xcalloc((size_t)F->o.clients, sizeof *F->conns);
    for (int i = 0; i < F->o.clients; i++) {
        fconn *c = &F->conns[i];
        c->id = i;
        c->fd = connect_to(F);
        if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK))
            die("%s", "cannot make a socket non-blocking");
        ds_buf_init(&c->in, BENCH_MAX_BODY + BENCH_MAX_HEAD);
        ds_buf_init(&c->out, 1 << 16);
        if (F->xadd && !(c->rr = redisReaderCreate()))
            die("%s", "out of memory");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(F->ep, EPOLL_CTL_ADD, c->fd, &ev))
            die("epoll_ctl: %s", strerror(errno));
    }
}

static void run(floor_run *F)
{
    int64_t t0 = ds_now_ns();
    F->t_warm = t0 + (int64_t)(F->o.warmup_s * 1e9);
    F->t_end = F->t_warm + (int64_t)(F->o.duration_s * 1e9);
    int64_t stop = F->t_end + (int64_t)(F->o.drain_s * 1e9);
    for (int i = 0; i < F->o.clients; i++)
        conn_send(F, &F->conns[i], ds_now_ns());
    for (;;) {
        int64_t now = ds_now_ns();
        int busy = 0;
        if (now >= F->t_end)
            for (int i = 0; i < F->o.clients; i++)
                busy += F->conns[i].busy;
        if (now >= stop || (now >= F->t_end && busy == 0))
            break;
        struct epoll_event evs[MAX_EVENTS];
        int n = epoll_wait(F->ep, evs, MAX_EVENTS, 50);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            fconn *c = &F->conns[evs[i].data.u32];
            if (evs[i].events & EPOLLOUT) {
                ep_mod(F, c, false);
                conn_flush(F, c);
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_read(F, c);
        }
    }
}

static void report(floor_run *F)
{
    qsort(F->lat, F->nlat, sizeof *F->lat, bench_cmp_i64);
    printf("floor %s %d: per_s=%.1f p50_ms=%.2f p99_ms=%.2f errors=%" PRId64 "\n", F->o.mode,
           F->o.clients, (double)F->window_ok / F->o.duration_s, bench_pct_ms(F->lat, F->nlat, 0.5),
           bench_pct_ms(F->lat, F->nlat, 0.99), F->errors);
    fprintf(stderr, "bench_floor: %s clients=%d p90_ms=%.2f p999_ms=%.2f max_ms=%.2f n=%zu\n",
            F->o.mode, F->o.clients, bench_pct_ms(F->lat, F->nlat, 0.9),
            bench_pct_ms(F->lat, F->nlat, 0.999), bench_pct_ms(F->lat, F->nlat, 1.0), F->nlat);
}

/* ---- options ---------------------------------------------------------------------- */

static const char usage[] = "usage: bench_floor xadd --unix PATH [options]\n"
                            "       bench_floor http --url http://HOST:PORT [--path P] [options]\n"
                            "  --clients N      closed-loop clients (8)\n"
                            "  --duration-s S   measured window (10)\n"
                            "  --warmup-s S     unmeasured start (2)\n"
                            "  --drain-s S      wait for answers after the window (10)\n";

static void parse_args(opts *o, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        exit(argc < 2 ? 2 : 0);
    }
    o->mode = argv[1];
    if (strcmp(o->mode, "xadd") != 0 && strcmp(o->mode, "http") != 0)
        die("the mode is xadd or http, not %s", o->mode);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            die("%s needs a value (see --help)", a);
        const char *v = argv[++i];
        if (strcmp(a, "--unix") == 0)
            o->unix_path = v;
        else if (strcmp(a, "--url") == 0)
            o->url = v;
        else if (strcmp(a, "--path") == 0)
            o->path = v;
        else if (strcmp(a, "--clients") == 0)
            o->clients = (int)bench_num_arg("bench_floor", a, v, 1, 100000);
        else if (strcmp(a, "--duration-s") == 0)
            o->duration_s = bench_num_arg("bench_floor", a, v, 0.1, 1e6);
        else if (strcmp(a, "--warmup-s") == 0)
            o->warmup_s = bench_num_arg("bench_floor", a, v, 0, 1e6);
        else if (strcmp(a, "--drain-s") == 0)
            o->drain_s = bench_num_arg("bench_floor", a, v, 0, 1e6);
        else
            die("unknown option %s (see --help)", a);
    }
    if (strcmp(o->mode, "xadd") == 0 && !o->unix_path)
        die("%s", "xadd needs --unix PATH");
    if (strcmp(o->mode, "http") == 0 &&
        (!o->url || bench_parse_url(o->url, o->host, sizeof o->host, o->port, sizeof o->port)))
        die("%s", "http needs --url http://HOST:PORT");
}

int main(int argc, char **argv)
{
    static floor_run F; /* zeroed */
    F.o = (opts){.path = "/health", .clients = 8, .duration_s = 10, .warmup_s = 2, .drain_s = 10};
    parse_args(&F.o, argc, argv);
    signal(SIGPIPE, SIG_IGN);
    setup(&F);
    run(&F);
    report(&F);
    return F.window_ok > 0 ? 0 : 1;
}
