/* bus_read.c: the reads of the streams (see bus.h): the writer's
 * XREADGROUP of its request streams (new entries, or its pending ones
 * again) and a replica's XREAD of the response streams. In a Redis
 * Cluster new entries are read over one lane per model (below). */
#include "bus_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Calls fn for each entry of one stream's reply [key, [[id, [f, v, ...]]...]]. */
static int each_entry(redisReply *s, const char *model, bus_entry_fn fn, void *ctx)
{
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
        s->element[1]->type != REDIS_REPLY_ARRAY)
        return 0;
    int count = 0;
    bus_field fields[16];
    for (size_t i = 0; i < s->element[1]->elements; i++) {
        redisReply *e = s->element[1]->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
            continue;
        bus_entry ent = {.model = model, .id = e->element[0]->str, .fields = fields};
        redisReply *kv = e->element[1];
        if (kv->type == REDIS_REPLY_ARRAY)
            for (size_t j = 0; j + 1 < kv->elements && ent.nfields < 16; j += 2)
                fields[ent.nfields++] = (bus_field){.name = kv->element[j]->str,
                                                    .value = kv->element[j + 1]->str,
                                                    .len = kv->element[j + 1]->len};
        fn(ctx, &ent); /* nfields 0: the entry was trimmed away */
        count++;
    }
    return count;
}

enum { MAX_READ_MODELS = 64 };

/* A read: XREADGROUP (group, after pending_after or new with ">") or
 * XREAD (after_ids), of some models' streams. */
typedef struct read_args {
    bool group;
    const char *consumer, *pending_after; /* group */
    const char *const *after_ids;         /* XREAD */
    int count;
} read_args;

/* The argv of one XREADGROUP or XREAD of models[0..n) (keys: their stream
 * keys, the caller's), waiting up to block_ms; routes the bus to their
 * slot. Returns argc. */
typedef struct read_cmd {
    const char *argv[8 + 2 * MAX_READ_MODELS];
    size_t lens[8 + 2 * MAX_READ_MODELS];
    char count[16], block[16];
    int argc;
} read_cmd;

static void read_argv(ds_bus *b, const read_args *a, const char *const *models,
                      const char *const *after, int n, char (*keys)[300], int block_ms, read_cmd *c)
{
    int argc = 0;
    snprintf(c->count, sizeof c->count, "%d", a->count);
    snprintf(c->block, sizeof c->block, "%d", block_ms);
    c->argv[argc++] = a->group ? "XREADGROUP" : "XREAD";
    if (a->group) {
        c->argv[argc++] = "GROUP";
        c->argv[argc++] = "writers";
        c->argv[argc++] = a->consumer;
    }
    c->argv[argc++] = "COUNT";
    c->argv[argc++] = c->count;
    if (block_ms > 0) {
        c->argv[argc++] = "BLOCK";
        c->argv[argc++] = c->block;
    }
    c->argv[argc++] = "STREAMS";
    for (int i = 0; i < n; i++) {
        bus__model_key(b, keys[i], sizeof keys[i], models[i],
                       a->group ? "request_duck" : "response_duck");
        c->argv[argc++] = keys[i];
    }
    for (int i = 0; i < n; i++)
        c->argv[argc++] = after[i];
    for (int i = 0; i < argc; i++)
        c->lens[i] = strlen(c->argv[i]);
    c->argc = argc;
}

/* One XREADGROUP or XREAD of models[0..n), waiting up to block_ms. The
 * reply (an array of streams, or nil), or NULL with err set. */
static redisReply *read_once(ds_bus *b, const read_args *a, const char *const *models,
                             const char *const *after, int n, char (*keys)[300], int block_ms,
                             ds_error *err)
{
    read_cmd c;
    read_argv(b, a, models, after, n, keys, block_ms, &c);
    redisReply *r = bus__roundtrip(b, c.argc, c.argv, c.lens, block_ms, err);
    if (r && r->type == REDIS_REPLY_ERROR) {
        bus__reply_error(r, c.argv[0], err);
        return NULL;
    }
    return r;
}

/* Calls fn for every entry of a read's reply, model by model; frees it.
 * Returns how many. */
static int deliver(redisReply *r, char (*keys)[300], const char *const *models, int nmodels,
                   bus_entry_fn fn, void *ctx)
{
    int total = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *s = r->element[i];
        const char *model = NULL;
        for (int k = 0; k < nmodels && s->type == REDIS_REPLY_ARRAY && s->elements == 2; k++)
            if (strcmp(keys[k], s->element[0]->str) == 0)
                model = models[k];
        if (model)
            total += each_entry(s, model, fn, ctx);
    }
    freeReplyObject(r);
    return total;
}

/* ---- a cluster's lanes ---------------------------------------------------- */

/* In a cluster, new entries are read over one lane per model: a bus of its
 * own whose read may stay in flight from one call to the next. A call
 * sends a read (BLOCK block_ms) on every lane of its models that has none
 * in flight, then waits until one answers or block_ms passes; a write to
 * any model wakes the call at once (Redis blocks a client on one slot's
 * streams only, and times a BLOCK out at its hz, 100 ms by default, so a
 * short BLOCK per model in turn would not do). A read left in flight is
 * answered at a later call, before anything newer of its model, so the
 * order of a model's entries holds. */
struct bus_lane {
    char model[DS_LANE_MODEL];
    ds_bus *bus;
    bool inflight, group;
    int64_t deadline; /* in flight: when an answer is overdue */
    int ask;          /* the node an ASK named: the next read goes there once, after
                         ASKING (-1: none) */
};

void bus__lanes_free(ds_bus *b)
{
    for (int i = 0; i < b->nlanes; i++) {
        bus_close(b->lanes[i]->bus);
        free(b->lanes[i]);
    }
    free(b->lanes);
    b->lanes = NULL;
    b->nlanes = 0;
}

static bus_lane *lane_of(ds_bus *b, const char *model, bool group, ds_error *err)
{
    for (int i = 0; i < b->nlanes; i++) {
        bus_lane *ln = b->lanes[i];
        if (strcmp(ln->model, model) != 0)
            continue;
        if (ln->inflight && ln->group != group) { /* a standby promoted, a writer fenced */
            bus__disconnect(ln->bus);
            ln->inflight = false;
        }
        return ln;
    }
    if (strlen(model) >= DS_LANE_MODEL) {
        ds_fail(err, DS_INTERNAL, NULL, "a model name is too long for a lane");
        return NULL;
    }
    ds_bus *lb;
    if (bus_open(&b->o, &lb, err))
        return NULL;
    /* each lane its own allocation: a caller holds pointers to several */
    b->lanes = xrealloc(b->lanes, (size_t)(b->nlanes + 1) * sizeof *b->lanes);
    bus_lane *ln = b->lanes[b->nlanes++] = xcalloc(1, sizeof *ln);
    ln->bus = lb;
    ln->ask = -1;
    snprintf(ln->model, sizeof ln->model, "%s", model);
    return ln;
}

/* Sends a lane's read; it is in flight then. */
static int lane_send(bus_lane *ln, const read_args *a, const char *after, int block_ms,
                     ds_error *err)
{
    ds_bus *lb = ln->bus;
    char key[1][300];
    const char *m = ln->model;
    read_cmd c;
    read_argv(lb, a, &m, &after, 1, key, block_ms, &c);
    bool fresh;
    lb->force_node = ln->ask; /* a slot being migrated: its stream is there now */
    int crc = bus__connect(lb, &fresh, err);
    lb->force_node = -1;
    if (crc)
        return -DS_UNAVAILABLE;
    if (ln->ask >= 0) {
        ln->ask = -1;
        const char *asking[] = {"ASKING"};
        size_t al[] = {6};
        redisReply *r = bus__exchange(lb, 1, asking, al, 0, err);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (r && !ok)
            ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s refused ASKING: %s", lb->where,
                    r->str);
        if (r)
            freeReplyObject(r);
        if (!ok) {
            if (!r)
                bus__disconnect(lb);
            return -DS_UNAVAILABLE;
        }
    }
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, c.argc, c.argv, c.lens);
    if (n < 0)
        return ds_fail(err, DS_INTERNAL, NULL, "cannot format a Redis command");
    int rc = bus__send_all(lb, cmd, (size_t)n, bus__deadline(lb->o.io_timeout_ms));
    redisFreeCommand(cmd);
    if (rc) {
        bus__disconnect(lb);
        return ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s did not take a read", lb->where);
    }
    ln->inflight = true;
    ln->group = a->group;
    ln->deadline = bus__deadline(block_ms + lb->o.io_timeout_ms);
    return 0;
}

/* A lane's answer (its read no longer in flight): the reply to deliver,
 * or NULL with *rc 0 (nothing, or a redirect: sent again next time) or
 * -code. */
static redisReply *lane_answer(bus_lane *ln, int *rc, ds_error *err)
{
    ds_bus *lb = ln->bus;
    ln->inflight = false;
    *rc = 0;
    redisReply *r = bus__recv_reply(lb, ln->deadline);
    if (!r) {
        bus__disconnect(lb);
        *rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s did not answer a read", lb->where);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        int k = bus__cluster_redirect(lb, r);
        if (k) { /* MOVED: the map knows the new node; ASK: that node, once */
            ln->ask = k == 2 ? lb->cur : -1;
            freeReplyObject(r);
            return NULL;
        }
        *rc = bus__reply_error(r, "a read", err);
        return NULL;
    }
    if (r->type != REDIS_REPLY_ARRAY) { /* nil: the BLOCK ran out */
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Whether a lane's answer can be read now without waiting for the network
 * (TLS holds decrypted bytes that poll() does not see). */
static bool lane_buffered(const bus_lane *ln)
{
    return ln->bus->ssl && SSL_pending(ln->bus->ssl) > 0;
}

static int read_lanes(ds_bus *b, const read_args *a, const char *const *models,
                      const char *const *after, int nmodels, int block_ms, bus_entry_fn fn,
                      void *ctx, ds_error *err)
{
    bus_lane *ln[MAX_READ_MODELS];
    for (int i = 0; i < nmodels; i++) {
        if (!(ln[i] = lane_of(b, models[i], a->group, err)))
            return -DS_UNAVAILABLE;
        if (!ln[i]->inflight && lane_send(ln[i], a, after[i], block_ms, err))
            return -DS_UNAVAILABLE;
    }
    /* until one answers, and whatever else has answered by then; the
       others stay in flight */
    int64_t until = bus__deadline(block_ms > 0 ? block_ms : b->o.io_timeout_ms);
    redisReply *rs[MAX_READ_MODELS] = {NULL};
    int rc = 0, answered = 0;
    for (;;) {
        struct pollfd pfd[MAX_READ_MODELS];
        bool buffered = false;
        for (int i = 0; i < nmodels; i++) {
            pfd[i] = (struct pollfd){.fd = ln[i]->inflight ? ln[i]->bus->fd : -1, .events = POLLIN};
            buffered |= ln[i]->inflight && lane_buffered(ln[i]);
        }
        int64_t left = (until - ds_now_ns()) / 1000000;
        int wait = answered || buffered || left < 0 ? 0 : (int)left;
        int n = poll(pfd, (nfds_t)nmodels, wait);
        if (n < 0 && errno != EINTR) {
            rc = ds_fail(err, DS_UNAVAILABLE, "redis", "poll: %s", strerror(errno));
            break;
        }
        int got = 0;
        for (int i = 0; i < nmodels && rc == 0; i++) {
            bool ready = n > 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR));
            if (!ln[i]->inflight || !(ready || lane_buffered(ln[i])))
                continue;
            rs[i] = lane_answer(ln[i], &rc, err);
            got++;
        }
        answered += got;
        if (rc || (answered && !got) || ds_now_ns() >= until)
            break;
    }
    for (int i = 0; i < nmodels; i++) /* overdue: Redis hung */
        if (rc == 0 && ln[i]->inflight && ds_now_ns() > ln[i]->deadline) {
            bus__disconnect(ln[i]->bus);
            ln[i]->inflight = false;
            rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s did not answer a read",
                         ln[i]->bus->where);
        }
    int total = 0;
    for (int i = 0; i < nmodels; i++) {
        if (!rs[i])
            continue;
        if (rc == 0) {
            char key[1][300];
            bus__stream_key(key[0], sizeof key[0], models[i],
                            a->group ? "request_duck" : "response_duck");
            total += deliver(rs[i], key, &models[i], 1, fn, ctx);
        } else {
            freeReplyObject(rs[i]); /* the caller reads its pending entries again */
        }
    }
    return rc ? rc : total;
}

/* A cluster's read of pending entries (after an id) goes over the model's
 * lane too: the lane's connection delivered them, so a WAIT there covers
 * them (--redis-replicas). A read still in flight on the lane is answered
 * first and its entries left to this read: they are pending now, after
 * the ones before them. Entries go to fn only once every read answered. */
static int read_pending_lanes(ds_bus *b, const read_args *a, const char *const *models,
                              const char *const *after, int nmodels, bus_entry_fn fn, void *ctx,
                              ds_error *err)
{
    redisReply *rs[MAX_READ_MODELS] = {NULL};
    char keys[MAX_READ_MODELS][300];
    int rc = 0;
    for (int i = 0; i < nmodels && rc == 0; i++) {
        bus_lane *ln = lane_of(b, models[i], true, err);
        if (!ln) {
            rc = -DS_UNAVAILABLE;
            break;
        }
        if (ln->inflight) {
            redisReply *r = lane_answer(ln, &rc, err);
            if (r)
                freeReplyObject(r);
        }
        if (rc == 0 && !(rs[i] = read_once(ln->bus, a, &models[i], &after[i], 1, &keys[i], 0, err)))
            rc = -DS_UNAVAILABLE;
    }
    int total = 0;
    for (int i = 0; i < nmodels; i++) {
        if (rs[i] && rc == 0)
            total += deliver(rs[i], &keys[i], &models[i], 1, fn, ctx);
        else if (rs[i])
            freeReplyObject(rs[i]);
    }
    return rc ? rc : total;
}

static int read_models(ds_bus *b, const read_args *a, const char *const *models,
                       const char *const *after, int nmodels, int block_ms, bus_entry_fn fn,
                       void *ctx, ds_error *err)
{
    if (nmodels < 1 || nmodels > MAX_READ_MODELS)
        return ds_fail(err, DS_INTERNAL, NULL, "a read takes 1 to %d models", MAX_READ_MODELS);
    bool pending = a->group && strcmp(after[0], ">") != 0;
    if (b->cluster && pending)
        return read_pending_lanes(b, a, models, after, nmodels, fn, ctx, err);
    if (b->cluster) /* new entries: over the lanes, whatever their number */
        return read_lanes(b, a, models, after, nmodels, block_ms, fn, ctx, err);
    char keys[MAX_READ_MODELS][300];
    redisReply *r = read_once(b, a, models, after, nmodels, keys, block_ms, err);
    return r ? deliver(r, keys, models, nmodels, fn, ctx) : -DS_UNAVAILABLE;
}

int bus_read(ds_bus *b, const char *consumer, const char *const *models, int nmodels,
             const char *pending_after, int count, int block_ms, bus_entry_fn fn, void *ctx,
             ds_error *err)
{
    const char *after[MAX_READ_MODELS];
    for (int i = 0; i < nmodels && i < MAX_READ_MODELS; i++)
        after[i] = pending_after ? pending_after : ">";
    read_args a = {.group = true, .consumer = consumer, .count = count};
    return read_models(b, &a, models, after, nmodels, pending_after ? 0 : block_ms, fn, ctx, err);
}

int bus_follow(ds_bus *b, const char *const *models, const char *const *after_ids, int nmodels,
               int count, int block_ms, bus_entry_fn fn, void *ctx, ds_error *err)
{
    read_args a = {.group = false, .count = count};
    return read_models(b, &a, models, after_ids, nmodels, block_ms, fn, ctx, err);
}
