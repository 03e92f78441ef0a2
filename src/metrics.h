/* metrics.h: counters and histograms for /metrics (Prometheus text
 * format). Updates are atomic and lock-free; rendering reads them. */
#ifndef DS_METRICS_H
#define DS_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "util.h"

enum { METRICS_ROUTES = 32, METRICS_STATUSES = 600, METRICS_BUCKETS = 16 };

typedef struct metrics_hist {
    double bounds[METRICS_BUCKETS]; /* upper bounds; the last is +Inf */
    int nbounds;
    uint64_t counts[METRICS_BUCKETS + 1];
    uint64_t n;
    int64_t sum_micro; /* sum of observations in millionths */
} metrics_hist;

typedef struct ds_metrics {
    /* each slot set once, by whichever request thread first sees the route
       (atomic by type: a compare-and-swap from NULL) */
    const char *_Atomic route_names[METRICS_ROUTES];
    uint64_t statuses[METRICS_ROUTES][METRICS_STATUSES];
    metrics_hist batch_size;      /* commands per applied batch */
    metrics_hist apply_seconds;   /* batch apply time, COMMIT included */
    metrics_hist publish_seconds; /* events to Redis and XACK of one batch */
    metrics_hist request_seconds;
    metrics_hist replica_lag_seconds; /* a replica: published by the writer -> applied here */
    metrics_hist wait_seconds;        /* --redis-replicas: WAIT per batch */
    uint64_t commands_applied, commands_refused, batches, replays;
    uint64_t redis_lost_events;  /* events the response stream lost (published again) */
    uint64_t redis_lost_entries; /* applied request entries Redis lost with their events */
} ds_metrics;

void metrics_init(ds_metrics *m);
int metrics_route(ds_metrics *m, const char *name); /* registers once, returns its index */
void metrics_request(ds_metrics *m, int route, int status);
void metrics_observe(metrics_hist *h, double v);
void metrics_add(uint64_t *counter, uint64_t v);
/* Appends the Prometheus text of everything to b. */
void metrics_render(ds_metrics *m, ds_buf *b);
void metrics_render_hist(ds_buf *b, const char *name, const char *help, metrics_hist *h);

#endif
