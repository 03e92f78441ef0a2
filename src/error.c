/* error.c: see error.h. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const names[DS_CODE_COUNT] = {
    [DS_OK] = "ok",
    [DS_UNAUTHENTICATED] = "unauthenticated",
    [DS_TOO_LARGE] = "too_large",
    [DS_NOT_JSON] = "not_json",
    [DS_MALFORMED] = "malformed",
    [DS_FORBIDDEN] = "forbidden",
    [DS_OUT_OF_SCOPE] = "out_of_scope",
    [DS_NOT_FOUND] = "not_found",
    [DS_INVALID_VALUE] = "invalid_value",
    [DS_OUT_OF_RANGE] = "out_of_range",
    [DS_AMBIGUOUS_MEMBER] = "ambiguous_member",
    [DS_TOO_MANY_CELLS] = "too_many_cells",
    [DS_HELD] = "held",
    [DS_SIGNS_CANCEL] = "signs_cancel",
    [DS_STALE] = "stale",
    [DS_REQUEST_ID_REUSED] = "request_id_reused",
    [DS_RATE_LIMITED] = "rate_limited",
    [DS_UNAVAILABLE] = "unavailable",
    [DS_INTERNAL] = "internal",
};

const char *ds_code_name(ds_code code)
{
    if (code < 0 || code >= DS_CODE_COUNT)
        return "internal";
    return names[code];
}

void ds_error_clear(ds_error *e)
{
    if (!e)
        return;
    e->code = DS_OK;
    e->message[0] = e->target[0] = '\0';
    e->has_seq = e->has_count = false;
    e->seq = e->count = e->limit = 0;
    e->ncandidates = 0;
    e->candidates[0] = '\0';
}

int ds_fail(ds_error *e, ds_code code, const char *target, const char *fmt, ...)
{
    if (e) {
        ds_error_clear(e);
        e->code = code;
        snprintf(e->target, sizeof e->target, "%s", target ? target : "");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        va_end(ap);
    }
    return -(int)code;
}

void ds_error_add_candidate(ds_error *e, const char *key)
{
    size_t used = 0;
    for (int i = 0; i < e->ncandidates; i++)
        used += strlen(e->candidates + used) + 1;
    size_t n = strlen(key) + 1;
    if (used + n > sizeof e->candidates)
        return;
    memcpy(e->candidates + used, key, n);
    e->ncandidates++;
}
