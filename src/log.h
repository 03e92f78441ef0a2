/* log.h: one line per event on stderr, with a UTC timestamp and a level,
 * written whole (safe from several threads). DS_LOG=debug shows debug.
 *
 * Bursts are collapsed: of the lines of one template (the format string,
 * so in effect one call site) within LOG_WINDOW_MS, the first LOG_BURST
 * are written; the rest are counted, and once the window is over one line
 * stands for them: the last of them followed by "(N more like this in the
 * last S s)". A thousand connections failing at once write a dozen lines,
 * not a thousand. The summary is written with the template's next line,
 * by log_flush() (the HTTP server calls it a few times a second), or at
 * the latest by log_flush(true) when the server stops. */
#ifndef DS_LOG_H
#define DS_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    LOG_BURST = 10, /* lines of one template written per window */
    LOG_WINDOW_MS = 1000,
    LOG_SLOTS = 64,     /* templates tracked at once (the least recent is evicted) */
    LOG_KEPT_MAX = 512, /* bytes of a burst's last line kept for its summary */
};

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A line built from another library's template (libmicrohttpd's logger
 * gives a format and its arguments): tmpl is what counts as "the same
 * message" for the burst limit, the line is prefix followed by fmt. */
void log_vtemplate(log_level level, const void *tmpl, const char *prefix, const char *fmt,
                   va_list ap) __attribute__((format(printf, 4, 0)));
/* Writes the summaries of bursts whose window is over (all: every burst
 * with lines not yet accounted for, over or not). */
void log_flush(bool all);

/* ---- the burst limit, apart from the clock and stderr (for tests) ------- */

typedef struct log_slot {
    const void *key; /* the template; NULL: free */
    log_level level;
    int64_t start_ns, last_ns; /* the window's first line, the last line dropped */
    unsigned lines, dropped;   /* in this window */
    char kept[LOG_KEPT_MAX];   /* the last dropped line's text */
} log_slot;

typedef struct log_limit {
    log_slot slots[LOG_SLOTS];
} log_limit; /* zeroed: empty */

/* Whether a line of template key at now_ns is written (true) or counted
 * (false; its text is kept for the summary). Before that, when key's
 * previous window is over and dropped lines, *due gets its summary line
 * (else due[0] is NUL). A new template takes the least recently used slot,
 * whose summary (if any) is then due. */
bool log_limit_admit(log_limit *l, const void *key, log_level level, const char *text,
                     int64_t now_ns, char *due, size_t cap, log_level *due_level);
/* The summary of one burst whose window is over by now_ns (all: of any
 * burst with dropped lines): true and *out filled while there is one. */
bool log_limit_take(log_limit *l, int64_t now_ns, bool all, char *out, size_t cap,
                    log_level *level);

#endif
