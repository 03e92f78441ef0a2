/* bus.c: see bus.h. The commands, the scripts and the start check; the
 * connection they go through is bus_conn.c. */
#include "bus_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Builds lens from NUL-terminated argv. */
static redisReply *commandv(ds_bus *b, int argc, const char **argv, ds_error *err)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return bus__command(b, argc, argv, lens, err);
}

static int reply_error(redisReply *r, const char *what, ds_error *err)
{
    int rc =
        ds_fail(err, DS_UNAVAILABLE, "redis", "Redis refused %s: %s", what, r->str ? r->str : "?");
    freeReplyObject(r);
    return rc;
}

int bus_ping(ds_bus *b, ds_error *err)
{
    const char *argv[] = {"PING"};
    redisReply *r = commandv(b, 1, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR)
        return reply_error(r, "PING", err);
    freeReplyObject(r);
    return 0;
}

/* One CONFIG GET value into out ("" when Redis does not say). */
static bool config_get(ds_bus *b, const char *name, char *out, size_t cap, char *why, size_t wcap)
{
    const char *argv[] = {"CONFIG", "GET", name};
    ds_error err;
    redisReply *r = commandv(b, 3, argv, &err);
    out[0] = '\0';
    if (!r) {
        snprintf(why, wcap, "Redis is out of reach (%s)", err.message);
        return false;
    }
    bool ok = r->type == REDIS_REPLY_ARRAY;
    if (!ok)
        snprintf(why, wcap, "CONFIG GET %s is refused (%.120s)", name,
                 r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
    else if (r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING)
        snprintf(out, cap, "%s", r->element[1]->str);
    freeReplyObject(r);
    return ok;
}

static bool durable_here(ds_bus *b, char *why, size_t cap);

bool bus_durable(ds_bus *b, char *why, size_t cap)
{
    if (!b->cluster) {
        b->slot = -1;
        return durable_here(b, why, cap);
    }
    int idx[BUS_NODES_MAX];
    ds_error err;
    int n = bus__cluster_primaries(b, idx, BUS_NODES_MAX, &err);
    if (n < 0) {
        snprintf(why, cap, "Redis is out of reach (%s)", err.message);
        return false;
    }
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        b->force_node = idx[i];
        ok = durable_here(b, why, cap);
        b->force_node = -1;
        if (!ok) {
            char w[300];
            snprintf(w, sizeof w, "%.250s", why);
            snprintf(why, cap, "%s: %s", b->where, w);
        }
    }
    if (ok)
        snprintf(why, cap,
                 "every one of the %d primaries fsyncs every write (appendonly yes, "
                 "appendfsync always)",
                 n);
    return ok;
}

static bool durable_here(ds_bus *b, char *why, size_t cap)
{
    char aof[32], fsync[32];
    if (!config_get(b, "appendonly", aof, sizeof aof, why, cap) ||
        !config_get(b, "appendfsync", fsync, sizeof fsync, why, cap))
        return false;
    if (strcmp(aof, "yes") != 0 || strcmp(fsync, "always") != 0) {
        snprintf(why, cap, "Redis runs appendonly %s, appendfsync %s (not yes and always)",
                 aof[0] ? aof : "?", fsync[0] ? fsync : "?");
        return false;
    }
    snprintf(why, cap, "Redis fsyncs every write (appendonly yes, appendfsync always)");
    return true;
}

static void stream_key(char *buf, size_t n, const char *model, const char *suffix)
{
    snprintf(buf, n, "{%s}:%s", model, suffix);
}

/* A key of the model the next command is about: in a cluster, that command
 * goes to the node of the model's slot. */
static void model_key(ds_bus *b, char *buf, size_t n, const char *model, const char *suffix)
{
    stream_key(buf, n, model, suffix);
    bus__route(b, model);
}

/* The argv of XADD {model}:request_duck * fields... into argv/lens (room
 * for 3 + 2 * 16); key is the caller's buffer (300 bytes). */
static int xadd_argv(const char *model, const bus_field *f, int n, char *key, const char **argv,
                     size_t *lens)
{
    stream_key(key, 300, model, "request_duck");
    int argc = 0;
    argv[argc] = "XADD";
    lens[argc++] = 4;
    argv[argc] = key;
    lens[argc++] = strlen(key);
    argv[argc] = "*";
    lens[argc++] = 1;
    for (int i = 0; i < n && i < 16; i++) {
        argv[argc] = f[i].name;
        lens[argc++] = strlen(f[i].name);
        argv[argc] = f[i].value;
        lens[argc++] = f[i].len;
    }
    return argc;
}

enum { ENQ_MAX = 4096 };

/* The XADDs x[idx[0..n)] in one write and one read, on one connection. */
static int pipeline(ds_bus *b, bus_xadd *all, const int *idx, int n, ds_error *err)
{
    bus_xadd *x[ENQ_MAX];
    for (int i = 0; i < n; i++)
        x[i] = &all[idx[i]];
    bool fresh;
    if (bus__connect(b, &fresh, err))
        return -DS_UNAVAILABLE;
    ds_buf out;
    ds_buf_init(&out, (size_t)1 << 31);
    int nsent = 0;
    for (int i = 0; i < n; i++) {
        char key[300], *cmd = NULL;
        const char *argv[3 + 2 * 16];
        size_t lens[3 + 2 * 16];
        int argc = xadd_argv(x[i]->model, x[i]->fields, x[i]->nfields, key, argv, lens);
        int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
        x[i]->formatted = len > 0; /* else surely not sent (out of memory) */
        if (len > 0) {
            ds_buf_append(&out, cmd, (size_t)len);
            nsent++;
        } else {
            snprintf(x[i]->error, sizeof x[i]->error, "the command could not be formatted");
        }
        redisFreeCommand(cmd);
    }
    int64_t deadline = bus__deadline(b->o.io_timeout_ms);
    int rc = 0;
    if (nsent && bus__send_all(b, out.data, out.len, deadline)) {
        for (int i = 0; i < n; i++)
            x[i]->maybe_sent = x[i]->formatted; /* some bytes may have gone out */
        rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis did not take the commands");
    }
    bool readonly = false;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!x[i]->formatted)
            continue; /* no reply comes for it */
        redisReply *r = bus__recv_reply(b, deadline);
        if (!r) { /* this one and the rest went out without an answer */
            for (int j = i; j < n; j++)
                x[j]->maybe_sent = x[j]->formatted;
            rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis did not answer (connection dropped)");
            break;
        }
        if (r->type == REDIS_REPLY_STRING) {
            snprintf(x[i]->id, sizeof x[i]->id, "%s", r->str);
            x[i]->ok = true;
        } else if (r->type == REDIS_REPLY_ERROR) { /* refused: not queued */
            x[i]->refused = true;
            snprintf(x[i]->error, sizeof x[i]->error, "Redis refused XADD: %s", r->str);
            readonly |= !strncmp(r->str, "READONLY", 8);
        }
        freeReplyObject(r);
    }
    if (rc)
        bus__disconnect(b);
    else if (readonly) /* every reply is read: the next write looks for the primary */
        bus__next_host(b);
    ds_buf_free(&out);
    return rc;
}

static bool redirected(const bus_xadd *x)
{
    return x->refused && (strstr(x->error, ": MOVED ") || strstr(x->error, ": ASK "));
}

/* A cluster: the XADDs grouped by the node of their model's slot, one
 * pipeline per node; one a resharding redirected is sent again alone
 * (following MOVED or ASK). */
static int enqueue_cluster(ds_bus *b, int n, bus_xadd *x, ds_error *err)
{
    int *idx = xmalloc_array((size_t)n, sizeof *idx),
        *slot = xmalloc_array((size_t)n, sizeof *slot);
    bool *done = xcalloc((size_t)n, sizeof *done);
    for (int i = 0; i < n; i++) {
        char key[300];
        int len = snprintf(key, sizeof key, "{%s}:", x[i].model);
        slot[i] = bus__key_slot(key, len < (int)sizeof key ? (size_t)len : sizeof key - 1);
    }
    int rc = 0;
    for (int first = 0; first < n; first++) {
        if (done[first])
            continue;
        b->slot = slot[first];
        ds_error e;
        if (bus__cluster_pick(b, &e)) { /* no map: nothing can go */
            *err = e;
            rc = -DS_UNAVAILABLE;
            break;
        }
        int node = b->cur, m = 0;
        for (int j = first; j < n; j++)
            if (!done[j] && (j == first || b->slot_node[slot[j]] == node)) {
                idx[m++] = j;
                done[j] = true;
            }
        if (pipeline(b, x, idx, m, &e)) {
            *err = e;
            rc = -DS_UNAVAILABLE;
        }
        for (int k = 0; k < m; k++) {
            bus_xadd *o = &x[idx[k]];
            if (!redirected(o))
                continue;
            o->refused = false;
            o->ok = bus_enqueue(b, o->model, o->fields, o->nfields, o->id, &o->maybe_sent, &e) == 0;
            if (!o->ok)
                snprintf(o->error, sizeof o->error, "%.199s", e.message);
        }
    }
    free(idx);
    free(slot);
    free(done);
    return rc;
}

int bus_enqueue_many(ds_bus *b, int n, bus_xadd *x, ds_error *err)
{
    for (int i = 0; i < n; i++) {
        x[i].ok = x[i].maybe_sent = x[i].refused = false;
        x[i].formatted = true;
        x[i].error[0] = '\0';
    }
    if (n <= 0)
        return 0;
    if (n > ENQ_MAX)
        return ds_fail(err, DS_INTERNAL, NULL, "bus_enqueue_many takes at most %d commands",
                       ENQ_MAX);
    if (b->cluster)
        return enqueue_cluster(b, n, x, err);
    int idx[ENQ_MAX];
    for (int i = 0; i < n; i++)
        idx[i] = i;
    return pipeline(b, x, idx, n, err);
}

int bus_enqueue(ds_bus *b, const char *model, const bus_field *f, int n, char *id, bool *maybe_sent,
                ds_error *err)
{
    char key[300];
    const char *argv[3 + 2 * 16];
    size_t lens[3 + 2 * 16];
    int argc = xadd_argv(model, f, n, key, argv, lens);
    bus__route(b, model);
    redisReply *r = bus__command(b, argc, argv, lens, err);
    if (maybe_sent)
        *maybe_sent = !r && b->sent;
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_STRING)
        return reply_error(r, "XADD", err);
    snprintf(id, 32, "%s", r->str);
    freeReplyObject(r);
    return 0;
}

int bus_group_ensure(ds_bus *b, const char *model, ds_error *err)
{
    char key[300];
    model_key(b, key, sizeof key, model, "request_duck");
    const char *argv[] = {"XGROUP", "CREATE", key, "writers", "0", "MKSTREAM"};
    redisReply *r = commandv(b, 6, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
        return reply_error(r, "XGROUP CREATE", err);
    freeReplyObject(r);
    return 0;
}

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
        model_key(b, keys[i], sizeof keys[i], models[i],
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
        reply_error(r, c.argv[0], err);
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
        *rc = reply_error(r, "a read", err);
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
            stream_key(key[0], sizeof key[0], models[i],
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

/* ---- scripts -------------------------------------------------------------- */

static const char acquire_lua[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local sep = string.find(cur, ':', 1, true)\n"
    "  if sep == nil or string.sub(cur, sep + 1) ~= ARGV[1] then return -1 end\n"
    "end\n"
    "local e = redis.call('INCR', KEYS[2])\n"
    "redis.call('SET', KEYS[1], e .. ':' .. ARGV[1], 'PX', ARGV[2])\n"
    "return e\n";

static const char renew_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                "  return 1\n"
                                "end\n"
                                "return 0\n";

/* Events at or below the stream's last seq are skipped: a retry of a call
 * whose reply was lost publishes nothing twice. A stream whose last seq is
 * below what this writer published before (expect) lost events (a Redis
 * failover or restart without them): nothing is published, LOST last. The
 * ids are acknowledged a thousand at a time: unpack() of more than about 8,000 fails ("too many
 * results to unpack"), and a group the persister committed late can cover
 * more (the writer then retried the same call forever). */
static const char publish_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
    "  return redis.error_reply('FENCED the lease is no longer ours')\n"
    "end\n"
    "local n = tonumber(ARGV[3])\n"
    "local expect = tonumber(ARGV[4])\n"
    "local i = 5\n"
    "local last = -1\n"
    "if n > 0 then\n"
    "  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)\n"
    "  if top[1] then\n"
    "    local f = top[1][2]\n"
    "    for j = 1, #f, 2 do\n"
    "      if f[j] == 'seq' then last = tonumber(f[j + 1]) end\n"
    "    end\n"
    "  end\n"
    "  if last < expect then\n"
    "    return redis.error_reply('LOST ' .. last)\n"
    "  end\n"
    "end\n"
    "for k = 1, n do\n"
    "  if tonumber(ARGV[i]) > last then\n"
    "    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'seq', ARGV[i], 'rid', "
    "ARGV[i + 1], 'user', ARGV[i + 2], 'ts', ARGV[i + 3], 'event', ARGV[i + 4], 'cmd', "
    "ARGV[i + 5])\n"
    "  end\n"
    "  i = i + 6\n"
    "end\n"
    "if i <= #ARGV then\n"
    "  for j = i, #ARGV, 1000 do\n"
    "    redis.call('XACK', KEYS[3], 'writers', unpack(ARGV, j, math.min(j + 999, #ARGV)))\n"
    "  end\n"
    "  local p = redis.call('XPENDING', KEYS[3], 'writers')\n"
    "  redis.call('XTRIM', KEYS[3], 'MINID', '~', p[2] or ARGV[#ARGV])\n"
    "end\n"
    "return n\n";

/* EVALSHA, falling back to EVAL when the server does not have the script. */
static redisReply *run_script(ds_bus *b, const char *script, int nkeys, const char **keys,
                              int nargs, const char **args, const size_t *arglens, ds_error *err)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    char sha[2 * SHA_DIGEST_LENGTH + 1], nk[8];
    SHA1((const unsigned char *)script, strlen(script), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(sha + 2 * i, 3, "%02x", md[i]);
    snprintf(nk, sizeof nk, "%d", nkeys);
    int argc = 3 + nkeys + nargs;
    const char **argv = xmalloc_array((size_t)argc, sizeof *argv);
    size_t *lens = xmalloc_array((size_t)argc, sizeof *lens);
    argv[0] = "EVALSHA";
    argv[1] = sha;
    argv[2] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[3 + i] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[3 + nkeys + i] = args[i];
    for (int i = 0; i < argc; i++)
        lens[i] = i >= 3 + nkeys && arglens ? arglens[i - 3 - nkeys] : strlen(argv[i]);
    redisReply *r = bus__command(b, argc, argv, lens, err);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = script;
        lens[0] = 4;
        lens[1] = strlen(script);
        r = bus__command(b, argc, argv, lens, err);
    }
    free(argv);
    free(lens);
    return r;
}

int bus_lease_acquire(ds_bus *b, const char *model, const char *owner, int ttl_ms, int64_t *epoch,
                      ds_error *err)
{
    char lease[300], ep[300], ttl[16];
    model_key(b, lease, sizeof lease, model, "lease");
    model_key(b, ep, sizeof ep, model, "epoch");
    snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    const char *keys[] = {lease, ep}, *args[] = {owner, ttl};
    redisReply *r = run_script(b, acquire_lua, 2, keys, 2, args, NULL, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_INTEGER)
        return reply_error(r, "the lease script", err);
    *epoch = r->integer;
    freeReplyObject(r);
    return 0;
}

int bus_lease_renew(ds_bus *b, const char *model, const char *owner, int64_t epoch, int ttl_ms,
                    ds_error *err)
{
    char lease[300], holder[300], ttl[16];
    model_key(b, lease, sizeof lease, model, "lease");
    snprintf(holder, sizeof holder, "%" PRId64 ":%s", epoch, owner);
    snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    const char *keys[] = {lease}, *args[] = {holder, ttl};
    redisReply *r = run_script(b, renew_lua, 1, keys, 2, args, NULL, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_INTEGER)
        return reply_error(r, "the lease renewal", err);
    int ok = r->integer == 1;
    freeReplyObject(r);
    return ok;
}

int bus_publish(ds_bus *b, const char *model, const char *owner, int64_t epoch, const bus_event *ev,
                int nev, const char *const *ack_ids, int nack, long keep, int64_t *expect,
                ds_error *err)
{
    char lease[300], resp[300], req[300], holder[300], keepbuf[24], nbuf[16], expbuf[24];
    model_key(b, lease, sizeof lease, model, "lease");
    model_key(b, resp, sizeof resp, model, "response_duck");
    model_key(b, req, sizeof req, model, "request_duck");
    snprintf(holder, sizeof holder, "%" PRId64 ":%s", epoch, owner);
    snprintf(keepbuf, sizeof keepbuf, "%ld", keep);
    snprintf(nbuf, sizeof nbuf, "%d", nev);
    snprintf(expbuf, sizeof expbuf, "%" PRId64, expect ? *expect : INT64_C(-1));
    int nargs = 4 + 6 * nev + nack;
    const char **args = xmalloc_array((size_t)nargs, sizeof *args);
    size_t *lens = xmalloc_array((size_t)nargs, sizeof *lens);
    char(*seqs)[24] = xmalloc_array((size_t)(nev ? nev : 1), sizeof *seqs);
    char(*tss)[24] = xmalloc_array((size_t)(nev ? nev : 1), sizeof *tss);
    int a = 0;
    args[a] = holder;
    lens[a++] = strlen(holder);
    args[a] = keepbuf;
    lens[a++] = strlen(keepbuf);
    args[a] = nbuf;
    lens[a++] = strlen(nbuf);
    args[a] = expbuf;
    lens[a++] = strlen(expbuf);
    for (int i = 0; i < nev; i++) {
        snprintf(seqs[i], sizeof seqs[i], "%" PRId64, ev[i].seq);
        args[a] = seqs[i];
        lens[a++] = strlen(seqs[i]);
        args[a] = ev[i].request_id ? ev[i].request_id : "";
        lens[a] = strlen(args[a]);
        a++;
        args[a] = ev[i].user ? ev[i].user : "";
        lens[a] = strlen(args[a]);
        a++;
        snprintf(tss[i], sizeof tss[i], "%" PRId64, ev[i].ts_ms);
        args[a] = tss[i];
        lens[a++] = strlen(tss[i]);
        args[a] = ev[i].json;
        lens[a++] = ev[i].len;
        args[a] = ev[i].cmd ? ev[i].cmd : "";
        lens[a++] = ev[i].cmd ? ev[i].cmd_len : 0;
    }
    for (int i = 0; i < nack; i++) {
        args[a] = ack_ids[i];
        lens[a++] = strlen(ack_ids[i]);
    }
    const char *keys[] = {lease, resp, req};
    redisReply *r = run_script(b, publish_lua, 3, keys, nargs, args, lens, err);
    free(args);
    free(lens);
    free(seqs);
    free(tss);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "FENCED", 6) == 0) {
        int rc = ds_fail(err, DS_FORBIDDEN, "lease", "the writer lease of '%s' is lost", model);
        freeReplyObject(r);
        return rc;
    }
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "LOST ", 5) == 0) {
        int64_t last = strtoll(r->str + 5, NULL, 10);
        int rc = ds_fail(err, DS_NOT_FOUND, "redis",
                         "the response stream of '%s' ends at seq %" PRId64
                         " but this writer published up to %" PRId64 ": Redis lost events",
                         model, last, *expect);
        *expect = last;
        freeReplyObject(r);
        return rc;
    }
    if (r->type == REDIS_REPLY_ERROR)
        return reply_error(r, "the publish script", err);
    freeReplyObject(r);
    return 0;
}

static const char *field_of(redisReply *kv, const char *name, size_t *len)
{
    for (size_t j = 0; kv->type == REDIS_REPLY_ARRAY && j + 1 < kv->elements; j += 2)
        if (strcmp(kv->element[j]->str, name) == 0) {
            *len = kv->element[j + 1]->len;
            return kv->element[j + 1]->str;
        }
    return NULL;
}

int bus_last_seq(ds_bus *b, const char *model, int64_t *seq, ds_error *err)
{
    char key[300];
    model_key(b, key, sizeof key, model, "response_duck");
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", "1"};
    redisReply *r = commandv(b, 6, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_ARRAY)
        return reply_error(r, "XREVRANGE", err);
    *seq = -1;
    if (r->elements == 1 && r->element[0]->elements == 2) {
        size_t len;
        const char *s = field_of(r->element[0]->element[1], "seq", &len);
        if (s)
            *seq = strtoll(s, NULL, 10);
    }
    freeReplyObject(r);
    return 0;
}

int bus_recent_events(ds_bus *b, const char *model, int n, bus_event_fn fn, void *ctx,
                      ds_error *err)
{
    char key[300], count[16];
    model_key(b, key, sizeof key, model, "response_duck");
    snprintf(count, sizeof count, "%d", n);
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", count};
    redisReply *r = commandv(b, 6, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_ARRAY)
        return reply_error(r, "XREVRANGE", err);
    for (size_t i = r->elements; i-- > 0;) {
        redisReply *e = r->element[i];
        size_t slen, elen;
        const char *s = e->elements == 2 ? field_of(e->element[1], "seq", &slen) : NULL;
        const char *ev = s ? field_of(e->element[1], "event", &elen) : NULL;
        if (ev)
            fn(ctx, strtoll(s, NULL, 10), ev, elen);
    }
    freeReplyObject(r);
    return 0;
}

/* ---- the start check ---------------------------------------------------------------- */

/* What the scripts above run, checked by the ACL without running it. KEYS:
 * lease, epoch, response stream, request stream. Returns "" when all is
 * allowed, the first command and key denied, or "?" without
 * redis.acl_check_cmd (Redis before 7). */
static const char probe_lua[] =
    "if not redis.acl_check_cmd then return '?' end\n"
    "local checks = {\n"
    "  {'GET', KEYS[1]}, {'SET', KEYS[1], 'x', 'PX', '1'}, {'PEXPIRE', KEYS[1], '1'},\n"
    "  {'INCR', KEYS[2]}, {'GET', KEYS[2]}, {'SET', KEYS[2], 'x'},\n"
    "  {'XADD', KEYS[3], 'MAXLEN', '~', '1', '*', 'f', 'v'},\n"
    "  {'XREVRANGE', KEYS[3], '+', '-', 'COUNT', '1'},\n"
    "  {'XACK', KEYS[4], 'writers', '0-1'}, {'XPENDING', KEYS[4], 'writers'},\n"
    "  {'XTRIM', KEYS[4], 'MINID', '~', '0-1'}}\n"
    "for _, c in ipairs(checks) do\n"
    "  if not redis.acl_check_cmd(unpack(c)) then return c[1] .. ' ' .. c[2] end\n"
    "end\n"
    "return ''\n";

static const char acl_hint[] = "; README.md (An external Redis) lists the rules duckspread needs";

typedef struct probe {
    const char *what; /* for the message: the command and its key */
    int argc;
    const char *argv[10];
} probe;

/* Runs one probe: 0 when the ACL let it through (whatever Redis answered
 * after), -DS_FORBIDDEN on NOPERM, -DS_UNAVAILABLE when Redis is out of
 * reach or refused the connection (then b->refused). */
static int run_probe(ds_bus *b, const probe *p, ds_error *err)
{
    size_t lens[10];
    for (int i = 0; i < p->argc; i++)
        lens[i] = strlen(p->argv[i]);
    redisReply *r = bus__command(b, p->argc, (const char **)p->argv, lens, err);
    if (!r)
        return -DS_UNAVAILABLE;
    const char *user = b->user ? b->user : "default";
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOPERM", 6) == 0)
        rc = ds_fail(err, DS_FORBIDDEN, "redis", "Redis user '%s' may not run %s (%s)%s", user,
                     p->what, r->str, acl_hint);
    else if (p->argc == 1 && r->type == REDIS_REPLY_ERROR) /* PING: NOAUTH, say */
        rc = ds_fail(err, DS_FORBIDDEN, "redis", "Redis refused PING: %s%s", r->str,
                     strncmp(r->str, "NOAUTH", 6) ? ""
                                                  : " (the URL needs [user:]password@ before "
                                                    "the host)");
    else if (p->argv[1] == probe_lua && r->type == REDIS_REPLY_ERROR)
        rc = ds_fail(err, DS_FORBIDDEN, "redis", "Redis refused a script (%s)", r->str);
    else if (p->argv[1] == probe_lua && r->type == REDIS_REPLY_STRING && r->len > 1)
        rc = ds_fail(err, DS_FORBIDDEN, "redis",
                     "Redis user '%s' may not run %s inside duckspread's scripts (NOPERM by "
                     "redis.acl_check_cmd)%s",
                     user, r->str, acl_hint);
    freeReplyObject(r);
    return rc;
}

int bus_check_access(ds_bus *b, const char *const *models, int nmodels, ds_error *err)
{
    static const char nosuch[] = "0000000000000000000000000000000000000000"; /* no script */
    probe ping = {"PING", 1, {"PING"}}, asking = {"ASKING (a cluster's redirects)", 1, {"ASKING"}};
    int rc = run_probe(b, &ping, err);
    if (rc == 0 && b->cluster) /* (CLUSTER SLOTS went before any command) */
        rc = run_probe(b, &asking, err);
    for (int i = 0; rc == 0 && i < nmodels; i++) {
        char req[300], resp[300], lease[300], ep[300], what[9][1300];
        const char *m = models[i];
        model_key(b, req, sizeof req, m, "request_duck");
        model_key(b, resp, sizeof resp, m, "response_duck");
        model_key(b, lease, sizeof lease, m, "lease");
        model_key(b, ep, sizeof ep, m, "epoch");
        snprintf(what[0], sizeof what[0], "XADD on %s", req);
        snprintf(what[1], sizeof what[1], "XGROUP CREATE on %s", req);
        snprintf(what[2], sizeof what[2], "XREADGROUP on %s", req);
        snprintf(what[3], sizeof what[3], "XREVRANGE on %s", resp);
        snprintf(what[4], sizeof what[4], "EVALSHA on %s", lease);
        snprintf(what[5], sizeof what[5], "EVALSHA on %s", ep);
        snprintf(what[6], sizeof what[6], "EVALSHA on %s", resp);
        snprintf(what[7], sizeof what[7], "EVALSHA on %s", req);
        snprintf(what[8], sizeof what[8], "EVAL on %s %s %s %s", lease, ep, resp, req);
        /* each refused by Redis after its ACL check, or read-only: nothing
         * changes (XREADGROUP fails on the id before it creates a consumer,
         * EVALSHA with NOSCRIPT) */
        const probe p[] = {
            {what[0], 5, {"XADD", req, "0-0", "probe", "1"}},
            {what[1], 6, {"XGROUP", "CREATE", req, "writers", "not-an-id", "MKSTREAM"}},
            {what[2],
             9,
             {"XREADGROUP", "GROUP", "writers", "duckspread-probe", "COUNT", "1", "STREAMS", req,
              "not-an-id"}},
            {what[3], 6, {"XREVRANGE", resp, "+", "-", "COUNT", "1"}},
            /* one key at a time, so that a message names the key */
            {what[4], 4, {"EVALSHA", nosuch, "1", lease}},
            {what[5], 4, {"EVALSHA", nosuch, "1", ep}},
            {what[6], 4, {"EVALSHA", nosuch, "1", resp}},
            {what[7], 4, {"EVALSHA", nosuch, "1", req}},
            {what[8], 7, {"EVAL", probe_lua, "4", lease, ep, resp, req}},
        };
        for (size_t k = 0; rc == 0 && k < DS_ARRAY_LEN(p); k++)
            rc = run_probe(b, &p[k], err);
    }
    if (rc == -DS_UNAVAILABLE && b->refused) {
        err->code = DS_FORBIDDEN;
        rc = -DS_FORBIDDEN;
    }
    return rc;
}

/* ---- replicas ------------------------------------------------------------------------- */

int bus_follow(ds_bus *b, const char *const *models, const char *const *after_ids, int nmodels,
               int count, int block_ms, bus_entry_fn fn, void *ctx, ds_error *err)
{
    read_args a = {.group = false, .count = count};
    return read_models(b, &a, models, after_ids, nmodels, block_ms, fn, ctx, err);
}

/* One entry of {model}:response_duck by range: XRANGE key start + COUNT 1
 * (rev: XREVRANGE key + - COUNT 1). found false when there is none. */
static int probe_entry(ds_bus *b, const char *key, const char *start, bool rev, bool *found,
                       char *id, size_t cap, int64_t *seq, ds_error *err)
{
    const char *argv[] = {
        rev ? "XREVRANGE" : "XRANGE", key, rev ? "+" : start, rev ? "-" : "+", "COUNT", "1"};
    redisReply *r = commandv(b, 6, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_ARRAY)
        return reply_error(r, argv[0], err);
    *found = false;
    if (r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 2) {
        size_t len;
        const char *s = field_of(r->element[0]->element[1], "seq", &len);
        *found = true;
        *seq = s ? strtoll(s, NULL, 10) : -1;
        snprintf(id, cap, "%s", r->element[0]->element[0]->str);
    }
    freeReplyObject(r);
    return 0;
}

int bus_seek(ds_bus *b, const char *model, int64_t seq, char *id, size_t cap, int64_t *first,
             int64_t *last, ds_error *err)
{
    char key[300], lo[48], hi[48], at[48], start[32];
    model_key(b, key, sizeof key, model, "response_duck");
    bool found;
    *first = *last = -1;
    snprintf(id, cap, "0-0");
    int rc = probe_entry(b, key, "-", false, &found, lo, sizeof lo, first, err);
    if (rc || !found)
        return rc;
    if ((rc = probe_entry(b, key, NULL, true, &found, hi, sizeof hi, last, err)) || !found)
        return rc;
    if (*first > seq)
        return 0;
    if (*last <= seq) {
        snprintf(id, cap, "%s", hi);
        return 0;
    }
    /* lo: an entry at or below seq, so at or before the entry of seq + 1
       (ids are times, ms, and the stream's seqs grow with them); what a
       probe at mid finds above seq moves hi_ms down to mid. The reader
       skips the entries between lo and seq + 1. */
    int64_t lo_ms = strtoll(lo, NULL, 10), hi_ms = strtoll(hi, NULL, 10);
    while (hi_ms - lo_ms > 1) {
        int64_t mid = lo_ms + (hi_ms - lo_ms) / 2, s;
        snprintf(start, sizeof start, "%" PRId64, mid);
        if ((rc = probe_entry(b, key, start, false, &found, at, sizeof at, &s, err)))
            return rc;
        if (found && s >= 0 && s <= seq) {
            snprintf(lo, sizeof lo, "%s", at);
            lo_ms = strtoll(lo, NULL, 10);
            if (lo_ms < mid) /* cannot be: the entry is at or after mid */
                break;
        } else {
            hi_ms = mid;
        }
    }
    snprintf(id, cap, "%s", lo);
    return 0;
}

int bus_lease_owner(ds_bus *b, const char *model, char *owner, size_t cap, ds_error *err)
{
    char key[300];
    model_key(b, key, sizeof key, model, "lease");
    const char *argv[] = {"GET", key};
    redisReply *r = commandv(b, 2, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    owner[0] = '\0';
    if (r->type == REDIS_REPLY_STRING) {
        const char *colon = strchr(r->str, ':');
        snprintf(owner, cap, "%s", colon ? colon + 1 : r->str);
    } else if (r->type == REDIS_REPLY_ERROR) {
        return reply_error(r, "GET", err);
    }
    freeReplyObject(r);
    return 0;
}

int bus_claim(ds_bus *b, const char *model, const char *consumer, int64_t min_idle_ms,
              int64_t *claimed, ds_error *err)
{
    char key[300], idle[24], cursor[48] = "0-0";
    model_key(b, key, sizeof key, model, "request_duck");
    snprintf(idle, sizeof idle, "%" PRId64, min_idle_ms);
    *claimed = 0;
    for (int round = 0; round < 100000; round++) {
        const char *argv[] = {"XAUTOCLAIM", key,     "writers", consumer, idle,
                              cursor,       "COUNT", "1000",    "JUSTID"};
        size_t lens[9];
        for (int i = 0; i < 9; i++)
            lens[i] = strlen(argv[i]);
        redisReply *r = bus__command(b, 9, argv, lens, err);
        if (!r)
            return -DS_UNAVAILABLE;
        if (r->type == REDIS_REPLY_ERROR)
            return reply_error(r, "XAUTOCLAIM", err);
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
            r->element[0]->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            return ds_fail(err, DS_UNAVAILABLE, "redis", "XAUTOCLAIM answered an unknown shape");
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        if (r->element[1]->type == REDIS_REPLY_ARRAY)
            *claimed += (int64_t)r->element[1]->elements;
        freeReplyObject(r);
        if (strcmp(cursor, "0-0") == 0)
            return 0;
    }
    return ds_fail(err, DS_INTERNAL, NULL, "XAUTOCLAIM did not finish");
}

int bus_pending_others(ds_bus *b, const char *model, const char *consumer, int64_t *others,
                       int64_t *total, ds_error *err)
{
    char key[300];
    model_key(b, key, sizeof key, model, "request_duck");
    const char *argv[] = {"XPENDING", key, "writers"};
    redisReply *r = commandv(b, 3, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR)
        return reply_error(r, "XPENDING", err);
    *others = 0;
    if (total)
        *total = r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
                         r->element[0]->type == REDIS_REPLY_INTEGER
                     ? r->element[0]->integer
                     : 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[3]->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->element[3]->elements; i++) {
            redisReply *c = r->element[3]->element[i];
            if (c->type == REDIS_REPLY_ARRAY && c->elements == 2 &&
                strcmp(c->element[0]->str, consumer) != 0)
                *others += strtoll(c->element[1]->str, NULL, 10);
        }
    freeReplyObject(r);
    return 0;
}

/* WAIT on the connection in use. */
static int wait_here(ds_bus *b, int replicas, int timeout_ms, int *acked, ds_error *err)
{
    char n[16], t[16];
    snprintf(n, sizeof n, "%d", replicas);
    snprintf(t, sizeof t, "%d", timeout_ms);
    const char *argv[] = {"WAIT", n, t};
    size_t lens[] = {4, strlen(n), strlen(t)};
    redisReply *r = bus__roundtrip(b, 3, argv, lens, timeout_ms, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_INTEGER)
        return reply_error(r, "WAIT", err);
    *acked = (int)r->integer;
    freeReplyObject(r);
    return 0;
}

/* Rewrites {model}:epoch with its own value: a write that Redis
 * replicates, so that the connection's replication offset (what WAIT
 * waits for) is past every write made before it on this node. Redis 7.0
 * does not advance it for a blocked XREADGROUP that is served later. */
static const char touch_lua[] = "local v = redis.call('GET', KEYS[1])\n"
                                "if v then redis.call('SET', KEYS[1], v) end\n"
                                "return 1\n";

int bus_wait(ds_bus *b, const char *const *models, int nmodels, int replicas, int timeout_ms,
             int *acked, ds_error *err)
{
    if (nmodels < 1) {
        b->slot = -1;
        return wait_here(b, replicas, timeout_ms, acked, err);
    }
    /* each node that holds one of the models (one, outside a cluster) */
    bool seen[BUS_NODES_MAX] = {false};
    *acked = replicas;
    for (int i = 0; i < nmodels; i++) {
        char ep[300];
        model_key(b, ep, sizeof ep, models[i], "epoch");
        if (b->cluster && bus__cluster_pick(b, err))
            return -DS_UNAVAILABLE;
        if (seen[b->cur])
            continue;
        seen[b->cur] = true;
        const char *keys[] = {ep};
        redisReply *r = run_script(b, touch_lua, 1, keys, 0, NULL, NULL, err);
        if (!r)
            return -DS_UNAVAILABLE;
        if (r->type == REDIS_REPLY_ERROR)
            return reply_error(r, "the script before WAIT", err);
        freeReplyObject(r);
        int got;
        int rc = wait_here(b, replicas, timeout_ms, &got, err);
        if (rc)
            return rc;
        if (got < *acked)
            *acked = got;
    }
    return 0;
}
