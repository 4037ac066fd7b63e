#!/usr/bin/env bash
# cmpcoap honours 5.03 + Max-Age: while the CA is down the gateway answers
# 5.03 with Max-Age (coap.unavailable_max_age = 1 s here); cmpcoap waits
# and resends, and enrols once the CA is back. With the CA down for longer
# than cmpcoap's --timeout it gives up with exit 1 and a clear message.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cli
require_cmd openssl python3

make_pki
start_ca "$PKI"
ca_port=$CA_PORT
stop_ca

conf=$T/gw.json
write_config "$conf" "[ { \"name\": \"ca\", \"uri\": \"http://127.0.0.1:$ca_port/pkix/\", \"timeout\": 5 } ]" \
        '{ "unavailable_max_age": 1 }'
start_gw "$conf"
CMP=$GW_URI/.well-known/cmp

step "CA down for ~3 s while cmpcoap enrols"
timeout 60 "$CMPCOAP" ir --server "$CMP" --ref "$CA_REF" --secret "$CA_SECRET" --newkey "$PKI/ee.key" \
        --subject /CN=patient --certout "$T/patient.pem" --timeout 30 >"$T/ir.log" 2>&1 &
client=$!
sleep 3
grep -q -- '-> 5.03' "$T/gw.log" || fail "the gateway did not answer 5.03 while the CA was down"
# the same port again, so the configured upstream is back
start_ca_at "$ca_port" "$PKI" "$PKI/ee.pem"
rc=0
wait "$client" || rc=$?
((rc == 0)) || { cat "$T/ir.log" >&2; fail "cmpcoap exited $rc instead of enrolling after the CA came back"; }
cert_eq "$T/patient.pem" "$PKI/ee.pem" || fail "cmpcoap did not save the CA's certificate"
n503=$(grep -c -- '-> 5.03' "$T/gw.log" || true)
((n503 >= 2)) || fail "expected cmpcoap to be answered 5.03 at least twice (resent after Max-Age), saw $n503"
log "enrolled after $n503 answers of 5.03"

step "CA down for good: cmpcoap gives up within its --timeout"
stop_ca
rc=0
start=$SECONDS
timeout 60 "$CMPCOAP" genm --server "$CMP" --ref "$CA_REF" --secret "$CA_SECRET" --timeout 4 >"$T/genm.log" 2>&1 || rc=$?
((rc == 1)) || { cat "$T/genm.log" >&2; fail "cmpcoap exited $rc; expected 1"; }
((SECONDS - start <= 10)) || fail "cmpcoap took $((SECONDS - start)) s with --timeout 4"
grep -q '5\.03' "$T/genm.log" || { cat "$T/genm.log" >&2; fail "cmpcoap's message does not name the 5.03"; }
log "gave up after $((SECONDS - start)) s: $(grep -m1 '5\.03' "$T/genm.log")"
