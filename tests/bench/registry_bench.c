/* registry_bench -- the registry with many devices (not a test).
 *
 *   registry_bench [N [PATH]]      N devices (default 1000000), PATH
 *                                  (default /tmp/registry_bench.db, replaced)
 *
 * Fills the schema made by registry_open() in one bulk transaction (each
 * device with one certificate carrying a real ~400-byte EC certificate DER),
 * then measures registry_open, registry_get by id and by subject,
 * registry_list pages, registry_next_due/registry_update_due and VmRSS.
 * One figure per line. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "registry.h"

#define LOOKUPS 10000
/* "now" for the synthetic data: ten minutes ahead of the real clock, so a
 * cmpgwd started on the file finds nothing due yet, and update_due(NOW)
 * below moves the ~1000 devices due at NOW. */
static int64_t bench_now;
#define NOW bench_now

static double now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

static long vmrss_kb(void) {
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        long kb = -1;

        if (!f)
                return -1;
        while (fgets(line, sizeof line, f))
                if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
                        break;
        fclose(f);
        return kb;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static void report(const char *what, double *us, int n) {
        qsort(us, (size_t) n, sizeof *us, cmp_double);
        printf("%-40s p50 %8.1f us  p99 %8.1f us  max %8.1f us  (n=%d)\n", what,
               us[n / 2], us[(n * 99) / 100], us[n - 1], n);
}

static unsigned char *sample_der(int *len) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = X509_new();
        X509_NAME *n = X509_NAME_new();
        unsigned char *der = NULL;

        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *) "device-0000000", -1, -1, 0);
        X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *) "bench", -1, -1, 0);
        X509_set_version(x, X509_VERSION_3);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 0x12345678);
        X509_set_subject_name(x, n);
        X509_set_issuer_name(x, n);
        ASN1_TIME_set(X509_getm_notBefore(x), NOW);
        ASN1_TIME_set(X509_getm_notAfter(x), NOW + 365 * 86400);
        X509_set_pubkey(x, key);
        X509_sign(x, key, EVP_sha256());
        *len = i2d_X509(x, &der);
        X509_NAME_free(n);
        X509_free(x);
        EVP_PKEY_free(key);
        return der;
}

static int must(sqlite3 *db, int rc, const char *what) {
        if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
                fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
                exit(1);
        }
        return rc;
}

/* Devices 1..n: 90% enrolled, 5% renewal-due, 3% expired, 2% revoked.
 * renew_at spread over a year after NOW; the first 1000 enrolled devices
 * are due at NOW exactly (for registry_update_due). */
static void fill(const char *path, long n) {
        static const char dev_sql[] =
                "INSERT INTO devices (id, subject, state, cert_id, renew_at, due_at, last_seen, peer, sender,"
                " sender_kid, psk_identity, method, transaction_id, confirmed_at, revoked_at, revocation_reason,"
                " created_at) VALUES (?1, ?2, ?3, ?1, ?4, ?5, ?6, ?7, ?2, '31323334', ?8, 'ir', ?9, ?6, ?10, ?11, ?6)";
        static const char cert_sql[] =
                "INSERT INTO certificates (id, device_id, subject, issuer, serial, not_before, not_after, der,"
                " method, transaction_id, issued_at, confirmed_at) VALUES (?1, ?1, ?2, 'CN=Bench CA,O=bench',"
                " ?3, ?4, ?5, ?6, 'ir', ?7, ?4, ?4)";
        sqlite3 *db;
        sqlite3_stmt *d, *c;
        unsigned char *der;
        int der_len;
        double t0 = now_ms();

        der = sample_der(&der_len);
        must(NULL, sqlite3_open(path, &db), "open");
        must(db, sqlite3_exec(db, "PRAGMA synchronous = OFF; BEGIN", NULL, NULL, NULL), "begin");
        must(db, sqlite3_prepare_v2(db, dev_sql, -1, &d, NULL), "prepare devices");
        must(db, sqlite3_prepare_v2(db, cert_sql, -1, &c, NULL), "prepare certificates");
        for (long i = 1; i <= n; i++) {
                char subject[64], serial[32], tid[40], peer[32], psk[32];
                int64_t nb = NOW - 86400 * (i % 300), na = nb + 365 * 86400;
                int64_t renew = NOW + (i * 7919) % (365 * 86400);
                long m = i % 100;
                const char *state = m < 90 ? "enrolled" : m < 95 ? "renewal-due" : m < 98 ? "expired" : "revoked";

                if (m < 90 && i <= 1200)
                        renew = NOW;
                snprintf(subject, sizeof subject, "CN=device-%07ld,O=bench", i);
                snprintf(serial, sizeof serial, "%016lX", (unsigned long) i * 2654435761UL);
                snprintf(tid, sizeof tid, "%032lX", (unsigned long) i);
                snprintf(peer, sizeof peer, "[2001:db8::%lx]:5683", i & 0xffff);
                snprintf(psk, sizeof psk, "psk-%ld", i);

                sqlite3_bind_int64(c, 1, i);
                sqlite3_bind_text(c, 2, subject, -1, SQLITE_STATIC);
                sqlite3_bind_text(c, 3, serial, -1, SQLITE_STATIC);
                sqlite3_bind_int64(c, 4, nb);
                sqlite3_bind_int64(c, 5, na);
                sqlite3_bind_blob(c, 6, der, der_len, SQLITE_STATIC);
                sqlite3_bind_text(c, 7, tid, -1, SQLITE_STATIC);
                must(db, sqlite3_step(c), "insert certificate");
                sqlite3_reset(c);

                sqlite3_bind_int64(d, 1, i);
                sqlite3_bind_text(d, 2, subject, -1, SQLITE_STATIC);
                sqlite3_bind_text(d, 3, state, -1, SQLITE_STATIC);
                sqlite3_bind_int64(d, 4, renew);
                if (m < 90)
                        sqlite3_bind_int64(d, 5, renew);
                else if (m < 95)
                        sqlite3_bind_int64(d, 5, na);
                else
                        sqlite3_bind_null(d, 5);
                sqlite3_bind_int64(d, 6, nb);
                sqlite3_bind_text(d, 7, peer, -1, SQLITE_STATIC);
                sqlite3_bind_text(d, 8, psk, -1, SQLITE_STATIC);
                sqlite3_bind_text(d, 9, tid, -1, SQLITE_STATIC);
                if (m >= 98) {
                        sqlite3_bind_int64(d, 10, NOW);
                        sqlite3_bind_int(d, 11, 1);
                } else {
                        sqlite3_bind_null(d, 10);
                        sqlite3_bind_null(d, 11);
                }
                must(db, sqlite3_step(d), "insert device");
                sqlite3_reset(d);
        }
        sqlite3_finalize(c);
        sqlite3_finalize(d);
        must(db, sqlite3_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE); ANALYZE", NULL, NULL, NULL), "commit");
        sqlite3_close(db);
        OPENSSL_free(der);
        printf("%-40s %.0f ms (%ld devices, certificate DER %d bytes)\n", "bulk insert (one transaction)",
               now_ms() - t0, n, der_len);
}

static void lookups(struct registry *r, long n, bool by_subject, double *us) {
        for (int i = 0; i < LOOKUPS; i++) {
                long id = 1 + (long) ((uint64_t) random() % (uint64_t) n);
                struct json_object *o = NULL;
                char key[64];
                double t;

                if (by_subject)
                        snprintf(key, sizeof key, "CN=device-%07ld,O=bench", id);
                else
                        snprintf(key, sizeof key, "%ld", id);
                t = now_ms();
                if (registry_get(r, key, &o) < 0) {
                        fprintf(stderr, "registry_get %s failed\n", key);
                        exit(1);
                }
                us[i] = (now_ms() - t) * 1e3;
                json_object_put(o);
        }
}

static void list_pages(struct registry *r, long n, const char *state, bool random_offset, double *us, int count) {
        for (int i = 0; i < count; i++) {
                uint64_t off = random_offset ? (uint64_t) random() % (uint64_t) n : 0, total;
                struct json_object *a = NULL;
                double t = now_ms();

                if (registry_list(r, state, off, 100, &a, &total) < 0) {
                        fprintf(stderr, "registry_list failed\n");
                        exit(1);
                }
                us[i] = (now_ms() - t) * 1e3;
                json_object_put(a);
        }
}

int main(int argc, char **argv) {
        long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;

        bench_now = (int64_t) time(NULL) + 600;
        const char *path = argc > 2 ? argv[2] : "/tmp/registry_bench.db";
        static double us[LOOKUPS];
        struct registry *r = NULL;
        char p[512];
        double t;
        int64_t due;
        uint64_t count;
        int moved;

        if (n <= 0)
                return 2;
        unlink(path);
        snprintf(p, sizeof p, "%s-wal", path);
        unlink(p);
        snprintf(p, sizeof p, "%s-shm", path);
        unlink(p);
        if (registry_open(path, NULL, &r) < 0)
                return 1;
        registry_close(r);
        fill(path, n);

        printf("%-40s %ld kB\n", "VmRSS before open", vmrss_kb());
        t = now_ms();
        if (registry_open(path, NULL, &r) < 0)
                return 1;
        printf("%-40s %.2f ms\n", "registry_open (existing file)", now_ms() - t);
        printf("%-40s %ld kB\n", "VmRSS after open", vmrss_kb());

        srandom(42);
        lookups(r, n, false, us);
        report("registry_get by id", us, LOOKUPS);
        lookups(r, n, true, us);
        report("registry_get by subject", us, LOOKUPS);
        list_pages(r, n, NULL, false, us, 1000);
        report("registry_list 100, offset 0", us, 1000);
        list_pages(r, n, "renewal-due", false, us, 1000);
        report("registry_list 100 renewal-due, offset 0", us, 1000);
        list_pages(r, n, NULL, true, us, 200);
        report("registry_list 100, random offset", us, 200);
        printf("%-40s %ld kB\n", "VmRSS after lookups", vmrss_kb());

        for (int i = 0; i < 1000; i++) {
                t = now_ms();
                due = registry_next_due(r);
                us[i] = (now_ms() - t) * 1e3;
        }
        report("registry_next_due", us, 1000);
        printf("%-40s %" PRId64 "\n", "  next due at", due);
        t = now_ms();
        moved = registry_update_due(r, NOW - 1);
        printf("%-40s %.2f ms (%d moved)\n", "registry_update_due, nothing due", now_ms() - t, moved);
        t = now_ms();
        moved = registry_update_due(r, NOW);
        printf("%-40s %.2f ms (%d moved)\n", "registry_update_due, ~1000 due", now_ms() - t, moved);
        t = now_ms();
        count = registry_count(r);
        printf("%-40s %" PRIu64 " in %.2f ms\n", "registry_count", count, now_ms() - t);
        printf("%-40s %ld kB\n", "VmRSS at end", vmrss_kb());
        registry_close(r);
        return 0;
}
