/* models.h: the models one server holds, by name, for every thread: each
 * model's engine (the state that answers) and the seq its copy in the
 * database has reached (what SQL reads wait for). Entries are reference
 * counted, so a model dropped while a request reads it stays valid until
 * that request lets go. Thread-safe. */
#ifndef DS_MODELS_H
#define DS_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

typedef struct ds_models ds_models;

typedef struct model_ref {
    ds_engine *engine; /* owned by the entry */
    const char *name;
} model_ref;

ds_models *models_new(void);
/* Frees every model (no reference may be held). */
void models_free(ds_models *ms);

/* Adds a model under its name, taking the engine; persisted is the seq of
 * its database copy. */
void models_add(ds_models *ms, const char *name, ds_engine *e, int64_t persisted);
/* The model named by exactly these bytes, or NULL. Release with
 * models_put(). */
model_ref *models_get(ds_models *ms, const char *name, size_t len);
void models_put(ds_models *ms, model_ref *r);
/* Removes a model by name (its engine goes with its last reference);
 * false when there is none. */
bool models_remove(ds_models *ms, const char *name);
/* The names of all models, sorted (caller frees each and the array). */
size_t models_names(ds_models *ms, char ***names);

/* The seq the database copy has reached; set by the persister after each
 * commit (waking whoever waits for it). */
void models_set_persisted(ds_models *ms, model_ref *r, int64_t seq);
int64_t models_persisted(ds_models *ms, model_ref *r);
/* Waits until the database copy reaches seq, or until deadline_ns
 * (CLOCK_MONOTONIC as ds_now_ns); false at the deadline. */
bool models_wait_persisted(ds_models *ms, model_ref *r, int64_t seq, int64_t deadline_ns);

/* The writer applied commands: wakes readers waiting for a seq. */
void models_notify_applied(ds_models *ms);
/* A replica that cannot follow the model (behind the writer's retention,
 * or its engine diverged) says why here; reads of the model then answer
 * 503 with it rather than a state that will never move. NULL clears it. */
void models_set_stalled(ds_models *ms, model_ref *r, const char *why);
/* True when stalled (why, when not NULL, gets the reason). */
bool models_stalled(ds_models *ms, model_ref *r, char *why, size_t cap);

/* Waits until the model's engine reaches seq, or until deadline_ns; false
 * at the deadline. */
bool models_wait_applied(ds_models *ms, model_ref *r, int64_t seq, int64_t deadline_ns);

#endif
