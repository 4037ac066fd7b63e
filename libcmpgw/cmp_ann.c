/* cmp_ann.c -- CMP announcement PKIMessages: parse, validate, build
 *
 * See cmp_ann.h. The templates of cmp_asn1.h encode as well as decode,
 * which is how cmp_ann_build() makes a message OpenSSL 3.0 has no public
 * way to make. */
#include "cmp_ann.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/asn1t.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "cmp_asn1.h"
#include "cmp_content.h"
#include "cmp_protection.h"
#include "log.h"

/* ---- small helpers ---- */

static const char *const kind_names[] = { "ckuann", "cann", "rann", "crlann" };

bool cmp_ann_kind_valid(int kind) {
        return kind >= CMP_ANN_CKUANN && kind <= CMP_ANN_CRLANN;
}

const char *cmp_ann_kind_name(int kind) {
        return cmp_ann_kind_valid(kind) ? kind_names[kind - CMP_ANN_CKUANN] : "?";
}

static int time_to_unix(const ASN1_TIME *t, int64_t *ret) {
        struct tm tm;

        if (!t || !ASN1_TIME_to_tm(t, &tm))
                return -EBADMSG;
        *ret = (int64_t) timegm(&tm);
        return 0;
}

static char *hex_lower(const unsigned char *p, size_t n) {
        char *s = malloc(2 * n + 1);

        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++)
                snprintf(s + 2 * i, 3, "%02x", p[i]);
        s[2 * n] = '\0';
        return s;
}

/* hex SHA-1 of the DER Name: a stable file name for an issuer */
static char *name_key(const X509_NAME *name) {
        unsigned char md[EVP_MAX_MD_SIZE], *der = NULL;
        unsigned int mdlen = 0;
        int n = i2d_X509_NAME(name, &der);
        char *s = NULL;

        if (n <= 0)
                return NULL;
        if (EVP_Digest(der, (size_t) n, md, &mdlen, EVP_sha1(), NULL))
                s = hex_lower(md, mdlen);
        OPENSSL_free(der);
        return s;
}

static int reason_of(STACK_OF(X509_EXTENSION) *exts) {
        ASN1_ENUMERATED *e = X509V3_get_d2i(exts, NID_crl_reason, NULL, NULL);
        int r = -1;

        if (e) {
                r = (int) ASN1_ENUMERATED_get(e);
                ASN1_ENUMERATED_free(e);
        }
        return r;
}

/* ---- CRLs ---- */

void cmp_ann_crl_clear(struct cmp_ann_crl *c) {
        X509_CRL_free(c->crl);
        free(c->issuer);
        free(c->issuer_key);
        free(c->crl_number);
        for (size_t i = 0; i < c->n_revoked; i++)
                free(c->revoked[i].serial);
        free(c->revoked);
        OPENSSL_free(c->der);
        memset(c, 0, sizeof *c);
}

/* Fills C from CRL, taking a reference. */
/* RFC 5280 §5.2.3: the CRL number, shown in decimal as `openssl crl` does */
static char *integer_decimal(const ASN1_INTEGER *i) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(i, NULL);
        char *dec, *ret;

        if (!bn)
                return NULL;
        dec = BN_bn2dec(bn);
        BN_free(bn);
        if (!dec)
                return NULL;
        ret = strdup(dec);
        OPENSSL_free(dec);
        return ret;
}

static int crl_fill(struct cmp_ann_crl *c, X509_CRL *crl) {
        STACK_OF(X509_REVOKED) *revs;
        ASN1_INTEGER *num;
        unsigned char *der = NULL;
        int n;

        memset(c, 0, sizeof *c);
        if (!X509_CRL_up_ref(crl))
                return -ENOMEM;
        c->crl = crl;
        if (time_to_unix(X509_CRL_get0_lastUpdate(crl), &c->this_update) < 0)
                goto bad;
        if (X509_CRL_get0_nextUpdate(crl) && time_to_unix(X509_CRL_get0_nextUpdate(crl), &c->next_update) < 0)
                goto bad;
        n = i2d_X509_CRL(crl, &der);
        if (n <= 0)
                goto bad;
        c->der = der;
        c->der_len = (size_t) n;
        if (!(c->issuer = cmp_name_rfc2253(X509_CRL_get_issuer(crl))) ||
            !(c->issuer_key = name_key(X509_CRL_get_issuer(crl))))
                goto nomem;
        num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
        if (num) {
                c->crl_number = integer_decimal(num);
                ASN1_INTEGER_free(num);
                if (!c->crl_number)
                        goto nomem;
        }
        revs = X509_CRL_get_REVOKED(crl);
        n = sk_X509_REVOKED_num(revs);
        if (n > 0) {
                c->revoked = calloc((size_t) n, sizeof *c->revoked);
                if (!c->revoked)
                        goto nomem;
        }
        for (int i = 0; i < n; i++) {
                X509_REVOKED *rv = sk_X509_REVOKED_value(revs, i);
                struct cmp_ann_revoked *e = &c->revoked[c->n_revoked];

                if (time_to_unix(X509_REVOKED_get0_revocationDate(rv), &e->date) < 0)
                        goto bad;
                e->reason = reason_of((STACK_OF(X509_EXTENSION) *) X509_REVOKED_get0_extensions(rv));
                if (!(e->serial = cmp_integer_hex(X509_REVOKED_get0_serialNumber(rv))))
                        goto nomem;
                c->n_revoked++;
        }
        return 0;
bad:
        cmp_ann_crl_clear(c);
        return -EBADMSG;
nomem:
        cmp_ann_crl_clear(c);
        return -ENOMEM;
}

int cmp_ann_crl_from_der(const uint8_t *der, size_t len, struct cmp_ann_crl *c) {
        const unsigned char *p = der;
        X509_CRL *crl;
        int k;

        memset(c, 0, sizeof *c);
        if (len == 0 || len > LONG_MAX)
                return -EBADMSG;
        crl = d2i_X509_CRL(NULL, &p, (long) len);
        if (!crl || (size_t) (p - der) != len) {
                X509_CRL_free(crl);
                ERR_clear_error();
                return -EBADMSG;
        }
        k = crl_fill(c, crl);
        X509_CRL_free(crl);
        return k;
}

/* numbers in decimal without leading zeros: longer is larger */
static int number_compare(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);

        if (la != lb)
                return la < lb ? -1 : 1;
        return strcmp(a, b);
}

int cmp_ann_crl_compare(const struct cmp_ann_crl *a, const struct cmp_ann_crl *b) {
        if (a->crl_number && b->crl_number) {
                int c = number_compare(a->crl_number, b->crl_number);
                if (c != 0)
                        return c;
        }
        if (a->this_update != b->this_update)
                return a->this_update < b->this_update ? -1 : 1;
        return 0;
}

bool cmp_ann_crl_lists(const struct cmp_ann_crl *c, const char *serial) {
        for (size_t i = 0; i < c->n_revoked; i++)
                if (strcmp(c->revoked[i].serial, serial) == 0)
                        return true;
        return false;
}

/* ---- parsing ---- */

struct cmp_ann *cmp_ann_free(struct cmp_ann *a) {
        if (!a)
                return NULL;
        free(a->sender);
        X509_free(a->old_with_new);
        X509_free(a->new_with_old);
        X509_free(a->new_with_new);
        X509_free(a->cert);
        free(a->subject);
        free(a->serial);
        free(a->rann_issuer);
        for (size_t i = 0; i < a->n_crls; i++)
                cmp_ann_crl_clear(&a->crls[i]);
        free(a->crls);
        sk_X509_pop_free(a->extra_certs, X509_free);
        free(a);
        return NULL;
}

static X509 *ref(X509 *x) {
        return x && X509_up_ref(x) ? x : NULL;
}

static int take_cert(struct cmp_ann *a, X509 *x) {
        if (!(a->subject = cmp_name_rfc2253(X509_get_subject_name(x))) ||
            !(a->serial = cmp_integer_hex(X509_get0_serialNumber(x))))
                return -ENOMEM;
        return 0;
}

static int take_body(struct cmp_ann *a, const CMPGW_BODY *b, const char **why) {
        switch (b->type) {
        case CMP_ANN_CKUANN:
                a->old_with_new = ref(b->value.ckuann->old_with_new);
                a->new_with_old = ref(b->value.ckuann->new_with_old);
                a->new_with_new = ref(b->value.ckuann->new_with_new);
                if (!a->old_with_new || !a->new_with_old || !a->new_with_new)
                        return -ENOMEM;
                return take_cert(a, a->new_with_new);
        case CMP_ANN_CANN:
                if (!(a->cert = ref(b->value.cann)))
                        return -ENOMEM;
                return take_cert(a, a->cert);
        case CMP_ANN_RANN: {
                const CMPGW_RANN *r = b->value.rann;
                const X509_NAME *issuer = OSSL_CRMF_CERTID_get0_issuer(r->cert_id);
                long st = ASN1_INTEGER_get(r->status);

                if (!issuer) {
                        *why = "RevAnnContent: the certId's issuer is not a directoryName";
                        return -EBADMSG;
                }
                if (st < 0 || st > 6) {
                        *why = "RevAnnContent: unknown PKIStatus";
                        return -EBADMSG;
                }
                a->rann_status = (int) st;
                if (time_to_unix(r->will_be_revoked_at, &a->will_be_revoked_at) < 0 ||
                    time_to_unix(r->bad_since_date, &a->bad_since_date) < 0) {
                        *why = "RevAnnContent: bad willBeRevokedAt or badSinceDate";
                        return -EBADMSG;
                }
                a->rann_reason = r->crl_details ? reason_of(r->crl_details) : -1;
                if (!(a->rann_issuer = cmp_name_rfc2253(issuer)) ||
                    !(a->serial = cmp_integer_hex(OSSL_CRMF_CERTID_get0_serialNumber(r->cert_id))))
                        return -ENOMEM;
                return 0;
        }
        case CMP_ANN_CRLANN: {
                int n = sk_X509_CRL_num(b->value.crlann);

                if (n <= 0) {
                        *why = "CRLAnnContent holds no CRL";
                        return -EBADMSG;
                }
                a->crls = calloc((size_t) n, sizeof *a->crls);
                if (!a->crls)
                        return -ENOMEM;
                for (int i = 0; i < n; i++) {
                        int k = crl_fill(&a->crls[i], sk_X509_CRL_value(b->value.crlann, i));
                        if (k < 0) {
                                *why = "CRLAnnContent: a CRL without a usable thisUpdate, nextUpdate or revocationDate";
                                return k;
                        }
                        a->n_crls++;
                }
                return 0;
        }
        default:
                *why = "not an announcement";
                return -EBADMSG;
        }
}

int cmp_ann_parse(const uint8_t *der, size_t len, struct cmp_ann **ret, const char **why) {
        const unsigned char *p = der;
        OSSL_CMP_MSG *msg;
        CMPGW_MSG *m = NULL;
        struct cmp_ann *a = NULL;
        int body, k = -EBADMSG;

        *why = NULL;
        if (len == 0 || len > LONG_MAX) {
                *why = "empty message";
                return -EBADMSG;
        }
        msg = d2i_OSSL_CMP_MSG(NULL, &p, (long) len);
        if (!msg || (size_t) (p - der) != len) {
                *why = msg ? "trailing bytes after the PKIMessage" : "not a DER PKIMessage";
                goto out;
        }
        body = OSSL_CMP_MSG_get_bodytype(msg);
        if (!cmp_ann_kind_valid(body)) {
                *why = "not an announcement (the body is not ckuann, cann, rann or crlann)";
                goto out;
        }
        p = der;
        m = (CMPGW_MSG *) ASN1_item_d2i(NULL, &p, (long) len, ASN1_ITEM_rptr(CMPGW_MSG));
        if (!m || (size_t) (p - der) != len || m->body->type != body) {
                *why = "the announcement body does not decode (RFC 4210, section 5.3.13-16)";
                goto out;
        }
        a = calloc(1, sizeof *a);
        if (!a) {
                k = -ENOMEM;
                goto out;
        }
        a->kind = body;
        a->rann_reason = -1;
        if (m->header->sender->type == GEN_DIRNAME)
                a->sender = cmp_name_rfc2253(m->header->sender->d.directoryName);
        else
                a->sender = strdup("(not a directoryName)");
        if (!a->sender) {
                k = -ENOMEM;
                goto out;
        }
        if (m->extra_certs) {
                a->extra_certs = sk_X509_new_null();
                if (!a->extra_certs) {
                        k = -ENOMEM;
                        goto out;
                }
                for (int i = 0; i < sk_X509_num(m->extra_certs); i++) {
                        X509 *x = ref(sk_X509_value(m->extra_certs, i));
                        if (!x || !sk_X509_push(a->extra_certs, x)) {
                                X509_free(x);
                                k = -ENOMEM;
                                goto out;
                        }
                }
        }
        k = take_body(a, m->body, why);
out:
        if (k < 0) {
                if (k == -ENOMEM)
                        *why = "out of memory";
                else if (!*why)
                        *why = "malformed announcement";
                a = cmp_ann_free(a);
        }
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
        OSSL_CMP_MSG_free(msg);
        ERR_clear_error();
        if (k >= 0)
                *ret = a;
        return k;
}

/* ---- trust ---- */

int cmp_ann_load_trust(const char *path, X509_STORE **ret, char **why) {
        X509_STORE *st = X509_STORE_new();
        STACK_OF(X509) *all;
        int n;

        *why = NULL;
        if (!st)
                return -ENOMEM;
        if (!X509_STORE_load_file(st, path)) {
                X509_STORE_free(st);
                ERR_clear_error();
                if (asprintf(why, "cannot read trust anchors (PEM certificates) from %s", path) < 0)
                        *why = NULL;
                return -EINVAL;
        }
        all = X509_STORE_get1_all_certs(st);
        n = sk_X509_num(all);
        sk_X509_pop_free(all, X509_free);
        if (n <= 0) {
                X509_STORE_free(st);
                if (asprintf(why, "%s holds no certificate", path) < 0)
                        *why = NULL;
                return -EINVAL;
        }
        *ret = st;
        return 0;
}

static bool verify_chain(X509_STORE *trusted, X509 *x, STACK_OF(X509) *untrusted) {
        X509_STORE_CTX *sctx = X509_STORE_CTX_new();
        bool ok = false;

        if (sctx && X509_STORE_CTX_init(sctx, trusted, x, untrusted))
                ok = X509_verify_cert(sctx) == 1;
        X509_STORE_CTX_free(sctx);
        return ok;
}

static bool may_sign_crls(X509 *x) {
        return !(X509_get_extension_flags(x) & EXFLAG_KUSAGE) || (X509_get_key_usage(x) & KU_CRL_SIGN);
}

/* Which certificate verifies the CRL: a trust anchor, or an extraCerts CA
 * certificate that chains to one. */
static int verify_crl(const struct cmp_ann_crl *c, X509_STORE *trusted, STACK_OF(X509) *extra,
                      size_t index, char **why) {
        STACK_OF(X509) *anchors = X509_STORE_get1_all_certs(trusted);
        const X509_NAME *issuer = X509_CRL_get_issuer(c->crl);
        bool named = false, ok = false;

        for (int pass = 0; pass < 2 && !ok; pass++) {
                STACK_OF(X509) *set = pass == 0 ? anchors : extra;

                for (int i = 0; i < sk_X509_num(set) && !ok; i++) {
                        X509 *x = sk_X509_value(set, i);
                        EVP_PKEY *pk = X509_get0_pubkey(x);

                        if (X509_NAME_cmp(X509_get_subject_name(x), issuer) != 0)
                                continue;
                        named = true;
                        if (!pk || X509_CRL_verify(c->crl, pk) != 1 || !may_sign_crls(x))
                                continue;
                        ok = pass == 0 || verify_chain(trusted, x, extra);
                }
        }
        sk_X509_pop_free(anchors, X509_free);
        ERR_clear_error();
        if (ok)
                return 0;
        return log_reason(why, -EPERM, named ?
                          "CRL %zu (issuer %s): its signature does not verify with a trusted issuer certificate" :
                          "CRL %zu (issuer %s): no issuer certificate among the trust anchors or the extraCerts",
                          index + 1, c->issuer);
}

int cmp_ann_validate(const uint8_t *der, size_t len, const struct cmp_ann *a,
                     X509_STORE *trusted, char **why) {
        char reason[1024];
        int k;

        *why = NULL;
        if (!trusted)
                return log_reason(why, -EPERM,
                                  "no trust anchors for announcements are configured (announcements.trusted)");
        k = cmp_protection_verify(der, len, trusted, a->extra_certs, reason, sizeof reason);
        if (k < 0)
                return log_reason(why, k, "%s", reason);
        for (size_t i = 0; i < a->n_crls && k == 0; i++)
                k = verify_crl(&a->crls[i], trusted, a->extra_certs, i, why);
        return k;
}

/* ---- building ---- */

static ASN1_OCTET_STRING *random_octets(size_t n) {
        unsigned char buf[32];
        ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();

        if (!os || n > sizeof buf || RAND_bytes(buf, (int) n) != 1 ||
            !ASN1_OCTET_STRING_set(os, buf, (int) n)) {
                ASN1_OCTET_STRING_free(os);
                return NULL;
        }
        return os;
}

/* protectionAlg for KEY: SHA-256 with its signature algorithm, or Ed25519/Ed448 */
static X509_ALGOR *signature_alg(EVP_PKEY *key, const EVP_MD **md) {
        int base = EVP_PKEY_get_base_id(key), sig_nid = NID_undef;
        X509_ALGOR *alg;

        *md = NULL;
        if (base == EVP_PKEY_ED25519 || base == EVP_PKEY_ED448)
                sig_nid = base == EVP_PKEY_ED25519 ? NID_ED25519 : NID_ED448;
        else if (OBJ_find_sigid_by_algs(&sig_nid, NID_sha256, base))
                *md = EVP_sha256();
        else
                return NULL;
        alg = X509_ALGOR_new();
        if (alg && !X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), base == EVP_PKEY_RSA ? V_ASN1_NULL : V_ASN1_UNDEF, NULL)) {
                X509_ALGOR_free(alg);
                return NULL;
        }
        return alg;
}

static CMPGW_BODY *build_body(const struct cmp_ann_spec *s) {
        CMPGW_BODY *b = (CMPGW_BODY *) ASN1_item_new(ASN1_ITEM_rptr(CMPGW_BODY));

        if (!b)
                return NULL;
        b->type = s->kind;
        switch (s->kind) {
        case CMP_ANN_CKUANN:
                b->value.ckuann = (CMPGW_CKUANN *) ASN1_item_new(ASN1_ITEM_rptr(CMPGW_CKUANN));
                if (!b->value.ckuann)
                        goto fail;
                X509_free(b->value.ckuann->old_with_new);
                X509_free(b->value.ckuann->new_with_old);
                X509_free(b->value.ckuann->new_with_new);
                b->value.ckuann->old_with_new = ref(s->certs[0]);
                b->value.ckuann->new_with_old = ref(s->certs[1]);
                b->value.ckuann->new_with_new = ref(s->certs[2]);
                if (!b->value.ckuann->old_with_new || !b->value.ckuann->new_with_old || !b->value.ckuann->new_with_new)
                        goto fail;
                return b;
        case CMP_ANN_CANN:
                if (!(b->value.cann = ref(s->certs[0])))
                        goto fail;
                return b;
        case CMP_ANN_RANN: {
                CMPGW_RANN *r;

                if (!s->rann)
                        goto fail;
                r = b->value.rann = (CMPGW_RANN *) ASN1_item_new(ASN1_ITEM_rptr(CMPGW_RANN));
                if (!r || !ASN1_INTEGER_set(r->status, s->rann->status))
                        goto fail;
                OSSL_CRMF_CERTID_free(r->cert_id);
                r->cert_id = OSSL_CRMF_CERTID_gen(s->rann->issuer, s->rann->serial);
                if (!r->cert_id ||
                    !ASN1_GENERALIZEDTIME_set(r->will_be_revoked_at, (time_t) s->rann->will_be_revoked_at) ||
                    !ASN1_GENERALIZEDTIME_set(r->bad_since_date, (time_t) s->rann->bad_since_date))
                        goto fail;
                if (s->rann->reason >= 0) {
                        ASN1_ENUMERATED *e = ASN1_ENUMERATED_new();
                        int ok = e && ASN1_ENUMERATED_set(e, s->rann->reason) &&
                                 X509V3_add1_i2d(&r->crl_details, NID_crl_reason, e, 0, X509V3_ADD_DEFAULT) == 1;
                        ASN1_ENUMERATED_free(e);
                        if (!ok)
                                goto fail;
                }
                return b;
        }
        case CMP_ANN_CRLANN:
                if (s->n_crls == 0 || !(b->value.crlann = sk_X509_CRL_new_null()))
                        goto fail;
                for (size_t i = 0; i < s->n_crls; i++) {
                        if (!X509_CRL_up_ref(s->crls[i]))
                                goto fail;
                        if (!sk_X509_CRL_push(b->value.crlann, s->crls[i])) {
                                X509_CRL_free(s->crls[i]);
                                goto fail;
                        }
                }
                return b;
        default:
                goto fail;
        }
fail:
        ASN1_item_free((ASN1_VALUE *) b, ASN1_ITEM_rptr(CMPGW_BODY));
        return NULL;
}

static CMPGW_HEADER *build_header(X509 *signer, X509_ALGOR *alg) {
        CMPGW_HEADER *h = (CMPGW_HEADER *) ASN1_item_new(ASN1_ITEM_rptr(CMPGW_HEADER));
        const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(signer);
        X509_NAME *sender, *null_dn;

        if (!h)
                return NULL;
        h->protection_alg = alg;
        if (!ASN1_INTEGER_set(h->pvno, 2))      /* cmp2000 */
                goto fail;
        sender = X509_NAME_dup(X509_get_subject_name(signer));
        null_dn = X509_NAME_new();
        if (!sender || !null_dn) {
                X509_NAME_free(sender);
                X509_NAME_free(null_dn);
                goto fail;
        }
        GENERAL_NAME_set0_value(h->sender, GEN_DIRNAME, sender);
        GENERAL_NAME_set0_value(h->recipient, GEN_DIRNAME, null_dn);
        if (!(h->message_time = ASN1_GENERALIZEDTIME_set(NULL, time(NULL))) ||
            !(h->transaction_id = random_octets(16)) || !(h->sender_nonce = random_octets(16)))
                goto fail;
        if (skid && !(h->sender_kid = ASN1_OCTET_STRING_dup(skid)))
                goto fail;
        return h;
fail:
        ASN1_item_free((ASN1_VALUE *) h, ASN1_ITEM_rptr(CMPGW_HEADER));
        return NULL;
}

int cmp_ann_build(const struct cmp_ann_spec *spec, X509 *signer, EVP_PKEY *key,
                  STACK_OF(X509) *chain, uint8_t **der, size_t *len) {
        CMPGW_MSG *m = (CMPGW_MSG *) ASN1_item_new(ASN1_ITEM_rptr(CMPGW_MSG));
        EVP_MD_CTX *mctx = EVP_MD_CTX_new();
        unsigned char *tbs = NULL, *sig = NULL, *out = NULL;
        const EVP_MD *md = NULL;
        X509_ALGOR *alg;
        CMPGW_PROTECTED pp;
        size_t siglen = 0;
        int n, k = -ENOMEM;

        if (!m || !mctx)
                goto out;
        if (!cmp_ann_kind_valid(spec->kind) || !signer || !key) {
                k = -EINVAL;
                goto out;
        }
        if (!(alg = signature_alg(key, &md))) {
                k = -EINVAL;
                goto out;
        }
        ASN1_item_free((ASN1_VALUE *) m->header, ASN1_ITEM_rptr(CMPGW_HEADER));
        ASN1_item_free((ASN1_VALUE *) m->body, ASN1_ITEM_rptr(CMPGW_BODY));
        m->header = build_header(signer, alg);
        if (!m->header)
                X509_ALGOR_free(alg);
        m->body = build_body(spec);
        if (!m->header || !m->body) {
                k = m->header ? -EINVAL : -ENOMEM;
                goto out;
        }
        /* RFC 4210 §5.1.3.3: the signature over DER(ProtectedPart) */
        pp = (CMPGW_PROTECTED) { .header = m->header, .body = m->body };
        n = ASN1_item_i2d((ASN1_VALUE *) &pp, &tbs, ASN1_ITEM_rptr(CMPGW_PROTECTED));
        if (n <= 0 || EVP_DigestSignInit(mctx, NULL, md, NULL, key) != 1 ||
            EVP_DigestSign(mctx, NULL, &siglen, tbs, (size_t) n) != 1 ||
            !(sig = OPENSSL_malloc(siglen)) ||
            EVP_DigestSign(mctx, sig, &siglen, tbs, (size_t) n) != 1) {
                k = -EINVAL;
                goto out;
        }
        if (!(m->protection = ASN1_BIT_STRING_new()) ||
            !ASN1_BIT_STRING_set(m->protection, sig, (int) siglen))
                goto out;
        /* no unused bits (ossl_asn1_string_set_bits_left(bs, 0) is private) */
        m->protection->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
        m->protection->flags |= ASN1_STRING_FLAG_BITS_LEFT;
        if (!(m->extra_certs = sk_X509_new_null()))
                goto out;
        for (int i = -1; i < (chain ? sk_X509_num(chain) : 0); i++) {
                X509 *x = ref(i < 0 ? signer : sk_X509_value(chain, i));
                if (!x || !sk_X509_push(m->extra_certs, x)) {
                        X509_free(x);
                        goto out;
                }
        }
        n = ASN1_item_i2d((ASN1_VALUE *) m, &out, ASN1_ITEM_rptr(CMPGW_MSG));
        if (n <= 0)
                goto out;
        *der = out;
        *len = (size_t) n;
        k = 0;
out:
        OPENSSL_free(tbs);
        OPENSSL_free(sig);
        EVP_MD_CTX_free(mctx);
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
        ERR_clear_error();
        return k;
}
