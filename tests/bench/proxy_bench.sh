#!/usr/bin/env bash
# proxy_bench.sh -- CoAP→CoAP forwarding: cmpgwd against libcoap's own proxy
# (coap-server-openssl -P), both in front of the same CoAP upstream, with the
# upstream reached straight as the baseline; side by side in one run, given
# as ratios (the machines are noisy). Not a test.
#
#   tests/bench/proxy_bench.sh [--nodes N] [--requests M] [--lat-requests L]
#                              [--rounds R] [--fresh] [--perf FILE]
#
# The upstream is build/tests/bench/coap_upstream: it stands in for a CA
# that speaks CMP over CoAP, answering every POST to /genp or /ip with a
# fixed PKIMessage captured from `openssl cmp` (a 250-byte genp: one PDU; a
# 2.1 kB ip: Block2), so that it is never the bottleneck. The request bodies
# are the real genm and ir. Three paths, the same load generator
# (build/tests/bench/cmpgw_bench coap), the same N nodes and message:
#   direct  nodes → upstream
#   cmpgwd  nodes → cmpgwd (upstreams coap://…/genp and coap://…/ip, chosen
#           by label: the nodes post to /.well-known/cmp/p/small or /p/large)
#   libcoap nodes → coap-server-openssl -P ',proxy' (forward proxy; the
#           nodes name the upstream in a Proxy-Uri option)
# Two measurements per path and case: load (N nodes, default 50, each with
# one exchange in flight, M exchanges in all: exchanges/s) and latency (one
# node, L exchanges one after the other: nothing queues, so the difference
# to direct is the latency the forwarder adds).
# Every answer is compared byte for byte with what the upstream serves
# (--expect); a wrong or missing one is an error. Each round runs every
# path and case once, the order rotated between rounds; the summary takes
# the median over rounds. Both forwarders keep running through all rounds
# (what a gateway under sustained load sees); --fresh restarts cmpgwd and
# the proxy (and warms them up) before each of their measurements instead.
# --perf FILE records cmpgwd with `perf record -g` during the rounds (its
# figures then carry perf's overhead; not with --fresh); PERF_ARGS replaces
# -g, e.g. PERF_ARGS="--call-graph dwarf -F 400" (Debian's libcrypto and
# libcoap have no frame pointers, so -g graphs stop in them).
# Needs a build in build/ (meson setup build && ninja -C build).
set -euo pipefail
cd "$(dirname "$0")/../.."
NODES=50 REQUESTS=5000 LAT_REQUESTS=500 ROUNDS=3 PERF_OUT='' FRESH=0
while (($#)); do
        case $1 in
        --nodes) NODES=$2; shift 2 ;;
        --requests) REQUESTS=$2; shift 2 ;;
        --lat-requests) LAT_REQUESTS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        --perf) PERF_OUT=$(realpath -m "$2"); shift 2 ;;
        *) echo "usage: $0 [--nodes N] [--requests M] [--lat-requests L] [--rounds R] [--fresh] [--perf FILE]" >&2; exit 2 ;;
        esac
done
[[ -z $PERF_OUT ]] || ((FRESH == 0)) || { echo "--perf and --fresh do not go together" >&2; exit 2; }
export CMPGWD=$PWD/build/daemon/cmpgwd CMPCOAP=$PWD/build/cli/cmpcoap SRCDIR=$PWD
BENCH=$PWD/build/tests/bench/cmpgw_bench
UPSTREAM=$PWD/build/tests/bench/coap_upstream
for b in "$BENCH" "$UPSTREAM" "$CMPGWD"; do
        [[ -x $b ]] || { echo "no $b: build first (meson setup build && ninja -C build)" >&2; exit 1; }
done
command -v coap-server-openssl >/dev/null || { echo "coap-server-openssl missing: apt-get install libcoap3-bin" >&2; exit 1; }
[[ -z $PERF_OUT ]] || command -v perf >/dev/null || { echo "perf missing: apt-get install linux-perf" >&2; exit 1; }
# lib.sh: temp dir, PKI, mock CA, free ports, coap_req, cleanup of PIDS on exit
# shellcheck source=tests/integration/lib.sh disable=SC1091
source tests/integration/lib.sh
# shellcheck source=tests/bench/lib.sh disable=SC1091
source tests/bench/lib.sh
# shellcheck disable=SC2034  # read by lib.sh
TEST_NAME=proxy-bench

# ---- messages: real genm/genp and ir/ip pairs from openssl cmp
make_pki
start_ca "$PKI"
ossl_cmp -cmd genm -ref "$CA_REF" -secret "$CA_SECRET" -reqout "$T/genm.der" -rspout "$T/genp.der" >"$T/cap.log" 2>&1
ossl_cmp -cmd ir -ref "$CA_REF" -secret "$CA_SECRET" -newkey "$PKI/ee.key" -subject /CN=bench \
        -implicit_confirm -disable_confirm -certout "$T/ee.pem" -trusted "$PKI/trusted.pem" \
        -reqout "$T/ir.der" -rspout "$T/ip.der" >>"$T/cap.log" 2>&1
stop_ca

# ---- the one upstream (stands in for a CoAP CA)
UP_PORT=$(free_port udp)
UP_URI=coap://127.0.0.1:$UP_PORT
"$UPSTREAM" "$UP_PORT" "genp=$T/genp.der" "ip=$T/ip.der" >"$T/upstream.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
wait_coap upstream "$UP_URI" '</genp>'

# ---- cmpgwd, as in production: no --verbose (one log line per request)
write_config "$T/gw.json" "[
    { \"name\": \"small\", \"uri\": \"$UP_URI/genp\", \"timeout\": 10, \"labels\": [\"small\"],
      \"max_connections\": 64 },
    { \"name\": \"large\", \"uri\": \"$UP_URI/ip\", \"timeout\": 10, \"labels\": [\"large\"],
      \"max_connections\": 64 } ]"
# the simulated nodes all come from 127.0.0.1: per-address limits off, or
# this would measure the limiter; a session per node to the upstream, as
# libcoap's proxy keeps (max_connections caps cmpgwd's CoAP sessions too)
sed -i 's/^}$/, "limits": { "rate": 0, "in_flight_per_peer": 1000000, "max_in_flight": 0 } }/' "$T/gw.json"
start_cmpgwd() {
        "$CMPGWD" --config "$T/gw.json" >>"$T/gw.log" 2>&1 &
        GW_PID=$!
        PIDS+=("$GW_PID")
        wait_coap cmpgwd "$GW_URI" 'ct=259'
}
start_cmpgwd

# ---- libcoap's proxy: forward proxy (Proxy-Uri), known as "proxy"; the
# nodes' Proxy-Uri names 127.0.0.1, so every request is forwarded, over one
# ongoing session per incoming session (its own design)
PX_PORT=$(free_port udp)
PX_URI=coap://127.0.0.1:$PX_PORT
start_proxy() {
        coap-server-openssl -A 127.0.0.1 -p "$PX_PORT" -P ',proxy' >>"$T/proxy.log" 2>&1 &
        PX_PID=$!
        PIDS+=("$PX_PID")
        wait_coap coap-server-openssl "$PX_URI" '</time>'
}
start_proxy

declare -A REQ=([small]=$T/genm.der [large]=$T/ir.der)
declare -A ANS=([small]=$T/genp.der [large]=$T/ip.der)
declare -A RES=([small]=genp [large]=ip)

# bench_args PATH CASE: the load generator's target for a path
bench_args() {
        case $1 in
        direct) echo "$UP_URI/${RES[$2]}" ;;
        cmpgwd) echo "$GW_URI/.well-known/cmp/p/$2" ;;
        libcoap) echo "$PX_URI --proxy-uri $UP_URI/${RES[$2]}" ;;
        esac
}

# ---- every path gives the upstream's answer, byte for byte
for c in small large; do
        coap_req "chk-direct-$c" -m post -t 259 -b 64 -f "${REQ[$c]}" "$UP_URI/${RES[$c]}"
        cmp -s "$COAP_BODY" "${ANS[$c]}" || fail "$c: the upstream's answer is not the captured one"
        coap_req "chk-cmpgwd-$c" -m post -t 259 -b 64 -f "${REQ[$c]}" "$GW_URI/.well-known/cmp/p/$c"
        cmp -s "$COAP_BODY" "${ANS[$c]}" || { tail -n 5 "$T/gw.log" >&2; fail "$c: cmpgwd's answer differs from the upstream's"; }
        coap_req "chk-libcoap-$c" -m post -t 259 -b 64 -f "${REQ[$c]}" -P "$PX_URI" "$UP_URI/${RES[$c]}"
        cmp -s "$COAP_BODY" "${ANS[$c]}" || { tail -n 5 "$T/proxy.log" >&2; fail "$c: libcoap's proxy's answer differs"; }
done

# warm_up CASE PATH: a few exchanges, so that sessions to the upstream exist
warm_up() {
        local args
        read -ra args <<<"$(bench_args "$2" "$1")"
        "$BENCH" coap "${args[@]}" "${REQ[$1]}" --nodes "$NODES" --requests $((NODES * 4)) --timeout 30 >/dev/null
}

# libcoap's warning when a Block2 answer's ETag changes mid-transfer
etag_restarts() { grep -c 'Data body updated during receipt' "$T/gw.log" || true; }

# run_one ROUND CASE PATH NODES EXCHANGES: one measurement, one line of
# key=value appended to $T/results and shown. Not in a subshell: with
# --fresh it restarts processes whose PIDs must be kept.
run_one() {
        local round=$1 c=$2 path=$3 n=$4 m=$5 fwd up0 up1 f0 f1 out args w0
        if ((FRESH)); then
                case $path in
                cmpgwd) stop_pid "$GW_PID"; start_cmpgwd; warm_up "$c" "$path" ;;
                libcoap) stop_pid "$PX_PID"; start_proxy; warm_up "$c" "$path" ;;
                esac
        fi
        case $path in
        direct) fwd='' ;;
        cmpgwd) fwd=$GW_PID ;;
        libcoap) fwd=$PX_PID ;;
        esac
        read -ra args <<<"$(bench_args "$path" "$c")"
        w0=$(etag_restarts)
        up0=$(cpu_ticks "$UP_PID")
        f0=${fwd:+$(cpu_ticks "$fwd")}
        out=$("$BENCH" coap "${args[@]}" "${REQ[$c]}" --nodes "$n" --requests "$m" --expect "${ANS[$c]}" --timeout 30)
        up1=$(cpu_ticks "$UP_PID")
        f1=${fwd:+$(cpu_ticks "$fwd")}
        echo "round=$round case=$c path=$path $out fwd_cpu_ticks=$((${f1:-0} - ${f0:-0})) up_cpu_ticks=$((up1 - up0))" \
                "gw_etag_restarts=$(($(etag_restarts) - w0))" >>"$T/results"
        tail -n 1 "$T/results"
}

for c in small large; do
        for p in direct cmpgwd libcoap; do
                warm_up "$c" "$p"
        done
done

PERF_PID=''
if [[ -n $PERF_OUT ]]; then
        read -ra perf_args <<<"${PERF_ARGS:--g}"
        perf record "${perf_args[@]}" -p "$GW_PID" -o "$PERF_OUT" >"$T/perf.log" 2>&1 &
        PERF_PID=$!
        PIDS+=("$PERF_PID")
        sleep 0.5
fi

echo "load: nodes=$NODES requests=$REQUESTS; latency: nodes=1 requests=$LAT_REQUESTS; rounds=$ROUNDS fresh=$FRESH; $(nproc) cores; $(date -u +%FT%TZ); $(coap-server-openssl -h 2>&1 | grep -m1 -o 'coap-server-openssl v[0-9.]*' || true)"
echo "request/answer: small $(stat -c %s "${REQ[small]}") B -> $(stat -c %s "${ANS[small]}") B, large $(stat -c %s "${REQ[large]}") B -> $(stat -c %s "${ANS[large]}") B"
rss_gw0=$(rss_kb "$GW_PID") rss_px0=$(rss_kb "$PX_PID")
paths=(direct cmpgwd libcoap)
: >"$T/results"
for ((round = 1; round <= ROUNDS; round++)); do
        for c in small large; do
                for ((i = 0; i < 3; i++)); do
                        run_one "$round" "$c" "${paths[(i + round - 1) % 3]}" "$NODES" "$REQUESTS"
                done
                for ((i = 0; i < 3; i++)); do
                        run_one "$round" "$c" "${paths[(i + round - 1) % 3]}" 1 "$LAT_REQUESTS"
                done
        done
done
((FRESH)) || echo "RSS: cmpgwd $rss_gw0 -> $(rss_kb "$GW_PID") kB, coap-server-openssl $rss_px0 -> $(rss_kb "$PX_PID") kB"

if [[ -n $PERF_PID ]]; then
        kill -INT "$PERF_PID"
        wait "$PERF_PID" || true
        keep=(); for p in "${PIDS[@]}"; do [[ $p == "$PERF_PID" ]] || keep+=("$p"); done; PIDS=("${keep[@]}")
        echo "perf data: $PERF_OUT (perf report -i $PERF_OUT --no-children)"
        perf report -i "$PERF_OUT" --no-children --sort dso,symbol --stdio 2>/dev/null |
                grep -E '^ +[0-9.]+%' | head -n 15 || true
fi

python3 - "$T/results" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1])]
tck = float(sys.argv[2])
PATHS = ("direct", "cmpgwd", "libcoap")
def sel(case, path, load):
    return [r for r in rows if r["case"] == case and r["path"] == path and (r["nodes"] != "1") == load]
def med(case, path, load, key):
    return statistics.median(float(r[key]) for r in sel(case, path, load))
def cpu_us(case, path, load, key):
    rs = sel(case, path, load)
    return 1e6 * sum(float(r[key]) / tck for r in rs) / max(1, sum(int(r["exchanges"]) for r in rs))
for load, title in ((True, "load (%s nodes)" % next(r["nodes"] for r in rows if r["nodes"] != "1")),
                    (False, "latency (1 node)")):
    print("\n%s: median over rounds of exchanges/s and ms; errors (lost) summed; CPU µs per exchange" % title)
    print("%-6s %-8s %9s %8s %8s %8s %11s %8s %8s" % ("case", "path", "rate", "mean", "p50", "p99", "errors", "fwd_cpu", "up_cpu"))
    for c in ("small", "large"):
        for p in PATHS:
            rs = sel(c, p, load)
            errs = "%d (%d)" % (sum(int(r["errors"]) for r in rs), sum(int(r["lost"]) for r in rs))
            print("%-6s %-8s %9.0f %8.3f %8.3f %8.3f %11s %8s %8.0f" % (
                c, p, med(c, p, load, "rate"), med(c, p, load, "mean_ms"), med(c, p, load, "p50_ms"),
                med(c, p, load, "p99_ms"), errs,
                "-" if p == "direct" else "%.0f" % cpu_us(c, p, load, "fwd_cpu_ticks"), cpu_us(c, p, load, "up_cpu_ticks")))
etag = sum(int(r["gw_etag_restarts"]) for r in rows if r["path"] == "cmpgwd")
if etag:
    print("cmpgwd's upstream client restarted %d Block2 transfers ('Data body updated during receipt')" % etag)

def ratio_range(c, load, key):
    rr = sorted(float(g[key]) / float(x[key]) for g in sel(c, "cmpgwd", load) for x in sel(c, "libcoap", load)
                if g["round"] == x["round"])
    return "%.3f..%.3f" % (rr[0], rr[-1])
print("\nratios, cmpgwd / libcoap proxy (medians; per-round range in brackets):")
for c in ("small", "large"):
    print("  %s:" % c)
    print("    exchanges/s under load     %.3f  [%s]" % (
        med(c, "cmpgwd", True, "rate") / med(c, "libcoap", True, "rate"), ratio_range(c, True, "rate")))
    print("    CPU per exchange under load %.2f" % (
        cpu_us(c, "cmpgwd", True, "fwd_cpu_ticks") / max(1e-9, cpu_us(c, "libcoap", True, "fwd_cpu_ticks"))))
    for k, name in (("mean_ms", "mean"), ("p50_ms", "p50"), ("p99_ms", "p99")):
        d = med(c, "direct", False, k)
        ag, ax = med(c, "cmpgwd", False, k) - d, med(c, "libcoap", False, k) - d
        print("    added latency, %-4s       cmpgwd %+.3f ms, libcoap %+.3f ms: %s" % (
            name, ag, ax, "%.2f" % (ag / ax) if ax > 0 else "n/a"))
PY
