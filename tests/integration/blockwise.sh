#!/usr/bin/env bash
# blockwise: large CMP messages travel block-wise (RFC 7959, RFC 9482 §2.4)
# through cmpgwd in both directions.  A captured signature-protected cr with
# extraCerts (> 1024 bytes) is posted with 16- and 1024-byte blocks; its cp
# (> 1024 bytes) comes back with Block2.  An ir that fits one PDU and whose
# ip needs Block2 is the case libcoap 4.3.1 clients hang on if the answer is
# a separate response (PEERS.md): the gateway must not make them hang.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cmd "$COAP_CLIENT" openssl python3

make_pki
start_ca "$PKI"
capture_requests "$T/req"
R=$T/req
size=$(stat -c %s "$R/cr.der")
((size > 1024)) || fail "test bug: captured cr is only $size bytes"
log "captured cr: $size bytes"

write_config "$T/gw.json"
start_gw "$T/gw.json"
CMP=$GW_URI/.well-known/cmp

for b in 1024 16 64 512; do
        step "cr ($size bytes) with -b $b"
        expect_code "cr-b$b" 2.04 -m post -t 259 -b "$b" -f "$R/cr.der" "$CMP/cr"
        t=$(pkimsg_type "$COAP_BODY") || fail "-b $b: response is not one DER PKIMessage: $t"
        # the mock CA takes a replayed cr as a new transaction: a cp proves
        # that the body arrived intact (a damaged one gets an error)
        expect_eq "$t" cp "-b $b: response body"
        rsize=$(stat -c %s "$COAP_BODY")
        ((rsize > 1024)) || fail "-b $b: cp of only $rsize bytes (expected Block2 > 1024)"
        grep -qE 'Block1:' "$T/cr-b$b.out" || fail "-b $b: the client did not use Block1"
        log "cp: $rsize bytes"
done

step "cr to the bare /.well-known/cmp with -b 256"
expect_code cr-bare 2.04 -m post -t 259 -b 256 -f "$R/cr.der" "$CMP"
expect_eq "$(pkimsg_type "$COAP_BODY")" cp "cr on /.well-known/cmp"

step "ir in one PDU, ip with Block2 (must not hang a libcoap 4.3.1 client)"
COAP_WAIT=15 expect_code ir-block2 2.04 -m post -t 259 -f "$R/ir.der" "$CMP/ir"
expect_eq "$(pkimsg_type "$COAP_BODY")" ip "ir response"
rsize=$(stat -c %s "$COAP_BODY")
((rsize > 1024)) || log "note: ip is only $rsize bytes; Block2 not exercised"

step "the same ir with -b 16"
expect_code ir-b16 2.04 -m post -t 259 -b 16 -f "$R/ir.der" "$CMP/ir"
expect_eq "$(pkimsg_type "$COAP_BODY")" ip "ir response with -b 16"

gw_alive
log "PASS"
