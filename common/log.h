/*
 * log.h - operator log: one line per event that matters, with a level.
 *
 * Lines go to stderr as "2026-11-22T10:00:00.123Z LEVEL message". The level
 * threshold is process-wide and set once at start-up (log_set_level);
 * log_rate-limited helpers are the caller's business (log once per event).
 */
#ifndef UVMQ_LOG_H
#define UVMQ_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Longest text log_quote writes, with its NUL. */
#define LOG_QUOTE_MAX 100

/* Makes bytes a client chose (a user name, a topic) safe for a log line:
 * p[0..len) into out[0..cap) (cap at least 8), printable ASCII as is and
 * every other byte, '"' and '\\' as \xNN, cut with "..." when it does not
 * fit. Returns out. */
const char *log_quote(char *out, size_t cap, const void *p, size_t len);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                      \
    do {                                                                    \
        if (log_get_level() >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__);  \
    } while (0)

#endif
