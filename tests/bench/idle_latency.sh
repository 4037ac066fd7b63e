#!/usr/bin/env bash
# idle_latency.sh -- how long one request spends in an otherwise idle cmpgwd
# (no other traffic to wake its loop). Not a test.
#
#   tests/bench/idle_latency.sh [--requests N] [--cmpgwd PATH]
#
# One node (cmpcoap) sends N (default 20) MAC-protected genm one after the
# other, 0.3 s apart, through cmpgwd to OpenSSL's mock CA over HTTP. The
# figures are cmpgwd's own ("request ... (X ms)" in its log: from the
# complete request to the answer handed to libcoap), so the node's
# retransmission timers do not count. --cmpgwd measures another build, e.g.
# one of an older commit, side by side with the same PKI and CA.
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=20 GWS=()
while (($#)); do
        case $1 in
        --requests) REQUESTS=$2; shift 2 ;;
        --cmpgwd) GWS+=("$2"); shift 2 ;;
        *) echo "usage: $0 [--requests N] [--cmpgwd PATH]..." >&2; exit 2 ;;
        esac
done
((${#GWS[@]})) || GWS=("$PWD/build/daemon/cmpgwd")
export SRCDIR=$PWD CMPCOAP=$PWD/build/cli/cmpcoap
# shellcheck source=tests/integration/lib.sh
source tests/integration/lib.sh
require_cli
make_pki
start_ca "$PKI"
for gw in "${GWS[@]}"; do
        CMPGWD=$gw
        GW_PORT=''
        : >"$T/gw.log"
        write_config "$T/gw.json"
        start_gw "$T/gw.json"
        for ((i = 0; i < REQUESTS; i++)); do
                timeout 20 "$CMPCOAP" genm --server "$GW_URI/.well-known/cmp" --ref "$CA_REF" \
                        --secret "$CA_SECRET" >/dev/null 2>&1 || fail "genm $i through $gw"
                sleep 0.3
        done
        grep -o 'genm to /.well-known/cmp -> 2.04 via ca ([0-9.]* ms)' "$T/gw.log" | grep -o '[0-9.]* ms' |
                sort -n | awk -v gw="$gw" '{ v[NR] = $1 } END {
                        printf "%s: %d requests, in cmpgwd: min %s ms, p50 %s ms, max %s ms\n",
                               gw, NR, v[1], v[int((NR + 1) / 2)], v[NR] }'
        stop_gw
done
