/* writer.c: see writer.h. */
#include "writer.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"
#include "log.h"
#include "request.h"

/* events kept on {model}:response_duck (about 6 KB each for a demo leaf
 * write) and re-read into the live feed at start */
enum { KEEP_EVENTS = 100000, RECENT_EVENTS = 100000, MAX_MODELS = 64 };

/* A model's lease and what the writer and the publisher tell each other
 * about it. Each field has one owner thread, except the epoch: both threads
 * fence their Redis calls with it, and both may take the lease (the
 * publisher when its publish was fenced while the writer may be waiting
 * for room in its queue), so it is atomic by type and only take_lease()
 * (under lease_lock) sets it, or a fenced publish drops it to 0 with a
 * compare-and-swap. The messages between the threads are the two flags,
 * atomic by type, and the publisher's queue (the seq published so far,
 * after the writer re-published from the database). */
typedef struct lease {
    char *model;           /* set before nleases counts it, then never written */
    _Atomic int64_t epoch; /* 0: not held */
    /* flags: set by either thread, taken (exchanged back) by the writer */
    atomic_bool reread;    /* re-read our pending entries before new ones */
    atomic_bool republish; /* the publisher left a batch unpublished */
    /* the writer's own */
    int64_t renewed_ns; /* when it last took or renewed the lease */
    /* the publisher's own (set once by lease_of() before nleases counts it) */
    int64_t published; /* last seq published on the response stream */
    bool abandoned;    /* publish nothing more until the writer has re-published
                          from the database (its seq comes through the queue) */
} lease;

/* What take_lease() found. */
typedef enum lease_take { LEASE_HELD, LEASE_FOREIGN, LEASE_UNREACHABLE } lease_take;

typedef enum job_kind { JOB_CREATE, JOB_DROP } job_kind;

typedef struct job {
    job_kind kind;
    ds_model *def;
    char *name;
    int rc;
    ds_error err;
    bool done;
    struct job *next;
} job;

/* One stream entry and what became of it. */
typedef struct entry {
    char model[DS_IDENT_MAX + 1];
    char id[32];
    char user[DS_IDENT_MAX + 1];
    char rid[REQ_ID_MAX + 1];
    char hash[65];
    char scope_dim[DS_IDENT_MAX + 1]; /* the key's scope, checked again here */
    char scope_member[DS_IDENT_MAX + 1];
    char *cmd;
    size_t cmd_len;
    int code;      /* DS_OK: applied */
    int64_t seq;   /* -1 when refused */
    ds_buf body;   /* event (applied) or error (refused) */
    bool reused;   /* same request_id, other body: answered, not recorded */
    bool recorded; /* already in the ledger before this batch */
} entry;

struct ds_writer {
    ds_server *srv;
    pthread_t thread;
    ds_bus *bus;
    ds_reader *reader; /* the writer's own reads (stored responses) */
    char owner[256];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop, alive;
    atomic_bool started;        /* recovery is done (leases taken later re-read) */
    pthread_mutex_t lease_lock; /* one thread at a time takes a lease */
    job *jobs;
    lease leases[MAX_MODELS];
    atomic_int nleases; /* grown by the writer; the publisher reads below it */
    const char *crash_at;
    _Atomic int64_t lag;
    /* the publisher: events to Redis and XACK, one committed batch after
     * another, on its own thread and connection while the writer applies
     * the next batch */
    pthread_t pub_thread;
    ds_bus *pub_bus;
    struct pub_item *pub_head, *pub_tail;
    int pub_n;
    bool pub_stop, pub_started;
    int64_t pub_deadline_ns; /* stopping: when the publisher gives up on Redis */
    pthread_cond_t pub_cond; /* an item or the stop for the publisher */
    pthread_cond_t pub_room; /* room in the queue for the writer */
};

static void crash_point(ds_writer *w, const char *name)
{
    if (w->crash_at && strcmp(w->crash_at, name) == 0) {
        log_warn("writer: crash point %s reached (DS_CRASH_AT): killing the process", name);
        raise(SIGKILL);
    }
}

/* ---- leases ------------------------------------------------------------------ */

/* The lease of a model, added when new (writer side only). */
static lease *lease_of(ds_writer *w, const char *model)
{
    int n = atomic_load(&w->nleases);
    for (int i = 0; i < n; i++)
        if (strcmp(w->leases[i].model, model) == 0)
            return &w->leases[i];
    if (n == MAX_MODELS)
        return NULL;
    lease *l = &w->leases[n];
    l->model = xstrdup(model);
    atomic_init(&l->epoch, 0);
    atomic_init(&l->reread, false);
    atomic_init(&l->republish, false);
    l->renewed_ns = 0;
    l->published = -1;
    l->abandoned = false;
    atomic_store(&w->nleases, n + 1); /* publishes the fields above to the publisher */
    return l;
}

/* Takes the lease with bus unless the other thread already has since it
 * saw seen_epoch (both the writer and the publisher may, the publisher when
 * its publish was fenced while the writer waits for room in its queue). */
static lease_take take_lease(ds_writer *w, ds_bus *bus, lease *l, int64_t seen_epoch)
{
    ds_error err;
    pthread_mutex_lock(&w->lease_lock);
    int64_t cur = atomic_load(&l->epoch);
    if (cur && cur != seen_epoch) { /* taken meanwhile */
        pthread_mutex_unlock(&w->lease_lock);
        return LEASE_HELD;
    }
    atomic_store(&l->epoch, 0);
    int64_t epoch = 0;
    lease_take got = LEASE_UNREACHABLE;
    if (bus_group_ensure(bus, l->model, &err) == 0 &&
        bus_lease_acquire(bus, l->model, w->owner, w->srv->o.lease_ms, &epoch, &err) == 0) {
        got = epoch < 0 ? LEASE_FOREIGN : LEASE_HELD; /* < 0: another writer holds it */
        if (got == LEASE_HELD) {
            atomic_store(&l->epoch, epoch);
            log_info("writer: holds the lease of '%s' (epoch %" PRId64 ")", l->model, epoch);
            /* after the start, entries read under an old epoch (or by a
               writer before us) may be pending for us */
            if (atomic_load(&w->started))
                atomic_store(&l->reread, true);
        }
    }
    pthread_mutex_unlock(&w->lease_lock);
    return got;
}

/* Acquires or renews the lease (on the writer's side); true when held. */
static bool keep_lease(ds_writer *w, lease *l, int64_t now)
{
    ds_error err;
    int ttl = w->srv->o.lease_ms;
    int64_t epoch = atomic_load(&l->epoch);
    if (epoch && now - l->renewed_ns < (int64_t)ttl * 1000000 / 3)
        return true;
    if (epoch) {
        int rc = bus_lease_renew(w->bus, l->model, w->owner, epoch, ttl, &err);
        if (rc == 1) {
            l->renewed_ns = now;
            return true;
        }
        if (rc < 0)
            return false; /* Redis is out of reach: keep the epoch, the publish script fences */
        log_warn("writer: lost the lease of '%s' (epoch %" PRId64 ")", l->model, epoch);
    }
    if (take_lease(w, w->bus, l, epoch) != LEASE_HELD)
        return false;
    l->renewed_ns = now;
    return true;
}

/* ---- applying one entry -------------------------------------------------------- */

static const char *field(const bus_entry *e, const char *name, size_t *len)
{
    for (int i = 0; i < e->nfields; i++)
        if (strcmp(e->fields[i].name, name) == 0) {
            *len = e->fields[i].len;
            return e->fields[i].value;
        }
    *len = 0;
    return NULL;
}

static void copy_field(const bus_entry *e, const char *name, char *out, size_t cap)
{
    size_t len;
    const char *v = field(e, name, &len);
    snprintf(out, cap, "%.*s", v ? (int)(len < cap ? len : cap - 1) : 0, v ? v : "");
}

static void put_error(entry *e, const ds_error *err)
{
    json_w jw;
    ds_buf_reset(&e->body);
    jw_init(&jw, &e->body);
    request_put_error(&jw, err);
    e->code = err->code;
    e->seq = -1;
}

/* A request_id seen before: the same body gets the stored answer; another
 * body is request_id_reused (and not recorded). True when handled. */
static bool seen_before(ds_writer *w, entry *e, entry *batch, size_t upto)
{
    char key[600];
    ledger_key(key, sizeof key, e->model, e->user, e->rid);
    for (size_t i = upto; i-- > 0;) { /* earlier in this batch */
        entry *p = &batch[i];
        if (strcmp(p->model, e->model) || strcmp(p->user, e->user) || strcmp(p->rid, e->rid) ||
            p->reused)
            continue;
        e->recorded = true;
        if (strcmp(p->hash, e->hash) == 0) {
            e->code = p->code;
            e->seq = p->seq;
            ds_buf_append(&e->body, p->body.data, p->body.len);
        } else {
            e->reused = true;
        }
        return true;
    }
    ledger_entry le;
    if (!ledger_get(w->srv->ledger, key, &le))
        return false;
    e->recorded = true;
    if (strcmp(le.hash, e->hash) != 0) {
        e->reused = true;
        return true;
    }
    int code;
    int64_t seq;
    char *body = NULL;
    ds_error err;
    if (store_request_get(w->reader, e->model, e->user, e->rid, &code, &seq, &body, &err) == 0) {
        e->code = code;
        e->seq = seq;
        ds_buf_puts(&e->body, body);
    } else {
        ds_fail(&err, DS_INTERNAL, NULL, "the stored outcome of this request is missing");
        put_error(e, &err);
    }
    free(body);
    return true;
}

static void reused_error(entry *e)
{
    ds_error err;
    ds_fail(&err, DS_REQUEST_ID_REUSED, "request_id",
            "request_id '%s' was used before with another body", e->rid);
    put_error(e, &err);
}

/* Decodes and applies one command inside the open group. Returns 0 (also
 * for a refusal, recorded in e) or -DS_INTERNAL (the group must be rolled
 * back and replayed). */
static int apply_entry(ds_writer *w, entry *e, entry *batch, size_t idx)
{
    ds_store *s = w->srv->store;
    ds_buf_reset(&e->body);
    e->code = DS_OK;
    e->seq = -1;
    e->reused = e->recorded = false;
    if (seen_before(w, e, batch, idx)) {
        if (e->reused)
            reused_error(e);
        return 0;
    }
    ds_error err;
    json_val *root = NULL;
    ds_arena arena = {0};
    req_decoded d;
    const ds_model *m = store_model_current(s, e->model);
    int rc = json_parse(e->cmd, e->cmd_len, NULL, &root, &err);
    if (rc == 0)
        rc = request_check(root, REQ_CANONICAL, &err);
    if (rc == 0 && !m)
        rc = ds_fail(&err, DS_NOT_FOUND, "table", "no table '%s'", e->model);
    if (rc == 0)
        rc = request_resolve(root, REQ_CANONICAL, m, NULL, &arena, &d, &err);
    if (rc == 0) /* the tree may have changed since the HTTP layer checked */
        rc = request_scope(m, &d.cmd, e->scope_dim, e->scope_member, &err);
    ds_outcome o = {0};
    ds_buf member;
    ds_buf_init(&member, 1 << 16);
    if (rc == 0 && d.cmd.kind == COMMAND_MEMBER) { /* named before the op changes them */
        json_w mw;
        jw_init(&mw, &member);
        request_put_member(&mw, m, &d.cmd.member);
    }
    if (rc == 0) {
        d.cmd.user = e->user;
        d.cmd.request_id = e->rid;
        rc = store_apply(s, e->model, &d.cmd, &o, &err);
    }
    if (rc == -DS_INTERNAL) {
        log_error("writer: command %s of '%s' failed: %s", e->id, e->model, err.message);
        json_free(root);
        ds_arena_free(&arena);
        ds_buf_free(&member);
        return rc;
    }
    if (rc) {
        put_error(e, &err);
    } else {
        json_w jw;
        jw_init(&jw, &e->body);
        jw_obj(&jw);
        request_put_event(&jw, store_model_current(s, e->model), &d.cmd, &o, e->rid, e->user);
        if (d.cmd.kind == COMMAND_MEMBER) {
            jw_key(&jw, "member");
            jw_raw(&jw, member.data, member.len);
        }
        jw_obj_end(&jw);
        e->seq = o.seq;
    }
    store_request_add(s, e->model, e->user, e->rid, e->hash, e->seq, e->code, e->body.data,
                      e->body.len);
    outcome_clear(&o);
    json_free(root);
    ds_arena_free(&arena);
    ds_buf_free(&member);
    return 0;
}

/* ---- batches -------------------------------------------------------------------- */

typedef struct batch {
    entry *e;
    size_t n, alloc;
} batch;

static void collect(void *ctx, const bus_entry *be)
{
    batch *b = ctx;
    if (b->n == b->alloc) {
        b->alloc = b->alloc ? 2 * b->alloc : 64;
        b->e = xrealloc(b->e, b->alloc * sizeof *b->e);
    }
    entry *e = &b->e[b->n++];
    memset(e, 0, sizeof *e);
    ds_buf_init(&e->body, (size_t)1 << 30);
    snprintf(e->model, sizeof e->model, "%s", be->model);
    snprintf(e->id, sizeof e->id, "%s", be->id);
    copy_field(be, "user", e->user, sizeof e->user);
    copy_field(be, "rid", e->rid, sizeof e->rid);
    copy_field(be, "hash", e->hash, sizeof e->hash);
    copy_field(be, "scope_dim", e->scope_dim, sizeof e->scope_dim);
    copy_field(be, "scope_member", e->scope_member, sizeof e->scope_member);
    size_t len;
    const char *cmd = field(be, "cmd", &len);
    e->cmd = cmd ? xstrndup(cmd, len) : NULL;
    e->cmd_len = cmd ? len : 0;
}

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        ds_buf_free(&b->e[i].body);
        free(b->e[i].cmd);
    }
    b->n = 0;
}

/* Applies b->e[from, to) in one group. 0, or -DS_INTERNAL (rolled back). */
static int apply_group(ds_writer *w, batch *b, size_t from, size_t to)
{
    ds_error err;
    ds_store *s = w->srv->store;
    int rc = store_txn_begin(s, &err);
    for (size_t i = from; rc == 0 && i < to; i++) {
        entry *e = &b->e[i];
        if (!e->cmd) { /* trimmed from the stream before it was read */
            ds_fail(&err, DS_INTERNAL, NULL, "the command was lost from the stream");
            put_error(e, &err);
            e->recorded = true;
            continue;
        }
        rc = apply_entry(w, e, b->e, i);
    }
    crash_point(w, "before_commit");
    if (rc == 0)
        rc = store_txn_commit(s, &err);
    else
        store_txn_rollback(s);
    if (rc)
        log_warn("writer: group of %zu commands rolled back: %s", to - from, err.message);
    return rc;
}

/* After COMMIT: the ledger, the live feed and the waiters. */
static void after_commit(ds_writer *w, batch *b)
{
    ds_server *srv = w->srv;
    for (size_t i = 0; i < b->n; i++) {
        entry *e = &b->e[i];
        char key[600];
        ledger_key(key, sizeof key, e->model, e->user, e->rid);
        if (!e->recorded)
            ledger_put(srv->ledger, key, e->hash, e->seq, e->code);
        if (e->seq >= 0 && !e->recorded) {
            live_publish(srv->live, e->model, e->seq, e->body.data, e->body.len);
            metrics_add(&srv->metrics.commands_applied, 1);
        } else if (!e->recorded) {
            metrics_add(&srv->metrics.commands_refused, 1);
        }
        live_deliver(srv->live, key, e->code, e->body.data, e->body.len);
    }
}

/* ---- the publisher ------------------------------------------------------------------ */

/* The publisher gives up on a model's batch (another writer holds the
 * lease, or Redis stayed away while stopping): nothing more of the model
 * goes out until the writer has re-published its events from the database
 * (no gap is left below the stream's last seq); their entries stay pending. */
static void abandon(lease *l)
{
    l->abandoned = true;
    atomic_store(&l->republish, true); /* for the writer */
}

/* After a failed publish: waits a moment and renews the lease meanwhile
 * (the writer may be waiting for room in the publisher's queue). False
 * when stopping and Redis stayed away for 5 s: give up. */
static bool publish_wait(ds_writer *w, ds_bus *bus, lease *l, int64_t epoch, int attempt, int nev,
                         const ds_error *cause)
{
    w->srv->redis_up = 0;
    pthread_mutex_lock(&w->lock);
    bool stopping = w->pub_stop;
    pthread_mutex_unlock(&w->lock);
    int64_t now = ds_now_ns();
    if (stopping && !w->pub_deadline_ns)
        w->pub_deadline_ns = now + (int64_t)5 * 1000000000;
    if (stopping && now > w->pub_deadline_ns) {
        log_error("writer: stopping without publishing %d events of '%s' (%s); the next start "
                  "publishes them",
                  nev, l->model, cause->message);
        return false;
    }
    if (attempt % 50 == 0)
        log_warn("writer: cannot publish to Redis (%s); retrying", cause->message);
    struct timespec t = {0, 100 * 1000 * 1000};
    nanosleep(&t, NULL);
    ds_error err;
    if (epoch)
        bus_lease_renew(bus, l->model, w->owner, epoch, w->srv->o.lease_ms, &err);
    return true;
}

/* Publishes one model's events ev and acknowledges its entries ids, fenced
 * by the lease, on connection bus; retries while Redis is down. Events and
 * XACK go in one script call, or in two when a crash point must fall
 * between them. */
static void publish_model(ds_writer *w, ds_bus *bus, lease *l, const bus_event *ev, int nev,
                          const char **ids, int nid)
{
    bool split = w->crash_at != NULL;
    for (int attempt = 0;; attempt++) {
        ds_error err;
        int rc = 0;
        int64_t epoch = atomic_load(&l->epoch);
        if (epoch == 0) {
            lease_take got = take_lease(w, bus, l, 0);
            if (got == LEASE_HELD)
                continue; /* publish with the new epoch */
            if (got == LEASE_FOREIGN) {
                log_error("writer: another writer holds the lease of '%s'; %d entries stay "
                          "pending for it",
                          l->model, nid);
                abandon(l);
                return;
            }
            rc = ds_fail(&err, DS_UNAVAILABLE, "redis", "the lease of '%s' is not held", l->model);
        } else if (nev && !split) {
            rc = bus_publish(bus, l->model, w->owner, epoch, ev, nev, ids, nid, KEEP_EVENTS, &err);
            if (rc == 0) {
                l->published = ev[nev - 1].seq;
                return;
            }
        } else {
            if (nev)
                rc = bus_publish(bus, l->model, w->owner, epoch, ev, nev, NULL, 0, KEEP_EVENTS,
                                 &err);
            if (rc == 0 && nev) {
                l->published = ev[nev - 1].seq;
                nev = 0;
                crash_point(w, "after_publish");
            }
            if (rc == 0) {
                crash_point(w, "before_xack");
                rc = bus_publish(bus, l->model, w->owner, epoch, NULL, 0, ids, nid, KEEP_EVENTS,
                                 &err);
                if (rc == 0)
                    return;
            }
        }
        if (rc == -DS_FORBIDDEN) { /* fenced: the lease lapsed; take it again (above) */
            log_warn("writer: %s; taking the lease of '%s' again", err.message, l->model);
            atomic_compare_exchange_strong(&l->epoch, &epoch, 0);
            continue;
        }
        if (!publish_wait(w, bus, l, epoch, attempt, nev, &err)) {
            abandon(l);
            return;
        }
    }
}

/* Publishes the batch's new events and acknowledges every entry, model by
 * model, on the publisher's thread. */
static void publish_and_ack(ds_writer *w, ds_bus *bus, const batch *b)
{
    int nleases = atomic_load(&w->nleases);
    for (int li = 0; li < nleases; li++) {
        lease *l = &w->leases[li];
        bus_event *ev = xmalloc_array(b->n + 1, sizeof *ev);
        const char **ids = xmalloc_array(b->n + 1, sizeof *ids);
        int nev = 0, nid = 0;
        for (size_t i = 0; i < b->n; i++) {
            entry *e = &b->e[i];
            if (strcmp(e->model, l->model) != 0)
                continue;
            ids[nid++] = e->id;
            if (e->seq > l->published && !e->recorded)
                ev[nev++] = (bus_event){e->seq, e->rid, e->body.data, e->body.len};
        }
        /* abandoned: the writer re-publishes from the database, then re-reads */
        if (nid && !l->abandoned)
            publish_model(w, bus, l, ev, nev, ids, nid);
        free(ev);
        free(ids);
    }
}

/* A committed batch for the publisher, or (mark set) the writer's word that
 * the events of mark's model are on the stream up to mark_seq. */
typedef struct pub_item {
    batch b;
    lease *mark;
    int64_t mark_seq;
    struct pub_item *next;
} pub_item;

enum { PUB_QUEUE = 4 }; /* committed batches waiting for Redis, at most */

static void *publisher_main(void *arg)
{
    ds_writer *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->pub_head && !w->pub_stop)
            pthread_cond_wait(&w->pub_cond, &w->lock);
        pub_item *it = w->pub_head;
        if (it) {
            w->pub_head = it->next;
            if (!w->pub_head)
                w->pub_tail = NULL;
        }
        pthread_mutex_unlock(&w->lock);
        if (!it)
            break;      /* stopping, and everything is published */
        if (it->mark) { /* the writer re-published: publish again after mark_seq */
            it->mark->published = it->mark_seq;
            it->mark->abandoned = false;
        } else {
            int64_t t0 = ds_now_ns();
            publish_and_ack(w, w->pub_bus, &it->b);
            metrics_observe(&w->srv->metrics.publish_seconds, (double)(ds_now_ns() - t0) / 1e9);
        }
        batch_clear(&it->b);
        free(it->b.e);
        free(it);
        pthread_mutex_lock(&w->lock);
        w->pub_n--;
        pthread_cond_signal(&w->pub_room);
        pthread_mutex_unlock(&w->lock);
    }
    return NULL;
}

/* Queues it for the publisher; waits while it is PUB_QUEUE items behind. */
static void pub_enqueue(ds_writer *w, pub_item *it)
{
    pthread_mutex_lock(&w->lock);
    while (w->pub_n >= PUB_QUEUE)
        pthread_cond_wait(&w->pub_room, &w->lock);
    if (w->pub_tail)
        w->pub_tail->next = it;
    else
        w->pub_head = it;
    w->pub_tail = it;
    w->pub_n++;
    pthread_cond_signal(&w->pub_cond);
    pthread_mutex_unlock(&w->lock);
}

/* Hands a committed batch to the publisher (b is empty afterwards). */
static void publish_later(ds_writer *w, batch *b)
{
    pub_item *it = xcalloc(1, sizeof *it);
    it->b = *b;
    *b = (batch){0};
    pub_enqueue(w, it);
}

/* Tells the publisher, after the batches queued so far, that l's events up
 * to seq are on the stream (read at the start, or re-published). */
static void publish_mark(ds_writer *w, lease *l, int64_t seq)
{
    pub_item *it = xcalloc(1, sizeof *it);
    it->mark = l;
    it->mark_seq = seq;
    pub_enqueue(w, it);
}

/* Publishes what is queued and stops the publisher. */
static void publisher_stop(ds_writer *w)
{
    if (!w->pub_started)
        return;
    pthread_mutex_lock(&w->lock);
    w->pub_stop = true;
    pthread_cond_signal(&w->pub_cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->pub_thread, NULL);
    w->pub_started = false;
}

/* A command refused after it wrote (a batch whose later write is refused)
 * rolls its group back; alone in its replay it is refused again, and its
 * refusal (the rollback undid its writes) is recorded on its own. True when
 * that is the case and the ledger row committed. */
static bool record_refusal(ds_writer *w, entry *e)
{
    if (e->code == DS_OK || e->code == DS_INTERNAL || e->recorded || !e->cmd)
        return false;
    ds_store *s = w->srv->store;
    ds_error err;
    if (store_txn_begin(s, &err) != 0)
        return false;
    store_request_add(s, e->model, e->user, e->rid, e->hash, -1, e->code, e->body.data,
                      e->body.len);
    if (store_txn_commit(s, &err) != 0) {
        log_warn("writer: cannot record the refusal of %s: %s", e->id, err.message);
        return false;
    }
    return true;
}

/* --bench-baseline: what the original design did for every request (one
 * transaction, then the summary view recomputed into a table). */
static void baseline(ds_writer *w, batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        ds_error err;
        if (apply_group(w, b, i, i + 1) != 0 && !record_refusal(w, &b->e[i])) {
            ds_fail(&err, DS_INTERNAL, NULL, "the command failed in the database");
            put_error(&b->e[i], &err);
            b->e[i].recorded = true;
        }
        if (store_views_materialize(w->srv->store, b->e[i].model, &err) != 0)
            log_warn("writer: baseline view refresh: %s", err.message);
    }
}

static void process(ds_writer *w, batch *b)
{
    if (b->n == 0)
        return;
    int64_t t0 = ds_now_ns();
    if (w->srv->o.bench_baseline) {
        baseline(w, b);
    } else if (apply_group(w, b, 0, b->n) != 0) { /* replay one by one */
        metrics_add(&w->srv->metrics.replays, 1);
        for (size_t i = 0; i < b->n; i++) {
            if (apply_group(w, b, i, i + 1) != 0 && !record_refusal(w, &b->e[i])) {
                ds_error err;
                ds_fail(&err, DS_INTERNAL, NULL, "the command failed in the database");
                put_error(&b->e[i], &err);
                b->e[i].recorded = true; /* not recorded: a retry may succeed */
            }
        }
    }
    crash_point(w, "after_commit");
    metrics_observe(&w->srv->metrics.apply_seconds, (double)(ds_now_ns() - t0) / 1e9);
    metrics_observe(&w->srv->metrics.batch_size, (double)b->n);
    metrics_add(&w->srv->metrics.batches, 1);
    after_commit(w, b);
    publish_later(w, b);
}

/* ---- recovery ------------------------------------------------------------------------ */

typedef struct republish {
    ds_writer *w;
    lease *l;
    bus_event ev[256];
    char *json[256], *rid[256];
    int n;
    int rc;
    int64_t published; /* the last seq on the stream */
} republish;

static void flush_republish(republish *r)
{
    ds_error err;
    if (r->n && r->rc == 0) {
        int64_t epoch = atomic_load(&r->l->epoch); /* 0: the publisher was fenced meanwhile */
        r->rc = epoch ? bus_publish(r->w->bus, r->l->model, r->w->owner, epoch, r->ev, r->n, NULL,
                                    0, KEEP_EVENTS, &err)
                      : ds_fail(&err, DS_UNAVAILABLE, "redis", "the lease is not held");
        if (r->rc == 0)
            r->published = r->ev[r->n - 1].seq;
        else
            log_error("writer: re-publishing events of '%s' failed: %s", r->l->model, err.message);
    }
    for (int i = 0; i < r->n; i++) {
        free(r->json[i]);
        free(r->rid[i]);
    }
    r->n = 0;
}

static void on_unpublished(void *ctx, int64_t seq, const char *rid, const char *event, size_t len)
{
    republish *r = ctx;
    r->json[r->n] = xstrndup(event, len);
    r->rid[r->n] = xstrdup(rid);
    r->ev[r->n] = (bus_event){seq, r->rid[r->n], r->json[r->n], len};
    if (++r->n == 256)
        flush_republish(r);
}

static void on_recent(void *ctx, int64_t seq, const char *json, size_t len)
{
    ds_writer *w = ((republish *)ctx)->w;
    live_publish(w->srv->live, ((republish *)ctx)->l->model, seq, json, len);
}

/* Publishes what was committed but not published, tells the publisher
 * where the stream ends, then seeds the feed. */
static int recover_events(ds_writer *w, lease *l, ds_error *err)
{
    int64_t last;
    int rc = bus_last_seq(w->bus, l->model, &last, err);
    if (rc)
        return rc;
    int64_t seq = store_model_seq(w->srv->store, l->model);
    republish r = {.w = w, .l = l, .published = last};
    if (seq > last && seq > 0) {
        log_info("writer: re-publishing events %" PRId64 "..%" PRId64 " of '%s'",
                 last < 0 ? 1 : last + 1, seq, l->model);
        rc = store_events_after(w->srv->store, l->model, last, on_unpublished, &r, err);
        flush_republish(&r);
        if (rc == 0 && r.rc)
            rc = ds_fail(err, DS_UNAVAILABLE, "redis", "cannot re-publish events to Redis");
    }
    if (rc == 0)
        publish_mark(w, l, r.published);
    if (rc == 0)
        rc = bus_recent_events(w->bus, l->model, RECENT_EVENTS, on_recent, &r, err);
    live_set_seq(w->srv->live, l->model, seq);
    return rc;
}

/* Re-applies this writer's own pending entries (the ledger skips what is
 * done: those are answered and acknowledged). */
static int recover_pending(ds_writer *w, const char *const *models, int n, ds_error *err)
{
    for (int i = 0; i < n; i++) {
        char after[32] = "0"; /* each pass goes on after the last entry read */
        for (;;) {
            batch b = {0};
            int got = bus_read(w->bus, w->owner, &models[i], 1, after, w->srv->o.batch_max, 0,
                               collect, &b, err);
            if (got > 0) {
                log_info("writer: re-reading %d pending commands of '%s'", got, models[i]);
                snprintf(after, sizeof after, "%s", b.e[b.n - 1].id);
                process(w, &b);
            }
            batch_clear(&b);
            free(b.e);
            if (got < 0)
                return got;
            if (got < w->srv->o.batch_max)
                break;
        }
    }
    return 0;
}

/* What the publisher or a lost read left for a model: events re-published
 * from the database, pending entries re-read. */
static void recover_lease(ds_writer *w, lease *l)
{
    ds_error err;
    if (atomic_exchange(&l->republish, false)) {
        if (recover_events(w, l, &err) != 0) {
            log_warn("writer: cannot re-publish the events of '%s' yet: %s", l->model, err.message);
            atomic_store(&l->republish, true); /* next time round */
            return;
        }
        atomic_store(&l->reread, true); /* their entries are pending */
    }
    if (atomic_exchange(&l->reread, false)) {
        const char *m = l->model;
        if (recover_pending(w, &m, 1, &err) != 0)
            atomic_store(&l->reread, true); /* after Redis is back */
    }
}

static void on_request_row(void *ctx, const char *model, const char *user, const char *rid,
                           const char *hash, int64_t seq, int code)
{
    char key[600];
    ledger_key(key, sizeof key, model, user, rid);
    ledger_put(ctx, key, hash, seq, code);
}

/* The models of the store, each with its lease (kept or acquired). */
static int held_models(ds_writer *w, const char **out)
{
    char **names;
    size_t n = store_model_names(w->srv->store, &names);
    int64_t now = ds_now_ns();
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        lease *l = lease_of(w, names[i]);
        if (l && keep_lease(w, l, now))
            out[k++] = l->model;
        free(names[i]);
    }
    free(names);
    return k;
}

static int recover(ds_writer *w, ds_error *err)
{
    int rc = store_requests_load(w->srv->store, on_request_row, w->srv->ledger, err);
    if (rc)
        return rc;
    const char *models[MAX_MODELS];
    int n = 0;
    for (int attempt = 0; attempt < 100; attempt++) { /* up to ~10 s for Redis and leases */
        char **names;
        size_t total = store_model_names(w->srv->store, &names);
        for (size_t i = 0; i < total; i++)
            free(names[i]);
        free(names);
        n = held_models(w, models);
        if ((size_t)n == total)
            break;
        struct timespec t = {0, 100 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    if (bus_ping(w->bus, err))
        return -DS_UNAVAILABLE;
    for (int i = 0; i < n; i++)
        if ((rc = recover_events(w, lease_of(w, models[i]), err)))
            return rc;
    return n ? recover_pending(w, models, n, err) : 0;
}

/* ---- the loop ------------------------------------------------------------------------- */

static void run_jobs(ds_writer *w)
{
    pthread_mutex_lock(&w->lock);
    job *j = w->jobs;
    w->jobs = NULL;
    pthread_mutex_unlock(&w->lock);
    while (j) {
        job *next = j->next;
        if (j->kind == JOB_CREATE) {
            j->rc = store_model_create(w->srv->store, j->def, &j->err);
            if (j->rc == 0)
                live_set_seq(w->srv->live, j->def->name, 0);
        } else {
            j->rc = store_model_drop(w->srv->store, j->name, &j->err);
            if (j->rc == 0) {
                live_forget(w->srv->live, j->name);
                ledger_forget_model(w->srv->ledger, j->name);
            }
        }
        pthread_mutex_lock(&w->lock);
        j->done = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        j = next;
    }
}

/* A quiet second after writes: fold the write-ahead log into the database
 * file now rather than in the middle of a busy batch (DuckDB also does it
 * by itself when the log passes the store's checkpoint threshold). It is
 * skipped while readers hold a snapshot, and tried again later. */
#define IDLE_CHECKPOINT_NS INT64_C(1000000000)

/* Returns whether the log is folded in (else: try again later). */
static bool idle_checkpoint(ds_writer *w)
{
    ds_error err;
    double t0 = ds_now_ms();
    if (store_checkpoint(w->srv->store, &err) != 0) {
        log_debug("writer: checkpoint postponed: %s", err.message);
        return false;
    }
    log_debug("writer: checkpoint in %.0f ms", ds_now_ms() - t0);
    return true;
}

static void *writer_main(void *arg)
{
    ds_writer *w = arg;
    batch b = {0};
    int64_t last_batch = 0;
    bool dirty = false; /* batches since the last checkpoint */
    for (;;) {
        pthread_mutex_lock(&w->lock);
        bool stop = w->stop;
        pthread_mutex_unlock(&w->lock);
        if (stop)
            break;
        run_jobs(w);
        const char *models[MAX_MODELS];
        int n = held_models(w, models);
        ds_error err;
        for (int i = 0; i < n; i++)
            recover_lease(w, lease_of(w, models[i]));
        int got = n ? bus_read(w->bus, w->owner, models, n, NULL, w->srv->o.batch_max, 50, collect,
                               &b, &err)
                    : -DS_UNAVAILABLE;
        if (got < 0) {
            /* the read may have reached Redis and its reply be lost: those
               entries are pending for us, read them first next time */
            for (int i = 0; i < n; i++)
                atomic_store(&lease_of(w, models[i])->reread, true);
            if (w->srv->redis_up)
                log_warn("writer: Redis unavailable: %s", n ? err.message : "no lease held");
            w->srv->redis_up = 0;
            struct timespec t = {0, 100 * 1000 * 1000};
            nanosleep(&t, NULL);
            continue;
        }
        if (!w->srv->redis_up)
            log_info("writer: Redis is back");
        w->srv->redis_up = 1;
        atomic_store_explicit(&w->lag, (int64_t)b.n, memory_order_relaxed);
        if (b.n) {
            last_batch = ds_now_ns();
            dirty = true;
        } else if (dirty && ds_now_ns() - last_batch > IDLE_CHECKPOINT_NS) {
            dirty = !idle_checkpoint(w);
            last_batch = ds_now_ns();
        }
        process(w, &b);
        batch_clear(&b);
        atomic_store_explicit(&w->lag, 0, memory_order_relaxed);
    }
    pthread_mutex_lock(&w->lock);
    w->alive = false; /* no job is queued after this */
    pthread_mutex_unlock(&w->lock);
    run_jobs(w);
    free(b.e);
    publisher_stop(w); /* the batches committed so far go out first */
    return NULL;
}

int writer_start(ds_server *srv, ds_writer **out, ds_error *err)
{
    ds_writer *w = xcalloc(1, sizeof *w);
    w->srv = srv;
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->lease_lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->crash_at = getenv("DS_CRASH_AT");
    if (srv->o.owner)
        snprintf(w->owner, sizeof w->owner, "%s", srv->o.owner);
    else {
        char host[128] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(w->owner, sizeof w->owner, "%s:%s", host, srv->o.data_dir);
    }
    pthread_cond_init(&w->pub_cond, NULL);
    pthread_cond_init(&w->pub_room, NULL);
    int rc = bus_open(&srv->bus, &w->bus, err);
    if (rc == 0)
        rc = bus_open(&srv->bus, &w->pub_bus, err);
    if (rc == 0 && !(w->reader = store_reader_new(srv->store)))
        rc = ds_fail(err, DS_INTERNAL, NULL, "cannot open a database connection");
    if (rc == 0) {
        if (pthread_create(&w->pub_thread, NULL, publisher_main, w) != 0)
            rc = ds_fail(err, DS_INTERNAL, NULL, "cannot start the publisher thread");
        w->pub_started = rc == 0;
    }
    if (rc == 0)
        rc = recover(w, err);
    if (rc == 0) {
        atomic_store(&w->started, true);
        w->alive = true;
        srv->redis_up = 1;
        if (pthread_create(&w->thread, NULL, writer_main, w) != 0)
            rc = ds_fail(err, DS_INTERNAL, NULL, "cannot start the writer thread");
    }
    if (rc) {
        publisher_stop(w);
        store_reader_free(w->reader);
        bus_close(w->bus);
        bus_close(w->pub_bus);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void writer_stop(ds_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    for (int i = 0; i < atomic_load(&w->nleases); i++)
        free(w->leases[i].model);
    store_reader_free(w->reader);
    bus_close(w->bus);
    bus_close(w->pub_bus);
    pthread_cond_destroy(&w->pub_cond);
    pthread_cond_destroy(&w->pub_room);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->lease_lock);
    free(w);
}

bool writer_alive(ds_writer *w)
{
    pthread_mutex_lock(&w->lock);
    bool a = w->alive;
    pthread_mutex_unlock(&w->lock);
    return a;
}

int64_t writer_lag(ds_writer *w)
{
    return atomic_load_explicit(&w->lag, memory_order_relaxed);
}

static int run_job(ds_writer *w, job *j, ds_error *err)
{
    if (!w) /* a server without one (tests) */
        return ds_fail(err, DS_UNAVAILABLE, NULL, "the writer is not running");
    pthread_mutex_lock(&w->lock);
    if (!w->alive) {
        pthread_mutex_unlock(&w->lock);
        return ds_fail(err, DS_UNAVAILABLE, NULL, "the writer is not running");
    }
    j->next = w->jobs;
    w->jobs = j;
    while (!j->done)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    if (j->rc && err)
        *err = j->err;
    return j->rc;
}

int writer_create_model(ds_writer *w, const ds_model *def, ds_error *err)
{
    job j = {.kind = JOB_CREATE, .def = (ds_model *)def};
    return run_job(w, &j, err);
}

int writer_drop_model(ds_writer *w, const char *name, ds_error *err)
{
    job j = {.kind = JOB_DROP, .name = (char *)name};
    return run_job(w, &j, err);
}
