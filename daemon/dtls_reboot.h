/* dtls_reboot.h -- a node that restarts may handshake again (issue 5)
 *
 * A constrained node that restarts keeps its address and port and starts a
 * new DTLS handshake (ClientHello, epoch 0). libcoap 4.3.1 finds its old
 * session by address and port and feeds the datagram to the old SSL, which
 * drops it: the node could not connect until the old session timed out.
 * RFC 6347 §4.2.8: a ClientHello on an existing association SHOULD start a
 * new handshake, after a cookie exchange that proves the address.
 *
 * So before libcoap reads, the next datagram of each coaps socket is
 * peeked at, and epoch-0 ClientHellos are parsed by OpenSSL's stateless
 * DTLSv1_listen() on an SSL of our own. libcoap's cookie for an address
 * is fixed (an HMAC of the two addresses under the context's secret), so
 * the cookie of the ClientHello that began a session is learnt and kept
 * while the session lives, per listener (port) and node address. A ClientHello on an established session
 *   - without that cookie (a restarted node's first, or a spoofed or
 *     forged one) is answered with a HelloVerifyRequest carrying it, sent
 *     to the session's address, and dropped: the old session lives on;
 *   - with it (the node's second): the address is proven, the old session
 *     is released (the RELEASE callback) and libcoap takes the datagram as
 *     a new handshake, its own cookie check passing: one cookie exchange
 *     as in any handshake (a second HelloVerifyRequest would have message
 *     sequence 0 again, which OpenSSL clients ignore).
 * An off-path attacker never sees the cookie and cannot end a session;
 * one who once saw a node's handshake on the path can (libcoap's cookies
 * never change), as it could by dropping its datagrams.
 *
 * libcoap 4.3.1 reads one datagram per socket per epoll event and has no
 * accessor for an endpoint's socket: dtls_reboot_add_endpoint() finds it
 * by its bound address, and dtls_reboot_check() must run before every
 * call that lets libcoap read (coap_loop_dispatch, coap_io_process). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <coap3/coap.h>

struct dtls_reboot;

/* Ends SESSION's association, so that libcoap frees it before it reads
 * the next datagram: drop every reference held on it. */
typedef void (*dtls_reboot_release_t)(coap_session_t *session, void *userdata);

int dtls_reboot_new(coap_context_t *ctx, dtls_reboot_release_t release, void *userdata,
                    struct dtls_reboot **ret);
struct dtls_reboot *dtls_reboot_free(struct dtls_reboot *d);

/* The coaps endpoint just bound to ADDR: find its socket. */
int dtls_reboot_add_endpoint(struct dtls_reboot *d, const struct sockaddr *addr, socklen_t len);

/* Look at the next datagram of every coaps socket before libcoap reads it.
 * true: a HelloVerifyRequest went out; the node's answer follows at once,
 * so let libcoap read only after the next wake-up, which looks again (a
 * datagram that comes between this look and libcoap's read is one this
 * never sees: then the node's retransmission, 1 s later, is seen). */
bool dtls_reboot_check(struct dtls_reboot *d, uint64_t now_usec);

/* libcoap's events: a session completed its handshake; a session is freed */
void dtls_reboot_connected(struct dtls_reboot *d, coap_session_t *session);
void dtls_reboot_session_gone(struct dtls_reboot *d, coap_session_t *session);

struct dtls_reboot_stats {
        uint64_t hello_verify_sent;     /* ClientHellos on established sessions without the cookie */
        uint64_t sessions_replaced;     /* old sessions ended: the cookie came back */
        uint64_t sessions_unknown_cookie;       /* ClientHellos on sessions whose cookie was not learnt */
        uint64_t hello_verify_limited;  /* ClientHellos dropped: one HelloVerifyRequest a second per address */
};
const struct dtls_reboot_stats *dtls_reboot_get0_stats(const struct dtls_reboot *d);
