/* tickets.c: see tickets.h. Tickets sit in a hash table by value (to be
 * taken) and in one list in minting order, which is also their expiry
 * order (every ticket lives TICKET_TTL_S): expired ones are dropped from
 * the old end on every call. Each key has a holder that counts its
 * tickets; holders live as long as the table (one per key ever seen). */
#include "tickets.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { TICKET_BUCKETS = 1024 }; /* a power of two */

_Static_assert((TICKET_BUCKETS & (TICKET_BUCKETS - 1)) == 0, "TICKET_BUCKETS: a power of two");
_Static_assert(TICKET_LEN == 2 * TICKET_RAND_BYTES, "a ticket is its random bytes in hex");

typedef struct ticket {
    struct ticket *chain;         /* next in its bucket */
    struct ticket *older, *newer; /* minting order */
    int32_t holder;
    int64_t expires_ns;
    char value[TICKET_LEN + 1];
    ds_principal who;
} ticket;

typedef struct holder {
    char *id;        /* the map borrows it */
    int outstanding; /* its tickets in the table */
} holder;

struct ds_tickets {
    pthread_mutex_t lock;
    ticket *bucket[TICKET_BUCKETS];
    ticket *oldest, *newest;
    holder *holders;
    size_t nholders, cap;
    ds_strmap by_id;
};

ds_tickets *tickets_new(void)
{
    ds_tickets *t = xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    ds_strmap_init(&t->by_id, 64);
    return t;
}

static size_t bucket_of(const char *value)
{
    return (size_t)ds_hash_bytes(value, TICKET_LEN, 0) & (TICKET_BUCKETS - 1);
}

/* Unlinks k from its bucket and the list, gives its holder's place back
 * and frees it; the lock is held. */
static void drop(ds_tickets *t, ticket *k)
{
    for (ticket **pp = &t->bucket[bucket_of(k->value)]; *pp; pp = &(*pp)->chain)
        if (*pp == k) {
            *pp = k->chain;
            break;
        }
    if (k->older)
        k->older->newer = k->newer;
    else
        t->oldest = k->newer;
    if (k->newer)
        k->newer->older = k->older;
    else
        t->newest = k->older;
    t->holders[k->holder].outstanding--;
    OPENSSL_cleanse(k->value, sizeof k->value);
    free(k);
}

/* Drops every ticket that has expired at now_ns; the lock is held. */
static void expire(ds_tickets *t, int64_t now_ns)
{
    while (t->oldest && t->oldest->expires_ns <= now_ns)
        drop(t, t->oldest);
}

/* The holder of key id (created when new); the lock is held. */
static int32_t holder_of(ds_tickets *t, const char *id, size_t len, bool create)
{
    int32_t h;
    if (ds_strmap_get(&t->by_id, id, len, &h))
        return h;
    if (!create)
        return -1;
    if (t->nholders == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->holders = xrealloc(t->holders, t->cap * sizeof *t->holders);
    }
    h = (int32_t)t->nholders++;
    t->holders[h] = (holder){.id = xstrndup(id, len)};
    ds_strmap_put(&t->by_id, t->holders[h].id, len, h);
    return h;
}

/* Seconds until the oldest ticket of holder h expires (at least 1). */
static int oldest_wait_s(const ds_tickets *t, int32_t h, int64_t now_ns)
{
    for (const ticket *k = t->oldest; k; k = k->newer)
        if (k->holder == h) {
            int64_t s = (k->expires_ns - now_ns + 999999999) / 1000000000;
            return s > 1 ? (int)s : 1;
        }
    return 1;
}

int tickets_mint(ds_tickets *t, const ds_principal *who, int64_t now_ns, char out[TICKET_LEN + 1],
                 int *retry_after_s, ds_error *err)
{
    *retry_after_s = 0;
    unsigned char raw[TICKET_RAND_BYTES];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return ds_fail(err, DS_UNAVAILABLE, NULL, "no random numbers for a ticket; retry");
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[TICKET_LEN] = '\0';
    pthread_mutex_lock(&t->lock);
    expire(t, now_ns);
    int32_t h = holder_of(t, who->id, strnlen(who->id, sizeof who->id), true);
    if (t->holders[h].outstanding >= TICKETS_PER_KEY) {
        *retry_after_s = oldest_wait_s(t, h, now_ns);
        pthread_mutex_unlock(&t->lock);
        int rc = ds_fail(err, DS_RATE_LIMITED, "tickets",
                         "this key holds %d unused tickets, the limit; use one, or retry in %d s "
                         "when the oldest expires",
                         TICKETS_PER_KEY, *retry_after_s);
        err->has_count = true;
        err->count = err->limit = TICKETS_PER_KEY;
        return rc;
    }
    ticket *k = xcalloc(1, sizeof *k);
    memcpy(k->value, out, TICKET_LEN + 1);
    k->holder = h;
    k->expires_ns = now_ns + (int64_t)TICKET_TTL_S * 1000000000;
    k->who = *who;
    size_t b = bucket_of(k->value);
    k->chain = t->bucket[b];
    t->bucket[b] = k;
    k->older = t->newest;
    if (t->newest)
        t->newest->newer = k;
    else
        t->oldest = k;
    t->newest = k;
    t->holders[h].outstanding++;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

bool tickets_take(ds_tickets *t, const char *value, size_t len, int64_t now_ns, ds_principal *who)
{
    if (len != TICKET_LEN)
        return false;
    bool ok = false;
    pthread_mutex_lock(&t->lock);
    expire(t, now_ns);
    for (ticket *k = t->bucket[bucket_of(value)]; k; k = k->chain)
        if (CRYPTO_memcmp(k->value, value, TICKET_LEN) == 0) {
            *who = k->who;
            drop(t, k);
            ok = true;
            break;
        }
    pthread_mutex_unlock(&t->lock);
    return ok;
}

int tickets_outstanding(ds_tickets *t, const char *id, size_t len, int64_t now_ns)
{
    pthread_mutex_lock(&t->lock);
    expire(t, now_ns);
    int32_t h = holder_of(t, id, len, false);
    int n = h < 0 ? 0 : t->holders[h].outstanding;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void tickets_free(ds_tickets *t)
{
    if (!t)
        return;
    while (t->oldest)
        drop(t, t->oldest);
    for (size_t i = 0; i < t->nholders; i++)
        free(t->holders[i].id);
    free(t->holders);
    ds_strmap_free(&t->by_id);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
