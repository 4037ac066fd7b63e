/* coap_loop.c -- a libcoap context driven by another event loop */
#include "coap_loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "log.h"

#define EVENTS_MAX 64
/* a batch's events: at most this many, whatever the batch size */
#define BATCH_EVENTS_MAX 1024

/* empty reads seen by the log handler (libcoap 4.3.1 reads with
 * recvmsg() on a non-blocking socket and logs EAGAIN as a failure) */
static unsigned empty_reads;
static bool read_failed_follows;

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

/* EV's socket read events SIZE times each into OUT (room for
 * BATCH_EVENTS_MAX); others once. Returns how many; *SOCKETS: how many
 * socket read events there were */
static size_t batch_fill(const struct epoll_event *ev, size_t n, unsigned size, struct epoll_event *out,
                         unsigned *sockets) {
        size_t k = 0;

        *sockets = 0;
        for (size_t i = 0; i < n; i++) {
                /* a NULL ptr is libcoap's timerfd; only EPOLLIN means a datagram */
                bool datagram = ev[i].data.ptr && (ev[i].events & EPOLLIN);
                unsigned copies = datagram ? size : 1;
                *sockets += datagram;
                for (unsigned c = 0; c < copies; c++)
                        out[k++] = ev[i];
        }
        return k;
}

static bool socket_readable(coap_context_t *ctx) {
        struct epoll_event ev[EVENTS_MAX];
        int n = epoll_wait(coap_context_get_coap_fd(ctx), ev, EVENTS_MAX, 0);

        for (int i = 0; i < n; i++)
                if (ev[i].data.ptr && (ev[i].events & EPOLLIN))
                        return true;
        return false;
}

/* More waited than a batch: twice as many reads per event next time. Else
 * the socket was drained: as many as it held (per socket), so that under
 * light load one datagram is one read. */
static void batch_adapt(coap_context_t *ctx, struct coap_loop_batch *b, unsigned size, unsigned sockets,
                        unsigned reads) {
        if (sockets == 0)
                return;
        if (socket_readable(ctx))
                b->size = size < COAP_LOOP_BATCH_MAX ? size * 2 : COAP_LOOP_BATCH_MAX;
        else
                b->size = reads > sockets ? (reads + sockets - 1) / sockets : 1;
}

unsigned coap_loop_dispatch_batched(coap_context_t *ctx, struct coap_loop_batch *b) {
        static struct epoll_event batch[BATCH_EVENTS_MAX];
        struct epoll_event ev[EVENTS_MAX];
        unsigned size = b->size ? b->size : 1, sockets, empty;
        size_t k;
        int n, max = (int) (BATCH_EVENTS_MAX / size);

        n = epoll_wait(coap_context_get_coap_fd(ctx), ev, max < EVENTS_MAX ? max : EVENTS_MAX, 0);
        if (n <= 0) {
                b->size = 1;    /* nothing waits */
                return 0;
        }
        k = batch_fill(ev, (size_t) n, size, batch, &sockets);
        empty = empty_reads;
        coap_io_do_epoll(ctx, batch, k);
        empty = empty_reads - empty;
        batch_adapt(ctx, b, size, sockets, sockets * size - empty);
        return (unsigned) k - empty;
}

bool coap_loop_ready(coap_context_t *ctx) {
        struct epoll_event ev;

        return epoll_wait(coap_context_get_coap_fd(ctx), &ev, 1, 0) > 0;
}

static enum log_level level_of(coap_log_t level) {
        if (level <= LOG_ERR)
                return LOG_LVL_ERR;
        if (level >= LOG_DEBUG)
                return LOG_LVL_DEBUG;   /* and libcoap's COAP_LOG_CIPHERS */
        return (enum log_level) level;
}

/* libcoap 4.3.1, src/coap_io.c coap_network_read() and src/net.c
 * coap_read_endpoint(): the two lines of an empty read */
static bool is_empty_read(coap_log_t level, const char *message) {
        static const char network_read[] = "coap_network_read: ";
        bool eagain;

        if (level != LOG_WARNING) {
                read_failed_follows = false;
                return false;
        }
        if (read_failed_follows && strstr(message, ": read failed")) {
                read_failed_follows = false;
                return true;
        }
        eagain = strncmp(message, network_read, sizeof network_read - 1) == 0 &&
                 strncmp(message + sizeof network_read - 1, strerror(EAGAIN), strlen(strerror(EAGAIN))) == 0;
        read_failed_follows = eagain;
        if (eagain)
                empty_reads++;
        return eagain;
}

static void log_coap(coap_log_t level, const char *message) {
        size_t len = strlen(message);

        if (is_empty_read(level, message))
                return;
        if (len > 0 && message[len - 1] == '\n')
                len--;
        log_msg(level_of(level), "libcoap: %.*s", (int) len, message);
}

void coap_loop_log_to_ours(void) {
        coap_set_log_handler(log_coap);
}
