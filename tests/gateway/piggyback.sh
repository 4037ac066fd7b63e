#!/usr/bin/env bash
# How answers to Confirmable requests go out (issue 5; coap_server.c,
# "answers kept for retransmissions"), datagram by datagram:
#  (a) a fast upstream: the last block of a block-wise request is answered
#      piggybacked, in the ACK to its MID; no empty ACK, no separate
#      Confirmable response (RFC 7252 §5.2.2) -- the libcoap 4.3.1 client
#      never acknowledges a repeated separate response (lossy_link.sh);
#  (b) an upstream that never answers (a TCP listener that accepts and
#      stays silent: no real CA can be made that slow on purpose): the last
#      block gets an empty ACK (after ~1 s) and the 5.04 comes as a
#      separate Confirmable response; a single-PDU request gets no empty
#      ACK and its 5.04 piggybacked.
# Datagrams are made by hand (coap_udp) so that every one is seen.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cmd openssl python3

make_pki
start_ca "$PKI"
capture_requests "$T/req"
G=$T/req/genm.der
n=$(stat -c %s "$G")
((n > 128 && n < 256)) || fail "the captured genm is $n bytes; this test cuts it into 128-byte blocks"
P='path=.well-known/cmp;cf=259'
blockwise() {   # blockwise MID0 TOKEN [extra datagrams...]
        local m=$1 tok=$2
        shift 2
        coap_udp 127.0.0.1 "$GW_PORT" "${WAIT:-3}" \
                "t=CON;c=POST;mid=$m;tok=$tok;$P;b1=0:1:3;size1=$n;rtag=$tok;body=@$G:0:128" \
                "t=CON;c=POST;mid=$((m + 1));tok=$tok;$P;b1=1:0:3;rtag=$tok;body=@$G:128:$((n - 128))" "$@"
}

step "(a) fast upstream: the answer to the last block is piggybacked"
write_config "$T/gw.json"
start_gw "$T/gw.json"
blockwise 4096 a1 >"$T/fast.out"
cat "$T/fast.out" >&2
grep -q '^reply t:ACK c:2.04 mid:0x1001 tok:a1 .*Content-Format:259' "$T/fast.out" ||
        fail "expected the 2.04 in the ACK to the last block (MID 0x1001)"
! grep -q '^reply t:ACK c:0.00' "$T/fast.out" || fail "an empty ACK where the answer could be piggybacked"
! grep -q '^reply t:CON' "$T/fast.out" || fail "a separate Confirmable response where the answer could be piggybacked"
stop_gw

step "(b) silent upstream: an empty ACK, then a separate 5.04"
HP=$(free_port tcp)
/usr/bin/python3 -c "
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8)
held = []
while True: held.append(s.accept())" "$HP" >"$T/silent.log" 2>&1 &
PIDS+=($!)
wait_tcp $! "$HP" 5 "$T/silent.log"
GW_PORT=''
UPSTREAM_TIMEOUT=3 CA_URI=http://127.0.0.1:$HP/pkix/ write_config "$T/slow.json"
start_gw "$T/slow.json"
WAIT=5 blockwise 8192 b1 >"$T/slow.out"
cat "$T/slow.out" >&2
mapfile -t replies < <(grep '^reply' "$T/slow.out")
[[ ${replies[0]} == *"t:ACK c:2.31 mid:0x2000"* ]] || fail "block 0: expected 2.31, got: ${replies[0]}"
[[ ${replies[1]} == *"t:ACK c:0.00 mid:0x2001"* ]] || fail "last block: expected an empty ACK, got: ${replies[1]}"
[[ ${replies[2]} == *"t:CON c:5.04"*"tok:b1"* ]] || fail "expected the 5.04 as a separate CON response, got: ${replies[2]}"
WAIT=5 coap_udp 127.0.0.1 "$GW_PORT" 5 "t=CON;c=POST;mid=12288;tok=c1;$P;body=@$G" >"$T/single.out"
cat "$T/single.out" >&2
mapfile -t replies < <(grep '^reply' "$T/single.out")
((${#replies[@]} == 1)) && [[ ${replies[0]} == *"t:ACK c:5.04 mid:0x3000 tok:c1"* ]] ||
        fail "single-PDU request: expected only the 5.04 piggybacked in its ACK, got: ${replies[*]}"
log "fast answers piggybacked; slow ones: an empty ACK and a separate response (block-wise), piggybacked (single PDU)"
