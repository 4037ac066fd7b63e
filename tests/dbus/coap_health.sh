#!/usr/bin/env bash
# coap_health: a coap:// upstream's health in GetStatistics and `cmpgwctl
# status` (issue 6): gateway A (with D-Bus) forwards to gateway B over CoAP,
# B to the mock CA. An answered exchange counts as a request and a success
# with its latency; B stopped, the next one is a failure in a row. Before,
# only http(s) upstreams were counted and a coap:// one showed 0 requests.
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
start_ca_gw b
B_PID=$OTHER_GW_PID
write_dbus_config "$T/a.json"
ups="[ { \"name\": \"b\", \"uri\": \"coap://127.0.0.1:$OTHER_GW_PORT/.well-known/cmp\", \"timeout\": 3 } ]"
/usr/bin/python3 - "$T/a.json" "$ups" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["upstreams"] = json.loads(sys.argv[2])
json.dump(c, open(sys.argv[1], "w"))
PY
start_gw_dbus "$T/a.json"
genm() { expect_code "$1" "$2" -m post -t 259 -b 64 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"; }

step "two genm answered through B"
genm ok1 2.04
genm ok2 2.04
ctl stats1 --json stats
expect_rc stats1 0
json_check "coap:// upstream health after two answers" "$T/stats1.out" '
u = j["upstreams"]
assert len(u) == 1 and u[0]["name"] == "b", u
assert u[0]["requests"] == 2 and u[0]["failures"] == 0 and u[0]["failures_in_a_row"] == 0, u
assert u[0]["last_success"].endswith("Z") and u[0]["last_failure"] == "", u
assert u[0]["latency_ms"] > 0, u'

step "B stopped: a transport failure"
stop_pid "$B_PID"
COAP_WAIT=20 coap_req down -m post -t 259 -b 64 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
[[ $COAP_CODE == 5.03 || $COAP_CODE == 5.04 ]] || fail "B down: expected 5.03 or 5.04, got '$COAP_CODE'"
ctl stats2 --json stats
json_check "coap:// upstream health after a failure" "$T/stats2.out" '
u = j["upstreams"][0]
assert u["requests"] == 3 and u["failures"] == 1 and u["failures_in_a_row"] == 1, u
assert u["last_failure"].endswith("Z") and u["last_success"].endswith("Z"), u'
ctl status-table status
grep -Eq '^b +3 +1 +1 ' "$T/status-table.out" ||
        { cat "$T/status-table.out" >&2; fail "cmpgwctl status does not show the coap:// upstream's counts"; }
log "a coap:// upstream's requests, failures and latency seen in GetStatistics and cmpgwctl status"
