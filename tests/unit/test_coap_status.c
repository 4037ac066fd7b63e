/* Unit tests: HTTP → CoAP response code mapping (RFC 7252 §10.1) */
#include "coap_status.h"
#include "test.h"

int main(void) {
        char buf[8];
        static const int map[][2] = {
                { 200, 204 }, { 204, 204 }, { 299, 204 },
                { 301, 502 }, { 302, 502 }, { 100, 502 },
                { 400, 400 }, { 401, 401 }, { 403, 403 }, { 404, 404 }, { 405, 405 },
                { 406, 406 }, { 412, 412 }, { 413, 413 }, { 415, 415 }, { 429, 429 },
                { 409, 400 }, { 418, 400 },
                { 500, 500 }, { 501, 501 }, { 502, 502 }, { 503, 503 }, { 504, 504 },
                { 505, 500 }, { 599, 500 }, { 0, 502 },
        };
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
                int got = coap_code_from_http_status(map[i][0]);
                if (got != map[i][1])
                        fprintf(stderr, "HTTP %d: ", map[i][0]);
                CHECK_INT(got, map[i][1]);
        }
        CHECK_STR(coap_code_text(404, buf), "4.04");
        CHECK_STR(coap_code_text(204, buf), "2.04");
        CHECK_STR(coap_code_text(231, buf), "2.31");
        CHECK_INT(COAP_CODE(404), (4 << 5) | 4);
        CHECK_INT(COAP_CODE(231), (2 << 5) | 31);
        TEST_MAIN_END();
}
