/* cmp_fixture.h -- real CMP exchanges for the unit tests, made in-process:
 * OpenSSL's CMP client (OSSL_CMP_CTX) whose transfer callback hands each
 * request to OpenSSL's CMP server (OSSL_CMP_SRV_CTX with mock callbacks)
 * and records every request/response pair as DER. A small EC PKI (CA and
 * end-entity certificates) is made with OpenSSL's API. Header-only: each
 * test executable includes it once. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define FX_REF "1234"
#define FX_SECRET "secret"
#define FX_MAX_PAIRS 8

enum fx_mode {
        FX_ACCEPT,              /* issue cert_out, status accepted */
        FX_REJECT,              /* status rejection, failInfo badCertTemplate */
        FX_FAIL,                /* callback fails: OpenSSL answers an error message */
};

struct fx_pair {
        unsigned char *req;
        unsigned char *rsp;
        int req_len;
        int rsp_len;
};

struct fx_run {
        OSSL_CMP_SRV_CTX *srv;
        X509 *cert_out;                 /* what the mock CA issues */
        enum fx_mode mode;
        struct fx_pair pair[FX_MAX_PAIRS];
        int n;
};

struct fx_pki {
        EVP_PKEY *ca_key;
        X509 *ca_cert;
};

static X509_NAME *fx_name(const char *cn) {
        X509_NAME *n = X509_NAME_new();

        X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *) "cmpgw", -1, -1, 0);
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *) cn, -1, -1, 0);
        return n;
}

/* A certificate for key with subject O=cmpgw,CN=cn, issued by the CA (or
 * self-signed when pki->ca_cert is NULL). */
static X509 *fx_cert(const struct fx_pki *pki, EVP_PKEY *key, const char *cn,
                     int64_t not_before, int64_t not_after, long serial) {
        X509 *x = X509_new();
        X509_NAME *subject = fx_name(cn);

        X509_set_version(x, X509_VERSION_3);
        ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
        X509_set_subject_name(x, subject);
        X509_set_issuer_name(x, pki->ca_cert ? X509_get_subject_name(pki->ca_cert) : subject);
        ASN1_TIME_set(X509_getm_notBefore(x), (time_t) not_before);
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t) not_after);
        X509_set_pubkey(x, key);
        X509_sign(x, pki->ca_key, EVP_sha256());
        X509_NAME_free(subject);
        return x;
}

static void fx_pki_init(struct fx_pki *pki) {
        pki->ca_cert = NULL;
        pki->ca_key = EVP_EC_gen("P-256");
        pki->ca_cert = fx_cert(pki, pki->ca_key, "Test CA", 1700000000, 2000000000, 1);
}

static void fx_pki_done(struct fx_pki *pki) {
        X509_free(pki->ca_cert);
        EVP_PKEY_free(pki->ca_key);
}

/* ---- the mock server's callbacks ---- */

static OSSL_CMP_PKISI *fx_cert_request(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                                       const OSSL_CRMF_MSG *crm, const X509_REQ *p10cr,
                                       X509 **certOut, STACK_OF(X509) **chainOut,
                                       STACK_OF(X509) **caPubs) {
        struct fx_run *run = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);

        switch (run->mode) {
        case FX_REJECT:
                return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection,
                                               1 << OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                                               "template not acceptable");
        case FX_FAIL:
                ERR_raise_data(ERR_LIB_CMP, CMP_R_REQUEST_NOT_ACCEPTED, "CA offline");
                return NULL;
        case FX_ACCEPT:
                break;
        }
        X509_up_ref(run->cert_out);
        *certOut = run->cert_out;
        return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

static OSSL_CMP_PKISI *fx_rr(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req,
                             const X509_NAME *issuer, const ASN1_INTEGER *serial) {
        struct fx_run *run = OSSL_CMP_SRV_CTX_get0_custom_ctx(srv);

        if (run->mode == FX_REJECT)
                return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection,
                                               1 << OSSL_CMP_PKIFAILUREINFO_badCertId, "unknown certificate");
        return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

static int fx_genm(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req,
                   const STACK_OF(OSSL_CMP_ITAV) *in, STACK_OF(OSSL_CMP_ITAV) **out) {
        *out = sk_OSSL_CMP_ITAV_new_null();
        return *out != NULL;
}

static void fx_error(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const OSSL_CMP_PKISI *si,
                     const ASN1_INTEGER *errorCode, const OSSL_CMP_PKIFREETEXT *errDetails) {
}

static int fx_cert_conf(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                        const ASN1_OCTET_STRING *certHash, const OSSL_CMP_PKISI *si) {
        return 1;
}

static int fx_poll_req(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int certReqId,
                       OSSL_CMP_MSG **certReq, int64_t *check_after) {
        return 0;
}

/* The client's transfer callback: the mock server answers; both are kept. */
static OSSL_CMP_MSG *fx_transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req) {
        struct fx_run *run = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
        OSSL_CMP_MSG *rsp = OSSL_CMP_SRV_process_request(run->srv, req);
        struct fx_pair *p;

        if (!rsp || run->n >= FX_MAX_PAIRS)
                return rsp;
        p = &run->pair[run->n++];
        p->req_len = i2d_OSSL_CMP_MSG(req, &p->req);
        p->rsp_len = i2d_OSSL_CMP_MSG(rsp, &p->rsp);
        return rsp;
}

/* A fresh client and server, both protecting with PBM (RFC 4210 §5.1.3.1) */
static OSSL_CMP_CTX *fx_run_init(struct fx_run *run, enum fx_mode mode, X509 *cert_out,
                                 bool implicit_confirm) {
        OSSL_CMP_CTX *srv_cmp, *ctx;

        memset(run, 0, sizeof *run);
        run->mode = mode;
        run->cert_out = cert_out;
        run->srv = OSSL_CMP_SRV_CTX_new(NULL, NULL);
        OSSL_CMP_SRV_CTX_init(run->srv, run, fx_cert_request, fx_rr, fx_genm, fx_error,
                              fx_cert_conf, fx_poll_req);
        OSSL_CMP_SRV_CTX_set_grant_implicit_confirm(run->srv, implicit_confirm);
        srv_cmp = OSSL_CMP_SRV_CTX_get0_cmp_ctx(run->srv);
        OSSL_CMP_CTX_set1_referenceValue(srv_cmp, (const unsigned char *) FX_REF, 4);
        OSSL_CMP_CTX_set1_secretValue(srv_cmp, (const unsigned char *) FX_SECRET, 6);
        OSSL_CMP_CTX_set_log_verbosity(srv_cmp, OSSL_CMP_LOG_EMERG);

        ctx = OSSL_CMP_CTX_new(NULL, NULL);
        OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *) FX_REF, 4);
        OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *) FX_SECRET, 6);
        OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, implicit_confirm);
        OSSL_CMP_CTX_set_transfer_cb(ctx, fx_transfer);
        OSSL_CMP_CTX_set_transfer_cb_arg(ctx, run);
        OSSL_CMP_CTX_set_log_verbosity(ctx, OSSL_CMP_LOG_EMERG);
        return ctx;
}

static void fx_run_done(struct fx_run *run, OSSL_CMP_CTX *ctx) {
        for (int i = 0; i < run->n; i++) {
                OPENSSL_free(run->pair[i].req);
                OPENSSL_free(run->pair[i].rsp);
        }
        OSSL_CMP_SRV_CTX_free(run->srv);
        OSSL_CMP_CTX_free(ctx);
        ERR_clear_error();
        memset(run, 0, sizeof *run);
}

static X509_REQ *fx_csr(EVP_PKEY *key, const char *cn) {
        X509_REQ *csr = X509_REQ_new();
        X509_NAME *n = fx_name(cn);

        X509_REQ_set_subject_name(csr, n);
        X509_REQ_set_pubkey(csr, key);
        X509_REQ_sign(csr, key, EVP_sha256());
        X509_NAME_free(n);
        return csr;
}

/* One enrolment (OSSL_CMP_IR, _CR, _P10CR or _KUR): the client asks for cn
 * with key (kur: replacing old), the CA issues cert_out. 1 when the client
 * accepted a certificate. */
static int fx_enrol(struct fx_run *run, int type, EVP_PKEY *key, const char *cn, X509 *cert_out,
                    X509 *old, enum fx_mode mode, bool implicit_confirm) {
        OSSL_CMP_CTX *ctx = fx_run_init(run, mode, cert_out, implicit_confirm);
        X509_NAME *n = fx_name(cn);
        X509 *got;

        EVP_PKEY_up_ref(key);
        OSSL_CMP_CTX_set0_newPkey(ctx, 1, key);
        if (type == OSSL_CMP_KUR)
                OSSL_CMP_CTX_set1_oldCert(ctx, old);
        else
                OSSL_CMP_CTX_set1_subjectName(ctx, n);
        if (type == OSSL_CMP_P10CR) {
                X509_REQ *csr = fx_csr(key, cn);
                OSSL_CMP_CTX_set1_p10CSR(ctx, csr);
                X509_REQ_free(csr);
        }
        got = OSSL_CMP_exec_certreq(ctx, type, NULL);
        X509_NAME_free(n);
        /* the pairs stay in run; the client is not needed any more */
        OSSL_CMP_CTX_free(ctx);
        ERR_clear_error();
        return got != NULL;
}

static int fx_revoke(struct fx_run *run, X509 *old, int reason, enum fx_mode mode) {
        OSSL_CMP_CTX *ctx = fx_run_init(run, mode, NULL, false);
        int ok;

        OSSL_CMP_CTX_set1_oldCert(ctx, old);
        OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_REVOCATION_REASON, reason);
        ok = OSSL_CMP_exec_RR_ses(ctx) == 1;
        OSSL_CMP_CTX_free(ctx);
        ERR_clear_error();
        return ok;
}

static int fx_genm_run(struct fx_run *run) {
        OSSL_CMP_CTX *ctx = fx_run_init(run, FX_ACCEPT, NULL, false);
        STACK_OF(OSSL_CMP_ITAV) *itavs = OSSL_CMP_exec_GENM_ses(ctx);
        int ok = itavs != NULL;

        sk_OSSL_CMP_ITAV_pop_free(itavs, OSSL_CMP_ITAV_free);
        OSSL_CMP_CTX_free(ctx);
        ERR_clear_error();
        return ok;
}

/* frees the recorded pairs and the server */
static void fx_run_clear(struct fx_run *run) {
        fx_run_done(run, NULL);
}
