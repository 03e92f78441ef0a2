/* writer.c: see writer.h. Three threads meet here: the writer (leases,
 * reads, the engines, answers), the publisher (the response stream and
 * XACK, fenced by the lease) and the persister (persist.c; its done
 * callback, on_persisted, hands the entries it committed to the publisher
 * for XACK and answers --ack persisted writes). */
#include "writer.h"
#include "writer_internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crash.h"
#include "grids.h"
#include "log.h"
#include "models.h"
#include "request.h"

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
    atomic_init(&l->foreign, false);
    l->renewed_ns = 0;
    l->published = -1;
    l->abandoned = false;
    atomic_store(&w->nleases, n + 1); /* publishes the fields above to the publisher */
    return l;
}

/* Takes the lease with bus unless the other thread already has since it
 * saw seen_epoch. */
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
        if (got == LEASE_FOREIGN && !atomic_exchange(&l->foreign, true))
            log_error("writer: another process holds the lease of '%s' (it took over as the "
                      "writer while this one stalled); this one applies nothing of it and "
                      "answers its writes 503",
                      l->model);
        if (got == LEASE_HELD)
            atomic_store(&l->foreign, false);
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

/* ---- the publisher ------------------------------------------------------------------ */

static void pub_free(pub_item *it)
{
    free(it->ev);
    free(it->ids);
    ds_arena_free(&it->arena);
    free(it);
}

/* The publisher gives up on a model's events (another writer holds the
 * lease, or Redis stayed away while stopping): nothing more of the model
 * goes out until the writer has re-published its events from the database
 * (no gap is left below the stream's last seq); its entries stay pending. */
static void abandon(lease *l)
{
    l->abandoned = true;
    atomic_store(&l->republish, true); /* for the writer */
}

/* After a failed publish: waits a moment and renews the lease meanwhile.
 * False when stopping and Redis stayed away for 5 s: give up. */
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

/* Publishes one model's events and acknowledges its entries, fenced by the
 * lease; retries while Redis is down. */
static void publish_model(ds_writer *w, ds_bus *bus, lease *l, const bus_event *ev, int nev,
                          const char *const *ids, int nid)
{
    for (int attempt = 0;; attempt++) {
        ds_error err;
        int rc;
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
        } else {
            int64_t expect = l->published;
            rc = bus_publish(bus, l->model, w->owner, epoch, ev, nev, ids, nid,
                             w->srv->o.response_keep, &expect, &err);
            if (rc == 0) {
                if (nev) {
                    l->published = ev[nev - 1].seq;
                    crash_point("after_publish");
                }
                return;
            }
            if (rc == -DS_NOT_FOUND) { /* Redis lost events: from the database again */
                log_error("writer: %s (a Redis failover or restart without them: see "
                          "--redis-replicas); publishing them again from the database",
                          err.message);
                metrics_add(&w->srv->metrics.redis_lost_events,
                            (uint64_t)(l->published - (expect < 0 ? 0 : expect)));
                abandon(l);
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

static void publish_item(ds_writer *w, pub_item *it)
{
    lease *l = it->l;
    if (it->mark) { /* the writer re-published: publish again after mark_seq */
        l->published = it->mark_seq;
        l->abandoned = false;
        return;
    }
    if (l->abandoned)
        return; /* the writer re-publishes from the database, then re-reads */
    int nev = 0;
    for (int i = 0; i < it->nev; i++) /* what a re-publication already sent */
        if (it->ev[i].seq > l->published)
            it->ev[nev++] = it->ev[i];
    if (nev || it->nid)
        publish_model(w, w->pub_bus, l, it->ev, nev, (const char *const *)it->ids, it->nid);
}

static void *publisher_main(void *arg)
{
    ds_thread_name("ds-publisher");
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
            break; /* stopping, and everything is published */
        int64_t t0 = ds_now_ns();
        publish_item(w, it);
        metrics_observe(&w->srv->metrics.publish_seconds, (double)(ds_now_ns() - t0) / 1e9);
        pub_free(it);
        pthread_mutex_lock(&w->lock);
        w->pub_n--;
        pthread_cond_signal(&w->pub_room);
        pthread_mutex_unlock(&w->lock);
    }
    return NULL;
}

/* Queues it for the publisher; when wait, waits while it is PUB_QUEUE
 * items behind (the writer; the persister's acknowledgements never wait). */
static void pub_enqueue(ds_writer *w, pub_item *it, bool wait)
{
    pthread_mutex_lock(&w->lock);
    while (wait && w->pub_n >= PUB_QUEUE && !w->pub_stop)
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

static void publisher_stop(ds_writer *w)
{
    if (!w->pub_started)
        return;
    pthread_mutex_lock(&w->lock);
    w->pub_stop = true;
    pthread_cond_signal(&w->pub_cond);
    pthread_cond_broadcast(&w->pub_room);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->pub_thread, NULL);
    w->pub_started = false;
}

/* ---- after the COMMIT (the persister's thread) --------------------------------- */

static void deliver_stored(ds_writer *w, const persist_item *it)
{
    char key[REQUEST_KEY_MAX + 1];
    if (!request_key(key, it->model, it->user, it->rid))
        return;
    int code;
    int64_t seq;
    char *body = NULL;
    ds_error err;
    if (!w->stored ||
        store_request_get(w->stored, it->model, it->user, it->rid, &code, &seq, &body, &err)) {
        ds_fail(&err, DS_INTERNAL, NULL, "the stored outcome of this request is missing");
        ds_buf b;
        json_w jw;
        ds_buf_init(&b, 4096);
        jw_init(&jw, &b);
        request_put_error(&jw, &err);
        live_deliver(w->srv->live, key, DS_INTERNAL, b.data, b.len);
        ds_buf_free(&b);
        return;
    }
    live_deliver(w->srv->live, key, code, body, strlen(body));
    free(body);
}

/* The acknowledgements of one model's entries in a committed group. */
static pub_item *ack_item(ds_writer *w, const char *model)
{
    lease *l = NULL;
    int n = atomic_load(&w->nleases);
    for (int i = 0; i < n && !l; i++)
        if (strcmp(w->leases[i].model, model) == 0)
            l = &w->leases[i];
    if (!l)
        return NULL;
    pub_item *it = xcalloc(1, sizeof *it);
    it->l = l;
    return it;
}

/* persist_done_fn: the group is in DuckDB. Its models' persisted seqs move
 * (SQL reads waiting for them go on), --ack persisted writes and retries
 * are answered, and the entries go to the publisher for XACK. */
void writer__on_persisted(void *ctx, const persist_item *group)
{
    ds_writer *w = ctx;
    crash_point("after_commit");
    crash_point("before_xack");
    pub_item *acks[MAX_MODELS];
    char *names[MAX_MODELS];
    int nacks = 0;
    for (const persist_item *it = group; it; it = it->next) {
        if (it->delta.seq >= 0) {
            model_ref *mr = models_get(w->srv->models, it->model, strlen(it->model));
            if (mr) {
                models_set_persisted(w->srv->models, mr, it->delta.seq);
                models_put(w->srv->models, mr);
            }
        }
        if (it->deliver == DELIVER_BODY) {
            char key[REQUEST_KEY_MAX + 1];
            if (request_key(key, it->model, it->user, it->rid))
                live_deliver(w->srv->live, key, it->code, it->answer, it->answer_len);
        } else if (it->deliver == DELIVER_STORED) {
            deliver_stored(w, it);
        }
        if (!it->stream_id[0])
            continue;
        int j = 0;
        while (j < nacks && strcmp(names[j], it->model) != 0)
            j++;
        if (j == nacks) {
            if (nacks == MAX_MODELS || !(acks[j] = ack_item(w, it->model)))
                continue;
            names[nacks++] = it->model;
            acks[j]->ids = xmalloc_array(256, sizeof *acks[j]->ids);
        }
        pub_item *a = acks[j];
        if (a->nid && (a->nid & (a->nid - 1)) == 0 && a->nid >= 256)
            a->ids = xrealloc(a->ids, (size_t)a->nid * 2 * sizeof *a->ids);
        a->ids[a->nid++] = ds_arena_strndup(&a->arena, it->stream_id, strlen(it->stream_id));
    }
    for (int j = 0; j < nacks; j++)
        pub_enqueue(w, acks[j], false);
}

/* ---- one entry --------------------------------------------------------------------- */

const char *writer__field(const bus_entry *e, const char *name, size_t *len)
{
    for (int i = 0; i < e->nfields; i++)
        if (strcmp(e->fields[i].name, name) == 0) {
            *len = e->fields[i].len;
            return e->fields[i].value;
        }
    *len = 0;
    return NULL;
}

/* Copies a field whole: false when it is longer than cap - 1 or holds a
 * NUL (the HTTP layer never sends such; it is refused, never cut). */
bool writer__copy_field(const bus_entry *e, const char *name, char *out, size_t cap)
{
    size_t len;
    const char *v = writer__field(e, name, &len);
    out[0] = '\0';
    if (!v)
        return true;
    if (len >= cap || memchr(v, '\0', len))
        return false;
    memcpy(out, v, len);
    out[len] = '\0';
    return true;
}

entry *writer__batch_push(batch *b)
{
    if (b->n == b->alloc) {
        b->alloc = b->alloc ? 2 * b->alloc : 64;
        b->e = xrealloc(b->e, b->alloc * sizeof *b->e);
    }
    entry *e = &b->e[b->n++];
    memset(e, 0, sizeof *e);
    return e;
}

bool writer__entry_from(entry *e, const bus_entry *be)
{
    bool ok = strlen(be->model) < sizeof e->model && strlen(be->id) < sizeof e->id;
    snprintf(e->model, sizeof e->model, "%s", ok ? be->model : "");
    snprintf(e->id, sizeof e->id, "%s", ok ? be->id : "");
    ok &= writer__copy_field(be, "user", e->user, sizeof e->user);
    ok &= writer__copy_field(be, "rid", e->rid, sizeof e->rid);
    return ok;
}

static void collect(void *ctx, const bus_entry *be)
{
    entry *e = writer__batch_push(ctx);
    bool ok = writer__entry_from(e, be);
    ok &= writer__copy_field(be, "hash", e->hash, sizeof e->hash);
    ok &= writer__copy_field(be, "scope_dim", e->scope_dim, sizeof e->scope_dim);
    ok &= writer__copy_field(be, "scope_member", e->scope_member, sizeof e->scope_member);
    size_t len;
    const char *d = writer__field(be, "detail", &len);
    if (d && request_detail(d, len, &e->detail, NULL) != 0)
        ok = false;
    const char *cmd = writer__field(be, "cmd", &len);
    e->cmd = cmd ? xstrndup(cmd, len) : NULL;
    e->cmd_len = cmd ? len : 0;
    e->ts_ms = strtoll(e->id, NULL, 10); /* ms-seq: Redis's clock, the same for everyone */
    e->bad = !ok || !cmd || !e->rid[0] || strlen(e->hash) != 64;
}

void writer__batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->e[i].cmd);
    b->n = 0;
}

static void error_body(ds_buf *b, const ds_error *err)
{
    json_w jw;
    jw_init(&jw, b);
    request_put_error(&jw, err);
}

/* The event of an applied command at a detail. */
static void event_body(ds_writer *w, ds_buf *b, const engine_result *res, const entry *e,
                       req_detail detail, const ds_buf *member)
{
    json_w jw;
    jw_init(&jw, b);
    jw_obj(&jw);
    request_put_event_at(&jw, res->after, &res->cmd, &res->out, e->rid, e->user, detail,
                         w->srv->o.change_cap, member->len ? member->data : NULL, member->len);
    jw_obj_end(&jw);
}

/* Per model, the events of the batch for the publisher. */
typedef struct batch_pub {
    pub_item *items[MAX_MODELS];
    size_t alloc[MAX_MODELS];
    int n;
    persist_item *persist, **tail; /* the persister's items, in order */
    bool hurry;                    /* an answer waits for the COMMIT */
} batch_pub;

static void pub_event(ds_writer *w, batch_pub *bp, const entry *e, int64_t seq, const ds_buf *ev)
{
    if (w->follow) /* a replica publishes nothing */
        return;
    lease *l = lease_of(w, e->model);
    if (!l)
        return;
    int j = 0;
    while (j < bp->n && bp->items[j]->l != l)
        j++;
    if (j == bp->n) {
        if (bp->n == MAX_MODELS)
            return;
        bp->items[j] = xcalloc(1, sizeof(pub_item));
        bp->items[j]->l = l;
        bp->alloc[j] = 0;
        bp->n++;
    }
    pub_item *it = bp->items[j];
    if ((size_t)it->nev == bp->alloc[j]) {
        bp->alloc[j] = bp->alloc[j] ? 2 * bp->alloc[j] : 64;
        it->ev = xrealloc(it->ev, bp->alloc[j] * sizeof *it->ev);
    }
    it->ev[it->nev++] =
        (bus_event){.seq = seq,
                    .request_id = ds_arena_strndup(&it->arena, e->rid, strlen(e->rid)),
                    .user = ds_arena_strndup(&it->arena, e->user, strlen(e->user)),
                    .ts_ms = e->ts_ms,
                    .json = ds_arena_strndup(&it->arena, ev->data, ev->len),
                    .len = ev->len,
                    .cmd = ds_arena_strndup(&it->arena, e->cmd, e->cmd_len),
                    .cmd_len = e->cmd_len};
}

/* An applied command: its event at every detail for the live feed, the
 * grids and the publisher; the answer at the request's detail; what the
 * ledger keeps (the event at leaves, as the response stream has it). */
static void applied(ds_writer *w, const entry *e, model_ref *mr, engine_result *res, ds_buf *answer,
                    ds_buf *stored, batch_pub *bp)
{
    ds_server *srv = w->srv;
    ds_buf member, ev[3];
    ds_buf_init(&member, 1 << 16);
    if (res->cmd.kind == COMMAND_MEMBER) { /* named as before the operation */
        json_w mw;
        jw_init(&mw, &member);
        request_put_member(&mw, res->before, &res->cmd.member);
    }
    const char *json[3];
    size_t len[3];
    for (int d = 0; d < 3; d++) {
        ds_buf_init(&ev[d], (size_t)1 << 30);
        event_body(w, &ev[d], res, e, (req_detail)d, &member);
        json[d] = ev[d].data;
        len[d] = ev[d].len;
    }
    ds_buf_append(answer, ev[e->detail].data, ev[e->detail].len);
    ds_buf_append(stored, ev[DETAIL_LEAVES].data, ev[DETAIL_LEAVES].len);
    live_publish_detail(srv->live, e->model, res->seq, json, len);
    grids_applied(srv->grids, e->model, mr->engine, &res->delta);
    pub_event(w, bp, e, res->seq, &ev[DETAIL_LEAVES]);
    for (int d = 0; d < 3; d++)
        ds_buf_free(&ev[d]);
    ds_buf_free(&member);
    metrics_add(&srv->metrics.commands_applied, 1);
}

/* The persister's item of an entry that changes nothing (a retry, a
 * reused request_id, an entry for no model): only its XACK, after the
 * commands before it. */
static persist_item *noop_item(const entry *e)
{
    persist_item *it = persist_item_new(e->model);
    it->noop = true;
    it->user = xstrdup(e->user);
    it->rid = xstrdup(e->rid);
    return it;
}

/* Applies one entry through its model's engine and hands everything on. */
static void process_entry(ds_writer *w, const entry *e, batch_pub *bp)
{
    ds_server *srv = w->srv;
    char key[REQUEST_KEY_MAX + 1];
    bool keyed = !e->bad && request_key(key, e->model, e->user, e->rid);
    model_ref *mr = e->bad ? NULL : models_get(srv->models, e->model, strlen(e->model));
    ds_buf answer, stored;
    ds_buf_init(&answer, (size_t)1 << 30);
    ds_buf_init(&stored, (size_t)1 << 30);
    persist_item *it;
    ds_error err;
    deliver_kind later = DELIVER_NONE;
    int code;
    if (!mr) {
        ds_fail(&err, e->bad ? DS_MALFORMED : DS_NOT_FOUND, e->bad ? "entry" : "table",
                e->bad ? "the request stream entry is damaged" : "no table '%s'", e->model);
        error_body(&answer, &err);
        code = err.code;
        it = noop_item(e);
    } else {
        engine_input in = {.cmd = e->cmd,
                           .cmd_len = e->cmd_len,
                           .user = e->user,
                           .rid = e->rid,
                           .hash = e->hash,
                           .scope_dim = e->scope_dim[0] ? e->scope_dim : NULL,
                           .scope_member = e->scope_member[0] ? e->scope_member : NULL,
                           .ts_ms = e->ts_ms};
        engine_result res;
        engine_submit(mr->engine, &in, &res, &err);
        crash_point("after_apply");
        code = res.code;
        if (res.status == ENGINE_APPLIED) {
            applied(w, e, mr, &res, &answer, &stored, bp);
        } else if (res.status == ENGINE_REFUSED || res.status == ENGINE_REUSED) {
            error_body(&answer, &res.err);
            ds_buf_append(&stored, answer.data, answer.len);
            if (res.status == ENGINE_REFUSED)
                metrics_add(&srv->metrics.commands_refused, 1);
        }
        if (res.status == ENGINE_APPLIED || res.status == ENGINE_REFUSED) {
            it = persist_item_from(e->model, &in, &res, stored.data, stored.len);
            it->cmd = xstrndup(e->cmd, e->cmd_len);
            it->cmd_len = e->cmd_len;
        } else {
            it = noop_item(e);
        }
        if (res.status == ENGINE_DUPLICATE)
            later = DELIVER_STORED; /* the first one's answer, once it is in the database */
        else if (w->ack_persisted && res.status != ENGINE_REUSED)
            later = DELIVER_BODY;
        engine_result_clear(&res);
    }
    if (later == DELIVER_NONE && keyed)
        live_deliver(srv->live, key, code, answer.data, answer.len);
    if (later == DELIVER_BODY) {
        it->answer = xstrndup(answer.data, answer.len);
        it->answer_len = answer.len;
    }
    it->deliver = (int)later;
    /* a replica's entries are the writer's to acknowledge */
    snprintf(it->stream_id, sizeof it->stream_id, "%s", w->follow ? "" : e->id);
    if (later != DELIVER_NONE) /* an answer waits for the COMMIT */
        bp->hurry = true;
    *bp->tail = it; /* to the persister after the events go to the publisher */
    bp->tail = &it->next;
    models_put(srv->models, mr);
    ds_buf_free(&answer);
    ds_buf_free(&stored);
}

/* --redis-replicas N: the batch is applied (and answered) only once N of
 * Redis's replicas have its entries, so that a Redis failover keeps every
 * write a client was told about. Waits at most a third of the lease (the
 * loop must renew it); false when they did not confirm: the entries stay
 * pending and are read again. */
static bool replicated(ds_writer *w, const batch *b)
{
    const char *models[MAX_MODELS];
    int nm = 0;
    for (size_t i = 0; i < b->n; i++) { /* the models read (their nodes, in a cluster) */
        int k = 0;
        while (k < nm && strcmp(models[k], b->e[i].model) != 0)
            k++;
        if (k == nm && nm < MAX_MODELS)
            models[nm++] = b->e[i].model;
    }
    int want = w->srv->o.redis_replicas;
    int64_t t0 = ds_now_ns(), limit = t0 + (int64_t)w->srv->o.lease_ms * 1000000 / 3;
    int acked = -1;
    ds_error err;
    while (bus_wait(w->bus, models, nm, want, 100, &acked, &err) == 0 && acked < want &&
           ds_now_ns() < limit)
        ;
    metrics_observe(&w->srv->metrics.wait_seconds, (double)(ds_now_ns() - t0) / 1e9);
    atomic_store(&w->replicas_acked, acked);
    bool ok = acked >= want;
    if (ok == atomic_exchange(&w->replicas_short, !ok))
        log_warn(ok ? "writer: %d of %d Redis replicas have the writes again (%s)"
                    : "writer: only %d of %d Redis replicas have the writes (--redis-replicas): "
                      "nothing is applied or answered until they do (%s)",
                 acked < 0 ? 0 : acked, want, acked < 0 ? err.message : "WAIT");
    return ok;
}

void writer__process(ds_writer *w, batch *b)
{
    if (b->n == 0)
        return;
    if (!w->follow && w->srv->o.redis_replicas > 0 && !replicated(w, b)) {
        for (size_t i = 0; i < b->n; i++) {
            lease *l = lease_of(w, b->e[i].model);
            if (l)
                atomic_store(&l->reread, true);
        }
        return;
    }
    int64_t t0 = ds_now_ns();
    batch_pub bp = {.n = 0};
    bp.tail = &bp.persist;
    for (size_t i = 0; i < b->n; i++)
        process_entry(w, &b->e[i], &bp);
    metrics_observe(&w->srv->metrics.apply_seconds, (double)(ds_now_ns() - t0) / 1e9);
    metrics_observe(&w->srv->metrics.batch_size, (double)b->n);
    metrics_add(&w->srv->metrics.batches, 1);
    models_notify_applied(w->srv->models); /* reads waiting for a min_seq */
    for (int j = 0; j < bp.n; j++)
        pub_enqueue(w, bp.items[j], true);
    /* The persister's acknowledgements go through the publisher's queue
       too, behind these events: an entry is never acknowledged (XACK)
       before its event is on the response stream, so a standby that takes
       over finds every applied command either there or among the pending
       entries it claims. */
    for (persist_item *it = bp.persist, *next; it; it = next) {
        next = it->next;
        it->next = NULL;
        persist_submit(w->persist, it);
    }
    if (bp.hurry)
        persist_hurry(w->persist);
}

/* ---- recovery ------------------------------------------------------------------------ */

typedef struct republish {
    ds_writer *w;
    ds_bus *bus;
    lease *l;
    bus_event ev[256];
    char *json[256], *rid[256], *user[256], *cmd[256];
    int n;
    int rc;
    int64_t published; /* the last seq on the stream */
} republish;

static void flush_republish(republish *r)
{
    ds_error err;
    if (r->n && r->rc == 0) {
        int64_t epoch = atomic_load(&r->l->epoch); /* 0: the publisher was fenced meanwhile */
        r->rc = epoch ? bus_publish(r->bus, r->l->model, r->w->owner, epoch, r->ev, r->n, NULL, 0,
                                    r->w->srv->o.response_keep, NULL, &err)
                      : ds_fail(&err, DS_UNAVAILABLE, "redis", "the lease is not held");
        if (r->rc == 0)
            r->published = r->ev[r->n - 1].seq;
        else
            log_error("writer: re-publishing events of '%s' failed: %s", r->l->model, err.message);
    }
    for (int i = 0; i < r->n; i++) {
        free(r->json[i]);
        free(r->rid[i]);
        free(r->user[i]);
        free(r->cmd[i]);
    }
    r->n = 0;
}

static void on_unpublished(void *ctx, int64_t seq, const char *rid, const char *user, int64_t ts_ms,
                           const char *event, size_t len, const char *cmd, size_t cmd_len)
{
    republish *r = ctx;
    r->json[r->n] = xstrndup(event, len);
    r->rid[r->n] = xstrdup(rid);
    r->user[r->n] = xstrdup(user);
    r->cmd[r->n] = cmd ? xstrndup(cmd, cmd_len) : NULL;
    r->ev[r->n] = (bus_event){.seq = seq,
                              .request_id = r->rid[r->n],
                              .user = r->user[r->n],
                              .ts_ms = ts_ms,
                              .json = r->json[r->n],
                              .len = len,
                              .cmd = r->cmd[r->n],
                              .cmd_len = cmd ? cmd_len : 0};
    if (++r->n == 256)
        flush_republish(r);
}

static void on_recent(void *ctx, int64_t seq, const char *json, size_t len)
{
    republish *r = ctx;
    live_publish(r->w->srv->live, r->l->model, seq, json, len);
}

typedef struct republish_job {
    republish *r;
    int64_t after;
} republish_job;

static int events_job(ds_store *s, void *arg, ds_error *err)
{
    republish_job *j = arg;
    int rc = store_events_after(s, j->r->l->model, j->after, on_unpublished, j->r, err);
    flush_republish(j->r);
    return rc;
}

/* An applied command's request entry is acknowledged in the script that
 * publishes its event: every event the response stream lacks has its
 * entry still pending, unless Redis lost both (a failover to a replica
 * that had not received them, a Redis restarted without its AOF). Then
 * the writes answered just before, which the database had not committed
 * either, are lost too, and nothing can say which: named in the log,
 * /ready (redis_lost) and the metrics. */
static void lost_entries(ds_writer *w, const char *model, int64_t last, int64_t persisted,
                         int64_t pending)
{
    int64_t lost = persisted - last - pending;
    if (lost <= 0)
        return;
    metrics_add(&w->srv->metrics.redis_lost_events, (uint64_t)lost);
    metrics_add(&w->srv->metrics.redis_lost_entries, (uint64_t)lost);
    pthread_mutex_lock(&w->lock);
    snprintf(w->redis_lost, sizeof w->redis_lost,
             "Redis lost at least %" PRId64 " request entries of '%s' and their events (its "
             "response stream ends at seq %" PRId64 ", the database is at %" PRId64 ", %" PRId64
             " entries pending): a failover to a replica that had not received "
             "them (see --redis-replicas) or a Redis restarted without its append-only file. "
             "The events are published again from the database; writes answered just before "
             "and not in the database are lost: compare the clients' request_ids with "
             "/changes, a retry with the request_id applies one again",
             lost, model, last, persisted, pending);
    log_error("writer: %s", w->redis_lost);
    pthread_mutex_unlock(&w->lock);
}

/* Publishes what the database has and the response stream lacks (through
 * the persister, which owns the database, once it runs), then seeds the
 * live feed from the stream. */
static int recover_events(ds_writer *w, lease *l, int64_t *published, ds_error *err)
{
    int64_t last;
    int rc = bus_last_seq(w->bus, l->model, &last, err);
    if (rc)
        return rc;
    model_ref *mr = models_get(w->srv->models, l->model, strlen(l->model));
    int64_t persisted = mr ? models_persisted(w->srv->models, mr) : -1;
    republish r = {.w = w, .bus = w->bus, .l = l, .published = last};
    if (persisted > last && persisted > 0) {
        log_info("writer: re-publishing events %" PRId64 "..%" PRId64 " of '%s'",
                 last < 0 ? 1 : last + 1, persisted, l->model);
        int64_t others, pending;
        if (bus_pending_others(w->bus, l->model, w->owner, &others, &pending, err) != 0)
            return -DS_UNAVAILABLE;
        lost_entries(w, l->model, last < 0 ? 0 : last, persisted, pending);
        republish_job j = {.r = &r, .after = last};
        rc = w->persist ? persist_run(w->persist, events_job, &j, err)
                        : events_job(w->srv->store, &j, err);
        if (rc == 0 && r.rc)
            rc = ds_fail(err, DS_UNAVAILABLE, "redis", "cannot re-publish events to Redis");
    }
    if (rc == 0)
        rc = bus_recent_events(w->bus, l->model, RECENT_EVENTS, on_recent, &r, err);
    if (mr)
        live_set_seq(w->srv->live, l->model, engine_seq(mr->engine));
    models_put(w->srv->models, mr);
    *published = r.published;
    return rc;
}

/* Re-applies this writer's own pending entries (the engines' ledgers skip
 * what is done: those are answered and acknowledged). */
static int recover_pending(ds_writer *w, const char *const *models, int n, ds_error *err)
{
    for (int i = 0; i < n; i++) {
        char after[48] = "0"; /* each pass goes on after the last entry read */
        for (;;) {
            batch b = {0};
            int got = bus_read(w->bus, w->owner, &models[i], 1, after, w->srv->o.batch_max, 0,
                               collect, &b, err);
            if (got > 0) {
                log_info("writer: re-reading %d pending commands of '%s'", got, models[i]);
                snprintf(after, sizeof after, "%s", b.e[b.n - 1].id);
                writer__process(w, &b);
            }
            writer__batch_clear(&b);
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
 * from the database (once everything applied is in it), pending entries
 * re-read. */
static void recover_lease(ds_writer *w, lease *l)
{
    ds_error err;
    if (atomic_exchange(&l->republish, false)) {
        int64_t published;
        /* events the publisher gave up on are in the persister's queue or in
           the database: all of them in the database first */
        persist_wait_lag(w->persist, 0, 0, 5000);
        if (recover_events(w, l, &published, &err) != 0) {
            log_warn("writer: cannot re-publish the events of '%s' yet: %s", l->model, err.message);
            atomic_store(&l->republish, true);
            return;
        }
        pub_item *it = xcalloc(1, sizeof *it);
        it->l = l;
        it->mark = true;
        it->mark_seq = published;
        pub_enqueue(w, it, true);
        atomic_store(&l->reread, true); /* their entries are pending */
    }
    if (atomic_exchange(&l->reread, false)) {
        const char *m = l->model;
        if (recover_pending(w, &m, 1, &err) != 0)
            atomic_store(&l->reread, true); /* after Redis is back */
    }
}

/* The models served, each with its lease (kept or acquired). */
static int held_models(ds_writer *w, const char **out)
{
    char **names;
    size_t n = models_names(w->srv->models, &names);
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
    const char *models[MAX_MODELS];
    int n = 0;
    for (int attempt = 0; attempt < 100; attempt++) { /* up to ~10 s for Redis and leases */
        char **names;
        size_t total = models_names(w->srv->models, &names);
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
    for (int i = 0; i < n; i++) {
        int64_t published;
        lease *l = lease_of(w, models[i]);
        int rc = recover_events(w, l, &published, err);
        if (rc)
            return rc;
        l->published = published; /* before the publisher sees any item */
    }
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------- */

/* Backpressure: the persister is beyond its bounds; waits a moment for it
 * (true: do not read now). */
bool writer__held_back(ds_writer *w)
{
    int64_t n, age;
    persist_lag(w->persist, &n, &age);
    bool behind = n > w->srv->o.persist_lag_max || age > w->srv->o.persist_lag_ms;
    if (behind != atomic_load(&w->backpressure)) {
        atomic_store(&w->backpressure, behind);
        if (behind)
            log_warn("writer: the persister is %" PRId64 " commands (%" PRId64
                     " ms) behind; reading nothing new until it catches up",
                     n, age);
        else
            log_info("writer: the persister caught up; reading again");
    }
    if (behind) {
        persist_hurry(w->persist);
        persist_wait_lag(w->persist, w->srv->o.persist_lag_max, w->srv->o.persist_lag_ms, 100);
    }
    return behind;
}

/* Entries another consumer read and left pending while this writer holds
 * the lease (a writer that stalled past its lease and read one more batch
 * before it noticed) are claimed and applied here, once they have been
 * idle a lease's length: looked at every lease. */
static void claim_orphans(ds_writer *w, const char *const *models, int n, int64_t *next_ns)
{
    if (ds_now_ns() < *next_ns)
        return;
    *next_ns = ds_now_ns() + (int64_t)w->srv->o.lease_ms * 1000000;
    for (int i = 0; i < n; i++) {
        int64_t others = 0, claimed = 0;
        ds_error err;
        if (bus_pending_others(w->bus, models[i], w->owner, &others, NULL, &err) != 0 ||
            others == 0)
            continue;
        if (bus_claim(w->bus, models[i], w->owner, w->srv->o.lease_ms, &claimed, &err) != 0 ||
            claimed == 0)
            continue;
        log_warn("writer: claimed %" PRId64 " commands of '%s' another writer read and left "
                 "pending; applying them",
                 claimed, models[i]);
        atomic_store(&lease_of(w, models[i])->reread, true);
    }
}

/* Every model's lease is another process's (it took over while this one
 * stalled): this one becomes its standby. What the publisher still holds
 * is dropped: the other writer has those commands (claimed, or on the
 * stream). */
static bool all_foreign(ds_writer *w)
{
    int n = atomic_load(&w->nleases);
    for (int i = 0; i < n; i++)
        if (!atomic_load(&w->leases[i].foreign))
            return false;
    return n > 0;
}

static void demote(ds_writer *w)
{
    log_warn("writer: another process is the writer now; following it as its standby "
             "(taking over again when its lease lapses)");
    publisher_stop(w);
    pthread_mutex_lock(&w->lock);
    pub_item *it = w->pub_head;
    w->pub_head = w->pub_tail = NULL;
    w->pub_n = 0;
    pthread_mutex_unlock(&w->lock);
    for (pub_item *next; it; it = next) {
        next = it->next;
        pub_free(it);
    }
    follow__free(w);
    follow__start(w, false);
    w->standby = true;
    w->follow = true;
}

/* The writer's loop: true when it became a standby, false when stopping. */
static bool writer_loop(ds_writer *w)
{
    ds_thread_name("ds-writer");
    batch b = {0};
    int64_t next_claim = 0;
    bool demoted = false, read_down = false; /* said "Redis unavailable" */
    for (;;) {
        pthread_mutex_lock(&w->lock);
        bool stop = w->stop;
        pthread_mutex_unlock(&w->lock);
        if (stop)
            break;
        const char *models[MAX_MODELS];
        int n = held_models(w, models);
        if (n == 0 && all_foreign(w)) {
            demote(w);
            demoted = true;
            break;
        }
        claim_orphans(w, models, n, &next_claim);
        bool pending_first = false;
        for (int i = 0; i < n; i++) {
            lease *l = lease_of(w, models[i]);
            recover_lease(w, l);
            pending_first |= atomic_load(&l->reread);
        }
        if (pending_first) { /* its pending entries could not be applied yet
                                (Redis, --redis-replicas): nothing newer before them */
            struct timespec t = {0, 20 * 1000 * 1000};
            nanosleep(&t, NULL);
            continue;
        }
        if (n && writer__held_back(w))
            continue;
        ds_error err;
        int got = n ? bus_read(w->bus, w->owner, models, n, NULL, w->srv->o.batch_max, 50, collect,
                               &b, &err)
                    : -DS_UNAVAILABLE;
        if (got < 0) {
            /* the read may have reached Redis and its reply be lost: those
               entries are pending for us, read them first next time */
            for (int i = 0; i < n; i++)
                atomic_store(&lease_of(w, models[i])->reread, true);
            if (!read_down && n)
                log_warn("writer: Redis unavailable: %s", err.message);
            read_down |= n > 0;
            w->srv->redis_up = 0;
            struct timespec t = {0, 100 * 1000 * 1000};
            nanosleep(&t, NULL);
            continue;
        }
        if (read_down) /* (the publisher's failures say so themselves) */
            log_info("writer: Redis is back");
        read_down = false;
        w->srv->redis_up = 1;
        atomic_store(&w->reading_lag, (int64_t)b.n);
        writer__process(w, &b);
        writer__batch_clear(&b);
        atomic_store(&w->reading_lag, 0);
    }
    free(b.e);
    return demoted;
}

/* The thread: the writer's loop, or the follower's (a replica, a standby);
 * a standby that takes over and a writer fenced by another switch. */
static void *writer_main(void *arg)
{
    ds_writer *w = arg;
    while (w->follow ? follow__loop(w) : writer_loop(w))
        ;
    pthread_mutex_lock(&w->lock);
    w->alive = false;
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* ---- a standby takes over ----------------------------------------------------------- */

/* A writer (re)starting while another process holds a model's lease (it
 * took over when this one died or stalled): this one starts as its
 * standby. Redis out of reach is no answer: recovery retries then. */
static bool foreign_lease(ds_writer *w)
{
    char **names;
    size_t n = models_names(w->srv->models, &names);
    bool foreign = false;
    for (size_t i = 0; i < n; i++) {
        char owner[256];
        ds_error err;
        if (!foreign && bus_lease_owner(w->bus, names[i], owner, sizeof owner, &err) == 0 &&
            owner[0] && strcmp(owner, w->owner) != 0) {
            log_warn("writer: %s holds the lease of '%s': starting as its standby (following "
                     "it, and taking over when its lease lapses)",
                     owner, names[i]);
            foreign = true;
        }
        free(names[i]);
    }
    free(names);
    return foreign;
}

bool writer__promote(ds_writer *w)
{
    ds_error err;
    const char *models[MAX_MODELS];
    int n = 0;
    /* the leases first: whoever else takes one meanwhile (the old writer
       back, another standby) keeps it, and this process stays a standby */
    for (int i = 0; i < w->nfm; i++) {
        lease *l = lease_of(w, w->fm[i].model);
        if (!l || take_lease(w, w->bus, l, atomic_load(&l->epoch)) != LEASE_HELD) {
            log_warn("standby: could not take the lease of '%s'; staying a standby",
                     w->fm[i].model);
            for (int k = 0; k < n; k++) { /* let go of what was taken */
                lease *t = lease_of(w, models[k]);
                atomic_store(&t->epoch, 0);
            }
            return false;
        }
        l->renewed_ns = ds_now_ns();
        models[n++] = l->model;
    }
    if (!w->pub_bus && bus_open(&w->srv->bus, &w->pub_bus, &err) != 0) {
        log_error("standby: %s", err.message);
        return false;
    }
    for (int i = 0; i < n; i++) {
        lease *l = lease_of(w, models[i]);
        int64_t claimed = 0, last = -1;
        /* what the old writer read and did not acknowledge: applied and
           published (the ledger answers them), applied and not published,
           or not applied; all are applied here in stream order */
        if (bus_claim(w->bus, l->model, w->owner, 0, &claimed, &err) != 0 ||
            bus_last_seq(w->bus, l->model, &last, &err) != 0) {
            log_error("standby: taking over '%s': %s", l->model, err.message);
            return false;
        }
        l->published = last;
        log_info("standby: holds the lease of '%s' (epoch %" PRId64 "); %" PRId64
                 " pending commands claimed; the stream is at seq %" PRId64,
                 l->model, atomic_load(&l->epoch), claimed, last);
    }
    w->follow = false;
    pthread_mutex_lock(&w->lock);
    w->pub_stop = false;
    pthread_mutex_unlock(&w->lock);
    if (pthread_create(&w->pub_thread, NULL, publisher_main, w) != 0) {
        log_error("standby: cannot start the publisher thread");
        w->follow = true;
        return false;
    }
    w->pub_started = true;
    atomic_store(&w->started, true);
    if (recover_pending(w, models, n, &err) != 0) {
        log_warn("standby: re-reading the pending commands: %s (again once Redis answers)",
                 err.message);
        for (int i = 0; i < n; i++)
            atomic_store(&lease_of(w, models[i])->reread, true);
    }
    log_info("standby: now the writer of %d model%s", n, n == 1 ? "" : "s");
    return true;
}

int writer_start(ds_server *srv, ds_writer **out, ds_error *err)
{
    ds_writer *w = xcalloc(1, sizeof *w);
    w->srv = srv;
    w->ack_persisted = srv->o.ack_persisted;
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->lease_lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    pthread_cond_init(&w->pub_cond, NULL);
    pthread_cond_init(&w->pub_room, NULL);
    atomic_init(&w->started, false);
    atomic_init(&w->nleases, 0);
    atomic_init(&w->reading_lag, 0);
    atomic_init(&w->backpressure, false);
    atomic_init(&w->replicas_acked, -1);
    atomic_init(&w->replicas_short, false);
    if (srv->o.owner)
        snprintf(w->owner, sizeof w->owner, "%s", srv->o.owner);
    else {
        char host[128] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(w->owner, sizeof w->owner, "%s:%s", host, srv->o.data_dir);
    }
    w->follow = srv->o.replica || srv->o.standby;
    w->standby = srv->o.standby;
    int rc = bus_open(&srv->bus, &w->bus, err);
    if (rc == 0 && !w->follow && foreign_lease(w)) { /* fenced: the writer is another */
        w->follow = true;
        w->standby = true;
    }
    if (rc == 0 && !w->follow)
        rc = bus_open(&srv->bus, &w->pub_bus, err);
    if (rc == 0 && w->follow)
        follow__start(w, true);
    else if (rc == 0) /* events, before the publisher and the persister run */
        rc = recover(w, err);
    if (rc == 0 && !(w->stored = store_reader_new(srv->store)))
        rc = ds_fail(err, DS_INTERNAL, NULL, "cannot open a database connection");
    if (rc == 0) {
        persist_opts po;
        persist_opts_default(&po);
        if (srv->o.bench_baseline) { /* the original design: a transaction per command */
            po.group_max = 1;
            po.materialize_views = true;
        }
        /* answers waiting for the COMMIT do not wait for an interval too */
        po.interval_ms = w->ack_persisted ? 0 : srv->o.persist_interval_ms;
        po.retention_ms = srv->engine_opts.retention_ms;
        rc = persist_start(srv->store, &po, writer__on_persisted, w, &w->persist, err);
    }
    if (rc == 0 && !w->follow) {
        if (pthread_create(&w->pub_thread, NULL, publisher_main, w) != 0)
            rc = ds_fail(err, DS_INTERNAL, NULL, "cannot start the publisher thread");
        w->pub_started = rc == 0;
    }
    if (rc == 0 && !w->follow) {
        const char *models[MAX_MODELS];
        int n = held_models(w, models);
        rc = recover_pending(w, models, n, err);
    }
    if (rc == 0) {
        atomic_store(&w->started, true);
        w->alive = true;
        srv->redis_up = 1;
        if (pthread_create(&w->thread, NULL, writer_main, w) != 0)
            rc = ds_fail(err, DS_INTERNAL, NULL, "cannot start the writer thread");
    }
    if (rc) {
        persist_free(w->persist);
        publisher_stop(w);
        store_reader_free(w->stored);
        bus_close(w->bus);
        bus_close(w->pub_bus);
        follow__free(w);
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
    bool was = w->stop;
    w->stop = true;
    pthread_mutex_unlock(&w->lock);
    if (was)
        return;
    pthread_join(w->thread, NULL);
    /* everything applied goes to the database (its acknowledgements to the
       publisher), then the publisher sends what it holds */
    persist_stop(w->persist, 5000);
    publisher_stop(w);
}

void writer_free(ds_writer *w)
{
    if (!w)
        return;
    writer_stop(w);
    persist_free(w->persist);
    for (int i = 0; i < atomic_load(&w->nleases); i++)
        free(w->leases[i].model);
    for (pub_item *it = w->pub_head, *next; it; it = next) {
        next = it->next;
        pub_free(it);
    }
    store_reader_free(w->stored);
    bus_close(w->bus);
    bus_close(w->pub_bus);
    follow__free(w);
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

void writer_get_stats(ds_writer *w, writer_stats *s)
{
    memset(s, 0, sizeof *s);
    if (!w)
        return;
    s->reading_lag = atomic_load(&w->reading_lag);
    s->backpressure = atomic_load(&w->backpressure);
    persist_lag(w->persist, &s->persist_lag, &s->persist_lag_ms);
    s->persist_failing = persist_failed(w->persist, &s->persist_why);
    persist_get_stats(w->persist, &s->persist);
}

bool writer_redis_lost(ds_writer *w, char *why, size_t cap)
{
    if (!w)
        return false;
    pthread_mutex_lock(&w->lock);
    bool lost = w->redis_lost[0] != '\0';
    snprintf(why, cap, "%s", w->redis_lost);
    pthread_mutex_unlock(&w->lock);
    return lost;
}

void writer_replicas(ds_writer *w, int *acked, bool *shortfall)
{
    *acked = w ? atomic_load(&w->replicas_acked) : -1;
    *shortfall = w && atomic_load(&w->replicas_short);
}

bool writer_lease_foreign(ds_writer *w, const char *model)
{
    if (!w || w->follow)
        return false;
    int n = atomic_load(&w->nleases);
    for (int i = 0; i < n; i++)
        if (strcmp(w->leases[i].model, model) == 0)
            return atomic_load(&w->leases[i].foreign);
    return false;
}

void writer_hurry(ds_writer *w)
{
    if (w)
        persist_hurry(w->persist);
}

/* ---- models ------------------------------------------------------------------------- */

static int create_job(ds_store *s, void *arg, ds_error *err)
{
    return store_model_create(s, arg, err);
}

int writer_create_model(ds_writer *w, const ds_model *def, ds_error *err)
{
    if (!w || !writer_alive(w))
        return ds_fail(err, DS_UNAVAILABLE, NULL, "the writer is not running");
    model_ref *had = models_get(w->srv->models, def->name, strlen(def->name));
    models_put(w->srv->models, had);
    if (had)
        return ds_fail(err, DS_INVALID_VALUE, "name", "a table named '%s' exists", def->name);
    int rc = persist_run(w->persist, create_job, (void *)def, err);
    if (rc)
        return rc;
    ds_engine *e = engine_new(def, 0, &w->srv->engine_opts);
    if ((rc = engine_load_done(e, err))) {
        engine_free(e);
        return rc;
    }
    models_add(w->srv->models, def->name, e, 0);
    live_set_seq(w->srv->live, def->name, 0);
    return 0;
}

static int drop_job(ds_store *s, void *arg, ds_error *err)
{
    return store_model_drop(s, arg, err);
}

int writer_drop_model(ds_writer *w, const char *name, ds_error *err)
{
    if (!w || !writer_alive(w))
        return ds_fail(err, DS_UNAVAILABLE, NULL, "the writer is not running");
    if (!models_remove(w->srv->models, name))
        return ds_fail(err, DS_NOT_FOUND, "table", "no table '%s'", name);
    grids_forget(w->srv->grids, name);
    live_forget(w->srv->live, name);
    /* what is queued for it is skipped by the persister once it is gone */
    return persist_run(w->persist, drop_job, (void *)name, err);
}

ds_persist *writer_persister(ds_writer *w)
{
    return w ? w->persist : NULL;
}
