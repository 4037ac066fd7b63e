/* cmp_content.h -- what the registry needs from a DER PKIMessage
 *
 * The header (transactionID, sender, senderKID, implicitConfirm) and the
 * first item of the bodies that matter for the certificate life cycle
 * (RFC 4210 §5.3, RFC 9483 §4). OpenSSL's public CMP/CRMF API is used where
 * OpenSSL 3.0 has one; what it keeps private (PKIHeader fields other than the
 * transactionID, CertRepMessage, RevRepContent, CertConfirmContent,
 * ErrorMsgContent) is decoded with our own ASN.1 templates (asn1t.h).
 *
 * Names (sender, subjects, issuers) are RFC 2253 strings (XN_FLAG_RFC2253).
 * A sender that is not a directoryName is printed the way OpenSSL's
 * GENERAL_NAME_print() does ("email:...", "URI:..."). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "cmp_asn1.h"

/* PKIStatus (RFC 4210 §5.2.3) */
enum cmp_pki_status {
        CMP_STATUS_NONE = -1,           /* the message carries no status */
        CMP_STATUS_ACCEPTED = 0,
        CMP_STATUS_GRANTED_WITH_MODS = 1,
        CMP_STATUS_REJECTION = 2,
        CMP_STATUS_WAITING = 3,
        CMP_STATUS_REVOCATION_WARNING = 4,
        CMP_STATUS_REVOCATION_NOTIFICATION = 5,
        CMP_STATUS_KEY_UPDATE_WARNING = 6,
};

/* Facts about one certificate, as the registry stores them. */
struct cmp_cert_info {
        char *subject;                  /* RFC 2253 */
        char *issuer;                   /* RFC 2253 */
        char *serial;                   /* hex, upper case, no colons */
        int64_t not_before;             /* unix seconds */
        int64_t not_after;
        uint8_t *der;
        size_t der_len;
};

struct cmp_content {
        int body;                       /* enum cmp_body */
        /* header */
        char *transaction_id;           /* hex upper case; NULL if absent */
        char *sender;                   /* see above; "" for the NULL-DN */
        char *sender_kid;               /* hex upper case; NULL if absent */
        bool implicit_confirm;          /* id-it-implicitConfirm in generalInfo */

        /* ir/cr/kur: the first CertTemplate's subject; p10cr: the CSR's */
        char *req_subject;
        /* kur: the oldCertID control (RFC 4211 §6.5); rr: the certDetails */
        char *old_issuer;
        char *old_serial;
        int revocation_reason;          /* rr: CRLReason, -1 if none */

        /* ip/cp/kup (first CertResponse), rp (first status), error,
         * certConf (first CertStatus; absent statusInfo = accepted) */
        int status;                     /* enum cmp_pki_status */
        char *status_text;              /* statusString joined by "; ", or NULL */
        int64_t fail_info;              /* PKIFailureInfo bits, -1 if absent */
        struct cmp_cert_info *cert;     /* ip/cp/kup: the issued certificate, owned; NULL if none */
};

/* Parses one DER PKIMessage (all bytes). 0, -EBADMSG, -ENOMEM. */
int cmp_content_parse(const uint8_t *der, size_t len, struct cmp_content **ret);
/* The same from a message decoded with the CMPGW_MSG_CONTENT template
 * (cmp_asn1.h; cmp_msg_inspect_content() does both). */
int cmp_content_from_msg(const CMPGW_MSG_CONTENT *m, struct cmp_content **ret);
struct cmp_content *cmp_content_free(struct cmp_content *c);

/* "accepted", "grantedWithMods", ...; "none" for -1, "?" if unknown */
const char *cmp_pki_status_name(int status);
/* Human-readable status: "rejection; failInfo badPOP,badRequest; text". malloc'd. */
char *cmp_content_status_detail(const struct cmp_content *c);

int cmp_cert_info_get(const X509 *x, struct cmp_cert_info *ci);  /* 0, -ENOMEM, -EBADMSG */
/* The same from a certificate decoded as CMPGW_CERT_SHELL (no key decoded) */
int cmp_cert_info_from_shell(const CMPGW_CERT_SHELL *x, struct cmp_cert_info *ci);
void cmp_cert_info_clear(struct cmp_cert_info *ci);

/* Helpers shared with the registry */
char *cmp_name_rfc2253(const X509_NAME *name);                   /* malloc'd, NULL on error */
char *cmp_integer_hex(const ASN1_INTEGER *i);                    /* "01AF", malloc'd */
