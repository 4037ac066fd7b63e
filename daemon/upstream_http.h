/* upstream_http.h -- CMP over HTTP to the RA/CA (RFC 6712), libcurl multi
 * on the daemon's sd-event loop */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

struct upstream_http;
struct request;
struct gw_stats;

int upstream_http_new(sd_event *e, struct gw_stats *stats, size_t max_response,
                      struct upstream_http **ret);
struct upstream_http *upstream_http_free(struct upstream_http *h);
void upstream_http_set_max_response(struct upstream_http *h, size_t max_response);

/* POST r->body to r->upstream_uri; request_complete(r, ...) follows, on a
 * later loop iteration, exactly once, unless upstream_http_cancel(). */
int upstream_http_submit(struct upstream_http *h, struct request *r);
void upstream_http_cancel(struct upstream_http *h, struct request *r);
