/* follow.c: a read replica's follower (duckspread replica). The writer
 * publishes every applied command on {m}:response_duck with its seq, the
 * request's user, request_id and time, and its canonical form; the
 * follower reads that stream (XREAD, no consumer group: a replica changes
 * nothing in Redis) and applies each command through the same engine, in
 * seq order, so the replica's state at a seq is the writer's at that seq
 * (the engine is deterministic). Everything after the engine is the
 * writer's path (writer__process): the live feed, the grid subscriptions,
 * and the replica's own persister, which writes its DuckDB file.
 *
 * A replica never serves a state that will not move: when the stream no
 * longer holds the next seq (trimmed past it: the replica was too far
 * behind) or the engine does not apply a command at the seq the writer
 * did, the model is stalled: reads of it answer 503 saying why, /ready is
 * 503, and a newer backup is the way on. */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "models.h"
#include "writer.h"
#include "writer_internal.h"

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static struct follow_model *fm_of(ds_writer *w, const char *model)
{
    for (int i = 0; i < w->nfm; i++)
        if (strcmp(w->fm[i].model, model) == 0)
            return &w->fm[i];
    return NULL;
}

static void stall(ds_writer *w, struct follow_model *fm, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stall(ds_writer *w, struct follow_model *fm, const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    atomic_store(&fm->stalled, true);
    log_error("replica: %s", why);
    model_ref *mr = models_get(w->srv->models, fm->model, strlen(fm->model));
    if (mr)
        models_set_stalled(w->srv->models, mr, why);
    models_put(w->srv->models, mr);
}

static int64_t applied_seq(ds_writer *w, const char *model)
{
    model_ref *mr = models_get(w->srv->models, model, strlen(model));
    int64_t seq = mr ? engine_seq(mr->engine) : -1;
    models_put(w->srv->models, mr);
    return seq;
}

static void too_far(ds_writer *w, struct follow_model *fm, int64_t at, int64_t first)
{
    stall(w, fm,
          "the replica of '%s' is at seq %" PRId64 " but the writer's response stream "
          "now starts at seq %" PRId64 " (the writer keeps its last --response-keep "
          "commands): it cannot catch up; start a replica from a newer backup (duckspread "
          "backup on the writer, then duckspread replica --from that file into a new "
          "directory)",
          fm->model, at, first);
}

/* An entry of the response stream as the writer's entry: the command,
 * who sent it and when, and the seq the writer applied it at. */
static void collect_applied(void *ctx, const bus_entry *be)
{
    entry *e = writer__batch_push(ctx);
    bool ok = writer__entry_from(e, be);
    size_t len, slen, tlen;
    const char *seq = writer__field(be, "seq", &slen), *ts = writer__field(be, "ts", &tlen);
    const char *cmd = writer__field(be, "cmd", &len);
    e->seq = seq ? strtoll(seq, NULL, 10) : -1;
    e->ts_ms = ts ? strtoll(ts, NULL, 10) : 0;
    e->cmd = cmd && len ? xstrndup(cmd, len) : NULL;
    e->cmd_len = e->cmd ? len : 0;
    if (e->cmd) { /* the ledger keeps the canonical form's hash, as the writer's did */
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        EVP_Digest(e->cmd, e->cmd_len, md, &mdlen, EVP_sha256(), NULL);
        for (unsigned i = 0; i < mdlen && i < 32; i++)
            snprintf(e->hash + 2 * i, 3, "%02x", md[i]);
    }
    e->detail = DETAIL_LEAVES;
    e->bad = !ok || !e->cmd || !e->rid[0] || !e->user[0] || e->seq < 1 || e->ts_ms <= 0;
}

/* Finds where each model's commands after its seq start on the stream. */
static int position(ds_writer *w, ds_error *err)
{
    for (int i = 0; i < w->nfm; i++) {
        struct follow_model *fm = &w->fm[i];
        if (fm->positioned || atomic_load(&fm->stalled))
            continue;
        int64_t at = applied_seq(w, fm->model), first, last;
        int rc = bus_seek(w->bus, fm->model, at, fm->after, sizeof fm->after, &first, &last, err);
        if (rc)
            return rc;
        fm->positioned = true;
        atomic_store(&fm->stream_seq, last > at ? last : at);
        if (first > at + 1) {
            too_far(w, fm, at, first);
            continue;
        }
        log_info("replica: following '%s' from seq %" PRId64 " (the writer's stream holds %" PRId64
                 "..%" PRId64 ")",
                 fm->model, at, first, last);
    }
    return 0;
}

/* Whether this engine applied the writer's command of e->seq: its
 * ledger has the request at that seq. A request it does not remember is
 * a command it never applied, unless the ledger forgot some early (its
 * --request-id-max), which proves nothing. */
static bool same_command(ds_writer *w, const entry *e)
{
    model_ref *mr = models_get(w->srv->models, e->model, strlen(e->model));
    if (!mr)
        return true;
    engine_request q;
    bool known = engine_request_get(mr->engine, e->user, e->rid, &q);
    engine_stats st = {0};
    if (!known)
        engine_get_stats(mr->engine, &st);
    models_put(w->srv->models, mr);
    return known ? q.seq == e->seq : st.ledger_evicted > 0;
}

/* Keeps the entries that come next for their model, in order: those the
 * replica has are skipped; a gap stalls the model. */
static void filter(ds_writer *w, batch *in, batch *out)
{
    for (int i = 0; i < w->nfm; i++) {
        w->fm[i].next = applied_seq(w, w->fm[i].model) + 1;
        w->fm[i].touched = false;
    }
    for (size_t i = 0; i < in->n; i++) {
        entry *e = &in->e[i];
        struct follow_model *fm = fm_of(w, e->model);
        if (!fm || atomic_load(&fm->stalled))
            continue;
        snprintf(fm->after, sizeof fm->after, "%s", e->id);
        if (e->seq > atomic_load(&fm->stream_seq))
            atomic_store(&fm->stream_seq, e->seq);
        if (e->bad) {
            stall(w, fm,
                  "entry %s of the writer's response stream of '%s' lacks what a replica needs "
                  "(seq, user, rid, ts, cmd): the writer runs an older duckspread; upgrade it",
                  e->id, e->model);
            continue;
        }
        if (e->seq < fm->next) { /* one this engine has: it must be the same command */
            if (!same_command(w, e)) {
                stall(w, fm,
                      "the replica of '%s' holds another command at seq %" PRId64
                      " than the writer's (request %s of %s): this database diverged from "
                      "the writer's (a writer that went on after its lease was taken?); "
                      "start it again from a new backup",
                      e->model, e->seq, e->rid, e->user);
            }
            continue;
        }
        if (e->seq > fm->next) {
            too_far(w, fm, fm->next - 1, e->seq);
            continue;
        }
        fm->next++;
        fm->touched = true;
        *writer__batch_push(out) = *e;
        e->cmd = NULL; /* moved */
    }
}

/* After a batch: every model must be at the seq the writer was. */
static void check_applied(ds_writer *w, const batch *b)
{
    int64_t now = wall_ms();
    for (size_t i = 0; i < b->n; i++) {
        const entry *e = &b->e[i];
        double lag = (double)(now - strtoll(e->id, NULL, 10));
        metrics_observe(&w->srv->metrics.replica_lag_seconds, lag > 0 ? lag / 1000 : 0);
    }
    for (int i = 0; i < w->nfm; i++) {
        struct follow_model *fm = &w->fm[i];
        if (!fm->touched || atomic_load(&fm->stalled))
            continue;
        int64_t at = applied_seq(w, fm->model);
        if (at != fm->next - 1) {
            stall(w, fm,
                  "the replica of '%s' diverged from the writer: the writer applied seq %" PRId64
                  " but this engine is at %" PRId64
                  "; start a replica from a new backup, and report this as a bug",
                  fm->model, fm->next - 1, at);
            continue;
        }
        for (size_t k = b->n; k-- > 0;)
            if (strcmp(b->e[k].model, fm->model) == 0) {
                atomic_store(&fm->lag_ms, now - strtoll(b->e[k].id, NULL, 10));
                break;
            }
    }
}

static void idle(int ms)
{
    struct timespec t = {0, (long)ms * 1000000};
    nanosleep(&t, NULL);
}

static bool stopping(ds_writer *w)
{
    pthread_mutex_lock(&w->lock);
    bool stop = w->stop;
    pthread_mutex_unlock(&w->lock);
    return stop;
}

/* The lease holder's name, for the answer to a write sent to a replica. */
static void refresh_writer(ds_writer *w, int64_t *next_ns)
{
    if (ds_now_ns() < *next_ns || w->nfm == 0)
        return;
    *next_ns = ds_now_ns() + 1000000000;
    char owner[256];
    ds_error err;
    if (bus_lease_owner(w->bus, w->fm[0].model, owner, sizeof owner, &err) == 0) {
        pthread_mutex_lock(&w->lock);
        snprintf(w->writer_name, sizeof w->writer_name, "%s", owner);
        pthread_mutex_unlock(&w->lock);
    }
}

/* One read of the writer's streams and what it brings, applied (block_ms
 * 0: no wait). Returns the entries read, or -code when Redis did not
 * answer. */
static int step(ds_writer *w, int block_ms, batch *in, batch *out)
{
    ds_error err;
    const char *models[MAX_MODELS], *after[MAX_MODELS];
    int n = 0;
    int rc = position(w, &err);
    for (int i = 0; rc == 0 && i < w->nfm; i++)
        if (w->fm[i].positioned && !atomic_load(&w->fm[i].stalled)) {
            models[n] = w->fm[i].model;
            after[n++] = w->fm[i].after;
        }
    if (rc == 0 && n == 0) { /* nothing to follow: stalled, or no model */
        if (block_ms)
            idle(100);
        return 0;
    }
    int got = rc ? rc
                 : bus_follow(w->bus, models, after, n, w->srv->o.batch_max, block_ms,
                              collect_applied, in, &err);
    if (got < 0) {
        if (!w->follow_down)
            log_warn("replica: Redis unavailable: %s", err.message);
        w->follow_down = true;
        w->srv->redis_up = 0;
        writer__batch_clear(in);
        return got;
    }
    if (w->follow_down)
        log_info("replica: Redis is back");
    w->follow_down = false;
    w->srv->redis_up = 1;
    if (got == 0) /* caught up */
        for (int i = 0; i < w->nfm; i++)
            if (!atomic_load(&w->fm[i].stalled))
                atomic_store(&w->fm[i].stream_seq, applied_seq(w, w->fm[i].model));
    filter(w, in, out);
    atomic_store(&w->reading_lag, (int64_t)out->n);
    writer__process(w, out);
    check_applied(w, out);
    atomic_store(&w->reading_lag, 0);
    writer__batch_clear(in);
    writer__batch_clear(out);
    return got;
}

/* A standby: true when some model's lease has lapsed (nobody holds it). */
static bool lease_lapsed(ds_writer *w, int64_t *next_ns)
{
    if (!w->standby || ds_now_ns() < *next_ns)
        return false;
    *next_ns = ds_now_ns() + (int64_t)w->srv->o.lease_ms * 1000000 / 5;
    for (int i = 0; i < w->nfm; i++) {
        char owner[256];
        ds_error err;
        if (bus_lease_owner(w->bus, w->fm[i].model, owner, sizeof owner, &err) == 0 && !owner[0]) {
            log_warn("standby: the writer's lease of '%s' lapsed; taking over", w->fm[i].model);
            return true;
        }
    }
    return false;
}

/* A standby about to take over: everything the old writer published is
 * applied here first. False when it cannot be (Redis, a stalled model). */
static bool catch_up(ds_writer *w, batch *in, batch *out)
{
    int got;
    while ((got = step(w, 0, in, out)) > 0)
        ;
    if (got < 0)
        return false;
    for (int i = 0; i < w->nfm; i++)
        if (atomic_load(&w->fm[i].stalled)) {
            log_error("standby: cannot take over: '%s' is stalled (see /ready)", w->fm[i].model);
            return false;
        }
    return true;
}

bool follow__loop(ds_writer *w)
{
    ds_thread_name("ds-follower");
    batch in = {0}, out = {0};
    int64_t next_name = 0, next_lease = 0;
    bool promoted = false;
    while (!stopping(w)) {
        refresh_writer(w, &next_name);
        if (lease_lapsed(w, &next_lease) && catch_up(w, &in, &out) && writer__promote(w)) {
            promoted = true;
            break;
        }
        if (step(w, 50, &in, &out) < 0)
            idle(100);
    }
    free(in.e);
    free(out.e);
    return promoted;
}

/* Seeds a model's live feed with the stream's events up to its seq. */
typedef struct seeding {
    ds_writer *w;
    const char *model;
    int64_t upto;
} seeding;

static void on_recent(void *ctx, int64_t seq, const char *json, size_t len)
{
    seeding *s = ctx;
    if (seq <= s->upto)
        live_publish(s->w->srv->live, s->model, seq, json, len);
}

void follow__start(ds_writer *w, bool seed)
{
    char **names;
    size_t n = models_names(w->srv->models, &names);
    w->fm = xcalloc(n ? n : 1, sizeof *w->fm);
    for (size_t i = 0; i < n; i++) {
        if (w->nfm < MAX_MODELS) {
            struct follow_model *fm = &w->fm[w->nfm++];
            snprintf(fm->model, sizeof fm->model, "%s", names[i]);
            atomic_init(&fm->stalled, false);
            atomic_init(&fm->stream_seq, -1);
            atomic_init(&fm->lag_ms, 0);
            seeding s = {.w = w, .model = fm->model, .upto = applied_seq(w, fm->model)};
            ds_error e;
            if (seed && bus_recent_events(w->bus, fm->model, RECENT_EVENTS, on_recent, &s, &e))
                log_warn("replica: the live feed of '%s' starts empty: %s", fm->model, e.message);
            if (seed)
                live_set_seq(w->srv->live, fm->model, s.upto);
        } else {
            log_error("replica: follows at most %d models; '%s' is not followed", MAX_MODELS,
                      names[i]);
        }
        free(names[i]);
    }
    free(names);
}

void follow__free(ds_writer *w)
{
    free(w->fm);
    w->fm = NULL;
    w->nfm = 0;
}

int writer_replica_stats(ds_writer *w, replica_stats *out, int max)
{
    if (!w || !w->follow)
        return 0;
    int k = 0;
    for (int i = 0; i < w->nfm && k < max; i++) {
        replica_stats *s = &out[k++];
        snprintf(s->model, sizeof s->model, "%s", w->fm[i].model);
        s->applied = applied_seq(w, w->fm[i].model);
        s->stream = atomic_load(&w->fm[i].stream_seq);
        if (s->stream < s->applied)
            s->stream = s->applied;
        s->lag_ms = atomic_load(&w->fm[i].lag_ms);
        s->stalled = atomic_load(&w->fm[i].stalled);
    }
    return k;
}

bool writer_follows(ds_writer *w)
{
    return w && w->follow;
}

void writer_writer_name(ds_writer *w, char *out, size_t cap)
{
    out[0] = '\0';
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    snprintf(out, cap, "%s", w->writer_name);
    pthread_mutex_unlock(&w->lock);
}
