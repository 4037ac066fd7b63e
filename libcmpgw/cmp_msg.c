/* cmp_msg.c -- inspecting DER PKIMessages: one pass with the templates of
 * cmp_asn1.h, certificates the gateway only passes on left undecoded
 * (OpenSSL 3.0's own d2i_OSSL_CMP_MSG decodes every public key in them) */
#include "cmp_msg.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/provider.h>

#include "cmp_asn1.h"
#include "cmp_content.h"

static const char *const body_names[_CMP_BODY_MAX] = {
        "ir", "ip", "cr", "cp", "p10cr", "popdecc", "popdecr",
        "kur", "kup", "krr", "krp", "rr", "rp", "ccr", "ccp",
        "ckuann", "cann", "rann", "crlann", "pkiconf", "nested",
        "genm", "genp", "error", "certConf", "pollReq", "pollRep",
};

const char *cmp_body_name(int body) {
        return body >= 0 && body < _CMP_BODY_MAX ? body_names[body] : "?";
}

/* Nested messages in nested messages: OpenSSL's decoder stops at 30
 * constructed levels; a gateway needs no more than a few. */
#define NESTED_DEPTH_MAX 4

static const char why_ber[] = "PKIMessage is BER, not DER (RFC 9482 section 2.3)";

/* A library context whose only provider is "null": it has no key decoder,
 * so X509_PUBKEY's decoder (a CertTemplate's publicKey, a p10cr's key)
 * keeps the SubjectPublicKeyInfo as algorithm and bits. OpenSSL 3.0 decodes
 * the key only opportunistically (x509_pubkey_ex_d2i_ex: a key it cannot
 * decode is no error), so what is taken and refused stays the same, but
 * the OSSL_DECODER set-up per key (~0.15 ms, most of an ir's inspection)
 * is gone. Nothing decoded here is ever used to sign or verify. NULL (the
 * default context) if it cannot be made. */
static OSSL_LIB_CTX *keyless_libctx(void) {
        static OSSL_LIB_CTX *ctx;
        static bool tried;

        if (tried)
                return ctx;
        tried = true;
        ctx = OSSL_LIB_CTX_new();
        /* an explicitly loaded provider keeps the default one from loading */
        if (ctx && !OSSL_PROVIDER_load(ctx, "null")) {
                OSSL_LIB_CTX_free(ctx);
                ctx = NULL;
        }
        ERR_clear_error();
        return ctx;
}

/* One DER value of item IT: all LEN bytes, and DER, not BER (indefinite or
 * long-form lengths), which the decoder also takes: DER re-encodes to the
 * very same bytes, BER does not. */
static int decode_der(const uint8_t *der, size_t len, const ASN1_ITEM *it, ASN1_VALUE **ret, const char **why) {
        const unsigned char *p = der;
        unsigned char *enc = NULL;
        ASN1_VALUE *v;
        int n;

        *ret = NULL;
        if (len > LONG_MAX) {
                *why = "body is not a DER PKIMessage";
                return -EBADMSG;
        }
        v = ASN1_item_d2i_ex(NULL, &p, (long) len, it, keyless_libctx(), NULL);
        ERR_clear_error();
        if (!v) {
                *why = "body is not a DER PKIMessage";
                return -EBADMSG;
        }
        if ((size_t) (p - der) != len) {
                ASN1_item_free(v, it);
                *why = "trailing bytes after the PKIMessage";
                return -EBADMSG;
        }
        n = ASN1_item_i2d(v, &enc, it);
        if (n <= 0 || (size_t) n != len || memcmp(enc, der, len) != 0) {
                OPENSSL_free(enc);
                ASN1_item_free(v, it);
                ERR_clear_error();
                *why = why_ber;
                return -EBADMSG;
        }
        OPENSSL_free(enc);
        *ret = v;
        return 0;
}

/* The item of a body CMPGW_BODY keeps as ANY, in the shape OpenSSL's own
 * decoder gives it (RFC 4210 §5.1.2); NULL for pkiconf (ANY there too) and
 * nested (inspected message by message). */
static const ASN1_ITEM *any_body_item(int body) {
        switch (body) {
        case CMP_BODY_POPDECC: return ASN1_ITEM_rptr(CMPGW_POPDECC);
        case CMP_BODY_POPDECR: return ASN1_ITEM_rptr(CMPGW_POPDECR);
        case CMP_BODY_KRR: case CMP_BODY_CCR: return ASN1_ITEM_rptr(OSSL_CRMF_MSGS);
        case CMP_BODY_KRP: return ASN1_ITEM_rptr(CMPGW_KEYRECREP);
        case CMP_BODY_CCP: return ASN1_ITEM_rptr(CMPGW_CERTREPMESSAGE);
        case CMP_BODY_GENM: case CMP_BODY_GENP: return ASN1_ITEM_rptr(CMPGW_GENMSG);
        case CMP_BODY_POLLREQ: return ASN1_ITEM_rptr(CMPGW_POLLREQ);
        case CMP_BODY_POLLREP: return ASN1_ITEM_rptr(CMPGW_POLLREP);
        default: return NULL;
        }
}

static int inspect(const uint8_t *der, size_t len, unsigned depth, CMPGW_MSG_CONTENT **ret, const char **why);

/* NestedMessageContent ::= PKIMessages: each one inspected like the outer */
static int check_nested(const ASN1_STRING *seq, unsigned depth, const char **why) {
        ASN1_VALUE *v;
        ASN1_SEQUENCE_ANY *msgs;
        /* the SEQUENCE OF was kept as it came (ANY): DER too (RFC 9482 §2.3) */
        int k = decode_der(ASN1_STRING_get0_data(seq), (size_t) ASN1_STRING_length(seq),
                           ASN1_ITEM_rptr(ASN1_SEQUENCE_ANY), &v, why);

        msgs = (ASN1_SEQUENCE_ANY *) v;
        for (int i = 0; k == 0 && i < sk_ASN1_TYPE_num(msgs); i++) {
                const ASN1_TYPE *t = sk_ASN1_TYPE_value(msgs, i);
                CMPGW_MSG_CONTENT *m = NULL;

                if (t->type != V_ASN1_SEQUENCE) {
                        k = -EBADMSG;
                        break;
                }
                k = inspect(ASN1_STRING_get0_data(t->value.sequence),
                            (size_t) ASN1_STRING_length(t->value.sequence), depth + 1, &m, why);
                ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG_CONTENT));
        }
        ASN1_item_free(v, ASN1_ITEM_rptr(ASN1_SEQUENCE_ANY));
        if (k < 0)
                *why = "nested PKIMessage that is not one DER PKIMessage";
        return k;
}

/* The item of an InfoTypeAndValue's value (RFC 4210 §5.3.19) where
 * OpenSSL 3.0's decoder knows its type, else NULL; *prim: the universal
 * type of a value that is not a SEQUENCE, 0 when it is one. */
static const ASN1_ITEM *itav_item(int nid, int *prim) {
        *prim = 0;
        switch (nid) {
        case NID_id_it_caProtEncCert: return ASN1_ITEM_rptr(CMPGW_CERT_SHELL);
        case NID_id_it_signKeyPairTypes: case NID_id_it_encKeyPairTypes: return ASN1_ITEM_rptr(CMPGW_ALGORS);
        case NID_id_it_preferredSymmAlg: case NID_id_it_keyPairParamRep: return ASN1_ITEM_rptr(X509_ALGOR);
        case NID_id_it_caKeyUpdateInfo: return ASN1_ITEM_rptr(CMPGW_CKUANN);
        case NID_id_it_currentCRL: return ASN1_ITEM_rptr(X509_CRL);
        case NID_id_it_unsupportedOIDs: return ASN1_ITEM_rptr(CMPGW_OIDS);
        case NID_id_it_revPassphrase: return ASN1_ITEM_rptr(OSSL_CRMF_ENCRYPTEDVALUE);
        case NID_id_it_suppLangTags: return ASN1_ITEM_rptr(CMPGW_UTF8S);
        case NID_id_it_keyPairParamReq: *prim = V_ASN1_OBJECT; return NULL;
        case NID_id_it_implicitConfirm: *prim = V_ASN1_NULL; return NULL;
        case NID_id_it_confirmWaitTime: *prim = V_ASN1_GENERALIZEDTIME; return NULL;
        default: return NULL;
        }
}

static int check_itavs(const STACK_OF(CMPGW_ITAV) *itavs, unsigned depth, const char **why) {
        for (int i = 0; i < sk_CMPGW_ITAV_num(itavs); i++) {
                const CMPGW_ITAV *itav = sk_CMPGW_ITAV_value(itavs, i);
                int nid = OBJ_obj2nid(itav->type), prim;
                const ASN1_ITEM *it = itav_item(nid, &prim);
                const ASN1_TYPE *t = itav->value;
                ASN1_VALUE *v;
                int k = 0;

                if (!t)
                        continue;       /* every value is OPTIONAL in OpenSSL's template */
                if (nid == NID_id_it_origPKIMessage)
                        k = t->type == V_ASN1_SEQUENCE && depth < NESTED_DEPTH_MAX ?
                                check_nested(t->value.sequence, depth, why) : -EBADMSG;
                else if (prim)
                        k = t->type == prim ? 0 : -EBADMSG;
                else if (it && t->type != V_ASN1_SEQUENCE)
                        k = -EBADMSG;
                else if (it) {
                        k = decode_der(ASN1_STRING_get0_data(t->value.sequence),
                                       (size_t) ASN1_STRING_length(t->value.sequence), it, &v, why);
                        ASN1_item_free(v, it);
                }
                if (k < 0) {
                        *why = "InfoTypeAndValue with a value not of its type (RFC 4210 section 5.3.19)";
                        return k;
                }
        }
        return 0;
}

/* The content of a body our template keeps as ANY: the ANY holds its
 * encoding as it came, so its shape and DER are checked here. */
static int check_any_body(const CMPGW_BODY *b, unsigned depth, const char **why) {
        const ASN1_ITEM *it = any_body_item(b->type);
        const ASN1_TYPE *t = b->value.other;
        ASN1_VALUE *v;
        int k;

        if (b->type == CMP_BODY_PKICONF)
                return 0;
        if (b->type == CMP_BODY_NESTED && depth < NESTED_DEPTH_MAX && t->type == V_ASN1_SEQUENCE)
                return check_nested(t->value.sequence, depth, why);
        if (!it || t->type != V_ASN1_SEQUENCE) {
                *why = "PKIMessage body of the wrong type (or nested too deep)";
                return -EBADMSG;
        }
        k = decode_der(ASN1_STRING_get0_data(t->value.sequence), (size_t) ASN1_STRING_length(t->value.sequence), it,
                       &v, why);
        if (k < 0 && *why != why_ber)
                *why = "PKIMessage body is malformed";
        if (k == 0 && (b->type == CMP_BODY_GENM || b->type == CMP_BODY_GENP))
                k = check_itavs((const STACK_OF(CMPGW_ITAV) *) v, depth, why);
        ASN1_item_free(v, it);
        return k;
}

static bool body_is_any(int body) {
        switch (body) {
        case CMP_BODY_POPDECC: case CMP_BODY_POPDECR: case CMP_BODY_KRR: case CMP_BODY_KRP:
        case CMP_BODY_CCR: case CMP_BODY_CCP: case CMP_BODY_PKICONF: case CMP_BODY_NESTED:
        case CMP_BODY_GENM: case CMP_BODY_GENP: case CMP_BODY_POLLREQ: case CMP_BODY_POLLREP:
                return true;
        }
        return false;
}

static int inspect(const uint8_t *der, size_t len, unsigned depth, CMPGW_MSG_CONTENT **ret, const char **why) {
        ASN1_VALUE *v;
        CMPGW_MSG_CONTENT *m;
        int k;

        if (len == 0) {
                *why = "empty body: expected one DER PKIMessage";
                return -EBADMSG;
        }
        /* RFC 9482 §2.3: the body is one DER-encoded PKIMessage */
        k = decode_der(der, len, ASN1_ITEM_rptr(CMPGW_MSG_CONTENT), &v, why);
        if (k < 0)
                return k;
        m = (CMPGW_MSG_CONTENT *) v;
        k = check_itavs(m->header->general_info, depth, why);
        if (k == 0 && body_is_any(m->body->type))
                k = check_any_body(m->body, depth, why);
        if (k < 0) {
                ASN1_item_free(v, ASN1_ITEM_rptr(CMPGW_MSG_CONTENT));
                return k;
        }
        *ret = m;
        return 0;
}

int cmp_msg_inspect_content(const uint8_t *der, size_t len, struct cmp_msg_info *info,
                            struct cmp_content **content, const char **why) {
        CMPGW_MSG_CONTENT *m = NULL;
        const ASN1_OCTET_STRING *tid;
        const char *dummy;
        int k;

        if (!why)
                why = &dummy;
        memset(info, 0, sizeof *info);
        info->body = -1;
        if (content)
                *content = NULL;
        k = inspect(der, len, 0, &m, why);
        if (k < 0)
                return k;
        info->body = m->body->type;
        info->pvno = (int) ASN1_INTEGER_get(m->header->pvno);
        tid = m->header->transaction_id;
        if (tid && (size_t) ASN1_STRING_length(tid) <= sizeof info->tid) {
                info->tid_len = (size_t) ASN1_STRING_length(tid);
                memcpy(info->tid, ASN1_STRING_get0_data(tid), info->tid_len);
        }
        /* a message the registry does not understand (a status beyond
         * RFC 4210's, ...) is still a well-formed one: no content then */
        if (content && cmp_content_from_msg(m, content) == -ENOMEM)
                k = -ENOMEM;
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG_CONTENT));
        ERR_clear_error();
        if (k < 0) {
                info->body = -1;
                *why = "out of memory";
        }
        return k;
}

int cmp_msg_inspect(const uint8_t *der, size_t len, struct cmp_msg_info *info, const char **why) {
        return cmp_msg_inspect_content(der, len, info, NULL, why);
}

bool cmp_body_is_request(int body) {
        switch (body) {
        case CMP_BODY_IR: case CMP_BODY_CR: case CMP_BODY_P10CR: case CMP_BODY_KUR:
        case CMP_BODY_KRR: case CMP_BODY_RR: case CMP_BODY_CCR:
        case CMP_BODY_POPDECR: case CMP_BODY_NESTED: case CMP_BODY_GENM:
        case CMP_BODY_ERROR: case CMP_BODY_CERTCONF: case CMP_BODY_POLLREQ:
                return true;
        }
        return false;
}

/* certConf, pollReq and error continue any enrolment (PRODUCT.md) */
static bool body_continues_enrolment(int body) {
        return body == CMP_BODY_CERTCONF || body == CMP_BODY_POLLREQ || body == CMP_BODY_ERROR;
}

bool cmp_body_allowed_on_op(enum cmp_op op, int body) {
        switch (op) {
        case CMP_OP_NONE:
                return cmp_body_is_request(body);
        case CMP_OP_IR:
                return body == CMP_BODY_IR || body_continues_enrolment(body);
        case CMP_OP_CR:
                return body == CMP_BODY_CR || body_continues_enrolment(body);
        case CMP_OP_KUR:
                return body == CMP_BODY_KUR || body_continues_enrolment(body);
        case CMP_OP_P10:
                return body == CMP_BODY_P10CR || body_continues_enrolment(body);
        case CMP_OP_RR:
                return body == CMP_BODY_RR || body == CMP_BODY_ERROR;
        /* RFC 9483 §4.3: support messages are genm/genp */
        case CMP_OP_CRTS: case CMP_OP_RCU: case CMP_OP_ATT: case CMP_OP_CRLS:
                return body == CMP_BODY_GENM || body == CMP_BODY_ERROR;
        case CMP_OP_NEST:
                return body == CMP_BODY_NESTED;
        default:
                return false;
        }
}

void cmp_msg_tid_hex(const struct cmp_msg_info *info, char *buf, size_t size) {
        size_t o = 0;

        if (size == 0)
                return;
        buf[0] = '\0';
        for (size_t i = 0; i < info->tid_len && o + 3 <= size; i++)
                o += (size_t) snprintf(buf + o, size - o, "%02X", info->tid[i]);
}
