/* dbus_api.c -- org.cmpgw.Gateway1 on the system (or session) bus
 *
 * One sd-bus connection attached to the manager's sd-event loop. The object
 * /org/cmpgw/Gateway1 exports the interface of dbus/org.cmpgw.Gateway1.xml:
 * read-only properties, registry queries and control methods, and signals
 * for what the registry learns. Who may call what is decided by the bus
 * policy (dbus/org.cmpgw.Gateway1.conf), so every member is marked
 * SD_BUS_VTABLE_UNPRIVILEGED: sd-bus' own capability check would refuse
 * members of group cmpgw that the policy lets through. */
#include "dbus_api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "admission.h"
#include "announce.h"
#include "cmp_ann.h"
#include "cmp_path.h"
#include "coap_server.h"
#include "dtls_reboot.h"
#include "log.h"
#include "manager.h"
#include "upstream_coap.h"
#include "upstream_http.h"

#include "gateway_bus.h"

#define LIST_DEFAULT_LIMIT 100u
#define LIST_MAX_LIMIT     GW_PAGE_MAX

struct dbus_api {
        Manager *manager;
        enum cmpgw_bus bus_type;
        sd_bus *bus;
        sd_bus_slot *vtable_slot;
        sd_bus_slot *name_slot;
        sd_bus_slot *filter_slot;
        sd_event_source *props_defer;   /* coalesces PropertiesChanged */
        uint64_t started_usec;          /* CLOCK_MONOTONIC; uptime_sec if the manager's is unset */
        bool name_owned;

        /* what the last PropertiesChanged said (or the initial values) */
        uint64_t sent_device_count;
        unsigned sent_in_flight;
};

static const char *bus_label(enum cmpgw_bus b) {
        return b == BUS_SESSION ? "session" : "system";
}

static const char *strempty(const char *s) {
        return s ? s : "";
}

static uint64_t device_count(Manager *m) {
        return m->registry ? registry_count(m->registry) : 0;
}

static int registry_unavailable(sd_bus_error *error) {
        return sd_bus_error_setf(error, GW_ERROR_FAILED,
                                 "the device registry is not open (see cmpgwd's log)");
}

/* ------------------------------------------------------------ json → D-Bus */

static int append_json_object(sd_bus_message *msg, struct json_object *o);

/* One json value as a variant: string "s", int "x", bool "b", double "d",
 * object "a{sv}", array "av". Callers skip null. */
static int append_json_variant(sd_bus_message *msg, struct json_object *v) {
        int r;

        switch (json_object_get_type(v)) {
        case json_type_string:
                return sd_bus_message_append(msg, "v", "s", json_object_get_string(v));
        case json_type_int:
                return sd_bus_message_append(msg, "v", "x", (int64_t) json_object_get_int64(v));
        case json_type_boolean:
                return sd_bus_message_append(msg, "v", "b", (int) json_object_get_boolean(v));
        case json_type_double:
                return sd_bus_message_append(msg, "v", "d", json_object_get_double(v));
        case json_type_object:
                r = sd_bus_message_open_container(msg, 'v', "a{sv}");
                if (r < 0)
                        return r;
                r = append_json_object(msg, v);
                if (r < 0)
                        return r;
                return sd_bus_message_close_container(msg);
        case json_type_array:
                r = sd_bus_message_open_container(msg, 'v', "av");
                if (r < 0)
                        return r;
                r = sd_bus_message_open_container(msg, 'a', "v");
                if (r < 0)
                        return r;
                for (size_t i = 0; i < json_object_array_length(v); i++) {
                        struct json_object *e = json_object_array_get_idx(v, i);

                        if (!e || json_object_get_type(e) == json_type_null)
                                continue;
                        r = append_json_variant(msg, e);
                        if (r < 0)
                                return r;
                }
                r = sd_bus_message_close_container(msg);
                if (r < 0)
                        return r;
                return sd_bus_message_close_container(msg);
        case json_type_null:
        default:
                return -EINVAL;
        }
}

/* A json object as a{sv}; members that are null are left out. */
static int append_json_object(sd_bus_message *msg, struct json_object *o) {
        int r;

        r = sd_bus_message_open_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        if (o && json_object_is_type(o, json_type_object)) {
                json_object_object_foreach(o, key, val) {
                        if (!val || json_object_get_type(val) == json_type_null)
                                continue;
                        r = sd_bus_message_open_container(msg, 'e', "sv");
                        if (r < 0)
                                return r;
                        r = sd_bus_message_append_basic(msg, 's', key);
                        if (r < 0)
                                return r;
                        r = append_json_variant(msg, val);
                        if (r < 0)
                                return r;
                        r = sd_bus_message_close_container(msg);
                        if (r < 0)
                                return r;
                }
        }
        return sd_bus_message_close_container(msg);
}

static void json_putp(struct json_object **o) {
        if (*o)
                json_object_put(*o);
}

/* ------------------------------------------------------------ properties */

static int property_get_version(sd_bus *bus, const char *path, const char *interface,
                                const char *property, sd_bus_message *reply,
                                void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", CMPGW_VERSION);
}

/* An "as" from N strings that STRING_AT picks out of the running config. */
static int append_strings(sd_bus_message *reply, const struct cmpgw_config *c, size_t n,
                          const char *(*string_at)(const struct cmpgw_config *, size_t)) {
        int r = sd_bus_message_open_container(reply, 'a', "s");

        for (size_t i = 0; r >= 0 && c && i < n; i++)
                r = sd_bus_message_append_basic(reply, 's', string_at(c, i));
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

static const char *listen_uri_at(const struct cmpgw_config *c, size_t i) { return c->listen[i].uri; }
static const char *upstream_name_at(const struct cmpgw_config *c, size_t i) { return c->upstreams[i].name; }

static int property_get_listeners(sd_bus *bus, const char *path, const char *interface,
                                  const char *property, sd_bus_message *reply,
                                  void *userdata, sd_bus_error *error) {
        const struct cmpgw_config *c = ((struct dbus_api *) userdata)->manager->config;
        return append_strings(reply, c, c ? c->n_listen : 0, listen_uri_at);
}

static int property_get_upstreams(sd_bus *bus, const char *path, const char *interface,
                                  const char *property, sd_bus_message *reply,
                                  void *userdata, sd_bus_error *error) {
        const struct cmpgw_config *c = ((struct dbus_api *) userdata)->manager->config;
        return append_strings(reply, c, c ? c->n_upstreams : 0, upstream_name_at);
}

static int property_get_device_count(sd_bus *bus, const char *path, const char *interface,
                                     const char *property, sd_bus_message *reply,
                                     void *userdata, sd_bus_error *error) {
        struct dbus_api *d = userdata;

        return sd_bus_message_append(reply, "t", device_count(d->manager));
}

static int property_get_in_flight(sd_bus *bus, const char *path, const char *interface,
                                  const char *property, sd_bus_message *reply,
                                  void *userdata, sd_bus_error *error) {
        struct dbus_api *d = userdata;

        return sd_bus_message_append(reply, "u", (uint32_t) d->manager->n_requests);
}

/* The defer source: at most one PropertiesChanged per loop iteration,
 * naming only what changed since the last one. */
static int on_props_defer(sd_event_source *s, void *userdata) {
        struct dbus_api *d = userdata;
        char *names[3];
        size_t n = 0;
        uint64_t count = device_count(d->manager);
        unsigned in_flight = d->manager->n_requests;
        int r;

        if (count != d->sent_device_count)
                names[n++] = (char *) "DeviceCount";
        if (in_flight != d->sent_in_flight)
                names[n++] = (char *) "TransactionsInFlight";
        names[n] = NULL;
        if (n == 0 || sd_bus_is_open(d->bus) <= 0)
                return 0;
        r = sd_bus_emit_properties_changed_strv(d->bus, GW_PATH, GW_INTERFACE, names);
        if (r < 0)
                log_debug("D-Bus: cannot emit PropertiesChanged: %s", strerror(-r));
        d->sent_device_count = count;
        d->sent_in_flight = in_flight;
        return 0;
}

void dbus_api_properties_changed(struct dbus_api *d) {
        if (!d || !d->props_defer)
                return;
        (void) sd_event_source_set_enabled(d->props_defer, SD_EVENT_ONESHOT);
}

/* ------------------------------------------------------------ methods */

static bool valid_state(const char *s) {
        static const char *const states[] = { "pending", "enrolled", "renewal-due", "expired", "revoked" };

        for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
                if (strcmp(s, states[i]) == 0)
                        return true;
        return false;
}

/* a page limit as ListDevices takes it: 0 is the default, at most LIST_MAX_LIMIT */
static int page_limit(uint32_t *limit, sd_bus_error *error) {
        if (*limit == 0)
                *limit = LIST_DEFAULT_LIMIT;
        if (*limit > LIST_MAX_LIMIT)
                return sd_bus_error_setf(error, GW_ERROR_INVALID_ARGUMENT,
                                         "page size %" PRIu32 " is too large; the maximum is %u",
                                         *limit, LIST_MAX_LIMIT);
        return 0;
}

/* aa{sv} of a json array, then its total */
static int reply_page(sd_bus_message *msg, struct json_object *items, uint64_t total) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "a{sv}");
        for (size_t i = 0; r >= 0 && items && i < json_object_array_length(items); i++)
                r = append_json_object(reply, json_object_array_get_idx(items, i));
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "t", total);
        return r < 0 ? r : sd_bus_send(NULL, reply, NULL);
}

static int method_list_devices(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(json_putp) struct json_object *devices = NULL;
        struct dbus_api *d = userdata;
        const char *state;
        uint64_t offset, total = 0;
        uint32_t limit;
        int r;

        r = sd_bus_message_read(msg, "stu", &state, &offset, &limit);
        if (r < 0)
                return r;
        if (state[0] && !valid_state(state))
                return sd_bus_error_setf(error, GW_ERROR_INVALID_ARGUMENT,
                                         "unknown device state '%s' (expected pending, enrolled, "
                                         "renewal-due, expired, revoked, or '' for all)", state);
        if ((r = page_limit(&limit, error)) < 0)
                return r;
        if (!d->manager->registry)
                return registry_unavailable(error);

        r = registry_list(d->manager->registry, state[0] ? state : NULL, offset, limit, &devices, &total);
        if (r < 0)
                return sd_bus_error_setf(error, GW_ERROR_FAILED,
                                         "cannot list devices: registry query failed: %s", strerror(-r));
        return reply_page(msg, devices, total);
}

/* GetDevice and ForgetDevice take a numeric id or a subject: 1 with *id
 * set, or what the method returns (an error set, or a negative errno). */
static int read_device_id(sd_bus_message *msg, struct dbus_api *d, sd_bus_error *error, const char **id) {
        int r = sd_bus_message_read(msg, "s", id);

        if (r < 0)
                return r;
        if (!(*id)[0])
                return sd_bus_error_setf(error, GW_ERROR_INVALID_ARGUMENT,
                                         "empty device id (expected a numeric id or a subject)");
        if (!d->manager->registry)
                return registry_unavailable(error);
        return 1;
}

static int no_such_device(sd_bus_error *error, const char *id) {
        return sd_bus_error_setf(error, GW_ERROR_NO_SUCH_DEVICE, "no device with id or subject '%s'", id);
}

static int method_get_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_putp) struct json_object *device = NULL;
        struct dbus_api *d = userdata;
        const char *id;
        int r;

        r = read_device_id(msg, d, error, &id);
        if (r <= 0)
                return r;
        r = registry_get(d->manager->registry, id, &device);
        if (r == -ENOENT)
                return no_such_device(error, id);
        if (r < 0)
                return sd_bus_error_setf(error, GW_ERROR_FAILED,
                                         "cannot look up device '%s': registry query failed: %s",
                                         id, strerror(-r));

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = append_json_object(reply, device);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_forget_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        struct dbus_api *d = userdata;
        const char *id;
        int r;

        r = read_device_id(msg, d, error, &id);
        if (r <= 0)
                return r;
        r = registry_forget(d->manager->registry, id);
        if (r == -ENOENT)
                return no_such_device(error, id);
        if (r < 0)
                return sd_bus_error_setf(error, GW_ERROR_FAILED,
                                         "cannot forget device '%s': %s", id, strerror(-r));
        log_info("device '%s' forgotten (D-Bus request from %s)", id,
                 strempty(sd_bus_message_get_sender(msg)));
        manager_registry_changed(d->manager);       /* re-arm the renewal timer */
        dbus_api_properties_changed(d);
        return sd_bus_reply_method_return(msg, NULL);
}

/* ------------------------------------------------------------ admitted identities (issue 5) */

static int method_list_admitted(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(json_putp) struct json_object *entries = NULL;
        struct dbus_api *d = userdata;
        uint64_t offset, total = 0;
        uint32_t limit;
        int r;

        r = sd_bus_message_read(msg, "tu", &offset, &limit);
        if (r < 0)
                return r;
        if ((r = page_limit(&limit, error)) < 0)
                return r;
        if (!d->manager->registry)
                return registry_unavailable(error);
        r = registry_admitted_list(d->manager->registry, offset, limit, &entries, &total);
        if (r < 0)
                return sd_bus_error_setf(error, GW_ERROR_FAILED,
                                         "cannot list admitted identities: registry query failed: %s", strerror(-r));
        return reply_page(msg, entries, total);
}

/* AddAdmitted and RemoveAdmitted take (kind, value, label): 1 with the
 * kind and the canonical value (*value, malloc'd) set, or what the method
 * returns (an error set, or a negative errno). */
static int read_identity(sd_bus_message *msg, struct dbus_api *d, sd_bus_error *error,
                         enum registry_id_kind *kind, char **value, const char **label) {
        const char *kind_name, *text;
        char why[512];
        int r, k;

        r = sd_bus_message_read(msg, "sss", &kind_name, &text, label);
        if (r < 0)
                return r;
        k = registry_id_kind_from_name(kind_name);
        if (k < 0)
                return sd_bus_error_setf(error, GW_ERROR_INVALID_ARGUMENT, "unknown kind of identity '%s' "
                                         "(expected psk-identity, client-subject, sender or sender-kid)", kind_name);
        if ((*label)[0] && !cmp_label_valid(*label, strlen(*label)))
                return sd_bus_error_setf(error, GW_ERROR_INVALID_ARGUMENT, "'%s' is not a label: 1 to %d "
                                         "characters of A-Z a-z 0-9 - . _ ~, or '' for every path", *label, CMP_LABEL_MAX);
        r = admission_canonical((enum registry_id_kind) k, text, value, why, sizeof why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_setf(error, GW_ERROR_INVALID_ARGUMENT, "%s: %s", kind_name, why);
        if (!d->manager->registry) {
                free(*value);
                return registry_unavailable(error);
        }
        *kind = (enum registry_id_kind) k;
        return 1;
}

static int method_add_admitted(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_putp) struct json_object *entry = NULL;
        struct dbus_api *d = userdata;
        enum registry_id_kind kind;
        const char *label;
        char *value = NULL;
        int r, added;

        r = read_identity(msg, d, error, &kind, &value, &label);
        if (r <= 0)
                return r;
        added = registry_admit(d->manager->registry, kind, value, label, (uint64_t) time(NULL), &entry);
        if (added < 0) {
                r = sd_bus_error_setf(error, GW_ERROR_FAILED, "cannot admit %s %s: %s",
                                      registry_id_kind_name(kind), value, strerror(-added));
                free(value);
                return r;
        }
        if (added)
                log_info("admitted %s %s%s%s (D-Bus request from %s)", registry_id_kind_name(kind), value,
                         label[0] ? " on label " : "", label, strempty(sd_bus_message_get_sender(msg)));
        free(value);
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = append_json_object(reply, entry);
        if (r >= 0)
                r = sd_bus_message_append(reply, "b", added);
        return r < 0 ? r : sd_bus_send(NULL, reply, NULL);
}

static int method_remove_admitted(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        struct dbus_api *d = userdata;
        enum registry_id_kind kind;
        const char *label;
        char *value = NULL;
        int r;

        r = read_identity(msg, d, error, &kind, &value, &label);
        if (r <= 0)
                return r;
        r = registry_unadmit(d->manager->registry, kind, value, label);
        if (r == -ENOENT)
                r = sd_bus_error_setf(error, GW_ERROR_NOT_ADMITTED, "%s %s is not admitted%s%s%s",
                                      registry_id_kind_name(kind), value, label[0] ? " on label '" : "",
                                      label, label[0] ? "'" : "");
        else if (r < 0)
                r = sd_bus_error_setf(error, GW_ERROR_FAILED, "cannot remove %s %s: %s",
                                      registry_id_kind_name(kind), value, strerror(-r));
        else
                log_info("no longer admitted: %s %s%s%s (D-Bus request from %s)", registry_id_kind_name(kind),
                         value, label[0] ? " on label " : "", label, strempty(sd_bus_message_get_sender(msg)));
        free(value);
        return r < 0 ? r : sd_bus_reply_method_return(msg, NULL);
}

static const char *rfc3339_or_empty(int64_t t, char buf[static 32]) {
        struct tm tm;

        if (t <= 0 || !gmtime_r(&(time_t) { (time_t) t }, &tm))
                return "";
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return buf;
}

/* "upstreams": one dict per configured upstream with its health (issue 6) */
static int append_upstream_health(sd_bus_message *reply, Manager *m) {
        int r;

        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", "upstreams");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "aa{sv}");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "a{sv}");
        for (size_t i = 0; r >= 0 && i < m->config->n_upstreams; i++) {
                const char *name = m->config->upstreams[i].name;
                enum cmpgw_scheme scheme = m->config->upstreams[i].scheme;
                const struct upstream_health *h = scheme == SCHEME_COAP || scheme == SCHEME_COAPS ?
                        upstream_coap_health(m->coap_client, name) : upstream_http_health(m->http, name);
                struct upstream_health zero = { .latency_ms = 0 };
                char ok[32], bad[32];

                if (!h)
                        h = &zero;
                r = sd_bus_message_append(reply, "a{sv}", 9,
                        "name", "s", name,
                        "uri", "s", m->config->upstreams[i].uri,
                        "requests", "t", h->requests,
                        "failures", "t", h->failures,
                        "failures_in_a_row", "u", h->failures_in_a_row,
                        "last_success", "s", rfc3339_or_empty(h->last_success, ok),
                        "last_failure", "s", rfc3339_or_empty(h->last_failure, bad),
                        "latency_ms", "d", h->latency_ms,
                        "backoff_sec", "u", upstream_http_backoff_left(m->http, name));
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int method_get_statistics(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        struct dbus_api *d = userdata;
        Manager *m = d->manager;
        const struct gw_stats *s = &m->stats;
        const struct dtls_reboot_stats *dtls = coap_server_get0_dtls_reboot_stats(m->coap);
        uint64_t now = 0, since = m->started_usec ? m->started_usec : d->started_usec;
        sd_bus_message *reply = NULL;
        int r;

        sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}",
                        "requests", "t", s->requests,
                        "forwarded", "t", s->forwarded,
                        "answered_2xx", "t", s->answered_2xx,
                        "answered_4xx", "t", s->answered_4xx,
                        "answered_5xx", "t", s->answered_5xx,
                        "upstream_errors", "t", s->upstream_errors,
                        "upstream_retries", "t", s->upstream_retries,
                        "transactions_in_flight", "u", (uint32_t) m->n_requests,
                        "devices", "t", device_count(m),
                        "uptime_sec", "t", (uint64_t) (now > since ? (now - since) / 1000000 : 0));
        if (r >= 0)
                r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}",
                        "limited_rate", "t", s->limited_rate,
                        "limited_in_flight", "t", s->limited_in_flight,
                        "limited_buffered", "t", s->limited_buffered,
                        "limited_observers", "t", s->limited_observers,
                        "transfers_abandoned", "t", s->transfers_abandoned,
                        "transfers_pending", "u", coap_server_pending_transfers(m->coap),
                        "buffered_bytes", "t", (uint64_t) coap_server_buffered_bytes(m->coap),
                        "peers_tracked", "u", peer_limits_count(m->peers),
                        "ann_observers", "u", coap_server_ann_observers(m->coap));
        if (r >= 0)
                r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}",
                        "dtls_hello_verify_sent", "t", dtls->hello_verify_sent,
                        "dtls_hello_verify_limited", "t", dtls->hello_verify_limited,
                        "dtls_sessions_replaced", "t", dtls->sessions_replaced,
                        "dtls_sessions_unknown_cookie", "t", dtls->sessions_unknown_cookie);
        if (r >= 0)
                r = sd_bus_message_append(reply, "{sv}{sv}{sv}",
                        "limited_max_in_flight", "t", s->limited_max_in_flight,
                        "refused_admission", "t", s->refused_admission,
                        "refused_identity_mismatch", "t", s->refused_identity_mismatch);
        if (r >= 0)
                r = append_upstream_health(reply, m);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(reply);
        return r;
}

static int method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        struct dbus_api *d = userdata;
        char *reason = NULL;
        int r;

        log_info("reload requested over D-Bus by %s", strempty(sd_bus_message_get_sender(msg)));
        r = manager_reload(d->manager, &reason);
        if (r < 0) {
                r = sd_bus_error_setf(error, GW_ERROR_FAILED,
                                      "reloading %s failed, keeping the running configuration: %s",
                                      d->manager->config_path, reason ? reason : strerror(-r));
                free(reason);
                return r;
        }
        free(reason);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_publish_announcement(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        struct dbus_api *d = userdata;
        const void *der = NULL;
        size_t len = 0;
        char *why = NULL;
        int r;

        r = sd_bus_message_read_array(msg, 'y', &der, &len);
        if (r < 0)
                return r;
        if (!d->manager->announce)
                return sd_bus_error_setf(error, GW_ERROR_FAILED, "the announcement store is not open (see cmpgwd's log)");
        if (len == 0)
                return sd_bus_error_setf(error, GW_ERROR_INVALID_ARGUMENT,
                                         "empty announcement (expected a DER PKIMessage)");
        r = announce_publish(d->manager->announce, der, len, (int64_t) time(NULL), &why);
        if (r < 0) {
                log_info("announcement from %s refused: %s", strempty(sd_bus_message_get_sender(msg)),
                         why ? why : strerror(-r));
                r = sd_bus_error_setf(error, r == -EIO || r == -ENOMEM ? GW_ERROR_FAILED : GW_ERROR_INVALID_ARGUMENT,
                                      "announcement refused: %s", why ? why : strerror(-r));
                free(why);
                return r;
        }
        return sd_bus_reply_method_return(msg, NULL);
}

/* aa{sv}: the latest announcement of each kind, then each cached CRL */
static int method_get_announcements(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        struct dbus_api *d = userdata;
        struct announce *a = d->manager->announce;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "a{sv}");
        for (int kind = CMP_ANN_CKUANN; r >= 0 && kind <= CMP_ANN_CRLANN; kind++) {
                const struct announce_blob *b = announce_latest_of(a, kind);
                char t[32];

                if (!b)
                        continue;
                r = sd_bus_message_append(reply, "a{sv}", 6,
                        "kind", "s", cmp_ann_kind_name(kind),
                        "received", "s", announce_time_string(b->received, t),
                        "sha256", "s", b->sha256,
                        "size", "t", (uint64_t) b->len,
                        "sequence", "t", b->seq,
                        "latest", "b", (int) (b == announce_latest(a)));
        }
        for (size_t i = 0; r >= 0 && i < announce_n_crls(a); i++) {
                struct announce_crl_info c;
                char t1[32], t2[32], t3[32];

                announce_crl_info(a, i, &c);
                r = sd_bus_message_append(reply, "a{sv}", 9,
                        "kind", "s", "crl",
                        "received", "s", announce_time_string(c.received, t1),
                        "sha256", "s", c.sha256,
                        "size", "t", (uint64_t) c.size,
                        "issuer", "s", c.issuer,
                        "crl_number", "s", c.crl_number,
                        "this_update", "s", announce_time_string(c.this_update, t2),
                        "next_update", "s", announce_time_string(c.next_update, t3),
                        "revoked_count", "t", (uint64_t) c.revoked_count);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        return r;
}

static const sd_bus_vtable gateway_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        /* from the running configuration; no change signal (a reload may
         * change Upstreams; listeners change only on restart) */
        SD_BUS_PROPERTY("Listeners", "as", property_get_listeners, 0, 0),
        SD_BUS_PROPERTY("Upstreams", "as", property_get_upstreams, 0, 0),
        SD_BUS_PROPERTY("DeviceCount", "t", property_get_device_count, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("TransactionsInFlight", "u", property_get_in_flight, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),

        SD_BUS_METHOD_WITH_NAMES("ListDevices",
                                 "stu", SD_BUS_PARAM(state) SD_BUS_PARAM(offset) SD_BUS_PARAM(limit),
                                 "aa{sv}t", SD_BUS_PARAM(devices) SD_BUS_PARAM(total),
                                 method_list_devices, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetDevice",
                                 "s", SD_BUS_PARAM(id),
                                 "a{sv}", SD_BUS_PARAM(device),
                                 method_get_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ForgetDevice",
                                 "s", SD_BUS_PARAM(id),
                                 "", ,
                                 method_forget_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListAdmitted",
                                 "tu", SD_BUS_PARAM(offset) SD_BUS_PARAM(limit),
                                 "aa{sv}t", SD_BUS_PARAM(entries) SD_BUS_PARAM(total),
                                 method_list_admitted, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("AddAdmitted",
                                 "sss", SD_BUS_PARAM(kind) SD_BUS_PARAM(value) SD_BUS_PARAM(label),
                                 "a{sv}b", SD_BUS_PARAM(entry) SD_BUS_PARAM(added),
                                 method_add_admitted, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("RemoveAdmitted",
                                 "sss", SD_BUS_PARAM(kind) SD_BUS_PARAM(value) SD_BUS_PARAM(label),
                                 "", ,
                                 method_remove_admitted, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetStatistics",
                                 "", ,
                                 "a{sv}", SD_BUS_PARAM(statistics),
                                 method_get_statistics, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reload", "", "", method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("PublishAnnouncement",
                                 "ay", SD_BUS_PARAM(der),
                                 "", ,
                                 method_publish_announcement, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetAnnouncements",
                                 "", ,
                                 "aa{sv}", SD_BUS_PARAM(announcements),
                                 method_get_announcements, SD_BUS_VTABLE_UNPRIVILEGED),

        SD_BUS_SIGNAL_WITH_NAMES("DeviceEnrolled", "tsss",
                                 SD_BUS_PARAM(id) SD_BUS_PARAM(subject) SD_BUS_PARAM(serial)
                                 SD_BUS_PARAM(not_after), 0),
        SD_BUS_SIGNAL_WITH_NAMES("DeviceRenewed", "tssss",
                                 SD_BUS_PARAM(id) SD_BUS_PARAM(subject) SD_BUS_PARAM(old_serial)
                                 SD_BUS_PARAM(new_serial) SD_BUS_PARAM(not_after), 0),
        SD_BUS_SIGNAL_WITH_NAMES("DeviceRevoked", "tssi",
                                 SD_BUS_PARAM(id) SD_BUS_PARAM(subject) SD_BUS_PARAM(serial)
                                 SD_BUS_PARAM(reason), 0),
        SD_BUS_SIGNAL_WITH_NAMES("DeviceRenewalDue", "tsss",
                                 SD_BUS_PARAM(id) SD_BUS_PARAM(subject) SD_BUS_PARAM(serial)
                                 SD_BUS_PARAM(renew_at), 0),
        SD_BUS_SIGNAL_WITH_NAMES("TransactionFailed", "ssss",
                                 SD_BUS_PARAM(transaction_id) SD_BUS_PARAM(peer) SD_BUS_PARAM(body)
                                 SD_BUS_PARAM(reason), 0),
        SD_BUS_SIGNAL_WITH_NAMES("CrlUpdated", "ssssay",
                                 SD_BUS_PARAM(issuer) SD_BUS_PARAM(crl_number) SD_BUS_PARAM(this_update)
                                 SD_BUS_PARAM(next_update) SD_BUS_PARAM(der), 0),
        SD_BUS_SIGNAL_WITH_NAMES("CertificateRevoked", "ssis",
                                 SD_BUS_PARAM(issuer) SD_BUS_PARAM(serial) SD_BUS_PARAM(reason)
                                 SD_BUS_PARAM(revocation_date), 0),
        SD_BUS_SIGNAL_WITH_NAMES("CaKeyUpdated", "say",
                                 SD_BUS_PARAM(subject) SD_BUS_PARAM(new_cert_der), 0),
        SD_BUS_SIGNAL_WITH_NAMES("CaCertificateAnnounced", "ssay",
                                 SD_BUS_PARAM(subject) SD_BUS_PARAM(serial) SD_BUS_PARAM(der), 0),
        SD_BUS_VTABLE_END
};

/* ------------------------------------------------------------ signals */

static void emit(struct dbus_api *d, const char *member, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        va_list ap;
        int r;

        if (sd_bus_is_open(d->bus) <= 0)
                return;         /* logged once on disconnect */
        r = sd_bus_message_new_signal(d->bus, &msg, GW_PATH, GW_INTERFACE, member);
        if (r >= 0) {
                va_start(ap, types);
                r = sd_bus_message_appendv(msg, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_send(d->bus, msg, NULL);
        if (r < 0)
                log_warning("D-Bus: cannot emit signal %s: %s", member, strerror(-r));
}

void dbus_api_emit_registry_event(struct dbus_api *d, const struct registry_event *ev) {
        uint64_t id;

        if (!d || !ev)
                return;
        id = ev->device_id > 0 ? (uint64_t) ev->device_id : 0;
        switch (ev->type) {
        case REG_EV_ENROLLED:
                emit(d, "DeviceEnrolled", "tsss", id, strempty(ev->subject), strempty(ev->serial),
                     strempty(ev->not_after));
                break;
        case REG_EV_RENEWED:
                emit(d, "DeviceRenewed", "tssss", id, strempty(ev->subject), strempty(ev->old_serial),
                     strempty(ev->serial), strempty(ev->not_after));
                break;
        case REG_EV_REVOKED:
                emit(d, "DeviceRevoked", "tssi", id, strempty(ev->subject), strempty(ev->serial),
                     (int32_t) ev->reason);
                break;
        case REG_EV_RENEWAL_DUE:
                emit(d, "DeviceRenewalDue", "tsss", id, strempty(ev->subject), strempty(ev->serial),
                     strempty(ev->renew_at));
                break;
        case REG_EV_FAILED:
                /* the registry does not know the body type; request.c may
                 * call dbus_api_emit_transaction_failed() instead */
                emit(d, "TransactionFailed", "ssss", strempty(ev->transaction_id), strempty(ev->peer),
                     "", strempty(ev->detail));
                break;
        }
        dbus_api_properties_changed(d);
}

void dbus_api_emit_transaction_failed(struct dbus_api *d, const char *transaction_id,
                                      const char *peer, const char *body, const char *reason) {
        if (!d)
                return;
        emit(d, "TransactionFailed", "ssss", strempty(transaction_id), strempty(peer),
             strempty(body), strempty(reason));
}

/* STRINGS string arguments, then DER as "ay" */
static void emit_with_bytes(struct dbus_api *d, const char *member, const char *const *strings, size_t n,
                            const uint8_t *der, size_t der_len) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        if (!d || sd_bus_is_open(d->bus) <= 0)
                return;
        r = sd_bus_message_new_signal(d->bus, &msg, GW_PATH, GW_INTERFACE, member);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append_basic(msg, 's', strempty(strings[i]));
        if (r >= 0)
                r = sd_bus_message_append_array(msg, 'y', der ? der : (const uint8_t *) "", der ? der_len : 0);
        if (r >= 0)
                r = sd_bus_send(d->bus, msg, NULL);
        if (r < 0)
                log_warning("D-Bus: cannot emit signal %s: %s", member, strerror(-r));
}

void dbus_api_emit_crl_updated(struct dbus_api *d, const struct announce_event *ev) {
        const char *s[] = { ev->issuer, ev->crl_number, ev->this_update, ev->next_update };

        emit_with_bytes(d, "CrlUpdated", s, 4, ev->der, ev->der_len);
}

void dbus_api_emit_certificate_revoked(struct dbus_api *d, const struct announce_event *ev) {
        if (!d)
                return;
        emit(d, "CertificateRevoked", "ssis", strempty(ev->issuer), strempty(ev->serial),
             (int32_t) ev->reason, strempty(ev->revocation_date));
}

void dbus_api_emit_ca_announcement(struct dbus_api *d, const struct announce_event *ev) {
        const char *s[] = { ev->subject, ev->serial };

        if (ev->type == ANN_EV_CA_KEY_UPDATED)
                emit_with_bytes(d, "CaKeyUpdated", s, 1, ev->der, ev->der_len);
        else
                emit_with_bytes(d, "CaCertificateAnnounced", s, 2, ev->der, ev->der_len);
}

/* ------------------------------------------------------------ set-up */

static int on_request_name(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        struct dbus_api *d = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        uint32_t ret;
        int r;

        d->name_slot = sd_bus_slot_unref(d->name_slot);
        if (e) {
                if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED))
                        log_error("cannot own %s on the %s bus: %s (install dbus/org.cmpgw.Gateway1.conf "
                                  "in /usr/share/dbus-1/system.d/ and run cmpgwd as root)",
                                  GW_BUS_NAME, bus_label(d->bus_type), strempty(e->message));
                else
                        log_error("cannot own %s on the %s bus: %s: %s", GW_BUS_NAME, bus_label(d->bus_type),
                                  strempty(e->name), strempty(e->message));
                return 0;
        }
        r = sd_bus_message_read(reply, "u", &ret);
        if (r < 0) {
                log_error("cannot own %s on the %s bus: malformed RequestName reply: %s",
                          GW_BUS_NAME, bus_label(d->bus_type), strerror(-r));
                return 0;
        }
        switch (ret) {
        case 1: /* DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER */
        case 4: /* DBUS_REQUEST_NAME_REPLY_ALREADY_OWNER */
                d->name_owned = true;
                log_info("D-Bus: %s on the %s bus", GW_BUS_NAME, bus_label(d->bus_type));
                break;
        case 3: /* DBUS_REQUEST_NAME_REPLY_EXISTS */
                log_error("cannot own %s on the %s bus: another process owns it (is another cmpgwd running?)",
                          GW_BUS_NAME, bus_label(d->bus_type));
                break;
        default:
                log_error("cannot own %s on the %s bus: RequestName answered %" PRIu32,
                          GW_BUS_NAME, bus_label(d->bus_type), ret);
                break;
        }
        return 0;
}

/* The bus went away (dbus-daemon restarted or stopped). The gateway keeps
 * serving CoAP; D-Bus comes back only with a restart of cmpgwd. */
static int on_bus_message(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct dbus_api *d = userdata;

        if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.Local", "Disconnected") > 0)
                log_error("lost the connection to the %s bus: %s is gone until cmpgwd restarts "
                          "(CoAP service continues)", bus_label(d->bus_type), GW_BUS_NAME);
        return 0;
}

int dbus_api_new(Manager *m, enum cmpgw_bus bus, struct dbus_api **ret) {
        struct dbus_api *d;
        const char *addr;
        int r;

        *ret = NULL;
        if (bus == BUS_NONE)
                return 0;
        d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->manager = m;
        d->bus_type = bus;
        sd_event_now(m->event, CLOCK_MONOTONIC, &d->started_usec);

        if (bus == BUS_SESSION) {
                r = sd_bus_open_user(&d->bus);
                addr = getenv("DBUS_SESSION_BUS_ADDRESS");
        } else {
                r = sd_bus_open_system(&d->bus);
                addr = getenv("DBUS_SYSTEM_BUS_ADDRESS");
                if (!addr)
                        addr = "unix:path=/run/dbus/system_bus_socket";
        }
        if (r < 0) {
                log_error("cannot connect to the %s bus%s%s%s: %s", bus_label(bus),
                          addr ? " (" : "", addr ? addr : "", addr ? ")" : "", strerror(-r));
                goto fail;
        }
        (void) sd_bus_set_description(d->bus, "cmpgwd");
        r = sd_bus_attach_event(d->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                log_error("cannot attach the %s bus to the event loop: %s", bus_label(bus), strerror(-r));
                goto fail;
        }
        r = sd_bus_add_filter(d->bus, &d->filter_slot, on_bus_message, d);
        if (r < 0)
                goto fail;
        r = sd_bus_add_object_vtable(d->bus, &d->vtable_slot, GW_PATH, GW_INTERFACE, gateway_vtable, d);
        if (r < 0) {
                log_error("cannot export %s on the %s bus: %s", GW_PATH, bus_label(bus), strerror(-r));
                goto fail;
        }
        r = sd_event_add_defer(m->event, &d->props_defer, on_props_defer, d);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(d->props_defer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(d->props_defer, "dbus-properties-changed");
        d->sent_device_count = device_count(m);
        d->sent_in_flight = m->n_requests;

        r = sd_bus_request_name_async(d->bus, &d->name_slot, GW_BUS_NAME, 0, on_request_name, d);
        if (r < 0) {
                log_error("cannot own %s on the %s bus: %s", GW_BUS_NAME, bus_label(bus), strerror(-r));
                goto fail;
        }
        *ret = d;
        return 0;
fail:
        dbus_api_free(d);
        return r;
}

struct dbus_api *dbus_api_free(struct dbus_api *d) {
        if (!d)
                return NULL;
        d->props_defer = sd_event_source_disable_unref(d->props_defer);
        d->name_slot = sd_bus_slot_unref(d->name_slot);
        d->vtable_slot = sd_bus_slot_unref(d->vtable_slot);
        d->filter_slot = sd_bus_slot_unref(d->filter_slot);
        if (d->bus) {
                (void) sd_bus_detach_event(d->bus);
                d->bus = sd_bus_flush_close_unref(d->bus);
        }
        free(d);
        return NULL;
}
