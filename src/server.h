/* server.h: one `duckspread serve` process: its settings and the parts it
 * wires together (store, live feed, writer, HTTP). main.c fills the options,
 * server_run() starts everything in order (recovery and the demo load before
 * the port opens) and drains on SIGTERM. */
#ifndef DS_SERVER_H
#define DS_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "live.h"
#include "metrics.h"
#include "store.h"

typedef struct server_opts {
    const char *data_dir;
    const char *listen;      /* HOST:PORT */
    const char *redis_url;   /* NULL: start a private redis-server */
    const char *redis_fsync; /* appendfsync of the private one */
    bool demo;
    int64_t demo_facts;
    const char *api_key; /* NULL: no key (loopback only) */
    const char *web_dir; /* where web/ and node_modules/ are (for /docs) */
    int wait_ms;         /* how long a write waits for its outcome */
    int batch_max;       /* commands per writer batch */
    int http_threads;
    size_t body_max;   /* bytes in a request body */
    int json_depth;    /* nesting of a request body */
    int max_timeout_s; /* long-poll cap */
    const char *owner; /* the writer's name in leases (default host:data_dir) */
    int lease_ms;
    bool bench_baseline; /* the original design's write path (make bench-e2e) */
} server_opts;

void server_opts_default(server_opts *o);

typedef struct ds_writer ds_writer;
typedef struct ds_ledger ds_ledger;
typedef struct http_server http_server;

typedef struct ds_server {
    server_opts o;
    char redis_url[512];
    char data_dir[4096]; /* o.data_dir made absolute (redis-server changes directory) */
    bus_opts bus;
    ds_store *store;
    ds_live *live;
    ds_ledger *ledger;
    ds_metrics metrics;
    ds_writer *writer;
    http_server *http;
    int redis_pid;         /* the private redis-server, or 0 */
    int lock_fd;           /* DIR/duckspread.lock, held while running */
    volatile int redis_up; /* last known state, for /ready */
} ds_server;

/* Runs until SIGTERM or SIGINT; returns the process exit code. */
int server_run(const server_opts *o);

#endif
