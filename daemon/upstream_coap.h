/* upstream_coap.h -- CMP over CoAP to an upstream RA/CA or another gateway
 * (RFC 9482, so gateways can chain; issue 6), a libcoap client context on
 * the daemon's sd-event loop */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

struct upstream_coap;
struct request;
struct gw_stats;
struct cmpgw_config;
struct upstream_health;

/* An announcement PKIMessage (DER) from the ann of upstream NAME */
typedef void (*upstream_ann_fn)(const char *name, const uint8_t *der, size_t len, void *userdata);

int upstream_coap_new(sd_event *e, struct gw_stats *stats, size_t max_response,
                      struct upstream_coap **ret);
struct upstream_coap *upstream_coap_free(struct upstream_coap *u);

/* POST r->body to r->upstream_uri (coap:// or coaps://); request_complete(r, ...)
 * follows on a later loop iteration, exactly once, unless cancelled. */
int upstream_coap_submit(struct upstream_coap *u, struct request *r);
void upstream_coap_cancel(struct upstream_coap *u, struct request *r);

/* The health of coap:// or coaps:// upstream NAME (struct upstream_health
 * of upstream_health.h; no backoff), NULL before its first exchange ended. */
const struct upstream_health *upstream_coap_health(struct upstream_coap *u, const char *name);

/* After a reload: open new sessions (new credentials) from now on; calls
 * in flight keep theirs. */
void upstream_coap_forget_sessions(struct upstream_coap *u);

/* Observe the ann resource of every upstream with "announcements": true
 * (start and reload: replaces the previous set). */
void upstream_coap_set_ann_handler(struct upstream_coap *u, upstream_ann_fn fn, void *userdata);
int upstream_coap_watch_announcements(struct upstream_coap *u, const struct cmpgw_config *c);
