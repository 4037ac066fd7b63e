/* cmp_protection.h -- the protection of a PKIMessage (RFC 4210 §5.1.3):
 * which kind, and is a signature valid against trust anchors (OpenSSL's
 * OSSL_CMP_validate_msg). Used for announcements and, optionally, for the
 * requests a gateway forwards (RFC 9482 §4: a proxy can validate). */
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

/* Signature protection that verifies with a certificate chaining to
 * TRUSTED (candidates from the message's extraCerts and UNTRUSTED, may be
 * NULL). 0; -EPERM with the reason in why (OpenSSL's words), -EBADMSG,
 * -ENOMEM. */
int cmp_protection_verify(const uint8_t *der, size_t len, X509_STORE *trusted, STACK_OF(X509) *untrusted,
                          char *why, size_t why_size);
