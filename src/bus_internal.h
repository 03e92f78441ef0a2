/* bus_internal.h: what bus.c (the commands) and bus_conn.c (the
 * connection: URL, socket, TLS, AUTH, round trips) share. Nothing outside
 * the bus includes it. */
#ifndef DS_BUS_INTERNAL_H
#define DS_BUS_INTERNAL_H

#include <hiredis.h>
#include <openssl/ssl.h>

#include "bus.h"

enum { BUS_HOSTS_MAX = 8 };

struct ds_bus {
    bus_opts o;
    bool unix_socket, tls;
    char *host, *port, *path, *user, *password; /* user, password may be NULL;
                                                   host, port: the one in use */
    /* redis://h1:p1,h2:p2: a primary and its replicas; the bus uses the one
       that says it is the primary (ROLE), and moves on when it is not */
    char *hosts[BUS_HOSTS_MAX], *ports[BUS_HOSTS_MAX];
    int nhosts, cur;
    char where[300];      /* host:port or the socket path, for messages */
    const char *tls_name; /* the name the certificate must carry */
    SSL_CTX *ctx;         /* rediss:// only */
    SSL *ssl;             /* the connection's TLS session (NULL: plain) */
    int fd;               /* -1 while disconnected */
    redisReader *reader;
    bool sent;           /* the last round trip wrote its whole command */
    bool refused;        /* the last connection failed because Redis (or its
                            certificate) said no, not the network */
    char tls_error[160]; /* OpenSSL's reason for the last TLS failure */
};

/* Now + ms, in ds_now_ns() time. */
int64_t bus__deadline(int ms);
/* Makes sure there is a live, authenticated connection (a connection Redis
 * closed while idle is replaced first); *fresh tells whether it is new.
 * -DS_UNAVAILABLE (err says why; b->refused when Redis said no). */
int bus__connect(ds_bus *b, bool *fresh, ds_error *err);
void bus__disconnect(ds_bus *b);
/* A reply READONLY from a host that is no longer the primary: the next
 * command looks for the primary among the URL's hosts. */
void bus__readonly_reply(ds_bus *b, const redisReply *r);
/* With several hosts: drop the connection and try the next host first. */
void bus__next_host(ds_bus *b);
/* Writes all of buf, or -1 (failure or deadline). */
int bus__send_all(ds_bus *b, const char *buf, size_t n, int64_t deadline);
/* The next reply, or NULL (failure or deadline). Caller frees with
 * freeReplyObject(). */
redisReply *bus__recv_reply(ds_bus *b, int64_t deadline);
/* One round trip, connecting first if needed; the deadline is the io
 * timeout plus extra_ms. NULL (err: unavailable) on I/O failure, after which
 * the connection is dropped and the next call reconnects; b->sent tells
 * whether the command went out whole. */
redisReply *bus__roundtrip(ds_bus *b, int argc, const char **argv, const size_t *lens, int extra_ms,
                           ds_error *err);
/* bus__roundtrip, sent once more on a new connection when a reused one
 * turns out closed before the command went out. */
redisReply *bus__command(ds_bus *b, int argc, const char **argv, const size_t *lens, ds_error *err);

#endif
