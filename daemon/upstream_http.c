/* upstream_http.c -- CMP over HTTP (RFC 6712) with libcurl's multi socket
 * interface driven by sd-event: nothing here ever blocks the loop. */
#include "upstream_http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cmp_content.h"
#include "cmp_msg.h"
#include "list.h"
#include "coap_status.h"
#include "log.h"
#include "manager.h"
#include "request.h"

struct upstream_http {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        struct curl_slist *headers, *headers_chunked;
        struct gw_stats *stats;
        size_t max_response;
        /* The last answer the upstream sent ended a CMP transaction; servers
         * such as `openssl cmp` close the connection after that. */
        bool peer_may_have_closed;
        struct upstream_health_table health;
        LIST_HEAD(struct upstream_call, queue); /* over max_connections: waiting */
};

#define BACKOFF_AFTER 3                 /* transport failures in a row */
#define BACKOFF_MAX_SEC 60

struct upstream_call {
        LIST_FIELDS(struct upstream_call, queue);
        bool queued, active;
        char upstream[64];              /* the caller may be gone when the call is freed */
        struct upstream_http *http;
        struct upstream_post post;      /* what and where; borrowed until done() */
        upstream_done_fn done;
        void *userdata;
        uint64_t started_usec;
        char who[48];                   /* "request 12", "poll of ca": for logs */
        CURL *easy;
        uint8_t *buf;
        size_t len, cap;
        bool too_large;
        bool retried;
        size_t sent;                    /* chunked: bytes handed to curl */
        char content_type[64];
        char errbuf[CURL_ERROR_SIZE];
};

static struct upstream_health *health_get(struct upstream_http *h, const char *name) {
        return upstream_health_get(&h->health, name);
}

const struct upstream_health *upstream_http_health(struct upstream_http *h, const char *name) {
        return upstream_health_find(&h->health, name);
}

unsigned upstream_http_backoff_left(struct upstream_http *h, const char *name) {
        const struct upstream_health *u = upstream_http_health(h, name);
        uint64_t now;

        if (!u || !u->backoff_until_usec)
                return 0;
        sd_event_now(h->event, CLOCK_MONOTONIC, &now);
        return u->backoff_until_usec > now ? (unsigned) ((u->backoff_until_usec - now + 999999) / 1000000) : 0;
}

/* Count an exchange; after BACKOFF_AFTER transport failures in a row the
 * upstream is left alone for 5 s, doubling up to BACKOFF_MAX_SEC. The first
 * request after the pause probes it; one success ends the backoff. */
static void health_note(struct upstream_http *h, const struct upstream_call *c, bool transport_ok) {
        struct upstream_health *u = health_get(h, c->upstream);
        uint64_t now;

        if (!u)
                return;
        sd_event_now(h->event, CLOCK_MONOTONIC, &now);
        upstream_health_count(u, transport_ok, c->started_usec, now);
        if (transport_ok) {
                u->backoff_until_usec = 0;
                return;
        }
        if (u->failures_in_a_row >= BACKOFF_AFTER) {
                unsigned shift = u->failures_in_a_row - BACKOFF_AFTER, sec = 5;
                while (shift-- > 0 && sec < BACKOFF_MAX_SEC)
                        sec *= 2;
                if (sec > BACKOFF_MAX_SEC)
                        sec = BACKOFF_MAX_SEC;
                u->backoff_until_usec = now + (uint64_t) sec * 1000000;
                log_warning("upstream %s: %u failures in a row; not contacted for %u s", u->name,
                            u->failures_in_a_row, sec);
        }
}

static int call_setup(struct upstream_call *c, bool fresh);
static void call_start_queued(struct upstream_http *h, const char *name);
static void call_free(struct upstream_call *c);

/* The caller learns the result, then the call goes (res may point into it). */
static void call_finish(struct upstream_call *c, const struct upstream_result *res) {
        c->done(res, c->userdata);
        call_free(c);
}

static void call_free(struct upstream_call *c) {
        struct upstream_http *h;
        char name[64] = "";

        if (!c)
                return;
        h = c->http;
        if (c->easy) {
                curl_multi_remove_handle(h->multi, c->easy);
                curl_easy_cleanup(c->easy);
        }
        if (c->queued) {
                struct upstream_health *u = health_get(h, c->upstream);
                LIST_REMOVE(queue, h->queue, c);
                if (u)
                        u->queued--;
        }
        if (c->active) {
                struct upstream_health *u = health_get(h, c->upstream);
                if (u)
                        u->in_flight--;
                snprintf(name, sizeof name, "%s", c->upstream);
        }
        free(c->buf);
        free(c);
        if (name[0])
                call_start_queued(h, name);
}

/* The oldest request waiting for NAME goes on the wire. */
static void call_start_queued(struct upstream_http *h, const char *name) {
        struct upstream_call *c, *n, *oldest = NULL;
        struct upstream_health *u;

        LIST_FOREACH_SAFE(queue, c, n, h->queue)
                if (strcmp(c->upstream, name) == 0)
                        oldest = c;     /* the list is newest first */
        if (!oldest)
                return;
        u = health_get(h, name);
        LIST_REMOVE(queue, h->queue, oldest);
        oldest->queued = false;
        if (u) {
                u->queued--;
                u->in_flight++;
        }
        oldest->active = true;
        if (call_setup(oldest, false) < 0) {
                struct upstream_result res = { .coap_code = 500, .max_age = -1,
                                               .diagnostic = "cannot start the upstream request" };
                call_finish(oldest, &res);
        }
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct upstream_call *c = userdata;
        size_t n = size * nmemb;

        if (c->len + n > c->http->max_response) {
                c->too_large = true;
                return 0;       /* curl aborts with CURLE_WRITE_ERROR */
        }
        if (c->len + n > c->cap) {
                size_t cap = c->cap ? c->cap : 4096;
                uint8_t *b;
                while (cap < c->len + n)
                        cap *= 2;
                b = realloc(c->buf, cap);
                if (!b)
                        return 0;
                c->buf = b;
                c->cap = cap;
        }
        memcpy(c->buf + c->len, ptr, n);
        c->len += n;
        return n;
}

static bool body_ends_transaction(int body) {
        switch (body) {
        case CMP_BODY_PKICONF: case CMP_BODY_RP: case CMP_BODY_GENP: case CMP_BODY_ERROR:
        case CMP_BODY_IP: case CMP_BODY_CP: case CMP_BODY_KUP: /* with implicitConfirm */
                return true;
        }
        return false;
}

/* Requests whose answer always ends the transaction: the peer may close the
 * connection right after, so never offer it for reuse. */
static bool request_forbids_reuse(int body) {
        return body == CMP_BODY_CERTCONF || body == CMP_BODY_RR ||
               body == CMP_BODY_GENM || body == CMP_BODY_ERROR;
}

#define CHUNK_MAX 16384

/* RFC 9482 §2.4: a chunked body with chunks "to cut packets": each read
 * is one chunk, so the whole message goes as one chunk (up to CHUNK_MAX)
 * and the last-chunk marker — the fewest bytes and packets chunking allows. */
static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata) {
        struct upstream_call *c = userdata;
        size_t n = c->post.body_len - c->sent, room = size * nitems;

        if (n > room)
                n = room;
        if (n > CHUNK_MAX)
                n = CHUNK_MAX;
        memcpy(buf, c->post.body + c->sent, n);
        c->sent += n;
        return n;
}

/* "on", or "auto" once the upstream has answered with HTTP/1.1, which must
 * accept chunked request bodies (RFC 9112 §7); `openssl cmp` speaks
 * HTTP/1.0 and answers a chunked request with 400. */
static bool use_chunked(struct upstream_http *h, const struct upstream_call *c) {
        const struct upstream_health *u;

        if (c->post.chunked != CHUNKED_AUTO)
                return c->post.chunked == CHUNKED_ON;
        u = upstream_http_health(h, c->upstream);
        return u && u->http11;
}

static int call_setup(struct upstream_call *c, bool fresh) {
        const struct upstream_post *p = &c->post;
        CURL *e = curl_easy_init();

        if (!e)
                return -ENOMEM;
        c->easy = e;
        curl_easy_setopt(e, CURLOPT_URL, p->uri);
        curl_easy_setopt(e, CURLOPT_PRIVATE, c);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        /* RFC 6712 §3.3: POST with Content-Type application/pkixcmp */
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        if (use_chunked(c->http, c)) {
                struct upstream_health *u = health_get(c->http, c->upstream);
                c->sent = 0;
                curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(e, CURLOPT_READDATA, c);
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->http->headers_chunked);
                if (u)
                        u->chunked = true;
        } else {
                struct upstream_health *u = health_get(c->http, c->upstream);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *) p->body);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) p->body_len);
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->http->headers);
                if (u)
                        u->chunked = false;
        }
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
        /* RFC 9482 §3: a reverse proxy never leaves the configured set */
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        /* RFC 9482 §4: the upstream's certificate checked against the configured
         * trust anchors (curl's default store without ca_file); the gateway's
         * client certificate when given. curl reads the files per connection. */
        if (p->tls && p->tls->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, p->tls->ca_file);
        if (p->tls && p->tls->certificate) {
                curl_easy_setopt(e, CURLOPT_SSLCERT, p->tls->certificate);
                curl_easy_setopt(e, CURLOPT_SSLKEY, p->tls->private_key);
        }
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) (p->timeout_usec / 1000));
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (p->timeout_usec / 1000));
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
        if (request_forbids_reuse(p->body_type))
                curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        if (fresh)
                curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        return curl_multi_add_handle(c->http->multi, e) == CURLM_OK ? 0 : -EIO;
}

int upstream_http_post(struct upstream_http *h, const struct upstream_post *p, upstream_done_fn done,
                       void *userdata, const char *who, struct upstream_call **ret) {
        struct upstream_call *c = calloc(1, sizeof *c);
        struct upstream_health *u;
        int r;

        if (!c)
                return -ENOMEM;
        c->http = h;
        c->post = *p;
        c->done = done;
        c->userdata = userdata;
        snprintf(c->upstream, sizeof c->upstream, "%s", p->name);
        snprintf(c->who, sizeof c->who, "%s", who);
        sd_event_now(h->event, CLOCK_MONOTONIC, &c->started_usec);
        u = health_get(h, p->name);
        if (!u) {
                free(c);
                return -ENOMEM;
        }
        /* a cap on the exchanges (and so connections) per upstream; the rest wait */
        if (u->in_flight >= p->max_connections) {
                c->queued = true;
                u->queued++;
                LIST_PREPEND(queue, h->queue, c);
                *ret = c;
                return 0;
        }
        u->in_flight++;
        c->active = true;
        r = call_setup(c, false);
        if (r < 0) {
                call_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void upstream_http_abandon(struct upstream_http *h, struct upstream_call *c) {
        (void) h;
        call_free(c);
}

/* A node's request: its answer goes back through request_complete() */
static void request_done(const struct upstream_result *res, void *userdata) {
        struct request *r = userdata;

        r->call = NULL;
        request_complete(r, res);       /* copies what it keeps */
}

int upstream_http_submit(struct upstream_http *h, struct request *r) {
        struct upstream_post p = {
                .name = r->upstream_name, .uri = r->upstream_uri,
                .body = r->body, .body_len = r->body_len, .body_type = r->info.body,
                .timeout_usec = r->upstream_timeout_usec, .chunked = r->upstream_chunked,
                .max_connections = r->upstream_max_connections, .tls = &r->upstream_tls,
        };
        char who[48];

        snprintf(who, sizeof who, "request %llu", (unsigned long long) r->id);
        return upstream_http_post(h, &p, request_done, r, who, &r->call);
}

void upstream_http_cancel(struct upstream_http *h, struct request *r) {
        (void) h;
        call_free(r->call);
        r->call = NULL;
}

/* A reused connection that yields nothing at all, right after the server
 * ended a transaction on it, was closed by the server before our request
 * arrived: the request cannot have reached the CMP server, so resending it
 * on a fresh connection delivers it once. Anything else is never resent. */
static bool call_can_retry(struct upstream_call *c, CURLcode cc) {
        long connects = -1;
        curl_off_t got = -1;
        long header_bytes = -1;

        if (c->retried || !c->http->peer_may_have_closed)
                return false;
        if (cc != CURLE_SEND_ERROR && cc != CURLE_GOT_NOTHING && cc != CURLE_RECV_ERROR)
                return false;
        curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &connects);
        curl_easy_getinfo(c->easy, CURLINFO_SIZE_DOWNLOAD_T, &got);
        curl_easy_getinfo(c->easy, CURLINFO_HEADER_SIZE, &header_bytes);
        return connects == 0 && got == 0 && header_bytes == 0;
}

static void call_retry(struct upstream_call *c) {
        curl_multi_remove_handle(c->http->multi, c->easy);
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
        c->len = 0;
        c->retried = true;
        c->http->stats->upstream_retries++;
        log_info("%s: upstream %s closed a reused connection before the request; resending once on a fresh connection",
                 c->who, c->upstream);
        if (call_setup(c, true) < 0) {
                struct upstream_result res = { .coap_code = 503, .max_age = -1,
                                               .diagnostic = "upstream unavailable" };
                call_finish(c, &res);
        }
}

static void result_from_transport_error(struct upstream_call *c, CURLcode cc,
                                        struct upstream_result *res, char *diag, size_t size) {
        const char *what = c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc);

        res->max_age = -1;
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_SSL_CONNECT_ERROR:
                res->coap_code = 503;
                snprintf(diag, size, "upstream %s unreachable: %.200s", c->upstream, what);
                break;
        case CURLE_OPERATION_TIMEDOUT:
                res->coap_code = 504;
                snprintf(diag, size, "upstream %s did not answer in time", c->upstream);
                break;
        case CURLE_WRITE_ERROR:
                res->coap_code = 502;
                snprintf(diag, size, c->too_large ? "upstream %s answer exceeds the size limit" :
                                                    "upstream %s answer could not be stored", c->upstream);
                break;
        default:
                res->coap_code = 502;
                snprintf(diag, size, "upstream %s failed: %.200s", c->upstream, what);
        }
        res->diagnostic = diag;
}

/* *CONTENT: what the registry reads of the answer, from the one decoding
 * that checks it (owned by the caller, NULL when none) */
static void result_from_http(struct upstream_call *c, struct upstream_result *res, struct cmp_content **content,
                             char *diag, size_t size) {
        struct cmp_msg_info info;
        long status = 0;
        bool is_cmp;
        int k;

        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
        {
                long version = 0;
                struct upstream_health *u = health_get(c->http, c->upstream);
                curl_easy_getinfo(c->easy, CURLINFO_HTTP_VERSION, &version);
                if (u && version != 0)
                        u->http11 = version >= CURL_HTTP_VERSION_1_1;
        }
        k = cmp_msg_inspect_content(c->buf, c->len, &info, content, NULL);
        if (k == -ENOMEM)       /* checked without the content: the registry parses it */
                k = cmp_msg_inspect(c->buf, c->len, &info, NULL);
        is_cmp = k == 0;
        res->max_age = -1;
        if (is_cmp)
                c->http->peer_may_have_closed = body_ends_transaction(info.body);
        if (status >= 200 && status < 300) {
                if (!is_cmp) {
                        /* PRODUCT.md: garbage or a non-CMP body → 5.02 */
                        res->coap_code = 502;
                        snprintf(diag, size, "upstream %s answered HTTP %ld without a PKIMessage", c->upstream, status);
                        res->diagnostic = diag;
                        return;
                }
                res->coap_code = 204;   /* RFC 9482 §2.3: success is 2.xx; 2.04 Changed */
        } else {
                res->coap_code = coap_code_from_http_status(status);
                snprintf(diag, size, "upstream %s answered HTTP %ld", c->upstream, status);
                res->diagnostic = diag;
                if (res->coap_code == 503)
                        res->max_age = -2;      /* caller fills the configured Max-Age */
        }
        if (is_cmp) {   /* a CMP error body is relayed (PRODUCT.md) */
                res->body = c->buf;
                res->body_len = c->len;
                res->body_is_cmp = true;
                res->content = *content;
        }
}

static void call_done(struct upstream_call *c, CURLcode cc) {
        struct upstream_result res = { 0 };
        struct cmp_content *content = NULL;
        char diag[320];         /* the upstream's name (< 64) and curl's words (<= 200) */

        if (cc != CURLE_OK && call_can_retry(c, cc)) {
                call_retry(c);
                return;
        }
        health_note(c->http, c, cc == CURLE_OK);
        if (cc != CURLE_OK) {
                c->http->stats->upstream_errors++;
                log_warning("%s: upstream %s (%s): %s", c->who, c->upstream, c->post.uri,
                            c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
                result_from_transport_error(c, cc, &res, diag, sizeof diag);
        } else
                result_from_http(c, &res, &content, diag, sizeof diag);
        call_finish(c, &res);
        cmp_content_free(content);
}

static void check_multi_info(struct upstream_http *h) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(h->multi, &left))) {
                struct upstream_call *c = NULL;
                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &c);
                call_done(c, msg->data.result);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct upstream_http *h = userdata;
        int action = 0, running;

        if (revents & EPOLLIN)
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;
        curl_multi_socket_action(h->multi, fd, action, &running);
        check_multi_info(h);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct upstream_http *h = userdata;
        int running;

        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_multi_info(h);
        return 0;
}

/* CURLMOPT_SOCKETFUNCTION: mirror curl's interest in a socket as an sd-event IO source */
static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
        struct upstream_http *h = userp;
        sd_event_source *src = socketp;
        uint32_t events = 0;

        if (what == CURL_POLL_REMOVE) {
                if (src) {
                        sd_event_source_disable_unref(src);
                        curl_multi_assign(h->multi, fd, NULL);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;
        if (src)
                return sd_event_source_set_io_events(src, events) < 0 ? -1 : 0;
        if (sd_event_add_io(h->event, &src, fd, events, on_io, h) < 0)
                return -1;
        sd_event_source_set_description(src, "curl-socket");
        curl_multi_assign(h->multi, fd, src);
        return 0;
}

/* CURLMOPT_TIMERFUNCTION */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        struct upstream_http *h = userp;
        uint64_t now;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(h->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        sd_event_now(h->event, CLOCK_MONOTONIC, &now);
        if (sd_event_source_set_time(h->timer, now + (uint64_t) timeout_ms * 1000) < 0)
                return -1;
        return sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT) < 0 ? -1 : 0;
}

int upstream_http_new(sd_event *e, struct gw_stats *stats, size_t max_response,
                      struct upstream_http **ret) {
        struct upstream_http *h = calloc(1, sizeof *h);
        int r;

        if (!h)
                return -ENOMEM;
        h->event = sd_event_ref(e);
        h->stats = stats;
        h->max_response = max_response;
        h->multi = curl_multi_init();
        if (!h->multi) {
                upstream_http_free(h);
                return -ENOMEM;
        }
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
        /* accuracy 1 µs: sd-event's default (0) lets a timer slip by up
         * to 250 ms, and curl asks for "now" timers on every transfer */
        r = sd_event_add_time(e, &h->timer, CLOCK_MONOTONIC, UINT64_MAX, 1, on_timer, h);
        if (r < 0) {
                upstream_http_free(h);
                return r;
        }
        sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
        sd_event_source_set_description(h->timer, "curl-timer");
        h->headers = curl_slist_append(NULL, "Content-Type: application/pkixcmp");
        h->headers = curl_slist_append(h->headers, "Accept: application/pkixcmp");
        /* PEERS.md: `openssl cmp` never answers 100-continue; curl would wait 1 s */
        h->headers = curl_slist_append(h->headers, "Expect:");
        h->headers_chunked = curl_slist_append(NULL, "Content-Type: application/pkixcmp");
        h->headers_chunked = curl_slist_append(h->headers_chunked, "Accept: application/pkixcmp");
        h->headers_chunked = curl_slist_append(h->headers_chunked, "Expect:");
        h->headers_chunked = curl_slist_append(h->headers_chunked, "Transfer-Encoding: chunked");
        if (!h->headers || !h->headers_chunked) {
                upstream_http_free(h);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

void upstream_http_set_max_response(struct upstream_http *h, size_t max_response) {
        h->max_response = max_response;
}

struct upstream_http *upstream_http_free(struct upstream_http *h) {
        if (!h)
                return NULL;
        if (h->multi)
                curl_multi_cleanup(h->multi);
        sd_event_source_disable_unref(h->timer);
        curl_slist_free_all(h->headers);
        curl_slist_free_all(h->headers_chunked);
        upstream_health_table_clear(&h->health);
        sd_event_unref(h->event);
        free(h);
        return NULL;
}
