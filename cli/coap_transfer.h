/* coap_transfer.h -- a small synchronous CoAP client for cmpcoap
 *
 * One coap_context and one client session per transfer object, reused for
 * every message of a CMP transaction. Blocking: each request drives
 * coap_io_process() until the whole response is in or the deadline passes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/cmp.h>

/* CoAP Content-Formats (IANA registry; libcoap 4.3.1 has no constant for 259) */
#define CT_APPLICATION_PKIXCMP    259   /* RFC 9482 §5 */
#define CT_APPLICATION_LINK_FORMAT 40   /* RFC 6690 */

#define COAP_TRANSFER_BLOCK_MIN   16
#define COAP_TRANSFER_BLOCK_MAX   1024  /* SZX 6 (RFC 7959 §2.2) */

struct coap_transfer_config {
        unsigned block_size;            /* Block1 size, power of two 16..1024 */
        unsigned timeout;               /* overall seconds from _new(); 0 = none */
        const char *default_path;       /* used when the URI has no path */
        const char *path;               /* replaces the URI's path when set */
        const char *reqout;             /* comma-separated DER files, or NULL */
        const char *rspout;
        int verbosity;                  /* like openssl cmp: 7 debug, 8 trace */

        /* coaps:// only (DTLS, RFC 7252 §9.1): PSK, or certificates */
        const char *psk_identity;
        const uint8_t *psk_key;         /* with psk_key_len; used during _new() only */
        size_t psk_key_len;
        const char *tls_cert;           /* PEM client certificate, with tls_key */
        const char *tls_key;
        const char *tls_trusted;        /* PEM trust anchors for the server's certificate; its
                                         * name must match the URI's host */
        const char *servername;         /* SNI and the name checked instead of the URI's host */
};

struct coap_transfer_response {
        int code;                       /* class*100+detail, e.g. 204 */
        int content_format;             /* -1 when absent */
        uint8_t *body;
        size_t body_len;
};

struct coap_transfer;

/* Parses uri (coap[s]://host[:port][/path][?query]), resolves the host and
 * opens the client session. On failure returns NULL and writes a message
 * (without program name) into err. */
struct coap_transfer *coap_transfer_new(const char *uri,
                                        const struct coap_transfer_config *cfg,
                                        char *err, size_t err_size);
void coap_transfer_free(struct coap_transfer *t);

/* One Confirmable request (RFC 9482 §2.3) to the URI's path; body may be
 * NULL. 0 with rsp filled (any response code), or -1 with the reason in
 * coap_transfer_error(). rsp must be released with
 * coap_transfer_response_clear(). */
int coap_transfer_request(struct coap_transfer *t, int method, int content_format,
                          const uint8_t *body, size_t body_len,
                          struct coap_transfer_response *rsp);
void coap_transfer_response_clear(struct coap_transfer_response *rsp);

/* "server answered 4.04 Not Found: \"diagnostic\"" */
void coap_transfer_describe(const struct coap_transfer_response *rsp, char *buf, size_t size);

/* OSSL_CMP_transfer_cb_t; transfer_cb_arg must be a struct coap_transfer. */
OSSL_CMP_MSG *coap_transfer_cmp_cb(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req);

/* Observe (RFC 7641) the URI's resource, e.g. RFC 9482 §2.6's /ann.
 * cb gets every 2.xx answer to a registration (registration = true) and
 * every fresh notification; rsp->body is only valid during the call;
 * observing tells whether it carried the Observe option. cb returns 0 to go
 * on, anything else to stop. Registers again (same token) when the server
 * answers without Observe, ends the observation, a block-wise notification
 * fails, a NACK/RST arrives, nothing is heard past Max-Age (+10 s), and
 * every reregister_s seconds (0: never); failures back off 1, 2, 4 ... up
 * to retry_max_s (0: 60). A 4.xx answer to the first registration is
 * fatal, except 4.04 (no announcement yet, at some servers); 5.xx is
 * retried (5.03 after its Max-Age). On the way out an established observation is
 * cancelled (GET with Observe 1).
 * Returns 0 when cb asked to stop, 1 when the overall timeout passed, -1 on
 * a fatal error (coap_transfer_error()). */
typedef int (*coap_transfer_notify_fn)(void *arg, const struct coap_transfer_response *rsp,
                                       bool observing, bool registration);
struct coap_observe_params {
        unsigned reregister_s;
        unsigned retry_max_s;
};
int coap_transfer_observe(struct coap_transfer *t, const struct coap_observe_params *p,
                          coap_transfer_notify_fn cb, void *arg);

/* The last failure, one line without program name; "" when none. */
const char *coap_transfer_error(const struct coap_transfer *t);

/* "4.15" into buf and the RFC 7252 §12.1.2 name into *phrase ("" if unknown). */
const char *coap_transfer_code_text(int code, char buf[static 8], const char **phrase);
