/* coap_blocks.h -- block-wise transfers (RFC 7959) done by cmpgwd itself
 *
 * libcoap 4.3.1's server-side block mode (COAP_BLOCK_USE_LIBCOAP) keeps the
 * receive state of every block-wise request on its session for
 * MAX_TRANSMIT_WAIT (93 s) and walks all of it on every I/O preparation,
 * so a gateway's cost per exchange grew with the exchanges of the last
 * minute and a half (doc/performance.md). cmpgwd's server context therefore
 * runs without it: Block1 is reassembled by coap_server.c (which it did
 * anyway, to refuse oversized bodies before buffering them), and answers are
 * cut into Block2 blocks here, from bodies cmpgwd keeps itself (kept
 * answers, announcements). Nothing is held per block. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <coap3/coap.h>

/* A request's Block1 or Block2 option. */
struct coap_block_opt {
        bool present;           /* the option is there */
        bool valid;             /* and usable over this transport: SZX 0..6, NUM < 2^20 */
        unsigned num, szx;
        bool more;
        size_t size;            /* 16 << szx */
        size_t offset;          /* num * size */
};

void coap_block_opt_get(const coap_session_t *session, const coap_pdu_t *pdu, uint16_t option,
                        struct coap_block_opt *b);

/* The SZX of the blocks cmpgwd sends on SESSION: the largest that fits its
 * PDU size and max_block (RFC 9482 §2.4, §4), no larger than a Block2 SZX
 * the client asked for (RFC 7959 §2.4, early negotiation). */
unsigned coap_block_szx(const coap_session_t *session, const coap_pdu_t *request, size_t max_block);

/* A 64-bit ETag of a body, stable for the same bytes (FNV-1a). */
uint64_t coap_block_etag(const uint8_t *data, size_t len);

/* Puts into RESPONSE (its code already set) Content-Format CF, Max-Age
 * (max_age >= 0) and the part of DATA the REQUEST asks for: all of it when
 * it fits one block, else the block of the request's Block2 NUM (0 without
 * one) with Block2, Size2 and ETag (RFC 7959 §2.4, §4). 0; -ERANGE when the
 * requested block lies past the end; -EINVAL for a Block2 option that is
 * not usable here; -ENOSPC or -ENOMEM when it cannot be put in. The data
 * is copied. */
int coap_block_answer(const coap_session_t *session, const coap_pdu_t *request, coap_pdu_t *response,
                      size_t max_block, int cf, int max_age, uint64_t etag,
                      const uint8_t *data, size_t len);
