/* cmpgwctl.c -- control cmpgwd over D-Bus (org.cmpgw.Gateway1)
 *
 * Talks to the daemon over D-Bus only (sd-bus); --json output with json-c.
 * Exit codes (cmpgwctl(1)): 0 ok, 1 operation failed, 2 usage error,
 * 3 cmpgwd not running, 4 permission denied. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "gateway_bus.h"

#define PAGE_MAX GW_PAGE_MAX

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,
        EXIT_USAGE = 2,
        EXIT_NOT_RUNNING = 3,
        EXIT_DENIED = 4,
};

static bool arg_json;
static bool arg_session;
static const char *arg_state;           /* devices: filter; NULL = all */
static uint64_t arg_offset;
static uint64_t arg_limit;              /* 0 = all (paged) */
static bool arg_limit_set;
static const char *arg_id_kind;         /* device add/remove: psk-identity, client-subject, ... */
static const char *arg_id_value;
static const char *arg_label = "";      /* device add/remove: --label */

static const char *bus_label(void) {
        return arg_session ? "session" : "system";
}

static void json_putp(struct json_object **o) {
        if (*o)
                json_object_put(*o);
}

__attribute__((format(printf, 1, 2)))
static void err(const char *fmt, ...) {
        va_list ap;

        fputs("cmpgwctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static void usage(FILE *f) {
        fprintf(f,
                "Usage: cmpgwctl [OPTIONS] COMMAND ...\n"
                "Control cmpgwd, the CMP over CoAP gateway, over D-Bus (org.cmpgw.Gateway1).\n"
                "\n"
                "Commands:\n"
                "  status                 version, listeners, upstreams, devices, transactions\n"
                "  devices                list devices of the registry\n"
                "  device ID              one device, by numeric id or exact subject\n"
                "  device add IDENTITY [--label L]\n"
                "                         admit a device where the admission policy is\n"
                "                         \"registered\"; IDENTITY is one of --psk-identity ID,\n"
                "                         --client-subject DN, --sender DN, --sender-kid VALUE\n"
                "  device remove IDENTITY [--label L]\n"
                "                         withdraw an admitted identity\n"
                "  admitted               list the admitted identities\n"
                "  forget ID              remove a device from the registry\n"
                "  renewals               devices whose renewal is due\n"
                "  stats                  request and upstream counters\n"
                "  reload                 re-read the configuration file\n"
                "  monitor                print the gateway's signals as they arrive\n"
                "  announcements          the latest announcements and the cached CRLs\n"
                "  announce FILE          publish an announcement PKIMessage (DER or PEM)\n"
                "\n"
                "Options:\n"
                "      --json             JSON output (devices: an array; others: one object;\n"
                "                         monitor: one object per line)\n"
                "      --system           talk to cmpgwd on the system bus (default)\n"
                "      --session          talk to cmpgwd on the session bus\n"
                "      --state STATE      devices: pending, enrolled, renewal-due, expired, revoked\n"
                "      --due, --expired, --revoked\n"
                "                         devices: short for --state renewal-due/expired/revoked\n"
                "      --offset N         devices: skip the first N devices\n"
                "      --limit N          devices: list at most N (the daemon allows up to %u);\n"
                "                         without --limit all devices are listed\n"
                "      --psk-identity ID  device add/remove: a DTLS PSK identity\n"
                "      --client-subject DN\n"
                "                         device add/remove: a DTLS client certificate subject,\n"
                "                         CN=x,O=y or /O=y/CN=x\n"
                "      --sender DN        device add/remove: a CMP sender (directoryName)\n"
                "      --sender-kid VALUE device add/remove: a CMP senderKID, as text or 0xHEX\n"
                "      --label L          device add/remove: on /p/L only (default: every path)\n"
                "  -h, --help             this text\n"
                "      --version          print the version\n"
                "\n"
                "Exit status: 0 ok, 1 failed, 2 usage error, 3 cmpgwd not running,\n"
                "4 permission denied. See cmpgwctl(1).\n", PAGE_MAX);
}

/* ------------------------------------------------------------ D-Bus helpers */

static int connect_bus(sd_bus **ret) {
        const char *addr;
        int r;

        if (arg_session) {
                r = sd_bus_open_user(ret);
                addr = getenv("DBUS_SESSION_BUS_ADDRESS");
        } else {
                r = sd_bus_open_system(ret);
                addr = getenv("DBUS_SYSTEM_BUS_ADDRESS");
                if (!addr)
                        addr = "unix:path=/run/dbus/system_bus_socket";
        }
        if (r < 0) {
                err("cannot connect to the %s bus%s%s%s: %s", bus_label(),
                    addr ? " (" : "", addr ? addr : "", addr ? ")" : "", strerror(-r));
                return -EXIT_FAILED;
        }
        return 0;
}

static bool is_mutating(const char *method) {
        static const char *const mutating[] = {
                "ForgetDevice", "Reload", "PublishAnnouncement", "AddAdmitted", "RemoveAdmitted",
        };

        for (size_t i = 0; i < sizeof mutating / sizeof mutating[0]; i++)
                if (strcmp(method, mutating[i]) == 0)
                        return true;
        return false;
}

/* Report a failed call; returns the exit code. */
static int call_failed(const char *method, const sd_bus_error *e, int r) {
        const char *msg = e && e->message ? e->message : strerror(-r);

        if (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
                err("cmpgwd is not running on the %s bus (no owner for %s)", bus_label(), GW_BUS_NAME);
                return EXIT_NOT_RUNNING;
        }
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED)) {
                if (is_mutating(method))
                        err("permission denied: %s needs root or group cmpgw", method);
                else
                        err("permission denied: %s: %s", method, msg);
                return EXIT_DENIED;
        }
        if (sd_bus_error_has_name(e, GW_ERROR_NO_SUCH_DEVICE) || sd_bus_error_has_name(e, GW_ERROR_FAILED) ||
            sd_bus_error_has_name(e, GW_ERROR_NOT_ADMITTED))
                return err("%s", msg), EXIT_FAILED;
        if (sd_bus_error_has_name(e, GW_ERROR_INVALID_ARGUMENT))
                return err("%s", msg), EXIT_USAGE;
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_INTERFACE) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT)) {
                err("%s is not supported by this cmpgwd version (%s)", method, msg);
                return EXIT_FAILED;
        }
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) || r == -ETIMEDOUT) {
                err("cmpgwd did not answer %s in time", method);
                return EXIT_FAILED;
        }
        err("%s failed: %s", method, msg);
        return EXIT_FAILED;
}

/* Calls a method of org.cmpgw.Gateway1. Returns 0, or the exit code
 * (after printing the error) negated. */
static int call(sd_bus *bus, const char *method, sd_bus_message **reply, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, GW_BUS_NAME, GW_PATH, GW_INTERFACE, method);
        if (r < 0)
                goto fail;
        if (types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
                if (r < 0)
                        goto fail;
        }
        r = sd_bus_call(bus, m, 0, &e, reply);
        if (r < 0)
                return -call_failed(method, &e, r);
        return 0;
fail:
        err("cannot build the %s call: %s", method, strerror(-r));
        return -EXIT_FAILED;
}

static int bad_reply(const char *what, int r) {
        err("malformed reply to %s: %s", what, strerror(-r));
        return -EXIT_FAILED;
}

/* ------------------------------------------------------------ D-Bus → json */

static int read_json_dict(sd_bus_message *m, struct json_object **ret);

/* Reads the next value of any type; *ret is NULL for types we do not map. */
static int read_json_value(sd_bus_message *m, struct json_object **ret) {
        const char *contents;
        char type;
        int r;

        *ret = NULL;
        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -EBADMSG;
        switch (type) {
        case 'v':
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        return r;
                r = read_json_value(m, ret);
                if (r < 0)
                        return r;
                return sd_bus_message_exit_container(m);
        case 'a': {
                struct json_object *a;

                if (strcmp(contents, "{sv}") == 0)
                        return read_json_dict(m, ret);
                if (contents[0] == '{')
                        return sd_bus_message_skip(m, NULL);
                r = sd_bus_message_enter_container(m, 'a', contents);
                if (r < 0)
                        return r;
                a = json_object_new_array();
                if (!a)
                        return -ENOMEM;
                while ((r = sd_bus_message_at_end(m, false)) == 0) {
                        struct json_object *e;

                        r = read_json_value(m, &e);
                        if (r < 0) {
                                json_object_put(a);
                                return r;
                        }
                        if (e)
                                json_object_array_add(a, e);
                }
                if (r < 0) {
                        json_object_put(a);
                        return r;
                }
                *ret = a;
                return sd_bus_message_exit_container(m);
        }
        case 's': case 'o': case 'g': {
                const char *s;

                r = sd_bus_message_read_basic(m, type, &s);
                if (r < 0)
                        return r;
                *ret = json_object_new_string(s);
                return *ret ? 0 : -ENOMEM;
        }
        case 'b': {
                int b;

                r = sd_bus_message_read_basic(m, 'b', &b);
                if (r < 0)
                        return r;
                *ret = json_object_new_boolean(b);
                return 0;
        }
        case 'y': { uint8_t v; r = sd_bus_message_read_basic(m, type, &v); if (r >= 0) *ret = json_object_new_int64(v); return r < 0 ? r : 0; }
        case 'n': { int16_t v; r = sd_bus_message_read_basic(m, type, &v); if (r >= 0) *ret = json_object_new_int64(v); return r < 0 ? r : 0; }
        case 'q': { uint16_t v; r = sd_bus_message_read_basic(m, type, &v); if (r >= 0) *ret = json_object_new_int64(v); return r < 0 ? r : 0; }
        case 'i': { int32_t v; r = sd_bus_message_read_basic(m, type, &v); if (r >= 0) *ret = json_object_new_int64(v); return r < 0 ? r : 0; }
        case 'u': { uint32_t v; r = sd_bus_message_read_basic(m, type, &v); if (r >= 0) *ret = json_object_new_int64(v); return r < 0 ? r : 0; }
        case 'x': { int64_t v; r = sd_bus_message_read_basic(m, type, &v); if (r >= 0) *ret = json_object_new_int64(v); return r < 0 ? r : 0; }
        case 't': { uint64_t v; r = sd_bus_message_read_basic(m, type, &v); if (r >= 0) *ret = json_object_new_uint64(v); return r < 0 ? r : 0; }
        case 'd': { double v; r = sd_bus_message_read_basic(m, type, &v); if (r >= 0) *ret = json_object_new_double(v); return r < 0 ? r : 0; }
        default:
                return sd_bus_message_skip(m, NULL);
        }
}

/* a{sv} → json object */
static int read_json_dict(sd_bus_message *m, struct json_object **ret) {
        _cleanup_(json_putp) struct json_object *o = NULL;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                struct json_object *v;
                const char *key;

                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;
                r = read_json_value(m, &v);
                if (r < 0)
                        return r;
                if (v)
                        json_object_object_add(o, key, v);
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = o;
        o = NULL;
        return 0;
}

/* ------------------------------------------------------------ output */

/* The fields every device object has in --json output (PRODUCT.md:
 * Registry); the daemon leaves out what the registry holds as null. */
static const char *const device_fields[] = {
        "id", "subject", "issuer", "serial", "not_before", "not_after", "state",
        "renew_at", "last_seen", "peer",
};

static void device_fill(struct json_object *d) {
        for (size_t i = 0; i < sizeof device_fields / sizeof device_fields[0]; i++)
                if (!json_object_object_get_ex(d, device_fields[i], NULL))
                        json_object_object_add(d, device_fields[i], NULL);
}

static void print_json(struct json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                               JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* A value as text: strings as they are, absent as "-", others as JSON. */
static const char *text(struct json_object *v) {
        if (!v)
                return "-";
        if (json_object_is_type(v, json_type_string))
                return json_object_get_string(v);
        return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static const char *field(struct json_object *o, const char *key) {
        struct json_object *v = NULL;

        return json_object_object_get_ex(o, key, &v) ? text(v) : "-";
}

/* display width: UTF-8 code points (good enough for subjects) */
static size_t width(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                if (((unsigned char) *s & 0xc0) != 0x80)
                        n++;
        return n;
}

struct table {
        size_t n_cols;
        size_t n_cells;
        char **cells;                   /* row-major, header first */
};

static void table_free(struct table *t) {
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
}

static int table_add(struct table *t, const char *s) {
        char **c;

        if (t->n_cells % 64 == 0) {
                c = realloc(t->cells, (t->n_cells + 64) * sizeof *c);
                if (!c)
                        return -ENOMEM;
                t->cells = c;
        }
        t->cells[t->n_cells] = strdup(s ? s : "-");
        if (!t->cells[t->n_cells])
                return -ENOMEM;
        t->n_cells++;
        return 0;
}

static void table_print(const struct table *t) {
        size_t w[16] = { 0 };

        for (size_t i = 0; i < t->n_cells; i++) {
                size_t c = i % t->n_cols, l = width(t->cells[i]);

                if (c < 16 && l > w[c])
                        w[c] = l;
        }
        for (size_t i = 0; i < t->n_cells; i++) {
                size_t c = i % t->n_cols;

                fputs(t->cells[i], stdout);
                if (c + 1 == t->n_cols) {
                        fputc('\n', stdout);
                        continue;
                }
                for (size_t p = width(t->cells[i]); p < w[c] + 2; p++)
                        fputc(' ', stdout);
        }
}

/* key: value lines, keys right-aligned */
static void print_pairs(const char *const *keys, const char *const *values, size_t n) {
        size_t w = 0;

        for (size_t i = 0; i < n; i++)
                if (width(keys[i]) > w)
                        w = width(keys[i]);
        for (size_t i = 0; i < n; i++)
                printf("%*s%s: %s\n", (int) (w - width(keys[i])), "", keys[i], values[i]);
}

/* ------------------------------------------------------------ commands */

/* GetStatistics' per-upstream health, as "upstream_health" */
static int status_add_health(sd_bus *bus, struct json_object *out) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_putp) struct json_object *stats = NULL;
        struct json_object *u;
        int r;

        r = call(bus, "GetStatistics", &reply, NULL);
        if (r < 0)
                return -r;
        r = read_json_dict(reply, &stats);
        if (r < 0)
                return -bad_reply("GetStatistics", r);
        if (json_object_object_get_ex(stats, "upstreams", &u))
                json_object_object_add(out, "upstream_health", json_object_get(u));
        return EXIT_OK;
}

static void status_print_health(struct json_object *out) {
        static const char *const cols[][2] = {
                { "name", "UPSTREAM" }, { "requests", "REQUESTS" }, { "failures", "FAILURES" },
                { "failures_in_a_row", "IN A ROW" }, { "latency_ms", "LATENCY MS" },
                { "last_success", "LAST SUCCESS" }, { "last_failure", "LAST FAILURE" },
                { "backoff_sec", "BACKOFF S" },
        };
        struct json_object *u;
        size_t n;

        if (!json_object_object_get_ex(out, "upstream_health", &u) || !json_object_is_type(u, json_type_array))
                return;
        n = json_object_array_length(u);
        printf("\n");
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
                printf("%-*s", c == 0 ? 12 : 14, cols[c][1]);
        printf("\n");
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(u, i);
                for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
                        const char *t = field(e, cols[c][0]);
                        printf("%-*s", c == 0 ? 12 : 14, t && *t ? t : "-");
                }
                printf("\n");
        }
}

static int cmd_status(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(json_putp) struct json_object *props = NULL, *out = NULL;
        struct json_object *v;
        int r;

        r = sd_bus_call_method(bus, GW_BUS_NAME, GW_PATH, "org.freedesktop.DBus.Properties", "GetAll",
                               &e, &reply, "s", GW_INTERFACE);
        if (r < 0)
                return call_failed("GetAll", &e, r);
        r = read_json_dict(reply, &props);
        if (r < 0)
                return -bad_reply("GetAll", r);

        static const struct { const char *prop, *key, *label; } map[] = {
                { "Version", "version", "Version" },
                { "Listeners", "listeners", "Listeners" },
                { "Upstreams", "upstreams", "Upstreams" },
                { "DeviceCount", "devices", "Devices" },
                { "TransactionsInFlight", "transactions_in_flight", "In flight" },
        };
        out = json_object_new_object();
        if (!out)
                return EXIT_FAILED;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
                if (json_object_object_get_ex(props, map[i].prop, &v))
                        json_object_object_add(out, map[i].key, json_object_get(v));
        r = status_add_health(bus, out);
        if (r != EXIT_OK)
                return r;
        if (arg_json) {
                print_json(out);
                return EXIT_OK;
        }
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
                size_t n;

                if (!json_object_object_get_ex(out, map[i].key, &v) ||
                    !json_object_is_type(v, json_type_array)) {
                        printf("%9s: %s\n", map[i].label, field(out, map[i].key));
                        continue;
                }
                n = json_object_array_length(v);
                if (n == 0)
                        printf("%9s: -\n", map[i].label);
                for (size_t j = 0; j < n; j++)
                        printf("%9s%s %s\n", j == 0 ? map[i].label : "", j == 0 ? ":" : " ",
                               text(json_object_array_get_idx(v, j)));
        }
        status_print_health(out);
        return EXIT_OK;
}

/* Prints a table of the objects in ALL: a header of COLUMNS' titles, then
 * one row per object of its COLUMNS' keys; CELL (or NULL) may write a
 * cell's text another way into buf and return it. 0, or -ENOMEM (said). */
static int print_objects(const char *const columns[][2], size_t n_cols, struct json_object *all,
                         const char *(*cell)(struct json_object *o, const char *key, char *buf, size_t size)) {
        struct table t = { .n_cols = n_cols };
        int r = 0;

        for (size_t c = 0; c < n_cols && r >= 0; c++)
                r = table_add(&t, columns[c][1]);
        for (size_t i = 0; i < json_object_array_length(all) && r >= 0; i++)
                for (size_t c = 0; c < n_cols && r >= 0; c++) {
                        struct json_object *o = json_object_array_get_idx(all, i);
                        char buf[600];
                        const char *v = cell ? cell(o, columns[c][0], buf, sizeof buf) : NULL;

                        r = table_add(&t, v ? v : field(o, columns[c][0]));
                }
        if (r >= 0)
                table_print(&t);
        else
                err("out of memory");
        table_free(&t);
        return r;
}

static const char *const device_columns[][2] = {
        { "id", "ID" }, { "state", "STATE" }, { "subject", "SUBJECT" }, { "serial", "SERIAL" },
        { "not_after", "NOT AFTER" }, { "renew_at", "RENEW AT" }, { "last_seen", "LAST SEEN" },
        { "peer", "PEER" },
};
#define N_DEVICE_COLUMNS (sizeof device_columns / sizeof device_columns[0])

/* The entries of ListDevices (state: its filter, "" for all) or
 * ListAdmitted (state NULL) into ALL: every page, or one page of at most
 * --limit from --offset. 0 with *total set, or the exit code negated. */
static int fetch_pages(sd_bus *bus, const char *method, const char *state, struct json_object *all,
                       uint64_t *total) {
        uint64_t offset = arg_offset, left = arg_limit;
        int r;

        for (;;) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                uint32_t page = arg_limit_set ? (left > UINT32_MAX ? UINT32_MAX : (uint32_t) left) : PAGE_MAX;
                size_t got = 0;

                r = state ? call(bus, method, &reply, "stu", state, offset, page)
                          : call(bus, method, &reply, "tu", offset, page);
                if (r < 0)
                        return r;
                r = sd_bus_message_enter_container(reply, 'a', "a{sv}");
                if (r < 0)
                        return bad_reply(method, r);
                while ((r = sd_bus_message_at_end(reply, false)) == 0) {
                        struct json_object *d;

                        r = read_json_dict(reply, &d);
                        if (r < 0)
                                return bad_reply(method, r);
                        json_object_array_add(all, d);
                        got++;
                }
                if (r < 0 || (r = sd_bus_message_exit_container(reply)) < 0 ||
                    (r = sd_bus_message_read(reply, "t", total)) < 0)
                        return bad_reply(method, r);
                offset += got;
                /* one page when --limit was given; else until all are read */
                if (arg_limit_set || got == 0 || offset >= *total)
                        return 0;
        }
}

static int cmd_devices(sd_bus *bus) {
        _cleanup_(json_putp) struct json_object *all = json_object_new_array();
        uint64_t total = 0;
        int r;

        if (!all)
                return EXIT_FAILED;
        r = fetch_pages(bus, "ListDevices", arg_state ? arg_state : "", all, &total);
        if (r < 0)
                return -r;
        for (size_t i = 0; i < json_object_array_length(all); i++)
                device_fill(json_object_array_get_idx(all, i));

        if (arg_json) {
                print_json(all);
                return EXIT_OK;
        }

        size_t n = json_object_array_length(all);

        if (print_objects(device_columns, N_DEVICE_COLUMNS, all, NULL) < 0)
                return EXIT_FAILED;
        printf("\n%zu device%s listed", n, n == 1 ? "" : "s");
        if (arg_offset > 0 || arg_offset + n < total)
                printf(" (%" PRIu64 "-%" PRIu64 " of %" PRIu64 ")",
                       n ? arg_offset + 1 : arg_offset, arg_offset + n, total);
        printf(".\n");
        return EXIT_OK;
}

static int cmd_device(sd_bus *bus, const char *id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_putp) struct json_object *d = NULL;
        static const char *const order[] = {
                "id", "subject", "issuer", "serial", "state", "not_before", "not_after",
                "renew_at", "last_seen", "peer",
        };
        const char *keys[64], *values[64];
        size_t n = 0;
        int r;

        r = call(bus, "GetDevice", &reply, "s", id);
        if (r < 0)
                return -r;
        r = read_json_dict(reply, &d);
        if (r < 0)
                return -bad_reply("GetDevice", r);
        if (arg_json) {
                device_fill(d);
                print_json(d);
                return EXIT_OK;
        }
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
                keys[n] = order[i];
                values[n++] = field(d, order[i]);
        }
        json_object_object_foreach(d, key, val) {
                bool known = false;

                for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
                        known = known || strcmp(key, order[i]) == 0;
                if (known || n >= 64)
                        continue;
                keys[n] = key;
                values[n++] = text(val);
        }
        print_pairs(keys, values, n);
        return EXIT_OK;
}

static int cmd_simple(sd_bus *bus, const char *method, const char *id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = id ? call(bus, method, &reply, "s", id) : call(bus, method, &reply, NULL);
        return r < 0 ? -r : EXIT_OK;
}

static int cmd_stats(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_putp) struct json_object *s = NULL;
        const char *keys[64], *values[64];
        size_t n = 0;
        int r;

        r = call(bus, "GetStatistics", &reply, NULL);
        if (r < 0)
                return -r;
        r = read_json_dict(reply, &s);
        if (r < 0)
                return -bad_reply("GetStatistics", r);
        if (arg_json) {
                print_json(s);
                return EXIT_OK;
        }
        json_object_object_foreach(s, key, val) {
                if (n >= 64)
                        break;
                keys[n] = key;
                values[n++] = text(val);
        }
        print_pairs(keys, values, n);
        return EXIT_OK;
}

/* admitted identities (issue 5) */

/* a senderKID in hex as the operator would type it: its text when
 * printable ("1234 (0x31323334)"), else 0xHEX */
static void sender_kid_text(const char *hex, char *buf, size_t size) {
        size_t n = strlen(hex) / 2, o = 0;
        bool printable = n > 0 && n < size / 2;

        for (size_t i = 0; printable && i < n; i++) {
                unsigned int c;

                printable = sscanf(hex + 2 * i, "%2x", &c) == 1 && c >= 0x20 && c < 0x7f;
                buf[o++] = (char) c;
        }
        if (printable)
                snprintf(buf + o, size - o, " (0x%s)", hex);
        else
                snprintf(buf, size, "0x%s", hex);
}

static const char *const admitted_columns[][2] = {
        { "id", "ID" }, { "kind", "KIND" }, { "value", "VALUE" }, { "label", "LABEL" }, { "added_at", "ADDED" },
};
#define N_ADMITTED_COLUMNS (sizeof admitted_columns / sizeof admitted_columns[0])

/* a senderKID as text and hex, an entry for every path as "(all)" */
static const char *admitted_cell(struct json_object *e, const char *key, char *buf, size_t size) {
        if (strcmp(key, "value") == 0 && strcmp(field(e, "kind"), "sender-kid") == 0) {
                sender_kid_text(field(e, "value"), buf, size);
                return buf;
        }
        if (strcmp(key, "label") == 0 && !json_object_object_get_ex(e, "label", NULL))
                return "(all)";
        return NULL;
}

static int cmd_admitted(sd_bus *bus) {
        _cleanup_(json_putp) struct json_object *all = json_object_new_array();
        uint64_t total = 0;
        size_t n;
        int r;

        if (!all)
                return EXIT_FAILED;
        r = fetch_pages(bus, "ListAdmitted", NULL, all, &total);
        if (r < 0)
                return -r;
        if (arg_json) {
                print_json(all);
                return EXIT_OK;
        }
        n = json_object_array_length(all);
        if (n == 0) {
                printf("No identity is admitted.\n");
                return EXIT_OK;
        }
        if (print_objects(admitted_columns, N_ADMITTED_COLUMNS, all, admitted_cell) < 0)
                return EXIT_FAILED;
        printf("\n%zu identit%s admitted.\n", n, n == 1 ? "y" : "ies");
        return EXIT_OK;
}

static int cmd_device_add(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_putp) struct json_object *entry = NULL;
        int added = 0, r;

        r = call(bus, "AddAdmitted", &reply, "sss", arg_id_kind, arg_id_value, arg_label);
        if (r < 0)
                return -r;
        r = read_json_dict(reply, &entry);
        if (r >= 0)
                r = sd_bus_message_read(reply, "b", &added);
        if (r < 0)
                return -bad_reply("AddAdmitted", r);
        if (arg_json) {
                json_object_object_add(entry, "added", json_object_new_boolean(added));
                print_json(entry);
                return EXIT_OK;
        }
        printf("%s %s %s%s%s%s.\n", added ? "Admitted" : "Already admitted:", field(entry, "kind"),
               field(entry, "value"), arg_label[0] ? " on label " : "", arg_label,
               added ? "" : " (nothing changed)");
        return EXIT_OK;
}

static int cmd_device_remove(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = call(bus, "RemoveAdmitted", &reply, "sss", arg_id_kind, arg_id_value, arg_label);

        if (r < 0)
                return -r;
        if (arg_json)
                printf("{ \"removed\": true }\n");
        else
                printf("Removed %s %s%s%s.\n", arg_id_kind, arg_id_value, arg_label[0] ? " on label " : "", arg_label);
        return EXIT_OK;
}

/* monitor */

static const struct {
        const char *member;
        const char *args[6];
} signal_args[] = {
        { "DeviceEnrolled", { "id", "subject", "serial", "not_after" } },
        { "DeviceRenewed", { "id", "subject", "old_serial", "new_serial", "not_after" } },
        { "DeviceRevoked", { "id", "subject", "serial", "reason" } },
        { "DeviceRenewalDue", { "id", "subject", "serial", "renew_at" } },
        { "TransactionFailed", { "transaction_id", "peer", "body", "reason" } },
        { "CrlUpdated", { "issuer", "crl_number", "this_update", "next_update", "der" } },
        { "CertificateRevoked", { "issuer", "serial", "reason", "revocation_date" } },
        { "CaKeyUpdated", { "subject", "new_cert_der" } },
        { "CaCertificateAnnounced", { "subject", "serial", "der" } },
};

static const char *arg_name(const char *member, size_t i, char *buf, size_t size) {
        for (size_t s = 0; s < sizeof signal_args / sizeof signal_args[0]; s++)
                if (strcmp(member, signal_args[s].member) == 0 && i < 6 && signal_args[s].args[i])
                        return signal_args[s].args[i];
        snprintf(buf, size, "arg%zu", i);
        return buf;
}

/* A byte array (a DER argument) in the text form: its size and the start
 * of its SHA-256, as `cmpgwctl announcements` shows them, not hundreds of
 * numbers */
static void print_byte_array(const char *key, struct json_object *a) {
        size_t n = json_object_array_length(a);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        uint8_t *bytes = malloc(n ? n : 1);

        for (size_t i = 0; bytes && i < n; i++)
                bytes[i] = (uint8_t) json_object_get_int(json_object_array_get_idx(a, i));
        if (!bytes || EVP_Digest(bytes, n, md, &md_len, EVP_sha256(), NULL) != 1)
                md_len = 0;
        free(bytes);
        printf(" %s=<%zu bytes", key, n);
        if (md_len >= 8) {
                printf(" sha256 ");
                for (unsigned i = 0; i < 8; i++)
                        printf("%02X", md[i]);
        }
        putchar('>');
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(json_putp) struct json_object *o = json_object_new_object();
        const char *member = sd_bus_message_get_member(m);
        char ts[32], buf[16];
        struct tm tm;
        time_t now = time(NULL);
        int r;

        if (!o || !member)
                return 0;
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
        json_object_object_add(o, "signal", json_object_new_string(member));
        json_object_object_add(o, "time", json_object_new_string(ts));
        for (size_t i = 0; (r = sd_bus_message_at_end(m, false)) == 0; i++) {
                struct json_object *v;

                r = read_json_value(m, &v);
                if (r < 0)
                        break;
                if (v)
                        json_object_object_add(o, arg_name(member, i, buf, sizeof buf), v);
        }
        if (r < 0) {
                err("malformed %s signal: %s", member, strerror(-r));
                return 0;
        }
        if (arg_json) {
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        } else {
                printf("%s %s", ts, member);
                json_object_object_foreach(o, key, val) {
                        const char *s;

                        if (strcmp(key, "signal") == 0 || strcmp(key, "time") == 0)
                                continue;
                        if (json_object_is_type(val, json_type_array)) {
                                print_byte_array(key, val);
                                continue;
                        }
                        s = text(val);
                        if (!s[0] || strpbrk(s, " \t\"'"))
                                printf(" %s=%s", key, json_object_to_json_string_ext(
                                               val, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                        else
                                printf(" %s=%s", key, s);
                }
                putchar('\n');
        }
        fflush(stdout);
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), EXIT_OK);
}

static int cmd_monitor(sd_bus *bus) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        sigset_t mask;
        int has_owner = 0, r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        r = sd_event_default(&event);
        if (r < 0 ||
            (r = sd_event_add_signal(event, NULL, SIGINT, on_exit_signal, NULL)) < 0 ||
            (r = sd_event_add_signal(event, NULL, SIGTERM, on_exit_signal, NULL)) < 0 ||
            (r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL)) < 0) {
                err("cannot set up the event loop: %s", strerror(-r));
                return EXIT_FAILED;
        }
        /* synchronous AddMatch: once it returns, no signal can be missed */
        r = sd_bus_match_signal(bus, NULL, GW_BUS_NAME, GW_PATH, GW_INTERFACE, NULL, on_signal, NULL);
        if (r < 0) {
                err("cannot subscribe to %s signals on the %s bus: %s", GW_INTERFACE, bus_label(), strerror(-r));
                return EXIT_FAILED;
        }
        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", &e, &reply, "s", GW_BUS_NAME);
        if (r >= 0)
                (void) sd_bus_message_read(reply, "b", &has_owner);
        if (!has_owner)
                fprintf(stderr, "cmpgwctl: cmpgwd is not running on the %s bus (no owner for %s); "
                        "waiting for it\n", bus_label(), GW_BUS_NAME);
        fprintf(stderr, "Monitoring %s signals on the %s bus; press Ctrl-C to stop.\n", GW_INTERFACE, bus_label());
        (void) sd_bus_set_exit_on_disconnect(bus, true);
        r = sd_event_loop(event);
        if (r < 0) {
                err("event loop failed: %s", strerror(-r));
                return EXIT_FAILED;
        }
        if (r != EXIT_OK)
                err("disconnected from the %s bus", bus_label());
        return r == EXIT_OK ? EXIT_OK : EXIT_FAILED;
}

/* announcements */

static const char *const ann_columns[][2] = {
        { "kind", "KIND" }, { "received", "RECEIVED" }, { "size", "SIZE" }, { "issuer", "ISSUER" },
        { "crl_number", "CRL NUMBER" }, { "this_update", "THIS UPDATE" }, { "next_update", "NEXT UPDATE" },
        { "revoked_count", "REVOKED" }, { "sha256", "SHA256" },
};

static int cmd_announcements(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_putp) struct json_object *list = json_object_new_array();
        struct table t = { .n_cols = sizeof ann_columns / sizeof ann_columns[0] };
        int r;

        if (!list)
                return EXIT_FAILED;
        r = call(bus, "GetAnnouncements", &reply, NULL);
        if (r < 0)
                return -r;
        r = sd_bus_message_enter_container(reply, 'a', "a{sv}");
        while (r >= 0) {
                struct json_object *o = NULL;

                r = sd_bus_message_at_end(reply, false);
                if (r != 0)
                        break;
                r = read_json_dict(reply, &o);
                if (r >= 0)
                        json_object_array_add(list, o);
        }
        if (r < 0)
                return -bad_reply("GetAnnouncements", r);
        if (arg_json) {
                print_json(list);
                return EXIT_OK;
        }
        if (json_object_array_length(list) == 0) {
                printf("No announcement has been published.\n");
                return EXIT_OK;
        }
        for (size_t c = 0; c < t.n_cols; c++)
                if (table_add(&t, ann_columns[c][1]) < 0)
                        goto oom;
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                struct json_object *o = json_object_array_get_idx(list, i);
                for (size_t c = 0; c < t.n_cols; c++) {
                        const char *v = field(o, ann_columns[c][0]);
                        char shortened[20];

                        if (strcmp(ann_columns[c][0], "sha256") == 0 && strlen(v) > 16) {
                                snprintf(shortened, sizeof shortened, "%.16s", v);
                                v = shortened;
                        }
                        if (table_add(&t, *v ? v : "-") < 0)
                                goto oom;
                }
        }
        table_print(&t);
        table_free(&t);
        return EXIT_OK;
oom:
        table_free(&t);
        err("out of memory");
        return EXIT_FAILED;
}

/* DER, or PEM ("-----BEGIN ...-----", any label): the first PEM block */
static int read_announcement(const char *path, uint8_t **ret, size_t *ret_len) {
        FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
        uint8_t *buf = NULL;
        size_t len = 0, size = 0;

        if (!f) {
                err("cannot open %s: %s", path, strerror(errno));
                return -1;
        }
        for (;;) {
                size_t n;
                if (len == size) {
                        uint8_t *b = size < (16u << 20) ? realloc(buf, size ? 2 * size : 4096) : NULL;
                        if (!b) {
                                err("%s: too large (more than 16 MiB) or out of memory", path);
                                goto fail;
                        }
                        buf = b;
                        size = size ? 2 * size : 4096;
                }
                n = fread(buf + len, 1, size - len, f);
                len += n;
                if (n == 0)
                        break;
        }
        if (ferror(f)) {
                err("cannot read %s: %s", path, strerror(errno));
                goto fail;
        }
        if (f != stdin)
                fclose(f);
        f = NULL;
        if (!buf || len == 0) {
                err("%s is empty", path);
                goto fail;
        }
        if (len >= 11 && memmem(buf, len, "-----BEGIN ", 11)) {
                const char *begin = memmem(buf, len, "-----BEGIN ", 11), *body, *end;
                EVP_ENCODE_CTX *ctx;
                uint8_t *der;
                int n1 = 0, n2 = 0;

                body = memchr(begin, '\n', len - (size_t) (begin - (const char *) buf));
                end = body ? memmem(body, len - (size_t) (body - (const char *) buf), "-----END ", 9) : NULL;
                if (!end) {
                        err("%s: PEM without an END line", path);
                        goto fail;
                }
                der = malloc((size_t) (end - body));
                ctx = EVP_ENCODE_CTX_new();
                if (!der || !ctx) {
                        free(der);
                        EVP_ENCODE_CTX_free(ctx);
                        err("out of memory");
                        goto fail;
                }
                EVP_DecodeInit(ctx);
                if (EVP_DecodeUpdate(ctx, der, &n1, (const unsigned char *) body, (int) (end - body)) < 0 ||
                    EVP_DecodeFinal(ctx, der + n1, &n2) < 0 || n1 + n2 == 0) {
                        EVP_ENCODE_CTX_free(ctx);
                        free(der);
                        err("%s: the PEM block is not valid base64", path);
                        goto fail;
                }
                EVP_ENCODE_CTX_free(ctx);
                free(buf);
                buf = der;
                len = (size_t) (n1 + n2);
        }
        if (len == 0) {
                err("%s is empty", path);
                goto fail;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
fail:
        if (f && f != stdin)
                fclose(f);
        free(buf);
        return -1;
}

static int cmd_announce(sd_bus *bus, const char *path) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        uint8_t *der;
        size_t len;
        int r;

        if (read_announcement(path, &der, &len) < 0)
                return EXIT_FAILED;
        r = sd_bus_message_new_method_call(bus, &m, GW_BUS_NAME, GW_PATH, GW_INTERFACE, "PublishAnnouncement");
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', der, len);
        free(der);
        if (r < 0) {
                err("cannot build the PublishAnnouncement call: %s", strerror(-r));
                return EXIT_FAILED;
        }
        r = sd_bus_call(bus, m, 0, &e, &reply);
        if (r < 0) {
                /* refused by the daemon: exit 1 with its reason */
                if (sd_bus_error_has_name(&e, GW_ERROR_INVALID_ARGUMENT)) {
                        err("%s", e.message ? e.message : "announcement refused");
                        return EXIT_FAILED;
                }
                return call_failed("PublishAnnouncement", &e, r);
        }
        if (!arg_json)
                printf("Published %s (%zu bytes).\n", path, len);
        else
                printf("{ \"published\": true, \"size\": %zu }\n", len);
        return EXIT_OK;
}

/* ------------------------------------------------------------ main */

static int parse_number(const char *opt, const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        errno = 0;
        if (!s[0] || s[0] == '-' || s[0] == '+' || s[0] == ' ') {
                err("invalid %s '%s': expected a non-negative integer", opt, s);
                return -1;
        }
        v = strtoull(s, &end, 10);
        if (errno == ERANGE || *end) {
                err("invalid %s '%s': expected a non-negative integer", opt, s);
                return -1;
        }
        *ret = v;
        return 0;
}

static bool valid_state(const char *s) {
        static const char *const states[] = { "pending", "enrolled", "renewal-due", "expired", "revoked" };

        for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
                if (strcmp(s, states[i]) == 0)
                        return true;
        return false;
}

static int set_state(const char *s) {
        if (arg_state && strcmp(arg_state, s) != 0) {
                err("conflicting device filters: --state %s and --state %s", arg_state, s);
                return -1;
        }
        if (!valid_state(s)) {
                err("invalid --state '%s': expected pending, enrolled, renewal-due, expired or revoked", s);
                return -1;
        }
        arg_state = s;
        return 0;
}

static int set_identity(const char *kind, const char *value) {
        if (arg_id_kind) {
                err("give one identity: --%s and --%s both given", arg_id_kind, kind);
                return -1;
        }
        if (!value[0]) {
                err("--%s: empty value", kind);
                return -1;
        }
        arg_id_kind = kind;
        arg_id_value = value;
        return 0;
}

/* "device add|remove": exactly one identity; --label only with them */
static int check_identity_args(const char *cmd, int n_args, char **args, bool *is_identity_cmd) {
        bool sub = strcmp(cmd, "device") == 0 && n_args >= 1 &&
                   (strcmp(args[0], "add") == 0 || strcmp(args[0], "remove") == 0);

        *is_identity_cmd = sub;
        if (!sub && (arg_id_kind || arg_label[0])) {
                err("%s: --psk-identity/--client-subject/--sender/--sender-kid/--label apply to "
                    "'device add' and 'device remove' only", cmd);
                return -1;
        }
        if (sub && n_args > 1) {
                err("device %s: too many arguments; give the identity with an option, e.g. "
                    "--psk-identity ID; see --help", args[0]);
                return -1;
        }
        if (sub && !arg_id_kind) {
                err("device %s: give one of --psk-identity ID, --client-subject DN, --sender DN, "
                    "--sender-kid VALUE", args[0]);
                return -1;
        }
        return 0;
}

static int expect_args(const char *cmd, int n_args, int want, const char *what) {
        if (n_args < want) {
                err("%s: missing argument %s; see --help", cmd, what);
                return -1;
        }
        if (n_args > want) {
                err("%s: too many arguments; see --help", cmd);
                return -1;
        }
        return 0;
}

int main(int argc, char **argv) {
        enum {
                OPT_JSON = 0x100, OPT_SYSTEM, OPT_SESSION, OPT_VERSION, OPT_STATE, OPT_DUE,
                OPT_EXPIRED, OPT_REVOKED, OPT_OFFSET, OPT_LIMIT, OPT_PSK_IDENTITY, OPT_CLIENT_SUBJECT,
                OPT_SENDER, OPT_SENDER_KID, OPT_LABEL,
        };
        static const struct option opts[] = {
                { "json", no_argument, NULL, OPT_JSON },
                { "system", no_argument, NULL, OPT_SYSTEM },
                { "session", no_argument, NULL, OPT_SESSION },
                { "user", no_argument, NULL, OPT_SESSION },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, OPT_VERSION },
                { "state", required_argument, NULL, OPT_STATE },
                { "due", no_argument, NULL, OPT_DUE },
                { "expired", no_argument, NULL, OPT_EXPIRED },
                { "revoked", no_argument, NULL, OPT_REVOKED },
                { "offset", required_argument, NULL, OPT_OFFSET },
                { "limit", required_argument, NULL, OPT_LIMIT },
                { "psk-identity", required_argument, NULL, OPT_PSK_IDENTITY },
                { "client-subject", required_argument, NULL, OPT_CLIENT_SUBJECT },
                { "sender", required_argument, NULL, OPT_SENDER },
                { "sender-kid", required_argument, NULL, OPT_SENDER_KID },
                { "label", required_argument, NULL, OPT_LABEL },
                {}
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        bool device_opts = false, identity_cmd;
        const char *cmd;
        char **args;
        int c, n_args, r;

        int option_index = 0;

        while ((c = getopt_long(argc, argv, "h", opts, &option_index)) != -1) {
                switch (c) {
                case OPT_JSON: arg_json = true; break;
                case OPT_SYSTEM: arg_session = false; break;
                case OPT_SESSION: arg_session = true; break;
                case 'h': usage(stdout); return EXIT_OK;
                case OPT_VERSION: printf("cmpgwctl %s\n", CMPGW_VERSION); return EXIT_OK;
                case OPT_STATE: if (set_state(optarg) < 0) return EXIT_USAGE; device_opts = true; break;
                case OPT_DUE: if (set_state("renewal-due") < 0) return EXIT_USAGE; device_opts = true; break;
                case OPT_EXPIRED: if (set_state("expired") < 0) return EXIT_USAGE; device_opts = true; break;
                case OPT_REVOKED: if (set_state("revoked") < 0) return EXIT_USAGE; device_opts = true; break;
                case OPT_OFFSET:
                        if (parse_number("--offset", optarg, &arg_offset) < 0)
                                return EXIT_USAGE;
                        device_opts = true;
                        break;
                case OPT_LIMIT:
                        if (parse_number("--limit", optarg, &arg_limit) < 0)
                                return EXIT_USAGE;
                        if (arg_limit == 0) {
                                err("invalid --limit 0: expected at least 1 (leave --limit out to list all)");
                                return EXIT_USAGE;
                        }
                        if (arg_limit > UINT32_MAX) {
                                err("invalid --limit %s: the maximum is %u", optarg, PAGE_MAX);
                                return EXIT_USAGE;
                        }
                        arg_limit_set = device_opts = true;
                        break;
                case OPT_PSK_IDENTITY:
                case OPT_CLIENT_SUBJECT:
                case OPT_SENDER:
                case OPT_SENDER_KID:
                        /* the D-Bus kinds are the option names */
                        if (set_identity(opts[option_index].name, optarg) < 0)
                                return EXIT_USAGE;
                        break;
                case OPT_LABEL:
                        if (!optarg[0]) {
                                err("--label: empty label (leave --label out to admit on every path)");
                                return EXIT_USAGE;
                        }
                        arg_label = optarg;
                        break;
                default:
                        fprintf(stderr, "Try 'cmpgwctl --help'.\n");
                        return EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                err("missing command; see --help");
                return EXIT_USAGE;
        }
        cmd = argv[optind];
        args = argv + optind + 1;
        n_args = argc - optind - 1;

        if (strcmp(cmd, "help") == 0) {
                usage(stdout);
                return EXIT_OK;
        }
        if (strcmp(cmd, "renewals") == 0) {
                if (arg_state && strcmp(arg_state, "renewal-due") != 0) {
                        err("renewals: lists renewal-due devices; --state %s does not apply", arg_state);
                        return EXIT_USAGE;
                }
                arg_state = "renewal-due";
        } else if (device_opts && strcmp(cmd, "devices") != 0) {
                err("%s: --state/--due/--expired/--revoked/--offset/--limit apply to 'devices' only", cmd);
                return EXIT_USAGE;
        }
        if (check_identity_args(cmd, n_args, args, &identity_cmd) < 0)
                return EXIT_USAGE;

        static const struct { const char *name; int n_args; const char *what; } cmds[] = {
                { "status", 0, NULL }, { "devices", 0, NULL }, { "renewals", 0, NULL },
                { "device", 1, "ID" }, { "forget", 1, "ID" }, { "stats", 0, NULL },
                { "reload", 0, NULL }, { "monitor", 0, NULL }, { "announcements", 0, NULL },
                { "announce", 1, "FILE" }, { "admitted", 0, NULL },
        };
        size_t i;

        for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
                if (strcmp(cmd, cmds[i].name) == 0)
                        break;
        if (i == sizeof cmds / sizeof cmds[0]) {
                err("unknown command '%s'; see --help", cmd);
                return EXIT_USAGE;
        }
        if (expect_args(cmd, n_args, cmds[i].n_args, cmds[i].what) < 0)
                return EXIT_USAGE;
        if ((strcmp(cmd, "device") == 0 || strcmp(cmd, "forget") == 0) && !args[0][0]) {
                err("%s: empty ID (expected a numeric id or a subject)", cmd);
                return EXIT_USAGE;
        }

        r = connect_bus(&bus);
        if (r < 0)
                return -r;
        if (strcmp(cmd, "status") == 0)
                return cmd_status(bus);
        if (strcmp(cmd, "devices") == 0 || strcmp(cmd, "renewals") == 0)
                return cmd_devices(bus);
        if (identity_cmd)
                return strcmp(args[0], "add") == 0 ? cmd_device_add(bus) : cmd_device_remove(bus);
        if (strcmp(cmd, "device") == 0)
                return cmd_device(bus, args[0]);
        if (strcmp(cmd, "admitted") == 0)
                return cmd_admitted(bus);
        if (strcmp(cmd, "forget") == 0)
                return cmd_simple(bus, "ForgetDevice", args[0]);
        if (strcmp(cmd, "stats") == 0)
                return cmd_stats(bus);
        if (strcmp(cmd, "reload") == 0)
                return cmd_simple(bus, "Reload", NULL);
        if (strcmp(cmd, "announcements") == 0)
                return cmd_announcements(bus);
        if (strcmp(cmd, "announce") == 0)
                return cmd_announce(bus, args[0]);
        return cmd_monitor(bus);
}
