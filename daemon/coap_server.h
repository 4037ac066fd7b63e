/* coap_server.h -- the CoAP side: listeners, resources, block-wise
 * reassembly, size limits, piggybacked and separate answers (RFC 9482 §2) */
#pragma once

#include "config.h"

typedef struct Manager Manager;
struct request;
struct coap_server;

int coap_server_new(Manager *m, const struct cmpgw_config *c, struct coap_server **ret);
struct coap_server *coap_server_free(struct coap_server *s);

/* Re-read routes (labels) and limits after a reload. Listeners stay. */
int coap_server_apply_config(struct coap_server *s, const struct cmpgw_config *c);

/* The request's answer is set: send it (separate response). */
void coap_server_answer(struct coap_server *s, struct request *r);

/* Requests whose CoAP session died: drop the session reference. */
void coap_server_release_request(struct coap_server *s, struct request *r);

unsigned coap_server_pending_transfers(const struct coap_server *s);
/* bytes held by incomplete Block1 transfers (limits.buffered_bytes) */
size_t coap_server_buffered_bytes(const struct coap_server *s);

/* A new announcement is the latest: notify the observers of every ann
 * resource (RFC 7641). */
void coap_server_announcement(struct coap_server *s);
/* ann observers registered now */
unsigned coap_server_ann_observers(const struct coap_server *s);

/* ClientHellos on established DTLS sessions (dtls_reboot.h); zeros without coaps */
const struct dtls_reboot_stats *coap_server_get0_dtls_reboot_stats(const struct coap_server *s);
