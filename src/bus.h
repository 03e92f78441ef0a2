/* bus.h: everything that talks to Redis (the only hiredis user). A ds_bus
 * is one connection for one thread; after an I/O error the next call
 * reconnects by itself. hiredis only formats commands and parses replies
 * (redisFormatCommandArgv, redisReader); the bytes go through the bus's
 * own transport: TCP, TLS over TCP (OpenSSL, the certificate and host name
 * verified) or a unix socket.
 *
 * Keys of a model share the hash tag {model}: {m}:request_duck (commands),
 * {m}:response_duck (change events), {m}:lease and {m}:epoch (the single
 * writer's lease), so a model's keys live in one Redis Cluster slot. In
 * cluster mode (bus_opts.cluster) a bus keeps one connection per node and
 * sends each command to the node of its model's slot; a read of several
 * models is one read per model, and only the last one waits.
 *
 * Over TLS the transport writes with write(2): the process must ignore
 * SIGPIPE (server_run does). */
#ifndef DS_BUS_H
#define DS_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct ds_bus ds_bus;

/* The URL: redis://[[user]:password@]host[:port][/0] (port 6379),
 * rediss://... the same over TLS, unix://[[user]:password@]/path. A user
 * and password may be percent-encoded (%40 for @); userinfo without a colon
 * is a password for the default user (as redis-cli reads it). The strings
 * are borrowed: they must outlive every bus opened with them. */
typedef struct bus_opts {
    const char *url;
    const char *tls_ca;     /* rediss://: CA certificates (PEM file or hashed directory);
                               NULL: the system's */
    const char *tls_cert;   /* rediss://: client certificate chain (PEM), with tls_key */
    const char *tls_key;    /* its private key (PEM, not encrypted) */
    const char *tls_name;   /* the name the server's certificate must carry (and the SNI);
                               NULL: the URL's host. An IP address is matched against the
                               certificate's IP addresses. */
    bool cluster;           /* Redis Cluster: the URL's hosts are seed nodes; each
                               command goes to the node that serves its model's
                               slot (CLUSTER SLOTS), MOVED and ASK followed */
    int connect_timeout_ms; /* TCP connect, and the TLS handshake after it */
    int io_timeout_ms;      /* beyond any BLOCK a command asks for */
} bus_opts;

void bus_opts_default(bus_opts *o);

/* Checks the URL and the TLS files (loading them) but does not connect:
 * failing to connect is not an error here, the bus connects (TLS
 * handshake, AUTH) on each call until it succeeds; bus_ping() tells
 * whether Redis is up. Caller frees with bus_close(). Fails (invalid_value,
 * a precise message without the password) on a malformed URL, TLS options
 * without rediss://, or an unreadable CA, certificate or key. */
int bus_open(const bus_opts *o, ds_bus **out, ds_error *err);
void bus_close(ds_bus *b);
/* PING: 0 when Redis answers; unavailable otherwise. */
int bus_ping(ds_bus *b, ds_error *err);

/* The bus's address for logs, the password replaced by ***:
 * "rediss://duckspread:***@redis.example:6380 (TLS, certificate checked for
 * redis.example)". */
void bus_describe(const ds_bus *b, char *out, size_t n);

/* For the start of serve, before the writer: connects (TLS handshake,
 * AUTH) and checks that the ACL lets this user run every command duckspread
 * sends, on the keys of each model, without changing anything. Each command
 * goes out with an argument Redis refuses only after its ACL check (an XADD
 * id of 0-0, an invalid stream id, an unknown script SHA) or is read-only;
 * the commands inside the scripts are checked by redis.acl_check_cmd (Redis
 * 7). Returns 0; -DS_FORBIDDEN when Redis or its certificate says no
 * (credentials, TLS verification, host name, a missing ACL permission: the
 * message names the command and key); -DS_UNAVAILABLE when Redis cannot be
 * reached. */
int bus_check_access(ds_bus *b, const char *const *models, int nmodels, ds_error *err);

/* Whether Redis makes every write durable before it answers (CONFIG GET:
 * appendonly yes, appendfsync always); why says what it found, or that it
 * could not tell (CONFIG refused by the ACL, Redis out of reach). */
bool bus_durable(ds_bus *b, char *why, size_t cap);

/* ---- commands (API side) --------------------------------------------- */

typedef struct bus_field {
    const char *name;
    const char *value;
    size_t len;
} bus_field;

/* XADD {model}:request_duck * fields... The entry id goes to id (>= 32
 * bytes). unavailable when Redis cannot be reached; then *maybe_sent
 * (may be NULL) tells whether the command went out before the connection
 * failed, so that Redis may have queued it. */
int bus_enqueue(ds_bus *b, const char *model, const bus_field *f, int n, char *id, bool *maybe_sent,
                ds_error *err);

/* Many XADDs in one write and one read (pipelined): each gets ok and its
 * id, or, when not ok, maybe_sent (its bytes went out before the
 * connection failed, so Redis may hold it). Returns 0 when the connection
 * held (some may still be refused by Redis), else unavailable. */
typedef struct bus_xadd {
    const char *model;
    const bus_field *fields;
    int nfields;
    bool ok, maybe_sent; /* out */
    bool refused;        /* out: Redis answered an error (then error says it) */
    bool formatted;      /* out: false when it could not be sent at all */
    char error[200];     /* out: why this one was not queued, when it says */
    char id[32];         /* out */
} bus_xadd;
int bus_enqueue_many(ds_bus *b, int n, bus_xadd *x, ds_error *err);

/* ---- the writer ------------------------------------------------------------ */

typedef struct bus_entry {
    const char *model;
    const char *id;
    int nfields;
    const bus_field *fields;
} bus_entry;

/* Creates the consumer group "writers" on the request stream if missing. */
int bus_group_ensure(ds_bus *b, const char *model, ds_error *err);

/* XREADGROUP GROUP writers <consumer> COUNT count [BLOCK ms] STREAMS ...
 * pending_after: NULL reads new entries; else this consumer's own pending
 * entries after that id ("0": from the first). Calls fn for every entry;
 * returns how many, or -code. */
typedef void (*bus_entry_fn)(void *ctx, const bus_entry *e);
int bus_read(ds_bus *b, const char *consumer, const char *const *models, int nmodels,
             const char *pending_after, int count, int block_ms, bus_entry_fn fn, void *ctx,
             ds_error *err);

/* The lease: acquire (a new epoch) when free or ours; renew keeps it. */
int bus_lease_acquire(ds_bus *b, const char *model, const char *owner, int ttl_ms, int64_t *epoch,
                      ds_error *err);
/* 1 when still ours and renewed, 0 when lost. */
int bus_lease_renew(ds_bus *b, const char *model, const char *owner, int64_t epoch, int ttl_ms,
                    ds_error *err);

typedef struct bus_event {
    int64_t seq;
    const char *request_id; /* may be NULL */
    const char *user;       /* who sent it (may be NULL) */
    int64_t ts_ms;          /* its request stream entry's time (the engine's clock) */
    const char *json;       /* the event (at detail "leaves") */
    size_t len;
    const char *cmd; /* the applied command in canonical form (may be NULL) */
    size_t cmd_len;
} bus_event;

/* One script, fenced by the lease: if {model}:lease still holds our epoch,
 * XADD every event to {model}:response_duck (fields seq, rid, user, ts,
 * event, cmd: what a replica needs to apply the command again;
 * trimmed to about keep entries), XACK the request entries and trim {model}:request_duck below
 * the oldest entry still pending (the ledger in DuckDB remembers what was
 * done). expect (may be NULL): the stream's last seq as this writer left
 * it; when the stream ends below it, Redis lost events: nothing is
 * published, -DS_NOT_FOUND, and *expect is where the stream ends. Returns
 * 0, or -DS_FORBIDDEN when the lease is no longer ours (nothing
 * published). */
int bus_publish(ds_bus *b, const char *model, const char *owner, int64_t epoch, const bus_event *ev,
                int nev, const char *const *ack_ids, int nack, long keep, int64_t *expect,
                ds_error *err);

/* The seq of the newest event on {model}:response_duck, or -1 if none. */
int bus_last_seq(ds_bus *b, const char *model, int64_t *seq, ds_error *err);

/* The newest events on the response stream, oldest first (at most n):
 * calls fn(ctx, seq, request_id, json, len) for each. */
typedef void (*bus_event_fn)(void *ctx, int64_t seq, const char *json, size_t len);
int bus_recent_events(ds_bus *b, const char *model, int n, bus_event_fn fn, void *ctx,
                      ds_error *err);

/* WAIT replicas timeout_ms: how many of Redis's replicas have every write
 * made on the node of the models so far (*acked, the fewest over the
 * nodes: one outside a cluster). A write to each model's {model}:epoch
 * (its own value again) goes first, so that what the WAIT covers is past
 * the entries' XADD and their delivery to the writer, whichever
 * connection made them. nmodels 0: this connection's writes only. */
int bus_wait(ds_bus *b, const char *const *models, int nmodels, int replicas, int timeout_ms,
             int *acked, ds_error *err);

/* ---- replicas ------------------------------------------------------------- */

/* XREAD COUNT count [BLOCK ms] STREAMS {m}:response_duck... after_ids...:
 * the entries after each model's id (a replica follows the writer's
 * applied commands). Calls fn for every entry; returns how many, or -code. */
int bus_follow(ds_bus *b, const char *const *models, const char *const *after_ids, int nmodels,
               int count, int block_ms, bus_entry_fn fn, void *ctx, ds_error *err);

/* Where a replica at seq starts reading {model}:response_duck: an entry id
 * at or before the entry of seq + 1 (a binary search over the stream's
 * times; the reader skips what it has), "0-0" when the stream starts
 * after seq or is empty. *first and *last: the seqs of the stream's oldest
 * and newest entries (-1 when empty). */
int bus_seek(ds_bus *b, const char *model, int64_t seq, char *id, size_t cap, int64_t *first,
             int64_t *last, ds_error *err);

/* A writer taking over (a standby whose writer's lease lapsed): XAUTOCLAIM
 * every entry of {model}:request_duck pending in the group for at least
 * min_idle_ms, whichever consumer read it, for consumer; they are then its
 * own pending entries (bus_read with pending_after "0"). *claimed: how many. */
int bus_claim(ds_bus *b, const char *model, const char *consumer, int64_t min_idle_ms,
              int64_t *claimed, ds_error *err);

/* How many entries of {model}:request_duck are pending for consumers other
 * than this one (a writer that lost its lease, or died, read them), and
 * (total, may be NULL) for all of them. */
int bus_pending_others(ds_bus *b, const char *model, const char *consumer, int64_t *others,
                       int64_t *total, ds_error *err);

/* The writer's name in {model}:lease ("" when nobody holds it). */
int bus_lease_owner(ds_bus *b, const char *model, char *owner, size_t cap, ds_error *err);

#endif
