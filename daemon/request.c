/* request.c -- one CMP exchange: validate → route → upstream → answer */
#include "request.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admission.h"
#include "cmp_content.h"
#include "cmp_protection.h"
#include "coap_server.h"
#include "coap_status.h"
#include "dbus_api.h"
#include "config.h"
#include "log.h"
#include "manager.h"
#include "registry.h"
#include "upstream_coap.h"
#include "upstream_http.h"

struct request *request_new(Manager *m) {
        struct request *r = calloc(1, sizeof *r);

        if (!r)
                return NULL;
        r->manager = m;
        r->id = ++m->next_request_id;
        r->max_age = -1;
        sd_event_now(m->event, CLOCK_MONOTONIC, &r->started_usec);
        LIST_PREPEND(requests, m->requests, r);
        m->n_requests++;
        dbus_api_properties_changed(m->dbus);
        return r;
}

void request_free(struct request *r) {
        if (!r)
                return;
        if (r->awaiting_commit)
                LIST_REMOVE(commit_wait, r->manager->commit_waiting, r);
        if (r->call)
                upstream_http_cancel(r->manager->http, r);
        if (r->coap_call)
                upstream_coap_cancel(r->manager->coap_client, r);
        if (r->in_flight_counted)
                peer_limits_drop(r->manager->peers, &r->peer_key, PEER_IN_FLIGHT);
        r->ack_wait = sd_event_source_disable_unref(r->ack_wait);
        LIST_REMOVE(requests, r->manager->requests, r);
        r->manager->n_requests--;
        dbus_api_properties_changed(r->manager->dbus);
        manager_request_done(r->manager, r);    /* stopping: the last one lets cmpgwd exit */
        free(r->body);
        cmp_content_free(r->content);
        free(r->answer);
        free(r->upstream_name);
        free(r->upstream_uri);
        upstream_tls_clear(&r->upstream_tls);
        free(r);
}

static void request_answer(struct request *r) {
        Manager *m = r->manager;
        char code[8];
        uint64_t now;

        r->answered = true;
        if (r->code < 300)
                m->stats.answered_2xx++;
        else if (r->code < 500)
                m->stats.answered_4xx++;
        else
                m->stats.answered_5xx++;
        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        log_info("request %llu from %s: %s to /.well-known/cmp%s%s%s%s -> %s%s%s (%.1f ms)",
                 (unsigned long long) r->id, r->peer,
                 r->body_len ? cmp_body_name(r->info.body) : "(no body)",
                 r->path.label[0] ? "/p/" : "", r->path.label,
                 r->path.op ? "/" : "", cmp_op_coap_name(r->path.op),
                 coap_code_text(r->code, code),
                 r->upstream_name ? " via " : "", r->upstream_name ? r->upstream_name : "",
                 (double) (now - r->started_usec) / 1000.0);
        coap_server_answer(m->coap, r);
}

static int set_answer(struct request *r, int code, int max_age, bool is_cmp,
                      const uint8_t *body, size_t len) {
        uint8_t *copy = NULL;

        if (len > 0) {
                copy = malloc(len);
                if (!copy)
                        return -ENOMEM;
                memcpy(copy, body, len);
        }
        free(r->answer);
        r->answer = copy;
        r->answer_len = len;
        r->answer_is_cmp = is_cmp;
        r->code = code;
        r->max_age = max_age;
        return 0;
}

int request_set_error(struct request *r, int code, int max_age, const char *fmt, ...) {
        char diag[256];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(diag, sizeof diag, fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        /* RFC 7252 §5.5.2: a short diagnostic payload, UTF-8, no Content-Format */
        return set_answer(r, code, max_age, false, (const uint8_t *) diag,
                          (size_t) n < sizeof diag ? (size_t) n : sizeof diag - 1);
}

static void request_fail(struct request *r, int code, int max_age, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void request_fail(struct request *r, int code, int max_age, const char *fmt, ...) {
        char diag[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(diag, sizeof diag, fmt, ap);
        va_end(ap);
        request_set_error(r, code, max_age, "%s", diag);
        request_answer(r);
}

static bool dup_or_null(const char *s, char **ret) {
        *ret = s ? strdup(s) : NULL;
        return !s || *ret;
}

int upstream_tls_copy(struct upstream_tls *dst, const struct cmpgw_upstream *u) {
        if (dup_or_null(u->ca_file, &dst->ca_file) && dup_or_null(u->certificate, &dst->certificate) &&
            dup_or_null(u->private_key, &dst->private_key) && dup_or_null(u->psk_file, &dst->psk_file))
                return 0;
        upstream_tls_clear(dst);
        return -ENOMEM;
}

void upstream_tls_clear(struct upstream_tls *t) {
        free(t->ca_file);
        free(t->certificate);
        free(t->private_key);
        free(t->psk_file);
        *t = (struct upstream_tls) {};
}

static int route(struct request *r) {
        const struct cmpgw_config *c = r->manager->config;
        const struct cmpgw_upstream *u = config_route_host(c, r->path.label, r->route_host);
        char uri[2048];

        if (!u)
                return -ENOENT;
        r->upstream_coap = u->scheme == SCHEME_COAP || u->scheme == SCHEME_COAPS;
        if ((r->upstream_coap ? cmp_path_coap_upstream_uri : cmp_path_http_upstream_uri)
                        (u->uri, r->path.label, r->path.op, uri, sizeof uri) < 0)
                return -ENOBUFS;
        r->upstream_name = strdup(u->name);
        r->upstream_uri = strdup(uri);
        r->upstream_timeout_usec = u->timeout_usec;
        r->upstream_chunked = u->chunked;
        r->upstream_max_connections = u->max_connections;
        r->protection = r->manager->protection ? r->manager->protection[u - c->upstreams] : NULL;
        if (upstream_tls_copy(&r->upstream_tls, u) < 0)
                return -ENOMEM;
        return r->upstream_name && r->upstream_uri ? 0 : -ENOMEM;
}

/* RFC 9482 §4: a proxy can validate the protection before forwarding.
 * Signatures are verified against the upstream's protection_trusted; MAC
 * protection needs a secret only the CA shares, so it passes; unprotected
 * messages do not. */
static int check_protection(struct request *r) {
        char why[1024];
        int ret;

        switch (cmp_protection_kind(r->body, r->body_len)) {
        case CMP_PROT_MAC:
                return 0;
        case CMP_PROT_NONE:
                request_fail(r, 400, -1, "unprotected PKIMessage: upstream %s takes signature or MAC protection only",
                             r->upstream_name);
                return -EPERM;
        case CMP_PROT_SIGNATURE:
                ret = cmp_protection_verify(r->body, r->body_len, r->protection, NULL, why, sizeof why);
                if (ret == 0)
                        return 0;
                log_info("request %llu from %s: %s refused: %s", (unsigned long long) r->id, r->peer,
                         cmp_body_name(r->info.body), why);
                request_fail(r, 400, -1, "%s", why);
                return -EPERM;
        default:
                request_fail(r, 400, -1, "not a PKIMessage");
                return -EBADMSG;
        }
}

void request_start(struct request *r) {
        Manager *m = r->manager;
        const char *why = NULL;
        char why_buf[256];
        unsigned left;
        int ret;

        m->stats.requests++;
        /* decoded once: the registry reads r->content after the answer came */
        ret = cmp_msg_inspect_content(r->body, r->body_len, &r->info, &r->content, &why);
        if (ret == -ENOMEM)
                return request_fail(r, 500, -1, "out of memory");
        if (ret < 0)
                return request_fail(r, 400, -1, "%s", why);
        if (!cmp_body_is_request(r->info.body))
                return request_fail(r, 400, -1, "a %s PKIMessage is not a request", cmp_body_name(r->info.body));
        if (!cmp_body_allowed_on_op(r->path.op, r->info.body))
                return request_fail(r, 400, -1, "a %s body does not belong to operation \"%s\"",
                                    cmp_body_name(r->info.body), cmp_op_coap_name(r->path.op));
        if ((ret = admission_check(m, r, why_buf, sizeof why_buf)) != 0)
                return request_fail(r, ret, -1, "%s", why_buf);
        ret = route(r);
        if (ret == -ENOENT)
                return request_fail(r, 404, -1, "no upstream takes label \"%s\"", r->path.label);
        if (ret < 0)
                return request_fail(r, 500, -1, "cannot route: %s", strerror(-ret));
        if (r->protection && (ret = check_protection(r)) < 0)
                return;
        left = upstream_http_backoff_left(m->http, r->upstream_name);
        if (left > 0)
                return request_fail(r, 503, (int) left, "upstream %s keeps failing; not contacted for %u s",
                                    r->upstream_name, left);
        /* RFC 9482 §3: only preconfigured upstreams are ever contacted */
        ret = r->upstream_coap ? upstream_coap_submit(m->coap_client, r) : upstream_http_submit(m->http, r);
        if (ret < 0)
                return request_fail(r, 500, -1, "cannot start the upstream request: %s", strerror(-ret));
        m->stats.forwarded++;
}

static struct request *commit_waiting_oldest(Manager *m) {
        struct request *r = m->commit_waiting;

        while (r && r->commit_wait_next)
                r = r->commit_wait_next;
        return r;
}

/* The group commit's COMMIT, then the answers that waited for it, oldest
 * first. A COMMIT that fails recorded none of them; they are answered
 * all the same, as an exchange the registry could not record always was. */
static int on_commit(sd_event_source *s, void *userdata) {
        Manager *m = userdata;
        struct request *r;
        int k = registry_batch_end(m->registry);

        (void) s;
        if (k < 0)
                log_warning("registry: group commit failed, its exchanges were not recorded: %s", strerror(-k));
        while ((r = commit_waiting_oldest(m))) {
                LIST_REMOVE(commit_wait, m->commit_waiting, r);
                r->awaiting_commit = false;
                request_answer(r);
        }
        return 0;
}

/* Opens the registry's group commit unless one is open: every exchange
 * recorded until the loop's next iteration (all answers one dispatch of
 * the upstream sockets brings) shares one transaction, whose pages are
 * written once. false: no batch, the exchange is a transaction alone. */
static bool batch_open(Manager *m) {
        if (registry_in_batch(m->registry))
                return true;
        if (!m->commit_defer && sd_event_add_defer(m->event, &m->commit_defer, on_commit, m) < 0)
                return false;
        if (registry_batch_begin(m->registry) < 0)
                return false;
        (void) sd_event_source_set_enabled(m->commit_defer, SD_EVENT_ONESHOT);
        return true;
}

/* Registry first, answer second: a crash after the answer never loses a
 * transaction the node was told about (issue 3). true: recorded in the
 * group commit, the answer waits for it (on_commit()). */
static bool request_record(struct request *r, const struct upstream_result *res) {
        Manager *m = r->manager;
        struct registry_exchange x = {
                .req = r->body, .req_len = r->body_len,
                .rsp = res->body, .rsp_len = res->body_len,
                .peer = r->peer,
                .now = (uint64_t) time(NULL),
                .req_content = r->content,
                .rsp_content = res->content,
        };
        bool batched;
        int ret;

        if (!m->registry || !res->body_is_cmp)
                return false;
        batched = batch_open(m);
        if (r->psk_identity[0])
                x.psk_identity = r->psk_identity;
        if (r->client_subject[0])
                x.client_subject = r->client_subject;
        ret = registry_observe(m->registry, &x);
        if (ret < 0)
                log_warning("request %llu: registry: cannot record the exchange: %s",
                            (unsigned long long) r->id, strerror(-ret));
        manager_registry_changed(m);
        return batched;
}

/* A transaction the upstream never answered with a PKIMessage (unreachable,
 * timeout, garbage): the registry cannot see it, so it is signalled here. */
static void request_signal_failure(struct request *r, const struct upstream_result *res) {
        char tid[2 * sizeof r->info.tid + 1];

        if (res->body_is_cmp || res->coap_code < 500)
                return;
        cmp_msg_tid_hex(&r->info, tid, sizeof tid);
        dbus_api_emit_transaction_failed(r->manager->dbus, tid, r->peer, cmp_body_name(r->info.body),
                                         res->diagnostic ? res->diagnostic : "upstream failed");
}

void request_complete(struct request *r, const struct upstream_result *res) {
        int max_age = res->max_age;
        bool wait_commit;
        int ret;

        wait_commit = request_record(r, res);
        request_signal_failure(r, res);

        if (res->coap_code == 503 || max_age == -2)
                max_age = (int) r->manager->config->unavailable_max_age;
        if (res->body_is_cmp)
                ret = set_answer(r, res->coap_code, max_age, true, res->body, res->body_len);
        else
                ret = request_set_error(r, res->coap_code, max_age, "%s",
                                        res->diagnostic ? res->diagnostic : "upstream failed");
        if (ret < 0)
                request_set_error(r, 500, -1, "out of memory");
        if (wait_commit) {
                LIST_PREPEND(commit_wait, r->manager->commit_waiting, r);
                r->awaiting_commit = true;
                return;
        }
        request_answer(r);
}

void request_abort(struct request *r, const char *why) {
        if (r->answered || r->awaiting_commit)
                return;         /* its answer is set; it goes out after the commit */
        if (r->call)
                upstream_http_cancel(r->manager->http, r);
        if (r->coap_call)
                upstream_coap_cancel(r->manager->coap_client, r);
        request_fail(r, 503, (int) r->manager->config->unavailable_max_age, "%s", why);
}
