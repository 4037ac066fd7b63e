#!/usr/bin/env bash
# A node that retransmits its request is answered again and the request is
# never sent upstream twice (RFC 7252 §4.5; issue 6): the last Block1 block
# of a block-wise request sent again after its answer, and a single-PDU
# request sent again (same MID and token), each get the same answer from
# what the gateway kept; the CA sees one request each. Datagrams are made by
# hand so that the retransmission is exact.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cmd openssl python3

make_pki
start_ca "$PKI"
capture_requests "$T/req"
write_config "$T/gw.json"
start_gw "$T/gw.json"
G=$T/req/genm.der
n=$(stat -c %s "$G")
((n > 128 && n < 256)) || fail "the captured genm is $n bytes; this test cuts it into 128-byte blocks"
P='path=.well-known/cmp;cf=259'

step "block-wise request, its last block sent again after the answer"
coap_udp 127.0.0.1 "$GW_PORT" 6 \
        "t=CON;c=POST;mid=28673;tok=b1;$P;b1=0:1:3;size1=$n;rtag=0a;body=@$G:0:128" \
        "t=CON;c=POST;mid=28674;tok=b1;$P;b1=1:0:3;rtag=0a;body=@$G:128:$((n - 128))" \
        "sleep=1;t=CON;c=POST;mid=28674;tok=b1;$P;b1=1:0:3;rtag=0a;body=@$G:128:$((n - 128))" >"$T/bw.out"
cat "$T/bw.out" >&2
mapfile -t replies < <(grep '^reply' "$T/bw.out" | grep -v ' c:0\.00 ')
[[ ${replies[0]} == *"c:2.31"* ]] || fail "block 0: expected 2.31, got: ${replies[0]}"
[[ ${replies[1]} == *"c:2.04"* && ${replies[1]} == *"Content-Format:259"* ]] || fail "last block: expected a 2.04 PKIMessage, got: ${replies[1]}"
[[ ${replies[2]} == *"c:2.04"* && ${replies[2]} == *"Content-Format:259"* ]] ||
        fail "the retransmitted last block: expected the same 2.04 again, got: ${replies[2]}"
expect_eq "$(grep -c 'genm to /.well-known/cmp -> 2.04' "$T/gw.log")" 1 "genm requests forwarded upstream"

step "single-PDU request sent again with the same MID and token"
coap_udp 127.0.0.1 "$GW_PORT" 8 \
        "t=CON;c=POST;mid=28700;tok=c1;$P;body=@$G" \
        "sleep=1;t=CON;c=POST;mid=28700;tok=c1;$P;body=@$G" >"$T/single.out"
cat "$T/single.out" >&2
[[ $(grep -c 'c:2.04' "$T/single.out") -ge 2 ]] || fail "expected the 2.04 for the request and again for its retransmission"
expect_eq "$(grep -c 'genm to /.well-known/cmp -> 2.04' "$T/gw.log")" 2 "genm requests forwarded upstream in all"
log "retransmissions answered from what was kept; nothing forwarded twice"
