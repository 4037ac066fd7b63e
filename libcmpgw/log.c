/* log.c -- leveled logging to stderr */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

static enum log_level max_level = LOG_LVL_INFO;
static bool journal_prefix;
static const char *program = "cmpgw";

void log_set_max_level(enum log_level level) { max_level = level; }
enum log_level log_get_max_level(void) { return max_level; }
void log_set_journal_prefix(bool on) { journal_prefix = on; }
void log_set_program(const char *name) { program = name; }

void log_vmsg(enum log_level level, const char *fmt, va_list ap) {
        char line[2048];

        if (level > max_level)
                return;
        vsnprintf(line, sizeof line, fmt, ap);
        if (journal_prefix)
                fprintf(stderr, "<%d>%s\n", (int) level, line);
        else
                fprintf(stderr, "%s: %s\n", program, line);
}

void log_msg(enum log_level level, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_vmsg(level, fmt, ap);
        va_end(ap);
}

int log_reason(char **why, int k, const char *fmt, ...) {
        va_list ap;

        if (!why)
                return k;
        va_start(ap, fmt);
        if (vasprintf(why, fmt, ap) < 0)
                *why = NULL;
        va_end(ap);
        return k;
}

static int openssl_err_line(const char *str, size_t len, void *u) {
        enum log_level *level = u;

        log_msg(*level, "  openssl: %.*s", (int) (len && str[len - 1] == '\n' ? len - 1 : len), str);
        return 1;
}

int log_openssl(enum log_level level, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_vmsg(level, fmt, ap);
        va_end(ap);
        if (level <= max_level)
                ERR_print_errors_cb(openssl_err_line, &level);
        else
                ERR_clear_error();
        return -EIO;
}

bool log_ratelimit_ok(struct log_ratelimit *rl, unsigned long long now_usec) {
        if (now_usec >= rl->window_usec + LOG_RATELIMIT_SEC * 1000000ULL) {
                if (rl->suppressed)
                        log_msg(LOG_LVL_NOTICE, "%llu more %s in the last %d s not logged",
                                rl->suppressed, rl->what, LOG_RATELIMIT_SEC);
                rl->window_usec = now_usec;
                rl->logged = rl->suppressed = 0;
        }
        if (rl->logged < LOG_RATELIMIT_BURST) {
                rl->logged++;
                return true;
        }
        rl->suppressed++;
        return false;
}
