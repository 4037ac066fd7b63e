/* dn_text.c -- distinguished names written as text, parsed into X509_NAME */
#include "dn_text.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "cmp_content.h"

struct ava {
        const char *type, *value;       /* in the parser's scratch buffer */
        size_t rdn;
};

struct dn_parser {
        const char *text, *p;
        bool slash;                     /* "/O=b/CN=a", else RFC 4514 "CN=a,O=b" */
        char *out;                      /* next free byte of the scratch buffer */
        struct ava *avas;
        size_t n, rdn;
        char *why;
        size_t why_size;
};

static int fail(struct dn_parser *d, const char *what) {
        snprintf(d->why, d->why_size, "'%s' is not a distinguished name: %s "
                 "(write CN=node1,O=Example or /O=Example/CN=node1)", d->text, what);
        return -EINVAL;
}

static bool is_sep(const struct dn_parser *d, char c) {
        return d->slash ? c == '/' : c == ',' || c == ';';
}

static bool at_end_of_value(const struct dn_parser *d) {
        return !*d->p || *d->p == '+' || is_sep(d, *d->p);
}

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* RFC 4514 §3: spaces around types and values are not part of them */
static void skip_spaces(struct dn_parser *d) {
        while (!d->slash && *d->p == ' ')
                d->p++;
}

static int read_type(struct dn_parser *d, const char **ret) {
        char *start = d->out;

        skip_spaces(d);
        while (*d->p && *d->p != '=' && !at_end_of_value(d))
                *d->out++ = *d->p++;
        while (!d->slash && d->out > start && d->out[-1] == ' ')
                d->out--;
        *d->out++ = '\0';
        if (*d->p != '=' || !*start)
                return fail(d, "expected TYPE=VALUE");
        d->p++;
        *ret = start;
        return 0;
}

/* '\' takes the next character; RFC 4514 §2.4 also "\XX", a hex byte */
static int read_escape(struct dn_parser *d, char *c) {
        int hi, lo;

        if (!*d->p)
                return fail(d, "'\\' at the end");
        hi = d->slash ? -1 : hex_digit(d->p[0]);
        lo = hi < 0 ? -1 : hex_digit(d->p[1]);
        if (lo < 0) {
                *c = *d->p++;
                return 0;
        }
        *c = (char) (hi << 4 | lo);
        d->p += 2;
        return 0;
}

static int read_value(struct dn_parser *d, const char **ret) {
        char *start = d->out, *kept = d->out;   /* unescaped trailing spaces end after kept */
        int r;

        skip_spaces(d);
        if (!d->slash && *d->p == '#')
                return fail(d, "#hex values are not supported");
        while (!at_end_of_value(d)) {
                char c = *d->p++;
                bool escaped = c == '\\';

                if (escaped && (r = read_escape(d, &c)) < 0)
                        return r;
                *d->out++ = c;
                if (c != ' ' || d->slash || escaped)
                        kept = d->out;
        }
        d->out = kept;
        *d->out++ = '\0';
        *ret = start;
        return 0;
}

static int split(struct dn_parser *d) {
        int r;

        d->p = d->text + d->slash;
        while (*d->p) {
                struct ava *a = &d->avas[d->n];

                if ((r = read_type(d, &a->type)) < 0 || (r = read_value(d, &a->value)) < 0)
                        return r;
                a->rdn = d->rdn;
                if (*a->value)          /* like openssl: an empty value is left out */
                        d->n++;
                if (is_sep(d, *d->p))
                        d->rdn++;
                if (*d->p)
                        d->p++;
        }
        return d->n > 0 ? 0 : fail(d, "no TYPE=VALUE in it");
}

/* The attributes in the order of the name: as written for "/...";
 * reversed for RFC 4514, which writes the last RDN first (and, as OpenSSL
 * prints it, the attributes of a multi-valued RDN last first too). */
static X509_NAME *build(struct dn_parser *d) {
        X509_NAME *name = X509_NAME_new();

        if (!name) {
                snprintf(d->why, d->why_size, "out of memory");
                return NULL;
        }
        for (size_t k = 0; k < d->n; k++) {
                const struct ava *a = &d->avas[d->slash ? k : d->n - 1 - k];
                const struct ava *prev = k == 0 ? NULL : &d->avas[d->slash ? k - 1 : d->n - k];
                int set = prev && prev->rdn == a->rdn ? -1 : 0;        /* -1: joins the RDN before */

                if (!X509_NAME_add_entry_by_txt(name, a->type, MBSTRING_UTF8,
                                                (const unsigned char *) a->value, -1, -1, set)) {
                        ERR_clear_error();
                        snprintf(d->why, d->why_size, "'%s' is not a distinguished name: unknown "
                                 "attribute type '%s' or a bad value for it", d->text, a->type);
                        X509_NAME_free(name);
                        return NULL;
                }
        }
        return name;
}

X509_NAME *dn_text_parse(const char *text, char *why, size_t why_size) {
        struct dn_parser d = { .text = text, .slash = text[0] == '/', .why = why, .why_size = why_size };
        size_t max = 1, len = strlen(text);
        X509_NAME *name = NULL;
        char *scratch;

        for (const char *q = text; *q; q++)
                max += *q == '=';
        d.avas = calloc(max, sizeof *d.avas);
        d.out = scratch = malloc(len + 2 * max + 1);
        if (!d.avas || !scratch)
                snprintf(why, why_size, "out of memory");
        else if (split(&d) == 0)
                name = build(&d);
        free(d.avas);
        free(scratch);
        return name;
}

/* Through DER and back: the attributes of a multi-valued RDN come out in
 * DER's SET OF order, as in a certificate, whatever order they were written in. */
static X509_NAME *der_order(const X509_NAME *name) {
        unsigned char *der = NULL;
        const unsigned char *p;
        int len = i2d_X509_NAME(name, &der);
        X509_NAME *copy = NULL;

        if (len > 0) {
                p = der;
                copy = d2i_X509_NAME(NULL, &p, len);
        }
        OPENSSL_free(der);
        return copy;
}

char *dn_text_canonical(const char *text, char *why, size_t why_size) {
        X509_NAME *name = dn_text_parse(text, why, why_size), *ordered;
        char *s = NULL;

        if (!name)
                return NULL;
        ordered = der_order(name);
        if (ordered)
                s = cmp_name_rfc2253(ordered);
        X509_NAME_free(ordered);
        X509_NAME_free(name);
        if (!s)
                snprintf(why, why_size, "out of memory");
        return s;
}
