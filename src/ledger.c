/* ledger.c: see ledger.h. An open-addressing map under a read-write lock. */
#include "ledger.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct slot {
    char *key; /* NULL: empty; "" after removal keeps probe chains */
    ledger_entry e;
} slot;

struct ds_ledger {
    pthread_rwlock_t lock;
    slot *slots;
    size_t cap, used;
};

ds_ledger *ledger_new(void)
{
    ds_ledger *l = xcalloc(1, sizeof *l);
    pthread_rwlock_init(&l->lock, NULL);
    l->cap = 1024;
    l->slots = xcalloc(l->cap, sizeof *l->slots);
    return l;
}

void ledger_free(ds_ledger *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->cap; i++)
        free(l->slots[i].key);
    free(l->slots);
    pthread_rwlock_destroy(&l->lock);
    free(l);
}

bool ledger_key(char *buf, const char *model, const char *user, const char *rid)
{
    user = user ? user : "";
    rid = rid ? rid : "";
    size_t lm = strlen(model), lu = strlen(user), lr = strlen(rid);
    buf[0] = '\0';
    if (lm > DS_IDENT_MAX || lu > DS_IDENT_MAX || lr > REQ_ID_MAX)
        return false;
    memcpy(buf, model, lm);
    buf[lm] = '\n';
    memcpy(buf + lm + 1, user, lu);
    buf[lm + 1 + lu] = '\n';
    memcpy(buf + lm + lu + 2, rid, lr);
    buf[lm + lu + 2 + lr] = '\0';
    return true;
}

static size_t find(const ds_ledger *l, const char *key)
{
    size_t i = (size_t)ds_hash_bytes(key, strlen(key), 7) & (l->cap - 1);
    while (l->slots[i].key && strcmp(l->slots[i].key, key) != 0)
        i = (i + 1) & (l->cap - 1);
    return i;
}

static void grow(ds_ledger *l)
{
    slot *old = l->slots;
    size_t ocap = l->cap;
    l->cap *= 2;
    l->slots = xcalloc(l->cap, sizeof *l->slots);
    l->used = 0;
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].key)
            continue;
        if (!old[i].key[0]) {
            free(old[i].key);
            continue;
        }
        size_t j = find(l, old[i].key);
        l->slots[j] = old[i];
        l->used++;
    }
    free(old);
}

void ledger_put(ds_ledger *l, const char *key, const char *hash, int64_t seq, int code)
{
    pthread_rwlock_wrlock(&l->lock);
    if ((l->used + 1) * 2 > l->cap)
        grow(l);
    size_t i = find(l, key);
    if (!l->slots[i].key) {
        l->slots[i].key = xstrdup(key);
        l->used++;
    }
    snprintf(l->slots[i].e.hash, sizeof l->slots[i].e.hash, "%s", hash);
    l->slots[i].e.seq = seq;
    l->slots[i].e.code = code;
    pthread_rwlock_unlock(&l->lock);
}

bool ledger_get(ds_ledger *l, const char *key, ledger_entry *out)
{
    pthread_rwlock_rdlock(&l->lock);
    size_t i = find(l, key);
    bool found = l->slots[i].key != NULL;
    if (found)
        *out = l->slots[i].e;
    pthread_rwlock_unlock(&l->lock);
    return found;
}

void ledger_forget_model(ds_ledger *l, const char *model)
{
    size_t n = strlen(model);
    pthread_rwlock_wrlock(&l->lock);
    for (size_t i = 0; i < l->cap; i++) {
        char *k = l->slots[i].key;
        if (k && k[0] && strncmp(k, model, n) == 0 && k[n] == '\n')
            k[0] = '\0'; /* a tombstone: "" never matches a key */
    }
    pthread_rwlock_unlock(&l->lock);
}
