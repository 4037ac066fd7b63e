/* coap_upstream.c -- a cheap CoAP upstream for benchmarks (not a test)
 *
 *   coap_upstream PORT NAME=FILE [NAME=FILE...]
 *
 * Stands in for a CA that speaks CMP over CoAP (RFC 9482): listens on
 * coap://127.0.0.1:PORT and answers every POST to /NAME with the DER
 * PKIMessage in FILE (2.04, Content-Format 259), whatever the request body,
 * so that the upstream is never the bottleneck of a forwarding benchmark.
 * libcoap does the block-wise work both ways (COAP_BLOCK_USE_LIBCOAP |
 * COAP_BLOCK_SINGLE_BODY): Block1 requests are reassembled before the
 * handler runs, and an answer larger than one PDU is piggybacked with
 * Block2, the rest served by libcoap from the same buffer. A request without
 * Content-Format 259 or without a body gets 4.15 or 4.00. Runs until
 * SIGTERM or SIGINT; prints "ready" on stdout once it listens, and on exit
 * "requests=N" (answers given; Block2 follow-ups not counted).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coap3/coap.h>

#define CT_PKIXCMP 259
#define MAX_NAMES 16

struct answer {
        char name[64];
        uint8_t *der;
        size_t len;
};

static struct answer answers[MAX_NAMES];
static volatile sig_atomic_t quit;
static unsigned long requests;

static void on_signal(int sig) {
        (void) sig;
        quit = 1;
}

static void hnd_post(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *request,
                     const coap_string_t *query, coap_pdu_t *response) {
        struct answer *a = coap_resource_get_userdata(res);
        coap_opt_iterator_t it;
        coap_opt_t *cf = coap_check_option(request, COAP_OPTION_CONTENT_FORMAT, &it);
        const uint8_t *data;
        size_t len = 0, offset, total;

        if (!cf || coap_decode_var_bytes(coap_opt_value(cf), coap_opt_length(cf)) != CT_PKIXCMP) {
                coap_pdu_set_code(response, COAP_RESPONSE_CODE_UNSUPPORTED_CONTENT_FORMAT);
                return;
        }
        if (!coap_get_data_large(request, &len, &data, &offset, &total) || len == 0) {
                coap_pdu_set_code(response, COAP_RESPONSE_CODE_BAD_REQUEST);
                return;
        }
        requests++;
        coap_pdu_set_code(response, COAP_RESPONSE_CODE_CHANGED);
        coap_add_data_large_response(res, session, request, response, query, CT_PKIXCMP, -1, 0,
                                     a->len, a->der, NULL, NULL);
}

static int read_der(const char *path, struct answer *a) {
        FILE *f = fopen(path, "rb");
        long n;

        if (!f)
                return -errno;
        if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0) {
                fclose(f);
                return -EINVAL;
        }
        rewind(f);
        a->der = malloc((size_t) n);
        if (!a->der) {
                fclose(f);
                return -ENOMEM;
        }
        a->len = fread(a->der, 1, (size_t) n, f);
        fclose(f);
        return a->len == (size_t) n ? 0 : -EIO;
}

int main(int argc, char **argv) {
        struct sigaction sa = { .sa_handler = on_signal };
        coap_context_t *ctx;
        coap_address_t addr;
        int n = argc - 2, r;

        if (argc < 3 || n > MAX_NAMES || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
                fprintf(stderr, "usage: coap_upstream PORT NAME=FILE [NAME=FILE...]\n");
                return 2;
        }
        coap_startup();
        coap_set_log_level(LOG_WARNING);
        ctx = coap_new_context(NULL);
        if (!ctx)
                return 1;
        coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
        coap_address_init(&addr);
        addr.addr.sin.sin_family = AF_INET;
        addr.addr.sin.sin_port = htons((uint16_t) atoi(argv[1]));
        addr.addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.size = sizeof addr.addr.sin;
        if (!coap_new_endpoint(ctx, &addr, COAP_PROTO_UDP)) {
                fprintf(stderr, "coap_upstream: cannot listen on 127.0.0.1:%s\n", argv[1]);
                return 1;
        }
        for (int i = 0; i < n; i++) {
                const char *arg = argv[i + 2], *eq = strchr(arg, '=');
                struct answer *a = &answers[i];
                coap_resource_t *res;

                if (!eq || eq == arg || (size_t) (eq - arg) >= sizeof a->name) {
                        fprintf(stderr, "coap_upstream: expected NAME=FILE, got %s\n", arg);
                        return 2;
                }
                snprintf(a->name, sizeof a->name, "%.*s", (int) (eq - arg), arg);
                if ((r = read_der(eq + 1, a)) < 0) {
                        fprintf(stderr, "coap_upstream: %s: %s\n", eq + 1, strerror(-r));
                        return 1;
                }
                res = coap_resource_init(coap_new_str_const((const uint8_t *) a->name, strlen(a->name)),
                                         COAP_RESOURCE_FLAGS_RELEASE_URI);
                coap_resource_set_userdata(res, a);
                coap_register_handler(res, COAP_REQUEST_POST, hnd_post);
                coap_add_attr(res, coap_make_str_const("ct"), coap_make_str_const("259"), 0);
                coap_add_resource(ctx, res);
        }
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        printf("ready\n");
        fflush(stdout);
        while (!quit)
                if (coap_io_process(ctx, 1000) < 0)
                        break;
        printf("requests=%lu\n", requests);
        coap_free_context(ctx);
        coap_cleanup();
        for (int i = 0; i < n; i++)
                free(answers[i].der);
        return 0;
}
