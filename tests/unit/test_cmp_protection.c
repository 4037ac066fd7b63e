/* Unit tests: who protected a PKIMessage (cmp_protector_get), on requests
 * made in-process by OpenSSL's CMP client (cmp_fixture.h): MAC-protected
 * (PBM), signature-protected and unprotected. */
#include <errno.h>

#include "cmp_protection.h"
#include "test.h"
#pragma GCC diagnostic ignored "-Wunused-function"      /* fixture helpers this test has no use for */
#include "cmp_fixture.h"

static struct fx_pki pki;

/* the first request of a genm transaction the client protects as set up
 * by SETUP; the pair is recorded whatever the mock server thinks of it */
static void first_request(void (*setup)(OSSL_CMP_CTX *ctx, void *arg), void *arg, struct cmp_protector *p) {
        struct fx_run run;
        OSSL_CMP_CTX *ctx = fx_run_init(&run, FX_ACCEPT, NULL, false);
        STACK_OF(OSSL_CMP_ITAV) *itavs;

        if (setup)
                setup(ctx, arg);
        itavs = OSSL_CMP_exec_GENM_ses(ctx);
        sk_OSSL_CMP_ITAV_pop_free(itavs, OSSL_CMP_ITAV_free);
        CHECK(run.n >= 1);
        if (run.n >= 1)
                CHECK_INT(cmp_protector_get(run.pair[0].req, (size_t) run.pair[0].req_len, p), 0);
        fx_run_done(&run, ctx);
}

static void test_mac(void) {
        struct cmp_protector p;

        first_request(NULL, NULL, &p);
        CHECK_INT(p.kind, CMP_PROT_MAC);
        CHECK(p.sender == NULL);                /* no name known: NULL-DN */
        CHECK_INT(p.sender_kid_len, 4);
        CHECK(p.sender_kid && memcmp(p.sender_kid, FX_REF, 4) == 0);
        cmp_protector_clear(&p);
}

struct signer {
        X509 *cert;
        EVP_PKEY *key;
};

static void sign_with(OSSL_CMP_CTX *ctx, void *arg) {
        struct signer *s = arg;

        OSSL_CMP_CTX_set1_secretValue(ctx, NULL, 0);
        OSSL_CMP_CTX_set1_referenceValue(ctx, NULL, 0);
        OSSL_CMP_CTX_set1_cert(ctx, s->cert);
        OSSL_CMP_CTX_set1_pkey(ctx, s->key);
}

static void test_signature(void) {
        struct signer s = { .key = EVP_EC_gen("P-256") };
        struct cmp_protector p;

        s.cert = fx_cert(&pki, s.key, "node7", 1750000000, 1780000000, 7);
        first_request(sign_with, &s, &p);
        CHECK_INT(p.kind, CMP_PROT_SIGNATURE);
        CHECK_STR(p.sender, "CN=node7,O=cmpgw");
        CHECK(p.sender_kid == NULL);            /* fx_cert has no subjectKeyIdentifier to name */
        cmp_protector_clear(&p);
        CHECK(p.sender == NULL && p.sender_kid == NULL);
        X509_free(s.cert);
        EVP_PKEY_free(s.key);
}

static void unprotected(OSSL_CMP_CTX *ctx, void *arg) {
        X509_NAME *n = fx_name("node8");

        OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_UNPROTECTED_SEND, 1);
        OSSL_CMP_CTX_set1_referenceValue(ctx, NULL, 0);
        OSSL_CMP_CTX_set1_subjectName(ctx, n);
        X509_NAME_free(n);
}

static void test_unprotected(void) {
        struct cmp_protector p;

        first_request(unprotected, NULL, &p);
        CHECK_INT(p.kind, CMP_PROT_NONE);
        CHECK_STR(p.sender, "CN=node8,O=cmpgw");
        CHECK(p.sender_kid == NULL);
        cmp_protector_clear(&p);
}

static void test_not_a_message(void) {
        static const uint8_t junk[] = { 0x30, 0x03, 0x02, 0x01, 0x02 };
        struct cmp_protector p;

        CHECK_INT(cmp_protector_get(junk, sizeof junk, &p), -EBADMSG);
        CHECK(p.sender == NULL && p.sender_kid == NULL);
        CHECK_INT(cmp_protection_kind(junk, sizeof junk), CMP_PROT_INVALID);
}

int main(void) {
        fx_pki_init(&pki);
        test_mac();
        test_signature();
        test_unprotected();
        test_not_a_message();
        fx_pki_done(&pki);
        TEST_MAIN_END();
}
