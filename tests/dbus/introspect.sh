#!/usr/bin/env bash
# introspect: what the running cmpgwd exports on the bus as
# org.cmpgw.Gateway1 matches dbus/org.cmpgw.Gateway1.xml: the same methods,
# signals and properties, with the same argument names, types and
# directions, property types, access and change-signal annotations.
set -euo pipefail
# shellcheck source=tests/dbus/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cmd openssl python3 busctl dbus-daemon "$COAP_CLIENT"

make_pki
start_bus
start_ca "$PKI"
write_dbus_config "$T/gw.json"
start_gw_dbus "$T/gw.json"

step "introspect the running daemon"
busctl --system introspect --xml-interface "$GW_NAME" "$GW_OBJ" >"$T/live.xml" ||
        fail "busctl introspect failed"

# normalise: one line per member, sorted; annotations other than
# EmitsChangedSignal are ignored (sd-bus adds none for this interface)
normalise() {
        python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ifs = [i for i in root.iter("interface") if i.get("name") == "org.cmpgw.Gateway1"]
if len(ifs) != 1:
    print("no (or more than one) interface org.cmpgw.Gateway1 in %s" % sys.argv[1], file=sys.stderr)
    sys.exit(1)
out = []
for el in ifs[0]:
    kind, name = el.tag, el.get("name")
    if kind == "property":
        emits = "true"      # the D-Bus default
        for a in el.findall("annotation"):
            if a.get("name") == "org.freedesktop.DBus.Property.EmitsChangedSignal":
                emits = a.get("value")
        out.append("property %s %s %s emits=%s" % (name, el.get("type"), el.get("access"), emits))
    elif kind in ("method", "signal"):
        args = []
        for a in el.findall("arg"):
            d = a.get("direction") or ("in" if kind == "method" else "out")
            args.append("%s:%s:%s" % (d, a.get("type"), a.get("name") or ""))
        out.append("%s %s(%s)" % (kind, name, ", ".join(args)))
for line in sorted(out):
    print(line)
PY
}
normalise "$T/live.xml" >"$T/live.txt" || fail "cannot parse the live introspection"
normalise "$SRCDIR/dbus/org.cmpgw.Gateway1.xml" >"$T/doc.txt" || fail "cannot parse dbus/org.cmpgw.Gateway1.xml"
[[ -s $T/live.txt ]] || fail "the live interface has no members"
if ! diff -u "$T/doc.txt" "$T/live.txt" >"$T/introspect.diff"; then
        cat "$T/introspect.diff" >&2
        fail "dbus/org.cmpgw.Gateway1.xml (-) and the running daemon (+) differ"
fi
log "ok: $(wc -l <"$T/live.txt") members match"

# the members the interface promises, whatever the file says
for m in "method ListDevices(in:s:state, in:t:offset, in:u:limit, out:aa{sv}:devices, out:t:total)" \
         "method GetDevice(in:s:id, out:a{sv}:device)" "method ForgetDevice(in:s:id)" \
         "method GetStatistics(out:a{sv}:statistics)" "method Reload()" \
         "property DeviceCount t read emits=true" "property TransactionsInFlight u read emits=true" \
         "property Version s read emits=const" \
         "signal DeviceEnrolled(out:t:id, out:s:subject, out:s:serial, out:s:not_after)" \
         "signal DeviceRenewed(out:t:id, out:s:subject, out:s:old_serial, out:s:new_serial, out:s:not_after)" \
         "signal DeviceRevoked(out:t:id, out:s:subject, out:s:serial, out:i:reason)" \
         "signal DeviceRenewalDue(out:t:id, out:s:subject, out:s:serial, out:s:renew_at)" \
         "signal TransactionFailed(out:s:transaction_id, out:s:peer, out:s:body, out:s:reason)"; do
        grep -qxF "$m" "$T/live.txt" || fail "the daemon does not export: $m"
done

step "properties"
v=$(busctl --system get-property "$GW_NAME" "$GW_OBJ" org.cmpgw.Gateway1 Version)
expect_eq "$v" "s \"$("$CMPGWD" --version | awk '{print $2}')\"" "Version"
v=$(busctl --system get-property "$GW_NAME" "$GW_OBJ" org.cmpgw.Gateway1 Listeners)
expect_eq "$v" "as 1 \"$GW_URI\"" "Listeners"
v=$(busctl --system get-property "$GW_NAME" "$GW_OBJ" org.cmpgw.Gateway1 Upstreams)
expect_eq "$v" 'as 1 "ca"' "Upstreams"
v=$(busctl --system get-property "$GW_NAME" "$GW_OBJ" org.cmpgw.Gateway1 TransactionsInFlight)
expect_eq "$v" 'u 0' "TransactionsInFlight"

step "a second cmpgwd cannot take the name and says why"
GW2_PORT=$(free_port udp)
sed "s/127.0.0.1:$GW_PORT/127.0.0.1:$GW2_PORT/" "$T/gw.json" >"$T/gw2.json"
"$CMPGWD" --config "$T/gw2.json" >"$T/gw2.log" 2>&1 &
GW2_PID=$!
PIDS+=("$GW2_PID")
wait_grep "$T/gw2.log" 5 -F "cannot own org.cmpgw.Gateway1 on the system bus: another process owns it" ||
        fail "second cmpgwd: no clear message: $(cat "$T/gw2.log")"
stop_pid "$GW2_PID"
name_has_owner || fail "the first cmpgwd lost the name"

gw_alive
log "PASS"
