/* manager.c -- owns the event loop and every event source of cmpgwd */
#include "manager.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <libgen.h>

#include <systemd/sd-daemon.h>

#include "ann_poll.h"
#include "cmp_ann.h"
#include "announce.h"
#include "coap_server.h"
#include "dbus_api.h"
#include "log.h"
#include "registry.h"
#include "upstream_coap.h"
#include "upstream_http.h"

#define STOP_GRACE_USEC   (5 * 1000000ULL)  /* let in-flight requests finish */
#define STOP_LINGER_USEC  (500 * 1000ULL)   /* let libcoap send the last answers */

static void notify_status(Manager *m) {
        sd_notifyf(false, "STATUS=%u requests in flight, %llu answered",
                   m->n_requests,
                   (unsigned long long) (m->stats.answered_2xx + m->stats.answered_4xx + m->stats.answered_5xx));
}

static int on_linger_done(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        return sd_event_exit(m->event, 0);
}

static void manager_exit_soon(Manager *m) {
        sd_event_add_time_relative(m->event, NULL, CLOCK_MONOTONIC, STOP_LINGER_USEC, 0, on_linger_done, m);
}

static int on_grace_over(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        struct request *r, *n;

        if (m->n_requests > 0)
                log_warning("stopping: %u requests still in flight; answering them 5.03", m->n_requests);
        LIST_FOREACH_SAFE(requests, r, n, m->requests)
                request_abort(r, "gateway shutting down; retry later");
        manager_exit_soon(m);
        return 0;
}

static void manager_stop(Manager *m, const char *why) {
        if (m->stopping)
                return;
        m->stopping = true;
        sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        log_info("%s: stopping (%u requests in flight)", why, m->n_requests);
        if (m->n_requests == 0) {
                manager_exit_soon(m);
                return;
        }
        sd_event_add_time_relative(m->event, NULL, CLOCK_MONOTONIC, STOP_GRACE_USEC, 0, on_grace_over, m);
}

void manager_request_done(Manager *m, struct request *r) {
        if (m->stopping && m->n_requests == 0)
                manager_exit_soon(m);
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        manager_stop(userdata, si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        return 0;
}

static struct registry_config registry_config_of(const struct cmpgw_config *c) {
        return (struct registry_config) {
                .renew_share = c->renew_share,
                .renew_before_sec = c->renew_before_sec,
        };
}

/* The trust anchors of each upstream's protection_trusted, read at start
 * and reload. NULL entries: no check. */
static void protection_stores_free(X509_STORE **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                X509_STORE_free(v[i]);
        free(v);
}

static int protection_stores_load(const struct cmpgw_config *c, X509_STORE ***ret, char **why) {
        X509_STORE **v = calloc(c->n_upstreams ? c->n_upstreams : 1, sizeof *v);

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_upstreams; i++) {
                const char *f = c->upstreams[i].protection_trusted;
                if (!f)
                        continue;
                if (!(v[i] = X509_STORE_new()) || X509_STORE_load_file(v[i], f) != 1) {
                        if (asprintf(why, "upstreams[%zu].protection_trusted: cannot load trust anchors from %s; "
                                     "give a PEM file of CA certificates", i, f) < 0)
                                *why = NULL;
                        protection_stores_free(v, c->n_upstreams);
                        return -EINVAL;
                }
        }
        *ret = v;
        return 0;
}

/* What a reload reads before it changes anything: all of it is taken or
 * none of it (reload_prepared_clear). */
struct reload_prepared {
        struct cmpgw_config *config;
        X509_STORE **protection;        /* per upstream, NULL entries: no check */
        struct ann_poll_set *polls;
        X509_STORE *ann_trusted;        /* announcements.trusted, NULL: none */
};

static void reload_prepared_clear(struct reload_prepared *p) {
        ann_poll_set_free(p->polls);
        if (p->config)
                protection_stores_free(p->protection, p->config->n_upstreams);
        X509_STORE_free(p->ann_trusted);
        config_free(p->config);
        *p = (struct reload_prepared) { 0 };
}

/* A reload refused: the running configuration stays. Takes why (malloc'd
 * or NULL) and what was prepared. */
static int reload_refused(Manager *m, int r, char *why, char **ret_err, struct reload_prepared *p) {
        reload_prepared_clear(p);
        log_error("reload failed, keeping the running configuration: %s", why ? why : strerror(-r));
        if (ret_err)
                *ret_err = why;
        else
                free(why);
        sd_notify(false, "READY=1");
        notify_status(m);
        return r;
}

/* Everything that can refuse the new file, read before anything changes */
static int reload_prepare(Manager *m, struct reload_prepared *p, char **why) {
        char *err = NULL;
        int r;

        if ((r = config_load_file(m->config_path, &p->config, why)) < 0)
                return r;
        if ((r = protection_stores_load(p->config, &p->protection, why)) < 0)
                return r;
        if (m->poll && (r = ann_poll_prepare(m->poll, p->config, &p->polls, why)) < 0)
                return r;
        if (m->announce && p->config->ann_trusted &&
            (r = cmp_ann_load_trust(p->config->ann_trusted, &p->ann_trusted, &err)) < 0) {
                log_reason(why, r, "announcements.trusted: %s", err ? err : strerror(-r));
                free(err);
                return r;
        }
        return 0;
}

/* SIGHUP: a bad new configuration keeps the old one running */
int manager_reload(Manager *m, char **ret_err) {
        struct reload_prepared p = { 0 };
        struct cmpgw_config *c;
        struct registry_config rc;
        char *why = NULL;
        int r;

        sd_notify(false, "RELOADING=1\nSTATUS=Reloading configuration");
        if ((r = reload_prepare(m, &p, &why)) < 0)
                return reload_refused(m, r, why, ret_err, &p);
        c = p.config;
        if (c->n_listen != m->config->n_listen)
                log_warning("reload: listener changes take effect only after a restart");
        else
                for (size_t i = 0; i < c->n_listen; i++)
                        if (strcmp(c->listen[i].uri, m->config->listen[i].uri) != 0)
                                log_warning("reload: listener changes take effect only after a restart (%s)", c->listen[i].uri);
        r = coap_server_apply_config(m->coap, c);
        if (r < 0) {
                /* coap_server.c logged what it could not take (credentials, resources) */
                coap_server_apply_config(m->coap, m->config);
                if (asprintf(&why, "the CoAP listeners refused the new configuration: %s; see the daemon's log",
                             strerror(-r)) < 0)
                        why = NULL;
                return reload_refused(m, r, why, ret_err, &p);
        }
        /* Nothing can refuse the reload from here on */
        upstream_http_set_max_response(m->http, c->max_message_size);
        if (strcmp(c->registry_path, m->config->registry_path) != 0)
                log_warning("reload: registry.path changes take effect only after a restart");
        if (c->bus != m->config->bus)
                log_warning("reload: dbus.bus changes take effect only after a restart");
        rc = registry_config_of(c);
        registry_set_config(m->registry, &rc);
        if (m->announce)
                announce_set_trusted(m->announce, p.ann_trusted);
        protection_stores_free(m->protection, m->config->n_upstreams);
        m->protection = p.protection;
        config_free(m->config);
        m->config = p.config;           /* everything prepared is taken */
        manager_registry_changed(m);
        upstream_coap_forget_sessions(m->coap_client);    /* new credentials for new sessions */
        if (upstream_coap_watch_announcements(m->coap_client, c) < 0)
                log_warning("reload: cannot observe upstream announcements");
        if (m->poll)
                ann_poll_commit(m->poll, p.polls);    /* every poller starts again */
        log_info("reloaded %s: %zu upstreams", m->config_path, c->n_upstreams);
        sd_notify(false, "READY=1");
        notify_status(m);
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        manager_reload(userdata, NULL);
        return 0;
}

static void on_registry_event(const struct registry_event *ev, void *userdata) {
        static const char *const what[] = {
                [REG_EV_ENROLLED] = "enrolled", [REG_EV_RENEWED] = "renewed", [REG_EV_REVOKED] = "revoked",
                [REG_EV_RENEWAL_DUE] = "renewal due", [REG_EV_FAILED] = "transaction failed",
        };

        bool serial = ev->serial && *ev->serial, detail = ev->detail && *ev->detail;

        log_info("registry: %s: device %lld %s%s%s%s%s", what[ev->type], (long long) ev->device_id,
                 ev->subject ? ev->subject : "", serial ? " serial " : "", serial ? ev->serial : "",
                 detail ? ": " : "", detail ? ev->detail : "");
        dbus_api_emit_registry_event(((Manager *) userdata)->dbus, ev);
}

static void on_announce_event(const struct announce_event *ev, void *userdata) {
        Manager *m = userdata;
        int r;

        switch (ev->type) {
        case ANN_EV_PUBLISHED:
                coap_server_announcement(m->coap);
                break;
        case ANN_EV_CRL_UPDATED:
                log_info("announcements: CRL of %s updated: CRL number %s, thisUpdate %s", ev->issuer,
                         *ev->crl_number ? ev->crl_number : "none", ev->this_update);
                dbus_api_emit_crl_updated(m->dbus, ev);
                break;
        case ANN_EV_CERT_REVOKED:
                log_info("announcements: %s serial %s revoked (reason %d)", ev->issuer, ev->serial, ev->reason);
                dbus_api_emit_certificate_revoked(m->dbus, ev);
                r = m->registry ? registry_revoke(m->registry, ev->issuer, ev->serial, ev->reason,
                                                  (uint64_t) (ev->revoked_at > 0 ? ev->revoked_at : time(NULL))) : 0;
                if (r < 0)
                        log_warning("registry: cannot record the revocation of %s serial %s: %s",
                                    ev->issuer, ev->serial, strerror(-r));
                else if (r > 0)
                        manager_registry_changed(m);
                break;
        case ANN_EV_CA_KEY_UPDATED:
        case ANN_EV_CA_CERT:
                dbus_api_emit_ca_announcement(m->dbus, ev);
                break;
        }
}

/* An upstream's ann brought an announcement: validated and published like
 * the operator's, so it reaches our observers and D-Bus (RFC 9482 §2.6). */
static void on_upstream_announcement(const char *name, const uint8_t *der, size_t len, void *userdata) {
        Manager *m = userdata;
        char *why = NULL;
        int r;

        if (!m->announce || announce_is_latest(m->announce, der, len))
                return;         /* what every re-registration brings again */
        r = announce_publish(m->announce, der, len, (int64_t) time(NULL), &why);
        if (r == -ESTALE)
                log_debug("announcement from upstream %s not newer than ours: %s", name, why ? why : "");
        else if (r < 0)
                log_warning("announcement from upstream %s refused: %s", name, why ? why : strerror(-r));
        free(why);
}

static int manager_open_announce(Manager *m) {
        char *dir = strdup(m->config->registry_path), *why = NULL;
        int r;

        if (!dir)
                return -ENOMEM;
        r = announce_new(dirname(dir), m->config->ann_trusted, &m->announce, &why);
        if (r < 0)
                log_error("cannot open the announcement store in %s: %s", dir, why ? why : strerror(-r));
        else
                announce_set_event_handler(m->announce, on_announce_event, m);
        free(why);
        free(dir);
        return r;
}

/* One timer on the earliest renewal or expiry (an index lookup, never a scan). */
static int on_renew_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r = registry_update_due(m->registry, (uint64_t) time(NULL));

        if (r < 0)
                log_warning("registry: cannot update renewal states: %s", strerror(-r));
        manager_registry_changed(m);
        return 0;
}

void manager_registry_changed(Manager *m) {
        int64_t due = registry_next_due(m->registry), now = (int64_t) time(NULL);
        uint64_t wait;

        if (!m->renew_timer)
                return;
        if (due < 0) {
                sd_event_source_set_enabled(m->renew_timer, SD_EVENT_OFF);
                return;
        }
        /* at least a second apart; at most a day, to survive clock jumps */
        wait = due <= now ? 1 : (uint64_t) (due - now);
        if (wait > 86400)
                wait = 86400;
        sd_event_source_set_time_relative(m->renew_timer, wait * 1000000ULL);
        sd_event_source_set_enabled(m->renew_timer, SD_EVENT_ONESHOT);
}

int manager_new(const char *config_path, struct cmpgw_config *config, Manager **ret) {
        Manager *m = calloc(1, sizeof *m);
        sigset_t mask;
        int r;

        if (!m)
                return -ENOMEM;
        m->config = config;
        m->config_path = strdup(config_path);
        m->peers = peer_limits_new();
        m->admission_log.what = "requests refused by admission";
        if (!m->config_path || !m->peers) {
                free(m->config_path);
                peer_limits_free(m->peers);
                free(m);
                return -ENOMEM;
        }
        r = sd_event_default(&m->event);
        if (r < 0)
                goto fail;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        if ((r = sd_event_add_signal(m->event, &m->sig_term, SIGTERM, on_sigterm, m)) < 0 ||
            (r = sd_event_add_signal(m->event, &m->sig_int, SIGINT, on_sigterm, m)) < 0 ||
            (r = sd_event_add_signal(m->event, &m->sig_hup, SIGHUP, on_sighup, m)) < 0)
                goto fail;
        /* sd-event pings the service manager's watchdog (WATCHDOG_USEC) */
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                log_warning("watchdog requested but not usable (WATCHDOG_USEC/WATCHDOG_PID): %s", strerror(-r));
        *ret = m;
        return 0;
fail:
        m->config = NULL;       /* the caller still owns it */
        manager_free(m);
        return r;
}

static int manager_open_registry(Manager *m) {
        struct registry_config rc = registry_config_of(m->config);
        int r = registry_open(m->config->registry_path, &rc, &m->registry);

        if (r < 0)
                return log_error("cannot open the registry %s: %s (check registry.path and that the directory exists and is writable)",
                                 m->config->registry_path, strerror(-r)), r;
        registry_set_event_handler(m->registry, on_registry_event, m);
        r = sd_event_add_time_relative(m->event, &m->renew_timer, CLOCK_REALTIME, 1000000, 0, on_renew_timer, m);
        if (r < 0)
                return r;
        sd_event_source_set_description(m->renew_timer, "renewal-timer");
        /* catch up with what fell due while we were not running */
        on_renew_timer(m->renew_timer, 0, m);
        log_info("registry %s: %llu devices", m->config->registry_path,
                 (unsigned long long) registry_count(m->registry));
        return 0;
}

/* genm polling of http(s) upstreams: credentials that cannot sign stop the start */
static int manager_start_polls(Manager *m) {
        struct ann_poll_set *polls = NULL;
        char *why = NULL;
        int r = ann_poll_new(m->event, m->http, m->announce, &m->poll);

        if (r < 0)
                return log_error("cannot set up polling: %s", strerror(-r)), r;
        r = ann_poll_prepare(m->poll, m->config, &polls, &why);
        if (r < 0) {
                log_error("%s", why ? why : strerror(-r));
                free(why);
                return r;
        }
        ann_poll_commit(m->poll, polls);
        return 0;
}

int manager_start(Manager *m) {
        int r;

        sd_event_now(m->event, CLOCK_MONOTONIC, &m->started_usec);
        {
                char *why = NULL;
                r = protection_stores_load(m->config, &m->protection, &why);
                if (r < 0) {
                        log_error("%s", why ? why : strerror(-r));
                        free(why);
                        return r;
                }
        }
        r = manager_open_registry(m);
        if (r < 0)
                return r;
        r = manager_open_announce(m);
        if (r < 0)
                return r;

        r = upstream_http_new(m->event, &m->stats, m->config->max_message_size, &m->http);
        if (r < 0)
                return log_error("cannot set up the HTTP upstream client: %s", strerror(-r)), r;
        r = upstream_coap_new(m->event, &m->stats, m->config->max_message_size, &m->coap_client);
        if (r < 0)
                return log_error("cannot set up the CoAP upstream client: %s", strerror(-r)), r;
        upstream_coap_set_ann_handler(m->coap_client, on_upstream_announcement, m);
        r = manager_start_polls(m);     /* before the listeners: bad credentials stop the start at once */
        if (r < 0)
                return r;
        r = coap_server_new(m, m->config, &m->coap);
        if (r < 0)
                return r;
        r = upstream_coap_watch_announcements(m->coap_client, m->config);
        if (r < 0)
                return log_error("cannot observe upstream announcements: %s", strerror(-r)), r;
        r = dbus_api_new(m, m->config->bus, &m->dbus);
        if (r < 0)
                return r;
        sd_notify(false, "READY=1");
        notify_status(m);
        log_info("ready: %zu listeners, %zu upstreams", m->config->n_listen, m->config->n_upstreams);
        return 0;
}

int manager_run(Manager *m) {
        int r = sd_event_loop(m->event);
        return r < 0 ? 1 : r;
}

Manager *manager_free(Manager *m) {
        struct request *r, *n;

        if (!m)
                return NULL;
        m->dbus = dbus_api_free(m->dbus);
        LIST_FOREACH_SAFE(requests, r, n, m->requests) {
                if (m->coap)
                        coap_server_release_request(m->coap, r);
                request_free(r);
        }
        m->coap = coap_server_free(m->coap);
        m->poll = ann_poll_free(m->poll);       /* before the HTTP client its calls are on */
        m->http = upstream_http_free(m->http);
        m->coap_client = upstream_coap_free(m->coap_client);
        sd_event_source_disable_unref(m->renew_timer);
        m->commit_defer = sd_event_source_disable_unref(m->commit_defer);
        m->registry = registry_close(m->registry);      /* commits what a batch left */
        m->announce = announce_free(m->announce);
        m->peers = peer_limits_free(m->peers);
        if (m->config)
                protection_stores_free(m->protection, m->config->n_upstreams);
        sd_event_source_disable_unref(m->sig_term);
        sd_event_source_disable_unref(m->sig_int);
        sd_event_source_disable_unref(m->sig_hup);
        sd_event_unref(m->event);
        config_free(m->config);
        free(m->config_path);
        free(m);
        return NULL;
}
