/* pki_fixture.h -- a small EC PKI made in-process for the unit tests: CA
 * certificates (basicConstraints, keyUsage, subjectKeyIdentifier) and CRLs
 * with the X509 API. Header-only: each test executable includes it once. */
#pragma once

#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct ca {
        EVP_PKEY *key;
        X509 *cert;
};

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value) {
        X509V3_CTX ctx;
        X509_EXTENSION *e;

        X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
        e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
        if (!e)
                abort();
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
}

/* a CA certificate for KEY named CN, signed by ISSUER (NULL: self-signed) */
static struct ca make_ca(const char *cn, const struct ca *issuer, long serial) {
        struct ca c = { .key = EVP_EC_gen("P-256") };
        X509_NAME *n = X509_NAME_new();

        c.cert = X509_new();
        if (!c.key || !c.cert || !n)
                abort();
        X509_set_version(c.cert, X509_VERSION_3);
        ASN1_INTEGER_set(X509_get_serialNumber(c.cert), serial);
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *) cn, -1, -1, 0);
        X509_set_subject_name(c.cert, n);
        X509_set_issuer_name(c.cert, issuer ? X509_get_subject_name(issuer->cert) : n);
        X509_gmtime_adj(X509_getm_notBefore(c.cert), -3600);
        X509_gmtime_adj(X509_getm_notAfter(c.cert), 86400);
        X509_set_pubkey(c.cert, c.key);
        add_ext(c.cert, issuer ? issuer->cert : c.cert, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(c.cert, issuer ? issuer->cert : c.cert, NID_key_usage,
                "critical,keyCertSign,cRLSign,digitalSignature");
        add_ext(c.cert, issuer ? issuer->cert : c.cert, NID_subject_key_identifier, "hash");
        if (!X509_sign(c.cert, issuer ? issuer->key : c.key, EVP_sha256()))
                abort();
        X509_NAME_free(n);
        return c;
}

static void ca_free(struct ca *c) {
        EVP_PKEY_free(c->key);
        X509_free(c->cert);
}

/* a CRL of CA: number NUM, thisUpdate NOW+AGE, the given serials (reason 1) */
static X509_CRL *make_crl(const struct ca *ca, long num, long age, const long *serials, size_t n) {
        X509_CRL *crl = X509_CRL_new();
        ASN1_TIME *t = ASN1_TIME_new();
        ASN1_INTEGER *number = ASN1_INTEGER_new();

        X509_CRL_set_version(crl, X509_CRL_VERSION_2);
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert));
        X509_gmtime_adj(t, age);
        X509_CRL_set1_lastUpdate(crl, t);
        X509_gmtime_adj(t, age + 86400);
        X509_CRL_set1_nextUpdate(crl, t);
        for (size_t i = 0; i < n; i++) {
                X509_REVOKED *r = X509_REVOKED_new();
                ASN1_INTEGER *s = ASN1_INTEGER_new();
                ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();

                ASN1_INTEGER_set(s, serials[i]);
                X509_REVOKED_set_serialNumber(r, s);
                X509_gmtime_adj(t, age - 60);
                X509_REVOKED_set_revocationDate(r, t);
                ASN1_ENUMERATED_set(reason, 1);         /* keyCompromise */
                X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0);
                X509_CRL_add0_revoked(crl, r);
                ASN1_INTEGER_free(s);
                ASN1_ENUMERATED_free(reason);
        }
        ASN1_INTEGER_set(number, num);
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0);
        X509_CRL_sort(crl);
        if (!X509_CRL_sign(crl, ca->key, EVP_sha256()))
                abort();
        ASN1_TIME_free(t);
        ASN1_INTEGER_free(number);
        return crl;
}
