#!/usr/bin/env bash
# Gateways chain over CoAP (RFC 9482; issue 6): node → A (CoAP) → B (CoAP)
# → CA (HTTP). cmpcoap enrols through A, whose upstream is B's coap:// URI
# ending in /.well-known/cmp, so the operation and label travel unchanged;
# B forwards to OpenSSL's mock CA. Also: a block-wise request through both,
# and B down → A answers 5.03/5.04 (never hangs).
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cli
require_cmd openssl

make_pki
start_ca "$PKI"
capture_requests "$T/req"

# B: the gateway in front of the CA
start_ca_gw b
B_PORT=$OTHER_GW_PORT
B_PID=$OTHER_GW_PID

# A: the gateway the nodes talk to; its upstream is B over CoAP
write_config "$T/a.json" "[ { \"name\": \"b\", \"uri\": \"coap://127.0.0.1:$B_PORT/.well-known/cmp\", \"timeout\": 10, \"labels\": [\"plant\"], \"default\": true } ]"
start_gw "$T/a.json"

step "ir through A and B"
timeout 60 "$CMPCOAP" ir --server "$GW_URI/.well-known/cmp/p/plant/ir" --ref "$CA_REF" --secret "$CA_SECRET" \
        --newkey "$PKI/ee.key" --subject /CN=chained --certout "$T/ir.pem" --timeout 30 >"$T/ir.log" 2>&1 ||
        { cat "$T/ir.log" >&2; tail -n 20 "$T/gw.log" "$T/b.log" >&2; fail "ir through the chain failed"; }
cert_eq "$T/ir.pem" "$PKI/ee.pem" || fail "not the CA's certificate"
grep -q 'ir to /.well-known/cmp/p/plant/ir -> 2.04 via b' "$T/gw.log" || fail "A did not forward the ir to B"
grep -q 'ir to /.well-known/cmp/p/plant/ir -> 2.04 via ca' "$T/b.log" ||
        { grep 'request ' "$T/b.log" >&2; fail "B did not see /p/plant/ir (label and operation must travel unchanged)"; }
grep -q 'certConf to /.well-known/cmp/p/plant/ir -> 2.04 via ca' "$T/b.log" || fail "B did not see the certConf"

step "cr (signature protection, 1.9 KB: block-wise on both hops)"
timeout 60 "$CMPCOAP" cr --server "$GW_URI/.well-known/cmp" --cert "$PKI/client.pem" --key "$PKI/client.key" \
        --trusted "$PKI/trusted.pem" --extracerts "$PKI/chain.pem" --newkey "$PKI/ee.key" --subject /CN=chained2 \
        --certout "$T/cr.pem" --timeout 30 >"$T/cr.log" 2>&1 ||
        { cat "$T/cr.log" >&2; tail -n 20 "$T/gw.log" "$T/b.log" >&2; fail "cr through the chain failed"; }
cert_eq "$T/cr.pem" "$PKI/ee.pem" || fail "cr: not the CA's certificate"

step "coap-client-openssl posts a captured genm through the chain"
expect_code genm 2.04 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_eq "$(pkimsg_type "$COAP_BODY")" genp "answer through the chain"

step "B stopped: A answers an error in time, never hangs"
kill -TERM "$B_PID"
b_status=0
wait "$B_PID" || b_status=$?
keep=(); for p in "${PIDS[@]}"; do [[ $p == "$B_PID" ]] || keep+=("$p"); done; PIDS=("${keep[@]}")
expect_eq "$b_status" 0 "gateway B's exit status after SIGTERM"
! grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$T/b.log" ||
        { cat "$T/b.log" >&2; fail "sanitizer report in gateway B's log"; }
start=$SECONDS
COAP_WAIT=40 coap_req down -m post -t 259 -b 64 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
[[ $COAP_CODE == 5.03 || $COAP_CODE == 5.04 ]] || fail "B down: expected 5.03 or 5.04, got '$COAP_CODE'"
expect_nonempty "$COAP_DIAG" "diagnostic with B down"
log "B down → $COAP_CODE ($COAP_DIAG) after $((SECONDS - start)) s"
