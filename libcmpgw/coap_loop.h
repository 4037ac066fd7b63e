/* coap_loop.h -- a libcoap 4.3.1 context driven by another event loop
 *
 * libcoap's epoll fd (coap_context_get_coap_fd) holds its sockets and its
 * own timerfd, which libcoap arms for everything it must do later:
 * retransmissions, triggered separate responses, notifications, session
 * expiry. So one IO source on that fd is all a loop needs. */
#pragma once

#include <stdbool.h>

#include <coap3/coap.h>

/* Handles what is ready on CTX's epoll fd, without waiting, and returns
 * how many events that was: one datagram read for each socket event
 * (libcoap 4.3.1 reads one per event). libcoap walks all its sessions and
 * arms its timer after each event (coap_io_do_epoll), so a datagram costs
 * O(sessions); coap_io_process() would walk them twice more. */
unsigned coap_loop_dispatch(coap_context_t *ctx);

/* Is anything ready on CTX's epoll fd (a datagram waiting, a timer due)? */
bool coap_loop_ready(coap_context_t *ctx);
