/* models.c: see models.h. */
#include "models.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct entry {
    model_ref ref; /* first: a model_ref * is an entry * */
    char *name;
    size_t len;
    int refs; /* the table's, plus one per models_get */
    int64_t persisted;
    char *stalled; /* a replica that cannot follow this model: why */
    struct entry *next;
} entry;

struct ds_models {
    pthread_mutex_t lock;
    pthread_cond_t persisted; /* some model's applied or persisted seq moved */
    entry *head;
};

ds_models *models_new(void)
{
    ds_models *ms = xcalloc(1, sizeof *ms);
    pthread_mutex_init(&ms->lock, NULL);
    ds_cond_init(&ms->persisted);
    return ms;
}

static void entry_free(entry *e)
{
    engine_free(e->ref.engine);
    free(e->name);
    free(e->stalled);
    free(e);
}

void models_free(ds_models *ms)
{
    if (!ms)
        return;
    for (entry *e = ms->head, *n; e; e = n) {
        n = e->next;
        entry_free(e);
    }
    pthread_cond_destroy(&ms->persisted);
    pthread_mutex_destroy(&ms->lock);
    free(ms);
}

void models_add(ds_models *ms, const char *name, ds_engine *eng, int64_t persisted)
{
    entry *e = xcalloc(1, sizeof *e);
    e->len = strlen(name);
    e->name = xstrndup(name, e->len);
    e->ref.engine = eng;
    e->ref.name = e->name;
    e->refs = 1;
    e->persisted = persisted;
    pthread_mutex_lock(&ms->lock);
    e->next = ms->head;
    ms->head = e;
    pthread_mutex_unlock(&ms->lock);
}

model_ref *models_get(ds_models *ms, const char *name, size_t len)
{
    pthread_mutex_lock(&ms->lock);
    entry *e = ms->head;
    while (e && !(e->len == len && memcmp(e->name, name, len) == 0))
        e = e->next;
    if (e)
        e->refs++;
    pthread_mutex_unlock(&ms->lock);
    return e ? &e->ref : NULL;
}

void models_put(ds_models *ms, model_ref *r)
{
    if (!r)
        return;
    entry *e = (entry *)r;
    pthread_mutex_lock(&ms->lock);
    bool last = --e->refs == 0;
    pthread_mutex_unlock(&ms->lock);
    if (last)
        entry_free(e);
}

bool models_remove(ds_models *ms, const char *name)
{
    size_t len = strlen(name);
    pthread_mutex_lock(&ms->lock);
    entry **p = &ms->head;
    while (*p && !((*p)->len == len && memcmp((*p)->name, name, len) == 0))
        p = &(*p)->next;
    entry *e = *p;
    bool last = false;
    if (e) {
        *p = e->next;
        last = --e->refs == 0;
    }
    pthread_cond_broadcast(&ms->persisted); /* waiters for it give up */
    pthread_mutex_unlock(&ms->lock);
    if (last)
        entry_free(e);
    return e != NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t models_names(ds_models *ms, char ***names)
{
    pthread_mutex_lock(&ms->lock);
    size_t n = 0;
    for (entry *e = ms->head; e; e = e->next)
        n++;
    *names = xmalloc_array(n + 1, sizeof **names);
    size_t i = 0;
    for (entry *e = ms->head; e; e = e->next)
        (*names)[i++] = xstrdup(e->name);
    pthread_mutex_unlock(&ms->lock);
    qsort(*names, n, sizeof **names, cmp_str);
    return n;
}

void models_set_persisted(ds_models *ms, model_ref *r, int64_t seq)
{
    pthread_mutex_lock(&ms->lock);
    ((entry *)r)->persisted = seq;
    pthread_cond_broadcast(&ms->persisted);
    pthread_mutex_unlock(&ms->lock);
}

int64_t models_persisted(ds_models *ms, model_ref *r)
{
    pthread_mutex_lock(&ms->lock);
    int64_t s = ((entry *)r)->persisted;
    pthread_mutex_unlock(&ms->lock);
    return s;
}

bool models_wait_persisted(ds_models *ms, model_ref *r, int64_t seq, int64_t deadline_ns)
{
    entry *e = (entry *)r;
    pthread_mutex_lock(&ms->lock);
    while (e->persisted < seq && ds_now_ns() < deadline_ns)
        ds_cond_wait_until(&ms->persisted, &ms->lock, deadline_ns);
    bool ok = e->persisted >= seq;
    pthread_mutex_unlock(&ms->lock);
    return ok;
}

void models_notify_applied(ds_models *ms)
{
    pthread_mutex_lock(&ms->lock);
    pthread_cond_broadcast(&ms->persisted);
    pthread_mutex_unlock(&ms->lock);
}

void models_set_stalled(ds_models *ms, model_ref *r, const char *why)
{
    pthread_mutex_lock(&ms->lock);
    entry *e = (entry *)r;
    free(e->stalled);
    e->stalled = why ? xstrdup(why) : NULL;
    pthread_cond_broadcast(&ms->persisted); /* waiters for a seq give up */
    pthread_mutex_unlock(&ms->lock);
}

bool models_stalled(ds_models *ms, model_ref *r, char *why, size_t cap)
{
    pthread_mutex_lock(&ms->lock);
    entry *e = (entry *)r;
    bool st = e->stalled != NULL;
    if (st && why)
        snprintf(why, cap, "%s", e->stalled);
    pthread_mutex_unlock(&ms->lock);
    return st;
}

bool models_wait_applied(ds_models *ms, model_ref *r, int64_t seq, int64_t deadline_ns)
{
    pthread_mutex_lock(&ms->lock);
    while (engine_seq(r->engine) < seq && ds_now_ns() < deadline_ns)
        ds_cond_wait_until(&ms->persisted, &ms->lock, deadline_ns);
    pthread_mutex_unlock(&ms->lock);
    return engine_seq(r->engine) >= seq;
}
