/* inspect_bench -- what checking and reading one PKIMessage costs the
 * gateway, the former way against the current one (not a test).
 *
 *   inspect_bench [FILE.der ...]      default: messages made in-process
 *
 * former: d2i_OSSL_CMP_MSG, all bytes, a DER re-encoding compared
 *         (cmp_msg_inspect until issue 6), then cmp_content_parse() for the
 *         registry: two decodings, OpenSSL's with every public key;
 * current: cmp_msg_inspect_content(): one decoding with our templates,
 *         certificates passed on undecoded, the registry's content from it.
 * Messages without FILEs: an ir and a genm from OpenSSL's CMP client and
 * the ip and genp of OpenSSL's CMP server (tests/unit/cmp_fixture.h), the
 * ip also with the CA's and the issued certificate as extraCerts and the
 * CA's in caPubs (as `openssl cmp -srv_cert` answers carry them). One line
 * per message: µs per message each way and the ratio. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/cmp.h>

#include "cmp_asn1.h"
#include "cmp_content.h"
#include "cmp_msg.h"
#include <string.h>
#include "../unit/cmp_fixture.h"

#define ROUNDS 2000

static double now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

static int former(const uint8_t *der, size_t len) {
        const unsigned char *p = der;
        OSSL_CMP_MSG *msg = d2i_OSSL_CMP_MSG(NULL, &p, (long) len);
        unsigned char *enc = NULL;
        struct cmp_content *c = NULL;
        int ok = msg && (size_t) (p - der) == len && i2d_OSSL_CMP_MSG(msg, &enc) == (int) len &&
                 memcmp(enc, der, len) == 0;

        OPENSSL_free(enc);
        OSSL_CMP_MSG_free(msg);
        ERR_clear_error();
        if (ok && cmp_content_parse(der, len, &c) == 0)
                cmp_content_free(c);
        return ok ? 0 : -EBADMSG;
}

static int current(const uint8_t *der, size_t len) {
        struct cmp_msg_info info;
        struct cmp_content *c = NULL;
        int k = cmp_msg_inspect_content(der, len, &info, &c, NULL);

        cmp_content_free(c);
        return k;
}

static double per_message(int (*fn)(const uint8_t *, size_t), const uint8_t *der, size_t len) {
        double t0 = now_us();

        for (int i = 0; i < ROUNDS; i++)
                if (fn(der, len) < 0) {
                        fprintf(stderr, "not taken\n");
                        exit(1);
                }
        return (now_us() - t0) / ROUNDS;
}

static void measure(const char *what, const uint8_t *der, size_t len) {
        double a, b;

        (void) per_message(current, der, len);  /* warm up */
        a = per_message(former, der, len);
        b = per_message(current, der, len);
        printf("%-28s %6zu B  former %8.1f us  current %8.1f us  current/former %.2f\n", what, len, a, b, b / a);
}

static uint8_t *slurp(const char *path, size_t *len) {
        FILE *f = fopen(path, "rb");
        uint8_t *buf = malloc(1 << 20);

        if (!f || !buf) {
                perror(path);
                exit(1);
        }
        *len = fread(buf, 1, 1 << 20, f);
        fclose(f);
        return buf;
}

/* the ip as a signing CA sends it: extraCerts and caPubs */
static uint8_t *with_certs(const struct fx_pki *pki, const struct fx_pair *pair, X509 *cert, int *len) {
        const unsigned char *p = pair->rsp;
        CMPGW_MSG *m = (CMPGW_MSG *) ASN1_item_d2i(NULL, &p, pair->rsp_len, ASN1_ITEM_rptr(CMPGW_MSG));
        unsigned char *ca = NULL;
        uint8_t *der = NULL;
        int n = i2d_X509(pki->ca_cert, &ca);

        p = ca;
        m->body->value.rep->ca_pubs = sk_CMPGW_CERT_SHELL_new_null();
        sk_CMPGW_CERT_SHELL_push(m->body->value.rep->ca_pubs,
                                 (CMPGW_CERT_SHELL *) ASN1_item_d2i(NULL, &p, n, ASN1_ITEM_rptr(CMPGW_CERT_SHELL)));
        m->extra_certs = sk_X509_new_null();
        X509_up_ref(pki->ca_cert);
        X509_up_ref(cert);
        sk_X509_push(m->extra_certs, pki->ca_cert);
        sk_X509_push(m->extra_certs, cert);
        *len = ASN1_item_i2d((ASN1_VALUE *) m, &der, ASN1_ITEM_rptr(CMPGW_MSG));
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
        OPENSSL_free(ca);
        return der;
}

int main(int argc, char **argv) {
        struct fx_pki pki;
        struct fx_run run;
        EVP_PKEY *key;
        X509 *cert;
        uint8_t *ip;
        int len;

        if (argc > 1) {
                for (int i = 1; i < argc; i++) {
                        size_t n;
                        uint8_t *der = slurp(argv[i], &n);
                        measure(argv[i], der, n);
                        free(der);
                }
                return 0;
        }
        fx_pki_init(&pki);
        key = EVP_EC_gen("P-256");
        cert = fx_cert(&pki, key, "node1", 1750000000, 1780000000, 0x0ABCDEF0);
        if (!fx_enrol(&run, OSSL_CMP_IR, key, "node1", cert, NULL, FX_ACCEPT, true))
                return 1;
        measure("ir (MAC)", run.pair[0].req, (size_t) run.pair[0].req_len);
        measure("ip (MAC)", run.pair[0].rsp, (size_t) run.pair[0].rsp_len);
        ip = with_certs(&pki, &run.pair[0], cert, &len);
        measure("ip + 2 extraCerts + caPubs", ip, (size_t) len);
        OPENSSL_free(ip);
        fx_run_clear(&run);
        if (!fx_genm_run(&run))
                return 1;
        measure("genm (MAC)", run.pair[0].req, (size_t) run.pair[0].req_len);
        measure("genp (MAC)", run.pair[0].rsp, (size_t) run.pair[0].rsp_len);
        fx_run_clear(&run);
        if (!fx_revoke(&run, cert, 1, FX_ACCEPT))
                return 1;
        measure("rr (MAC)", run.pair[0].req, (size_t) run.pair[0].req_len);
        fx_run_clear(&run);
        X509_free(cert);
        EVP_PKEY_free(key);
        fx_pki_done(&pki);
        return 0;
}
