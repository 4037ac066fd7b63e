/* kept_answer.c -- a hash of answers by (session, MID, token) with an age
 * list for expiry and eviction of the oldest. */
#include "kept_answer.h"

#include "coap_blocks.h"

#include <stdlib.h>
#include <string.h>

#define N_BUCKETS 1024          /* power of two */

struct kept_answers {
        size_t max, n;
        LIST_HEAD(struct kept_answer, newest);
        struct kept_answer *oldest;
        LIST_HEAD(struct kept_answer, buckets[N_BUCKETS]);
        LIST_HEAD(struct kept_answer, path_buckets[N_BUCKETS]);
};

/* FNV-1a over what names an exchange */
static size_t bucket_of(const coap_session_t *session, coap_mid_t mid, const uint8_t *token, size_t token_len) {
        uintptr_t p = (uintptr_t) session;
        uint32_t h = 2166136261u;

        for (size_t i = 0; i < sizeof p; i++, p >>= 8)
                h = (h ^ (uint8_t) p) * 16777619u;
        h = (h ^ (uint8_t) mid) * 16777619u;
        h = (h ^ (uint8_t) (mid >> 8)) * 16777619u;
        for (size_t i = 0; i < token_len; i++)
                h = (h ^ token[i]) * 16777619u;
        return h & (N_BUCKETS - 1);
}

static size_t path_bucket_of(const coap_session_t *session, uint32_t path_key) {
        uintptr_t p = (uintptr_t) session;
        uint32_t h = 2166136261u;

        for (size_t i = 0; i < sizeof p; i++, p >>= 8)
                h = (h ^ (uint8_t) p) * 16777619u;
        for (size_t i = 0; i < 4; i++, path_key >>= 8)
                h = (h ^ (uint8_t) path_key) * 16777619u;
        return h & (N_BUCKETS - 1);
}

struct kept_answers *kept_answers_new(size_t max) {
        struct kept_answers *ka = calloc(1, sizeof *ka);

        if (ka)
                ka->max = max ? max : 1;
        return ka;
}

static void kept_free(struct kept_answers *ka, struct kept_answer *k) {
        size_t b = bucket_of(k->session, k->mid, k->token, k->token_len);

        if (ka->oldest == k)
                ka->oldest = k->age_prev;
        LIST_REMOVE(age, ka->newest, k);
        LIST_REMOVE(bucket, ka->buckets[b], k);
        LIST_REMOVE(by_path, ka->path_buckets[path_bucket_of(k->session, k->path_key)], k);
        ka->n--;
        coap_session_release(k->session);
        free(k->body);
        free(k);
}

struct kept_answers *kept_answers_free(struct kept_answers *ka) {
        if (!ka)
                return NULL;
        while (ka->oldest)
                kept_free(ka, ka->oldest);
        free(ka);
        return NULL;
}

struct kept_answer *kept_answers_add(struct kept_answers *ka, uint64_t now_usec, coap_session_t *session,
                                     coap_mid_t mid, const uint8_t *token, size_t token_len,
                                     uint32_t path_key, int code, bool is_cmp, int max_age,
                                     uint8_t *body, size_t len) {
        struct kept_answer *k;
        size_t b;

        if (token_len > sizeof k->token || !(k = calloc(1, sizeof *k))) {
                free(body);
                return NULL;
        }
        if (ka->n >= ka->max)
                kept_free(ka, ka->oldest);
        k->session = coap_session_reference(session);
        k->mid = mid;
        memcpy(k->token, token, token_len);
        k->token_len = token_len;
        k->code = code;
        k->is_cmp = is_cmp;
        k->max_age = max_age;
        k->body = body;
        k->len = len;
        k->etag = coap_block_etag(body, len);
        k->path_key = path_key;
        k->expires_usec = now_usec + EXCHANGE_LIFETIME_USEC;
        b = bucket_of(session, mid, token, token_len);
        LIST_PREPEND(bucket, ka->buckets[b], k);
        LIST_PREPEND(by_path, ka->path_buckets[path_bucket_of(session, path_key)], k);
        LIST_PREPEND(age, ka->newest, k);
        if (!ka->oldest)
                ka->oldest = k;
        ka->n++;
        return k;
}

struct kept_answer *kept_answers_get0(struct kept_answers *ka, coap_session_t *session, coap_mid_t mid,
                                      const uint8_t *token, size_t token_len) {
        struct kept_answer *k, *n;

        LIST_FOREACH_SAFE(bucket, k, n, ka->buckets[bucket_of(session, mid, token, token_len)])
                if (k->session == session && k->mid == mid && k->token_len == token_len &&
                    memcmp(k->token, token, token_len) == 0)
                        return k;
        return NULL;
}

struct kept_answer *kept_answers_latest_get0(struct kept_answers *ka, coap_session_t *session,
                                             uint32_t path_key) {
        struct kept_answer *k, *n;

        LIST_FOREACH_SAFE(by_path, k, n, ka->path_buckets[path_bucket_of(session, path_key)])
                if (k->session == session && k->path_key == path_key)
                        return k;
        return NULL;
}

void kept_answers_drop_session(struct kept_answers *ka, const coap_session_t *session) {
        struct kept_answer *k, *n;

        LIST_FOREACH_SAFE(age, k, n, ka->newest)
                if (k->session == session)
                        kept_free(ka, k);
}

void kept_answers_expire(struct kept_answers *ka, uint64_t now_usec) {
        while (ka->oldest && now_usec > ka->oldest->expires_usec)
                kept_free(ka, ka->oldest);
}

size_t kept_answers_count(const struct kept_answers *ka) {
        return ka ? ka->n : 0;
}
