/* metrics.c: see metrics.h. */
#include "metrics.h"

#include <inttypes.h>
#include <string.h>

static void hist_init(metrics_hist *h, const double *bounds, int n)
{
    memset(h, 0, sizeof *h);
    memcpy(h->bounds, bounds, (size_t)n * sizeof *bounds);
    h->nbounds = n;
}

void metrics_init(ds_metrics *m)
{
    memset(m, 0, sizeof *m);
    static const double sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
    static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                  0.05,   0.1,   0.25,   0.5,   1,    2.5};
    hist_init(&m->batch_size, sizes, (int)DS_ARRAY_LEN(sizes));
    hist_init(&m->apply_seconds, secs, (int)DS_ARRAY_LEN(secs));
    hist_init(&m->publish_seconds, secs, (int)DS_ARRAY_LEN(secs));
    hist_init(&m->request_seconds, secs, (int)DS_ARRAY_LEN(secs));
    static const double lag[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,  0.5,    1,     2.5,  10,    60};
    hist_init(&m->replica_lag_seconds, lag, (int)DS_ARRAY_LEN(lag));
    hist_init(&m->wait_seconds, secs, (int)DS_ARRAY_LEN(secs));
}

int metrics_route(ds_metrics *m, const char *name)
{
    for (int i = 0; i < METRICS_ROUTES; i++) {
        const char *cur = atomic_load(&m->route_names[i]);
        /* a free slot: take it, unless another thread took it meanwhile
           (then cur is what it put there) */
        if (!cur && atomic_compare_exchange_strong(&m->route_names[i], &cur, name))
            return i;
        if (strcmp(cur, name) == 0)
            return i;
    }
    return METRICS_ROUTES - 1;
}

void metrics_add(uint64_t *counter, uint64_t v)
{
    __atomic_fetch_add(counter, v, __ATOMIC_RELAXED);
}

void metrics_request(ds_metrics *m, int route, int status)
{
    if (route < 0 || route >= METRICS_ROUTES || status < 100 || status >= METRICS_STATUSES)
        return;
    metrics_add(&m->statuses[route][status], 1);
}

void metrics_observe(metrics_hist *h, double v)
{
    int i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    metrics_add(&h->counts[i], 1);
    metrics_add(&h->n, 1);
    __atomic_fetch_add(&h->sum_micro, (int64_t)(v * 1e6), __ATOMIC_RELAXED);
}

void metrics_render_hist(ds_buf *b, const char *name, const char *help, metrics_hist *h)
{
    ds_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i <= h->nbounds; i++) {
        cum += __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
        if (i < h->nbounds)
            ds_buf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, h->bounds[i], cum);
        else
            ds_buf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    }
    ds_buf_printf(b, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name,
                  (double)__atomic_load_n(&h->sum_micro, __ATOMIC_RELAXED) / 1e6, name,
                  __atomic_load_n(&h->n, __ATOMIC_RELAXED));
}

void metrics_render(ds_metrics *m, ds_buf *b)
{
    ds_buf_puts(b, "# HELP duckspread_http_requests_total HTTP requests by route and status.\n"
                   "# TYPE duckspread_http_requests_total counter\n");
    const char *name;
    for (int r = 0; r < METRICS_ROUTES && (name = atomic_load(&m->route_names[r])); r++)
        for (int st = 100; st < METRICS_STATUSES; st++) {
            uint64_t v = __atomic_load_n(&m->statuses[r][st], __ATOMIC_RELAXED);
            if (v)
                ds_buf_printf(
                    b, "duckspread_http_requests_total{route=\"%s\",status=\"%d\"} %" PRIu64 "\n",
                    name, st, v);
        }
    metrics_render_hist(b, "duckspread_batch_size", "Commands applied per writer batch.",
                        &m->batch_size);
    metrics_render_hist(b, "duckspread_apply_seconds", "Time to apply and commit one writer batch.",
                        &m->apply_seconds);
    metrics_render_hist(b, "duckspread_publish_seconds",
                        "Time to publish one batch's events to Redis and acknowledge it.",
                        &m->publish_seconds);
    metrics_render_hist(b, "duckspread_http_request_seconds", "Time to answer an HTTP request.",
                        &m->request_seconds);
    if (__atomic_load_n(&m->wait_seconds.n, __ATOMIC_RELAXED))
        metrics_render_hist(b, "duckspread_redis_wait_seconds",
                            "--redis-replicas: the wait for Redis's replicas per writer batch.",
                            &m->wait_seconds);
    if (__atomic_load_n(&m->replica_lag_seconds.n, __ATOMIC_RELAXED))
        metrics_render_hist(b, "duckspread_replica_lag_seconds",
                            "A replica: time from the writer's publish of a command to its "
                            "apply here.",
                            &m->replica_lag_seconds);
    ds_buf_printf(b,
                  "# TYPE duckspread_commands_applied_total counter\n"
                  "duckspread_commands_applied_total %" PRIu64 "\n"
                  "# HELP duckspread_redis_lost_events_total Events Redis's response streams "
                  "lost (a failover or restart without them), published again.\n"
                  "# TYPE duckspread_redis_lost_events_total counter\n"
                  "duckspread_redis_lost_events_total %" PRIu64 "\n"
                  "# HELP duckspread_redis_lost_entries_total Applied request entries Redis "
                  "lost with their events (found at a start: writes answered just before may "
                  "be lost).\n"
                  "# TYPE duckspread_redis_lost_entries_total counter\n"
                  "duckspread_redis_lost_entries_total %" PRIu64 "\n"
                  "# TYPE duckspread_commands_refused_total counter\n"
                  "duckspread_commands_refused_total %" PRIu64 "\n"
                  "# TYPE duckspread_batches_total counter\nduckspread_batches_total %" PRIu64
                  "\n# TYPE duckspread_batch_replays_total counter\n"
                  "duckspread_batch_replays_total %" PRIu64 "\n",
                  __atomic_load_n(&m->commands_applied, __ATOMIC_RELAXED),
                  __atomic_load_n(&m->redis_lost_events, __ATOMIC_RELAXED),
                  __atomic_load_n(&m->redis_lost_entries, __ATOMIC_RELAXED),
                  __atomic_load_n(&m->commands_refused, __ATOMIC_RELAXED),
                  __atomic_load_n(&m->batches, __ATOMIC_RELAXED),
                  __atomic_load_n(&m->replays, __ATOMIC_RELAXED));
}
