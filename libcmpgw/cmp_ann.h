/* cmp_ann.h -- CMP announcement PKIMessages (RFC 4210 §5.3.13-16, RFC 9482 §2.6)
 *
 * Parsing: OpenSSL's d2i_OSSL_CMP_MSG first (OpenSSL's idea of a well-formed
 * message, needed for OSSL_CMP_validate_msg), then our asn1t.h templates for
 * the announcement bodies OpenSSL 3.0 keeps private: ckuann [15]
 * CAKeyUpdAnnContent, cann [16] CMPCertificate, rann [17] RevAnnContent,
 * crlann [18] SEQUENCE OF CertificateList.
 *
 * Validation: the message protection with OpenSSL's CMP API
 * (OSSL_CMP_validate_msg: signature-based protection, the signer found by
 * sender name and senderKID among the extraCerts, its path built to the
 * trust anchors); then, for CRLANN, each CRL's signature against its issuer,
 * found among the trust anchors or the extraCerts (a CA certificate from the
 * extraCerts must itself chain to the trust anchors).
 *
 * Building (for tests, and for a gateway that turns polled CA information
 * into announcements): the same templates encode a PKIMessage, protected
 * with a signature over DER(ProtectedPart) (RFC 4210 §5.1.3.3).
 *
 * Names are RFC 2253 strings, serials upper-case hex without colons, as in
 * cmp_content.h and the registry. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* The announcement kinds are the PKIBody tags (enum cmp_body). */
enum cmp_ann_kind {
        CMP_ANN_CKUANN = 15,
        CMP_ANN_CANN = 16,
        CMP_ANN_RANN = 17,
        CMP_ANN_CRLANN = 18,
};

bool cmp_ann_kind_valid(int kind);
const char *cmp_ann_kind_name(int kind);        /* "ckuann", ...; "?" */

struct cmp_ann_revoked {
        char *serial;                   /* hex */
        int reason;                     /* CRLReason, -1 when the entry has none */
        int64_t date;                   /* revocationDate, unix seconds */
};

struct cmp_ann_crl {
        X509_CRL *crl;                  /* owned */
        char *issuer;                   /* RFC 2253 */
        char *issuer_key;               /* hex SHA-1 of the DER issuer Name: the cache file name */
        char *crl_number;               /* hex; NULL when the CRL has no cRLNumber */
        int64_t this_update;            /* unix seconds */
        int64_t next_update;            /* 0 when absent */
        struct cmp_ann_revoked *revoked;
        size_t n_revoked;
        uint8_t *der;                   /* the CertificateList */
        size_t der_len;
};

struct cmp_ann {
        int kind;                       /* enum cmp_ann_kind */
        char *sender;                   /* RFC 2253 of the sender directoryName, or as printed */

        /* ckuann (RFC 4210 §5.3.13): the new CA certificate and its links */
        X509 *old_with_new, *new_with_old, *new_with_new;
        /* cann (§5.3.14) */
        X509 *cert;
        /* ckuann: new_with_new's subject; cann: the certificate's subject */
        char *subject;
        char *serial;                   /* cann: its serial; rann: the revoked one */

        /* rann (§5.3.15) */
        int rann_status;                /* PKIStatus */
        char *rann_issuer;
        int64_t will_be_revoked_at;
        int64_t bad_since_date;
        int rann_reason;                /* reasonCode in crlDetails, -1 if none */

        /* crlann (§5.3.16) */
        struct cmp_ann_crl *crls;
        size_t n_crls;

        STACK_OF(X509) *extra_certs;    /* owned; may be NULL */
};

/* Parses one DER announcement PKIMessage (all bytes). Does not validate.
 * 0, -EBADMSG with a reason in *why (static string), -ENOMEM. */
int cmp_ann_parse(const uint8_t *der, size_t len, struct cmp_ann **ret, const char **why);
struct cmp_ann *cmp_ann_free(struct cmp_ann *a);

/* Reads PEM certificates (trust anchors) into a new store. 0, -errno; on
 * error *why is a malloc'd reason. */
int cmp_ann_load_trust(const char *path, X509_STORE **ret, char **why);

/* Validates the protection of DER (which parsed as A) against the trust
 * anchors, and every CRL of a CRLANN against its issuer. 0, or -EBADMSG
 * (-EPERM: not trusted) with a malloc'd reason in *why. */
int cmp_ann_validate(const uint8_t *der, size_t len, const struct cmp_ann *a,
                     X509_STORE *trusted, char **why);

/* Decodes one DER CertificateList (a cached CRL) into C (fields as above).
 * 0, -EBADMSG, -ENOMEM. */
int cmp_ann_crl_from_der(const uint8_t *der, size_t len, struct cmp_ann_crl *c);
void cmp_ann_crl_clear(struct cmp_ann_crl *c);

/* > 0 when A is newer than B (higher cRLNumber; if either has none or they
 * are equal, later thisUpdate), 0 when the same, < 0 when older. */
int cmp_ann_crl_compare(const struct cmp_ann_crl *a, const struct cmp_ann_crl *b);

/* Is SERIAL listed in C? */
bool cmp_ann_crl_lists(const struct cmp_ann_crl *c, const char *serial);

/* ---- building ---- */

struct cmp_ann_rann_spec {
        int status;                     /* PKIStatus, e.g. 5 revocationNotification */
        const X509_NAME *issuer;
        const ASN1_INTEGER *serial;
        int64_t will_be_revoked_at;
        int64_t bad_since_date;
        int reason;                     /* -1: no crlDetails */
};

/* The body's content, by kind: CKUANN certs[0..2] = oldWithNew, newWithOld,
 * newWithNew; CANN certs[0]; RANN rann; CRLANN crls[0..n_crls-1]. */
struct cmp_ann_spec {
        int kind;
        X509 *certs[3];
        const struct cmp_ann_rann_spec *rann;
        X509_CRL *const *crls;
        size_t n_crls;
};

/* Encodes a signed announcement: sender = the signer's subject, senderKID =
 * its subjectKeyIdentifier (when it has one), a fresh transactionID and
 * senderNonce, messageTime now, protection = signature with SHA-256 (or the
 * key's own algorithm for Ed25519/Ed448) over DER(ProtectedPart),
 * extraCerts = signer then CHAIN. *der is OPENSSL_malloc'd. 0, -EINVAL, -ENOMEM. */
int cmp_ann_build(const struct cmp_ann_spec *spec, X509 *signer, EVP_PKEY *key,
                  STACK_OF(X509) *chain, uint8_t **der, size_t *len);
