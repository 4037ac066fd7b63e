/* kept_answer.h -- answers kept for EXCHANGE_LIFETIME so that a
 * retransmitted request is answered again and never forwarded twice
 * (RFC 7252 §4.5). Found by session, message ID and token in O(1). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <coap3/coap.h>

#include "list.h"

#define EXCHANGE_LIFETIME_USEC (247 * 1000000ULL)      /* RFC 7252 §4.8.2 */

struct kept_answer {
        coap_session_t *session;        /* referenced */
        uint8_t token[8];
        size_t token_len;
        coap_mid_t mid;
        int code;                       /* CoAP code as c*100+dd */
        bool is_cmp;                    /* body is a PKIMessage, else a diagnostic */
        int max_age;                    /* -1: none */
        uint8_t *body;                  /* owned */
        size_t len;
        uint64_t etag;                  /* of body (coap_block_etag) */
        uint32_t path_key;              /* the resource asked: Block2 follow-ups find it by path */

        uint64_t expires_usec;
        LIST_FIELDS(struct kept_answer, age);   /* newest first */
        LIST_FIELDS(struct kept_answer, bucket);
        LIST_FIELDS(struct kept_answer, by_path);       /* newest first */
};

struct kept_answers;

struct kept_answers *kept_answers_new(size_t max);
struct kept_answers *kept_answers_free(struct kept_answers *ka);

/* Takes a reference on session and ownership of body. When full, the
 * oldest answer goes. NULL on allocation failure (body is then freed). */
struct kept_answer *kept_answers_add(struct kept_answers *ka, uint64_t now_usec, coap_session_t *session,
                                     coap_mid_t mid, const uint8_t *token, size_t token_len,
                                     uint32_t path_key, int code, bool is_cmp, int max_age,
                                     uint8_t *body, size_t len);

struct kept_answer *kept_answers_get0(struct kept_answers *ka, coap_session_t *session, coap_mid_t mid,
                                      const uint8_t *token, size_t token_len);

/* The newest answer on SESSION to a request for the resource PATH_KEY:
 * what a Block2 request for a further block continues (RFC 7959 §2.4; the
 * client sends it with a new token and message ID). */
struct kept_answer *kept_answers_latest_get0(struct kept_answers *ka, coap_session_t *session,
                                             uint32_t path_key);

/* Forget the answers on SESSION (its association ended: dtls_reboot.h). */
void kept_answers_drop_session(struct kept_answers *ka, const coap_session_t *session);

/* Forget answers older than EXCHANGE_LIFETIME. */
void kept_answers_expire(struct kept_answers *ka, uint64_t now_usec);

size_t kept_answers_count(const struct kept_answers *ka);
