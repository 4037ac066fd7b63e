/* peer_limits.h -- what one peer (an IP address) may take of the gateway
 * (RFC 9482 §4: resource exhaustion): a token bucket of CMP messages and
 * observations started per second, transactions in flight, ann observers.
 * Peers are found by hash; idle ones are forgotten when room is needed. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define PEER_LIMITS_MAX_PEERS 65536

struct peer_key {
        uint8_t family;                 /* AF_INET or AF_INET6 */
        uint8_t addr[16];
};

struct peer_limits;

struct peer_limits *peer_limits_new(void);
struct peer_limits *peer_limits_free(struct peer_limits *pl);

/* the key of a socket address (its IP address; the port does not count) */
void peer_key_of(const struct sockaddr *sa, struct peer_key *ret);

/* A message or observation starts: take a token from the peer's bucket of
 * BURST, refilled at RATE per second (RATE 0: no limit). false when empty;
 * then *retry_sec says when the next token comes. */
bool peer_limits_take(struct peer_limits *pl, const struct peer_key *k, uint64_t now_usec,
                      double rate, unsigned burst, unsigned *retry_sec);

/* What a peer holds: a peer holding anything is never forgotten. */
enum peer_hold {
        PEER_IN_FLIGHT,                 /* transactions waiting on upstreams */
        PEER_OBSERVERS,                 /* ann observations */
        PEER_TRANSFERS,                 /* incomplete Block1 transfers */
        _PEER_HOLD_MAX,
};

/* _add returns the count after adding (0 when the peer cannot be tracked:
 * refuse); _drop undoes one; _held reads it. */
unsigned peer_limits_add(struct peer_limits *pl, const struct peer_key *k, enum peer_hold what, uint64_t now_usec);
void peer_limits_drop(struct peer_limits *pl, const struct peer_key *k, enum peer_hold what);
unsigned peer_limits_held(struct peer_limits *pl, const struct peer_key *k, enum peer_hold what);

unsigned peer_limits_count(const struct peer_limits *pl);
