/* log.h -- leveled logging to stderr (journald picks it up) */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

/* syslog-style levels; "<N>" prefixes let journald keep the priority. */
enum log_level {
        LOG_LVL_ERR = 3,
        LOG_LVL_WARNING = 4,
        LOG_LVL_NOTICE = 5,
        LOG_LVL_INFO = 6,
        LOG_LVL_DEBUG = 7,
};

void log_set_max_level(enum log_level level);
enum log_level log_get_max_level(void);
/* Prefix each line with "<N>" (when stderr is the journal) instead of a program name. */
void log_set_journal_prefix(bool on);
void log_set_program(const char *name);

void log_msg(enum log_level level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));
/* Logs fmt, then OpenSSL's error queue (drained). Returns -EIO for convenience. */
int log_openssl(enum log_level level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* The reason an error return carries to its caller: *why = the formatted
 * text (malloc'd; NULL when out of memory; nothing when why is NULL).
 * Returns k, so that `return log_reason(why, -EINVAL, ...)` is one step. */
int log_reason(char **why, int k, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* At most LOG_RATELIMIT_BURST lines per LOG_RATELIMIT_SEC for one kind of
 * event a network peer can cause (floods must not flood the journal). */
#define LOG_RATELIMIT_BURST 10
#define LOG_RATELIMIT_SEC 10
struct log_ratelimit {
        const char *what;               /* "requests refused by limits", for the summary */
        unsigned long long window_usec, logged, suppressed;
};
/* true: log this one. Says how many were suppressed when a window ends. */
bool log_ratelimit_ok(struct log_ratelimit *rl, unsigned long long now_usec);

#define log_error(...)   log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
