/* admission.c -- who may send requests through the gateway (issue 5) */
#include "admission.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coap3/coap.h>
#include <openssl/crypto.h>

#include "cmp_path.h"
#include "cmp_protection.h"
#include "coap_status.h"
#include "config.h"
#include "dn_text.h"
#include "log.h"
#include "manager.h"
#include "psk_file.h"
#include "request.h"

/* ---- which listener, which policy ---- */

/* 2: the listener's host is the address, 1: a wildcard, 0: neither */
static int host_matches(const char *host, const coap_address_t *local) {
        union { struct in_addr v4; struct in6_addr v6; } a;
        int family = local->addr.sa.sa_family;

        if (inet_pton(AF_INET, host, &a.v4) == 1) {
                if (a.v4.s_addr == htonl(INADDR_ANY))
                        return 1;
                return family == AF_INET && a.v4.s_addr == local->addr.sin.sin_addr.s_addr ? 2 : 0;
        }
        if (inet_pton(AF_INET6, host, &a.v6) == 1) {
                if (IN6_IS_ADDR_UNSPECIFIED(&a.v6))
                        return 1;
                return family == AF_INET6 && IN6_ARE_ADDR_EQUAL(&a.v6, &local->addr.sin6.sin6_addr) ? 2 : 0;
        }
        return 0;
}

const struct cmpgw_listen *admission_listener(const struct cmpgw_config *c, coap_session_t *session) {
        const struct cmpgw_listen *wildcard = NULL;
        const coap_address_t *local;
        enum cmpgw_scheme scheme;

        if (!session || !(local = coap_session_get_addr_local(session)))
                return NULL;
        scheme = coap_session_get_proto(session) == COAP_PROTO_DTLS ? SCHEME_COAPS : SCHEME_COAP;
        for (size_t i = 0; i < c->n_listen; i++) {
                const struct cmpgw_listen *l = &c->listen[i];
                int m;

                if (l->scheme != scheme || l->port != coap_address_get_port(local))
                        continue;
                m = host_matches(l->host, local);
                if (m == 2)
                        return l;
                if (m == 1 && !wildcard)
                        wildcard = l;
        }
        return wildcard;
}

/* The stricter of the listener's and the label's; an unknown listener is
 * taken as "registered" (fail closed). */
static enum cmpgw_admission policy_of(const struct cmpgw_config *c, const struct cmpgw_listen *l,
                                      const char *label) {
        enum cmpgw_admission by_listener = l ? l->admission : ADMISSION_REGISTERED;
        enum cmpgw_admission by_label = config_label_admission(c, label);

        return by_listener > by_label ? by_listener : by_label;
}

/* ---- identities ---- */

static char *hex_of(const uint8_t *p, size_t n) {
        char *s = malloc(2 * n + 1);

        if (s && OPENSSL_buf2hexstr_ex(s, 2 * n + 1, NULL, p, n, '\0') != 1) {
                free(s);
                return NULL;
        }
        return s;
}

static bool printable(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i] < 0x20 || p[i] >= 0x7f || p[i] == '"')
                        return false;
        return n > 0;
}

/* a senderKID for a diagnostic: "text" when printable, else hex */
static const char *kid_text(const struct cmp_protector *p, char *buf, size_t size) {
        char *hex;

        if (!p->sender_kid)
                return "(none)";
        if (printable(p->sender_kid, p->sender_kid_len) && p->sender_kid_len + 3 <= size) {
                snprintf(buf, size, "\"%.*s\"", (int) p->sender_kid_len, (const char *) p->sender_kid);
                return buf;
        }
        hex = hex_of(p->sender_kid, p->sender_kid_len);
        snprintf(buf, size, "0x%s", hex ? hex : "?");
        free(hex);
        return buf;
}

/* RFC 9483 §3.1 (after RFC 4210 §5.1.1): with signature protection the
 * sender names the subject of the protection certificate; with MAC
 * protection the senderKID names the shared secret. A DTLS identity is
 * bound to the one of the same kind: a client certificate to the sender
 * of a signed message, a PSK identity to the senderKID of a MAC-protected
 * one. A PSK names no subject and a certificate no shared secret, so the
 * other pairs (and unprotected messages) have nothing to compare. */
static int check_binding(const struct request *r, const struct cmp_protector *p, char *why, size_t size) {
        char kid[80];

        if (r->client_subject[0] && p->kind == CMP_PROT_SIGNATURE) {
                if (p->sender && strcmp(p->sender, r->client_subject) == 0)
                        return 0;
                snprintf(why, size, "not admitted: CMP sender %s is not the subject of the DTLS client "
                         "certificate (%s)", p->sender ? p->sender : "(none)", r->client_subject);
                return 403;
        }
        if (r->psk_identity[0] && p->kind == CMP_PROT_MAC) {
                size_t n = strlen(r->psk_identity);

                if (p->sender_kid && p->sender_kid_len == n && memcmp(p->sender_kid, r->psk_identity, n) == 0)
                        return 0;
                snprintf(why, size, "not admitted: CMP senderKID %s is not the DTLS PSK identity \"%s\"",
                         kid_text(p, kid, sizeof kid), r->psk_identity);
                return 403;
        }
        return 0;
}

struct presented {
        enum registry_id_kind kind;
        const char *value;
};

/* Was one of the request's identities admitted (for its label)? 0
 * admitted, else a code: 401 when it presents none, 403, 500. */
static int check_registered(Manager *m, const struct request *r, const struct cmp_protector *p,
                            char *why, size_t size) {
        struct presented ids[4];
        char *kid = p->sender_kid ? hex_of(p->sender_kid, p->sender_kid_len) : NULL;
        size_t n = 0;
        int k = 0;

        if (r->psk_identity[0])
                ids[n++] = (struct presented) { REG_ID_PSK_IDENTITY, r->psk_identity };
        if (r->client_subject[0])
                ids[n++] = (struct presented) { REG_ID_CLIENT_SUBJECT, r->client_subject };
        if (p->sender)
                ids[n++] = (struct presented) { REG_ID_SENDER, p->sender };
        if (kid)
                ids[n++] = (struct presented) { REG_ID_SENDER_KID, kid };
        for (size_t i = 0; i < n && k == 0; i++)
                k = m->registry ? registry_is_admitted(m->registry, ids[i].kind, ids[i].value, r->path.label)
                                : -ENODEV;
        free(kid);
        if (k > 0)
                return 0;
        if (k < 0) {
                snprintf(why, size, "cannot look up admitted identities: %s", strerror(-k));
                return 500;
        }
        if (n == 0) {
                snprintf(why, size, "not admitted: no credentials; authenticate with DTLS (PSK or a client "
                         "certificate) or name a CMP sender or senderKID");
                return 401;
        }
        snprintf(why, size, "not admitted: %s %s is not registered with this gateway%s",
                 registry_id_kind_name(ids[0].kind), ids[0].value,
                 n > 1 ? ", nor are the request's other identities" : "");
        return 403;
}

static void log_refusal(Manager *m, const struct request *r, int code, const char *why) {
        uint64_t now = 0;
        char text[8];

        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (log_ratelimit_ok(&m->admission_log, now))
                log_notice("request %llu from %s: %s refused with %s: %s", (unsigned long long) r->id, r->peer,
                           cmp_body_name(r->info.body), coap_code_text(code, text), why);
}

/* A listener's "required" client certificate, per request: its handshakes
 * ask for one (coap_server.c dtls_tls_setup), but a session opened before a
 * reload made it required, or while the running credentials were kept,
 * may have none. A PSK session needs none. */
static int check_client_cert(const struct cmpgw_listen *l, const struct request *r, char *why, size_t size) {
        if (!l || l->client_certificate != CLIENT_CERT_REQUIRED || l->scheme != SCHEME_COAPS ||
            r->psk_identity[0] || r->client_subject[0])
                return 0;
        snprintf(why, size, "not admitted: listener %s has client_certificate required; authenticate with a "
                 "DTLS client certificate", l->uri);
        return 401;
}

int admission_check(Manager *m, const struct request *r, char *why, size_t why_size) {
        const struct cmpgw_config *c = m->config;
        const struct cmpgw_listen *l = admission_listener(c, r->session);
        enum cmpgw_admission policy = policy_of(c, l, r->path.label);
        bool dtls_identity = r->psk_identity[0] || r->client_subject[0];
        bool bound = dtls_identity && !(l && config_listen_is_relay(l, r->psk_identity, r->client_subject));
        struct cmp_protector p;
        int code = 0;

        if ((code = check_client_cert(l, r, why, why_size)) != 0) {
                m->stats.refused_admission++;
                log_refusal(m, r, code, why);
                return code;
        }
        if (policy == ADMISSION_OPEN && !bound)
                return 0;       /* the common case costs no decoding */
        if (cmp_protector_get(r->body, r->body_len, &p) < 0) {
                snprintf(why, why_size, "out of memory");
                return 500;
        }
        if (bound && (code = check_binding(r, &p, why, why_size)) != 0)
                m->stats.refused_identity_mismatch++;
        else if (policy == ADMISSION_REGISTERED && (code = check_registered(m, r, &p, why, why_size)) != 0 &&
                 code != 500)
                m->stats.refused_admission++;
        cmp_protector_clear(&p);
        if (code != 0)
                log_refusal(m, r, code, why);
        return code;
}

/* ---- what the operator gives ---- */

/* as psk_file.c reads them: 1 to PSK_IDENTITY_MAX bytes before the ':' */
static int canonical_psk_identity(const char *text, char **ret, char *why, size_t size) {
        size_t n = strlen(text);
        bool ok = n > 0 && n <= PSK_IDENTITY_MAX && !strchr(text, ':') && text[0] != ' ' && text[n - 1] != ' ';

        for (size_t i = 0; ok && i < n; i++)
                ok = (unsigned char) text[i] >= 0x20 && text[i] != 0x7f;
        if (!ok) {
                snprintf(why, size, "'%s' is not a PSK identity: expected 1 to %d bytes without ':', control "
                         "characters or spaces at either end, as in the listener's psk_file", text, PSK_IDENTITY_MAX);
                return -EINVAL;
        }
        *ret = strdup(text);
        return *ret ? 0 : -ENOMEM;
}

static int canonical_sender_kid(const char *text, char **ret, char *why, size_t size) {
        bool is_hex = (text[0] == '0' && (text[1] == 'x' || text[1] == 'X'));
        size_t n = strlen(text);
        unsigned char *bytes;
        long len = 0;

        if (!is_hex) {
                if (n == 0) {
                        snprintf(why, size, "empty senderKID: give its text (e.g. the reference value 1234) or 0xHEX");
                        return -EINVAL;
                }
                *ret = hex_of((const uint8_t *) text, n);
                return *ret ? 0 : -ENOMEM;
        }
        bytes = n > 2 ? OPENSSL_hexstr2buf(text + 2, &len) : NULL;
        if (!bytes || len <= 0 || strchr(text, ':')) {
                OPENSSL_free(bytes);
                snprintf(why, size, "'%s' is not a senderKID in hex: expected 0x and pairs of hex digits", text);
                return -EINVAL;
        }
        *ret = hex_of(bytes, (size_t) len);
        OPENSSL_free(bytes);
        return *ret ? 0 : -ENOMEM;
}

int admission_canonical(enum registry_id_kind kind, const char *text, char **ret, char *why, size_t why_size) {
        switch (kind) {
        case REG_ID_PSK_IDENTITY:
                return canonical_psk_identity(text, ret, why, why_size);
        case REG_ID_CLIENT_SUBJECT:
        case REG_ID_SENDER:
                *ret = dn_text_canonical(text, why, why_size);
                return *ret ? 0 : -EINVAL;
        case REG_ID_SENDER_KID:
                return canonical_sender_kid(text, ret, why, why_size);
        default:
                snprintf(why, why_size, "unknown kind of identity");
                return -EINVAL;
        }
}
