/* cmp_msg.h -- inspecting DER PKIMessages (asn1t.h templates, cmp_asn1.h) */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmp_path.h"

/* PKIBody CHOICE tags (RFC 4210 §5.1.2, RFC 9480); OpenSSL's
 * OSSL_CMP_PKIBODY_* have the same values. */
enum cmp_body {
        CMP_BODY_IR = 0, CMP_BODY_IP, CMP_BODY_CR, CMP_BODY_CP,
        CMP_BODY_P10CR, CMP_BODY_POPDECC, CMP_BODY_POPDECR,
        CMP_BODY_KUR, CMP_BODY_KUP, CMP_BODY_KRR, CMP_BODY_KRP,
        CMP_BODY_RR, CMP_BODY_RP, CMP_BODY_CCR, CMP_BODY_CCP,
        CMP_BODY_CKUANN, CMP_BODY_CANN, CMP_BODY_RANN, CMP_BODY_CRLANN,
        CMP_BODY_PKICONF, CMP_BODY_NESTED, CMP_BODY_GENM, CMP_BODY_GENP,
        CMP_BODY_ERROR, CMP_BODY_CERTCONF, CMP_BODY_POLLREQ, CMP_BODY_POLLREP,
        _CMP_BODY_MAX,
};

struct cmp_msg_info {
        int body;                       /* enum cmp_body */
        int pvno;
        uint8_t tid[64];                /* transactionID, may be empty */
        size_t tid_len;
};

struct cmp_content;

/* Inspect a request or response body: it must be exactly one DER
 * PKIMessage, all bytes consumed, every body in the shape OpenSSL's own
 * decoder gives it (nested messages inspected in turn). 0, or -EBADMSG with
 * a reason in why. */
int cmp_msg_inspect(const uint8_t *der, size_t len, struct cmp_msg_info *info,
                    const char **why);
/* The same, and what the registry needs from it (cmp_content.h) out of the
 * same decoding, so a message is decoded once per exchange. 0, -EBADMSG,
 * -ENOMEM; *content (owned by the caller) is NULL on error and when the
 * registry would not understand the message (cmp_content_parse fails). */
int cmp_msg_inspect_content(const uint8_t *der, size_t len, struct cmp_msg_info *info,
                            struct cmp_content **content, const char **why);

const char *cmp_body_name(int body);    /* "ir", "certConf", ...; "?" */

/* Does a request body belong on this operation's resource? certConf,
 * pollReq and error belong to every enrolment (PRODUCT.md), genm to the
 * support operations (RFC 9483 §4.3). CMP_OP_NONE takes every request. */
bool cmp_body_allowed_on_op(enum cmp_op op, int body);

/* Bodies a client (EE or RA) may send as a request. Announcements and
 * responses are not requests. */
bool cmp_body_is_request(int body);

/* Hex of the transactionID, for logs. buf >= 2*tid_len+1. */
void cmp_msg_tid_hex(const struct cmp_msg_info *info, char *buf, size_t size);
