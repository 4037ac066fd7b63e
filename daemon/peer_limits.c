/* peer_limits.c -- per-peer token buckets and counters in a hash, with a
 * least-recently-used list to forget idle peers when the table is full. */
#include "peer_limits.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"

#define N_BUCKETS 8192          /* power of two */

struct peer {
        struct peer_key key;
        double tokens;
        uint64_t refilled_usec;         /* 0: never (a full bucket) */
        unsigned held[_PEER_HOLD_MAX];
        LIST_FIELDS(struct peer, bucket);
        LIST_FIELDS(struct peer, lru);  /* most recently used first */
};

struct peer_limits {
        unsigned n;
        struct peer *lru_tail;
        LIST_HEAD(struct peer, lru);
        LIST_HEAD(struct peer, buckets[N_BUCKETS]);
};

void peer_key_of(const struct sockaddr *sa, struct peer_key *ret) {
        memset(ret, 0, sizeof *ret);
        if (sa && sa->sa_family == AF_INET) {
                ret->family = AF_INET;
                memcpy(ret->addr, &((const struct sockaddr_in *) sa)->sin_addr, 4);
        } else if (sa && sa->sa_family == AF_INET6) {
                ret->family = AF_INET6;
                memcpy(ret->addr, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
        }
}

static size_t bucket_of(const struct peer_key *k) {
        uint32_t h = 2166136261u ^ k->family;

        for (size_t i = 0; i < sizeof k->addr; i++)
                h = (h ^ k->addr[i]) * 16777619u;
        return h & (N_BUCKETS - 1);
}

struct peer_limits *peer_limits_new(void) {
        return calloc(1, sizeof(struct peer_limits));
}

static void peer_free(struct peer_limits *pl, struct peer *p) {
        if (pl->lru_tail == p)
                pl->lru_tail = p->lru_prev;
        LIST_REMOVE(lru, pl->lru, p);
        LIST_REMOVE(bucket, pl->buckets[bucket_of(&p->key)], p);
        pl->n--;
        free(p);
}

struct peer_limits *peer_limits_free(struct peer_limits *pl) {
        if (!pl)
                return NULL;
        while (pl->lru_tail)
                peer_free(pl, pl->lru_tail);
        free(pl);
        return NULL;
}

static struct peer *peer_find(struct peer_limits *pl, const struct peer_key *k) {
        struct peer *p, *n;

        LIST_FOREACH_SAFE(bucket, p, n, pl->buckets[bucket_of(k)])
                if (memcmp(&p->key, k, sizeof *k) == 0)
                        return p;
        return NULL;
}

static void touch(struct peer_limits *pl, struct peer *p) {
        if (pl->lru == p)
                return;
        if (pl->lru_tail == p)
                pl->lru_tail = p->lru_prev;
        LIST_REMOVE(lru, pl->lru, p);
        LIST_PREPEND(lru, pl->lru, p);
        if (!pl->lru_tail)
                pl->lru_tail = p;
}

/* A peer holding nothing whose bucket has refilled can be forgotten. */
static bool idle(const struct peer *p, uint64_t now_usec) {
        for (size_t i = 0; i < _PEER_HOLD_MAX; i++)
                if (p->held[i])
                        return false;
        return (p->refilled_usec == 0 || now_usec > p->refilled_usec + 60 * 1000000ULL);
}

/* Room for one more: forget the least recently used idle peer. When every
 * tracked peer is busy the newcomer is not tracked (NULL): refuse it. */
static struct peer *peer_get(struct peer_limits *pl, const struct peer_key *k, uint64_t now_usec) {
        struct peer *p = peer_find(pl, k);

        if (p) {
                touch(pl, p);
                return p;
        }
        if (pl->n >= PEER_LIMITS_MAX_PEERS) {
                if (!pl->lru_tail || !idle(pl->lru_tail, now_usec))
                        return NULL;
                peer_free(pl, pl->lru_tail);
        }
        if (!(p = calloc(1, sizeof *p)))
                return NULL;
        p->key = *k;
        LIST_PREPEND(bucket, pl->buckets[bucket_of(k)], p);
        LIST_PREPEND(lru, pl->lru, p);
        if (!pl->lru_tail)
                pl->lru_tail = p;
        pl->n++;
        return p;
}

bool peer_limits_take(struct peer_limits *pl, const struct peer_key *k, uint64_t now_usec,
                      double rate, unsigned burst, unsigned *retry_sec) {
        struct peer *p;
        double wait;

        if (rate <= 0)
                return true;
        if (!(p = peer_get(pl, k, now_usec))) {
                *retry_sec = 1;
                return false;
        }
        if (p->refilled_usec == 0)
                p->tokens = burst;
        else
                p->tokens += rate * (double) (now_usec - p->refilled_usec) / 1e6;
        if (p->tokens > burst)
                p->tokens = burst;
        p->refilled_usec = now_usec;
        if (p->tokens >= 1) {
                p->tokens -= 1;
                return true;
        }
        wait = (1 - p->tokens) / rate;
        *retry_sec = (unsigned) wait + ((double) (unsigned) wait < wait);   /* rounded up */
        if (*retry_sec == 0)
                *retry_sec = 1;
        return false;
}

unsigned peer_limits_add(struct peer_limits *pl, const struct peer_key *k, enum peer_hold what, uint64_t now_usec) {
        struct peer *p = peer_get(pl, k, now_usec);

        return p ? ++p->held[what] : 0;
}

void peer_limits_drop(struct peer_limits *pl, const struct peer_key *k, enum peer_hold what) {
        struct peer *p = peer_find(pl, k);

        if (p && p->held[what] > 0)
                p->held[what]--;
}

unsigned peer_limits_held(struct peer_limits *pl, const struct peer_key *k, enum peer_hold what) {
        struct peer *p = peer_find(pl, k);

        return p ? p->held[what] : 0;
}

unsigned peer_limits_count(const struct peer_limits *pl) {
        return pl ? pl->n : 0;
}
