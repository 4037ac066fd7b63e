/* test_cmp_genm.c -- RFC 9483 §4.3 support messages (libcmpgw/cmp_genm.c):
 * genm built by OpenSSL's CMP client with a capturing transfer callback,
 * answered in-process by OpenSSL's CMP server library (OSSL_CMP_SRV_CTX)
 * whose genm callback returns the InfoTypeAndValue under test, and the
 * genp checked and read by cmp_genp_read(). The `openssl cmp` server
 * program cannot answer these (PEERS.md); its library can, given the
 * values. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "cmp_asn1.h"
#include "cmp_genm.h"
#include "cmp_protection.h"
#include "pki_fixture.h"
#include "test.h"

static char tmp[] = "/tmp/test_cmp_genm.XXXXXX";

static struct ca root, srv, gw, other;
static X509_STORE *trusted, *wrong;

static X509_STORE *store_of(X509 *x) {
        X509_STORE *st = X509_STORE_new();

        X509_STORE_add_cert(st, x);
        return st;
}

static void write_pem(const char *name, X509 *a, X509 *b, EVP_PKEY *key, char *path, size_t size) {
        FILE *f;

        snprintf(path, size, "%s/%s", tmp, name);
        f = fopen(path, "w");
        if (!f)
                abort();
        if (a)
                PEM_write_X509(f, a);
        if (b)
                PEM_write_X509(f, b);
        if (key)
                PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
        fclose(f);
}

/* ---- the server: OpenSSL's CMP server library, signing with srv ---- */

struct answer {
        const char *oid;                /* NULL: fail (an error message) */
        ASN1_TYPE *value;               /* borrowed; NULL: absent */
};

static int on_genm(OSSL_CMP_SRV_CTX *s, const OSSL_CMP_MSG *req, const STACK_OF(OSSL_CMP_ITAV) *in,
                   STACK_OF(OSSL_CMP_ITAV) **out) {
        struct answer *a = OSSL_CMP_SRV_CTX_get0_custom_ctx(s);
        ASN1_TYPE *v = a->value ? ASN1_TYPE_new() : NULL;
        OSSL_CMP_ITAV *itav;

        if (!a->oid)
                return 0;
        if (v)
                ASN1_TYPE_set1(v, a->value->type, a->value->value.ptr);
        itav = OSSL_CMP_ITAV_create(OBJ_txt2obj(a->oid, 1), v);
        *out = sk_OSSL_CMP_ITAV_new_null();
        sk_OSSL_CMP_ITAV_push(*out, itav);
        return 1;
}

static OSSL_CMP_PKISI *no_cert(OSSL_CMP_SRV_CTX *s, const OSSL_CMP_MSG *r, int id, const OSSL_CRMF_MSG *crm,
                               const X509_REQ *p10, X509 **c, STACK_OF(X509) **ch, STACK_OF(X509) **cp) {
        return NULL;
}
static OSSL_CMP_PKISI *no_rr(OSSL_CMP_SRV_CTX *s, const OSSL_CMP_MSG *r, const X509_NAME *i, const ASN1_INTEGER *n) {
        return NULL;
}
static void no_error(OSSL_CMP_SRV_CTX *s, const OSSL_CMP_MSG *r, const OSSL_CMP_PKISI *si, const ASN1_INTEGER *c,
                     const OSSL_CMP_PKIFREETEXT *d) {
}
static int no_conf(OSSL_CMP_SRV_CTX *s, const OSSL_CMP_MSG *r, int id, const ASN1_OCTET_STRING *h,
                   const OSSL_CMP_PKISI *si) {
        return 0;
}
static int no_poll(OSSL_CMP_SRV_CTX *s, const OSSL_CMP_MSG *r, int id, OSSL_CMP_MSG **c, int64_t *a) {
        return 0;
}

/* the DER genp the server makes for the DER genm */
static uint8_t *serve(const uint8_t *genm, size_t len, struct answer *a, size_t *out_len) {
        OSSL_CMP_SRV_CTX *s = OSSL_CMP_SRV_CTX_new(NULL, NULL);
        OSSL_CMP_CTX *sc = OSSL_CMP_SRV_CTX_get0_cmp_ctx(s);
        const unsigned char *p = genm;
        OSSL_CMP_MSG *req = d2i_OSSL_CMP_MSG(NULL, &p, (long) len), *rsp;
        unsigned char *der = NULL;
        int n;

        OSSL_CMP_SRV_CTX_init(s, a, no_cert, no_rr, on_genm, no_error, no_conf, no_poll);
        OSSL_CMP_CTX_set_log_verbosity(sc, OSSL_CMP_LOG_EMERG);
        OSSL_CMP_CTX_set1_cert(sc, srv.cert);
        OSSL_CMP_CTX_set1_pkey(sc, srv.key);
        X509_STORE_up_ref(trusted);
        OSSL_CMP_CTX_set0_trustedStore(sc, trusted);
        rsp = OSSL_CMP_SRV_process_request(s, req);
        CHECK(rsp != NULL);
        n = rsp ? i2d_OSSL_CMP_MSG(rsp, &der) : 0;
        *out_len = n > 0 ? (size_t) n : 0;
        OSSL_CMP_MSG_free(req);
        OSSL_CMP_MSG_free(rsp);
        OSSL_CMP_SRV_CTX_free(s);
        ERR_clear_error();
        return der;
}

/* ---- tests ---- */

static void test_creds(struct cmp_genm_creds *creds) {
        char cert[300], key[300], wrong_key[300];
        char *why = NULL;

        write_pem("gw.pem", gw.cert, root.cert, NULL, cert, sizeof cert);
        write_pem("gw.key", NULL, NULL, gw.key, key, sizeof key);
        write_pem("other.key", NULL, NULL, other.key, wrong_key, sizeof wrong_key);
        CHECK_INT(cmp_genm_creds_load(cert, key, creds, &why), 0);
        CHECK_INT(sk_X509_num(creds->chain), 1);
        free(why);

        struct cmp_genm_creds bad;
        CHECK_INT(cmp_genm_creds_load(cert, wrong_key, &bad, &why), -EINVAL);
        CHECK(why && strstr(why, "does not belong"));
        free(why);
        CHECK_INT(cmp_genm_creds_load("/nonexistent/gw.pem", key, &bad, &why), -EINVAL);
        CHECK(why && strstr(why, "/nonexistent/gw.pem"));
        free(why);
        CHECK_INT(cmp_genm_creds_load(cert, cert, &bad, &why), -EINVAL);
        CHECK(why && strstr(why, "private key"));
        free(why);
}

/* the genm's only InfoTypeAndValue, read back with our templates */
static CMPGW_ITAV *genm_itav(const uint8_t *der, size_t len, STACK_OF(CMPGW_ITAV) **keep) {
        const unsigned char *p = der;
        CMPGW_MSG *m = (CMPGW_MSG *) ASN1_item_d2i(NULL, &p, (long) len, ASN1_ITEM_rptr(CMPGW_MSG));

        *keep = NULL;
        CHECK(m && m->body->type == 21);
        if (m && m->body->value.other && m->body->value.other->type == V_ASN1_SEQUENCE)
                *keep = ASN1_item_unpack(m->body->value.other->value.sequence, ASN1_ITEM_rptr(CMPGW_GENMSG));
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
        CHECK_INT(sk_CMPGW_ITAV_num(*keep), 1);
        return sk_CMPGW_ITAV_num(*keep) == 1 ? sk_CMPGW_ITAV_value(*keep, 0) : NULL;
}

static void check_oid(const ASN1_OBJECT *o, const char *want) {
        char buf[80];

        OBJ_obj2txt(buf, sizeof buf, o, 1);
        CHECK_STR(buf, want);
}

static void test_build(const struct cmp_genm_creds *creds) {
        struct cmp_crl_status st[2] = {
                { X509_get_subject_name(root.cert), 1700000000 },
                { X509_get_subject_name(srv.cert), 0 },
        };
        struct cmp_genm_args a = { .kind = CMP_GENM_CA_CERTS };
        STACK_OF(CMPGW_ITAV) *keep;
        STACK_OF(CMPGW_CRLSTATUS) *list;
        CMPGW_ITAV *itav;
        char why[512], *err = NULL;
        uint8_t *der = NULL;
        size_t len = 0;

        /* §4.3.1: id-it-caCerts without a value (a root given or not), signed, verifiable */
        a.old_root = root.cert;
        CHECK_INT(cmp_genm_build(creds, &a, &der, &len, &err), 0);
        CHECK_INT(cmp_protection_kind(der, len), CMP_PROT_SIGNATURE);
        CHECK_INT(cmp_protection_verify(der, len, trusted, NULL, why, sizeof why), 0);
        itav = genm_itav(der, len, &keep);
        if (itav) {
                check_oid(itav->type, "1.3.6.1.5.5.7.4.17");
                CHECK(itav->value == NULL);
        }
        ASN1_item_free((ASN1_VALUE *) keep, ASN1_ITEM_rptr(CMPGW_GENMSG));
        OPENSSL_free(der);

        /* §4.3.2: id-it-rootCaCert with the root to update */
        a = (struct cmp_genm_args) { .kind = CMP_GENM_ROOT_CA_UPDATE, .old_root = root.cert };
        CHECK_INT(cmp_genm_build(creds, &a, &der, &len, &err), 0);
        itav = genm_itav(der, len, &keep);
        if (itav) {
                X509 *x = itav->value ? ASN1_item_unpack(itav->value->value.sequence, ASN1_ITEM_rptr(X509)) : NULL;
                check_oid(itav->type, "1.3.6.1.5.5.7.4.20");
                CHECK(x && X509_cmp(x, root.cert) == 0);
                X509_free(x);
        }
        ASN1_item_free((ASN1_VALUE *) keep, ASN1_ITEM_rptr(CMPGW_GENMSG));
        OPENSSL_free(der);

        /* §4.3.4: id-it-crlStatusList, issuer names, thisUpdate where held */
        a = (struct cmp_genm_args) { .kind = CMP_GENM_CRLS, .crls = st, .n_crls = 2 };
        CHECK_INT(cmp_genm_build(creds, &a, &der, &len, &err), 0);
        itav = genm_itav(der, len, &keep);
        list = itav && itav->value ? ASN1_item_unpack(itav->value->value.sequence,
                                                      ASN1_ITEM_rptr(CMPGW_CRLSTATUSLIST)) : NULL;
        if (itav)
                check_oid(itav->type, "1.3.6.1.5.5.7.4.22");
        CHECK_INT(sk_CMPGW_CRLSTATUS_num(list), 2);
        for (int i = 0; i < sk_CMPGW_CRLSTATUS_num(list); i++) {
                CMPGW_CRLSTATUS *s = sk_CMPGW_CRLSTATUS_value(list, i);
                GENERAL_NAME *gn = s->source->type == 1 ? sk_GENERAL_NAME_value(s->source->value.issuer, 0) : NULL;
                CHECK(gn && gn->type == GEN_DIRNAME && X509_NAME_cmp(gn->d.directoryName, st[i].issuer) == 0);
                CHECK((s->this_update != NULL) == (i == 0));
        }
        ASN1_item_free((ASN1_VALUE *) list, ASN1_ITEM_rptr(CMPGW_CRLSTATUSLIST));
        ASN1_item_free((ASN1_VALUE *) keep, ASN1_ITEM_rptr(CMPGW_GENMSG));
        OPENSSL_free(der);

        a.n_crls = 0;
        CHECK_INT(cmp_genm_build(creds, &a, &der, &len, &err), -EINVAL);
        free(err);
}

/* build a genm of KIND, let the server answer with A, read it with STORE */
static int round_trip(const struct cmp_genm_creds *creds, enum cmp_genm_kind kind, struct answer *a,
                      X509_STORE *store, struct cmp_genp *p, char **why) {
        struct cmp_crl_status st = { X509_get_subject_name(root.cert), 0 };
        struct cmp_genm_args args = { .kind = kind, .crls = &st, .n_crls = 1 };
        uint8_t *genm = NULL, *genp;
        size_t len = 0, plen = 0;
        int k;

        CHECK_INT(cmp_genm_build(creds, &args, &genm, &len, why), 0);
        genp = serve(genm, len, a, &plen);
        k = cmp_genp_read(genm, len, genp, plen, kind, store, p, why);
        OPENSSL_free(genm);
        OPENSSL_free(genp);
        return k;
}

static void test_answers(const struct cmp_genm_creds *creds) {
        STACK_OF(X509) *certs = sk_X509_new_null();
        STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
        CMPGW_ROOTCAKEYUPDATE upd = { .new_with_new = other.cert, .new_with_old = srv.cert, .old_with_new = NULL };
        long serials[] = { 0x3001 };
        X509_CRL *crl = make_crl(&root, 7, 0, serials, 1);
        struct answer a = { 0 };
        struct cmp_genp p;
        char *why = NULL;

        sk_X509_push(certs, srv.cert);
        sk_X509_push(certs, root.cert);
        sk_X509_CRL_push(crls, crl);

        /* caCerts: the list */
        a.oid = "1.3.6.1.5.5.7.4.17";
        a.value = ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(CMPGW_CERTS), certs, NULL);
        CHECK_INT(round_trip(creds, CMP_GENM_CA_CERTS, &a, trusted, &p, &why), 0);
        CHECK(!p.absent);
        CHECK_INT(sk_X509_num(p.ca_certs), 2);
        CHECK(p.ca_certs && X509_cmp(sk_X509_value(p.ca_certs, 0), srv.cert) == 0);
        CHECK(sk_X509_num(p.extra_certs) >= 1);
        cmp_genp_clear(&p);
        free(why);
        why = NULL;

        /* the same genp, read with trust anchors it does not chain to */
        CHECK_INT(round_trip(creds, CMP_GENM_CA_CERTS, &a, wrong, &p, &why), -EPERM);
        CHECK(why && strstr(why, "does not verify"));
        CHECK(p.ca_certs == NULL);
        free(why);
        why = NULL;

        /* an answer of the wrong info type */
        CHECK_INT(round_trip(creds, CMP_GENM_CRLS, &a, trusted, &p, &why), -EBADMSG);
        CHECK(why && strstr(why, "1.3.6.1.5.5.7.4.23"));
        free(why);
        why = NULL;
        ASN1_TYPE_free(a.value);

        /* crls: one CRL; then absent (nothing newer) */
        a.oid = "1.3.6.1.5.5.7.4.23";
        a.value = ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(CMPGW_CRLS), crls, NULL);
        CHECK_INT(round_trip(creds, CMP_GENM_CRLS, &a, trusted, &p, &why), 0);
        CHECK_INT(sk_X509_CRL_num(p.crls), 1);
        CHECK(p.crls && X509_CRL_cmp(sk_X509_CRL_value(p.crls, 0), crl) == 0);
        cmp_genp_clear(&p);
        ASN1_TYPE_free(a.value);
        a.value = NULL;
        CHECK_INT(round_trip(creds, CMP_GENM_CRLS, &a, trusted, &p, &why), 0);
        CHECK(p.absent && !p.crls);
        cmp_genp_clear(&p);

        /* rootCaKeyUpdate: newWithNew and newWithOld, no oldWithNew */
        a.oid = "1.3.6.1.5.5.7.4.18";
        a.value = ASN1_TYPE_pack_sequence(ASN1_ITEM_rptr(CMPGW_ROOTCAKEYUPDATE), &upd, NULL);
        CHECK_INT(round_trip(creds, CMP_GENM_ROOT_CA_UPDATE, &a, trusted, &p, &why), 0);
        CHECK(p.new_with_new && X509_cmp(p.new_with_new, other.cert) == 0);
        CHECK(p.new_with_old && X509_cmp(p.new_with_old, srv.cert) == 0);
        CHECK(p.old_with_new == NULL);
        cmp_genp_clear(&p);
        ASN1_TYPE_free(a.value);

        /* the server fails: an error message */
        a.oid = NULL;
        a.value = NULL;
        CHECK_INT(round_trip(creds, CMP_GENM_CA_CERTS, &a, trusted, &p, &why), -EPROTO);
        CHECK(why && strstr(why, "error message"));
        free(why);

        sk_X509_free(certs);
        sk_X509_CRL_free(crls);
        X509_CRL_free(crl);
}

/* genps that do not answer this genm, or were changed on the way */
static void test_mismatch(const struct cmp_genm_creds *creds) {
        struct cmp_genm_args args = { .kind = CMP_GENM_CA_CERTS };
        struct answer a = { .oid = "1.3.6.1.5.5.7.4.17" };
        uint8_t *g1 = NULL, *g2 = NULL, *p1;
        size_t l1 = 0, l2 = 0, pl = 0;
        struct cmp_genp p;
        char *why = NULL;

        CHECK_INT(cmp_genm_build(creds, &args, &g1, &l1, &why), 0);
        CHECK_INT(cmp_genm_build(creds, &args, &g2, &l2, &why), 0);
        p1 = serve(g1, l1, &a, &pl);
        CHECK_INT(cmp_genp_read(g1, l1, p1, pl, CMP_GENM_CA_CERTS, trusted, &p, &why), 0);
        CHECK(p.absent);
        cmp_genp_clear(&p);

        /* RFC 4210 §5.1.1: another genm's answer */
        CHECK_INT(cmp_genp_read(g2, l2, p1, pl, CMP_GENM_CA_CERTS, trusted, &p, &why), -EBADMSG);
        CHECK(why && strstr(why, "transactionID"));
        free(why);

        /* the genm itself is no genp */
        CHECK_INT(cmp_genp_read(g1, l1, g1, l1, CMP_GENM_CA_CERTS, trusted, &p, &why), -EBADMSG);
        CHECK(why && strstr(why, "not a genp"));
        free(why);

        /* one bit of the signature flipped */
        {
                const unsigned char *q = p1;
                CMPGW_MSG *m = (CMPGW_MSG *) ASN1_item_d2i(NULL, &q, (long) pl, ASN1_ITEM_rptr(CMPGW_MSG));
                unsigned char *bad = NULL;
                int n;

                m->protection->data[m->protection->length / 2] ^= 1;
                n = ASN1_item_i2d((ASN1_VALUE *) m, &bad, ASN1_ITEM_rptr(CMPGW_MSG));
                CHECK_INT(cmp_genp_read(g1, l1, bad, (size_t) n, CMP_GENM_CA_CERTS, trusted, &p, &why), -EPERM);
                free(why);
                OPENSSL_free(bad);
                ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
        }
        /* garbage */
        CHECK_INT(cmp_genp_read(g1, l1, (const uint8_t *) "junk", 4, CMP_GENM_CA_CERTS, trusted, &p, &why), -EBADMSG);
        free(why);
        OPENSSL_free(g1);
        OPENSSL_free(g2);
        OPENSSL_free(p1);
}

int main(void) {
        struct cmp_genm_creds creds;

        if (!mkdtemp(tmp))
                return 1;
        root = make_ca("Test Root", NULL, 1);
        srv = make_ca("Test RA", &root, 2);
        gw = make_ca("Test Gateway", &root, 3);
        other = make_ca("Other Root", NULL, 4);
        trusted = store_of(root.cert);
        wrong = store_of(other.cert);

        test_creds(&creds);
        test_build(&creds);
        test_answers(&creds);
        test_mismatch(&creds);

        cmp_genm_creds_clear(&creds);
        X509_STORE_free(trusted);
        X509_STORE_free(wrong);
        ca_free(&root);
        ca_free(&srv);
        ca_free(&gw);
        ca_free(&other);
        {
                char cmd[400];
                snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
                if (system(cmd) != 0)
                        fprintf(stderr, "cannot remove %s\n", tmp);
        }
        TEST_MAIN_END();
}
