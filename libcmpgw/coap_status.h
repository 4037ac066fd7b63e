/* coap_status.h -- response codes: HTTP→CoAP mapping (RFC 7252 §10.1)
 * and the canonical diagnostic payloads the gateway sends */
#pragma once

#include <stdint.h>

/* CoAP code as class*100+detail, e.g. 404, 504. */
#define COAP_CODE(c) ((uint8_t) ((((c) / 100) << 5) | ((c) % 100)))

/* Map an HTTP response status from an upstream to the CoAP code the
 * gateway answers with (RFC 7252 §10.1.1–§10.1.2, RFC 8075 §7). */
int coap_code_from_http_status(long http_status);

/* "4.04" style text for a code given as class*100+detail. */
const char *coap_code_text(int code, char buf[static 8]);
