/* bus_conn.c: the bus's connection (see bus.h and bus_internal.h): the
 * URL, the socket (TCP or unix), TLS with OpenSSL over it, AUTH, and one
 * command's round trip with hiredis formatting and parsing. Every wait is
 * a poll() against the command's deadline. */
#include "bus_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

void bus_opts_default(bus_opts *o)
{
    memset(o, 0, sizeof *o);
    o->url = "redis://127.0.0.1:6379";
    o->connect_timeout_ms = 2000;
    o->io_timeout_ms = 5000;
}

int64_t bus__deadline(int ms)
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

/* ---- the URL ------------------------------------------------------------------- */

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape. */
static char *percent_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int hi = i + 2 < n ? ds_hexval(s[i + 1]) : -1;
        int lo = i + 2 < n ? ds_hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* user:password@ (or password@) of s[0..n). */
static int parse_userinfo(ds_bus *b, const char *s, size_t n, ds_error *err)
{
    const char *colon = memchr(s, ':', n);
    const char *pw = colon ? colon + 1 : s;
    if (colon && colon > s && !(b->user = percent_decode(s, (size_t)(colon - s))))
        goto bad;
    if (!(b->password = percent_decode(pw, (size_t)(s + n - pw))))
        goto bad;
    if (!b->user && !b->password[0]) { /* ":@": no credentials */
        free(b->password);
        b->password = NULL;
    }
    return 0;
bad:
    return ds_fail(err, DS_INVALID_VALUE, "redis",
                   "the Redis URL's user or password has a %% not followed by two hex digits "
                   "(write %% as %%25)");
}

static int parse_unix(ds_bus *b, const char *p, ds_error *err)
{
    b->unix_socket = true;
    if (*p != '/') { /* unix://user:password@/path */
        const char *at = strchr(p, '@');
        if (at && at[1] == '/') {
            int rc = parse_userinfo(b, p, (size_t)(at - p), err);
            if (rc)
                return rc;
            p = at + 1;
        }
    }
    b->path = xstrdup(p);
    if (!b->path[0] || strlen(b->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return ds_fail(err, DS_INVALID_VALUE, "redis",
                       "the Redis socket path is empty or longer than 107 bytes");
    snprintf(b->where, sizeof b->where, "%s", b->path);
    return 0;
}

/* Makes host i the one in use (its address for messages, its name for TLS
 * unless --redis-server-name gave one). */
void bus__use_host(ds_bus *b, int i)
{
    b->cur = i;
    b->host = b->hosts[i];
    b->port = b->ports[i];
    bool v6 = strchr(b->host, ':') != NULL;
    snprintf(b->where, sizeof b->where, "%s%.200s%s:%s", v6 ? "[" : "", b->host, v6 ? "]" : "",
             b->port);
    if (!(b->o.tls_name && *b->o.tls_name))
        b->tls_name = b->host;
}

/* host[:port] or [v6]:port of s[0..n), the next of the URL's hosts (kept in
 * b->hosts at once, so that bus_close frees it whatever is refused). */
static int parse_hostport(ds_bus *b, const char *p, const char *end, ds_error *err)
{
    int i = b->nhosts++;
    const char *hend;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close)
            return ds_fail(err, DS_INVALID_VALUE, "redis",
                           "the Redis URL's host has a [ without its ]");
        b->hosts[i] = xstrndup(p + 1, (size_t)(close - p - 1));
        hend = close + 1;
        if (hend < end && *hend != ':')
            return ds_fail(err, DS_INVALID_VALUE, "redis",
                           "the Redis URL has text after the ] of its host");
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        hend = hend ? hend : end;
        b->hosts[i] = xstrndup(p, (size_t)(hend - p));
    }
    if (!b->hosts[i][0])
        return ds_fail(err, DS_INVALID_VALUE, "redis",
                       "the Redis URL has no host (redis://[user:password@]host[:port])");
    const char *ps = b->ports[i] =
        hend < end ? xstrndup(hend + 1, (size_t)(end - hend - 1)) : xstrdup("6379");
    char *e;
    long port = strtol(ps, &e, 10);
    if (!ps[0] || *e || port < 1 || port > 65535 || ps[0] == '+' || ps[0] == '-')
        return ds_fail(err, DS_INVALID_VALUE, "redis",
                       "the Redis URL's port '%.20s' is not a number from 1 to 65535", ps);
    bus__use_host(b, i);
    return 0;
}

static int parse_url(ds_bus *b, const char *url, ds_error *err)
{
    if (strncmp(url, "unix://", 7) == 0)
        return parse_unix(b, url + 7, err);
    const char *p;
    if (strncmp(url, "redis://", 8) == 0)
        p = url + 8;
    else if (strncmp(url, "rediss://", 9) == 0) {
        p = url + 9;
        b->tls = true;
    } else
        return ds_fail(err, DS_INVALID_VALUE, "redis",
                       "the Redis URL must start with redis://, rediss:// (TLS) or unix://");
    const char *end = p + strcspn(p, "/?#");
    const char *at = NULL; /* the last @ before the path: a password may hold @ */
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        int rc = parse_userinfo(b, p, (size_t)(at - p), err);
        if (rc)
            return rc;
        p = at + 1;
    }
    /* h1:p1,h2:p2,...: a primary and its replicas, in any order */
    for (const char *q = p; q <= end;) {
        const char *comma = memchr(q, ',', (size_t)(end - q));
        const char *hend = comma ? comma : end;
        if (b->nhosts == BUS_HOSTS_MAX)
            return ds_fail(err, DS_INVALID_VALUE, "redis", "the Redis URL names more than %d hosts",
                           BUS_HOSTS_MAX);
        int rc = parse_hostport(b, q, hend, err);
        if (rc)
            return rc;
        q = hend + 1;
        if (!comma)
            break;
    }
    bus__use_host(b, 0);
    if (*end == '?' || *end == '#')
        return ds_fail(err, DS_INVALID_VALUE, "redis",
                       "the Redis URL takes no ?options; TLS is set with --redis-ca, "
                       "--redis-cert, --redis-key and --redis-server-name");
    if (*end == '/' && end[1] && strcmp(end, "/0") != 0)
        return ds_fail(err, DS_INVALID_VALUE, "redis",
                       "the Redis URL's path '%.40s' selects a database: duckspread uses "
                       "database 0 only (end the URL with the port, or /0)",
                       end);
    return 0;
}

/* ---- TLS -------------------------------------------------------------------------- */

/* OpenSSL's reason for the newest error on this thread's queue ("" if none);
 * the queue is emptied. */
static void tls_reason(char *out, size_t n)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()))
        last = e;
    const char *r = last ? ERR_reason_error_string(last) : NULL;
    snprintf(out, n, "%s", r ? r : (last ? "unknown OpenSSL error" : ""));
}

static int tls_file_error(const char *what, const char *path, ds_error *err)
{
    char why[160];
    struct stat st;
    if (stat(path, &st) < 0)
        snprintf(why, sizeof why, "%s", strerror(errno));
    else
        tls_reason(why, sizeof why);
    ERR_clear_error();
    return ds_fail(err, DS_INVALID_VALUE, "redis", "cannot use %s %s: %s", what, path, why);
}

static bool is_ip(const char *s)
{
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* The SSL_CTX of rediss://: TLS 1.2 or newer, the peer verified against
 * the CA (or the system's), an optional client certificate. */
static int tls_setup(ds_bus *b, ds_error *err)
{
    const bus_opts *o = &b->o;
    if (!b->tls) {
        if (o->tls_ca || o->tls_cert || o->tls_key || o->tls_name)
            return ds_fail(err, DS_INVALID_VALUE, "redis",
                           "--redis-ca, --redis-cert, --redis-key and --redis-server-name need "
                           "a rediss:// URL");
        return 0;
    }
    if (!o->tls_cert != !o->tls_key)
        return ds_fail(err, DS_INVALID_VALUE, "redis",
                       "a client certificate needs both --redis-cert and --redis-key");
    b->tls_name = o->tls_name && *o->tls_name ? o->tls_name : b->host;
    ERR_clear_error();
    b->ctx = SSL_CTX_new(TLS_client_method());
    if (!b->ctx)
        return ds_fail(err, DS_INTERNAL, "redis", "cannot create a TLS context");
    SSL_CTX_set_min_proto_version(b->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(b->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(b->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (o->tls_ca) {
        struct stat st;
        bool dir = stat(o->tls_ca, &st) == 0 && S_ISDIR(st.st_mode);
        if (SSL_CTX_load_verify_locations(b->ctx, dir ? NULL : o->tls_ca, dir ? o->tls_ca : NULL) !=
            1)
            return tls_file_error("the Redis CA file", o->tls_ca, err);
    } else if (SSL_CTX_set_default_verify_paths(b->ctx) != 1) {
        return tls_file_error("the system's CA certificates", "(default paths)", err);
    }
    if (o->tls_cert) {
        if (SSL_CTX_use_certificate_chain_file(b->ctx, o->tls_cert) != 1)
            return tls_file_error("the Redis client certificate", o->tls_cert, err);
        if (SSL_CTX_use_PrivateKey_file(b->ctx, o->tls_key, SSL_FILETYPE_PEM) != 1)
            return tls_file_error("the Redis client key", o->tls_key, err);
        if (SSL_CTX_check_private_key(b->ctx) != 1) {
            ERR_clear_error();
            return ds_fail(err, DS_INVALID_VALUE, "redis",
                           "the Redis client key %s does not belong to the certificate %s",
                           o->tls_key, o->tls_cert);
        }
    }
    return 0;
}

static bool untrusted_issuer(long v)
{
    return v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
           v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
           v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE || v == X509_V_ERR_CERT_UNTRUSTED;
}

static const char cert_hint[] = ": it may want a client certificate (--redis-cert, --redis-key)";

/* Why the handshake failed: the certificate (refused), Redis's alert
 * (refused) or the network (unavailable). */
static int tls_failure(ds_bus *b, int sslerr, bool timed_out, ds_error *err)
{
    long v = SSL_get_verify_result(b->ssl);
    char why[160];
    tls_reason(why, sizeof why);
    if (v != X509_V_OK) {
        b->refused = true;
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            return ds_fail(err, DS_UNAVAILABLE, "redis",
                           "the TLS certificate of Redis at %s is for another host name "
                           "(hostname mismatch: it does not name '%s'); connect by a name it "
                           "carries, or set the name to check with --redis-server-name",
                           b->where, b->tls_name);
        if (untrusted_issuer(v))
            return ds_fail(err, DS_UNAVAILABLE, "redis",
                           "the TLS certificate of Redis at %s failed verification: it is not "
                           "signed by a trusted CA (%s); give the CA's certificate with "
                           "--redis-ca FILE",
                           b->where, X509_verify_cert_error_string(v));
        return ds_fail(err, DS_UNAVAILABLE, "redis",
                       "the TLS certificate of Redis at %s failed verification: %s", b->where,
                       X509_verify_cert_error_string(v));
    }
    if (sslerr == SSL_ERROR_SSL && strstr(why, "alert")) {
        b->refused = true;
        return ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s refused the TLS handshake (%s)%s",
                       b->where, why, b->o.tls_cert ? "" : cert_hint);
    }
    if (sslerr == SSL_ERROR_SSL) {
        b->refused = true;
        return ds_fail(err, DS_UNAVAILABLE, "redis",
                       "the TLS handshake with Redis at %s failed: %s (is it Redis's "
                       "tls-port?)",
                       b->where, why[0] ? why : "protocol error");
    }
    return ds_fail(err, DS_UNAVAILABLE, "redis", "the TLS handshake with Redis at %s %s", b->where,
                   timed_out ? "timed out" : "failed: the connection closed");
}

/* ---- the connection ----------------------------------------------------------------- */

int bus_open(const bus_opts *o, ds_bus **out, ds_error *err)
{
    ds_bus *b = xcalloc(1, sizeof *b);
    b->o = *o;
    b->fd = -1;
    b->cluster = o->cluster;
    b->slot = b->force_node = -1;
    for (int i = 0; i < BUS_NODES_MAX; i++)
        b->parked[i].fd = -1;
    int rc = parse_url(b, o->url, err);
    if (rc == 0 && b->cluster && b->unix_socket)
        rc = ds_fail(err, DS_INVALID_VALUE, "redis",
                     "a Redis Cluster is reached over TCP: give its nodes as redis://host:port "
                     "(or rediss://), not a unix socket");
    if (rc == 0)
        rc = tls_setup(b, err);
    if (rc) {
        bus_close(b);
        return rc;
    }
    *out = b;
    return 0;
}

void bus_describe(const ds_bus *b, char *out, size_t n)
{
    const char *scheme = b->unix_socket ? "unix://" : b->tls ? "rediss://" : "redis://";
    const char *cred = b->password ? ":***@" : "";
    if (b->tls && strcmp(b->tls_name, b->host) != 0)
        snprintf(out, n, "%s%s%s%s (TLS, certificate checked for %s)", scheme,
                 b->user ? b->user : "", cred, b->where, b->tls_name);
    else
        snprintf(out, n, "%s%s%s%s%s%s", scheme, b->user ? b->user : "", cred, b->where,
                 b->tls ? " (TLS, certificate checked)" : "", b->cluster ? " (cluster)" : "");
}

/* Redis never speaks first on our connections: anything readable before a
 * command is sent is the end of the connection (a restart, a kill). Sending
 * into such a connection would make the outcome look unknown. Over TLS,
 * SSL_peek consumes what is not data (session tickets) and sees a
 * close_notify or an EOF. */
static bool peer_closed(ds_bus *b)
{
    struct pollfd p = {.fd = b->fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
        return true;
    char c;
    if (!b->ssl)
        return recv(b->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
    ERR_clear_error();
    int n = SSL_peek(b->ssl, &c, 1);
    if (n > 0)
        return false;
    int e = SSL_get_error(b->ssl, n);
    ERR_clear_error();
    return e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
}

void bus__disconnect(ds_bus *b)
{
    if (b->cluster) /* the node may be gone: read the map again */
        b->map_stale = true;
    if (b->ssl)
        SSL_free(b->ssl); /* no close_notify: the socket may be dead */
    b->ssl = NULL;
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
    bus__disconnect(b);
    bus__lanes_free(b);
    bus__cluster_free(b);
    SSL_CTX_free(b->ctx);
    for (int i = 0; i < b->nhosts; i++) {
        free(b->hosts[i]);
        free(b->ports[i]);
    }
    free(b->path);
    free(b->user);
    if (b->password)
        OPENSSL_cleanse(b->password, strlen(b->password));
    free(b->password);
    free(b);
}

static int tls_handshake(ds_bus *b, int64_t deadline, ds_error *err)
{
    ERR_clear_error();
    b->ssl = SSL_new(b->ctx);
    if (!b->ssl || SSL_set_fd(b->ssl, b->fd) != 1)
        return ds_fail(err, DS_INTERNAL, "redis", "cannot start a TLS session");
    if (is_ip(b->tls_name)) { /* no SNI for an address (RFC 6066) */
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(b->ssl), b->tls_name);
    } else {
        SSL_set_tlsext_host_name(b->ssl, b->tls_name);
        SSL_set_hostflags(b->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(b->ssl, b->tls_name);
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(b->ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(b->ssl, r);
        short want = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!want)
            return tls_failure(b, e, false, err);
        if (wait_fd(b->fd, want, deadline))
            return tls_failure(b, e, true, err);
    }
}

static int connect_socket(ds_bus *b, ds_error *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int fd = -1, family;
    struct sockaddr_un un;
    const struct sockaddr *addr;
    socklen_t alen;
    b->refused = false;
    b->tls_error[0] = '\0';
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
    int64_t deadline = bus__deadline(b->o.connect_timeout_ms);
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -1 : connect(fd, addr, alen);
    if (rc < 0 && fd >= 0 && errno == EINPROGRESS) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        rc = wait_fd(fd, POLLOUT, deadline);
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
        return ds_fail(err, DS_UNAVAILABLE, "redis", "cannot connect to Redis at %s: %s", b->where,
                       strerror(e));
    }
    if (!b->unix_socket) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    b->fd = fd;
    if (b->ctx && tls_handshake(b, deadline, err)) {
        bus__disconnect(b);
        return -DS_UNAVAILABLE;
    }
    b->reader = redisReaderCreate();
    return 0;
}

/* After SSL_read or SSL_write returned r: bytes moved (> 0), 0 to wait for
 * *want, -1 when the connection is over (tls_error says why, for an
 * error of the protocol or an alert from Redis). */
static ssize_t tls_result(ds_bus *b, int r, short *want)
{
    if (r > 0)
        return r;
    int e = SSL_get_error(b->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        ERR_clear_error();
        return 0;
    }
    if (e == SSL_ERROR_SSL)
        tls_reason(b->tls_error, sizeof b->tls_error);
    ERR_clear_error();
    return -1;
}

/* Writes some of buf: bytes written, 0 to wait for *want, -1 on failure. */
static ssize_t conn_write(ds_bus *b, const char *buf, size_t n, short *want)
{
    if (b->ssl) {
        ERR_clear_error();
        return tls_result(b, SSL_write(b->ssl, buf, n > INT_MAX ? INT_MAX : (int)n), want);
    }
    ssize_t w = send(b->fd, buf, n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
        *want = POLLOUT;
        return 0;
    }
    return w > 0 ? w : -1;
}

/* Reads into buf: bytes read, 0 to wait for *want, -1 on EOF or failure.
 * TLS keeps what it has decrypted: SSL_read comes before any poll. */
static ssize_t conn_read(ds_bus *b, char *buf, size_t n, short *want)
{
    if (b->ssl) {
        ERR_clear_error();
        return tls_result(b, SSL_read(b->ssl, buf, n > INT_MAX ? INT_MAX : (int)n), want);
    }
    ssize_t r = recv(b->fd, buf, n, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        *want = POLLIN;
        return 0;
    }
    return r > 0 ? r : -1;
}

int bus__send_all(ds_bus *b, const char *buf, size_t n, int64_t deadline)
{
    while (n > 0) {
        short want = 0;
        ssize_t w = conn_write(b, buf, n, &want);
        if (w > 0) {
            buf += w;
            n -= (size_t)w;
        } else if (w < 0 || wait_fd(b->fd, want, deadline)) {
            return -1;
        }
    }
    return 0;
}

redisReply *bus__recv_reply(ds_bus *b, int64_t deadline)
{
    void *reply = NULL;
    char buf[16384];
    for (;;) {
        if (redisReaderGetReply(b->reader, &reply) != REDIS_OK)
            return NULL;
        if (reply)
            return reply;
        short want = 0;
        ssize_t r = conn_read(b, buf, sizeof buf, &want);
        if (r > 0) {
            if (redisReaderFeed(b->reader, buf, (size_t)r) != REDIS_OK)
                return NULL;
        } else if (r < 0 || wait_fd(b->fd, want, deadline)) {
            return NULL;
        }
    }
}

/* A plain connection to a TLS port ends at once. */
static const char *plain_hint(const ds_bus *b)
{
    return b->tls || b->unix_socket ? "" : " (if that is Redis's tls-port, the URL is rediss://)";
}

/* Sends one command on the current connection and reads its reply. NULL
 * on I/O failure (b->sent tells whether the command went out whole). */
redisReply *bus__exchange(ds_bus *b, int argc, const char **argv, const size_t *lens, int extra_ms,
                          ds_error *err)
{
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (n < 0) {
        ds_fail(err, DS_INTERNAL, NULL, "cannot format a Redis command");
        return NULL;
    }
    int64_t deadline = bus__deadline(b->o.io_timeout_ms + extra_ms);
    b->sent = bus__send_all(b, cmd, (size_t)n, deadline) == 0;
    redisReply *r = b->sent ? bus__recv_reply(b, deadline) : NULL;
    redisFreeCommand(cmd);
    return r;
}

/* The first round trip of a new connection: AUTH when the URL has a
 * password, else PING over TLS (so that Redis refusing the client
 * certificate, which TLS 1.3 tells only after the handshake, shows here and
 * not on the first command). Drops the connection on failure. */
static int hello(ds_bus *b, ds_error *err)
{
    if (!b->password && !b->ssl)
        return 0;
    const char *argv[3] = {"PING"};
    size_t lens[3] = {4, 0, 0};
    int argc = 1;
    if (b->password) {
        argv[0] = "AUTH";
        argv[1] = b->user ? b->user : b->password;
        argv[2] = b->password;
        lens[1] = strlen(argv[1]);
        lens[2] = strlen(b->password);
        argc = b->user ? 3 : 2;
    }
    redisReply *r = bus__exchange(b, argc, argv, lens, 0, err);
    int rc = 0;
    if (!r && b->tls_error[0]) {
        b->refused = true;
        rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s refused the TLS connection (%s)%s",
                     b->where, b->tls_error,
                     b->o.tls_cert ? ": does it trust the CA of --redis-cert?" : cert_hint);
    } else if (!r) {
        rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s closed the new connection%s",
                     b->where, plain_hint(b));
    } else if (r->type == REDIS_REPLY_ERROR && !(argc == 1 && !strncmp(r->str, "NOPERM", 6))) {
        b->refused = true; /* (a PING the ACL forbids is for the start check to name) */
        rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s refused the credentials%s%s: %s",
                     b->where, b->user ? " of user " : "", b->user ? b->user : "", r->str);
    }
    if (r)
        freeReplyObject(r);
    if (rc)
        bus__disconnect(b);
    return rc;
}

/* Makes sure there is a live, authenticated connection; *fresh tells
 * whether it is new. */
/* With several hosts: whether the one connected is the primary (ROLE). */
static bool is_primary(ds_bus *b, ds_error *err)
{
    const char *argv[] = {"ROLE"};
    size_t lens[] = {4};
    redisReply *r = bus__exchange(b, 1, argv, lens, 0, err);
    bool primary = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                   r->element[0]->type == REDIS_REPLY_STRING &&
                   !strcmp(r->element[0]->str, "master");
    if (!primary)
        ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s is %s", b->where,
                !r                             ? "not answering"
                : r->type == REDIS_REPLY_ERROR ? r->str
                : r->type == REDIS_REPLY_ARRAY && r->elements && r->element[0]->str
                    ? r->element[0]->str
                    : "not a primary");
    if (r)
        freeReplyObject(r);
    return primary;
}

int bus__connect_here(ds_bus *b, bool *fresh, ds_error *err)
{
    *fresh = false;
    if (b->fd >= 0 && peer_closed(b))
        bus__disconnect(b); /* Redis restarted or died since: do not send into it */
    if (b->fd >= 0)
        return 0;
    *fresh = true;
    return connect_socket(b, err) || hello(b, err) ? -DS_UNAVAILABLE : 0;
}

int bus__connect(ds_bus *b, bool *fresh, ds_error *err)
{
    *fresh = false;
    if (b->cluster) { /* the node of the command's slot */
        if (bus__cluster_pick(b, err))
            return -DS_UNAVAILABLE;
        return bus__connect_here(b, fresh, err);
    }
    if (b->nhosts <= 1 || (b->fd >= 0 && !peer_closed(b)))
        return bus__connect_here(b, fresh, err);
    bus__disconnect(b);
    *fresh = true;
    /* the primary among them: the one in use first, then the others in turn */
    char why[BUS_HOSTS_MAX][160];
    ds_error e;
    for (int k = 0; k < b->nhosts; k++) {
        bus__use_host(b, (b->cur + (k ? 1 : 0)) % b->nhosts);
        if (connect_socket(b, &e) == 0 && hello(b, &e) == 0 && is_primary(b, &e))
            return 0;
        bus__disconnect(b);
        snprintf(why[k], sizeof why[k], "%.150s", e.message);
    }
    char all[700] = "";
    for (int k = 0; k < b->nhosts; k++)
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", k ? "; " : "", why[k]);
    return ds_fail(err, DS_UNAVAILABLE, "redis", "no Redis primary among the %d hosts: %s",
                   b->nhosts, all);
}

/* A primary demoted to a replica (a failover while it was away) refuses
 * writes: the next command looks for the primary among the hosts. */
void bus__next_host(ds_bus *b)
{
    if (b->cluster) { /* a node that lost its slots: read the map again */
        b->map_stale = true;
    } else if (b->nhosts > 1) {
        bus__disconnect(b);
        bus__use_host(b, (b->cur + 1) % b->nhosts);
    }
}

void bus__readonly_reply(ds_bus *b, const redisReply *r)
{
    if (r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "READONLY", 8))
        bus__next_host(b);
}

/* One round trip, connecting first if needed. NULL (with err: unavailable)
 * on I/O failure, after which the connection is dropped and the next call
 * reconnects; b->sent tells whether the command went out. */
redisReply *bus__roundtrip(ds_bus *b, int argc, const char **argv, const size_t *lens, int extra_ms,
                           ds_error *err)
{
    int forced = b->force_node;
    redisReply *r = NULL;
    /* in a cluster, a MOVED or ASK sends the command again at the node it
       names (a few times at most: a resharding moves a slot once) */
    for (int hop = 0, ask = 0; hop < 5; hop++) {
        bool fresh;
        b->sent = false;
        if (bus__connect(b, &fresh, err)) {
            b->sent = false; /* hello's exchange set it; the command never went */
            r = NULL;
            if (b->cluster)
                b->map_stale = true;
            break;
        }
        r = NULL;
        if (ask) { /* a refused ASKING (the ACL) is the command's answer */
            const char *a[] = {"ASKING"};
            size_t al[] = {6};
            r = bus__exchange(b, 1, a, al, 0, err);
            if (r && r->type == REDIS_REPLY_ERROR)
                break;
            if (r)
                freeReplyObject(r);
            r = NULL;
        }
        r = bus__exchange(b, argc, argv, lens, extra_ms, err);
        if (!r) {
            bus__disconnect(b);
            if (b->cluster)
                b->map_stale = true;
            ds_fail(err, DS_UNAVAILABLE, "redis", "Redis %s%s%s%s%s%s",
                    fresh ? "closed the new connection" : "did not answer (connection dropped)",
                    fresh ? plain_hint(b) : "", b->tls_error[0] ? ": " : "", b->tls_error,
                    b->cluster ? " at " : "", b->cluster ? b->where : "");
            break;
        }
        ask = bus__cluster_redirect(b, r);
        if (!ask)
            break;
        freeReplyObject(r);
        r = NULL;
        b->force_node = ask == 2 ? b->cur : forced; /* ASK: that node, this once */
        ask = ask == 2;
        b->sent = false; /* a redirect is an answer: the command was not run */
        ds_fail(err, DS_UNAVAILABLE, "redis", "Redis Cluster redirected the command 5 times");
    }
    b->force_node = forced;
    bus__readonly_reply(b, r);
    return r;
}

/* A connection Redis closed while idle (a restart) fails the first write:
 * then the command goes out once more on a new connection. */
redisReply *bus__command(ds_bus *b, int argc, const char **argv, const size_t *lens, ds_error *err)
{
    bool reused = b->fd >= 0 || b->cluster; /* (a cluster's node may differ) */
    redisReply *r = bus__roundtrip(b, argc, argv, lens, 0, err);
    if (!r && reused && !b->sent)
        r = bus__roundtrip(b, argc, argv, lens, 0, err);
    return r;
}
