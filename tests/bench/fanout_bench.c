/* fanout_bench.c -- announcement fan-out load generator (not a test)
 *
 *   fanout_bench HOST PORT --expect FILE [--observers N] [--per-address K]
 *                [--path P] [--window W] [--timeout S] [--linger S]
 *                [--gw-pid PID] [--sessions-first] -- PUBLISH-COMMAND [ARGS...]
 *
 * N observers, each its own UDP socket bound to its own source address
 * 127.0.x.y (K observers per address, default 1), register with a
 * Confirmable GET + Observe on coap://HOST:PORT/P (default
 * .well-known/cmp/ann), at most W registrations in flight (default 64: a
 * default receive buffer holds about 250 datagrams). When all are
 * registered and the gateway has read everything sent to it (its socket's
 * queue in /proc/net/udp, settle_ms), it runs PUBLISH-COMMAND (e.g.
 * `cmpgwctl announce FILE`) and measures from just before that command starts until the last
 * observer holds the whole announcement, as a node does it: the notification
 * is a Confirmable 2.05 carrying Block2 block 0 (RFC 7641, RFC 7959 §2.6),
 * the observer ACKs it and GETs the remaining blocks with Block2 (new token,
 * no Observe), checks that every block carries the notification's ETag and
 * compares the SHA-256 of the body with that of FILE.
 *
 * Raw CoAP over UDP (RFC 7252) with epoll, so that 10,000 observers cost
 * the client little: Confirmable requests are retransmitted after 2-3 s,
 * doubling, 4 times (§4.2); a Confirmable message from the gateway is ACKed,
 * and again when it comes again (a retransmission, counted).
 *
 * --sessions-first: every socket first sends a plain GET (no Observe), so
 * that the gateway's memory can be read with N libcoap sessions and no
 * observers, then registers: the observer's own cost is the difference.
 * --gw-pid PID: read the gateway's Rss and Pss (/proc/PID/smaps_rollup)
 * before, after the sessions, after the registrations and after the
 * fan-out. UDP counters (/proc/net/snmp) are read before the publish and
 * after the linger (--linger S, default 1: late retransmissions are
 * counted too): the gateway's datagrams are the namespace's OutDatagrams
 * less the client's own, exact when the run has a network namespace to
 * itself (fanout_bench.sh makes one).
 *
 * Prints one line of key=value (see report()); exit 0 when every observer
 * got the announcement byte for byte, 1 otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define COAP_CON 0
#define COAP_ACK 2
#define COAP_RST 3
#define CODE_GET 0x01
#define CODE_CONTENT 0x45               /* 2.05 */
#define CODE_TOO_MANY 0x9d              /* 4.29 */
#define OPT_ETAG 4
#define OPT_OBSERVE 6
#define OPT_URI_PATH 11
#define OPT_BLOCK2 23
#define OPT_SIZE2 28
#define ACK_TIMEOUT 2.0                 /* RFC 7252 §4.8 */
#define ACK_RANDOM_FACTOR 1.5
#define MAX_RETRANSMIT 4
#define TOKEN_LEN 6
#define SEEN_MIDS 4
#define MAX_BODY (64 * 1024)

enum state { IDLE, SESSION_SENT, SESSION_OK, REG_SENT, REGISTERED, FETCHING, DONE, FAILED };
enum token_kind { TOKEN_SESSION = 1, TOKEN_REGISTER, TOKEN_BLOCK };

struct observer {
        int fd;
        enum state state;
        uint16_t next_mid;
        uint8_t fetches;                /* block requests sent: the token counter */
        /* the Confirmable request in flight, if any */
        bool pending;
        uint8_t req[256];
        size_t req_len;
        uint16_t req_mid;
        double deadline, timeout;
        unsigned retx;
        /* Confirmable messages from the gateway seen lately */
        uint16_t seen[SEEN_MIDS];
        unsigned n_seen;
        /* the announcement being put together */
        uint8_t *body;
        size_t body_len;
        uint32_t next_block;
        uint8_t etag[8];
        size_t etag_len;
        double done_at;
        bool ok;
};

struct coap_in {
        uint8_t type, code;
        uint16_t mid;
        const uint8_t *token;
        size_t token_len;
        bool observe, block2;
        uint32_t block2_val;
        const uint8_t *etag;
        size_t etag_len;
        const uint8_t *payload;
        size_t payload_len;
};

struct mem {
        long rss_kb, pss_kb;
};

struct udp_counters {
        long in, out, rcvbuf_errors;
};

static struct observer *obs;
static unsigned n_obs = 10000, per_address = 1, window = 64;
static double timeout_s = 60, linger_s = 1;
static const char *path = ".well-known/cmp/ann";
static struct sockaddr_in gw;
static uint8_t expect_sha[32];
static size_t expect_len;
static int epfd;
static pid_t gw_pid;

/* counters of the fan-out (from the publish on) */
static struct {
        unsigned long rx, notifications, blocks, dup, stale, tx, retx, acks, etag_changed, failed;
} fan;
static unsigned n_registered, n_no_observe, n_limited, n_failed, n_done, n_ok, in_flight;
static double t_publish, t_first, t_last, t_settle;
static bool fanning;

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
        perror(what);
        exit(2);
}

/* ---- CoAP messages (RFC 7252 §3) ---- */

struct msg {
        uint8_t b[256];
        size_t len;
        uint16_t last_opt;
};

static void msg_init(struct msg *m, uint8_t type, uint8_t code, uint16_t mid, const uint8_t *token, size_t token_len) {
        m->b[0] = (uint8_t) (0x40 | type << 4 | token_len);
        m->b[1] = code;
        m->b[2] = (uint8_t) (mid >> 8);
        m->b[3] = (uint8_t) mid;
        if (token_len)  /* an empty token may come with token == NULL */
                memcpy(m->b + 4, token, token_len);
        m->len = 4 + token_len;
        m->last_opt = 0;
}

static size_t opt_nibble(unsigned v, uint8_t *ext, size_t *ext_len) {
        if (v < 13)
                return v;
        if (v < 269) {
                ext[(*ext_len)++] = (uint8_t) (v - 13);
                return 13;
        }
        ext[(*ext_len)++] = (uint8_t) ((v - 269) >> 8);
        ext[(*ext_len)++] = (uint8_t) (v - 269);
        return 14;
}

/* options in ascending order, as the callers add them */
static void msg_opt(struct msg *m, uint16_t num, const uint8_t *v, size_t len) {
        uint8_t ext[4];
        size_t ext_len = 0, d, l;

        d = opt_nibble(num - m->last_opt, ext, &ext_len);
        l = opt_nibble((unsigned) len, ext, &ext_len);
        m->b[m->len++] = (uint8_t) (d << 4 | l);
        memcpy(m->b + m->len, ext, ext_len);
        m->len += ext_len;
        if (len)        /* an empty option may come with v == NULL */
                memcpy(m->b + m->len, v, len);
        m->len += len;
        m->last_opt = num;
}

static void msg_opt_uint(struct msg *m, uint16_t num, uint32_t v) {
        uint8_t b[4];
        size_t n = 0;

        for (int shift = 24; shift >= 0; shift -= 8)
                if (n || (v >> shift) & 0xff)
                        b[n++] = (uint8_t) (v >> shift);
        msg_opt(m, num, b, n);
}

static void msg_path(struct msg *m) {
        const char *p = path, *slash;

        while (*p) {
                slash = strchr(p, '/');
                size_t len = slash ? (size_t) (slash - p) : strlen(p);
                msg_opt(m, OPT_URI_PATH, (const uint8_t *) p, len);
                p += len + (slash ? 1 : 0);
        }
}

static uint32_t opt_uint(const uint8_t *v, size_t len) {
        uint32_t x = 0;

        for (size_t i = 0; i < len && i < 4; i++)
                x = x << 8 | v[i];
        return x;
}

static int coap_parse(const uint8_t *b, size_t len, struct coap_in *m) {
        size_t i, tkl;
        unsigned num = 0;

        memset(m, 0, sizeof *m);
        if (len < 4 || b[0] >> 6 != 1)
                return -1;
        tkl = b[0] & 0x0f;
        if (tkl > 8 || 4 + tkl > len)
                return -1;
        m->type = (b[0] >> 4) & 3;
        m->code = b[1];
        m->mid = (uint16_t) (b[2] << 8 | b[3]);
        m->token = b + 4;
        m->token_len = tkl;
        for (i = 4 + tkl; i < len && b[i] != 0xff;) {
                unsigned d = b[i] >> 4, l = b[i] & 0x0f;
                i++;
                for (unsigned *x = &d; x; x = x == &d ? &l : NULL) {
                        if (*x == 13) {
                                if (i + 1 > len) return -1;
                                *x = 13u + b[i++];
                        } else if (*x == 14) {
                                if (i + 2 > len) return -1;
                                *x = 269u + (unsigned) (b[i] << 8 | b[i + 1]);
                                i += 2;
                        } else if (*x == 15) {
                                return -1;
                        }
                }
                if (i + l > len)
                        return -1;
                num += d;
                if (num == OPT_OBSERVE)
                        m->observe = true;
                else if (num == OPT_BLOCK2) {
                        m->block2 = true;
                        m->block2_val = opt_uint(b + i, l);
                } else if (num == OPT_ETAG) {
                        m->etag = b + i;
                        m->etag_len = l;
                }
                i += l;
        }
        if (i < len) {
                m->payload = b + i + 1;
                m->payload_len = len - i - 1;
        }
        return 0;
}

/* ---- sending ---- */

static void send_raw(struct observer *o, const uint8_t *b, size_t len) {
        if (send(o->fd, b, len, 0) < 0 && errno != EAGAIN && errno != ECONNREFUSED)
                perror("send");
        if (fanning)
                fan.tx++;
}

static void token_of(const struct observer *o, enum token_kind kind, uint8_t *t) {
        uint32_t i = (uint32_t) (o - obs);

        t[0] = (uint8_t) (i >> 24);
        t[1] = (uint8_t) (i >> 16);
        t[2] = (uint8_t) (i >> 8);
        t[3] = (uint8_t) i;
        t[4] = (uint8_t) kind;
        t[5] = kind == TOKEN_BLOCK ? o->fetches : 0;
}

/* a Confirmable request: kept for retransmission (RFC 7252 §4.2) */
static void send_request(struct observer *o, enum token_kind kind, uint32_t block) {
        uint8_t token[TOKEN_LEN];
        struct msg m;

        if (kind == TOKEN_BLOCK)
                o->fetches++;
        token_of(o, kind, token);
        o->req_mid = o->next_mid++;
        msg_init(&m, COAP_CON, CODE_GET, o->req_mid, token, sizeof token);
        if (kind == TOKEN_REGISTER)
                msg_opt(&m, OPT_OBSERVE, NULL, 0);      /* 0: register (RFC 7641 §2) */
        msg_path(&m);
        if (kind == TOKEN_BLOCK)
                msg_opt_uint(&m, OPT_BLOCK2, block);
        memcpy(o->req, m.b, m.len);
        o->req_len = m.len;
        o->pending = true;
        o->retx = 0;
        o->timeout = ACK_TIMEOUT * (1 + (ACK_RANDOM_FACTOR - 1) * (double) rand() / RAND_MAX);
        o->deadline = now_s() + o->timeout;
        if (!fanning)
                in_flight++;
        send_raw(o, o->req, o->req_len);
}

static void send_ack(struct observer *o, uint16_t mid) {
        struct msg m;

        msg_init(&m, COAP_ACK, 0, mid, NULL, 0);
        send_raw(o, m.b, m.len);
        if (fanning)
                fan.acks++;
}

static void request_done(struct observer *o) {
        if (o->pending && !fanning && in_flight > 0)
                in_flight--;
        o->pending = false;
}

static void fail_observer(struct observer *o) {
        if (o->state == FAILED)
                return;
        request_done(o);
        if (fanning)
                fan.failed++;
        o->state = FAILED;
        n_failed++;
}

/* ---- the announcement ---- */

static void body_complete(struct observer *o) {
        uint8_t sha[32];
        unsigned sha_len = sizeof sha;

        o->state = DONE;
        o->done_at = now_s();
        t_last = o->done_at;
        n_done++;
        if (EVP_Digest(o->body, o->body_len, sha, &sha_len, EVP_sha256(), NULL) == 1 &&
            o->body_len == expect_len && memcmp(sha, expect_sha, sizeof sha) == 0) {
                o->ok = true;
                n_ok++;
        }
        free(o->body);
        o->body = NULL;
}

/* a block at offset num * size: appended when it is the next one */
static void take_block(struct observer *o, const struct coap_in *m) {
        uint32_t num = m->block2 ? m->block2_val >> 4 : 0;
        size_t size = m->block2 ? 16u << (m->block2_val & 7) : 0;
        bool more = m->block2 && (m->block2_val & 8);
        uint8_t *b;

        if (num != o->next_block || (size_t) num * size + m->payload_len > MAX_BODY)
                return;
        b = realloc(o->body, o->body_len + m->payload_len);
        if (!b)
                die("realloc");
        o->body = b;
        if (m->payload_len)
                memcpy(o->body + o->body_len, m->payload, m->payload_len);
        o->body_len += m->payload_len;
        o->next_block++;
        if (!more)
                return body_complete(o);
        send_request(o, TOKEN_BLOCK, (o->next_block << 4) | (m->block2_val & 7));
}

/* a notification (RFC 7641 §4.2): block 0 of a new representation */
static void take_notification(struct observer *o, const struct coap_in *m) {
        if (m->payload_len == 0)
                return;         /* "no announcement yet", or the periodic one before any */
        if (t_first == 0)
                t_first = now_s();
        fan.notifications++;
        if (o->state == DONE)
                return;         /* the same one again (the periodic re-notification) */
        free(o->body);
        o->body = NULL;
        o->body_len = 0;
        o->next_block = 0;
        request_done(o);
        o->etag_len = m->etag_len <= sizeof o->etag ? m->etag_len : 0;
        if (o->etag_len)
                memcpy(o->etag, m->etag, o->etag_len);
        o->state = FETCHING;
        take_block(o, m);
}

static void take_block_response(struct observer *o, const struct coap_in *m) {
        fan.blocks++;
        request_done(o);
        if (o->state != FETCHING)
                return;
        if (m->code != CODE_CONTENT)
                return fail_observer(o);
        /* RFC 7959 §2.4: the blocks belong together only under one ETag */
        if (m->etag_len != o->etag_len || memcmp(m->etag, o->etag, o->etag_len) != 0) {
                fan.etag_changed++;
                return fail_observer(o);
        }
        take_block(o, m);
}

static void take_registration(struct observer *o, const struct coap_in *m) {
        request_done(o);
        if (o->state != REG_SENT)
                return;
        if (m->code == CODE_CONTENT && m->observe) {
                o->state = REGISTERED;
                n_registered++;
        } else {
                if (m->code == CODE_TOO_MANY)
                        n_limited++;
                else if (m->code == CODE_CONTENT)
                        n_no_observe++;
                fail_observer(o);
        }
}

/* ---- receiving ---- */

static bool seen_before(struct observer *o, uint16_t mid) {
        for (unsigned i = 0; i < o->n_seen && i < SEEN_MIDS; i++)
                if (o->seen[i] == mid)
                        return true;
        o->seen[o->n_seen++ % SEEN_MIDS] = mid;
        return false;
}

static void take_datagram(struct observer *o, const uint8_t *b, size_t len) {
        uint8_t token[TOKEN_LEN];
        struct coap_in m;

        if (fanning)
                fan.rx++;
        if (coap_parse(b, len, &m) < 0)
                return;
        if (m.type == COAP_CON) {
                send_ack(o, m.mid);     /* RFC 7252 §4.2, again for a duplicate */
                if (seen_before(o, m.mid)) {
                        if (fanning)
                                fan.dup++;
                        return;
                }
        } else if (m.type == COAP_ACK || m.type == COAP_RST) {
                if (!o->pending || m.mid != o->req_mid) {
                        if (fanning)
                                fan.stale++;
                        return;
                }
                if (m.type == COAP_RST)
                        return fail_observer(o);
                if (m.code == 0) {      /* empty ACK: a separate response follows */
                        o->deadline = now_s() + timeout_s;
                        return;
                }
        } else {
                return;
        }
        if (m.token_len != TOKEN_LEN || memcmp(m.token, (token_of(o, TOKEN_REGISTER, token), token), 4) != 0)
                return;
        switch (m.token[4]) {
        case TOKEN_SESSION:
                if (o->state == SESSION_SENT) {
                        request_done(o);
                        o->state = SESSION_OK;
                }
                break;
        case TOKEN_REGISTER:
                if (o->state == REG_SENT)
                        take_registration(o, &m);
                else if (m.code == CODE_CONTENT && m.observe)
                        take_notification(o, &m);
                break;
        case TOKEN_BLOCK:
                if (m.token[5] == o->fetches)
                        take_block_response(o, &m);
                break;
        }
}

static void drain(struct observer *o) {
        uint8_t buf[2048];
        ssize_t n;

        while ((n = recv(o->fd, buf, sizeof buf, 0)) >= 0)
                take_datagram(o, buf, (size_t) n);
}

static void retransmit_due(double now) {
        for (unsigned i = 0; i < n_obs; i++) {
                struct observer *o = &obs[i];
                if (!o->pending || now < o->deadline)
                        continue;
                if (o->retx == MAX_RETRANSMIT) {
                        fail_observer(o);
                        continue;
                }
                o->retx++;
                o->timeout *= 2;
                o->deadline = now + o->timeout;
                if (fanning)
                        fan.retx++;
                send_raw(o, o->req, o->req_len);
        }
}

/* run the loop until DONE() or the deadline; WHILE_WAITING between */
static void run_until(bool (*done)(void), double deadline, void (*while_waiting)(void)) {
        struct epoll_event ev[256];
        double last_scan = 0;

        while (!done() && now_s() < deadline) {
                int n = epoll_wait(epfd, ev, 256, 10);
                if (n < 0 && errno != EINTR)
                        die("epoll_wait");
                for (int i = 0; i < n; i++)
                        drain(&obs[ev[i].data.u32]);
                double now = now_s();
                if (now - last_scan >= 0.05) {
                        retransmit_due(now);
                        last_scan = now;
                }
                if (while_waiting)
                        while_waiting();
        }
}

/* ---- phases ---- */

static unsigned next_to_send;
static enum state phase_from, phase_sent;
static enum token_kind phase_token;

static void fill_window(void) {
        while (next_to_send < n_obs && in_flight < window) {
                struct observer *o = &obs[next_to_send++];
                if (o->state != phase_from)
                        continue;
                o->state = phase_sent;
                send_request(o, phase_token, 0);
        }
}

static bool phase_done(void) {
        if (next_to_send < n_obs)
                return false;
        for (unsigned i = 0; i < n_obs; i++)
                if (obs[i].state == phase_sent)
                        return false;
        return true;
}

/* send every observer in state FROM the request KIND, W at a time */
static void run_phase(enum state from, enum state sent, enum token_kind kind) {
        next_to_send = 0;
        in_flight = 0;
        phase_from = from;
        phase_sent = sent;
        phase_token = kind;
        run_until(phase_done, now_s() + timeout_s + 120, fill_window);
}

static pid_t publisher;
static int publish_status = -1;
static double t_published;

static void reap_publisher(void) {
        int status;

        if (publisher > 0 && waitpid(publisher, &status, WNOHANG) == publisher) {
                publisher = 0;
                t_published = now_s();
                publish_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        }
}

/* every observer registered at the publish holds it, or has failed */
static bool fanout_done(void) {
        return publisher == 0 && n_done + fan.failed >= n_registered;
}

static bool never(void) {
        return false;
}

/* ---- what the gateway holds, and what went over UDP ---- */

static struct mem read_mem(void) {
        struct mem m = { -1, -1 };
        char path_buf[64], line[256];
        FILE *f;

        if (gw_pid <= 0)
                return m;
        snprintf(path_buf, sizeof path_buf, "/proc/%d/smaps_rollup", (int) gw_pid);
        f = fopen(path_buf, "r");
        if (!f)
                return m;
        while (fgets(line, sizeof line, f)) {
                sscanf(line, "Rss: %ld kB", &m.rss_kb);
                sscanf(line, "Pss: %ld kB", &m.pss_kb);
        }
        fclose(f);
        return m;
}

/* the Udp: lines of /proc/net/snmp: names, then values */
static struct udp_counters read_udp(void) {
        struct udp_counters u = { -1, -1, -1 };
        char names[512], values[512], *ns, *vs, *n, *v;
        FILE *f = fopen("/proc/net/snmp", "r");

        if (!f)
                return u;
        while (fgets(names, sizeof names, f)) {
                if (strncmp(names, "Udp:", 4) != 0 || !fgets(values, sizeof values, f))
                        continue;
                for (n = strtok_r(names + 4, " \n", &ns), v = strtok_r(values + 4, " \n", &vs); n && v;
                     n = strtok_r(NULL, " \n", &ns), v = strtok_r(NULL, " \n", &vs)) {
                        if (!strcmp(n, "InDatagrams"))
                                u.in = atol(v);
                        else if (!strcmp(n, "OutDatagrams"))
                                u.out = atol(v);
                        else if (!strcmp(n, "RcvbufErrors"))
                                u.rcvbuf_errors = atol(v);
                }
                break;
        }
        fclose(f);
        return u;
}

/* bytes waiting in the gateway's socket (tx_queue:rx_queue of /proc/net/udp),
 * -1 when it is not listed (another network namespace) */
static long gw_rx_queue(void) {
        char line[512], want[32];
        unsigned long tx, rx;
        FILE *f = fopen("/proc/net/udp", "r");
        long q = -1;

        if (!f)
                return -1;
        snprintf(want, sizeof want, " %08X:%04X ", (unsigned) gw.sin_addr.s_addr, ntohs(gw.sin_port));
        while (fgets(line, sizeof line, f)) {
                char *p = strstr(line, want);
                if (p && sscanf(p + strlen(want), "%*s %*s %lx:%lx", &tx, &rx) == 2)
                        q = (long) rx;
        }
        fclose(f);
        return q;
}

/* The gateway has read all that was sent to it (registrations it had not
 * answered when the client retransmitted them, say): empty twice, 100 ms
 * apart. Else the fan-out would be measured behind that backlog. */
static bool gw_idle(void) {
        static double last_check;
        static int empty;
        double now = now_s();

        if (now - last_check < 0.1)
                return false;
        last_check = now;
        empty = gw_rx_queue() <= 0 ? empty + 1 : 0;
        return empty >= 2;
}

/* ---- set-up ---- */

static void raise_nofile(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                die("getrlimit");
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                die("setrlimit");
        if (rl.rlim_cur < n_obs + 64) {
                fprintf(stderr, "fanout_bench: RLIMIT_NOFILE hard limit %llu is too low for %u observers "
                        "(raise it: ulimit -Hn, or LimitNOFILE=)\n", (unsigned long long) rl.rlim_max, n_obs);
                exit(2);
        }
}

/* observer I: its own socket on 127.0.x.y (x 1..255, y 1..250) */
static void open_observer(unsigned i) {
        struct observer *o = &obs[i];
        unsigned a = i / per_address;
        struct sockaddr_in src = { .sin_family = AF_INET };
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };

        if (a / 250 >= 255) {
                fprintf(stderr, "fanout_bench: more than 63,750 source addresses; raise --per-address\n");
                exit(2);
        }
        src.sin_addr.s_addr = htonl(0x7f000000u | (1 + a / 250) << 8 | (1 + a % 250));
        o->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (o->fd < 0)
                die("socket");
        if (bind(o->fd, (struct sockaddr *) &src, sizeof src) < 0)
                die("bind 127.0.x.y");
        if (connect(o->fd, (struct sockaddr *) &gw, sizeof gw) < 0)
                die("connect");
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, o->fd, &ev) < 0)
                die("epoll_ctl");
        o->next_mid = (uint16_t) rand();
}

static int read_expect(const char *file) {
        uint8_t *b = malloc(MAX_BODY);
        unsigned len = sizeof expect_sha;
        FILE *f = fopen(file, "rb");

        if (!f || !b) {
                perror(file);
                free(b);
                return -1;
        }
        expect_len = fread(b, 1, MAX_BODY, f);
        fclose(f);
        EVP_Digest(b, expect_len, expect_sha, &len, EVP_sha256(), NULL);
        free(b);
        return expect_len > 0 ? 0 : -1;
}

static void publish(char **argv) {
        t_publish = now_s();
        publisher = fork();
        if (publisher < 0)
                die("fork");
        if (publisher == 0) {
                dup2(2, 1);     /* our stdout is the report */
                execvp(argv[0], argv);
                perror(argv[0]);
                _exit(127);
        }
}

/* ---- the report ---- */

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double per_observer_bytes(struct mem a, struct mem b, unsigned n) {
        return a.rss_kb < 0 || b.rss_kb < 0 || n == 0 ? -1 : (double) (b.rss_kb - a.rss_kb) * 1024 / n;
}

static void report(struct mem m0, struct mem m_sess, struct mem m_reg, struct mem m_fan,
                   struct udp_counters u0, struct udp_counters u1, bool sessions_first) {
        double *lat = calloc(n_obs, sizeof *lat);
        unsigned n = 0;

        if (!lat)
                die("calloc");
        for (unsigned i = 0; i < n_obs; i++)
                if (obs[i].state == DONE)
                        lat[n++] = obs[i].done_at - t_publish;
        qsort(lat, n, sizeof *lat, cmp_double);
#define PCT(p) (n ? lat[(size_t) ((n - 1) * (p))] * 1000 : -1)
        printf("observers=%u registered=%u no_observe=%u limited=%u complete=%u ok=%u failed=%lu "
               "settle_ms=%.0f publish_ms=%.1f first_ms=%.1f last_ms=%.1f p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f "
               "rx=%lu notifications=%lu block_responses=%lu dup_rx=%lu stale_rx=%lu etag_changed=%lu "
               "client_tx=%lu client_retx=%lu client_acks=%lu gw_tx=%ld udp_rcvbuf_errors=%ld "
               "rss_kb_start=%ld rss_kb_sessions=%ld rss_kb_registered=%ld rss_kb_after=%ld "
               "pss_kb_start=%ld pss_kb_registered=%ld "
               "session_bytes=%.0f observer_bytes=%.0f bytes_per_observer=%.0f fanout_bytes=%.0f publish_rc=%d "
               "publish_mono=%.6f last_mono=%.6f\n",
               n_obs, n_registered, n_no_observe, n_limited, n_done, n_ok, fan.failed,
               t_settle * 1000, (t_published - t_publish) * 1000, t_first ? (t_first - t_publish) * 1000 : -1,
               n ? (t_last - t_publish) * 1000 : -1, PCT(0.5), PCT(0.9), PCT(0.99),
               fan.rx, fan.notifications, fan.blocks, fan.dup, fan.stale, fan.etag_changed,
               fan.tx, fan.retx, fan.acks,
               u0.out < 0 || u1.out < 0 ? -1 : u1.out - u0.out - (long) fan.tx,
               u0.rcvbuf_errors < 0 || u1.rcvbuf_errors < 0 ? -1 : u1.rcvbuf_errors - u0.rcvbuf_errors,
               m0.rss_kb, sessions_first ? m_sess.rss_kb : -1, m_reg.rss_kb, m_fan.rss_kb, m0.pss_kb, m_reg.pss_kb,
               sessions_first ? per_observer_bytes(m0, m_sess, n_registered) : -1,
               sessions_first ? per_observer_bytes(m_sess, m_reg, n_registered) : -1,
               per_observer_bytes(m0, m_reg, n_registered), per_observer_bytes(m_reg, m_fan, n_registered),
               publish_status, t_publish, n ? t_last : t_publish);
        free(lat);
}

static void usage(void) {
        fprintf(stderr, "usage: fanout_bench HOST PORT --expect FILE [--observers N] [--per-address K] [--path P]\n"
                        "       [--window W] [--timeout S] [--linger S] [--gw-pid PID] [--sessions-first]\n"
                        "       -- PUBLISH-COMMAND [ARGS...]\n");
        exit(2);
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "expect", required_argument, NULL, 'e' },
                { "observers", required_argument, NULL, 'n' },
                { "per-address", required_argument, NULL, 'k' },
                { "path", required_argument, NULL, 'p' },
                { "window", required_argument, NULL, 'w' },
                { "timeout", required_argument, NULL, 't' },
                { "linger", required_argument, NULL, 'l' },
                { "gw-pid", required_argument, NULL, 'g' },
                { "sessions-first", no_argument, NULL, 's' },
                { 0 },
        };
        const char *expect_file = NULL;
        bool sessions_first = false;
        struct mem m0, m_sess = { -1, -1 }, m_reg, m_fan;
        struct udp_counters u0, u1;
        int c;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 'e': expect_file = optarg; break;
                case 'n': n_obs = (unsigned) atoi(optarg); break;
                case 'k': per_address = (unsigned) atoi(optarg); break;
                case 'p': path = optarg; break;
                case 'w': window = (unsigned) atoi(optarg); break;
                case 't': timeout_s = atof(optarg); break;
                case 'l': linger_s = atof(optarg); break;
                case 'g': gw_pid = (pid_t) atoi(optarg); break;
                case 's': sessions_first = true; break;
                default: usage();
                }
        }
        if (argc - optind < 3 || !expect_file || n_obs == 0 || per_address == 0 || window == 0)
                usage();
        gw.sin_family = AF_INET;
        gw.sin_port = htons((uint16_t) atoi(argv[optind + 1]));
        if (inet_pton(AF_INET, argv[optind], &gw.sin_addr) != 1)
                usage();
        if (read_expect(expect_file) < 0)
                return 2;
        signal(SIGPIPE, SIG_IGN);
        srand((unsigned) getpid());
        raise_nofile();
        epfd = epoll_create1(EPOLL_CLOEXEC);
        obs = calloc(n_obs, sizeof *obs);
        if (epfd < 0 || !obs)
                die("setup");
        for (unsigned i = 0; i < n_obs; i++)
                open_observer(i);

        m0 = read_mem();
        if (sessions_first) {
                run_phase(IDLE, SESSION_SENT, TOKEN_SESSION);
                m_sess = read_mem();
                for (unsigned i = 0; i < n_obs; i++)
                        if (obs[i].state == SESSION_OK)
                                obs[i].state = IDLE;
        }
        run_phase(IDLE, REG_SENT, TOKEN_REGISTER);
        t_settle = now_s();
        run_until(gw_idle, t_settle + 60, NULL);
        t_settle = now_s() - t_settle;
        m_reg = read_mem();
        fprintf(stderr, "fanout_bench: %u of %u observers registered (%u without Observe, %u refused 4.29, %u failed)\n",
                n_registered, n_obs, n_no_observe, n_limited, n_failed);

        u0 = read_udp();
        fanning = true;
        publish(argv + optind + 2);
        run_until(fanout_done, now_s() + timeout_s, reap_publisher);
        m_fan = read_mem();
        run_until(never, now_s() + linger_s, reap_publisher);
        u1 = read_udp();
        report(m0, m_sess, m_reg, m_fan, u0, u1, sessions_first);
        return n_registered == n_obs && n_ok == n_obs && publish_status == 0 ? 0 : 1;
}
