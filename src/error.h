/* error.h: the error every layer fills and only the HTTP layer turns into a
 * status. Codes and extras are the API's (docs/api.md, Errors). Functions
 * that can fail return 0 or a negative ds_code and describe the failure in
 * a caller-provided ds_error. */
#ifndef DS_ERROR_H
#define DS_ERROR_H

#include <stdbool.h>
#include <stdint.h>

typedef enum ds_code {
    DS_OK = 0,
    DS_UNAUTHENTICATED,
    DS_TOO_LARGE,
    DS_NOT_JSON,
    DS_MALFORMED,
    DS_FORBIDDEN,
    DS_OUT_OF_SCOPE,
    DS_NOT_FOUND,
    DS_INVALID_VALUE,
    DS_OUT_OF_RANGE,
    DS_AMBIGUOUS_MEMBER,
    DS_TOO_MANY_CELLS,
    DS_HELD,
    DS_SIGNS_CANCEL,
    DS_STALE,
    DS_REQUEST_ID_REUSED,
    DS_RATE_LIMITED,
    DS_UNAVAILABLE,
    DS_INTERNAL,
    DS_CODE_COUNT
} ds_code;

#define DS_ERR_CANDIDATES 1024

typedef struct ds_error {
    ds_code code;
    char message[512];
    char target[64]; /* "table", "column", "cell", "dimension", "view", a field */
    bool has_seq;
    int64_t seq; /* stale: the current seq */
    bool has_count;
    int64_t count, limit; /* too_many_cells */
    int ncandidates;      /* ambiguous_member: NUL-separated keys */
    char candidates[DS_ERR_CANDIDATES];
} ds_error;

/* Fills *e (when e is not NULL) and returns -code. */
int ds_fail(ds_error *e, ds_code code, const char *target, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void ds_error_clear(ds_error *e);
/* Appends a candidate key to an ambiguous_member error; silently stops when
 * the buffer is full (the message says how many there were). */
void ds_error_add_candidate(ds_error *e, const char *key);
/* The wire name of a code ("not_found"). */
const char *ds_code_name(ds_code code);

#endif
