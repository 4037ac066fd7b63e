#!/usr/bin/env bash
# sec_bench.sh -- coaps versus coap, DTLS handshakes, and a flood from one
# address (issue 5), side by side in one run, interleaved rounds, medians
# and spread (the machines are noisy). Not a test.
#
#   tests/bench/sec_bench.sh [--rounds R] [--parts enrol,handshake,flood,loss]
#       [--nodes N] [--enrolments M] [--lat-enrolments L]
#       [--handshakes H] [--threads T]
#       [--flood-rate F] [--flood-seconds S] [--victim-rate V]
#       [--loss P] [--loss-nodes N] [--loss-enrolments M]
#       [--results FILE] [--resuming-cmpgwd BIN] [--sustained]
#
# One cmpgwd (no --verbose: one log line per request) with a coap:// and a
# coaps:// listener (PSK file, certificate, client_ca) in front of nginx
# (Debian's nginx-light) answering with messages captured from `openssl
# cmp`: ir → ip (2.1 kB), certConf → pkiConf, genm → genp. OpenSSL's mock CA
# cannot be the upstream: it serves one transaction at a time and fails
# interleaved ones (PEERS.md), so it would measure itself. nginx serves one
# file per URL, so the nodes post the ir to /.well-known/cmp/p/ir and the
# certConf to /p/conf, two upstreams chosen by label; cmpgwd checks both
# messages and records each enrolment in its registry, as for a CA.
#
# enrol: enrolments (ir → ip → certConf → pkiConf, the whole sequence is one
#   exchange) by build/tests/bench/cmpgw_bench over coap, coaps with a PSK
#   (identity = the CA reference 1234) and coaps with a client certificate: load (N nodes, default
#   20, each one enrolment at a time, M in all, default 2000: enrolments/s,
#   p50/p95) and latency (one node, L enrolments, default 300). Sessions
#   are kept (one DTLS handshake per node, in an unmeasured warm-up).
#   cmpgwd is started afresh, on an empty registry, for each of these
#   measurements: its cost per exchange grows with what it did in the
#   last 93 s (libcoap's Block1 state, doc/performance.md), which would
#   otherwise depend on the order of the cases. --sustained: one cmpgwd
#   for all of them.
# handshake: build/tests/bench/dtls_bench, T threads (default 2), H
#   iterations (default 1000) of: a new DTLS session + one CoAP GET of
#   /.well-known/core + close_notify (PSK; certificates), the same offering
#   the previous session for resumption (cmpgwd refuses: resumed=0), the
#   GET in one kept session (reuse), and over plain coap. And once a round,
#   a node that reboots: a handshake, the session dropped without
#   close_notify, a new handshake from the same address and port (cmpgwd
#   still holds the old session; how long the new one takes, or fails).
#   --resuming-cmpgwd BIN: also a cmpgwd built from a commit before
#   4374fb9 (which still resumed sessions), with the same configuration, for
#   what resumption would give: PSK handshakes offering the previous
#   session against it (case psk-resume-old).
# flood: two other cmpgwd with the same upstreams, one with the default
#   limits (limits.rate 20/s, burst 40, 16 in flight per address), one
#   with limits off. Victims: 127.0.0.1 and 127.0.0.2, 4 nodes each,
#   V enrolments/s each (default 4) for S seconds (default 20), latency
#   from the schedule, the flood running from 1 s before to 2 s after. Cases: no flood; 127.0.0.3 sending F genm/s
#   (default 5000, Confirmable, never retransmitted, 8 sockets) to the
#   gateway with limits; the same flood to the gateway without limits.
#   The flood's answers are counted by code (4.29: refused by the limits),
#   and the datagrams the kernel dropped at cmpgwd's socket (full receive
#   buffer, /proc/net/udp) during the case.
# loss: what lost datagrams do to enrolments. tests/bench/lossy_relay.py
#   (it stands in for a lossy link: loopback here has no netem) drops P of
#   the datagrams each way (default 0.05, seeded, the same sequence for
#   both cases); N nodes (default 10), M enrolments (default 50), each
#   given up after 30 s: through cmpgwd, and straight to
#   build/tests/bench/coap_upstream (a libcoap server answering /ip and
#   /pkiconf with the same captured messages, piggybacked) as reference.
#
# Each round runs every case once, the order rotated between rounds; the
# summary gives medians over rounds and the [min–max] spread, ratios per
# round. CPU: cmpgwd's user+system time per exchange (from /proc). Load
# generators, cmpgwd and nginx share the machine's cores with whatever
# else runs: the load average is printed before and after.
# Needs a build in build/ (meson setup build && ninja -C build).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=3 PARTS=enrol,handshake,flood,loss NODES=20 ENROL=2000 LAT_ENROL=300 HANDSHAKES=1000 THREADS=2
FLOOD_RATE=5000 FLOOD_SECONDS=20 VICTIM_RATE=4 RESULTS='' OLD_GW='' SUSTAINED=0
LOSS=0.05 LOSS_NODES=10 LOSS_ENROL=50
while (($#)); do
        case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --parts) PARTS=$2; shift 2 ;;
        --nodes) NODES=$2; shift 2 ;;
        --enrolments) ENROL=$2; shift 2 ;;
        --lat-enrolments) LAT_ENROL=$2; shift 2 ;;
        --handshakes) HANDSHAKES=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --flood-rate) FLOOD_RATE=$2; shift 2 ;;
        --flood-seconds) FLOOD_SECONDS=$2; shift 2 ;;
        --victim-rate) VICTIM_RATE=$2; shift 2 ;;
        --results) RESULTS=$(realpath -m "$2"); shift 2 ;;
        --resuming-cmpgwd) OLD_GW=$(realpath "$2"); shift 2 ;;
        --sustained) SUSTAINED=1; shift ;;
        --loss) LOSS=$2; shift 2 ;;
        --loss-nodes) LOSS_NODES=$2; shift 2 ;;
        --loss-enrolments) LOSS_ENROL=$2; shift 2 ;;
        *) sed -n '2,12p' "$0" >&2; exit 2 ;;
        esac
done
export CMPGWD=$PWD/build/daemon/cmpgwd CMPCOAP=$PWD/build/cli/cmpcoap SRCDIR=$PWD
BENCH=$PWD/build/tests/bench/cmpgw_bench
DTLS_BENCH=$PWD/build/tests/bench/dtls_bench
UPSTREAM=$PWD/build/tests/bench/coap_upstream
for b in "$BENCH" "$DTLS_BENCH" "$UPSTREAM" "$CMPGWD"; do
        [[ -x $b ]] || { echo "no $b: build first (meson setup build && ninja -C build)" >&2; exit 1; }
done
# shellcheck source=tests/integration/lib.sh disable=SC1091
source tests/integration/lib.sh
# shellcheck source=tests/bench/lib.sh disable=SC1091
source tests/bench/lib.sh
# shellcheck disable=SC2034  # read by lib.sh
TEST_NAME=sec-bench
part() { [[ ,$PARTS, == *,$1,* ]]; }

# ---- messages and the upstream
make_pki
P=$PKI
start_ca "$P"
capture_messages "$T/msg"
stop_ca
mkdir -p "$T/www/pkix"
for f in ip pkiconf genp; do cp "$T/msg/$f.der" "$T/www/pkix/$f"; done
start_nginx "$T/www"
UP=http://127.0.0.1:$NGX_PORT/pkix
# the PSK identity is the captured messages' senderKID (the CA's reference
# value): over a PSK session a MAC-protected message's senderKID must name
# the PSK identity (admission binding, RFC 9482 §4 / issue 5)
PSK_ID=$CA_REF
PSK_KEY=k3y-for-node-psk
printf '%s:%s\n' "$PSK_ID" "$PSK_KEY" >"$T/psk.txt"
chmod 600 "$T/psk.txt"

# gw_config FILE COAP_PORT COAPS_PORT LIMITS_JSON
gw_config() {
        python3 - "$@" "$UP" "$T" "$P" <<'PY'
import json, sys
f, port, dport, limits, up, t, p = sys.argv[1:]
c = {
    "listen": [{"uri": "coap://127.0.0.1:%s" % port}],
    "upstreams": [
        {"name": "ir", "uri": up + "/ip", "labels": ["ir"], "timeout": 10},
        {"name": "conf", "uri": up + "/pkiconf", "labels": ["conf"], "timeout": 10},
        {"name": "genm", "uri": up + "/genp", "default": True, "timeout": 10}],
    "registry": {"path": "%s/%s.db" % (t, f.rsplit("/", 1)[-1])},
    "dbus": {"bus": "none"},
}
if dport != "-":
    c["listen"].append({"uri": "coaps://127.0.0.1:%s" % dport, "psk_file": t + "/psk.txt",
                        "certificate": p + "/gw-dtls-chain.pem", "private_key": p + "/gw-dtls.key",
                        "client_ca": p + "/chain.pem"})
if limits:
    c["limits"] = json.loads(limits)
json.dump(c, open(f, "w"), indent=2)
PY
}

# start_bench_gw NAME CONFIG PORT [BINARY]: cmpgwd, as in production (no
# --verbose); its PID in GWPID[NAME]
declare -A GWPID
start_bench_gw() {
        "${4:-$CMPGWD}" --config "$2" >>"$T/$1.log" 2>&1 &
        GWPID[$1]=$!
        PIDS+=("${GWPID[$1]}")
        wait_coap "cmpgwd $1" "coap://127.0.0.1:$3" 'ct=259'
}

# restart_main: cmpgwd "main" again, on an empty registry
restart_main() {
        stop_pid "${GWPID[main]}"
        rm -f "$T/main.json.db" "$T/main.json.db-wal" "$T/main.json.db-shm"
        start_bench_gw main "$T/main.json" "$MAIN_PORT"
}

# udp_drops PORT: datagrams the kernel dropped at the socket on 127.0.0.1:PORT
udp_drops() {
        awk -v a="$(printf '0100007F:%04X' "$1")" '$2 == a { print $NF }' /proc/net/udp
}

# enrol_args URI: cmpgw_bench's sequence of one enrolment through the gateway at URI
enrol_args() {
        echo "$1/.well-known/cmp/p/ir $T/msg/ir.der $1/.well-known/cmp/p/conf $T/msg/certconf.der" \
             "--expect $T/msg/ip.der --expect $T/msg/pkiconf.der"
}

: >"$T/results"
# result PART ROUND CASE GW_NAME CPU0 OUTPUT: one line to $T/results, shown
result() {
        local cpu=$(($(cpu_ticks "${GWPID[$4]}") - $5))
        echo "part=$1 round=$2 case=$3 $6 gw_cpu_ticks=$cpu" >>"$T/results"
        tail -n 1 "$T/results"
}

echo "rounds=$ROUNDS parts=$PARTS; $(nproc) cores; $(date -u +%FT%TZ); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "messages: ir $(stat -c %s "$T/msg/ir.der") B → ip $(stat -c %s "$T/msg/ip.der") B," \
     "certConf $(stat -c %s "$T/msg/certconf.der") B → pkiConf $(stat -c %s "$T/msg/pkiconf.der") B," \
     "genm $(stat -c %s "$T/msg/genm.der") B → genp $(stat -c %s "$T/msg/genp.der") B"

if part enrol || part handshake || part loss; then
        MAIN_PORT=$(free_port udp) MAIN_DPORT=$(free_port udp)
        gw_config "$T/main.json" "$MAIN_PORT" "$MAIN_DPORT" '{"rate": 0, "in_flight_per_peer": 1000000, "max_in_flight": 0}'
        start_bench_gw main "$T/main.json" "$MAIN_PORT"
        COAP=coap://127.0.0.1:$MAIN_PORT COAPS=coaps://127.0.0.1:$MAIN_DPORT
        declare -A TRANSPORT=(
                [coap]="$(enrol_args "$COAP")"
                [psk]="$(enrol_args "$COAPS") --psk $PSK_ID:$PSK_KEY"
                [cert]="$(enrol_args "$COAPS") --cert $P/client-dtls.pem --key $P/client-dtls.key --ca $P/trusted.pem")
        # every transport enrols, byte for byte what the upstream serves
        checked=(coap)
        part loss && ! part enrol && ! part handshake || checked+=(psk cert)   # loss runs over coap only
        for tr in "${checked[@]}"; do
                read -ra args <<<"${TRANSPORT[$tr]}"
                out=$("$BENCH" coap "${args[@]}" --nodes 1 --requests 3 --timeout 10)
                [[ $out == *" errors=0 "* ]] || fail "$tr: the enrolment through cmpgwd failed: $out"
        done
fi

if part enrol; then
        order=(coap psk cert)
        for ((round = 1; round <= ROUNDS; round++)); do
                for ((i = 0; i < 3; i++)); do
                        tr=${order[(i + round - 1) % 3]}
                        read -ra args <<<"${TRANSPORT[$tr]}"
                        ((SUSTAINED)) || restart_main
                        c0=$(cpu_ticks "${GWPID[main]}")
                        out=$("$BENCH" coap "${args[@]}" --nodes "$NODES" --requests "$ENROL" --warm-up 1 --timeout 30)
                        result enrol "$round" "$tr-load" main "$c0" "$out"
                        ((SUSTAINED)) || restart_main
                        c0=$(cpu_ticks "${GWPID[main]}")
                        out=$("$BENCH" coap "${args[@]}" --nodes 1 --requests "$LAT_ENROL" --warm-up 2 --timeout 30)
                        result enrol "$round" "$tr-1node" main "$c0" "$out"
                done
        done
fi

if part handshake; then
        ((SUSTAINED)) || restart_main
        H_PSK=(--psk "$PSK_ID:$PSK_KEY")
        H_CERT=(--cert "$P/client-dtls.pem" --key "$P/client-dtls.key" --ca "$P/trusted.pem")
        cases=(plain psk-full cert-full psk-resume cert-resume psk-reuse cert-reuse)
        if [[ -n $OLD_GW ]]; then
                OLD_PORT=$(free_port udp) OLD_DPORT=$(free_port udp)
                gw_config "$T/old.json" "$OLD_PORT" "$OLD_DPORT" '{"rate": 0, "in_flight_per_peer": 1000000, "max_in_flight": 0}'
                start_bench_gw old "$T/old.json" "$OLD_PORT" "$OLD_GW"
                cases+=(psk-resume-old)
        fi
        for ((round = 1; round <= ROUNDS; round++)); do
                for ((i = 0; i < ${#cases[@]}; i++)); do
                        hc=${cases[(i + round - 1) % ${#cases[@]}]}
                        gw=main port=$MAIN_DPORT
                        [[ $hc == *-old ]] && gw=old port=$OLD_DPORT
                        case $hc in
                        plain) args=(127.0.0.1 "$MAIN_PORT" --plain) ;;
                        psk-*) args=(127.0.0.1 "$port" "${H_PSK[@]}") ;;
                        cert-*) args=(127.0.0.1 "$port" "${H_CERT[@]}") ;;
                        esac
                        case $hc in
                        *-resume*) args+=(--resume) ;;
                        *-reuse) args+=(--reuse) ;;
                        esac
                        c0=$(cpu_ticks "${GWPID[$gw]}")
                        out=$("$DTLS_BENCH" "${args[@]}" --threads "$THREADS" --count "$HANDSHAKES")
                        result handshake "$round" "$hc" "$gw" "$c0" "$out"
                done
                c0=$(cpu_ticks "${GWPID[main]}")
                out=$("$DTLS_BENCH" 127.0.0.1 "$MAIN_DPORT" "${H_PSK[@]}" --threads 1 --count 2 \
                        --local-port "$(free_port udp)" --abandon)
                result handshake "$round" reboot main "$c0" "$out"
        done
fi
[[ -z ${GWPID[main]:-} ]] || echo "cmpgwd (main) RSS after enrol/handshake: $(rss_kb "${GWPID[main]}") kB"

if part flood; then
        LIM_PORT=$(free_port udp) FREE_PORT=$(free_port udp)
        gw_config "$T/lim.json" "$LIM_PORT" - ''
        gw_config "$T/free.json" "$FREE_PORT" - '{"rate": 0, "in_flight_per_peer": 1000000, "max_in_flight": 0}'
        start_bench_gw lim "$T/lim.json" "$LIM_PORT"
        start_bench_gw free "$T/free.json" "$FREE_PORT"
        victims=$((VICTIM_RATE * FLOOD_SECONDS))
        cases=(none limited unlimited)
        for ((round = 1; round <= ROUNDS; round++)); do
                for ((i = 0; i < 3; i++)); do
                        fc=${cases[(i + round - 1) % 3]}
                        gw=lim port=$LIM_PORT
                        [[ $fc == unlimited ]] && gw=free port=$FREE_PORT
                        c0=$(cpu_ticks "${GWPID[$gw]}")
                        d0=$(udp_drops "$port")
                        w0=$EPOCHREALTIME
                        fpid=''
                        if [[ $fc != none ]]; then
                                "$BENCH" flood "coap://127.0.0.1:$port/.well-known/cmp" "$T/msg/genm.der" \
                                        --rate "$FLOOD_RATE" --seconds $((FLOOD_SECONDS + 3)) --source 127.0.0.3 \
                                        >"$T/flood.out" &
                                fpid=$!
                                sleep 1
                        fi
                        read -ra args <<<"$(enrol_args "coap://127.0.0.1:$port")"
                        vpids=()
                        for src in 127.0.0.1 127.0.0.2; do
                                # no warm-up: plain coap has no handshake, and a warm-up
                                # lost in the flood would push the measurement past it
                                "$BENCH" coap "${args[@]}" --source "$src" --nodes 4 --rate "$VICTIM_RATE" \
                                        --requests "$victims" --timeout 30 >"$T/victim-$src.out" &
                                vpids+=($!)
                        done
                        wait "${vpids[@]}"
                        [[ -z $fpid ]] || wait "$fpid"
                        drops=$(($(udp_drops "$port") - d0))
                        wall=$(awk -v a="$w0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
                        for src in 127.0.0.1 127.0.0.2; do
                                result flood "$round" "$fc" "$gw" "$c0" "victim=$src $(cat "$T/victim-$src.out") udp_drops=$drops wall_s=$wall"
                        done
                        [[ -z $fpid ]] || result flood "$round" "$fc-flood" "$gw" "$c0" "$(cat "$T/flood.out") udp_drops=$drops wall_s=$wall"
                done
        done
fi
if part loss; then
        UP_PORT=$(free_port udp)
        "$UPSTREAM" "$UP_PORT" "ip=$T/msg/ip.der" "pkiconf=$T/msg/pkiconf.der" >"$T/upstream.log" 2>&1 &
        PIDS+=($!)
        wait_coap coap_upstream "coap://127.0.0.1:$UP_PORT" '</ip>'
        cases=(cmpgwd libcoap)
        for ((round = 1; round <= ROUNDS; round++)); do
                for ((i = 0; i < 2; i++)); do
                        lc=${cases[(i + round - 1) % 2]}
                        ((SUSTAINED)) || [[ $lc != cmpgwd ]] || restart_main
                        relay_port=$(free_port udp)
                        target=$MAIN_PORT
                        [[ $lc == libcoap ]] && target=$UP_PORT
                        python3 tests/bench/lossy_relay.py "$relay_port" "$target" "$LOSS" "$round" >"$T/relay.out" 2>&1 &
                        relay=$!
                        PIDS+=("$relay")
                        for ((w = 0; w < 50; w++)); do grep -q ready "$T/relay.out" && break; sleep 0.1; done
                        u=coap://127.0.0.1:$relay_port
                        if [[ $lc == cmpgwd ]]; then
                                read -ra args <<<"$(enrol_args "$u")"
                        else
                                args=("$u/ip" "$T/msg/ir.der" "$u/pkiconf" "$T/msg/certconf.der"
                                      --expect "$T/msg/ip.der" --expect "$T/msg/pkiconf.der")
                        fi
                        c0=$(cpu_ticks "${GWPID[main]}")
                        out=$("$BENCH" coap "${args[@]}" --nodes "$LOSS_NODES" --requests "$LOSS_ENROL" --timeout 30)
                        stop_pid "$relay"
                        result loss "$round" "$lc" main "$c0" "$out $(tail -n 1 "$T/relay.out")"
                done
        done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -z $RESULTS ]] || cp "$T/results" "$RESULTS"

python3 - "$T/results" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1])]
tck = float(sys.argv[2])
def sel(part, case, **kw):
    return [r for r in rows if r["part"] == part and r["case"] == case
            and all(r.get(k) == v for k, v in kw.items())]
def med(rs, key):
    v = [float(r[key]) for r in rs]
    return statistics.median(v), min(v), max(v)
def fmt(t, unit="", prec=1):
    m, lo, hi = t
    return "%.*f%s [%.*f–%.*f]" % (prec, m, unit, prec, lo, prec, hi)
def cpu_per(rs, key):
    return statistics.median(1e3 * float(r["gw_cpu_ticks"]) / tck / max(1, float(r[key])) for r in rs)
def ratios(part, a, b, key, **kw):
    ra = {r["round"]: float(r[key]) for r in sel(part, a, **kw)}
    rb = {r["round"]: float(r[key]) for r in sel(part, b, **kw)}
    v = sorted(ra[k] / rb[k] for k in ra if k in rb and rb[k] > 0)
    return (statistics.median(v), v[0], v[-1]) if v else None

if any(r["part"] == "enrol" for r in rows):
    print("\nenrolments (ir→ip→certConf→pkiConf): medians over rounds [min–max]; CPU = cmpgwd ms per enrolment")
    print("%-6s %-26s %-24s %-24s %-24s %8s %6s" % ("", "rate /s", "p50 ms", "p95 ms", "p99 ms", "CPU ms", "errors"))
    for kind, label in (("load", "load (%s nodes)" % next(r["nodes"] for r in rows if r["case"].endswith("-load"))),
                        ("1node", "one node")):
        print(label + ":")
        for tr in ("coap", "psk", "cert"):
            rs = sel("enrol", "%s-%s" % (tr, kind))
            if not rs:
                continue
            print("  %-4s %-26s %-24s %-24s %-24s %8.2f %6d" % (
                tr, fmt(med(rs, "rate")), fmt(med(rs, "p50_ms"), prec=2), fmt(med(rs, "p95_ms"), prec=2),
                fmt(med(rs, "p99_ms"), prec=2), cpu_per(rs, "exchanges"), sum(int(r["errors"]) for r in rs)))
        for tr in ("psk", "cert"):
            for key in ("rate", "p50_ms", "p95_ms"):
                q = ratios("enrol", "%s-%s" % (tr, kind), "coap-%s" % kind, key)
                if q:
                    print("  ratio %s/coap %-7s %.3f [%.3f–%.3f]" % (tr, key, *q))

if any(r["part"] == "handshake" for r in rows):
    print("\nhandshakes: iterations/s (each a new DTLS session + one GET, unless reuse/plain); CPU = cmpgwd ms per iteration")
    for hc in ("plain", "psk-full", "cert-full", "psk-resume", "cert-resume", "psk-reuse", "cert-reuse",
               "psk-resume-old"):
        rs = sel("handshake", hc)
        if not rs:
            continue
        print("  %-12s %-28s p50 %-22s p95 %-22s CPU %.3f ms  failed %d  resumed %d  %s" % (
            hc, fmt(med(rs, "rate")), fmt(med(rs, "p50_ms"), prec=2), fmt(med(rs, "p95_ms"), prec=2),
            cpu_per(rs, "iterations"), sum(int(r["failed"]) for r in rs), sum(int(r["resumed"]) for r in rs),
            rs[0]["cipher"]))
    rb = sel("handshake", "reboot")
    if rb:
        print("  reboot: a second handshake from the same port without close_notify: %d of %d failed (%.1f s each)" % (
            sum(int(r["failed"]) for r in rb), len(rb), statistics.median(float(r["seconds"]) for r in rb)))
    for a, b in (("psk-full", "psk-reuse"), ("cert-full", "cert-reuse"), ("cert-full", "psk-full"),
                 ("psk-full", "psk-resume-old")):
        q = ratios("handshake", a, b, "rate")
        if q:
            print("  rate ratio %s/%s %.4f [%.4f–%.4f]" % (a, b, *q))

if any(r["part"] == "loss" for r in rows):
    print("\nenrolments through a link that drops datagrams (lossy_relay.py): medians over rounds [min–max]")
    for lc in ("cmpgwd", "libcoap"):
        rs = sel("loss", lc)
        if not rs:
            continue
        print("  %-8s rate %-22s p50 %-26s p95 %-26s errors %d lost (30 s) %d of %d; dropped %d of %d datagrams" % (
            lc, fmt(med(rs, "rate"), prec=2), fmt(med(rs, "p50_ms"), prec=0), fmt(med(rs, "p95_ms"), prec=0),
            sum(int(r["errors"]) for r in rs), sum(int(r["lost"]) for r in rs), sum(int(r["exchanges"]) for r in rs),
            sum(int(r.get("dropped_up", 0)) + int(r.get("dropped_down", 0)) for r in rs),
            sum(int(r.get("forwarded", 0)) + int(r.get("dropped_up", 0)) + int(r.get("dropped_down", 0)) for r in rs)))

if any(r["part"] == "flood" for r in rows):
    print("\nflood: victims' enrolment latency (ms, from the schedule), medians over rounds [min–max]")
    for fc in ("none", "limited", "unlimited"):
        for src in ("127.0.0.1", "127.0.0.2"):
            rs = sel("flood", fc, victim=src)
            if not rs:
                continue
            print("  %-9s %-9s done %-5s p50 %-24s p95 %-24s p99 %-24s errors %d lost %d (of %d)" % (
                fc, src, rs[0]["exchanges"], fmt(med(rs, "p50_ms"), prec=2), fmt(med(rs, "p95_ms"), prec=2),
                fmt(med(rs, "p99_ms"), prec=2), sum(int(r["errors"]) for r in rs), sum(int(r["lost"]) for r in rs),
                sum(int(r["exchanges"]) for r in rs)))
        fl = sel("flood", fc + "-flood")
        if fl:
            print("  %-9s flood     sent/s %-22s answered %s 2.xx %s 4.29 %s 5.03 %s none %s; dropped at the socket %s"
                  " (medians); cmpgwd CPU %.0f %% of a core" % (
                fc, fmt(med(fl, "rate"), prec=0), *("%.0f" % med(fl, k)[0] for k in
                                                    ("answered", "c2xx", "c429", "c503", "unanswered", "udp_drops")),
                statistics.median(100 * float(r["gw_cpu_ticks"]) / tck / float(r["wall_s"]) for r in fl)))
        elif fc == "none":
            rs = sel("flood", "none")
            if rs:
                print("  %-9s (no flood) dropped at the socket: %.0f (median); cmpgwd CPU %.0f %% of a core" % (
                    fc, med(rs, "udp_drops")[0],
                    statistics.median(100 * float(r["gw_cpu_ticks"]) / tck / float(r["wall_s"]) for r in rs)))
    for fc in ("limited", "unlimited"):
        for key in ("p50_ms", "p95_ms"):
            q = ratios("flood", fc, "none", key, victim="127.0.0.1")
            q2 = ratios("flood", fc, "none", key, victim="127.0.0.2")
            if q and q2:
                print("  %s/none %s: 127.0.0.1 %.2f [%.2f–%.2f], 127.0.0.2 %.2f [%.2f–%.2f]" % (fc, key, *q, *q2))
PY
