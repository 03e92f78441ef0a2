/* engine_ledger.c: the request ledger of one model: for every request_id
 * (scoped to the user) the hash of its body and what became of it, kept
 * for the retention window counted in stream time. Part of the engine. */
#include "engine_internal.h"

#include <stdlib.h>
#include <string.h>

void ledger__init(req_ledger *l)
{
    memset(l, 0, sizeof *l);
    l->nbuckets = 1024;
    l->bucket = xcalloc(l->nbuckets, sizeof *l->bucket);
    l->fifo_cap = 1024;
    l->fifo = xmalloc_array(l->fifo_cap, sizeof *l->fifo);
}

void ledger__free(req_ledger *l)
{
    for (size_t b = 0; b < l->nbuckets; b++)
        for (ledger_item *it = l->bucket[b], *next; it; it = next) {
            next = it->next;
            free(it);
        }
    free(l->bucket);
    free(l->fifo);
    memset(l, 0, sizeof *l);
}

static uint64_t key_hash(const char *user, size_t ulen, const char *rid, size_t rlen)
{
    return ds_hash_bytes(rid, rlen, ds_hash_bytes(user, ulen, 0x6c656467));
}

static ledger_item **find(const req_ledger *l, const char *user, size_t ulen, const char *rid,
                          size_t rlen)
{
    ledger_item **p = &l->bucket[key_hash(user, ulen, rid, rlen) & (l->nbuckets - 1)];
    for (; *p; p = &(*p)->next) {
        ledger_item *it = *p;
        if (it->ulen == ulen && it->rlen == rlen && memcmp(it->key, user, ulen) == 0 &&
            memcmp(it->key + ulen + 1, rid, rlen) == 0)
            break;
    }
    return p;
}

ledger_item *ledger__get(const req_ledger *l, const char *user, const char *rid)
{
    return *find(l, user, strlen(user), rid, strlen(rid));
}

static void rehash(req_ledger *l)
{
    size_t nb = l->nbuckets * 2;
    ledger_item **b = xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < l->nbuckets; i++)
        for (ledger_item *it = l->bucket[i], *next; it; it = next) {
            next = it->next;
            size_t at = key_hash(it->key, it->ulen, it->key + it->ulen + 1, it->rlen) & (nb - 1);
            it->next = b[at];
            b[at] = it;
        }
    free(l->bucket);
    l->bucket = b;
    l->nbuckets = nb;
}

static void fifo_push(req_ledger *l, ledger_item *it)
{
    size_t used = l->tail - l->head;
    if (used == l->fifo_cap) {
        ledger_item **f = xmalloc_array(l->fifo_cap * 2, sizeof *f);
        for (size_t i = 0; i < used; i++)
            f[i] = l->fifo[(l->head + i) % l->fifo_cap];
        free(l->fifo);
        l->fifo = f;
        l->fifo_cap *= 2;
        l->head = 0;
        l->tail = used;
    }
    l->fifo[l->tail++ % l->fifo_cap] = it;
}

static int hexval(char c)
{
    int v = ds_hexval((unsigned char)c);
    return v < 0 ? 0 : v;
}

void ledger__put(req_ledger *l, const char *user, const char *rid, const char *hash_hex,
                 int64_t seq, int code, int64_t ts_ms)
{
    size_t ulen = strlen(user), rlen = strlen(rid);
    ledger_item **p = find(l, user, ulen, rid, rlen);
    if (*p) /* recorded once: the first outcome stays */
        return;
    ledger_item *it = xmalloc(sizeof *it + ulen + rlen + 2);
    it->next = NULL;
    it->seq = seq;
    it->ts_ms = ts_ms;
    it->code = code;
    for (int i = 0; i < 32; i++)
        it->hash[i] = (uint8_t)(hexval(hash_hex[2 * i]) << 4 | hexval(hash_hex[2 * i + 1]));
    it->ulen = (uint32_t)ulen;
    it->rlen = (uint32_t)rlen;
    memcpy(it->key, user, ulen + 1);
    memcpy(it->key + ulen + 1, rid, rlen + 1);
    *p = it;
    fifo_push(l, it);
    if (++l->n > l->nbuckets)
        rehash(l);
}

static void drop_oldest(req_ledger *l)
{
    ledger_item *it = l->fifo[l->head++ % l->fifo_cap];
    ledger_item **p = find(l, it->key, it->ulen, it->key + it->ulen + 1, it->rlen);
    *p = it->next;
    free(it);
    l->n--;
}

void ledger__expire(req_ledger *l, int64_t before_ms)
{
    while (l->head < l->tail && l->fifo[l->head % l->fifo_cap]->ts_ms < before_ms)
        drop_oldest(l);
}

void ledger__trim(req_ledger *l, size_t max)
{
    while (max && l->n > max && l->head < l->tail) {
        drop_oldest(l);
        l->evicted++;
    }
}

size_t ledger__bytes(const req_ledger *l)
{
    return l->nbuckets * sizeof *l->bucket + l->fifo_cap * sizeof *l->fifo +
           l->n * (sizeof(ledger_item) + 48);
}

void ledger__hex(const uint8_t *hash, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[hash[i] >> 4];
        out[2 * i + 1] = hex[hash[i] & 15];
    }
    out[64] = '\0';
}
