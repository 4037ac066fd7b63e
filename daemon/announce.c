/* announce.c -- the announcement store of cmpgwd; see announce.h */
#include "announce.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cmp_ann.h"
#include "log.h"

#define MAX_FILE (16u * 1024 * 1024)

struct cached_crl {
        struct cmp_ann_crl crl;
        int64_t received;
        char sha256[65];
};

struct announce {
        char *ann_dir, *crl_dir;
        X509_STORE *trusted;
        struct announce_blob *latest[4];        /* by kind - CMP_ANN_CKUANN */
        uint64_t seq;
        struct cached_crl *crls;
        size_t n_crls;
        char (*seen)[65];               /* SHA-256 hex of the certificates CANNs announced */
        size_t n_seen;
        announce_event_fn event_fn;
        void *event_userdata;
};

/* ---- helpers ---- */

const char *announce_time_string(int64_t t, char *buf) {
        struct tm tm;

        buf[0] = '\0';
        if (t > 0 && gmtime_r(&(time_t) { (time_t) t }, &tm))
                strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return buf;
}

static void sha256_hex(const uint8_t *p, size_t n, char out[65]) {
        unsigned char md[32];
        unsigned int len = 0;

        out[0] = '\0';
        if (!EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) || len != 32)
                return;
        for (unsigned i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

struct announce_blob *announce_blob_ref(struct announce_blob *b) {
        if (b)
                b->refs++;
        return b;
}

void announce_blob_unref(struct announce_blob *b) {
        if (b && --b->refs == 0)
                free(b);
}

static struct announce_blob *blob_new(const uint8_t *der, size_t len, int kind, int64_t received) {
        struct announce_blob *b = malloc(sizeof *b + len);

        if (!b)
                return NULL;
        *b = (struct announce_blob) { .refs = 1, .len = len, .kind = kind, .received = received };
        memcpy(b->data, der, len);
        sha256_hex(der, len, b->sha256);
        return b;
}

static int make_dir(const char *path) {
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* tmp + write + fsync + rename + fsync(dir) */
static int write_atomic(const char *dir, const char *name, const uint8_t *p, size_t n) {
        char tmp[4096], path[4096];
        size_t done = 0;
        int fd, dfd, k = 0;

        if ((size_t) snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name) >= sizeof tmp ||
            (size_t) snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
                return -ENAMETOOLONG;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        while (done < n) {
                ssize_t w = write(fd, p + done, n - done);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        k = -errno;
                        break;
                }
                done += (size_t) w;
        }
        if (k == 0 && fsync(fd) < 0)
                k = -errno;
        if (close(fd) < 0 && k == 0)
                k = -errno;
        if (k == 0 && rename(tmp, path) < 0)
                k = -errno;
        if (k < 0) {
                unlink(tmp);
                return k;
        }
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
                if (fsync(dfd) < 0)
                        k = -errno;
                close(dfd);
        }
        return k;
}

/* *mtime: nanoseconds, to keep the order of announcements made in one second */
static int read_file(const char *path, uint8_t **ret, size_t *len, int64_t *mtime) {
        struct stat st;
        uint8_t *buf;
        size_t done = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), k = 0;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t) st.st_size > MAX_FILE) {
                close(fd);
                return -EINVAL;
        }
        buf = malloc((size_t) st.st_size);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        while (done < (size_t) st.st_size) {
                ssize_t r = read(fd, buf + done, (size_t) st.st_size - done);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        k = r < 0 ? -errno : -EIO;
                        break;
                }
                done += (size_t) r;
        }
        close(fd);
        if (k < 0) {
                free(buf);
                return k;
        }
        *ret = buf;
        *len = done;
        if (mtime)
                *mtime = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        return 0;
}

static struct cached_crl *crl_find(const struct announce *a, const char *key) {
        for (size_t i = 0; i < a->n_crls; i++)
                if (strcmp(a->crls[i].crl.issuer_key, key) == 0)
                        return &a->crls[i];
        return NULL;
}

/* ---- loading ---- */

static void load_crls(struct announce *a) {
        DIR *d = opendir(a->crl_dir);
        struct dirent *e;

        if (!d)
                return;
        while ((e = readdir(d))) {
                char path[4096], key[64];
                struct cached_crl c = { .received = 0 };
                struct cached_crl *n;
                uint8_t *der;
                size_t len, l = strlen(e->d_name);

                if (e->d_name[0] == '.' || l < 5 || strcmp(e->d_name + l - 4, ".der") != 0 || l - 4 >= sizeof key)
                        continue;
                snprintf(key, sizeof key, "%.*s", (int) (l - 4), e->d_name);
                snprintf(path, sizeof path, "%s/%s", a->crl_dir, e->d_name);
                if (read_file(path, &der, &len, &c.received) < 0)
                        continue;
                c.received /= 1000000000;
                if (cmp_ann_crl_from_der(der, len, &c.crl) < 0 || strcmp(c.crl.issuer_key, key) != 0 ||
                    crl_find(a, key)) {
                        log_warning("announcements: ignoring %s: not a CRL of the issuer its name says", path);
                        cmp_ann_crl_clear(&c.crl);
                        free(der);
                        continue;
                }
                sha256_hex(der, len, c.sha256);
                free(der);
                n = realloc(a->crls, (a->n_crls + 1) * sizeof *n);
                if (!n) {
                        cmp_ann_crl_clear(&c.crl);
                        continue;
                }
                a->crls = n;
                a->crls[a->n_crls++] = c;
        }
        closedir(d);
}

/* The latest announcements, in the order they arrived (file times). They
 * are validated again: trust anchors may have changed since. */
static void load_announcements(struct announce *a) {
        struct announce_blob *found[4] = { NULL };
        bool used[4] = { false };

        for (int kind = CMP_ANN_CKUANN; kind <= CMP_ANN_CRLANN; kind++) {
                char path[4096], *why = NULL;
                const char *pwhy;
                struct cmp_ann *ann = NULL;
                uint8_t *der;
                size_t len;
                int64_t mtime;

                snprintf(path, sizeof path, "%s/%s.der", a->ann_dir, cmp_ann_kind_name(kind));
                if (read_file(path, &der, &len, &mtime) < 0)
                        continue;
                if (cmp_ann_parse(der, len, &ann, &pwhy) < 0 || ann->kind != kind ||
                    cmp_ann_validate(der, len, ann, a->trusted, &why) < 0) {
                        log_warning("announcements: not serving %s any more: %s", path,
                                    why ? why : pwhy ? pwhy : "not valid");
                } else
                        found[kind - CMP_ANN_CKUANN] = blob_new(der, len, kind, mtime);
                free(why);
                cmp_ann_free(ann);
                free(der);
        }
        for (int n = 0; n < 4; n++) {           /* oldest first (received: ns until here) */
                int best = -1;
                for (int i = 0; i < 4; i++)
                        if (found[i] && !used[i] && (best < 0 || found[i]->received < found[best]->received))
                                best = i;
                if (best < 0)
                        break;
                used[best] = true;
                found[best]->seq = ++a->seq;
                found[best]->received /= 1000000000;
                a->latest[best] = found[best];
        }
}

#define SEEN_FILE "cann.seen"

/* The certificates CANNs announced, as they were when last written */
static void load_seen(struct announce *a) {
        char path[4096], line[80];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", a->ann_dir, SEEN_FILE);
        f = fopen(path, "re");
        if (!f)
                return;
        while (fgets(line, sizeof line, f)) {
                char (*n)[65];

                line[strcspn(line, "\n")] = '\0';
                if (strlen(line) != 64 || strspn(line, "0123456789abcdef") != 64)
                        continue;
                n = realloc(a->seen, (a->n_seen + 1) * sizeof *n);
                if (!n)
                        break;
                a->seen = n;
                memcpy(a->seen[a->n_seen++], line, 65);
        }
        fclose(f);
}

static void cert_sha256(X509 *cert, char out[65]) {
        unsigned char *der = NULL;
        int n = i2d_X509(cert, &der);

        out[0] = '\0';
        if (n > 0)
                sha256_hex(der, (size_t) n, out);
        OPENSSL_free(der);
}

bool announce_cert_announced(const struct announce *a, X509 *cert) {
        char h[65];

        cert_sha256(cert, h);
        for (size_t i = 0; h[0] && i < a->n_seen; i++)
                if (strcmp(a->seen[i], h) == 0)
                        return true;
        return false;
}

/* Remember a certificate a CANN announced; the file is rewritten whole */
static void remember_seen(struct announce *a, X509 *cert) {
        char (*n)[65], *text;
        size_t len = 0;
        int k;

        if (announce_cert_announced(a, cert) || !(n = realloc(a->seen, (a->n_seen + 1) * sizeof *n)))
                return;
        a->seen = n;
        cert_sha256(cert, a->seen[a->n_seen]);
        if (!a->seen[a->n_seen][0])
                return;
        a->n_seen++;
        text = malloc(a->n_seen * 65 + 1);     /* + the last snprintf's NUL */
        if (!text)
                return;
        for (size_t i = 0; i < a->n_seen; i++, len += 65)
                snprintf(text + len, 66, "%s\n", a->seen[i]);
        k = write_atomic(a->ann_dir, SEEN_FILE, (const uint8_t *) text, len);
        if (k < 0)
                log_warning("announcements: cannot write %s/%s: %s", a->ann_dir, SEEN_FILE, strerror(-k));
        free(text);
}

int announce_new(const char *state_dir, const char *trusted, struct announce **ret, char **why) {
        struct announce *a = calloc(1, sizeof *a);
        int k;

        *why = NULL;
        if (!a)
                return -ENOMEM;
        if (asprintf(&a->ann_dir, "%s/announcements", state_dir) < 0 ||
            asprintf(&a->crl_dir, "%s/crls", state_dir) < 0) {
                a->ann_dir = a->crl_dir = NULL;
                announce_free(a);
                return -ENOMEM;
        }
        if ((k = make_dir(a->ann_dir)) < 0 || (k = make_dir(a->crl_dir)) < 0) {
                log_reason(why, k, "cannot create %s or %s: %s", a->ann_dir, a->crl_dir, strerror(-k));
                announce_free(a);
                return k;
        }
        if (trusted && (k = cmp_ann_load_trust(trusted, &a->trusted, why)) < 0) {
                announce_free(a);
                return k;
        }
        load_crls(a);
        load_announcements(a);
        load_seen(a);
        *ret = a;
        return 0;
}

struct announce *announce_free(struct announce *a) {
        if (!a)
                return NULL;
        for (size_t i = 0; i < a->n_crls; i++)
                cmp_ann_crl_clear(&a->crls[i].crl);
        free(a->crls);
        free(a->seen);
        for (int i = 0; i < 4; i++)
                announce_blob_unref(a->latest[i]);
        X509_STORE_free(a->trusted);
        free(a->ann_dir);
        free(a->crl_dir);
        free(a);
        return NULL;
}

void announce_set_event_handler(struct announce *a, announce_event_fn fn, void *userdata) {
        a->event_fn = fn;
        a->event_userdata = userdata;
}

void announce_set_trusted(struct announce *a, X509_STORE *trusted) {
        X509_STORE_free(a->trusted);
        a->trusted = trusted;
}

struct announce_blob *announce_latest(const struct announce *a) {
        struct announce_blob *best = NULL;

        for (int i = 0; a && i < 4; i++)
                if (a->latest[i] && (!best || a->latest[i]->seq > best->seq))
                        best = a->latest[i];
        return best;
}

struct announce_blob *announce_latest_of(const struct announce *a, int kind) {
        return a && cmp_ann_kind_valid(kind) ? a->latest[kind - CMP_ANN_CKUANN] : NULL;
}

size_t announce_n_crls(const struct announce *a) {
        return a ? a->n_crls : 0;
}

void announce_crl_info(const struct announce *a, size_t i, struct announce_crl_info *info) {
        const struct cached_crl *c = &a->crls[i];

        *info = (struct announce_crl_info) {
                .issuer = c->crl.issuer, .crl_number = c->crl.crl_number ? c->crl.crl_number : "",
                .this_update = c->crl.this_update, .next_update = c->crl.next_update,
                .revoked_count = c->crl.n_revoked, .received = c->received, .sha256 = c->sha256,
                .size = c->crl.der_len, .crl = c->crl.crl,
        };
}

/* ---- publishing ---- */

static void emit(struct announce *a, const struct announce_event *ev) {
        if (a->event_fn)
                a->event_fn(ev, a->event_userdata);
}

static void emit_revoked(struct announce *a, const char *issuer, const char *serial, int reason, int64_t when) {
        char date[32];

        emit(a, &(struct announce_event) {
                .type = ANN_EV_CERT_REVOKED, .issuer = issuer, .serial = serial, .reason = reason,
                .revocation_date = announce_time_string(when, date), .revoked_at = when,
        });
}

/* A new CRL replaces the cached one: events for it and its new serials. */
static void crl_events(struct announce *a, const struct cmp_ann_crl *n, const struct cmp_ann_crl *old) {
        char this_update[32], next_update[32];

        emit(a, &(struct announce_event) {
                .type = ANN_EV_CRL_UPDATED, .issuer = n->issuer,
                .crl_number = n->crl_number ? n->crl_number : "",
                .this_update = announce_time_string(n->this_update, this_update),
                .next_update = announce_time_string(n->next_update, next_update),
                .der = n->der, .der_len = n->der_len,
        });
        for (size_t i = 0; i < n->n_revoked; i++)
                if (!old || !cmp_ann_crl_lists(old, n->revoked[i].serial))
                        emit_revoked(a, n->issuer, n->revoked[i].serial, n->revoked[i].reason, n->revoked[i].date);
}

/* CRLANN: every CRL must be newer than the cached one of its issuer, and
 * no two CRLs of one message may have the same issuer. */
static int crls_check(const struct announce *a, const struct cmp_ann *ann, char **why) {
        for (size_t i = 0; i < ann->n_crls; i++) {
                const struct cmp_ann_crl *c = &ann->crls[i];
                const struct cached_crl *old = crl_find(a, c->issuer_key);

                for (size_t j = 0; j < i; j++)
                        if (strcmp(ann->crls[j].issuer_key, c->issuer_key) == 0)
                                return log_reason(why, -EBADMSG, "CRLs %zu and %zu have the same issuer %s",
                                                  j + 1, i + 1, c->issuer);
                if (old && cmp_ann_crl_compare(c, &old->crl) <= 0) {
                        char t1[32], t2[32];
                        return log_reason(why, -ESTALE,
                                          "CRL %zu (issuer %s, CRL number %s, thisUpdate %s) is not newer than the "
                                          "cached one (CRL number %s, thisUpdate %s)", i + 1, c->issuer,
                                          c->crl_number ? c->crl_number : "none",
                                          announce_time_string(c->this_update, t1),
                                          old->crl.crl_number ? old->crl.crl_number : "none",
                                          announce_time_string(old->crl.this_update, t2));
                }
        }
        return 0;
}

/* Take the CRLs of ANN into the cache (moving them out of ANN); the events
 * compare with the CRL each one replaces. */
static int crls_take(struct announce *a, struct cmp_ann *ann, int64_t now, char **why) {
        char name[80];
        int k;

        /* all on disk first: an I/O error leaves the cache as it was in memory */
        for (size_t i = 0; i < ann->n_crls; i++) {
                snprintf(name, sizeof name, "%s.der", ann->crls[i].issuer_key);
                k = write_atomic(a->crl_dir, name, ann->crls[i].der, ann->crls[i].der_len);
                if (k < 0)
                        return log_reason(why, -EIO, "cannot write %s/%s: %s", a->crl_dir, name, strerror(-k));
        }
        for (size_t i = 0; i < ann->n_crls; i++) {
                struct cmp_ann_crl *n = &ann->crls[i];
                struct cached_crl *old = crl_find(a, n->issuer_key);

                if (!old) {
                        struct cached_crl *c = realloc(a->crls, (a->n_crls + 1) * sizeof *c);
                        if (!c)
                                return log_reason(why, -ENOMEM, "out of memory");
                        a->crls = c;
                        old = &a->crls[a->n_crls++];
                        memset(old, 0, sizeof *old);
                        crl_events(a, n, NULL);
                } else
                        crl_events(a, n, &old->crl);
                cmp_ann_crl_clear(&old->crl);
                old->crl = *n;
                memset(n, 0, sizeof *n);
                old->received = now;
                sha256_hex(old->crl.der, old->crl.der_len, old->sha256);
        }
        return 0;
}

bool announce_is_latest(const struct announce *a, const uint8_t *der, size_t len) {
        for (size_t i = 0; i < sizeof a->latest / sizeof a->latest[0]; i++)
                if (a->latest[i] && a->latest[i]->len == len && memcmp(a->latest[i]->data, der, len) == 0)
                        return true;
        return false;
}

int announce_publish(struct announce *a, const uint8_t *der, size_t len, int64_t now, char **why) {
        struct cmp_ann *ann = NULL;
        struct announce_blob *blob = NULL;
        const char *pwhy = NULL;
        char name[32];
        int k;

        *why = NULL;
        k = cmp_ann_parse(der, len, &ann, &pwhy);
        if (k < 0)
                return log_reason(why, k, "not a valid announcement: %s", pwhy ? pwhy : strerror(-k));
        k = cmp_ann_validate(der, len, ann, a->trusted, why);
        if (k < 0)
                goto out;
        if (ann->kind == CMP_ANN_CRLANN && (k = crls_check(a, ann, why)) < 0)
                goto out;
        blob = blob_new(der, len, ann->kind, now);
        if (!blob) {
                k = log_reason(why, -ENOMEM, "out of memory");
                goto out;
        }
        snprintf(name, sizeof name, "%s.der", cmp_ann_kind_name(ann->kind));
        k = write_atomic(a->ann_dir, name, der, len);
        if (k < 0) {
                k = log_reason(why, -EIO, "cannot write %s/%s: %s", a->ann_dir, name, strerror(-k));
                goto out;
        }
        if (ann->kind == CMP_ANN_CRLANN && (k = crls_take(a, ann, now, why)) < 0)
                goto out;

        blob->seq = ++a->seq;
        announce_blob_unref(a->latest[ann->kind - CMP_ANN_CKUANN]);
        a->latest[ann->kind - CMP_ANN_CKUANN] = blob;
        log_info("announcement published: %s from %s, %zu bytes, sha256 %s", cmp_ann_kind_name(ann->kind),
                 ann->sender, len, blob->sha256);

        switch (ann->kind) {
        case CMP_ANN_CKUANN: {
                unsigned char *cert = NULL;
                int n = i2d_X509(ann->new_with_new, &cert);
                if (n > 0)
                        emit(a, &(struct announce_event) { .type = ANN_EV_CA_KEY_UPDATED, .subject = ann->subject,
                                                           .der = cert, .der_len = (size_t) n });
                OPENSSL_free(cert);
                break;
        }
        case CMP_ANN_CANN: {
                unsigned char *cert = NULL;
                int n = i2d_X509(ann->cert, &cert);
                if (n > 0)
                        emit(a, &(struct announce_event) { .type = ANN_EV_CA_CERT, .subject = ann->subject,
                                                           .serial = ann->serial, .der = cert, .der_len = (size_t) n });
                OPENSSL_free(cert);
                remember_seen(a, ann->cert);
                break;
        }
        case CMP_ANN_RANN:
                emit_revoked(a, ann->rann_issuer, ann->serial, ann->rann_reason, ann->will_be_revoked_at);
                break;
        default:
                break;
        }
        emit(a, &(struct announce_event) { .type = ANN_EV_PUBLISHED, .blob = blob });
        blob = NULL;
        k = 0;
out:
        announce_blob_unref(blob);
        cmp_ann_free(ann);
        return k;
}
