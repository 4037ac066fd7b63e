/* coap_loop.h -- a libcoap 4.3.1 context driven by another event loop
 *
 * libcoap's epoll fd (coap_context_get_coap_fd) holds its sockets and its
 * own timerfd, which libcoap arms for everything it must do later:
 * retransmissions, triggered separate responses, notifications, session
 * expiry. So one IO source on that fd is all a loop needs. */
#pragma once

#include <stdbool.h>

#include <coap3/coap.h>

/* Handles what is ready on CTX's epoll fd, without waiting: one datagram
 * read for each socket event (libcoap 4.3.1 reads one per event). libcoap
 * walks all its sessions and arms its timer after each call
 * (coap_io_do_epoll), so a datagram costs O(sessions); coap_io_process()
 * would walk them twice more. */
void coap_loop_dispatch(coap_context_t *ctx);

/* Reads per socket event of a server context, adapted to the load. */
struct coap_loop_batch {
        unsigned size;          /* 1 .. COAP_LOOP_BATCH_MAX; 0 counts as 1 */
};
#define COAP_LOOP_BATCH_MAX 64

/* coap_loop_dispatch() for a context whose sockets are all UDP/DTLS
 * endpoints (a server's): each socket event is handed to coap_io_do_epoll
 * B->size times, so libcoap reads up to that many datagrams per walk over
 * its sessions instead of one. B->size doubles while a socket is still
 * readable after the call; a call that drains it sets B->size to what it
 * read per socket, and one that finds nothing ready to 1, so under light
 * load one datagram is one read and one walk, as before; timers are
 * libcoap's own, armed after each call as before. Returns the datagrams read (and
 * timer events), not counting the reads that found the socket empty: those
 * need coap_loop_log_to_ours(), which also keeps them out of the log. */
unsigned coap_loop_dispatch_batched(coap_context_t *ctx, struct coap_loop_batch *b);

/* Is anything ready on CTX's epoll fd (a datagram waiting, a timer due)? */
bool coap_loop_ready(coap_context_t *ctx);

/* libcoap's log lines go to log.h (with their priority) instead of
 * libcoap's own stderr format; the two WARNING lines libcoap 4.3.1 logs for
 * a read that found the socket empty (EAGAIN: "coap_network_read: Resource
 * temporarily unavailable", then "<endpoint>: read failed") are counted
 * for coap_loop_dispatch_batched() and dropped. Call after
 * coap_set_log_level() (the count needs LOG_WARNING or more). */
void coap_loop_log_to_ours(void);
