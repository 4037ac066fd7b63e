/* Unit tests: the registry (daemon/registry.c) on a temporary SQLite file,
 * fed with real exchanges made in-process by OpenSSL's CMP client and
 * server (cmp_fixture.h). */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include "registry.h"
#include "test.h"
#include "cmp_fixture.h"

#define T0 1760000000ULL                /* "now" of the first exchanges */
#define TF 1700000000ULL                /* long before anything is due */

static struct fx_pki pki;
static char dir[] = "/tmp/test_registry.XXXXXX";
static char path[256];

/* ---- recorded events ---- */

struct ev {
        enum registry_event_type type;
        int64_t device_id;
        char subject[256], serial[64], old_serial[64], not_after[32], renew_at[32], detail[512], tid[80];
        int reason;
};
static struct ev evs[32];
static int n_evs;

static void cpy(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ? src : "(null)");
}

static void on_event(const struct registry_event *e, void *userdata) {
        struct ev *v;

        CHECK(userdata == &n_evs);
        if (n_evs >= (int) (sizeof evs / sizeof evs[0]))
                return;
        v = &evs[n_evs++];
        v->type = e->type;
        v->device_id = e->device_id;
        v->reason = e->reason;
        cpy(v->subject, sizeof v->subject, e->subject);
        cpy(v->serial, sizeof v->serial, e->serial);
        cpy(v->old_serial, sizeof v->old_serial, e->old_serial);
        cpy(v->not_after, sizeof v->not_after, e->not_after);
        cpy(v->renew_at, sizeof v->renew_at, e->renew_at);
        cpy(v->detail, sizeof v->detail, e->detail);
        cpy(v->tid, sizeof v->tid, e->transaction_id);
}

/* ---- helpers ---- */

static int observe(struct registry *r, const struct fx_run *run, int i, uint64_t now) {
        struct registry_exchange x = {
                .req = run->pair[i].req, .req_len = (size_t) run->pair[i].req_len,
                .rsp = run->pair[i].rsp, .rsp_len = (size_t) run->pair[i].rsp_len,
                .peer = "192.0.2.7:5683", .psk_identity = "node-psk", .now = now,
        };
        return registry_observe(r, &x);
}

static int observe_all(struct registry *r, const struct fx_run *run, uint64_t now) {
        int k = 0;

        for (int i = 0; i < run->n && k >= 0; i++)
                k = observe(r, run, i, now);
        return k;
}

static struct registry *open_reg(void) {
        struct registry *r = NULL;

        CHECK_INT(registry_open(path, NULL, &r), 0);
        if (r)
                registry_set_event_handler(r, on_event, &n_evs);
        return r;
}

static const char *jstr(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static bool jnull(struct json_object *o, const char *key) {
        struct json_object *v = NULL;

        return o && json_object_object_get_ex(o, key, &v) && v == NULL;
}

static int64_t jint(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return -999;
        return json_object_get_int64(v);
}

static struct json_object *get(struct registry *r, const char *id) {
        struct json_object *o = NULL;

        CHECK_INT(registry_get(r, id, &o), 0);
        return o;
}

/* enrol cn with a fresh key and a certificate valid [nb, na) */
static X509 *enrol(struct registry *r, int type, const char *cn, int64_t nb, int64_t na, long serial,
                   bool implicit, uint64_t now, EVP_PKEY **keyp) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *cert = fx_cert(&pki, key, cn, nb, na, serial);
        struct fx_run run;

        CHECK_INT(fx_enrol(&run, type, key, cn, cert, NULL, FX_ACCEPT, implicit), 1);
        CHECK_INT(observe_all(r, &run, now), 0);
        fx_run_clear(&run);
        if (keyp)
                *keyp = key;
        else
                EVP_PKEY_free(key);
        return cert;
}

/* ---- tests ---- */

static X509 *node1_cert;

static void test_enrol(void) {
        struct registry *r = open_reg();
        EVP_PKEY *key = EVP_EC_gen("P-256");
        struct fx_run run;
        struct json_object *o;
        int64_t id;

        if (!r)
                return;
        node1_cert = fx_cert(&pki, key, "node1", 1750000000, 1780000000, 0x0ABCDEF0);
        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, "node1", node1_cert, NULL, FX_ACCEPT, false), 1);
        CHECK_INT(run.n, 2);

        /* ir/ip: pending, nothing held yet */
        n_evs = 0;
        CHECK_INT(observe(r, &run, 0, T0), 0);
        CHECK_INT(n_evs, 0);
        o = get(r, "CN=node1,O=cmpgw");
        CHECK_STR(jstr(o, "state"), "pending");
        CHECK_STR(jstr(o, "serial"), "0ABCDEF0");
        CHECK(jnull(o, "confirmed_at"));
        CHECK(jnull(o, "renew_at"));
        json_object_put(o);
        CHECK_INT(registry_next_due(r), (int64_t) T0 + 24 * 3600);     /* the pending transaction */

        /* certConf/pkiConf: enrolled */
        CHECK_INT(observe(r, &run, 1, T0 + 1), 0);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_ENROLLED);
        CHECK_STR(evs[0].subject, "CN=node1,O=cmpgw");
        CHECK_STR(evs[0].serial, "0ABCDEF0");
        CHECK_STR(evs[0].not_after, "2026-05-28T20:26:40Z");
        CHECK_STR(evs[0].renew_at, "2026-02-02T02:40:00Z");   /* nb + 2/3 validity */
        CHECK(evs[0].device_id > 0);

        o = get(r, "CN=node1,O=cmpgw");
        id = jint(o, "id");
        CHECK_INT(id, evs[0].device_id);
        CHECK_STR(jstr(o, "state"), "enrolled");
        CHECK_STR(jstr(o, "subject"), "CN=node1,O=cmpgw");
        CHECK_STR(jstr(o, "issuer"), "CN=Test CA,O=cmpgw");
        CHECK_STR(jstr(o, "serial"), "0ABCDEF0");
        CHECK_STR(jstr(o, "not_before"), "2025-06-15T15:06:40Z");
        CHECK_STR(jstr(o, "not_after"), "2026-05-28T20:26:40Z");
        CHECK_STR(jstr(o, "renew_at"), "2026-02-02T02:40:00Z");
        CHECK_STR(jstr(o, "confirmed_at"), "2025-10-09T08:53:21Z");   /* T0 + 1 */
        CHECK_STR(jstr(o, "last_seen"), "2025-10-09T08:53:21Z");
        CHECK(jnull(o, "revoked_at"));
        CHECK(jnull(o, "revocation_reason"));
        CHECK(jnull(o, "previous_serial"));
        CHECK(jnull(o, "client_subject"));
        CHECK_STR(jstr(o, "method"), "ir");
        CHECK_STR(jstr(o, "peer"), "192.0.2.7:5683");
        CHECK_STR(jstr(o, "psk_identity"), "node-psk");
        CHECK_STR(jstr(o, "sender"), "CN=node1,O=cmpgw");
        CHECK_STR(jstr(o, "sender_kid"), "31323334");
        CHECK_STR(jstr(o, "transaction_id"), evs[0].tid);
        CHECK_INT(strlen(evs[0].tid), 32);
        json_object_put(o);
        CHECK_INT(registry_next_due(r), 1770000000);   /* pending row gone */
        CHECK_INT(registry_count(r), 1);

        /* the same certConf again (a retransmission): nothing new */
        n_evs = 0;
        CHECK_INT(observe(r, &run, 1, T0 + 2), 0);
        CHECK_INT(n_evs, 0);
        fx_run_clear(&run);
        EVP_PKEY_free(key);
        registry_close(r);
}

static void test_implicit_p10cr_config(void) {
        struct registry *r = open_reg();
        struct registry_config rc = { .renew_share = 2.0 / 3.0, .renew_before_sec = 20000000 };
        struct json_object *o;
        X509 *c;

        if (!r)
                return;
        /* cr with implicitConfirm granted: held at once, one exchange */
        n_evs = 0;
        c = enrol(r, OSSL_CMP_CR, "node2", 1750000000, 1780000000, 0x20, true, T0, NULL);
        X509_free(c);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_ENROLLED);
        o = get(r, "CN=node2,O=cmpgw");
        CHECK_STR(jstr(o, "state"), "enrolled");
        CHECK_STR(jstr(o, "method"), "cr");
        json_object_put(o);

        /* renew_before earlier than the share wins: notAfter - 20e6 s */
        registry_set_config(r, &rc);
        n_evs = 0;
        c = enrol(r, OSSL_CMP_P10CR, "node3", 1750000000, 1780000000, 0x30, false, T0, NULL);
        X509_free(c);
        CHECK_INT(n_evs, 1);
        CHECK_STR(evs[0].renew_at, "2025-10-09T08:53:20Z");   /* 1760000000 */
        o = get(r, "CN=node3,O=cmpgw");
        CHECK_STR(jstr(o, "method"), "p10cr");
        CHECK_STR(jstr(o, "serial"), "30");
        json_object_put(o);
        CHECK_INT(registry_next_due(r), 1760000000);
        registry_close(r);
}

static void test_kur(void) {
        struct registry *r = open_reg();
        EVP_PKEY *k2 = EVP_EC_gen("P-256");
        X509 *c2 = fx_cert(&pki, k2, "node1", 1770000000, 1800000000, 0x42);
        struct fx_run run;
        struct json_object *o;

        if (!r)
                return;
        CHECK_INT(fx_enrol(&run, OSSL_CMP_KUR, k2, "node1", c2, node1_cert, FX_ACCEPT, false), 1);
        n_evs = 0;
        CHECK_INT(observe_all(r, &run, T0 + 100), 0);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_RENEWED);
        CHECK_STR(evs[0].serial, "42");
        CHECK_STR(evs[0].old_serial, "0ABCDEF0");
        CHECK_STR(evs[0].renew_at, "2026-09-21T14:13:20Z");   /* 1790000000 */
        o = get(r, "CN=node1,O=cmpgw");
        CHECK_STR(jstr(o, "serial"), "42");
        CHECK_STR(jstr(o, "previous_serial"), "0ABCDEF0");
        CHECK_STR(jstr(o, "method"), "kur");
        CHECK_STR(jstr(o, "state"), "enrolled");
        json_object_put(o);
        CHECK_INT(registry_count(r), 3);
        fx_run_clear(&run);

        /* re-enrolment (ir) of a subject that holds a certificate: RENEWED too */
        n_evs = 0;
        X509 *c3 = enrol(r, OSSL_CMP_IR, "node2", 1750000000, 1780000000, 0x21, false, T0 + 200, NULL);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_RENEWED);
        CHECK_STR(evs[0].old_serial, "20");
        X509_free(c3);

        /* rr + rp accepted: revoked, with the reason */
        CHECK_INT(fx_revoke(&run, c2, CRL_REASON_KEY_COMPROMISE, FX_ACCEPT), 1);
        n_evs = 0;
        CHECK_INT(observe_all(r, &run, T0 + 300), 0);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_REVOKED);
        CHECK_STR(evs[0].serial, "42");
        CHECK_STR(evs[0].subject, "CN=node1,O=cmpgw");
        CHECK_INT(evs[0].reason, CRL_REASON_KEY_COMPROMISE);
        o = get(r, "CN=node1,O=cmpgw");
        CHECK_STR(jstr(o, "state"), "revoked");
        CHECK_INT(jint(o, "revocation_reason"), CRL_REASON_KEY_COMPROMISE);
        CHECK_STR(jstr(o, "revoked_at"), "2025-10-09T08:58:20Z");
        json_object_put(o);
        fx_run_clear(&run);

        /* rr rejected: FAILED, state unchanged */
        CHECK_INT(fx_revoke(&run, c2, CRL_REASON_NONE, FX_REJECT), 0);
        n_evs = 0;
        CHECK_INT(observe_all(r, &run, T0 + 400), 0);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_FAILED);
        CHECK(strstr(evs[0].detail, "badCertId") != NULL);
        fx_run_clear(&run);
        X509_free(c2);
        EVP_PKEY_free(k2);
        registry_close(r);
}

static void test_failed_transactions(void) {
        struct registry *r = open_reg();
        EVP_PKEY *key = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
        X509 *wrong = fx_cert(&pki, other, "node5", 1750000000, 1780000000, 0x50);
        struct json_object *o = NULL;
        struct fx_run run;
        uint64_t before;

        if (!r)
                return;
        before = registry_count(r);

        /* ip with rejection */
        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, "node5", NULL, NULL, FX_REJECT, false), 0);
        n_evs = 0;
        CHECK_INT(observe_all(r, &run, T0), 0);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_FAILED);
        CHECK_STR(evs[0].subject, "CN=node5,O=cmpgw");
        CHECK_STR(evs[0].detail, "rejection; failInfo badCertTemplate; template not acceptable");
        CHECK_INT(evs[0].device_id, 0);
        fx_run_clear(&run);

        /* error message */
        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, "node5", NULL, NULL, FX_FAIL, false), 0);
        n_evs = 0;
        CHECK_INT(observe_all(r, &run, T0), 0);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_FAILED);
        CHECK(strstr(evs[0].detail, "CA offline") != NULL);
        fx_run_clear(&run);

        /* certConf rejecting the certificate: the new device goes again */
        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, "node5", wrong, NULL, FX_ACCEPT, false), 0);
        n_evs = 0;
        CHECK_INT(observe(r, &run, 0, T0), 0);
        CHECK_INT(registry_count(r), before + 1);       /* pending */
        CHECK_INT(observe(r, &run, 1, T0), 0);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_FAILED);
        CHECK(strstr(evs[0].detail, "rejected by the client") != NULL);
        CHECK_INT(registry_get(r, "CN=node5,O=cmpgw", &o), -ENOENT);
        CHECK_INT(registry_count(r), before);
        fx_run_clear(&run);

        /* no certConf at all: expires after a day, from registry_update_due */
        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, "node5", wrong, NULL, FX_ACCEPT, false), 0);
        CHECK_INT(observe(r, &run, 0, TF), 0);
        fx_run_clear(&run);
        CHECK_INT(registry_count(r), before + 1);
        CHECK_INT(registry_next_due(r), (int64_t) TF + 24 * 3600);
        n_evs = 0;
        CHECK_INT(registry_update_due(r, TF + 3600), 0);
        CHECK_INT(n_evs, 0);
        CHECK_INT(registry_update_due(r, TF + 24 * 3600), 0);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_FAILED);
        CHECK(strstr(evs[0].detail, "expired") != NULL);
        CHECK_INT(registry_count(r), before);

        /* not CMP: -EBADMSG, nothing recorded */
        {
                static const uint8_t junk[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };
                struct registry_exchange x = { .req = junk, .req_len = sizeof junk, .rsp = junk,
                                               .rsp_len = sizeof junk, .now = T0 };
                CHECK_INT(registry_observe(r, &x), -EBADMSG);
                CHECK_INT(registry_count(r), before);
        }
        X509_free(wrong);
        EVP_PKEY_free(key);
        EVP_PKEY_free(other);
        registry_close(r);
}

static void test_genm_ignored(void) {
        struct registry *r = open_reg();
        struct fx_run run;
        uint64_t before;

        if (!r)
                return;
        before = registry_count(r);
        CHECK_INT(fx_genm_run(&run), 1);
        n_evs = 0;
        CHECK_INT(observe_all(r, &run, T0), 0);
        CHECK_INT(n_evs, 0);
        CHECK_INT(registry_count(r), before);
        fx_run_clear(&run);
        registry_close(r);
}

/* node1 revoked; node2 enrolled (renew 1770000000, notAfter 1780000000);
 * node3 enrolled (renew 1760000000, notAfter 1780000000) */
static void test_due(void) {
        struct registry *r = open_reg();
        struct json_object *o;

        if (!r)
                return;
        CHECK_INT(registry_next_due(r), 1760000000);
        n_evs = 0;
        CHECK_INT(registry_update_due(r, 1759999999), 0);
        CHECK_INT(n_evs, 0);
        CHECK_INT(registry_update_due(r, 1760000000), 1);
        CHECK_INT(n_evs, 1);
        CHECK_INT(evs[0].type, REG_EV_RENEWAL_DUE);
        CHECK_STR(evs[0].subject, "CN=node3,O=cmpgw");
        CHECK_STR(evs[0].not_after, "2026-05-28T20:26:40Z");
        o = get(r, "CN=node3,O=cmpgw");
        CHECK_STR(jstr(o, "state"), "renewal-due");
        json_object_put(o);
        CHECK_INT(registry_next_due(r), 1770000000);    /* node2's renew_at */

        n_evs = 0;
        CHECK_INT(registry_update_due(r, 1770000000), 1);
        CHECK_INT(n_evs, 1);
        CHECK_STR(evs[0].subject, "CN=node2,O=cmpgw");
        CHECK_INT(registry_next_due(r), 1780000000);    /* both expire then */

        n_evs = 0;
        CHECK_INT(registry_update_due(r, 1780000000), 2);
        CHECK_INT(n_evs, 0);                            /* no expiry event in registry.h */
        o = get(r, "CN=node2,O=cmpgw");
        CHECK_STR(jstr(o, "state"), "expired");
        json_object_put(o);
        CHECK_INT(registry_next_due(r), -1);
        registry_close(r);
}

static void test_queries(void) {
        struct registry *r = open_reg();
        struct json_object *a = NULL, *o = NULL;
        uint64_t total = 0;
        char idbuf[32];
        int64_t id;

        if (!r)
                return;
        CHECK_INT(registry_count(r), 3);
        CHECK_INT(registry_list(r, NULL, 0, 0, &a, &total), 0);
        CHECK_INT(total, 3);
        CHECK_INT(json_object_array_length(a), 3);
        CHECK_STR(jstr(json_object_array_get_idx(a, 0), "subject"), "CN=node1,O=cmpgw");
        json_object_put(a);

        CHECK_INT(registry_list(r, NULL, 1, 1, &a, &total), 0);        /* paging */
        CHECK_INT(total, 3);
        CHECK_INT(json_object_array_length(a), 1);
        CHECK_STR(jstr(json_object_array_get_idx(a, 0), "subject"), "CN=node2,O=cmpgw");
        json_object_put(a);

        CHECK_INT(registry_list(r, NULL, 3, 10, &a, &total), 0);       /* past the end */
        CHECK_INT(json_object_array_length(a), 0);
        json_object_put(a);

        CHECK_INT(registry_list(r, "expired", 0, 10, &a, &total), 0);
        CHECK_INT(total, 2);
        CHECK_INT(json_object_array_length(a), 2);
        json_object_put(a);
        CHECK_INT(registry_list(r, "revoked", 0, 10, &a, &total), 0);
        CHECK_INT(total, 1);
        CHECK_STR(jstr(json_object_array_get_idx(a, 0), "subject"), "CN=node1,O=cmpgw");
        json_object_put(a);
        CHECK_INT(registry_list(r, "pending", 0, 10, &a, &total), 0);
        CHECK_INT(total, 0);
        json_object_put(a);
        a = NULL;
        CHECK_INT(registry_list(r, "bogus", 0, 10, &a, &total), -EINVAL);
        CHECK(a == NULL);

        /* by id and by subject */
        o = get(r, "CN=node2,O=cmpgw");
        id = jint(o, "id");
        json_object_put(o);
        snprintf(idbuf, sizeof idbuf, "%lld", (long long) id);
        o = get(r, idbuf);
        CHECK_STR(jstr(o, "subject"), "CN=node2,O=cmpgw");
        json_object_put(o);
        o = NULL;
        CHECK_INT(registry_get(r, "999999", &o), -ENOENT);
        CHECK_INT(registry_get(r, "CN=nobody", &o), -ENOENT);
        CHECK(o == NULL);

        /* forget */
        CHECK_INT(registry_forget(r, idbuf), 0);
        CHECK_INT(registry_get(r, idbuf, &o), -ENOENT);
        CHECK_INT(registry_forget(r, idbuf), -ENOENT);
        CHECK_INT(registry_forget(r, "CN=node3,O=cmpgw"), 0);
        CHECK_INT(registry_count(r), 1);
        registry_close(r);

        /* persistence: the certificates went with the devices */
        {
                sqlite3 *db;
                sqlite3_stmt *s;

                CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
                CHECK_INT(sqlite3_prepare_v2(db, "SELECT count(*) FROM certificates c WHERE NOT EXISTS"
                                             " (SELECT 1 FROM devices d WHERE d.id = c.device_id)",
                                             -1, &s, NULL), SQLITE_OK);
                CHECK_INT(sqlite3_step(s), SQLITE_ROW);
                CHECK_INT(sqlite3_column_int(s, 0), 0);
                sqlite3_finalize(s);
                sqlite3_close(db);
        }
}

static int user_version(const char *p) {
        sqlite3 *db;
        sqlite3_stmt *s;
        int v = -1;

        if (sqlite3_open(p, &db) != SQLITE_OK)
                return -1;
        if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW)
                v = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
        sqlite3_close(db);
        return v;
}

static void test_migration(void) {
        char p[300], q[300];
        struct registry *r = NULL;
        sqlite3 *db;
        FILE *f;

        /* an empty v0 file */
        snprintf(p, sizeof p, "%s/v0.db", dir);
        f = fopen(p, "w");
        CHECK(f != NULL);
        if (f)
                fclose(f);
        CHECK_INT(user_version(p), 0);
        CHECK_INT(registry_open(p, NULL, &r), 0);
        CHECK_INT(registry_count(r), 0);
        CHECK_INT(registry_next_due(r), -1);
        r = registry_close(r);
        CHECK_INT(user_version(p), 2);
        CHECK_INT(registry_open(p, NULL, &r), 0);     /* again: nothing to do */
        r = registry_close(r);

        /* a v1 database with a device (as cmpgwd before issue 5 left it)
         * is taken to v2: the device stays, identities can be admitted */
        snprintf(q, sizeof q, "%s/v1.db", dir);
        CHECK_INT(registry_open(q, NULL, &r), 0);
        if (r) {
                X509_free(enrol(r, OSSL_CMP_IR, "node-v1", 1750000000, 1780000000, 0x11, true, T0, NULL));
                r = registry_close(r);
        }
        CHECK_INT(sqlite3_open(q, &db), SQLITE_OK);
        CHECK_INT(sqlite3_exec(db, "DROP TABLE admitted; PRAGMA user_version = 1", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        CHECK_INT(user_version(q), 1);
        CHECK_INT(registry_open(q, NULL, &r), 0);
        CHECK_INT(user_version(q), 2);
        if (r) {
                struct json_object *o = get(r, "CN=node-v1,O=cmpgw");
                CHECK_STR(jstr(o, "state"), "enrolled");
                json_object_put(o);
                CHECK_INT(registry_admit(r, REG_ID_SENDER, "CN=node-v1,O=cmpgw", NULL, T0, NULL), 1);
                CHECK_INT(registry_is_admitted(r, REG_ID_SENDER, "CN=node-v1,O=cmpgw", ""), 1);
                r = registry_close(r);
        }
        unlink(q);

        /* a schema from the future is refused */
        snprintf(q, sizeof q, "%s/v9.db", dir);
        CHECK_INT(sqlite3_open(q, &db), SQLITE_OK);
        CHECK_INT(sqlite3_exec(db, "PRAGMA user_version = 9", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        CHECK_INT(registry_open(q, NULL, &r), -EPROTONOSUPPORT);
        CHECK(r == NULL);
        unlink(p);
        unlink(q);
}

/* Admitted identities: add (idempotent), match with and without a label,
 * list with paging, remove; they survive a reopen */
static void test_admitted(void) {
        struct registry *r = open_reg();
        struct json_object *e = NULL, *a = NULL;
        uint64_t total = 0;

        if (!r)
                return;
        CHECK_STR(registry_id_kind_name(REG_ID_SENDER_KID), "sender-kid");
        CHECK_INT(registry_id_kind_from_name("client-subject"), REG_ID_CLIENT_SUBJECT);
        CHECK_INT(registry_id_kind_from_name("subject"), -EINVAL);

        CHECK_INT(registry_admit(r, REG_ID_PSK_IDENTITY, "node-psk", NULL, T0, &e), 1);
        CHECK_STR(jstr(e, "kind"), "psk-identity");
        CHECK_STR(jstr(e, "value"), "node-psk");
        CHECK(!json_object_object_get_ex(e, "label", NULL));
        CHECK_STR(jstr(e, "added_at"), "2025-10-09T08:53:20Z");
        json_object_put(e);
        e = NULL;
        CHECK_INT(registry_admit(r, REG_ID_PSK_IDENTITY, "node-psk", "", T0 + 5, &e), 0);     /* already */
        CHECK_STR(jstr(e, "added_at"), "2025-10-09T08:53:20Z");                       /* the first one */
        json_object_put(e);
        CHECK_INT(registry_admit(r, REG_ID_SENDER_KID, "31323334", "factory", T0, &e), 1);
        CHECK_STR(jstr(e, "label"), "factory");
        json_object_put(e);

        CHECK_INT(registry_is_admitted(r, REG_ID_PSK_IDENTITY, "node-psk", ""), 1);
        CHECK_INT(registry_is_admitted(r, REG_ID_PSK_IDENTITY, "node-psk", "any"), 1);
        CHECK_INT(registry_is_admitted(r, REG_ID_PSK_IDENTITY, "node-PSK", ""), 0);
        CHECK_INT(registry_is_admitted(r, REG_ID_CLIENT_SUBJECT, "node-psk", ""), 0);  /* another kind */
        CHECK_INT(registry_is_admitted(r, REG_ID_SENDER_KID, "31323334", "factory"), 1);
        CHECK_INT(registry_is_admitted(r, REG_ID_SENDER_KID, "31323334", "lab"), 0);
        CHECK_INT(registry_is_admitted(r, REG_ID_SENDER_KID, "31323334", ""), 0);

        CHECK_INT(registry_admitted_list(r, 0, 0, &a, &total), 0);
        CHECK_INT(total, 2);
        CHECK_INT(json_object_array_length(a), 2);
        CHECK_STR(jstr(json_object_array_get_idx(a, 1), "kind"), "sender-kid");
        json_object_put(a);
        CHECK_INT(registry_admitted_list(r, 1, 1, &a, &total), 0);
        CHECK_INT(json_object_array_length(a), 1);
        CHECK_STR(jstr(json_object_array_get_idx(a, 0), "value"), "31323334");
        json_object_put(a);
        registry_close(r);

        r = open_reg();
        if (!r)
                return;
        CHECK_INT(registry_is_admitted(r, REG_ID_PSK_IDENTITY, "node-psk", ""), 1);
        CHECK_INT(registry_unadmit(r, REG_ID_SENDER_KID, "31323334", NULL), -ENOENT);  /* the label counts */
        CHECK_INT(registry_unadmit(r, REG_ID_SENDER_KID, "31323334", "factory"), 0);
        CHECK_INT(registry_unadmit(r, REG_ID_SENDER_KID, "31323334", "factory"), -ENOENT);
        CHECK_INT(registry_unadmit(r, REG_ID_PSK_IDENTITY, "node-psk", ""), 0);
        CHECK_INT(registry_is_admitted(r, REG_ID_PSK_IDENTITY, "node-psk", ""), 0);
        CHECK_INT(registry_admitted_list(r, 0, 0, &a, &total), 0);
        CHECK_INT(total, 0);
        json_object_put(a);
        registry_close(r);
}

static int64_t count_devices(const char *p) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t n = -1;

        if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, "SELECT count(*) FROM devices", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return n;
}

/* enrol CN (implicit confirmation) without checking the outcome */
static int enrol_quiet(struct registry *r, const char *cn, long serial) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *cert = fx_cert(&pki, key, cn, 1750000000, 1780000000, serial);
        struct fx_run run;
        int k;

        CHECK_INT(fx_enrol(&run, OSSL_CMP_IR, key, cn, cert, NULL, FX_ACCEPT, true), 1);
        k = observe_all(r, &run, T0);
        fx_run_clear(&run);
        X509_free(cert);
        EVP_PKEY_free(key);
        return k;
}

/* Group commit: nothing is visible or signalled before registry_batch_end();
 * an exchange that fails is rolled back alone (with its events); any other
 * change to the registry commits the batch first. */
static void test_batch(void) {
        char p[300];
        struct registry *r = NULL;
        sqlite3 *db = NULL;
        struct json_object *o;
        int before;

        snprintf(p, sizeof p, "%s/batch.db", dir);
        CHECK_INT(registry_open(p, NULL, &r), 0);
        if (!r)
                return;
        registry_set_event_handler(r, on_event, &n_evs);
        /* a device whose insertion the database refuses */
        CHECK_INT(sqlite3_open(p, &db), SQLITE_OK);
        CHECK_INT(sqlite3_exec(db, "CREATE TRIGGER refuse_bad BEFORE INSERT ON devices WHEN NEW.subject LIKE '%=bad,%'"
                               " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        before = n_evs;
        CHECK(!registry_in_batch(r));
        CHECK_INT(registry_batch_begin(r), 0);
        CHECK(registry_in_batch(r));
        CHECK_INT(enrol_quiet(r, "good1", 0x101), 0);
        CHECK(enrol_quiet(r, "bad", 0x102) < 0);
        CHECK_INT(enrol_quiet(r, "good2", 0x103), 0);
        CHECK_INT(n_evs, before);                       /* no event before the COMMIT */
        CHECK_INT(count_devices(p), 0);                 /* nothing visible to others */
        CHECK_INT(registry_batch_end(r), 0);
        CHECK(!registry_in_batch(r));
        CHECK_INT(count_devices(p), 2);
        CHECK(n_evs > before);
        for (int i = before; i < n_evs; i++)
                CHECK(strstr(evs[i].subject, "bad") == NULL);
        o = get(r, "CN=good1,O=cmpgw");
        CHECK_STR(jstr(o, "state"), "enrolled");
        json_object_put(o);
        o = get(r, "CN=good2,O=cmpgw");
        CHECK_STR(jstr(o, "state"), "enrolled");
        json_object_put(o);
        CHECK_INT(registry_get(r, "CN=bad,O=cmpgw", &o), -ENOENT);

        /* another change ends the batch: what it holds is committed first */
        CHECK_INT(registry_batch_begin(r), 0);
        CHECK_INT(enrol_quiet(r, "good3", 0x104), 0);
        CHECK_INT(registry_admit(r, REG_ID_PSK_IDENTITY, "batch-psk", NULL, T0, NULL), 1);
        CHECK(!registry_in_batch(r));
        CHECK_INT(count_devices(p), 3);
        CHECK_INT(registry_batch_end(r), 0);            /* none open: nothing to do */
        registry_close(r);
}

/* Committed is durable across SIGKILL (WAL, synchronous=NORMAL) */
static void test_sigkill(void) {
        char p[300];
        pid_t pid;
        int status = 0;
        struct registry *r = NULL;
        struct json_object *o;

        snprintf(p, sizeof p, "%s/kill.db", dir);
        pid = fork();
        if (pid == 0) {
                CHECK_INT(registry_open(p, NULL, &r), 0);
                X509 *c = enrol(r, OSSL_CMP_IR, "node9", 1750000000, 1780000000, 0x90, true, T0, NULL);
                (void) c;
                kill(getpid(), SIGKILL);
                _exit(1);
        }
        CHECK(pid > 0);
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        CHECK_INT(registry_open(p, NULL, &r), 0);
        if (!r)
                return;
        o = get(r, "CN=node9,O=cmpgw");
        CHECK_STR(jstr(o, "state"), "enrolled");
        json_object_put(o);
        registry_close(r);
}

static void cleanup(void) {
        static const char *const names[] = { "reg.db", "reg.db-wal", "reg.db-shm", "v0.db-wal",
                "v0.db-shm", "v1.db-wal", "v1.db-shm", "kill.db", "kill.db-wal", "kill.db-shm",
                "batch.db", "batch.db-wal", "batch.db-shm" };
        char p[300];

        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
                snprintf(p, sizeof p, "%s/%s", dir, names[i]);
                unlink(p);
        }
        rmdir(dir);
}

int main(void) {
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        snprintf(path, sizeof path, "%s/reg.db", dir);
        fx_pki_init(&pki);
        test_enrol();
        test_implicit_p10cr_config();
        test_kur();
        test_failed_transactions();
        test_genm_ignored();
        test_due();
        test_queries();
        test_admitted();
        test_migration();
        test_sigkill();
        test_batch();
        X509_free(node1_cert);
        fx_pki_done(&pki);
        cleanup();
        TEST_MAIN_END();
}
