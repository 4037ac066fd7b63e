/* Unit tests: distinguished names as text (libcmpgw/dn_text.c) */
#include <openssl/x509.h>

#include "cmp_content.h"
#include "dn_text.h"
#include "test.h"

static char why[512];

static void canonical_is(const char *text, const char *want) {
        char *s = dn_text_canonical(text, why, sizeof why);

        CHECK_STR(s, want);
        if (!s)
                fprintf(stderr, "  %s: %s\n", text, why);
        free(s);
}

static void refused(const char *text, const char *reason) {
        char *s = dn_text_canonical(text, why, sizeof why);

        CHECK(s == NULL);
        free(s);
        if (!strstr(why, reason))
                fprintf(stderr, "  %s: reason '%s' lacks '%s'\n", text, why, reason);
        CHECK(strstr(why, reason) != NULL);
}

/* the two spellings give the same name, in the same order */
static void test_spellings(void) {
        X509_NAME *a = dn_text_parse("/O=Example/CN=node1", why, sizeof why);
        X509_NAME *b = dn_text_parse("CN=node1,O=Example", why, sizeof why);

        CHECK(a && b);
        if (a && b)
                CHECK_INT(X509_NAME_cmp(a, b), 0);
        if (a) {
                CHECK_INT(X509_NAME_entry_count(a), 2);
                CHECK_INT(OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(a, 0))), NID_organizationName);
        }
        X509_NAME_free(a);
        X509_NAME_free(b);
        canonical_is("/O=Example/CN=node1", "CN=node1,O=Example");
        canonical_is("CN=node1,O=Example", "CN=node1,O=Example");
        canonical_is("CN = node1 , O = Example", "CN=node1,O=Example");
        canonical_is("CN=node1;O=Example", "CN=node1,O=Example");
        canonical_is("CN=dtls client,O=cmpgw test", "CN=dtls client,O=cmpgw test");
        canonical_is("/CN=x", "CN=x");
        canonical_is("2.5.4.3=by-oid", "CN=by-oid");
}

static void test_escapes_and_multi_valued(void) {
        canonical_is("CN=a\\,b,O=c", "CN=a\\,b,O=c");
        canonical_is("/CN=a\\/b", "CN=a/b");
        canonical_is("CN=\\41BC", "CN=ABC");
        canonical_is("CN=\\ x\\ ", "CN=\\ x\\ ");
        /* a multi-valued RDN in DER's order, whatever order it was written in */
        canonical_is("/O=y+OU=z/CN=x", "CN=x,OU=z+O=y");
        canonical_is("/OU=z+O=y/CN=x", "CN=x,OU=z+O=y");
        canonical_is("CN=x,O=y+OU=z", "CN=x,OU=z+O=y");
        canonical_is("CN=x,OU=z+O=y", "CN=x,OU=z+O=y");
        canonical_is("/CN=x/O=", "CN=x");         /* empty values are left out */
        /* UTF-8 as the registry prints it, and that read back */
        canonical_is("CN=é", "CN=\\C3\\A9");
        canonical_is("CN=\\C3\\A9", "CN=\\C3\\A9");
}

static void test_refused(void) {
        refused("", "no TYPE=VALUE");
        refused("/", "no TYPE=VALUE");
        refused("node1", "expected TYPE=VALUE");
        refused("CN=x,node", "expected TYPE=VALUE");
        refused("=x", "expected TYPE=VALUE");
        refused("NOTATYPE=x", "unknown attribute type 'NOTATYPE'");
        refused("CN=#0403616263", "#hex values");
        refused("CN=x\\", "'\\' at the end");
}

int main(void) {
        test_spellings();
        test_escapes_and_multi_valued();
        test_refused();
        TEST_MAIN_END();
}
