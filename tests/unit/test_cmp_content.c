/* Unit tests: cmp_content, on real exchanges made in-process by OpenSSL's
 * CMP client and OpenSSL's CMP server (cmp_fixture.h). */
#include <errno.h>

#include "cmp_content.h"
#include "cmp_msg.h"
#include "test.h"
#include "cmp_fixture.h"

static struct fx_pki pki;

/* the issued certificate's facts are those of X, and its DER X's */
static bool same_cert(const struct cmp_cert_info *ci, X509 *x) {
        unsigned char *der = NULL;
        int n = i2d_X509(x, &der);
        struct cmp_cert_info want;
        bool same = ci && n > 0 && (size_t) n == ci->der_len && memcmp(der, ci->der, ci->der_len) == 0 &&
                    cmp_cert_info_get(x, &want) == 0;

        if (same)
                same = strcmp(want.subject, ci->subject) == 0 && strcmp(want.issuer, ci->issuer) == 0 &&
                       strcmp(want.serial, ci->serial) == 0 && want.not_before == ci->not_before &&
                       want.not_after == ci->not_after;
        cmp_cert_info_clear(&want);
        OPENSSL_free(der);
        return same;
}

static struct cmp_content *parse(const unsigned char *der, int len) {
        struct cmp_content *c = NULL;

        CHECK(len > 0);
        CHECK_INT(cmp_content_parse(der, (size_t) len, &c), 0);
        return c;
}

static struct cmp_content *req(const struct fx_run *run, int i) {
        return parse(run->pair[i].req, run->pair[i].req_len);
}

static struct cmp_content *rsp(const struct fx_run *run, int i) {
        return parse(run->pair[i].rsp, run->pair[i].rsp_len);
}

static void test_ir_certconf(void) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *cert = fx_cert(&pki, key, "node1", 1750000000, 1780000000, 0x0ABCDEF0);
        struct fx_run run;
        struct cmp_content *q, *s;
        const struct cmp_cert_info *ci;

        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, "node1", cert, NULL, FX_ACCEPT, false), 1);
        CHECK_INT(run.n, 2);

        q = req(&run, 0);
        s = rsp(&run, 0);
        if (!q || !s)
                goto out;
        CHECK_INT(q->body, CMP_BODY_IR);
        CHECK_STR(q->req_subject, "CN=node1,O=cmpgw");
        CHECK_STR(q->sender, "CN=node1,O=cmpgw");
        CHECK_STR(q->sender_kid, "31323334");   /* the referenceValue "1234" */
        CHECK(q->transaction_id && strlen(q->transaction_id) == 32);
        CHECK(!q->implicit_confirm);
        CHECK_INT(q->status, CMP_STATUS_NONE);
        CHECK(q->cert == NULL);
        CHECK(q->old_serial == NULL);

        CHECK_INT(s->body, CMP_BODY_IP);
        CHECK_STR(s->transaction_id, q->transaction_id);
        CHECK_INT(s->status, CMP_STATUS_ACCEPTED);
        CHECK_INT(s->fail_info, -1);
        CHECK(!s->implicit_confirm);
        CHECK(s->cert != NULL);
        CHECK(same_cert(s->cert, cert));
        CHECK_STR(s->sender, "");               /* the server has no name: NULL-DN */
        ci = s->cert;
        if (ci) {       /* read from the template, the key not decoded */
                CHECK_STR(ci->subject, "CN=node1,O=cmpgw");
                CHECK_STR(ci->issuer, "CN=Test CA,O=cmpgw");
                CHECK_STR(ci->serial, "0ABCDEF0");
                CHECK_INT(ci->not_before, 1750000000);
                CHECK_INT(ci->not_after, 1780000000);
                CHECK(ci->der_len > 200 && ci->der && ci->der[0] == 0x30);
        }
        cmp_content_free(q);
        cmp_content_free(s);

        q = req(&run, 1);
        s = rsp(&run, 1);
        if (!q || !s)
                goto out;
        CHECK_INT(q->body, CMP_BODY_CERTCONF);
        CHECK_INT(q->status, CMP_STATUS_ACCEPTED);
        CHECK_INT(s->body, CMP_BODY_PKICONF);
        CHECK_INT(s->status, CMP_STATUS_NONE);
        CHECK_STR(s->transaction_id, q->transaction_id);
out:
        cmp_content_free(q);
        cmp_content_free(s);
        fx_run_clear(&run);
        X509_free(cert);
        EVP_PKEY_free(key);
}

static void test_implicit_confirm(void) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *cert = fx_cert(&pki, key, "node2", 1750000000, 1780000000, 2);
        struct fx_run run;
        struct cmp_content *q, *s;

        CHECK_INT(fx_enrol(&run, OSSL_CMP_CR, key, "node2", cert, NULL, FX_ACCEPT, true), 1);
        CHECK_INT(run.n, 1);            /* no certConf */
        q = req(&run, 0);
        s = rsp(&run, 0);
        if (q && s) {
                CHECK_INT(q->body, CMP_BODY_CR);
                CHECK(q->implicit_confirm);     /* asked for */
                CHECK_INT(s->body, CMP_BODY_CP);
                CHECK(s->implicit_confirm);     /* granted */
                CHECK_INT(s->status, CMP_STATUS_ACCEPTED);
        }
        cmp_content_free(q);
        cmp_content_free(s);
        fx_run_clear(&run);
        X509_free(cert);
        EVP_PKEY_free(key);
}

static void test_p10cr(void) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *cert = fx_cert(&pki, key, "node3", 1750000000, 1780000000, 3);
        struct fx_run run;
        struct cmp_content *q, *s;

        CHECK_INT(fx_enrol(&run, OSSL_CMP_P10CR, key, "node3", cert, NULL, FX_ACCEPT, false), 1);
        CHECK_INT(run.n, 2);
        q = req(&run, 0);
        s = rsp(&run, 0);
        if (q && s) {
                CHECK_INT(q->body, CMP_BODY_P10CR);
                CHECK_STR(q->req_subject, "CN=node3,O=cmpgw");
                CHECK_INT(s->body, CMP_BODY_CP);
                CHECK(s->cert != NULL);
        }
        cmp_content_free(q);
        cmp_content_free(s);
        fx_run_clear(&run);
        X509_free(cert);
        EVP_PKEY_free(key);
}

static void test_kur_rr(void) {
        EVP_PKEY *k1 = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256");
        X509 *c1 = fx_cert(&pki, k1, "node4", 1750000000, 1780000000, 0x41);
        X509 *c2 = fx_cert(&pki, k2, "node4", 1770000000, 1800000000, 0x42);
        struct fx_run run;
        struct cmp_content *q = NULL, *s = NULL;

        CHECK_INT(fx_enrol(&run, OSSL_CMP_KUR, k2, "node4", c2, c1, FX_ACCEPT, false), 1);
        CHECK_INT(run.n, 2);
        q = req(&run, 0);
        s = rsp(&run, 0);
        if (q && s) {
                CHECK_INT(q->body, CMP_BODY_KUR);
                CHECK_STR(q->req_subject, "CN=node4,O=cmpgw");
                CHECK_STR(q->old_serial, "41");         /* oldCertID control */
                CHECK_STR(q->old_issuer, "CN=Test CA,O=cmpgw");
                CHECK_INT(s->body, CMP_BODY_KUP);
                CHECK(same_cert(s->cert, c2));
        }
        cmp_content_free(q);
        cmp_content_free(s);
        fx_run_clear(&run);

        CHECK_INT(fx_revoke(&run, c2, CRL_REASON_KEY_COMPROMISE, FX_ACCEPT), 1);
        CHECK_INT(run.n, 1);
        q = req(&run, 0);
        s = rsp(&run, 0);
        if (q && s) {
                CHECK_INT(q->body, CMP_BODY_RR);
                CHECK_STR(q->old_serial, "42");
                CHECK_STR(q->old_issuer, "CN=Test CA,O=cmpgw");
                CHECK_INT(q->revocation_reason, CRL_REASON_KEY_COMPROMISE);
                CHECK_INT(s->body, CMP_BODY_RP);
                CHECK_INT(s->status, CMP_STATUS_ACCEPTED);
        }
        cmp_content_free(q);
        cmp_content_free(s);
        fx_run_clear(&run);

        /* no reason: -1 */
        CHECK_INT(fx_revoke(&run, c1, CRL_REASON_NONE, FX_REJECT), 0);
        CHECK_INT(run.n, 1);
        q = req(&run, 0);
        s = rsp(&run, 0);
        if (q && s) {
                CHECK_INT(q->revocation_reason, -1);
                CHECK_STR(q->old_serial, "41");
                CHECK_INT(s->body, CMP_BODY_RP);
                CHECK_INT(s->status, CMP_STATUS_REJECTION);
                CHECK_INT(s->fail_info, 1 << OSSL_CMP_PKIFAILUREINFO_badCertId);
                CHECK_STR(s->status_text, "unknown certificate");
        }
        cmp_content_free(q);
        cmp_content_free(s);
        fx_run_clear(&run);
        X509_free(c1);
        X509_free(c2);
        EVP_PKEY_free(k1);
        EVP_PKEY_free(k2);
}

static void test_rejection_error(void) {
        EVP_PKEY *key = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
        X509 *wrong = fx_cert(&pki, other, "node5", 1750000000, 1780000000, 5);
        struct fx_run run;
        struct cmp_content *q = NULL, *s = NULL;
        char *detail;

        /* ip with status rejection */
        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, "node5", NULL, NULL, FX_REJECT, false), 0);
        CHECK_INT(run.n, 1);
        s = rsp(&run, 0);
        if (s) {
                CHECK_INT(s->body, CMP_BODY_IP);
                CHECK_INT(s->status, CMP_STATUS_REJECTION);
                CHECK_INT(s->fail_info, 1 << OSSL_CMP_PKIFAILUREINFO_badCertTemplate);
                CHECK_STR(s->status_text, "template not acceptable");
                CHECK(s->cert == NULL);
                detail = cmp_content_status_detail(s);
                CHECK_STR(detail, "rejection; failInfo badCertTemplate; template not acceptable");
                free(detail);
        }
        s = cmp_content_free(s);
        fx_run_clear(&run);

        /* the CA fails: OpenSSL's server answers with an error message */
        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, "node5", NULL, NULL, FX_FAIL, false), 0);
        CHECK_INT(run.n, 1);
        s = rsp(&run, 0);
        if (s) {
                CHECK_INT(s->body, CMP_BODY_ERROR);
                CHECK_INT(s->status, CMP_STATUS_REJECTION);
                /* errorDetails from OpenSSL's error queue */
                CHECK(s->status_text && strstr(s->status_text, "CA offline"));
                CHECK(s->fail_info >= 0);
        }
        s = cmp_content_free(s);
        fx_run_clear(&run);

        /* a certificate for another key: the client rejects it in certConf */
        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, "node5", wrong, NULL, FX_ACCEPT, false), 0);
        CHECK_INT(run.n, 2);
        q = req(&run, 1);
        s = rsp(&run, 1);
        if (q && s) {
                CHECK_INT(q->body, CMP_BODY_CERTCONF);
                CHECK_INT(q->status, CMP_STATUS_REJECTION);
                CHECK(q->fail_info > 0);
                CHECK_INT(s->body, CMP_BODY_PKICONF);
        }
        cmp_content_free(q);
        cmp_content_free(s);
        fx_run_clear(&run);
        X509_free(wrong);
        EVP_PKEY_free(key);
        EVP_PKEY_free(other);
}

static void test_genm(void) {
        struct fx_run run;
        struct cmp_content *q, *s;

        CHECK_INT(fx_genm_run(&run), 1);
        CHECK_INT(run.n, 1);
        q = req(&run, 0);
        s = rsp(&run, 0);
        if (q && s) {
                CHECK_INT(q->body, CMP_BODY_GENM);
                CHECK_INT(s->body, CMP_BODY_GENP);
                CHECK_INT(s->status, CMP_STATUS_NONE);
                CHECK(s->cert == NULL);
        }
        cmp_content_free(q);
        cmp_content_free(s);
        fx_run_clear(&run);
}

static void test_bad(void) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *cert = fx_cert(&pki, key, "node6", 1750000000, 1780000000, 6);
        static const uint8_t seq[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };
        struct cmp_content *c = NULL;
        struct fx_run run;
        unsigned char *buf;
        size_t len;

        fx_enrol(&run, OSSL_CMP_IR, key, "node6", cert, NULL, FX_ACCEPT, false);
        CHECK(run.n >= 1);
        len = (size_t) run.pair[0].rsp_len;
        buf = malloc(len + 1);
        memcpy(buf, run.pair[0].rsp, len);
        buf[len] = 0;
        CHECK_INT(cmp_content_parse(buf, len + 1, &c), -EBADMSG);
        for (size_t cut = 1; cut < len; cut += 13)
                CHECK_INT(cmp_content_parse(buf, len - cut, &c), -EBADMSG);
        CHECK_INT(cmp_content_parse(buf, 0, &c), -EBADMSG);
        CHECK_INT(cmp_content_parse(seq, sizeof seq, &c), -EBADMSG);
        CHECK(c == NULL);
        CHECK_INT(cmp_content_parse(buf, len, &c), 0);
        cmp_content_free(c);
        free(buf);
        fx_run_clear(&run);
        X509_free(cert);
        EVP_PKEY_free(key);
}

static void test_names(void) {
        CHECK_STR(cmp_pki_status_name(CMP_STATUS_ACCEPTED), "accepted");
        CHECK_STR(cmp_pki_status_name(CMP_STATUS_WAITING), "waiting");
        CHECK_STR(cmp_pki_status_name(-1), "none");
        CHECK_STR(cmp_pki_status_name(42), "?");
}

int main(void) {
        fx_pki_init(&pki);
        test_ir_certconf();
        test_implicit_confirm();
        test_p10cr();
        test_kur_rr();
        test_rejection_error();
        test_genm();
        test_bad();
        test_names();
        fx_pki_done(&pki);
        TEST_MAIN_END();
}
