#!/usr/bin/env bash
# Many CoAP→CoAP exchanges at once, each on its own upstream session (issue
# 6): every node gets its own answer, no Block2 transfer is restarted, none
# stalls into a 5.04. libcoap 4.3.1 starts every client session's tokens at
# the same value, so exchanges on different sessions carry equal tokens;
# cmpgwd must tell their answers apart by session too. Before it did, an
# answer on one session finished the exchange on another, whose session then
# took a new exchange mid-Block2: "Data body updated during receipt", a
# 4.00 or 5.04 handed to some node.
#
# The upstream is tests/bench/coap_upstream (libcoap's own server, a
# fixture standing in for a CA that speaks CMP over CoAP): /genp answers a
# captured genp in one PDU, /ip a captured ip of ~2 kB with Block2. Two
# upstreams in cmpgwd (two session pools) to that one server; two load
# generators (tests/bench/cmpgw_bench) at once, 20 nodes each, every
# answer compared byte for byte with what the upstream serves.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cmd openssl python3 "$COAP_CLIENT"
# shellcheck source=tests/bench/lib.sh disable=SC1091
source "$SRCDIR/tests/bench/lib.sh"
BUILD=$(dirname "$(dirname "$CMPGWD")")
UPSTREAM=${COAP_UPSTREAM:-$BUILD/tests/bench/coap_upstream}
BENCH=${CMPGW_BENCH:-$BUILD/tests/bench/cmpgw_bench}
for b in "$UPSTREAM" "$BENCH"; do
        [[ -x $b ]] || fail "no $b: build the whole tree (ninja -C $BUILD)"
done
NODES=${NODES:-20} REQUESTS=${REQUESTS:-1500}

make_pki
start_ca "$PKI"
capture_messages "$T/msg"
stop_ca
M=$T/msg

up_port=$(free_port udp)
"$UPSTREAM" "$up_port" "genp=$M/genp.der" "ip=$M/ip.der" >"$T/upstream.log" 2>&1 &
PIDS+=($!)
up=coap://127.0.0.1:$up_port
wait_coap upstream "$up" '</ip>'

write_config "$T/gw.json" "[
    { \"name\": \"small\", \"uri\": \"$up/genp\", \"timeout\": 10, \"labels\": [\"small\"], \"max_connections\": 64 },
    { \"name\": \"large\", \"uri\": \"$up/ip\", \"timeout\": 10, \"labels\": [\"large\"], \"max_connections\": 64 } ]"
# all nodes come from 127.0.0.1: the per-address limits off
sed -i 's/^}$/, "limits": { "rate": 0, "in_flight_per_peer": 1000000, "max_in_flight": 0 } }/' "$T/gw.json"
start_gw "$T/gw.json"

step "$NODES nodes for the ip (Block2) and $NODES for the genp at once, $REQUESTS exchanges each"
"$BENCH" coap "$GW_URI/.well-known/cmp/p/large" "$M/ir.der" --nodes "$NODES" --requests "$REQUESTS" \
        --expect "$M/ip.der" --timeout 20 >"$T/large.out" 2>"$T/large.err" &
large=$!
"$BENCH" coap "$GW_URI/.well-known/cmp/p/small" "$M/genm.der" --nodes "$NODES" --requests "$REQUESTS" \
        --expect "$M/genp.der" --timeout 20 >"$T/small.out" 2>"$T/small.err" &
small=$!
wait "$large" || fail "cmpgw_bench (ip): $(cat "$T/large.err")"
wait "$small" || fail "cmpgw_bench (genp): $(cat "$T/small.err")"
log "ip:   $(cat "$T/large.out")"
log "genp: $(cat "$T/small.out")"
gw_alive

restarts=$(grep -c 'Data body updated during receipt' "$T/gw.log" || true)
timeouts=$(grep -c 'did not answer in time' "$T/gw.log" || true)
expect_eq "$restarts" 0 "Block2 transfers restarted by cmpgwd's upstream client (ETag changed)"
expect_eq "$timeouts" 0 "exchanges that ran into the upstream timeout (5.04)"
for c in large small; do
        out=$(cat "$T/$c.out")
        expect_contains "$out" "exchanges=$REQUESTS " "$c: exchanges"
        expect_contains "$out" " errors=0 " "$c: wrong, failed or missing answers"
done
log "$((2 * REQUESTS)) exchanges, every answer the upstream's, none restarted or stalled"
