/* config.c -- cmpgw.json with json-c: parse, validate, default */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "cmp_path.h"
#include "dn_text.h"

struct parser {
        const char *source;     /* file name for messages */
        char *err;
};

static int fail(struct parser *p, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, const char *key, const char *fmt, ...) {
        char what[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        free(p->err);
        if (asprintf(&p->err, "%s: %s%s%s", p->source, key ? key : "", key ? ": " : "", what) < 0)
                p->err = NULL;
        return -EINVAL;
}

/* Every object is checked against the keys it may hold: a typo is an error
 * that names the key, never silently ignored. */
static int check_keys(struct parser *p, const char *where, struct json_object *o,
                      const char *const *allowed) {
        json_object_object_foreach(o, key, val) {
                bool ok = false;
                (void) val;
                for (const char *const *a = allowed; *a; a++)
                        ok = ok || strcmp(*a, key) == 0;
                if (!ok) {
                        char full[256];
                        snprintf(full, sizeof full, "%s%s%s", where, *where ? "." : "", key);
                        return fail(p, full, "unknown key (check its spelling; see cmpgw.json(5))");
                }
        }
        return 0;
}

static int get_string(struct parser *p, const char *key, struct json_object *v, char **ret) {
        if (!json_object_is_type(v, json_type_string))
                return fail(p, key, "expected a string");
        *ret = strdup(json_object_get_string(v));
        return *ret ? 0 : -ENOMEM;
}

static int get_uint(struct parser *p, const char *key, struct json_object *v,
                    uint64_t min, uint64_t max, uint64_t *ret) {
        int64_t n;

        if (!json_object_is_type(v, json_type_int))
                return fail(p, key, "expected a whole number from %llu to %llu",
                            (unsigned long long) min, (unsigned long long) max);
        n = json_object_get_int64(v);
        if (n < 0 || (uint64_t) n < min || (uint64_t) n > max)
                return fail(p, key, "%lld is out of range: expected %llu to %llu", (long long) n,
                            (unsigned long long) min, (unsigned long long) max);
        *ret = (uint64_t) n;
        return 0;
}

/* seconds as a JSON number (fractions allowed) → microseconds */
static int get_seconds(struct parser *p, const char *key, struct json_object *v,
                       double min, double max, uint64_t *ret) {
        double d;

        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
                return fail(p, key, "expected a number of seconds");
        d = json_object_get_double(v);
        if (!(d >= min && d <= max))
                return fail(p, key, "%.10g is out of range: expected %.10g to %.10g seconds", d, min, max);
        *ret = (uint64_t) (d * 1e6);
        return 0;
}

static int get_bool(struct parser *p, const char *key, struct json_object *v, bool *ret) {
        if (!json_object_is_type(v, json_type_boolean))
                return fail(p, key, "expected true or false");
        *ret = json_object_get_boolean(v);
        return 0;
}

static int get_admission(struct parser *p, const char *key, struct json_object *v, enum cmpgw_admission *ret) {
        const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;

        if (s && strcmp(s, "open") == 0)
                *ret = ADMISSION_OPEN;
        else if (s && strcmp(s, "registered") == 0)
                *ret = ADMISSION_REGISTERED;
        else
                return fail(p, key, "%s%s%sexpected \"open\" or \"registered\"",
                            s ? "\"" : "", s ? s : "", s ? "\": " : "");
        return 0;
}

const char *config_admission_name(enum cmpgw_admission a) {
        return a == ADMISSION_REGISTERED ? "registered" : "open";
}

const char *config_scheme_name(enum cmpgw_scheme s) {
        static const char *const names[] = { "coap", "coaps", "http", "https" };
        return names[s];
}

static bool scheme_from_uri(const char *uri, enum cmpgw_scheme *s, const char **rest) {
        static const struct { const char *prefix; enum cmpgw_scheme s; } t[] = {
                { "coap://", SCHEME_COAP }, { "coaps://", SCHEME_COAPS },
                { "http://", SCHEME_HTTP }, { "https://", SCHEME_HTTPS },
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
                if (strncmp(uri, t[i].prefix, strlen(t[i].prefix)) == 0) {
                        *s = t[i].s;
                        *rest = uri + strlen(t[i].prefix);
                        return true;
                }
        return false;
}

/* "host", "host:port", "[v6]", "[v6]:port", followed by "/..." or nothing */
static int split_authority(const char *a, char **host, uint16_t *port, bool *has_port) {
        const char *end = a + strcspn(a, "/?#"), *hs = a, *he, *colon = NULL;

        *has_port = false;
        if (*a == '[') {
                hs = a + 1;
                he = memchr(hs, ']', (size_t) (end - hs));
                if (!he)
                        return -EINVAL;
                if (he + 1 < end) {
                        if (he[1] != ':')
                                return -EINVAL;
                        colon = he + 1;
                }
        } else {
                colon = memchr(a, ':', (size_t) (end - a));
                he = colon ? colon : end;
        }
        if (he == hs)
                return -EINVAL;
        if (colon) {
                char *e;
                unsigned long n = strtoul(colon + 1, &e, 10);
                if (e != end || colon + 1 == end || n == 0 || n > 65535)
                        return -EINVAL;
                *port = (uint16_t) n;
                *has_port = true;
        }
        *host = strndup(hs, (size_t) (he - hs));
        return *host ? 0 : -ENOMEM;
}

static int parse_listen_dtls(struct parser *p, const char *where, struct json_object *o,
                             struct cmpgw_listen *l) {
        static const char *const file_keys[] = { "psk_file", "certificate", "private_key", "client_ca" };
        char **const fields[] = { &l->psk_file, &l->certificate, &l->private_key, &l->client_ca };
        struct json_object *v;
        char key[96];
        int r;

        for (size_t k = 0; k < sizeof file_keys / sizeof file_keys[0]; k++) {
                snprintf(key, sizeof key, "%s.%s", where, file_keys[k]);
                if (!json_object_object_get_ex(o, file_keys[k], &v))
                        continue;
                if (l->scheme != SCHEME_COAPS)
                        return fail(p, key, "DTLS credentials belong to coaps:// listeners only");
                if ((r = get_string(p, key, v, fields[k])) < 0)
                        return r;
                if ((*fields[k])[0] != '/')
                        return fail(p, key, "\"%s\": expected an absolute path", *fields[k]);
        }
        snprintf(key, sizeof key, "%s.client_certificate", where);
        if (json_object_object_get_ex(o, "client_certificate", &v)) {
                const char *s;
                if (l->scheme != SCHEME_COAPS)
                        return fail(p, key, "DTLS credentials belong to coaps:// listeners only");
                if (!json_object_is_type(v, json_type_string))
                        return fail(p, key, "expected \"required\", \"optional\" or \"none\"");
                s = json_object_get_string(v);
                if (strcmp(s, "required") == 0)
                        l->client_certificate = CLIENT_CERT_REQUIRED;
                else if (strcmp(s, "optional") == 0)
                        l->client_certificate = CLIENT_CERT_OPTIONAL;
                else if (strcmp(s, "none") == 0)
                        l->client_certificate = CLIENT_CERT_NONE;
                else
                        return fail(p, key, "\"%s\": expected \"required\", \"optional\" or \"none\"", s);
                if (l->client_certificate != CLIENT_CERT_NONE && !l->client_ca)
                        return fail(p, key, "\"%s\" needs client_ca, the trust anchors for client certificates", s);
        } else if (l->client_ca) {
                l->client_certificate = CLIENT_CERT_OPTIONAL;
        }
        if (l->scheme != SCHEME_COAPS)
                return 0;
        if (!!l->certificate != !!l->private_key) {
                snprintf(key, sizeof key, "%s.%s", where, l->certificate ? "private_key" : "certificate");
                return fail(p, key, "missing: certificate and private_key go together");
        }
        if (l->client_ca && !l->certificate) {
                snprintf(key, sizeof key, "%s.certificate", where);
                return fail(p, key, "missing: client_ca needs the gateway's own certificate and private_key");
        }
        if (!l->psk_file && !l->certificate) {
                snprintf(key, sizeof key, "%s.psk_file", where);
                return fail(p, key, "missing: a coaps:// listener needs psk_file, or certificate and private_key (or both)");
        }
        return 0;
}

/* "relays": PSK identities or client certificate subjects; an entry that
 * reads as a distinguished name also matches the subject however spelt */
static int parse_relays(struct parser *p, const char *key, struct json_object *v, struct cmpgw_listen *l) {
        char why[512];
        size_t n;

        if (l->scheme != SCHEME_COAPS)
                return fail(p, key, "relays are DTLS identities: they belong to coaps:// listeners only");
        if (!json_object_is_type(v, json_type_array))
                return fail(p, key, "expected an array of PSK identities or client certificate subjects, "
                            "e.g. [\"gw-hall-2\", \"CN=gw-hall-3,O=Example\"]");
        n = json_object_array_length(v);
        l->relays = calloc(n ? n : 1, sizeof *l->relays);
        if (!l->relays)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(v, i);
                struct cmpgw_relay *r = &l->relays[l->n_relays];

                if (!json_object_is_type(e, json_type_string) || !json_object_get_string(e)[0])
                        return fail(p, key, "element %zu: expected a PSK identity or a subject", i);
                r->identity = strdup(json_object_get_string(e));
                if (!r->identity)
                        return -ENOMEM;
                l->n_relays++;
                if (strchr(r->identity, '='))
                        r->subject = dn_text_canonical(r->identity, why, sizeof why);
        }
        return 0;
}

static int parse_listen_admission(struct parser *p, const char *where, struct json_object *o,
                                  struct cmpgw_listen *l) {
        struct json_object *v;
        char key[96];
        int r;

        snprintf(key, sizeof key, "%s.admission", where);
        if (json_object_object_get_ex(o, "admission", &v) && (r = get_admission(p, key, v, &l->admission)) < 0)
                return r;
        snprintf(key, sizeof key, "%s.relays", where);
        if (json_object_object_get_ex(o, "relays", &v) && (r = parse_relays(p, key, v, l)) < 0)
                return r;
        return 0;
}

static int parse_listen(struct parser *p, int i, struct json_object *o, struct cmpgw_listen *l) {
        static const char *const keys[] = {
                "uri", "psk_file", "certificate", "private_key", "client_ca", "client_certificate",
                "admission", "relays", NULL };
        struct json_object *v;
        const char *rest;
        char where[64], key[96];
        bool has_port;
        int r;

        snprintf(where, sizeof where, "listen[%d]", i);
        if (!json_object_is_type(o, json_type_object))
                return fail(p, where, "expected an object like {\"uri\": \"coap://127.0.0.1:5683\"}");
        if ((r = check_keys(p, where, o, keys)) < 0)
                return r;
        snprintf(key, sizeof key, "%s.uri", where);
        if (!json_object_object_get_ex(o, "uri", &v))
                return fail(p, key, "missing: say where to listen, e.g. \"coap://127.0.0.1:5683\"");
        if ((r = get_string(p, key, v, &l->uri)) < 0)
                return r;
        if (!scheme_from_uri(l->uri, &l->scheme, &rest) ||
            (l->scheme != SCHEME_COAP && l->scheme != SCHEME_COAPS))
                return fail(p, key, "\"%s\": expected a coap:// or coaps:// URI", l->uri);
        if (split_authority(rest, &l->host, &l->port, &has_port) < 0)
                return fail(p, key, "\"%s\": expected %s://HOST[:PORT] with a numeric port from 1 to 65535",
                            l->uri, config_scheme_name(l->scheme));
        if (!has_port)  /* RFC 9482 §2.2: default ports */
                l->port = l->scheme == SCHEME_COAP ? 5683 : 5684;
        if ((r = parse_listen_dtls(p, where, o, l)) < 0)
                return r;
        return parse_listen_admission(p, where, o, l);
}

static int parse_labels(struct parser *p, const char *where, struct json_object *v,
                        struct cmpgw_upstream *u) {
        size_t n;

        if (!json_object_is_type(v, json_type_array))
                return fail(p, where, "expected an array of labels, e.g. [\"factory\"]");
        n = json_object_array_length(v);
        u->labels = calloc(n ? n : 1, sizeof *u->labels);
        if (!u->labels)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(v, i);
                const char *s;
                if (!json_object_is_type(e, json_type_string))
                        return fail(p, where, "element %zu: expected a string", i);
                s = json_object_get_string(e);
                if (!cmp_label_valid(s, strlen(s)))
                        return fail(p, where, "\"%s\": a label is 1 to %d characters of A-Z a-z 0-9 - . _ ~ and not \".\" or \"..\"",
                                    s, CMP_LABEL_MAX);
                u->labels[i] = strdup(s);
                if (!u->labels[i])
                        return -ENOMEM;
                u->n_labels++;
        }
        return 0;
}

/* RFC 9482 §3: route by Uri-Host. Host names compare case-insensitively. */
static bool host_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 253)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      *s == '-' || *s == '.' || *s == ':' || *s == '[' || *s == ']'))
                        return false;
        return true;
}

static int parse_hosts(struct parser *p, const char *where, struct json_object *v,
                       struct cmpgw_upstream *u) {
        size_t n;

        if (!json_object_is_type(v, json_type_array))
                return fail(p, where, "expected an array of host names, e.g. [\"ca1.example\"]");
        n = json_object_array_length(v);
        u->hosts = calloc(n ? n : 1, sizeof *u->hosts);
        if (!u->hosts)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(v, i);
                if (!json_object_is_type(e, json_type_string) || !host_valid(json_object_get_string(e)))
                        return fail(p, where, "element %zu: expected a host name or IP address", i);
                u->hosts[i] = strdup(json_object_get_string(e));
                if (!u->hosts[i])
                        return -ENOMEM;
                u->n_hosts++;
        }
        return 0;
}

/* TLS towards an upstream (RFC 9482 §4): https:// takes trust anchors and a
 * client certificate; coaps:// takes a PSK, or trust anchors and a client
 * certificate. Files are read when a connection is made (so SIGHUP picks up
 * new ones); only their presence is checked here. */
static int parse_upstream_tls(struct parser *p, const char *where, struct json_object *o, struct cmpgw_upstream *u) {
        static const char *const names[] = { "ca_file", "certificate", "private_key", "psk_file" };
        char **fields[] = { &u->ca_file, &u->certificate, &u->private_key, &u->psk_file };
        bool tls = u->scheme == SCHEME_HTTPS || u->scheme == SCHEME_COAPS;
        struct json_object *v;
        char key[96];
        int r;

        for (size_t k = 0; k < 4; k++) {
                snprintf(key, sizeof key, "%s.%s", where, names[k]);
                if (!json_object_object_get_ex(o, names[k], &v))
                        continue;
                if (!tls)
                        return fail(p, key, "TLS settings belong to https:// and coaps:// upstreams only");
                if (k == 3 && u->scheme != SCHEME_COAPS)
                        return fail(p, key, "pre-shared keys are for coaps:// upstreams (DTLS); https:// takes ca_file and certificate");
                if ((r = get_string(p, key, v, fields[k])) < 0)
                        return r;
        }
        snprintf(key, sizeof key, "%s.certificate", where);
        if (!u->certificate != !u->private_key)
                return fail(p, key, "certificate and private_key go together");
        if (u->psk_file && (u->certificate || u->ca_file))
                return fail(p, key, "a coaps:// upstream takes psk_file, or ca_file and certificate, not both");
        if (u->scheme == SCHEME_COAPS && !u->psk_file && !u->ca_file) {
                snprintf(key, sizeof key, "%s.ca_file", where);
                return fail(p, key, "missing: a coaps:// upstream needs psk_file (its PSK identity and key), "
                            "or ca_file (trust anchors for its certificate) and certificate/private_key");
        }
        if (u->scheme == SCHEME_COAPS && u->ca_file && !u->certificate)
                return fail(p, key, "missing: a coaps:// upstream with ca_file needs the gateway's certificate "
                            "and private_key (libcoap's DTLS client presents one)");
        return 0;
}

/* "what": ["caCerts", "rootCaUpdate", "crls"] (RFC 9483 §4.3.1, 4.3.2, 4.3.4) */
static int parse_poll_what(struct parser *p, const char *key, struct json_object *v, unsigned *ret) {
        static const struct { const char *name; unsigned bit; } kinds[] = {
                { "caCerts", CMPGW_POLL_CA_CERTS },
                { "rootCaUpdate", CMPGW_POLL_ROOT_CA_UPDATE },
                { "crls", CMPGW_POLL_CRLS },
        };
        size_t n;

        if (!json_object_is_type(v, json_type_array) || (n = json_object_array_length(v)) == 0)
                return fail(p, key, "expected a non-empty array of \"caCerts\", \"rootCaUpdate\", \"crls\"");
        *ret = 0;
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(v, i);
                const char *s = json_object_is_type(e, json_type_string) ? json_object_get_string(e) : "";
                unsigned bit = 0;

                for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
                        if (strcmp(s, kinds[k].name) == 0)
                                bit = kinds[k].bit;
                if (!bit)
                        return fail(p, key, "element %zu: expected \"caCerts\", \"rootCaUpdate\" or \"crls\"", i);
                if (*ret & bit)
                        return fail(p, key, "element %zu: \"%s\" is listed twice", i, s);
                *ret |= bit;
        }
        return 0;
}

/* "poll": genm polling of an http(s) upstream, which cannot push
 * announcements (RFC 9483 §4.3). The files are read by the daemon. */
static int parse_poll(struct parser *p, const char *where, struct json_object *o, struct cmpgw_upstream *u) {
        static const char *const keys[] = { "interval", "certificate", "private_key", "trusted", "what", NULL };
        static const char *const file_keys[] = { "certificate", "private_key", "trusted" };
        char **const files[] = { &u->poll.certificate, &u->poll.private_key, &u->poll.trusted };
        struct json_object *v;
        char at[80], key[112];
        int r;

        snprintf(at, sizeof at, "%s.poll", where);
        if (u->scheme != SCHEME_HTTP && u->scheme != SCHEME_HTTPS)
                return fail(p, at, "only an http:// or https:// upstream is polled; a coap:// or coaps:// "
                            "upstream is observed instead (\"announcements\": true)");
        if (!json_object_is_type(o, json_type_object))
                return fail(p, at, "expected an object like {\"interval\": 3600, \"certificate\": "
                            "\"/etc/cmpgw/gw.pem\", \"private_key\": \"/etc/cmpgw/gw.key\"}");
        if ((r = check_keys(p, at, o, keys)) < 0)
                return r;
        u->poll.enabled = true;
        u->poll.interval_usec = 3600 * 1000000ULL;
        u->poll.what = CMPGW_POLL_ALL;
        for (size_t k = 0; k < sizeof file_keys / sizeof file_keys[0]; k++) {
                snprintf(key, sizeof key, "%s.%s", at, file_keys[k]);
                if (!json_object_object_get_ex(o, file_keys[k], &v)) {
                        if (k < 2)
                                return fail(p, key, "missing: the gateway's CMP certificate and private_key "
                                            "sign its genm requests and the announcements made of the answers");
                        continue;
                }
                if ((r = get_string(p, key, v, files[k])) < 0)
                        return r;
                if ((*files[k])[0] != '/')
                        return fail(p, key, "\"%s\": expected an absolute path", *files[k]);
        }
        snprintf(key, sizeof key, "%s.interval", at);
        if (json_object_object_get_ex(o, "interval", &v) &&
            (r = get_seconds(p, key, v, 1, 7 * 86400, &u->poll.interval_usec)) < 0)
                return r;
        snprintf(key, sizeof key, "%s.what", at);
        if (json_object_object_get_ex(o, "what", &v) && (r = parse_poll_what(p, key, v, &u->poll.what)) < 0)
                return r;
        return 0;
}

static int parse_upstream(struct parser *p, int i, struct json_object *o, struct cmpgw_upstream *u) {
        static const char *const keys[] = { "name", "uri", "timeout", "labels", "hosts", "default", "chunked",
                                            "max_connections", "ca_file", "certificate", "private_key",
                                            "psk_file", "announcements", "ann_reregister",
                                            "protection_trusted", "poll", NULL };
        uint64_t n;
        struct json_object *v;
        const char *rest;
        char where[64], key[96];
        int r;

        snprintf(where, sizeof where, "upstreams[%d]", i);
        if (!json_object_is_type(o, json_type_object))
                return fail(p, where, "expected an object like {\"name\": \"ca\", \"uri\": \"http://127.0.0.1:8080/pkix/\"}");
        if ((r = check_keys(p, where, o, keys)) < 0)
                return r;
        u->timeout_usec = 30 * 1000000ULL;
        u->max_connections = 8;
#define KEY(k) (snprintf(key, sizeof key, "%s.%s", where, k), key)
        if (!json_object_object_get_ex(o, "name", &v))
                return fail(p, KEY("name"), "missing: give each upstream a name");
        if ((r = get_string(p, KEY("name"), v, &u->name)) < 0)
                return r;
        if (!json_object_object_get_ex(o, "uri", &v))
                return fail(p, KEY("uri"), "missing: the RA/CA URI, e.g. \"http://127.0.0.1:8080/pkix/\"");
        if ((r = get_string(p, KEY("uri"), v, &u->uri)) < 0)
                return r;
        if (!scheme_from_uri(u->uri, &u->scheme, &rest) || *rest == '\0' || *rest == '/')
                return fail(p, KEY("uri"), "\"%s\": expected an http://, https://, coap:// or coaps:// URI with a host", u->uri);
        if (json_object_object_get_ex(o, "timeout", &v) &&
            (r = get_seconds(p, KEY("timeout"), v, 0.1, 3600, &u->timeout_usec)) < 0)
                return r;
        if (json_object_object_get_ex(o, "labels", &v) &&
            (r = parse_labels(p, KEY("labels"), v, u)) < 0)
                return r;
        if (json_object_object_get_ex(o, "hosts", &v) &&
            (r = parse_hosts(p, KEY("hosts"), v, u)) < 0)
                return r;
        if (json_object_object_get_ex(o, "max_connections", &v)) {
                if ((r = get_uint(p, KEY("max_connections"), v, 1, 1024, &n)) < 0)
                        return r;
                u->max_connections = (uint32_t) n;
        }
        if (json_object_object_get_ex(o, "chunked", &v)) {
                const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
                if (strcmp(s, "auto") == 0)
                        u->chunked = CHUNKED_AUTO;
                else if (strcmp(s, "on") == 0)
                        u->chunked = CHUNKED_ON;
                else if (strcmp(s, "off") == 0)
                        u->chunked = CHUNKED_OFF;
                else
                        return fail(p, KEY("chunked"), "expected \"auto\", \"on\" or \"off\"");
        }
        if (json_object_object_get_ex(o, "default", &v) &&
            (r = get_bool(p, KEY("default"), v, &u->is_default)) < 0)
                return r;
        u->default_given = json_object_object_get_ex(o, "default", NULL);
        if ((r = parse_upstream_tls(p, where, o, u)) < 0)
                return r;
        if (json_object_object_get_ex(o, "announcements", &v)) {
                if ((r = get_bool(p, KEY("announcements"), v, &u->announcements)) < 0)
                        return r;
                if (u->announcements && u->scheme != SCHEME_COAP && u->scheme != SCHEME_COAPS)
                        return fail(p, KEY("announcements"), "only a coap:// or coaps:// upstream can be "
                                    "observed for announcements (RFC 9482 section 2.6)");
        }
        if (json_object_object_get_ex(o, "protection_trusted", &v) &&
            (r = get_string(p, KEY("protection_trusted"), v, &u->protection_trusted)) < 0)
                return r;
        u->ann_reregister_usec = 300 * 1000000ULL;
        if (json_object_object_get_ex(o, "ann_reregister", &v) &&
            (r = get_seconds(p, KEY("ann_reregister"), v, 1, 86400, &u->ann_reregister_usec)) < 0)
                return r;
        if (json_object_object_get_ex(o, "poll", &v) && (r = parse_poll(p, where, v, u)) < 0)
                return r;
#undef KEY
        return 0;
}

static int parse_array(struct parser *p, struct json_object *root, const char *key,
                       bool required, size_t elem_size, void **arr, size_t *n,
                       int (*each)(struct parser *, int, struct json_object *, void *)) {
        struct json_object *v;
        size_t len;

        if (!json_object_object_get_ex(root, key, &v)) {
                if (required)
                        return fail(p, key, "missing (see cmpgw.json(5) for a minimal file)");
                return 0;
        }
        if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0)
                return fail(p, key, "expected a non-empty array");
        len = json_object_array_length(v);
        *arr = calloc(len, elem_size);
        if (!*arr)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                int r = each(p, (int) i, json_object_array_get_idx(v, i), (char *) *arr + i * elem_size);
                (*n)++;
                if (r < 0)
                        return r;
        }
        return 0;
}

static int each_listen(struct parser *p, int i, struct json_object *o, void *e) {
        return parse_listen(p, i, o, e);
}

static int each_upstream(struct parser *p, int i, struct json_object *o, void *e) {
        return parse_upstream(p, i, o, e);
}

static int parse_coap(struct parser *p, struct json_object *o, struct cmpgw_config *c) {
        static const char *const keys[] = {
                "block_size", "max_message_size", "transfer_timeout", "unavailable_max_age", NULL };
        struct json_object *v;
        uint64_t n;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return fail(p, "coap", "expected an object");
        if ((r = check_keys(p, "coap", o, keys)) < 0)
                return r;
        if (json_object_object_get_ex(o, "block_size", &v)) {
                if ((r = get_uint(p, "coap.block_size", v, 16, 1024, &n)) < 0)
                        return r;
                if (n & (n - 1))  /* RFC 7959 §2.2: SZX gives powers of two */
                        return fail(p, "coap.block_size", "%llu is not a power of two: use 16, 32, 64, 128, 256, 512 or 1024",
                                    (unsigned long long) n);
                c->block_size = n;
        }
        if (json_object_object_get_ex(o, "max_message_size", &v)) {
                if ((r = get_uint(p, "coap.max_message_size", v, 256, 16 * 1024 * 1024, &n)) < 0)
                        return r;
                c->max_message_size = n;
        }
        if (json_object_object_get_ex(o, "transfer_timeout", &v) &&
            (r = get_seconds(p, "coap.transfer_timeout", v, 1, 3600, &c->transfer_timeout_usec)) < 0)
                return r;
        if (json_object_object_get_ex(o, "unavailable_max_age", &v)) {
                if ((r = get_uint(p, "coap.unavailable_max_age", v, 0, 86400, &n)) < 0)
                        return r;
                c->unavailable_max_age = (uint32_t) n;
        }
        return 0;
}

static int parse_registry(struct parser *p, struct json_object *o, struct cmpgw_config *c) {
        static const char *const keys[] = { "path", "renew_share", "renew_before", NULL };
        struct json_object *v;
        uint64_t usec;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return fail(p, "registry", "expected an object like {\"path\": \"%s\"}", CMPGW_DEFAULT_REGISTRY);
        if ((r = check_keys(p, "registry", o, keys)) < 0)
                return r;
        if (json_object_object_get_ex(o, "path", &v)) {
                free(c->registry_path);
                c->registry_path = NULL;
                if ((r = get_string(p, "registry.path", v, &c->registry_path)) < 0)
                        return r;
                if (c->registry_path[0] != '/')
                        return fail(p, "registry.path", "\"%s\": expected an absolute path", c->registry_path);
        }
        if (json_object_object_get_ex(o, "renew_share", &v)) {
                if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
                        return fail(p, "registry.renew_share", "expected a number between 0 and 1, e.g. 0.667");
                c->renew_share = json_object_get_double(v);
                if (!(c->renew_share > 0 && c->renew_share < 1))
                        return fail(p, "registry.renew_share", "%g is out of range: expected more than 0 and less than 1",
                                    c->renew_share);
        }
        if (json_object_object_get_ex(o, "renew_before", &v)) {
                if ((r = get_seconds(p, "registry.renew_before", v, 0, 10 * 365 * 86400.0, &usec)) < 0)
                        return r;
                c->renew_before_sec = usec / 1000000;
        }
        return 0;
}

static int parse_dbus(struct parser *p, struct json_object *o, struct cmpgw_config *c) {
        static const char *const keys[] = { "bus", NULL };
        struct json_object *v;
        const char *s;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return fail(p, "dbus", "expected an object like {\"bus\": \"system\"}");
        if ((r = check_keys(p, "dbus", o, keys)) < 0)
                return r;
        if (!json_object_object_get_ex(o, "bus", &v))
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return fail(p, "dbus.bus", "expected \"system\", \"session\" or \"none\"");
        s = json_object_get_string(v);
        if (strcmp(s, "system") == 0)
                c->bus = BUS_SYSTEM;
        else if (strcmp(s, "session") == 0)
                c->bus = BUS_SESSION;
        else if (strcmp(s, "none") == 0)
                c->bus = BUS_NONE;
        else
                return fail(p, "dbus.bus", "\"%s\": expected \"system\", \"session\" or \"none\"", s);
        return 0;
}

static int parse_announcements(struct parser *p, struct json_object *o, struct cmpgw_config *c) {
        static const char *const keys[] = { "trusted", "max_observers", "max_observers_per_peer", "refresh", NULL };
        struct json_object *v;
        uint64_t n;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return fail(p, "announcements", "expected an object like {\"trusted\": \"/etc/cmpgw/ann-trust.pem\"}");
        if ((r = check_keys(p, "announcements", o, keys)) < 0)
                return r;
        if (json_object_object_get_ex(o, "trusted", &v) &&
            (r = get_string(p, "announcements.trusted", v, &c->ann_trusted)) < 0)
                return r;
        if (json_object_object_get_ex(o, "max_observers", &v)) {
                if ((r = get_uint(p, "announcements.max_observers", v, 0, 1000000, &n)) < 0)
                        return r;
                c->ann_max_observers = (uint32_t) n;
        }
        if (json_object_object_get_ex(o, "max_observers_per_peer", &v)) {
                if ((r = get_uint(p, "announcements.max_observers_per_peer", v, 0, 1000000, &n)) < 0)
                        return r;
                c->ann_max_observers_per_peer = (uint32_t) n;
        }
        /* RFC 7641 §4.5: a Confirmable notification at least every 24 h */
        if (json_object_object_get_ex(o, "refresh", &v)) {
                if ((r = get_uint(p, "announcements.refresh", v, 1, 86400, &n)) < 0)
                        return r;
                c->ann_refresh_sec = (uint32_t) n;
        }
        return 0;
}

static int parse_limits(struct parser *p, struct json_object *o, struct cmpgw_config *c) {
        static const char *const keys[] = { "rate", "burst", "in_flight_per_peer", "max_in_flight",
                                            "buffered_bytes", NULL };
        struct json_object *v;
        uint64_t n;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return fail(p, "limits", "expected an object like {\"rate\": 20, \"burst\": 40}");
        if ((r = check_keys(p, "limits", o, keys)) < 0)
                return r;
        if (json_object_object_get_ex(o, "rate", &v)) {
                if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
                        return fail(p, "limits.rate", "expected messages per second (0 turns the limit off)");
                c->limit_rate = json_object_get_double(v);
                if (!(c->limit_rate >= 0 && c->limit_rate <= 1e6))
                        return fail(p, "limits.rate", "%.10g is out of range: expected 0 to 1000000 per second",
                                    c->limit_rate);
        }
        c->limit_burst = c->limit_rate * 2 >= 1 ? (uint32_t) (c->limit_rate * 2) : 1;
        if (json_object_object_get_ex(o, "burst", &v)) {
                if ((r = get_uint(p, "limits.burst", v, 1, 10000000, &n)) < 0)
                        return r;
                c->limit_burst = (uint32_t) n;
        }
        if (json_object_object_get_ex(o, "in_flight_per_peer", &v)) {
                if ((r = get_uint(p, "limits.in_flight_per_peer", v, 1, 1000000, &n)) < 0)
                        return r;
                c->limit_in_flight = (uint32_t) n;
        }
        if (json_object_object_get_ex(o, "max_in_flight", &v)) {
                if ((r = get_uint(p, "limits.max_in_flight", v, 0, 10000000, &n)) < 0)
                        return r;
                c->limit_max_in_flight = (uint32_t) n;
        }
        if (json_object_object_get_ex(o, "buffered_bytes", &v) &&
            (r = get_uint(p, "limits.buffered_bytes", v, 1024, 1ULL << 34, &c->limit_buffered)) < 0)
                return r;
        return 0;
}

static int parse_admission(struct parser *p, struct json_object *o, struct cmpgw_config *c) {
        static const char *const keys[] = { "labels", NULL };
        struct json_object *labels;
        char key[32 + CMP_LABEL_MAX];
        int r;

        if (!json_object_is_type(o, json_type_object))
                return fail(p, "admission", "expected an object like {\"labels\": {\"factory\": \"registered\"}}");
        if ((r = check_keys(p, "admission", o, keys)) < 0)
                return r;
        if (!json_object_object_get_ex(o, "labels", &labels))
                return 0;
        if (!json_object_is_type(labels, json_type_object))
                return fail(p, "admission.labels", "expected an object from labels to \"open\" or \"registered\", "
                            "e.g. {\"factory\": \"registered\"}");
        c->label_admission = calloc((size_t) json_object_object_length(labels) + 1, sizeof *c->label_admission);
        if (!c->label_admission)
                return -ENOMEM;
        json_object_object_foreach(labels, label, v) {
                struct cmpgw_label_admission *a = &c->label_admission[c->n_label_admission];

                if (!cmp_label_valid(label, strlen(label)))
                        return fail(p, "admission.labels", "\"%.80s\": a label is 1 to %d characters of "
                                    "A-Z a-z 0-9 - . _ ~ and not \".\" or \"..\"", label, CMP_LABEL_MAX);
                snprintf(key, sizeof key, "admission.labels.%s", label);
                if ((r = get_admission(p, key, v, &a->admission)) < 0)
                        return r;
                a->label = strdup(label);
                if (!a->label)
                        return -ENOMEM;
                c->n_label_admission++;
        }
        return 0;
}

static int check_routes(struct parser *p, struct cmpgw_config *c) {
        size_t n_default = 0;

        for (size_t i = 0; i < c->n_upstreams; i++) {
                struct cmpgw_upstream *u = &c->upstreams[i];
                n_default += u->is_default;
                for (size_t j = 0; j < i; j++) {
                        if (strcmp(c->upstreams[j].name, u->name) == 0) {
                                char key[64];
                                snprintf(key, sizeof key, "upstreams[%zu].name", i);
                                return fail(p, key, "\"%s\" is used twice: names must be unique", u->name);
                        }
                        for (size_t a = 0; a < u->n_labels; a++)
                                for (size_t b = 0; b < c->upstreams[j].n_labels; b++)
                                        if (strcmp(u->labels[a], c->upstreams[j].labels[b]) == 0) {
                                                char key[64];
                                                snprintf(key, sizeof key, "upstreams[%zu].labels", i);
                                                return fail(p, key, "label \"%s\" is also routed to upstream \"%s\": a label takes one upstream",
                                                            u->labels[a], c->upstreams[j].name);
                                        }
                }
        }
        if (n_default > 1)
                return fail(p, "upstreams", "%zu upstreams say \"default\": true; at most one may", n_default);
        return 0;
}

static int parse_root(struct parser *p, struct json_object *root, struct cmpgw_config *c) {
        static const char *const keys[] = {
                "listen", "upstreams", "coap", "registry", "dbus", "announcements", "limits", "admission", NULL };
        struct json_object *v;
        int r;

        if (!json_object_is_type(root, json_type_object))
                return fail(p, NULL, "expected a JSON object at the top level");
        if ((r = check_keys(p, "", root, keys)) < 0)
                return r;
        if ((r = parse_array(p, root, "listen", true, sizeof *c->listen,
                             (void **) &c->listen, &c->n_listen, each_listen)) < 0)
                return r;
        if ((r = parse_array(p, root, "upstreams", true, sizeof *c->upstreams,
                             (void **) &c->upstreams, &c->n_upstreams, each_upstream)) < 0)
                return r;
        if (json_object_object_get_ex(root, "coap", &v) && (r = parse_coap(p, v, c)) < 0)
                return r;
        if (json_object_object_get_ex(root, "registry", &v) && (r = parse_registry(p, v, c)) < 0)
                return r;
        if (json_object_object_get_ex(root, "dbus", &v) && (r = parse_dbus(p, v, c)) < 0)
                return r;
        if (json_object_object_get_ex(root, "announcements", &v) && (r = parse_announcements(p, v, c)) < 0)
                return r;
        if (json_object_object_get_ex(root, "limits", &v) && (r = parse_limits(p, v, c)) < 0)
                return r;
        if (json_object_object_get_ex(root, "admission", &v) && (r = parse_admission(p, v, c)) < 0)
                return r;
        if (c->limit_buffered < c->max_message_size)
                return fail(p, "limits.buffered_bytes", "%llu is smaller than coap.max_message_size (%zu): "
                            "no block-wise message of the largest size could be received",
                            (unsigned long long) c->limit_buffered, c->max_message_size);
        if (c->max_message_size < c->block_size)
                return fail(p, "coap.max_message_size", "smaller than coap.block_size (%zu)", c->block_size);
        for (size_t i = 0; i < c->n_upstreams; i++)
                if (c->upstreams[i].poll.enabled && !c->ann_trusted) {
                        char key[64];
                        snprintf(key, sizeof key, "upstreams[%zu].poll", i);
                        return fail(p, key, "needs announcements.trusted: the announcements made of what is "
                                    "polled are validated against it like every other");
                }
        return check_routes(p, c);
}

static struct cmpgw_config *config_new_defaults(void) {
        struct cmpgw_config *c = calloc(1, sizeof *c);

        if (!c)
                return NULL;
        c->block_size = 1024;
        c->max_message_size = 65536;
        c->transfer_timeout_usec = 30 * 1000000ULL;
        c->unavailable_max_age = 30;
        c->bus = BUS_SYSTEM;
        c->renew_share = 2.0 / 3.0;
        c->ann_max_observers = 10000;
        c->ann_max_observers_per_peer = 4;
        c->ann_refresh_sec = 12 * 3600;
        c->limit_rate = 20;
        c->limit_burst = 40;
        c->limit_in_flight = 16;
        c->limit_max_in_flight = 1024;
        c->limit_buffered = 8 * 1024 * 1024;
        c->registry_path = strdup(CMPGW_DEFAULT_REGISTRY);
        if (!c->registry_path) {
                free(c);
                return NULL;
        }
        return c;
}

static int config_parse(struct parser *p, const char *json, size_t len,
                        struct cmpgw_config **ret) {
        struct json_tokener *tok = json_tokener_new();
        struct json_object *root;
        struct cmpgw_config *c;
        int r;

        if (!tok)
                return -ENOMEM;
        root = json_tokener_parse_ex(tok, json, (int) len);
        if (!root || json_tokener_get_error(tok) != json_tokener_success ||
            json_tokener_get_parse_end(tok) < len) {
                enum json_tokener_error e = json_tokener_get_error(tok);
                r = fail(p, NULL, "not valid JSON near byte %zu: %s", json_tokener_get_parse_end(tok),
                         e == json_tokener_success ? "text after the end of the object" :
                         e == json_tokener_continue ? "unexpected end of file" : json_tokener_error_desc(e));
                json_object_put(root);
                json_tokener_free(tok);
                return r;
        }
        json_tokener_free(tok);
        c = config_new_defaults();
        if (!c) {
                json_object_put(root);
                return -ENOMEM;
        }
        r = parse_root(p, root, c);
        json_object_put(root);
        if (r < 0) {
                config_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int config_load_string(const char *json, struct cmpgw_config **ret, char **err) {
        struct parser p = { .source = "config" };
        int r = config_parse(&p, json, strlen(json), ret);

        if (err)
                *err = p.err;
        else
                free(p.err);
        return r;
}

#define CONFIG_MAX_SIZE (1024 * 1024)

int config_load_file(const char *path, struct cmpgw_config **ret, char **err) {
        struct parser p = { .source = path };
        char *buf = NULL;
        size_t len = 0;
        FILE *f;
        int r;

        f = fopen(path, "re");
        if (!f) {
                r = -errno;
                fail(&p, NULL, "cannot open: %s", strerror(-r));
                goto out;
        }
        buf = malloc(CONFIG_MAX_SIZE + 1);
        if (!buf) {
                fclose(f);
                r = -ENOMEM;
                goto out;
        }
        len = fread(buf, 1, CONFIG_MAX_SIZE + 1, f);
        if (ferror(f) || len > CONFIG_MAX_SIZE) {
                r = len > CONFIG_MAX_SIZE ? -EFBIG : -EIO;
                fail(&p, NULL, len > CONFIG_MAX_SIZE ? "larger than 1 MiB" : "read error");
                fclose(f);
                goto out;
        }
        fclose(f);
        buf[len] = '\0';
        r = config_parse(&p, buf, len, ret);
out:
        free(buf);
        if (err)
                *err = p.err;
        else
                free(p.err);
        return r;
}

void config_free(struct cmpgw_config *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_listen; i++) {
                free(c->listen[i].uri);
                free(c->listen[i].host);
                free(c->listen[i].psk_file);
                free(c->listen[i].certificate);
                free(c->listen[i].private_key);
                free(c->listen[i].client_ca);
                for (size_t j = 0; j < c->listen[i].n_relays; j++) {
                        free(c->listen[i].relays[j].identity);
                        free(c->listen[i].relays[j].subject);
                }
                free(c->listen[i].relays);
        }
        free(c->listen);
        for (size_t i = 0; i < c->n_label_admission; i++)
                free(c->label_admission[i].label);
        free(c->label_admission);
        for (size_t i = 0; i < c->n_upstreams; i++) {
                struct cmpgw_upstream *u = &c->upstreams[i];
                free(u->name);
                free(u->uri);
                free(u->ca_file);
                free(u->certificate);
                free(u->private_key);
                free(u->psk_file);
                free(u->protection_trusted);
                free(u->poll.certificate);
                free(u->poll.private_key);
                free(u->poll.trusted);
                for (size_t j = 0; j < u->n_labels; j++)
                        free(u->labels[j]);
                free(u->labels);
                for (size_t j = 0; j < u->n_hosts; j++)
                        free(u->hosts[j]);
                free(u->hosts);
        }
        free(c->upstreams);
        free(c->registry_path);
        free(c->ann_trusted);
        free(c);
}

const struct cmpgw_upstream *config_route(const struct cmpgw_config *c, const char *label) {
        return config_route_host(c, label, NULL);
}

const struct cmpgw_upstream *config_route_host(const struct cmpgw_config *c, const char *label,
                                               const char *host) {
        const struct cmpgw_upstream *def = NULL;

        for (size_t i = 0; i < c->n_upstreams; i++) {
                const struct cmpgw_upstream *u = &c->upstreams[i];
                for (size_t j = 0; label && *label && j < u->n_labels; j++)
                        if (strcmp(u->labels[j], label) == 0)
                                return u;
                if (u->is_default)
                        def = u;
        }
        for (size_t i = 0; host && *host && i < c->n_upstreams; i++)
                for (size_t j = 0; j < c->upstreams[i].n_hosts; j++)
                        if (strcasecmp(c->upstreams[i].hosts[j], host) == 0)
                                return &c->upstreams[i];
        /* PRODUCT.md: with one upstream it is the default route */
        if (!def && c->n_upstreams == 1 && !c->upstreams[0].default_given)
                def = &c->upstreams[0];
        return def;
}

enum cmpgw_admission config_label_admission(const struct cmpgw_config *c, const char *label) {
        for (size_t i = 0; label && *label && i < c->n_label_admission; i++)
                if (strcmp(c->label_admission[i].label, label) == 0)
                        return c->label_admission[i].admission;
        return ADMISSION_OPEN;
}

bool config_listen_is_relay(const struct cmpgw_listen *l, const char *psk_identity, const char *client_subject) {
        for (size_t i = 0; i < l->n_relays; i++) {
                const struct cmpgw_relay *r = &l->relays[i];

                if (psk_identity && *psk_identity && strcmp(r->identity, psk_identity) == 0)
                        return true;
                if (client_subject && *client_subject && r->subject && strcmp(r->subject, client_subject) == 0)
                        return true;
        }
        return false;
}
