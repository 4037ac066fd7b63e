/* dbus_api.h -- org.cmpgw.Gateway1 on the system (or session) bus, with
 * sd-bus on the manager's event loop (PRODUCT.md: D-Bus; issue 3).
 * The interface is dbus/org.cmpgw.Gateway1.xml. */
#pragma once

#include "announce.h"
#include "config.h"
#include "registry.h"

typedef struct Manager Manager;
struct dbus_api;

/* Connects (DBUS_SYSTEM_BUS_ADDRESS / DBUS_SESSION_BUS_ADDRESS are
 * honoured by sd-bus), exports /org/cmpgw/Gateway1, takes the name. */
int dbus_api_new(Manager *m, enum cmpgw_bus bus, struct dbus_api **ret);
struct dbus_api *dbus_api_free(struct dbus_api *d);

void dbus_api_emit_registry_event(struct dbus_api *d, const struct registry_event *ev);
void dbus_api_emit_transaction_failed(struct dbus_api *d, const char *transaction_id,
                                      const char *peer, const char *body, const char *reason);
/* DeviceCount / TransactionsInFlight changed (coalesced per loop iteration). */
void dbus_api_properties_changed(struct dbus_api *d);

/* Announcements (issue 4): CrlUpdated, CertificateRevoked, CaKeyUpdated,
 * CaCertificateAnnounced. */
void dbus_api_emit_crl_updated(struct dbus_api *d, const struct announce_event *ev);
void dbus_api_emit_certificate_revoked(struct dbus_api *d, const struct announce_event *ev);
void dbus_api_emit_ca_announcement(struct dbus_api *d, const struct announce_event *ev);
