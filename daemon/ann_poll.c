/* ann_poll.c -- genm polling of HTTP upstreams; see ann_poll.h */
#include "ann_poll.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "announce.h"
#include "cmp_ann.h"
#include "cmp_content.h"
#include "cmp_genm.h"
#include "cmp_msg.h"
#include "cmp_path.h"
#include "config.h"
#include "list.h"
#include "log.h"
#include "request.h"
#include "upstream_http.h"

/* A poll that fails is tried again after RETRY_MIN_SEC, doubling up to
 * RETRY_MAX_SEC, until one succeeds; then every interval again. */
#define RETRY_MIN_SEC 2
#define RETRY_MAX_SEC 300
/* At the longest delay, a failure that goes on is logged every this many tries */
#define RETRY_LOG_EVERY 12

/* poll.what's bits are the kinds in the order they are asked */
_Static_assert(CMPGW_POLL_CA_CERTS == 1 << CMP_GENM_CA_CERTS &&
               CMPGW_POLL_ROOT_CA_UPDATE == 1 << CMP_GENM_ROOT_CA_UPDATE &&
               CMPGW_POLL_CRLS == 1 << CMP_GENM_CRLS, "poll.what bits follow enum cmp_genm_kind");

struct poller {
        LIST_FIELDS(struct poller, pollers);
        struct ann_poll *owner;

        /* from the configuration */
        char *name;
        char *uri;                      /* the upstream's */
        struct upstream_tls tls;
        uint64_t timeout_usec, interval_usec;
        enum cmpgw_chunked chunked;
        uint32_t max_connections;
        unsigned what;                  /* CMPGW_POLL_* */
        struct cmp_genm_creds creds;    /* sign the genm and the announcements */
        X509_STORE *trusted;            /* the genp's signer must chain to these */
        X509 *root;                     /* the root CA the gateway's certificate chains to */

        /* what the upstream said */
        STACK_OF(X509) *ca_certs;       /* its last caCerts answer: CRL issuers */
        X509 *root_seen;                /* the last newWithNew handled */

        /* the running cycle: one genm transaction per kind, in turn */
        sd_event_source *timer;
        int kind;                       /* enum cmp_genm_kind asked now; -1 between cycles */
        bool cycle_failed;
        char cycle_why[768];
        struct upstream_call *call;
        uint8_t *genm;
        size_t genm_len;
        char genm_uri[2048];

        unsigned retry_sec;             /* 0 while polls succeed */
        unsigned failures;              /* in a row */
};

struct ann_poll_set {
        LIST_HEAD(struct poller, pollers);
};

struct ann_poll {
        sd_event *event;
        struct upstream_http *http;
        struct announce *store;
        struct ann_poll_set *running;
};

static void poller_free(struct poller *p) {
        if (!p)
                return;
        if (p->call)
                upstream_http_abandon(p->owner->http, p->call);
        sd_event_source_disable_unref(p->timer);
        OPENSSL_free(p->genm);
        sk_X509_pop_free(p->ca_certs, X509_free);
        X509_free(p->root_seen);
        X509_free(p->root);
        X509_STORE_free(p->trusted);
        cmp_genm_creds_clear(&p->creds);
        upstream_tls_clear(&p->tls);
        free(p->name);
        free(p->uri);
        free(p);
}

struct ann_poll_set *ann_poll_set_free(struct ann_poll_set *set) {
        struct poller *p;

        if (!set)
                return NULL;
        while ((p = set->pollers)) {
                LIST_REMOVE(pollers, set->pollers, p);
                poller_free(p);
        }
        free(set);
        return NULL;
}

/* ---- turning answers into announcements ---- */

/* Sign SPEC with the gateway's key and publish it like any announcement:
 * the store validates it against announcements.trusted (CRLs against their
 * issuer) before anything changes. EXTRA: more extraCerts, or NULL. */
static int publish(struct poller *p, const struct cmp_ann_spec *spec, STACK_OF(X509) *extra, char **why) {
        STACK_OF(X509) *chain = sk_X509_dup(p->creds.chain);
        uint8_t *der = NULL;
        size_t len = 0;
        int k;

        *why = NULL;
        if (!chain)
                return log_reason(why, -ENOMEM, "out of memory");
        for (int i = 0; i < sk_X509_num(extra); i++) {
                X509 *x = sk_X509_value(extra, i);
                bool have = X509_cmp(x, p->creds.cert) == 0;

                for (int j = 0; j < sk_X509_num(chain) && !have; j++)
                        have = X509_cmp(x, sk_X509_value(chain, j)) == 0;
                if (!have && !sk_X509_push(chain, x)) {
                        sk_X509_free(chain);
                        return log_reason(why, -ENOMEM, "out of memory");
                }
        }
        k = cmp_ann_build(spec, p->creds.cert, p->creds.key, chain, &der, &len);
        sk_X509_free(chain);
        if (k < 0)
                return log_reason(why, k, "cannot sign the %s: %s", cmp_ann_kind_name(spec->kind), strerror(-k));
        k = announce_publish(p->owner->store, der, len, (int64_t) time(NULL), why);
        OPENSSL_free(der);
        return k;
}

/* §4.3.1: a CANN for each CA certificate no CANN has announced yet */
static void take_ca_certs(struct poller *p, struct cmp_genp *g) {
        char *why = NULL;
        int k;

        sk_X509_pop_free(p->ca_certs, X509_free);
        p->ca_certs = g->ca_certs;
        g->ca_certs = NULL;
        for (int i = 0; i < sk_X509_num(p->ca_certs); i++) {
                X509 *x = sk_X509_value(p->ca_certs, i);
                struct cmp_ann_spec spec = { .kind = CMP_ANN_CANN, .certs = { x } };
                char *subject = cmp_name_rfc2253(X509_get_subject_name(x));

                if (announce_cert_announced(p->owner->store, x)) {
                        free(subject);
                        continue;
                }
                if (X509_check_ca(x) == 0)
                        log_warning("poll of upstream %s: %s is not a CA certificate; not announced", p->name,
                                    subject ? subject : "?");
                else if ((k = publish(p, &spec, NULL, &why)) < 0)
                        log_warning("poll of upstream %s: cannot announce the CA certificate %s: %s", p->name,
                                    subject ? subject : "?", why ? why : strerror(-k));
                else
                        log_info("poll of upstream %s: CA certificate %s announced (CANN)", p->name,
                                 subject ? subject : "?");
                free(why);
                why = NULL;
                free(subject);
        }
}

/* The links of a root CA update must hold: newWithNew self-signed,
 * newWithOld certified by the current root, oldWithNew by the new key. */
static const char *root_update_broken(const struct poller *p, const struct cmp_genp *g) {
        EVP_PKEY *new_key = X509_get0_pubkey(g->new_with_new);

        if (!g->new_with_old || !g->old_with_new)
                return "it lacks newWithOld or oldWithNew, and a CKUANN (RFC 4210 section 5.3.13) needs all three";
        if (!new_key || X509_verify(g->new_with_new, new_key) != 1)
                return "newWithNew is not self-signed";
        if (X509_verify(g->old_with_new, new_key) != 1)
                return "oldWithNew is not signed by the new root key";
        if (p->root && X509_verify(g->new_with_old, X509_get0_pubkey(p->root)) != 1)
                return "newWithOld is not signed by the current root key";
        return NULL;
}

/* Is NEW_WITH_NEW the one the latest CKUANN announced? */
static bool root_announced(const struct poller *p, X509 *new_with_new) {
        struct announce_blob *b = announce_latest_of(p->owner->store, CMP_ANN_CKUANN);
        struct cmp_ann *ann = NULL;
        const char *pwhy;
        bool same;

        if (!b || cmp_ann_parse(b->data, b->len, &ann, &pwhy) < 0)
                return false;
        same = X509_cmp(ann->new_with_new, new_with_new) == 0;
        cmp_ann_free(ann);
        return same;
}

static void root_handled(struct poller *p, X509 *new_with_new) {
        X509_free(p->root_seen);
        p->root_seen = X509_up_ref(new_with_new) ? new_with_new : NULL;
}

/* §4.3.2: a CKUANN for a root CA update not announced yet */
static void take_root_update(struct poller *p, struct cmp_genp *g) {
        struct cmp_ann_spec spec = { .kind = CMP_ANN_CKUANN,
                                     .certs = { g->old_with_new, g->new_with_old, g->new_with_new } };
        const char *broken;
        char *why = NULL;
        int k;

        if (p->root_seen && X509_cmp(p->root_seen, g->new_with_new) == 0)
                return;         /* the same answer as last time: handled */
        if (root_announced(p, g->new_with_new)) {
                root_handled(p, g->new_with_new);
                return;
        }
        broken = root_update_broken(p, g);
        ERR_clear_error();
        if (broken) {
                log_warning("poll of upstream %s: root CA update not announced: %s", p->name, broken);
                root_handled(p, g->new_with_new);
                return;
        }
        k = publish(p, &spec, NULL, &why);
        if (k < 0)      /* tried again next time */
                log_warning("poll of upstream %s: cannot announce the root CA update: %s", p->name,
                            why ? why : strerror(-k));
        else {
                log_info("poll of upstream %s: root CA update announced (CKUANN)", p->name);
                root_handled(p, g->new_with_new);
        }
        free(why);
}

/* Is CRL the one the cache holds for its issuer (the same encoding)? */
static bool crl_cached(const struct announce *store, const X509_CRL *crl) {
        for (size_t i = 0; i < announce_n_crls(store); i++) {
                struct announce_crl_info ci;

                announce_crl_info(store, i, &ci);
                if (X509_CRL_match(ci.crl, crl) == 0)
                        return true;
        }
        return false;
}

/* CA certificates that may have issued CRL: to go into the CRLANN's
 * extraCerts, so the store finds the CRL's issuer */
static STACK_OF(X509) *crl_signers(const struct poller *p, const struct cmp_genp *g, X509_CRL *crl) {
        STACK_OF(X509) *out = sk_X509_new_null();
        STACK_OF(X509) *const from[] = { g->extra_certs, p->ca_certs };

        for (size_t s = 0; out && s < 2; s++)
                for (int i = 0; i < sk_X509_num(from[s]); i++) {
                        X509 *x = sk_X509_value(from[s], i);
                        if (X509_NAME_cmp(X509_get_subject_name(x), X509_CRL_get_issuer(crl)) == 0 &&
                            X509_check_ca(x) != 0)
                                sk_X509_push(out, x);
                }
        return out;
}

/* §4.3.4: a CRLANN for each CRL the cache does not hold */
static void take_crls(struct poller *p, struct cmp_genp *g) {
        for (int i = 0; i < sk_X509_CRL_num(g->crls); i++) {
                X509_CRL *crl = sk_X509_CRL_value(g->crls, i);
                struct cmp_ann_spec spec = { .kind = CMP_ANN_CRLANN, .crls = &crl, .n_crls = 1 };
                char *issuer = cmp_name_rfc2253(X509_CRL_get_issuer(crl)), *why = NULL;
                STACK_OF(X509) *signers;
                int k;

                if (crl_cached(p->owner->store, crl)) {
                        free(issuer);
                        continue;       /* the one we have: nothing new */
                }
                signers = crl_signers(p, g, crl);
                k = publish(p, &spec, signers, &why);
                sk_X509_free(signers);
                if (k == -ESTALE)
                        log_warning("poll of upstream %s: it sent a CRL of %s that is not newer than the cached "
                                    "one; nothing changes: %s", p->name, issuer ? issuer : "?", why ? why : "");
                else if (k < 0)
                        log_warning("poll of upstream %s: the CRL of %s is refused: %s", p->name,
                                    issuer ? issuer : "?", why ? why : strerror(-k));
                else
                        log_info("poll of upstream %s: CRL of %s announced (CRLANN)", p->name, issuer ? issuer : "?");
                free(why);
                free(issuer);
        }
}

/* ---- the cycle ---- */

static void poller_schedule(struct poller *p, uint64_t usec) {
        sd_event_source_set_time_relative(p->timer, usec);
        sd_event_source_set_enabled(p->timer, SD_EVENT_ONESHOT);
}

/* The cycle is over: every interval when it went well, else with backoff.
 * Failures are logged while the delay grows, then every RETRY_LOG_EVERY
 * tries, so an upstream that stays away cannot flood the journal. */
static void cycle_end(struct poller *p) {
        unsigned before = p->retry_sec;

        p->kind = -1;
        if (!p->cycle_failed) {
                if (p->failures > 0)
                        log_info("poll of upstream %s: answered again after %u failed polls", p->name, p->failures);
                p->failures = 0;
                p->retry_sec = 0;
                poller_schedule(p, p->interval_usec);
                return;
        }
        p->failures++;
        p->retry_sec = p->retry_sec ? p->retry_sec * 2 : RETRY_MIN_SEC;
        if (p->retry_sec > RETRY_MAX_SEC)
                p->retry_sec = RETRY_MAX_SEC;
        if (p->retry_sec != before || p->failures % RETRY_LOG_EVERY == 0)
                log_warning("poll of upstream %s failed (%u in a row): %s; polling again in %u s", p->name,
                            p->failures, p->cycle_why, p->retry_sec);
        else
                log_debug("poll of upstream %s failed (%u in a row): %s", p->name, p->failures, p->cycle_why);
        poller_schedule(p, p->retry_sec * 1000000ULL);
}

static void step_failed(struct poller *p, const char *why) {
        if (!p->cycle_failed)
                snprintf(p->cycle_why, sizeof p->cycle_why, "%s: %s", cmp_genm_kind_name(p->kind), why);
        p->cycle_failed = true;
}

static void cycle_next(struct poller *p);

static void take_answer(struct poller *p, struct cmp_genp *g) {
        if (g->absent) {
                log_debug("poll of upstream %s: %s: nothing (new)", p->name, cmp_genm_kind_name(p->kind));
                return;
        }
        switch (p->kind) {
        case CMP_GENM_CA_CERTS:
                take_ca_certs(p, g);
                break;
        case CMP_GENM_ROOT_CA_UPDATE:
                take_root_update(p, g);
                break;
        case CMP_GENM_CRLS:
                take_crls(p, g);
                break;
        }
}

static void on_answer(const struct upstream_result *res, void *userdata) {
        struct poller *p = userdata;
        struct cmp_genp g;
        char *why = NULL;
        int k;

        p->call = NULL;
        if (!res->body_is_cmp) {
                /* unreachable, timeout, not CMP: the rest of the cycle would fare no better */
                step_failed(p, res->diagnostic ? res->diagnostic : "no answer");
                cycle_end(p);
                return;
        }
        k = cmp_genp_read(p->genm, p->genm_len, res->body, res->body_len, p->kind, p->trusted, &g, &why);
        if (k < 0) {
                /* nothing unverified is published; cycle_end() says why, rate-limited */
                char msg[600];
                snprintf(msg, sizeof msg, "answer refused, nothing published: %s", why ? why : strerror(-k));
                log_debug("poll of upstream %s: %s %s", p->name, cmp_genm_kind_name(p->kind), msg);
                step_failed(p, msg);
        } else
                take_answer(p, &g);
        cmp_genp_clear(&g);
        free(why);
        p->kind++;
        cycle_next(p);
}

/* RFC 9483 §4.3.4: the issuers whose CRLs the gateway follows: its own
 * certificate's issuer and the CA certificates the upstream named, each
 * with the thisUpdate of the cached CRL when there is one */
static size_t crl_statuses(const struct poller *p, struct cmp_crl_status *out, size_t max) {
        const struct announce *store = p->owner->store;
        int n_ca = p->ca_certs ? sk_X509_num(p->ca_certs) : 0;        /* sk_num(NULL) is -1 */
        size_t n = 0;

        for (int i = -1; i < n_ca && n < max; i++) {
                const X509_NAME *name = i < 0 ? X509_get_issuer_name(p->creds.cert) :
                                                X509_get_subject_name(sk_X509_value(p->ca_certs, i));
                bool dup = false;

                for (size_t j = 0; j < n && !dup; j++)
                        dup = X509_NAME_cmp(out[j].issuer, name) == 0;
                if (dup || (i >= 0 && X509_check_ca(sk_X509_value(p->ca_certs, i)) == 0))
                        continue;
                out[n] = (struct cmp_crl_status) { .issuer = name };
                for (size_t c = 0; c < announce_n_crls(store); c++) {
                        struct announce_crl_info ci;
                        announce_crl_info(store, c, &ci);
                        if (X509_NAME_cmp(X509_CRL_get_issuer(ci.crl), name) == 0)
                                out[n].this_update = ci.this_update;
                }
                n++;
        }
        return n;
}

#define MAX_CRL_STATUS 64

static int send_genm(struct poller *p) {
        static const enum cmp_op ops[] = {
                [CMP_GENM_CA_CERTS] = CMP_OP_CRTS, [CMP_GENM_ROOT_CA_UPDATE] = CMP_OP_RCU,
                [CMP_GENM_CRLS] = CMP_OP_CRLS,
        };
        struct cmp_crl_status st[MAX_CRL_STATUS];
        struct cmp_genm_args args = { .kind = p->kind, .old_root = p->root, .crls = st };
        struct upstream_post post;
        unsigned left = upstream_http_backoff_left(p->owner->http, p->name);
        char who[96], *why = NULL;
        int k;

        if (left > 0) {
                snprintf(who, sizeof who, "the upstream keeps failing; not contacted for %u s", left);
                step_failed(p, who);
                return -EAGAIN;
        }
        if (p->kind == CMP_GENM_CRLS)
                args.n_crls = crl_statuses(p, st, MAX_CRL_STATUS);
        OPENSSL_free(p->genm);
        p->genm = NULL;
        k = cmp_genm_build(&p->creds, &args, &p->genm, &p->genm_len, &why);
        if (k < 0) {
                step_failed(p, why ? why : strerror(-k));
                free(why);
                return k;
        }
        /* RFC 9483 §6.1: …/.well-known/cmp gets the operation path */
        if (cmp_path_http_upstream_uri(p->uri, "", ops[p->kind], p->genm_uri, sizeof p->genm_uri) < 0) {
                step_failed(p, "the upstream URI is too long");
                return -ENOBUFS;
        }
        post = (struct upstream_post) {
                .name = p->name, .uri = p->genm_uri, .body = p->genm, .body_len = p->genm_len,
                .body_type = CMP_BODY_GENM, .timeout_usec = p->timeout_usec, .chunked = p->chunked,
                .max_connections = p->max_connections, .tls = &p->tls,
        };
        snprintf(who, sizeof who, "poll of %s (%s)", p->name, cmp_genm_kind_name(p->kind));
        k = upstream_http_post(p->owner->http, &post, on_answer, p, who, &p->call);
        if (k < 0)
                step_failed(p, strerror(-k));
        else
                log_debug("poll of upstream %s: genm %s to %s", p->name, cmp_genm_kind_name(p->kind), p->genm_uri);
        return k;
}

/* The next kind this poller asks for, or the end of the cycle */
static void cycle_next(struct poller *p) {
        for (; p->kind < _CMP_GENM_KIND_MAX; p->kind++) {
                if (!(p->what & (1u << p->kind)))
                        continue;
                if (send_genm(p) == 0)
                        return;         /* on_answer() goes on */
                if (p->cycle_failed && upstream_http_backoff_left(p->owner->http, p->name) > 0)
                        break;
        }
        cycle_end(p);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct poller *p = userdata;

        if (p->call)
                return 0;       /* cannot happen: the timer is armed at the end of a cycle */
        p->cycle_failed = false;
        p->cycle_why[0] = '\0';
        p->kind = 0;
        cycle_next(p);
        return 0;
}

/* ---- configuration ---- */

/* The gateway's certificate must chain to announcements.trusted, or the
 * store would refuse every announcement signed with it; the root of that
 * chain is the one a rootCaCert genm names (RFC 9483 §4.3.2). */
static int check_signer(struct poller *p, const char *ann_trusted, const char *key, char **why) {
        X509_STORE *st = NULL;
        X509_STORE_CTX *sctx = X509_STORE_CTX_new();
        STACK_OF(X509) *chain = NULL;
        char *err = NULL;
        int k = cmp_ann_load_trust(ann_trusted, &st, &err);

        if (k < 0) {
                k = log_reason(why, k, "announcements.trusted: %s", err ? err : strerror(-k));
        } else if (!sctx || !X509_STORE_CTX_init(sctx, st, p->creds.cert, p->creds.chain)) {
                k = -ENOMEM;
        } else if (X509_verify_cert(sctx) != 1) {
                k = log_reason(why, -EINVAL, "%s: the certificate does not chain to announcements.trusted (%s): "
                               "the announcements the gateway signs with it would be refused; put its chain after "
                               "it in the file", key, X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx)));
        } else {
                chain = X509_STORE_CTX_get1_chain(sctx);
                p->root = sk_X509_num(chain) > 1 ? sk_X509_value(chain, sk_X509_num(chain) - 1) : NULL;
                if (p->root)
                        X509_up_ref(p->root);
        }
        sk_X509_pop_free(chain, X509_free);
        X509_STORE_CTX_free(sctx);
        X509_STORE_free(st);
        free(err);
        ERR_clear_error();
        return k;
}

static int poller_new(struct ann_poll *owner, const struct cmpgw_config *c, size_t i, struct poller **ret,
                      char **why) {
        const struct cmpgw_upstream *u = &c->upstreams[i];
        struct poller *p = calloc(1, sizeof *p);
        const char *trusted = u->poll.trusted ? u->poll.trusted : c->ann_trusted;
        char key[80], *err = NULL;
        int k;

        if (!p)
                return -ENOMEM;
        p->owner = owner;
        p->kind = -1;
        p->timeout_usec = u->timeout_usec;
        p->interval_usec = u->poll.interval_usec;
        p->chunked = u->chunked;
        p->max_connections = u->max_connections;
        p->what = u->poll.what;
        if (!(p->name = strdup(u->name)) || !(p->uri = strdup(u->uri)) || upstream_tls_copy(&p->tls, u) < 0) {
                poller_free(p);
                return -ENOMEM;
        }
        snprintf(key, sizeof key, "upstreams[%zu].poll.certificate", i);
        if ((k = cmp_genm_creds_load(u->poll.certificate, u->poll.private_key, &p->creds, &err)) < 0)
                k = log_reason(why, k, "%s: %s", key, err ? err : strerror(-k));
        else
                k = check_signer(p, c->ann_trusted, key, why);
        free(err);
        err = NULL;
        if (k >= 0 && (k = cmp_ann_load_trust(trusted, &p->trusted, &err)) < 0)
                k = log_reason(why, k, "upstreams[%zu].poll.trusted: %s", i, err ? err : strerror(-k));
        free(err);
        if (k >= 0 && (k = sd_event_add_time_relative(owner->event, &p->timer, CLOCK_MONOTONIC, 0, 0, on_timer, p)) < 0)
                k = log_reason(why, k, "cannot add a timer: %s", strerror(-k));
        if (k < 0) {
                poller_free(p);
                return k;
        }
        sd_event_source_set_enabled(p->timer, SD_EVENT_OFF);
        sd_event_source_set_description(p->timer, "ann-poll");
        *ret = p;
        return 0;
}

int ann_poll_prepare(struct ann_poll *owner, const struct cmpgw_config *c, struct ann_poll_set **ret, char **why) {
        struct ann_poll_set *set = calloc(1, sizeof *set);
        int k = 0;

        *why = NULL;
        if (!set)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_upstreams && k >= 0; i++) {
                struct poller *p = NULL;

                if (!c->upstreams[i].poll.enabled)
                        continue;
                k = poller_new(owner, c, i, &p, why);
                if (k >= 0)
                        LIST_PREPEND(pollers, set->pollers, p);
        }
        if (k < 0) {
                ann_poll_set_free(set);
                return k;
        }
        *ret = set;
        return 0;
}

void ann_poll_commit(struct ann_poll *owner, struct ann_poll_set *set) {
        struct poller *p, *n;

        ann_poll_set_free(owner->running);
        owner->running = set;
        if (!set)
                return;
        LIST_FOREACH_SAFE(pollers, p, n, set->pollers) {
                char what[64] = "";
                for (int k = 0; k < _CMP_GENM_KIND_MAX; k++)
                        if (p->what & (1u << k))
                                snprintf(what + strlen(what), sizeof what - strlen(what), "%s%s",
                                         what[0] ? ", " : "", cmp_genm_kind_name(k));
                log_info("poll of upstream %s: %s every %g s", p->name, what, (double) p->interval_usec / 1e6);
                poller_schedule(p, 0);
        }
}

int ann_poll_new(sd_event *e, struct upstream_http *http, struct announce *store, struct ann_poll **ret) {
        struct ann_poll *p = calloc(1, sizeof *p);

        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(e);
        p->http = http;
        p->store = store;
        *ret = p;
        return 0;
}

struct ann_poll *ann_poll_free(struct ann_poll *p) {
        if (!p)
                return NULL;
        ann_poll_set_free(p->running);
        sd_event_unref(p->event);
        free(p);
        return NULL;
}
