/* config.h -- cmpgw.json: parsed, validated, with documented defaults
 *
 * Every key is described in doc/cmpgw.json.5. Unknown keys are errors that
 * name the key (PRODUCT.md: Files). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMPGW_DEFAULT_CONFIG   "/etc/cmpgw/cmpgw.json"
#define CMPGW_DEFAULT_REGISTRY "/var/lib/cmpgw/registry.db"

enum cmpgw_scheme { SCHEME_COAP, SCHEME_COAPS, SCHEME_HTTP, SCHEME_HTTPS };

/* RFC 9482 §2.4: chunked HTTP request bodies where the server supports them */
enum cmpgw_chunked { CHUNKED_AUTO, CHUNKED_ON, CHUNKED_OFF };

/* coaps listeners: who may present a client certificate */
enum cmpgw_client_cert {
        CLIENT_CERT_NONE,               /* not asked for */
        CLIENT_CERT_OPTIONAL,           /* asked for; one that is sent must verify */
        CLIENT_CERT_REQUIRED,           /* certificate handshakes without one fail */
};

/* Who may send requests (issue 5; cmpgw.json(5) "admission") */
enum cmpgw_admission {
        ADMISSION_OPEN,                 /* anyone */
        ADMISSION_REGISTERED,           /* identities added with cmpgwctl device add */
};

/* A gateway or RA downstream that forwards other nodes' messages: its
 * requests are not bound to its DTLS identity. */
struct cmpgw_relay {
        char *identity;                 /* as configured: a PSK identity or a subject */
        char *subject;                  /* the same as a canonical RFC 2253 name, or NULL */
};

struct cmpgw_label_admission {
        char *label;
        enum cmpgw_admission admission;
};

struct cmpgw_listen {
        char *uri;                      /* as configured */
        enum cmpgw_scheme scheme;       /* coap or coaps */
        char *host;                     /* numeric address or name */
        uint16_t port;                  /* default 5683 / 5684 (RFC 9482 §2.2) */

        /* coaps only (DTLS credentials); NULL when not given. The files are
         * read by the daemon, not here. */
        char *psk_file;                 /* "psk_file": identity:key lines, mode 0600 */
        char *certificate;              /* "certificate": PEM, leaf first, then its chain */
        char *private_key;              /* "private_key": PEM, unencrypted */
        char *client_ca;                /* "client_ca": PEM trust anchors for client certificates */
        enum cmpgw_client_cert client_certificate;      /* default optional with client_ca, else none */

        enum cmpgw_admission admission; /* "admission": "open" (default) or "registered" */
        struct cmpgw_relay *relays;     /* "relays" (coaps only): DTLS identities of relays */
        size_t n_relays;
};

/* What an http(s) upstream is polled for with genm (RFC 9483 §4.3) */
enum {
        CMPGW_POLL_CA_CERTS = 1 << 0,           /* "caCerts": §4.3.1 id-it-caCerts */
        CMPGW_POLL_ROOT_CA_UPDATE = 1 << 1,     /* "rootCaUpdate": §4.3.2 id-it-rootCaCert */
        CMPGW_POLL_CRLS = 1 << 2,               /* "crls": §4.3.4 id-it-crlStatusList */
        CMPGW_POLL_ALL = (1 << 3) - 1,
};

/* "poll": an HTTP upstream cannot push announcements, so the gateway asks */
struct cmpgw_poll {
        bool enabled;                   /* the "poll" object is present */
        uint64_t interval_usec;         /* "interval" s, 1..604800; default 3600 */
        char *certificate;              /* the gateway's CMP certificate (PEM; its chain may follow) */
        char *private_key;              /* its key (PEM, unencrypted) */
        char *trusted;                  /* trust anchors for the genp; NULL: announcements.trusted */
        unsigned what;                  /* CMPGW_POLL_* bits; default all */
};

struct cmpgw_upstream {
        char *name;
        char *uri;
        enum cmpgw_scheme scheme;
        uint64_t timeout_usec;          /* "timeout" seconds, default 30 */
        enum cmpgw_chunked chunked;     /* "chunked": "auto" (default), "on", "off" */
        uint32_t max_connections;       /* "max_connections": HTTP exchanges at once, default 8 */
        char **labels;                  /* "labels": routes /p/<label> here */
        size_t n_labels;
        char **hosts;                   /* "hosts": routes requests with this Uri-Host here */
        size_t n_hosts;
        bool is_default;                /* "default": true */
        bool default_given;             /* "default" present (false opts out of the one-upstream rule) */
        char *ca_file;                  /* https/coaps: PEM trust anchors for the upstream's certificate */
        char *certificate;              /* https/coaps: the gateway's client certificate (PEM), with */
        char *private_key;              /*   its key (PEM) */
        char *psk_file;                 /* coaps: "IDENTITY:KEY", the gateway's one PSK */
        bool announcements;             /* coap/coaps: observe its ann (RFC 9482 §2.6) */
        char *protection_trusted;       /* verify signature protection of requests first (RFC 9482 §4) */
        uint64_t ann_reregister_usec;   /* "ann_reregister" s: register again this often; default 300 */
        struct cmpgw_poll poll;         /* http/https only */
};

enum cmpgw_bus { BUS_SYSTEM, BUS_SESSION, BUS_NONE };

struct cmpgw_config {
        struct cmpgw_listen *listen;
        size_t n_listen;
        struct cmpgw_upstream *upstreams;
        size_t n_upstreams;

        /* "coap": {...} */
        size_t block_size;              /* "block_size", 16..1024, power of 2; default 1024 */
        size_t max_message_size;        /* "max_message_size" bytes; default 65536 */
        uint64_t transfer_timeout_usec; /* "transfer_timeout" s: abandoned Block1 transfers; default 30 */
        uint32_t unavailable_max_age;   /* "unavailable_max_age" s: Max-Age on 5.03; default 30 */

        char *registry_path;            /* "registry": {"path"} */
        double renew_share;             /* "registry": {"renew_share"}, 0 < x < 1; default 2/3 */
        uint64_t renew_before_sec;      /* "registry": {"renew_before"} seconds; default 0 (off) */
        enum cmpgw_bus bus;             /* "dbus": {"bus"} */
        char *ann_trusted;              /* "announcements": {"trusted"} */
        uint32_t ann_max_observers;     /* "announcements": {"max_observers"}, default 10000 */
        uint32_t ann_max_observers_per_peer;    /* {"max_observers_per_peer"}, per address, default 4 */
        uint32_t ann_refresh_sec;       /* {"refresh"}: Confirmable notification to all, default 12 h */
        /* "limits": {...} per peer (IP address) and global (RFC 9482 §4) */
        double limit_rate;              /* "rate": messages started per second per peer; 0 = off; default 20 */
        uint32_t limit_burst;           /* "burst": bucket size; default 2 * rate (at least 1) */
        uint32_t limit_in_flight;       /* "in_flight_per_peer": transactions upstream at once; default 16 */
        uint64_t limit_buffered;        /* "buffered_bytes": all incomplete Block1 transfers; default 8 MiB */
        uint32_t limit_max_in_flight;   /* "max_in_flight": transactions of all peers at once; 0 = off; default 1024 */
        uint64_t watchdog_usec;         /* not configured: from $WATCHDOG_USEC */
        /* "admission": {"labels": {"LABEL": "open"|"registered"}} */
        struct cmpgw_label_admission *label_admission;
        size_t n_label_admission;
};

/* Load and validate. On error returns negative errno and, when err is
 * non-NULL, a malloc'd message naming the file, the key and what is
 * expected. */
int config_load_file(const char *path, struct cmpgw_config **ret, char **err);
int config_load_string(const char *json, struct cmpgw_config **ret, char **err);
void config_free(struct cmpgw_config *c);

/* The upstream that takes /p/<label> (label "" = no label): the one that
 * lists the label, else the default route (the only upstream when there
 * is one, else the one marked "default"). NULL: no route (4.04). */
const struct cmpgw_upstream *config_route(const struct cmpgw_config *c, const char *label);
/* The same, with the request's Uri-Host (NULL or "" when absent): a label
 * route first, then the upstream that lists the host, then the default. */
const struct cmpgw_upstream *config_route_host(const struct cmpgw_config *c, const char *label,
                                               const char *host);

const char *config_scheme_name(enum cmpgw_scheme s);
const char *config_admission_name(enum cmpgw_admission a);     /* "open", "registered" */

/* The policy "admission.labels" gives /p/<label> (open when none). */
enum cmpgw_admission config_label_admission(const struct cmpgw_config *c, const char *label);
/* Is the DTLS identity (PSK identity or client certificate subject, RFC
 * 2253; NULL or "" when none) one of the listener's relays? */
bool config_listen_is_relay(const struct cmpgw_listen *l, const char *psk_identity, const char *client_subject);
