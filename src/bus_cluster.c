/* bus_cluster.c: Redis Cluster for the bus (see bus.h, bus_internal.h).
 * The slot map comes from CLUSTER SLOTS; a command goes to the node that
 * serves its model's slot, over that node's own connection (the others
 * stay parked); MOVED updates the map and sends the command again there,
 * ASK sends it once to the node named, after ASKING. A lost connection,
 * CLUSTERDOWN or TRYAGAIN makes the map stale: the next command reads it
 * again from any node that answers. */
#include "bus_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis Cluster
 * hashes keys (the cluster specification's reference). */
static uint16_t crc16(const char *s, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)((unsigned char)s[i] << 8);
        for (int k = 0; k < 8; k++)
            crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int bus__key_slot(const char *key, size_t len)
{
    /* the hash tag: what is between the first { and the first } after
       it, when that is not empty */
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(key + from, '}', len - from);
        if (close && close > key + from)
            return crc16(key + from, (size_t)(close - key - from)) & (BUS_SLOTS - 1);
    }
    return crc16(key, len) & (BUS_SLOTS - 1);
}

void bus__route(ds_bus *b, const char *model)
{
    if (!b->cluster)
        return;
    char key[300];
    int n = snprintf(key, sizeof key, "{%s}:", model);
    b->slot = bus__key_slot(key, n < (int)sizeof key ? (size_t)n : sizeof key - 1);
}

/* Makes node i the one in use: the connection in use is parked, node i's
 * is taken out. */
static void use_node(ds_bus *b, int i)
{
    if (i == b->cur)
        return;
    b->parked[b->cur] = (bus_parked){.fd = b->fd, .ssl = b->ssl, .reader = b->reader};
    bus__use_host(b, i);
    b->fd = b->parked[i].fd;
    b->ssl = b->parked[i].ssl;
    b->reader = b->parked[i].reader;
    b->parked[i] = (bus_parked){.fd = -1};
}

/* The index of host:port among the known nodes, added when new; -1 when
 * the table is full. */
static int node_index(ds_bus *b, const char *host, long port)
{
    char p[16];
    snprintf(p, sizeof p, "%ld", port);
    for (int i = 0; i < b->nhosts; i++)
        if (strcmp(b->hosts[i], host) == 0 && strcmp(b->ports[i], p) == 0)
            return i;
    if (b->nhosts == BUS_NODES_MAX)
        return -1;
    int i = b->nhosts++;
    b->hosts[i] = xstrdup(host);
    b->ports[i] = xstrdup(p);
    b->parked[i] = (bus_parked){.fd = -1};
    return i;
}

/* A node's address in a reply: "" or "?" (the node does not know its own
 * address) stands for the host the answer came from. */
static const char *node_host(const ds_bus *b, const redisReply *ip)
{
    if (ip->type != REDIS_REPLY_STRING || !ip->str[0] || strcmp(ip->str, "?") == 0)
        return b->host;
    return ip->str;
}

/* Fills the map from a CLUSTER SLOTS reply: [[start, end, [ip, port,
 * id, ...], replicas...], ...]. Returns how many slots it names. */
static int read_slots(ds_bus *b, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return 0;
    for (int s = 0; s < BUS_SLOTS; s++)
        b->slot_node[s] = -1;
    int covered = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        int k = node_index(b, node_host(b, e->element[2]->element[0]),
                           (long)e->element[2]->element[1]->integer);
        for (long long s = lo < 0 ? 0 : lo; k >= 0 && s <= hi && s < BUS_SLOTS; s++) {
            b->slot_node[s] = (int16_t)k;
            covered++;
        }
    }
    return covered;
}

/* CLUSTER SLOTS from node i (connecting to it if needed). */
static int refresh_from(ds_bus *b, int i, ds_error *err)
{
    use_node(b, i);
    bool fresh;
    if (bus__connect_here(b, &fresh, err))
        return -DS_UNAVAILABLE;
    const char *argv[] = {"CLUSTER", "SLOTS"};
    size_t lens[] = {7, 5};
    redisReply *r = bus__exchange(b, 2, argv, lens, 0, err);
    if (!r) {
        bus__disconnect(b);
        return ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s did not answer CLUSTER SLOTS",
                       b->where);
    }
    int rc = 0;
    bool noperm = r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOPERM", 6);
    b->refused |= noperm; /* the start check names it as forbidden */
    if (r->type == REDIS_REPLY_ERROR)
        rc = ds_fail(err, DS_UNAVAILABLE, "redis", "Redis at %s refused CLUSTER SLOTS: %s%s",
                     b->where, r->str,
                     strstr(r->str, "cluster support disabled")
                         ? " (it is not a cluster node: leave out --redis-cluster)"
                     : noperm ? " (in a cluster the ACL user needs +cluster|slots and +asking)"
                              : "");
    else if (read_slots(b, r) == 0)
        rc = ds_fail(err, DS_UNAVAILABLE, "redis",
                     "Redis at %s serves no slots yet (is the cluster created?)", b->where);
    freeReplyObject(r);
    return rc;
}

/* Reads the map from the node in use, else from each known node in turn;
 * when none answers, err names each one's reason. */
static int refresh(ds_bus *b, ds_error *err)
{
    if (!b->slot_node) {
        b->slot_node = xmalloc_array(BUS_SLOTS, sizeof *b->slot_node);
        for (int s = 0; s < BUS_SLOTS; s++)
            b->slot_node[s] = -1;
    }
    char all[900] = "";
    size_t used = 0;
    int start = b->cur;
    for (int k = 0; k < b->nhosts; k++) {
        ds_error e;
        if (refresh_from(b, (start + k) % b->nhosts, &e) == 0) {
            b->map_stale = false;
            return 0;
        }
        if (b->refused) /* the ACL or the credentials: the others say the same */
            return ds_fail(err, DS_UNAVAILABLE, "redis", "%s", e.message);
        if (used < sizeof all)
            used += (size_t)snprintf(all + used, sizeof all - used, "%s%.200s", k ? "; " : "",
                                     e.message);
    }
    return ds_fail(err, DS_UNAVAILABLE, "redis", "no Redis Cluster node gave the slot map: %s",
                   all);
}

int bus__cluster_pick(ds_bus *b, ds_error *err)
{
    if (b->force_node >= 0) {
        use_node(b, b->force_node);
        return 0;
    }
    if (b->map_stale || !b->slot_node || (b->slot >= 0 && b->slot_node[b->slot] < 0)) {
        int rc = refresh(b, err);
        if (rc)
            return rc;
    }
    if (b->slot >= 0 && b->slot_node[b->slot] >= 0)
        use_node(b, b->slot_node[b->slot]);
    return 0;
}

/* "MOVED 3999 127.0.0.1:6381": the slot and the node's index (-1 when the
 * reply does not parse or the table is full). */
static int redirect_target(ds_bus *b, const char *s, int *slot)
{
    const char *sp = strchr(s, ' ');
    char *end;
    long sl = sp ? strtol(sp + 1, &end, 10) : -1;
    if (!sp || sl < 0 || sl >= BUS_SLOTS || *end != ' ')
        return -1;
    const char *addr = end + 1, *colon = strrchr(addr, ':');
    if (!colon)
        return -1;
    long port = strtol(colon + 1, &end, 10);
    if (port < 1 || port > 65535)
        return -1;
    char host[256];
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof host)
        return -1;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    *slot = (int)sl;
    return node_index(b, hl ? host : b->host, port);
}

int bus__cluster_redirect(ds_bus *b, const redisReply *r)
{
    if (!b->cluster || !r || r->type != REDIS_REPLY_ERROR)
        return 0;
    bool moved = !strncmp(r->str, "MOVED ", 6), ask = !strncmp(r->str, "ASK ", 4);
    if (!moved && !ask) {
        if (!strncmp(r->str, "CLUSTERDOWN", 11) || !strncmp(r->str, "TRYAGAIN", 8))
            b->map_stale = true;
        return 0;
    }
    int slot, k = redirect_target(b, r->str, &slot);
    if (k < 0) {
        b->map_stale = true;
        return 0;
    }
    b->redirects++;
    if (moved && b->slot_node)
        b->slot_node[slot] = (int16_t)k;
    else if (moved)
        b->map_stale = true;
    use_node(b, k);
    return moved ? 1 : 2;
}

int bus__cluster_primaries(ds_bus *b, int *idx, int cap, ds_error *err)
{
    if (!b->slot_node || b->map_stale) {
        int rc = refresh(b, err);
        if (rc)
            return rc;
    }
    bool seen[BUS_NODES_MAX] = {false};
    int n = 0;
    for (int s = 0; s < BUS_SLOTS; s++) {
        int k = b->slot_node[s];
        if (k >= 0 && !seen[k] && n < cap) {
            seen[k] = true;
            idx[n++] = k;
        }
    }
    return n;
}

void bus__cluster_free(ds_bus *b)
{
    for (int i = 0; i < b->nhosts; i++) {
        if (i == b->cur)
            continue;
        if (b->parked[i].ssl)
            SSL_free(b->parked[i].ssl);
        if (b->parked[i].fd >= 0)
            close(b->parked[i].fd);
        if (b->parked[i].reader)
            redisReaderFree(b->parked[i].reader);
        b->parked[i] = (bus_parked){.fd = -1};
    }
    free(b->slot_node);
    b->slot_node = NULL;
}
