/* dtls_reboot.c -- a ClientHello on an established DTLS session (RFC 6347
 * §4.2.8): a cookie exchange with libcoap's own cookie for the address,
 * then the old session goes and libcoap takes the new handshake */
#include "dtls_reboot.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/dtls1.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "list.h"
#include "log.h"

#define MAX_SOCKETS 16
#define DATAGRAM_MAX 2048               /* a ClientHello is far smaller */
#define COOKIE_BUCKETS 4096             /* power of two */
#define MAX_ENTRIES 65536

/* RFC 6347 §4.1, §4.2.2: the record header, then the handshake header */
#define DTLS_CT_HANDSHAKE 22
#define DTLS_HT_CLIENT_HELLO 1
#define OFF_EPOCH 3                     /* 2 bytes */
#define OFF_HANDSHAKE_TYPE 13
#define LIBCOAP_COOKIE_LEN 32           /* SHA-256 HMAC */

struct peeked {
        uint8_t buf[DATAGRAM_MAX];
        size_t len;
        coap_address_t sender;          /* where it came from, as libcoap compares addresses */
        _Alignas(struct cmsghdr) uint8_t control[256];  /* IP_PKTINFO or IPV6_PKTINFO: where it came in */
        size_t control_len;
        int ifindex;
        uint16_t local_port;            /* the port of the listener it came to */
};

/* libcoap's cookie for one address on one listener (HMAC of the
 * session's local and remote address under a secret of the context: the
 * same for as long as the context lives), learnt from the ClientHello that
 * began a session. A node that talks to two coaps listeners from one
 * address has a cookie and a session for each. */
struct cookie_entry {
        LIST_FIELDS(struct cookie_entry, bucket);
        coap_address_t addr;
        uint16_t local_port;
        uint8_t cookie[DTLS1_COOKIE_LENGTH];
        uint8_t len;
        bool established;               /* its session completed a handshake */
        bool confirmed;                 /* one did: the cookie is libcoap's, for good */
        uint64_t seen_usec;
        uint64_t hvr_usec;              /* our last HelloVerifyRequest to it */
};

struct dtls_reboot {
        coap_context_t *ctx;
        dtls_reboot_release_t release;
        void *userdata;
        struct {
                int fd;
                uint16_t port;          /* the coaps listener's */
        } sockets[MAX_SOCKETS];
        size_t n_sockets;

        LIST_HEAD(struct cookie_entry, buckets[COOKIE_BUCKETS]);
        size_t n_entries;
        uint64_t swept_usec;

        /* DTLSv1_listen() on a peeked datagram: OpenSSL parses the
         * ClientHello, our callbacks see its cookie and answer with the
         * expected one; nothing is kept in the SSL */
        SSL_CTX *ssl_ctx;
        SSL *ssl;
        BIO *in, *out;                  /* memory BIOs, owned by ssl */
        const struct cookie_entry *expect;      /* the cookie libcoap gave the sender */
        uint8_t seen[DTLS1_COOKIE_LENGTH];      /* the ClientHello's cookie */
        size_t seen_len;

        struct dtls_reboot_stats stats;
        struct log_ratelimit log;
};

static int cookie_generate(SSL *ssl, unsigned char *cookie, unsigned int *cookie_len) {
        struct dtls_reboot *d = SSL_get_app_data(ssl);

        if (!d->expect)
                return 0;       /* no HelloVerifyRequest: only the cookie was wanted */
        memcpy(cookie, d->expect->cookie, d->expect->len);
        *cookie_len = d->expect->len;
        return 1;
}

static int cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int cookie_len) {
        struct dtls_reboot *d = SSL_get_app_data(ssl);

        d->seen_len = cookie_len <= sizeof d->seen ? cookie_len : 0;
        memcpy(d->seen, cookie, d->seen_len);
        return d->expect && d->seen_len == d->expect->len &&
               CRYPTO_memcmp(d->seen, d->expect->cookie, d->seen_len) == 0;
}

int dtls_reboot_new(coap_context_t *ctx, dtls_reboot_release_t release, void *userdata,
                    struct dtls_reboot **ret) {
        struct dtls_reboot *d = calloc(1, sizeof *d);

        if (!d)
                return -ENOMEM;
        d->ctx = ctx;
        d->release = release;
        d->userdata = userdata;
        d->log.what = "DTLS ClientHellos on established sessions";
        if (!(d->ssl_ctx = SSL_CTX_new(DTLS_server_method())) ||
            !(d->ssl = SSL_new(d->ssl_ctx)) ||
            !(d->in = BIO_new(BIO_s_mem())) || !(d->out = BIO_new(BIO_s_mem()))) {
                BIO_free(d->in);
                dtls_reboot_free(d);
                return log_openssl(LOG_LVL_ERR, "cannot set up the DTLS ClientHello check");
        }
        SSL_CTX_set_cookie_generate_cb(d->ssl_ctx, cookie_generate);
        SSL_CTX_set_cookie_verify_cb(d->ssl_ctx, cookie_verify);
        SSL_set_app_data(d->ssl, d);
        SSL_set_bio(d->ssl, d->in, d->out);
        *ret = d;
        return 0;
}

struct dtls_reboot *dtls_reboot_free(struct dtls_reboot *d) {
        struct cookie_entry *e, *n;

        if (!d)
                return NULL;
        for (size_t b = 0; b < COOKIE_BUCKETS; b++)
                LIST_FOREACH_SAFE(bucket, e, n, d->buckets[b])
                        free(e);
        SSL_free(d->ssl);               /* and its BIOs */
        SSL_CTX_free(d->ssl_ctx);
        free(d);
        return NULL;
}

/* ---- the cookies libcoap gave, by address and port ---- */

/* SA as libcoap's address type, which coap_address_equals() compares
 * (family, port and address) */
static bool address_of(const void *sa, socklen_t len, coap_address_t *a) {
        coap_address_init(a);
        if (len > sizeof a->addr)
                return false;
        memcpy(&a->addr, sa, len);
        a->size = len;
        return true;
}

static size_t bucket_of(const coap_address_t *a) {
        const uint8_t *p = (const uint8_t *) &a->addr.sa;
        size_t len = a->addr.sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        uint32_t h = 2166136261u;

        /* port and address; sin6_flowinfo is 0 in what the kernel hands us */
        for (size_t i = 2; i < len && i < 24; i++)
                h = (h ^ p[i]) * 16777619u;
        return h & (COOKIE_BUCKETS - 1);
}

static struct cookie_entry *entry_find(struct dtls_reboot *d, uint16_t local_port, const coap_address_t *a) {
        struct cookie_entry *e;

        for (e = d->buckets[bucket_of(a)]; e; e = e->bucket_next)
                if (e->local_port == local_port && coap_address_equals(a, &e->addr))
                        return e;
        return NULL;
}

/* SESSION's entry, if one was learnt */
static struct cookie_entry *entry_of_session(struct dtls_reboot *d, coap_session_t *session) {
        const coap_address_t *remote = coap_session_get_addr_remote(session);
        const coap_address_t *local = coap_session_get_addr_local(session);

        if (!d || !remote || !local || coap_session_get_proto(session) != COAP_PROTO_DTLS)
                return NULL;
        return entry_find(d, coap_address_get_port(local), remote);
}

static void entry_free(struct dtls_reboot *d, struct cookie_entry *e) {
        LIST_REMOVE(bucket, d->buckets[bucket_of(&e->addr)], e);
        d->n_entries--;
        free(e);
}

/* Handshakes that never completed leave entries: when full, those older
 * than a minute go (spoofed ClientHellos with cookies cannot crowd out
 * what established sessions hold for long). */
static void entries_sweep(struct dtls_reboot *d, uint64_t now_usec) {
        struct cookie_entry *e, *n;

        for (size_t b = 0; b < COOKIE_BUCKETS; b++)
                LIST_FOREACH_SAFE(bucket, e, n, d->buckets[b])
                        if (!e->established && now_usec > e->seen_usec + 60 * 1000000ULL)
                                entry_free(d, e);
}

/* The cookie of a ClientHello from an address without an established
 * session: libcoap's, if this handshake completes */
static void entry_learn(struct dtls_reboot *d, const struct peeked *p, uint64_t now_usec) {
        struct cookie_entry *e;

        /* libcoap's cookies are HMAC-SHA256 (coap_openssl.c): no other size is one */
        if (d->seen_len != LIBCOAP_COOKIE_LEN)
                return;
        e = entry_find(d, p->local_port, &p->sender);
        if (e && e->confirmed) {        /* libcoap's cookie for an address never changes */
                e->seen_usec = now_usec;
                return;
        }
        if (!e) {
                /* a full table is swept at most once a second: not a walk per datagram */
                if (d->n_entries >= MAX_ENTRIES && now_usec >= d->swept_usec + 1000000ULL) {
                        d->swept_usec = now_usec;
                        entries_sweep(d, now_usec);
                }
                if (d->n_entries >= MAX_ENTRIES || !(e = calloc(1, sizeof *e)))
                        return;
                e->addr = p->sender;
                e->local_port = p->local_port;
                LIST_PREPEND(bucket, d->buckets[bucket_of(&e->addr)], e);
                d->n_entries++;
        }
        memcpy(e->cookie, d->seen, d->seen_len);
        e->len = (uint8_t) d->seen_len;
        e->established = false;
        e->seen_usec = now_usec;
}

void dtls_reboot_connected(struct dtls_reboot *d, coap_session_t *session) {
        struct cookie_entry *e = entry_of_session(d, session);

        if (e)
                e->established = e->confirmed = true;
}

void dtls_reboot_session_gone(struct dtls_reboot *d, coap_session_t *session) {
        struct cookie_entry *e = entry_of_session(d, session);

        /* kept, not established: a confirmed cookie stays right for the
         * node's next session even if its first ClientHello is not peeked */
        if (e)
                e->established = false;
}

static bool known_fd(const struct dtls_reboot *d, int fd) {
        for (size_t i = 0; i < d->n_sockets; i++)
                if (d->sockets[i].fd == fd)
                        return true;
        return false;
}

/* libcoap 4.3.1 has no public accessor for an endpoint's socket: the
 * datagram socket of this process bound to ADDR that we do not know yet */
static int socket_bound_to(const struct dtls_reboot *d, const coap_address_t *addr) {
        DIR *dir = opendir("/proc/self/fd");
        struct dirent *e;
        int found = -ENOENT;

        if (!dir)
                return -errno;
        while ((e = readdir(dir))) {
                struct sockaddr_storage ss;
                socklen_t len = sizeof ss, tlen = sizeof(int);
                coap_address_t bound;
                int fd = atoi(e->d_name), type;

                if (e->d_name[0] == '.' || fd == dirfd(dir) || known_fd(d, fd))
                        continue;
                if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 || type != SOCK_DGRAM ||
                    getsockname(fd, (struct sockaddr *) &ss, &len) < 0)
                        continue;
                if (address_of(&ss, len, &bound) && coap_address_equals(addr, &bound))
                        found = fd > found ? fd : found;        /* the newest, if ever two */
        }
        closedir(dir);
        return found;
}

int dtls_reboot_add_endpoint(struct dtls_reboot *d, const struct sockaddr *addr, socklen_t len) {
        coap_address_t a;
        int fd;

        if (d->n_sockets >= MAX_SOCKETS)
                return -E2BIG;
        if (!address_of(addr, len, &a))
                return -EINVAL;
        fd = socket_bound_to(d, &a);
        if (fd < 0)
                return fd;
        d->sockets[d->n_sockets].fd = fd;
        d->sockets[d->n_sockets++].port = coap_address_get_port(&a);
        return 0;
}

static int ifindex_of(struct msghdr *mh) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO)
                        return (int) ((struct in6_pktinfo *) (void *) CMSG_DATA(c))->ipi6_ifindex;
                if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO)
                        return ((struct in_pktinfo *) (void *) CMSG_DATA(c))->ipi_ifindex;
        }
        return -1;
}

/* The next datagram on FD, left where it is. false: none, or not whole. */
static bool peek(int fd, struct peeked *p) {
        struct iovec iov = { .iov_base = p->buf, .iov_len = sizeof p->buf };
        struct msghdr mh = {
                .msg_name = &p->sender.addr, .msg_namelen = sizeof p->sender.addr,
                .msg_iov = &iov, .msg_iovlen = 1,
                .msg_control = p->control, .msg_controllen = sizeof p->control,
        };
        ssize_t n;

        coap_address_init(&p->sender);
        n = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT);
        /* an address longer than IPv6's would have been cut */
        if (n <= 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || mh.msg_namelen > sizeof p->sender.addr)
                return false;
        p->len = (size_t) n;
        p->sender.size = mh.msg_namelen;
        p->control_len = mh.msg_controllen;
        p->ifindex = ifindex_of(&mh);
        return true;
}

/* RFC 6347 §4.1: an epoch-0 handshake record starting a ClientHello */
static bool is_initial_client_hello(const struct peeked *p) {
        return p->len > OFF_HANDSHAKE_TYPE && p->buf[0] == DTLS_CT_HANDSHAKE &&
               p->buf[OFF_EPOCH] == 0 && p->buf[OFF_EPOCH + 1] == 0 &&
               p->buf[OFF_HANDSHAKE_TYPE] == DTLS_HT_CLIENT_HELLO;
}

/* libcoap's established server session for P's sender on the listener P
 * came to, if any (coap_session_get_by_peer() looks at every endpoint) */
static coap_session_t *established_session(struct dtls_reboot *d, const struct peeked *p) {
        coap_session_t *s = coap_session_get_by_peer(d->ctx, &p->sender, p->ifindex);
        const coap_address_t *local = s ? coap_session_get_addr_local(s) : NULL;

        if (!local || coap_address_get_port(local) != p->local_port || coap_session_get_proto(s) != COAP_PROTO_DTLS ||
            coap_session_get_type(s) != COAP_SESSION_TYPE_SERVER ||
            coap_session_get_state(s) != COAP_SESSION_STATE_ESTABLISHED)
                return NULL;
        return s;
}

/* Our HelloVerifyRequest goes out from the address the ClientHello came
 * to (the pktinfo we got, sent back) */
static void send_hello_verify(int fd, struct peeked *p, const uint8_t *hvr, size_t len) {
        struct iovec iov = { .iov_base = (void *) hvr, .iov_len = len };
        struct msghdr mh = {
                .msg_name = &p->sender.addr, .msg_namelen = p->sender.size,
                .msg_iov = &iov, .msg_iovlen = 1,
                .msg_control = p->control_len ? p->control : NULL, .msg_controllen = p->control_len,
        };

        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                        struct in_pktinfo *pi = (void *) CMSG_DATA(c);
                        pi->ipi_spec_dst = pi->ipi_addr;
                }
        if (sendmsg(fd, &mh, MSG_DONTWAIT) < 0)
                log_debug("DTLS: cannot send a HelloVerifyRequest: %m");
}

/* DTLSv1_listen() on the datagram, expecting EXPECT's cookie: 1 when the
 * ClientHello carries it; else a HelloVerifyRequest with it may be in
 * d->out. The ClientHello's own cookie is in d->seen either way. */
static int listen_once(struct dtls_reboot *d, const struct peeked *p, const struct cookie_entry *expect) {
        BIO_ADDR *client = BIO_ADDR_new();
        int r;

        if (!client)
                return 0;
        (void) BIO_reset(d->in);
        (void) BIO_reset(d->out);
        BIO_write(d->in, p->buf, (int) p->len);
        d->expect = expect;
        d->seen_len = 0;
        r = DTLSv1_listen(d->ssl, client);
        d->expect = NULL;
        BIO_ADDR_free(client);
        ERR_clear_error();
        return r == 1;
}

static void peer_text(const coap_address_t *from, char *buf, size_t size) {
        if (coap_print_addr(from, (unsigned char *) buf, size) == 0)
                snprintf(buf, size, "?");
}

/* RFC 6347 §4.2.8: the sender proved its address with the cookie libcoap
 * gave it; its old session ends and libcoap takes the ClientHello as a new
 * handshake (its own cookie check passes) */
static void replace_session(struct dtls_reboot *d, coap_session_t *session, const struct peeked *p,
                            uint64_t now_usec) {
        char peer[64];

        peer_text(&p->sender, peer, sizeof peer);
        d->stats.sessions_replaced++;
        if (log_ratelimit_ok(&d->log, now_usec))
                log_info("DTLS: %s started a new handshake on its established session "
                         "(a restarted node?); the old session ends", peer);
        d->release(session, d->userdata);       /* its confirmed cookie stays */
        if (established_session(d, p))
                log_warning("DTLS: the old session of %s is still held; its new handshake waits", peer);
        entry_learn(d, p, now_usec);
}

/* A new ClientHello on an established session, without the cookie: answer
 * a HelloVerifyRequest carrying it and drop the datagram, which the old
 * session would drop anyway; the session stays */
static bool verify_first(struct dtls_reboot *d, int fd, struct peeked *p, uint64_t now_usec) {
        char peer[64], *hvr;
        long hvr_len = BIO_get_mem_data(d->out, &hvr);
        uint8_t byte;

        if (hvr_len > 0) {
                d->stats.hello_verify_sent++;
                peer_text(&p->sender, peer, sizeof peer);
                if (log_ratelimit_ok(&d->log, now_usec))
                        log_debug("DTLS: a ClientHello from %s on its established session: "
                                  "HelloVerifyRequest sent, the session stays unless the cookie comes back", peer);
                send_hello_verify(fd, p, (const uint8_t *) hvr, (size_t) hvr_len);
        }
        (void) recv(fd, &byte, sizeof byte, MSG_DONTWAIT);
        return hvr_len > 0;
}

static bool check_socket(struct dtls_reboot *d, int fd, uint16_t port, uint64_t now_usec) {
        struct peeked p;
        struct cookie_entry *e;
        coap_session_t *session;
        uint8_t head[OFF_HANDSHAKE_TYPE + 1];

        /* the common case cheaply: a few bytes, no address */
        if (recv(fd, head, sizeof head, MSG_PEEK | MSG_DONTWAIT) != (ssize_t) sizeof head ||
            head[0] != DTLS_CT_HANDSHAKE || head[OFF_HANDSHAKE_TYPE] != DTLS_HT_CLIENT_HELLO)
                return false;
        if (!peek(fd, &p) || !is_initial_client_hello(&p))
                return false;
        p.local_port = port;
        session = established_session(d, &p);
        e = entry_find(d, port, &p.sender);
        if (!session) {         /* a handshake libcoap does: learn its cookie */
                listen_once(d, &p, NULL);
                if (d->seen_len > 0)
                        entry_learn(d, &p, now_usec);
                return false;
        }
        if (!e || !e->established) {
                /* its cookie was not learnt: the old session stays until it times out */
                d->stats.sessions_unknown_cookie++;
                return false;
        }
        if (listen_once(d, &p, e)) {
                replace_session(d, session, &p, now_usec);
                return false;
        }
        /* at most one HelloVerifyRequest a second per address: a flood of
         * ClientHellos (spoofed or not) neither reflects one each nor keeps
         * libcoap from reading; the node's retransmission comes after 1 s */
        if (e->hvr_usec && now_usec < e->hvr_usec + 1000000ULL) {
                uint8_t byte;

                (void) recv(fd, &byte, sizeof byte, MSG_DONTWAIT);
                d->stats.hello_verify_limited++;
                return false;
        }
        e->hvr_usec = now_usec;
        return verify_first(d, fd, &p, now_usec);
}

bool dtls_reboot_check(struct dtls_reboot *d, uint64_t now_usec) {
        bool answered = false;

        for (size_t i = 0; d && i < d->n_sockets; i++)
                answered |= check_socket(d, d->sockets[i].fd, d->sockets[i].port, now_usec);
        return answered;
}

const struct dtls_reboot_stats *dtls_reboot_get0_stats(const struct dtls_reboot *d) {
        static const struct dtls_reboot_stats none;

        return d ? &d->stats : &none;
}
