/* http.h: the HTTP API (docs/api.md, web/openapi.json) on libmicrohttpd,
 * the only user of the HTTP library: routes, authentication, body limits, the
 * mapping from ds_code to HTTP status, long-polls and SSE as suspended
 * connections (no thread per waiting client), and the WebSocket upgrade
 * (the socket is handed to the live module). */
#ifndef DS_HTTP_H
#define DS_HTTP_H

#include "error.h"
#include "server.h"

/* Binds srv->o.listen and starts serving on a small thread pool. */
int http_start(ds_server *srv, http_server **out, ds_error *err);
/* Stops accepting new connections (the listening socket closes). */
void http_quiesce(http_server *h);
/* Stops serving and frees (open streams end). */
void http_stop(http_server *h);

#endif
