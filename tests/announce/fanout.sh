#!/usr/bin/env bash
# fanout: cmpgwd sends announcement notifications itself, paced (issue 4;
# RFC 7641, RFC 7959 §2.6).
#
# 1. coap-client-openssl registers asking for 64-byte blocks (Block2 in the
#    GET + Observe): the notification of a CRLANN comes in 64-byte blocks
#    and the body is the file byte for byte; its Observe value is above the
#    one in the registration answer (RFC 7641 §3.4: notifications are
#    ordered by it).
# 2. 1,000 observers, each its own socket on its own 127.0.x.y, all get a
#    ~2 KiB CRLANN (2 blocks) byte for byte with exactly one notification
#    and one Block2 answer each: nothing was lost and retransmitted. Sent
#    all at once (libcoap's own notifier), their 2,000 answers overflowed
#    the gateway's receive buffer (~250 datagrams): about 1,700 were lost
#    and retransmitted after 2-3 s. No real peer can play 1,000 observers:
#    tests/bench/fanout_bench (a raw CoAP client, see its header) does.
# The gateway holds exactly announcements.max_observers (1,001): registered
# observers are notified all the same (libcoap's notifier sends nothing
# while the resource is not observable).
set -euo pipefail
# shellcheck source=tests/announce/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_ctl
require_mkann
require_cmd openssl dbus-daemon busctl stdbuf "$COAP_CLIENT"
: "${FANOUT_BENCH:=$SRCDIR/build/tests/bench/fanout_bench}"
[[ -x $FANOUT_BENCH ]] || skip "no fanout_bench at $FANOUT_BENCH"
N=1000
(($(ulimit -Hn) > N + 64)) || skip "RLIMIT_NOFILE hard limit $(ulimit -Hn) is too low for $N observers"

make_pki
start_bus
CA_URI=http://127.0.0.1:9/pkix/        # no CMP request is made
# exactly at announcements.max_observers: the registered ones are notified all the same
write_ann_config "$T/gw.json" "c['announcements']['max_observers'] = $((N + 1))"
start_ann_gw "$T/gw.json"
ANN=$GW_URI/.well-known/cmp/ann
make_crlann small 1 --revoked 3002
revoked=()
for ((i = 0; i < 27; i++)); do revoked+=(--revoked "$(printf %x $((0x100000 + i)))"); done
make_crlann big 2 "${revoked[@]}"
size=$(stat -c %s "$T/big.der")
((size > 1024 && size <= 2048)) || fail "the CRLANN should take 2 blocks of 1024, it has $size bytes"

step "an observer asking for 64-byte blocks gets them"
# line-buffered: the test reads the PDUs it logs while it runs
stdbuf -oL "$COAP_CLIENT" -v 6 -b 64 -s 20 -B 25 -m get -o "$T/cc.body" "$ANN" >"$T/cc.out" 2>&1 &
PIDS+=("$!")
wait_grep "$T/cc.out" 5 -aE '^v:1 t:ACK c:2\.05 .*Observe:' || true      # expect_nonempty says
reg=$(grep -aE '^v:1 t:ACK c:2\.05 .*Observe:' "$T/cc.out" | head -n 1 | sed -n 's/.*Observe:\([0-9]*\).*/\1/p')
expect_nonempty "$reg" "Observe in the registration answer"
announce small "$T/small.der"
expect_rc small 0
wait_file_size "$T/cc.body" "$(stat -c %s "$T/small.der")" 10 ||
        { grep -a '^v:1' "$T/cc.out" | cut -c1-160 >&2; fail "coap-client did not get the announcement"; }
cmp -s "$T/cc.body" "$T/small.der" || fail "coap-client: the body is not the CRLANN byte for byte"
notif=$(grep -aE '^v:1 t:CON c:2\.05 .*Observe:' "$T/cc.out" | head -n 1)
expect_contains "$notif" "Block2:0/M/64" "the notification"
obs=$(sed -n 's/.*Observe:\([0-9]*\).*/\1/p' <<<"$notif")
((obs > reg)) || fail "the notification's Observe $obs is not above the registration's $reg"
log "notification Observe $obs > registration $reg, 64-byte blocks"

step "$N observers on $N addresses: each gets the $size-byte CRLANN, nothing retransmitted"
out=$("$FANOUT_BENCH" 127.0.0.1 "$GW_PORT" --expect "$T/big.der" --observers "$N" --timeout 30 --linger 3 \
        -- "$CMPGWCTL" announce "$T/big.der" 2>"$T/bench.err") ||
        { cat "$T/bench.err" >&2; echo "$out" >&2; fail "not every observer got the announcement"; }
log "$out"
kv() { sed -n "s/.* $1=\([0-9.-]*\).*/\1/p" <<<" $out"; }
expect_eq "$(kv ok)" "$N" "observers holding the CRLANN byte for byte"
# the 3 s linger would have seen the retransmissions of lost notifications
expect_eq "$(kv dup_rx)" 0 "notifications received twice (retransmitted)"
expect_eq "$(kv client_retx)" 0 "Block2 GETs retransmitted"
expect_eq "$(kv rx)" $((2 * N)) "datagrams from the gateway (a notification and a block each)"
gw_alive
log "ok"
