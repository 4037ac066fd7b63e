/* upstream_http.h -- CMP over HTTP to the RA/CA (RFC 6712), libcurl multi
 * on the daemon's sd-event loop */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "request.h"
#include "upstream_health.h"

struct upstream_http;
struct upstream_call;
struct gw_stats;

int upstream_http_new(sd_event *e, struct gw_stats *stats, size_t max_response,
                      struct upstream_http **ret);
struct upstream_http *upstream_http_free(struct upstream_http *h);
void upstream_http_set_max_response(struct upstream_http *h, size_t max_response);

/* POST r->body to r->upstream_uri; request_complete(r, ...) follows, on a
 * later loop iteration, exactly once, unless upstream_http_cancel(). */
int upstream_http_submit(struct upstream_http *h, struct request *r);
void upstream_http_cancel(struct upstream_http *h, struct request *r);

/* An exchange that is not a node's (ann_poll.c's genm): what to send and
 * where. Everything it points to is borrowed until done() or abandon. */
struct upstream_post {
        const char *name;               /* the upstream, for health and logs */
        const char *uri;
        const uint8_t *body;
        size_t body_len;
        int body_type;                  /* enum cmp_body: decides connection reuse */
        uint64_t timeout_usec;
        enum cmpgw_chunked chunked;
        uint32_t max_connections;
        const struct upstream_tls *tls; /* NULL: none */
};
/* res and what it points to live only during the call */
typedef void (*upstream_done_fn)(const struct upstream_result *res, void *userdata);

/* POST p; done(res, userdata) follows on a later loop iteration, exactly
 * once, unless upstream_http_abandon(*ret). WHO names it in logs. The
 * exchange counts towards the upstream's health and backoff like a node's. */
int upstream_http_post(struct upstream_http *h, const struct upstream_post *p, upstream_done_fn done,
                       void *userdata, const char *who, struct upstream_call **ret);
void upstream_http_abandon(struct upstream_http *h, struct upstream_call *c);

/* The health record of NAME (upstream_health.h; kept by name across
 * reloads), NULL before its first request. */
const struct upstream_health *upstream_http_health(struct upstream_http *h, const char *name);
/* An upstream that keeps failing is backed off: seconds until it is tried
 * again (the Max-Age of the 5.03 meanwhile), 0 when it may be tried now. */
unsigned upstream_http_backoff_left(struct upstream_http *h, const char *name);
