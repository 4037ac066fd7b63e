/* cmp_genm.c -- genm for RFC 9483 §4.3 support messages, and their genp; see cmp_genm.h */
#include "cmp_genm.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "cmp_asn1.h"
#include "cmp_content.h"
#include "cmp_msg.h"
#include "cmp_protection.h"
#include "log.h"

/* RFC 9483 §4.3 (id-it = 1.3.6.1.5.5.7.4): what the genm asks with, what
 * the genp answers with */
static const struct {
        const char *name, *ask, *answer, *section;
} kinds[_CMP_GENM_KIND_MAX] = {
        [CMP_GENM_CA_CERTS] = { "caCerts", "1.3.6.1.5.5.7.4.17", "1.3.6.1.5.5.7.4.17", "4.3.1" },
        [CMP_GENM_ROOT_CA_UPDATE] = { "rootCaUpdate", "1.3.6.1.5.5.7.4.20", "1.3.6.1.5.5.7.4.18", "4.3.2" },
        [CMP_GENM_CRLS] = { "crls", "1.3.6.1.5.5.7.4.22", "1.3.6.1.5.5.7.4.23", "4.3.4" },
};

const char *cmp_genm_kind_name(enum cmp_genm_kind kind) {
        return (unsigned) kind < _CMP_GENM_KIND_MAX ? kinds[kind].name : "?";
}

/* ---- credentials ---- */

void cmp_genm_creds_clear(struct cmp_genm_creds *c) {
        X509_free(c->cert);
        EVP_PKEY_free(c->key);
        sk_X509_pop_free(c->chain, X509_free);
        memset(c, 0, sizeof *c);
}

/* no passphrase: an encrypted key fails instead of asking a terminal */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
        return -1;
}

static int read_certs(const char *file, struct cmp_genm_creds *c, char **why) {
        BIO *b = BIO_new_file(file, "r");
        X509 *x;

        if (!b)
                return log_reason(why, -EINVAL, "cannot read %s: %s", file, strerror(errno));
        while ((x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL))) {
                if (!c->cert) {
                        c->cert = x;
                        continue;
                }
                if (!sk_X509_push(c->chain, x)) {
                        X509_free(x);
                        BIO_free(b);
                        return log_reason(why, -ENOMEM, "out of memory");
                }
        }
        BIO_free(b);
        if (!c->cert)
                return log_reason(why, -EINVAL, "%s holds no PEM certificate", file);
        return 0;
}

int cmp_genm_creds_load(const char *cert_file, const char *key_file, struct cmp_genm_creds *c, char **why) {
        BIO *b;
        int k;

        *why = NULL;
        memset(c, 0, sizeof *c);
        if (!(c->chain = sk_X509_new_null()))
                return -ENOMEM;
        if ((k = read_certs(cert_file, c, why)) < 0) {
                cmp_genm_creds_clear(c);
                ERR_clear_error();
                return k;
        }
        b = BIO_new_file(key_file, "r");
        if (b)
                c->key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
        BIO_free(b);
        if (!c->key)
                k = log_reason(why, -EINVAL, "cannot read an unencrypted PEM private key from %s", key_file);
        else if (X509_check_private_key(c->cert, c->key) != 1)
                k = log_reason(why, -EINVAL, "the key in %s does not belong to the certificate in %s",
                               key_file, cert_file);
        if (k < 0)
                cmp_genm_creds_clear(c);
        ERR_clear_error();
        return k;
}

/* ---- building ---- */

struct kept_request {
        unsigned char *der;
        int len;
};

/* The transfer callback: keep the genm, send nothing (the caller sends it
 * without blocking). OpenSSL then gives up on the exchange, as intended. */
static OSSL_CMP_MSG *keep_request(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req) {
        struct kept_request *k = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);

        if (!k->der)
                k->len = i2d_OSSL_CMP_MSG(req, &k->der);
        return NULL;
}

static int quiet(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg) {
        return 1;
}

/* RFC 9483 §4.3.4: one CRLStatus per issuer, source = issuer (a
 * directoryName), thisUpdate of the CRL held when there is one */
static ASN1_TYPE *crl_status_list(const struct cmp_crl_status *crls, size_t n) {
        STACK_OF(CMPGW_CRLSTATUS) *list = sk_CMPGW_CRLSTATUS_new_null();
        ASN1_TYPE *t = NULL;

        for (size_t i = 0; list && i < n; i++) {
                CMPGW_CRLSTATUS *st = (CMPGW_CRLSTATUS *) ASN1_item_new(ASN1_ITEM_rptr(CMPGW_CRLSTATUS));
                GENERAL_NAME *gn = GENERAL_NAME_new();
                X509_NAME *name = X509_NAME_dup(crls[i].issuer);

                if (!st || !sk_CMPGW_CRLSTATUS_push(list, st)) {
                        ASN1_item_free((ASN1_VALUE *) st, ASN1_ITEM_rptr(CMPGW_CRLSTATUS));
                        GENERAL_NAME_free(gn);
                        X509_NAME_free(name);
                        goto out;
                }
                if (!gn || !name) {
                        GENERAL_NAME_free(gn);
                        X509_NAME_free(name);
                        goto out;
                }
                GENERAL_NAME_set0_value(gn, GEN_DIRNAME, name);
                st->source->type = 1;           /* issuer [1] GeneralNames */
                if (!(st->source->value.issuer = sk_GENERAL_NAME_new_null()) ||
                    !sk_GENERAL_NAME_push(st->source->value.issuer, gn)) {
                        GENERAL_NAME_free(gn);
                        goto out;
                }
                if (crls[i].this_update > 0 && !(st->this_update = ASN1_TIME_set(NULL, (time_t) crls[i].this_update)))
                        goto out;
        }
        if (list)
                ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(CMPGW_CRLSTATUSLIST), list, &t);
out:
        ASN1_item_free((ASN1_VALUE *) list, ASN1_ITEM_rptr(CMPGW_CRLSTATUSLIST));
        return t;
}

/* The InfoTypeAndValue of the request; NULL on error */
static OSSL_CMP_ITAV *request_itav(const struct cmp_genm_args *a) {
        ASN1_OBJECT *type = OBJ_txt2obj(kinds[a->kind].ask, 1);
        ASN1_TYPE *value = NULL;
        OSSL_CMP_ITAV *itav;

        if (!type)
                return NULL;
        /* §4.3.1: caCerts has no value; §4.3.2: the root to update, if known */
        if (a->kind == CMP_GENM_ROOT_CA_UPDATE && a->old_root)
                value = ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(X509), a->old_root, NULL);
        else if (a->kind == CMP_GENM_CRLS)
                value = crl_status_list(a->crls, a->n_crls);
        if ((a->kind == CMP_GENM_CRLS || (a->kind == CMP_GENM_ROOT_CA_UPDATE && a->old_root)) && !value) {
                ASN1_OBJECT_free(type);
                return NULL;
        }
        itav = OSSL_CMP_ITAV_create(type, value);
        if (!itav) {
                ASN1_OBJECT_free(type);
                ASN1_TYPE_free(value);
        }
        return itav;
}

int cmp_genm_build(const struct cmp_genm_creds *creds, const struct cmp_genm_args *args,
                   uint8_t **der, size_t *len, char **why) {
        struct kept_request kept = { NULL, 0 };
        OSSL_CMP_CTX *ctx;
        OSSL_CMP_ITAV *itav;
        STACK_OF(OSSL_CMP_ITAV) *none;

        *why = NULL;
        if ((unsigned) args->kind >= _CMP_GENM_KIND_MAX || (args->kind == CMP_GENM_CRLS && args->n_crls == 0))
                return log_reason(why, -EINVAL, "nothing to ask for");
        ctx = OSSL_CMP_CTX_new(NULL, NULL);
        if (!ctx)
                return -ENOMEM;
        OSSL_CMP_CTX_set_log_cb(ctx, quiet);
        /* signature protection; the chain goes into extraCerts (RFC 9483 §3.3) */
        if (!OSSL_CMP_CTX_set1_cert(ctx, creds->cert) || !OSSL_CMP_CTX_set1_pkey(ctx, creds->key) ||
            (sk_X509_num(creds->chain) > 0 && !OSSL_CMP_CTX_set1_untrusted(ctx, creds->chain)) ||
            !OSSL_CMP_CTX_set_transfer_cb(ctx, keep_request) || !OSSL_CMP_CTX_set_transfer_cb_arg(ctx, &kept) ||
            !(itav = request_itav(args))) {
                OSSL_CMP_CTX_free(ctx);
                ERR_clear_error();
                return log_reason(why, -ENOMEM, "cannot set up the genm");
        }
        if (!OSSL_CMP_CTX_push0_genm_ITAV(ctx, itav)) {
                OSSL_CMP_ITAV_free(itav);
                OSSL_CMP_CTX_free(ctx);
                ERR_clear_error();
                return log_reason(why, -ENOMEM, "cannot set up the genm");
        }
        none = OSSL_CMP_exec_GENM_ses(ctx);     /* stops at keep_request() */
        sk_OSSL_CMP_ITAV_pop_free(none, OSSL_CMP_ITAV_free);
        OSSL_CMP_CTX_free(ctx);
        if (!kept.der || kept.len <= 0) {
                unsigned long e = ERR_peek_last_error();
                log_reason(why, -EINVAL, "OpenSSL cannot make the genm: %s",
                           e ? ERR_reason_error_string(e) : "no reason given");
                ERR_clear_error();
                return -EINVAL;
        }
        ERR_clear_error();
        *der = kept.der;
        *len = (size_t) kept.len;
        return 0;
}

/* ---- the answer ---- */

void cmp_genp_clear(struct cmp_genp *p) {
        sk_X509_pop_free(p->ca_certs, X509_free);
        X509_free(p->new_with_new);
        X509_free(p->new_with_old);
        X509_free(p->old_with_new);
        sk_X509_CRL_pop_free(p->crls, X509_CRL_free);
        sk_X509_pop_free(p->extra_certs, X509_free);
        memset(p, 0, sizeof *p);
}

static CMPGW_MSG *msg_decode(const uint8_t *der, size_t len) {
        const unsigned char *p = der;
        CMPGW_MSG *m;

        if (len == 0 || len > LONG_MAX)
                return NULL;
        m = (CMPGW_MSG *) ASN1_item_d2i(NULL, &p, (long) len, ASN1_ITEM_rptr(CMPGW_MSG));
        if (m && (size_t) (p - der) != len) {
                ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
                m = NULL;
        }
        return m;
}

static bool same_octets(const ASN1_OCTET_STRING *a, const ASN1_OCTET_STRING *b) {
        return a && b && ASN1_OCTET_STRING_cmp(a, b) == 0;
}

static int error_body(const uint8_t *der, size_t len, char **why) {
        struct cmp_content *c = NULL;
        char *detail = NULL;
        int k;

        if (cmp_content_parse(der, len, &c) == 0)
                detail = cmp_content_status_detail(c);
        k = log_reason(why, -EPROTO, "the server answered with an error message: %s", detail ? detail : "(unreadable)");
        free(detail);
        cmp_content_free(c);
        return k;
}

/* RFC 4210 §5.1.3: the genp must be signed by a signer chaining to TRUSTED */
static int check_protection(const uint8_t *der, size_t len, X509_STORE *trusted, char **why) {
        char reason[1024];
        int k;

        switch (cmp_protection_kind(der, len)) {
        case CMP_PROT_NONE:
                return log_reason(why, -EPERM, "the genp is not protected");
        case CMP_PROT_MAC:
                return log_reason(why, -EPERM, "the genp is MAC-protected; the gateway shares no secret with the "
                                  "server and takes signatures only");
        case CMP_PROT_SIGNATURE:
                k = cmp_protection_verify(der, len, trusted, NULL, reason, sizeof reason);
                return k < 0 ? log_reason(why, k, "%s", reason) : 0;
        default:
                return log_reason(why, -EBADMSG, "not a PKIMessage");
        }
}

/* The header must answer the genm's (RFC 4210 §5.1.1) */
static int check_header(const CMPGW_MSG *genm, const CMPGW_MSG *m, char **why) {
        if (!same_octets(m->header->transaction_id, genm->header->transaction_id))
                return log_reason(why, -EBADMSG, "its transactionID is not the genm's (RFC 4210 section 5.1.1)");
        if (!same_octets(m->header->recip_nonce, genm->header->sender_nonce))
                return log_reason(why, -EBADMSG,
                                  "its recipNonce is not the genm's senderNonce (RFC 4210 section 5.1.1)");
        return 0;
}

static int take_value(enum cmp_genm_kind kind, const ASN1_STRING *seq, struct cmp_genp *p) {
        const ASN1_ITEM *items[] = {
                [CMP_GENM_CA_CERTS] = ASN1_ITEM_rptr(CMPGW_CERTS),
                [CMP_GENM_ROOT_CA_UPDATE] = ASN1_ITEM_rptr(CMPGW_ROOTCAKEYUPDATE),
                [CMP_GENM_CRLS] = ASN1_ITEM_rptr(CMPGW_CRLS),
        };
        void *v = ASN1_item_unpack(seq, items[kind]);
        CMPGW_ROOTCAKEYUPDATE *r = v;

        if (!v)
                return -EBADMSG;
        switch (kind) {
        case CMP_GENM_CA_CERTS:
                p->ca_certs = v;
                p->absent = sk_X509_num(p->ca_certs) == 0;
                return 0;
        case CMP_GENM_ROOT_CA_UPDATE:
                p->new_with_new = r->new_with_new;
                p->new_with_old = r->new_with_old;
                p->old_with_new = r->old_with_new;
                r->new_with_new = r->new_with_old = r->old_with_new = NULL;
                ASN1_item_free((ASN1_VALUE *) r, items[kind]);
                return 0;
        default:
                p->crls = v;
                p->absent = sk_X509_CRL_num(p->crls) == 0;
                return 0;
        }
}

/* GenRepContent: the InfoTypeAndValue of KIND's answer type */
static int read_content(const CMPGW_MSG *m, enum cmp_genm_kind kind, struct cmp_genp *p, char **why) {
        const ASN1_TYPE *any = m->body->value.other;
        ASN1_OBJECT *want = OBJ_txt2obj(kinds[kind].answer, 1);
        STACK_OF(CMPGW_ITAV) *itavs = NULL;
        const CMPGW_ITAV *found = NULL;
        int k = 0;

        if (!want)
                return -ENOMEM;
        if (any && any->type == V_ASN1_SEQUENCE)
                itavs = ASN1_item_unpack(any->value.sequence, ASN1_ITEM_rptr(CMPGW_GENMSG));
        for (int i = 0; i < sk_CMPGW_ITAV_num(itavs) && !found; i++)
                if (OBJ_cmp(sk_CMPGW_ITAV_value(itavs, i)->type, want) == 0)
                        found = sk_CMPGW_ITAV_value(itavs, i);
        if (!itavs)
                k = log_reason(why, -EBADMSG, "its GenRepContent does not decode");
        else if (!found)
                k = log_reason(why, -EBADMSG, "it carries no InfoTypeAndValue %s (RFC 9483 section %s)",
                               kinds[kind].answer, kinds[kind].section);
        else if (!found->value)
                p->absent = true;       /* nothing (newer) to give */
        else if (found->value->type != V_ASN1_SEQUENCE || take_value(kind, found->value->value.sequence, p) < 0)
                k = log_reason(why, -EBADMSG, "the value of %s does not decode (RFC 9483 section %s)",
                               kinds[kind].answer, kinds[kind].section);
        ASN1_item_free((ASN1_VALUE *) itavs, ASN1_ITEM_rptr(CMPGW_GENMSG));
        ASN1_OBJECT_free(want);
        return k;
}

int cmp_genp_read(const uint8_t *genm, size_t genm_len, const uint8_t *der, size_t len,
                  enum cmp_genm_kind kind, X509_STORE *trusted, struct cmp_genp *p, char **why) {
        CMPGW_MSG *q = msg_decode(genm, genm_len), *m = msg_decode(der, len);
        int k;

        *why = NULL;
        memset(p, 0, sizeof *p);
        if (!q || (unsigned) kind >= _CMP_GENM_KIND_MAX)
                k = log_reason(why, -EINVAL, "no genm to compare with");
        else if (!m)
                k = log_reason(why, -EBADMSG, "not one DER PKIMessage");
        else if (m->body->type == CMP_BODY_ERROR)
                k = error_body(der, len, why);
        else if (m->body->type != CMP_BODY_GENP)
                k = log_reason(why, -EBADMSG, "a %s PKIMessage, not a genp", cmp_body_name(m->body->type));
        else if ((k = check_protection(der, len, trusted, why)) >= 0 && (k = check_header(q, m, why)) >= 0 &&
                 (k = read_content(m, kind, p, why)) >= 0) {
                p->extra_certs = m->extra_certs;
                m->extra_certs = NULL;
        }
        if (k < 0)
                cmp_genp_clear(p);
        ASN1_item_free((ASN1_VALUE *) q, ASN1_ITEM_rptr(CMPGW_MSG));
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
        ERR_clear_error();
        return k;
}
