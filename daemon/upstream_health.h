/* upstream_health.h -- the health of each upstream (issue 6), by name:
 * requests, answers, transport failures, latency; shown by GetStatistics
 * and `cmpgwctl status`. upstream_http.c and upstream_coap.c keep one
 * table each. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct upstream_health {
        char name[64];
        uint64_t requests, answered, failures;
        uint32_t failures_in_a_row;     /* transport failures: unreachable, timeout, broken connection */
        int64_t last_success, last_failure;     /* unix seconds, 0 never */
        double latency_ms;              /* of the last answered exchange */
        uint64_t backoff_until_usec;    /* CLOCK_MONOTONIC; 0 when not backing off (HTTP only) */
        bool http11;                    /* answered with HTTP/1.1 or later: takes chunked bodies */
        bool chunked;                   /* the last request went chunked */
        unsigned in_flight;             /* exchanges on the wire (at most max_connections) */
        unsigned queued;                /* waiting for one of them to end */
};

struct upstream_health_table {
        struct upstream_health *v;
        size_t n;
};

/* NAME's record, NULL before its first request */
const struct upstream_health *upstream_health_find(const struct upstream_health_table *t, const char *name);
/* NAME's record, made (zeroed) on first use; NULL only when out of memory */
struct upstream_health *upstream_health_get(struct upstream_health_table *t, const char *name);
/* One exchange ended: ANSWERED (any answer) or a transport failure; the
 * latency from STARTED_USEC to NOW_USEC (CLOCK_MONOTONIC) when answered */
void upstream_health_count(struct upstream_health *h, bool answered, uint64_t started_usec, uint64_t now_usec);
void upstream_health_table_clear(struct upstream_health_table *t);
