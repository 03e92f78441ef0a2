/* writer_internal.h: what writer.c and follow.c (a replica's follower)
 * share: the writer's state, a stream entry, a batch, and the path every
 * entry takes through the engine, the live feed and the persister. */
#ifndef DS_WRITER_INTERNAL_H
#define DS_WRITER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "persist.h"
#include "request.h"
#include "server.h"

/* events re-read from {model}:response_duck into the live feed at start
 * (the stream keeps --response-keep); publisher items queued at most
 * before the writer waits */
enum { RECENT_EVENTS = 100000, MAX_MODELS = 64, PUB_QUEUE = 64 };

/* A model a replica follows (the follower's own, but for the atomics,
 * which /ready and /metrics read). */
struct follow_model {
    char model[DS_IDENT_MAX + 1];
    char after[48];  /* the response stream id read up to */
    bool positioned; /* after is known */
    atomic_bool stalled;
    _Atomic int64_t stream_seq; /* the newest seq seen on the writer's stream */
    _Atomic int64_t lag_ms;     /* the last command applied: published -> applied */
    int64_t next;               /* during a batch: the seq expected next */
    bool touched;               /* during a batch: commands were accepted */
};

/* A model's lease and what the writer and the publisher tell each other
 * about it. Each field has one owner thread, except the epoch: both threads
 * fence their Redis calls with it, and both may take the lease (the
 * publisher when its publish was fenced), so it is atomic by type and only
 * take_lease() (under lease_lock) sets it, or a fenced publish drops it to
 * 0 with a compare-and-swap. The messages between the threads are the two
 * flags, atomic by type, and the publisher's queue. */
typedef struct lease {
    char *model;           /* set before nleases counts it, then never written */
    _Atomic int64_t epoch; /* 0: not held */
    /* flags: set by either thread, taken (exchanged back) by the writer */
    atomic_bool reread;    /* re-read our pending entries before new ones */
    atomic_bool republish; /* the publisher left events unpublished */
    atomic_bool foreign;   /* another process holds it (read by HTTP threads) */
    /* the writer's own */
    int64_t renewed_ns; /* when it last took or renewed the lease */
    /* the publisher's own (set once by lease_of() before nleases counts it) */
    int64_t published; /* last seq published on the response stream */
    bool abandoned;    /* publish nothing more until the writer has re-published
                          from the database (its seq comes through the queue) */
} lease;

typedef enum lease_take { LEASE_HELD, LEASE_FOREIGN, LEASE_UNREACHABLE } lease_take;

/* One request stream entry. Its fields are whole (each within its limit,
 * else the entry is refused as malformed). */
typedef struct entry {
    char model[DS_IDENT_MAX + 1];
    char id[48];
    char user[DS_IDENT_MAX + 1];
    char rid[REQ_ID_MAX + 1];
    char hash[65];
    char scope_dim[DS_IDENT_MAX + 1];
    char scope_member[DS_IDENT_MAX + 1];
    char *cmd;
    size_t cmd_len;
    req_detail detail;
    int64_t ts_ms;
    int64_t seq; /* a replica: the seq the writer applied it at */
    bool bad;    /* a field over its limit, or missing */
} entry;

typedef struct batch {
    entry *e;
    size_t n, alloc;
} batch;

/* For the publisher: a model's events and/or request entries to
 * acknowledge, or (mark) the writer's word that the model's events are on
 * the stream up to mark_seq after it re-published them. */
typedef struct pub_item {
    lease *l;
    bus_event *ev;
    int nev;
    char **ids;
    int nid;
    bool mark;
    int64_t mark_seq;
    ds_arena arena; /* the strings */
    struct pub_item *next;
} pub_item;

typedef enum deliver_kind {
    DELIVER_NONE = 0, /* answered already (or nobody to answer) */
    DELIVER_BODY,     /* --ack persisted: its answer after the COMMIT */
    DELIVER_STORED,   /* a retry: the first one's answer from the database */
} deliver_kind;

struct ds_writer {
    ds_server *srv;
    pthread_t thread;
    ds_bus *bus;
    char owner[256];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop, alive;
    atomic_bool started;        /* recovery is done (leases taken later re-read) */
    pthread_mutex_t lease_lock; /* one thread at a time takes a lease */
    lease leases[MAX_MODELS];
    atomic_int nleases;          /* grown by the writer; the publisher reads below it */
    _Atomic int64_t reading_lag; /* entries read, not yet applied */
    atomic_bool backpressure;    /* waiting for the persister */
    atomic_int replicas_acked;   /* --redis-replicas: the last WAIT's answer (-1: none) */
    atomic_bool replicas_short;  /* fewer than --redis-replicas confirm the writes */
    char redis_lost[1024];       /* (lock) the last loss of Redis's entries found */
    bool ack_persisted;
    /* the persister and what its done callback uses (on its thread) */
    ds_persist *persist;
    ds_reader *stored; /* stored answers of retries */
    /* the publisher */
    pthread_t pub_thread;
    ds_bus *pub_bus;
    pub_item *pub_head, *pub_tail;
    int pub_n;
    bool pub_stop, pub_started;
    int64_t pub_deadline_ns; /* stopping: when the publisher gives up on Redis */
    pthread_cond_t pub_cond; /* an item or the stop for the publisher */
    pthread_cond_t pub_room; /* room in the queue for the writer */
    /* a replica (follow.c): no lease, no publisher; the response stream */
    atomic_bool follow;      /* read by the HTTP threads (writer_follows) */
    bool standby;            /* a replica that takes over when the writer's lease lapses */
    bool follow_down;        /* the follower said "Redis unavailable" (its thread's) */
    struct follow_model *fm; /* the models followed (the follower's own) */
    int nfm;
    char writer_name[256]; /* the lease holder's name (under lock) */
};

/* Applies a batch in order: each entry through its model's engine, the
 * answer, the live feed, the grids, the publisher (not for a replica) and
 * the persister. */
void writer__process(ds_writer *w, batch *b);
void writer__batch_clear(batch *b);
/* A new entry at the end of the batch, zeroed. */
entry *writer__batch_push(batch *b);
/* The fields every stream entry has: model, id, user, rid (false when one
 * is over its limit). */
bool writer__entry_from(entry *e, const bus_entry *be);
/* Backpressure: true when the persister is beyond its bounds (after
 * waiting a moment for it); read nothing now. */
bool writer__held_back(ds_writer *w);
/* A field of a stream entry (NULL when absent), and one copied whole
 * (false when longer than cap - 1 or holding a NUL). */
const char *writer__field(const bus_entry *e, const char *name, size_t *len);
bool writer__copy_field(const bus_entry *e, const char *name, char *out, size_t cap);
/* The persister's done callback (XACK, --ack persisted answers). */
void writer__on_persisted(void *ctx, const persist_item *group);

/* A standby whose writer's lease lapsed: takes every lease, claims the
 * old writer's pending entries and applies them, starts the publisher;
 * true when this process is the writer now (run writer__main next). */
bool writer__promote(ds_writer *w);

/* follow.c: a replica's start (the models followed from their engines'
 * seqs; with seed, the live feed filled from the stream up to them), and
 * its loop on the writer's thread: true when it took over as the writer
 * (a standby), false when stopping. */
void follow__start(ds_writer *w, bool seed);
bool follow__loop(ds_writer *w);
void follow__free(ds_writer *w);

#endif
