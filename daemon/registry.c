/* registry.c -- the device registry in SQLite (PRODUCT.md: Registry; issue 3)
 *
 * Learned from the CMP traffic: a certificate is issued in ip/cp/kup and
 * held once confirmed (certConf answered by pkiConf, RFC 4210 §5.3.18, or
 * implicitConfirm granted in the response header, RFC 4210 §5.1.1.1 and
 * RFC 9483 §4.1.1). Until then the transaction is a row in `pending`.
 *
 * Durability: WAL with synchronous=NORMAL. A COMMIT has written the
 * transaction into the WAL file (write(2), i.e. into the kernel's page
 * cache) before it returns; only the fsync is deferred to checkpoints. A
 * crash of this process, SIGKILL included, therefore loses nothing that was
 * committed; only a kernel crash or power loss can lose the last commits,
 * and even then the database stays consistent (https://sqlite.org/wal.html).
 *
 * One exchange is one transaction (BEGIN IMMEDIATE ... COMMIT); events are
 * delivered after the COMMIT, never for what was rolled back. Between
 * registry_batch_begin() and registry_batch_end() the exchanges share one
 * transaction (group commit: the pages they touch are written once), each
 * in a SAVEPOINT of its own, so a failed one is rolled back alone. */
#include "registry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include "cmp_content.h"
#include "cmp_msg.h"
#include "log.h"

#define REGISTRY_BUSY_TIMEOUT_MS 5000
/* A transaction without certConf is given up after this long: certConf
 * follows ip at once (RFC 9483 §4.1.1), but polling may take a while. */
#define REGISTRY_PENDING_TTL_SEC (24 * 3600)
/* registry_list() returns at most this many devices per page */
#define REGISTRY_LIST_MAX 1000

/* ---- schema ---- */

/* v1. devices: one per certificate subject, pointing to its current
 * certificate. due_at is when time alone changes the state next (enrolled:
 * renew_at; renewal-due: notAfter), NULL otherwise; its partial index makes
 * registry_next_due() and registry_update_due() index lookups. */
static const char schema_v1[] =
        "CREATE TABLE devices ("
        " id INTEGER PRIMARY KEY,"
        " subject TEXT NOT NULL,"
        " state TEXT NOT NULL,"
        " cert_id INTEGER,"                     /* certificates.id */
        " renew_at INTEGER,"
        " due_at INTEGER,"
        " last_seen INTEGER,"
        " peer TEXT, sender TEXT, sender_kid TEXT, psk_identity TEXT, client_subject TEXT,"
        " method TEXT,"                         /* ir cr kur p10cr */
        " transaction_id TEXT,"
        " confirmed_at INTEGER,"
        " revoked_at INTEGER,"
        " revocation_reason INTEGER,"
        " created_at INTEGER NOT NULL);"
        "CREATE UNIQUE INDEX devices_subject ON devices(subject);"
        "CREATE INDEX devices_state ON devices(state);"
        "CREATE INDEX devices_due ON devices(due_at) WHERE state IN ('enrolled','renewal-due');"
        "CREATE TABLE certificates ("
        " id INTEGER PRIMARY KEY,"
        " device_id INTEGER NOT NULL,"          /* devices.id */
        " subject TEXT NOT NULL, issuer TEXT NOT NULL, serial TEXT NOT NULL,"
        " not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,"
        " der BLOB NOT NULL,"
        " method TEXT, transaction_id TEXT,"
        " issued_at INTEGER NOT NULL,"
        " confirmed_at INTEGER,"                /* NULL: issued, not confirmed */
        " revoked_at INTEGER, revocation_reason INTEGER,"
        " replaced_by INTEGER);"                /* certificates.id, kur/re-enrolment */
        "CREATE INDEX certificates_issuer_serial ON certificates(issuer, serial);"
        "CREATE INDEX certificates_device ON certificates(device_id);"
        "CREATE INDEX certificates_replaced_by ON certificates(replaced_by);"
        "CREATE TABLE pending ("
        " transaction_id TEXT PRIMARY KEY,"
        " device_id INTEGER NOT NULL,"
        " cert_id INTEGER,"                     /* NULL while waiting (polling) */
        " subject TEXT NOT NULL,"
        " method TEXT,"
        " old_issuer TEXT, old_serial TEXT,"    /* kur: oldCertID */
        " device_new INTEGER NOT NULL,"         /* the device was made by this transaction */
        " created_at INTEGER NOT NULL);"
        "CREATE INDEX pending_created ON pending(created_at);";

static int migrate_0_to_1(sqlite3 *db) {
        return sqlite3_exec(db, schema_v1, NULL, NULL, NULL);
}

/* v2 (issue 5): the identities the operator admitted (cmpgwctl device
 * add). value is canonical: a PSK identity as is, a subject or sender in
 * RFC 2253, a senderKID in hex (upper case); label '' admits on every
 * path, else only on /p/<label>. */
static const char schema_v2[] =
        "CREATE TABLE admitted ("
        " id INTEGER PRIMARY KEY,"
        " kind TEXT NOT NULL,"                  /* psk-identity client-subject sender sender-kid */
        " value TEXT NOT NULL,"
        " label TEXT NOT NULL DEFAULT '',"
        " added_at INTEGER NOT NULL);"
        "CREATE UNIQUE INDEX admitted_identity ON admitted(kind, value, label);";

static int migrate_1_to_2(sqlite3 *db) {
        return sqlite3_exec(db, schema_v2, NULL, NULL, NULL);
}

/* migrations[v] takes the schema from v to v+1; add v2→v3 here */
static int (*const migrations[])(sqlite3 *db) = {
        migrate_0_to_1,
        migrate_1_to_2,
};
#define SCHEMA_VERSION ((int) (sizeof migrations / sizeof migrations[0]))

/* ---- statements, prepared once ---- */

#define DEVICE_SELECT \
        "SELECT d.id, d.subject, c.issuer, c.serial, c.not_before, c.not_after, d.renew_at," \
        " d.last_seen, d.confirmed_at, d.revoked_at, d.state, d.peer, d.method, d.sender," \
        " d.sender_kid, d.psk_identity, d.client_subject, d.transaction_id," \
        " (SELECT p.serial FROM certificates p WHERE p.replaced_by = c.id ORDER BY p.id DESC LIMIT 1)," \
        " d.revocation_reason FROM devices d LEFT JOIN certificates c ON c.id = d.cert_id "

#define ADMITTED_SELECT "SELECT id, kind, value, label, added_at FROM admitted "

enum {
        ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
        ST_DEV_BY_SUBJECT, ST_DEV_INSERT, ST_DEV_SEEN, ST_DEV_SET_CERT, ST_DEV_CONFIRM,
        ST_DEV_DELETE, ST_DEV_REVOKE, ST_DEV_SET_DUE, ST_DEV_FACTS,
        ST_CERT_INSERT, ST_CERT_GET, ST_CERT_BY_ISSUER_SERIAL, ST_CERT_CONFIRM,
        ST_CERT_REPLACED, ST_CERT_REVOKE, ST_CERT_DELETE, ST_CERT_DELETE_DEVICE,
        ST_PEND_UPSERT, ST_PEND_GET, ST_PEND_DELETE, ST_PEND_DELETE_DEVICE, ST_PEND_STALE,
        ST_DUE_LIST, ST_NEXT_DUE,
        ST_GET_BY_ID, ST_GET_BY_SUBJECT, ST_LIST_ALL, ST_LIST_STATE, ST_COUNT_ALL, ST_COUNT_STATE,
        ST_ADM_INSERT, ST_ADM_GET, ST_ADM_DELETE, ST_ADM_MATCH, ST_ADM_LIST, ST_ADM_COUNT,
        _ST_MAX,
};

static const char *const statement_sql[_ST_MAX] = {
        [ST_BEGIN] = "BEGIN IMMEDIATE",
        [ST_COMMIT] = "COMMIT",
        [ST_ROLLBACK] = "ROLLBACK",
        [ST_SAVEPOINT] = "SAVEPOINT exchange",
        [ST_RELEASE] = "RELEASE exchange",
        [ST_ROLLBACK_TO] = "ROLLBACK TO exchange",
        [ST_DEV_BY_SUBJECT] = "SELECT id, state, cert_id FROM devices WHERE subject = ?1",
        [ST_DEV_INSERT] = "INSERT INTO devices (subject, state, created_at) VALUES (?1, 'pending', ?2)",
        [ST_DEV_SEEN] = "UPDATE devices SET last_seen = ?2, peer = ?3, sender = coalesce(?4, sender),"
                        " sender_kid = coalesce(?5, sender_kid), psk_identity = ?6, client_subject = ?7,"
                        " transaction_id = coalesce(?8, transaction_id) WHERE id = ?1",
        [ST_DEV_SET_CERT] = "UPDATE devices SET cert_id = ?2 WHERE id = ?1",
        [ST_DEV_CONFIRM] = "UPDATE devices SET state = 'enrolled', cert_id = ?2, method = ?3,"
                           " confirmed_at = ?4, renew_at = ?5, due_at = ?6, revoked_at = NULL,"
                           " revocation_reason = NULL WHERE id = ?1",
        [ST_DEV_DELETE] = "DELETE FROM devices WHERE id = ?1",
        [ST_DEV_REVOKE] = "UPDATE devices SET state = 'revoked', revoked_at = ?2, revocation_reason = ?3,"
                          " due_at = NULL WHERE id = ?1",
        [ST_DEV_SET_DUE] = "UPDATE devices SET state = ?2, due_at = ?3 WHERE id = ?1",
        [ST_DEV_FACTS] = "SELECT d.subject, d.state, d.renew_at, c.not_after, c.serial, d.transaction_id,"
                         " d.peer, d.cert_id FROM devices d LEFT JOIN certificates c ON c.id = d.cert_id"
                         " WHERE d.id = ?1",
        [ST_CERT_INSERT] = "INSERT INTO certificates (device_id, subject, issuer, serial, not_before,"
                           " not_after, der, method, transaction_id, issued_at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        [ST_CERT_GET] = "SELECT serial, not_before, not_after FROM certificates WHERE id = ?1",
        [ST_CERT_BY_ISSUER_SERIAL] = "SELECT id, device_id FROM certificates WHERE issuer = ?1 AND serial = ?2"
                                     " ORDER BY id DESC LIMIT 1",
        [ST_CERT_CONFIRM] = "UPDATE certificates SET confirmed_at = ?2 WHERE id = ?1",
        [ST_CERT_REPLACED] = "UPDATE certificates SET replaced_by = ?2 WHERE id = ?1",
        [ST_CERT_REVOKE] = "UPDATE certificates SET revoked_at = ?2, revocation_reason = ?3 WHERE id = ?1",
        [ST_CERT_DELETE] = "DELETE FROM certificates WHERE id = ?1",
        [ST_CERT_DELETE_DEVICE] = "DELETE FROM certificates WHERE device_id = ?1",
        [ST_PEND_UPSERT] = "INSERT OR REPLACE INTO pending (transaction_id, device_id, cert_id, subject,"
                           " method, old_issuer, old_serial, device_new, created_at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        [ST_PEND_GET] = "SELECT device_id, cert_id, subject, method, old_issuer, old_serial, device_new"
                        " FROM pending WHERE transaction_id = ?1",
        [ST_PEND_DELETE] = "DELETE FROM pending WHERE transaction_id = ?1",
        [ST_PEND_DELETE_DEVICE] = "DELETE FROM pending WHERE device_id = ?1",
        [ST_PEND_STALE] = "SELECT transaction_id FROM pending WHERE created_at <= ?1 ORDER BY created_at",
        /* INDEXED BY: without it the planner prefers devices_state
         * (state=?) and sorts; the partial index gives them in due order */
        [ST_DUE_LIST] = "SELECT id FROM devices INDEXED BY devices_due WHERE state IN ('enrolled','renewal-due') AND due_at <= ?1"
                        " ORDER BY due_at",
        [ST_NEXT_DUE] = "SELECT min(t) FROM ("
                        " SELECT * FROM (SELECT due_at AS t FROM devices INDEXED BY devices_due"
                        "  WHERE state IN ('enrolled','renewal-due') ORDER BY due_at LIMIT 1)"
                        " UNION ALL"
                        " SELECT * FROM (SELECT created_at + ?1 AS t FROM pending ORDER BY created_at LIMIT 1))",
        [ST_GET_BY_ID] = DEVICE_SELECT "WHERE d.id = ?1",
        [ST_GET_BY_SUBJECT] = DEVICE_SELECT "WHERE d.subject = ?1",
        /* the page's ids first: OFFSET then skips index entries, not joined rows */
        [ST_LIST_ALL] = DEVICE_SELECT "WHERE d.id IN (SELECT id FROM devices ORDER BY id LIMIT ?1 OFFSET ?2)"
                        " ORDER BY d.id",
        [ST_LIST_STATE] = DEVICE_SELECT "WHERE d.id IN (SELECT id FROM devices WHERE state = ?3"
                          " ORDER BY id LIMIT ?1 OFFSET ?2) ORDER BY d.id",
        [ST_COUNT_ALL] = "SELECT count(*) FROM devices",
        [ST_COUNT_STATE] = "SELECT count(*) FROM devices WHERE state = ?1",
        [ST_ADM_INSERT] = "INSERT OR IGNORE INTO admitted (kind, value, label, added_at) VALUES (?1, ?2, ?3, ?4)",
        [ST_ADM_GET] = ADMITTED_SELECT "WHERE kind = ?1 AND value = ?2 AND label = ?3",
        [ST_ADM_DELETE] = "DELETE FROM admitted WHERE kind = ?1 AND value = ?2 AND label = ?3",
        /* the unique index answers it: (kind, value) with label '' or the request's */
        [ST_ADM_MATCH] = "SELECT 1 FROM admitted WHERE kind = ?1 AND value = ?2 AND label IN ('', ?3) LIMIT 1",
        [ST_ADM_LIST] = ADMITTED_SELECT "ORDER BY id LIMIT ?1 OFFSET ?2",
        [ST_ADM_COUNT] = "SELECT count(*) FROM admitted",
};

/* an event, with its strings owned, until it is delivered after COMMIT */
struct queued_event {
        struct registry_event ev;
        char *subject, *serial, *old_serial, *not_after, *renew_at, *tid, *peer, *detail;
};

struct registry {
        sqlite3 *db;
        sqlite3_stmt *st[_ST_MAX];
        struct registry_config config;
        registry_event_fn event_fn;
        void *event_userdata;
        struct queued_event *events;
        size_t n_events, size_events;
        bool batch;                     /* registry_batch_begin(): a group commit is open */
};

/* ---- small helpers ---- */

static int sql_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW:
                return 0;
        case SQLITE_BUSY: case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_READONLY: case SQLITE_PERM: case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_CORRUPT: case SQLITE_NOTADB:
                return -EBADMSG;
        default:
                return -EIO;
        }
}

static int sql_fail(struct registry *r, int rc, const char *what) {
        log_error("registry: %s: %s", what, sqlite3_errmsg(r->db));
        return sql_errno(rc);
}

/* the statement, reset and with no bindings */
static sqlite3_stmt *st(struct registry *r, int i) {
        sqlite3_reset(r->st[i]);
        sqlite3_clear_bindings(r->st[i]);
        return r->st[i];
}

static void done(sqlite3_stmt *s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
        if (v)
                sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(s, i);
}

static void bind_id(sqlite3_stmt *s, int i, int64_t v) {
        if (v > 0)
                sqlite3_bind_int64(s, i, v);
        else
                sqlite3_bind_null(s, i);
}

/* runs a statement that returns no rows */
static int run(struct registry *r, sqlite3_stmt *s) {
        int rc = sqlite3_step(s);

        done(s);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
                return sql_fail(r, rc, sqlite3_sql(s));
        return 0;
}

/* one row: 1 (the caller calls done()), none: 0, error: negative errno */
static int row(struct registry *r, sqlite3_stmt *s) {
        int rc = sqlite3_step(s);

        if (rc == SQLITE_ROW)
                return 1;
        done(s);        /* ends the statement's read transaction */
        if (rc == SQLITE_DONE)
                return 0;
        return sql_fail(r, rc, sqlite3_sql(s));
}

static char *col_strdup(sqlite3_stmt *s, int i) {
        const unsigned char *t = sqlite3_column_text(s, i);
        return t ? strdup((const char *) t) : NULL;
}

static bool col_null(sqlite3_stmt *s, int i) {
        return sqlite3_column_type(s, i) == SQLITE_NULL;
}

/* RFC 3339 UTC, "2026-11-24T06:00:00Z" */
static void format_time(int64_t t, char buf[static 32]) {
        time_t tt = (time_t) t;
        struct tm tm;

        if (!gmtime_r(&tt, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, 32, "%" PRId64, t);
}

static char *time_string(int64_t t) {
        char buf[32];

        format_time(t, buf);
        return strdup(buf);
}

/* ---- events ---- */

static void event_clear(struct queued_event *q) {
        free(q->subject);
        free(q->serial);
        free(q->old_serial);
        free(q->not_after);
        free(q->renew_at);
        free(q->tid);
        free(q->peer);
        free(q->detail);
}

static char *dup_or_empty(const char *s) {
        return strdup(s ? s : "");
}

/* Queues an event; strings are copied. NULL times are left out. */
static int queue_event(struct registry *r, enum registry_event_type type, int64_t device_id,
                       const char *subject, const char *serial, const char *old_serial,
                       int64_t not_after, int64_t renew_at, int reason, const char *tid,
                       const char *peer, const char *detail) {
        struct queued_event *q;

        if (r->n_events == r->size_events) {
                size_t n = r->size_events ? 2 * r->size_events : 8;
                struct queued_event *e = realloc(r->events, n * sizeof *e);

                if (!e)
                        return -ENOMEM;
                r->events = e;
                r->size_events = n;
        }
        q = &r->events[r->n_events];
        memset(q, 0, sizeof *q);
        q->subject = dup_or_empty(subject);
        q->serial = dup_or_empty(serial);
        q->old_serial = old_serial ? strdup(old_serial) : NULL;
        q->not_after = not_after > 0 ? time_string(not_after) : NULL;
        q->renew_at = renew_at > 0 ? time_string(renew_at) : NULL;
        q->tid = dup_or_empty(tid);
        q->peer = dup_or_empty(peer);
        q->detail = detail ? strdup(detail) : NULL;
        if (!q->subject || !q->serial || !q->tid || !q->peer) {
                event_clear(q);
                return -ENOMEM;
        }
        q->ev = (struct registry_event) {
                .type = type, .device_id = device_id, .subject = q->subject, .serial = q->serial,
                .old_serial = q->old_serial, .not_after = q->not_after, .renew_at = q->renew_at,
                .reason = reason, .transaction_id = q->tid, .peer = q->peer, .detail = q->detail,
        };
        r->n_events++;
        return 0;
}

/* after COMMIT: deliver; after ROLLBACK: drop */
static void flush_events(struct registry *r, bool deliver) {
        for (size_t i = 0; i < r->n_events; i++) {
                if (deliver && r->event_fn)
                        r->event_fn(&r->events[i].ev, r->event_userdata);
                event_clear(&r->events[i]);
        }
        r->n_events = 0;
}

/* ---- transactions ---- */

static int begin(struct registry *r) {
        if (r->batch)           /* the exchanges so far first, committed */
                (void) registry_batch_end(r);
        flush_events(r, false);
        return run(r, st(r, ST_BEGIN));
}

/* COMMIT when k >= 0, else ROLLBACK; then the events. Returns k or the COMMIT's error. */
static int end(struct registry *r, int k) {
        if (k >= 0) {
                int c = run(r, st(r, ST_COMMIT));
                if (c < 0)
                        k = c;
        }
        if (k < 0 && !sqlite3_get_autocommit(r->db))
                (void) run(r, st(r, ST_ROLLBACK));
        flush_events(r, k >= 0);
        return k;
}

int registry_batch_begin(struct registry *r) {
        int k;

        if (r->batch)
                return 0;
        k = begin(r);
        if (k >= 0)
                r->batch = true;
        return k;
}

int registry_batch_end(struct registry *r) {
        if (!r || !r->batch)
                return 0;
        r->batch = false;
        return end(r, 0);
}

bool registry_in_batch(const struct registry *r) {
        return r && r->batch;
}

/* ---- open / close ---- */

static int migrate(struct registry *r) {
        sqlite3_stmt *s;
        int version, rc, k;

        rc = sqlite3_prepare_v2(r->db, "PRAGMA user_version", -1, &s, NULL);
        if (rc != SQLITE_OK)
                return sql_fail(r, rc, "PRAGMA user_version");
        rc = sqlite3_step(s);
        version = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
        sqlite3_finalize(s);
        if (version < 0)
                return sql_fail(r, rc, "PRAGMA user_version");
        if (version > SCHEMA_VERSION) {
                log_error("registry: schema version %d is newer than this cmpgwd (%d)",
                          version, SCHEMA_VERSION);
                return -EPROTONOSUPPORT;
        }
        for (; version < SCHEMA_VERSION; version++) {
                char sql[64];

                snprintf(sql, sizeof sql, "PRAGMA user_version = %d", version + 1);
                rc = sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
                if (rc == SQLITE_OK)
                        rc = migrations[version](r->db);
                if (rc == SQLITE_OK)
                        rc = sqlite3_exec(r->db, sql, NULL, NULL, NULL);
                if (rc == SQLITE_OK)
                        rc = sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
                if (rc != SQLITE_OK) {
                        k = sql_fail(r, rc, "schema migration");
                        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
                        return k;
                }
                log_info("registry: schema migrated to version %d", version + 1);
        }
        return 0;
}

static int configure(struct registry *r) {
        sqlite3_stmt *s;
        const unsigned char *mode;
        bool wal;
        int rc;

        sqlite3_busy_timeout(r->db, REGISTRY_BUSY_TIMEOUT_MS);
        rc = sqlite3_prepare_v2(r->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
        if (rc != SQLITE_OK)
                return sql_fail(r, rc, "PRAGMA journal_mode");
        rc = sqlite3_step(s);
        mode = rc == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
        wal = mode && strcmp((const char *) mode, "wal") == 0;
        sqlite3_finalize(s);
        if (!wal) {
                log_error("registry: cannot switch to WAL mode");
                return -EIO;
        }
        /* see the top of this file for why NORMAL is enough */
        rc = sqlite3_exec(r->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return sql_fail(r, rc, "PRAGMA synchronous");
        return 0;
}

static int prepare_all(struct registry *r) {
        for (int i = 0; i < _ST_MAX; i++) {
                int rc = sqlite3_prepare_v3(r->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                            &r->st[i], NULL);
                if (rc != SQLITE_OK)
                        return sql_fail(r, rc, statement_sql[i]);
        }
        return 0;
}

void registry_set_config(struct registry *r, const struct registry_config *rc) {
        r->config.renew_share = 2.0 / 3.0;
        r->config.renew_before_sec = 0;
        if (!rc)
                return;
        if (rc->renew_share > 0 && rc->renew_share <= 1)
                r->config.renew_share = rc->renew_share;
        r->config.renew_before_sec = rc->renew_before_sec;
}

void registry_set_event_handler(struct registry *r, registry_event_fn fn, void *userdata) {
        r->event_fn = fn;
        r->event_userdata = userdata;
}

struct registry *registry_close(struct registry *r) {
        if (!r)
                return NULL;
        (void) registry_batch_end(r);
        flush_events(r, false);
        free(r->events);
        for (int i = 0; i < _ST_MAX; i++)
                sqlite3_finalize(r->st[i]);
        sqlite3_close(r->db);
        free(r);
        return NULL;
}

int registry_open(const char *path, const struct registry_config *rc, struct registry **ret) {
        struct registry *r;
        int k;

        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        registry_set_config(r, rc);
        k = sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                            NULL);
        if (k != SQLITE_OK) {
                log_error("registry: cannot open %s: %s", path,
                          r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(k));
                k = sql_errno(k);
                registry_close(r);
                return k;
        }
        sqlite3_extended_result_codes(r->db, 1);
        k = configure(r);
        if (k >= 0)
                k = migrate(r);
        if (k >= 0)
                k = prepare_all(r);
        if (k < 0) {
                registry_close(r);
                return k;
        }
        *ret = r;
        return 0;
}

/* ---- the state machine ---- */

struct pending_row {
        int64_t device_id, cert_id;
        char *subject, *method, *old_issuer, *old_serial;
        bool device_new;
};

static void pending_row_clear(struct pending_row *p) {
        free(p->subject);
        free(p->method);
        free(p->old_issuer);
        free(p->old_serial);
        memset(p, 0, sizeof *p);
}

/* 1 found, 0 none, negative errno */
static int pending_get(struct registry *r, const char *tid, struct pending_row *p) {
        sqlite3_stmt *s = st(r, ST_PEND_GET);
        int k;

        memset(p, 0, sizeof *p);
        if (!tid)
                return 0;
        bind_text(s, 1, tid);
        k = row(r, s);
        if (k <= 0)
                return k;
        p->device_id = sqlite3_column_int64(s, 0);
        p->cert_id = sqlite3_column_int64(s, 1);
        p->subject = col_strdup(s, 2);
        p->method = col_strdup(s, 3);
        p->old_issuer = col_strdup(s, 4);
        p->old_serial = col_strdup(s, 5);
        p->device_new = sqlite3_column_int(s, 6) != 0;
        done(s);
        if (!p->subject) {
                pending_row_clear(p);
                return -ENOMEM;
        }
        return 1;
}

struct device_row {
        int64_t id, cert_id;
        bool is_pending;
};

/* 1 found, 0 none, negative errno */
static int device_by_subject(struct registry *r, const char *subject, struct device_row *d) {
        sqlite3_stmt *s = st(r, ST_DEV_BY_SUBJECT);
        int k;

        memset(d, 0, sizeof *d);
        bind_text(s, 1, subject);
        k = row(r, s);
        if (k <= 0)
                return k;
        d->id = sqlite3_column_int64(s, 0);
        d->is_pending = strcmp((const char *) sqlite3_column_text(s, 1), "pending") == 0;
        d->cert_id = sqlite3_column_int64(s, 2);
        done(s);
        return 1;
}

/* find or make the device named subject; *created when made now */
static int device_ensure(struct registry *r, const char *subject, uint64_t now,
                         struct device_row *d, bool *created) {
        sqlite3_stmt *s;
        int k;

        *created = false;
        k = device_by_subject(r, subject, d);
        if (k != 0)
                return k < 0 ? k : 0;
        s = st(r, ST_DEV_INSERT);
        bind_text(s, 1, subject);
        sqlite3_bind_int64(s, 2, (int64_t) now);
        k = run(r, s);
        if (k < 0)
                return k;
        d->id = sqlite3_last_insert_rowid(r->db);
        d->is_pending = true;
        *created = true;
        return 0;
}

/* what the exchange tells about the device: when, where, who */
static int device_seen(struct registry *r, int64_t device_id, const struct registry_exchange *x,
                       const struct cmp_content *q, const char *tid) {
        sqlite3_stmt *s = st(r, ST_DEV_SEEN);

        sqlite3_bind_int64(s, 1, device_id);
        sqlite3_bind_int64(s, 2, (int64_t) x->now);
        bind_text(s, 3, x->peer);
        bind_text(s, 4, q->sender);
        bind_text(s, 5, q->sender_kid);
        bind_text(s, 6, x->psk_identity);
        bind_text(s, 7, x->client_subject);
        bind_text(s, 8, tid);
        return run(r, s);
}

static int delete_device(struct registry *r, int64_t id) {
        static const int sts[] = { ST_CERT_DELETE_DEVICE, ST_PEND_DELETE_DEVICE, ST_DEV_DELETE };

        for (size_t i = 0; i < sizeof sts / sizeof sts[0]; i++) {
                sqlite3_stmt *s = st(r, sts[i]);
                int k;

                sqlite3_bind_int64(s, 1, id);
                k = run(r, s);
                if (k < 0)
                        return k;
        }
        return 0;
}

static int delete_by_id(struct registry *r, int stmt, int64_t id) {
        sqlite3_stmt *s = st(r, stmt);

        sqlite3_bind_int64(s, 1, id);
        return run(r, s);
}

static int pending_delete(struct registry *r, const char *tid) {
        sqlite3_stmt *s = st(r, ST_PEND_DELETE);

        bind_text(s, 1, tid);
        return run(r, s);
}

static int device_set_cert(struct registry *r, int64_t device_id, int64_t cert_id) {
        sqlite3_stmt *s = st(r, ST_DEV_SET_CERT);

        sqlite3_bind_int64(s, 1, device_id);
        sqlite3_bind_int64(s, 2, cert_id);
        return run(r, s);
}

/* The transaction failed (rejection, error, rejected certConf, expiry):
 * forget what it issued; a device made by it goes again. */
static int on_failed(struct registry *r, const struct registry_exchange *x, const char *tid,
                     const char *fallback_subject, const char *detail) {
        struct pending_row p;
        struct device_row d;
        int64_t device_id = 0;
        int k;

        k = pending_get(r, tid, &p);
        if (k < 0)
                return k;
        if (k > 0) {
                k = pending_delete(r, tid);
                if (k >= 0 && device_by_subject(r, p.subject, &d) > 0) {
                        if (p.device_new && d.is_pending)
                                k = delete_device(r, d.id);
                        else {
                                device_id = d.id;
                                if (p.cert_id > 0 && p.cert_id != d.cert_id)
                                        k = delete_by_id(r, ST_CERT_DELETE, p.cert_id);
                        }
                }
                if (k >= 0)
                        k = queue_event(r, REG_EV_FAILED, device_id, p.subject, NULL, NULL, 0, 0, -1,
                                        tid, x ? x->peer : NULL, detail);
                pending_row_clear(&p);
                return k;
        }
        if (fallback_subject && device_by_subject(r, fallback_subject, &d) > 0)
                device_id = d.id;
        return queue_event(r, REG_EV_FAILED, device_id, fallback_subject, NULL, NULL, 0, 0, -1, tid,
                           x ? x->peer : NULL, detail);
}

static int64_t renew_time(const struct registry *r, int64_t nb, int64_t na) {
        int64_t t = nb + (int64_t) (r->config.renew_share * (double) (na - nb));

        if (r->config.renew_before_sec > 0 && na - (int64_t) r->config.renew_before_sec < t)
                t = na - (int64_t) r->config.renew_before_sec;
        return t < na ? t : na;
}

/* the certificate the confirmed one replaces: kur's oldCertID, else the
 * device's current certificate (re-enrolment) */
static int find_replaced(struct registry *r, const struct pending_row *p, int64_t device_cert,
                         bool device_pending, int64_t *old_id) {
        sqlite3_stmt *s;
        int k;

        *old_id = 0;
        if (p->old_issuer && p->old_serial) {
                s = st(r, ST_CERT_BY_ISSUER_SERIAL);
                bind_text(s, 1, p->old_issuer);
                bind_text(s, 2, p->old_serial);
                k = row(r, s);
                if (k < 0)
                        return k;
                if (k > 0)
                        *old_id = sqlite3_column_int64(s, 0);
                done(s);
                if (*old_id > 0 && *old_id != p->cert_id)
                        return 0;
                *old_id = 0;
        }
        if (!device_pending && device_cert > 0 && device_cert != p->cert_id)
                *old_id = device_cert;
        return 0;
}

struct cert_row {
        char *serial;
        int64_t not_before, not_after;
};

static int cert_get(struct registry *r, int64_t id, struct cert_row *c) {
        sqlite3_stmt *s = st(r, ST_CERT_GET);
        int k;

        memset(c, 0, sizeof *c);
        sqlite3_bind_int64(s, 1, id);
        k = row(r, s);
        if (k <= 0)
                return k;
        c->serial = col_strdup(s, 0);
        c->not_before = sqlite3_column_int64(s, 1);
        c->not_after = sqlite3_column_int64(s, 2);
        done(s);
        return c->serial ? 1 : -ENOMEM;
}

/* certConf accepted + pkiConf, or implicitConfirm granted: the device holds
 * the certificate now (RFC 4210 §5.3.18). */
static int on_confirmed(struct registry *r, const struct registry_exchange *x, const char *tid) {
        struct pending_row p;
        struct device_row d;
        struct cert_row c = {}, old = {};
        int64_t old_id = 0, renew_at;
        sqlite3_stmt *s;
        int k;

        k = pending_get(r, tid, &p);
        if (k <= 0) {
                if (k == 0)
                        log_debug("registry: confirmation for unknown transaction %s", tid ? tid : "-");
                return k;
        }
        if (p.cert_id <= 0 || device_by_subject(r, p.subject, &d) <= 0) {
                log_debug("registry: confirmation of transaction %s without a certificate", tid);
                k = 0;
                goto out;
        }
        k = cert_get(r, p.cert_id, &c);
        if (k <= 0)
                goto out;
        k = find_replaced(r, &p, d.cert_id, d.is_pending, &old_id);
        if (k >= 0 && old_id > 0) {
                k = cert_get(r, old_id, &old);
                if (k > 0) {
                        s = st(r, ST_CERT_REPLACED);
                        sqlite3_bind_int64(s, 1, old_id);
                        sqlite3_bind_int64(s, 2, p.cert_id);
                        k = run(r, s);
                }
        }
        if (k < 0)
                goto out;
        s = st(r, ST_CERT_CONFIRM);
        sqlite3_bind_int64(s, 1, p.cert_id);
        sqlite3_bind_int64(s, 2, (int64_t) x->now);
        k = run(r, s);
        if (k < 0)
                goto out;
        renew_at = renew_time(r, c.not_before, c.not_after);
        s = st(r, ST_DEV_CONFIRM);
        sqlite3_bind_int64(s, 1, d.id);
        sqlite3_bind_int64(s, 2, p.cert_id);
        bind_text(s, 3, p.method);
        sqlite3_bind_int64(s, 4, (int64_t) x->now);
        sqlite3_bind_int64(s, 5, renew_at);
        sqlite3_bind_int64(s, 6, renew_at);     /* enrolled: due at renew_at */
        k = run(r, s);
        if (k < 0)
                goto out;
        k = pending_delete(r, tid);
        if (k < 0)
                goto out;
        k = queue_event(r, old.serial ? REG_EV_RENEWED : REG_EV_ENROLLED, d.id, p.subject, c.serial,
                        old.serial, c.not_after, renew_at, -1, tid, x->peer, NULL);
out:
        free(c.serial);
        free(old.serial);
        pending_row_clear(&p);
        return k;
}

static const char *method_of(int body) {
        switch (body) {
        case CMP_BODY_IR: case CMP_BODY_CR: case CMP_BODY_KUR: case CMP_BODY_P10CR:
                return cmp_body_name(body);
        default:
                return NULL;
        }
}

static int cert_insert(struct registry *r, int64_t device_id, const struct cmp_cert_info *ci,
                       const char *method, const char *tid, uint64_t now, int64_t *id) {
        sqlite3_stmt *s = st(r, ST_CERT_INSERT);
        int k;

        sqlite3_bind_int64(s, 1, device_id);
        bind_text(s, 2, ci->subject);
        bind_text(s, 3, ci->issuer);
        bind_text(s, 4, ci->serial);
        sqlite3_bind_int64(s, 5, ci->not_before);
        sqlite3_bind_int64(s, 6, ci->not_after);
        sqlite3_bind_blob(s, 7, ci->der, (int) ci->der_len, SQLITE_STATIC);
        bind_text(s, 8, method);
        bind_text(s, 9, tid);
        sqlite3_bind_int64(s, 10, (int64_t) now);
        k = run(r, s);
        *id = sqlite3_last_insert_rowid(r->db);
        return k;
}

struct pending_new {
        const char *tid, *subject, *method, *old_issuer, *old_serial;
        int64_t device_id, cert_id;
        bool device_new;
};

static int pending_put(struct registry *r, const struct pending_new *n, uint64_t now) {
        sqlite3_stmt *s = st(r, ST_PEND_UPSERT);

        bind_text(s, 1, n->tid);
        sqlite3_bind_int64(s, 2, n->device_id);
        bind_id(s, 3, n->cert_id);
        bind_text(s, 4, n->subject);
        bind_text(s, 5, n->method);
        bind_text(s, 6, n->old_issuer);
        bind_text(s, 7, n->old_serial);
        sqlite3_bind_int(s, 8, n->device_new);
        sqlite3_bind_int64(s, 9, (int64_t) now);
        return run(r, s);
}

/* ip/cp/kup accepted or grantedWithMods with a certificate (or waiting,
 * cert NULL): a pending transaction. */
static int on_issued(struct registry *r, const struct registry_exchange *x, const struct cmp_content *q,
                     const struct cmp_content *rsp, const char *tid) {
        const struct cmp_cert_info *ci = rsp->cert;
        struct pending_row prev;
        struct device_row d;
        struct pending_new n = { .tid = tid };
        bool created;
        int k;

        k = pending_get(r, tid, &prev);        /* polling: the request came earlier */
        if (k < 0)
                return k;
        n.method = method_of(q->body) ?: prev.method;
        n.old_issuer = q->body == CMP_BODY_KUR ? q->old_issuer : prev.old_issuer;
        n.old_serial = q->body == CMP_BODY_KUR ? q->old_serial : prev.old_serial;
        n.subject = q->req_subject ?: prev.subject;
        if (ci)
                n.subject = ci->subject;        /* a device is named by its certificate's subject */
        if (!n.subject || !tid) {
                log_debug("registry: %s without subject or transactionID", cmp_body_name(rsp->body));
                k = 0;
                goto out;
        }
        k = device_ensure(r, n.subject, x->now, &d, &created);
        if (k < 0)
                goto out;
        n.device_id = d.id;
        n.device_new = created || (prev.subject && prev.device_new);
        if (rsp->cert) {
                k = cert_insert(r, d.id, ci, n.method, tid, x->now, &n.cert_id);
                if (k >= 0 && d.is_pending)     /* shown until confirmed or failed */
                        k = device_set_cert(r, d.id, n.cert_id);
        }
        if (k >= 0)
                k = device_seen(r, d.id, x, q, tid);
        if (k >= 0)
                k = pending_put(r, &n, x->now);
        /* RFC 4210 §5.1.1.1, RFC 9483 §4.1.1: implicitConfirm in the
         * response's generalInfo grants it; no certConf will follow */
        if (k >= 0 && rsp->cert && rsp->implicit_confirm)
                k = on_confirmed(r, x, tid);
out:
        pending_row_clear(&prev);
        return k;
}

static int on_cert_response(struct registry *r, const struct registry_exchange *x,
                            const struct cmp_content *q, const struct cmp_content *rsp, const char *tid) {
        char *detail;
        int k;

        if ((rsp->status == CMP_STATUS_ACCEPTED || rsp->status == CMP_STATUS_GRANTED_WITH_MODS) && rsp->cert)
                return on_issued(r, x, q, rsp, tid);
        if (rsp->status == CMP_STATUS_WAITING)
                return on_issued(r, x, q, rsp, tid);
        detail = cmp_content_status_detail(rsp);
        if (!detail)
                return -ENOMEM;
        k = on_failed(r, x, tid, q->req_subject, detail);
        free(detail);
        return k;
}

/* rr answered by rp (RFC 4210 §5.3.9-10, RFC 9483 §4.2) */
static int on_revocation(struct registry *r, const struct registry_exchange *x,
                         const struct cmp_content *q, const struct cmp_content *rsp, const char *tid) {
        sqlite3_stmt *s;
        int64_t cert_id = 0, device_id = 0, cur_cert = 0;
        char *subject = NULL, *detail;
        int k;

        s = st(r, ST_CERT_BY_ISSUER_SERIAL);
        bind_text(s, 1, q->old_issuer);
        bind_text(s, 2, q->old_serial);
        k = row(r, s);
        if (k < 0)
                return k;
        if (k > 0) {
                cert_id = sqlite3_column_int64(s, 0);
                device_id = sqlite3_column_int64(s, 1);
        }
        done(s);
        if (device_id > 0) {
                s = st(r, ST_DEV_FACTS);
                sqlite3_bind_int64(s, 1, device_id);
                k = row(r, s);
                if (k < 0)
                        return k;
                if (k > 0) {
                        subject = col_strdup(s, 0);
                        cur_cert = sqlite3_column_int64(s, 7);
                } else
                        device_id = 0;
                done(s);
        }
        if (rsp->status != CMP_STATUS_ACCEPTED && rsp->status != CMP_STATUS_GRANTED_WITH_MODS) {
                detail = cmp_content_status_detail(rsp);
                k = detail ? queue_event(r, REG_EV_FAILED, device_id, subject, q->old_serial, NULL, 0, 0,
                                         q->revocation_reason, tid, x->peer, detail) : -ENOMEM;
                free(detail);
                goto out;
        }
        if (cert_id > 0) {
                s = st(r, ST_CERT_REVOKE);
                sqlite3_bind_int64(s, 1, cert_id);
                sqlite3_bind_int64(s, 2, (int64_t) x->now);
                if (q->revocation_reason >= 0)
                        sqlite3_bind_int(s, 3, q->revocation_reason);
                k = run(r, s);
        }
        /* the device is revoked when its current certificate is */
        if (k >= 0 && device_id > 0 && cur_cert == cert_id) {
                s = st(r, ST_DEV_REVOKE);
                sqlite3_bind_int64(s, 1, device_id);
                sqlite3_bind_int64(s, 2, (int64_t) x->now);
                if (q->revocation_reason >= 0)
                        sqlite3_bind_int(s, 3, q->revocation_reason);
                k = run(r, s);
        }
        if (k >= 0 && device_id > 0)
                k = device_seen(r, device_id, x, q, tid);
        if (k >= 0)
                k = queue_event(r, REG_EV_REVOKED, device_id, subject, q->old_serial, NULL, 0, 0,
                                q->revocation_reason, tid, x->peer, NULL);
out:
        free(subject);
        return k;
}

/* anything else in a known transaction: the device was seen */
static int on_other(struct registry *r, const struct registry_exchange *x, const struct cmp_content *q,
                    const char *tid) {
        struct pending_row p;
        int k = pending_get(r, tid, &p);

        if (k <= 0)
                return k;
        k = device_seen(r, p.device_id, x, q, tid);
        pending_row_clear(&p);
        return k;
}

static int observe_exchange(struct registry *r, const struct registry_exchange *x,
                            const struct cmp_content *q, const struct cmp_content *rsp) {
        const char *tid = rsp->transaction_id ?: q->transaction_id;
        char *detail;
        int k;

        switch (rsp->body) {
        case CMP_BODY_IP: case CMP_BODY_CP: case CMP_BODY_KUP:
                return on_cert_response(r, x, q, rsp, tid);
        case CMP_BODY_RP:
                return q->body == CMP_BODY_RR ? on_revocation(r, x, q, rsp, tid) : 0;
        case CMP_BODY_PKICONF:
                if (q->body != CMP_BODY_CERTCONF)
                        return on_other(r, x, q, tid);
                k = on_other(r, x, q, tid);
                if (k < 0)
                        return k;
                /* RFC 4210 §5.3.18: a rejected certificate is confirmed
                 * with status rejection, still answered by pkiConf */
                if (q->status == CMP_STATUS_REJECTION) {
                        char *d = cmp_content_status_detail(q);

                        if (!d)
                                return -ENOMEM;
                        k = asprintf(&detail, "certificate rejected by the client: %s", d);
                        free(d);
                        if (k < 0)
                                return -ENOMEM;
                        k = on_failed(r, x, tid, NULL, detail);
                        free(detail);
                        return k;
                }
                return on_confirmed(r, x, tid);
        case CMP_BODY_ERROR:
                detail = cmp_content_status_detail(rsp);
                if (!detail)
                        return -ENOMEM;
                k = on_failed(r, x, tid, q->req_subject, detail);
                free(detail);
                return k;
        default:
                if (q->body != CMP_BODY_ERROR)
                        return on_other(r, x, q, tid);
                /* the client gave up (RFC 4210 §5.3.21) */
                detail = cmp_content_status_detail(q);
                if (!detail)
                        return -ENOMEM;
                k = on_failed(r, x, tid, NULL, detail);
                free(detail);
                return k;
        }
}

/* the content handed in, else parsed from DER into *parsed (freed by the caller) */
static int content_of(const struct cmp_content *given, const uint8_t *der, size_t len,
                      struct cmp_content **parsed, const struct cmp_content **ret) {
        int k;

        if (given) {
                *ret = given;
                return 0;
        }
        k = cmp_content_parse(der, len, parsed);
        *ret = *parsed;
        return k;
}

/* one exchange of a group commit: its own SAVEPOINT, and its events go
 * with it when it is rolled back */
static int observe_in_batch(struct registry *r, const struct registry_exchange *x,
                            const struct cmp_content *q, const struct cmp_content *rsp) {
        size_t mark = r->n_events;
        int k = run(r, st(r, ST_SAVEPOINT));

        if (k < 0)
                return k;
        k = observe_exchange(r, x, q, rsp);
        if (k < 0) {
                (void) run(r, st(r, ST_ROLLBACK_TO));
                while (r->n_events > mark)
                        event_clear(&r->events[--r->n_events]);
        }
        (void) run(r, st(r, ST_RELEASE));
        if (k < 0)
                log_warning("registry: exchange from %s not recorded: %s", x->peer ? x->peer : "?", strerror(-k));
        return k;
}

int registry_observe(struct registry *r, const struct registry_exchange *x) {
        struct cmp_content *q_parsed = NULL, *rsp_parsed = NULL;
        const struct cmp_content *q, *rsp;
        int k;

        if (!x->req || !x->rsp || x->rsp_len == 0)
                return 0;       /* no answer to learn from */
        k = content_of(x->req_content, x->req, x->req_len, &q_parsed, &q);
        if (k >= 0)
                k = content_of(x->rsp_content, x->rsp, x->rsp_len, &rsp_parsed, &rsp);
        if (k < 0) {
                log_debug("registry: exchange not understood: %s", strerror(-k));
                goto out;
        }
        k = r->batch ? observe_in_batch(r, x, q, rsp) : begin(r);
        if (k < 0 || r->batch)
                goto out;
        k = end(r, observe_exchange(r, x, q, rsp));
        if (k < 0)
                log_warning("registry: exchange from %s not recorded: %s",
                            x->peer ? x->peer : "?", strerror(-k));
out:
        cmp_content_free(q_parsed);
        cmp_content_free(rsp_parsed);
        return k;
}

/* ---- renewal ---- */

int64_t registry_next_due(struct registry *r) {
        sqlite3_stmt *s = st(r, ST_NEXT_DUE);
        int64_t t = -1;

        sqlite3_bind_int64(s, 1, REGISTRY_PENDING_TTL_SEC);
        if (row(r, s) > 0) {
                if (!col_null(s, 0))
                        t = sqlite3_column_int64(s, 0);
                done(s);
        }
        return t;
}

static int update_device_due(struct registry *r, int64_t id, uint64_t now) {
        sqlite3_stmt *s = st(r, ST_DEV_FACTS);
        char *subject, *serial, *tid, *peer, *state;
        int64_t renew_at, not_after;
        int k;

        sqlite3_bind_int64(s, 1, id);
        k = row(r, s);
        if (k <= 0)
                return k;
        subject = col_strdup(s, 0);
        state = col_strdup(s, 1);
        renew_at = sqlite3_column_int64(s, 2);
        not_after = sqlite3_column_int64(s, 3);
        serial = col_strdup(s, 4);
        tid = col_strdup(s, 5);
        peer = col_strdup(s, 6);
        done(s);
        k = 0;
        s = st(r, ST_DEV_SET_DUE);
        sqlite3_bind_int64(s, 1, id);
        if (!subject || !state)
                k = -ENOMEM;
        else if (not_after <= (int64_t) now) {
                /* no event type for expiry in registry.h: state only */
                bind_text(s, 2, "expired");
                k = run(r, s);
        } else if (strcmp(state, "enrolled") == 0 && renew_at <= (int64_t) now) {
                bind_text(s, 2, "renewal-due");
                sqlite3_bind_int64(s, 3, not_after);     /* next: expiry */
                k = run(r, s);
                if (k >= 0)
                        k = queue_event(r, REG_EV_RENEWAL_DUE, id, subject, serial, NULL, not_after,
                                        renew_at, -1, tid, peer, NULL);
        }
        done(s);
        free(subject);
        free(state);
        free(serial);
        free(tid);
        free(peer);
        return k;
}

/* ids first, then the updates: we do not write the index we walk */
static int collect_ids(struct registry *r, sqlite3_stmt *s, int64_t **ids, size_t *n) {
        size_t size = 0;
        int k;

        *ids = NULL;
        *n = 0;
        while ((k = row(r, s)) > 0) {
                if (*n == size) {
                        int64_t *a = realloc(*ids, (size ? 2 * size : 64) * sizeof *a);

                        if (!a) {
                                done(s);
                                return -ENOMEM;
                        }
                        *ids = a;
                        size = size ? 2 * size : 64;
                }
                (*ids)[(*n)++] = sqlite3_column_int64(s, 0);
        }
        done(s);
        return k;
}

static int expire_pending(struct registry *r, uint64_t now) {
        sqlite3_stmt *s = st(r, ST_PEND_STALE);
        char **tids = NULL;
        size_t n = 0, size = 0;
        int k;

        sqlite3_bind_int64(s, 1, (int64_t) now - REGISTRY_PENDING_TTL_SEC);
        while ((k = row(r, s)) > 0) {
                if (n == size) {
                        char **a = realloc(tids, (size ? 2 * size : 16) * sizeof *a);

                        if (!a) {
                                k = -ENOMEM;
                                break;
                        }
                        tids = a;
                        size = size ? 2 * size : 16;
                }
                if (!(tids[n] = col_strdup(s, 0))) {
                        k = -ENOMEM;
                        break;
                }
                n++;
        }
        done(s);
        for (size_t i = 0; i < n; i++) {
                if (k >= 0)
                        k = on_failed(r, NULL, tids[i], NULL, "transaction expired: no confirmation");
                free(tids[i]);
        }
        free(tids);
        return k;
}

int registry_update_due(struct registry *r, uint64_t now) {
        sqlite3_stmt *s;
        int64_t *ids = NULL;
        size_t n = 0;
        int k;

        k = begin(r);
        if (k < 0)
                return k;
        s = st(r, ST_DUE_LIST);
        sqlite3_bind_int64(s, 1, (int64_t) now);
        k = collect_ids(r, s, &ids, &n);
        for (size_t i = 0; i < n && k >= 0; i++)
                k = update_device_due(r, ids[i], now);
        free(ids);
        if (k >= 0)
                k = expire_pending(r, now);
        k = end(r, k);
        return k < 0 ? k : (int) (n > INT32_MAX ? INT32_MAX : n);
}

/* ---- queries ---- */

static void add_time(struct json_object *o, const char *key, sqlite3_stmt *s, int i) {
        char buf[32];

        if (col_null(s, i)) {
                json_object_object_add(o, key, NULL);
                return;
        }
        format_time(sqlite3_column_int64(s, i), buf);
        json_object_object_add(o, key, json_object_new_string(buf));
}

static void add_text(struct json_object *o, const char *key, sqlite3_stmt *s, int i) {
        const unsigned char *t = sqlite3_column_text(s, i);

        json_object_object_add(o, key, t ? json_object_new_string((const char *) t) : NULL);
}

/* one row of DEVICE_SELECT */
static struct json_object *device_json(sqlite3_stmt *s) {
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "id", json_object_new_int64(sqlite3_column_int64(s, 0)));
        add_text(o, "subject", s, 1);
        add_text(o, "issuer", s, 2);
        add_text(o, "serial", s, 3);
        add_time(o, "not_before", s, 4);
        add_time(o, "not_after", s, 5);
        add_time(o, "renew_at", s, 6);
        add_time(o, "last_seen", s, 7);
        add_time(o, "confirmed_at", s, 8);
        add_time(o, "revoked_at", s, 9);
        add_text(o, "state", s, 10);
        add_text(o, "peer", s, 11);
        add_text(o, "method", s, 12);
        add_text(o, "sender", s, 13);
        add_text(o, "sender_kid", s, 14);
        add_text(o, "psk_identity", s, 15);
        add_text(o, "client_subject", s, 16);
        add_text(o, "transaction_id", s, 17);
        add_text(o, "previous_serial", s, 18);
        json_object_object_add(o, "revocation_reason", col_null(s, 19) ? NULL :
                               json_object_new_int(sqlite3_column_int(s, 19)));
        return o;
}

static bool state_valid(const char *state) {
        static const char *const states[] = { "pending", "enrolled", "renewal-due", "expired", "revoked" };

        for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
                if (strcmp(state, states[i]) == 0)
                        return true;
        return false;
}

/* every row of the bound statement S as one json object (TO_JSON) in an array */
static int rows_json(struct registry *r, sqlite3_stmt *s, struct json_object *(*to_json)(sqlite3_stmt *),
                     struct json_object **ret) {
        struct json_object *a = json_object_new_array();
        int k = a ? 0 : -ENOMEM;

        while (k == 0 && (k = row(r, s)) > 0) {
                struct json_object *o = to_json(s);

                k = o && json_object_array_add(a, o) == 0 ? 0 : -ENOMEM;
                if (k < 0)
                        json_object_put(o);
        }
        done(s);
        if (k < 0) {
                json_object_put(a);
                return k;
        }
        *ret = a;
        return 0;
}

/* limit 0 or above REGISTRY_LIST_MAX (1000) gives REGISTRY_LIST_MAX */
int registry_list(struct registry *r, const char *state, uint64_t offset, uint32_t limit,
                  struct json_object **devices, uint64_t *total) {
        sqlite3_stmt *s;
        int k;

        if (state && !state_valid(state))
                return -EINVAL;
        if (limit == 0 || limit > REGISTRY_LIST_MAX)
                limit = REGISTRY_LIST_MAX;
        if (offset > INT64_MAX)
                offset = INT64_MAX;
        if (total) {
                s = st(r, state ? ST_COUNT_STATE : ST_COUNT_ALL);
                bind_text(s, 1, state);
                k = row(r, s);
                if (k < 0)
                        return k;
                *total = k > 0 ? (uint64_t) sqlite3_column_int64(s, 0) : 0;
                done(s);
        }
        s = st(r, state ? ST_LIST_STATE : ST_LIST_ALL);
        sqlite3_bind_int64(s, 1, limit);
        sqlite3_bind_int64(s, 2, (int64_t) offset);
        bind_text(s, 3, state);
        return rows_json(r, s, device_json, devices);
}

static bool parse_id(const char *id, int64_t *ret) {
        char *end;
        long long v;

        if (!id[0] || strspn(id, "0123456789") != strlen(id))
                return false;
        errno = 0;
        v = strtoll(id, &end, 10);
        if (errno || *end || v <= 0)
                return false;
        *ret = v;
        return true;
}

/* the statement positioned on the device ID (numeric id or subject):
 * 1, or 0/-errno (statement done) */
static int find_device(struct registry *r, const char *id, sqlite3_stmt **ret) {
        sqlite3_stmt *s;
        int64_t n;
        int k;

        if (!id)
                return -EINVAL;
        if (parse_id(id, &n)) {
                s = st(r, ST_GET_BY_ID);
                sqlite3_bind_int64(s, 1, n);
        } else {
                s = st(r, ST_GET_BY_SUBJECT);
                bind_text(s, 1, id);
        }
        k = row(r, s);
        if (k <= 0) {
                done(s);
                return k;
        }
        *ret = s;
        return 1;
}

int registry_get(struct registry *r, const char *id, struct json_object **device) {
        sqlite3_stmt *s;
        struct json_object *o;
        int k = find_device(r, id, &s);

        if (k <= 0)
                return k < 0 ? k : -ENOENT;
        o = device_json(s);
        done(s);
        if (!o)
                return -ENOMEM;
        *device = o;
        return 0;
}

int registry_forget(struct registry *r, const char *id) {
        sqlite3_stmt *s;
        int64_t n;
        int k;

        k = begin(r);
        if (k < 0)
                return k;
        k = find_device(r, id, &s);
        if (k > 0) {
                n = sqlite3_column_int64(s, 0);
                done(s);
                k = delete_device(r, n);
        } else if (k == 0)
                k = -ENOENT;
        return end(r, k);
}

uint64_t registry_count(struct registry *r) {
        sqlite3_stmt *s = st(r, ST_COUNT_ALL);
        uint64_t n = 0;

        if (row(r, s) > 0) {
                n = (uint64_t) sqlite3_column_int64(s, 0);
                done(s);
        }
        return n;
}

/* ---- revocations learnt from announcements ---- */

int registry_revoke(struct registry *r, const char *issuer, const char *serial, int reason, uint64_t when) {
        sqlite3_stmt *s;
        int64_t cert_id = 0, device_id = 0, cur_cert = 0;
        char *subject = NULL, *state = NULL;
        int k, changed = 0;

        k = begin(r);
        if (k < 0)
                return k;
        s = st(r, ST_CERT_BY_ISSUER_SERIAL);
        bind_text(s, 1, issuer);
        bind_text(s, 2, serial);
        k = row(r, s);
        if (k > 0) {
                cert_id = sqlite3_column_int64(s, 0);
                device_id = sqlite3_column_int64(s, 1);
        }
        done(s);
        if (k <= 0)
                goto out;
        s = st(r, ST_DEV_FACTS);
        sqlite3_bind_int64(s, 1, device_id);
        k = row(r, s);
        if (k > 0) {
                subject = col_strdup(s, 0);
                state = col_strdup(s, 1);
                cur_cert = sqlite3_column_int64(s, 7);
        }
        done(s);
        if (k < 0)
                goto out;
        s = st(r, ST_CERT_REVOKE);
        sqlite3_bind_int64(s, 1, cert_id);
        sqlite3_bind_int64(s, 2, (int64_t) when);
        if (reason >= 0)
                sqlite3_bind_int(s, 3, reason);
        k = run(r, s);
        /* the device is revoked when its current certificate is */
        if (k >= 0 && cur_cert == cert_id && state && strcmp(state, "revoked") != 0) {
                s = st(r, ST_DEV_REVOKE);
                sqlite3_bind_int64(s, 1, device_id);
                sqlite3_bind_int64(s, 2, (int64_t) when);
                if (reason >= 0)
                        sqlite3_bind_int(s, 3, reason);
                k = run(r, s);
                if (k >= 0)
                        k = queue_event(r, REG_EV_REVOKED, device_id, subject, serial, NULL, 0, 0, reason,
                                        NULL, NULL, NULL);
                changed = 1;
        }
out:
        free(subject);
        free(state);
        k = end(r, k < 0 ? k : 0);
        return k < 0 ? k : changed;
}

/* ---- admitted identities (issue 5) ---- */

static const char *const id_kind_names[_REG_ID_MAX] = {
        [REG_ID_PSK_IDENTITY] = "psk-identity",
        [REG_ID_CLIENT_SUBJECT] = "client-subject",
        [REG_ID_SENDER] = "sender",
        [REG_ID_SENDER_KID] = "sender-kid",
};

const char *registry_id_kind_name(enum registry_id_kind k) {
        return k >= 0 && k < _REG_ID_MAX ? id_kind_names[k] : "?";
}

int registry_id_kind_from_name(const char *s) {
        for (int k = 0; k < _REG_ID_MAX; k++)
                if (strcmp(s, id_kind_names[k]) == 0)
                        return k;
        return -EINVAL;
}

static void bind_identity(sqlite3_stmt *s, enum registry_id_kind kind, const char *value, const char *label) {
        bind_text(s, 1, registry_id_kind_name(kind));
        bind_text(s, 2, value);
        bind_text(s, 3, label ? label : "");
}

/* one row of ADMITTED_SELECT; an empty label is left out */
static struct json_object *admitted_json(sqlite3_stmt *s) {
        struct json_object *o = json_object_new_object();
        const unsigned char *label = sqlite3_column_text(s, 3);

        if (!o)
                return NULL;
        json_object_object_add(o, "id", json_object_new_int64(sqlite3_column_int64(s, 0)));
        add_text(o, "kind", s, 1);
        add_text(o, "value", s, 2);
        if (label && *label)
                add_text(o, "label", s, 3);
        add_time(o, "added_at", s, 4);
        return o;
}

static int admitted_get(struct registry *r, enum registry_id_kind kind, const char *value, const char *label,
                        struct json_object **entry) {
        sqlite3_stmt *s = st(r, ST_ADM_GET);
        int k;

        bind_identity(s, kind, value, label);
        k = row(r, s);
        if (k > 0) {
                *entry = admitted_json(s);
                done(s);
                k = *entry ? 1 : -ENOMEM;
        }
        return k;
}

int registry_admit(struct registry *r, enum registry_id_kind kind, const char *value, const char *label,
                   uint64_t now, struct json_object **entry) {
        sqlite3_stmt *s;
        int k, added;

        k = begin(r);
        if (k < 0)
                return k;
        s = st(r, ST_ADM_INSERT);
        bind_identity(s, kind, value, label);
        sqlite3_bind_int64(s, 4, (int64_t) now);
        k = run(r, s);
        added = sqlite3_changes(r->db) > 0;
        if (k >= 0 && entry)
                k = admitted_get(r, kind, value, label, entry);
        k = end(r, k < 0 ? k : 0);
        return k < 0 ? k : added;
}

int registry_unadmit(struct registry *r, enum registry_id_kind kind, const char *value, const char *label) {
        sqlite3_stmt *s;
        int k;

        k = begin(r);
        if (k < 0)
                return k;
        s = st(r, ST_ADM_DELETE);
        bind_identity(s, kind, value, label);
        k = run(r, s);
        if (k >= 0 && sqlite3_changes(r->db) == 0)
                k = -ENOENT;
        return end(r, k);
}

int registry_is_admitted(struct registry *r, enum registry_id_kind kind, const char *value, const char *label) {
        sqlite3_stmt *s = st(r, ST_ADM_MATCH);
        int k;

        bind_identity(s, kind, value, label);
        k = row(r, s);
        if (k > 0)
                done(s);
        return k;
}

int registry_admitted_list(struct registry *r, uint64_t offset, uint32_t limit, struct json_object **entries,
                           uint64_t *total) {
        sqlite3_stmt *s;
        int k;

        if (limit == 0 || limit > REGISTRY_LIST_MAX)
                limit = REGISTRY_LIST_MAX;
        if (offset > INT64_MAX)
                offset = INT64_MAX;
        s = st(r, ST_ADM_COUNT);
        k = row(r, s);
        if (k < 0)
                return k;
        if (total)
                *total = k > 0 ? (uint64_t) sqlite3_column_int64(s, 0) : 0;
        done(s);
        s = st(r, ST_ADM_LIST);
        sqlite3_bind_int64(s, 1, limit);
        sqlite3_bind_int64(s, 2, (int64_t) offset);
        return rows_json(r, s, admitted_json, entries);
}
