/* ws_grids.h: grid subscriptions on the WebSocket. The glue between the
 * live feed (which runs the sockets), the grids hub (which computes
 * snapshots and patches) and the models (their engines): a client's text
 * messages
 *   {"op": "subscribe", "id": "g1", "grid": {rows, cols, measure, filters}}
 *   {"op": "unsubscribe", "id": "g1"}
 * are checked (the grid as POST .../grid checks it: 400, 404, 422, the
 * --cells-max limit) and handed to the hub; a refusal is answered
 * {"op": "error", "id": ..., "error": {...}}. */
#ifndef DS_WS_GRIDS_H
#define DS_WS_GRIDS_H

#include <stddef.h>
#include <stdint.h>

#include "grids.h"
#include "server.h"

/* Sets the live feed's grid ops (after srv->live and srv->grids exist). */
void ws_grids_attach(ds_server *srv);
/* The hub's send function (ctx: the ds_server). */
void ws_grids_send(void *ctx, const grid_to *to, size_t n, const char *head, size_t head_len,
                   const char *tail, size_t tail_len, int64_t seq, bool fresh);

#endif
