/* cmpgw_bench.c -- load generator for cmpgw benchmarks (not a test)
 *
 *   cmpgw_bench coap URI FILE [URI2 FILE2 ...] [--nodes N] [--requests M]
 *               [--block-size B] [--proxy-uri TARGET] [--expect ANSWER]...
 *               [--timeout S] [--warm-up W] [--rate R] [--source ADDR]
 *               [--psk ID:KEY | --cert FILE --key FILE] [--ca FILE]
 *   cmpgw_bench http URL FILE [--nodes N] [--requests M] [--expect ANSWER]
 *   cmpgw_bench flood URI FILE --rate R --seconds S [--sessions K]
 *               [--source ADDR] [--non]
 *
 * coap, http: N simulated nodes each run exchanges, one at a time, until M
 * exchanges in all are done. An exchange is the POST of FILE to URI and its
 * answer; with more URI FILE pairs it is that sequence, each message sent
 * when the answer to the one before is in (an enrolment: ir, then certConf
 * after the ip), and its latency runs from the first request to the last
 * answer. coap: one CoAP session (own UDP port) per node, Confirmable POST,
 * Content-Format 259, block-wise with a block size that cuts the body into at
 * least two blocks (as cmpcoap does: libcoap 4.3.1 clients hang on a separate
 * Block2 answer to a single-PDU request). http: one curl easy handle (and
 * kept-alive connection) per node, POST application/pkixcmp, one message.
 *
 * coaps:// URIs: each node's session is a DTLS session (libcoap's OpenSSL
 * client), with --psk ID:KEY, or certificates (--cert/--key: a client
 * certificate; --ca: trust anchors that the server's certificate must
 * chain to). The handshake is part of a node's first exchange: use
 * --warm-up to leave it out.
 * --warm-up W (coap): first W exchanges per node, not measured (sessions
 * and handshakes made, caches warm); then the clock starts.
 * --rate R (coap): start R exchanges per second in all (each on an idle
 * node; no new one when none is idle) instead of one right after the
 * other; an exchange's latency then runs from its slot in that schedule, so
 * that a stalled server is not hidden by nodes that could not start.
 * --source ADDR: the nodes' local IPv4 address (e.g. 127.0.0.2: another
 * peer to the server's per-address limits).
 * --proxy-uri TARGET (coap): send the requests to the CoAP forward proxy at
 * URI (only its host and port are used) with a Proxy-Uri option naming
 * TARGET instead of Uri-Path options (RFC 7252 §5.10.2), e.g. to measure
 * libcoap's coap-server acting as a proxy.
 * --expect ANSWER (once per message): an exchange counts as an error unless
 * each answer is byte for byte its file ANSWER (checked after the clock
 * stops for it).
 * --timeout S (coap, default 60): an exchange without an answer after S
 * seconds is given up, counted as an error and as lost, and the node starts
 * its next one (an answer that never comes would otherwise stall the run).
 * seconds and rate then count up to the last answer, not the wait for the
 * lost ones: rate = (exchanges - lost) / seconds.
 *
 * Prints one line:
 *   mode=coap nodes=N exchanges=M errors=E seconds=S rate=R p50_ms=.. p90_ms=.. p95_ms=.. p99_ms=.. max_ms=.. mean_ms=.. lost=L session_failures=F warm_up_failed=W
 * F (coap): sessions that failed (a DTLS handshake, or no delivery), each
 * replaced by a new one before its node's next exchange; warm_up_failed:
 * warm-up exchanges that failed or were lost (not in the other figures).
 *
 * flood: a misbehaving peer. R requests per second, for S seconds, each the
 * single-PDU POST of FILE (Content-Format 259) to URI, Confirmable (--non:
 * Non-confirmable), a new message ID each and never retransmitted, spread
 * over K UDP sockets (default 8) from --source. Answers are counted by
 * code; a separate Confirmable answer is acknowledged. Raw UDP: sending
 * must stay cheap. Prints one line, 2 s after the last request:
 *   mode=flood sent=N seconds=S rate=R answered=A c2xx=.. c429=.. c503=.. other=.. unanswered=U
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <coap3/coap.h>
#include <curl/curl.h>

#define MAX_STEPS 4
#define CT_PKIXCMP 259

struct step {
        const char *uri_text;
        coap_uri_t uri;
        uint8_t *body, *expect;
        size_t len, expect_len;
};

struct node {
        coap_session_t *session;
        CURL *easy;
        double started;
        int busy;
        bool broken;            /* coap: the session failed; a new one before the next exchange */
        unsigned step;          /* coap: the message of the exchange in flight */
        bool ok;                /* no wrong answer so far in this exchange */
        uint8_t token[8];
        size_t token_len;
        uint8_t *got;           /* http --expect: the answer so far */
        size_t got_len;
};

static struct step steps[MAX_STEPS];
static unsigned n_steps;
static const char *proxy_uri;
static unsigned nodes = 10, total = 1000, block_size = 1024, warm_up, flood_sockets = 8;
static unsigned sent, done, errors, lost, session_failures, warm_up_failed;
static double timeout_s = 60, rate_per_s, flood_seconds = 10;
static double last_answer;      /* when the last exchange that was not lost ended */
static double *lat;
static bool measuring = true, flood_non;
static struct node *node;
static struct sockaddr_in source;

/* coaps credentials; libcoap keeps pointers to them */
static char psk_identity[129];
static uint8_t psk_key[64];
static size_t psk_key_len;
static const char *tls_cert, *tls_key, *tls_ca;

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void record(struct node *n, int ok) {
        double now = now_s();

        if (measuring && done < total)
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

/* does an answer of LEN bytes at DATA pass step S's --expect? */
static int answer_ok(const struct step *s, const uint8_t *data, size_t len) {
        return !s->expect || (len == s->expect_len && data && memcmp(data, s->expect, len) == 0);
}

static void report(const char *mode, double t0) {
        unsigned n = done < total ? done : total;
        double sum = 0, seconds = (lost && last_answer > t0 ? last_answer : now_s()) - t0;

        for (unsigned i = 0; i < n; i++)
                sum += lat[i];
        qsort(lat, n, sizeof *lat, cmp_double);
#define PCT(p) (n ? lat[(size_t) ((n - 1) * (p))] * 1000 : 0)
        printf("mode=%s nodes=%u exchanges=%u errors=%u seconds=%.3f rate=%.1f p50_ms=%.2f p90_ms=%.2f "
               "p95_ms=%.2f p99_ms=%.2f max_ms=%.2f mean_ms=%.3f lost=%u session_failures=%u warm_up_failed=%u\n",
               mode, nodes, n, errors, seconds, (n - lost) / seconds, PCT(0.5), PCT(0.9), PCT(0.95),
               PCT(0.99), PCT(1.0), n ? sum / n * 1000 : 0, lost, session_failures, warm_up_failed);
}

/* ---- CoAP ---- */

static unsigned request_block_size(size_t body_len) {
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

/* send message n->step of n's exchange */
static int coap_send_step(struct node *n) {
        const struct step *s = &steps[n->step];
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
                segs = coap_split_path(s->uri.path.s, s->uri.path.length, pathbuf, &pathlen);
                for (uint8_t *p = pathbuf; segs-- > 0; p += coap_opt_size(p))
                        coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_URI_PATH, coap_opt_length(p),
                                                                    coap_opt_value(p)));
        }
        coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_CONTENT_FORMAT,
                                                    coap_encode_var_safe(buf, sizeof buf, CT_PKIXCMP), buf));
        coap_insert_optlist(&opts, coap_new_optlist(COAP_OPTION_BLOCK1,
                                                    coap_encode_var_safe(buf, sizeof buf,
                                                                         szx_of(request_block_size(s->len))),
                                                    buf));
        coap_add_optlist_pdu(pdu, &opts);
        coap_delete_optlist(opts);
        coap_add_data_large_request(n->session, pdu, s->len, s->body, NULL, NULL);
        return coap_send(n->session, pdu) == COAP_INVALID_MID ? -1 : 0;
}

/* start an exchange on n; its latency counts from AT */
static void coap_start(struct node *n, double at) {
        n->started = at;
        n->busy = 1;
        n->step = 0;
        n->ok = true;
        sent++;
        coap_send_step(n);
}

static struct node *node_of(coap_session_t *s) {
        for (unsigned i = 0; i < nodes; i++)
                if (node[i].session == s)
                        return &node[i];
        return NULL;
}

/* the exchange on n ended; closed loop: the node starts its next one
 * (a broken one after run_phase() gave it a new session) */
static void coap_end(struct node *n, int ok, unsigned phase_total) {
        record(n, ok);
        if ((rate_per_s == 0 || !measuring) && !n->broken && sent < phase_total)
                coap_start(n, now_s());
}

static unsigned phase_total;

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
        if (steps[n->step].expect)
                coap_get_data_large(received, &len, &data, &offset, &size);
        if (code != COAP_RESPONSE_CODE_CHANGED || !answer_ok(&steps[n->step], data, len))
                n->ok = false;
        if (n->ok && n->step + 1 < n_steps) {
                n->step++;
                coap_send_step(n);
                return COAP_RESPONSE_OK;
        }
        coap_end(n, n->ok, phase_total);
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
        if (reason == COAP_NACK_TLS_FAILED || reason == COAP_NACK_NOT_DELIVERABLE) {
                n->broken = true;
                session_failures++;
        }
        coap_end(n, 0, phase_total);
}

static coap_address_t server;

static coap_session_t *open_session(coap_context_t *ctx, const coap_address_t *dst, const coap_uri_t *u) {
        coap_address_t local, *lp = NULL;

        if (source.sin_family) {
                coap_address_init(&local);
                local.addr.sin = source;
                local.size = sizeof local.addr.sin;
                lp = &local;
        }
        if (u->scheme != COAP_URI_SCHEME_COAPS)
                return coap_new_client_session(ctx, lp, dst, COAP_PROTO_UDP);
        if (psk_identity[0]) {
                coap_dtls_cpsk_t psk = {
                        .version = COAP_DTLS_CPSK_SETUP_VERSION,
                        .psk_info.identity = { strlen(psk_identity), (const uint8_t *) psk_identity },
                        .psk_info.key = { psk_key_len, psk_key },
                };
                return coap_new_client_session_psk2(ctx, lp, dst, COAP_PROTO_DTLS, &psk);
        }
        coap_dtls_pki_t pki = {
                .version = COAP_DTLS_PKI_SETUP_VERSION,
                .verify_peer_cert = tls_ca != NULL,
                .pki_key = {
                        .key_type = COAP_PKI_KEY_PEM,
                        .key.pem = { .public_cert = tls_cert, .private_key = tls_key },
                },
        };
        return coap_new_client_session_pki(ctx, lp, dst, COAP_PROTO_DTLS, &pki);
}

/* an idle node, or NULL */
static struct node *idle_node(void) {
        for (unsigned i = 0; i < nodes; i++)
                if (!node[i].busy && !node[i].broken)
                        return &node[i];
        return NULL;
}

/* nodes whose session failed get a new one (not from a libcoap callback) */
static void renew_sessions(coap_context_t *ctx, unsigned count) {
        for (unsigned i = 0; i < nodes; i++) {
                struct node *n = &node[i];

                if (!n->broken || n->busy)
                        continue;
                coap_session_release(n->session);
                n->session = open_session(ctx, &server, &steps[0].uri);
                if (!n->session)
                        continue;       /* stays broken: no more exchanges on this node */
                n->broken = false;
                if ((rate_per_s == 0 || !measuring) && sent < count)
                        coap_start(n, now_s());
        }
}

/* run exchanges until COUNT are done; paced by --rate when measuring */
static void run_phase(coap_context_t *ctx, unsigned count) {
        bool paced = measuring && rate_per_s > 0;
        double t0 = now_s(), next_slot = t0;

        sent = done = errors = lost = 0;
        phase_total = count;
        if (!paced)
                for (unsigned i = 0; i < nodes && sent < count; i++)
                        coap_start(&node[i], t0);
        while (done < count && now_s() - t0 < 600) {
                double now = now_s();
                unsigned wait_ms = 100;
                struct node *n;

                while (paced && sent < count && now >= next_slot && (n = idle_node())) {
                        coap_start(n, next_slot);
                        next_slot += 1 / rate_per_s;
                }
                if (paced && sent < count) {
                        double ms = (next_slot - now) * 1000;
                        wait_ms = ms < 1 ? 1 : ms > 100 ? 100 : (unsigned) ms;
                }
                coap_io_process(ctx, wait_ms);
                renew_sessions(ctx, count);
                now = now_s();
                for (unsigned i = 0; i < nodes; i++) {
                        if (!node[i].busy || now - node[i].started < timeout_s)
                                continue;
                        double keep = last_answer;

                        lost++;
                        node[i].broken = true;  /* a session that may be dead: a new one */
                        coap_end(&node[i], 0, count);
                        last_answer = keep;
                }
        }
}

static int run_coap(void) {
        coap_context_t *ctx;
        coap_address_t *dst = &server;
        const coap_uri_t *uri = &steps[0].uri;
        double t0;
        char host[64];

        coap_startup();
        coap_set_log_level(LOG_EMERG);
        ctx = coap_new_context(NULL);
        coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
        coap_register_response_handler(ctx, on_response);
        coap_register_nack_handler(ctx, on_nack);
        if (tls_ca && !coap_context_set_pki_root_cas(ctx, tls_ca, NULL)) {
                fprintf(stderr, "cmpgw_bench: --ca %s: cannot load\n", tls_ca);
                return 2;
        }
        coap_address_init(dst);
        dst->addr.sin.sin_family = AF_INET;
        dst->addr.sin.sin_port = htons(uri->port);
        dst->size = sizeof dst->addr.sin;
        snprintf(host, sizeof host, "%.*s", (int) uri->host.length, uri->host.s);
        if (inet_pton(AF_INET, host, &dst->addr.sin.sin_addr) != 1) {
                fprintf(stderr, "cmpgw_bench: host must be a numeric IPv4 address\n");
                return 2;
        }
        for (unsigned i = 0; i < nodes; i++) {
                node[i].session = open_session(ctx, dst, uri);
                if (!node[i].session) {
                        fprintf(stderr, "cmpgw_bench: cannot open a session to %s (credentials?)\n", steps[0].uri_text);
                        return 1;
                }
        }
        if (warm_up) {
                measuring = false;
                run_phase(ctx, nodes * warm_up);
                warm_up_failed = errors;
                measuring = true;
        }
        t0 = now_s();
        run_phase(ctx, total);
        report("coap", t0);
        for (unsigned i = 0; i < nodes; i++)
                coap_session_release(node[i].session);
        coap_free_context(ctx);
        coap_cleanup();
        return 0;
}

/* ---- flood ---- */

static uint8_t *opt_header(uint8_t *p, unsigned delta, size_t len) {
        uint8_t *h = p++;

        *h = 0;
        if (delta < 13) {
                *h |= delta << 4;
        } else {
                *h |= 13 << 4;
                *p++ = (uint8_t) (delta - 13);
        }
        if (len < 13) {
                *h |= (uint8_t) len;
        } else if (len < 269) {
                *h |= 13;
                *p++ = (uint8_t) (len - 13);
        } else {
                *h |= 14;
                *p++ = (uint8_t) ((len - 269) >> 8);
                *p++ = (uint8_t) (len - 269);
        }
        return p;
}

/* a POST of the body of step 0 to its path, Content-Format 259, token 4
 * bytes; the message ID and token are filled in per request. Returns the
 * length (0 if it does not fit BUF). */
static size_t flood_pdu(uint8_t *buf, size_t size) {
        const struct step *s = &steps[0];
        const uint8_t *path = s->uri.path.s, *end = path + s->uri.path.length;
        uint8_t *p = buf;
        unsigned last = 0;

        if (size < 64 + s->uri.path.length + s->len)
                return 0;
        *p++ = (uint8_t) (0x40 | (flood_non ? 0x10 : 0) | 4);
        *p++ = COAP_REQUEST_CODE_POST;
        p += 2 + 4;                     /* message ID, token */
        while (path < end) {
                const uint8_t *slash = memchr(path, '/', (size_t) (end - path));
                size_t seg = (size_t) ((slash ? slash : end) - path);

                p = opt_header(p, COAP_OPTION_URI_PATH - last, seg);
                memcpy(p, path, seg);
                p += seg;
                last = COAP_OPTION_URI_PATH;
                path += seg + (slash != NULL);
        }
        p = opt_header(p, COAP_OPTION_CONTENT_FORMAT - last, 2);
        *p++ = CT_PKIXCMP >> 8;
        *p++ = CT_PKIXCMP & 0xff;
        *p++ = 0xff;
        memcpy(p, s->body, s->len);
        return (size_t) (p - buf) + s->len;
}

struct flood_count {
        unsigned long answered, c2xx, c429, c503, other;
};

/* read what came back on fd: count answers, ACK separate CON answers */
static void flood_drain(int fd, struct flood_count *c) {
        uint8_t in[2048];
        ssize_t got;

        while ((got = recv(fd, in, sizeof in, MSG_DONTWAIT)) >= 4) {
                uint8_t type = (in[0] >> 4) & 3, code = in[1];

                if (type == COAP_MESSAGE_CON) {
                        uint8_t ack[4] = { 0x60, 0, in[2], in[3] };
                        send(fd, ack, sizeof ack, MSG_DONTWAIT);
                }
                if (code == 0)
                        continue;       /* empty ACK: the answer comes separately */
                c->answered++;
                if (code >> 5 == 2)
                        c->c2xx++;
                else if (code == COAP_RESPONSE_CODE(429))
                        c->c429++;
                else if (code == COAP_RESPONSE_CODE(503))
                        c->c503++;
                else
                        c->other++;
        }
}

static int run_flood(void) {
        const coap_uri_t *u = &steps[0].uri;
        struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(u->port) };
        struct flood_count c = {};
        struct pollfd *pfd = calloc(flood_sockets, sizeof *pfd);
        uint8_t pdu[4096];
        size_t len = flood_pdu(pdu, sizeof pdu);
        char host[64];
        unsigned long n_sent = 0;
        double t0, end, drain_end;

        snprintf(host, sizeof host, "%.*s", (int) u->host.length, u->host.s);
        if (!pfd || !len || inet_pton(AF_INET, host, &dst.sin_addr) != 1 || rate_per_s <= 0) {
                fprintf(stderr, "cmpgw_bench flood: needs a numeric IPv4 URI, --rate and a body that fits a PDU\n");
                return 2;
        }
        for (unsigned i = 0; i < flood_sockets; i++) {
                int fd = socket(AF_INET, SOCK_DGRAM, 0);

                if (fd < 0 || (source.sin_family && bind(fd, (struct sockaddr *) &source, sizeof source) < 0) ||
                    connect(fd, (struct sockaddr *) &dst, sizeof dst) < 0) {
                        perror("cmpgw_bench flood: socket");
                        return 1;
                }
                pfd[i] = (struct pollfd) { .fd = fd, .events = POLLIN };
        }
        t0 = now_s();
        end = t0 + flood_seconds;
        drain_end = end + 2;
        for (double now = t0; now < drain_end; now = now_s()) {
                unsigned long due = now < end ? (unsigned long) ((now - t0) * rate_per_s) : n_sent;

                for (; n_sent < due; n_sent++) {
                        uint32_t id = (uint32_t) n_sent;

                        pdu[2] = (uint8_t) (id >> 8);
                        pdu[3] = (uint8_t) id;
                        memcpy(pdu + 4, &id, 4);
                        send(pfd[n_sent % flood_sockets].fd, pdu, len, MSG_DONTWAIT);
                }
                if (poll(pfd, flood_sockets, 1) > 0)
                        for (unsigned i = 0; i < flood_sockets; i++)
                                if (pfd[i].revents & POLLIN)
                                        flood_drain(pfd[i].fd, &c);
        }
        printf("mode=flood sent=%lu seconds=%.3f rate=%.1f answered=%lu c2xx=%lu c429=%lu c503=%lu other=%lu "
               "unanswered=%lu\n", n_sent, flood_seconds, n_sent / flood_seconds, c.answered, c.c2xx, c.c429,
               c.c503, c.other, n_sent > c.answered ? n_sent - c.answered : 0);
        for (unsigned i = 0; i < flood_sockets; i++)
                close(pfd[i].fd);
        free(pfd);
        return 0;
}

/* ---- HTTP ---- */

static size_t discard(char *p, size_t s, size_t n, void *u) { return s * n; }

/* --expect: keep at most expect_len + 1 bytes, enough to tell a mismatch */
static size_t collect(char *p, size_t s, size_t n, void *u) {
        struct node *nd = u;
        size_t len = s * n, room = steps[0].expect_len + 1 - nd->got_len;

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

static int run_http(void) {
        const struct step *s = &steps[0];
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
                curl_easy_setopt(e, CURLOPT_URL, s->uri_text);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *) s->body);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) s->len);
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
                if (s->expect) {
                        node[i].got = malloc(s->expect_len + 1);
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
                                  (!s->expect || answer_ok(s, n->got, n->got_len)));
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

/* --psk ID:KEY */
static int set_psk(const char *arg) {
        const char *colon = strchr(arg, ':');

        if (!colon || colon == arg || (size_t) (colon - arg) >= sizeof psk_identity ||
            strlen(colon + 1) == 0 || strlen(colon + 1) > sizeof psk_key)
                return -1;
        snprintf(psk_identity, sizeof psk_identity, "%.*s", (int) (colon - arg), arg);
        psk_key_len = strlen(colon + 1);
        memcpy(psk_key, colon + 1, psk_key_len);
        return 0;
}

static void usage(void) {
        fprintf(stderr,
                "usage: cmpgw_bench coap URI FILE [URI FILE...] [--nodes N] [--requests M] [--block-size B]\n"
                "                   [--proxy-uri TARGET] [--expect ANSWER]... [--timeout S] [--warm-up W]\n"
                "                   [--rate R] [--source ADDR] [--psk ID:KEY | --cert F --key F] [--ca F]\n"
                "       cmpgw_bench http URL FILE [--nodes N] [--requests M] [--expect ANSWER]\n"
                "       cmpgw_bench flood URI FILE --rate R --seconds S [--sessions K] [--source ADDR] [--non]\n");
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "nodes", required_argument, NULL, 'n' },
                { "requests", required_argument, NULL, 'r' },
                { "block-size", required_argument, NULL, 'b' },
                { "proxy-uri", required_argument, NULL, 'P' },
                { "expect", required_argument, NULL, 'e' },
                { "timeout", required_argument, NULL, 't' },
                { "warm-up", required_argument, NULL, 'w' },
                { "rate", required_argument, NULL, 'R' },
                { "source", required_argument, NULL, 's' },
                { "psk", required_argument, NULL, 'p' },
                { "cert", required_argument, NULL, 'c' },
                { "key", required_argument, NULL, 'k' },
                { "ca", required_argument, NULL, 'a' },
                { "seconds", required_argument, NULL, 'S' },
                { "sessions", required_argument, NULL, 'K' },
                { "non", no_argument, NULL, 'N' },
                {}
        };
        const char *expect_path[MAX_STEPS] = {};
        unsigned n_expect = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 'n': nodes = (unsigned) atoi(optarg); break;
                case 'r': total = (unsigned) atoi(optarg); break;
                case 'b': block_size = (unsigned) atoi(optarg); break;
                case 'P': proxy_uri = optarg; break;
                case 'e':
                        if (n_expect == MAX_STEPS)
                                return usage(), 2;
                        expect_path[n_expect++] = optarg;
                        break;
                case 't': timeout_s = atof(optarg); break;
                case 'w': warm_up = (unsigned) atoi(optarg); break;
                case 'R': rate_per_s = atof(optarg); break;
                case 's':
                        source.sin_family = AF_INET;
                        if (inet_pton(AF_INET, optarg, &source.sin_addr) != 1)
                                return usage(), 2;
                        break;
                case 'p':
                        if (set_psk(optarg) < 0)
                                return usage(), 2;
                        break;
                case 'c': tls_cert = optarg; break;
                case 'k': tls_key = optarg; break;
                case 'a': tls_ca = optarg; break;
                case 'S': flood_seconds = atof(optarg); break;
                case 'K': flood_sockets = (unsigned) atoi(optarg); break;
                case 'N': flood_non = true; break;
                default: return usage(), 2;
                }
        }
        n_steps = (unsigned) (argc - optind - 1) / 2;
        if (argc - optind < 3 || (argc - optind - 1) % 2 != 0 || n_steps > MAX_STEPS || n_expect > n_steps ||
            nodes == 0 || total == 0 || flood_sockets == 0 || !tls_cert != !tls_key) {
                usage();
                return 2;
        }
        for (unsigned i = 0; i < n_steps; i++) {
                struct step *s = &steps[i];
                const char *u = argv[optind + 1 + 2 * i], *f = argv[optind + 2 + 2 * i];

                s->uri_text = u;
                if (strcmp(argv[optind], "http") != 0 &&
                    coap_split_uri((const uint8_t *) u, strlen(u), &s->uri) < 0) {
                        fprintf(stderr, "cmpgw_bench: bad URI %s\n", u);
                        return 2;
                }
                if ((r = read_file(f, &s->body, &s->len)) < 0) {
                        fprintf(stderr, "cmpgw_bench: %s: %s\n", f, strerror(-r));
                        return 2;
                }
                if (expect_path[i] && (r = read_file(expect_path[i], &s->expect, &s->expect_len)) < 0) {
                        fprintf(stderr, "cmpgw_bench: %s: %s\n", expect_path[i], strerror(-r));
                        return 2;
                }
        }
        lat = calloc(total, sizeof *lat);
        node = calloc(nodes, sizeof *node);
        if (strcmp(argv[optind], "coap") == 0)
                r = run_coap();
        else if (strcmp(argv[optind], "http") == 0 && n_steps == 1)
                r = run_http();
        else if (strcmp(argv[optind], "flood") == 0 && n_steps == 1)
                r = run_flood();
        else
                r = (usage(), 2);
        free(lat);
        free(node);
        for (unsigned i = 0; i < n_steps; i++) {
                free(steps[i].body);
                free(steps[i].expect);
        }
        return r;
}
