/* libFuzzer harness: resource path parsing and upstream URI building. */
#include <stdint.h>
#include <string.h>

#include "cmp_path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char path[1024], uri[2048];
        struct cmp_path p;

        if (size >= sizeof path)
                return 0;
        memcpy(path, data, size);
        path[size] = '\0';
        if (cmp_path_parse(path, &p) == CMP_PATH_OK) {
                cmp_path_http_upstream_uri("http://ca.example/.well-known/cmp", p.label, p.op, uri, sizeof uri);
                cmp_path_http_upstream_uri(path, p.label, p.op, uri, 64);
        }
        (void) cmp_label_valid(path, size);
        (void) cmp_op_from_coap_name(path, size);
        return 0;
}
