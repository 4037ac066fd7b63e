/* announce.h -- the announcement store of cmpgwd (RFC 9482 §2.6; issue 4)
 *
 * Keeps the latest announcement PKIMessage of each kind (CKUANN, CANN, RANN,
 * CRLANN) and the current CRL of each issuer, both on disk under the state
 * directory (the registry's directory):
 *
 *   <dir>/announcements/<kind>.der   the latest announcement of that kind
 *   <dir>/announcements/cann.seen    SHA-256 (hex, one a line) of every
 *                                    certificate a CANN has announced
 *   <dir>/crls/<sha1 of the DER issuer Name>.der   the current CRL
 *
 * Files are written atomically (temporary file, fsync, rename, fsync of the
 * directory) and loaded at start. Every announcement is parsed and validated
 * (cmp_ann.h) before anything changes; a CRL replaces the cached one of its
 * issuer only when it is newer (higher cRLNumber, else later thisUpdate).
 * What changed is reported through the event handler, after it is on disk. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

struct announce;

/* A reference-counted DER buffer, so that the CoAP side can hand the same
 * bytes to every observer without copying them. */
struct announce_blob {
        unsigned refs;
        size_t len;
        uint64_t seq;                   /* publication order, 1, 2, ... */
        int kind;                       /* enum cmp_ann_kind */
        int64_t received;               /* unix seconds */
        char sha256[65];                /* hex */
        uint8_t data[];
};

struct announce_blob *announce_blob_ref(struct announce_blob *b);
void announce_blob_unref(struct announce_blob *b);

enum announce_event_type {
        ANN_EV_PUBLISHED,               /* blob: a new latest announcement */
        ANN_EV_CRL_UPDATED,             /* issuer, crl_number, this_update, next_update, der */
        ANN_EV_CERT_REVOKED,            /* issuer, serial, reason, revocation_date, revoked_at */
        ANN_EV_CA_KEY_UPDATED,          /* subject, der = newWithNew */
        ANN_EV_CA_CERT,                 /* subject, serial, der = the certificate */
};

struct announce_event {
        enum announce_event_type type;
        const struct announce_blob *blob;
        const char *issuer;             /* RFC 2253 */
        const char *crl_number;         /* hex, "" when the CRL has none */
        const char *this_update;        /* RFC 3339 UTC */
        const char *next_update;        /* RFC 3339 UTC, "" when absent */
        const char *serial;             /* hex */
        int reason;                     /* CRLReason, -1 if none */
        const char *revocation_date;    /* RFC 3339 UTC */
        int64_t revoked_at;             /* unix seconds */
        const char *subject;
        const uint8_t *der;
        size_t der_len;
};

typedef void (*announce_event_fn)(const struct announce_event *ev, void *userdata);

/* Opens the store in STATE_DIR (subdirectories created as needed) with the
 * trust anchors of TRUSTED (NULL: none; every announcement is refused).
 * 0, or negative errno with a malloc'd reason in *why. */
int announce_new(const char *state_dir, const char *trusted, struct announce **ret, char **why);
struct announce *announce_free(struct announce *a);
void announce_set_event_handler(struct announce *a, announce_event_fn fn, void *userdata);

/* Replaces the trust anchors (reload; read with cmp_ann_load_trust()).
 * Takes TRUSTED; NULL: none, every announcement is refused. */
void announce_set_trusted(struct announce *a, X509_STORE *trusted);

/* Publishes one DER announcement PKIMessage. 0; or -EBADMSG (malformed),
 * -EPERM (protection or a CRL does not verify), -ESTALE (a CRL is not newer
 * than the cached one), -EIO/-ENOMEM; with a malloc'd reason in *why.
 * Nothing changes unless it returns 0. */
int announce_publish(struct announce *a, const uint8_t *der, size_t len, int64_t now, char **why);

/* DER is byte for byte the latest announcement of some kind already */
bool announce_is_latest(const struct announce *a, const uint8_t *der, size_t len);

/* Has a CANN published here (from any source, kept across restarts)
 * announced this certificate already? */
bool announce_cert_announced(const struct announce *a, X509 *cert);

/* The latest announcement of any kind (NULL before the first); borrowed. */
struct announce_blob *announce_latest(const struct announce *a);
/* The latest of one kind, NULL if none; borrowed. */
struct announce_blob *announce_latest_of(const struct announce *a, int kind);

/* The cached CRLs, for listing. */
struct announce_crl_info {
        const char *issuer;
        const char *crl_number;         /* "" when none */
        int64_t this_update, next_update;       /* next_update 0: absent */
        size_t revoked_count;
        int64_t received;
        const char *sha256;
        size_t size;
        const X509_CRL *crl;            /* borrowed */
};
size_t announce_n_crls(const struct announce *a);
void announce_crl_info(const struct announce *a, size_t i, struct announce_crl_info *info);

/* RFC 3339 UTC ("" for t <= 0); buf >= 32 */
const char *announce_time_string(int64_t t, char *buf);
