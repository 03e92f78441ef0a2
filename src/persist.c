/* persist.c: see persist.h. */
#include "persist.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crash.h"
#include "decimal.h"
#include "log.h"

typedef struct job {
    int (*fn)(ds_store *s, void *arg, ds_error *err);
    void *arg;
    int rc;
    ds_error err;
    bool done;
    struct job *next;
} job;

struct ds_persist {
    ds_store *store;
    persist_opts o;
    persist_done_fn done;
    void *ctx;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;    /* work for the thread */
    pthread_cond_t drained; /* the lag shrank, a job finished */
    persist_item *head, *tail;
    int64_t queued;    /* items in the queue */
    int64_t writing;   /* items in the group being written */
    int64_t oldest_ns; /* queued_ns of the oldest item not yet committed, 0: none */
    job *jobs;
    bool stop, failing, joined;
    bool exited;           /* the thread is gone: persist_run refuses */
    int holds;             /* persist_hold_checkpoints: no CHECKPOINT of ours */
    bool hurry;            /* write the next group without waiting for its interval */
    int64_t stop_limit_ms; /* stopping: how long to keep trying a failing group */
    ds_error why;
    persist_stats stats;
};

persist_item *persist_item_new(const char *model)
{
    persist_item *it = xcalloc(1, sizeof *it);
    it->model = xstrdup(model);
    it->delta.seq = -1;
    it->delta.move_dim = it->delta.member_dim = -1;
    return it;
}

void persist_item_free(persist_item *it)
{
    if (!it)
        return;
    free(it->model);
    engine_delta_free(&it->delta);
    free(it->user);
    free(it->rid);
    free(it->body);
    free(it->cmd);
    free(it->answer);
    free(it->cmds);
    ds_arena_free(&it->arena);
    free(it);
}

static const char *form_name(spread_form f)
{
    return f == SPREAD_DELTA ? "delta" : f == SPREAD_PERCENT ? "percent" : "value";
}

static char *target_text(ds_arena *a, const ds_model *m, const ds_cell *c)
{
    char buf[DS_MAX_DIMS * 12 + 1];
    size_t o = 0;
    buf[0] = '\0';
    for (int k = 0; k < m->ndims && o < sizeof buf; k++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%" PRId32, k ? "," : "", c->m[k]);
    return ds_arena_strndup(a, buf, strlen(buf));
}

/* The command log rows of an applied command. */
static void command_rows(persist_item *it, const engine_result *res)
{
    static const char *const ops[] = {"add", "rename", "move", "delete"};
    const ds_model *m = res->before;
    const ds_command *cmd = &res->cmd;
    ds_arena *a = &it->arena;
    if (cmd->kind == COMMAND_MEMBER) {
        const ds_member_op *op = &cmd->member;
        char detail[160];
        snprintf(detail, sizeof detail,
                 "%s dim=%" PRId32 " member=%" PRId32 " parent=%" PRId32 " facts_to=%" PRId32
                 " force=%d",
                 ops[op->kind], m->dims[op->dim].id, op->member, op->parent, op->facts_to,
                 op->force);
        it->cmds = xcalloc(1, sizeof *it->cmds);
        it->cmds[0] = (store_command_row){.kind = "member",
                                          .measure_id = -1,
                                          .detail = ds_arena_strndup(a, detail, strlen(detail))};
        it->ncmds = 1;
        return;
    }
    it->cmds = xcalloc(cmd->nwrites, sizeof *it->cmds);
    it->ncmds = cmd->nwrites;
    for (size_t i = 0; i < cmd->nwrites; i++) {
        const ds_write *w = &cmd->writes[i];
        const ds_changeset *cs = &res->out.sets[i];
        char amount[DEC_BUFSZ];
        dec_format(w->amount,
                   w->form == SPREAD_PERCENT ? w->pct_scale : m->measures[w->measure].scale,
                   amount);
        it->cmds[i] = (store_command_row){.part = (int)i,
                                          .kind = cs->leaf ? "leaf" : "spread",
                                          .measure_id = m->measures[w->measure].id,
                                          .target = target_text(a, m, &w->cell),
                                          .method = spread_method_name(cs->method),
                                          .form = form_name(w->form),
                                          .amount = ds_arena_strndup(a, amount, strlen(amount)),
                                          .has_values = true,
                                          .old_value = cs->target.old_value,
                                          .new_value = cs->target.new_value,
                                          .leaves_changed = cs->leaves_changed};
    }
}

persist_item *persist_item_from(const char *model, const engine_input *in, engine_result *res,
                                const char *body, size_t len)
{
    persist_item *it = persist_item_new(model);
    engine_delta_take(res, &it->delta);
    it->ts_ms = in->ts_ms;
    it->user = xstrdup(in->user);
    it->rid = xstrdup(in->rid);
    snprintf(it->hash, sizeof it->hash, "%s", in->hash);
    it->code = res->code;
    it->body = xstrndup(body, len);
    it->body_len = len;
    if (res->status == ENGINE_APPLIED)
        command_rows(it, res);
    return it;
}

store_item persist_store_item(const persist_item *it)
{
    return (store_item){.model = it->model,
                        .delta = &it->delta,
                        .ts_ms = it->ts_ms,
                        .user = it->user,
                        .rid = it->rid,
                        .hash = it->hash,
                        .code = it->code,
                        .body = it->body,
                        .body_len = it->body_len,
                        .cmds = it->cmds,
                        .ncmds = it->ncmds,
                        .cmd = it->cmd,
                        .cmd_len = it->cmd_len,
                        .skip = it->noop};
}

void persist_opts_default(persist_opts *o)
{
    memset(o, 0, sizeof *o);
    o->group_max = 20000;
    o->checkpoint_bytes = INT64_C(64) << 20;
    o->idle_checkpoint_ms = 1000;
    o->interval_ms = 50;
    o->retention_ms = INT64_C(7) * 24 * 3600 * 1000;
}

/* Every 10 minutes: the ledger rows past the retention window go. */
static void expire_requests(ds_persist *p, int64_t newest_ts_ms, int64_t *last_ns)
{
    if (!p->o.retention_ms || !newest_ts_ms || ds_now_ns() - *last_ns < INT64_C(600) * 1000000000)
        return;
    *last_ns = ds_now_ns();
    ds_error err;
    if (store_requests_expire(p->store, newest_ts_ms - p->o.retention_ms, &err))
        log_warn("persister: old request ids not forgotten: %s", err.message);
}

/* ---- the thread ------------------------------------------------------------ */

static void run_jobs(ds_persist *p)
{
    pthread_mutex_lock(&p->lock);
    job *j = p->jobs;
    p->jobs = NULL;
    pthread_mutex_unlock(&p->lock);
    while (j) {
        job *next = j->next;
        j->rc = j->fn(p->store, j->arg, &j->err);
        pthread_mutex_lock(&p->lock);
        j->done = true;
        pthread_cond_broadcast(&p->drained);
        pthread_mutex_unlock(&p->lock);
        j = next;
    }
}

/* Takes up to group_max items off the queue (NULL when none). */
static persist_item *take_group(ds_persist *p, size_t *n)
{
    persist_item *first = p->head, *last = NULL;
    size_t k = 0;
    for (persist_item *it = first; it && k < p->o.group_max; it = it->next) {
        last = it;
        k++;
    }
    if (!last)
        return NULL;
    p->head = last->next;
    if (!p->head)
        p->tail = NULL;
    last->next = NULL;
    p->queued -= (int64_t)k;
    p->writing = (int64_t)k;
    *n = k;
    return first;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

/* Writes one group, retrying every second while the database refuses
 * (unless stopping past its limit). True when committed. */
static bool write_group(ds_persist *p, persist_item *group, size_t n, int64_t stop_by_ns)
{
    store_item *items = xmalloc_array(n, sizeof *items);
    size_t i = 0;
    for (persist_item *it = group; it; it = it->next, i++)
        items[i] = persist_store_item(it);
    bool ok = false;
    for (int attempt = 0;; attempt++) {
        ds_error err;
        double t0 = ds_now_ms();
        if (store_persist(p->store, items, n, &err) == 0) {
            for (size_t k = 0; p->o.materialize_views && k < n; k++) {
                ds_error verr;
                if (!items[k].skip && store_views_materialize(p->store, items[k].model, &verr))
                    log_warn("persister: the views of '%s' not recomputed: %s", items[k].model,
                             verr.message);
            }
            pthread_mutex_lock(&p->lock);
            if (p->failing)
                log_info("persister: writing to the database again");
            p->failing = false;
            p->stats.groups++;
            p->stats.commands += (int64_t)n;
            p->stats.last_group_ms = ds_now_ms() - t0;
            p->stats.times = store_persist_timing(p->store);
            pthread_mutex_unlock(&p->lock);
            ok = true;
            break;
        }
        pthread_mutex_lock(&p->lock);
        p->failing = true;
        p->why = err;
        p->stats.failures++;
        bool give_up = stop_by_ns && ds_now_ns() > stop_by_ns;
        pthread_mutex_unlock(&p->lock);
        if (attempt % 30 == 0)
            log_error("persister: cannot write %zu commands to the database (%s); they stay in "
                      "the request stream, new writes are refused (503) until they are written; "
                      "retrying every second",
                      n, err.message);
        if (give_up) {
            log_error("persister: stopping with %zu commands not written; they are in the "
                      "request stream and are applied again at the next start",
                      n);
            break;
        }
        sleep_ms(1000);
    }
    free(items);
    return ok;
}

/* DS_CRASH_AT=mid_checkpoint: the process dies a moment after a
 * checkpoint starts, while DuckDB writes the database file. */
static void *kill_soon(void *arg)
{
    (void)arg;
    struct timespec t = {0, 2 * 1000 * 1000};
    nanosleep(&t, NULL);
    crash_point("mid_checkpoint");
    return NULL;
}

static bool held(ds_persist *p)
{
    pthread_mutex_lock(&p->lock);
    bool h = p->holds > 0;
    pthread_mutex_unlock(&p->lock);
    return h;
}

static void checkpoint(ds_persist *p)
{
    ds_error err;
    if (held(p)) { /* a backup copies the file: the next one after it */
        log_debug("persister: checkpoint held (a backup is copying the database file)");
        return;
    }
    double t0 = ds_now_ms();
    pthread_t killer;
    if (crash_armed("mid_checkpoint"))
        pthread_create(&killer, NULL, kill_soon, NULL);
    if (store_checkpoint(p->store, &err) != 0) {
        log_debug("persister: checkpoint postponed: %s", err.message);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->stats.checkpoints++;
    p->stats.last_checkpoint_ms = ds_now_ms() - t0;
    p->stats.checkpoint_s += p->stats.last_checkpoint_ms / 1000;
    pthread_mutex_unlock(&p->lock);
    log_debug("persister: checkpoint in %.0f ms", ds_now_ms() - t0);
}

static void *persist_main(void *arg)
{
    ds_thread_name("ds-persister");
    ds_persist *p = arg;
    int64_t last_write = 0, next_write = 0, newest_ts = 0, last_expire = ds_now_ns();
    bool dirty = false;
    for (;;) {
        run_jobs(p);
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->jobs && !p->stop) {
            if (dirty) { /* wake for the idle checkpoint */
                ds_cond_wait_until(&p->cond, &p->lock, ds_now_ns() + 200 * 1000000);
                break;
            }
            pthread_cond_wait(&p->cond, &p->lock);
        }
        /* work, but the last group was a moment ago: let more gather */
        while (p->head && !p->jobs && !p->stop && !p->hurry && (size_t)p->queued < p->o.group_max &&
               ds_now_ns() < next_write)
            ds_cond_wait_until(&p->cond, &p->lock, next_write);
        int64_t stop_by = p->stop ? ds_now_ns() + p->stop_limit_ms * 1000000 : 0;
        size_t n = 0;
        persist_item *group = take_group(p, &n);
        if (group)
            p->hurry = false;
        bool stop = p->stop && !group && !p->jobs;
        pthread_mutex_unlock(&p->lock);
        if (group) {
            int64_t t0 = ds_now_ns();
            if (write_group(p, group, n, stop_by) && p->done)
                p->done(p->ctx, group);
            pthread_mutex_lock(&p->lock);
            p->writing = 0;
            p->oldest_ns = p->head ? p->head->queued_ns : 0;
            pthread_cond_broadcast(&p->drained);
            pthread_mutex_unlock(&p->lock);
            while (group) {
                persist_item *next = group->next;
                if (group->ts_ms > newest_ts)
                    newest_ts = group->ts_ms;
                persist_item_free(group);
                group = next;
            }
            /* an UPDATE scans the whole table of facts, however few rows
               change: after a long group wait longer (twice its time, up
               to a quarter of a second), so that the database takes at
               most a third of a core and groups grow with the load */
            int64_t took = ds_now_ns() - t0, wait = p->o.interval_ms * 1000000;
            if (wait && 2 * took > wait)
                wait = 2 * took < 250000000 ? 2 * took : 250000000;
            last_write = ds_now_ns();
            next_write = last_write + wait;
            dirty = true;
            if (store_wal_bytes(p->store) > p->o.checkpoint_bytes)
                checkpoint(p);
            expire_requests(p, newest_ts, &last_expire);
        } else if (dirty && ds_now_ns() - last_write > p->o.idle_checkpoint_ms * 1000000 &&
                   !held(p)) {
            checkpoint(p);
            dirty = false;
        }
        if (stop)
            break;
    }
    if (dirty)
        checkpoint(p);
    pthread_mutex_lock(&p->lock);
    p->exited = true;
    for (job *j = p->jobs; j; j = j->next) { /* queued after the last pass */
        j->rc = ds_fail(&j->err, DS_UNAVAILABLE, NULL, "the persister has stopped");
        j->done = true;
    }
    p->jobs = NULL;
    pthread_cond_broadcast(&p->drained);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- the API ------------------------------------------------------------------- */

int persist_start(ds_store *s, const persist_opts *o, persist_done_fn done, void *ctx,
                  ds_persist **out, ds_error *err)
{
    ds_persist *p = xcalloc(1, sizeof *p);
    p->store = s;
    if (o)
        p->o = *o;
    else
        persist_opts_default(&p->o);
    p->done = done;
    p->ctx = ctx;
    pthread_mutex_init(&p->lock, NULL);
    ds_cond_init(&p->cond);
    ds_cond_init(&p->drained);
    if (pthread_create(&p->thread, NULL, persist_main, p) != 0) {
        pthread_cond_destroy(&p->cond);
        pthread_cond_destroy(&p->drained);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return ds_fail(err, DS_INTERNAL, NULL, "cannot start the persister thread");
    }
    *out = p;
    return 0;
}

void persist_stop(ds_persist *p, int64_t limit_ms)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    bool joined = p->joined;
    p->stop = true;
    p->stop_limit_ms = limit_ms;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (joined)
        return;
    pthread_join(p->thread, NULL);
    pthread_mutex_lock(&p->lock);
    p->joined = true;
    pthread_mutex_unlock(&p->lock);
}

void persist_free(ds_persist *p)
{
    if (!p)
        return;
    persist_stop(p, 0);
    for (persist_item *it = p->head, *next; it; it = next) { /* given up on */
        next = it->next;
        persist_item_free(it);
    }
    pthread_cond_destroy(&p->cond);
    pthread_cond_destroy(&p->drained);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void persist_submit(ds_persist *p, persist_item *it)
{
    it->next = NULL;
    it->queued_ns = ds_now_ns();
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = it;
    else
        p->head = it;
    p->tail = it;
    if (p->queued++ == 0 && !p->writing)
        p->oldest_ns = it->queued_ns;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void persist_hurry(ds_persist *p)
{
    pthread_mutex_lock(&p->lock);
    if (!p->hurry) { /* also for what is about to be queued: kept until a group goes */
        p->hurry = true;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
}

static void lag_locked(ds_persist *p, int64_t *commands, int64_t *age_ms)
{
    *commands = p->queued + p->writing;
    *age_ms = p->oldest_ns ? (ds_now_ns() - p->oldest_ns) / 1000000 : 0;
}

void persist_lag(ds_persist *p, int64_t *commands, int64_t *age_ms)
{
    pthread_mutex_lock(&p->lock);
    lag_locked(p, commands, age_ms);
    pthread_mutex_unlock(&p->lock);
}

bool persist_wait_lag(ds_persist *p, int64_t max_commands, int64_t max_ms, int64_t limit_ms)
{
    int64_t until = ds_now_ns() + limit_ms * 1000000;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        int64_t n, age;
        lag_locked(p, &n, &age);
        if (n <= max_commands && age <= max_ms)
            break;
        if (ds_now_ns() >= until) {
            pthread_mutex_unlock(&p->lock);
            return false;
        }
        ds_cond_wait_until(&p->drained, &p->lock, ds_now_ns() + 20 * 1000000);
    }
    pthread_mutex_unlock(&p->lock);
    return true;
}

bool persist_failed(ds_persist *p, ds_error *why)
{
    pthread_mutex_lock(&p->lock);
    bool f = p->failing;
    if (f && why)
        *why = p->why;
    pthread_mutex_unlock(&p->lock);
    return f;
}

int persist_run(ds_persist *p, int (*fn)(ds_store *s, void *arg, ds_error *err), void *arg,
                ds_error *err)
{
    job j = {.fn = fn, .arg = arg};
    pthread_mutex_lock(&p->lock);
    if (p->exited) {
        pthread_mutex_unlock(&p->lock);
        return ds_fail(err, DS_UNAVAILABLE, NULL, "the persister has stopped");
    }
    j.next = p->jobs;
    p->jobs = &j;
    pthread_cond_signal(&p->cond);
    while (!j.done)
        pthread_cond_wait(&p->drained, &p->lock);
    pthread_mutex_unlock(&p->lock);
    if (j.rc && err)
        *err = j.err;
    return j.rc;
}

void persist_hold_checkpoints(ds_persist *p, bool hold)
{
    pthread_mutex_lock(&p->lock);
    p->holds += hold ? 1 : -1;
    if (p->holds < 0)
        p->holds = 0;
    pthread_cond_signal(&p->cond); /* an idle checkpoint may be due now */
    pthread_mutex_unlock(&p->lock);
}

void persist_get_stats(ds_persist *p, persist_stats *s)
{
    pthread_mutex_lock(&p->lock);
    *s = p->stats;
    pthread_mutex_unlock(&p->lock);
}
