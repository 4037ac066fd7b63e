#!/usr/bin/env bash
# access: the bus policy dbus/org.cmpgw.Gateway1.conf on a private system
# bus. An unprivileged caller (nobody) may read (ListDevices, GetDevice,
# GetStatistics, properties, Introspect) but is refused ForgetDevice,
# Reload and PublishAnnouncement (cmpgwctl exit 4); a member of the
# privileged group (here
# $TEST_GROUP standing in for "cmpgw") may call them; only root may own
# the name.
set -euo pipefail
# shellcheck source=tests/dbus/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_ctl
require_cmd openssl python3 busctl dbus-daemon dbus-send setpriv getent "$COAP_CLIENT"
((EUID == 0)) || skip "needs root (to run commands as nobody)"
getent passwd nobody >/dev/null || skip "no user nobody"
getent group nogroup >/dev/null || skip "no group nogroup"
getent group "$TEST_GROUP" >/dev/null || skip "no group $TEST_GROUP"

make_pki
start_bus
start_ca "$PKI"
write_dbus_config "$T/gw.json"
start_gw_dbus "$T/gw.json"

step "nobody may read"
ctl_as_nobody ro1 --json devices
expect_rc ro1 0
json_check "devices as nobody" "$T/ro1.out" 'assert isinstance(j, list), j'
ctl_as_nobody ro2 --json status
expect_rc ro2 0
json_check "status as nobody" "$T/ro2.out" 'assert "devices" in j, j'
ctl_as_nobody ro3 --json stats
expect_rc ro3 0
ctl_as_nobody ro4 device 999999
expect_rc ro4 1
expect_contains "$(cat "$T/ro4.err")" "no device with id or subject '999999'" "GetDevice as nobody"
setpriv --reuid=nobody --regid=nogroup --clear-groups \
        busctl --system introspect "$GW_NAME" "$GW_OBJ" >"$T/ro5.out" 2>&1 ||
        fail "Introspect as nobody: $(cat "$T/ro5.out")"

step "nobody may not forget, reload or publish an announcement"
ctl_as_nobody rw1 forget 1
expect_rc rw1 4
expect_eq "$(cat "$T/rw1.err")" "cmpgwctl: permission denied: ForgetDevice needs root or group cmpgw" "forget as nobody"
ctl_as_nobody rw2 reload
expect_rc rw2 4
expect_eq "$(cat "$T/rw2.err")" "cmpgwctl: permission denied: Reload needs root or group cmpgw" "reload as nobody"
# not an announcement: were the call let through, cmpgwd would refuse it (exit 1)
printf 'not a PKIMessage\n' >"$T/nobody/not-ann.der"
chmod 0644 "$T/nobody/not-ann.der"
ctl_as_nobody rw5 announce "$T/nobody/not-ann.der"
expect_rc rw5 4
expect_eq "$(cat "$T/rw5.err")" "cmpgwctl: permission denied: PublishAnnouncement needs root or group cmpgw" \
        "announce as nobody"
# the bus itself refuses (policy), the call never reaches cmpgwd
setpriv --reuid=nobody --regid=nogroup --clear-groups \
        dbus-send --system --print-reply --dest="$GW_NAME" "$GW_OBJ" org.cmpgw.Gateway1.ForgetDevice string:1 \
        >"$T/rw3.out" 2>"$T/rw3.err" && fail "dbus-send ForgetDevice as nobody succeeded"
expect_contains "$(cat "$T/rw3.err")" "org.freedesktop.DBus.Error.AccessDenied" "ForgetDevice as nobody"
expect_contains "$(cat "$T/rw3.err")" "Rejected send message" "ForgetDevice as nobody: refused by the bus policy"
# members not in the policy are denied by default
setpriv --reuid=nobody --regid=nogroup --clear-groups \
        dbus-send --system --print-reply --dest="$GW_NAME" "$GW_OBJ" org.cmpgw.Gateway1.NoSuchMethod \
        >"$T/rw4.out" 2>"$T/rw4.err" && fail "an unknown method as nobody succeeded"
expect_contains "$(cat "$T/rw4.err")" "Rejected send message" "unknown member as nobody"

step "group $TEST_GROUP (standing in for cmpgw) may forget, reload and publish"
ctl_as_nobody grp1 --groups "$TEST_GROUP" forget 999999
expect_rc grp1 1
expect_contains "$(cat "$T/grp1.err")" "no device with id or subject '999999'" "forget as a group member reaches cmpgwd"
ctl_as_nobody grp2 --groups "$TEST_GROUP" reload
expect_rc grp2 0
ctl_as_nobody grp3 --groups "$TEST_GROUP" announce "$T/nobody/not-ann.der"
expect_rc grp3 1
expect_contains "$(cat "$T/grp3.err")" "announcement refused" "announce as a group member reaches cmpgwd"

step "root may forget (reaches cmpgwd)"
ctl root1 forget 999999
expect_rc root1 1

step "only root may own the name"
mkdir -p "$T/nobody"
chmod 0777 "$T/nobody"
GW2_PORT=$(free_port udp)
sed -e "s/127.0.0.1:$GW_PORT/127.0.0.1:$GW2_PORT/" -e "s|$T/registry.db|$T/nobody/registry.db|" \
        "$T/gw.json" >"$T/nobody/gw.json"
chmod 0644 "$T/nobody/gw.json"
stop_gw
setpriv --reuid=nobody --regid=nogroup --clear-groups \
        "$CMPGWD" --config "$T/nobody/gw.json" >"$T/gw-nobody.log" 2>&1 &
NB_PID=$!
PIDS+=("$NB_PID")
wait_grep "$T/gw-nobody.log" 5 'cannot own' || true      # expect_contains says
expect_contains "$(cat "$T/gw-nobody.log")" \
        "cannot own org.cmpgw.Gateway1 on the system bus: " "cmpgwd as nobody"
expect_contains "$(cat "$T/gw-nobody.log")" "(install dbus/org.cmpgw.Gateway1.conf" "cmpgwd as nobody"
name_has_owner && fail "cmpgwd running as nobody owns $GW_NAME"
stop_pid "$NB_PID"

log "PASS"
