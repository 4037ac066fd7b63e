/* cmp_genm.h -- the client side of RFC 9483 §4.3 support messages: ask a
 * CMP server for its CA certificates (§4.3.1), a root CA update (§4.3.2)
 * and newer CRLs (§4.3.4) with genm, and read what the genp says.
 *
 * Building: OpenSSL's CMP client (OSSL_CMP_CTX with the gateway's
 * certificate and key) makes and protects the genm; a transfer callback
 * keeps the DER and sends nothing, so the caller can send it on its own
 * event loop (OSSL_CMP_exec_GENM_ses() would block).
 *
 * Checking: the genp must answer that genm (same transactionID, recipNonce
 * = its senderNonce; RFC 4210 §5.1.1), carry signature protection that
 * verifies against trust anchors (OSSL_CMP_validate_msg, cmp_protection.h)
 * and the InfoTypeAndValue the genm asked for. OpenSSL 3.0 knows neither
 * these info types nor genp content: cmp_asn1.h's templates read them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

enum cmp_genm_kind {
        CMP_GENM_CA_CERTS,              /* id-it-caCerts → id-it-caCerts */
        CMP_GENM_ROOT_CA_UPDATE,        /* id-it-rootCaCert → id-it-rootCaKeyUpdate */
        CMP_GENM_CRLS,                  /* id-it-crlStatusList → id-it-crls */
        _CMP_GENM_KIND_MAX,
};

/* "caCerts", "rootCaUpdate", "crls" (the names of cmpgw.json's poll.what) */
const char *cmp_genm_kind_name(enum cmp_genm_kind kind);

/* The gateway's CMP credentials: a certificate (its chain may follow it in
 * the same PEM file) and the unencrypted PEM key that belongs to it. */
struct cmp_genm_creds {
        X509 *cert;
        EVP_PKEY *key;
        STACK_OF(X509) *chain;          /* the rest of the certificate file; may be empty */
};
/* 0, or -errno with a malloc'd reason naming the file in *why */
int cmp_genm_creds_load(const char *cert_file, const char *key_file, struct cmp_genm_creds *c, char **why);
void cmp_genm_creds_clear(struct cmp_genm_creds *c);

/* One CRLStatus of a crlStatusList: the CRL issuer and the thisUpdate of
 * the CRL the caller holds (0: none). */
struct cmp_crl_status {
        const X509_NAME *issuer;
        int64_t this_update;
};

struct cmp_genm_args {
        enum cmp_genm_kind kind;
        X509 *old_root;                 /* rootCaUpdate: the root CA certificate to update, or NULL */
        const struct cmp_crl_status *crls;      /* crls: at least one */
        size_t n_crls;
};

/* A signed genm (OPENSSL_malloc'd DER). 0, or -EINVAL/-ENOMEM with a
 * malloc'd reason in *why. */
int cmp_genm_build(const struct cmp_genm_creds *creds, const struct cmp_genm_args *args,
                   uint8_t **der, size_t *len, char **why);

/* What a valid genp carried, by kind; absent: the infoValue was absent
 * (nothing to give, or nothing newer). */
struct cmp_genp {
        bool absent;
        STACK_OF(X509) *ca_certs;       /* caCerts */
        X509 *new_with_new, *new_with_old, *old_with_new;       /* rootCaUpdate; the last two may be NULL */
        STACK_OF(X509_CRL) *crls;       /* crls */
        STACK_OF(X509) *extra_certs;    /* the genp's extraCerts; may be NULL */
};

/* Checks that DER is a genp answering GENM (as above) whose signature
 * verifies against TRUSTED, and reads the value of its kind into *p.
 * 0; -EBADMSG (not a fitting genp), -EPERM (protection), -EPROTO (the
 * server answered with an error message), -ENOMEM; with a malloc'd reason
 * in *why. *p is cleared first and filled only on success. */
int cmp_genp_read(const uint8_t *genm, size_t genm_len, const uint8_t *der, size_t len,
                  enum cmp_genm_kind kind, X509_STORE *trusted, struct cmp_genp *p, char **why);
void cmp_genp_clear(struct cmp_genp *p);
