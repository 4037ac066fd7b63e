/* ann_poll.h -- announcements from HTTP upstreams, which cannot push them:
 * periodic genm polling (RFC 9483 §4.3; RFC 9482 §2.6), issue 4.
 *
 * One poller per upstream with "poll" in cmpgw.json(5): every interval it
 * asks, one genm transaction after the other, for the CA certificates
 * (§4.3.1), a root CA update (§4.3.2) and CRLs newer than the cached ones
 * (§4.3.4), signed with the gateway's own CMP certificate. A genp counts
 * only when it answers the genm and its signature verifies against the
 * poll's trust anchors. What is new becomes an announcement signed with the
 * gateway's key, published through the announcement store like any other
 * (validated there against announcements.trusted, CRLs against their
 * issuer): CANN for a CA certificate not announced before, CKUANN for a
 * root CA update, CRLANN for a newer CRL. Unchanged answers publish
 * nothing. Nothing here blocks the loop: the genm is built with OpenSSL's
 * CMP client (cmp_genm.h) and sent with upstream_http_post(). */
#pragma once

#include <systemd/sd-event.h>

struct ann_poll;
struct ann_poll_set;
struct announce;
struct upstream_http;
struct cmpgw_config;

int ann_poll_new(sd_event *e, struct upstream_http *http, struct announce *store, struct ann_poll **ret);
struct ann_poll *ann_poll_free(struct ann_poll *p);

/* The pollers of configuration C, credentials and trust anchors read and
 * checked, not yet running: 0, or negative errno with a malloc'd reason
 * naming the config key in *why. */
int ann_poll_prepare(struct ann_poll *p, const struct cmpgw_config *c, struct ann_poll_set **ret, char **why);
/* Replaces the running pollers with SET (taken; NULL: none) and starts
 * them: each polls at once, then every interval. */
void ann_poll_commit(struct ann_poll *p, struct ann_poll_set *set);
struct ann_poll_set *ann_poll_set_free(struct ann_poll_set *set);
