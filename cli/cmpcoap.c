/* cmpcoap -- CMP end-entity client over CoAP (RFC 9482)
 *
 * OpenSSL's CMP client (OSSL_CMP_CTX) with a transfer callback that sends
 * each PKIMessage as a Confirmable CoAP POST, Content-Format 259. Options
 * shared with `openssl cmp` have its names and meanings.
 *
 *   cmpcoap ir|cr|p10cr|kur|rr|genm --server coap://host[:port]/path [options]
 *   cmpcoap discover [URI]
 *   cmpcoap observe [URI] [--out-dir DIR] [--count N]   (RFC 9482 §2.6)
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <coap3/coap.h>

#include <openssl/asn1t.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cmp_asn1.h"
#include "cmp_msg.h"
#include "dn_text.h"
#include "coap_transfer.h"

#ifndef CMPGW_VERSION
#define CMPGW_VERSION "unknown"
#endif

#define PROG "cmpcoap"

enum exit_code {
        EXIT_OK = 0,
        EXIT_FAIL = 1,
        EXIT_USAGE = 2,
};

/* setup steps: 0, or one of these */
#define SETUP_FAIL  (-1)        /* exit 1: a file, a key, the network */
#define SETUP_USAGE (-2)        /* exit 2: an option value */

enum command {
        CMD_NONE = 0,
        CMD_IR, CMD_CR, CMD_P10CR, CMD_KUR, CMD_RR, CMD_GENM, CMD_DISCOVER, CMD_OBSERVE,
};

static const char *const command_names[] = {
        [CMD_IR] = "ir", [CMD_CR] = "cr", [CMD_P10CR] = "p10cr", [CMD_KUR] = "kur",
        [CMD_RR] = "rr", [CMD_GENM] = "genm", [CMD_DISCOVER] = "discover",
        [CMD_OBSERVE] = "observe",
};

struct args {
        enum command command;
        const char *discover_uri;       /* the URI argument of discover and observe */
        /* strings: NULL when not given */
        const char *server, *ref, *secret, *cert, *key, *keypass, *extracerts;
        const char *newkey, *newkeypass, *subject, *issuer, *sans;
        const char *trusted, *untrusted, *srvcert, *recipient, *expect_sender, *out_trusted;
        const char *oldcert, *csr, *infotype, *digest, *mac;
        const char *psk_identity, *psk_key, *tls_cert, *tls_key, *tls_trusted, *servername;
        const char *certout, *chainout, *cacertsout, *extracertsout, *reqout, *rspout;
        const char *out_dir;
        /* numbers: -1 (or the stated default) when not given */
        int days, revreason, popo, msg_timeout, total_timeout, verbosity;
        int block_size, timeout;
        int count, reregister;
        /* flags */
        int implicit_confirm, disable_confirm, unprotected_requests, unprotected_errors;
        int ignore_keyusage, san_nodefault;
};

enum opt_kind { K_SECTION, K_STR, K_INT, K_FLAG, K_HELP, K_VERSION };

struct option_spec {
        const char *name;
        enum opt_kind kind;
        size_t offset;
        int min, max;
        const char *arg;
        const char *help;
};

#define SECTION(t)              { NULL, K_SECTION, 0, 0, 0, NULL, t }
#define STR(n, f, a, h)         { n, K_STR, offsetof(struct args, f), 0, 0, a, h }
#define INT(n, f, lo, hi, h)    { n, K_INT, offsetof(struct args, f), lo, hi, "N", h }
#define FLAG(n, f, h)           { n, K_FLAG, offsetof(struct args, f), 0, 0, NULL, h }

static const struct option_spec option_specs[] = {
        SECTION("General"),
        { "help", K_HELP, 0, 0, 0, NULL, "Print this help and exit" },
        { "version", K_VERSION, 0, 0, 0, NULL, "Print the version and exit" },
        INT("verbosity", verbosity, 0, 8, "Log level; 3=ERR, 4=WARN, 6=INFO, 7=DEBUG, 8=TRACE. Default 6"),
        SECTION("Message transfer (CoAP)"),
        STR("server", server, "URI", "coap[s]://host[:port][/path] of the CMP server; path used as is,\n"
            "default /.well-known/cmp; port default 5683, coaps 5684"),
        INT("block-size", block_size, 16, 1024, "Block1 size for requests: 16..1024, power of two. Default 1024"),
        INT("timeout", timeout, 0, INT_MAX, "Overall seconds for the whole run, 0 = none. Default 60;\n"
            "observe: 0 (runs until --count or a signal)"),
        INT("msg_timeout", msg_timeout, 0, INT_MAX, "Seconds allowed per CMP message round trip, 0 = infinite"),
        INT("total_timeout", total_timeout, 0, INT_MAX, "Overall seconds an enrollment incl. polling may take"),
        STR("recipient", recipient, "DN", "DN of CA. Default: subject of --srvcert, --issuer, issuer of --oldcert or --cert"),
        SECTION("DTLS for coaps:// (transport, not CMP: see --cert/--key/--trusted)"),
        STR("psk-identity", psk_identity, "ID", "DTLS pre-shared key identity"),
        STR("psk-key", psk_key, "KEY", "DTLS pre-shared key: text, 0xHEX, or file:PATH (first line)"),
        STR("tls-cert", tls_cert, "FILE", "DTLS client certificate (PEM), with --tls-key"),
        STR("tls-key", tls_key, "FILE", "DTLS client private key (PEM, unencrypted)"),
        STR("tls-trusted", tls_trusted, "FILE", "Trust anchors (PEM) for the server's DTLS certificate;\n"
            "its name must match the URI's host (or --servername)"),
        STR("servername", servername, "NAME", "Server name sent in the DTLS handshake (SNI) and checked in\n"
            "the server certificate instead of the URI's host"),
        SECTION("Announcements (observe)"),
        STR("out-dir", out_dir, "DIR", "Write each announcement received to DIR/ann-N.der (N = 1, 2, ...)"),
        INT("count", count, 1, INT_MAX, "Exit 0 after N announcements. Default: run until --timeout"),
        INT("reregister", reregister, 0, INT_MAX, "Register again every N seconds (RFC 9482 §2.6), 0 = only\n"
            "when the server drops us. Default 600"),
        SECTION("Generic message options"),
        STR("infotype", infotype, "NAME", "InfoType name for genm, e.g. 'signKeyPairTypes'"),
        SECTION("Certificate enrollment"),
        STR("newkey", newkey, "FILE", "Private or public key for the requested cert (PEM/DER)"),
        STR("newkeypass", newkeypass, "SRC", "Pass phrase source for --newkey"),
        STR("subject", subject, "DN", "Subject DN for the requested cert, /CN=x/O=y form"),
        STR("issuer", issuer, "DN", "Issuer DN to place in the requested certificate template"),
        INT("days", days, 0, INT_MAX, "Requested validity of the new certificate in days"),
        STR("sans", sans, "LIST", "Subject Alt Names (IPADDR/DNS/URI, comma or space separated;\n"
            "'critical' marks the extension critical)"),
        FLAG("san_nodefault", san_nodefault, "Do not take default SANs from the reference certificate"),
        INT("popo", popo, -1, 2, "Proof-of-possession: -1 NONE, 0 RAVERIFIED, 1 SIGNATURE (default), 2 KEYENC"),
        STR("csr", csr, "FILE", "PKCS#10 CSR (PEM/DER) to use in p10cr"),
        STR("out_trusted", out_trusted, "FILES", "Certificates to trust when verifying newly enrolled certificates"),
        FLAG("implicit_confirm", implicit_confirm, "Request implicit confirmation of newly enrolled certificates"),
        FLAG("disable_confirm", disable_confirm, "Do not confirm newly enrolled certificates (violates RFC 4210)"),
        STR("certout", certout, "FILE", "File to save the newly enrolled certificate (PEM)"),
        STR("chainout", chainout, "FILE", "File to save the chain of the newly enrolled certificate"),
        SECTION("Certificate enrollment and revocation"),
        STR("oldcert", oldcert, "FILE", "Certificate to update (kur) or revoke (rr); default --cert"),
        INT("revreason", revreason, -1, 10, "Revocation reason for rr: 0..6, 8..10 (RFC 5280 §5.3.1), -1 none"),
        SECTION("Server authentication"),
        STR("trusted", trusted, "FILES", "Trust anchors for verifying signed CMP responses"),
        STR("untrusted", untrusted, "FILES", "Intermediate CA certificates for chain building"),
        STR("srvcert", srvcert, "FILE", "Server certificate to pin and trust directly"),
        STR("expect_sender", expect_sender, "DN", "DN of the expected sender of responses"),
        FLAG("ignore_keyusage", ignore_keyusage, "Ignore CMP signer cert key usage"),
        FLAG("unprotected_errors", unprotected_errors, "Accept missing or invalid protection of negative responses"),
        STR("extracertsout", extracertsout, "FILE", "File to save certificates received in extraCerts"),
        STR("cacertsout", cacertsout, "FILE", "File to save CA certificates received in caPubs"),
        SECTION("Client authentication"),
        STR("ref", ref, "VALUE", "Reference value (senderKID) for MAC-based protection"),
        STR("secret", secret, "SRC", "Password source for MAC-based protection (pass:, env:, file:, fd:, stdin)"),
        STR("cert", cert, "FILE", "Client's CMP signer certificate (further certs: untrusted)"),
        STR("key", key, "FILE", "CMP signer private key, not used when --secret given"),
        STR("keypass", keypass, "SRC", "Pass phrase source for --key"),
        STR("digest", digest, "NAME", "Digest for protection and POPO signatures. Default sha256"),
        STR("mac", mac, "NAME", "MAC algorithm for PBM-based protection. Default hmac-sha1"),
        STR("extracerts", extracerts, "FILES", "Certificates to append in extraCerts of requests"),
        FLAG("unprotected_requests", unprotected_requests, "Send requests without CMP-level protection"),
        SECTION("Debugging"),
        STR("reqout", reqout, "FILES", "Save the DER requests, one per file, comma-separated"),
        STR("rspout", rspout, "FILES", "Save the DER responses, one per file, comma-separated"),
};

#define N_OPTIONS (sizeof option_specs / sizeof option_specs[0])

/* ---- usage -------------------------------------------------------------- */

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void usage_error(const char *fmt, ...) {
        va_list ap;

        fputs(PROG ": ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry '" PROG " --help' for more information.\n", stderr);
}

static void print_help(void) {
        printf("Usage: " PROG " COMMAND [options]\n"
               "       " PROG " discover [URI]\n"
               "       " PROG " observe [URI] [--out-dir DIR] [--count N]\n\n"
               "CMP end-entity client over CoAP (RFC 9482).\n\n"
               "Commands:\n"
               "  ir cr p10cr kur rr genm   run that CMP transaction with --server\n"
               "  discover [URI]            GET /.well-known/core and print the links with ct=259\n"
               "  observe [URI]             observe announcements (GET+Observe on .../ann; URI default:\n"
               "                            --server + /ann) and print each as it arrives\n\n"
               "Options take one or two dashes; VALUE may follow as --opt=VALUE.\n");
        for (size_t i = 0; i < N_OPTIONS; i++) {
                const struct option_spec *o = &option_specs[i];
                char left[48];
                const char *h;

                if (o->kind == K_SECTION) {
                        printf("\n%s:\n", o->help);
                        continue;
                }
                snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
                printf("  %-26s ", left);
                for (h = o->help; *h; h++) {
                        putchar(*h);
                        if (*h == '\n')
                                printf("  %-26s ", "");
                }
                putchar('\n');
        }
        printf("\nExit status: 0 success, 1 failure, 2 usage error.\n");
}

/* ---- argument parsing --------------------------------------------------- */

static const struct option_spec *find_option(const char *name, size_t len) {
        for (size_t i = 0; i < N_OPTIONS; i++) {
                const char *n = option_specs[i].name;

                if (n && strlen(n) == len && strncmp(n, name, len) == 0)
                        return &option_specs[i];
        }
        return NULL;
}

static int parse_int(const char *text, int min, int max, int *out) {
        char *end;
        long v;

        errno = 0;
        v = strtol(text, &end, 10);
        if (errno || end == text || *end || v < min || v > max)
                return -1;
        *out = (int) v;
        return 0;
}

static enum command command_from_name(const char *s) {
        for (size_t i = 0; i < sizeof command_names / sizeof command_names[0]; i++)
                if (command_names[i] && strcmp(command_names[i], s) == 0)
                        return (enum command) i;
        return CMD_NONE;
}

static int set_option(struct args *a, const struct option_spec *o, const char *value) {
        char *field = (char *) a + o->offset;

        switch (o->kind) {
        case K_STR:
                *(const char **) (void *) field = value;
                return 0;
        case K_INT:
                if (parse_int(value, o->min, o->max, (int *) (void *) field) < 0) {
                        usage_error("--%s: '%s' is not a number in %d..%d", o->name, value, o->min, o->max);
                        return -1;
                }
                return 0;
        case K_FLAG:
                *(int *) (void *) field = 1;
                return 0;
        default:
                return -1;
        }
}

static int take_positional(struct args *a, const char *arg) {
        if (a->command == CMD_NONE) {
                a->command = command_from_name(arg);
                if (a->command == CMD_NONE) {
                        usage_error("unknown command '%s' (ir cr p10cr kur rr genm discover observe)", arg);
                        return -1;
                }
                return 0;
        }
        if ((a->command == CMD_DISCOVER || a->command == CMD_OBSERVE) && !a->discover_uri) {
                a->discover_uri = arg;
                return 0;
        }
        usage_error("unexpected argument '%s'", arg);
        return -1;
}

/* 0 to run, 1 when --help/--version was handled, -1 on a usage error */
static int parse_args(int argc, char **argv, struct args *a) {
        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i], *name, *eq, *value;
                const struct option_spec *o;
                size_t len;

                if (arg[0] != '-' || arg[1] == '\0') {
                        if (take_positional(a, arg) < 0)
                                return -1;
                        continue;
                }
                name = arg + (arg[1] == '-' ? 2 : 1);  /* like openssl: one dash too */
                eq = strchr(name, '=');
                len = eq ? (size_t) (eq - name) : strlen(name);
                o = find_option(name, len);
                if (!o && len == 1 && name[0] == 'h')
                        o = find_option("help", 4);
                if (!o) {
                        usage_error("unknown option '%s'", arg);
                        return -1;
                }
                if (o->kind == K_HELP) {
                        print_help();
                        return 1;
                }
                if (o->kind == K_VERSION) {
                        printf(PROG " " CMPGW_VERSION " (%s, %s)\n",
                               OpenSSL_version(OPENSSL_VERSION), coap_package_version());
                        return 1;
                }
                if (o->kind == K_FLAG) {
                        if (eq) {
                                usage_error("option --%s takes no value", o->name);
                                return -1;
                        }
                        set_option(a, o, NULL);
                        continue;
                }
                if (eq) {
                        value = eq + 1;
                } else if (i + 1 < argc) {
                        value = argv[++i];
                } else {
                        usage_error("option --%s needs a value (%s)", o->name, o->arg);
                        return -1;
                }
                if (set_option(a, o, value) < 0)
                        return -1;
        }
        return 0;
}

static bool is_pass_source(const char *s) {
        return strncmp(s, "pass:", 5) == 0 || strncmp(s, "env:", 4) == 0 ||
               strncmp(s, "file:", 5) == 0 || strncmp(s, "fd:", 3) == 0 || strcmp(s, "stdin") == 0;
}

static int check_pass_source(const char *option, const char *value) {
        if (!value || is_pass_source(value))
                return 0;
        usage_error("--%s: '%s' is no password source (pass:TEXT, env:VAR, file:PATH, fd:N or stdin)",
                    option, value);
        return -1;
}

static int check_uri(const char *what, const char *uri) {
        if (!uri || strncasecmp(uri, "coap://", 7) == 0 || strncasecmp(uri, "coaps://", 8) == 0)
                return 0;
        usage_error("%s: '%s' is not a coap:// or coaps:// URI", what, uri);
        return -1;
}

static bool is_coaps(const char *uri) {
        return uri && strncasecmp(uri, "coaps://", 8) == 0;
}

static int check_dtls_args(const struct args *a) {
        const char *uri = a->discover_uri ? a->discover_uri : a->server;
        bool psk = a->psk_identity || a->psk_key, pki = a->tls_cert || a->tls_key;

        if (!is_coaps(uri)) {
                if (psk || pki || a->tls_trusted || a->servername) {
                        usage_error("--psk-*/--tls-*/--servername options need a coaps:// URI");
                        return -1;
                }
                return 0;
        }
        if (!!a->psk_identity != !!a->psk_key) {
                usage_error("--psk-identity and --psk-key go together");
                return -1;
        }
        if (!!a->tls_cert != !!a->tls_key) {
                usage_error("--tls-cert and --tls-key go together");
                return -1;
        }
        if (psk && (pki || a->tls_trusted)) {
                usage_error("coaps:// takes either a PSK (--psk-identity/--psk-key) or certificates (--tls-*), not both");
                return -1;
        }
        if (!psk && !a->tls_trusted) {
                usage_error("coaps:// needs --psk-identity/--psk-key, or --tls-trusted (and --tls-cert/--tls-key)");
                return -1;
        }
        return 0;
}

static int check_args(const struct args *a) {
        if (a->command == CMD_NONE) {
                usage_error("missing command (ir cr p10cr kur rr genm discover observe)");
                return -1;
        }
        if ((a->command == CMD_DISCOVER || a->command == CMD_OBSERVE) && !a->discover_uri && !a->server) {
                usage_error("%s needs a URI (or --server)", command_names[a->command]);
                return -1;
        }
        if ((a->out_dir || a->count > 0 || a->reregister >= 0) && a->command != CMD_OBSERVE) {
                usage_error("--out-dir, --count and --reregister are for observe");
                return -1;
        }
        if (a->command != CMD_DISCOVER && a->command != CMD_OBSERVE && !a->server) {
                usage_error("option --server is required for %s", command_names[a->command]);
                return -1;
        }
        if (check_uri("--server", a->server) < 0 ||
            check_uri(command_names[a->command], a->discover_uri) < 0 ||
            check_dtls_args(a) < 0)
                return -1;
        if (a->block_size & (a->block_size - 1)) {
                usage_error("--block-size: %d is not a power of two in 16..1024", a->block_size);
                return -1;
        }
        if (a->revreason == 7) {
                usage_error("--revreason: 7 is not a valid reason code (RFC 5280 §5.3.1)");
                return -1;
        }
        if (a->command == CMD_P10CR && !a->csr) {
                usage_error("p10cr needs --csr");
                return -1;
        }
        if (check_pass_source("secret", a->secret) < 0 || check_pass_source("keypass", a->keypass) < 0 ||
            check_pass_source("newkeypass", a->newkeypass) < 0)
                return -1;
        return 0;
}

/* ---- credentials and files ---------------------------------------------- */

static char *read_line(FILE *f) {
        char buf[1024];

        if (!fgets(buf, sizeof buf, f))
                return NULL;
        buf[strcspn(buf, "\r\n")] = '\0';
        return strdup(buf);
}

/* Resolves an openssl password source (openssl-passphrase-options(1)). */
static char *pass_from_source(const char *option, const char *src) {
        char *pass = NULL;
        FILE *f;

        if (strncmp(src, "pass:", 5) == 0)
                return strdup(src + 5);
        if (strncmp(src, "env:", 4) == 0) {
                const char *v = getenv(src + 4);

                if (!v)
                        fprintf(stderr, PROG ": --%s: environment variable '%s' is not set\n", option, src + 4);
                return v ? strdup(v) : NULL;
        }
        if (strcmp(src, "stdin") == 0)
                return read_line(stdin);
        if (strncmp(src, "fd:", 3) == 0)
                f = fdopen(dup(atoi(src + 3)), "r");
        else
                f = fopen(src + 5, "r");
        if (!f) {
                fprintf(stderr, PROG ": --%s: cannot open '%s': %s\n", option, src, strerror(errno));
                return NULL;
        }
        pass = read_line(f);
        fclose(f);
        if (!pass)
                fprintf(stderr, PROG ": --%s: '%s' holds no password line\n", option, src);
        return pass;
}

static void free_pass(char *pass) {
        if (pass)
                OPENSSL_cleanse(pass, strlen(pass));
        free(pass);
}

static int pem_pass_cb(char *buf, int size, int rwflag, void *u) {
        size_t len;

        if (!u)
                return 0;       /* no pass phrase given: never prompt */
        len = strlen(u);
        if (len > (size_t) size)
                len = (size_t) size;
        memcpy(buf, u, len);
        return (int) len;
}

/* Certificates of one PEM (several) or DER (one) file onto certs. */
static int load_certs_file(const char *option, const char *path, STACK_OF(X509) *certs) {
        BIO *bio = BIO_new_file(path, "rb");
        X509 *cert;
        int n = 0;

        if (!bio) {
                fprintf(stderr, PROG ": --%s: cannot open '%s': %s\n", option, path, strerror(errno));
                return -1;
        }
        ERR_set_mark();
        while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
                sk_X509_push(certs, cert);
                n++;
        }
        if (n == 0 && BIO_reset(bio) == 0 && (cert = d2i_X509_bio(bio, NULL)) != NULL) {
                sk_X509_push(certs, cert);
                n++;
        }
        ERR_pop_to_mark();
        BIO_free(bio);
        if (n == 0) {
                fprintf(stderr, PROG ": --%s: no certificate in '%s' (PEM or DER expected)\n", option, path);
                return -1;
        }
        return 0;
}

/* A comma-separated list of files, like openssl cmp. */
static STACK_OF(X509) *load_certs(const char *option, const char *list) {
        STACK_OF(X509) *certs = sk_X509_new_null();
        char *copy = strdup(list), *save = NULL;

        if (!certs || !copy)
                goto fail;
        for (char *path = strtok_r(copy, ",", &save); path; path = strtok_r(NULL, ",", &save))
                if (load_certs_file(option, path, certs) < 0)
                        goto fail;
        free(copy);
        return certs;
fail:
        free(copy);
        sk_X509_pop_free(certs, X509_free);
        return NULL;
}

static X509 *load_cert(const char *option, const char *path) {
        STACK_OF(X509) *certs = load_certs(option, path);
        X509 *cert;

        if (!certs)
                return NULL;
        cert = sk_X509_shift(certs);
        sk_X509_pop_free(certs, X509_free);
        return cert;
}

static X509_STORE *load_store(const char *option, const char *list) {
        STACK_OF(X509) *certs = load_certs(option, list);
        X509_STORE *store;

        if (!certs)
                return NULL;
        store = X509_STORE_new();
        for (int i = 0; store && i < sk_X509_num(certs); i++) {
                if (!X509_STORE_add_cert(store, sk_X509_value(certs, i))) {
                        X509_STORE_free(store);
                        store = NULL;
                }
        }
        sk_X509_pop_free(certs, X509_free);
        return store;
}

static EVP_PKEY *read_key(BIO *bio, const char *pass, bool allow_public, int *priv) {
        EVP_PKEY *pkey;

        *priv = 1;
        if ((pkey = PEM_read_bio_PrivateKey(bio, NULL, pem_pass_cb, (void *) pass)) != NULL)
                return pkey;
        if (BIO_reset(bio) == 0 && (pkey = d2i_PrivateKey_bio(bio, NULL)) != NULL)
                return pkey;
        if (!allow_public)
                return NULL;
        *priv = 0;
        if (BIO_reset(bio) == 0 && (pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) != NULL)
                return pkey;
        if (BIO_reset(bio) == 0 && (pkey = d2i_PUBKEY_bio(bio, NULL)) != NULL)
                return pkey;
        return NULL;
}

static EVP_PKEY *load_key(const char *option, const char *path, const char *pass_src,
                          bool allow_public, int *priv) {
        char *pass = NULL;
        EVP_PKEY *pkey = NULL;
        BIO *bio;

        if (pass_src && !(pass = pass_from_source(option, pass_src)))
                return NULL;
        bio = BIO_new_file(path, "rb");
        if (!bio) {
                fprintf(stderr, PROG ": --%s: cannot open '%s': %s\n", option, path, strerror(errno));
                goto out;
        }
        ERR_set_mark();
        pkey = read_key(bio, pass, allow_public, priv);
        ERR_pop_to_mark();
        if (!pkey)
                fprintf(stderr, PROG ": --%s: cannot read a key from '%s'%s\n", option, path,
                        pass ? " (wrong pass phrase?)" : " (encrypted? give its pass phrase)");
        BIO_free(bio);
out:
        free_pass(pass);
        return pkey;
}

static X509_REQ *load_csr(const char *path) {
        BIO *bio = BIO_new_file(path, "rb");
        X509_REQ *csr;

        if (!bio) {
                fprintf(stderr, PROG ": --csr: cannot open '%s': %s\n", path, strerror(errno));
                return NULL;
        }
        ERR_set_mark();
        csr = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
        if (!csr && BIO_reset(bio) == 0)
                csr = d2i_X509_REQ_bio(bio, NULL);
        ERR_pop_to_mark();
        BIO_free(bio);
        if (!csr)
                fprintf(stderr, PROG ": --csr: no PKCS#10 request in '%s' (PEM or DER expected)\n", path);
        return csr;
}

/* "/CN=x/O=y+OU=z" (openssl's -subject form) or RFC 4514 "O=y+OU=z,CN=x" */
static X509_NAME *parse_dn(const char *option, const char *text) {
        char why[512];
        X509_NAME *name = dn_text_parse(text, why, sizeof why);

        if (!name)
                fprintf(stderr, PROG ": --%s: %s\n", option, why);
        return name;
}

/* ---- context setup ------------------------------------------------------ */

static int set_int_option(OSSL_CMP_CTX *ctx, int option, int value) {
        return OSSL_CMP_CTX_set_option(ctx, option, value) ? 0 : SETUP_FAIL;
}

static int setup_name(OSSL_CMP_CTX *ctx, const char *option, const char *text,
                      int (*set1)(OSSL_CMP_CTX *, const X509_NAME *)) {
        X509_NAME *name;
        int ok;

        if (!text)
                return 0;
        name = parse_dn(option, text);
        if (!name)
                return SETUP_USAGE;
        ok = set1(ctx, name);
        X509_NAME_free(name);
        return ok ? 0 : SETUP_FAIL;
}

static int add_untrusted(OSSL_CMP_CTX *ctx, STACK_OF(X509) *certs) {
        STACK_OF(X509) *untrusted = OSSL_CMP_CTX_get0_untrusted(ctx);

        if (sk_X509_num(certs) == 0)
                return 0;
        if (untrusted)
                return X509_add_certs(untrusted, certs, X509_ADD_FLAG_UP_REF | X509_ADD_FLAG_NO_DUP) ? 0 : SETUP_FAIL;
        return OSSL_CMP_CTX_set1_untrusted(ctx, certs) ? 0 : SETUP_FAIL;
}

static int setup_secret(OSSL_CMP_CTX *ctx, const struct args *a) {
        char *secret;
        int ok;

        if (a->ref && !OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *) a->ref, (int) strlen(a->ref)))
                return SETUP_FAIL;
        if (!a->secret)
                return 0;
        secret = pass_from_source("secret", a->secret);
        if (!secret)
                return SETUP_FAIL;
        ok = OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *) secret, (int) strlen(secret));
        free_pass(secret);
        return ok ? 0 : SETUP_FAIL;
}

static int setup_signer(OSSL_CMP_CTX *ctx, const struct args *a) {
        STACK_OF(X509) *certs;
        X509 *cert;
        EVP_PKEY *pkey;
        int priv, r = 0;

        if (a->cert) {
                certs = load_certs("cert", a->cert);
                if (!certs)
                        return SETUP_FAIL;
                cert = sk_X509_shift(certs);
                if (!OSSL_CMP_CTX_set1_cert(ctx, cert))
                        r = SETUP_FAIL;
                X509_free(cert);
                if (r == 0)
                        r = add_untrusted(ctx, certs);  /* further certs: chain */
                sk_X509_pop_free(certs, X509_free);
                if (r < 0)
                        return r;
        }
        if (a->key) {
                pkey = load_key("key", a->key, a->keypass, false, &priv);
                if (!pkey)
                        return SETUP_FAIL;
                r = OSSL_CMP_CTX_set1_pkey(ctx, pkey) ? 0 : SETUP_FAIL;
                EVP_PKEY_free(pkey);
        }
        return r;
}

static int setup_extracerts(OSSL_CMP_CTX *ctx, const struct args *a) {
        STACK_OF(X509) *certs;
        int ok;

        if (!a->extracerts)
                return 0;
        certs = load_certs("extracerts", a->extracerts);
        if (!certs)
                return SETUP_FAIL;
        ok = OSSL_CMP_CTX_set1_extraCertsOut(ctx, certs);
        sk_X509_pop_free(certs, X509_free);
        return ok ? 0 : SETUP_FAIL;
}

static int setup_algorithms(OSSL_CMP_CTX *ctx, const struct args *a) {
        if (a->digest) {
                const EVP_MD *md = EVP_get_digestbyname(a->digest);

                if (!md) {
                        usage_error("--digest: unknown digest '%s'", a->digest);
                        return SETUP_USAGE;
                }
                if (set_int_option(ctx, OSSL_CMP_OPT_DIGEST_ALGNID, EVP_MD_get_type(md)) < 0)
                        return SETUP_FAIL;
        }
        if (a->mac) {
                int nid = OBJ_sn2nid(a->mac);

                if (nid == NID_undef)
                        nid = OBJ_ln2nid(a->mac);
                if (nid == NID_undef) {
                        usage_error("--mac: unknown MAC algorithm '%s'", a->mac);
                        return SETUP_USAGE;
                }
                if (set_int_option(ctx, OSSL_CMP_OPT_MAC_ALGNID, nid) < 0)
                        return SETUP_FAIL;
        }
        return 0;
}

static int setup_client_auth(OSSL_CMP_CTX *ctx, const struct args *a) {
        int r;

        if ((r = setup_secret(ctx, a)) < 0 || (r = setup_signer(ctx, a)) < 0 ||
            (r = setup_extracerts(ctx, a)) < 0 || (r = setup_algorithms(ctx, a)) < 0)
                return r;
        if (a->unprotected_requests)
                return set_int_option(ctx, OSSL_CMP_OPT_UNPROTECTED_SEND, 1);
        return 0;
}

static int setup_server_auth(OSSL_CMP_CTX *ctx, const struct args *a) {
        STACK_OF(X509) *certs;
        X509_STORE *store;
        X509 *cert;
        int r;

        if (a->trusted) {
                store = load_store("trusted", a->trusted);
                if (!store || !OSSL_CMP_CTX_set0_trustedStore(ctx, store)) {
                        X509_STORE_free(store);
                        return SETUP_FAIL;
                }
        }
        if (a->untrusted) {
                certs = load_certs("untrusted", a->untrusted);
                if (!certs)
                        return SETUP_FAIL;
                r = add_untrusted(ctx, certs);
                sk_X509_pop_free(certs, X509_free);
                if (r < 0)
                        return r;
        }
        if (a->srvcert) {
                cert = load_cert("srvcert", a->srvcert);
                r = cert && OSSL_CMP_CTX_set1_srvCert(ctx, cert) ? 0 : SETUP_FAIL;
                X509_free(cert);
                if (r < 0)
                        return r;
        }
        if ((r = setup_name(ctx, "recipient", a->recipient, OSSL_CMP_CTX_set1_recipient)) < 0 ||
            (r = setup_name(ctx, "expect_sender", a->expect_sender, OSSL_CMP_CTX_set1_expected_sender)) < 0)
                return r;
        if (a->ignore_keyusage && set_int_option(ctx, OSSL_CMP_OPT_IGNORE_KEYUSAGE, 1) < 0)
                return SETUP_FAIL;
        if (a->unprotected_errors && set_int_option(ctx, OSSL_CMP_OPT_UNPROTECTED_ERRORS, 1) < 0)
                return SETUP_FAIL;
        return 0;
}

static int push_san(OSSL_CMP_CTX *ctx, const char *text) {
        GENERAL_NAME *gn;
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(text);
        int type = ip ? GEN_IPADD : strstr(text, "://") ? GEN_URI : GEN_DNS;
        int ok;

        ASN1_OCTET_STRING_free(ip);
        gn = a2i_GENERAL_NAME(NULL, NULL, NULL, type, text, 0);
        if (!gn) {
                usage_error("--sans: cannot use '%s' as a subject alternative name", text);
                return SETUP_USAGE;
        }
        ok = OSSL_CMP_CTX_push1_subjectAltName(ctx, gn);
        GENERAL_NAME_free(gn);
        return ok ? 0 : SETUP_FAIL;
}

static int setup_sans(OSSL_CMP_CTX *ctx, const struct args *a) {
        char *copy, *save = NULL;
        int r = 0;

        if (a->san_nodefault && set_int_option(ctx, OSSL_CMP_OPT_SUBJECTALTNAME_NODEFAULT, 1) < 0)
                return SETUP_FAIL;
        if (!a->sans)
                return 0;
        copy = strdup(a->sans);
        if (!copy)
                return SETUP_FAIL;
        for (char *s = strtok_r(copy, ", ", &save); s && r == 0; s = strtok_r(NULL, ", ", &save)) {
                if (strcmp(s, "critical") == 0)
                        r = set_int_option(ctx, OSSL_CMP_OPT_SUBJECTALTNAME_CRITICAL, 1);
                else
                        r = push_san(ctx, s);
        }
        free(copy);
        return r;
}

static int setup_newkey(OSSL_CMP_CTX *ctx, const struct args *a) {
        EVP_PKEY *pkey;
        int priv;

        if (!a->newkey)
                return 0;
        pkey = load_key("newkey", a->newkey, a->newkeypass, true, &priv);
        if (!pkey)
                return SETUP_FAIL;
        if (!OSSL_CMP_CTX_set0_newPkey(ctx, priv, pkey)) {
                EVP_PKEY_free(pkey);
                return SETUP_FAIL;
        }
        return 0;
}

static int setup_oldcert_csr(OSSL_CMP_CTX *ctx, const struct args *a) {
        X509_REQ *csr;
        X509 *cert;
        int ok;

        if (a->oldcert) {
                cert = load_cert("oldcert", a->oldcert);
                ok = cert && OSSL_CMP_CTX_set1_oldCert(ctx, cert);
                X509_free(cert);
                if (!ok)
                        return SETUP_FAIL;
        }
        if (a->csr) {
                csr = load_csr(a->csr);
                ok = csr && OSSL_CMP_CTX_set1_p10CSR(ctx, csr);
                X509_REQ_free(csr);
                if (!ok)
                        return SETUP_FAIL;
        }
        return 0;
}

static int setup_infotype(OSSL_CMP_CTX *ctx, const struct args *a) {
        char id[128];
        OSSL_CMP_ITAV *itav;
        int nid;

        if (!a->infotype)
                return 0;
        /* like openssl cmp: the name without its "id-it-" prefix */
        snprintf(id, sizeof id, "id-it-%s", a->infotype);
        nid = OBJ_sn2nid(id);
        if (nid == NID_undef)
                nid = OBJ_txt2nid(a->infotype);
        if (nid == NID_undef) {
                usage_error("--infotype: unknown InfoType '%s' (e.g. signKeyPairTypes)", a->infotype);
                return SETUP_USAGE;
        }
        itav = OSSL_CMP_ITAV_create(OBJ_nid2obj(nid), NULL);
        if (!itav || !OSSL_CMP_CTX_push0_genm_ITAV(ctx, itav)) {
                OSSL_CMP_ITAV_free(itav);
                return SETUP_FAIL;
        }
        return 0;
}

static int setup_request(OSSL_CMP_CTX *ctx, const struct args *a) {
        X509_STORE *out_trusted;
        int r;

        if ((r = setup_newkey(ctx, a)) < 0 ||
            (r = setup_name(ctx, "subject", a->subject, OSSL_CMP_CTX_set1_subjectName)) < 0 ||
            (r = setup_name(ctx, "issuer", a->issuer, OSSL_CMP_CTX_set1_issuer)) < 0 ||
            (r = setup_sans(ctx, a)) < 0 || (r = setup_oldcert_csr(ctx, a)) < 0 ||
            (r = setup_infotype(ctx, a)) < 0)
                return r;
        if ((a->days >= 0 && set_int_option(ctx, OSSL_CMP_OPT_VALIDITY_DAYS, a->days) < 0) ||
            (a->popo != -2 && set_int_option(ctx, OSSL_CMP_OPT_POPO_METHOD, a->popo) < 0) ||
            (a->revreason != -2 && set_int_option(ctx, OSSL_CMP_OPT_REVOCATION_REASON, a->revreason) < 0) ||
            (a->implicit_confirm && set_int_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, 1) < 0) ||
            (a->disable_confirm && set_int_option(ctx, OSSL_CMP_OPT_DISABLE_CONFIRM, 1) < 0))
                return SETUP_FAIL;
        /* like openssl cmp: check the new certificate (key match, --out_trusted) before certConf */
        if (!OSSL_CMP_CTX_set_certConf_cb(ctx, OSSL_CMP_certConf_cb))
                return SETUP_FAIL;
        if (!a->out_trusted)
                return 0;
        out_trusted = load_store("out_trusted", a->out_trusted);
        if (!out_trusted)
                return SETUP_FAIL;
        if (!OSSL_CMP_CTX_set_certConf_cb_arg(ctx, out_trusted)) {
                X509_STORE_free(out_trusted);
                return SETUP_FAIL;
        }
        return 0;
}

static int cmp_log(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg) {
        const char *tag = level <= OSSL_CMP_LOG_ERR ? "error: " :
                          level == OSSL_CMP_LOG_WARNING ? "warning: " :
                          level >= OSSL_CMP_LOG_DEBUG ? "debug: " : "";
        size_t len = strlen(msg);

        while (len > 0 && msg[len - 1] == '\n')
                len--;
        fprintf(stderr, PROG ": %s%.*s\n", tag, (int) len, msg);
        return 1;
}

static int setup_transfer_options(OSSL_CMP_CTX *ctx, const struct args *a, struct coap_transfer *t) {
        if (!OSSL_CMP_CTX_set_log_cb(ctx, cmp_log) ||
            !OSSL_CMP_CTX_set_log_verbosity(ctx, a->verbosity) ||
            !OSSL_CMP_CTX_set_transfer_cb(ctx, coap_transfer_cmp_cb) ||
            !OSSL_CMP_CTX_set_transfer_cb_arg(ctx, t))
                return SETUP_FAIL;
        if (a->msg_timeout >= 0 && set_int_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT, a->msg_timeout) < 0)
                return SETUP_FAIL;
        if (a->total_timeout >= 0 && set_int_option(ctx, OSSL_CMP_OPT_TOTAL_TIMEOUT, a->total_timeout) < 0)
                return SETUP_FAIL;
        return 0;
}

/* ---- results ------------------------------------------------------------ */

static int save_certs(const char *option, const char *path, STACK_OF(X509) *certs) {
        FILE *f;
        int ok = 1;

        if (!path)
                return 0;
        if (sk_X509_num(certs) <= 0) {
                fprintf(stderr, PROG ": no certificates received for --%s; '%s' not written\n", option, path);
                return 0;
        }
        f = fopen(path, "w");
        if (!f) {
                fprintf(stderr, PROG ": --%s: cannot write '%s': %s\n", option, path, strerror(errno));
                return -1;
        }
        for (int i = 0; ok && i < sk_X509_num(certs); i++)
                ok = PEM_write_X509(f, sk_X509_value(certs, i));
        if (fclose(f) != 0 || !ok) {
                fprintf(stderr, PROG ": --%s: cannot write '%s'\n", option, path);
                return -1;
        }
        return 0;
}

static int save_free_certs(const char *option, const char *path, STACK_OF(X509) *certs) {
        int r = save_certs(option, path, certs);

        sk_X509_pop_free(certs, X509_free);
        return r;
}

static int save_new_cert(OSSL_CMP_CTX *ctx, const struct args *a) {
        STACK_OF(X509) *one = sk_X509_new_null();
        int r;

        if (!one)
                return -1;
        sk_X509_push(one, OSSL_CMP_CTX_get0_newCert(ctx));
        r = save_certs("certout", a->certout, one);
        sk_X509_free(one);      /* the certificate belongs to ctx */
        if (save_free_certs("chainout", a->chainout, OSSL_CMP_CTX_get1_newChain(ctx)) < 0 ||
            save_free_certs("cacertsout", a->cacertsout, OSSL_CMP_CTX_get1_caPubs(ctx)) < 0)
                r = -1;
        return r;
}

static void print_itavs(STACK_OF(OSSL_CMP_ITAV) *itavs) {
        for (int i = 0; i < sk_OSSL_CMP_ITAV_num(itavs); i++) {
                OSSL_CMP_ITAV *itav = sk_OSSL_CMP_ITAV_value(itavs, i);
                ASN1_TYPE *value = OSSL_CMP_ITAV_get0_value(itav);
                char name[128];

                OBJ_obj2txt(name, sizeof name, OSSL_CMP_ITAV_get0_type(itav), 0);
                printf("%s%s%s\n", name, value ? ": " : "",
                       value ? ASN1_tag2str(ASN1_TYPE_get(value)) : "");
        }
}

static bool run_command(OSSL_CMP_CTX *ctx, enum command cmd) {
        STACK_OF(OSSL_CMP_ITAV) *itavs;

        switch (cmd) {
        case CMD_IR:
                return OSSL_CMP_exec_IR_ses(ctx) != NULL;
        case CMD_CR:
                return OSSL_CMP_exec_CR_ses(ctx) != NULL;
        case CMD_P10CR:
                return OSSL_CMP_exec_P10CR_ses(ctx) != NULL;
        case CMD_KUR:
                return OSSL_CMP_exec_KUR_ses(ctx) != NULL;
        case CMD_RR:
                return OSSL_CMP_exec_RR_ses(ctx) == 1;
        case CMD_GENM:
                itavs = OSSL_CMP_exec_GENM_ses(ctx);
                if (!itavs)
                        return false;
                print_itavs(itavs);
                sk_OSSL_CMP_ITAV_pop_free(itavs, OSSL_CMP_ITAV_free);
                return true;
        default:
                return false;
        }
}

/* One line naming what failed, then OpenSSL's error queue. */
static void report_failure(OSSL_CMP_CTX *ctx, const struct coap_transfer *t, enum command cmd) {
        const char *transfer_error = coap_transfer_error(t);
        int status = OSSL_CMP_CTX_get_status(ctx);
        char buf[512];
        unsigned long e;

        if (*transfer_error) {
                fprintf(stderr, PROG ": %s\n", transfer_error);
        } else if (status >= OSSL_CMP_PKISTATUS_rejection &&
                   OSSL_CMP_CTX_snprint_PKIStatus(ctx, buf, sizeof buf)) {
                fprintf(stderr, PROG ": %s refused by the server: %s\n", command_names[cmd], buf);
        } else if ((e = ERR_peek_last_error()) != 0) {
                fprintf(stderr, PROG ": %s failed: %s\n", command_names[cmd], ERR_reason_error_string(e));
        } else {
                fprintf(stderr, PROG ": %s failed\n", command_names[cmd]);
        }
        OSSL_CMP_CTX_print_errors(ctx);
}

static int setup_ctx(OSSL_CMP_CTX *ctx, const struct args *a, struct coap_transfer *t) {
        int r;

        if ((r = setup_transfer_options(ctx, a, t)) < 0 || (r = setup_client_auth(ctx, a)) < 0 ||
            (r = setup_server_auth(ctx, a)) < 0 || (r = setup_request(ctx, a)) < 0)
                return r;
        return 0;
}

/* --psk-key: text, 0xHEX, or file:PATH whose first line is either */
static int psk_key_bytes(const char *src, uint8_t *out, size_t *len) {
        char *line = NULL;
        const char *k = src;
        size_t n;
        int r = -1;

        if (strncmp(src, "file:", 5) == 0) {
                FILE *f = fopen(src + 5, "re");
                if (!f) {
                        fprintf(stderr, PROG ": --psk-key: cannot open '%s': %s\n", src + 5, strerror(errno));
                        return -1;
                }
                line = read_line(f);
                fclose(f);
                if (!line) {
                        fprintf(stderr, PROG ": --psk-key: '%s' holds no key line\n", src + 5);
                        return -1;
                }
                k = line;
        }
        n = strlen(k);
        if (n > 2 && k[0] == '0' && (k[1] == 'x' || k[1] == 'X')) {
                long got = 0;
                unsigned char *bin = OPENSSL_hexstr2buf(k + 2, &got);
                if (bin && got > 0 && got <= 64) {
                        memcpy(out, bin, (size_t) got);
                        *len = (size_t) got;
                        r = 0;
                }
                OPENSSL_clear_free(bin, bin ? (size_t) got : 0);
                ERR_clear_error();
        } else if (n > 0 && n <= 64) {
                memcpy(out, k, n);
                *len = n;
                r = 0;
        }
        if (r < 0)
                fprintf(stderr, PROG ": --psk-key: the key must be 1 to 64 bytes of text, or 0x and hex digits\n");
        if (line)
                OPENSSL_cleanse(line, strlen(line));
        free(line);
        return r;
}

static struct coap_transfer *transfer_new(const struct args *a, const char *uri, const char *path,
                                          const char *default_path) {
        uint8_t key[64];
        struct coap_transfer_config cfg = {
                .block_size = (unsigned) a->block_size,
                .timeout = (unsigned) a->timeout,
                .default_path = default_path,
                .path = path,
                .reqout = a->reqout,
                .rspout = a->rspout,
                .verbosity = a->verbosity,
                .psk_identity = a->psk_identity,
                .tls_cert = a->tls_cert,
                .tls_key = a->tls_key,
                .tls_trusted = a->tls_trusted,
                .servername = a->servername,
        };
        struct coap_transfer *t;
        char err[512];

        if (a->psk_key) {
                if (psk_key_bytes(a->psk_key, key, &cfg.psk_key_len) < 0)
                        return NULL;
                cfg.psk_key = key;
        }
        t = coap_transfer_new(uri, &cfg, err, sizeof err);
        OPENSSL_cleanse(key, sizeof key);
        if (!t)
                fprintf(stderr, PROG ": --server: %s\n", err);
        return t;
}

static int run_cmp(const struct args *a) {
        OSSL_CMP_CTX *ctx = NULL;
        struct coap_transfer *t;
        int r, status = EXIT_FAIL;

        /* RFC 9482 §2.1: /.well-known/cmp unless the URI names a path */
        t = transfer_new(a, a->server, NULL, ".well-known/cmp");
        if (!t)
                return EXIT_FAIL;
        ctx = OSSL_CMP_CTX_new(NULL, NULL);
        if (!ctx) {
                fprintf(stderr, PROG ": cannot create the CMP context\n");
                goto out;
        }
        r = setup_ctx(ctx, a, t);
        if (r < 0) {
                status = r == SETUP_USAGE ? EXIT_USAGE : EXIT_FAIL;
                if (r == SETUP_FAIL)
                        ERR_print_errors_fp(stderr);
                goto out;
        }
        if (!run_command(ctx, a->command)) {
                report_failure(ctx, t, a->command);
                save_free_certs("extracertsout", a->extracertsout, OSSL_CMP_CTX_get1_extraCertsIn(ctx));
                goto out;
        }
        status = EXIT_OK;
        if (save_free_certs("extracertsout", a->extracertsout, OSSL_CMP_CTX_get1_extraCertsIn(ctx)) < 0)
                status = EXIT_FAIL;
        if (a->command != CMD_RR && a->command != CMD_GENM && save_new_cert(ctx, a) < 0)
                status = EXIT_FAIL;
out:
        OSSL_CMP_CTX_free(ctx);
        coap_transfer_free(t);
        return status;
}

/* ---- discover ----------------------------------------------------------- */

/* Does a link's attribute list (after '>') carry ct=259, maybe among
 * several space-separated values (RFC 7252 §7.2.1)? */
static bool link_has_cmp_ct(const char *attrs, size_t len) {
        const char *end = attrs + len;

        for (const char *p = attrs; p < end; p++) {
                char value[64];
                size_t n = 0;

                if (*p != ';' || (size_t) (end - p) < 4 || strncmp(p + 1, "ct=", 3) != 0)
                        continue;
                for (p += 4; p < end && *p != ';' && n < sizeof value - 1; p++)
                        if (*p != '"')
                                value[n++] = *p;
                value[n] = '\0';
                p--;
                for (char *save = NULL, *v = strtok_r(value, " ", &save); v; v = strtok_r(NULL, " ", &save))
                        if (strcmp(v, "259") == 0)
                                return true;
        }
        return false;
}

/* Prints each link of a CoRE Link Format body (RFC 6690) with ct=259. */
static int print_cmp_links(const uint8_t *body, size_t len) {
        const char *s = (const char *) body, *end = s + len;
        int found = 0;

        while (s < end) {
                const char *p = s, *gt = NULL;
                bool quoted = false, in_uri = false;

                for (; p < end; p++) {
                        if (*p == '"' && !in_uri)
                                quoted = !quoted;
                        else if (*p == '<' && !quoted)
                                in_uri = true;
                        else if (*p == '>' && in_uri)
                                in_uri = false, gt = gt ? gt : p;
                        else if (*p == ',' && !quoted && !in_uri)
                                break;
                }
                if (gt && link_has_cmp_ct(gt + 1, (size_t) (p - gt - 1))) {
                        printf("%.*s\n", (int) (p - s), s);
                        found++;
                }
                s = p + 1;
        }
        return found;
}

static int run_discover(const struct args *a) {
        struct coap_transfer_response rsp = { .content_format = -1 };
        const char *uri = a->discover_uri ? a->discover_uri : a->server;
        struct coap_transfer *t;
        char text[512];
        int status = EXIT_FAIL;

        /* RFC 9482 §2.2, RFC 6690: resource discovery at /.well-known/core;
         * a --server URI's CMP path is not the discovery resource */
        t = transfer_new(a, uri, a->discover_uri ? NULL : ".well-known/core", ".well-known/core");
        if (!t)
                return EXIT_FAIL;
        if (coap_transfer_request(t, COAP_REQUEST_CODE_GET, -1, NULL, 0, &rsp) < 0) {
                fprintf(stderr, PROG ": discover: %s\n", coap_transfer_error(t));
                goto out;
        }
        if (rsp.code / 100 != 2) {
                coap_transfer_describe(&rsp, text, sizeof text);
                fprintf(stderr, PROG ": discover: %s\n", text);
                goto out;
        }
        if (print_cmp_links(rsp.body, rsp.body_len) > 0)
                status = EXIT_OK;
        else
                fprintf(stderr, PROG ": discover: %s lists no resource with ct=259 (application/pkixcmp)\n", uri);
out:
        coap_transfer_response_clear(&rsp);
        coap_transfer_free(t);
        return status;
}

/* ---- observe: announcements (RFC 9482 §2.6) ---------------------------- */


static const char *const crl_reasons[] = {
        "unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
        "cessationOfOperation", "certificateHold", "7", "removeFromCRL", "privilegeWithdrawn",
        "aACompromise",
};

struct observe_state {
        const struct args *args;
        unsigned received;      /* announcements printed */
        unsigned char last_sha[32];
        bool have_last;
        int status;
};

static void print_name(const char *label, const X509_NAME *name) {
        printf(" %s=\"", label);
        X509_NAME_print_ex_fp(stdout, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
        putchar('"');
}

static void print_time(const char *label, const ASN1_TIME *tm) {
        struct tm t;

        if (!tm || !ASN1_TIME_to_tm(tm, &t))
                return;
        printf(" %s=%04d-%02d-%02dT%02d:%02d:%02dZ", label, t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
               t.tm_hour, t.tm_min, t.tm_sec);
}

static void print_integer(const char *label, const ASN1_INTEGER *i) {
        BIGNUM *bn = i ? ASN1_INTEGER_to_BN(i, NULL) : NULL;
        char *hex = bn ? BN_bn2hex(bn) : NULL;

        if (hex)
                printf(" %s=%s", label, hex);
        OPENSSL_free(hex);
        BN_free(bn);
}

static void print_cert_facts(const char *what, const X509 *x) {
        printf("  %s", what);
        print_name("subject", X509_get_subject_name(x));
        print_name("issuer", X509_get_issuer_name(x));
        print_integer("serial", X509_get0_serialNumber(x));
        print_time("notAfter", X509_get0_notAfter(x));
        putchar('\n');
}

static void print_crl_facts(X509_CRL *crl) {
        STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);
        ASN1_INTEGER *number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);

        printf("  crl");
        print_name("issuer", X509_CRL_get_issuer(crl));
        if (number)
                print_integer("number", number);
        printf(" revoked=%d", revoked ? sk_X509_REVOKED_num(revoked) : 0);
        print_time("thisUpdate", X509_CRL_get0_lastUpdate(crl));
        print_time("nextUpdate", X509_CRL_get0_nextUpdate(crl));
        putchar('\n');
        ASN1_INTEGER_free(number);
}

static void print_rann_facts(const CMPGW_RANN *r) {
        const X509_NAME *issuer = OSSL_CRMF_CERTID_get0_issuer(r->cert_id);    /* its directoryName */
        int reason = -1;

        printf("  rann");
        print_integer("serial", OSSL_CRMF_CERTID_get0_serialNumber(r->cert_id));
        if (issuer)
                print_name("issuer", issuer);
        printf(" status=%ld", ASN1_INTEGER_get(r->status));
        for (int i = 0; i < sk_X509_EXTENSION_num(r->crl_details); i++) {
                X509_EXTENSION *ext = sk_X509_EXTENSION_value(r->crl_details, i);
                if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) == NID_crl_reason) {
                        ASN1_ENUMERATED *e = X509V3_EXT_d2i(ext);
                        if (e)
                                reason = (int) ASN1_ENUMERATED_get(e);
                        ASN1_ENUMERATED_free(e);
                }
        }
        if (reason >= 0 && reason <= 10)
                printf(" reason=%s", crl_reasons[reason]);
        print_time("willBeRevokedAt", r->will_be_revoked_at);
        print_time("badSinceDate", r->bad_since_date);
        putchar('\n');
}

static bool is_announcement(int body) {
        return body >= CMP_BODY_CKUANN && body <= CMP_BODY_CRLANN;    /* RFC 4210 §5.1.2: [15]..[18] */
}

/* The key facts of an announcement body, one indented line each. */
static void print_ann_facts(const uint8_t *der, size_t len) {
        const unsigned char *p = der;
        CMPGW_MSG *m = (CMPGW_MSG *) ASN1_item_d2i(NULL, &p, (long) len, ASN1_ITEM_rptr(CMPGW_MSG));

        if (!m || p != der + len) {
                printf("  (contents not decoded)\n");
                goto out;
        }
        switch (m->body->type) {       /* the selector is the PKIBody tag */
        case CMP_BODY_CKUANN:
                print_cert_facts("ckuann oldWithNew", m->body->value.ckuann->old_with_new);
                print_cert_facts("ckuann newWithOld", m->body->value.ckuann->new_with_old);
                print_cert_facts("ckuann newWithNew", m->body->value.ckuann->new_with_new);
                break;
        case CMP_BODY_CANN:
                print_cert_facts("cann", m->body->value.cann);
                break;
        case CMP_BODY_RANN:
                print_rann_facts(m->body->value.rann);
                break;
        case CMP_BODY_CRLANN:
                for (int i = 0; i < sk_X509_CRL_num(m->body->value.crlann); i++)
                        print_crl_facts(sk_X509_CRL_value(m->body->value.crlann, i));
                break;
        default:
                break;
        }
out:
        ASN1_item_free((ASN1_VALUE *) m, ASN1_ITEM_rptr(CMPGW_MSG));
        ERR_clear_error();
}

static int write_ann(const char *dir, unsigned n, const uint8_t *der, size_t len) {
        char path[PATH_MAX];
        FILE *f;
        int ok;

        if (snprintf(path, sizeof path, "%s/ann-%u.der", dir, n) >= (int) sizeof path) {
                fprintf(stderr, PROG ": --out-dir: path too long\n");
                return -1;
        }
        f = fopen(path, "wb");
        ok = f && fwrite(der, 1, len, f) == len;
        if (f && fclose(f) != 0)
                ok = 0;
        if (!ok) {
                fprintf(stderr, PROG ": --out-dir: cannot write '%s': %s\n", path, strerror(errno));
                return -1;
        }
        return 0;
}

static int on_announcement(void *arg, const struct coap_transfer_response *rsp, bool observing,
                           bool registration) {
        struct observe_state *st = arg;
        const struct args *a = st->args;
        unsigned char sha[32];
        char hex[65];
        const unsigned char *p = rsp->body;
        OSSL_CMP_MSG *msg;
        int type = -1;

        if (rsp->body_len == 0) {
                if (a->verbosity >= 6)
                        fprintf(stderr, PROG ": %d.%02d without a body: no announcement yet\n",
                                rsp->code / 100, rsp->code % 100);
                return 0;
        }
        SHA256(rsp->body, rsp->body_len, sha);
        if (st->have_last && memcmp(sha, st->last_sha, sizeof sha) == 0) {
                /* a re-registration answers the announcement we already have */
                if (a->verbosity >= 7)
                        fprintf(stderr, PROG ": DEBUG: the same announcement again (not counted)\n");
                return 0;
        }
        memcpy(st->last_sha, sha, sizeof sha);
        st->have_last = true;
        st->received++;
        for (int i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", sha[i]);
        msg = d2i_OSSL_CMP_MSG(NULL, &p, (long) rsp->body_len);
        if (msg && p == rsp->body + rsp->body_len)
                type = OSSL_CMP_MSG_get_bodytype(msg);
        OSSL_CMP_MSG_free(msg);
        ERR_clear_error();
        if (rsp->content_format >= 0 && rsp->content_format != CT_APPLICATION_PKIXCMP)
                fprintf(stderr, PROG ": warning: Content-Format %d, expected %d (application/pkixcmp)\n",
                        rsp->content_format, CT_APPLICATION_PKIXCMP);
        printf("announcement %u: %s, %zu bytes, sha256 %s%s\n", st->received,
               type < 0 ? "not a PKIMessage" :
               type < _CMP_BODY_MAX ? cmp_body_name(type) : "unknown body",
               rsp->body_len, hex, is_announcement(type) ? "" : type < 0 ? "" : " (not an announcement)");
        if (is_announcement(type))
                print_ann_facts(rsp->body, rsp->body_len);
        fflush(stdout);
        if (a->out_dir && write_ann(a->out_dir, st->received, rsp->body, rsp->body_len) < 0) {
                st->status = EXIT_FAIL;
                return 1;
        }
        if (a->count > 0 && st->received >= (unsigned) a->count)
                return 1;
        return 0;
}

/* The ann resource: URI as given (its path, default /.well-known/cmp/ann),
 * or --server's CMP path + "/ann". Returns malloc'd URI and path override. */
static char *observe_uri(const struct args *a) {
        const char *base = a->discover_uri ? a->discover_uri : a->server;
        const char *auth = strstr(base, "://");
        const char *path = auth ? strchr(auth + 3, '/') : NULL;
        size_t n = strlen(base);
        char *uri;

        if (a->discover_uri)
                return strdup(base);
        while (n > 0 && base[n - 1] == '/')
                n--;
        if (!path || (size_t) (path - base) >= n) {
                /* no path: RFC 9482 §2.1/§2.6 */
                if (asprintf(&uri, "%.*s/.well-known/cmp/ann", (int) n, base) < 0)
                        return NULL;
        } else if (asprintf(&uri, "%.*s/ann", (int) n, base) < 0) {
                return NULL;
        }
        return uri;
}

static int run_observe(const struct args *a) {
        struct observe_state st = { .args = a, .status = EXIT_OK };
        struct coap_observe_params params = {
                .reregister_s = a->reregister >= 0 ? (unsigned) a->reregister : 600,
                .retry_max_s = 60,
        };
        struct coap_transfer *t;
        char *uri = observe_uri(a);
        int r;

        if (!uri) {
                fprintf(stderr, PROG ": out of memory\n");
                return EXIT_FAIL;
        }
        if (a->out_dir && access(a->out_dir, W_OK) != 0) {
                fprintf(stderr, PROG ": --out-dir: '%s': %s\n", a->out_dir, strerror(errno));
                free(uri);
                return EXIT_FAIL;
        }
        t = transfer_new(a, uri, NULL, ".well-known/cmp/ann");
        if (!t) {
                free(uri);
                return EXIT_FAIL;
        }
        if (a->verbosity >= 6)
                fprintf(stderr, PROG ": observing %s\n", uri);
        r = coap_transfer_observe(t, &params, on_announcement, &st);
        if (r < 0) {
                fprintf(stderr, PROG ": observe: %s\n", coap_transfer_error(t));
                st.status = EXIT_FAIL;
        } else if (r > 0 && a->count > 0) {
                fprintf(stderr, PROG ": observe: timeout after %u of %d announcements\n", st.received, a->count);
                st.status = EXIT_FAIL;
        }
        coap_transfer_free(t);
        free(uri);
        return st.status;
}

int main(int argc, char **argv) {
        struct args a = {
                .days = -1, .revreason = -2, .popo = -2, .msg_timeout = -1, .total_timeout = -1,
                .verbosity = 6, .block_size = COAP_TRANSFER_BLOCK_MAX, .timeout = -1,
                .reregister = -1,
        };
        int r = parse_args(argc, argv, &a);

        if (r != 0)
                return r > 0 ? EXIT_OK : EXIT_USAGE;
        if (check_args(&a) < 0)
                return EXIT_USAGE;
        if (a.timeout < 0)
                a.timeout = a.command == CMD_OBSERVE ? 0 : 60;
        if (a.command == CMD_DISCOVER)
                return run_discover(&a);
        if (a.command == CMD_OBSERVE)
                return run_observe(&a);
        return run_cmp(&a);
}
