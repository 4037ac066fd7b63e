/* cmp_protection.c -- classify and verify PKIMessage protection */
#include "cmp_protection.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/cmp.h>
#include <openssl/err.h>

#include "cmp_asn1.h"
#include "cmp_content.h"

static CMPGW_MSG *msg_decode(const uint8_t *der, size_t len) {
        const unsigned char *p = der;

        return (CMPGW_MSG *) ASN1_item_d2i(NULL, &p, (long) len, ASN1_ITEM_rptr(CMPGW_MSG));
}

static void msg_free(CMPGW_MSG *m) {
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
}

static enum cmp_protection kind_of(const CMPGW_MSG *m) {
        const X509_ALGOR *alg;

        if (!m || !m->header)
                return CMP_PROT_INVALID;
        alg = m->header->protection_alg;
        return !alg ? CMP_PROT_NONE :
               OBJ_obj2nid(alg->algorithm) == NID_id_PasswordBasedMAC ? CMP_PROT_MAC : CMP_PROT_SIGNATURE;
}

enum cmp_protection cmp_protection_kind(const uint8_t *der, size_t len) {
        CMPGW_MSG *m = msg_decode(der, len);
        enum cmp_protection k = kind_of(m);

        msg_free(m);
        return k;
}

/* a directoryName other than the NULL-DN (RFC 4210 §5.1.1), RFC 2253 */
static int sender_name(const GENERAL_NAME *gn, char **ret) {
        *ret = NULL;
        if (!gn || gn->type != GEN_DIRNAME || X509_NAME_entry_count(gn->d.directoryName) == 0)
                return 0;
        *ret = cmp_name_rfc2253(gn->d.directoryName);
        return *ret ? 0 : -ENOMEM;
}

int cmp_protector_get(const uint8_t *der, size_t len, struct cmp_protector *ret) {
        CMPGW_MSG *m = msg_decode(der, len);
        const ASN1_OCTET_STRING *kid;
        int k;

        *ret = (struct cmp_protector) { .kind = kind_of(m) };
        if (ret->kind == CMP_PROT_INVALID) {
                msg_free(m);
                return -EBADMSG;
        }
        k = sender_name(m->header->sender, &ret->sender);
        kid = m->header->sender_kid;
        if (k == 0 && kid) {
                ret->sender_kid_len = (size_t) ASN1_STRING_length(kid);
                ret->sender_kid = malloc(ret->sender_kid_len + 1);
                if (ret->sender_kid)
                        memcpy(ret->sender_kid, ASN1_STRING_get0_data(kid), ret->sender_kid_len);
                else
                        k = -ENOMEM;
        }
        msg_free(m);
        if (k < 0)
                cmp_protector_clear(ret);
        return k;
}

void cmp_protector_clear(struct cmp_protector *p) {
        free(p->sender);
        free(p->sender_kid);
        *p = (struct cmp_protector) { .kind = CMP_PROT_INVALID };
}

static char log_buf[512];

static int log_cb(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg) {
        /* keep the last warning or error: it says why validation failed */
        if (level <= OSSL_CMP_LOG_WARNING)
                snprintf(log_buf, sizeof log_buf, "%s", msg);
        return 1;
}

/* OpenSSL's error queue (drained) as one line */
static void openssl_errors(char *buf, size_t size) {
        const char *data;
        unsigned long e;
        size_t o = 0;
        int flags;

        buf[0] = '\0';
        while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
                const char *r = ERR_reason_error_string(e);
                /* data that is a printed certificate says too much */
                bool has_data = data && *data && (flags & ERR_TXT_STRING) && !strchr(data, '\n') &&
                                strlen(data) < 160;

                if (o >= size || !r)
                        continue;
                if (strstr(buf, r))     /* the same reason twice says nothing new */
                        continue;
                o += (size_t) snprintf(buf + o, size - o, "%s%s%s%s", o ? "; " : "", r,
                                       has_data ? ": " : "", has_data ? data : "");
        }
}

/* OpenSSL 3.0 looks for the signer among the context's untrusted
 * certificates, not the message's own extraCerts (and has no getter for
 * them): our template reads them. */
static STACK_OF(X509) *extra_certs_of(const uint8_t *der, size_t len) {
        CMPGW_MSG *m = msg_decode(der, len);
        STACK_OF(X509) *certs = NULL;

        if (m) {
                certs = m->extra_certs;
                m->extra_certs = NULL;
        }
        msg_free(m);
        return certs;
}

int cmp_protection_verify(const uint8_t *der, size_t len, X509_STORE *trusted, STACK_OF(X509) *untrusted,
                          char *why, size_t why_size) {
        const unsigned char *p = der;
        OSSL_CMP_MSG *msg = d2i_OSSL_CMP_MSG(NULL, &p, (long) len);
        OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
        STACK_OF(X509) *extra = untrusted ? NULL : extra_certs_of(der, len);
        char errs[512];
        int k = 0;

        if (extra)
                untrusted = extra;

        why[0] = '\0';
        if (!msg || !ctx) {
                snprintf(why, why_size, "%s", msg ? "out of memory" : "not a DER PKIMessage");
                k = msg ? -ENOMEM : -EBADMSG;
                goto out;
        }
        log_buf[0] = '\0';
        ERR_clear_error();
        OSSL_CMP_CTX_set_log_cb(ctx, log_cb);
        if (!X509_STORE_up_ref(trusted) || !OSSL_CMP_CTX_set0_trustedStore(ctx, trusted) ||
            (untrusted && !OSSL_CMP_CTX_set1_untrusted(ctx, untrusted))) {
                snprintf(why, why_size, "out of memory");
                k = -ENOMEM;
                goto out;
        }
        if (!OSSL_CMP_validate_msg(ctx, msg)) {
                openssl_errors(errs, sizeof errs);
                snprintf(why, why_size, "the protection does not verify against the trust anchors%s%s%s%s",
                         errs[0] ? ": " : "", errs, log_buf[0] ? "; " : "", log_buf);
                k = -EPERM;
        }
out:
        OSSL_CMP_CTX_free(ctx);
        OSSL_CMP_MSG_free(msg);
        sk_X509_pop_free(extra, X509_free);
        ERR_clear_error();
        return k;
}
