/* coap_server.c -- the CoAP side of cmpgwd (RFC 9482 §2, RFC 7252, RFC 7959)
 *
 * libcoap's server context runs without its block mode (coap_blocks.h):
 * the handler sees every Block1 block with its Size1, so the size limit
 * holds before any memory is taken (PEERS.md: SINGLE_BODY allocates whatever
 * Size1 claims), bodies are reassembled here, per (session, Request-Tag),
 * and answers are cut into Block2 blocks from what cmpgwd keeps anyway. */
#include "coap_server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <coap3/coap.h>
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "admission.h"
#include "announce.h"
#include "cmp_path.h"
#include "coap_blocks.h"
#include "coap_loop.h"
#include "coap_status.h"
#include "dtls_reboot.h"
#include "kept_answer.h"
#include "log.h"
#include "psk_file.h"
#include "manager.h"
#include "request.h"

#define CT_PKIXCMP 259  /* RFC 9482 §5: application/pkixcmp */
#define MAX_TRANSFERS 1024
#define TICK_USEC 1000000
#define BLOCK_OVERHEAD 128      /* CoAP header, token and options around a block */

/* One Block1 transfer, named by session and Request-Tag (RFC 9175 §3):
 * clients may use a new token for every block (RFC 7959 §2.3). */
struct transfer {
        LIST_FIELDS(struct transfer, transfers);
        coap_session_t *session;        /* compared, never dereferenced */
        struct peer_key key;            /* its address: one address gets its share */
        uint8_t tag[8];
        size_t tag_len;
        uint8_t *buf;
        size_t len;
        uint64_t last_usec;
};

struct coap_server {
        Manager *manager;
        coap_context_t *ctx;
        struct coap_loop_batch batch;           /* reads per socket event (coap_loop.h) */
        bool freeing;                           /* coap_server_free: libcoap's last events find nothing */
        sd_event_source *io, *tick, *gc;
        LIST_HEAD(struct transfer, transfers);
        unsigned n_transfers;
        struct kept_answers *kept;
        size_t buffered;
        coap_resource_t **base_resources;       /* /.well-known/cmp/... */
        size_t n_base_resources;
        coap_resource_t **label_resources;      /* /.well-known/cmp/p/<label>/..., from the config */
        size_t n_label_resources;
        struct dtls_creds *dtls;                /* coaps credentials, NULL without coaps */
        struct dtls_reboot *dtls_reboot;        /* ClientHellos on established sessions; NULL without coaps */
        const struct cmpgw_listen *dtls_listen; /* while starting: the listener that set them */
        const struct cmpgw_config *dtls_config; /* the config they were read from */
        uint8_t dtls_dummy_key[32];

        /* ann observers (RFC 7641), as far as we know them; see "announcements" */
        struct ann_observer **observers;        /* OBSERVER_BUCKETS lists, by session */
        unsigned n_observers;
        bool ann_observable;                    /* under max_observers: new ones register */
        struct log_ratelimit limited_log, psk_log;
        sd_event_source *ann_refresh;           /* the periodic Confirmable notification */
        /* the fan-out under way: observers whose generation differs are due */
        uint32_t ann_generation;
        uint32_t ann_observe;                   /* Observe value of our notifications */
        size_t fanout_bucket;                   /* OBSERVER_BUCKETS: no fan-out */
        struct ann_observer *fanout_next;       /* in fanout_bucket; NULL: its first */
        unsigned fanout_due;                    /* answers to notifications not heard yet */
        uint64_t fanout_heard_usec;             /* when a datagram came last */
        sd_event_source *fanout_timer;          /* the first step, and one after a stall */
        struct log_ratelimit notify_log;
};

/* libcoap 4.3.1 has no application data on a context; cmpgwd runs one. */
static struct coap_server *the_server;

static struct coap_server *server_of(coap_session_t *session) {
        return the_server;
}

static uint64_t now_usec(struct coap_server *s) {
        uint64_t t;
        sd_event_now(s->manager->event, CLOCK_MONOTONIC, &t);
        return t;
}

static void peer_name(coap_session_t *session, char *buf, size_t size) {
        if (coap_print_addr(coap_session_get_addr_remote(session), (unsigned char *) buf, size) == 0)
                snprintf(buf, size, "?");
}

/* ---- coaps: DTLS credentials (RFC 9482 §2.2, RFC 7252 §9.1) ----------
 *
 * libcoap keeps one set of DTLS credentials per context, so every coaps
 * listener must name the same psk_file, certificate, private_key and
 * client_ca; client_certificate may differ. The context is set up for the
 * most permissive listener (context_client_cert). PSK identities are
 * looked up in our own table (validate_id_call_back). Certificates go
 * through libcoap's PEM setup (which re-reads the files at every new
 * handshake), plus our additional_tls_setup_call_back, which sends the
 * whole chain of the certificate file, verifies client certificates
 * against our own store of client_ca trust anchors, and asks for no client
 * certificate, an optional or a required one as the handshake's listener
 * says. Everything but switching PSK or certificates on or off reloads on
 * SIGHUP (coap_server_apply_config). */

#define DTLS_MAX_HANDSHAKES 128         /* sessions in handshake at once */
#define DTLS_SESSION_TIMEOUT 600        /* s an idle session (DTLS association) is kept */

struct dtls_creds {
        char *psk_file, *certificate, *private_key, *client_ca;
        enum cmpgw_client_cert client_certificate;      /* the context's: context_client_cert() */
        struct psk_entry *psk;          /* sorted by identity */
        size_t n_psk;
        X509_STORE *client_store;
        STACK_OF(X509_NAME) *client_names;
};

static void dtls_creds_free(struct dtls_creds *d) {
        if (!d)
                return;
        free(d->psk_file);
        free(d->certificate);
        free(d->private_key);
        free(d->client_ca);
        psk_file_free(d->psk, d->n_psk);
        X509_STORE_free(d->client_store);
        sk_X509_NAME_pop_free(d->client_names, X509_NAME_free);
        free(d);
}

/* validate_id_call_back: the key of a known identity, NULL refuses it */
/* No DTLS session resumption. A resumed session skips psk_lookup() and the
 * client_ca check, so an identity or a CA withdrawn by SIGHUP would be
 * served on until the client's ticket expires (2 h), and it carries no PSK
 * identity; OpenSSL also answers a client-certificate resumption with
 * internal_error for want of a session id context. So every session is a
 * full handshake, and no ticket is sent. */
static SSL_TICKET_RETURN ticket_ignore(SSL *ssl, SSL_SESSION *session, const unsigned char *key_name,
                                       size_t key_name_len, SSL_TICKET_STATUS status, void *arg) {
        return SSL_TICKET_RETURN_IGNORE;
}

/* libcoap 4.3.1 gives no access to its SSL_CTX but through a handshake's
 * SSL, and makes the next handshake's SSL before the callbacks of the first
 * run: the SSL's own options (tickets) are set here, the SSL_CTX's at the
 * first handshake. The ticket callback and the session cache mode are read
 * from the SSL_CTX when a client offers a session, so they hold for SSLs
 * made before too; no ticket can exist before the first handshake ends. */
static void dtls_no_resumption(SSL *ssl) {
        SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);

        SSL_set_options(ssl, SSL_OP_NO_TICKET);
        if (!ctx || (SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET))
                return;
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF | SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_set_session_ticket_cb(ctx, NULL, ticket_ignore, NULL);
}

static const coap_bin_const_t *psk_lookup(coap_bin_const_t *identity, coap_session_t *session, void *arg) {
        struct coap_server *s = server_of(session);
        const struct psk_entry *e = NULL;
        char probe[PSK_IDENTITY_MAX + 1];
        char peer[64];
        coap_tls_library_t lib;
        void *ssl = coap_session_get_tls(session, &lib);

        if (ssl && lib == COAP_TLS_LIBRARY_OPENSSL)
                dtls_no_resumption(ssl);
        if (s && s->dtls && identity && identity->length <= PSK_IDENTITY_MAX &&
            !memchr(identity->s, '\0', identity->length)) {
                memcpy(probe, identity->s, identity->length);
                probe[identity->length] = '\0';
                e = psk_file_find(s->dtls->psk, s->dtls->n_psk, probe);
        }
        if (!e) {
                bool printable = identity && identity->length <= PSK_IDENTITY_MAX;
                for (size_t i = 0; printable && i < identity->length; i++)
                        printable = identity->s[i] >= 0x20 && identity->s[i] < 0x7f && identity->s[i] != '"';
                if (!s || !log_ratelimit_ok(&s->psk_log, now_usec(s)))
                        return NULL;
                peer_name(session, peer, sizeof peer);
                log_info("DTLS from %s: unknown PSK identity \"%.*s\"%s: handshake refused", peer,
                         printable ? (int) identity->length : 0, printable ? (const char *) identity->s : "",
                         printable ? "" : " (not printable)");
                return NULL;
        }
        return &e->bin;
}

static int client_ca_load(const char *key, const char *path, X509_STORE **ret_store,
                          STACK_OF(X509_NAME) **ret_names) {
        X509_STORE *store = X509_STORE_new();
        STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
        BIO *in = BIO_new_file(path, "r");
        int n = 0;
        X509 *x;

        if (!store || !names || !in) {
                log_openssl(LOG_LVL_ERR, "%s: cannot read %s", key, path);
                goto fail;
        }
        while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL))) {
                X509_NAME *name = X509_NAME_dup(X509_get_subject_name(x));
                if (!X509_STORE_add_cert(store, x) || !name || !sk_X509_NAME_push(names, name)) {
                        X509_NAME_free(name);
                        X509_free(x);
                        log_openssl(LOG_LVL_ERR, "%s: %s: cannot add certificate %d", key, path, n + 1);
                        goto fail;
                }
                X509_free(x);
                n++;
        }
        ERR_clear_error();      /* the end of the file */
        if (n == 0) {
                log_error("%s: %s holds no PEM certificate", key, path);
                goto fail;
        }
        BIO_free(in);
        *ret_store = store;
        *ret_names = names;
        return 0;
fail:
        BIO_free(in);
        X509_STORE_free(store);
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return -EINVAL;
}

/* Load the gateway's certificate chain and key once, to name a bad file at
 * start (libcoap would only log during a handshake). */
static int server_cert_check(const char *where, const char *cert, const char *pkey) {
        SSL_CTX *ctx = SSL_CTX_new(DTLS_server_method());
        int r = 0;

        if (!ctx)
                return -ENOMEM;
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
                r = log_openssl(LOG_LVL_ERR, "%s.certificate: cannot load %s (PEM, leaf first)", where, cert);
        else if (SSL_CTX_use_PrivateKey_file(ctx, pkey, SSL_FILETYPE_PEM) != 1)
                r = log_openssl(LOG_LVL_ERR, "%s.private_key: cannot load %s (unencrypted PEM)", where, pkey);
        else if (SSL_CTX_check_private_key(ctx) != 1)
                r = log_openssl(LOG_LVL_ERR, "%s.private_key: %s does not belong to the certificate in %s",
                                where, pkey, cert);
        SSL_CTX_free(ctx);
        return r < 0 ? -EINVAL : 0;
}

static char *strdup_or_null(const char *s, int *r) {
        char *d = s ? strdup(s) : NULL;
        if (s && !d)
                *r = -ENOMEM;
        return d;
}

/* What the context asks of clients: a certificate required when every coaps
 * listener requires one, none when no listener asks for one, else optional
 * (dtls_tls_setup then asks each handshake for what its listener says). */
static enum cmpgw_client_cert context_client_cert(const struct cmpgw_config *c) {
        bool required = true, none = true;

        for (size_t i = 0; i < c->n_listen; i++) {
                if (c->listen[i].scheme != SCHEME_COAPS)
                        continue;
                required = required && c->listen[i].client_certificate == CLIENT_CERT_REQUIRED;
                none = none && c->listen[i].client_certificate == CLIENT_CERT_NONE;
        }
        return required ? CLIENT_CERT_REQUIRED : none ? CLIENT_CERT_NONE : CLIENT_CERT_OPTIONAL;
}

/* Reads every credential file of listener l (named where), for a context
 * that asks client_certificate of clients. */
static int dtls_creds_load(const char *where, const struct cmpgw_listen *l, enum cmpgw_client_cert client_certificate,
                           struct dtls_creds **ret) {
        struct dtls_creds *d = calloc(1, sizeof *d);
        char key[96];
        int r = 0;

        if (!d)
                return -ENOMEM;
        d->psk_file = strdup_or_null(l->psk_file, &r);
        d->certificate = strdup_or_null(l->certificate, &r);
        d->private_key = strdup_or_null(l->private_key, &r);
        d->client_ca = strdup_or_null(l->client_ca, &r);
        d->client_certificate = client_certificate;
        if (r == 0 && d->psk_file) {
                snprintf(key, sizeof key, "%s.psk_file", where);
                r = psk_file_load(key, d->psk_file, &d->psk, &d->n_psk);
        }
        if (r == 0 && d->certificate)
                r = server_cert_check(where, d->certificate, d->private_key);
        if (r == 0 && d->client_ca && d->client_certificate != CLIENT_CERT_NONE) {
                snprintf(key, sizeof key, "%s.client_ca", where);
                r = client_ca_load(key, d->client_ca, &d->client_store, &d->client_names);
        }
        if (r < 0) {
                dtls_creds_free(d);
                return r;
        }
        *ret = d;
        return 0;
}

static bool str_eq(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* client_certificate may differ: the context asks for the most permissive */
static bool same_creds(const struct cmpgw_listen *a, const struct cmpgw_listen *b) {
        return str_eq(a->psk_file, b->psk_file) && str_eq(a->certificate, b->certificate) &&
               str_eq(a->private_key, b->private_key) && str_eq(a->client_ca, b->client_ca);
}

static void log_not_same_creds(const char *where, const char *first_uri) {
        log_error("%s: every coaps:// listener must name the same psk_file, certificate, private_key and "
                  "client_ca as %s (libcoap keeps one set per context; only client_certificate may differ)",
                  where, first_uri);
}

/* What the listener of a handshake asks of the client. libcoap makes the
 * SSL's app data its session (coap_openssl.c); a session that matches no
 * listener (a reload changed them) gets what the context asks. */
static enum cmpgw_client_cert handshake_client_cert(const struct coap_server *s, SSL *ssl) {
        coap_session_t *session = SSL_get_app_data(ssl);
        const struct cmpgw_listen *l = session ? admission_listener(s->dtls_config, session) : NULL;

        return l ? l->client_certificate : s->dtls->client_certificate;
}

/* additional_tls_setup_call_back, for every handshake. libcoap sets a
 * verify callback only on the certificate path (not for PSK). */
static int dtls_tls_setup(void *tls_session, coap_dtls_pki_t *setup_data) {
        SSL *ssl = tls_session;
        struct coap_server *s = the_server;
        SSL_verify_cb verify = SSL_get_verify_callback(ssl);
        struct dtls_creds *d = s ? s->dtls : NULL;
        STACK_OF(X509_NAME) *names;
        enum cmpgw_client_cert wanted;
        int mode;

        dtls_no_resumption(ssl);        /* before OpenSSL looks at an offered session */
        if (!d || !verify)
                return 1;       /* PSK handshake */
        /* libcoap sends the leaf only; send the chain of the file too */
        if (d->certificate && SSL_use_certificate_chain_file(ssl, d->certificate) != 1)
                log_openssl(LOG_LVL_WARNING, "coaps: cannot load the chain of %s; sending the leaf only", d->certificate);
        wanted = handshake_client_cert(s, ssl);
        if (wanted == CLIENT_CERT_NONE || !d->client_store) {
                /* no CertificateRequest: a client cannot send one (RFC 5246 §7.4.6) */
                SSL_set_verify(ssl, SSL_VERIFY_NONE, verify);
                return 1;
        }
        if (!SSL_set1_verify_cert_store(ssl, d->client_store))
                return 0;
        names = SSL_dup_CA_list(d->client_names);
        if (!names)
                return 0;
        SSL_set_client_CA_list(ssl, names);
        mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
        if (wanted == CLIENT_CERT_REQUIRED)
                mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_set_verify(ssl, mode, verify);
        return 1;
}

static int dtls_set_pki(struct coap_server *s, struct dtls_creds *d) {
        coap_dtls_pki_t pki = {
                .version = COAP_DTLS_PKI_SETUP_VERSION,
                /* libcoap's verify callback refuses unknown issuers only with this */
                .verify_peer_cert = d->client_certificate != CLIENT_CERT_NONE,
                .additional_tls_setup_call_back = dtls_tls_setup,
                .pki_key = {
                        .key_type = COAP_PKI_KEY_PEM,
                        .key.pem = { .public_cert = d->certificate, .private_key = d->private_key },
                },
        };

        /* the strings must outlive the context's use of them: they are d's */
        return coap_context_set_pki(s->ctx, &pki) ? 0 : -EIO;
}

/* The first coaps listener sets the context's credentials (asking clients
 * what all of s->dtls_config's coaps listeners need); later ones must name
 * the same. */
static int dtls_setup(struct coap_server *s, const struct cmpgw_listen *l, const char *where) {
        struct dtls_creds *d;
        int r;

        if (s->dtls_listen) {
                if (same_creds(s->dtls_listen, l))
                        return 0;
                log_not_same_creds(where, s->dtls_listen->uri);
                return -EINVAL;
        }
        if (!coap_dtls_is_supported()) {
                log_error("%s: this libcoap has no DTLS support; install the OpenSSL flavour (libcoap-3-openssl)", where);
                return -EOPNOTSUPP;
        }
        if ((r = dtls_creds_load(where, l, context_client_cert(s->dtls_config), &d)) < 0)
                return r;
        s->dtls = d;
        s->dtls_listen = l;
        if (d->psk_file) {
                coap_dtls_spsk_t psk = {
                        .version = COAP_DTLS_SPSK_SETUP_VERSION,
                        .validate_id_call_back = psk_lookup,
                        /* libcoap's certificate path takes a ClientHello for PSK only
                         * when the context has a key: a random one nobody knows;
                         * psk_lookup() decides every identity */
                        .psk_info.key = { .s = s->dtls_dummy_key, .length = sizeof s->dtls_dummy_key },
                };
                if (RAND_bytes(s->dtls_dummy_key, sizeof s->dtls_dummy_key) != 1)
                        return log_openssl(LOG_LVL_ERR, "%s: no random bytes", where);
                /* before coap_context_set_pki: both install a ClientHello callback */
                if (!coap_context_set_psk2(s->ctx, &psk)) {
                        log_error("%s: libcoap refused the PSK setup", where);
                        return -EIO;
                }
        }
        if (d->certificate && (r = dtls_set_pki(s, d)) < 0) {
                log_error("%s: libcoap refused the certificate setup", where);
                return r;
        }
        coap_context_set_max_handshake_sessions(s->ctx, DTLS_MAX_HANDSHAKES);
        coap_context_set_session_timeout(s->ctx, DTLS_SESSION_TIMEOUT);
        return 0;
}

/* SIGHUP: re-read the credential files of the (first) coaps listener. The
 * PSK table and client_ca store are ours and are swapped; the certificate
 * and key are set again on the live context (libcoap reads them at each new
 * handshake). Turning PSK or certificates on or off needs a restart. */
static int dtls_reload(struct coap_server *s, const struct cmpgw_config *c) {
        const struct cmpgw_listen *l = NULL;
        struct dtls_creds *d, *old = s->dtls;
        char where[64];
        size_t i;
        int r;

        for (i = 0; i < c->n_listen && !l; i++)
                if (c->listen[i].scheme == SCHEME_COAPS)
                        l = &c->listen[i];
        if (!old)
                return 0;       /* no DTLS running: listener changes are the manager's */
        if (!l) {
                log_warning("reload: coaps:// listeners stay until a restart");
                return 0;
        }
        snprintf(where, sizeof where, "listen[%zu]", i - 1);
        for (; i < c->n_listen; i++)
                if (c->listen[i].scheme == SCHEME_COAPS && !same_creds(l, &c->listen[i])) {
                        char other[32];

                        snprintf(other, sizeof other, "listen[%zu]", i);
                        log_not_same_creds(other, l->uri);
                        return -EINVAL;
                }
        if (!!l->psk_file != !!old->psk_file || !!l->certificate != !!old->certificate) {
                log_warning("reload: %s: switching PSK or certificates on or off for coaps:// takes effect only "
                            "after a restart; keeping the running DTLS credentials", where);
                return 0;
        }
        if ((r = dtls_creds_load(where, l, context_client_cert(c), &d)) < 0)
                return r;
        if (d->certificate && (r = dtls_set_pki(s, d)) < 0) {
                log_error("%s: libcoap refused the certificate setup", where);
                dtls_set_pki(s, old);
                dtls_creds_free(d);
                return r;
        }
        s->dtls = d;
        dtls_creds_free(old);
        log_info("reload: coaps credentials re-read (%zu PSK identities%s%s)", d->n_psk,
                 d->certificate ? ", certificate " : "", d->certificate ? d->certificate : "");
        return 0;
}

/* ---- peer identity ----------------------------------------------------- */

/* The DTLS identity of a session: its PSK identity, or the subject of its
 * client certificate (RFC 2253, as the registry names devices). */
static void peer_identity(coap_session_t *session, char *psk_identity, size_t psk_size,
                          char *subject, size_t subject_size) {
        const coap_bin_const_t *id;
        coap_tls_library_t lib;
        SSL *ssl;
        X509 *cert;

        psk_identity[0] = subject[0] = '\0';
        if (coap_session_get_proto(session) != COAP_PROTO_DTLS)
                return;
        id = coap_session_get_psk_identity(session);
        if (id && id->length > 0 && id->length < psk_size && !memchr(id->s, '\0', id->length)) {
                memcpy(psk_identity, id->s, id->length);
                psk_identity[id->length] = '\0';
        }
        ssl = coap_session_get_tls(session, &lib);
        if (!ssl || lib != COAP_TLS_LIBRARY_OPENSSL)
                return;
        cert = SSL_get1_peer_certificate(ssl);
        if (cert) {
                BIO *b = BIO_new(BIO_s_mem());
                if (b && X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
                        int n = BIO_read(b, subject, (int) subject_size - 1);
                        subject[n > 0 ? n : 0] = '\0';
                }
                BIO_free(b);
                X509_free(cert);
        }
}

/* The DTLS identity of a request. A listener with client_certificate
 * "none" takes none from a client certificate: such a session was opened
 * before a reload turned the listener's certificates off (its handshakes
 * ask for none, dtls_tls_setup). */
static void request_identity(struct coap_server *s, coap_session_t *session, struct request *r) {
        const struct cmpgw_listen *l = admission_listener(s->manager->config, session);

        peer_identity(session, r->psk_identity, sizeof r->psk_identity, r->client_subject, sizeof r->client_subject);
        if (l && l->client_certificate == CLIENT_CERT_NONE)
                r->client_subject[0] = '\0';
}

/* ---- answering ------------------------------------------------------- */

/* 0, or -ENOMEM when the option does not fit */
static int add_uint_option(coap_pdu_t *pdu, uint16_t opt, unsigned v) {
        uint8_t buf[4];

        return coap_add_option(pdu, opt, coap_encode_var_safe(buf, sizeof buf, v), buf) ? 0 : -ENOMEM;
}

/* A short diagnostic payload (RFC 7252 §5.5.2) with the error code. */
static void answer_diagnostic(coap_pdu_t *response, int code, int max_age,
                              const uint8_t *diag, size_t len) {
        coap_pdu_set_code(response, COAP_CODE(code));
        if (max_age >= 0)
                add_uint_option(response, COAP_OPTION_MAXAGE, (unsigned) max_age);
        if (len > 0)
                coap_add_data(response, len, diag);
}

static void answer_error(coap_pdu_t *response, int code, int max_age, const char *diag) {
        answer_diagnostic(response, code, max_age, (const uint8_t *) diag, strlen(diag));
}

static void answer_too_large(struct coap_server *s, coap_pdu_t *response, size_t claimed) {
        char diag[96];
        size_t max = s->manager->config->max_message_size;

        snprintf(diag, sizeof diag, "body of %zu bytes exceeds the limit of %zu bytes", claimed, max);
        coap_pdu_set_code(response, COAP_CODE(413));
        /* RFC 7959 §4: Size1 in a 4.13 tells the largest body the server takes */
        add_uint_option(response, COAP_OPTION_SIZE1, (unsigned) max);
        coap_add_data(response, strlen(diag), (const uint8_t *) diag);
}

/* A request in one datagram that libcoap cut: it reads COAP_RXBUFFER_SIZE
 * bytes of a datagram and drops the rest unseen (recvmsg() without
 * MSG_TRUNC). The PDU's token, options and payload lie in one buffer
 * behind its 4-byte header, so what was read is known; a body that filled
 * it and whose DER says more is coming was cut. */
static bool datagram_was_cut(const coap_pdu_t *request, const uint8_t *data, size_t len) {
        coap_bin_const_t token = coap_pdu_get_token(request);
        const unsigned char *p = data;
        long declared = 0;
        int tag, class, ret;

        if (!data || !token.s || 4 + (size_t) (data + len - token.s) < COAP_RXBUFFER_SIZE)
                return false;
        ERR_set_mark();
        ret = ASN1_get_object(&p, &declared, &tag, &class, (long) len);
        ERR_pop_to_mark();
        /* 0x80 with a length read: it lies beyond what arrived (ASN1_R_TOO_LONG) */
        return (ret & 0x80) && p != data && declared > (long) len - (long) (p - data);
}

/* RFC 9482 §2.4: a message too large for a datagram goes block-wise. The
 * 4.13 carries Size1 (RFC 7252 §5.9.2.9) and a Block1 with the block size
 * to use (RFC 7959 §2.9.3). */
static void answer_cut_datagram(struct coap_server *s, coap_session_t *session, coap_pdu_t *response) {
        char diag[128];
        unsigned szx = coap_block_szx(session, NULL, s->manager->config->block_size);

        snprintf(diag, sizeof diag, "a request in one datagram holds at most %d bytes here: send it block-wise "
                 "(RFC 9482, section 2.4)", COAP_RXBUFFER_SIZE);
        coap_pdu_set_code(response, COAP_CODE(413));
        add_uint_option(response, COAP_OPTION_BLOCK1, szx);
        add_uint_option(response, COAP_OPTION_SIZE1, (unsigned) s->manager->config->max_message_size);
        coap_add_data(response, strlen(diag), (const uint8_t *) diag);
}

/* ---- limits (RFC 9482 §4: resource exhaustion) -----------------------
 * Per peer (IP address): a token bucket of messages and observations
 * started (limits.rate, limits.burst), transactions in flight
 * (limits.in_flight_per_peer), ann observers; all refused with 4.29 Too
 * Many Requests and Max-Age saying when to come back (RFC 8516). Globally:
 * bytes held by incomplete Block1 transfers (limits.buffered_bytes), 5.03. */

static void peer_key_of_session(coap_session_t *session, struct peer_key *k) {
        const coap_address_t *a = coap_session_get_addr_remote(session);

        peer_key_of(a ? &a->addr.sa : NULL, k);
}

static void refuse_peer(struct coap_server *s, coap_session_t *session, coap_pdu_t *response,
                        uint64_t *counter, unsigned retry_sec, const char *what) {
        char peer[64], diag[160];

        (*counter)++;
        peer_name(session, peer, sizeof peer);
        if (log_ratelimit_ok(&s->limited_log, now_usec(s)))
                log_info("%s: refused, %s", peer, what);
        snprintf(diag, sizeof diag, "too many requests from this address (%s); retry after Max-Age", what);
        answer_error(response, 429, (int) retry_sec, diag);
}

/* A message or observation starts: within the peer's rate? Else 4.29. */
static bool admit_start(struct coap_server *s, coap_session_t *session, coap_pdu_t *response) {
        const struct cmpgw_config *c = s->manager->config;
        struct peer_key k;
        unsigned retry = 1;

        peer_key_of_session(session, &k);
        if (peer_limits_take(s->manager->peers, &k, now_usec(s), c->limit_rate, c->limit_burst, &retry))
                return true;
        refuse_peer(s, session, response, &s->manager->stats.limited_rate, retry, "limits.rate");
        return false;
}

/* A CMP transaction starts: fewer than limits.max_in_flight of all peers
 * together wait on upstreams? Else 5.03 with Max-Age (RFC 9482 §4: resource
 * exhaustion; RFC 7252 §5.9.3.4: Max-Age says when to retry). */
static bool admit_in_flight_global(struct coap_server *s, coap_session_t *session, coap_pdu_t *response) {
        const struct cmpgw_config *c = s->manager->config;
        char peer[64];

        if (c->limit_max_in_flight == 0 || s->manager->n_requests < c->limit_max_in_flight)
                return true;
        s->manager->stats.limited_max_in_flight++;
        peer_name(session, peer, sizeof peer);
        if (log_ratelimit_ok(&s->limited_log, now_usec(s)))
                log_warning("%s: refused, limits.max_in_flight (%u transactions in flight)", peer,
                            s->manager->n_requests);
        answer_error(response, 503, (int) c->unavailable_max_age,
                     "gateway busy (limits.max_in_flight); retry after Max-Age");
        return false;
}

/* A representation into RESPONSE (its code set): whole, or the block the
 * request asks for (RFC 7959 §2.4; RFC 9482 §2.4: large ones block-wise). */
static void answer_blocks(struct coap_server *s, coap_session_t *session, const coap_pdu_t *request,
                          coap_pdu_t *response, int cf, int max_age, uint64_t etag,
                          const uint8_t *body, size_t len) {
        int r = coap_block_answer(session, request, response, s->manager->config->block_size,
                                  cf, max_age, etag, body, len);

        if (r == -ERANGE)
                answer_error(response, 400, -1, "no such block: the Block2 number lies past the end");
        else if (r == -EINVAL)
                answer_error(response, 400, -1, "unusable Block2 option (SZX 7 is reserved over UDP and DTLS)");
        else if (r < 0)
                answer_error(response, 500, -1, "cannot send the answer");
}

static void answer_body(struct coap_server *s, coap_session_t *session, const coap_pdu_t *request,
                        coap_pdu_t *response, int code, bool is_cmp, int max_age, uint64_t etag,
                        const uint8_t *body, size_t len) {
        if (!is_cmp)
                return answer_diagnostic(response, code, max_age, body, len);
        coap_pdu_set_code(response, COAP_CODE(code));
        answer_blocks(s, session, request, response, CT_PKIXCMP, max_age, etag, body, len);
}

/* ---- Block1 reassembly ----------------------------------------------- */

struct request_tag {
        uint8_t v[8];
        size_t len;
};

static struct request_tag request_tag_of(const coap_pdu_t *pdu) {
        struct request_tag tag = { .len = 0 };
        coap_opt_iterator_t it;
        coap_opt_t *o = coap_check_option(pdu, COAP_OPTION_RTAG, &it);

        if (o && coap_opt_length(o) <= sizeof tag.v) {
                tag.len = coap_opt_length(o);
                memcpy(tag.v, coap_opt_value(o), tag.len);
        }
        return tag;
}

static struct transfer *transfer_find(struct coap_server *s, coap_session_t *session,
                                      const struct request_tag *tag) {
        struct transfer *t, *n;

        LIST_FOREACH_SAFE(transfers, t, n, s->transfers)
                if (t->session == session && t->tag_len == tag->len &&
                    memcmp(t->tag, tag->v, tag->len) == 0)
                        return t;
        return NULL;
}

static void transfer_free(struct coap_server *s, struct transfer *t) {
        peer_limits_drop(s->manager->peers, &t->key, PEER_TRANSFERS);
        LIST_REMOVE(transfers, s->transfers, t);
        s->n_transfers--;
        s->buffered -= t->len;
        free(t->buf);
        free(t);
}

static struct transfer *transfer_new(struct coap_server *s, coap_session_t *session,
                                     const struct request_tag *tag) {
        struct transfer *t;

        if (s->n_transfers >= MAX_TRANSFERS)
                return NULL;
        t = calloc(1, sizeof *t);
        if (!t)
                return NULL;
        peer_key_of_session(session, &t->key);
        if (peer_limits_add(s->manager->peers, &t->key, PEER_TRANSFERS, now_usec(s)) == 0) {
                free(t);        /* every tracked address is busy */
                return NULL;
        }
        t->session = session;
        t->tag_len = tag->len;
        memcpy(t->tag, tag->v, tag->len);
        LIST_PREPEND(transfers, s->transfers, t);
        s->n_transfers++;
        return t;
}

static int transfer_append(struct coap_server *s, struct transfer *t, const uint8_t *data, size_t len) {
        uint8_t *b;

        if (s->buffered + len > s->manager->config->limit_buffered)
                return -ENOBUFS;
        b = realloc(t->buf, t->len + len);
        if (!b && t->len + len > 0)
                return -ENOMEM;
        t->buf = b;
        memcpy(t->buf + t->len, data, len);
        t->len += len;
        s->buffered += len;
        t->last_usec = now_usec(s);
        return 0;
}

/* Takes the reassembled body and ends the transfer. */
static uint8_t *transfer_steal_body(struct coap_server *s, struct transfer *t, size_t *len) {
        uint8_t *body = t->buf;

        *len = t->len;
        t->buf = NULL;
        s->buffered -= t->len;
        t->len = 0;
        transfer_free(s, t);
        return body;
}

/* ---- the CMP resources ----------------------------------------------- */

static bool is_multicast(coap_session_t *session) {
        return coap_is_mcast(coap_session_get_addr_local(session));
}

/* Say nothing at all: no ACK, no response. */
static void drop(coap_pdu_t *response) {
        coap_pdu_set_type(response, COAP_MESSAGE_NON);
        coap_pdu_set_code(response, 0);
}

static int content_format(const coap_pdu_t *pdu) {
        coap_opt_iterator_t it;
        coap_opt_t *o = coap_check_option(pdu, COAP_OPTION_CONTENT_FORMAT, &it);

        if (!o)
                return -1;
        return (int) coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o));
}

static bool accepts_pkixcmp(const coap_pdu_t *pdu) {
        coap_opt_iterator_t it;
        coap_opt_t *o = coap_check_option(pdu, COAP_OPTION_ACCEPT, &it);

        return !o || coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o)) == CT_PKIXCMP;
}

/* The host a request is for (RFC 9482 §3, routing): its Uri-Host option
 * (RFC 7252 §5.10.1), else the server name the DTLS client asked for (SNI,
 * RFC 6066 §3), else "". */
static void route_host(coap_session_t *session, const coap_pdu_t *request, char *buf, size_t size) {
        coap_opt_iterator_t it;
        coap_opt_t *o = coap_check_option(request, COAP_OPTION_URI_HOST, &it);
        coap_tls_library_t lib;
        const char *sni;
        void *tls;

        buf[0] = '\0';
        if (o) {
                if (coap_opt_length(o) < size && memchr(coap_opt_value(o), '\0', coap_opt_length(o)) == NULL)
                        snprintf(buf, size, "%.*s", (int) coap_opt_length(o), (const char *) coap_opt_value(o));
                return;
        }
        tls = coap_session_get_proto(session) == COAP_PROTO_DTLS ? coap_session_get_tls(session, &lib) : NULL;
        if (!tls || lib != COAP_TLS_LIBRARY_OPENSSL)
                return;
        sni = SSL_get_servername(tls, TLSEXT_NAMETYPE_host_name);
        if (sni && strlen(sni) < size)
                snprintf(buf, size, "%s", sni);
}

/* RFC 7252 §6.5: every Uri-Path option is a segment, empty ones too
 * (/.well-known//cmp is not /.well-known/cmp). libcoap keeps them in the
 * path it joins, but cmp_path_parse() splits on '/' and would skip them. */
static bool has_empty_path_segment(const coap_pdu_t *request) {
        coap_opt_iterator_t it;
        coap_opt_filter_t f;
        coap_opt_t *o;

        coap_option_filter_clear(&f);
        coap_option_filter_set(&f, COAP_OPTION_URI_PATH);
        coap_option_iterator_init(request, &it, &f);
        while ((o = coap_option_next(&it)))
                if (coap_opt_length(o) == 0)
                        return true;
        return false;
}

static int parse_request_path(const coap_pdu_t *request, struct cmp_path *path) {
        coap_string_t *p;
        char buf[512];
        int r;

        if (has_empty_path_segment(request))
                return CMP_PATH_NOT_CMP;
        p = coap_get_uri_path(request);
        if (!p || p->length >= sizeof buf) {
                coap_delete_string(p);
                return CMP_PATH_NOT_CMP;
        }
        memcpy(buf, p->s, p->length);
        buf[p->length] = '\0';
        coap_delete_string(p);
        /* libcoap joins the Uri-Path options with '/'; a segment that held a
         * '/' itself comes percent-encoded and fails the label check */
        r = cmp_path_parse(buf, path);
        return r;
}

/* ---- answers kept for retransmissions -------------------------------
 *
 * A Confirmable request that goes upstream is acknowledged by cmpgwd, not
 * by libcoap's async machinery, and its answer is piggybacked whenever it
 * can be (RFC 7252 §5.2.2: "a strong expectation that servers will ...
 * piggyback whenever possible"): while the request is not acknowledged
 * the answer goes out as the ACK to its message ID, whole or Block2 block
 * 0 (RFC 7959 §2.4), as soon as it is in.
 *
 * Separate Confirmable responses cost more than a datagram with the
 * libcoap 4.3.1 client: it drops a duplicate Confirmable response without
 * acknowledging it (net.c handle_response(), against RFC 7252 §4.5), so
 * once its ACK of a separate response is lost, cmpgwd retransmits that
 * response unanswered for MAX_TRANSMIT_SPAN, and libcoap holds every
 * further Confirmable message to that client behind it (NSTART 1, RFC 7252
 * §4.7): the next separate response came after the client had given up
 * (issue 5, doc/performance.md). Hence:
 *  - a single-PDU request is never acknowledged empty: the 4.3.1 client
 *    also hangs on a separate response that needs Block2 (PEERS.md); its
 *    retransmissions are ignored until the answer is in;
 *  - the last block of a block-wise request gets an empty ACK only after
 *    ACK_WAIT_USEC, well before the client's ACK_TIMEOUT (2 s), and then
 *    the answer as a separate Confirmable response.
 * A retransmission of an acknowledged request gets the empty ACK again
 * (RFC 7252 §4.5). Answers are kept for EXCHANGE_LIFETIME so that a
 * retransmitted request is answered again and never sent upstream twice. */

#define ACK_WAIT_USEC 1000000

#define MAX_KEPT_ANSWERS 4096

static struct kept_answer *kept_find(struct coap_server *s, coap_session_t *session,
                                     const coap_pdu_t *request) {
        coap_bin_const_t token = coap_pdu_get_token(request);

        return kept_answers_get0(s->kept, session, coap_pdu_get_mid(request), token.s, token.length);
}

static struct request *deferred_find(struct coap_server *s, coap_session_t *session,
                                     const coap_pdu_t *request) {
        coap_bin_const_t token = coap_pdu_get_token(request);
        coap_mid_t mid = coap_pdu_get_mid(request);
        struct request *r, *n;

        LIST_FOREACH_SAFE(requests, r, n, s->manager->requests)
                if (r->defer_ack && r->session == session && r->mid == mid &&
                    r->token_len == token.length && memcmp(r->token, token.s, token.length) == 0)
                        return r;
        return NULL;
}

/* What names a CMP resource, for Block2 requests that continue an answer */
static uint32_t path_key_of(const struct cmp_path *path) {
        uint32_t h = 2166136261u;

        for (const char *c = path->label; *c; c++)
                h = (h ^ (uint8_t) *c) * 16777619u;
        h = (h ^ (uint8_t) path->op) * 16777619u;
        return (h ^ (uint8_t) path->ann) * 16777619u;
}

/* the request's answer moves into the kept answers */
static struct kept_answer *kept_new(struct coap_server *s, struct request *r) {
        uint8_t *body = r->answer;
        size_t len = r->answer_len;

        r->answer = NULL;
        r->answer_len = 0;
        return kept_answers_add(s->kept, now_usec(s), r->session, r->mid, r->token, r->token_len,
                                path_key_of(&r->path), r->code, r->answer_is_cmp, r->max_age, body, len);
}

static void answer_from_kept(struct coap_server *s, coap_session_t *session, const coap_pdu_t *request,
                             coap_pdu_t *response, const struct kept_answer *k) {
        answer_body(s, session, request, response, k->code, k->is_cmp, k->max_age, k->etag, k->body, k->len);
}

/* The answer, kept when it is a PKIMessage: a retransmission gets it again
 * and a Block2 request its further blocks. */
static void answer_request(struct coap_server *s, coap_session_t *session, const coap_pdu_t *request,
                           coap_pdu_t *response, struct request *r) {
        struct kept_answer *k = r->answer_is_cmp && r->session ? kept_new(s, r) : NULL;

        if (k)
                return answer_from_kept(s, session, request, response, k);
        answer_body(s, session, request, response, r->code, r->answer_is_cmp, r->max_age,
                    coap_block_etag(r->answer, r->answer_len), r->answer, r->answer_len);
}

/* RFC 7959 §2.4: a request for a further block of an answer; the client
 * sends it with a new token and message ID, and no body. */
static void answer_next_block(struct coap_server *s, coap_session_t *session, const coap_pdu_t *request,
                              coap_pdu_t *response, const struct cmp_path *path) {
        struct kept_answer *k = kept_answers_latest_get0(s->kept, session, path_key_of(path));

        if (!k)
                return answer_error(response, 408, -1, "no answer here to continue: send the request again");
        answer_from_kept(s, session, request, response, k);
}

/* The answer of a deferred request, built by hand outside the handler:
 * piggybacked in the ACK to its message ID while it is not acknowledged,
 * else a separate Confirmable response (RFC 7252 §5.2.1, §5.2.2). Large
 * ones go block-wise from block 0, in blocks no larger than the request
 * asked for (RFC 7959 §2.4: early negotiation). */
static int send_deferred_answer(struct coap_server *s, const struct request *r, const struct kept_answer *k) {
        size_t max_block = s->manager->config->block_size;
        coap_pdu_t *pdu;
        int e;

        pdu = coap_pdu_init(r->acked ? COAP_MESSAGE_CON : COAP_MESSAGE_ACK, 0,
                            r->acked ? coap_new_message_id(k->session) : r->mid,
                            coap_session_max_pdu_size(k->session));
        if (!pdu)
                return -ENOMEM;
        if (r->block2_max > 0 && r->block2_max < max_block)
                max_block = r->block2_max;
        coap_add_token(pdu, k->token_len, k->token);
        coap_pdu_set_code(pdu, COAP_CODE(k->code));
        if (!k->is_cmp)
                answer_diagnostic(pdu, k->code, k->max_age, k->body, k->len);
        else if ((e = coap_block_answer(k->session, NULL, pdu, max_block, CT_PKIXCMP, k->max_age, k->etag,
                                        k->body, k->len)) < 0) {
                coap_delete_pdu(pdu);
                return e;
        }
        return coap_send(k->session, pdu) == COAP_INVALID_MID ? -EIO : 0;
}

/* ACK_WAIT_USEC passed without the answer: the empty ACK stops the
 * client's retransmissions (RFC 7252 §5.2.2); the answer follows as a
 * separate response. */
static int on_ack_wait(sd_event_source *src, uint64_t usec, void *userdata) {
        struct request *r = userdata;
        coap_pdu_t *ack;

        r->ack_wait = sd_event_source_disable_unref(r->ack_wait);
        if (!r->session)
                return 0;
        ack = coap_pdu_init(COAP_MESSAGE_ACK, 0, r->mid, 0);
        if (!ack || coap_send(r->session, ack) == COAP_INVALID_MID) {
                log_debug("request %llu: cannot send the empty ACK; the client retransmits",
                          (unsigned long long) r->id);
                return 0;
        }
        r->acked = true;
        return 0;
}

/* A request arrived again: answer it from what is kept, or keep quiet
 * while its upstream works. Returns true when handled. */
static bool handle_retransmission(struct coap_server *s, coap_resource_t *resource,
                                  coap_session_t *session, const coap_pdu_t *request,
                                  coap_pdu_t *response) {
        struct kept_answer *k = kept_find(s, session, request);
        struct request *r;

        if (k) {
                answer_from_kept(s, session, request, response, k);
                return true;
        }
        r = deferred_find(s, session, request);
        if (!r)
                return false;
        if (!r->acked)
                drop(response);         /* the answer or the empty ACK is coming */
        /* else response stays an empty ACK: libcoap sends it again */
        return true;
}

static void handle_async(struct coap_server *s, coap_resource_t *resource,
                         coap_session_t *session, const coap_pdu_t *request,
                         coap_pdu_t *response, coap_async_t *async) {
        struct request *r = coap_async_get_app_data(async);
        struct kept_answer *k;

        if (!r || !r->answered)
                return;         /* no code: libcoap repeats the empty ACK */
        /* the triggered separate response; libcoap frees the async on return.
         * Kept too: a retransmitted last block is answered again, never
         * forwarded twice (RFC 7252 §4.5). */
        k = r->session ? kept_new(s, r) : NULL;
        if (k)
                answer_from_kept(s, session, request, response, k);
        else
                answer_request(s, session, request, response, r);
        r->async = NULL;
        coap_server_release_request(s, r);
        request_free(r);
}

/* A Confirmable request goes upstream: no ACK yet (see "answers kept for
 * retransmissions"). */
static void defer_ack(struct coap_server *s, coap_session_t *session, const coap_pdu_t *request,
                      coap_pdu_t *response, struct request *r, bool single_pdu) {
        struct coap_block_opt b2;
        int e;

        coap_block_opt_get(session, request, COAP_OPTION_BLOCK2, &b2);
        r->block2_max = b2.valid ? b2.size : 0;
        drop(response);
        if (single_pdu)
                return;
        e = sd_event_add_time_relative(s->manager->event, &r->ack_wait, CLOCK_MONOTONIC, ACK_WAIT_USEC,
                                       1000, on_ack_wait, r);
        if (e < 0) {    /* acknowledge at once rather than never */
                log_debug("request %llu: no ACK timer (%s); empty ACK now", (unsigned long long) r->id,
                          strerror(-e));
                on_ack_wait(NULL, 0, r);
        }
}

static void start_request(struct coap_server *s, coap_resource_t *resource, coap_session_t *session,
                          const coap_pdu_t *request, coap_pdu_t *response,
                          const struct cmp_path *path, uint8_t *body, size_t len, bool single_pdu) {
        coap_bin_const_t token = coap_pdu_get_token(request);
        struct request *r;
        unsigned n;

        if (s->manager->stopping) {
                free(body);
                return answer_error(response, 503, (int) s->manager->config->unavailable_max_age,
                                    "gateway shutting down; retry later");
        }
        if (!admit_in_flight_global(s, session, response)) {
                free(body);
                return;
        }
        r = request_new(s->manager);
        if (!r) {
                free(body);
                return answer_error(response, 500, -1, "out of memory");
        }
        peer_key_of_session(session, &r->peer_key);
        n = peer_limits_add(s->manager->peers, &r->peer_key, PEER_IN_FLIGHT, now_usec(s));
        r->in_flight_counted = n > 0;
        if (n == 0 || n > s->manager->config->limit_in_flight) {
                request_free(r);
                free(body);
                return refuse_peer(s, session, response, &s->manager->stats.limited_in_flight, 1,
                                   "limits.in_flight_per_peer");
        }
        r->path = *path;
        route_host(session, request, r->route_host, sizeof r->route_host);
        r->body = body;
        r->body_len = len;
        r->token_len = token.length;
        memcpy(r->token, token.s, token.length);
        r->mid = coap_pdu_get_mid(request);
        r->session = coap_session_reference(session);
        peer_name(session, r->peer, sizeof r->peer);
        request_identity(s, session, r);
        request_start(r);
        if (r->answered) {      /* answer at hand: piggybacked (RFC 9482 §2.3) */
                answer_request(s, session, request, response, r);
                coap_server_release_request(s, r);
                request_free(r);
                return;
        }
        r->defer_ack = coap_pdu_get_type(request) == COAP_MESSAGE_CON;
        if (r->defer_ack)
                return defer_ack(s, session, request, response, r, single_pdu);
        r->async = coap_register_async(session, request, 0);
        if (!r->async) {
                coap_server_release_request(s, r);
                request_free(r);
                return answer_error(response, 503, 1, "cannot hold the request; retry");
        }
        coap_async_set_app_data(r->async, r);
        /* no code: libcoap sends the empty ACK of a separate response */
}

/* Size1 (RFC 7959 §4): the size the client says the whole body has; 0 if
 * it does not say. */
static size_t size1_of(const coap_pdu_t *pdu) {
        coap_opt_iterator_t it;
        coap_opt_t *o = coap_check_option(pdu, COAP_OPTION_SIZE1, &it);

        return o ? coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o)) : 0;
}

static void handle_cmp_post(coap_resource_t *resource, coap_session_t *session,
                            const coap_pdu_t *request, const coap_string_t *query,
                            coap_pdu_t *response) {
        struct coap_server *s = server_of(session);
        const struct cmpgw_config *c = s->manager->config;
        coap_bin_const_t token = coap_pdu_get_token(request);
        coap_async_t *async = coap_find_async(session, token);
        struct cmp_path path;
        char host[256];
        struct request_tag tag;
        struct transfer *t;
        struct coap_block_opt b1, b2;
        const uint8_t *data;
        size_t len, offset, size1;
        struct peer_key key;
        int cf, r;

        /* RFC 9482 §2.5: CMP messages never use multicast; never answer one */
        if (is_multicast(session))
                return drop(response);
        if (async)
                return handle_async(s, resource, session, request, response, async);
        if (handle_retransmission(s, resource, session, request, response))
                return;
        if (parse_request_path(request, &path) != CMP_PATH_OK)
                return answer_error(response, 404, -1, "no such CMP resource");
        if (path.ann)
                return answer_error(response, 405, -1, "announcements take GET (RFC 9482, section 2.6)");
        coap_block_opt_get(session, request, COAP_OPTION_BLOCK2, &b2);
        if (b2.valid && b2.offset > 0)
                return answer_next_block(s, session, request, response, &path);
        route_host(session, request, host, sizeof host);
        if (!config_route_host(c, path.label, host))
                return answer_error(response, 404, -1, "no upstream takes this label or host");
        cf = content_format(request);
        /* RFC 9482 §2.3: application/pkixcmp */
        if (cf >= 0 && cf != CT_PKIXCMP)
                return answer_error(response, 415, -1, "content-format must be 259 (application/pkixcmp)");
        /* RFC 7252 §5.10.4: an Accept the server cannot serve is 4.06; a CMP
         * answer is only ever application/pkixcmp (RFC 9482 §2.3) */
        if (!accepts_pkixcmp(request))
                return answer_error(response, 406, -1, "CMP answers are 259 (application/pkixcmp): drop Accept or ask for 259");
        coap_block_opt_get(session, request, COAP_OPTION_BLOCK1, &b1);
        if ((b1.present && !b1.valid) || (b2.present && !b2.valid))
                return answer_error(response, 400, -1, "unusable block option (SZX 7 is reserved over UDP and DTLS)");
        if (!coap_get_data(request, &len, &data)) {
                len = 0;
                data = NULL;
        }
        /* RFC 7959 §2.3: every block but the last fills the block size */
        if (b1.more && len != b1.size)
                return answer_error(response, 400, -1, "a Block1 block with more to come must fill its block size");
        if (!b1.present && datagram_was_cut(request, data, len))
                return answer_cut_datagram(s, session, response);
        offset = b1.offset;
        size1 = size1_of(request);
        /* RFC 9482 §4: refuse a body over the limit before buffering it */
        if (size1 > c->max_message_size || offset + len > c->max_message_size)
                return answer_too_large(s, response, size1 > offset + len ? size1 : offset + len);

        tag = request_tag_of(request);
        t = transfer_find(s, session, &tag);
        if (offset == 0 && t) {         /* a restarted transfer */
                transfer_free(s, t);
                t = NULL;
        }
        if (offset == 0 && !admit_start(s, session, response))
                return;
        if (!b1.more && offset == 0) {  /* the whole body in one PDU */
                uint8_t *body = len ? malloc(len) : NULL;
                if (len && !body)
                        return answer_error(response, 500, -1, "out of memory");
                if (len)
                        memcpy(body, data, len);
                return start_request(s, resource, session, request, response, &path, body, len, true);
        }
        if (offset == 0) {
                peer_key_of_session(session, &key);
                if (peer_limits_held(s->manager->peers, &key, PEER_TRANSFERS) >= c->limit_in_flight)
                        return refuse_peer(s, session, response, &s->manager->stats.limited_in_flight, 5,
                                           "limits.in_flight_per_peer: block-wise transfers open");
                t = transfer_new(s, session, &tag);
                if (!t)
                        return answer_error(response, 503, 5, "too many block-wise transfers in progress");
        }
        if (!t || t->len != offset) {
                /* RFC 7959 §2.9.2: a block out of sequence */
                if (t)
                        transfer_free(s, t);
                return answer_error(response, 408, -1, "block out of sequence: start again with block 0");
        }
        r = transfer_append(s, t, data, len);
        if (r < 0) {
                transfer_free(s, t);
                if (r != -ENOBUFS)
                        return answer_error(response, 500, -1, "out of memory");
                s->manager->stats.limited_buffered++;
                if (log_ratelimit_ok(&s->limited_log, now_usec(s)))
                        log_warning("block-wise buffer full (limits.buffered_bytes = %llu): transfer refused",
                                    (unsigned long long) c->limit_buffered);
                return answer_error(response, 503, 5, "gateway busy: too many block-wise transfers buffered; retry later");
        }
        /* RFC 7959 §2.3: more blocks to come; 2.31 names the block received */
        if (b1.more) {
                coap_pdu_set_code(response, COAP_RESPONSE_CODE_CONTINUE);
                add_uint_option(response, COAP_OPTION_BLOCK1, (b1.num << 4) | 8u | b1.szx);
                return;
        }
        {
                size_t body_len;
                uint8_t *body = transfer_steal_body(s, t, &body_len);
                start_request(s, resource, session, request, response, &path, body, body_len, false);
        }
}

static void handle_method_not_allowed(coap_resource_t *resource, coap_session_t *session,
                                      const coap_pdu_t *request, const coap_string_t *query,
                                      coap_pdu_t *response) {
        if (is_multicast(session))
                return drop(response);
        answer_error(response, 405, -1, "CMP resources take POST (RFC 9482, section 2.3)");
}

/* ---- announcements (RFC 9482 §2.6, RFC 7641) --------------------------
 *
 * GET .../ann answers 2.05 with the latest announcement of any kind (DER,
 * Content-Format 259, block-wise when large, an ETag from its SHA-256, and
 * Max-Age ANN_MAX_AGE), or, before any announcement was published, 2.05 with
 * no payload and no Content-Format: the server supports announcements
 * (§2.6: then it MUST answer 2.xx), there is just nothing yet, and the
 * observer stays registered for the first one. Every label's ann serves the
 * same store (labels route requests to upstreams; announcements are
 * gateway-wide for now).
 *
 * The ann resources are observable; notifications are Confirmable, and
 * every announcements.refresh seconds (12 h) all observers get the current
 * representation again as a Confirmable notification, so that observers
 * that are gone are dropped (RFC 7641 §4.5: at least every 24 h).
 *
 * The fan-out: cmpgwd sends the notifications itself, not through
 * coap_resource_notify_observers(). libcoap 4.3.1 sends to every observer
 * at once: the answers of n observers (an ACK, and a Block2 GET per further
 * block) overflow the socket's receive buffer (about 250 datagrams by
 * default) before the gateway reads any, and every one lost costs a
 * retransmission 2-3 s later; its retransmission queue is a sorted list,
 * n² for n in flight; 10,000 observers took minutes (doc/performance.md).
 * And it sends nothing while the resources are not observable (at
 * announcements.max_observers). So notifications go out only when nothing
 * waits to be read, and while fewer than FANOUT_WINDOW answers are due:
 * every datagram read counts as one, and after FANOUT_STALL_USEC without
 * any, what is due is written off (lost, or observers that are gone). Each
 * is what libcoap would send (the observer's token, an Observe value, the
 * representation or its block 0 in the block size the observer asked for);
 * the Observe values come from our own counter (RFC 7641 §4.4: strictly
 * increasing per observer; registration answers and notifications alike).
 *
 * The observers are ours alone, not libcoap's: libcoap 4.3.1 keeps ~560 B
 * per registration (a copy of the request, a cache key) and walks all its
 * observers on every ACK of a notification (coap_touch_observer), n² in a
 * fan-out (doc/performance.md). The resources are not observable for
 * libcoap, so a GET with Observe reaches handle_ann_get() as it is, and
 * the answer carries the Observe option we add. RFC 7641 as implemented:
 *   - §3.1/§4.1: GET with Observe 0 registers (block 0 only, RFC 7959
 *     §2.6); a 2.05 answer carries Observe, an error answer does not and
 *     registers nothing; the same token again (same session) re-registers:
 *     it replaces the old registration (block size, resource);
 *   - §3.6: GET with Observe 1 deregisters; an RST to a notification too
 *     (the NACK handler), and a Confirmable notification never ACKed
 *     (§4.5), and a DTLS session that closes;
 *   - the observer holds a reference on its libcoap session (libcoap frees
 *     idle sessions with none), released when it goes.
 *
 * Limits:
 *   - announcements.max_observers, and max_observers_per_peer (per IP
 *     address): past either a GET with Observe gets 2.05 without the
 *     Observe option (RFC 9482 §2.6: 2.xx, MUST); the observers registered
 *     are notified all the same. */

#define ANN_MAX_AGE 86400

/* Observers are found by session in a hash: every lookup walking all of
 * them made a fan-out to n observers cost n². */
#define OBSERVER_BUCKETS 8192           /* power of two */
#define FANOUT_WINDOW 128               /* answers due: half of a default receive buffer */
#define FANOUT_STALL_USEC 50000
#define ANN_OBSERVE_FIRST 16            /* where our Observe values start */
#define NO_SZX 0xff

struct ann_observer {
        LIST_FIELDS(struct ann_observer, observers);
        coap_session_t *session;        /* a reference of ours */
        coap_resource_t *resource;
        uint32_t generation;            /* of the last representation it was sent */
        uint8_t token[8];
        uint8_t token_len;
        uint8_t szx;                    /* the block size it asked for (RFC 7959 §2.4), or NO_SZX */
        struct peer_key key;            /* counted in its peer_limits */
};

static const char ann_marker[] = "ann";

static bool is_ann_resource(coap_resource_t *r) {
        return r && coap_resource_get_userdata(r) == (void *) ann_marker;
}

static void peer_address(coap_session_t *session, char *buf, size_t size) {
        const coap_address_t *a = coap_session_get_addr_remote(session);

        if (!a || getnameinfo(&a->addr.sa, a->size, buf, (socklen_t) size, NULL, 0, NI_NUMERICHOST) != 0)
                snprintf(buf, size, "?");
}

static struct ann_observer **observer_bucket(struct coap_server *s, const coap_session_t *session) {
        uint64_t h = (uintptr_t) session;

        h ^= h >> 17;                   /* sessions are allocations: mix the high bits in */
        h *= 0x9e3779b97f4a7c15ULL;
        return &s->observers[(h >> 32) & (OBSERVER_BUCKETS - 1)];
}

static struct ann_observer *observer_find(struct coap_server *s, coap_session_t *session,
                                          const uint8_t *token, size_t token_len) {
        struct ann_observer *o;

        for (o = *observer_bucket(s, session); o; o = o->observers_next)
                if (o->session == session && o->token_len == token_len &&
                    memcmp(o->token, token, token_len) == 0)
                        return o;
        return NULL;
}

static void observer_free(struct coap_server *s, struct ann_observer *o) {
        if (s->fanout_next == o)
                s->fanout_next = o->observers_next;
        peer_limits_drop(s->manager->peers, &o->key, PEER_OBSERVERS);
        LIST_REMOVE(observers, *observer_bucket(s, o->session), o);
        coap_session_release(o->session);
        s->n_observers--;
        free(o);
}

/* observable while under announcements.max_observers */
static void ann_update_observable(struct coap_server *s) {
        bool on = s->n_observers < s->manager->config->ann_max_observers;

        if (on != s->ann_observable) {
                if (!on)
                        log_info("announcements: %u observers, the limit (announcements.max_observers): "
                                 "new ones are answered without Observe", s->n_observers);
                s->ann_observable = on;
        }
}

/* An observation ends (deregistered, refused or failed): gone, and maybe
 * room for a new one */
static void observer_end(struct coap_server *s, struct ann_observer *o) {
        observer_free(s, o);
        ann_update_observable(s);
}

/* (re-)registered now: the answer carries the current representation;
 * RFC 7641 §4.1: a registration with the token of one replaces it */
static void observer_register(struct coap_server *s, struct ann_observer *o, coap_resource_t *resource,
                              const coap_pdu_t *request) {
        struct coap_block_opt b2;

        o->resource = resource;
        o->generation = s->ann_generation;
        coap_block_opt_get(o->session, request, COAP_OPTION_BLOCK2, &b2);
        o->szx = b2.valid ? (uint8_t) b2.szx : NO_SZX;
}

static struct ann_observer *observer_add(struct coap_server *s, coap_resource_t *resource,
                                         coap_session_t *session, const coap_pdu_t *request) {
        coap_bin_const_t token = coap_pdu_get_token(request);
        struct ann_observer *o;
        struct peer_key k;

        peer_key_of_session(session, &k);
        if (peer_limits_add(s->manager->peers, &k, PEER_OBSERVERS, now_usec(s)) == 0)
                return NULL;    /* every tracked address is busy: not counted, not registered */
        o = calloc(1, sizeof *o);
        if (!o) {
                peer_limits_drop(s->manager->peers, &k, PEER_OBSERVERS);
                return NULL;
        }
        o->key = k;
        o->session = coap_session_reference(session);
        o->token_len = (uint8_t) (token.length < sizeof o->token ? token.length : sizeof o->token);
        memcpy(o->token, token.s, o->token_len);
        observer_register(s, o, resource, request);
        LIST_PREPEND(observers, *observer_bucket(s, session), o);
        s->n_observers++;
        return o;
}

static void observers_drop_session(struct coap_server *s, coap_session_t *session) {
        struct ann_observer *o, *n;

        LIST_FOREACH_SAFE(observers, o, n, *observer_bucket(s, session))
                if (o->session == session)
                        observer_free(s, o);
        ann_update_observable(s);
}

static void observers_drop_resources(struct coap_server *s, coap_resource_t *const *res, size_t n_res) {
        struct ann_observer *o, *n;

        for (size_t b = 0; b < OBSERVER_BUCKETS; b++)
                LIST_FOREACH_SAFE(observers, o, n, s->observers[b])
                        for (size_t i = 0; i < n_res; i++)
                                if (o->resource == res[i]) {
                                        observer_free(s, o);
                                        break;
                                }
}

/* RFC 7641 §3.6, §4.5: a Confirmable notification reset, or never
 * acknowledged: the observer is gone */
static void nack_handler(coap_session_t *session, const coap_pdu_t *sent,
                         const coap_nack_reason_t reason, const coap_mid_t mid) {
        struct coap_server *s = server_of(session);
        coap_opt_iterator_t it;
        coap_bin_const_t token;
        struct ann_observer *o;

        if (!s || !sent || (reason != COAP_NACK_TOO_MANY_RETRIES && reason != COAP_NACK_RST))
                return;
        /* only a notification's loss ends an observation (RFC 7641 §3.6, §4.5):
         * not that of another answer that happens to carry the same token */
        if (!coap_check_option(sent, COAP_OPTION_OBSERVE, &it))
                return;
        token = coap_pdu_get_token(sent);
        o = observer_find(s, session, token.s, token.length);
        if (!o)
                return;
        if (log_get_max_level() >= LOG_LVL_DEBUG) {
                char addr[64];
                peer_address(session, addr, sizeof addr);
                log_debug("announcements: observer %s gone (%s)", addr,
                          reason == COAP_NACK_RST ? "reset" : "no acknowledgement");
        }
        observer_end(s, o);
}

static uint64_t etag_of(const struct announce_blob *b) {
        uint64_t e = 0;

        for (int i = 0; i < 16 && b->sha256[i]; i++) {
                char c = b->sha256[i];
                e = (e << 4) | (uint64_t) (c <= '9' ? c - '0' : c - 'a' + 10);
        }
        return e ? e : 1;
}

static void ann_answer_content(struct coap_server *s, coap_resource_t *resource, coap_session_t *session,
                               const coap_pdu_t *request, const coap_string_t *query, coap_pdu_t *response) {
        struct announce_blob *b = announce_latest(s->manager->announce);

        coap_pdu_set_code(response, COAP_RESPONSE_CODE_CONTENT);
        if (!b) {
                add_uint_option(response, COAP_OPTION_MAXAGE, ANN_MAX_AGE);
                return;
        }
        answer_blocks(s, session, request, response, CT_PKIXCMP, ANN_MAX_AGE, etag_of(b), b->data, b->len);
}

/* A registration not taken: counted and logged (rate-limited) */
static void observer_refused(struct coap_server *s, coap_session_t *session, const char *what) {
        char peer[64];

        s->manager->stats.limited_observers++;
        peer_name(session, peer, sizeof peer);
        if (log_ratelimit_ok(&s->limited_log, now_usec(s)))
                log_info("%s: not registered as an observer (%s): answered without Observe", peer, what);
}

/* A GET with Observe 0 on an ann resource: the observer it registers (or
 * re-registers), NULL when it is answered without Observe (at
 * announcements.max_observers or max_observers_per_peer). */
static struct ann_observer *ann_register(struct coap_server *s, coap_resource_t *resource, coap_session_t *session,
                                         const coap_pdu_t *request, struct ann_observer *o) {
        struct peer_key k;

        if (o) {
                observer_register(s, o, resource, request);
                return o;
        }
        /* RFC 9482 §2.6: a server that cannot add the client to its
         * observers still answers 2.xx (MUST), without the Observe option */
        if (!s->ann_observable) {
                observer_refused(s, session, "announcements.max_observers");
                return NULL;
        }
        peer_key_of_session(session, &k);
        if (peer_limits_held(s->manager->peers, &k, PEER_OBSERVERS) >= s->manager->config->ann_max_observers_per_peer) {
                observer_refused(s, session, "announcements.max_observers_per_peer");
                return NULL;
        }
        o = observer_add(s, resource, session, request);
        if (!o) {
                observer_refused(s, session, "no room to track this address");
                return NULL;
        }
        ann_update_observable(s);
        return o;
}

/* The answer to a registration of O: the current representation with
 * Observe */
static void ann_answer_registration(struct coap_server *s, struct ann_observer *o, coap_resource_t *resource,
                                    coap_session_t *session, const coap_pdu_t *request,
                                    const coap_string_t *query, coap_pdu_t *response) {
        unsigned next = (s->ann_observe + 1) & 0xffffff;

        if (add_uint_option(response, COAP_OPTION_OBSERVE, next) < 0) {
                observer_end(s, o);     /* out of memory: answered without Observe */
                return ann_answer_content(s, resource, session, request, query, response);
        }
        s->ann_observe = next;          /* RFC 7641 §4.4: strictly increasing, notifications too */
        ann_answer_content(s, resource, session, request, query, response);
        if (COAP_RESPONSE_CLASS(coap_pdu_get_code(response)) == 2)
                return;
        /* Out of memory while the body went in (nothing else fails here):
         * the registration ends (RFC 7641 §4.1), but the error answer would
         * carry Observe, which libcoap 4.3.1 can neither take out nor add
         * after a body. Not able to give a suitable error response, reject
         * the request (RFC 7252 §4.2); the client registers again. */
        log_warning("announcements: cannot answer a registration (out of memory); rejected with RST");
        observer_end(s, o);
        drop(response);
        coap_send_rst(session, request);
}

static void handle_ann_get(coap_resource_t *resource, coap_session_t *session,
                           const coap_pdu_t *request, const coap_string_t *query,
                           coap_pdu_t *response) {
        struct coap_server *s = server_of(session);
        coap_bin_const_t token = coap_pdu_get_token(request);
        coap_opt_iterator_t it;
        coap_opt_t *obs;
        struct coap_block_opt b2;
        struct ann_observer *o;
        int observe = -1;

        if (is_multicast(session))
                return drop(response);
        obs = coap_check_option(request, COAP_OPTION_OBSERVE, &it);
        coap_block_opt_get(session, request, COAP_OPTION_BLOCK2, &b2);
        /* RFC 7959 §2.4: the next block; RFC 7959 §2.6: Observe goes with block 0 only */
        if (b2.valid && b2.offset > 0)
                return ann_answer_content(s, resource, session, request, query, response);
        if (obs)
                observe = (int) coap_decode_var_bytes(coap_opt_value(obs), coap_opt_length(obs));
        o = observer_find(s, session, token.s, token.length);
        if (!o && !admit_start(s, session, response))
                return;         /* 4.29 */
        if (observe == COAP_OBSERVE_CANCEL && o) {
                /* RFC 7641 §3.6: deregistered; the answer has no Observe */
                observer_end(s, o);
                o = NULL;
        } else if (observe == COAP_OBSERVE_ESTABLISH && is_ann_resource(resource) &&
                   (b2.valid || !b2.present)) {
                /* an unusable Block2 is answered 4.00 below: no registration */
                o = ann_register(s, resource, session, request, o);
        } else
                o = NULL;               /* a plain GET with an observer's token */
        if (o)
                ann_answer_registration(s, o, resource, session, request, query, response);
        else
                ann_answer_content(s, resource, session, request, query, response);
}

static void handle_ann_other(coap_resource_t *resource, coap_session_t *session,
                             const coap_pdu_t *request, const coap_string_t *query,
                             coap_pdu_t *response) {
        if (is_multicast(session))
                return drop(response);
        answer_error(response, 405, -1, "announcements take GET (RFC 9482, section 2.6)");
}

/* One Confirmable notification (RFC 7641 §4.2) of the current
 * representation to O: its token, our Observe value, all of the body or
 * its block 0 (RFC 7959 §2.6) in the block size O asked for. */
static int ann_send_notification(struct coap_server *s, struct ann_observer *o) {
        coap_pdu_t *pdu, *asked = NULL;
        uint8_t buf[4];

        if (o->szx != NO_SZX) {
                /* coap_block_answer() reads the block size from a request */
                if (!(asked = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, 0, 8)))
                        return -ENOMEM;
                coap_add_option(asked, COAP_OPTION_BLOCK2, coap_encode_var_safe(buf, sizeof buf, o->szx), buf);
        }
        pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_RESPONSE_CODE_CONTENT, coap_new_message_id(o->session),
                            coap_session_max_pdu_size(o->session));
        if (!pdu) {
                coap_delete_pdu(asked);
                return -ENOMEM;
        }
        coap_add_token(pdu, o->token_len, o->token);
        add_uint_option(pdu, COAP_OPTION_OBSERVE, s->ann_observe);
        ann_answer_content(s, o->resource, o->session, asked, NULL, pdu);
        coap_delete_pdu(asked);
        return coap_send(o->session, pdu) == COAP_INVALID_MID ? -EIO : 0;
}

/* The datagrams a notification of LEN bytes brings back from O: its ACK,
 * and a Block2 GET for each further block, in the block size
 * coap_block_answer() sends it: ours, made smaller to fit O's session
 * (its MTU) and to what O asked for (RFC 7959 §2.4). */
static unsigned ann_answers_for(const struct coap_server *s, const struct ann_observer *o, size_t len) {
        unsigned szx = coap_block_szx(o->session, NULL, s->manager->config->block_size);
        size_t block;

        if (o->szx != NO_SZX && o->szx < szx)
                szx = o->szx;
        block = (size_t) 16 << szx;
        return 1 + (len > 0 ? (unsigned) ((len - 1) / block) : 0);
}

/* HEARD datagrams came in: they pay for answers due. */
static void ann_fanout_heard(struct coap_server *s, unsigned heard) {
        uint64_t now = now_usec(s);

        if (s->fanout_bucket >= OBSERVER_BUCKETS)
                return;
        if (heard > 0) {
                s->fanout_due = s->fanout_due > heard ? s->fanout_due - heard : 0;
                s->fanout_heard_usec = now;
        } else if (now >= s->fanout_heard_usec + FANOUT_STALL_USEC) {
                s->fanout_due = 0;      /* lost, or observers that are gone */
                s->fanout_heard_usec = now;
        }
}

/* Notify the observers the fan-out has not reached yet while fewer than
 * FANOUT_WINDOW answers are due; then wait for them, or for the stall. */
static void ann_fanout_step(struct coap_server *s) {
        struct announce_blob *b = announce_latest(s->manager->announce);
        size_t len = b ? b->len : 0;

        while (s->fanout_bucket < OBSERVER_BUCKETS) {
                struct ann_observer *o;
                if (s->fanout_due >= FANOUT_WINDOW) {
                        sd_event_source_set_time(s->fanout_timer, s->fanout_heard_usec + FANOUT_STALL_USEC);
                        sd_event_source_set_enabled(s->fanout_timer, SD_EVENT_ONESHOT);
                        return;
                }
                o = s->fanout_next ? s->fanout_next : s->observers[s->fanout_bucket];
                if (!o) {
                        s->fanout_bucket++;
                        continue;
                }
                s->fanout_next = o->observers_next;
                if (!s->fanout_next)
                        s->fanout_bucket++;
                if (o->generation == s->ann_generation)
                        continue;       /* registered since: the answer had it */
                o->generation = s->ann_generation;
                if (ann_send_notification(s, o) < 0 && log_ratelimit_ok(&s->notify_log, now_usec(s)))
                        log_warning("announcements: cannot notify an observer; it gets the next one");
                s->fanout_due += ann_answers_for(s, o, len);
        }
        sd_event_source_set_enabled(s->fanout_timer, SD_EVENT_OFF);
}

/* the first step, or a stall; with datagrams waiting, on_io goes on */
static int on_fanout_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        struct coap_server *s = userdata;

        ann_fanout_heard(s, 0);
        if (!coap_loop_ready(s->ctx))
                ann_fanout_step(s);
        return 0;
}

/* Notify every observer of every ann resource: a new announcement, or the
 * periodic Confirmable one. The first step runs from the loop. */
static void ann_notify(struct coap_server *s) {
        s->ann_generation++;
        s->ann_observe = (s->ann_observe + 1) & 0xffffff;      /* RFC 7641 §4.4: 24 bits */
        s->fanout_bucket = 0;
        s->fanout_next = NULL;
        s->fanout_due = 0;
        s->fanout_heard_usec = now_usec(s);
        sd_event_source_set_time(s->fanout_timer, s->fanout_heard_usec);
        sd_event_source_set_enabled(s->fanout_timer, SD_EVENT_ONESHOT);
}

void coap_server_announcement(struct coap_server *s) {
        if (!s)
                return;
        log_debug("announcements: notifying %u observers", s->n_observers);
        ann_notify(s);
}

unsigned coap_server_ann_observers(const struct coap_server *s) {
        return s ? s->n_observers : 0;
}

static int on_ann_refresh(sd_event_source *src, uint64_t usec, void *userdata) {
        struct coap_server *s = userdata;

        if (s->n_observers > 0)
                ann_notify(s);
        sd_event_source_set_time_relative(src, s->manager->config->ann_refresh_sec * 1000000ULL);
        sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

/* Every path no resource is registered for: unconfigured labels (a default
 * route may take them), unknown operations, anything else. */
static void handle_unknown(coap_resource_t *resource, coap_session_t *session,
                           const coap_pdu_t *request, const coap_string_t *query,
                           coap_pdu_t *response) {
        struct coap_server *s = server_of(session);
        struct cmp_path path;
        char host[256];
        int r;

        if (is_multicast(session))
                return drop(response);
        r = parse_request_path(request, &path);
        if (r == CMP_PATH_UNKNOWN_OP)
                return answer_error(response, 404, -1, "unknown CMP operation (RFC 9483 labels: ir cr kur p10 rr crts rcu att crls nest)");
        if (r == CMP_PATH_BAD_LABEL)
                return answer_error(response, 404, -1, "bad label after /p/");
        if (r != CMP_PATH_OK)
                return answer_error(response, 404, -1, "no such resource; CMP is at /.well-known/cmp");
        route_host(session, request, host, sizeof host);
        if (!config_route_host(s->manager->config, path.label, host))
                return answer_error(response, 404, -1, "no upstream takes this label or host");
        if (path.ann)
                return coap_pdu_get_code(request) == COAP_REQUEST_CODE_GET ?
                        handle_ann_get(resource, session, request, query, response) :
                        handle_ann_other(resource, session, request, query, response);
        if (coap_pdu_get_code(request) != COAP_REQUEST_CODE_POST)
                return handle_method_not_allowed(resource, session, request, query, response);
        handle_cmp_post(resource, session, request, query, response);
}

static const coap_request_t all_methods[] = {
        COAP_REQUEST_GET, COAP_REQUEST_POST, COAP_REQUEST_PUT, COAP_REQUEST_DELETE,
        COAP_REQUEST_FETCH, COAP_REQUEST_PATCH, COAP_REQUEST_IPATCH,
};

static int links_append(char **buf, size_t *len, coap_resource_t *const *res, size_t n) {
        for (size_t i = 0; i < n; i++) {
                coap_str_const_t *path = coap_resource_get_uri_path(res[i]);
                bool ann = path->length >= 4 && memcmp(path->s + path->length - 4, "/ann", 4) == 0;
                char *b = realloc(*buf, *len + path->length + 32);
                if (!b)
                        return -ENOMEM;
                *buf = b;
                *len += (size_t) sprintf(b + *len, "%s</%.*s>;ct=259%s", *len ? "," : "",
                                         (int) path->length, (const char *) path->s, ann ? ";obs" : "");
        }
        return 0;
}

/* GET /.well-known/core (RFC 6690; RFC 9482 §2.2: links with ct=259). Our
 * own, not libcoap's built-in one, which would answer multicast. */
static void handle_core_get(coap_resource_t *resource, coap_session_t *session,
                            const coap_pdu_t *request, const coap_string_t *query,
                            coap_pdu_t *response) {
        struct coap_server *s = server_of(session);
        char *links = NULL;
        size_t len = 0;

        if (is_multicast(session))
                return drop(response);
        if (links_append(&links, &len, s->base_resources, s->n_base_resources) < 0 ||
            links_append(&links, &len, s->label_resources, s->n_label_resources) < 0) {
                free(links);
                return answer_error(response, 500, -1, "out of memory");
        }
        coap_pdu_set_code(response, COAP_RESPONSE_CODE_CONTENT);
        answer_blocks(s, session, request, response, COAP_MEDIATYPE_APPLICATION_LINK_FORMAT, -1,
                      coap_block_etag((const uint8_t *) links, len), (const uint8_t *) links, len);
        free(links);
}

static void handle_core_other(coap_resource_t *resource, coap_session_t *session,
                              const coap_pdu_t *request, const coap_string_t *query,
                              coap_pdu_t *response) {
        if (is_multicast(session))
                return drop(response);
        answer_error(response, 405, -1, "discovery takes GET (RFC 6690)");
}

static int add_core_resource(struct coap_server *s) {
        coap_resource_t *res = coap_resource_init(coap_make_str_const(".well-known/core"), 0);

        if (!res)
                return -ENOMEM;
        for (size_t i = 0; i < sizeof all_methods / sizeof all_methods[0]; i++)
                coap_register_request_handler(res, all_methods[i],
                                              all_methods[i] == COAP_REQUEST_GET ? handle_core_get : handle_core_other);
        coap_add_resource(s->ctx, res);
        return 0;
}

static coap_resource_t *add_cmp_resource(struct coap_server *s, const char *uri_path, bool ann) {
        coap_resource_t *res = coap_resource_init(coap_new_str_const((const uint8_t *) uri_path, strlen(uri_path)),
                                                  COAP_RESOURCE_FLAGS_RELEASE_URI |
                                                  (ann ? COAP_RESOURCE_FLAGS_NOTIFY_CON : 0));

        if (!res)
                return NULL;
        for (size_t i = 0; i < sizeof all_methods / sizeof all_methods[0]; i++) {
                coap_method_handler_t h;
                if (ann)
                        h = all_methods[i] == COAP_REQUEST_GET ? handle_ann_get : handle_ann_other;
                else
                        h = all_methods[i] == COAP_REQUEST_POST ? handle_cmp_post : handle_method_not_allowed;
                coap_register_request_handler(res, all_methods[i], h);
        }
        /* RFC 9482 §2.2: the link carries ct for application/pkixcmp */
        coap_add_attr(res, coap_make_str_const("ct"), coap_make_str_const("259"), 0);
        if (ann) {
                coap_add_attr(res, coap_make_str_const("obs"), NULL, 0);
                /* RFC 7641: our own observers, not libcoap's (see "announcements") */
                coap_resource_set_userdata(res, (void *) ann_marker);
        }
        coap_add_resource(s->ctx, res);
        return res;
}

/* /.well-known/cmp, its operations and ann, under a prefix */
static int add_cmp_tree(struct coap_server *s, const char *prefix, coap_resource_t ***list, size_t *n) {
        char path[256];
        size_t max = _CMP_OP_MAX + 1;
        coap_resource_t **l = realloc(*list, (*n + max) * sizeof **list);

        if (!l)
                return -ENOMEM;
        *list = l;
        for (int op = CMP_OP_NONE; op < _CMP_OP_MAX; op++) {
                snprintf(path, sizeof path, "%s%s%s", prefix, op ? "/" : "", cmp_op_coap_name(op));
                if (!(l[(*n)++] = add_cmp_resource(s, path, false)))
                        return -ENOMEM;
        }
        snprintf(path, sizeof path, "%s/ann", prefix);
        if (!(l[(*n)++] = add_cmp_resource(s, path, true)))
                return -ENOMEM;
        return 0;
}

int coap_server_apply_config(struct coap_server *s, const struct cmpgw_config *c) {
        char prefix[128];
        int r;

        if (c != s->dtls_config) {      /* a reload, not the start */
                if ((r = dtls_reload(s, c)) < 0)
                        return r;
                s->dtls_config = c;
        }

        observers_drop_resources(s, s->label_resources, s->n_label_resources);
        for (size_t i = 0; i < s->n_label_resources; i++)
                coap_delete_resource(s->ctx, s->label_resources[i]);
        free(s->label_resources);
        s->label_resources = NULL;
        s->n_label_resources = 0;
        for (size_t i = 0; i < c->n_upstreams; i++)
                for (size_t j = 0; j < c->upstreams[i].n_labels; j++) {
                        snprintf(prefix, sizeof prefix, ".well-known/cmp/p/%s", c->upstreams[i].labels[j]);
                        r = add_cmp_tree(s, prefix, &s->label_resources, &s->n_label_resources);
                        if (r < 0)
                                return r;
                }
        ann_update_observable(s);
        return 0;
}

/* ---- event loop integration ------------------------------------------ */

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct coap_server *s = userdata;

        if (dtls_reboot_check(s->dtls_reboot, now_usec(s)))
                return 0;       /* dtls_reboot.h: the next wake-up reads */
        /* only the first datagram of a batch is peeked at: a restarted
         * node's ClientHello further down goes to its old session, and its
         * retransmission (1 s later) is looked at again (dtls_reboot.h) */
        ann_fanout_heard(s, coap_loop_dispatch_batched(s->ctx, &s->batch));
        if (s->fanout_bucket < OBSERVER_BUCKETS && !coap_loop_ready(s->ctx))
                ann_fanout_step(s);
        return 0;
}

/* libcoap arms its own timer (in the fd above) for all it must do later;
 * this tick only makes sure that nothing waits longer than a second */
static int on_tick(sd_event_source *src, uint64_t usec, void *userdata) {
        struct coap_server *s = userdata;

        if (!dtls_reboot_check(s->dtls_reboot, now_usec(s)))
                coap_io_process(s->ctx, COAP_IO_NO_WAIT);
        sd_event_source_set_time_relative(src, TICK_USEC);
        return 0;
}

/* RFC 9482 §4: abandoned transfers are discarded after a short time */
static int on_gc(sd_event_source *src, uint64_t usec, void *userdata) {
        struct coap_server *s = userdata;
        uint64_t limit = s->manager->config->transfer_timeout_usec;
        struct transfer *t, *n;

        kept_answers_expire(s->kept, usec);
        usec = now_usec(s);     /* the timer's own time may precede last_usec */
        LIST_FOREACH_SAFE(transfers, t, n, s->transfers)
                if (usec > t->last_usec + limit) {
                        log_debug("dropping an abandoned block-wise transfer of %zu bytes", t->len);
                        s->manager->stats.transfers_abandoned++;
                        transfer_free(s, t);
                }
        sd_event_source_set_time_relative(src, 1000000);
        return 0;
}

void coap_server_answer(struct coap_server *s, struct request *r) {
        struct kept_answer *k;

        if (r->async) {
                coap_async_trigger(r->async);   /* arms libcoap's timer: sent from on_io */
                return;
        }
        if (!r->defer_ack)
                return;         /* answered piggybacked, inside the handler */
        if (!r->session) {      /* its session ended (session_release): nobody to answer */
                request_free(r);
                return;
        }
        k = kept_new(s, r);
        if (k && send_deferred_answer(s, r, k) < 0)
                log_warning("request %llu: cannot send the answer; the client's retransmission gets it",
                            (unsigned long long) r->id);
        coap_server_release_request(s, r);
        request_free(r);
}

void coap_server_release_request(struct coap_server *s, struct request *r) {
        if (r->async && r->session) {
                coap_async_set_app_data(r->async, NULL);
                coap_free_async(r->session, r->async);
        }
        r->async = NULL;
        r->ack_wait = sd_event_source_disable_unref(r->ack_wait);
        if (r->session)
                coap_session_release(r->session);
        r->session = NULL;
}

const struct dtls_reboot_stats *coap_server_get0_dtls_reboot_stats(const struct coap_server *s) {
        return dtls_reboot_get0_stats(s ? s->dtls_reboot : NULL);
}

size_t coap_server_buffered_bytes(const struct coap_server *s) {
        return s ? s->buffered : 0;
}

unsigned coap_server_pending_transfers(const struct coap_server *s) {
        return s->n_transfers;
}

static void log_dtls_event(coap_session_t *session, coap_event_t event) {
        char peer[64], psk[PSK_IDENTITY_MAX + 1], subject[512];

        peer_name(session, peer, sizeof peer);
        if (event == COAP_EVENT_DTLS_ERROR) {
                /* a wrong key, an unknown identity, a refused certificate */
                log_info("DTLS handshake with %s failed", peer);
                return;
        }
        peer_identity(session, psk, sizeof psk, subject, sizeof subject);
        log_debug("DTLS session with %s: %s%s", peer,
                  *psk ? "PSK identity " : *subject ? "client certificate " : "no client identity",
                  *psk ? psk : subject);
}

/* What cmpgwd keeps of a session that does not hold a reference */
static void session_forget(struct coap_server *s, coap_session_t *session) {
        struct transfer *t, *n;

        LIST_FOREACH_SAFE(transfers, t, n, s->transfers)
                if (t->session == session)
                        transfer_free(s, t);
        observers_drop_session(s, session);
}

/* Everything of cmpgwd's that holds SESSION: kept answers, requests in
 * flight (still completed upstream and recorded, but answered to nobody),
 * Block1 transfers, observers. A request already answered but waiting for
 * libcoap's async delivery is freed when OUTSIDE_LIBCOAP (no libcoap
 * callback on the stack that could still hold it); otherwise
 * coap_server_answer frees it. */
static void session_drop_refs(struct coap_server *s, coap_session_t *session, bool outside_libcoap) {
        struct request *r, *n;

        kept_answers_drop_session(s->kept, session);
        LIST_FOREACH_SAFE(requests, r, n, s->manager->requests)
                if (r->session == session) {
                        bool answered = r->answered && r->async;

                        coap_server_release_request(s, r);
                        r->defer_ack = true;    /* coap_server_answer frees it */
                        if (answered && outside_libcoap)
                                request_free(r);        /* its async is gone: nothing would */
                }
        session_forget(s, session);
}

/* A restarted node proved its address with a new handshake (dtls_reboot.h):
 * its old session ends now. libcoap frees a server session only when no
 * one references it, so every reference cmpgwd holds goes first
 * (session_drop_refs), then libcoap's own through coap_session_disconnected
 * (messages waiting for an ACK); coap_io_prepare_epoll() then frees it
 * before libcoap reads the new ClientHello. */
static void session_release(coap_session_t *session, void *userdata) {
        struct coap_server *s = userdata;
        coap_tls_library_t lib;
        coap_tick_t now;
        SSL *ssl;

        session_drop_refs(s, session, true);
        /* no close_notify: it would go to the node's new incarnation */
        if ((ssl = coap_session_get_tls(session, &lib)) && lib == COAP_TLS_LIBRARY_OPENSSL)
                SSL_set_quiet_shutdown(ssl, 1);
        coap_session_disconnected(session, COAP_NACK_TLS_FAILED);
        coap_ticks(&now);
        coap_io_prepare_epoll(s->ctx, now);
}

/* The PDU size libcoap parses a session's datagrams into. Over UDP, all
 * libcoap 4.3.1 reads of a datagram (COAP_RXBUFFER_SIZE), so that a request
 * in one datagram larger than our blocks still reaches handle_post() (RFC
 * 9482 §2.4 asks for block-wise, but a node with a larger MTU may not use
 * it; a datagram libcoap cut is answered 4.13 there). Over DTLS the block
 * size and room for the options: the DTLS MTU follows it, and handshake
 * flights must not outgrow a constrained network's datagrams. Our own
 * blocks are cut to coap.block_size either way (coap_block_szx). */
static unsigned session_mtu(const struct coap_server *s, const coap_session_t *session) {
        if (coap_session_get_proto(session) == COAP_PROTO_UDP)
                return COAP_RXBUFFER_SIZE;
        return (unsigned) s->manager->config->block_size + BLOCK_OVERHEAD;
}

static int event_handler(coap_session_t *session, const coap_event_t event) {
        struct coap_server *s = server_of(session);

        if (!s || s->freeing)
                return 0;       /* what cmpgwd held of the sessions is gone already */

        if (event == COAP_EVENT_SERVER_SESSION_NEW)
                coap_session_set_mtu(session, session_mtu(s, session));
        if (event == COAP_EVENT_DTLS_CONNECTED || event == COAP_EVENT_DTLS_ERROR)
                log_dtls_event(session, event);
        if (event == COAP_EVENT_DTLS_CONNECTED)
                dtls_reboot_connected(s->dtls_reboot, session);
        /* a closed DTLS session: let go of it, or libcoap keeps it (ref > 0)
         * and drops the node's next ClientHello from the same address and
         * port into it until our references expire */
        if ((event == COAP_EVENT_DTLS_CLOSED || event == COAP_EVENT_DTLS_ERROR) &&
            coap_session_get_type(session) == COAP_SESSION_TYPE_SERVER)
                session_drop_refs(s, session, false);
        if (event == COAP_EVENT_SERVER_SESSION_DEL) {
                dtls_reboot_session_gone(s->dtls_reboot, session);
                session_forget(s, session);
        }
        return 0;
}

/* RFC 6347 §4.2.8: a restarted node's new handshake (dtls_reboot.h). Not
 * finding the socket costs only that: a warning, and the listener serves. */
static int dtls_reboot_watch(struct coap_server *s, const struct cmpgw_listen *l,
                             const struct sockaddr *addr, socklen_t len) {
        int r;

        if (!s->dtls_reboot && (r = dtls_reboot_new(s->ctx, session_release, s, &s->dtls_reboot)) < 0)
                return r;
        r = dtls_reboot_add_endpoint(s->dtls_reboot, addr, len);
        if (r < 0)
                log_warning("listen %s: cannot find its socket in /proc/self/fd (%s): a node that restarts "
                            "on the address and port of its old session waits for that to time out",
                            l->uri, strerror(-r));
        return 0;
}

static int add_endpoint(struct coap_server *s, const struct cmpgw_listen *l, size_t index) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                                  .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
        struct addrinfo *info = NULL, *i;
        bool dtls = l->scheme == SCHEME_COAPS;
        char port[8], where[32];
        int n = 0, r;

        snprintf(where, sizeof where, "listen[%zu]", index);
        if (dtls && (r = dtls_setup(s, l, where)) < 0)
                return r;

        snprintf(port, sizeof port, "%u", l->port);
        r = getaddrinfo(l->host, port, &hints, &info);
        if (r != 0) {
                log_error("listen %s: \"%s\" is not a numeric IP address: %s", l->uri, l->host, gai_strerror(r));
                return -EINVAL;
        }
        for (i = info; i; i = i->ai_next) {
                coap_address_t addr;
                coap_address_init(&addr);
                if (i->ai_addrlen > sizeof addr.addr)
                        continue;
                memcpy(&addr.addr, i->ai_addr, i->ai_addrlen);
                addr.size = i->ai_addrlen;
                if (!coap_new_endpoint(s->ctx, &addr, dtls ? COAP_PROTO_DTLS : COAP_PROTO_UDP))
                        continue;
                n++;
                if (dtls && (r = dtls_reboot_watch(s, l, &addr.addr.sa, addr.size)) < 0) {
                        freeaddrinfo(info);
                        return r;
                }
        }
        freeaddrinfo(info);
        if (n == 0) {
                log_error("listen %s: cannot bind UDP %s port %u%s (is the address local and the port free?)",
                          l->uri, l->host, l->port, dtls ? " for DTLS" : "");
                return -EADDRNOTAVAIL;
        }
        if (dtls)
                log_info("listening on %s (DTLS: %s%s%s%s)", l->uri,
                         l->psk_file ? "PSK" : "", l->psk_file && l->certificate ? ", " : "",
                         l->certificate ? "certificate" : "",
                         !l->certificate ? "" : l->client_certificate == CLIENT_CERT_REQUIRED ?
                         ", client certificate required" : l->client_certificate == CLIENT_CERT_OPTIONAL ?
                         ", client certificate optional" : ", no client certificates");
        else
                log_info("listening on %s", l->uri);
        return 0;
}

int coap_server_new(Manager *m, const struct cmpgw_config *c, struct coap_server **ret) {
        struct coap_server *s = calloc(1, sizeof *s);
        coap_resource_t *unknown;
        char prefix[] = ".well-known/cmp";
        int r, fd;

        if (!s || !(s->kept = kept_answers_new(MAX_KEPT_ANSWERS)) ||
            !(s->observers = calloc(OBSERVER_BUCKETS, sizeof *s->observers))) {
                if (s)
                        kept_answers_free(s->kept);
                free(s);
                return -ENOMEM;
        }
        s->manager = m;
        s->limited_log.what = "requests refused by limits";
        s->psk_log.what = "unknown PSK identities";
        s->notify_log.what = "notifications not sent";
        s->ctx = coap_new_context(NULL);
        if (!s->ctx) {
                kept_answers_free(s->kept);
                free(s->observers);
                free(s);
                return -ENOMEM;
        }
        the_server = s;
        /* no libcoap block mode on the server side: coap_blocks.h */
        /* RFC 9482 §2.5: no resource, discovery included, answers multicast;
         * without this libcoap answers multicast discovery itself */
        coap_mcast_per_resource(s->ctx);
        coap_register_event_handler(s->ctx, event_handler);
        coap_register_nack_handler(s->ctx, nack_handler);
        s->ann_observable = c->ann_max_observers > 0;
        s->ann_observe = ANN_OBSERVE_FIRST;
        s->fanout_bucket = OBSERVER_BUCKETS;
        s->dtls_config = c;
        for (size_t i = 0; i < c->n_listen; i++)
                if ((r = add_endpoint(s, &c->listen[i], i)) < 0)
                        goto fail;
        s->dtls_listen = NULL;  /* points into c, which a reload frees */
        if ((r = add_cmp_tree(s, prefix, &s->base_resources, &s->n_base_resources)) < 0 ||
            (r = add_core_resource(s)) < 0)
                goto fail;
        unknown = coap_resource_unknown_init2(handle_unknown, 0);
        for (size_t i = 0; i < sizeof all_methods / sizeof all_methods[0]; i++)
                coap_register_request_handler(unknown, all_methods[i], handle_unknown);
        coap_add_resource(s->ctx, unknown);
        if ((r = coap_server_apply_config(s, c)) < 0)
                goto fail;

        fd = coap_context_get_coap_fd(s->ctx);
        if (fd < 0) {
                log_error("libcoap has no epoll file descriptor; it must be built with epoll support");
                r = -EOPNOTSUPP;
                goto fail;
        }
        if ((r = sd_event_add_io(m->event, &s->io, fd, EPOLLIN, on_io, s)) < 0 ||
            (r = sd_event_add_time_relative(m->event, &s->tick, CLOCK_MONOTONIC, TICK_USEC, 0, on_tick, s)) < 0 ||
            (r = sd_event_add_time_relative(m->event, &s->gc, CLOCK_MONOTONIC, 1000000, 0, on_gc, s)) < 0 ||
            (r = sd_event_add_time_relative(m->event, &s->ann_refresh, CLOCK_MONOTONIC,
                                            m->config->ann_refresh_sec * 1000000ULL, 0, on_ann_refresh,
                                            s)) < 0 ||
            /* accuracy 1 us: sd-event's default (0) lets a timer slip by up to 250 ms */
            (r = sd_event_add_time_relative(m->event, &s->fanout_timer, CLOCK_MONOTONIC, 0, 1,
                                            on_fanout_timer, s)) < 0)
                goto fail;
        sd_event_source_set_description(s->ann_refresh, "coap-ann-refresh");
        sd_event_source_set_description(s->fanout_timer, "coap-ann-fanout");
        sd_event_source_set_enabled(s->fanout_timer, SD_EVENT_OFF);
        sd_event_source_set_enabled(s->gc, SD_EVENT_ON);
        sd_event_source_set_enabled(s->tick, SD_EVENT_ON);
        sd_event_source_set_description(s->io, "coap-io");
        sd_event_source_set_description(s->tick, "coap-tick");
        *ret = s;
        return 0;
fail:
        coap_server_free(s);
        return r;
}

struct coap_server *coap_server_free(struct coap_server *s) {
        struct transfer *t, *n;

        if (!s)
                return NULL;
        s->freeing = true;
        LIST_FOREACH_SAFE(transfers, t, n, s->transfers)
                transfer_free(s, t);
        s->kept = kept_answers_free(s->kept);
        for (size_t b = 0; s->observers && b < OBSERVER_BUCKETS; b++)
                while (s->observers[b])
                        observer_free(s, s->observers[b]);
        free(s->observers);
        sd_event_source_disable_unref(s->ann_refresh);
        sd_event_source_disable_unref(s->fanout_timer);
        sd_event_source_disable_unref(s->io);
        sd_event_source_disable_unref(s->tick);
        sd_event_source_disable_unref(s->gc);
        free(s->label_resources);
        free(s->base_resources);
        if (s->ctx)
                coap_free_context(s->ctx);
        dtls_creds_free(s->dtls);
        s->dtls_reboot = dtls_reboot_free(s->dtls_reboot);
        if (the_server == s)
                the_server = NULL;
        free(s);
        return NULL;
}
