/* bus.c: see bus.h. The commands, the scripts and the start check; the
 * reads of the streams are bus_read.c, the connection they all go through
 * bus_conn.c, a cluster's slots bus_cluster.c. */
#include "bus_internal.h"

#include <inttypes.h>
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

int bus__reply_error(redisReply *r, const char *what, ds_error *err)
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
        return bus__reply_error(r, "PING", err);
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

void bus__stream_key(char *buf, size_t n, const char *model, const char *suffix)
{
    snprintf(buf, n, "{%s}:%s", model, suffix);
}

/* A key of the model the next command is about: in a cluster, that command
 * goes to the node of the model's slot. */
void bus__model_key(ds_bus *b, char *buf, size_t n, const char *model, const char *suffix)
{
    bus__stream_key(buf, n, model, suffix);
    bus__route(b, model);
}

/* The argv of XADD {model}:request_duck * fields... into argv/lens (room
 * for 3 + 2 * 16); key is the caller's buffer (300 bytes). */
static int xadd_argv(const char *model, const bus_field *f, int n, char *key, const char **argv,
                     size_t *lens)
{
    bus__stream_key(key, 300, model, "request_duck");
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
        return bus__reply_error(r, "XADD", err);
    snprintf(id, 32, "%s", r->str);
    freeReplyObject(r);
    return 0;
}

int bus_group_ensure(ds_bus *b, const char *model, ds_error *err)
{
    char key[300];
    bus__model_key(b, key, sizeof key, model, "request_duck");
    const char *argv[] = {"XGROUP", "CREATE", key, "writers", "0", "MKSTREAM"};
    redisReply *r = commandv(b, 6, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
        return bus__reply_error(r, "XGROUP CREATE", err);
    freeReplyObject(r);
    return 0;
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
    bus__model_key(b, lease, sizeof lease, model, "lease");
    bus__model_key(b, ep, sizeof ep, model, "epoch");
    snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    const char *keys[] = {lease, ep}, *args[] = {owner, ttl};
    redisReply *r = run_script(b, acquire_lua, 2, keys, 2, args, NULL, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_INTEGER)
        return bus__reply_error(r, "the lease script", err);
    *epoch = r->integer;
    freeReplyObject(r);
    return 0;
}

int bus_lease_renew(ds_bus *b, const char *model, const char *owner, int64_t epoch, int ttl_ms,
                    ds_error *err)
{
    char lease[300], holder[300], ttl[16];
    bus__model_key(b, lease, sizeof lease, model, "lease");
    snprintf(holder, sizeof holder, "%" PRId64 ":%s", epoch, owner);
    snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    const char *keys[] = {lease}, *args[] = {holder, ttl};
    redisReply *r = run_script(b, renew_lua, 1, keys, 2, args, NULL, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_INTEGER)
        return bus__reply_error(r, "the lease renewal", err);
    int ok = r->integer == 1;
    freeReplyObject(r);
    return ok;
}

int bus_publish(ds_bus *b, const char *model, const char *owner, int64_t epoch, const bus_event *ev,
                int nev, const char *const *ack_ids, int nack, long keep, int64_t *expect,
                ds_error *err)
{
    char lease[300], resp[300], req[300], holder[300], keepbuf[24], nbuf[16], expbuf[24];
    bus__model_key(b, lease, sizeof lease, model, "lease");
    bus__model_key(b, resp, sizeof resp, model, "response_duck");
    bus__model_key(b, req, sizeof req, model, "request_duck");
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
        return bus__reply_error(r, "the publish script", err);
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
    bus__model_key(b, key, sizeof key, model, "response_duck");
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", "1"};
    redisReply *r = commandv(b, 6, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_ARRAY)
        return bus__reply_error(r, "XREVRANGE", err);
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
    bus__model_key(b, key, sizeof key, model, "response_duck");
    snprintf(count, sizeof count, "%d", n);
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", count};
    redisReply *r = commandv(b, 6, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type != REDIS_REPLY_ARRAY)
        return bus__reply_error(r, "XREVRANGE", err);
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
        bus__model_key(b, req, sizeof req, m, "request_duck");
        bus__model_key(b, resp, sizeof resp, m, "response_duck");
        bus__model_key(b, lease, sizeof lease, m, "lease");
        bus__model_key(b, ep, sizeof ep, m, "epoch");
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
        return bus__reply_error(r, argv[0], err);
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
    bus__model_key(b, key, sizeof key, model, "response_duck");
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
    bus__model_key(b, key, sizeof key, model, "lease");
    const char *argv[] = {"GET", key};
    redisReply *r = commandv(b, 2, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    owner[0] = '\0';
    if (r->type == REDIS_REPLY_STRING) {
        const char *colon = strchr(r->str, ':');
        snprintf(owner, cap, "%s", colon ? colon + 1 : r->str);
    } else if (r->type == REDIS_REPLY_ERROR) {
        return bus__reply_error(r, "GET", err);
    }
    freeReplyObject(r);
    return 0;
}

int bus_claim(ds_bus *b, const char *model, const char *consumer, int64_t min_idle_ms,
              int64_t *claimed, ds_error *err)
{
    char key[300], idle[24], cursor[48] = "0-0";
    bus__model_key(b, key, sizeof key, model, "request_duck");
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
            return bus__reply_error(r, "XAUTOCLAIM", err);
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
    bus__model_key(b, key, sizeof key, model, "request_duck");
    const char *argv[] = {"XPENDING", key, "writers"};
    redisReply *r = commandv(b, 3, argv, err);
    if (!r)
        return -DS_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR)
        return bus__reply_error(r, "XPENDING", err);
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
        return bus__reply_error(r, "WAIT", err);
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
        bus__model_key(b, ep, sizeof ep, models[i], "epoch");
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
            return bus__reply_error(r, "the script before WAIT", err);
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
