/* writer.h: the single writer. One thread owns the store's write
 * connection: it holds each model's lease, reads the request streams in
 * batches (consumer group "writers"), applies a batch in one transaction in
 * stream order (replaying it one command per transaction if SQL fails
 * unexpectedly), records every outcome in the request ledger in the same
 * transaction, then hands events and outcomes to the live feed, publishes
 * the events and acknowledges the entries (both fenced by the lease).
 *
 * writer_start() recovers before it returns: it publishes what was
 * committed but not published, re-reads its own pending entries (the
 * ledger skips what is done) and seeds the live feed. */
#ifndef DS_WRITER_H
#define DS_WRITER_H

#include <stdbool.h>

#include "error.h"
#include "server.h"

int writer_start(ds_server *srv, ds_writer **out, ds_error *err);
/* Drains: finishes the batch in flight, commits, publishes, stops. */
void writer_stop(ds_writer *w);
bool writer_alive(ds_writer *w);
/* Commands read but not yet acknowledged, summed over models. */
int64_t writer_lag(ds_writer *w);

/* Runs on the writer's thread, between batches, and waits for it: model
 * creation (def is copied) and removal. */
int writer_create_model(ds_writer *w, const ds_model *def, ds_error *err);
int writer_drop_model(ds_writer *w, const char *name, ds_error *err);

#endif
