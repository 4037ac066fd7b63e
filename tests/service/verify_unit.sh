#!/usr/bin/env bash
# units/cmpgwd.service passes `systemd-analyze verify` with no complaint at
# all (verify exits 0 on bad values and only warns, so any output fails),
# and the daemon really speaks sd_notify: READY=1, STATUS=, RELOADING=1 on
# SIGHUP and STOPPING=1 on SIGTERM, read from a notify socket of our own.
set -euo pipefail
: "${CMPGWD:?}" "${SRCDIR:?}"
command -v systemd-analyze >/dev/null || { echo "systemd-analyze missing (Debian package systemd)"; exit 77; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# 1. the unit file, with ExecStart pointing at the binary under test
sed "s|/usr/sbin/cmpgwd|$CMPGWD|g" "$SRCDIR/units/cmpgwd.service" > "$tmp/cmpgwd.service"
out=$(systemd-analyze verify --man=no "$tmp/cmpgwd.service" 2>&1) || { echo "verify failed: $out"; exit 1; }
[[ -z $out ]] || { echo "systemd-analyze verify complained: $out"; exit 1; }
for key in 'Type=notify' 'WatchdogSec=' 'ExecReload=' 'StateDirectory=cmpgw'; do
        grep -q "^$key" "$SRCDIR/units/cmpgwd.service" || { echo "unit lacks $key"; exit 1; }
done

# 2. the notify protocol, with a socket standing in for the service manager
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$tmp/gw.json" <<JSON
{ "listen": [ { "uri": "coap://127.0.0.1:$port" } ],
  "upstreams": [ { "name": "ca", "uri": "http://127.0.0.1:9/pkix/" } ],
  "registry": { "path": "$tmp/registry.db" }, "dbus": { "bus": "none" } }
JSON
python3 - "$tmp/notify.sock" "$tmp/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
with open(sys.argv[2], "w") as f:
    try:
        while True:
            f.write(s.recv(4096).decode() + "\n---\n"); f.flush()
    except socket.timeout:
        pass
PY
pids+=($!)
for _ in $(seq 50); do [[ -S $tmp/notify.sock ]] && break; sleep 0.1; done
NOTIFY_SOCKET=$tmp/notify.sock WATCHDOG_USEC=400000 "$CMPGWD" --config "$tmp/gw.json" 2>"$tmp/gw.log" &
gw=$!
pids+=($gw)
wait_for() { for _ in $(seq 100); do grep -q "$1" "$tmp/notify.log" 2>/dev/null && return 0; sleep 0.1; done; echo "no $1 from cmpgwd; got:"; cat "$tmp/notify.log"; cat "$tmp/gw.log"; exit 1; }
wait_for 'READY=1'
wait_for 'STATUS='
wait_for 'WATCHDOG=1'          # sd-event pings at half of WATCHDOG_USEC
kill -HUP $gw
wait_for 'RELOADING=1'
kill -TERM $gw
wait_for 'STOPPING=1'
wait $gw || { echo "cmpgwd exited with $? after SIGTERM"; cat "$tmp/gw.log"; exit 1; }
echo "unit verified; READY, STATUS, WATCHDOG, RELOADING, STOPPING seen"
