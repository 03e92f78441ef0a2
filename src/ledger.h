/* ledger.h: the request ledger in memory: for every request_id a model has
 * seen (scoped to model and user), the hash of its canonical body and its
 * outcome (seq and HTTP status). The store keeps the same rows, with the
 * full response, in ds_request, written in the transaction that applied the
 * command; this map is loaded from it at start and lets the API answer
 * retries and reuse without a database round trip. Thread-safe. */
#ifndef DS_LEDGER_H
#define DS_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"   /* DS_IDENT_MAX: a model or user name */
#include "request.h" /* REQ_ID_MAX */

/* The longest request key: model, user and request_id joined by '\n'. */
#define LEDGER_KEY_MAX (DS_IDENT_MAX + 1 + DS_IDENT_MAX + 1 + REQ_ID_MAX)

typedef struct ds_ledger ds_ledger;

typedef struct ledger_entry {
    char hash[65];
    int64_t seq; /* -1: refused */
    int code;    /* DS_OK: applied; else the refusal's ds_code */
} ledger_entry;

ds_ledger *ledger_new(void);
void ledger_free(ds_ledger *l);
/* The key of a request: model, user and request_id joined by '\n', into
 * buf (LEDGER_KEY_MAX + 1 bytes). False, with buf "", when a part is over
 * its limit (model and user DS_IDENT_MAX, request_id REQ_ID_MAX bytes):
 * a key is never cut. */
bool ledger_key(char *buf, const char *model, const char *user, const char *rid);
void ledger_put(ds_ledger *l, const char *key, const char *hash, int64_t seq, int code);
bool ledger_get(ds_ledger *l, const char *key, ledger_entry *out);
/* Forgets a dropped model's requests. */
void ledger_forget_model(ds_ledger *l, const char *model);

#endif
