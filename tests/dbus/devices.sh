#!/usr/bin/env bash
# devices: enrolment through cmpgwd shows up on D-Bus and in cmpgwctl:
# ir → DeviceEnrolled and a device in state enrolled; kur → DeviceRenewed
# with the old and new serial; rr → DeviceRevoked and state revoked; a
# second device (the mock CA restarted with another -rsp_cert); paging;
# forget; status and stats.
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
start_gw_dbus "$T/gw.json"
CMP=$GW_URI/.well-known/cmp
P=$PKI
MAC=(--ref "$CA_REF" --secret "$CA_SECRET")

cmpcoap() {
        local name=$1
        shift
        timeout 60 "$CMPCOAP" "$@" >"$T/$name.log" 2>&1 ||
                { tail -n 20 "$T/$name.log" >&2; tail -n 15 "$T/gw.log" >&2; fail "$name: cmpcoap failed"; }
        log "ok: cmpcoap $name"
}

FIELDS='["id", "subject", "issuer", "serial", "not_before", "not_after", "state", "renew_at", "last_seen", "peer"]'

step "empty registry"
ctl devices0 --json devices
expect_rc devices0 0
json_check "devices on an empty registry is []" "$T/devices0.out" 'assert j == [], j'
ctl status0 --json status
expect_rc status0 0
json_check "status" "$T/status0.out" '
assert j["devices"] == 0, j
assert j["transactions_in_flight"] == 0, j
assert j["listeners"] == [a[0]], j
assert j["upstreams"] == ["ca"], j
assert isinstance(j["version"], str) and j["version"], j' "$GW_URI"

start_monitor

step "ir → DeviceEnrolled, state enrolled"
cmpcoap ir ir --server "$CMP" "${MAC[@]}" --newkey "$P/ee.key" --subject /CN=node1 --certout "$T/ir.pem"
S1=$(cert_serial "$T/ir.pem")
wait_signal DeviceEnrolled 1
json_check "DeviceEnrolled" "$T/signal.json" '
assert j["id"] > 0, j
assert "CN=ee" in j["subject"], j
assert j["serial"] == a[0], (j, a[0])
assert j["not_after"].endswith("Z"), j' "$S1"
ID1=$(json_get "$T/signal.json" 'j["id"]')

ctl devices1 --json devices
expect_rc devices1 0
json_check "devices after ir" "$T/devices1.out" '
assert isinstance(j, list) and len(j) == 1, j
d = j[0]
for f in '"$FIELDS"':
    assert f in d, "field %s missing in %s" % (f, d)
assert d["id"] == int(a[0]), d
assert d["state"] == "enrolled", d
assert d["serial"] == a[1], d
assert "CN=ee" in d["subject"], d' "$ID1" "$S1"
SUBJ1=$(json_get "$T/devices1.out" 'j[0]["subject"]')

ctl device1 device "$ID1"
expect_rc device1 0
expect_contains "$(cat "$T/device1.out")" "subject: $SUBJ1" "cmpgwctl device $ID1"
expect_contains "$(cat "$T/device1.out")" "state: enrolled" "cmpgwctl device $ID1"
ctl device1j --json device "$ID1"
expect_rc device1j 0
json_check "device $ID1 --json" "$T/device1j.out" '
assert isinstance(j, dict), j
assert j["id"] == int(a[0]) and j["state"] == "enrolled", j' "$ID1"
ctl device1s --json device "$SUBJ1"
expect_rc device1s 0
json_check "device by subject" "$T/device1s.out" 'assert j["id"] == int(a[0]), j' "$ID1"
ctl status1 --json status
json_check "status after ir" "$T/status1.out" 'assert j["devices"] == 1, j'
ctl devices1t devices
expect_rc devices1t 0
expect_contains "$(head -n 1 "$T/devices1t.out")" "SUBJECT" "devices table header"
expect_contains "$(cat "$T/devices1t.out")" "$SUBJ1" "devices table"

step "kur → DeviceRenewed"
cmpcoap kur kur --server "$CMP" --oldcert "$P/ee.pem" --cert "$P/ee.pem" --key "$P/ee.key" \
        --trusted "$P/trusted.pem" --newkey "$P/ee.key" --certout "$T/kur.pem"
S2=$(cert_serial "$T/kur.pem")
wait_signal DeviceRenewed 1
json_check "DeviceRenewed" "$T/signal.json" '
assert j["id"] == int(a[0]), j
assert j["old_serial"] == a[1], j
assert j["new_serial"] == a[2], j
assert j["subject"] == a[3], j
assert j["not_after"], j' "$ID1" "$(cert_serial "$P/ee.pem")" "$S2" "$SUBJ1"
ctl device2 --json device "$ID1"
json_check "device after kur" "$T/device2.out" '
assert j["serial"] == a[0] and j["state"] == "enrolled", j' "$S2"

step "rr → DeviceRevoked, state revoked"
cmpcoap rr rr --server "$CMP" --cert "$P/client.pem" --key "$P/client.key" --trusted "$P/trusted.pem" \
        --oldcert "$P/ee.pem" --revreason 1
wait_signal DeviceRevoked 1
json_check "DeviceRevoked" "$T/signal.json" '
assert j["id"] == int(a[0]), j
assert j["serial"] == a[1], j
assert j["reason"] == 1, j' "$ID1" "$(cert_serial "$P/ee.pem")"
ctl device3 --json device "$ID1"
json_check "device after rr" "$T/device3.out" 'assert j["state"] == "revoked", j'
ctl revoked --json devices --revoked
json_check "devices --revoked" "$T/revoked.out" 'assert [d["id"] for d in j] == [int(a[0])], j' "$ID1"
ctl enrolled --json devices --state enrolled
json_check "devices --state enrolled" "$T/enrolled.out" 'assert j == [], j'
ctl renewals --json renewals
expect_rc renewals 0
json_check "renewals" "$T/renewals.out" 'assert j == [], j'

step "a second device (CA answers with client.pem)"
stop_ca
start_ca "$PKI" -rsp_cert "$P/client.pem"
write_dbus_config "$T/gw.json"           # the new CA port
ctl reload reload
expect_rc reload 0
cmpcoap ir2 ir --server "$CMP" "${MAC[@]}" --newkey "$P/client.key" --subject /CN=node2 --certout "$T/ir2.pem"
wait_signal DeviceEnrolled 2
json_check "second DeviceEnrolled" "$T/signal.json" '
assert "CN=client" in j["subject"], j
assert j["id"] != int(a[0]), j
assert j["serial"] == a[1], j' "$ID1" "$(cert_serial "$T/ir2.pem")"
ID2=$(json_get "$T/signal.json" 'j["id"]')
ctl devices2 --json devices
json_check "two devices" "$T/devices2.out" '
assert sorted(d["id"] for d in j) == sorted([int(a[0]), int(a[1])]), j' "$ID1" "$ID2"
ctl page1 --json devices --limit 1
ctl page2 --json devices --offset 1 --limit 1
ctl page3 --json devices --offset 2 --limit 1
json_check "page 1" "$T/page1.out" 'assert len(j) == 1, j'
json_check "page 2" "$T/page2.out" 'assert len(j) == 1, j'
json_check "page 3" "$T/page3.out" 'assert j == [], j'
[[ $(json_get "$T/page1.out" 'j[0]["id"]') != "$(json_get "$T/page2.out" 'j[0]["id"]')" ]] ||
        fail "pages 1 and 2 hold the same device"
ctl status2 --json status
json_check "status with two devices" "$T/status2.out" 'assert j["devices"] == 2, j'
v=$(busctl --system get-property "$GW_NAME" "$GW_OBJ" org.cmpgw.Gateway1 DeviceCount)
expect_eq "$v" "t 2" "DeviceCount property"

step "forget"
ctl forget forget "$ID2"
expect_rc forget 0
ctl gone device "$ID2"
expect_rc gone 1
expect_contains "$(cat "$T/gone.err")" "no device with id or subject '$ID2'" "device after forget"
ctl devices3 --json devices
json_check "devices after forget" "$T/devices3.out" 'assert [d["id"] for d in j] == [int(a[0])], j' "$ID1"
ctl forget-subj forget "$SUBJ1"
expect_rc forget-subj 0
ctl devices4 --json devices
json_check "devices after forgetting by subject" "$T/devices4.out" 'assert j == [], j'

step "stats"
ctl stats --json stats
expect_rc stats 0
json_check "stats" "$T/stats.out" '
for k in ["requests", "forwarded", "answered_2xx", "answered_4xx", "answered_5xx", "upstream_errors",
          "upstream_retries", "transactions_in_flight", "devices", "uptime_sec"]:
    assert k in j, "%s missing: %s" % (k, j)
assert j["requests"] >= 7 and j["answered_2xx"] >= 7, j   # ir+certConf, kur+certConf, rr, ir+certConf
assert j["devices"] == 0, j'
ctl statst stats
expect_contains "$(cat "$T/statst.out")" "answered_2xx:" "stats table"

step "monitor stops on SIGINT with status 0"
kill -INT "$MON_PID"
st=0
wait "$MON_PID" || st=$?
expect_eq "$st" 0 "cmpgwctl monitor exit status"
PIDS=("${PIDS[@]/$MON_PID/}")

gw_alive
log "PASS"
