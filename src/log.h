/* log.h: one line per event on stderr, with a UTC timestamp and a level,
 * written whole (safe from several threads). DS_LOG=debug shows debug. */
#ifndef DS_LOG_H
#define DS_LOG_H

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
