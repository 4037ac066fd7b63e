/* coap_loop.c -- a libcoap context driven by another event loop */
#include "coap_loop.h"

#include <sys/epoll.h>

#define EVENTS_MAX 64

unsigned coap_loop_dispatch(coap_context_t *ctx) {
        struct epoll_event ev[EVENTS_MAX];
        unsigned handled = 0;
        int n;

        do {
                n = epoll_wait(coap_context_get_coap_fd(ctx), ev, EVENTS_MAX, 0);
                if (n <= 0)
                        break;
                coap_io_do_epoll(ctx, ev, (size_t) n);
                handled += (unsigned) n;
        } while (n == EVENTS_MAX);
        return handled;
}

bool coap_loop_ready(coap_context_t *ctx) {
        struct epoll_event ev;

        return epoll_wait(coap_context_get_coap_fd(ctx), &ev, 1, 0) > 0;
}
