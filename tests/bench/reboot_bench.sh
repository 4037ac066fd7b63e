#!/usr/bin/env bash
# reboot_bench.sh -- restarted nodes and what watching for them costs
# (issue 5, dtls_reboot.c), two cmpgwd side by side in one run: this
# build's and another (--other-cmpgwd BIN, e.g. one built from main before
# dtls_reboot.c). Not a test.
#
#   tests/bench/reboot_bench.sh --other-cmpgwd BIN [--rounds R]
#       [--handshakes H] [--requests Q] [--reboots B]
#
# Both run with the same configuration: a coaps listener with a PSK file,
# an upstream never contacted (the requests are GET /.well-known/core).
# Each round, for each cmpgwd in turn (the order swapped every round),
# build/tests/bench/dtls_bench measures:
#   full    H new sessions (2 threads): full PSK handshake, one GET,
#           close_notify (each ClientHello now also goes through
#           DTLSv1_listen() in cmpgwd, to learn its cookie);
#   reuse   Q GETs in kept sessions (2 threads): what peeking at the
#           socket before every read costs;
#   reboot  B iterations of a node on one fixed local port that ends each
#           session without close_notify and handshakes again (1 thread,
#           --local-port --abandon): how long a restarted node waits.
# Prints each dtls_bench line, then medians over rounds with [min–max] and
# the ratio this/other per round. cmpgwd CPU per iteration from /proc.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=3 HANDSHAKES=2000 REQUESTS=20000 REBOOTS=200 OTHER=''
while (($#)); do
        case $1 in
        --other-cmpgwd) OTHER=$(realpath "$2"); shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --handshakes) HANDSHAKES=$2; shift 2 ;;
        --requests) REQUESTS=$2; shift 2 ;;
        --reboots) REBOOTS=$2; shift 2 ;;
        *) echo "usage: $0 --other-cmpgwd BIN [--rounds R] [--handshakes H] [--requests Q] [--reboots B]" >&2; exit 2 ;;
        esac
done
[[ -x $OTHER ]] || { echo "--other-cmpgwd BIN: a cmpgwd to compare with" >&2; exit 2; }
export CMPGWD=$PWD/build/daemon/cmpgwd CMPCOAP=$PWD/build/cli/cmpcoap SRCDIR=$PWD
DTLS_BENCH=$PWD/build/tests/bench/dtls_bench
for b in "$DTLS_BENCH" "$CMPGWD"; do
        [[ -x $b ]] || { echo "no $b: build first (meson setup build && ninja -C build)" >&2; exit 1; }
done
# shellcheck source=tests/integration/lib.sh disable=SC1091
source tests/integration/lib.sh
# shellcheck source=tests/bench/lib.sh disable=SC1091
source tests/bench/lib.sh
# shellcheck disable=SC2034  # read by lib.sh
TEST_NAME=reboot-bench

PSK_KEY=k3y-for-node-psk
printf 'node-psk:%s\n' "$PSK_KEY" >"$T/psk.txt"
chmod 600 "$T/psk.txt"
declare -A BIN=([this]=$CMPGWD [other]=$OTHER) DPORT GWPID
for gw in this other; do
        port=$(free_port udp)
        DPORT[$gw]=$(free_port udp)
        cat >"$T/$gw.json" <<EOF
{ "listen": [ { "uri": "coap://127.0.0.1:$port" },
              { "uri": "coaps://127.0.0.1:${DPORT[$gw]}", "psk_file": "$T/psk.txt" } ],
  "upstreams": [ { "name": "ca", "uri": "http://127.0.0.1:9/pkix/" } ],
  "registry": { "path": "$T/$gw.db" },
  "dbus": { "bus": "none" },
  "limits": { "rate": 0 } }
EOF
        "${BIN[$gw]}" --config "$T/$gw.json" >"$T/$gw.log" 2>&1 &
        GWPID[$gw]=$!
        PIDS+=("${GWPID[$gw]}")
        wait_coap "$gw" "coap://127.0.0.1:$port" ct=259
done

echo "rounds=$ROUNDS handshakes=$HANDSHAKES requests=$REQUESTS reboots=$REBOOTS; $(nproc) cores;" \
     "$(date -u +%FT%TZ); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# run ROUND CASE GW ARGS...: one dtls_bench line, with cmpgwd's CPU
run() {
        local round=$1 case=$2 gw=$3 cpu0 out
        shift 3
        cpu0=$(cpu_ticks "${GWPID[$gw]}")
        out=$(timeout 600 "$DTLS_BENCH" 127.0.0.1 "${DPORT[$gw]}" --psk "node-psk:$PSK_KEY" "$@" 2>&1 | tail -n 1)
        echo "round=$round case=$case gw=$gw $out gw_cpu_ticks=$(($(cpu_ticks "${GWPID[$gw]}") - cpu0))" |
                tee -a "$T/results"
}
for ((r = 1; r <= ROUNDS; r++)); do
        order=(this other)
        ((r % 2)) || order=(other this)
        for gw in "${order[@]}"; do
                run "$r" full "$gw" --threads 2 --count "$HANDSHAKES"
                run "$r" reuse "$gw" --threads 2 --count "$REQUESTS" --reuse
                run "$r" reboot "$gw" --threads 1 --count "$REBOOTS" --local-port "$(free_port udp)" --abandon
        done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$T/results" <<'PY'
import re, statistics, sys
rows = [dict(re.findall(r"(\w+)=(\S+)", l)) for l in open(sys.argv[1])]
def med(xs): return "%.4g [%.4g–%.4g]" % (statistics.median(xs), min(xs), max(xs))
for case in ("full", "reuse", "reboot"):
    for gw in ("this", "other"):
        rs = [x for x in rows if x["case"] == case and x["gw"] == gw]
        ok = [x for x in rs if "rate" in x]
        if not ok:
            print(case, gw, "no result"); continue
        print("%-6s %-5s rate/s %s  p50 ms %s  failed %s  cmpgwd ms CPU/iteration %s" % (
            case, gw, med([float(x["rate"]) for x in ok]), med([float(x["p50_ms"]) for x in ok]),
            sum(int(x.get("failed", 0)) for x in ok),
            med([int(x["gw_cpu_ticks"]) * 10.0 / max(1, int(x["iterations"]) - int(x.get("failed", 0))) for x in ok])))
    ratios = []
    for r in sorted({x["round"] for x in rows}):
        a = [x for x in rows if x["case"] == case and x["round"] == r]
        t = [float(x["rate"]) for x in a if x["gw"] == "this" and "rate" in x]
        o = [float(x["rate"]) for x in a if x["gw"] == "other" and "rate" in x]
        if t and o and o[0] > 0:
            ratios.append(t[0] / o[0])
    if ratios:
        print("%-6s rate this/other per round: %s" % (case, med(ratios)))
PY
