#!/usr/bin/env bash
# dbus_registry_bench.sh -- cmpgwd with a registry of N devices (default
# 1,000,000): start-up time to READY=1, GetDevice and ListDevices latency
# over D-Bus (a private bus), the renewal timer's work, and cmpgwd's RSS,
# side by side with an empty registry in the same run. Not a test.
#
#   tests/bench/dbus_registry_bench.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
export CMPGWD=$PWD/build/daemon/cmpgwd SRCDIR=$PWD
REGBENCH=$PWD/build/tests/bench/registry_bench
[[ -x $REGBENCH && -x $CMPGWD ]] || { echo "build first (meson setup build && ninja -C build)" >&2; exit 1; }
source tests/integration/lib.sh
TEST_NAME=dbus-bench

dbus-daemon --session --address="unix:path=$T/bus" --nofork --print-pid >"$T/bus.pid" 2>"$T/bus.log" &
PIDS+=($!)
for _ in $(seq 50); do [[ -S $T/bus ]] && break; sleep 0.1; done
export DBUS_SESSION_BUS_ADDRESS=unix:path=$T/bus

echo "filling a registry with $N devices (registry_bench)..."
"$REGBENCH" "$N" "$T/big.db" >"$T/regbench.txt"
sed 's/^/    /' "$T/regbench.txt"

run() {         # run NAME DB
        local name=$1 db=$2 port conf t0 t1 pid
        port=$(free_port udp)
        conf=$T/$name.json
        printf '{ "listen": [ { "uri": "coap://127.0.0.1:%s" } ], "upstreams": [ { "name": "ca", "uri": "http://127.0.0.1:9/pkix/" } ],\n  "registry": { "path": "%s" }, "dbus": { "bus": "session" } }\n' "$port" "$db" >"$conf"
        rm -f "$T/notify.sock"
        /usr/bin/python3 - "$T/notify.sock" >"$T/$name.ready" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); s.settimeout(60)
while True:
    if b"READY=1" in s.recv(4096): print("%.6f" % time.time()); break
PY
        local waiter=$!
        for _ in $(seq 50); do [[ -S $T/notify.sock ]] && break; sleep 0.05; done
        t0=$(python3 -c 'import time; print("%.6f" % time.time())')
        NOTIFY_SOCKET=$T/notify.sock "$CMPGWD" --config "$conf" 2>"$T/$name.log" &
        pid=$!
        PIDS+=("$pid")
        wait "$waiter"
        t1=$(cat "$T/$name.ready")
        /usr/bin/python3 - "$name" "$t0" "$t1" "$pid" <<'PY'
import dbus, random, sys, time
name, t0, t1, pid = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
bus = dbus.SessionBus()
for _ in range(100):
    if bus.name_has_owner("org.cmpgw.Gateway1"): break
    time.sleep(0.05)
gw = dbus.Interface(bus.get_object("org.cmpgw.Gateway1", "/org/cmpgw/Gateway1"), "org.cmpgw.Gateway1")
props = dbus.Interface(bus.get_object("org.cmpgw.Gateway1", "/org/cmpgw/Gateway1"), "org.freedesktop.DBus.Properties")
n = int(props.Get("org.cmpgw.Gateway1", "DeviceCount"))
def pct(v, p): v = sorted(v); return v[int((len(v) - 1) * p)] * 1000
get = []
if n:
    for _ in range(2000):
        i = str(random.randint(1, n)); s = time.perf_counter(); gw.GetDevice(i); get.append(time.perf_counter() - s)
lst = []
for _ in range(50):
    s = time.perf_counter(); gw.ListDevices("", dbus.UInt64(0), dbus.UInt32(100)); lst.append(time.perf_counter() - s)
ping = []
for _ in range(2000):
    s = time.perf_counter(); props.Get("org.cmpgw.Gateway1", "Version"); ping.append(time.perf_counter() - s)
rss = [l.split()[1] for l in open("/proc/%s/status" % pid) if l.startswith("VmRSS")][0]
print("  %-6s devices=%-8d start-to-READY=%.0f ms  RSS=%s kB" % (name, n, (t1 - t0) * 1000, rss))
if get: print("         GetDevice p50=%.3f ms p99=%.3f ms (n=%d, random ids)" % (pct(get, .5), pct(get, .99), len(get)))
print("         ListDevices(100) p50=%.2f ms p99=%.2f ms   Properties.Get (bus round trip) p50=%.3f ms" % (pct(lst, .5), pct(lst, .99), pct(ping, .5)))
PY
        kill "$pid"; wait "$pid" 2>/dev/null || true
}
echo "cmpgwd over D-Bus ($(nproc) cores, $(date -u +%FT%TZ)):"
run empty "$T/empty.db"
run big "$T/big.db"
