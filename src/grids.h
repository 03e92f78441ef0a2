/* grids.h: grid subscriptions, what a screen uses. A subscriber names a
 * grid (rows of one dimension, columns of another, filters, a measure);
 * it gets the grid's values at one seq (a snapshot), then for every later
 * seq that changed any of its cells one patch with just those cells, in
 * seq order, never a gap. Patches are computed once per distinct grid and
 * shared by all its subscribers: after each applied command the writer
 * tells the hub (grids_applied), which finds the grids whose cells the
 * command's changed leaves lie beneath, reads them again from the engine
 * (at that very seq: the writer applies nothing else meanwhile) and sends
 * the cells that differ.
 *
 * Messages (JSON text):
 *   {"op":"snapshot","id":ID,"seq":N,"measure":M,"rows":[keys],
 *    "cols":[keys],"values":[[v,...],...]}
 *   {"op":"patch","id":ID,"seq":N,"cells":[[row,col,v],...]}
 *   {"op":"error","id":ID,"error":{...}}   (nothing follows; the handle
 *                                           stays valid until unsubscribed)
 * A message goes to every subscriber it is for in one call of the send
 * function: its text is the same for all of them but for the ID.
 * rows and cols index into the keys of the snapshot. Threads: any. */
#ifndef DS_GRIDS_H
#define DS_GRIDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "command.h"
#include "engine.h"
#include "error.h"

typedef struct ds_grids ds_grids;
typedef struct grid_sub grid_sub;

/* One subscriber a message goes to: its connection, its handle, and its
 * ID as a JSON string literal (quotes included). */
typedef struct grid_to {
    void *conn;
    grid_sub *sub;
    const char *id;
    size_t id_len;
} grid_to;

/* Delivers one message to n subscribers: each gets head + its id + tail
 * (all borrowed for the call); seq is the message's seq; fresh: it
 * replaces the subscription's earlier messages (a snapshot, or the error
 * that ends it), so it must not be dropped, while a patch may be (its
 * subscriber then needs a fresh snapshot: grids_resnapshot); ctx is
 * grids_new's. Called with the hub's lock held: it must only queue. */
typedef void (*grid_send_fn)(void *ctx, const grid_to *to, size_t n, const char *head,
                             size_t head_len, const char *tail, size_t tail_len, int64_t seq,
                             bool fresh);

ds_grids *grids_new(grid_send_fn send, void *ctx);
/* Frees every grid and subscription (after the connections are gone). */
void grids_free(ds_grids *g);

/* Subscribes conn to the grid spec of model (read from engine e): sends the
 * snapshot at e's current seq, then patches for every later seq. id is the
 * client's name for it (copied). *out is the handle for unsubscribing. */
int grids_subscribe(ds_grids *g, const char *model, ds_engine *e, const ds_grid_spec *spec,
                    void *conn, const char *id, size_t id_len, grid_sub **out, ds_error *err);
/* Ends a subscription (no message after this returns). */
void grids_unsubscribe(ds_grids *g, grid_sub *sub);
/* The subscription of conn named id (the client's name), or NULL. */
grid_sub *grids_find(ds_grids *g, void *conn, const char *id, size_t id_len);
/* The model of a subscription (valid while it is). */
const char *grids_model(const grid_sub *sub);
/* Ends every subscription of conn. */
void grids_unsubscribe_conn(ds_grids *g, void *conn);

/* The writer, after the command of delta d was applied to engine e (and
 * before the next): patches to the grids it changed. */
void grids_applied(ds_grids *g, const char *model, ds_engine *e, const engine_delta *d);

/* A subscriber that fell behind had its queued messages dropped: sends it
 * a fresh snapshot now (later patches continue from its seq). */
void grids_resnapshot(ds_grids *g, grid_sub *sub, ds_engine *e);

/* A model was dropped: its subscriptions end with an error message. */
void grids_forget(ds_grids *g, const char *model);

typedef struct grids_stats {
    int64_t grids, subscribers, patches, snapshots;
} grids_stats;
void grids_get_stats(ds_grids *g, grids_stats *s);

#endif
