/* registry.h -- the device registry: SQLite (WAL) on disk, learned from the
 * CMP traffic that passes the gateway (PRODUCT.md: Registry; issue 3).
 *
 * Devices are named by their certificate subject. A certificate counts as
 * held only once confirmed (certConf answered by pkiConf, or implicitConfirm
 * granted). Writes happen before the gateway answers, so a crash (SIGKILL)
 * never loses a transaction the gateway already answered. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;
struct registry;

struct registry_config {
        double renew_share;             /* due after this share of the validity; default 2/3 */
        uint64_t renew_before_sec;      /* or this long before notAfter; default 0 = off */
};

/* What the gateway saw in one exchange: the request and the answer it is
 * about to relay (a PKIMessage, any body type). */
struct registry_exchange {
        const uint8_t *req;
        size_t req_len;
        const uint8_t *rsp;
        size_t rsp_len;
        const char *peer;               /* transport address, "ADDR:PORT" */
        const char *psk_identity;       /* coaps with PSK, else NULL */
        const char *client_subject;     /* coaps with a client certificate, else NULL */
        uint64_t now;                   /* unix seconds */
        /* req and rsp as the gateway's inspection read them
         * (cmp_msg_inspect_content), or NULL: then they are parsed here */
        const struct cmp_content *req_content, *rsp_content;
};

enum registry_event_type {
        REG_EV_ENROLLED,                /* a new device holds a confirmed certificate */
        REG_EV_RENEWED,                 /* kur (or re-enrolment) replaced a certificate */
        REG_EV_REVOKED,                 /* rr accepted (rp status accepted) */
        REG_EV_RENEWAL_DUE,             /* renew_at passed */
        REG_EV_FAILED,                  /* error or rejection in a transaction */
};

struct registry_event {
        enum registry_event_type type;
        int64_t device_id;              /* 0 when unknown (failures) */
        const char *subject;            /* "" when unknown */
        const char *serial;             /* hex, upper case, no colons */
        const char *old_serial;         /* RENEWED: the replaced certificate */
        const char *not_after;          /* RFC 3339 UTC */
        const char *renew_at;           /* RFC 3339 UTC */
        int reason;                     /* REVOKED: CRLReason, -1 if none */
        const char *transaction_id;     /* hex */
        const char *peer;
        const char *detail;             /* FAILED: status text / failInfo */
};

typedef void (*registry_event_fn)(const struct registry_event *ev, void *userdata);

/* Opens (creating, migrating the schema to the current version). */
int registry_open(const char *path, const struct registry_config *rc, struct registry **ret);
struct registry *registry_close(struct registry *r);
void registry_set_config(struct registry *r, const struct registry_config *rc);
void registry_set_event_handler(struct registry *r, registry_event_fn fn, void *userdata);

/* Learn from one exchange; calls the event handler for what changed.
 * 0, or negative errno (logged; the exchange is still answered). */
int registry_observe(struct registry *r, const struct registry_exchange *x);

/* Group commit. After registry_batch_begin() every registry_observe() goes
 * into one open transaction (a SAVEPOINT each: a failed exchange is rolled
 * back alone) until registry_batch_end() commits it and then delivers the
 * events; what the caller answered on the strength of a recorded exchange
 * must wait for that. Any other change to the registry ends the batch
 * first. 0, or negative errno (then nothing of the batch was recorded). */
int registry_batch_begin(struct registry *r);
int registry_batch_end(struct registry *r);
bool registry_in_batch(const struct registry *r);

/* Renewal: the earliest time anything becomes due or expires (unix
 * seconds; -1 when nothing will), from an index, not a scan. */
int64_t registry_next_due(struct registry *r);
/* Move devices whose time has come to renewal-due / expired; events for each. */
int registry_update_due(struct registry *r, uint64_t now);

/* Queries. A device is a json object with at least: id, subject, issuer,
 * serial, not_before, not_after, state (pending|enrolled|renewal-due|
 * expired|revoked), renew_at, last_seen, peer (PRODUCT.md). ID is the
 * numeric id or the subject. */
int registry_list(struct registry *r, const char *state, uint64_t offset, uint32_t limit,
                  struct json_object **devices, uint64_t *total);
int registry_get(struct registry *r, const char *id, struct json_object **device);   /* -ENOENT */
int registry_forget(struct registry *r, const char *id);                            /* -ENOENT */
uint64_t registry_count(struct registry *r);

/* A certificate was revoked elsewhere (a CRL or RANN, issue 4): the
 * certificate (issuer RFC 2253, serial hex) is marked revoked, and the
 * device whose current certificate it is becomes revoked, with a
 * REG_EV_REVOKED event through the event handler. 1 when a device became
 * revoked, 0 when the certificate is unknown or its device was already
 * revoked or has moved on to another certificate, negative errno on error. */
int registry_revoke(struct registry *r, const char *issuer, const char *serial, int reason, uint64_t when);

/* Admitted identities (issue 5): who may send requests where the
 * admission policy is "registered" (daemon/admission.c). Values are
 * canonical (admission_canonical()): a PSK identity as is, a subject or
 * sender in RFC 2253, a senderKID in hex, upper case. label NULL or ""
 * admits on every path, else only on /p/<label>. */
enum registry_id_kind {
        REG_ID_PSK_IDENTITY,            /* DTLS PSK identity */
        REG_ID_CLIENT_SUBJECT,          /* DTLS client certificate subject */
        REG_ID_SENDER,                  /* CMP header sender (directoryName) */
        REG_ID_SENDER_KID,              /* CMP header senderKID */
        _REG_ID_MAX,
};
const char *registry_id_kind_name(enum registry_id_kind k);     /* "psk-identity", "client-subject", ... */
int registry_id_kind_from_name(const char *s);                  /* the kind, or -EINVAL */

/* 1 added, 0 already there (entry: the stored one), negative errno. entry
 * (may be NULL): {id, kind, value, label (when not ""), added_at}. */
int registry_admit(struct registry *r, enum registry_id_kind kind, const char *value, const char *label,
                   uint64_t now, struct json_object **entry);
int registry_unadmit(struct registry *r, enum registry_id_kind kind, const char *value,
                     const char *label);                                                /* -ENOENT */
/* Is value admitted on /p/<label> (label "" for none): by an entry without
 * a label or one for this label? 1, 0, negative errno. */
int registry_is_admitted(struct registry *r, enum registry_id_kind kind, const char *value, const char *label);
/* A page of entries by id; limit 0 or above 1000 gives 1000. */
int registry_admitted_list(struct registry *r, uint64_t offset, uint32_t limit, struct json_object **entries,
                           uint64_t *total);
