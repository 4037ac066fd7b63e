#!/usr/bin/env bash
# poll_bench.sh -- what genm polling costs cmpgwd (issue 4). Not a test.
#
#   tests/bench/poll_bench.sh [--seconds S] [--interval I] [--rounds R]
#
# Two gateways run side by side in one run, idle but for polling: "poll"
# polls tests/announce/ca_poll_fixture.py (it stands in for a CA answering
# genm, which OpenSSL 3.0 cannot) every I seconds (default 1) for CA
# certificates (two), a root CA update (none) and CRLs (one, cached after
# the first cycle); "idle" has the same configuration without "poll". After
# the first cycles (which announce) every answer is unchanged, the steady
# state. For S seconds (default 60) per round the script counts the genm the
# fixture answered and reads both daemons' CPU time (utime + stime from
# /proc/PID/stat); it prints, per round and as the median, the CPU time per
# poll cycle (3 genm transactions) the poller adds over the idle gateway.
# Needs a build in build/ (meson setup build && ninja -C build).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_ROUND=60 INTERVAL=1 ROUNDS=3
while (($#)); do
        case $1 in
        --seconds) SECONDS_PER_ROUND=$2; shift 2 ;;
        --interval) INTERVAL=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        *) echo "usage: $0 [--seconds S] [--interval I] [--rounds R]" >&2; exit 2 ;;
        esac
done
export SRCDIR=$PWD CMPGWD=$PWD/build/daemon/cmpgwd CMPCOAP=$PWD/build/cli/cmpcoap
# shellcheck source=tests/announce/lib.sh
source tests/announce/lib.sh
require_gw
require_mkann

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
genm_count() { wc -l <"$T/fx/requests.log"; }

make_pki
mkdir -p "$T/fx"
cat "$PKI/ica.pem" "$PKI/root.pem" >"$T/fx/cacerts.pem"
mkann mkcrl --ca-cert "$PKI/ica.pem" --ca-key "$PKI/ica.key" --number 1 --revoked 3002:1 -o "$T/fx/crl.der"
FX_PORT=$(free_port tcp)
start_poll_fixture "$T/fx" "$FX_PORT"

ups="[ { \"name\": \"pki\", \"uri\": \"http://127.0.0.1:$FX_PORT/pkix/\", \"timeout\": 5 } ]"
GW_PORT=$(free_port udp)
write_config "$T/poll.json" "$ups"
"$ANN_PY" - "$T/poll.json" "$PKI" "$INTERVAL" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["announcements"] = {"trusted": sys.argv[2] + "/trusted.pem"}
c["upstreams"][0]["poll"] = {"interval": float(sys.argv[3]), "certificate": sys.argv[2] + "/client-chain.pem",
                             "private_key": sys.argv[2] + "/client.key"}
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
start_gw "$T/poll.json"
POLL_PID=$GW_PID
IDLE_PORT=$(free_port udp)
mkdir -p "$T/idle"
sed -e "s|127.0.0.1:$GW_PORT|127.0.0.1:$IDLE_PORT|" -e "s|$T/registry.db|$T/idle/registry.db|" "$T/poll.json" |
        "$ANN_PY" -c 'import json, sys; c = json.load(sys.stdin); del c["upstreams"][0]["poll"]; json.dump(c, sys.stdout)' \
        >"$T/idle.json"
start_other_gw idle "$T/idle.json" "$IDLE_PORT"
IDLE_PID=$OTHER_GW_PID
sleep 5         # the first cycles announce; then every answer is unchanged
grep -q "CRL of .* announced" "$T/gw.log" || fail "the poller did not take the CRL"

hz=$(getconf CLK_TCK)
results=()
for ((r = 1; r <= ROUNDS; r++)); do
        g0=$(genm_count) p0=$(cpu_ticks "$POLL_PID") i0=$(cpu_ticks "$IDLE_PID")
        sleep "$SECONDS_PER_ROUND"
        g1=$(genm_count) p1=$(cpu_ticks "$POLL_PID") i1=$(cpu_ticks "$IDLE_PID")
        cycles=$(((g1 - g0) / 3))
        ((cycles > 0)) || fail "no poll cycle in round $r"
        per=$("$ANN_PY" -c "print('%.2f' % (((${p1} - ${p0}) - (${i1} - ${i0})) * 1000.0 / $hz / $cycles))")
        printf 'round %d: %d cycles (%d genm) in %d s; CPU poll %d ms, idle %d ms; %s ms CPU per cycle\n' \
                "$r" "$cycles" "$((g1 - g0))" "$SECONDS_PER_ROUND" "$(((p1 - p0) * 1000 / hz))" \
                "$(((i1 - i0) * 1000 / hz))" "$per"
        results+=("$per")
done
printf '%s\n' "${results[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "median: %s ms CPU per poll cycle (3 genm)\n", v[int((NR + 1) / 2)] }'
