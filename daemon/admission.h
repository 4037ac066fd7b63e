/* admission.h -- who may send requests through the gateway (issue 5)
 *
 * One step of a request, after its message is inspected and before it is
 * routed (request.c). Two checks, in this order:
 *
 *  1. DTLS binding, whatever the policy: a node that authenticated with a
 *     DTLS client certificate and sends a signature-protected message must
 *     name the certificate's subject as CMP sender; a node that used a PSK
 *     and sends a MAC-protected message must use its PSK identity as
 *     senderKID. Other pairs name no common identity and are not bound
 *     (cmpgw.json(5) ADMISSION). Relays of the listener are exempt.
 *     Mismatch: 4.03.
 *  2. Policy, the stricter of the listener's and the label's: "open"
 *     admits everyone; "registered" admits a request when one of its
 *     identities was admitted by the operator (registry): its PSK identity
 *     or client certificate subject, its CMP sender or its senderKID.
 *     None of them admitted: 4.03; the request presents none at all: 4.01.
 *
 * Refusals are counted (refused_admission, refused_identity_mismatch) and
 * logged, rate-limited. Nothing refused goes upstream. */
#pragma once

#include <stddef.h>

#include "registry.h"

typedef struct Manager Manager;
typedef struct coap_session_t coap_session_t;
struct cmpgw_config;
struct cmpgw_listen;
struct request;

/* The listener a session came in on, by its local address and port (a
 * wildcard listener takes what no listener names exactly). NULL when none
 * matches: a reload changed the listeners, whose sockets change only on
 * restart. */
const struct cmpgw_listen *admission_listener(const struct cmpgw_config *c, coap_session_t *session);

/* 0 when admitted; else the CoAP code to answer (401, 403, or 500 when the
 * registry cannot be asked) with a diagnostic in why. */
int admission_check(Manager *m, const struct request *r, char *why, size_t why_size);

/* An identity as the operator gives it (cmpgwctl device add) in the form
 * the registry keeps and requests are compared in: a PSK identity as is;
 * a subject or sender as an RFC 2253 name (either spelling of dn_text.h);
 * a senderKID given as text (its bytes) or as 0xHEX, kept in upper-case
 * hex. 0 with *ret malloc'd, or -EINVAL with the reason in why. */
int admission_canonical(enum registry_id_kind kind, const char *text, char **ret, char *why, size_t why_size);
