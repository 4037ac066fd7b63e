#!/usr/bin/env bash
# errors: unknown devices, malformed filters, oversized pages, usage
# errors, a refused reload, and cmpgwd not running -- each with its exit
# code (cmpgwctl(1)) and a message naming the problem; the D-Bus error
# names seen by other clients.
set -euo pipefail
# shellcheck source=tests/dbus/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_ctl
require_cmd openssl python3 busctl dbus-daemon dbus-send "$COAP_CLIENT"

make_pki
start_bus
start_ca "$PKI"
write_dbus_config "$T/gw.json"
start_gw_dbus "$T/gw.json"

# dsend NAME METHOD ARGS...: dbus-send a method call; output to $T/NAME.*
dsend() {
        local name=$1 method=$2
        shift 2
        dbus-send --system --print-reply --dest="$GW_NAME" "$GW_OBJ" "org.cmpgw.Gateway1.$method" "$@" \
                >"$T/$name.out" 2>"$T/$name.err" || true
}

step "unknown device"
ctl nodev device 999999
expect_rc nodev 1
expect_eq "$(cat "$T/nodev.err")" "cmpgwctl: no device with id or subject '999999'" "device 999999"
ctl nodev2 --json device "CN=nobody here"
expect_rc nodev2 1
expect_contains "$(cat "$T/nodev2.err")" "no device with id or subject 'CN=nobody here'" "device by subject"
[[ ! -s $T/nodev2.out ]] || fail "device: output on failure: $(cat "$T/nodev2.out")"
ctl noforget forget 999999
expect_rc noforget 1
expect_contains "$(cat "$T/noforget.err")" "no device with id or subject '999999'" "forget 999999"
dsend nodev-d GetDevice string:999999
expect_contains "$(cat "$T/nodev-d.err")" "org.cmpgw.Gateway1.Error.NoSuchDevice" "GetDevice error name"

step "malformed state filter"
ctl bogus devices --state bogus
expect_rc bogus 2
expect_contains "$(cat "$T/bogus.err")" "invalid --state 'bogus'" "--state bogus"
dsend bogus-d ListDevices string:bogus uint64:0 uint32:10
expect_contains "$(cat "$T/bogus-d.err")" "org.cmpgw.Gateway1.Error.InvalidArgument" "ListDevices(bogus) error name"
expect_contains "$(cat "$T/bogus-d.err")" "'bogus'" "ListDevices(bogus) message"
ctl conflict devices --revoked --expired
expect_rc conflict 2

step "page size"
ctl huge devices --limit 100000
expect_rc huge 2
expect_contains "$(cat "$T/huge.err")" "100000" "--limit 100000"
expect_contains "$(cat "$T/huge.err")" "maximum is 1000" "--limit 100000"
dsend huge-d ListDevices string: uint64:0 uint32:100000
expect_contains "$(cat "$T/huge-d.err")" "org.cmpgw.Gateway1.Error.InvalidArgument" "ListDevices(limit 100000) error name"
expect_contains "$(cat "$T/huge-d.err")" "maximum is 1000" "ListDevices(limit 100000) message"
dsend max-d ListDevices string: uint64:0 uint32:1000
[[ ! -s $T/max-d.err ]] || fail "ListDevices with limit 1000 failed: $(cat "$T/max-d.err")"
expect_contains "$(cat "$T/max-d.out")" "uint64 0" "ListDevices(limit 1000) total"
ctl max devices --limit 1000
expect_rc max 0

step "usage errors"
ctl u1 frobnicate
expect_rc u1 2
expect_contains "$(cat "$T/u1.err")" "unknown command 'frobnicate'" "unknown command"
ctl u2 device
expect_rc u2 2
expect_contains "$(cat "$T/u2.err")" "missing argument ID" "device without ID"
ctl u3 devices --limit abc
expect_rc u3 2
expect_contains "$(cat "$T/u3.err")" "invalid --limit 'abc'" "--limit abc"
ctl u4 forget 1 --revoked
expect_rc u4 2
ctl u5
expect_rc u5 2
ctl u6 --bogus-option status
expect_rc u6 2
ctl ann announcements
expect_rc ann 0
expect_contains "$(cat "$T/ann.out")" "No announcement has been published" "announcements before any"
ctl ann2 announce "$T/gw.json"
expect_rc ann2 1
expect_contains "$(cat "$T/ann2.err")" "announcement refused" "announce of a file that is no PKIMessage"
ctl ann3 announce "$T/no-such-file.der"
expect_rc ann3 1
expect_contains "$(cat "$T/ann3.err")" "cannot open" "announce of a missing file"

step "reload refuses an invalid configuration and says why"
cp "$T/gw.json" "$T/gw.json.good"
sed -i 's/"upstreams": \[ { "name"/"upstreams": [ { "labelz": ["a"], "name"/' "$T/gw.json"
grep -q labelz "$T/gw.json" || fail "cannot break the configuration"
ctl badreload reload
expect_rc badreload 1
expect_contains "$(cat "$T/badreload.err")" "keeping the running configuration" "reload of a bad file"
expect_contains "$(cat "$T/badreload.err")" "labelz" "reload of a bad file names the key"
dsend badreload-d Reload
expect_contains "$(cat "$T/badreload-d.err")" "org.cmpgw.Gateway1.Error.Failed" "Reload error name"
cp "$T/gw.json.good" "$T/gw.json"
ctl goodreload reload
expect_rc goodreload 0
ctl status --json status
expect_rc status 0

step "cmpgwd not running"
stop_gw
for _ in $(seq 50); do name_has_owner || break; sleep 0.1; done
ctl down status
expect_rc down 3
expect_eq "$(cat "$T/down.err")" \
        "cmpgwctl: cmpgwd is not running on the system bus (no owner for org.cmpgw.Gateway1)" "status without cmpgwd"
ctl down2 --json devices
expect_rc down2 3
ctl down3 forget 1
expect_rc down3 3

step "no bus at all"
DBUS_SYSTEM_BUS_ADDRESS=unix:path=$T/bus/nothing-here ctl nobus status
expect_rc nobus 1
expect_contains "$(cat "$T/nobus.err")" "cannot connect to the system bus (unix:path=$T/bus/nothing-here)" "no bus"

log "PASS"
