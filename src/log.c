/* log.c: see log.h. The burst table is the one piece of state shared by the
 * whole process, as stderr is: a static table under one mutex. Lines are
 * written under it too, so a summary never comes after its template's
 * next line. */
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

enum { LOG_LINE_MAX = 2048 };
_Static_assert((int)LOG_KEPT_MAX < (int)LOG_LINE_MAX, "a kept line fits a line");

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static log_limit g_limit;

/* ---- the burst limit (pure) --------------------------------------------------------------- */

static const int64_t window_ns = (int64_t)LOG_WINDOW_MS * 1000000;

static void keep(log_slot *s, const char *text)
{
    size_t n = strlen(text);
    if (n >= sizeof s->kept)
        n = sizeof s->kept - 1;
    memcpy(s->kept, text, n);
    s->kept[n] = '\0';
}

/* The summary of s's dropped lines into out; the window is then closed. */
static void summarize(log_slot *s, char *out, size_t cap, log_level *level)
{
    double span = (double)(s->last_ns - s->start_ns) / 1e9;
    if (s->dropped == 1)
        snprintf(out, cap, "%s", s->kept);
    else
        snprintf(out, cap, "%s (%u more like this in the last %.1f s)", s->kept, s->dropped - 1,
                 span < 0.1 ? 0.1 : span);
    *level = s->level;
    s->lines = s->dropped = 0;
}

static log_slot *slot_for(log_limit *l, const void *key, char *due, size_t cap,
                          log_level *due_level)
{
    log_slot *oldest = &l->slots[0];
    for (int i = 0; i < LOG_SLOTS; i++) {
        log_slot *s = &l->slots[i];
        if (s->key == key)
            return s;
        if (!s->key || (oldest->key && s->start_ns < oldest->start_ns))
            oldest = s;
    }
    if (oldest->key && oldest->dropped)
        summarize(oldest, due, cap, due_level);
    memset(oldest, 0, sizeof *oldest);
    oldest->key = key;
    return oldest;
}

bool log_limit_admit(log_limit *l, const void *key, log_level level, const char *text,
                     int64_t now_ns, char *due, size_t cap, log_level *due_level)
{
    due[0] = '\0';
    log_slot *s = slot_for(l, key, due, cap, due_level);
    if (s->lines && now_ns - s->start_ns >= window_ns) {
        if (s->dropped)
            summarize(s, due, cap, due_level);
        s->lines = s->dropped = 0;
    }
    if (s->lines == 0)
        s->start_ns = now_ns;
    s->level = level;
    if (++s->lines <= LOG_BURST)
        return true;
    s->dropped++;
    s->last_ns = now_ns;
    keep(s, text);
    return false;
}

bool log_limit_take(log_limit *l, int64_t now_ns, bool all, char *out, size_t cap, log_level *level)
{
    for (int i = 0; i < LOG_SLOTS; i++) {
        log_slot *s = &l->slots[i];
        if (s->key && s->dropped && (all || now_ns - s->start_ns >= window_ns)) {
            summarize(s, out, cap, level);
            return true;
        }
    }
    return false;
}

/* ---- stderr -----------------------------------------------------------------------------------
 */

static void write_line(log_level level, const char *text)
{
    char line[LOG_LINE_MAX];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(line + n, sizeof line - n, ".%03dZ %-5s %s", (int)(tv.tv_usec / 1000),
                     level_names[level], text);
    n = m < 0 ? n : n + (size_t)m;
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    if (write(2, line, n) < 0)
        return;
}

/* Under g_lock: the summaries that are due by now. */
static void flush_locked(int64_t now, bool all)
{
    char text[LOG_LINE_MAX];
    log_level level;
    while (log_limit_take(&g_limit, now, all, text, sizeof text, &level))
        write_line(level, text);
}

static void emit(log_level level, const void *tmpl, const char *text)
{
    char due[LOG_LINE_MAX];
    log_level due_level;
    int64_t now = ds_now_ns();
    pthread_mutex_lock(&g_lock);
    bool admitted = log_limit_admit(&g_limit, tmpl, level, text, now, due, sizeof due, &due_level);
    if (due[0])
        write_line(due_level, due);
    if (admitted)
        write_line(level, text);
    flush_locked(now, false);
    pthread_mutex_unlock(&g_lock);
}

__attribute__((format(printf, 4, 0))) static void
vlog(log_level level, const void *tmpl, const char *prefix, const char *fmt, va_list ap)
{
    char text[LOG_LINE_MAX];
    int n = snprintf(text, sizeof text, "%s", prefix);
    if (n < 0)
        n = 0;
    vsnprintf(text + n, sizeof text - (size_t)n, fmt, ap);
    size_t len = strlen(text);
    while (len && text[len - 1] == '\n') /* a library's line may end with one */
        text[--len] = '\0';
    emit(level, tmpl, text);
}

void log_vtemplate(log_level level, const void *tmpl, const char *prefix, const char *fmt,
                   va_list ap)
{
    vlog(level, tmpl, prefix, fmt, ap);
}

void log_flush(bool all)
{
    pthread_mutex_lock(&g_lock);
    flush_locked(ds_now_ns(), all);
    pthread_mutex_unlock(&g_lock);
}

void log_debug(const char *fmt, ...)
{
    const char *lvl = getenv("DS_LOG");
    if (!lvl || strcmp(lvl, "debug") != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(LOG_DEBUG, fmt, "", fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(LOG_INFO, fmt, "", fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(LOG_WARN, fmt, "", fmt, ap);
    va_end(ap);
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(LOG_ERROR, fmt, "", fmt, ap);
    va_end(ap);
}
