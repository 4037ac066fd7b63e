/* Unit tests: resource paths, labels, operation names and upstream URIs */
#include <errno.h>

#include "cmp_path.h"
#include "test.h"

static void test_parse(void) {
        struct cmp_path p;

        CHECK_INT(cmp_path_parse("/.well-known/cmp", &p), CMP_PATH_OK);
        CHECK_INT(p.op, CMP_OP_NONE);
        CHECK_STR(p.label, "");
        CHECK(!p.ann);

        CHECK_INT(cmp_path_parse(".well-known/cmp/ir", &p), CMP_PATH_OK);
        CHECK_INT(p.op, CMP_OP_IR);

        CHECK_INT(cmp_path_parse("/.well-known/cmp/p/factory-1/kur", &p), CMP_PATH_OK);
        CHECK_STR(p.label, "factory-1");
        CHECK_INT(p.op, CMP_OP_KUR);

        CHECK_INT(cmp_path_parse("/.well-known/cmp/p/x", &p), CMP_PATH_OK);
        CHECK_STR(p.label, "x");
        CHECK_INT(p.op, CMP_OP_NONE);

        CHECK_INT(cmp_path_parse("/.well-known/cmp/ann", &p), CMP_PATH_OK);
        CHECK(p.ann);
        CHECK_INT(cmp_path_parse("/.well-known/cmp/p/x/ann", &p), CMP_PATH_OK);
        CHECK(p.ann);
        CHECK_STR(p.label, "x");

        CHECK_INT(cmp_path_parse("/.well-known/cmp/foo", &p), CMP_PATH_UNKNOWN_OP);
        CHECK_INT(cmp_path_parse("/.well-known/cmp/ir/extra", &p), CMP_PATH_UNKNOWN_OP);
        CHECK_INT(cmp_path_parse("/.well-known/cmp/p", &p), CMP_PATH_BAD_LABEL);
        CHECK_INT(cmp_path_parse("/.well-known/cmp/p/../ir", &p), CMP_PATH_BAD_LABEL);
        CHECK_INT(cmp_path_parse("/.well-known/cmp/p/a%2Fb", &p), CMP_PATH_BAD_LABEL);
        CHECK_INT(cmp_path_parse("/.well-known/core", &p), CMP_PATH_NOT_CMP);
        CHECK_INT(cmp_path_parse("/", &p), CMP_PATH_NOT_CMP);
        CHECK_INT(cmp_path_parse("", &p), CMP_PATH_NOT_CMP);
        CHECK_INT(cmp_path_parse("/cmp", &p), CMP_PATH_NOT_CMP);
}

static void test_labels(void) {
        char longest[CMP_LABEL_MAX + 2];

        CHECK(cmp_label_valid("a", 1));
        CHECK(cmp_label_valid("A.b_c~d-9", 9));
        CHECK(!cmp_label_valid("", 0));
        CHECK(!cmp_label_valid(".", 1));
        CHECK(!cmp_label_valid("..", 2));
        CHECK(!cmp_label_valid("a/b", 3));
        CHECK(!cmp_label_valid("a b", 3));
        CHECK(!cmp_label_valid("a\0b", 3));
        memset(longest, 'x', sizeof longest);
        CHECK(cmp_label_valid(longest, CMP_LABEL_MAX));
        CHECK(!cmp_label_valid(longest, CMP_LABEL_MAX + 1));
}

static void test_op_names(void) {
        /* PRODUCT.md: the CoAP → HTTP operation label mapping */
        static const char *const map[][2] = {
                { "ir", "initialization" }, { "cr", "certification" }, { "kur", "keyupdate" },
                { "p10", "pkcs10" }, { "rr", "revocation" }, { "crts", "getcacerts" },
                { "rcu", "getrootupdate" }, { "att", "getcertreqtemplate" },
                { "crls", "getcrls" }, { "nest", "nested" },
        };
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
                enum cmp_op op = cmp_op_from_coap_name(map[i][0], strlen(map[i][0]));
                CHECK(op != CMP_OP_NONE);
                CHECK_STR(cmp_op_coap_name(op), map[i][0]);
                CHECK_STR(cmp_op_http_name(op), map[i][1]);
        }
        CHECK_INT(cmp_op_from_coap_name("p10cr", 5), CMP_OP_NONE);
        CHECK_INT(cmp_op_from_coap_name("i", 1), CMP_OP_NONE);
        CHECK_INT(cmp_op_from_coap_name("", 0), CMP_OP_NONE);
}

static void test_upstream_uri(void) {
        char buf[256];

        CHECK(cmp_path_http_upstream_uri("http://ca:8080/.well-known/cmp", "fac", CMP_OP_IR, buf, sizeof buf) > 0);
        CHECK_STR(buf, "http://ca:8080/.well-known/cmp/p/fac/initialization");
        CHECK(cmp_path_http_upstream_uri("http://ca/.well-known/cmp/", "", CMP_OP_P10, buf, sizeof buf) > 0);
        CHECK_STR(buf, "http://ca/.well-known/cmp/pkcs10");
        CHECK(cmp_path_http_upstream_uri("http://ca/.well-known/cmp", "", CMP_OP_NONE, buf, sizeof buf) > 0);
        CHECK_STR(buf, "http://ca/.well-known/cmp");
        /* any other URI is used exactly as configured (openssl cmp: / and /pkix/) */
        CHECK(cmp_path_http_upstream_uri("http://127.0.0.1:8080/pkix/", "fac", CMP_OP_IR, buf, sizeof buf) > 0);
        CHECK_STR(buf, "http://127.0.0.1:8080/pkix/");
        CHECK_INT(cmp_path_http_upstream_uri("http://ca/.well-known/cmp", "fac", CMP_OP_IR, buf, 10), -ENOBUFS);
        /* CoAP upstreams keep the CoAP operation labels */
        CHECK(cmp_path_coap_upstream_uri("coap://gw2/.well-known/cmp", "fac", CMP_OP_P10, buf, sizeof buf) > 0);
        CHECK_STR(buf, "coap://gw2/.well-known/cmp/p/fac/p10");
        CHECK(cmp_path_coap_upstream_uri("coap://gw2:5783/.well-known/cmp", "", CMP_OP_NONE, buf, sizeof buf) > 0);
        CHECK_STR(buf, "coap://gw2:5783/.well-known/cmp");
        CHECK(cmp_path_coap_upstream_uri("coap://gw2/x", "fac", CMP_OP_IR, buf, sizeof buf) > 0);
        CHECK_STR(buf, "coap://gw2/x");
}

int main(void) {
        test_parse();
        test_labels();
        test_op_names();
        test_upstream_uri();
        TEST_MAIN_END();
}
