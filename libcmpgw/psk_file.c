/* psk_file.c -- the PSK file reader */
#include "psk_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"

static int psk_cmp(const void *a, const void *b) {
        return strcmp(((const struct psk_entry *) a)->identity, ((const struct psk_entry *) b)->identity);
}

static int hex_value(int c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
               c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* KEY is text, or hex when written 0xHEX. Never logged. */
static int psk_parse_key(const char *k, uint8_t *out, size_t *len) {
        size_t n = strlen(k);

        if (n > 2 && k[0] == '0' && (k[1] == 'x' || k[1] == 'X')) {
                k += 2;
                n -= 2;
                if (n % 2 || n / 2 > PSK_KEY_MAX)
                        return -EINVAL;
                for (size_t i = 0; i < n / 2; i++) {
                        int hi = hex_value(k[2 * i]), lo = hex_value(k[2 * i + 1]);
                        if (hi < 0 || lo < 0)
                                return -EINVAL;
                        out[i] = (uint8_t) (hi << 4 | lo);
                }
                *len = n / 2;
                return 0;
        }
        if (n == 0 || n > PSK_KEY_MAX)
                return -EINVAL;
        memcpy(out, k, n);
        *len = n;
        return 0;
}

/* psk_file: "identity:key" lines, '#' comments, blank lines. Refused unless
 * only the owner may read it. */
int psk_file_load(const char *key, const char *path, struct psk_entry **ret, size_t *ret_n) {
        struct psk_entry *v = NULL;
        size_t n = 0, cap = 0, size = 0;
        char *line = NULL;
        unsigned lineno = 0;
        struct stat st;
        FILE *f;
        int fd, r = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                log_error("%s: cannot open %s: %s", key, path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                log_error("%s: %s is not a regular file", key, path);
                close(fd);
                return -EINVAL;
        }
        if (st.st_mode & (S_IRWXG | S_IRWXO)) {
                log_error("%s: %s holds secret keys but its mode %04o lets group or others read it; "
                          "run: chmod 600 %s", key, path, (unsigned) (st.st_mode & 07777), path);
                close(fd);
                return -EPERM;
        }
        f = fdopen(fd, "re");
        if (!f) {
                r = -errno;
                close(fd);
                return r;
        }
        while (getline(&line, &size, f) >= 0) {
                char *s = line, *colon, *end;
                struct psk_entry *e;
                size_t id_len;

                lineno++;
                s[strcspn(s, "\r\n")] = '\0';
                while (*s == ' ' || *s == '\t')
                        s++;
                if (*s == '\0' || *s == '#')
                        continue;
                end = s + strlen(s);
                while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
                        *--end = '\0';
                colon = strchr(s, ':');
                id_len = colon ? (size_t) (colon - s) : 0;
                if (!colon || id_len == 0 || id_len > PSK_IDENTITY_MAX) {
                        log_error("%s: %s line %u: expected IDENTITY:KEY with an identity of 1 to %d bytes",
                                  key, path, lineno, PSK_IDENTITY_MAX);
                        r = -EINVAL;
                        break;
                }
                if (n == cap) {
                        struct psk_entry *nv = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof *v);
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                }
                e = &v[n];
                memset(e, 0, sizeof *e);
                memcpy(e->identity, s, id_len);
                if (psk_parse_key(colon + 1, e->key, &e->bin.length) < 0) {
                        log_error("%s: %s line %u (identity \"%s\"): the key must be 1 to %d bytes of text, or 0x and hex digits",
                                  key, path, lineno, e->identity, PSK_KEY_MAX);
                        r = -EINVAL;
                        break;
                }
                n++;
        }
        if (line)
                OPENSSL_cleanse(line, size);
        free(line);
        fclose(f);
        if (r == 0 && n == 0) {
                log_error("%s: %s holds no IDENTITY:KEY line", key, path);
                r = -EINVAL;
        }
        if (r == 0) {
                qsort(v, n, sizeof *v, psk_cmp);
                for (size_t i = 1; i < n; i++)
                        if (strcmp(v[i - 1].identity, v[i].identity) == 0) {
                                log_error("%s: %s names identity \"%s\" twice", key, path, v[i].identity);
                                r = -EINVAL;
                                break;
                        }
        }
        if (r < 0) {
                if (v)
                        OPENSSL_cleanse(v, cap * sizeof *v);
                free(v);
                return r;
        }
        /* the table may move until here: point the keys now */
        for (size_t i = 0; i < n; i++)
                v[i].bin.s = v[i].key;
        *ret = v;
        *ret_n = n;
        return 0;
}

const struct psk_entry *psk_file_find(const struct psk_entry *v, size_t n, const char *identity) {
        struct psk_entry probe;

        if (strlen(identity) > PSK_IDENTITY_MAX)
                return NULL;
        strcpy(probe.identity, identity);
        return bsearch(&probe, v, n, sizeof *v, psk_cmp);
}

void psk_file_free(struct psk_entry *v, size_t n) {
        if (v)
                OPENSSL_cleanse(v, n * sizeof *v);
        free(v);
}
