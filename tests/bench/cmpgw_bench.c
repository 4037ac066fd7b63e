/* cmpgw_bench.c -- load generator for cmpgw benchmarks (not a test)
 *
 *   cmpgw_bench coap URI FILE [--nodes N] [--requests M] [--block-size B]
 *                             [--proxy-uri TARGET] [--expect ANSWER] [--timeout S]
 *   cmpgw_bench http URL FILE [--nodes N] [--requests M] [--expect ANSWER]
 *
 * N simulated nodes each send the DER PKIMessage in FILE, one exchange at a
 * time, until M exchanges in all are done. coap: one CoAP session (own UDP
 * port) per node, Confirmable POST, Content-Format 259, block-wise with a
 * block size that cuts the body into at least two blocks (as cmpcoap does:
 * libcoap 4.3.1 clients hang on a separate Block2 answer to a single-PDU
 * request). http: one curl easy handle (and kept-alive connection) per node,
 * POST application/pkixcmp.
 *
 * --proxy-uri TARGET (coap): send the requests to the CoAP forward proxy at
 * URI (only its host and port are used) with a Proxy-Uri option naming
 * TARGET instead of Uri-Path options (RFC 7252 §5.10.2), e.g. to measure
 * libcoap's coap-server acting as a proxy.
 * --expect ANSWER: an exchange counts as an error unless its answer is byte
 * for byte the file ANSWER (checked after the clock stops for it).
 * --timeout S (coap, default 60): an exchange without an answer after S
 * seconds is given up, counted as an error and as lost, and the node starts
 * its next one (an answer that never comes would otherwise stall the run).
 * seconds and rate then count up to the last answer, not the wait for the
 * lost ones: rate = (exchanges - lost) / seconds.
 *
 * Prints one line:
 *   mode=coap nodes=N exchanges=M errors=E seconds=S rate=R p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. mean_ms=.. lost=L
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <coap3/coap.h>
#include <curl/curl.h>

struct node {
        coap_session_t *session;
        CURL *easy;
        double started;
        int busy;
        uint8_t token[8];       /* coap: the exchange in flight */
        size_t token_len;
        uint8_t *got;           /* http --expect: the answer so far */
        size_t got_len;
};

static uint8_t *body, *expect;
static size_t body_len, expect_len;
static const char *proxy_uri;
static unsigned nodes = 10, total = 1000, block_size = 1024;
static unsigned sent, done, errors, lost;
static double timeout_s = 60;
static double last_answer;      /* when the last exchange that was not lost ended */
static double *lat;
static struct node *node;

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void record(struct node *n, int ok) {
        double now = now_s();

        if (done < total)
                lat[done] = now - n->started;
        last_answer = now;
        done++;
        if (!ok)
                errors++;
        n->busy = 0;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

/* does an answer of LEN bytes at DATA pass --expect? */
static int answer_ok(const uint8_t *data, size_t len) {
        return !expect || (len == expect_len && data && memcmp(data, expect, len) == 0);
}

static void report(const char *mode, double t0) {
        unsigned n = done < total ? done : total;
        double sum = 0, seconds = (lost ? last_answer : now_s()) - t0;

        for (unsigned i = 0; i < n; i++)
                sum += lat[i];
        qsort(lat, n, sizeof *lat, cmp_double);
#define PCT(p) (n ? lat[(size_t) ((n - 1) * (p))] * 1000 : 0)
        printf("mode=%s nodes=%u exchanges=%u errors=%u seconds=%.3f rate=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f mean_ms=%.3f lost=%u\n",
               mode, nodes, n, errors, seconds, (n - lost) / seconds, PCT(0.5), PCT(0.9), PCT(0.99), PCT(1.0),
               n ? sum / n * 1000 : 0, lost);
}

/* ---- CoAP ---- */

static coap_uri_t uri;

static unsigned request_block_size(void) {
        unsigned b = block_size;
        while (b > 16 && b >= body_len)
                b /= 2;
        return b;
}

static unsigned szx_of(unsigned b) {
        unsigned szx = 0;
        while ((16u << szx) < b)
                szx++;
        return szx;
}

static int coap_send_one(struct node *n) {
        coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, n->session);
        uint8_t buf[8], tok[8];
        size_t toklen;
        coap_optlist_t *opts = NULL;
        uint8_t pathbuf[256];
        size_t pathlen = sizeof pathbuf;
        int segs;

        if (!pdu)
                return -1;
        coap_session_new_token(n->session, &toklen, tok);
        coap_add_token(pdu, toklen, tok);
        memcpy(n->token, tok, toklen);
        n->token_len = toklen;
        if (proxy_uri) {
                coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_PROXY_URI, strlen(proxy_uri),
                                                            (const uint8_t *) proxy_uri));
        } else {
                segs = coap_split_path(uri.path.s, uri.path.length, pathbuf, &pathlen);
                for (uint8_t *p = pathbuf; segs-- > 0; p += coap_opt_size(p))
                        coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_URI_PATH, coap_opt_length(p),
                                                                    coap_opt_value(p)));
        }
        coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_CONTENT_FORMAT,
                                                    coap_encode_var_safe(buf, sizeof buf, 259), buf));
        coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_BLOCK1,
                                                    coap_encode_var_safe(buf, sizeof buf, szx_of(request_block_size())), buf));
        coap_add_optlist_pdu(pdu, &opts);
        coap_delete_optlist(opts);
        coap_add_data_large_request(n->session, pdu, body_len, body, NULL, NULL);
        n->started = now_s();
        n->busy = 1;
        sent++;
        return coap_send(n->session, pdu) == COAP_INVALID_MID ? -1 : 0;
}

static struct node *node_of(coap_session_t *s) {
        for (unsigned i = 0; i < nodes; i++)
                if (node[i].session == s)
                        return &node[i];
        return NULL;
}

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent_pdu,
                                   const coap_pdu_t *received, const coap_mid_t mid) {
        struct node *n = node_of(s);
        coap_pdu_code_t code = coap_pdu_get_code(received);
        coap_bin_const_t token = coap_pdu_get_token(received);
        const uint8_t *data = NULL;
        size_t len = 0, offset, size;

        if (!n || !n->busy || code == COAP_EMPTY_CODE || code == COAP_RESPONSE_CODE_CONTINUE)
                return COAP_RESPONSE_OK;
        if (token.length != n->token_len || memcmp(token.s, n->token, token.length) != 0)
                return COAP_RESPONSE_OK;        /* a late answer to an exchange given up */
        if (expect)
                coap_get_data_large(received, &len, &data, &offset, &size);
        record(n, code == COAP_RESPONSE_CODE_CHANGED && answer_ok(data, len));
        if (sent < total)
                coap_send_one(n);
        return COAP_RESPONSE_OK;
}

static void on_nack(coap_session_t *s, const coap_pdu_t *sent_pdu, const coap_nack_reason_t reason,
                    const coap_mid_t mid) {
        struct node *n = node_of(s);
        coap_bin_const_t token = sent_pdu ? coap_pdu_get_token(sent_pdu) : (coap_bin_const_t) { 0, NULL };

        if (!n || !n->busy)
                return;
        if (sent_pdu && (token.length != n->token_len || memcmp(token.s, n->token, token.length) != 0))
                return;
        record(n, 0);
        if (sent < total)
                coap_send_one(n);
}

static int run_coap(const char *u) {
        coap_context_t *ctx;
        coap_address_t dst;
        double t0;

        if (coap_split_uri((const uint8_t *) u, strlen(u), &uri) < 0) {
                fprintf(stderr, "cmpgw_bench: bad URI %s\n", u);
                return 2;
        }
        coap_startup();
        coap_set_log_level(LOG_EMERG);
        ctx = coap_new_context(NULL);
        coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
        coap_register_response_handler(ctx, on_response);
        coap_register_nack_handler(ctx, on_nack);
        coap_address_init(&dst);
        dst.addr.sin.sin_family = AF_INET;
        dst.addr.sin.sin_port = htons(uri.port);
        dst.size = sizeof dst.addr.sin;
        {
                char host[64];
                snprintf(host, sizeof host, "%.*s", (int) uri.host.length, uri.host.s);
                if (inet_pton(AF_INET, host, &dst.addr.sin.sin_addr) != 1) {
                        fprintf(stderr, "cmpgw_bench: host must be a numeric IPv4 address\n");
                        return 2;
                }
        }
        for (unsigned i = 0; i < nodes; i++)
                node[i].session = coap_new_client_session(ctx, NULL, &dst, COAP_PROTO_UDP);
        t0 = now_s();
        for (unsigned i = 0; i < nodes && sent < total; i++)
                coap_send_one(&node[i]);
        while (done < total && now_s() - t0 < 600) {
                double now;

                coap_io_process(ctx, 100);
                now = now_s();
                for (unsigned i = 0; i < nodes; i++) {
                        if (!node[i].busy || now - node[i].started < timeout_s)
                                continue;
                        double keep = last_answer;

                        lost++;
                        record(&node[i], 0);
                        last_answer = keep;
                        if (sent < total)
                                coap_send_one(&node[i]);
                }
        }
        report("coap", t0);
        for (unsigned i = 0; i < nodes; i++)
                coap_session_release(node[i].session);
        coap_free_context(ctx);
        coap_cleanup();
        return 0;
}

/* ---- HTTP ---- */

static size_t discard(char *p, size_t s, size_t n, void *u) { return s * n; }

/* --expect: keep at most expect_len + 1 bytes, enough to tell a mismatch */
static size_t collect(char *p, size_t s, size_t n, void *u) {
        struct node *nd = u;
        size_t len = s * n, room = expect_len + 1 - nd->got_len;

        if (len < room)
                room = len;
        memcpy(nd->got + nd->got_len, p, room);
        nd->got_len += room;
        return len;
}

static void http_start(CURLM *m, struct node *n) {
        curl_multi_remove_handle(m, n->easy);
        n->started = now_s();
        n->busy = 1;
        n->got_len = 0;
        sent++;
        curl_multi_add_handle(m, n->easy);
}

static int run_http(const char *url) {
        struct curl_slist *h = NULL;
        CURLM *m;
        double t0;
        int running;

        curl_global_init(CURL_GLOBAL_DEFAULT);
        m = curl_multi_init();
        h = curl_slist_append(h, "Content-Type: application/pkixcmp");
        h = curl_slist_append(h, "Expect:");
        for (unsigned i = 0; i < nodes; i++) {
                CURL *e = curl_easy_init();
                curl_easy_setopt(e, CURLOPT_URL, url);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *) body);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
                if (expect) {
                        node[i].got = malloc(expect_len + 1);
                        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
                        curl_easy_setopt(e, CURLOPT_WRITEDATA, &node[i]);
                } else {
                        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
                }
                curl_easy_setopt(e, CURLOPT_PRIVATE, &node[i]);
                node[i].easy = e;
        }
        t0 = now_s();
        for (unsigned i = 0; i < nodes && sent < total; i++)
                http_start(m, &node[i]);
        while (done < total && now_s() - t0 < 600) {
                CURLMsg *msg;
                int left;
                curl_multi_perform(m, &running);
                while ((msg = curl_multi_info_read(m, &left))) {
                        struct node *n;
                        long status = 0;
                        if (msg->msg != CURLMSG_DONE)
                                continue;
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &n);
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
                        record(n, msg->data.result == CURLE_OK && status == 200 &&
                                  (!expect || answer_ok(n->got, n->got_len)));
                        if (sent < total)
                                http_start(m, n);
                }
                curl_multi_poll(m, NULL, 0, 100, NULL);
        }
        report("http", t0);
        for (unsigned i = 0; i < nodes; i++) {
                curl_multi_remove_handle(m, node[i].easy);
                curl_easy_cleanup(node[i].easy);
                free(node[i].got);
        }
        curl_multi_cleanup(m);
        curl_slist_free_all(h);
        curl_global_cleanup();
        return 0;
}

static int read_file(const char *path, uint8_t **buf, size_t *len) {
        FILE *f = fopen(path, "rb");
        long n;

        if (!f)
                return -errno;
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        rewind(f);
        *buf = malloc(n > 0 ? (size_t) n : 1);
        *len = fread(*buf, 1, (size_t) n, f);
        fclose(f);
        return 0;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "nodes", required_argument, NULL, 'n' },
                { "requests", required_argument, NULL, 'r' },
                { "block-size", required_argument, NULL, 'b' },
                { "proxy-uri", required_argument, NULL, 'P' },
                { "expect", required_argument, NULL, 'e' },
                { "timeout", required_argument, NULL, 't' },
                {}
        };
        int c, r;

        const char *expect_path = NULL;

        while ((c = getopt_long(argc, argv, "n:r:b:P:e:t:", opts, NULL)) != -1) {
                switch (c) {
                case 'n': nodes = (unsigned) atoi(optarg); break;
                case 'r': total = (unsigned) atoi(optarg); break;
                case 'b': block_size = (unsigned) atoi(optarg); break;
                case 'P': proxy_uri = optarg; break;
                case 'e': expect_path = optarg; break;
                case 't': timeout_s = atof(optarg); break;
                default: return 2;
                }
        }
        if (argc - optind != 3 || nodes == 0 || total == 0) {
                fprintf(stderr, "usage: cmpgw_bench coap|http URI FILE [--nodes N] [--requests M] [--block-size B]\n"
                                "                   [--proxy-uri TARGET] [--expect ANSWER] [--timeout S]\n");
                return 2;
        }
        if ((r = read_file(argv[optind + 2], &body, &body_len)) < 0) {
                fprintf(stderr, "cmpgw_bench: %s: %s\n", argv[optind + 2], strerror(-r));
                return 2;
        }
        if (expect_path && (r = read_file(expect_path, &expect, &expect_len)) < 0) {
                fprintf(stderr, "cmpgw_bench: %s: %s\n", expect_path, strerror(-r));
                return 2;
        }
        lat = calloc(total, sizeof *lat);
        node = calloc(nodes, sizeof *node);
        r = strcmp(argv[optind], "coap") == 0 ? run_coap(argv[optind + 1]) :
            strcmp(argv[optind], "http") == 0 ? run_http(argv[optind + 1]) : 2;
        free(lat);
        free(node);
        free(body);
        free(expect);
        return r;
}
