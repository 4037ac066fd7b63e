/* request.h -- one CMP exchange moving through the gateway
 *
 * CoAP in → validate → route → upstream → answer. coap_server.c creates a
 * request once the whole body is in, request_start() validates and routes
 * it and hands it to an upstream; the upstream calls request_complete(),
 * which records the exchange in the registry, decides the CoAP answer and
 * gives it back to coap_server.c once the registry's group commit is done
 * (the loop's next iteration: registry first, answer second). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <coap3/coap.h>
#include <openssl/x509.h>
#include <systemd/sd-event.h>

#include "cmp_msg.h"
#include "cmp_path.h"
#include "config.h"
#include "list.h"
#include "peer_limits.h"

typedef struct Manager Manager;
struct upstream_call;
struct coap_call;
struct cmp_content;

struct request {
        Manager *manager;
        LIST_FIELDS(struct request, requests);
        LIST_FIELDS(struct request, commit_wait);       /* in Manager.commit_waiting */
        bool awaiting_commit;           /* recorded and answered, sent after the registry's group commit */
        uint64_t id;                    /* for logs */
        uint64_t started_usec;

        /* CoAP side, owned by coap_server.c */
        coap_session_t *session;        /* referenced */
        uint8_t token[8];
        size_t token_len;
        coap_async_t *async;            /* separate response (RFC 9482 §2.3) */
        coap_mid_t mid;                 /* of the request's last PDU */
        bool defer_ack;                 /* CON: ACKed by coap_server.c, not libcoap (see there) */
        bool acked;                     /* an empty ACK went out: the answer is a separate response */
        sd_event_source *ack_wait;      /* until the empty ACK of a block-wise request */
        size_t block2_max;              /* the block size the request asked for (Block2), 0: none */
        char peer[64];
        struct peer_key peer_key;
        bool in_flight_counted;         /* in the peer's limits.in_flight_per_peer */
        char psk_identity[129];         /* coaps: DTLS PSK identity, "" when none */
        char client_subject[512];       /* coaps: client certificate subject (RFC 2253), "" when none */

        struct cmp_path path;
        char route_host[256];           /* Uri-Host, else the DTLS SNI, else "" (routing, RFC 9482 §3) */
        uint8_t *body;                  /* the request PKIMessage, DER */
        size_t body_len;
        struct cmp_msg_info info;
        struct cmp_content *content;    /* what the registry needs, from the one decoding; may be NULL */

        /* upstream, copied from the config so a reload cannot pull it away */
        char *upstream_name;
        char *upstream_uri;             /* the full URI sent to */
        uint64_t upstream_timeout_usec;
        bool upstream_coap;             /* coap:// upstream, else http(s):// */
        enum cmpgw_chunked upstream_chunked;
        uint32_t upstream_max_connections;
        X509_STORE *protection;         /* borrowed from the manager: check first, or NULL */
        struct upstream_tls {           /* https:// and coaps:// (cmpgw.json(5)) */
                char *ca_file, *certificate, *private_key, *psk_file;
        } upstream_tls;
        struct upstream_call *call;     /* HTTP */
        struct coap_call *coap_call;    /* CoAP */

        /* the answer */
        bool answered;
        int code;                       /* class*100+detail, e.g. 204 */
        uint8_t *answer;                /* body: PKIMessage (cmp) or diagnostic */
        size_t answer_len;
        bool answer_is_cmp;             /* Content-Format 259 */
        int max_age;                    /* seconds, -1 for none */
};

/* The TLS settings of upstream u copied (0, or -ENOMEM with nothing
 * copied), and freed. */
int upstream_tls_copy(struct upstream_tls *dst, const struct cmpgw_upstream *u);
void upstream_tls_clear(struct upstream_tls *t);

/* What an upstream hands back. */
struct upstream_result {
        int coap_code;                  /* the code decided by the upstream module */
        const uint8_t *body;            /* borrowed; NULL when none */
        size_t body_len;
        bool body_is_cmp;               /* verified to be one PKIMessage */
        const struct cmp_content *content;      /* of body, from that check (borrowed), or NULL */
        int max_age;                    /* -1 for none */
        const char *diagnostic;         /* for errors */
};

struct request *request_new(Manager *m);
void request_free(struct request *r);

/* Validate the body against the path, route, send upstream. Answers the
 * request itself on any error. */
void request_start(struct request *r);

/* Set the answer: a diagnostic error or a CMP body. */
int request_set_error(struct request *r, int code, int max_age, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void request_complete(struct request *r, const struct upstream_result *res);

/* Give up on an in-flight request (shutdown): answer 5.03. */
void request_abort(struct request *r, const char *why);
