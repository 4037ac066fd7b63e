/* libFuzzer harness: PKIMessage inspection (daemon/request.c,
 * upstream_coap.c, upstream_http.c: the templates of cmp_asn1.c) with the
 * content it hands on to the registry, and content parsing for the
 * registry (cmp_content.c): what touches the bytes network peers send. */
#include <stddef.h>
#include <stdint.h>

#include "cmp_content.h"
#include "cmp_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct cmp_msg_info info;
        const char *why;
        char hex[160];
        struct cmp_content *content = NULL;

        if (cmp_msg_inspect_content(data, size, &info, &content, &why) == 0) {
                cmp_content_free(content);
                cmp_msg_tid_hex(&info, hex, sizeof hex);
                (void) cmp_body_name(info.body);
                for (int op = CMP_OP_NONE; op < _CMP_OP_MAX; op++)
                        (void) cmp_body_allowed_on_op(op, info.body);
        }
        {
                struct cmp_content *c = NULL;
                if (cmp_content_parse(data, size, &c) == 0)
                        cmp_content_free(c);
        }
        return 0;
}
