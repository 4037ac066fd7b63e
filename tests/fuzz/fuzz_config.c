/* libFuzzer harness: cmpgw.json parsing and routing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct cmpgw_config *c = NULL;
        char *json = malloc(size + 1), *err = NULL;

        if (!json)
                return 0;
        memcpy(json, data, size);
        json[size] = '\0';
        if (config_load_string(json, &c, &err) == 0) {
                (void) config_route(c, "");
                (void) config_route(c, "a");
                config_free(c);
        }
        free(err);
        free(json);
        return 0;
}
