/* coap_loop.h -- a libcoap 4.3.1 context driven by another event loop
 *
 * libcoap's epoll fd (coap_context_get_coap_fd) holds its sockets and its
 * own timerfd, which libcoap arms for everything it must do later:
 * retransmissions, triggered separate responses, notifications, session
 * expiry. So one IO source on that fd is all a loop needs. */
#pragma once

#include <coap3/coap.h>

/* Handles what is ready on CTX's epoll fd, without waiting. libcoap walks
 * its sessions and arms its timer once, at the end (coap_io_do_epoll);
 * coap_io_process() would walk them twice more. */
void coap_loop_dispatch(coap_context_t *ctx);
