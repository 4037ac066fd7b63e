/* cmp_protection.h -- the protection of a PKIMessage (RFC 4210 §5.1.3):
 * which kind, who claims it (sender, senderKID), and is a signature valid
 * against trust anchors (OpenSSL's OSSL_CMP_validate_msg). Used for
 * announcements, for the requests a gateway forwards (RFC 9482 §4: a proxy
 * can validate) and for admitting them (daemon/admission.c). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

enum cmp_protection {
        CMP_PROT_NONE,                  /* no protectionAlg */
        CMP_PROT_MAC,                   /* password-based MAC: a shared secret we do not hold */
        CMP_PROT_SIGNATURE,
        CMP_PROT_INVALID,               /* not a PKIMessage */
};

enum cmp_protection cmp_protection_kind(const uint8_t *der, size_t len);

/* Who a PKIMessage says protected it: its header's protectionAlg, sender
 * and senderKID (RFC 4210 §5.1.1). Claims, not verified here. */
struct cmp_protector {
        enum cmp_protection kind;
        char *sender;                   /* a directoryName, RFC 2253; NULL for the NULL-DN
                                         * and other GeneralName forms */
        uint8_t *sender_kid;            /* NULL when absent */
        size_t sender_kid_len;
};

/* 0, -EBADMSG (not a PKIMessage), -ENOMEM */
int cmp_protector_get(const uint8_t *der, size_t len, struct cmp_protector *ret);
void cmp_protector_clear(struct cmp_protector *p);

/* Signature protection that verifies with a certificate chaining to
 * TRUSTED (candidates from the message's extraCerts and UNTRUSTED, may be
 * NULL). 0; -EPERM with the reason in why (OpenSSL's words), -EBADMSG,
 * -ENOMEM. */
int cmp_protection_verify(const uint8_t *der, size_t len, X509_STORE *trusted, STACK_OF(X509) *untrusted,
                          char *why, size_t why_size);
