/* cmp_path.c -- the CMP-over-CoAP resource namespace (RFC 9482 §2.1) */
#include "cmp_path.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
        const char *coap;
        const char *http;
} op_names[_CMP_OP_MAX] = {
        [CMP_OP_NONE] = { "", "" },
        /* RFC 9483 §6.2 (CoAP) and §6.1 (HTTP) operation labels */
        [CMP_OP_IR]   = { "ir",   "initialization" },
        [CMP_OP_CR]   = { "cr",   "certification" },
        [CMP_OP_KUR]  = { "kur",  "keyupdate" },
        [CMP_OP_P10]  = { "p10",  "pkcs10" },
        [CMP_OP_RR]   = { "rr",   "revocation" },
        [CMP_OP_CRTS] = { "crts", "getcacerts" },
        [CMP_OP_RCU]  = { "rcu",  "getrootupdate" },
        [CMP_OP_ATT]  = { "att",  "getcertreqtemplate" },
        [CMP_OP_CRLS] = { "crls", "getcrls" },
        [CMP_OP_NEST] = { "nest", "nested" },
};

const char *cmp_op_coap_name(enum cmp_op op) {
        return op >= 0 && op < _CMP_OP_MAX ? op_names[op].coap : "";
}

const char *cmp_op_http_name(enum cmp_op op) {
        return op >= 0 && op < _CMP_OP_MAX ? op_names[op].http : "";
}

enum cmp_op cmp_op_from_coap_name(const char *s, size_t len) {
        for (int op = CMP_OP_NONE + 1; op < _CMP_OP_MAX; op++)
                if (strlen(op_names[op].coap) == len && memcmp(op_names[op].coap, s, len) == 0)
                        return op;
        return CMP_OP_NONE;
}

bool cmp_label_valid(const char *s, size_t len) {
        if (len == 0 || len > CMP_LABEL_MAX)
                return false;
        /* no path tricks: "." and ".." would mean something to an HTTP upstream */
        if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
                if (!ok)
                        return false;
        }
        return true;
}

static bool seg_is(const char *seg, const char *word) {
        return strcmp(seg, word) == 0;
}

enum cmp_path_result cmp_path_parse_segments(const char *const *segs, size_t n,
                                             struct cmp_path *out) {
        size_t i = 2;

        memset(out, 0, sizeof *out);
        /* RFC 9482 §2.1: endpoints MUST support "/.well-known/cmp" */
        if (n < 2 || !seg_is(segs[0], ".well-known") || !seg_is(segs[1], "cmp"))
                return CMP_PATH_NOT_CMP;

        if (i < n && seg_is(segs[i], "p")) {
                if (i + 1 >= n || !cmp_label_valid(segs[i + 1], strlen(segs[i + 1])))
                        return CMP_PATH_BAD_LABEL;
                strcpy(out->label, segs[i + 1]);  /* length checked by cmp_label_valid() */
                i += 2;
        }
        if (i == n)
                return CMP_PATH_OK;
        if (i + 1 != n)
                return CMP_PATH_UNKNOWN_OP;
        if (seg_is(segs[i], "ann")) {
                out->ann = true;
                return CMP_PATH_OK;
        }
        out->op = cmp_op_from_coap_name(segs[i], strlen(segs[i]));
        return out->op == CMP_OP_NONE ? CMP_PATH_UNKNOWN_OP : CMP_PATH_OK;
}

#define PATH_MAX_SEGS 16

enum cmp_path_result cmp_path_parse(const char *path, struct cmp_path *out) {
        char buf[512], *segs[PATH_MAX_SEGS], *save = NULL;
        size_t n = 0;

        if (strlen(path) >= sizeof buf)
                return CMP_PATH_NOT_CMP;
        strcpy(buf, path);
        for (char *s = strtok_r(buf, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
                if (n == PATH_MAX_SEGS)
                        return CMP_PATH_UNKNOWN_OP;
                segs[n++] = s;
        }
        return cmp_path_parse_segments((const char *const *) segs, n, out);
}

static bool ends_with(const char *s, size_t len, const char *suffix) {
        size_t sl = strlen(suffix);
        return len >= sl && memcmp(s + len - sl, suffix, sl) == 0;
}

static int upstream_uri(const char *base, const char *label, const char *op_name,
                        char *buf, size_t size) {
        size_t blen = strlen(base);
        int r;

        while (blen > 0 && base[blen - 1] == '/')
                blen--;
        /* PRODUCT.md: only a base ending in /.well-known/cmp gets /p/<label>/<op>;
         * any other URI is used exactly as configured (openssl cmp takes / and /pkix/) */
        if (!ends_with(base, blen, "/.well-known/cmp"))
                r = snprintf(buf, size, "%s", base);
        else
                r = snprintf(buf, size, "%.*s%s%s%s%s", (int) blen, base,
                             label && *label ? "/p/" : "", label ? label : "",
                             *op_name ? "/" : "", op_name);
        if (r < 0 || (size_t) r >= size)
                return -ENOBUFS;
        return r;
}

int cmp_path_http_upstream_uri(const char *base, const char *label, enum cmp_op op,
                               char *buf, size_t size) {
        return upstream_uri(base, label, cmp_op_http_name(op), buf, size);
}

int cmp_path_coap_upstream_uri(const char *base, const char *label, enum cmp_op op,
                               char *buf, size_t size) {
        return upstream_uri(base, label, cmp_op_coap_name(op), buf, size);
}
