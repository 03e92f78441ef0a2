/* bus.c: see bus.h. hiredis formats and parses; the transport is ours. */
#include "bus.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

struct ds_bus {
    bus_opts o;
    bool unix_socket;
    char *host, *port, *path, *user, *password;
    int fd; /* -1 while disconnected */
    redisReader *reader;
    bool sent; /* the last roundtrip wrote its whole command */
};

void bus_opts_default(bus_opts *o)
{
    o->url = "redis://127.0.0.1:6379";
    o->connect_timeout_ms = 2000;
    o->io_timeout_ms = 5000;
}

static int parse_url(ds_bus *b, const char *url, ds_error *err)
{
    if (strncmp(url, "unix://", 7) == 0) {
        b->unix_socket = true;
        b->path = xstrdup(url + 7);
        if (!b->path[0] || strlen(b->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return ds_fail(err, DS_INVALID_VALUE, "redis",
                           "the Redis socket path is empty or longer than 107 bytes");
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return ds_fail(err, DS_INVALID_VALUE, "redis",
                       "the Redis URL must start with redis:// or unix://");
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p)
                b->user = xstrndup(p, (size_t)(colon - p));
            b->password = xstrndup(colon + 1, (size_t)(at - colon - 1));
        } else {
            b->password = xstrndup(p, (size_t)(at - p));
        }
        p = at + 1;
    }
    const char *end = p + strcspn(p, "/?");
    const char *colon = memchr(p, ':', (size_t)(end - p));
    b->host = xstrndup(p, (size_t)((colon ? colon : end) - p));
    b->port = colon ? xstrndup(colon + 1, (size_t)(end - colon - 1)) : xstrdup("6379");
    if (!b->host[0] || !b->port[0])
        return ds_fail(err, DS_INVALID_VALUE, "redis", "the Redis URL has no host or port");
    return 0;
}

int bus_open(const bus_opts *o, ds_bus **out, ds_error *err)
{
    ds_bus *b = xcalloc(1, sizeof *b);
    b->o = *o;
    b->fd = -1;
    int rc = parse_url(b, o->url, err);
    if (rc) {
        bus_close(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* Redis never speaks first on our connections: anything readable before a
 * command is sent is the end of the connection (a restart, a kill). Sending
 * into such a connection would make the outcome look unknown. */
static bool peer_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
        return true;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n <= 0;
}

static void disconnect(ds_bus *b)
{
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
    if (b->reader)
        redisReaderFree(b->reader);
    b->reader = NULL;
}

void bus_close(ds_bus *b)
{
    if (!b)
        return;
    disconnect(b);
    free(b->host);
    free(b->port);
    free(b->path);
    free(b->user);
    free(b->password);
    free(b);
}

static int64_t deadline_after(int ms)
{
    return ds_now_ns() + (int64_t)ms * 1000000;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = (deadline - ds_now_ns()) / 1000000;
        if (left < 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n == 0 || errno != EINTR)
            return -1;
    }
}

static int connect_socket(ds_bus *b, ds_error *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int fd = -1, family;
    struct sockaddr_un un;
    const struct sockaddr *addr;
    socklen_t alen;
    if (b->unix_socket) {
        memset(&un, 0, sizeof un);
        un.sun_family = AF_UNIX;
        memcpy(un.sun_path, b->path, strlen(b->path) + 1);
        addr = (struct sockaddr *)&un;
        alen = sizeof un;
        family = AF_UNIX;
    } else {
        int g = getaddrinfo(b->host, b->port, &hints, &res);
        if (g)
            return ds_fail(err, DS_UNAVAILABLE, "redis", "cannot resolve Redis host %s: %s",
                           b->host, gai_strerror(g));
        addr = res->ai_addr;
        alen = res->ai_addrlen;
        family = res->ai_family;
    }
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -1 : connect(fd, addr, alen);
    if (rc < 0 && fd >= 0 && errno == EINPROGRESS) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        rc = wait_fd(fd, POLLOUT, deadline_after(b->o.connect_timeout_ms));
        if (rc == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr)) {
            errno = soerr;
            rc = -1;
        } else if (rc) {
            errno = ETIMEDOUT;
        }
    }
    if (res)
        freeaddrinfo(res);
    if (rc < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return ds_fail(err, DS_UNAVAILABLE, "redis", "cannot connect to Redis at %s%s%s: %s",
                       b->unix_socket ? b->path : b->host, b->unix_socket ? "" : ":",
                       b->unix_socket ? "" : b->port, strerror(e));
    }
    if (!b->unix_socket) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    b->fd = fd;
    b->reader = redisReaderCreate();
    return 0;
}

static int send_all(ds_bus *b, const char *buf, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(b->fd, buf, n, MSG_NOSIGNAL);
        if (w > 0) {
            buf += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(b->fd, POLLOUT, deadline))
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static redisReply *recv_reply(ds_bus *b, int64_t deadline)
{
    void *reply = NULL;
    char buf[16384];
    for (;;) {
        if (redisReaderGetReply(b->reader, &reply) != REDIS_OK)
            return NULL;
        if (reply)
            return reply;
        ssize_t r = recv(b->fd, buf, sizeof buf, 0);
        if (r > 0) {
            if (redisReaderFeed(b->reader, buf, (size_t)r) != REDIS_OK)
                return NULL;
        } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(b->fd, POLLIN, deadline))
                return NULL;
        } else {
            return NULL;
        }
    }
}

/* One round trip. NULL (with err: unavailable) on I/O failure, after which
 * the connection is dropped and the next call reconnects. */
static redisReply *roundtrip(ds_bus *b, int argc, const char **argv, const size_t *lens,
                             int extra_ms, ds_error *err);

static int authenticate(ds_bus *b, ds_error *err)
{
    if (!b->password)
        return 0;
    const char *argv[3] = {"AUTH", b->user ? b->user : b->password, b->password};
    size_t lens[3] = {4, strlen(argv[1]), strlen(b->password)};
    redisReply *r = roundtrip(b, b->user ? 3 : 2, argv, lens, 0, err);
    if (!r)
        return -DS_UNAVAILABLE;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis refused the credentials%s%s: %s",
                     b->user ? " of user " : "", b->user ? b->user : "", r->str);
        disconnect(b);
    }
    freeReplyObject(r);
    return rc;
}

static redisReply *roundtrip(ds_bus *b, int argc, const char **argv, const size_t *lens,
                             int extra_ms, ds_error *err)
{
    bool fresh = false;
    b->sent = false;
    if (b->fd >= 0 && peer_closed(b->fd))
        disconnect(b); /* Redis restarted or died since: do not send into it */
    if (b->fd < 0) {
        if (connect_socket(b, err))
            return NULL;
        fresh = true;
        if (authenticate(b, err)) {
            b->sent = false; /* AUTH's own roundtrip set it; the command never went */
            return NULL;
        }
    }
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (n < 0) {
        ds_fail(err, DS_INTERNAL, NULL, "cannot format a Redis command");
        return NULL;
    }
    int64_t deadline = deadline_after(b->o.io_timeout_ms + extra_ms);
    b->sent = send_all(b, cmd, (size_t)n, deadline) == 0;
    redisReply *r = b->sent ? recv_reply(b, deadline) : NULL;
    redisFreeCommand(cmd);
    if (!r) {
        disconnect(b);
        ds_fail(err, DS_UNAVAILABLE, "redis", "Redis %s",
                fresh ? "closed the new connection" : "did not answer (connection dropped)");
    }
    return r;
}

/* A connection Redis closed while idle (a restart) fails the first write:
 * then the command goes out once more on a new connection. */
static redisReply *command(ds_bus *b, int argc, const char **argv, const size_t *lens,
                           ds_error *err)
{
    bool reused = b->fd >= 0;
    redisReply *r = roundtrip(b, argc, argv, lens, 0, err);
    if (!r && reused && !b->sent)
        r = roundtrip(b, argc, argv, lens, 0, err);
    return r;
}

/* Builds lens from NUL-terminated argv. */
static redisReply *commandv(ds_bus *b, int argc, const char **argv, ds_error *err)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return command(b, argc, argv, lens, err);
}

static int reply_error(redisReply *r, const char *what, ds_error *err)
{
    int rc =
        ds_fail(err, DS_UNAVAILABLE, "redis", "Redis refused %s: %s", what, r->str ? r->str : "?");
    freeReplyObject(r);
    return rc;
}

int bus_ping(ds_bus *b, ds_error *err)
{
    const char *argv[] = {"PING"};
    redisReply *r = commandv(b, 1, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR)
        return reply_error(r, "PING", err);
    freeReplyObject(r);
    return 0;
}

static void stream_key(char *buf, size_t n, const char *model, const char *suffix)
{
    snprintf(buf, n, "{%s}:%s", model, suffix);
}

/* The argv of XADD {model}:request_duck * fields... into argv/lens (room
 * for 3 + 2 * 16); key is the caller's buffer (300 bytes). */
static int xadd_argv(const char *model, const bus_field *f, int n, char *key, const char **argv,
                     size_t *lens)
{
    stream_key(key, 300, model, "request_duck");
    int argc = 0;
    argv[argc] = "XADD";
    lens[argc++] = 4;
    argv[argc] = key;
    lens[argc++] = strlen(key);
    argv[argc] = "*";
    lens[argc++] = 1;
    for (int i = 0; i < n && i < 16; i++) {
        argv[argc] = f[i].name;
        lens[argc++] = strlen(f[i].name);
        argv[argc] = f[i].value;
        lens[argc++] = f[i].len;
    }
    return argc;
}

int bus_enqueue_many(ds_bus *b, int n, bus_xadd *x, ds_error *err)
{
    for (int i = 0; i < n; i++) {
        x[i].ok = false;
        x[i].maybe_sent = false;
    }
    if (n == 0)
        return 0;
    if (b->fd >= 0 && peer_closed(b->fd))
        disconnect(b);
    if (b->fd < 0 && (connect_socket(b, err) || authenticate(b, err)))
        return -DS_UNAVAILABLE;
    ds_buf out;
    ds_buf_init(&out, (size_t)1 << 31);
    for (int i = 0; i < n; i++) {
        char key[300], *cmd = NULL;
        const char *argv[3 + 2 * 16];
        size_t lens[3 + 2 * 16];
        int argc = xadd_argv(x[i].model, x[i].fields, x[i].nfields, key, argv, lens);
        int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
        if (len > 0)
            ds_buf_append(&out, cmd, (size_t)len);
        redisFreeCommand(cmd);
    }
    int64_t deadline = deadline_after(b->o.io_timeout_ms);
    int rc = 0;
    if (send_all(b, out.data, out.len, deadline)) {
        for (int i = 0; i < n; i++)
            x[i].maybe_sent = true; /* some bytes may have gone out */
        rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis did not take the commands");
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        redisReply *r = recv_reply(b, deadline);
        if (!r) { /* this one and the rest went out without an answer */
            for (int j = i; j < n; j++)
                x[j].maybe_sent = true;
            rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis did not answer (connection dropped)");
            break;
        }
        if (r->type == REDIS_REPLY_STRING) {
            snprintf(x[i].id, sizeof x[i].id, "%s", r->str);
            x[i].ok = true;
        } else if (r->type == REDIS_REPLY_ERROR) { /* refused: not queued */
            ds_fail(err, DS_UNAVAILABLE, "redis", "Redis refused XADD: %s", r->str);
        }
        freeReplyObject(r);
    }
    if (rc)
        disconnect(b);
    ds_buf_free(&out);
    return rc;
}

int bus_enqueue(ds_bus *b, const char *model, const bus_field *f, int n, char *id, bool *maybe_sent,
                ds_error *err)
{
    char key[300];
    const char *argv[3 + 2 * 16];
    size_t lens[3 + 2 * 16];
    int argc = xadd_argv(model, f, n, key, argv, lens);
    redisReply *r = command(b, argc, argv, lens, err);
    if (maybe_sent)
        *maybe_sent = !r && b->sent;
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_STRING)
        return reply_error(r, "XADD", err);
    snprintf(id, 32, "%s", r->str);
    freeReplyObject(r);
    return 0;
}

int bus_group_ensure(ds_bus *b, const char *model, ds_error *err)
{
    char key[300];
    stream_key(key, sizeof key, model, "request_duck");
    const char *argv[] = {"XGROUP", "CREATE", key, "writers", "0", "MKSTREAM"};
    redisReply *r = commandv(b, 6, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
        return reply_error(r, "XGROUP CREATE", err);
    freeReplyObject(r);
    return 0;
}

/* Calls fn for each entry of one stream's reply [key, [[id, [f, v, ...]]...]]. */
static int each_entry(redisReply *s, const char *model, bus_entry_fn fn, void *ctx)
{
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
        s->element[1]->type != REDIS_REPLY_ARRAY)
        return 0;
    int count = 0;
    bus_field fields[16];
    for (size_t i = 0; i < s->element[1]->elements; i++) {
        redisReply *e = s->element[1]->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
            continue;
        bus_entry ent = {.model = model, .id = e->element[0]->str, .fields = fields};
        redisReply *kv = e->element[1];
        if (kv->type == REDIS_REPLY_ARRAY)
            for (size_t j = 0; j + 1 < kv->elements && ent.nfields < 16; j += 2)
                fields[ent.nfields++] = (bus_field){.name = kv->element[j]->str,
                                                    .value = kv->element[j + 1]->str,
                                                    .len = kv->element[j + 1]->len};
        fn(ctx, &ent); /* nfields 0: the entry was trimmed away */
        count++;
    }
    return count;
}

int bus_read(ds_bus *b, const char *consumer, const char *const *models, int nmodels, bool pending,
             int count, int block_ms, bus_entry_fn fn, void *ctx, ds_error *err)
{
    enum { MAXM = 64 };
    if (nmodels < 1 || nmodels > MAXM)
        return ds_fail(err, DS_INTERNAL, NULL, "bus_read takes 1 to %d models", MAXM);
    char keys[MAXM][300], countbuf[16], blockbuf[16];
    const char *argv[8 + 2 * MAXM];
    size_t lens[8 + 2 * MAXM];
    int argc = 0;
    snprintf(countbuf, sizeof countbuf, "%d", count);
    snprintf(blockbuf, sizeof blockbuf, "%d", block_ms);
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = "writers";
    argv[argc++] = consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = countbuf;
    if (!pending && block_ms > 0) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blockbuf;
    }
    argv[argc++] = "STREAMS";
    for (int i = 0; i < nmodels; i++) {
        stream_key(keys[i], sizeof keys[i], models[i], "request_duck");
        argv[argc++] = keys[i];
    }
    for (int i = 0; i < nmodels; i++)
        argv[argc++] = pending ? "0" : ">";
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = roundtrip(b, argc, argv, lens, pending ? 0 : block_ms, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR)
        return reply_error(r, "XREADGROUP", err);
    int total = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *s = r->element[i];
        const char *model = NULL;
        for (int k = 0; k < nmodels && s->type == REDIS_REPLY_ARRAY && s->elements == 2; k++)
            if (strcmp(keys[k], s->element[0]->str) == 0)
                model = models[k];
        if (model)
            total += each_entry(s, model, fn, ctx);
    }
    freeReplyObject(r);
    return total;
}

/* ---- scripts -------------------------------------------------------------- */

static const char acquire_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local sep = string.find(cur, ':', 1, true)\n"
    "  if sep == nil or string.sub(cur, sep + 1) ~= ARGV[1] then return -1 end\n"
    "end\n"
    "local e = redis.call('INCR', KEYS[2])\n"
    "redis.call('SET', KEYS[1], e .. ':' .. ARGV[1], 'PX', ARGV[2])\n"
    "return e\n";

static const char renew_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                "  return 1\n"
                                "end\n"
                                "return 0\n";

static const char publish_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
    "  return redis.error_reply('FENCED the lease is no longer ours')\n"
    "end\n"
    "local n = tonumber(ARGV[3])\n"
    "local i = 4\n"
    "for k = 1, n do\n"
    "  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'seq', ARGV[i], 'rid', "
    "ARGV[i + 1], 'event', ARGV[i + 2])\n"
    "  i = i + 3\n"
    "end\n"
    "if i <= #ARGV then\n"
    "  redis.call('XACK', KEYS[3], 'writers', unpack(ARGV, i))\n"
    "  local p = redis.call('XPENDING', KEYS[3], 'writers')\n"
    "  redis.call('XTRIM', KEYS[3], 'MINID', '~', p[2] or ARGV[#ARGV])\n"
    "end\n"
    "return n\n";

/* EVALSHA, falling back to EVAL when the server does not have the script. */
static redisReply *run_script(ds_bus *b, const char *script, int nkeys, const char **keys,
                              int nargs, const char **args, const size_t *arglens, ds_error *err)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    char sha[2 * SHA_DIGEST_LENGTH + 1], nk[8];
    SHA1((const unsigned char *)script, strlen(script), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(sha + 2 * i, 3, "%02x", md[i]);
    snprintf(nk, sizeof nk, "%d", nkeys);
    int argc = 3 + nkeys + nargs;
    const char **argv = xmalloc_array((size_t)argc, sizeof *argv);
    size_t *lens = xmalloc_array((size_t)argc, sizeof *lens);
    argv[0] = "EVALSHA";
    argv[1] = sha;
    argv[2] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[3 + i] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[3 + nkeys + i] = args[i];
    for (int i = 0; i < argc; i++)
        lens[i] = i >= 3 + nkeys && arglens ? arglens[i - 3 - nkeys] : strlen(argv[i]);
    redisReply *r = command(b, argc, argv, lens, err);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = script;
        lens[0] = 4;
        lens[1] = strlen(script);
        r = command(b, argc, argv, lens, err);
    }
    free(argv);
    free(lens);
    return r;
}

int bus_lease_acquire(ds_bus *b, const char *model, const char *owner, int ttl_ms, int64_t *epoch,
                      ds_error *err)
{
    char lease[300], ep[300], ttl[16];
    stream_key(lease, sizeof lease, model, "lease");
    stream_key(ep, sizeof ep, model, "epoch");
    snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    const char *keys[] = {lease, ep}, *args[] = {owner, ttl};
    redisReply *r = run_script(b, acquire_lua, 2, keys, 2, args, NULL, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_INTEGER)
        return reply_error(r, "the lease script", err);
    *epoch = r->integer;
    freeReplyObject(r);
    return 0;
}

int bus_lease_renew(ds_bus *b, const char *model, const char *owner, int64_t epoch, int ttl_ms,
                    ds_error *err)
{
    char lease[300], holder[300], ttl[16];
    stream_key(lease, sizeof lease, model, "lease");
    snprintf(holder, sizeof holder, "%" PRId64 ":%s", epoch, owner);
    snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    const char *keys[] = {lease}, *args[] = {holder, ttl};
    redisReply *r = run_script(b, renew_lua, 1, keys, 2, args, NULL, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_INTEGER)
        return reply_error(r, "the lease renewal", err);
    int ok = r->integer == 1;
    freeReplyObject(r);
    return ok;
}

int bus_publish(ds_bus *b, const char *model, const char *owner, int64_t epoch, const bus_event *ev,
                int nev, const char *const *ack_ids, int nack, long keep, ds_error *err)
{
    char lease[300], resp[300], req[300], holder[300], keepbuf[24], nbuf[16];
    stream_key(lease, sizeof lease, model, "lease");
    stream_key(resp, sizeof resp, model, "response_duck");
    stream_key(req, sizeof req, model, "request_duck");
    snprintf(holder, sizeof holder, "%" PRId64 ":%s", epoch, owner);
    snprintf(keepbuf, sizeof keepbuf, "%ld", keep);
    snprintf(nbuf, sizeof nbuf, "%d", nev);
    int nargs = 3 + 3 * nev + nack;
    const char **args = xmalloc_array((size_t)nargs, sizeof *args);
    size_t *lens = xmalloc_array((size_t)nargs, sizeof *lens);
    char(*seqs)[24] = xmalloc_array((size_t)(nev ? nev : 1), sizeof *seqs);
    int a = 0;
    args[a] = holder;
    lens[a++] = strlen(holder);
    args[a] = keepbuf;
    lens[a++] = strlen(keepbuf);
    args[a] = nbuf;
    lens[a++] = strlen(nbuf);
    for (int i = 0; i < nev; i++) {
        snprintf(seqs[i], sizeof seqs[i], "%" PRId64, ev[i].seq);
        args[a] = seqs[i];
        lens[a++] = strlen(seqs[i]);
        args[a] = ev[i].request_id ? ev[i].request_id : "";
        lens[a] = strlen(args[a]);
        a++;
        args[a] = ev[i].json;
        lens[a++] = ev[i].len;
    }
    for (int i = 0; i < nack; i++) {
        args[a] = ack_ids[i];
        lens[a++] = strlen(ack_ids[i]);
    }
    const char *keys[] = {lease, resp, req};
    redisReply *r = run_script(b, publish_lua, 3, keys, nargs, args, lens, err);
    free(args);
    free(lens);
    free(seqs);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "FENCED", 6) == 0) {
        int rc = ds_fail(err, DS_FORBIDDEN, "lease", "the writer lease of '%s' is lost", model);
        freeReplyObject(r);
        return rc;
    }
    if (r->type == REDIS_REPLY_ERROR)
        return reply_error(r, "the publish script", err);
    freeReplyObject(r);
    return 0;
}

static const char *field_of(redisReply *kv, const char *name, size_t *len)
{
    for (size_t j = 0; kv->type == REDIS_REPLY_ARRAY && j + 1 < kv->elements; j += 2)
        if (strcmp(kv->element[j]->str, name) == 0) {
            *len = kv->element[j + 1]->len;
            return kv->element[j + 1]->str;
        }
    return NULL;
}

int bus_last_seq(ds_bus *b, const char *model, int64_t *seq, ds_error *err)
{
    char key[300];
    stream_key(key, sizeof key, model, "response_duck");
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", "1"};
    redisReply *r = commandv(b, 6, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_ARRAY)
        return reply_error(r, "XREVRANGE", err);
    *seq = -1;
    if (r->elements == 1 && r->element[0]->elements == 2) {
        size_t len;
        const char *s = field_of(r->element[0]->element[1], "seq", &len);
        if (s)
            *seq = strtoll(s, NULL, 10);
    }
    freeReplyObject(r);
    return 0;
}

int bus_recent_events(ds_bus *b, const char *model, int n, bus_event_fn fn, void *ctx,
                      ds_error *err)
{
    char key[300], count[16];
    stream_key(key, sizeof key, model, "response_duck");
    snprintf(count, sizeof count, "%d", n);
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", count};
    redisReply *r = commandv(b, 6, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_ARRAY)
        return reply_error(r, "XREVRANGE", err);
    for (size_t i = r->elements; i-- > 0;) {
        redisReply *e = r->element[i];
        size_t slen, elen;
        const char *s = e->elements == 2 ? field_of(e->element[1], "seq", &slen) : NULL;
        const char *ev = s ? field_of(e->element[1], "event", &elen) : NULL;
        if (ev)
            fn(ctx, strtoll(s, NULL, 10), ev, elen);
    }
    freeReplyObject(r);
    return 0;
}
