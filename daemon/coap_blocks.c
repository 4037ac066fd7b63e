/* coap_blocks.c -- block-wise transfers (RFC 7959) without libcoap's
 * per-session block state; see coap_blocks.h */
#include "coap_blocks.h"

#include <errno.h>
#include <string.h>

#define BLOCK_HEADROOM 64       /* header, token and options around a block */

void coap_block_opt_get(const coap_session_t *session, const coap_pdu_t *pdu, uint16_t option,
                        struct coap_block_opt *b) {
        coap_opt_iterator_t it;
        coap_block_b_t block;

        memset(b, 0, sizeof *b);
        if (!coap_check_option(pdu, option, &it))
                return;
        b->present = true;
        /* RFC 7959 §2.2: SZX 7 is reserved over UDP/DTLS (BERT is for
         * reliable transports, RFC 8323 §6); libcoap reports it as absent */
        if (!coap_get_block_b(session, pdu, option, &block) || block.bert)
                return;
        b->valid = true;
        b->num = block.num;
        b->szx = block.szx;
        b->more = block.m;
        b->size = (size_t) 16 << block.szx;
        b->offset = (size_t) block.num * b->size;
}

unsigned coap_block_szx(const coap_session_t *session, const coap_pdu_t *request, size_t max_block) {
        size_t room = coap_session_max_pdu_size(session);
        struct coap_block_opt asked;
        unsigned szx = 6;

        while (szx > 0 && (((size_t) 16 << szx) > max_block || ((size_t) 16 << szx) + BLOCK_HEADROOM > room))
                szx--;
        if (request) {
                coap_block_opt_get(session, request, COAP_OPTION_BLOCK2, &asked);
                if (asked.valid && asked.szx < szx)
                        szx = asked.szx;
        }
        return szx;
}

uint64_t coap_block_etag(const uint8_t *data, size_t len) {
        uint64_t h = 14695981039346656037ULL;

        for (size_t i = 0; i < len; i++)
                h = (h ^ data[i]) * 1099511628211ULL;
        return h;
}

static int add_uint_option(coap_pdu_t *pdu, uint16_t opt, unsigned v) {
        uint8_t buf[4];

        return coap_add_option(pdu, opt, coap_encode_var_safe(buf, sizeof buf, v), buf) ? 0 : -ENOMEM;
}

/* libcoap 4.3.1 puts Block2 (NUM 0, M 0, the observer's SZX) into a
 * notification for an observer that asked for blocks, and has no public
 * call to change an option: its value is set in place when the length
 * allows (it does unless the observer asked for 16-byte blocks). */
static int put_block2(coap_pdu_t *pdu, unsigned v) {
        coap_opt_iterator_t it;
        coap_opt_t *o = coap_check_option(pdu, COAP_OPTION_BLOCK2, &it);
        uint8_t buf[4];
        size_t n = coap_encode_var_safe(buf, sizeof buf, v);

        if (!o)
                return coap_add_option(pdu, COAP_OPTION_BLOCK2, n, buf) ? 0 : -ENOMEM;
        if (coap_opt_length(o) != n)
                return -ENOSPC;
        memcpy((uint8_t *) coap_opt_value(o), buf, n);
        return 0;
}

int coap_block_answer(const coap_session_t *session, const coap_pdu_t *request, coap_pdu_t *response,
                      size_t max_block, int cf, int max_age, uint64_t etag,
                      const uint8_t *data, size_t len) {
        struct coap_block_opt asked = { 0 };
        unsigned szx = coap_block_szx(session, request, max_block);
        size_t size = (size_t) 16 << szx, num, offset, n;
        uint8_t tag[8];
        int r;

        if (request)
                coap_block_opt_get(session, request, COAP_OPTION_BLOCK2, &asked);
        if (asked.present && !asked.valid)
                return -EINVAL;
        /* the client asked for blocks of asked.size; we may send smaller ones
         * (RFC 7959 §2.4): its block NUM starts at the same offset */
        num = asked.valid ? asked.offset / size : 0;
        offset = num * size;
        if (offset >= len && offset > 0)
                return -ERANGE;         /* checked before anything is added */
        if (cf >= 0 && add_uint_option(response, COAP_OPTION_CONTENT_FORMAT, (unsigned) cf) < 0)
                return -ENOMEM;
        if (max_age >= 0 && add_uint_option(response, COAP_OPTION_MAXAGE, (unsigned) max_age) < 0)
                return -ENOMEM;
        if (len <= size && !asked.valid)
                return len == 0 || coap_add_data(response, len, data) ? 0 : -ENOMEM;
        n = len - offset < size ? len - offset : size;
        for (int i = 0; i < 8; i++)
                tag[i] = (uint8_t) (etag >> (56 - 8 * i));
        if (!coap_add_option(response, COAP_OPTION_ETAG, sizeof tag, tag) ||
            add_uint_option(response, COAP_OPTION_SIZE2, (unsigned) len) < 0)
                return -ENOMEM;
        r = put_block2(response, (unsigned) (num << 4) | (offset + n < len ? 8u : 0u) | szx);
        if (r < 0)
                return r;
        return n == 0 || coap_add_data(response, n, data + offset) ? 0 : -ENOMEM;
}
