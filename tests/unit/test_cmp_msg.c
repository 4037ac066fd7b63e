/* Unit tests: PKIMessage inspection. Real messages are made by OpenSSL's
 * own CMP client, captured by a transfer callback that never sends. */
#include <errno.h>

#include <openssl/cmp.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cmp_msg.h"
#include "test.h"

static unsigned char *captured;
static int captured_len;

static OSSL_CMP_MSG *capture(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req) {
        OPENSSL_free(captured);
        captured = NULL;
        captured_len = i2d_OSSL_CMP_MSG(req, &captured);
        return NULL;    /* the transaction fails here: nothing is sent */
}

static OSSL_CMP_CTX *ctx_new(EVP_PKEY *key) {
        OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
        X509_NAME *subject = X509_NAME_new();

        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *) "node1", -1, -1, 0);
        OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *) "1234", 4);
        OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *) "secret", 6);
        OSSL_CMP_CTX_set1_subjectName(ctx, subject);
        OSSL_CMP_CTX_set0_newPkey(ctx, 1, key);
        OSSL_CMP_CTX_set_transfer_cb(ctx, capture);
        X509_NAME_free(subject);
        return ctx;
}

static void test_ir(void) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        OSSL_CMP_CTX *ctx = ctx_new(key);
        struct cmp_msg_info info;
        const char *why = NULL;
        unsigned char *bad;
        char hex[129];

        CHECK(OSSL_CMP_exec_IR_ses(ctx) == NULL);
        ERR_clear_error();
        CHECK(captured_len > 100);
        CHECK_INT(cmp_msg_inspect(captured, (size_t) captured_len, &info, &why), 0);
        CHECK_INT(info.body, CMP_BODY_IR);
        CHECK_STR(cmp_body_name(info.body), "ir");
        CHECK_INT(info.tid_len, 16);    /* OpenSSL makes 128-bit transactionIDs */
        cmp_msg_tid_hex(&info, hex, sizeof hex);
        CHECK_INT(strlen(hex), 32);
        CHECK(cmp_body_is_request(info.body));
        CHECK(cmp_body_allowed_on_op(CMP_OP_NONE, info.body));
        CHECK(cmp_body_allowed_on_op(CMP_OP_IR, info.body));
        CHECK(!cmp_body_allowed_on_op(CMP_OP_CR, info.body));
        CHECK(!cmp_body_allowed_on_op(CMP_OP_RR, info.body));
        CHECK(!cmp_body_allowed_on_op(CMP_OP_CRTS, info.body));

        /* trailing garbage, truncation, empty: never one PKIMessage */
        bad = malloc((size_t) captured_len + 1);
        memcpy(bad, captured, (size_t) captured_len);
        bad[captured_len] = 0;
        CHECK_INT(cmp_msg_inspect(bad, (size_t) captured_len + 1, &info, &why), -EBADMSG);
        CHECK(why && strstr(why, "trailing"));
        for (int cut = 1; cut < captured_len; cut += 7)
                CHECK_INT(cmp_msg_inspect(bad, (size_t) (captured_len - cut), &info, NULL), -EBADMSG);
        CHECK_INT(cmp_msg_inspect(bad, 0, &info, &why), -EBADMSG);
        CHECK_INT(info.body, -1);
        free(bad);
        OSSL_CMP_CTX_free(ctx);
}

static void test_genm(void) {
        OSSL_CMP_CTX *ctx = ctx_new(EVP_EC_gen("P-256"));
        struct cmp_msg_info info;

        CHECK(OSSL_CMP_exec_GENM_ses(ctx) == NULL);
        ERR_clear_error();
        CHECK_INT(cmp_msg_inspect(captured, (size_t) captured_len, &info, NULL), 0);
        CHECK_INT(info.body, CMP_BODY_GENM);
        CHECK(cmp_body_allowed_on_op(CMP_OP_CRTS, info.body));
        CHECK(cmp_body_allowed_on_op(CMP_OP_CRLS, info.body));
        CHECK(!cmp_body_allowed_on_op(CMP_OP_IR, info.body));
        OSSL_CMP_CTX_free(ctx);
}

/* a DER length (4-byte long form when LONG: BER, not DER) */
static size_t put_len(uint8_t *out, size_t n, int long_form) {
        if (long_form) {
                out[0] = 0x84;
                out[1] = (uint8_t) (n >> 24); out[2] = (uint8_t) (n >> 16);
                out[3] = (uint8_t) (n >> 8); out[4] = (uint8_t) n;
                return 5;
        }
        if (n < 0x80) {
                out[0] = (uint8_t) n;
                return 1;
        }
        if (n < 0x100) {
                out[0] = 0x81; out[1] = (uint8_t) n;
                return 2;
        }
        out[0] = 0x82; out[1] = (uint8_t) (n >> 8); out[2] = (uint8_t) n;
        return 3;
}

/* nested [20] PKIMessages with the captured genm inside, the SEQUENCE OF's
 * length in DER or (BER_WRAPPER) in a long form: RFC 9482 §2.3 wants DER */
static size_t make_nested(uint8_t *out, int ber_wrapper) {
        const unsigned char *p = captured, *hdr;
        long content_len, hdr_len;
        int tag, cls;
        uint8_t seqof[4096], body[4096], outer_content[4096];
        size_t n_seqof, n_body, n_outer, n;

        CHECK(ASN1_get_object(&p, &content_len, &tag, &cls, captured_len) == V_ASN1_CONSTRUCTED);
        hdr = p;
        CHECK(ASN1_get_object(&p, &hdr_len, &tag, &cls, content_len) == V_ASN1_CONSTRUCTED);
        hdr_len += p - hdr;                             /* the whole PKIHeader */
        seqof[0] = 0x30;
        n_seqof = 1 + put_len(seqof + 1, (size_t) captured_len, ber_wrapper);
        memcpy(seqof + n_seqof, captured, (size_t) captured_len);
        n_seqof += (size_t) captured_len;
        body[0] = 0xb4;                                 /* [20] EXPLICIT */
        n_body = 1 + put_len(body + 1, n_seqof, 0);
        memcpy(body + n_body, seqof, n_seqof);
        n_body += n_seqof;
        memcpy(outer_content, hdr, (size_t) hdr_len);
        memcpy(outer_content + hdr_len, body, n_body);
        n_outer = (size_t) hdr_len + n_body;
        out[0] = 0x30;
        n = 1 + put_len(out + 1, n_outer, 0);
        memcpy(out + n, outer_content, n_outer);
        return n + n_outer;
}

static void test_nested(void) {
        OSSL_CMP_CTX *ctx = ctx_new(EVP_EC_gen("P-256"));
        struct cmp_msg_info info;
        uint8_t der[8192];
        size_t n;

        CHECK(OSSL_CMP_exec_GENM_ses(ctx) == NULL);
        ERR_clear_error();
        n = make_nested(der, 0);
        CHECK_INT(cmp_msg_inspect(der, n, &info, NULL), 0);
        CHECK_INT(info.body, CMP_BODY_NESTED);
        n = make_nested(der, 1);
        CHECK_INT(cmp_msg_inspect(der, n, &info, NULL), -EBADMSG);
        OSSL_CMP_CTX_free(ctx);
}

static void test_not_cmp(void) {
        /* valid DER that is not a PKIMessage: an INTEGER and a bare SEQUENCE */
        static const uint8_t integer[] = { 0x02, 0x01, 0x05 };
        static const uint8_t seq[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };
        static const uint8_t text[] = "hello";
        struct cmp_msg_info info;

        CHECK_INT(cmp_msg_inspect(integer, sizeof integer, &info, NULL), -EBADMSG);
        CHECK_INT(cmp_msg_inspect(seq, sizeof seq, &info, NULL), -EBADMSG);
        CHECK_INT(cmp_msg_inspect(text, sizeof text - 1, &info, NULL), -EBADMSG);
}

static void test_body_rules(void) {
        /* certConf, pollReq and error belong to every enrolment (PRODUCT.md) */
        static const enum cmp_op enrol[] = { CMP_OP_IR, CMP_OP_CR, CMP_OP_KUR, CMP_OP_P10 };
        for (size_t i = 0; i < sizeof enrol / sizeof enrol[0]; i++) {
                CHECK(cmp_body_allowed_on_op(enrol[i], CMP_BODY_CERTCONF));
                CHECK(cmp_body_allowed_on_op(enrol[i], CMP_BODY_POLLREQ));
                CHECK(cmp_body_allowed_on_op(enrol[i], CMP_BODY_ERROR));
                CHECK(!cmp_body_allowed_on_op(enrol[i], CMP_BODY_RR));
                CHECK(!cmp_body_allowed_on_op(enrol[i], CMP_BODY_GENM));
        }
        CHECK(cmp_body_allowed_on_op(CMP_OP_P10, CMP_BODY_P10CR));
        CHECK(cmp_body_allowed_on_op(CMP_OP_KUR, CMP_BODY_KUR));
        CHECK(cmp_body_allowed_on_op(CMP_OP_RR, CMP_BODY_RR));
        CHECK(!cmp_body_allowed_on_op(CMP_OP_RR, CMP_BODY_IR));
        CHECK(cmp_body_allowed_on_op(CMP_OP_NEST, CMP_BODY_NESTED));
        /* responses and announcements are never requests */
        static const int not_requests[] = { CMP_BODY_IP, CMP_BODY_CP, CMP_BODY_KUP, CMP_BODY_RP,
                CMP_BODY_PKICONF, CMP_BODY_GENP, CMP_BODY_POLLREP, CMP_BODY_CKUANN, CMP_BODY_CANN,
                CMP_BODY_RANN, CMP_BODY_CRLANN };
        for (size_t i = 0; i < sizeof not_requests / sizeof not_requests[0]; i++) {
                CHECK(!cmp_body_is_request(not_requests[i]));
                CHECK(!cmp_body_allowed_on_op(CMP_OP_NONE, not_requests[i]));
        }
        CHECK_STR(cmp_body_name(CMP_BODY_CERTCONF), "certConf");
        CHECK_STR(cmp_body_name(-1), "?");
        CHECK_STR(cmp_body_name(99), "?");
}

int main(void) {
        test_ir();
        test_genm();
        test_nested();
        test_not_cmp();
        test_body_rules();
        OPENSSL_free(captured);
        TEST_MAIN_END();
}
