/* server.h: one `duckspread serve` process: its settings and the parts it
 * wires together (store, live feed, writer, HTTP). main.c fills the options,
 * server_run() starts everything in order (recovery and the demo load before
 * the port opens) and drains on SIGTERM. */
#ifndef DS_SERVER_H
#define DS_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "engine.h"
#include "live.h"
#include "metrics.h"
#include "redis_child.h"
#include "store.h"

typedef struct server_opts {
    const char *data_dir;
    const char *listen;      /* HOST:PORT */
    const char *redis_url;   /* NULL: start a private redis-server */
    const char *redis_fsync; /* appendfsync of the private one */
    const char *redis_ca;    /* rediss://: CA file or directory (NULL: the system's) */
    const char *redis_cert;  /* rediss://: client certificate and its key */
    const char *redis_key;
    const char *redis_server_name; /* the name Redis's certificate must carry */
    bool demo;
    int64_t demo_facts;
    const char *api_key; /* NULL: no key (loopback only) */
    const char *web_dir; /* where web/ and node_modules/ are (for /docs) */
    int wait_ms;         /* how long a write waits for its outcome */
    int batch_max;       /* commands per writer batch */
    int http_threads;
    size_t body_max;        /* bytes in a request body */
    int json_depth;         /* nesting of a request body */
    size_t json_string_max; /* bytes in one JSON string or key of a body */
    int batch_writes_max;   /* writes in one cells:batch request */
    int64_t cells_max;      /* cells a spread may create, or a grid may read */
    int subscribers_max;    /* SSE + WebSocket subscribers of one model */
    int request_timeout_s;  /* a request's headers and body must arrive within */
    int idle_timeout_s;     /* a connection idle this long is closed */
    int max_timeout_s;      /* long-poll cap */
    const char *owner;      /* the writer's name in leases (default host:data_dir) */
    int lease_ms;
    bool bench_baseline;         /* the original design's write path (make bench-e2e) */
    double key_rate;             /* requests per second per API key (0: no limit) */
    int key_burst;               /* requests a key may send at once above its rate */
    int key_open;                /* requests and subscriptions open at once per key */
    const char *ack;             /* "logged", "persisted" or NULL: logged with a durable Redis */
    bool ack_persisted;          /* decided at start from ack and the Redis found */
    int64_t persist_lag_max;     /* commands the persister may trail by before backpressure */
    int64_t persist_lag_ms;      /* and ms */
    int64_t persist_interval_ms; /* a DuckDB group at most this often (--ack logged) */
    size_t change_cap;           /* entries one write's "changes" lists at most */
    size_t memory_mb;            /* what the models may take in memory (0: no limit) */
    int64_t min_seq_wait_ms;     /* how long a read waits for min_seq */
    int64_t request_id_days;     /* how long a request_id is remembered */
    size_t request_id_max;       /* and how many per model at most (0: no limit) */
    int64_t db_memory_mb;        /* DuckDB's memory_limit */
    long response_keep;          /* commands kept on each response stream (what
                                    replicas can catch up from) */
    bool redis_cluster;          /* --redis-cluster: the URL names cluster nodes */
    int redis_replicas;          /* writes applied and answered once this many Redis
                                    replicas have them (WAIT); 0: the primary's AOF */
    bool replica;                /* duckspread replica: follow the writer, refuse writes */
    bool standby;                /* serve --standby: a replica that takes over when the
                                    writer's lease lapses */
    const char *writer_url;      /* a replica: where writes go, named in its refusals */
    /* backups (backup.h) */
    const char *backup_dir;  /* NULL: DIR/backups */
    int64_t backup_every_ms; /* an auto-<time> backup this often (0: none) */
    int backup_keep;         /* auto-* backups kept */
} server_opts;

void server_opts_default(server_opts *o);

typedef struct ds_writer ds_writer;
typedef struct ds_models ds_models;
typedef struct ds_grids ds_grids;
typedef struct ds_keyring ds_keyring;
typedef struct http_server http_server;
typedef struct ds_backups ds_backups;

typedef struct ds_server {
    server_opts o;
    char redis_url[512]; /* --redis's (the private one's is redis.url) */
    char data_dir[4096]; /* o.data_dir made absolute (redis-server changes directory) */
    bus_opts bus;
    ds_store *store;   /* the database: the persister writes, SQL reads read */
    ds_models *models; /* each model's engine: what writes apply to and reads read */
    engine_opts engine_opts;
    ds_grids *grids; /* grid subscriptions */
    ds_live *live;
    ds_keyring *keys; /* DIR/keys and --api-key */
    ds_metrics metrics;
    ds_writer *writer;
    http_server *http;
    redis_child redis;   /* the private redis-server (without --redis) */
    int lock_fd;         /* DIR/duckspread.lock, held while running */
    atomic_int redis_up; /* last known state, for /ready: set by the writer, the
                            publisher and the enqueuer (atomic by type) */
    ds_backups *backups; /* POST /v1/backups, --backup-every (backup.h) */
} ds_server;

/* Runs until SIGTERM or SIGINT; returns the process exit code. */
int server_run(const server_opts *o);

/* Every model of srv->store into an engine in srv->models (created first),
 * with srv->engine_opts: its catalog, facts and request ledger. */
int server_load_models(ds_server *srv, ds_error *err);

#endif
