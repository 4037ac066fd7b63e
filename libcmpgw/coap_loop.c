/* coap_loop.c -- a libcoap context driven by another event loop */
#include "coap_loop.h"

#include <sys/epoll.h>

#define EVENTS_MAX 64

void coap_loop_dispatch(coap_context_t *ctx) {
        struct epoll_event ev[EVENTS_MAX];
        int n;

        do {
                n = epoll_wait(coap_context_get_coap_fd(ctx), ev, EVENTS_MAX, 0);
                if (n <= 0)
                        return;
                coap_io_do_epoll(ctx, ev, (size_t) n);
        } while (n == EVENTS_MAX);
}
