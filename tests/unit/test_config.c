/* Unit tests: cmpgw.json parsing, defaults, error messages and routing */
#include <errno.h>

#include "config.h"
#include "test.h"

/* PRODUCT.md's minimal file, verbatim: valid now and in every later version */
static const char minimal[] =
        "{\n"
        "  \"listen\":    [ { \"uri\": \"coap://127.0.0.1:5683\" } ],\n"
        "  \"upstreams\": [ { \"name\": \"ca\", \"uri\": \"http://127.0.0.1:8080/pkix/\" } ],\n"
        "  \"registry\":  { \"path\": \"/var/lib/cmpgw/registry.db\" },\n"
        "  \"dbus\":      { \"bus\": \"system\" }\n"
        "}\n";

static void expect_error(const char *json, const char *needle) {
        struct cmpgw_config *c = NULL;
        char *err = NULL;
        int r = config_load_string(json, &c, &err);

        CHECK(r < 0);
        CHECK(c == NULL);
        CHECK(err != NULL);
        if (err && !strstr(err, needle)) {
                fprintf(stderr, "error \"%s\" does not mention \"%s\"\n", err, needle);
                test_failures++;
        }
        free(err);
        config_free(c);
}

static struct cmpgw_config *load_ok(const char *json) {
        struct cmpgw_config *c = NULL;
        char *err = NULL;

        if (config_load_string(json, &c, &err) < 0) {
                fprintf(stderr, "unexpected config error: %s\n", err ? err : "?");
                test_failures++;
        }
        free(err);
        return c;
}

static void test_minimal(void) {
        struct cmpgw_config *c = load_ok(minimal);

        if (!c)
                return;
        CHECK_INT(c->n_listen, 1);
        CHECK_STR(c->listen[0].host, "127.0.0.1");
        CHECK_INT(c->listen[0].port, 5683);
        CHECK_INT(c->listen[0].scheme, SCHEME_COAP);
        CHECK_INT(c->n_upstreams, 1);
        CHECK_STR(c->upstreams[0].name, "ca");
        CHECK_INT(c->upstreams[0].timeout_usec, 30000000);
        CHECK_INT(c->upstreams[0].max_connections, 8);
        CHECK_INT(c->upstreams[0].chunked, CHUNKED_AUTO);
        CHECK_STR(c->registry_path, "/var/lib/cmpgw/registry.db");
        CHECK_INT(c->bus, BUS_SYSTEM);
        /* documented defaults */
        CHECK_INT(c->block_size, 1024);
        CHECK_INT(c->max_message_size, 65536);
        CHECK_INT(c->transfer_timeout_usec, 30000000);
        CHECK_INT(c->unavailable_max_age, 30);
        CHECK(c->renew_share > 0.666 && c->renew_share < 0.667);
        CHECK_INT(c->renew_before_sec, 0);
        /* one upstream: the default route */
        CHECK(config_route(c, "") == &c->upstreams[0]);
        CHECK(config_route(c, "anything") == &c->upstreams[0]);
        config_free(c);
}

static void test_announcement_limits(void) {
        struct cmpgw_config *c = load_ok(
                "{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}], \"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}],"
                " \"announcements\":{\"max_observers\":0,\"max_observers_per_peer\":1,\"refresh\":2}}");

        if (!c)
                return;
        CHECK_INT(c->ann_max_observers, 0);
        CHECK_INT(c->ann_max_observers_per_peer, 1);
        CHECK_INT(c->ann_refresh_sec, 2);
        CHECK(c->ann_trusted == NULL);
        config_free(c);
        /* RFC 7641 §4.5: a Confirmable notification at least every 24 h */
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}],"
                     "\"announcements\":{\"refresh\":86401}}", "announcements.refresh");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}],"
                     "\"announcements\":{\"refresh\":0}}", "announcements.refresh");
}

static void test_defaults_and_options(void) {
        struct cmpgw_config *c = load_ok(
                "{\"listen\":[{\"uri\":\"coap://[::1]\"},{\"uri\":\"coap://0.0.0.0:7000/\"}],"
                " \"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/.well-known/cmp\",\"labels\":[\"x\",\"y\"],\"timeout\":2.5},"
                "                {\"name\":\"b\",\"uri\":\"https://b/\",\"default\":true}],"
                " \"coap\":{\"block_size\":256,\"max_message_size\":4096,\"transfer_timeout\":5,\"unavailable_max_age\":7},"
                " \"dbus\":{\"bus\":\"none\"}, \"announcements\":{\"trusted\":\"/etc/t.pem\"},"
                " \"registry\":{\"path\":\"/tmp/r.db\",\"renew_share\":0.5,\"renew_before\":86400}}");

        if (!c)
                return;
        CHECK_STR(c->listen[0].host, "::1");
        CHECK_INT(c->listen[0].port, 5683);     /* RFC 9482 §2.2 default port */
        CHECK_INT(c->listen[1].port, 7000);
        CHECK_INT(c->upstreams[0].timeout_usec, 2500000);
        CHECK_INT(c->block_size, 256);
        CHECK_INT(c->max_message_size, 4096);
        CHECK_INT(c->transfer_timeout_usec, 5000000);
        CHECK_INT(c->unavailable_max_age, 7);
        CHECK_INT(c->bus, BUS_NONE);
        CHECK_STR(c->ann_trusted, "/etc/t.pem");
        CHECK_INT(c->ann_max_observers, 10000);         /* defaults */
        CHECK_INT(c->ann_max_observers_per_peer, 4);
        CHECK_INT(c->ann_refresh_sec, 43200);
        CHECK_STR(c->registry_path, "/tmp/r.db");
        CHECK(c->renew_share == 0.5);
        CHECK_INT(c->renew_before_sec, 86400);
        CHECK(config_route(c, "x") == &c->upstreams[0]);
        CHECK(config_route(c, "y") == &c->upstreams[0]);
        CHECK(config_route(c, "") == &c->upstreams[1]);
        CHECK(config_route(c, "z") == &c->upstreams[1]);
        config_free(c);
}

static void test_no_default_route(void) {
        struct cmpgw_config *c = load_ok(
                "{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],"
                " \"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\",\"labels\":[\"x\"]},"
                "                {\"name\":\"b\",\"uri\":\"http://b/\",\"labels\":[\"y\"]}]}");

        if (!c)
                return;
        CHECK(config_route(c, "x") == &c->upstreams[0]);
        CHECK(config_route(c, "y") == &c->upstreams[1]);
        CHECK(config_route(c, "") == NULL);
        CHECK(config_route(c, "z") == NULL);
        config_free(c);

        /* one upstream that opts out of being the default */
        c = load_ok("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],"
                    " \"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\",\"labels\":[\"x\"],\"default\":false}]}");
        if (!c)
                return;
        CHECK(config_route(c, "x") == &c->upstreams[0]);
        CHECK(config_route(c, "") == NULL);
        config_free(c);
}

static void test_host_route(void) {
        struct cmpgw_config *c = load_ok(
                "{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],"
                " \"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\",\"hosts\":[\"ca-a.example\"],\"labels\":[\"x\"]},"
                "                {\"name\":\"b\",\"uri\":\"http://b/\",\"default\":true}]}");

        if (!c)
                return;
        CHECK(config_route_host(c, "", "ca-a.example") == &c->upstreams[0]);
        CHECK(config_route_host(c, "", "CA-A.Example") == &c->upstreams[0]);
        CHECK(config_route_host(c, "", "other.example") == &c->upstreams[1]);
        CHECK(config_route_host(c, "", NULL) == &c->upstreams[1]);
        CHECK(config_route_host(c, "x", "other.example") == &c->upstreams[0]);   /* label first */
        config_free(c);
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\",\"hosts\":[\"bad host\"]}]}",
                     "upstreams[0].hosts: element 0");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\",\"chunked\":true}]}",
                     "upstreams[0].chunked: expected \"auto\", \"on\" or \"off\"");
}

static void test_errors(void) {
        expect_error("{", "not valid JSON");
        expect_error("[]", "top level");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}]}", "upstreams: missing");
        expect_error("{\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}]}", "listen: missing");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}],\"bogus\":1}",
                     "bogus: unknown key");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\",\"port\":1}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}]}",
                     "listen[0].port: unknown key");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}],\"coap\":{\"blocksize\":16}}",
                     "coap.blocksize: unknown key");
        expect_error("{\"listen\":[{\"uri\":\"http://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}]}",
                     "listen[0].uri");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1:99999\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}]}",
                     "listen[0].uri");
        expect_error("{\"listen\":[{\"uri\":5683}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}]}",
                     "listen[0].uri: expected a string");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"ftp://a/\"}]}",
                     "upstreams[0].uri");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"coaps://a/\"}]}",
                     "upstreams[0].ca_file: missing");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\",\"ca_file\":\"x\"}]}",
                     "upstreams[0].ca_file: TLS settings belong to https:// and coaps://");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"https://a/\",\"psk_file\":\"x\"}]}",
                     "upstreams[0].psk_file: pre-shared keys are for coaps://");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"coaps://a/\",\"ca_file\":\"x\"}]}",
                     "needs the gateway's certificate");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"uri\":\"http://a/\"}]}",
                     "upstreams[0].name: missing");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\",\"timeout\":\"5\"}]}",
                     "upstreams[0].timeout: expected a number");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}],\"coap\":{\"block_size\":100}}",
                     "coap.block_size: 100 is not a power of two");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}],\"coap\":{\"block_size\":2048}}",
                     "coap.block_size: 2048 is out of range");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}],\"dbus\":{\"bus\":\"user\"}}",
                     "dbus.bus");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}],\"registry\":{\"path\":\"rel.db\"}}",
                     "registry.path");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\",\"labels\":[\"../x\"]}]}",
                     "upstreams[0].labels");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"},{\"name\":\"a\",\"uri\":\"http://b/\"}]}",
                     "used twice");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\",\"labels\":[\"x\"]},{\"name\":\"b\",\"uri\":\"http://b/\",\"labels\":[\"x\"]}]}",
                     "label \"x\" is also routed");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\",\"default\":true},{\"name\":\"b\",\"uri\":\"http://b/\",\"default\":true}]}",
                     "at most one");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}],\"registry\":{\"renew_share\":1.5}}",
                     "registry.renew_share: 1.5 is out of range");
        expect_error("{\"listen\":[],\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}]}", "listen: expected a non-empty array");
}

static void test_file(void) {
        struct cmpgw_config *c = NULL;
        char *err = NULL;

        CHECK_INT(config_load_file("/nonexistent/cmpgw.json", &c, &err), -ENOENT);
        CHECK(err && strstr(err, "/nonexistent/cmpgw.json") && strstr(err, "cannot open"));
        free(err);
}

/* coaps:// listeners (issue 5): default port, credentials, errors naming the key */
#define UP ",\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}]}"
static void test_coaps(void) {
        struct cmpgw_config *c;

        c = load_ok("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"psk_file\":\"/etc/cmpgw/psk.txt\"}]" UP);
        if (c) {
                CHECK_INT(c->listen[0].scheme, SCHEME_COAPS);
                CHECK_INT(c->listen[0].port, 5684);     /* RFC 9482 §2.2 */
                CHECK_STR(c->listen[0].psk_file, "/etc/cmpgw/psk.txt");
                CHECK(c->listen[0].certificate == NULL);
                CHECK_INT(c->listen[0].client_certificate, CLIENT_CERT_NONE);
                config_free(c);
        }
        c = load_ok("{\"listen\":[{\"uri\":\"coaps://[::1]:6000\",\"certificate\":\"/c.pem\",\"private_key\":\"/k.pem\","
                    "\"client_ca\":\"/ca.pem\"},{\"uri\":\"coap://127.0.0.1\"}]" UP);
        if (c) {
                CHECK_INT(c->listen[0].port, 6000);
                CHECK_STR(c->listen[0].certificate, "/c.pem");
                CHECK_STR(c->listen[0].private_key, "/k.pem");
                CHECK_STR(c->listen[0].client_ca, "/ca.pem");
                CHECK_INT(c->listen[0].client_certificate, CLIENT_CERT_OPTIONAL);      /* default with client_ca */
                CHECK_INT(c->listen[1].scheme, SCHEME_COAP);
                config_free(c);
        }
        c = load_ok("{\"listen\":[{\"uri\":\"coaps://0.0.0.0\",\"psk_file\":\"/p\",\"certificate\":\"/c.pem\",\"private_key\":\"/k.pem\","
                    "\"client_ca\":\"/ca.pem\",\"client_certificate\":\"required\"}]" UP);
        if (c) {
                CHECK_INT(c->listen[0].client_certificate, CLIENT_CERT_REQUIRED);
                CHECK_STR(c->listen[0].psk_file, "/p");
                config_free(c);
        }
        c = load_ok("{\"listen\":[{\"uri\":\"coaps://0.0.0.0\",\"certificate\":\"/c.pem\",\"private_key\":\"/k.pem\","
                    "\"client_ca\":\"/ca.pem\",\"client_certificate\":\"none\"}]" UP);
        if (c) {
                CHECK_INT(c->listen[0].client_certificate, CLIENT_CERT_NONE);
                config_free(c);
        }
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\"}]" UP, "listen[0].psk_file: missing");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"certificate\":\"/c.pem\"}]" UP,
                     "listen[0].private_key: missing");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"private_key\":\"/k.pem\"}]" UP,
                     "listen[0].certificate: missing");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"psk_file\":\"/p\",\"client_ca\":\"/ca.pem\"}]" UP,
                     "listen[0].certificate: missing");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"psk_file\":\"psk.txt\"}]" UP,
                     "listen[0].psk_file: \"psk.txt\": expected an absolute path");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"psk_file\":5}]" UP,
                     "listen[0].psk_file: expected a string");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\",\"psk_file\":\"/p\"}]" UP,
                     "listen[0].psk_file: DTLS credentials belong to coaps:// listeners only");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\",\"client_certificate\":\"none\"}]" UP,
                     "listen[0].client_certificate: DTLS credentials belong");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"certificate\":\"/c.pem\",\"private_key\":\"/k.pem\","
                     "\"client_certificate\":\"required\"}]" UP,
                     "listen[0].client_certificate: \"required\" needs client_ca");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"certificate\":\"/c.pem\",\"private_key\":\"/k.pem\","
                     "\"client_ca\":\"/ca.pem\",\"client_certificate\":\"maybe\"}]" UP,
                     "listen[0].client_certificate: \"maybe\": expected \"required\", \"optional\" or \"none\"");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"psk\":\"/p\"}]" UP,
                     "listen[0].psk: unknown key");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1:0\",\"psk_file\":\"/p\"}]" UP,
                     "listen[0].uri: \"coaps://127.0.0.1:0\": expected coaps://HOST[:PORT]");
}

/* issue 5: "admission" per listener and per label, relays on coaps listeners */
#define UPS ",\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}]"
static void test_admission(void) {
        struct cmpgw_config *c;

        c = load_ok(minimal);
        if (c) {
                CHECK_INT(c->listen[0].admission, ADMISSION_OPEN);      /* the default */
                CHECK_INT(config_label_admission(c, "factory"), ADMISSION_OPEN);
                CHECK_INT(config_label_admission(c, ""), ADMISSION_OPEN);
                config_free(c);
        }
        c = load_ok("{\"listen\":[{\"uri\":\"coap://127.0.0.1\",\"admission\":\"registered\"},"
                    "{\"uri\":\"coaps://127.0.0.1\",\"psk_file\":\"/p\",\"admission\":\"open\","
                    "\"relays\":[\"gw-2\",\"/O=Example/CN=gw 3\",\"CN=x\\\\\"]}]" UPS
                    ",\"admission\":{\"labels\":{\"factory\":\"registered\",\"lab\":\"open\"}}}");
        if (c) {
                CHECK_INT(c->listen[0].admission, ADMISSION_REGISTERED);
                CHECK_INT(c->listen[1].admission, ADMISSION_OPEN);
                CHECK_INT(c->listen[1].n_relays, 3);
                CHECK_STR(c->listen[1].relays[0].identity, "gw-2");
                CHECK(c->listen[1].relays[0].subject == NULL);
                CHECK_STR(c->listen[1].relays[1].subject, "CN=gw 3,O=Example");
                CHECK(c->listen[1].relays[2].subject == NULL);  /* not a name: a PSK identity only */
                CHECK(config_listen_is_relay(&c->listen[1], "gw-2", NULL));
                CHECK(config_listen_is_relay(&c->listen[1], NULL, "CN=gw 3,O=Example"));
                CHECK(config_listen_is_relay(&c->listen[1], "CN=x\\", NULL));
                CHECK(!config_listen_is_relay(&c->listen[1], "gw-3", NULL));
                CHECK(!config_listen_is_relay(&c->listen[1], NULL, "gw-2"));
                CHECK(!config_listen_is_relay(&c->listen[0], "gw-2", NULL));
                CHECK_INT(config_label_admission(c, "factory"), ADMISSION_REGISTERED);
                CHECK_INT(config_label_admission(c, "lab"), ADMISSION_OPEN);
                CHECK_INT(config_label_admission(c, "other"), ADMISSION_OPEN);
                CHECK_STR(config_admission_name(ADMISSION_REGISTERED), "registered");
                config_free(c);
        }
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\",\"admission\":\"closed\"}]" UP,
                     "listen[0].admission: \"closed\": expected \"open\" or \"registered\"");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\",\"admission\":true}]" UP,
                     "listen[0].admission: expected \"open\" or \"registered\"");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\",\"relays\":[\"gw\"]}]" UP,
                     "listen[0].relays: relays are DTLS identities: they belong to coaps:// listeners only");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"psk_file\":\"/p\",\"relays\":\"gw\"}]" UP,
                     "listen[0].relays: expected an array");
        expect_error("{\"listen\":[{\"uri\":\"coaps://127.0.0.1\",\"psk_file\":\"/p\",\"relays\":[\"\"]}]" UP,
                     "listen[0].relays: element 0: expected a PSK identity or a subject");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}]" UPS ",\"admission\":\"registered\"}",
                     "admission: expected an object like {\"labels\"");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}]" UPS ",\"admission\":{\"label\":{}}}",
                     "admission.label: unknown key");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}]" UPS ",\"admission\":{\"labels\":[\"x\"]}}",
                     "admission.labels: expected an object from labels");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}]" UPS ",\"admission\":{\"labels\":{\"a/b\":\"open\"}}}",
                     "admission.labels: \"a/b\": a label is 1 to 64 characters");
        expect_error("{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}]" UPS ",\"admission\":{\"labels\":{\"f\":\"reg\"}}}",
                     "admission.labels.f: \"reg\": expected \"open\" or \"registered\"");
}
#undef UP
#undef UPS

/* "poll" (issue 4): http(s) upstreams only, every key checked, defaults */
#define POLL_CFG(up, ann) "{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}], \"upstreams\":[" up "]" ann "}"
#define POLL_ANN ", \"announcements\":{\"trusted\":\"/etc/t.pem\"}"
#define POLL_UP(poll) "{\"name\":\"pki\",\"uri\":\"http://127.0.0.1:8080/pkix/\",\"poll\":" poll "}"
#define POLL_CREDS "\"certificate\":\"/etc/gw.pem\",\"private_key\":\"/etc/gw.key\""

static void test_poll(void) {
        struct cmpgw_config *c = load_ok(POLL_CFG(POLL_UP("{" POLL_CREDS "}"), POLL_ANN));

        if (c) {
                CHECK(c->upstreams[0].poll.enabled);
                CHECK_INT(c->upstreams[0].poll.interval_usec, 3600000000ULL);
                CHECK_INT(c->upstreams[0].poll.what, CMPGW_POLL_ALL);
                CHECK_STR(c->upstreams[0].poll.certificate, "/etc/gw.pem");
                CHECK_STR(c->upstreams[0].poll.private_key, "/etc/gw.key");
                CHECK(c->upstreams[0].poll.trusted == NULL);
                config_free(c);
        }
        c = load_ok(POLL_CFG(POLL_UP("{" POLL_CREDS ",\"interval\":2.5,\"trusted\":\"/etc/ra.pem\","
                                     "\"what\":[\"crls\",\"caCerts\"]}"), POLL_ANN));
        if (c) {
                CHECK_INT(c->upstreams[0].poll.interval_usec, 2500000);
                CHECK_INT(c->upstreams[0].poll.what, CMPGW_POLL_CRLS | CMPGW_POLL_CA_CERTS);
                CHECK_STR(c->upstreams[0].poll.trusted, "/etc/ra.pem");
                config_free(c);
        }
        c = load_ok(minimal);
        if (c) {
                CHECK(!c->upstreams[0].poll.enabled);
                config_free(c);
        }
        expect_error(POLL_CFG("{\"name\":\"up\",\"uri\":\"coap://127.0.0.1/.well-known/cmp\",\"poll\":{"
                              POLL_CREDS "}}", POLL_ANN), "upstreams[0].poll: only an http:// or https://");
        expect_error(POLL_CFG(POLL_UP("{" POLL_CREDS ",\"intervall\":5}"), POLL_ANN),
                     "upstreams[0].poll.intervall: unknown key");
        expect_error(POLL_CFG(POLL_UP("{" POLL_CREDS ",\"interval\":0}"), POLL_ANN), "upstreams[0].poll.interval");
        expect_error(POLL_CFG(POLL_UP("{\"private_key\":\"/k\"}"), POLL_ANN), "upstreams[0].poll.certificate: missing");
        expect_error(POLL_CFG(POLL_UP("{\"certificate\":\"/c\"}"), POLL_ANN), "upstreams[0].poll.private_key: missing");
        expect_error(POLL_CFG(POLL_UP("{" POLL_CREDS ",\"trusted\":\"ra.pem\"}"), POLL_ANN),
                     "upstreams[0].poll.trusted: \"ra.pem\": expected an absolute path");
        expect_error(POLL_CFG(POLL_UP("{" POLL_CREDS ",\"what\":[\"crls\",\"ocsp\"]}"), POLL_ANN),
                     "upstreams[0].poll.what: element 1");
        expect_error(POLL_CFG(POLL_UP("{" POLL_CREDS ",\"what\":[\"crls\",\"crls\"]}"), POLL_ANN),
                     "listed twice");
        expect_error(POLL_CFG(POLL_UP("{" POLL_CREDS ",\"what\":[]}"), POLL_ANN), "upstreams[0].poll.what");
        expect_error(POLL_CFG(POLL_UP("true"), POLL_ANN), "upstreams[0].poll: expected an object");
        expect_error(POLL_CFG(POLL_UP("{" POLL_CREDS "}"), ""), "upstreams[0].poll: needs announcements.trusted");
}

/* limits (issue 5; RFC 9482 §4 resource exhaustion): the documented safe
 * defaults, burst following rate, and errors naming the key */
#define LIMITS_CFG(x) "{\"listen\":[{\"uri\":\"coap://127.0.0.1\"}], " \
        "\"upstreams\":[{\"name\":\"a\",\"uri\":\"http://a/\"}], \"limits\":" x "}"

static void test_limits(void) {
        struct cmpgw_config *c = load_ok(minimal);

        if (c) {        /* the defaults of cmpgw.json(5) */
                CHECK(c->limit_rate == 20);
                CHECK_INT(c->limit_burst, 40);
                CHECK_INT(c->limit_in_flight, 16);
                CHECK_INT(c->limit_max_in_flight, 1024);
                CHECK_INT(c->limit_buffered, 8 * 1024 * 1024);
                CHECK_INT(c->ann_max_observers_per_peer, 4);
                CHECK_INT(c->transfer_timeout_usec, 30000000);
                config_free(c);
        }
        if ((c = load_ok(LIMITS_CFG("{\"rate\":2.5,\"in_flight_per_peer\":1,\"max_in_flight\":0,"
                                    "\"buffered_bytes\":65536}")))) {
                CHECK(c->limit_rate == 2.5);
                CHECK_INT(c->limit_burst, 5);           /* twice rate without "burst" */
                CHECK_INT(c->limit_in_flight, 1);
                CHECK_INT(c->limit_max_in_flight, 0);   /* 0: off */
                CHECK_INT(c->limit_buffered, 65536);
                config_free(c);
        }
        if ((c = load_ok(LIMITS_CFG("{\"rate\":0.1}")))) {
                CHECK_INT(c->limit_burst, 1);           /* at least one message */
                config_free(c);
        }
        if ((c = load_ok(LIMITS_CFG("{\"rate\":0,\"burst\":7}")))) {
                CHECK(c->limit_rate == 0);              /* 0: off */
                CHECK_INT(c->limit_burst, 7);
                config_free(c);
        }
        expect_error(LIMITS_CFG("{\"rate\":-1}"), "limits.rate: -1 is out of range");
        expect_error(LIMITS_CFG("{\"rate\":\"fast\"}"), "limits.rate: expected messages per second");
        expect_error(LIMITS_CFG("{\"burst\":0}"), "limits.burst");
        expect_error(LIMITS_CFG("{\"in_flight_per_peer\":0}"), "limits.in_flight_per_peer");
        expect_error(LIMITS_CFG("{\"buffered_bytes\":100}"), "limits.buffered_bytes");
        expect_error(LIMITS_CFG("{\"buffered_bytes\":2048}"),
                     "limits.buffered_bytes: 2048 is smaller than coap.max_message_size");
        expect_error(LIMITS_CFG("{\"rates\":5}"), "limits.rates: unknown key");
        expect_error(LIMITS_CFG("[]"), "limits: expected an object");
}

int main(void) {
        test_minimal();
        test_defaults_and_options();
        test_announcement_limits();
        test_no_default_route();
        test_errors();
        test_host_route();
        test_file();
        test_coaps();
        test_poll();
        test_admission();
        test_limits();
        TEST_MAIN_END();
}
