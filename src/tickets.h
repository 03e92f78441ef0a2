/* tickets.h: single-use tickets for browsers, whose EventSource and
 * WebSocket cannot send an Authorization header. POST /v1/tickets mints
 * one; ?ticket= on /events or /ws takes it. A ticket is TICKET_LEN hex
 * digits of random (144 bits), opens one stream within TICKET_TTL_S
 * seconds and stands for the principal (key) that asked for it.
 *
 * Tickets are kept per key: a key holds at most TICKETS_PER_KEY unused,
 * unexpired tickets, and minting beyond that is refused (rate_limited)
 * instead of replacing anything. No key's minting ever removes another
 * key's ticket; memory is bounded by the number of keys times the cap.
 * All functions are thread-safe; time is passed in (CLOCK_MONOTONIC ns). */
#ifndef DS_TICKETS_H
#define DS_TICKETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "keys.h"

enum {
    TICKET_RAND_BYTES = 18,
    TICKET_LEN = 2 * TICKET_RAND_BYTES, /* hex digits */
    TICKET_TTL_S = 30,
    TICKETS_PER_KEY = 64,
};

typedef struct ds_tickets ds_tickets;

/* Caller frees with tickets_free(). */
ds_tickets *tickets_new(void);
/* tickets_free(NULL) is a no-op. */
void tickets_free(ds_tickets *t);

/* Mints a ticket for who (by who->id; "" is the open mode's principal)
 * and writes it to out (TICKET_LEN digits and a NUL). Returns 0;
 * -DS_RATE_LIMITED when who's key already holds TICKETS_PER_KEY (err:
 * target "tickets", count and limit; *retry_after_s: seconds until its
 * oldest ticket expires); -DS_UNAVAILABLE when no random numbers could be
 * had. */
int tickets_mint(ds_tickets *t, const ds_principal *who, int64_t now_ns, char out[TICKET_LEN + 1],
                 int *retry_after_s, ds_error *err);
/* Takes the ticket value[0..len): true (and *who) the first time, before
 * it expires; false for anything else (unknown, used, expired, another
 * length). The comparison takes the same time whatever the digits. */
bool tickets_take(ds_tickets *t, const char *value, size_t len, int64_t now_ns, ds_principal *who);
/* Unused, unexpired tickets of the key id[0..len). */
int tickets_outstanding(ds_tickets *t, const char *id, size_t len, int64_t now_ns);

#endif
