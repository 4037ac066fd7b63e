#!/usr/bin/env bash
# coap_errors: the CoAP error contract of PRODUCT.md ("CoAP interface"),
# driven with coap-client-openssl against cmpgwd with OpenSSL's mock CA
# behind it.  Every error must carry a diagnostic payload.  Positive checks
# (a valid request gets 2.04 + a PKIMessage) make sure the error answers are
# not the gateway's only answer.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cmd "$COAP_CLIENT" openssl python3

make_pki
start_ca "$PKI"
capture_requests "$T/req"
R=$T/req

write_config "$T/gw.json" "" '{ "max_message_size": 4096 }'
start_gw "$T/gw.json"
CMP=$GW_URI/.well-known/cmp

step "GET /.well-known/core lists the CMP resources with ct=259"
coap_req core -m get "$GW_URI/.well-known/core"
expect_eq "$COAP_CODE" 2.05 "GET /.well-known/core"
links=$(<"$COAP_BODY")
expect_contains "$links" '</.well-known/cmp>' "link format"
expect_contains "$links" 'ct=259' "link format"
# every link to a CMP resource says ct=259
python3 - "$links" <<'PY' || fail "a CMP link without ct=259: $links"
import sys
links = [l.strip() for l in sys.argv[1].split(",")]
cmp = [l for l in links if l.startswith("</.well-known/cmp")]
bad = [l for l in cmp if "ct=259" not in [p.strip() for p in l.split(";")[1:]]]
sys.exit(1 if not cmp or bad else 0)
PY

step "positive: a captured ir on /.well-known/cmp/ir gets 2.04 and a PKIMessage"
expect_code ok-ir 2.04 -m post -t 259 -f "$R/ir.der" "$CMP/ir"
t=$(pkimsg_type "$COAP_BODY") || fail "ir response is not a PKIMessage: $t"
[[ $t == ip || $t == error ]] || fail "ir answered with body $t"
log "ir -> $t"

step "positive: a captured genm on /.well-known/cmp, no Content-Format at all"
expect_code ok-genm-nocf 2.04 -m post -f "$R/genm.der" "$CMP"
t=$(pkimsg_type "$COAP_BODY") || fail "genm response is not a PKIMessage: $t"
expect_eq "$t" genp "genm response body"

step "4.05: methods other than POST on CMP resources"
expect_code put-cmp 4.05 -m put -t 259 -f "$R/genm.der" "$CMP"
expect_code get-cmp 4.05 -m get "$CMP"
expect_code delete-ir 4.05 -m delete "$CMP/ir"
expect_code get-ir 4.05 -m get "$CMP/ir"

step "4.05: POST on ann (only GET is allowed there)"
expect_code post-ann 4.05 -m post -t 259 -f "$R/genm.der" "$CMP/ann"

step "4.15: Content-Format present and not 259"
expect_code cf-text 4.15 -m post -t 0 -f "$R/genm.der" "$CMP"
expect_code cf-octet 4.15 -m post -t 42 -f "$R/ir.der" "$CMP/ir"

step "4.00: a body that is not DER"
head -c 300 /dev/urandom >"$T/garbage.bin"
printf '\x01' | dd of="$T/garbage.bin" bs=1 count=1 conv=notrunc 2>/dev/null # never a SEQUENCE
expect_code garbage 4.00 -m post -t 259 -f "$T/garbage.bin" "$CMP"
printf 'hello' >"$T/text.bin"
expect_code text 4.00 -m post -t 259 -f "$T/text.bin" "$CMP"

step "4.00: an empty body"
: >"$T/empty.bin"
expect_code empty 4.00 -m post -t 259 -f "$T/empty.bin" "$CMP"

step "4.00: a DER PKIMessage followed by one extra byte"
cat "$R/genm.der" >"$T/trailing.bin"
printf '\x00' >>"$T/trailing.bin"
expect_code trailing 4.00 -m post -t 259 -f "$T/trailing.bin" "$CMP"

step "4.00: a DER SEQUENCE that is no PKIMessage (a certificate)"
openssl x509 -in "$PKI/ee.pem" -outform DER -out "$T/cert.der"
expect_code cert-der 4.00 -m post -t 259 -f "$T/cert.der" "$CMP"

step "4.13 with Size1: 5000 bytes over a 4096-byte limit, block-wise"
head -c 5000 /dev/zero | tr '\0' 'A' >"$T/big.bin"
expect_code too-big 4.13 -m post -t 259 -b 1024 -f "$T/big.bin" "$CMP"
size1=$(coap_option Size1)
expect_nonempty "$size1" "Size1 option of the 4.13 answer ($COAP_RESP)"
expect_eq "$size1" 4096 "Size1 of the 4.13 answer"

step "4.04: an unknown operation"
expect_code unknown-op 4.04 -m post -t 259 -f "$R/genm.der" "$CMP/foo"
expect_code unknown-deep 4.04 -m post -t 259 -f "$R/genm.der" "$CMP/ir/extra"

step "4.00: a body foreign to the operation (rr on ir, ir on rr, genm on kur)"
expect_code rr-on-ir 4.00 -m post -t 259 -f "$R/rr.der" "$CMP/ir"
expect_code ir-on-rr 4.00 -m post -t 259 -f "$R/ir.der" "$CMP/rr"
expect_code cr-on-p10 4.00 -m post -t 259 -f "$R/cr.der" "$CMP/p10"

step "a certConf belongs to every enrolment: accepted on /cr (not 4.00)"
coap_req certconf-cr -m post -t 259 -f "$R/certconf-ir.der" "$CMP/cr"
[[ $COAP_CODE != 4.00 && -n $COAP_CODE ]] || fail "certConf on /cr answered '${COAP_CODE:-nothing}'"
log "ok: certConf on /cr -> $COAP_CODE"

gw_alive
stop_gw

step "two labelled upstreams, no default: an unknown label and no label are 4.04"
GW_PORT=''
write_config "$T/gw2.json" "[
    { \"name\": \"a\", \"uri\": \"$CA_URI\", \"labels\": [ \"a\" ], \"timeout\": 5 },
    { \"name\": \"b\", \"uri\": \"$CA_URI\", \"labels\": [ \"b\" ], \"timeout\": 5 } ]"
start_gw "$T/gw2.json"
CMP=$GW_URI/.well-known/cmp
expect_code label-unknown 4.04 -m post -t 259 -f "$R/genm.der" "$CMP/p/zzz"
expect_code label-unknown-op 4.04 -m post -t 259 -f "$R/genm.der" "$CMP/p/zzz/crts"
expect_code no-label-no-default 4.04 -m post -t 259 -f "$R/genm.der" "$CMP"
expect_code label-a 2.04 -m post -t 259 -f "$R/genm.der" "$CMP/p/a"
expect_eq "$(pkimsg_type "$COAP_BODY")" genp "genm via /p/a"
expect_code label-b-crts 2.04 -m post -t 259 -f "$R/genm.der" "$CMP/p/b/crts"
expect_eq "$(pkimsg_type "$COAP_BODY")" genp "genm via /p/b/crts"
gw_alive
log "PASS"
