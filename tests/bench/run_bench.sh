#!/usr/bin/env bash
# run_bench.sh -- CMP exchanges through cmpgwd versus straight to the same
# fast HTTP upstream, side by side in one run (ratios; machines are noisy).
#
#   tests/bench/run_bench.sh [--nodes N] [--requests M] [--admission]
#
# --admission: instead, the cost of admission (issue 5): the same genm on an
# open listener and on a "registered" one (its senderKID admitted among
# 100,000 entries), alternately, three rounds, a fresh cmpgwd each; with
# cmpgwd's CPU time per exchange.
#
# The upstream is nginx (Debian) answering every POST with a fixed PKIMessage
# captured from `openssl cmp`: a genp (small: one CoAP PDU) and an ip (2 KiB:
# Block2). The request bodies are real genm and ir messages. Needs a build in
# build/ (tools/test.sh or meson setup build && ninja -C build).
set -euo pipefail
cd "$(dirname "$0")/../.."
NODES=50 REQUESTS=5000 ADMISSION=0
while (($#)); do
        case $1 in
        --nodes) NODES=$2; shift 2 ;;
        --requests) REQUESTS=$2; shift 2 ;;
        --admission) ADMISSION=1; shift ;;
        *) echo "usage: $0 [--nodes N] [--requests M] [--admission]" >&2; exit 2 ;;
        esac
done
export CMPGWD=$PWD/build/daemon/cmpgwd CMPCOAP=$PWD/build/cli/cmpcoap SRCDIR=$PWD
BENCH=$PWD/build/tests/bench/cmpgw_bench
[[ -x $BENCH ]] || { echo "no $BENCH: build first" >&2; exit 1; }
source tests/integration/lib.sh
source tests/bench/lib.sh
TEST_NAME=bench

make_pki
start_ca "$PKI"
ossl_cmp -cmd genm -ref "$CA_REF" -secret "$CA_SECRET" -reqout "$T/genm.der" -rspout "$T/genp.der" >"$T/cap.log" 2>&1
ossl_cmp -cmd ir -ref "$CA_REF" -secret "$CA_SECRET" -newkey "$PKI/ee.key" -subject /CN=bench \
        -implicit_confirm -disable_confirm -certout "$T/ee.pem" -trusted "$PKI/trusted.pem" \
        -reqout "$T/ir.der" -rspout "$T/ip.der" >>"$T/cap.log" 2>&1
stop_ca

mkdir -p "$T/www/pkix"
cp "$T/genp.der" "$T/www/pkix/genp"
cp "$T/ip.der" "$T/www/pkix/ip"
start_nginx "$T/www"

bench_config() {        # CONF ANSWER: one upstream, nginx serving ANSWER
        GW_PORT=''
        write_config "$1" "[ { \"name\": \"nginx\", \"uri\": \"http://127.0.0.1:$NGX_PORT/pkix/$2\", \"timeout\": 10 } ]"
        # the 50 simulated nodes all come from 127.0.0.1: per-address limits off,
        # or this would measure the limiter (limits.rate 20/s per address)
        sed -i 's/^}$/, "limits": { "rate": 0, "in_flight_per_peer": 1000000, "max_in_flight": 0 } }/' "$1"
}

bench_gw_start() {      # CONF
        # as in production: no --verbose (start_gw adds it)
        "$CMPGWD" --config "$1" >>"$T/gw.log" 2>&1 &
        GW_PID=$!
        PIDS+=("$GW_PID")
        wait_coap cmpgwd "$GW_URI" 'ct=259'
}

run_case() {    # NAME REQUEST ANSWER
        local name=$1 req=$2 ans=$3 conf=$T/gw-$1.json
        bench_config "$conf" "$ans"
        bench_gw_start "$conf"
        # the answer through the gateway is what nginx serves
        coap_req check -m post -t 259 -b 64 -f "$req" "$GW_URI/.well-known/cmp"
        cmp -s "$COAP_BODY" "$T/www/pkix/$ans" || fail "$name: the gateway's answer differs from the upstream's"
        local http coap rss0 rss1
        http=$("$BENCH" http "http://127.0.0.1:$NGX_PORT/pkix/$ans" "$req" --nodes "$NODES" --requests "$REQUESTS")
        rss0=$(rss_kb "$GW_PID")
        coap=$("$BENCH" coap "$GW_URI/.well-known/cmp" "$req" --nodes "$NODES" --requests "$REQUESTS")
        rss1=$(rss_kb "$GW_PID")
        stop_gw
        echo "case=$name request=$(stat -c %s "$req")B answer=$(stat -c %s "$T/www/pkix/$ans")B"
        echo "  direct  $http"
        echo "  cmpgwd  $coap"
        python3 - "$http" "$coap" "$rss0" "$rss1" <<'PY'
import sys
def kv(s): return dict(x.split("=", 1) for x in s.split())
h, c = kv(sys.argv[1]), kv(sys.argv[2])
print("  ratio   rate cmpgwd/direct=%.3f  p50 latency cmpgwd/direct=%.2f  p99 cmpgwd/direct=%.2f  cmpgwd RSS %s kB -> %s kB"
      % (float(c["rate"]) / float(h["rate"]), float(c["p50_ms"]) / float(h["p50_ms"]),
         float(c["p99_ms"]) / float(h["p99_ms"]), sys.argv[3], sys.argv[4]))
PY
}

# issue 5: listen[0] open, listen[1] "registered" with the genm's senderKID
# (the reference "1234") admitted among 100,000 entries put straight into
# the registry (cmpgwd made the table at its first start)
run_admission() {
        local conf=$T/gw-admission.json reg_port i which
        bench_config "$conf" genp
        reg_port=$(free_port udp)
        python3 - "$conf" "$reg_port" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["listen"].append({"uri": "coap://127.0.0.1:%s" % sys.argv[2], "admission": "registered"})
json.dump(c, open(sys.argv[1], "w"))
PY
        bench_gw_start "$conf"
        stop_gw
        python3 - "$T/registry.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executemany("INSERT INTO admitted (kind, value, label, added_at) VALUES (?, ?, '', 0)",
               [("sender", "CN=node-%06d,O=bench" % i) for i in range(99999)] + [("sender-kid", "31323334")])
db.commit()
PY
        echo "case=admission request=genm $(stat -c %s "$T/genm.der")B, 100000 admitted entries"
        # a fresh cmpgwd per run (its CPU time per exchange grows with the
        # exchanges it has served, see doc/performance.md), cases alternating;
        # cmpgwd's CPU time per exchange (utime+stime) tells the cost apart
        # from the noise of a shared machine better than the rate
        for i in 1 2 3; do
                for which in open registered; do
                        local uri=$GW_URI/.well-known/cmp t0 t1 out
                        [[ $which == registered ]] && uri=coap://127.0.0.1:$reg_port/.well-known/cmp
                        bench_gw_start "$conf"
                        coap_req check -m post -t 259 -b 64 -f "$T/genm.der" "$uri"
                        cmp -s "$COAP_BODY" "$T/www/pkix/genp" || fail "admission: $which did not forward the genm"
                        t0=$(awk '{ print $14 + $15 }' "/proc/$GW_PID/stat")
                        out=$("$BENCH" coap "$uri" "$T/genm.der" --nodes "$NODES" --requests "$REQUESTS")
                        t1=$(awk '{ print $14 + $15 }' "/proc/$GW_PID/stat")
                        stop_gw
                        printf '  round %d %-10s %s cmpgwd_cpu_us_per_exchange=%.0f\n' "$i" "$which" "$out" \
                                "$(((t1 - t0) * 1000000 / $(getconf CLK_TCK) / REQUESTS))"
                done
        done
        ! grep -q 'refused with' "$T/gw.log" || fail "admission: requests were refused"
}

echo "nodes=$NODES requests=$REQUESTS per case; $(nproc) cores; $(date -u +%FT%TZ)"
if ((ADMISSION)); then
        run_admission
        exit 0
fi
run_case small "$T/genm.der" genp
run_case large "$T/ir.der" ip
