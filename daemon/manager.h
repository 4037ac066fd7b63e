/* manager.h -- owns the event loop and every event source of cmpgwd */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>
#include <openssl/x509.h>

#include "config.h"
#include "list.h"
#include "log.h"
#include "peer_limits.h"
#include "request.h"

struct coap_server;
struct upstream_http;
struct upstream_coap;
struct registry;
struct dbus_api;
struct announce;
struct ann_poll;

struct gw_stats {
        uint64_t requests;              /* complete CMP requests received */
        uint64_t forwarded;             /* sent upstream */
        uint64_t answered_2xx, answered_4xx, answered_5xx;
        uint64_t upstream_errors;
        uint64_t upstream_retries;      /* fresh-connection resends */
        /* refused by limits (RFC 9482 §4), see cmpgw.json(5) "limits" */
        uint64_t limited_rate;          /* 4.29: limits.rate */
        uint64_t limited_in_flight;     /* 4.29: limits.in_flight_per_peer */
        uint64_t limited_buffered;      /* 5.03: limits.buffered_bytes */
        uint64_t limited_max_in_flight; /* 5.03: limits.max_in_flight, all peers together */
        uint64_t limited_observers;     /* ann registrations answered without Observe: max_observers_per_peer */
        uint64_t transfers_abandoned;   /* Block1 transfers dropped after coap.transfer_timeout */
        /* refused by admission (issue 5), see cmpgw.json(5) "admission" */
        uint64_t refused_admission;     /* 4.01/4.03: policy "registered", not admitted */
        uint64_t refused_identity_mismatch;     /* 4.03: CMP sender/senderKID is not the DTLS identity */
};

struct Manager {
        sd_event *event;
        char *config_path;
        struct cmpgw_config *config;

        sd_event_source *sig_term, *sig_int, *sig_hup;
        sd_event_source *watchdog_timer;

        struct coap_server *coap;
        struct upstream_http *http;
        struct upstream_coap *coap_client;      /* coap:// upstreams */
        struct registry *registry;
        struct dbus_api *dbus;          /* NULL with "dbus": {"bus": "none"} */
        struct announce *announce;      /* the announcement store and CRL cache */
        struct ann_poll *poll;          /* genm polling of http(s) upstreams with "poll" */
        struct peer_limits *peers;      /* per-peer rate, in-flight and observer counts */
        X509_STORE **protection;        /* per config->upstreams[i]: protection_trusted, or NULL */
        sd_event_source *renew_timer;   /* the earliest renewal or expiry */
        uint64_t started_usec;          /* CLOCK_MONOTONIC */

        LIST_HEAD(struct request, requests);
        /* group commit (request.c): the registry's open batch is committed
         * on the loop's next iteration, then these answers go out */
        sd_event_source *commit_defer;
        LIST_HEAD(struct request, commit_waiting);
        unsigned n_requests;
        uint64_t next_request_id;

        struct gw_stats stats;
        struct log_ratelimit admission_log;     /* requests refused by admission */
        bool stopping;
};

int manager_new(const char *config_path, struct cmpgw_config *config, Manager **ret);
Manager *manager_free(Manager *m);
int manager_start(Manager *m);          /* open listeners, notify READY */
int manager_run(Manager *m);            /* until TERM/INT; returns exit code */

/* SIGHUP and D-Bus Reload(): 0, or negative errno and *err (malloc'd) saying
 * why the new configuration was refused; the running one stays. */
int manager_reload(Manager *m, char **err);
/* The registry changed: re-arm the renewal timer. */
void manager_registry_changed(Manager *m);

/* Called by request.c when a request ends (answered or aborted). */
void manager_request_done(Manager *m, struct request *r);

static inline void manager_freep(Manager **m) { manager_free(*m); }
#define _cleanup_manager_ __attribute__((cleanup(manager_freep)))
