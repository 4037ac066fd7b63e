/* upstream_coap.c -- CMP over CoAP to an upstream (RFC 9482): Confirmable
 * POST, Content-Format 259, block-wise both ways, separate responses,
 * Max-Age honoured on 5.03; libcoap's client on the daemon's loop. */
#include "upstream_coap.h"

#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coap3/coap.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cmp_content.h"
#include "cmp_msg.h"
#include "coap_loop.h"
#include "coap_status.h"
#include "list.h"
#include "log.h"
#include "manager.h"
#include "psk_file.h"
#include "request.h"
#include "tls_name.h"
#include "upstream_health.h"

#define CT_PKIXCMP 259
#define TICK_USEC 1000000
#define SESSION_MAX 256         /* cached sessions: per upstream host:port, up to max_connections */

struct coap_call {
        LIST_FIELDS(struct coap_call, calls);
        struct upstream_coap *uc;
        struct request *req;
        coap_session_t *session;        /* referenced */
        uint8_t token[8];
        size_t token_len;
        sd_event_source *deadline;
        bool waiting;                   /* for its session: another exchange is on it */
        bool answered;                  /* the upstream answered: not a transport failure */
        uint64_t sent_usec;             /* CLOCK_MONOTONIC, for the latency */
        coap_uri_t uri;                 /* points into req->upstream_uri */
};

/* A cached session to one upstream: scheme, host, port and, for coaps://,
 * the credentials it was opened with (RFC 9482 §4: DTLS sessions are kept
 * and reused). libcoap keeps pointers into psk, sni and host.
 *
 * An exchange takes a session that carries no other (busy == 0), and a new
 * one while the upstream has fewer than its max_connections; else it waits
 * for the least busy session: a libcoap server keeps one Block2 transfer per
 * session and resource, so two answers on one session would collide. */
struct upstream_session {
        char key[1200];
        coap_session_t *session;
        unsigned busy;                  /* exchanges on it, in flight or waiting */
        char host[256];                 /* the certificate must name it */
        char upstream[128];             /* for logs */
        struct psk_entry *psk;          /* coaps with psk_file: one entry */
        size_t n_psk;
        X509_STORE *trust;              /* coaps with ca_file */
};

/* An upstream's ann observed (RFC 9482 §2.6, RFC 7641): registered at
 * start and reload, again every "ann_reregister" seconds (the SHOULD of §2.6), and
 * after a failure or a drop with backoff from WATCH_RETRY_MIN_SEC doubling
 * to WATCH_RETRY_MAX_SEC. */
#define WATCH_RETRY_MIN_SEC 2
#define WATCH_RETRY_MAX_SEC 300

struct ann_watch {
        LIST_FIELDS(struct ann_watch, watches);
        struct upstream_coap *uc;
        char *name;
        char *uri;                      /* ..../ann */
        struct upstream_tls tls;
        coap_session_t *session;        /* referenced while registered or trying */
        uint8_t token[8];
        size_t token_len;
        bool observing;                 /* the last answer carried Observe */
        unsigned retry_sec;
        uint64_t refresh_usec;
        sd_event_source *timer;
};

struct upstream_coap {
        sd_event *event;
        coap_context_t *ctx;
        sd_event_source *io, *timer;
        struct gw_stats *stats;
        size_t max_response;
        LIST_HEAD(struct coap_call, calls);
        struct upstream_session *sessions[SESSION_MAX];
        size_t n_sessions;
        LIST_HEAD(struct ann_watch, watches);
        upstream_ann_fn ann_fn;
        void *ann_userdata;
        struct upstream_health_table health;    /* per upstream name */
        bool closing;
};

/* libcoap 4.3.1 has no application data on a context; cmpgwd has one client. */
static struct upstream_coap *the_client;

static struct upstream_session *session_find(coap_session_t *session);

const struct upstream_health *upstream_coap_health(struct upstream_coap *u, const char *name) {
        return u ? upstream_health_find(&u->health, name) : NULL;
}

/* The exchange's outcome in its upstream's health (GetStatistics): any
 * answer is a success, a transport failure (no ACK, RST, DTLS, deadline)
 * a failure. No backoff: libcoap's retransmissions pace a dead upstream. */
static void health_note(struct coap_call *c) {
        struct upstream_health *h = upstream_health_get(&c->uc->health, c->req->upstream_name);
        uint64_t now;

        if (!h)
                return;
        sd_event_now(c->uc->event, CLOCK_MONOTONIC, &now);
        upstream_health_count(h, c->answered, c->sent_usec, now);
}

static void start_waiting(struct upstream_coap *u, coap_session_t *session);

static void call_free(struct coap_call *c) {
        struct upstream_coap *u;
        coap_session_t *session;
        bool was_sent;

        if (!c)
                return;
        u = c->uc;
        session = c->session;
        was_sent = !c->waiting;
        LIST_REMOVE(calls, u->calls, c);
        sd_event_source_disable_unref(c->deadline);
        if (c->req)
                c->req->coap_call = NULL;
        free(c);
        if (!session)
                return;
        struct upstream_session *us = session_find(session);
        if (us && us->busy > 0)
                us->busy--;
        if (was_sent && !u->closing)
                start_waiting(u, session);      /* the session is free for the next */
        coap_session_release(session);
}

static void call_finish(struct coap_call *c, const struct upstream_result *res) {
        struct request *r = c->req;

        health_note(c);
        c->req = NULL;
        r->coap_call = NULL;
        call_free(c);
        request_complete(r, res);
}

static void call_fail(struct coap_call *c, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void call_fail(struct coap_call *c, int code, const char *fmt, ...) {
        struct upstream_result res = { .coap_code = code, .max_age = -1 };
        char diag[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(diag, sizeof diag, fmt, ap);
        va_end(ap);
        res.diagnostic = diag;
        c->uc->stats->upstream_errors++;
        log_warning("request %llu: upstream %s (%s): %s", (unsigned long long) c->req->id,
                    c->req->upstream_name, c->req->upstream_uri, diag);
        call_finish(c, &res);
}

/* A token names an exchange only within its session (RFC 7252 §5.3.1), and
 * libcoap 4.3.1 starts every client session's tokens at the same value: two
 * sessions' exchanges carry equal tokens, so both must match. */
static struct coap_call *call_by_token(struct upstream_coap *u, const coap_session_t *session,
                                       coap_bin_const_t token) {
        struct coap_call *c, *n;

        LIST_FOREACH_SAFE(calls, c, n, u->calls)
                if (!c->waiting && c->session == session && c->token_len == token.length &&
                    memcmp(c->token, token.s, token.length) == 0)
                        return c;
        return NULL;
}

static unsigned option_uint(const coap_pdu_t *pdu, uint16_t opt, unsigned dflt) {
        coap_opt_iterator_t it;
        coap_opt_t *o = coap_check_option(pdu, opt, &it);

        return o ? coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o)) : dflt;
}

static coap_response_t watch_response(struct upstream_coap *u, const coap_session_t *session,
                                      const coap_pdu_t *received);
static void watch_failed(struct upstream_coap *u, coap_session_t *session, coap_bin_const_t token,
                         coap_nack_reason_t reason);

static coap_response_t on_response(coap_session_t *session, const coap_pdu_t *sent,
                                   const coap_pdu_t *received, const coap_mid_t mid) {
        struct upstream_coap *u = the_client;
        struct coap_call *c = call_by_token(u, session, coap_pdu_get_token(received));
        coap_pdu_code_t code = coap_pdu_get_code(received);
        struct upstream_result res = { .max_age = -1 };
        const uint8_t *data = NULL;
        size_t len = 0, offset, total;
        char diag[256];
        struct cmp_msg_info info;
        struct cmp_content *content = NULL;
        int cls;

        if (!c)
                return watch_response(u, session, received);    /* an ann notification, or late or unknown */
        if (code == COAP_EMPTY_CODE || code == COAP_RESPONSE_CODE_CONTINUE)
                return COAP_RESPONSE_OK;        /* separate response, or more blocks, follow */
        c->answered = true;
        coap_get_data_large(received, &len, &data, &offset, &total);
        if (len > u->max_response) {
                call_fail(c, 502, "upstream %s answer exceeds the size limit", c->req->upstream_name);
                return COAP_RESPONSE_OK;
        }
        cls = COAP_RESPONSE_CLASS(code);
        res.coap_code = cls * 100 + (code & 0x1f);
        /* decoded once: the registry reads res.content */
        if (option_uint(received, COAP_OPTION_CONTENT_FORMAT, 0) == CT_PKIXCMP &&
            cmp_msg_inspect_content(data, len, &info, &content, NULL) == 0) {
                res.body = data;
                res.body_len = len;
                res.body_is_cmp = true;
                res.content = content;
        } else if (cls == 2) {
                /* PRODUCT.md: an answer without a PKIMessage is a bad gateway */
                call_fail(c, 502, "upstream %s answered %d.%02d without a PKIMessage", c->req->upstream_name,
                          cls, code & 0x1f);
                return COAP_RESPONSE_OK;
        } else {
                snprintf(diag, sizeof diag, "upstream %s: %.*s", c->req->upstream_name,
                         (int) (len > 200 ? 200 : len), data ? (const char *) data : "");
                res.diagnostic = diag;
        }
        /* RFC 7252 §5.10.5: Max-Age on 5.03 says when to retry; relay it */
        if (res.coap_code == 503)
                res.max_age = (int) option_uint(received, COAP_OPTION_MAXAGE, 60);
        call_finish(c, &res);
        cmp_content_free(content);
        return COAP_RESPONSE_OK;
}

static void session_forget(coap_session_t *session);

static void on_nack(coap_session_t *session, const coap_pdu_t *sent, const coap_nack_reason_t reason,
                    const coap_mid_t mid) {
        struct coap_call *c;

        if (!sent)
                return;
        c = call_by_token(the_client, session, coap_pdu_get_token(sent));
        if (!c)
                return watch_failed(the_client, session, coap_pdu_get_token(sent), reason);
        switch (reason) {
        case COAP_NACK_TOO_MANY_RETRIES:
                return call_fail(c, 504, "upstream %s did not acknowledge (CoAP retransmissions exhausted)",
                                 c->req->upstream_name);
        case COAP_NACK_RST:
                return call_fail(c, 502, "upstream %s reset the exchange", c->req->upstream_name);
        case COAP_NACK_TLS_FAILED:
                session_forget(session);
                return call_fail(c, 502, "DTLS handshake with upstream %s failed: check its psk_file, or "
                                 "ca_file and certificate, in upstreams[] and the upstream's log",
                                 c->req->upstream_name);
        default:
                return call_fail(c, 503, "upstream %s unreachable", c->req->upstream_name);
        }
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        struct coap_call *c = userdata;

        if (coap_session_get_state(c->session) == COAP_SESSION_STATE_HANDSHAKE) {
                /* a DTLS peer drops what it cannot authenticate: no alert */
                session_forget(c->session);
                return call_fail(c, 504, "DTLS handshake with upstream %s did not complete in time: "
                                 "check its psk_file, or ca_file and certificate, and the upstream's log",
                                 c->req->upstream_name), 0;
        }
        call_fail(c, 504, "upstream %s did not answer in time", c->req->upstream_name);
        return 0;
}

static void session_free(struct upstream_session *us) {
        if (!us)
                return;
        if (us->session)
                coap_session_release(us->session);
        psk_file_free(us->psk, us->n_psk);
        X509_STORE_free(us->trust);
        free(us);
}

static struct upstream_session *session_find(coap_session_t *session) {
        for (size_t i = 0; the_client && i < the_client->n_sessions; i++)
                if (the_client->sessions[i]->session == session)
                        return the_client->sessions[i];
        return NULL;
}

/* The peer's chain verified against this upstream's own ca_file: libcoap
 * 4.3.1 pools the trust anchors of all client sessions in one store (and
 * calls no additional_tls_setup_call_back for clients), so its check alone
 * would let one upstream's CA vouch for another. */
static bool chain_trusted(struct upstream_session *us, coap_session_t *session, X509 *leaf) {
        coap_tls_library_t lib;
        SSL *ssl = coap_session_get_tls(session, &lib);
        X509_STORE_CTX *v = X509_STORE_CTX_new();
        bool ok;

        ok = ssl && lib == COAP_TLS_LIBRARY_OPENSSL && v &&
             X509_STORE_CTX_init(v, us->trust, leaf, SSL_get_peer_cert_chain(ssl)) == 1 &&
             X509_STORE_CTX_set_purpose(v, X509_PURPOSE_SSL_SERVER) == 1 &&
             X509_verify_cert(v) == 1;
        if (!ok && v)
                log_warning("upstream %s: its DTLS certificate does not chain to ca_file: %s", us->upstream,
                            X509_verify_cert_error_string(X509_STORE_CTX_get_error(v)));
        X509_STORE_CTX_free(v);
        return ok;
}

/* validate_cn_call_back: the upstream's certificate must chain to its own
 * ca_file and name the host of its URI (an iPAddress or dNSName SAN, or the
 * CN). libcoap keeps one client setup per context, so the session, not the
 * argument, says which upstream this is. */
static int check_upstream_name(const char *cn, const uint8_t *der, size_t len, coap_session_t *session,
                               unsigned depth, int validated, void *arg) {
        struct upstream_session *us = session_find(session);
        const unsigned char *p = der;
        X509 *x;
        int ok;

        if (depth > 0)
                return 1;
        if (!us || !(x = d2i_X509(NULL, &p, (long) len)))
                return 0;
        ok = x509_names_host(x, us->host);
        if (ok && !chain_trusted(us, session, x)) {
                X509_free(x);
                return 0;
        }
        X509_free(x);
        if (!ok)
                log_warning("upstream %s: its DTLS certificate (CN \"%s\") does not name %s: handshake refused",
                            us->upstream, cn ? cn : "", us->host);
        return ok;
}

static X509_STORE *trust_load(const char *upstream, const char *path) {
        X509_STORE *st = X509_STORE_new();

        if (st && X509_STORE_load_file(st, path) == 1)
                return st;
        log_error("upstreams.%s.ca_file: cannot load trust anchors from %s; give a PEM file of CA certificates",
                  upstream, path);
        X509_STORE_free(st);
        return NULL;
}

static coap_session_t *open_dtls(struct upstream_coap *u, struct upstream_session *us, const coap_address_t *dst,
                                 const char *name, const struct upstream_tls *tls) {
        char where[200];

        if (tls->psk_file) {
                coap_dtls_cpsk_t psk = { .version = COAP_DTLS_CPSK_SETUP_VERSION };

                snprintf(where, sizeof where, "upstreams.%s.psk_file", name);
                if (psk_file_load(where, tls->psk_file, &us->psk, &us->n_psk) < 0)
                        return NULL;
                if (us->n_psk != 1) {
                        log_error("%s: %s holds %zu identities; an upstream takes exactly one (the gateway's)",
                                  where, tls->psk_file, us->n_psk);
                        return NULL;
                }
                psk.client_sni = host_is_ip_literal(us->host) ? NULL : us->host;
                psk.psk_info.identity = (coap_bin_const_t) { strlen(us->psk->identity),
                                                             (const uint8_t *) us->psk->identity };
                psk.psk_info.key = us->psk->bin;
                return coap_new_client_session_psk2(u->ctx, NULL, dst, COAP_PROTO_DTLS, &psk);
        }
        if (!(us->trust = trust_load(name, tls->ca_file)))
                return NULL;
        /* libcoap's own check needs the anchors in the context's one store */
        if (!coap_context_set_pki_root_cas(u->ctx, tls->ca_file, NULL)) {
                log_error("upstreams.%s.ca_file: libcoap cannot load %s", name, tls->ca_file);
                return NULL;
        }
        coap_dtls_pki_t pki = {
                .version = COAP_DTLS_PKI_SETUP_VERSION,
                .verify_peer_cert = 1,
                .cert_chain_validation = 1,
                .cert_chain_verify_depth = 4,
                .validate_cn_call_back = check_upstream_name,
                .cn_call_back_arg = us,
                .client_sni = host_is_ip_literal(us->host) ? NULL : us->host,
                .pki_key = {
                        .key_type = COAP_PKI_KEY_PEM,
                        .key.pem = { .public_cert = tls->certificate, .private_key = tls->private_key },
                },
        };
        return coap_new_client_session_pki(u->ctx, NULL, dst, COAP_PROTO_DTLS, &pki);
}

/* libcoap 4.3.1 starts every client session's tokens at 0 and counts up.
 * RFC 7252 §5.3.1: a client on the Internet SHOULD use at least 32 bits of
 * randomness; 40 random bits, below libcoap's 48-bit block-wise token base. */
static void token_seed(coap_session_t *session) {
        uint8_t seed[5];

        if (RAND_bytes(seed, sizeof seed) == 1)
                coap_session_init_token(session, sizeof seed, seed);
}

/* The session of KEY to use: for an exchange (cap > 0) an idle one, else
 * NULL while fewer than cap are open, else the least busy; for anything else
 * (cap 0) the first. */
static struct upstream_session *session_pick(struct upstream_coap *u, const char *key, unsigned cap) {
        struct upstream_session *best = NULL;
        unsigned n = 0;

        for (size_t i = 0; i < u->n_sessions; i++) {
                struct upstream_session *us = u->sessions[i];
                if (strcmp(us->key, key) != 0)
                        continue;
                if (cap == 0 || us->busy == 0)
                        return us;
                n++;
                if (!best || us->busy < best->busy)
                        best = us;
        }
        return n < cap ? NULL : best;
}

/* A cached session for an upstream (see struct upstream_session), or a
 * new one. NULL when it cannot be opened (logged). */
static struct upstream_session *session_get(struct upstream_coap *u, const coap_uri_t *uri, const char *name,
                                            const struct upstream_tls *tls, unsigned cap) {
        struct addrinfo hints = { .ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV };
        struct addrinfo *ai = NULL;
        bool dtls = uri->scheme == COAP_URI_SCHEME_COAPS;
        struct upstream_session *us;
        char port[8], key[sizeof us->key];
        coap_address_t dst;

        snprintf(port, sizeof port, "%u", uri->port);
        snprintf(key, sizeof key, "%s|%.*s|%s|%s|%s|%s|%s", dtls ? "coaps" : "coap", (int) uri->host.length,
                 (const char *) uri->host.s, port, name,
                 dtls && tls->psk_file ? tls->psk_file : "", dtls && tls->ca_file ? tls->ca_file : "",
                 dtls && tls->certificate ? tls->certificate : "");
        if ((us = session_pick(u, key, cap)))
                return us;
        if (uri->host.length >= sizeof us->host || !(us = calloc(1, sizeof *us)))
                return NULL;
        snprintf(us->key, sizeof us->key, "%s", key);
        snprintf(us->host, sizeof us->host, "%.*s", (int) uri->host.length, (const char *) uri->host.s);
        snprintf(us->upstream, sizeof us->upstream, "%s", name);
        if (getaddrinfo(us->host, port, &hints, &ai) != 0 || !ai) {
                log_warning("upstream %s: cannot resolve %s", name, us->host);
                session_free(us);
                return NULL;
        }
        coap_address_init(&dst);
        memcpy(&dst.addr, ai->ai_addr, ai->ai_addrlen);
        dst.size = ai->ai_addrlen;
        freeaddrinfo(ai);
        us->session = dtls ? open_dtls(u, us, &dst, name, tls) : coap_new_client_session(u->ctx, NULL, &dst, COAP_PROTO_UDP);
        if (!us->session) {
                session_free(us);
                return NULL;
        }
        token_seed(us->session);
        if (u->n_sessions == SESSION_MAX) {     /* the oldest goes; calls hold their own references */
                session_free(u->sessions[0]);
                memmove(u->sessions, u->sessions + 1, (SESSION_MAX - 1) * sizeof *u->sessions);
                u->n_sessions--;
        }
        u->sessions[u->n_sessions++] = us;
        return us;
}

/* a session that failed is not reused: the next request opens a new one */
static void session_forget(coap_session_t *session) {
        struct upstream_coap *u = the_client;

        for (size_t i = 0; u && i < u->n_sessions; i++)
                if (u->sessions[i]->session == session) {
                        session_free(u->sessions[i]);
                        memmove(u->sessions + i, u->sessions + i + 1, (u->n_sessions - i - 1) * sizeof *u->sessions);
                        u->n_sessions--;
                        return;
                }
}

void upstream_coap_forget_sessions(struct upstream_coap *u) {
        if (!u)
                return;
        for (size_t i = 0; i < u->n_sessions; i++)
                session_free(u->sessions[i]);
        u->n_sessions = 0;
}

/* libcoap 4.3.1 clients hang on a separate Block2 answer to a single-PDU
 * request (PEERS.md); a request in two or more blocks does not. */
static unsigned block_szx_for(size_t body_len) {
        unsigned szx = 6;       /* 1024 */

        while (szx > 0 && (16u << szx) >= body_len)
                szx--;
        return szx;
}

/* the URI's path as Uri-Path options */
static void add_uri_path(coap_optlist_t **opts, const coap_uri_t *uri) {
        uint8_t path[512];
        size_t path_len = sizeof path;
        int segs = uri->path.length ? coap_split_path(uri->path.s, uri->path.length, path, &path_len) : 0;

        for (uint8_t *p = path; segs-- > 0; p += coap_opt_size(p))
                coap_insert_optlist(opts, coap_new_optlist(COAP_OPTION_URI_PATH, coap_opt_length(p), coap_opt_value(p)));
}

static void release_body(coap_session_t *session, void *app_ptr) {
        free(app_ptr);
}

static int send_post(struct coap_call *c, const coap_uri_t *uri) {
        struct request *r = c->req;
        coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, c->session);
        coap_optlist_t *opts = NULL;
        uint8_t buf[8], *copy;

        if (!pdu)
                return -ENOMEM;
        coap_session_new_token(c->session, &c->token_len, c->token);
        coap_add_token(pdu, c->token_len, c->token);
        add_uri_path(&opts, uri);
        /* RFC 9482 §2.3: Content-Format application/pkixcmp */
        coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_CONTENT_FORMAT,
                                                    coap_encode_var_safe(buf, sizeof buf, CT_PKIXCMP), buf));
        coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_BLOCK1,
                                                    coap_encode_var_safe(buf, sizeof buf, block_szx_for(r->body_len)), buf));
        coap_add_optlist_pdu(pdu, &opts);
        coap_delete_optlist(opts);
        copy = malloc(r->body_len);
        if (!copy) {
                coap_delete_pdu(pdu);
                return -ENOMEM;
        }
        memcpy(copy, r->body, r->body_len);
        if (!coap_add_data_large_request(c->session, pdu, r->body_len, copy, release_body, copy)) {
                free(copy);
                coap_delete_pdu(pdu);
                return -EIO;
        }
        sd_event_now(c->uc->event, CLOCK_MONOTONIC, &c->sent_usec);
        /* RFC 9482 §2.3: Confirmable */
        return coap_send(c->session, pdu) == COAP_INVALID_MID ? -EIO : 0;
}

/* After something was queued from outside libcoap's callbacks (a new
 * session's handshake, a request): libcoap plans its next wake-up. */
static void schedule(struct upstream_coap *u) {
        coap_tick_t now;

        coap_ticks(&now);
        coap_io_prepare_epoll(u->ctx, now);
}

/* schedule(), unless SESSION needs none: a Confirmable request on an
 * established UDP session is on libcoap's retransmit queue, whose
 * coap_wait_ack() arms libcoap's timerfd itself (libcoap 4.3.1 net.c);
 * coap_io_prepare_epoll() would walk every session and queue for nothing
 * (~5 % of cmpgwd's CPU under proxy_bench). A DTLS session, or one still
 * connecting, has handshake timers only that walk plans. */
static void schedule_for(struct upstream_coap *u, coap_session_t *session) {
        if (coap_session_get_proto(session) == COAP_PROTO_UDP &&
            coap_session_get_state(session) == COAP_SESSION_STATE_ESTABLISHED)
                return;
        schedule(u);
}

/* The exchange that has waited longest for SESSION goes out (calls are
 * prepended: the oldest is the last). */
static void start_waiting(struct upstream_coap *u, coap_session_t *session) {
        struct coap_call *c, *n, *oldest = NULL;

        LIST_FOREACH_SAFE(calls, c, n, u->calls)
                if (c->waiting && c->session == session)
                        oldest = c;
        if (!oldest)
                return;
        oldest->waiting = false;
        if (send_post(oldest, &oldest->uri) < 0)
                return call_fail(oldest, 500, "cannot send to upstream %s", oldest->req->upstream_name);
        schedule_for(u, session);
}

/* ---- announcements from upstreams (RFC 9482 §2.6) ------------------- */

static struct ann_watch *watch_by_token(struct upstream_coap *u, const coap_session_t *session,
                                        coap_bin_const_t token) {
        struct ann_watch *w, *n;

        LIST_FOREACH_SAFE(watches, w, n, u->watches)
                if (w->session == session && w->token_len == token.length &&
                    memcmp(w->token, token.s, token.length) == 0)
                        return w;
        return NULL;
}

static void watch_schedule(struct ann_watch *w, uint64_t usec) {
        sd_event_source_set_time_relative(w->timer, usec);
        sd_event_source_set_enabled(w->timer, SD_EVENT_ONESHOT);
}

static void watch_backoff(struct ann_watch *w, const char *why) {
        w->retry_sec = w->retry_sec ? w->retry_sec * 2 : WATCH_RETRY_MIN_SEC;
        if (w->retry_sec > WATCH_RETRY_MAX_SEC)
                w->retry_sec = WATCH_RETRY_MAX_SEC;
        if (w->observing || w->retry_sec == WATCH_RETRY_MIN_SEC)
                log_warning("upstream %s: not observing %s (%s); registering again in %u s",
                            w->name, w->uri, why, w->retry_sec);
        w->observing = false;
        watch_schedule(w, w->retry_sec * 1000000ULL);
}

/* GET with Observe 0 (RFC 7641 §3.1); the same token again re-registers */
static int watch_register(struct ann_watch *w) {
        struct upstream_coap *u = w->uc;
        coap_optlist_t *opts = NULL;
        uint8_t buf[4];
        struct upstream_session *us;
        coap_session_t *session;
        coap_pdu_t *pdu;
        coap_uri_t uri;

        if (coap_split_uri((const uint8_t *) w->uri, strlen(w->uri), &uri) < 0)
                return -EINVAL;
        us = session_get(u, &uri, w->name, &w->tls, 0);
        session = us ? us->session : NULL;
        if (!session)
                return -EHOSTUNREACH;
        if (w->session != session) {
                if (w->session)
                        coap_session_release(w->session);
                w->session = coap_session_reference(session);
                coap_session_new_token(session, &w->token_len, w->token);
        }
        pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, session);
        if (!pdu)
                return -ENOMEM;
        coap_add_token(pdu, w->token_len, w->token);
        coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_OBSERVE,
                                                    coap_encode_var_safe(buf, sizeof buf, COAP_OBSERVE_ESTABLISH), buf));
        add_uri_path(&opts, &uri);
        coap_add_optlist_pdu(pdu, &opts);
        coap_delete_optlist(opts);
        if (coap_send(session, pdu) == COAP_INVALID_MID)
                return -EIO;
        log_debug("upstream %s: GET %s with Observe", w->name, w->uri);
        return 0;
}

static int on_watch_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        struct ann_watch *w = userdata;
        int r = watch_register(w);

        if (r < 0)
                watch_backoff(w, strerror(-r));
        else
                watch_schedule(w, w->refresh_usec);   /* an answer reschedules */
        schedule(w->uc);
        return 0;
}

static coap_response_t watch_response(struct upstream_coap *u, const coap_session_t *session,
                                      const coap_pdu_t *received) {
        struct ann_watch *w = watch_by_token(u, session, coap_pdu_get_token(received));
        coap_pdu_code_t code = coap_pdu_get_code(received);
        coap_opt_iterator_t it;
        const uint8_t *data = NULL;
        size_t len = 0, offset, total;
        char why[64];

        if (!w)
                return COAP_RESPONSE_OK;
        if (COAP_RESPONSE_CLASS(code) != 2) {
                snprintf(why, sizeof why, "it answered %d.%02d", COAP_RESPONSE_CLASS(code), code & 0x1f);
                watch_backoff(w, why);
                return COAP_RESPONSE_OK;
        }
        if (!coap_check_option(received, COAP_OPTION_OBSERVE, &it)) {
                /* RFC 9482 §2.6: no room for us; try again after a while */
                watch_backoff(w, "answered without Observe");
        } else {
                if (!w->observing)
                        log_info("upstream %s: observing %s", w->name, w->uri);
                w->observing = true;
                w->retry_sec = 0;
                watch_schedule(w, w->refresh_usec);
        }
        if (coap_get_data_large(received, &len, &data, &offset, &total) && len > 0 &&
            option_uint(received, COAP_OPTION_CONTENT_FORMAT, 0) == CT_PKIXCMP && u->ann_fn)
                u->ann_fn(w->name, data, len, u->ann_userdata);
        return COAP_RESPONSE_OK;
}

static void watch_failed(struct upstream_coap *u, coap_session_t *session, coap_bin_const_t token,
                         coap_nack_reason_t reason) {
        struct ann_watch *w = watch_by_token(u, session, token);

        if (!w)
                return;
        if (reason == COAP_NACK_TLS_FAILED)
                session_forget(w->session);
        watch_backoff(w, reason == COAP_NACK_RST ? "reset" : reason == COAP_NACK_TLS_FAILED ?
                      "DTLS handshake failed" : "no answer");
}

static void watch_free(struct ann_watch *w) {
        LIST_REMOVE(watches, w->uc->watches, w);
        sd_event_source_disable_unref(w->timer);
        if (w->session)
                coap_session_release(w->session);
        free(w->name);
        free(w->uri);
        upstream_tls_clear(&w->tls);
        free(w);
}

static int watch_add(struct upstream_coap *u, const struct cmpgw_upstream *up) {
        struct ann_watch *w = calloc(1, sizeof *w);
        char uri[2048];
        int r;

        if (!w)
                return -ENOMEM;
        w->uc = u;
        w->refresh_usec = up->ann_reregister_usec;
        LIST_PREPEND(watches, u->watches, w);
        /* <base>/ann: the base is the upstream's URI (…/.well-known/cmp) */
        snprintf(uri, sizeof uri, "%s%sann", up->uri, up->uri[strlen(up->uri) - 1] == '/' ? "" : "/");
        w->name = strdup(up->name);
        w->uri = strdup(uri);
        r = !w->name || !w->uri || upstream_tls_copy(&w->tls, up) < 0 ? -ENOMEM :
            sd_event_add_time_relative(u->event, &w->timer, CLOCK_MONOTONIC, 0, 0, on_watch_timer, w);
        if (r < 0) {
                watch_free(w);
                return r;
        }
        sd_event_source_set_description(w->timer, "ann-watch");
        return 0;
}

void upstream_coap_set_ann_handler(struct upstream_coap *u, upstream_ann_fn fn, void *userdata) {
        u->ann_fn = fn;
        u->ann_userdata = userdata;
}

int upstream_coap_watch_announcements(struct upstream_coap *u, const struct cmpgw_config *c) {
        int r = 0;

        while (u->watches)
                watch_free(u->watches);
        for (size_t i = 0; i < c->n_upstreams && r >= 0; i++)
                if (c->upstreams[i].announcements)
                        r = watch_add(u, &c->upstreams[i]);
        return r;
}

int upstream_coap_submit(struct upstream_coap *u, struct request *r) {
        struct upstream_session *us;
        struct coap_call *c;
        coap_uri_t uri;
        int ret;

        if (coap_split_uri((const uint8_t *) r->upstream_uri, strlen(r->upstream_uri), &uri) < 0 ||
            (uri.scheme != COAP_URI_SCHEME_COAP && uri.scheme != COAP_URI_SCHEME_COAPS))
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->uc = u;
        c->req = r;
        LIST_PREPEND(calls, u->calls, c);
        us = session_get(u, &uri, r->upstream_name, &r->upstream_tls,
                         r->upstream_max_connections ? r->upstream_max_connections : 1);
        if (!us) {
                call_free(c);
                return -EHOSTUNREACH;
        }
        c->waiting = us->busy++ > 0;    /* all max_connections sessions carry one */
        c->session = coap_session_reference(us->session);
        c->uri = uri;
        ret = sd_event_add_time_relative(u->event, &c->deadline, CLOCK_MONOTONIC, r->upstream_timeout_usec, 0,
                                         on_deadline, c);
        if (ret >= 0 && !c->waiting)
                ret = send_post(c, &c->uri);
        if (ret < 0) {
                call_free(c);
                return ret;
        }
        r->coap_call = c;
        if (!c->waiting)
                schedule_for(u, c->session);
        return 0;
}

void upstream_coap_cancel(struct upstream_coap *u, struct request *r) {
        struct coap_call *c = r->coap_call;

        if (!c)
                return;
        c->req = NULL;
        r->coap_call = NULL;
        call_free(c);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct upstream_coap *u = userdata;

        coap_loop_dispatch(u->ctx);
        return 0;
}

/* libcoap arms its own timer (in the fd above); this tick only makes sure
 * that nothing waits longer than a second */
static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        struct upstream_coap *u = userdata;

        coap_io_process(u->ctx, COAP_IO_NO_WAIT);
        sd_event_source_set_time_relative(s, TICK_USEC);
        return 0;
}

int upstream_coap_new(sd_event *e, struct gw_stats *stats, size_t max_response,
                      struct upstream_coap **ret) {
        struct upstream_coap *u = calloc(1, sizeof *u);
        int r;

        if (!u)
                return -ENOMEM;
        u->event = sd_event_ref(e);
        u->stats = stats;
        u->max_response = max_response;
        u->ctx = coap_new_context(NULL);
        if (!u->ctx) {
                upstream_coap_free(u);
                return -ENOMEM;
        }
        the_client = u;
        /* RFC 9482 §2.4: block-wise both ways, bodies handed over whole */
        coap_context_set_block_mode(u->ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
        coap_register_response_handler(u->ctx, on_response);
        coap_register_nack_handler(u->ctx, on_nack);
        r = sd_event_add_io(e, &u->io, coap_context_get_coap_fd(u->ctx), EPOLLIN, on_io, u);
        if (r >= 0)
                r = sd_event_add_time_relative(e, &u->timer, CLOCK_MONOTONIC, TICK_USEC, 0, on_tick, u);
        if (r >= 0)
                r = sd_event_source_set_enabled(u->timer, SD_EVENT_ON);
        if (r < 0) {
                upstream_coap_free(u);
                return r;
        }
        sd_event_source_set_description(u->io, "coap-client-io");
        sd_event_source_set_description(u->timer, "coap-client-timer");
        *ret = u;
        return 0;
}

struct upstream_coap *upstream_coap_free(struct upstream_coap *u) {
        struct coap_call *c, *n;

        if (!u)
                return NULL;
        u->closing = true;
        LIST_FOREACH_SAFE(calls, c, n, u->calls)
                call_free(c);
        while (u->watches)
                watch_free(u->watches);
        sd_event_source_disable_unref(u->io);
        sd_event_source_disable_unref(u->timer);
        upstream_coap_forget_sessions(u);
        if (u->ctx)
                coap_free_context(u->ctx);
        if (the_client == u)
                the_client = NULL;
        sd_event_unref(u->event);
        upstream_health_table_clear(&u->health);
        free(u);
        return NULL;
}
