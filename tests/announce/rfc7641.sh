#!/usr/bin/env bash
# rfc7641: cmpgwd keeps the ann observers itself (not libcoap), so RFC 7641
# is ours to get right (issue 4): registration with Observe in the answer,
# re-registration with the same token replacing the old one (its block
# size), strictly increasing Observe values from registration answers to
# notifications, deregistration by GET with Observe 1 and by an RST to a
# notification, an error answer registering nothing, and the periodic
# Confirmable notification (§4.5, announcements.refresh). The client is
# tests/announce/observe_raw.py, a raw CoAP fixture: no real peer resets a
# notification or re-registers with another block size on demand. It reads
# the gateway's observer count from GetStatistics (cmpgwctl).
set -euo pipefail
# shellcheck source=tests/announce/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_ctl
require_mkann
require_cmd openssl dbus-daemon busctl

make_pki
start_bus
CA_URI=http://127.0.0.1:9/pkix/        # no CMP request is made
write_ann_config "$T/gw.json"
start_ann_gw "$T/gw.json"
revoked=()
for ((i = 0; i < 27; i++)); do revoked+=(--revoked "$(printf %x $((0x100000 + i)))"); done
for n in 1 2 3 4; do make_crlann "a$n" "$n" "${revoked[@]}"; done
announce a1 "$T/a1.der"
expect_rc a1 0

step "RFC 7641 from a raw CoAP client"
/usr/bin/python3 "$SRCDIR/tests/announce/observe_raw.py" 127.0.0.1 "$GW_PORT" "$CMPGWCTL" \
        "$T/a2.der" "$T/a3.der" "$T/a4.der" >"$T/raw.out" 2>&1 || { cat "$T/raw.out" >&2; fail "observe_raw.py failed"; }
sed "s/^/[$TEST_NAME] /" "$T/raw.out" >&2
gw_alive

step "§4.5: announcements.refresh 2: a Confirmable notification every 2 s, nothing published"
stop_gw
write_ann_config "$T/gw.json" 'c["announcements"]["refresh"] = 2'
start_ann_gw "$T/gw.json"
/usr/bin/python3 "$SRCDIR/tests/announce/observe_raw.py" 127.0.0.1 "$GW_PORT" "$CMPGWCTL" --refresh 2 \
        >"$T/refresh.out" 2>&1 || { cat "$T/refresh.out" >&2; fail "observe_raw.py --refresh failed"; }
sed "s/^/[$TEST_NAME] /" "$T/refresh.out" >&2
gw_alive
log ok
