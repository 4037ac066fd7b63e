/* Unit tests: coap_loop's batched reads on a real libcoap 4.3.1 server
 * context (a UDP endpoint on 127.0.0.1, a raw client socket): every
 * datagram read exactly once and counted, fewer coap_io_do_epoll calls
 * than datagrams under a burst, one read per call when alone, and the
 * EAGAIN warnings of empty reads kept out of the log while other libcoap
 * lines reach it. */
#include "coap_loop.h"
#include "log.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned requests;

static void handle_get(coap_resource_t *r, coap_session_t *s, const coap_pdu_t *req,
                       const coap_string_t *q, coap_pdu_t *resp) {
        requests++;
        coap_pdu_set_code(resp, COAP_RESPONSE_CODE_CONTENT);
}

static uint16_t free_udp_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        int fd = socket(AF_INET, SOCK_DGRAM, 0);

        bind(fd, (struct sockaddr *) &a, sizeof a);
        getsockname(fd, (struct sockaddr *) &a, &len);
        close(fd);
        return ntohs(a.sin_port);
}

/* a NON GET of /x with message ID MID */
static void send_get(int fd, uint16_t mid) {
        uint8_t pdu[] = { 0x50, 0x01, (uint8_t) (mid >> 8), (uint8_t) mid, 0xb1, 'x' };

        send(fd, pdu, sizeof pdu, 0);
}

/* dispatches until WANT requests were handled; the datagrams it says it read */
static unsigned dispatch_until(coap_context_t *ctx, struct coap_loop_batch *b, unsigned want,
                               unsigned *calls, unsigned *max_size) {
        unsigned read = 0;

        for (int spins = 0; requests < want && spins < 100000; spins++) {
                unsigned n = coap_loop_dispatch_batched(ctx, b);
                if (n) {
                        read += n;
                        (*calls)++;
                }
                if (b->size > *max_size)
                        *max_size = b->size;
        }
        return read;
}

static size_t file_has(FILE *f, const char *what) {
        char line[512];
        size_t n = 0;

        fflush(stderr);
        rewind(f);
        while (fgets(line, sizeof line, f))
                if (strstr(line, what))
                        n++;
        return n;
}

int main(void) {
        FILE *err = tmpfile();
        coap_address_t addr;
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct coap_loop_batch b = { 0 };
        unsigned calls = 0, max_size = 0, read;
        uint16_t port = free_udp_port();
        coap_context_t *ctx;
        coap_resource_t *r;
        int fd;

        dup2(fileno(err), STDERR_FILENO);       /* what reaches the log */
        coap_startup();
        coap_set_log_level(LOG_WARNING);
        coap_loop_log_to_ours();
        ctx = coap_new_context(NULL);
        coap_address_init(&addr);
        addr.addr.sin = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons(port),
                                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        addr.size = sizeof addr.addr.sin;
        CHECK(coap_new_endpoint(ctx, &addr, COAP_PROTO_UDP) != NULL);
        r = coap_resource_init(coap_make_str_const("x"), 0);
        coap_register_request_handler(r, COAP_REQUEST_GET, handle_get);
        coap_add_resource(ctx, r);
        fd = socket(AF_INET, SOCK_DGRAM, 0);
        to.sin_port = htons(port);
        CHECK(connect(fd, (struct sockaddr *) &to, sizeof to) == 0);

        /* alone: one read, the batch stays at 1 */
        send_get(fd, 1);
        usleep(10000);
        read = dispatch_until(ctx, &b, 1, &calls, &max_size);
        CHECK_INT(read, 1);
        CHECK_INT(calls, 1);
        CHECK_INT(max_size, 1);

        /* a burst: all read, counted exactly, in fewer calls than datagrams */
        calls = 0;
        for (uint16_t i = 0; i < 200; i++)
                send_get(fd, (uint16_t) (100 + i));
        usleep(20000);
        read = dispatch_until(ctx, &b, 201, &calls, &max_size);
        CHECK_INT(requests, 201);
        CHECK_INT(read, 200);
        CHECK(calls < 200 / 4);
        CHECK(max_size >= 8);
        /* drained: back to one read per datagram (at most one call reads
         * as many as the burst's last call found) */
        send_get(fd, 400);
        usleep(10000);
        calls = 0;
        CHECK_INT(dispatch_until(ctx, &b, 202, &calls, &max_size), 1);
        CHECK_INT(b.size, 1);
        send_get(fd, 401);
        usleep(10000);
        calls = 0;
        CHECK_INT(dispatch_until(ctx, &b, 203, &calls, &max_size), 1);
        CHECK_INT(calls, 1);
        CHECK_INT(b.size, 1);

        /* the empty reads left no line; other libcoap lines do */
        CHECK_INT(file_has(err, "read failed"), 0);
        CHECK_INT(file_has(err, "temporarily unavailable"), 0);
        coap_log(LOG_WARNING, "a line of libcoap's\n");
        CHECK_INT(file_has(err, "libcoap: a line of libcoap's"), 1);

        close(fd);
        coap_free_context(ctx);
        coap_cleanup();
        if (test_failures) {    /* stderr is the file: say it on stdout */
                printf("%d check(s) failed; the log:\n", test_failures);
                rewind(err);
                for (int c; (c = fgetc(err)) != EOF;)
                        putchar(c);
        }
        TEST_MAIN_END();
}
