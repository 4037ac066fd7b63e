#!/usr/bin/env bash
# signals: DeviceRenewalDue when a certificate's renewal time passes (here
# registry.renew_before is longer than what is left of the validity, so it is due at once,
# and the renewal timer must fire by itself), `cmpgwctl renewals`; and
# TransactionFailed both for a CMP-level failure (wrong MAC secret: the CA
# answers with an error) and for an upstream that cannot be reached.
set -euo pipefail
# shellcheck source=tests/dbus/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cli
require_ctl
require_cmd openssl python3 busctl dbus-daemon "$COAP_CLIENT"

make_pki
start_bus
start_ca "$PKI"
write_dbus_config "$T/gw.json"
python3 - "$T/gw.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["registry"]["renew_before"] = 10 * 365 * 86400     # the maximum; longer than what is left of the test certificates
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
start_gw_dbus "$T/gw.json"
CMP=$GW_URI/.well-known/cmp
start_monitor
# PropertiesChanged is not among the interface's own signals: watch the bus
dbus-monitor --address "$DBUS_SYSTEM_BUS_ADDRESS" \
        "type='signal',path='/org/cmpgw/Gateway1',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'" \
        >"$T/props.log" 2>&1 &
PIDS+=($!)
sleep 0.5

step "enrolment → DeviceEnrolled, then DeviceRenewalDue from the renewal timer"
timeout 60 "$CMPCOAP" ir --server "$CMP" --ref "$CA_REF" --secret "$CA_SECRET" --newkey "$PKI/ee.key" \
        --subject /CN=due --certout "$T/due.pem" >"$T/ir.log" 2>&1 || { cat "$T/ir.log" >&2; fail "ir failed"; }
wait_signal DeviceEnrolled 1
wait_signal DeviceRenewalDue 1
S=$(cert_serial "$T/due.pem")
json_check "DeviceRenewalDue" "$T/signal.json" '
assert j["id"] > 0, j
assert "CN=ee" in j["subject"], j
assert j["serial"] == a[0], (j, a[0])
assert j["renew_at"].endswith("Z"), j' "$S"
ctl renewals --json renewals
expect_rc renewals 0
json_check "renewals" "$T/renewals.out" '
assert len(j) == 1, j
assert j[0]["state"] == "renewal-due", j
assert j[0]["serial"] == a[0], j' "$S"

step "PropertiesChanged for DeviceCount and TransactionsInFlight"
wait_grep "$T/props.log" 5 '"DeviceCount"' || true       # the check below says
grep -A2 '"DeviceCount"' "$T/props.log" | grep 'uint64 1' >/dev/null ||
        { cat "$T/props.log" >&2; fail "no PropertiesChanged with DeviceCount 1 after the first enrolment"; }
grep -q '"TransactionsInFlight"' "$T/props.log" ||
        { cat "$T/props.log" >&2; fail "no PropertiesChanged for TransactionsInFlight"; }

step "wrong MAC secret → the CA answers an error → TransactionFailed"
rc=0
timeout 60 "$CMPCOAP" ir --server "$CMP" --ref "$CA_REF" --secret pass:wrong --newkey "$PKI/ee.key" \
        --subject /CN=bad >"$T/bad.log" 2>&1 || rc=$?
((rc == 1)) || { cat "$T/bad.log" >&2; fail "cmpcoap with a wrong secret exited $rc, expected 1"; }
wait_signal TransactionFailed 1
json_check "TransactionFailed (CMP error)" "$T/signal.json" '
assert len(j["transaction_id"]) >= 16, j
assert j["peer"].startswith("127.0.0.1:"), j
assert j["reason"], j'

step "CA stopped → 5.03 → TransactionFailed naming the upstream"
stop_ca
rc=0
timeout 30 "$CMPCOAP" genm --server "$CMP" --ref "$CA_REF" --secret "$CA_SECRET" --timeout 3 >"$T/genm.log" 2>&1 || rc=$?
((rc == 1)) || { cat "$T/genm.log" >&2; fail "genm with the CA down exited $rc, expected 1"; }
wait_signal TransactionFailed 2
json_check "TransactionFailed (upstream down)" "$T/signal.json" '
assert j["body"] == "genm", j
assert "unreachable" in j["reason"] and "ca" in j["reason"], j'
log "DeviceRenewalDue and TransactionFailed seen"
