/* coap_transfer.c -- a small synchronous CoAP client for cmpcoap
 *
 * Sends each request as a Confirmable message (RFC 9482 §2.3) with its body
 * block-wise where needed (RFC 7959, RFC 9482 §2.4) and waits, driving
 * coap_io_process(), until the response is complete (piggybacked or
 * separate), a NACK arrives, or the deadline passes.
 */
#include "coap_transfer.h"
#include "tls_name.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <coap3/coap.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define WAIT_SLICE_MS 1000u
#define MIN_RETRY_WAIT_S 1u     /* never resend after a 5.03 sooner than this */
#define DIAG_MAX 200            /* characters of a diagnostic payload shown */

struct pending {
        bool active;            /* a request is outstanding */
        bool done;              /* response complete, or failed */
        bool failed;            /* NACK, block failure: error[] says why */
        uint8_t token[8];
        size_t token_len;
        struct coap_transfer_response rsp;
        bool has_max_age;
        unsigned max_age;
};

/* Observe (RFC 7641) state of coap_transfer_observe() */
struct observation {
        bool active;            /* coap_transfer_observe() is running */
        bool awaiting;          /* a registration GET is outstanding */
        bool registered;        /* the last registration answer carried Observe */
        bool need_register;     /* register (again) at retry_at */
        bool stop;              /* the callback asked to stop */
        bool fatal;             /* give up: error[] says why */
        bool cancel_answered;   /* the answer to the cancelling GET came */
        uint8_t token[8];
        size_t token_len;
        uint64_t retry_at;      /* when to register again */
        unsigned backoff_s;     /* next retry delay after a failure */
        uint64_t registered_at; /* last successful registration */
        uint64_t heard_at;      /* last registration answer or notification */
        unsigned max_age;       /* of the last one (RFC 7252 §5.10.5: default 60) */
        bool have_seq;
        uint32_t seq;           /* Observe value of the last fresh notification */
        uint64_t seq_at;
        unsigned reregister_s, retry_max_s;
        coap_transfer_notify_fn cb;
        void *cb_arg;
        unsigned registrations;
};

struct coap_transfer {
        coap_context_t *ctx;
        coap_session_t *session;
        char *uri;              /* as given, for messages */
        char authority[300];    /* "host:port", for messages */
        bool dtls;              /* coaps:// */
        bool dtls_up;           /* the handshake completed */
        const char *dtls_hint;  /* what to check after a failed handshake */
        char *sni_host;         /* the host the server certificate must name */
        char psk_identity[129];
        uint8_t psk_key[64];
        char *uri_host;         /* Uri-Host option value, NULL for IP literals */
        uint8_t *path_opts;     /* coap_split_path() output */
        int path_count;
        uint8_t *query_opts;    /* coap_split_query() output */
        int query_count;
        unsigned block_size;
        uint64_t deadline_ms;   /* overall; 0 = none */
        int verbosity;
        const char *reqout, *rspout;
        unsigned reqs_saved, rsps_saved;
        struct pending pending;
        struct observation obs;
        char error[512];
};

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static uint64_t earlier_deadline(uint64_t a, uint64_t b) {
        if (a == 0)
                return b;
        if (b == 0)
                return a;
        return a < b ? a : b;
}

static void set_error(struct coap_transfer *t, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void set_error(struct coap_transfer *t, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(t->error, sizeof t->error, fmt, ap);
        va_end(ap);
}

static void debug(const struct coap_transfer *t, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void debug(const struct coap_transfer *t, const char *fmt, ...) {
        va_list ap;

        if (t->verbosity < 7)
                return;
        fputs("cmpcoap: DEBUG: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static void info(const struct coap_transfer *t, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void info(const struct coap_transfer *t, const char *fmt, ...) {
        va_list ap;

        if (t->verbosity < 6)
                return;
        fputs("cmpcoap: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

const char *coap_transfer_error(const struct coap_transfer *t) {
        return t ? t->error : "";
}

static const struct {
        int code;
        const char *phrase;
} code_phrases[] = {
        { 201, "Created" }, { 202, "Deleted" }, { 203, "Valid" },
        { 204, "Changed" }, { 205, "Content" }, { 231, "Continue" },
        { 400, "Bad Request" }, { 401, "Unauthorized" }, { 402, "Bad Option" },
        { 403, "Forbidden" }, { 404, "Not Found" }, { 405, "Method Not Allowed" },
        { 406, "Not Acceptable" }, { 408, "Request Entity Incomplete" },
        { 409, "Conflict" }, { 412, "Precondition Failed" },
        { 413, "Request Entity Too Large" }, { 415, "Unsupported Content-Format" },
        { 422, "Unprocessable Entity" }, { 429, "Too Many Requests" },
        { 500, "Internal Server Error" }, { 501, "Not Implemented" },
        { 502, "Bad Gateway" }, { 503, "Service Unavailable" },
        { 504, "Gateway Timeout" }, { 505, "Proxying Not Supported" },
};

const char *coap_transfer_code_text(int code, char buf[static 8], const char **phrase) {
        snprintf(buf, 8, "%d.%02d", (code / 100) % 10, code % 100);
        *phrase = "";
        for (size_t i = 0; i < sizeof code_phrases / sizeof code_phrases[0]; i++)
                if (code_phrases[i].code == code)
                        *phrase = code_phrases[i].phrase;
        return buf;
}

void coap_transfer_response_clear(struct coap_transfer_response *rsp) {
        free(rsp->body);
        *rsp = (struct coap_transfer_response) { .content_format = -1 };
}

/* ---- libcoap handlers --------------------------------------------------- */

static void pending_fail(struct coap_transfer *t, const char *what) {
        if (!t->pending.active || t->pending.done)
                return;
        set_error(t, "%s", what);
        t->pending.failed = true;
        t->pending.done = true;
}

static bool option_uint(const coap_pdu_t *pdu, coap_option_num_t num, unsigned *value) {
        coap_opt_iterator_t iter;
        coap_opt_t *opt = coap_check_option(pdu, num, &iter);

        if (!opt)
                return false;
        *value = coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt));
        return true;
}

static coap_response_t on_observe_response(struct coap_transfer *t, const coap_pdu_t *received);

static coap_response_t on_response(coap_session_t *session, const coap_pdu_t *sent,
                                   const coap_pdu_t *received, const coap_mid_t mid) {
        struct coap_transfer *t = coap_session_get_app_data(session);
        coap_bin_const_t token = coap_pdu_get_token(received);
        coap_pdu_code_t code = coap_pdu_get_code(received);
        size_t len = 0, offset = 0, total = 0;
        const uint8_t *data = NULL;
        unsigned value;

        if (t && t->obs.active)
                return on_observe_response(t, received);
        if (!t || !t->pending.active || t->pending.done)
                return COAP_RESPONSE_OK;        /* late or duplicate */
        if (token.length != t->pending.token_len ||
            memcmp(token.s, t->pending.token, token.length) != 0) {
                debug(t, "ignoring a response with a token of an earlier request");
                return COAP_RESPONSE_OK;
        }
        if (code == COAP_EMPTY_CODE)
                return COAP_RESPONSE_OK;

        /* COAP_BLOCK_SINGLE_BODY: the handler sees the whole reassembled body */
        if (coap_get_data_large(received, &len, &data, &offset, &total) &&
            (offset != 0 || len != total)) {
                pending_fail(t, "incomplete block-wise response body");
                return COAP_RESPONSE_OK;
        }
        t->pending.rsp.code = COAP_RESPONSE_CLASS(code) * 100 + (code & 0x1f);
        if (option_uint(received, COAP_OPTION_CONTENT_FORMAT, &value))
                t->pending.rsp.content_format = (int) value;
        t->pending.has_max_age = option_uint(received, COAP_OPTION_MAXAGE, &t->pending.max_age);
        if (len > 0) {
                t->pending.rsp.body = malloc(len);
                if (!t->pending.rsp.body) {
                        pending_fail(t, "out of memory for the response body");
                        return COAP_RESPONSE_OK;
                }
                memcpy(t->pending.rsp.body, data, len);
                t->pending.rsp.body_len = len;
        }
        t->pending.done = true;
        return COAP_RESPONSE_OK;
}

static void observe_nack(struct coap_transfer *t, coap_nack_reason_t reason);

/* What a libcoap NACK means, in words a user can act on. */
static void nack_text(const struct coap_transfer *t, coap_nack_reason_t reason, char *what, size_t size) {
        switch (reason) {
        case COAP_NACK_TOO_MANY_RETRIES:
                snprintf(what, size, "no acknowledgement from %s (gave up after retransmissions)", t->uri);
                break;
        case COAP_NACK_RST:
                snprintf(what, size, "%s answered with a CoAP Reset (RST)", t->uri);
                break;
        case COAP_NACK_NOT_DELIVERABLE:
        case COAP_NACK_ICMP_ISSUE:
                snprintf(what, size, "cannot reach %s (ICMP: port unreachable or no route)", t->uri);
                break;
        case COAP_NACK_TLS_FAILED:
                snprintf(what, size, "DTLS handshake with %s failed (%s)", t->authority, t->dtls_hint);
                break;
        default:
                snprintf(what, size, "request to %s failed (libcoap NACK reason %d)", t->uri, (int) reason);
                break;
        }
}

static void on_nack(coap_session_t *session, const coap_pdu_t *sent,
                    const coap_nack_reason_t reason, const coap_mid_t mid) {
        struct coap_transfer *t = coap_session_get_app_data(session);
        char what[sizeof t->error];

        if (!t)
                return;
        if (t->obs.active) {
                observe_nack(t, reason);
                return;
        }
        /* Only one request is outstanding at a time; the token of a NACKed
         * block of a large body is libcoap's own, so do not match it. */
        nack_text(t, reason, what, sizeof what);
        pending_fail(t, what);
}

static void observe_lost(struct coap_transfer *t, const char *why);

static int on_event(coap_session_t *session, const coap_event_t event) {
        struct coap_transfer *t = coap_session_get_app_data(session);

        if (!t)
                return 0;
        switch (event) {
        case COAP_EVENT_DTLS_CONNECTED:
                t->dtls_up = true;
                break;
        case COAP_EVENT_XMIT_BLOCK_FAIL:
                pending_fail(t, "block-wise transfer of the request failed");
                break;
        case COAP_EVENT_PARTIAL_BLOCK:
                if (t->obs.active)
                        observe_lost(t, "a block-wise notification did not complete");
                pending_fail(t, "block-wise response did not complete");
                break;
        case COAP_EVENT_SESSION_FAILED:
                pending_fail(t, "CoAP session failed");
                break;
        case COAP_EVENT_DTLS_ERROR: {
                char what[sizeof t->error];
                snprintf(what, sizeof what, "DTLS handshake with %s failed: a fatal alert (%s)",
                         t->authority, t->dtls_hint);
                pending_fail(t, what);
                break;
        }
        default:
                break;
        }
        return 0;
}

/* ---- setup -------------------------------------------------------------- */

static bool is_multicast(const struct sockaddr *sa) {
        if (sa->sa_family == AF_INET)
                return IN_MULTICAST(ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr));
        if (sa->sa_family == AF_INET6)
                return IN6_IS_ADDR_MULTICAST(&((const struct sockaddr_in6 *) sa)->sin6_addr);
        return false;
}

static int resolve(const char *host, uint16_t port, coap_address_t *dst, char *err, size_t err_size) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM };
        struct addrinfo *res = NULL;
        char port_text[8];
        int r;

        snprintf(port_text, sizeof port_text, "%u", (unsigned) port);
        r = getaddrinfo(host, port_text, &hints, &res);
        if (r != 0) {
                snprintf(err, err_size, "cannot resolve host '%s': %s", host, gai_strerror(r));
                return -1;
        }
        /* RFC 9482 §2.5: CMP messages MUST NOT use a multicast destination */
        if (is_multicast(res->ai_addr)) {
                snprintf(err, err_size, "'%s' is a multicast address; CMP over CoAP must not use multicast (RFC 9482 §2.5)", host);
                freeaddrinfo(res);
                return -1;
        }
        coap_address_init(dst);
        dst->size = res->ai_addrlen;
        memcpy(&dst->addr, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
        return 0;
}

/* coap_split_path()/coap_split_query() into a new buffer: each segment is an
 * encoded option with delta 0 and at most 3 bytes of header. */
static int split_segments(const uint8_t *s, size_t len, bool query, uint8_t **out, int *count) {
        size_t size = 4 * len + 16;
        uint8_t *buf;
        int n;

        *count = 0;
        if (len == 0)
                return 0;       /* libcoap would make one empty option */
        buf = malloc(size);
        if (!buf)
                return -1;
        n = query ? coap_split_query(s, len, buf, &size) : coap_split_path(s, len, buf, &size);
        if (n < 0) {
                free(buf);
                return -1;
        }
        *out = buf;
        *count = n;
        return 0;
}

static int parse_uri(struct coap_transfer *t, const char *uri, const char *default_path,
                     const char *path_override, coap_uri_t *parts, char *err, size_t err_size) {
        const uint8_t *path;
        size_t path_len;

        if (coap_split_uri((const uint8_t *) uri, strlen(uri), parts) < 0) {
                snprintf(err, err_size, "'%s' is not a CoAP URI (coap://host[:port][/path])", uri);
                return -1;
        }
        if (parts->scheme != COAP_URI_SCHEME_COAP && parts->scheme != COAP_URI_SCHEME_COAPS) {
                snprintf(err, err_size, "'%s': only the coap:// and coaps:// schemes are supported", uri);
                return -1;
        }
        t->dtls = parts->scheme == COAP_URI_SCHEME_COAPS;
        if (parts->host.length == 0) {
                snprintf(err, err_size, "'%s' names no host", uri);
                return -1;
        }
        path = parts->path.s;
        path_len = parts->path.length;
        if (path_override) {
                path = (const uint8_t *) path_override;
                path_len = strlen(path_override);
        } else if (path_len == 0 && default_path) {
                path = (const uint8_t *) default_path;
                path_len = strlen(default_path);
        }
        if (split_segments(path, path_len, false, &t->path_opts, &t->path_count) < 0 ||
            split_segments(parts->query.s, parts->query.length, true, &t->query_opts, &t->query_count) < 0) {
                snprintf(err, err_size, "'%s': cannot split path or query into options", uri);
                return -1;
        }
        return 0;
}

/* validate_cn_call_back: the server certificate must name the URI's host
 * (an IP address in an iPAddress SAN, a name in a dNSName SAN or the CN). */
static int check_server_name(const char *cn, const uint8_t *der, size_t len, coap_session_t *session,
                             unsigned depth, int validated, void *arg) {
        struct coap_transfer *t = arg;
        const unsigned char *p = der;
        X509 *x;
        int ok;

        if (depth > 0)
                return 1;
        x = d2i_X509(NULL, &p, (long) len);
        if (!x)
                return 0;
        ok = x509_names_host(x, t->sni_host);
        X509_free(x);
        if (!ok) {
                char what[sizeof t->error];
                snprintf(what, sizeof what, "DTLS handshake with %s failed: the server certificate "
                         "does not name %s", t->authority, t->sni_host);
                pending_fail(t, what);
        }
        return ok;
}

static coap_session_t *open_dtls_session(struct coap_transfer *t, const coap_address_t *dst,
                                         const struct coap_transfer_config *cfg, char *err, size_t err_size) {
        coap_session_t *session;

        if (!coap_dtls_is_supported()) {
                snprintf(err, err_size, "this libcoap has no DTLS support (coaps://)");
                return NULL;
        }
        if (cfg->psk_identity) {
                coap_dtls_cpsk_t psk = { .version = COAP_DTLS_CPSK_SETUP_VERSION };

                if (strlen(cfg->psk_identity) >= sizeof t->psk_identity || cfg->psk_key_len == 0 ||
                    cfg->psk_key_len > sizeof t->psk_key) {
                        snprintf(err, err_size, "the PSK identity must be 1 to %zu bytes and the key 1 to %zu bytes",
                                 sizeof t->psk_identity - 1, sizeof t->psk_key);
                        return NULL;
                }
                /* libcoap keeps pointers: the copies live as long as t */
                strcpy(t->psk_identity, cfg->psk_identity);
                memcpy(t->psk_key, cfg->psk_key, cfg->psk_key_len);
                psk.client_sni = host_is_ip_literal(t->sni_host) ? NULL : t->sni_host;
                psk.psk_info.identity = (coap_bin_const_t) { strlen(t->psk_identity), (const uint8_t *) t->psk_identity };
                psk.psk_info.key = (coap_bin_const_t) { cfg->psk_key_len, t->psk_key };
                t->dtls_hint = "check --psk-identity and --psk-key";
                session = coap_new_client_session_psk2(t->ctx, NULL, dst, COAP_PROTO_DTLS, &psk);
        } else {
                coap_dtls_pki_t pki = {
                        .version = COAP_DTLS_PKI_SETUP_VERSION,
                        .verify_peer_cert = cfg->tls_trusted != NULL,
                        .validate_cn_call_back = cfg->tls_trusted ? check_server_name : NULL,
                        .cn_call_back_arg = t,
                        .client_sni = host_is_ip_literal(t->sni_host) ? NULL : t->sni_host,
                        .pki_key = {
                                .key_type = COAP_PKI_KEY_PEM,
                                .key.pem = { .public_cert = cfg->tls_cert, .private_key = cfg->tls_key },
                        },
                };
                if (cfg->tls_trusted && !coap_context_set_pki_root_cas(t->ctx, cfg->tls_trusted, NULL)) {
                        snprintf(err, err_size, "--tls-trusted: cannot load '%s'", cfg->tls_trusted);
                        return NULL;
                }
                t->dtls_hint = cfg->tls_cert ? "check --tls-cert, --tls-key and --tls-trusted; "
                               "the server may not trust the client certificate" :
                               "check --tls-trusted; the server may require a client certificate (--tls-cert)";
                session = coap_new_client_session_pki(t->ctx, NULL, dst, COAP_PROTO_DTLS, &pki);
        }
        if (!session)
                snprintf(err, err_size, "cannot open a DTLS session to %s (%s)", t->authority,
                         cfg->psk_identity ? "PSK" : cfg->tls_cert ? "cannot load --tls-cert/--tls-key?" : "certificates");
        return session;
}

static int open_session(struct coap_transfer *t, const coap_uri_t *parts, const struct coap_transfer_config *cfg,
                        char *err, size_t err_size) {
        coap_address_t dst;
        char *host = strndup((const char *) parts->host.s, parts->host.length);

        if (!host) {
                snprintf(err, err_size, "out of memory");
                return -1;
        }
        if (resolve(host, parts->port, &dst, err, err_size) < 0) {
                free(host);
                return -1;
        }
        snprintf(t->authority, sizeof t->authority, "%s%s%s:%u", strchr(host, ':') ? "[" : "", host,
                 strchr(host, ':') ? "]" : "", (unsigned) parts->port);
        /* RFC 7252 §5.10.1: name the host */
        if (!host_is_ip_literal(host) && !(t->uri_host = strdup(host))) {
                free(host);
                snprintf(err, err_size, "out of memory");
                return -1;
        }
        t->sni_host = host;
        if (cfg->servername) {  /* replaces the URI's host in the handshake only */
                free(host);
                if (!(t->sni_host = strdup(cfg->servername))) {
                        snprintf(err, err_size, "out of memory");
                        return -1;
                }
        }

        t->ctx = coap_new_context(NULL);
        if (!t->ctx) {
                snprintf(err, err_size, "cannot create a CoAP context");
                return -1;
        }
        /* libcoap reassembles Block2 and sends Block1 for us; one body per response */
        coap_context_set_block_mode(t->ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
        coap_register_response_handler(t->ctx, on_response);
        coap_register_nack_handler(t->ctx, on_nack);
        coap_register_event_handler(t->ctx, on_event);

        if (t->dtls)
                t->session = open_dtls_session(t, &dst, cfg, err, err_size);
        else
                t->session = coap_new_client_session(t->ctx, NULL, &dst, COAP_PROTO_UDP);
        if (!t->session && t->dtls)
                return -1;
        if (!t->session) {
                snprintf(err, err_size, "cannot open a CoAP session to %s", t->uri);
                return -1;
        }
        coap_session_set_app_data(t->session, t);
        return 0;
}

struct coap_transfer *coap_transfer_new(const char *uri, const struct coap_transfer_config *cfg,
                                        char *err, size_t err_size) {
        struct coap_transfer *t = calloc(1, sizeof *t);
        coap_uri_t parts;

        if (!t || !(t->uri = strdup(uri))) {
                snprintf(err, err_size, "out of memory");
                free(t);
                return NULL;
        }
        t->block_size = cfg->block_size;
        t->verbosity = cfg->verbosity;
        t->reqout = cfg->reqout;
        t->rspout = cfg->rspout;
        t->deadline_ms = cfg->timeout ? now_ms() + 1000u * (uint64_t) cfg->timeout : 0;
        t->pending.rsp.content_format = -1;

        coap_startup();
        /* our own messages name every failure; libcoap's only when debugging */
        coap_set_log_level(cfg->verbosity >= 8 ? LOG_DEBUG : cfg->verbosity >= 7 ? LOG_WARNING : LOG_EMERG);

        if (parse_uri(t, uri, cfg->default_path, cfg->path, &parts, err, err_size) < 0 ||
            open_session(t, &parts, cfg, err, err_size) < 0) {
                coap_transfer_free(t);
                return NULL;
        }
        return t;
}

void coap_transfer_free(struct coap_transfer *t) {
        if (!t)
                return;
        if (t->session)
                coap_session_release(t->session);
        if (t->ctx)
                coap_free_context(t->ctx);
        coap_transfer_response_clear(&t->pending.rsp);
        free(t->path_opts);
        free(t->query_opts);
        free(t->uri_host);
        free(t->sni_host);
        free(t->uri);
        OPENSSL_cleanse(t->psk_key, sizeof t->psk_key);
        free(t);
        coap_cleanup();
}

/* ---- one request -------------------------------------------------------- */

/*
 * libcoap 4.3.1 bug: a Confirmable request that fits in ONE PDU, answered by
 * an empty ACK and then a SEPARATE response that needs Block2, hangs the
 * client after Block2 block 0 (debug log: "large body receive internal
 * issue"); fixed in later libcoap releases. Requests sent with Block1 in two
 * or more blocks are not affected. So a body that would fit in one block is
 * sent with the largest block size that still cuts it into at least two:
 * the largest power of two in 16..1024 below its length.
 */
static unsigned request_block_size(unsigned configured, size_t body_len) {
        unsigned size = configured;

        while (size > COAP_TRANSFER_BLOCK_MIN && size >= body_len)
                size >>= 1;
        return size;
}

static unsigned block_szx(unsigned block_size) {
        unsigned szx = 0;

        while ((unsigned) COAP_TRANSFER_BLOCK_MIN << szx < block_size)
                szx++;
        return szx;
}

static void release_body(coap_session_t *session, void *body) {
        free(body);
}

static int add_body(struct coap_transfer *t, coap_pdu_t *pdu, const uint8_t *body, size_t body_len) {
        uint8_t *copy = malloc(body_len);

        /* libcoap may still send blocks after we return: it owns a copy */
        if (!copy)
                return -1;
        memcpy(copy, body, body_len);
        return coap_add_data_large_request(t->session, pdu, body_len, copy, release_body, copy) ? 0 : -1;
}

static void add_segments(coap_pdu_t *pdu, coap_option_num_t num, const uint8_t *segs, int count) {
        for (int i = 0; i < count; i++) {
                coap_add_option(pdu, num, coap_opt_length(segs), coap_opt_value(segs));
                segs += coap_opt_size(segs);
        }
}

/* coap_add_option() wants ascending option numbers: Uri-Host 3, Observe 6,
 * Uri-Path 11, Content-Format 12, Uri-Query 15, Block1 27. observe: the
 * Observe option's value (RFC 7641 §2), or -1 for none. */
static void add_options(struct coap_transfer *t, coap_pdu_t *pdu, int content_format,
                        bool has_body, size_t body_len, int observe) {
        uint8_t buf[4];
        unsigned block_size;

        if (t->uri_host)
                coap_add_option(pdu, COAP_OPTION_URI_HOST, strlen(t->uri_host),
                                (const uint8_t *) t->uri_host);
        if (observe >= 0)
                coap_add_option(pdu, COAP_OPTION_OBSERVE,
                                coap_encode_var_safe(buf, sizeof buf, (unsigned) observe), buf);
        add_segments(pdu, COAP_OPTION_URI_PATH, t->path_opts, t->path_count);
        /* RFC 9482 §2.3: Content-Format application/pkixcmp */
        if (has_body && content_format >= 0)
                coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
                                coap_encode_var_safe(buf, sizeof buf, (unsigned) content_format), buf);
        add_segments(pdu, COAP_OPTION_URI_QUERY, t->query_opts, t->query_count);
        if (!has_body)
                return;
        /* A Block1 option with NUM 0 makes libcoap use this size for every
         * block (RFC 9482 §2.4: block-wise transfer for large messages). */
        block_size = request_block_size(t->block_size, body_len);
        coap_add_option(pdu, COAP_OPTION_BLOCK1,
                        coap_encode_var_safe(buf, sizeof buf, block_szx(block_size)), buf);
        debug(t, "POST %zu bytes, Block1 size %u", body_len, block_size);
}

static coap_pdu_t *request_pdu_new(struct coap_transfer *t, int method, int content_format,
                                   const uint8_t *body, size_t body_len) {
        coap_pdu_t *pdu;

        /* RFC 9482 §2.3: each request is Confirmable */
        pdu = coap_pdu_init(COAP_MESSAGE_CON, (coap_pdu_code_t) method,
                            coap_new_message_id(t->session), coap_session_max_pdu_size(t->session));
        if (!pdu)
                return NULL;
        coap_session_new_token(t->session, &t->pending.token_len, t->pending.token);
        if (!coap_add_token(pdu, t->pending.token_len, t->pending.token))
                goto fail;
        add_options(t, pdu, content_format, body != NULL, body_len, -1);
        if (body && add_body(t, pdu, body, body_len) < 0)
                goto fail;
        return pdu;
fail:
        coap_delete_pdu(pdu);
        return NULL;
}

static int wait_until(struct coap_transfer *t, uint64_t deadline, bool stop_when_done) {
        for (;;) {
                uint64_t now = now_ms();
                uint64_t slice = WAIT_SLICE_MS;

                if (stop_when_done && t->pending.done)
                        return 0;
                if (deadline && now >= deadline)
                        return -1;
                if (deadline && deadline - now < slice)
                        slice = deadline - now;
                if (coap_io_process(t->ctx, (uint32_t) slice) < 0) {
                        set_error(t, "libcoap I/O processing failed");
                        return -2;
                }
        }
}

static int request_once(struct coap_transfer *t, int method, int content_format,
                        const uint8_t *body, size_t body_len, uint64_t deadline) {
        coap_pdu_t *pdu;
        int r;

        coap_transfer_response_clear(&t->pending.rsp);
        t->pending.done = t->pending.failed = t->pending.has_max_age = false;
        pdu = request_pdu_new(t, method, content_format, body, body_len);
        if (!pdu) {
                set_error(t, "cannot build the CoAP request for %s", t->uri);
                return -1;
        }
        t->pending.active = true;
        if (coap_send(t->session, pdu) == COAP_INVALID_MID) {
                t->pending.active = false;
                set_error(t, "cannot send the CoAP request to %s", t->uri);
                return -1;
        }
        r = wait_until(t, deadline, true);
        t->pending.active = false;
        if (r == -1 && t->dtls && !t->dtls_up)
                /* a wrong PSK: the server drops the records it cannot decrypt */
                set_error(t, "DTLS handshake with %s failed: no answer within the timeout (%s)",
                          t->authority, t->dtls_hint);
        else if (r == -1)
                set_error(t, "no response from %s within the timeout", t->uri);
        if (r < 0 || t->pending.failed)
                return -1;
        return 0;
}

static void format_diagnostic(const struct coap_transfer_response *rsp, char *buf, size_t size) {
        size_t n = rsp->body_len < DIAG_MAX ? rsp->body_len : DIAG_MAX;
        bool printable = true;

        for (size_t i = 0; i < n; i++)
                if (rsp->body[i] < 0x20 || rsp->body[i] == 0x7f)
                        printable = false;
        if (n == 0)
                buf[0] = '\0';
        else if (printable)
                snprintf(buf, size, ": \"%.*s%s\"", (int) n, (const char *) rsp->body,
                         n < rsp->body_len ? "..." : "");
        else
                snprintf(buf, size, " (%zu bytes of binary payload)", rsp->body_len);
}

void coap_transfer_describe(const struct coap_transfer_response *rsp, char *buf, size_t size) {
        char code[8], diag[DIAG_MAX + 48];
        const char *phrase;

        coap_transfer_code_text(rsp->code, code, &phrase);
        format_diagnostic(rsp, diag, sizeof diag);
        snprintf(buf, size, "server answered %s%s%s%s", code, *phrase ? " " : "", phrase, diag);
}

static void set_code_error(struct coap_transfer *t, const struct coap_transfer_response *rsp,
                           const char *suffix) {
        char text[sizeof t->error];

        coap_transfer_describe(rsp, text, sizeof text);
        set_error(t, "%s%s", text, suffix);
}

/* Sends, and resends after 5.03 with Max-Age (RFC 7252 §5.9.3.4) while the
 * deadline allows. 0 with t->pending.rsp set, or -1. */
static int request_with_retry(struct coap_transfer *t, int method, int content_format,
                              const uint8_t *body, size_t body_len, uint64_t deadline) {
        for (;;) {
                unsigned wait_s;

                if (request_once(t, method, content_format, body, body_len, deadline) < 0)
                        return -1;
                if (t->pending.rsp.code != 503 || !t->pending.has_max_age)
                        return 0;
                wait_s = t->pending.max_age > MIN_RETRY_WAIT_S ? t->pending.max_age : MIN_RETRY_WAIT_S;
                if (deadline && now_ms() + 1000u * (uint64_t) wait_s >= deadline) {
                        set_code_error(t, &t->pending.rsp, " (retry-after exceeds the timeout)");
                        return 0;
                }
                debug(t, "5.03 with Max-Age %u: resending in %u s", t->pending.max_age, wait_s);
                if (wait_until(t, now_ms() + 1000u * (uint64_t) wait_s, false) == -2)
                        return -1;
        }
}

static void take_response(struct coap_transfer *t, struct coap_transfer_response *rsp) {
        *rsp = t->pending.rsp;
        t->pending.rsp = (struct coap_transfer_response) { .content_format = -1 };
}

int coap_transfer_request(struct coap_transfer *t, int method, int content_format,
                          const uint8_t *body, size_t body_len,
                          struct coap_transfer_response *rsp) {
        t->error[0] = '\0';
        if (request_with_retry(t, method, content_format, body, body_len, t->deadline_ms) < 0)
                return -1;
        take_response(t, rsp);
        return 0;
}

/* ---- the OSSL_CMP transfer callback ------------------------------------ */

/* The idx-th (0-based) name of a comma-separated list, or NULL. */
static char *list_item(const char *list, unsigned idx) {
        const char *start = list;

        if (!list)
                return NULL;
        for (; idx > 0; idx--) {
                start = strchr(start, ',');
                if (!start)
                        return NULL;
                start++;
        }
        return strndup(start, strcspn(start, ","));
}

/* Saves DER as the idx-th file of list; a list that has run out saves nothing
 * (like -reqout/-rspout of openssl cmp, minus the error). */
static int save_der(struct coap_transfer *t, const char *option, const char *list, unsigned idx,
                    const uint8_t *der, size_t len) {
        char *path = list_item(list, idx);
        FILE *f;
        int ok;

        if (!path || !*path) {
                free(path);
                return 0;
        }
        f = fopen(path, "wb");
        ok = f && fwrite(der, 1, len, f) == len;
        if (f && fclose(f) != 0)
                ok = 0;
        if (!ok)
                set_error(t, "cannot write %s file '%s': %s", option, path, strerror(errno));
        else
                debug(t, "saved %zu bytes to %s", len, path);
        free(path);
        return ok ? 0 : -1;
}

static OSSL_CMP_MSG *der_to_msg(const uint8_t *der, size_t len) {
        const unsigned char *p = der;
        OSSL_CMP_MSG *msg = d2i_OSSL_CMP_MSG(NULL, &p, (long) len);

        if (msg && p != der + len) {    /* trailing bytes: not exactly one PKIMessage */
                OSSL_CMP_MSG_free(msg);
                return NULL;
        }
        return msg;
}

static OSSL_CMP_MSG *response_to_msg(struct coap_transfer *t, const struct coap_transfer_response *rsp) {
        OSSL_CMP_MSG *msg;
        int cls = rsp->code / 100;

        if (cls != 2) {
                /* a CMP error message relayed in a 4.xx/5.xx: let OpenSSL report it */
                if ((cls == 4 || cls == 5) && rsp->content_format == CT_APPLICATION_PKIXCMP &&
                    (msg = der_to_msg(rsp->body, rsp->body_len)) != NULL) {
                        set_code_error(t, rsp, "");
                        return msg;
                }
                if (!t->error[0])
                        set_code_error(t, rsp, "");
                return NULL;
        }
        /* RFC 9482 §2.3: the response carries application/pkixcmp */
        if (rsp->content_format >= 0 && rsp->content_format != CT_APPLICATION_PKIXCMP) {
                set_error(t, "server answered %d.%02d with Content-Format %d, expected %d (application/pkixcmp)",
                          cls, rsp->code % 100, rsp->content_format, CT_APPLICATION_PKIXCMP);
                return NULL;
        }
        if (rsp->body_len == 0) {
                set_error(t, "server answered %d.%02d without a PKIMessage", cls, rsp->code % 100);
                return NULL;
        }
        msg = der_to_msg(rsp->body, rsp->body_len);
        if (!msg)
                set_error(t, "response body (%zu bytes) is not exactly one DER PKIMessage", rsp->body_len);
        return msg;
}

static uint64_t message_deadline(const struct coap_transfer *t, OSSL_CMP_CTX *ctx) {
        int msg_timeout = OSSL_CMP_CTX_get_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT);

        if (msg_timeout <= 0)
                return t->deadline_ms;
        return earlier_deadline(t->deadline_ms, now_ms() + 1000u * (uint64_t) msg_timeout);
}

OSSL_CMP_MSG *coap_transfer_cmp_cb(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req) {
        struct coap_transfer *t = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
        OSSL_CMP_MSG *rsp_msg = NULL;
        unsigned char *der = NULL;
        int der_len;

        if (!t)
                return NULL;
        t->error[0] = '\0';
        der_len = i2d_OSSL_CMP_MSG(req, &der);
        if (der_len <= 0) {
                set_error(t, "cannot DER-encode the CMP request");
                return NULL;
        }
        if (save_der(t, "--reqout", t->reqout, t->reqs_saved++, der, (size_t) der_len) < 0)
                goto out;
        /* RFC 9482 §2.3: DER PKIMessage as the body of a POST */
        if (request_with_retry(t, COAP_REQUEST_CODE_POST, CT_APPLICATION_PKIXCMP, der,
                               (size_t) der_len, message_deadline(t, ctx)) < 0)
                goto out;
        debug(t, "response %d.%02d, %zu bytes", t->pending.rsp.code / 100,
              t->pending.rsp.code % 100, t->pending.rsp.body_len);
        rsp_msg = response_to_msg(t, &t->pending.rsp);
        if (rsp_msg && save_der(t, "--rspout", t->rspout, t->rsps_saved++,
                                t->pending.rsp.body, t->pending.rsp.body_len) < 0) {
                OSSL_CMP_MSG_free(rsp_msg);
                rsp_msg = NULL;
        }
out:
        coap_transfer_response_clear(&t->pending.rsp);
        OPENSSL_free(der);
        return rsp_msg;
}

/* ---- Observe (RFC 7641, RFC 9482 §2.6) ---------------------------------- */

#define OBSERVE_GRACE_S      10u        /* beyond Max-Age before silence counts */
#define OBSERVE_DEFAULT_AGE  60u        /* RFC 7252 §5.10.5 */
#define OBSERVE_FRESH_S      128u       /* RFC 7641 §3.4 */

static void observe_schedule(struct coap_transfer *t, unsigned delay_s) {
        t->obs.awaiting = false;
        t->obs.registered = false;
        t->obs.need_register = true;
        t->obs.retry_at = now_ms() + 1000u * (uint64_t) delay_s;
}

/* A failure: register again after the current backoff, which doubles. */
static void observe_lost(struct coap_transfer *t, const char *why) {
        unsigned delay = t->obs.backoff_s;

        if (!t->obs.active || t->obs.need_register || t->obs.fatal)
                return;
        info(t, "%s; registering again in %u s", why, delay);
        observe_schedule(t, delay);
        t->obs.backoff_s = delay * 2 > t->obs.retry_max_s ? t->obs.retry_max_s : delay * 2;
}

static void observe_nack(struct coap_transfer *t, coap_nack_reason_t reason) {
        char what[sizeof t->error];

        nack_text(t, reason, what, sizeof what);
        observe_lost(t, what);
}

/* RFC 7641 §3.4: is Observe value v2 (received now) newer than the last? */
static bool observe_fresh(const struct observation *o, uint32_t v2, uint64_t now) {
        uint32_t v1 = o->seq;

        if (!o->have_seq)
                return true;
        return (v1 < v2 && v2 - v1 < (1u << 23)) || (v1 > v2 && v1 - v2 > (1u << 23)) ||
               now > o->seq_at + 1000u * OBSERVE_FRESH_S;
}

static coap_response_t on_observe_response(struct coap_transfer *t, const coap_pdu_t *received) {
        struct observation *o = &t->obs;
        coap_bin_const_t token = coap_pdu_get_token(received);
        coap_pdu_code_t code = coap_pdu_get_code(received);
        struct coap_transfer_response rsp = { .content_format = -1 };
        size_t len = 0, offset = 0, total = 0;
        const uint8_t *data = NULL;
        unsigned value, seq = 0;
        bool observing, registration = o->awaiting;
        uint64_t now = now_ms();
        char text[sizeof t->error];

        if (token.length != o->token_len || memcmp(token.s, o->token, token.length) != 0) {
                debug(t, "ignoring a response with a token of an earlier request");
                return COAP_RESPONSE_OK;
        }
        if (code == COAP_EMPTY_CODE || o->fatal)
                return COAP_RESPONSE_OK;
        if (o->stop) {
                o->cancel_answered = true;
                return COAP_RESPONSE_OK;
        }
        if (coap_get_data_large(received, &len, &data, &offset, &total) &&
            (offset != 0 || len != total)) {
                observe_lost(t, "incomplete block-wise notification body");
                return COAP_RESPONSE_OK;
        }
        rsp.code = COAP_RESPONSE_CLASS(code) * 100 + (code & 0x1f);
        if (option_uint(received, COAP_OPTION_CONTENT_FORMAT, &value))
                rsp.content_format = (int) value;
        observing = option_uint(received, COAP_OPTION_OBSERVE, &seq);
        o->max_age = OBSERVE_DEFAULT_AGE;
        option_uint(received, COAP_OPTION_MAXAGE, &o->max_age);
        o->heard_at = now;
        o->awaiting = false;
        rsp.body = (uint8_t *) data;    /* borrowed for the callback */
        rsp.body_len = len;

        if (rsp.code / 100 != 2) {
                coap_transfer_describe(&rsp, text, sizeof text);
                if (rsp.code / 100 == 5) {
                        /* a server error, maybe 5.03 with Max-Age (RFC 7252 §5.9.3.4) */
                        unsigned wait = rsp.code == 503 && o->max_age > o->backoff_s ? o->max_age : o->backoff_s;
                        info(t, "%s; registering again in %u s", text, wait);
                        observe_schedule(t, wait);
                        o->backoff_s = o->backoff_s * 2 > o->retry_max_s ? o->retry_max_s : o->backoff_s * 2;
                } else if (o->registrations > 0 || rsp.code == 404) {
                        /* it served us before (maybe restarting), or 4.04: some
                         * servers answer so until a first announcement exists */
                        observe_lost(t, text);
                } else {
                        /* RFC 9482 §2.6: 4.xx means no announcements here */
                        set_error(t, "%s", text);
                        o->fatal = true;
                }
                return COAP_RESPONSE_OK;
        }
        if (!registration && observing) {
                if (!observe_fresh(o, seq, now)) {
                        debug(t, "ignoring a reordered notification (Observe %u after %u)", seq, o->seq);
                        return COAP_RESPONSE_OK;
                }
        }
        if (observing) {
                o->have_seq = true;
                o->seq = seq;
                o->seq_at = now;
        }
        if (registration) {
                o->registrations++;
                if (observing) {
                        debug(t, "registered as an observer (Observe %u, Max-Age %u)", seq, o->max_age);
                        o->registered = true;
                        o->registered_at = now;
                        o->backoff_s = 1;
                } else {
                        info(t, "the server answered without the Observe option (not added as an "
                             "observer); registering again in %u s", o->backoff_s);
                }
        } else if (!observing) {
                info(t, "a notification without the Observe option: the server ended the observation; "
                     "registering again in %u s", o->backoff_s);
        }
        debug(t, "%s %d.%02d, %zu bytes%s", registration ? "registration answer" : "notification",
              rsp.code / 100, rsp.code % 100, len, observing ? "" : " (no Observe)");
        if (o->cb(o->cb_arg, &rsp, observing, registration) != 0)
                o->stop = true;
        if (!observing && !o->stop) {
                unsigned delay = o->backoff_s;
                observe_schedule(t, delay);
                o->backoff_s = delay * 2 > o->retry_max_s ? o->retry_max_s : delay * 2;
        }
        return COAP_RESPONSE_OK;
}

static int observe_register(struct coap_transfer *t) {
        struct observation *o = &t->obs;
        coap_pdu_t *pdu;

        pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, coap_new_message_id(t->session),
                            coap_session_max_pdu_size(t->session));
        if (!pdu || !coap_add_token(pdu, o->token_len, o->token)) {
                coap_delete_pdu(pdu);
                set_error(t, "cannot build the CoAP request for %s", t->uri);
                return -1;
        }
        /* RFC 7641 §3.3.1: re-registration uses the same token */
        add_options(t, pdu, -1, false, 0, COAP_OBSERVE_ESTABLISH);
        o->need_register = false;
        o->awaiting = true;
        o->registered = false;
        o->heard_at = now_ms();
        if (coap_send(t->session, pdu) == COAP_INVALID_MID) {
                o->awaiting = false;
                observe_lost(t, "cannot send the registration");
                return 0;
        }
        debug(t, "GET with Observe sent to %s", t->uri);
        return 0;
}

/* RFC 7641 §3.6: tell the server we are gone (best effort, up to 2 s) */
static void observe_cancel(struct coap_transfer *t) {
        coap_binary_t token = { t->obs.token_len, t->obs.token };
        uint64_t until = now_ms() + 2000u;

        if (!t->obs.registered)
                return;
        t->obs.stop = true;
        if (!coap_cancel_observe(t->session, &token, COAP_MESSAGE_CON)) {
                debug(t, "libcoap could not cancel the observation");
                return;
        }
        while (now_ms() < until && !t->obs.cancel_answered)
                coap_io_process(t->ctx, 100);
        debug(t, "observation cancelled");
}

int coap_transfer_observe(struct coap_transfer *t, const struct coap_observe_params *p,
                          coap_transfer_notify_fn cb, void *arg) {
        struct observation *o = &t->obs;
        int r = 1;

        t->error[0] = '\0';
        *o = (struct observation) {
                .active = true, .need_register = true, .retry_at = 0, .backoff_s = 1,
                .reregister_s = p->reregister_s, .retry_max_s = p->retry_max_s ? p->retry_max_s : 60,
                .cb = cb, .cb_arg = arg, .max_age = OBSERVE_DEFAULT_AGE,
        };
        coap_session_new_token(t->session, &o->token_len, o->token);
        for (;;) {
                uint64_t now = now_ms(), wake = now + WAIT_SLICE_MS;

                if (o->stop) {
                        r = 0;
                        break;
                }
                if (o->fatal) {
                        r = -1;
                        break;
                }
                if (t->deadline_ms && now >= t->deadline_ms)
                        break;
                if (o->need_register && now >= o->retry_at) {
                        if (observe_register(t) < 0) {
                                r = -1;
                                break;
                        }
                } else if (o->awaiting && now >= o->heard_at + 1000u * 95u) {
                        /* > EXCHANGE_LIFETIME without any answer or NACK */
                        observe_lost(t, "no answer to the registration");
                } else if (o->registered && o->reregister_s &&
                           now >= o->registered_at + 1000u * (uint64_t) o->reregister_s) {
                        /* RFC 9482 §2.6: an EE SHOULD periodically re-register */
                        info(t, "registering again (every %u s)", o->reregister_s);
                        observe_schedule(t, 0);
                } else if (o->registered &&
                           now >= o->heard_at + 1000u * ((uint64_t) o->max_age + OBSERVE_GRACE_S)) {
                        /* RFC 7641 §3.3.1: the representation is no longer fresh */
                        info(t, "nothing heard for %u s (Max-Age %u); registering again",
                             o->max_age + OBSERVE_GRACE_S, o->max_age);
                        observe_schedule(t, 0);
                }
                if (o->need_register && o->retry_at < wake)
                        wake = o->retry_at > now ? o->retry_at : now;
                if (t->deadline_ms && t->deadline_ms < wake)
                        wake = t->deadline_ms;
                if (coap_io_process(t->ctx, (uint32_t) (wake > now ? wake - now : 0) + 1) < 0) {
                        set_error(t, "libcoap I/O processing failed");
                        r = -1;
                        break;
                }
        }
        observe_cancel(t);
        o->active = false;
        return r;
}
