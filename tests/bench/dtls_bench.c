/* dtls_bench.c -- DTLS handshake rate of a coaps server (not a test)
 *
 *   dtls_bench HOST PORT [--psk ID:KEY | --cert FILE --key FILE] [--ca FILE]
 *              [--threads T] [--count N] [--resume | --reuse | --plain]
 *              [--source ADDR] [--local-port P] [--abandon]
 *
 * T threads (default 2), each a client that repeats, N times in all
 * (default 1000):
 *   (default)  a new UDP socket and a full DTLS 1.2 handshake, one CoAP
 *              request in it, close_notify (the server frees its session);
 *   --resume   the same, but offering the thread's previous session
 *              (SSL_set_session: an abbreviated handshake when the server
 *              resumes it; counted as resumed);
 *   --reuse    one handshake per thread, then every request in that one
 *              session (what a node that keeps its session costs);
 *   --plain    no DTLS: the request over plain UDP (coap://), for reference.
 * The request is a Confirmable GET /.well-known/core; an iteration counts
 * when its 2.05 is in. OpenSSL straight, not libcoap: libcoap 4.3.1's
 * client cannot offer a session for resumption.
 *
 * --psk ID:KEY   PSK identity and key (text); PSK cipher suites only
 * --cert/--key   client certificate and key (PEM); --ca FILE verifies the
 *                server's certificate (without it, it is not verified)
 * --source ADDR  bind the clients to this local IPv4 address
 * --local-port P every socket binds local port P (with --threads 1): a node
 *                that always uses the same port, as many CoAP nodes do
 * --abandon      end a session without close_notify, as a node that
 *                reboots: with --local-port, the next handshake comes from
 *                the address and port of a session the server still holds
 *
 * Prints one line:
 *   mode=full threads=T iterations=N failed=F resumed=R seconds=S rate=R p50_ms=.. p95_ms=.. p99_ms=.. cipher=..
 * (rate = iterations per second: handshakes per second unless --reuse)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum mode { MODE_FULL, MODE_RESUME, MODE_REUSE, MODE_PLAIN };

static const char *const mode_name[] = { "full", "resume", "reuse", "plain" };
static enum mode mode = MODE_FULL;
static struct sockaddr_in server, source;
static const char *psk_id, *psk_key;
static SSL_CTX *ctx;
static unsigned threads = 2, count = 1000;
static bool abandon;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned started, finished, failed, resumed;
static double *lat;
static char cipher[64] = "-";

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* claim the next iteration; false when all are taken */
static bool next_iteration(void) {
        bool more;

        pthread_mutex_lock(&lock);
        more = started < count;
        if (more)
                started++;
        pthread_mutex_unlock(&lock);
        return more;
}

static void record(double seconds, bool ok, bool was_resumed) {
        pthread_mutex_lock(&lock);
        if (ok)
                lat[finished++] = seconds;
        else
                failed++;
        if (was_resumed)
                resumed++;
        pthread_mutex_unlock(&lock);
}

static unsigned psk_client_cb(SSL *ssl, const char *hint, char *identity, unsigned max_identity,
                              unsigned char *key, unsigned max_key) {
        size_t il = strlen(psk_id), kl = strlen(psk_key);

        (void) ssl;
        (void) hint;
        if (il >= max_identity || kl > max_key)
                return 0;
        memcpy(identity, psk_id, il + 1);
        memcpy(key, psk_key, kl);
        return (unsigned) kl;
}

/* a connected UDP socket to the server, 3 s receive timeout */
static int udp_socket(void) {
        struct timeval tv = { .tv_sec = 3 };
        int fd = socket(AF_INET, SOCK_DGRAM, 0);

        if (fd < 0)
                return -1;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (source.sin_port)
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int) { 1 }, sizeof(int));
        if ((source.sin_family && bind(fd, (struct sockaddr *) &source, sizeof source) < 0) ||
            connect(fd, (struct sockaddr *) &server, sizeof server) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* CON GET /.well-known/core with MID and a 2-byte token from it */
static size_t coap_get_core(uint8_t *buf, uint16_t mid) {
        static const char p1[] = ".well-known", p2[] = "core";
        size_t n = 0;

        buf[n++] = 0x40 | 2;            /* version 1, CON, token length 2 */
        buf[n++] = 0x01;                /* GET */
        buf[n++] = mid >> 8;
        buf[n++] = mid & 0xff;
        buf[n++] = mid >> 8;            /* token */
        buf[n++] = mid & 0xff;
        buf[n++] = (11 << 4) | 11;      /* Uri-Path (11), 11 bytes */
        memcpy(buf + n, p1, 11);
        n += 11;
        buf[n++] = (0 << 4) | 4;        /* Uri-Path again, 4 bytes */
        memcpy(buf + n, p2, 4);
        return n + 4;
}

/* is BUF (LEN bytes) the 2.05 answer to MID (piggybacked, or a separate
 * response carrying the token)? */
static bool is_answer(const uint8_t *buf, int len, uint16_t mid) {
        if (len < 6 || (buf[0] & 0x0f) != 2 || buf[1] != 0x45)
                return false;
        return buf[4] == (mid >> 8) && buf[5] == (mid & 0xff);
}

/* one request, one answer; false on timeout or error */
static bool request(SSL *ssl, int fd, uint16_t mid) {
        uint8_t out[64], in[2048];
        size_t n = coap_get_core(out, mid);
        int got;

        if (ssl ? SSL_write(ssl, out, (int) n) != (int) n : send(fd, out, n, 0) != (ssize_t) n)
                return false;
        for (int tries = 0; tries < 4; tries++) {
                got = ssl ? SSL_read(ssl, in, sizeof in) : (int) recv(fd, in, sizeof in, 0);
                if (got <= 0)
                        return false;
                if (is_answer(in, got, mid))
                        return true;
        }
        return false;
}

/* a new DTLS session on a new socket, offering PREV for resumption */
static SSL *dtls_open(SSL_SESSION *prev, int *fd_out) {
        int fd = udp_socket();
        BIO *bio;
        SSL *ssl;

        if (fd < 0)
                return NULL;
        ssl = SSL_new(ctx);
        bio = BIO_new_dgram(fd, BIO_CLOSE);
        if (!ssl || !bio) {
                SSL_free(ssl);
                BIO_free(bio);
                close(fd);
                return NULL;
        }
        BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, &server);
        SSL_set_bio(ssl, bio, bio);
        if (psk_id)
                SSL_set_psk_client_callback(ssl, psk_client_cb);
        if (prev)
                SSL_set_session(ssl, prev);
        if (SSL_connect(ssl) != 1) {
                SSL_free(ssl);          /* closes fd with the BIO */
                return NULL;
        }
        *fd_out = fd;
        return ssl;
}

static void dtls_close(SSL *ssl) {
        if (!abandon)
                SSL_shutdown(ssl);      /* close_notify: the server drops the session */
        SSL_free(ssl);
}

static void *client(void *arg) {
        uint16_t mid = (uint16_t) ((uintptr_t) arg << 12);
        SSL_SESSION *prev = NULL;
        SSL *kept = NULL;
        int fd = -1;

        if (mode == MODE_REUSE && !(kept = dtls_open(NULL, &fd)))
                return NULL;
        if (mode == MODE_PLAIN && (fd = udp_socket()) < 0)
                return NULL;
        while (next_iteration()) {
                double t0 = now_s();
                SSL *ssl = kept;
                bool ok, was_resumed = false;

                mid++;
                if (mode == MODE_FULL || mode == MODE_RESUME) {
                        ssl = dtls_open(mode == MODE_RESUME ? prev : NULL, &fd);
                        if (!ssl) {
                                record(now_s() - t0, false, false);
                                continue;
                        }
                        was_resumed = SSL_session_reused(ssl);
                }
                ok = request(ssl, fd, mid);
                if (ssl && ssl != kept) {
                        if (mode == MODE_RESUME) {
                                SSL_SESSION_free(prev);
                                prev = SSL_get1_session(ssl);
                        }
                        pthread_mutex_lock(&lock);
                        snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(ssl));
                        pthread_mutex_unlock(&lock);
                        dtls_close(ssl);
                }
                record(now_s() - t0, ok, was_resumed);
        }
        SSL_SESSION_free(prev);
        if (kept) {
                pthread_mutex_lock(&lock);
                snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(kept));
                pthread_mutex_unlock(&lock);
                dtls_close(kept);
        } else if (fd >= 0 && mode == MODE_PLAIN) {
                close(fd);
        }
        return NULL;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static int make_ctx(const char *cert, const char *key, const char *ca) {
        ctx = SSL_CTX_new(DTLS_client_method());
        if (!ctx)
                return -1;
        SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
        if (psk_id && SSL_CTX_set_cipher_list(ctx, "PSK") != 1)
                return -1;
        if (cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
                     SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1))
                return -1;
        if (ca) {
                if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
                        return -1;
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        }
        return 0;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "psk", required_argument, NULL, 'p' },
                { "cert", required_argument, NULL, 'c' },
                { "key", required_argument, NULL, 'k' },
                { "ca", required_argument, NULL, 'a' },
                { "threads", required_argument, NULL, 't' },
                { "count", required_argument, NULL, 'n' },
                { "source", required_argument, NULL, 's' },
                { "resume", no_argument, NULL, 'R' },
                { "reuse", no_argument, NULL, 'U' },
                { "plain", no_argument, NULL, 'P' },
                { "local-port", required_argument, NULL, 'L' },
                { "abandon", no_argument, NULL, 'A' },
                {}
        };
        const char *cert = NULL, *key = NULL, *ca = NULL;
        pthread_t *tid;
        double t0, seconds;
        char *psk = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 'p': psk = optarg; break;
                case 'c': cert = optarg; break;
                case 'k': key = optarg; break;
                case 'a': ca = optarg; break;
                case 't': threads = (unsigned) atoi(optarg); break;
                case 'n': count = (unsigned) atoi(optarg); break;
                case 's':
                        source.sin_family = AF_INET;
                        if (inet_pton(AF_INET, optarg, &source.sin_addr) != 1)
                                return 2;
                        break;
                case 'R': mode = MODE_RESUME; break;
                case 'U': mode = MODE_REUSE; break;
                case 'P': mode = MODE_PLAIN; break;
                case 'L':
                        source.sin_family = AF_INET;
                        source.sin_port = htons((uint16_t) atoi(optarg));
                        break;
                case 'A': abandon = true; break;
                default: return 2;
                }
        }
        if (argc - optind != 2 || threads == 0 || count == 0 || !!cert != !!key ||
            (psk && !strchr(psk, ':')) || (source.sin_port && threads > 1)) {
                fprintf(stderr, "usage: dtls_bench HOST PORT [--psk ID:KEY | --cert FILE --key FILE] [--ca FILE]\n"
                                "                  [--threads T] [--count N] [--resume | --reuse | --plain] [--source ADDR]\n"
                                "                  [--local-port P] [--abandon]\n");
                return 2;
        }
        if (psk) {
                *strchr(psk, ':') = '\0';
                psk_id = psk;
                psk_key = psk + strlen(psk) + 1;
        }
        server.sin_family = AF_INET;
        server.sin_port = htons((uint16_t) atoi(argv[optind + 1]));
        if (inet_pton(AF_INET, argv[optind], &server.sin_addr) != 1) {
                fprintf(stderr, "dtls_bench: HOST must be a numeric IPv4 address\n");
                return 2;
        }
        if (mode != MODE_PLAIN && make_ctx(cert, key, ca) < 0) {
                ERR_print_errors_fp(stderr);
                return 1;
        }
        lat = calloc(count, sizeof *lat);
        tid = calloc(threads, sizeof *tid);
        if (!lat || !tid)
                return 1;
        t0 = now_s();
        for (unsigned i = 0; i < threads; i++)
                pthread_create(&tid[i], NULL, client, (void *) (uintptr_t) i);
        for (unsigned i = 0; i < threads; i++)
                pthread_join(tid[i], NULL);
        seconds = now_s() - t0;
        qsort(lat, finished, sizeof *lat, cmp_double);
#define PCT(p) (finished ? lat[(size_t) ((finished - 1) * (p))] * 1000 : 0)
        printf("mode=%s threads=%u iterations=%u failed=%u resumed=%u seconds=%.3f rate=%.1f "
               "p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f cipher=%s\n",
               mode_name[mode], threads, finished, failed + (count - started), resumed, seconds,
               finished / seconds, PCT(0.5), PCT(0.95), PCT(0.99), PCT(1.0), cipher);
        free(lat);
        free(tid);
        SSL_CTX_free(ctx);
        return 0;
}
