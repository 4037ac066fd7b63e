/* cmp_content.c -- what the registry needs from a DER PKIMessage
 *
 * One decoding with the templates of cmp_asn1.h (OpenSSL 3.0 keeps the
 * PKIMessage structures private), reading the parts through OpenSSL's public
 * CRMF and X509 API where it has one. Whether the bytes are a well-formed
 * DER PKIMessage is cmp_msg_inspect()'s job: cmp_msg_inspect_content()
 * checks and reads in one decoding. */
#include "cmp_content.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "cmp_asn1.h"
#include "cmp_msg.h"

/* ---- helpers ---- */

static char *hex_upper(const unsigned char *p, size_t n) {
        char *s = malloc(2 * n + 1);

        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++)
                snprintf(s + 2 * i, 3, "%02X", p[i]);
        s[2 * n] = '\0';
        return s;
}

static char *octets_hex(const ASN1_OCTET_STRING *os) {
        return hex_upper(ASN1_STRING_get0_data(os), (size_t) ASN1_STRING_length(os));
}

static char *bio_to_string(BIO *b) {
        char *data, *s;
        long n = BIO_get_mem_data(b, &data);

        if (n < 0)
                return NULL;
        s = malloc((size_t) n + 1);
        if (!s)
                return NULL;
        if (n > 0)      /* an empty BIO may hand back NULL data */
                memcpy(s, data, (size_t) n);
        s[n] = '\0';
        return s;
}

char *cmp_name_rfc2253(const X509_NAME *name) {
        BIO *b = BIO_new(BIO_s_mem());
        char *s = NULL;

        if (!b)
                return NULL;
        if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0)
                s = bio_to_string(b);
        BIO_free(b);
        return s;
}

/* directoryName: RFC 2253; other forms as GENERAL_NAME_print() writes them */
static char *general_name_string(const GENERAL_NAME *gn) {
        BIO *b;
        char *s = NULL;

        if (gn->type == GEN_DIRNAME)
                return cmp_name_rfc2253(gn->d.directoryName);
        b = BIO_new(BIO_s_mem());
        if (!b)
                return NULL;
        if (GENERAL_NAME_print(b, (GENERAL_NAME *) gn) > 0)
                s = bio_to_string(b);
        BIO_free(b);
        return s;
}

char *cmp_integer_hex(const ASN1_INTEGER *i) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(i, NULL);
        char *h, *s;

        if (!bn)
                return NULL;
        h = BN_bn2hex(bn);      /* upper case, no colons, "0" for zero */
        BN_free(bn);
        if (!h)
                return NULL;
        s = strdup(h);
        OPENSSL_free(h);
        return s;
}

static int time_to_unix(const ASN1_TIME *t, int64_t *ret) {
        struct tm tm;

        if (!t || !ASN1_TIME_to_tm(t, &tm))
                return -EBADMSG;
        *ret = (int64_t) timegm(&tm);
        return 0;
}

static char *free_text_join(const STACK_OF(ASN1_UTF8STRING) *texts) {
        size_t len = 0, o = 0;
        int n = sk_ASN1_UTF8STRING_num(texts);
        char *s;

        if (n <= 0)
                return NULL;
        for (int i = 0; i < n; i++)
                len += (size_t) ASN1_STRING_length(sk_ASN1_UTF8STRING_value(texts, i)) + 2;
        s = malloc(len + 1);
        if (!s)
                return NULL;
        for (int i = 0; i < n; i++) {
                const ASN1_UTF8STRING *t = sk_ASN1_UTF8STRING_value(texts, i);
                size_t l = (size_t) ASN1_STRING_length(t);

                if (i > 0) {
                        memcpy(s + o, "; ", 2);
                        o += 2;
                }
                memcpy(s + o, ASN1_STRING_get0_data(t), l);
                o += l;
        }
        s[o] = '\0';
        return s;
}

static const char *const status_names[] = {
        "accepted", "grantedWithMods", "rejection", "waiting",
        "revocationWarning", "revocationNotification", "keyUpdateWarning",
};

const char *cmp_pki_status_name(int status) {
        if (status == CMP_STATUS_NONE)
                return "none";
        if (status < 0 || (size_t) status >= sizeof status_names / sizeof status_names[0])
                return "?";
        return status_names[status];
}

/* PKIFailureInfo bit names (RFC 4210 §5.2.3) */
static const char *const fail_names[] = {
        "badAlg", "badMessageCheck", "badRequest", "badTime", "badCertId",
        "badDataFormat", "wrongAuthority", "incorrectData", "missingTimeStamp",
        "badPOP", "certRevoked", "certConfirmed", "wrongIntegrity",
        "badRecipientNonce", "timeNotAvailable", "unacceptedPolicy",
        "unacceptedExtension", "addInfoNotAvailable", "badSenderNonce",
        "badCertTemplate", "signerNotTrusted", "transactionIdInUse",
        "unsupportedVersion", "notAuthorized", "systemUnavail", "systemFailure",
        "duplicateCertReq",
};

char *cmp_content_status_detail(const struct cmp_content *c) {
        char buf[1024];
        size_t o;

        o = (size_t) snprintf(buf, sizeof buf, "%s", cmp_pki_status_name(c->status));
        if (c->fail_info > 0) {
                const char *sep = "; failInfo ";

                for (size_t i = 0; i < sizeof fail_names / sizeof fail_names[0]; i++) {
                        if (!(c->fail_info & ((int64_t) 1 << i)) || o >= sizeof buf)
                                continue;
                        o += (size_t) snprintf(buf + o, sizeof buf - o, "%s%s", sep, fail_names[i]);
                        sep = ",";
                }
        }
        if (c->status_text && o < sizeof buf)
                snprintf(buf + o, sizeof buf - o, "; %s", c->status_text);
        return strdup(buf);
}

/* ---- certificates ---- */

void cmp_cert_info_clear(struct cmp_cert_info *ci) {
        free(ci->subject);
        free(ci->issuer);
        free(ci->serial);
        OPENSSL_free(ci->der);
        memset(ci, 0, sizeof *ci);
}

/* What both kinds of certificate give: DER (owned, taken over), validity,
 * names and serial */
static int cert_info_fill(struct cmp_cert_info *ci, unsigned char *der, int der_len,
                          const ASN1_TIME *not_before, const ASN1_TIME *not_after,
                          const X509_NAME *subject, const X509_NAME *issuer, const ASN1_INTEGER *serial) {
        memset(ci, 0, sizeof *ci);
        if (der_len <= 0)
                return -EBADMSG;
        ci->der = der;
        ci->der_len = (size_t) der_len;
        if (time_to_unix(not_before, &ci->not_before) < 0 || time_to_unix(not_after, &ci->not_after) < 0) {
                cmp_cert_info_clear(ci);
                return -EBADMSG;
        }
        ci->subject = cmp_name_rfc2253(subject);
        ci->issuer = cmp_name_rfc2253(issuer);
        ci->serial = cmp_integer_hex(serial);
        if (!ci->subject || !ci->issuer || !ci->serial) {
                cmp_cert_info_clear(ci);
                return -ENOMEM;
        }
        return 0;
}

int cmp_cert_info_get(const X509 *x, struct cmp_cert_info *ci) {
        unsigned char *der = NULL;
        int n = i2d_X509(x, &der);

        return cert_info_fill(ci, der, n, X509_get0_notBefore(x), X509_get0_notAfter(x),
                              X509_get_subject_name(x), X509_get_issuer_name(x), X509_get0_serialNumber(x));
}

int cmp_cert_info_from_shell(const CMPGW_CERT_SHELL *x, struct cmp_cert_info *ci) {
        unsigned char *der = NULL;
        int n = ASN1_item_i2d((const ASN1_VALUE *) x, &der, ASN1_ITEM_rptr(CMPGW_CERT_SHELL));

        return cert_info_fill(ci, der, n, x->tbs->validity->not_before, x->tbs->validity->not_after,
                              x->tbs->subject, x->tbs->issuer, x->tbs->serial);
}

/* ---- the message ---- */

struct cmp_content *cmp_content_free(struct cmp_content *c) {
        if (!c)
                return NULL;
        free(c->transaction_id);
        free(c->sender);
        free(c->sender_kid);
        free(c->req_subject);
        free(c->old_issuer);
        free(c->old_serial);
        free(c->status_text);
        if (c->cert)
                cmp_cert_info_clear(c->cert);
        free(c->cert);
        free(c);
        return NULL;
}

static int take_status(struct cmp_content *c, const CMPGW_PKISI *si) {
        long v = ASN1_INTEGER_get(si->status);

        if (v < 0 || v > 0xff)
                return -EBADMSG;
        c->status = (int) v;
        if (si->status_string) {
                c->status_text = free_text_join(si->status_string);
                if (!c->status_text && sk_ASN1_UTF8STRING_num(si->status_string) > 0)
                        return -ENOMEM;
        }
        if (si->fail_info) {
                c->fail_info = 0;
                for (int i = 0; i < 27; i++)
                        if (ASN1_BIT_STRING_get_bit(si->fail_info, i))
                                c->fail_info |= (int64_t) 1 << i;
        }
        return 0;
}

/* RFC 9483 §4.1.1: implicitConfirm is an InfoTypeAndValue in generalInfo
 * (id-it-implicitConfirm, value NULL). */
static bool has_implicit_confirm(const STACK_OF(CMPGW_ITAV) *gi) {
        for (int i = 0; i < sk_CMPGW_ITAV_num(gi); i++)
                if (OBJ_obj2nid(sk_CMPGW_ITAV_value(gi, i)->type) == NID_id_it_implicitConfirm)
                        return true;
        return false;
}

static int take_header(struct cmp_content *c, const CMPGW_HEADER *h) {
        if (h->transaction_id && !(c->transaction_id = octets_hex(h->transaction_id)))
                return -ENOMEM;
        if (!(c->sender = general_name_string(h->sender)))
                return -ENOMEM;
        if (h->sender_kid && !(c->sender_kid = octets_hex(h->sender_kid)))
                return -ENOMEM;
        c->implicit_confirm = has_implicit_confirm(h->general_info);
        return 0;
}

/* ir/cr/kur: the first CertReqMsg (RFC 4211), public CRMF API */
static int take_crmf(struct cmp_content *c, const OSSL_CRMF_MSGS *msgs) {
        const OSSL_CRMF_MSG *crm = sk_OSSL_CRMF_MSG_value(msgs, 0);
        const OSSL_CRMF_CERTTEMPLATE *tmpl;
        const X509_NAME *subject;
        const OSSL_CRMF_CERTID *cid;

        if (!crm)
                return -EBADMSG;
        tmpl = OSSL_CRMF_MSG_get0_tmpl(crm);
        subject = tmpl ? OSSL_CRMF_CERTTEMPLATE_get0_subject(tmpl) : NULL;
        if (subject && !(c->req_subject = cmp_name_rfc2253(subject)))
                return -ENOMEM;
        cid = OSSL_CRMF_MSG_get0_regCtrl_oldCertID(crm);
        if (!cid)
                return 0;
        if (!(c->old_serial = cmp_integer_hex(OSSL_CRMF_CERTID_get0_serialNumber(cid))) ||
            !(c->old_issuer = cmp_name_rfc2253(OSSL_CRMF_CERTID_get0_issuer(cid))))
                return -ENOMEM;
        return 0;
}

static int take_p10cr(struct cmp_content *c, const X509_REQ *req) {
        const X509_NAME *subject = X509_REQ_get_subject_name(req);

        if (subject && !(c->req_subject = cmp_name_rfc2253(subject)))
                return -ENOMEM;
        return 0;
}

static int take_rep(struct cmp_content *c, const CMPGW_CERTREPMESSAGE *rep) {
        const CMPGW_CERTRESPONSE *r = sk_CMPGW_CERTRESPONSE_value(rep->response, 0);
        const CMPGW_CERTORENCCERT *coec;
        int k;

        if (!r)
                return 0;       /* an empty response list: no status */
        k = take_status(c, r->status);
        if (k < 0)
                return k;
        if (!r->certified_key_pair)
                return 0;
        coec = r->certified_key_pair->cert_or_enc_cert;
        /* RFC 9483 §4.1.1: encryptedCert is only used with central key
         * generation of a key the EE cannot decrypt here; we record it
         * without a certificate. */
        if (coec->type != 0)
                return 0;
        c->cert = calloc(1, sizeof *c->cert);
        if (!c->cert)
                return -ENOMEM;
        k = cmp_cert_info_from_shell(coec->value.certificate, c->cert);
        if (k < 0) {
                free(c->cert);
                c->cert = NULL;
        }
        return k;
}

static int take_rr(struct cmp_content *c, const STACK_OF(CMPGW_REVDETAILS) *rr) {
        const CMPGW_REVDETAILS *rd = sk_CMPGW_REVDETAILS_value(rr, 0);
        const ASN1_INTEGER *serial;
        const X509_NAME *issuer;
        ASN1_ENUMERATED *reason;
        int crit = 0;

        if (!rd)
                return -EBADMSG;
        serial = OSSL_CRMF_CERTTEMPLATE_get0_serialNumber(rd->cert_details);
        issuer = OSSL_CRMF_CERTTEMPLATE_get0_issuer(rd->cert_details);
        if (serial && !(c->old_serial = cmp_integer_hex(serial)))
                return -ENOMEM;
        if (issuer && !(c->old_issuer = cmp_name_rfc2253(issuer)))
                return -ENOMEM;
        if (!rd->crl_entry_details)
                return 0;
        /* RFC 5280 §5.3.1 reasonCode in crlEntryDetails (RFC 4210 §5.3.9) */
        reason = X509V3_get_d2i(rd->crl_entry_details, NID_crl_reason, &crit, NULL);
        if (reason) {
                c->revocation_reason = (int) ASN1_ENUMERATED_get(reason);
                ASN1_ENUMERATED_free(reason);
        }
        return 0;
}

static int take_cert_conf(struct cmp_content *c, const STACK_OF(CMPGW_CERTSTATUS) *cc) {
        const CMPGW_CERTSTATUS *cs = sk_CMPGW_CERTSTATUS_value(cc, 0);

        /* RFC 4210 §5.3.18: an absent statusInfo means accepted; an empty
         * certConf (RFC 9483 §4.1.1 says it MUST NOT be sent) tells nothing */
        if (!cs)
                return 0;
        if (!cs->status_info) {
                c->status = CMP_STATUS_ACCEPTED;
                return 0;
        }
        return take_status(c, cs->status_info);
}

/* error: status, then errorDetails (RFC 4210 §5.3.21) after the statusString */
static int take_error(struct cmp_content *c, const CMPGW_ERRORMSG *e) {
        char *details, *both;
        int k = take_status(c, e->status_info);

        if (k < 0 || !e->error_details)
                return k;
        details = free_text_join(e->error_details);
        if (!details)
                return sk_ASN1_UTF8STRING_num(e->error_details) > 0 ? -ENOMEM : 0;
        if (!c->status_text) {
                c->status_text = details;
                return 0;
        }
        k = asprintf(&both, "%s; %s", c->status_text, details);
        free(details);
        if (k < 0)
                return -ENOMEM;
        free(c->status_text);
        c->status_text = both;
        return 0;
}

static int take_body(struct cmp_content *c, const CMPGW_BODY *b) {
        switch (b->type) {
        case CMP_BODY_IR: case CMP_BODY_CR: case CMP_BODY_KUR:
                return take_crmf(c, b->value.crmf);
        case CMP_BODY_P10CR:
                return take_p10cr(c, b->value.p10cr);
        case CMP_BODY_IP: case CMP_BODY_CP: case CMP_BODY_KUP:
                return take_rep(c, b->value.rep);
        case CMP_BODY_RR:
                return take_rr(c, b->value.rr);
        case CMP_BODY_RP: {
                const CMPGW_PKISI *si = sk_CMPGW_PKISI_value(b->value.rp->status, 0);
                return si ? take_status(c, si) : -EBADMSG;
        }
        case CMP_BODY_CERTCONF:
                return take_cert_conf(c, b->value.cert_conf);
        case CMP_BODY_ERROR:
                return take_error(c, b->value.error);
        default:
                return 0;
        }
}

static struct cmp_content *content_new(int body) {
        struct cmp_content *c = calloc(1, sizeof *c);

        if (!c)
                return NULL;
        c->body = body;
        c->status = CMP_STATUS_NONE;
        c->fail_info = -1;
        c->revocation_reason = -1;
        return c;
}

int cmp_content_from_msg(const CMPGW_MSG_CONTENT *m, struct cmp_content **ret) {
        struct cmp_content *c = content_new(m->body->type);
        int k;

        if (!c)
                return -ENOMEM;
        k = take_header(c, m->header);
        if (k >= 0)
                k = take_body(c, m->body);
        ERR_clear_error();
        if (k < 0) {
                cmp_content_free(c);
                return k;
        }
        *ret = c;
        return 0;
}

/* One pass with our templates, without the checks of cmp_msg_inspect(). */
int cmp_content_parse(const uint8_t *der, size_t len, struct cmp_content **ret) {
        const unsigned char *p = der;
        CMPGW_MSG_CONTENT *m;
        int k;

        if (len == 0 || len > LONG_MAX)
                return -EBADMSG;
        m = (CMPGW_MSG_CONTENT *) ASN1_item_d2i(NULL, &p, (long) len, ASN1_ITEM_rptr(CMPGW_MSG_CONTENT));
        ERR_clear_error();
        if (!m || (size_t) (p - der) != len) {
                ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG_CONTENT));
                return -EBADMSG;
        }
        k = cmp_content_from_msg(m, ret);
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG_CONTENT));
        return k;
}
