/* cmp_msg.c -- inspecting DER PKIMessages with OpenSSL's CMP API */
#include "cmp_msg.h"

#include <errno.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/cmp.h>
#include <openssl/err.h>

static const char *const body_names[_CMP_BODY_MAX] = {
        "ir", "ip", "cr", "cp", "p10cr", "popdecc", "popdecr",
        "kur", "kup", "krr", "krp", "rr", "rp", "ccr", "ccp",
        "ckuann", "cann", "rann", "crlann", "pkiconf", "nested",
        "genm", "genp", "error", "certConf", "pollReq", "pollRep",
};

const char *cmp_body_name(int body) {
        return body >= 0 && body < _CMP_BODY_MAX ? body_names[body] : "?";
}

static bool is_der(const OSSL_CMP_MSG *msg, const uint8_t *der, size_t len) {
        unsigned char *enc = NULL;
        int n = i2d_OSSL_CMP_MSG(msg, &enc);
        bool same = n > 0 && (size_t) n == len && memcmp(enc, der, len) == 0;

        OPENSSL_free(enc);
        return same;
}

int cmp_msg_inspect(const uint8_t *der, size_t len, struct cmp_msg_info *info,
                    const char **why) {
        const unsigned char *p = der;
        OSSL_CMP_MSG *msg;
        const ASN1_OCTET_STRING *tid;
        const char *dummy;

        if (!why)
                why = &dummy;
        memset(info, 0, sizeof *info);
        info->body = -1;
        if (len == 0) {
                *why = "empty body: expected one DER PKIMessage";
                return -EBADMSG;
        }
        /* RFC 9482 §2.3: the body is one DER-encoded PKIMessage */
        msg = d2i_OSSL_CMP_MSG(NULL, &p, (long) len);
        ERR_clear_error();
        if (!msg) {
                *why = "body is not a DER PKIMessage";
                return -EBADMSG;
        }
        if ((size_t) (p - der) != len) {
                OSSL_CMP_MSG_free(msg);
                *why = "trailing bytes after the PKIMessage";
                return -EBADMSG;
        }
        /* d2i takes BER too (indefinite or long-form lengths): DER re-encodes
         * to the very same bytes, BER does not */
        if (!is_der(msg, der, len)) {
                OSSL_CMP_MSG_free(msg);
                *why = "PKIMessage is BER, not DER (RFC 9482 section 2.3)";
                return -EBADMSG;
        }
        info->body = OSSL_CMP_MSG_get_bodytype(msg);
        tid = OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(msg));
        if (tid && (size_t) ASN1_STRING_length(tid) <= sizeof info->tid) {
                info->tid_len = (size_t) ASN1_STRING_length(tid);
                memcpy(info->tid, ASN1_STRING_get0_data(tid), info->tid_len);
        }
        OSSL_CMP_MSG_free(msg);
        if (info->body < 0 || info->body >= _CMP_BODY_MAX) {
                *why = "PKIMessage with an unknown body type";
                return -EBADMSG;
        }
        return 0;
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
