#!/usr/bin/env bash
# health: per-upstream health in GetStatistics / `cmpgwctl stats`, and the
# backoff of an upstream that keeps failing: after 3 transport failures in a
# row the gateway answers 5.03 with Max-Age at once without contacting it;
# after the pause the next request probes it and one success ends the backoff.
set -euo pipefail
# shellcheck source=tests/dbus/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_ctl
require_cmd openssl python3 busctl dbus-daemon "$COAP_CLIENT"

make_pki
start_bus
start_ca "$PKI"
capture_requests "$T/req"
ca_port=$CA_PORT
stop_ca
write_dbus_config "$T/gw.json"
start_gw_dbus "$T/gw.json"
genm() { expect_code "$1" "$2" -m post -t 259 -b 64 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"; }

step "three failures in a row, then backoff"
for i in 1 2 3; do
        genm "down$i" 5.03
        expect_contains "$COAP_DIAG" "unreachable" "failure $i"
done
genm backoff 5.03
expect_contains "$COAP_DIAG" "keeps failing; not contacted for" "the 4th answer"
expect_contains "$COAP_RESP" "Max-Age" "the backoff answer"
grep -q 'upstream ca: 3 failures in a row; not contacted for 5 s' "$T/gw.log" || fail "no backoff line in the log"
ctl stats1 --json stats
expect_rc stats1 0
json_check "health while backing off" "$T/stats1.out" '
u = j["upstreams"]
assert len(u) == 1 and u[0]["name"] == "ca", u
assert u[0]["failures_in_a_row"] == 3, u
assert u[0]["failures"] == 3 and u[0]["requests"] == 3, u
assert 1 <= u[0]["backoff_sec"] <= 5, u
assert u[0]["last_failure"].endswith("Z") and u[0]["last_success"] == "", u'

step "the CA returns; after the pause one success ends the backoff"
start_ca_at "$ca_port" "$PKI" "$PKI/ee.pem"
sleep 5
genm back 2.04
ctl stats2 --json stats
json_check "health after recovery" "$T/stats2.out" '
u = j["upstreams"][0]
assert u["failures_in_a_row"] == 0 and u["backoff_sec"] == 0, u
assert u["requests"] == 4 and u["failures"] == 3, u
assert u["last_success"].endswith("Z") and u["latency_ms"] > 0, u'
ctl status --json status
json_check "status shows upstream health" "$T/status.out" '
u = j["upstream_health"][0]
assert u["name"] == "ca" and u["failures_in_a_row"] == 0 and u["requests"] == 4, u'
ctl status-table status
grep -q '^UPSTREAM' "$T/status-table.out" && grep -Eq '^ca +4 +3 +0 ' "$T/status-table.out" ||
        { cat "$T/status-table.out" >&2; fail "cmpgwctl status has no upstream health table"; }
log "backoff and recovery seen in GetStatistics and cmpgwctl status"
