/* coap_status.c -- HTTP→CoAP response code mapping (RFC 7252 §10.1, RFC 8075 §7) */
#include "coap_status.h"

#include <stdio.h>

int coap_code_from_http_status(long s) {
        switch (s) {
        case 200: case 201: case 204: return 204;    /* a CMP answer: 2.04 Changed */
        case 400: return 400;
        case 401: return 401;
        case 403: return 403;
        case 404: return 404;
        case 405: return 405;
        case 406: return 406;
        case 412: return 412;
        case 413: return 413;
        case 415: return 415;
        case 429: return 429;                        /* RFC 8516 */
        case 501: return 501;
        case 502: return 502;
        case 503: return 503;
        case 504: return 504;
        }
        if (s >= 200 && s < 300)
                return 204;
        if (s < 200 || (s >= 300 && s < 400))
                return 502;                          /* redirects are never followed (RFC 9482 §3) */
        if (s >= 400 && s < 500)
                return 400;                          /* RFC 8075 §7: other 4xx → 4.00 */
        return 500;                                  /* other 5xx and oddities → 5.00 */
}

const char *coap_code_text(int code, char buf[static 8]) {
        snprintf(buf, 8, "%d.%02d", (code / 100) % 10, code % 100);
        return buf;
}
