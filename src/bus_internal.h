/* bus_internal.h: what bus.c (the commands) and bus_conn.c (the
 * connection: URL, socket, TLS, AUTH, round trips) share. Nothing outside
 * the bus includes it. */
#ifndef DS_BUS_INTERNAL_H
#define DS_BUS_INTERNAL_H

#include <hiredis.h>
#include <openssl/ssl.h>

#include "bus.h"

enum { BUS_HOSTS_MAX = 8, BUS_NODES_MAX = 64, BUS_SLOTS = 16384 };

enum { DS_LANE_MODEL = 257 }; /* a model name (DS_IDENT_MAX) and its NUL */
typedef struct bus_lane bus_lane;

/* A cluster node's connection while another one is in use (cluster mode). */
typedef struct bus_parked {
    int fd; /* -1: none */
    SSL *ssl;
    redisReader *reader;
} bus_parked;

struct ds_bus {
    bus_opts o;
    bool unix_socket, tls;
    char *host, *port, *path, *user, *password; /* user, password may be NULL;
                                                   host, port: the one in use */
    /* redis://h1:p1,h2:p2: a primary and its replicas; the bus uses the one
       that says it is the primary (ROLE), and moves on when it is not */
    char *hosts[BUS_NODES_MAX], *ports[BUS_NODES_MAX];
    int nhosts, cur;
    /* Redis Cluster (bus_opts.cluster): hosts are the URL's seeds, then the
       nodes the slot map names; each keeps its connection (parked while
       another is in use). slot_node[slot]: the index of the node that
       serves it, -1 unknown. */
    bool cluster;
    bus_parked parked[BUS_NODES_MAX];
    int16_t *slot_node;
    bool map_stale;   /* refresh the map before the next command */
    int slot;         /* the slot of the next command (-1: any node) */
    int force_node;   /* the node of the next command whatever its slot
                         (ASK, a walk over the primaries), -1 none */
    int redirects;    /* MOVED and ASK followed (for tests and logs) */
    bus_lane **lanes; /* a cluster's reads of new entries, one per model (bus.c) */
    int nlanes;
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
/* Sends one command on the connection in use and reads its reply (no
 * connecting, no redirects). */
redisReply *bus__exchange(ds_bus *b, int argc, const char **argv, const size_t *lens, int extra_ms,
                          ds_error *err);
/* The connection to the host in use (hosts[cur]), made if needed: TCP or
 * unix socket, TLS, AUTH. */
int bus__connect_here(ds_bus *b, bool *fresh, ds_error *err);
/* Makes hosts[i] the one in use (its address in where, its name for TLS). */
void bus__use_host(ds_bus *b, int i);

/* ---- Redis Cluster (bus_cluster.c) ---- */

/* The cluster slot of a key: CRC16 (XMODEM) of its hash tag, mod 16384. */
int bus__key_slot(const char *key, size_t len);
/* The next command is for this model's keys: it goes to the node of their
 * slot (all of them share the hash tag {model}). No-op outside cluster mode. */
void bus__route(ds_bus *b, const char *model);
/* Cluster mode, before a command: the slot map is read (CLUSTER SLOTS from
 * any known node) when it is stale or does not know the slot, and the node
 * of the command becomes the one in use. */
int bus__cluster_pick(ds_bus *b, ds_error *err);
/* A MOVED (the map is updated) or ASK reply: the node it names is made the
 * one in use for the command sent again. 0: not a redirect; 1: MOVED; 2:
 * ASK (send ASKING first). CLUSTERDOWN and TRYAGAIN mark the map stale. */
int bus__cluster_redirect(ds_bus *b, const redisReply *r);
/* Cluster mode: the nodes serving slots (after reading the map); their
 * indexes into hosts, at most cap. */
int bus__cluster_primaries(ds_bus *b, int *idx, int cap, ds_error *err);
/* ---- shared by bus.c and bus_read.c ---- */

/* "{model}:suffix" into buf. */
void bus__stream_key(char *buf, size_t n, const char *model, const char *suffix);
/* The same, and the next command is routed to the model's slot. */
void bus__model_key(ds_bus *b, char *buf, size_t n, const char *model, const char *suffix);
/* err: "Redis refused WHAT: ..." (unavailable); frees r. Returns -code. */
int bus__reply_error(redisReply *r, const char *what, ds_error *err);
/* Closes a cluster's read lanes (bus_read.c). */
void bus__lanes_free(ds_bus *b);
/* Closes every parked connection and frees the map. */
void bus__cluster_free(ds_bus *b);

/* bus__roundtrip, sent once more on a new connection when a reused one
 * turns out closed before the command went out. */
redisReply *bus__command(ds_bus *b, int argc, const char **argv, const size_t *lens, ds_error *err);

#endif
