#!/usr/bin/env bash
# fanout_bench.sh -- one ~2 KiB CRLANN published with `cmpgwctl announce`,
# fanned out by cmpgwd to N observers on loopback (issue 4).
#
#   tests/bench/fanout_bench.sh [--observers "N..."] [--rounds R] [--ann-size BYTES]
#                               [--per-address K] [--perf] [--baseline CMPGWD]
#
# Defaults: 10000 observers, 5 rounds, a CRLANN of at most 2048 bytes (two
# Block2 blocks of 1024, the gateway's default coap.block_size), one
# observer per source address. Several counts ("1000 10000") run side by
# side in every round, so that their ratio shows how the fan-out scales.
# Each round of each count starts a fresh cmpgwd (its own registry and
# announcement store, no --verbose, as in production) on the one private
# dbus-daemon, runs tests/bench/fanout_bench against it and stops it by PID.
# --baseline CMPGWD: every round runs that cmpgwd too (e.g. one built from
# another commit), side by side with build/'s, and the summary gives the
# ratios of the medians.
# --perf records a CPU profile of cmpgwd during the fan-out of the first
# round (perf record -g, the report of the fan-out alone in $T/perf-N.txt,
# kept).
#
# The run has a network namespace of its own when it can make one (unshare
# -n, as root): /proc/net/snmp then counts only this benchmark's datagrams,
# so the gateway's are exact. Needs a build in build/.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z ${FANOUT_NETNS:-} ]] && unshare -n true 2>/dev/null; then
        exec env FANOUT_NETNS=1 unshare -n bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi
COUNTS=10000 ROUNDS=5 ANN_SIZE=2048 PER_ADDRESS=1 PERF=0 BASELINE=''
while (($#)); do
        case $1 in
        --observers) COUNTS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --ann-size) ANN_SIZE=$2; shift 2 ;;
        --per-address) PER_ADDRESS=$2; shift 2 ;;
        --perf) PERF=1; shift ;;
        --baseline) BASELINE=$2; shift 2 ;;
        *) echo "usage: $0 [--observers \"N...\"] [--rounds R] [--ann-size BYTES] [--per-address K] [--perf] [--baseline CMPGWD]" >&2; exit 2 ;;
        esac
done
export CMPGWD=$PWD/build/daemon/cmpgwd CMPCOAP=$PWD/build/cli/cmpcoap CMPGWCTL=$PWD/build/cli/cmpgwctl SRCDIR=$PWD
BENCH=$PWD/build/tests/bench/fanout_bench
[[ -x $BENCH && -x $CMPGWD && -x $CMPGWCTL ]] || { echo "no $BENCH, cmpgwd or cmpgwctl: build first" >&2; exit 1; }
[[ -z $BASELINE || -x $BASELINE ]] || { echo "--baseline $BASELINE: not an executable" >&2; exit 1; }
# shellcheck source=tests/announce/lib.sh
source tests/announce/lib.sh
TEST_NAME=fanout
require_mkann
require_cmd openssl dbus-daemon busctl
((PERF == 0)) || require_cmd perf

make_pki
start_bus
# no CMP request is made: the upstream is never contacted
CA_URI=http://127.0.0.1:9/pkix/

# the largest CRLANN of at most ANN_SIZE bytes: a CRL with as many entries
revoked_args() {
        local n=$1 i
        for ((i = 0; i < n; i++)); do printf -- '--revoked %x ' $((0x100000 + i)); done
}
ann_with() {
        # shellcheck disable=SC2046
        make_crlann ann 1 $(revoked_args "$1")
        stat -c %s "$T/ann.der"
}
s0=$(ann_with 0)
s8=$(ann_with 8)
n=$(((ANN_SIZE - s0) * 8 / (s8 - s0)))
while ((n >= 0)) && (($(ann_with "$n") > ANN_SIZE)); do n=$((n - 1)); done
((n >= 0)) || fail "no CRLANN fits in $ANN_SIZE bytes (the smallest has $s0)"
ANN_BYTES=$(stat -c %s "$T/ann.der")
log "CRLANN: $ANN_BYTES bytes, a CRL with $n entries"

# cmpgwd as in production (no --verbose), for N observers; sets GW_PID
start_fanout_gw() {     # BINARY N ROUND LABEL
        local bin=$1 n=$2 round=$3 per_peer=$((PER_ADDRESS > 4 ? PER_ADDRESS : 4))
        # by label: a baseline binary is called cmpgwd too, and the store
        # (beside gw.json) must be new, else the same CRL is refused as not newer
        local dir=$T/r$round-$n-$4
        GW_PORT=''
        mkdir -p "$dir"
        # max_observers: 2N, not at the limit (where cmpgwd before the paced
        # fan-out sent nothing); per peer: K per address (default 4);
        # limits.rate (20/s, burst 40 per address) would refuse K > 1
        # observers per address that all fetch their blocks at once: off then
        write_ann_config "$dir/gw.json" "c['announcements']['max_observers'] = 2 * $n
c['announcements']['max_observers_per_peer'] = $per_peer
c['registry']['path'] = '$dir/registry.db'
if $PER_ADDRESS > 1: c['limits'] = {'rate': 0}"
        "$bin" --config "$dir/gw.json" >>"$T/gw.log" 2>&1 &
        GW_PID=$!
        PIDS+=("$GW_PID")
        local i
        for ((i = 0; i < 100; i++)); do
                name_has_owner && return 0
                kill -0 "$GW_PID" 2>/dev/null || break
                sleep 0.05
        done
        tail -n 20 "$T/gw.log" >&2
        fail "cmpgwd did not start"
}

run_round() {   # LABEL BINARY N ROUND
        local label=$1 bin=$2 n=$3 round=$4 out rc=0 perf_pid=''
        start_fanout_gw "$bin" "$n" "$round" "$label"
        if ((PERF && round == 1)) && [[ $label == this ]]; then
                perf record -k CLOCK_MONOTONIC --call-graph dwarf,16384 -F 499 -o "$T/perf-$n.data" -p "$GW_PID" >/dev/null 2>&1 &
                perf_pid=$!
                sleep 0.5
        fi
        out=$("$BENCH" 127.0.0.1 "$GW_PORT" --expect "$T/ann.der" --observers "$n" --per-address "$PER_ADDRESS" \
                --gw-pid "$GW_PID" --sessions-first --timeout 60 -- "$CMPGWCTL" announce "$T/ann.der" 2>>"$T/bench.log") || rc=$?
        if [[ -n $perf_pid ]]; then
                kill -INT "$perf_pid"
                wait "$perf_pid" || true
                # the fan-out only: from the publish to the last observer
                local window
                window=$(sed -n 's/.* publish_mono=\([0-9.]*\) last_mono=\([0-9.]*\).*/\1,\2/p' <<<"$out")
                perf report -i "$T/perf-$n.data" --time "$window" --no-children --percent-limit 1 --stdio \
                        >"$T/perf-$n.txt" 2>/dev/null || true
                log "profile: $T/perf-$n.txt"
                KEEP=1
        fi
        gw_alive
        stop_gw
        echo "gw=$label round=$round $out" | tee -a "$T/results.txt"
        ((rc == 0)) || log "gw=$label round $round with $n observers: not every observer got the announcement in 60 s"
        ((rc == 0)) || [[ $label != this ]] || THIS_FAILED=1
}
THIS_FAILED=0

echo "observers=$COUNTS rounds=$ROUNDS announcement=${ANN_BYTES}B per_address=$PER_ADDRESS baseline=${BASELINE:-none}; $(nproc) cores;" \
        "load $(cut -d' ' -f1-3 /proc/loadavg); netns=${FANOUT_NETNS:-no}; $(date -u +%FT%TZ)"
for ((r = 1; r <= ROUNDS; r++)); do
        for n in $COUNTS; do
                [[ -z $BASELINE ]] || run_round base "$BASELINE" "$n" "$r"
                run_round this "$CMPGWD" "$n" "$r"
        done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$ANN_PY" - "$T/results.txt" <<'PY'
import statistics, sys
rows = [dict(x.split("=", 1) for x in line.split()) for line in open(sys.argv[1])]
keys = [("last_ms", "ms publish -> last observer complete"), ("first_ms", "ms publish -> first notification"),
        ("publish_ms", "ms cmpgwctl announce"), ("p50_ms", "ms median observer"), ("p99_ms", "ms p99 observer"),
        ("gw_tx", "datagrams sent by cmpgwd"), ("rx", "datagrams received by the observers"),
        ("dup_rx", "retransmissions received"), ("client_retx", "client retransmissions"),
        ("udp_rcvbuf_errors", "datagrams dropped (receive buffers)"),
        ("session_bytes", "B/observer: libcoap session"), ("observer_bytes", "B/observer: observe registration"),
        ("bytes_per_observer", "B/observer: session + registration (RSS)"),
        ("fanout_bytes", "B/observer: growth during the fan-out")]
med = {}
for gw, n in dict.fromkeys((r["gw"], r["observers"]) for r in rows):
    rs = [r for r in rows if r["gw"] == gw and r["observers"] == n]
    print("gw=%s observers=%s rounds=%d, complete %s (median [min..max])"
          % (gw, n, len(rs), "/".join(r["ok"] for r in rs)))
    for k, what in keys:
        v = [float(r[k]) for r in rs]
        med[gw, n, k] = statistics.median(v)
        print("  %-42s %10.1f  [%.1f .. %.1f]" % (what, med[gw, n, k], min(v), max(v)))
for gw, n, k in list(med):
    if gw == "this" and ("base", n, k) in med and k in ("last_ms", "gw_tx") and med["base", n, k] > 0:
        print("observers=%s %s this/base = %.3f" % (n, k, med[gw, n, k] / med["base", n, k]))
PY
((THIS_FAILED == 0)) || fail "build/'s cmpgwd did not deliver to every observer in every round"
