/* persist.h: the persister. A thread of its own writes what the engine
 * applied into DuckDB behind the writer: it takes every command queued
 * since its last commit as one group (one transaction, store_persist),
 * then tells its owner which commands are now durable in the database
 * (done), so their request stream entries can be acknowledged and
 * --ack persisted answers given. It owns the store's write connection:
 * checkpoints run between groups (the server opens the store with
 * DuckDB's automatic checkpoint off), and so do model creation and removal
 * (persist_run). A group goes at most every interval_ms (longer after a
 * long group), sooner when someone waits for it (persist_hurry).
 *
 * Nothing here blocks the writer: persist_submit() only queues. The writer
 * reads the lag (persist_lag) and stops reading new commands while it is
 * beyond its bounds (backpressure). When a group cannot be written (a full
 * disk, a failed COMMIT) it is tried again every second and
 * persist_failed() says why meanwhile; nothing queued is dropped. */
#ifndef DS_PERSIST_H
#define DS_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "error.h"
#include "store.h"
#include "util.h"

typedef struct ds_persist ds_persist;

/* One applied or refused command on its way to the database. Everything
 * it points to is its own (freed with it). */
typedef struct persist_item {
    struct persist_item *next;
    char *model;
    engine_delta delta;
    int64_t ts_ms;
    char *user, *rid;
    char hash[65];
    int code;
    char *body; /* the answer (event or error JSON) */
    size_t body_len;
    store_command_row *cmds;
    size_t ncmds;
    char *cmd; /* its canonical form (the ledger keeps it for replicas) */
    size_t cmd_len;
    bool noop;    /* nothing to write (a retry, a reused request_id): only
                     what follows the commit (XACK, an answer) */
    int deliver;  /* the writer's: what to answer after the commit */
    char *answer; /* that answer, when it is the writer's own */
    size_t answer_len;
    char stream_id[48]; /* the request entry this command came from */
    int64_t queued_ns;  /* when it was submitted (the lag in time) */
    ds_arena arena;     /* the command rows' strings */
} persist_item;

persist_item *persist_item_new(const char *model);
/* The item of an applied or refused command: takes the result's delta,
 * copies the entry's ledger fields and the answer (body), and makes the
 * command log rows. */
persist_item *persist_item_from(const char *model, const engine_input *in, engine_result *res,
                                const char *body, size_t len);
void persist_item_free(persist_item *it);
/* What store_persist() takes for an item (pointing into it: valid while
 * the item lives). Also for tests and benchmarks that persist a group
 * themselves, without the thread. */
store_item persist_store_item(const persist_item *it);

typedef struct persist_opts {
    size_t group_max;           /* commands in one group at most (20,000) */
    int64_t checkpoint_bytes;   /* checkpoint when the write-ahead log passes
                                   this (64 MiB: a checkpoint rewrites every
                                   row group with an updated row, seconds
                                   under load at 1M facts; at 16 MiB four
                                   of them cost twice one at 64) */
    int64_t idle_checkpoint_ms; /* and after this long without writes (1000) */
    int64_t retention_ms;       /* ledger rows older than this (in stream
                                   time) are deleted, every 10 minutes
                                   (7 days; 0: kept for ever) */
    bool materialize_views;     /* serve --bench-baseline: after each group,
                                   every view of its models recomputed into
                                   a table, as the original design did */
    int64_t interval_ms;        /* a group at most this often (50): each
                                   COMMIT costs an fsync that every other
                                   writer of the disk (Redis's log) waits
                                   behind; 0: as soon as there is work.
                                   Sooner when hurried, stopping, or a
                                   group's worth is queued. */
} persist_opts;

void persist_opts_default(persist_opts *o);

/* Called on the persister's thread after each COMMIT with the group's
 * items, in order (a list by next; freed when it returns). */
typedef void (*persist_done_fn)(void *ctx, const persist_item *group);

/* Starts the thread. Caller stops it with persist_stop(). */
int persist_start(ds_store *s, const persist_opts *o, persist_done_fn done, void *ctx,
                  ds_persist **out, ds_error *err);
/* Writes everything queued (retrying while the database fails, up to
 * limit_ms), then stops the thread; the lag and stats stay readable until
 * persist_free(). */
void persist_stop(ds_persist *p, int64_t limit_ms);
/* Stops (if not yet) and frees; persist_free(NULL) is a no-op. */
void persist_free(ds_persist *p);

/* Queues an item (ownership passes). Never blocks. */
void persist_submit(ds_persist *p, persist_item *it);

/* Someone waits for what is queued to be in DuckDB (a view, a --ack
 * persisted answer): the next group goes now, not at its interval. */
void persist_hurry(ds_persist *p);

/* Commands queued or being written, and the age of the oldest in ms. */
void persist_lag(ds_persist *p, int64_t *commands, int64_t *age_ms);
/* Waits (up to limit_ms) until the lag is within the bounds; false on
 * the limit. */
bool persist_wait_lag(ds_persist *p, int64_t max_commands, int64_t max_ms, int64_t limit_ms);
/* True while groups fail to be written; why says what failed last. */
bool persist_failed(ds_persist *p, ds_error *why);

/* Runs fn on the persister's thread between groups and waits for it
 * (model creation and removal, checkpoints on demand). Returns fn's, or
 * -DS_UNAVAILABLE once the thread has stopped. */
int persist_run(ds_persist *p, int (*fn)(ds_store *s, void *arg, ds_error *err), void *arg,
                ds_error *err);

/* Checkpoint hold (backups, backup.h): while held (hold true, then
 * false, counted), the persister runs no CHECKPOINT of its own (neither
 * for the write-ahead log's size, nor when idle, nor at stop); groups go
 * on (to the write-ahead log and blocks that were free at the last
 * checkpoint), so the database file's bytes up to its size at the last
 * checkpoint stay that checkpoint's database. A job (persist_run) may
 * still checkpoint: the backup's own does, under its hold. */
void persist_hold_checkpoints(ds_persist *p, bool hold);

typedef struct persist_stats {
    int64_t groups, commands, checkpoints, failures;
    double last_group_ms, last_checkpoint_ms;
    store_persist_times times; /* where the groups' time went */
    double checkpoint_s;       /* and the checkpoints' */
} persist_stats;
void persist_get_stats(ds_persist *p, persist_stats *s);

#endif
