/* writer.h: the single writer, log first. One thread holds each model's
 * lease, reads the request streams in batches (consumer group "writers")
 * and feeds every entry, in stream order, to the model's engine, which
 * decides and applies it in memory at its seq. The writer then answers the
 * waiting request (--ack logged: the entry is in Redis's append-only file,
 * which the private redis-server fsyncs before answering the XADD), hands
 * the event to the live feed and the grid subscriptions, queues it for the
 * publisher (the response stream, fenced by the lease) and for the
 * persister (DuckDB, behind). Each entry is acknowledged (XACK) only after
 * the DuckDB COMMIT that covers it, so after a crash the entries not yet in
 * the database are still pending and are applied again through the engine:
 * the same seqs, values and events. --ack persisted answers only after that
 * COMMIT. While the persister trails by more than its bounds, the writer
 * reads nothing new (backpressure).
 *
 * writer_start() recovers before it returns: it publishes events that are
 * in the database but not on the response stream, seeds the live feed,
 * and re-applies its own pending entries (the engines' ledgers answer what
 * the database already has). */
#ifndef DS_WRITER_H
#define DS_WRITER_H

#include <stdbool.h>

#include "error.h"
#include "persist.h"
#include "server.h"

int writer_start(ds_server *srv, ds_writer **out, ds_error *err);
/* Drains: finishes the batch in flight, publishes, persists, acknowledges,
 * stops. Its stats stay readable until writer_free(). */
void writer_stop(ds_writer *w);
/* Stops (if not yet) and frees; writer_free(NULL) is a no-op. */
void writer_free(ds_writer *w);
bool writer_alive(ds_writer *w);

typedef struct writer_stats {
    int64_t reading_lag;    /* commands read but not yet applied */
    int64_t persist_lag;    /* applied, not yet committed to DuckDB */
    int64_t persist_lag_ms; /* the oldest of those, in ms */
    bool backpressure;      /* the writer waits for the persister */
    bool persist_failing;   /* DuckDB refuses the persister's groups */
    ds_error persist_why;   /* what it said */
    persist_stats persist;
} writer_stats;
void writer_get_stats(ds_writer *w, writer_stats *s); /* w NULL: all zero */

/* A replica (server_opts.replica): per model followed, its applied seq,
 * the newest seq seen on the writer's stream, the last command's lag
 * (the writer's publish -> applied here) and whether it is stalled (see
 * models_stalled). Returns how many (0 when not a replica). */
typedef struct replica_stats {
    char model[DS_IDENT_MAX + 1];
    int64_t applied, stream, lag_ms;
    bool stalled;
} replica_stats;
int writer_replica_stats(ds_writer *w, replica_stats *out, int max);
/* True while this process follows another writer (a replica, or a
 * standby not yet promoted): it answers no write. */
bool writer_follows(ds_writer *w);
/* --redis-replicas: how many replicas confirmed the last batch (-1: not
 * asked yet), and whether that is fewer than wanted (writes wait). */
void writer_replicas(ds_writer *w, int *acked, bool *shortfall);
/* Whether this writer found, at a start or a takeover, that Redis lost
 * request entries it had applied (why: what it logged). */
bool writer_redis_lost(ds_writer *w, char *why, size_t cap);
/* True when another process took this writer's lease of the model (it
 * took over while this one stalled): writes to it are refused. */
bool writer_lease_foreign(ds_writer *w, const char *model);
/* A replica: the writer's name in the lease ("" when unknown). */
void writer_writer_name(ds_writer *w, char *out, size_t cap);

/* A read waits for DuckDB to catch up: the persister's next group goes
 * now rather than at its interval. */
void writer_hurry(ds_writer *w); /* w NULL: nothing */

/* Model creation (def is copied) and removal, in order with the commands
 * (on the persister's thread, between groups); they wait for it. */
int writer_create_model(ds_writer *w, const ds_model *def, ds_error *err);
int writer_drop_model(ds_writer *w, const char *name, ds_error *err);

/* The persister the writer feeds (backups run their checkpoint on its
 * thread; backup.h). Borrowed: valid until writer_stop(). */
ds_persist *writer_persister(ds_writer *w);

#endif
