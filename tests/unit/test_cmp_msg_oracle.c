/* Unit tests: cmp_msg_inspect() (one pass with our templates, certificates
 * passed on without decoding their keys) takes and refuses what the
 * gateway's former check took and refused: OpenSSL's own
 * d2i_OSSL_CMP_MSG, all bytes consumed, and a DER re-encoding to the same
 * bytes. The oracle runs on real exchanges (cmp_fixture.h) and on every
 * one-byte mutation of them. */
#include <errno.h>

#include <openssl/cmp.h>

#include "cmp_asn1.h"
#include "cmp_content.h"
#include "cmp_msg.h"
#include "test.h"
#include "cmp_fixture.h"

static struct fx_pki pki;
static unsigned n_checked, n_differ_loose, n_differ_strict, n_stricter_der;

/* the former cmp_msg_inspect(): OpenSSL's decoder, all bytes, DER */
static bool openssl_takes(const uint8_t *der, size_t len) {
        const unsigned char *p = der;
        OSSL_CMP_MSG *msg = len ? d2i_OSSL_CMP_MSG(NULL, &p, (long) len) : NULL;
        unsigned char *enc = NULL;
        bool ok = false;

        if (msg && (size_t) (p - der) == len) {
                int n = i2d_OSSL_CMP_MSG(msg, &enc);
                ok = n > 0 && (size_t) n == len && memcmp(enc, der, len) == 0;
        }
        OPENSSL_free(enc);
        OSSL_CMP_MSG_free(msg);
        ERR_clear_error();
        return ok;
}

static void compare(const uint8_t *der, size_t len, const char *what, size_t at) {
        struct cmp_msg_info info;
        struct cmp_content *c = NULL;
        const char *why = "";
        bool ours = cmp_msg_inspect_content(der, len, &info, &c, &why) == 0;
        bool theirs = openssl_takes(der, len);

        n_checked++;
        cmp_content_free(c);
        if (ours == theirs)
                return;
        /* Stricter by design: a certificate's fields not in DER (say, a
         * BIT STRING's unused bits not zero), which OpenSSL's X509 passes
         * on from its cached encoding, RFC 9482 §2.3 wants DER. */
        if (!ours && strstr(why, "BER"))
                n_stricter_der++;
        else if (ours)
                n_differ_loose++;
        else
                n_differ_strict++;
        if (getenv("ORACLE_VERBOSE")) {
                fprintf(stderr, "%s: byte %zu: ours %d openssl %d\n", what, at, ours, theirs);
                if (getenv("ORACLE_DUMP")) {
                        char fn[128];
                        snprintf(fn, sizeof fn, "/tmp/oracle-%u.der", n_checked);
                        FILE *f = fopen(fn, "wb");
                        fwrite(der, 1, len, f);
                        fclose(f);
                }
        }
}

/* the message itself, then each byte flipped in two ways, then cut short */
static void mutate(const unsigned char *der, int len, const char *what) {
        uint8_t *m = malloc((size_t) len);
        static const uint8_t flips[] = { 0x01, 0x80, 0xff };

        CHECK(len > 0 && openssl_takes(der, (size_t) len));
        compare(der, (size_t) len, what, 0);
        memcpy(m, der, (size_t) len);
        for (int i = 0; i < len; i++)
                for (size_t f = 0; f < sizeof flips; f++) {
                        m[i] ^= flips[f];
                        compare(m, (size_t) len, what, (size_t) i);
                        m[i] ^= flips[f];
                }
        for (int cut = 1; cut < len; cut += 13)
                compare(m, (size_t) (len - cut), what, (size_t) (len - cut));
        free(m);
}

static void mutate_run(struct fx_run *run, const char *what) {
        for (int i = 0; i < run->n; i++) {
                mutate(run->pair[i].req, run->pair[i].req_len, what);
                mutate(run->pair[i].rsp, run->pair[i].rsp_len, what);
        }
        fx_run_clear(run);
}

static uint8_t *encode(CMPGW_MSG *m, int *len) {
        uint8_t *der = NULL;

        *len = ASN1_item_i2d((ASN1_VALUE *) m, &der, ASN1_ITEM_rptr(CMPGW_MSG));
        CHECK(*len > 0);
        return der;
}

static CMPGW_MSG *decode(const uint8_t *der, int len) {
        const unsigned char *p = der;
        CMPGW_MSG *m = (CMPGW_MSG *) ASN1_item_d2i(NULL, &p, len, ASN1_ITEM_rptr(CMPGW_MSG));

        CHECK(m != NULL);
        return m;
}

/* An ip as a CA sends it with signature protection: extraCerts (the CA's
 * and the issued certificate) and caPubs, which our inspection passes on
 * undecoded and OpenSSL's decoder decodes with their keys. */
static uint8_t *ip_with_certs(const struct fx_run *run, X509 *cert, int *len) {
        CMPGW_MSG *m = decode(run->pair[0].rsp, run->pair[0].rsp_len);
        unsigned char *ca = NULL;
        const unsigned char *p;
        int n = i2d_X509(pki.ca_cert, &ca);
        uint8_t *der;

        p = ca;
        m->body->value.rep->ca_pubs = sk_CMPGW_CERT_SHELL_new_null();
        sk_CMPGW_CERT_SHELL_push(m->body->value.rep->ca_pubs,
                                 (CMPGW_CERT_SHELL *) ASN1_item_d2i(NULL, &p, n, ASN1_ITEM_rptr(CMPGW_CERT_SHELL)));
        m->extra_certs = sk_X509_new_null();
        X509_up_ref(pki.ca_cert);
        X509_up_ref(cert);
        sk_X509_push(m->extra_certs, pki.ca_cert);
        sk_X509_push(m->extra_certs, cert);
        der = encode(m, len);
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
        OPENSSL_free(ca);
        return der;
}

/* A certificate in caPubs that is BER (its signature BIT STRING with 7
 * unused bits that are not zero): refused as BER, although the message
 * around it is re-encoded from the certificate's kept bytes (cmp_asn1.c,
 * cert_shell_cb()); a one-byte change, so all lengths stay as they were. */
static void test_ber_certificate(const uint8_t *ip, int len) {
        unsigned char *ca = NULL;
        const unsigned char *p;
        int n = i2d_X509(pki.ca_cert, &ca);
        CMPGW_CERT_SHELL *shell;
        struct cmp_msg_info info;
        const char *why = NULL;
        uint8_t *m = malloc((size_t) len), *at;
        size_t unused;

        p = ca;
        shell = (CMPGW_CERT_SHELL *) ASN1_item_d2i(NULL, &p, n, ASN1_ITEM_rptr(CMPGW_CERT_SHELL));
        CHECK(shell != NULL && m != NULL);
        memcpy(m, ip, (size_t) len);
        at = memmem(m, (size_t) len, ca, (size_t) n);
        CHECK(at != NULL);
        CHECK_INT(cmp_msg_inspect(m, (size_t) len, &info, &why), 0);
        /* the signature is the certificate's last field: 03 LL 00 <bytes> */
        unused = (size_t) n - (size_t) ASN1_STRING_length(shell->signature) - 1;
        CHECK_INT(at[unused], 0);
        at[unused] = 7;
        at[n - 1] |= 0x01;
        CHECK_INT(cmp_msg_inspect(m, (size_t) len, &info, &why), -EBADMSG);
        CHECK(why && strstr(why, "BER"));
        ASN1_item_free((ASN1_VALUE *) shell, ASN1_ITEM_rptr(CMPGW_CERT_SHELL));
        OPENSSL_free(ca);
        free(m);
}

/* MSG with its body's content replaced by the DER value V (an ANY body) */
static void refuse_body(const struct fx_pair *pair, bool rsp, const uint8_t *v, long vlen, const char *what) {
        CMPGW_MSG *m = rsp ? decode(pair->rsp, pair->rsp_len) : decode(pair->req, pair->req_len);
        struct cmp_msg_info info;
        const char *why = NULL;
        const unsigned char *p = v;
        uint8_t *der;
        int len;

        ASN1_TYPE_free(m->body->value.other);
        m->body->value.other = d2i_ASN1_TYPE(NULL, &p, vlen);
        CHECK(m->body->value.other != NULL);
        der = encode(m, &len);
        CHECK_INT(cmp_msg_inspect(der, (size_t) len, &info, &why), -EBADMSG);
        CHECK(!openssl_takes(der, (size_t) len));
        if (why)
                fprintf(stderr, "%s: refused: %s\n", what, why);
        OPENSSL_free(der);
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
}

/* Hand-made inputs the former OpenSSL-based check refused, each refused
 * by both */
static void test_malformed(const struct fx_run *genm) {
        /* genm content must be SEQUENCE OF InfoTypeAndValue */
        static const uint8_t integer[] = { 0x02, 0x01, 0x05 };
        static const uint8_t seq_of_int[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };
        /* implicitConfirm's value must be NULL (an INTEGER here) */
        static const uint8_t bad_itav[] = { 0x30, 0x0f, 0x30, 0x0d, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05,
                                            0x05, 0x07, 0x04, 0x0d, 0x02, 0x01, 0x01 };
        /* an empty SEQUENCE with an indefinite length: BER, not DER */
        static const uint8_t ber[] = { 0x30, 0x80, 0x00, 0x00 };
        struct cmp_msg_info info;
        const char *why = NULL;
        uint8_t *m;
        size_t n = (size_t) genm->pair[0].req_len;

        refuse_body(&genm->pair[0], false, integer, sizeof integer, "genm with an INTEGER");
        refuse_body(&genm->pair[0], false, seq_of_int, sizeof seq_of_int, "genm with SEQUENCE OF INTEGER");
        refuse_body(&genm->pair[0], false, bad_itav, sizeof bad_itav, "genm with implicitConfirm 1");
        refuse_body(&genm->pair[0], true, ber, sizeof ber, "genp in BER");

        /* the outer SEQUENCE's length in long form, and trailing bytes */
        m = malloc(n + 2);
        CHECK(genm->pair[0].req[1] == 0x81 || genm->pair[0].req[1] == 0x82);
        memcpy(m, genm->pair[0].req, n);
        m[n] = 0;
        CHECK_INT(cmp_msg_inspect(m, n + 1, &info, &why), -EBADMSG);
        CHECK(why && strstr(why, "trailing"));
        if (m[1] == 0x81) {     /* 0x81 LL → 0x82 00 LL: the same length, not DER */
                memmove(m + 3, m + 2, n - 2);
                m[2] = 0;
                m[1] = 0x82;
                CHECK_INT(cmp_msg_inspect(m, n + 1, &info, &why), -EBADMSG);
                CHECK(why && strstr(why, "BER"));
                CHECK(!openssl_takes(m, n + 1));
        }
        free(m);
}

int main(void) {
        EVP_PKEY *key;
        X509 *cert;
        struct fx_run run;

        fx_pki_init(&pki);
        key = EVP_EC_gen("P-256");
        cert = fx_cert(&pki, key, "node1", 1750000000, 1780000000, 0x0ABCDEF0);
        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, "node1", cert, NULL, FX_ACCEPT, false), 1);
        {
                int len;
                uint8_t *ip = ip_with_certs(&run, cert, &len);
                struct cmp_msg_info info;
                struct cmp_content *c = NULL;

                CHECK_INT(cmp_msg_inspect_content(ip, (size_t) len, &info, &c, NULL), 0);
                CHECK_INT(info.body, CMP_BODY_IP);
                {
                        unsigned char *want = NULL;
                        int n = i2d_X509(cert, &want);
                        /* the issued certificate, read without decoding its key */
                        CHECK(c && c->cert && c->cert->der_len == (size_t) n &&
                              memcmp(c->cert->der, want, (size_t) n) == 0);
                        CHECK(c && c->cert && strcmp(c->cert->serial, "0ABCDEF0") == 0);
                        OPENSSL_free(want);
                }
                cmp_content_free(c);
                test_ber_certificate(ip, len);
                mutate(ip, len, "ip with extraCerts and caPubs");
                OPENSSL_free(ip);
        }
        mutate_run(&run, "ir/ip/certConf/pkiconf");
        CHECK_INT(fx_enrol(&run, OSSL_CMP_P10CR, key, "node1", cert, NULL, FX_ACCEPT, true), 1);
        mutate_run(&run, "p10cr/cp");
        CHECK_INT(fx_enrol(&run, OSSL_CMP_KUR, key, "node1", cert, cert, FX_REJECT, false), 0);
        mutate_run(&run, "kur/kup rejected");
        CHECK_INT(fx_enrol(&run, OSSL_CMP_CR, key, "node1", cert, NULL, FX_FAIL, false), 0);
        mutate_run(&run, "cr/error");
        CHECK_INT(fx_revoke(&run, cert, 1, FX_ACCEPT), 1);
        mutate_run(&run, "rr/rp");
        CHECK_INT(fx_genm_run(&run), 1);
        test_malformed(&run);
        mutate_run(&run, "genm/genp");
        fprintf(stderr, "%u messages compared with OpenSSL's decoder: %u taken only by ours, %u refused only by "
                "ours, %u refused only by ours as not DER inside a certificate\n",
                n_checked, n_differ_loose, n_differ_strict, n_stricter_der);
        CHECK_INT(n_differ_loose, 0);
        CHECK_INT(n_differ_strict, 0);
        X509_free(cert);
        EVP_PKEY_free(key);
        fx_pki_done(&pki);
        TEST_MAIN_END();
}
