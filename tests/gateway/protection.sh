#!/usr/bin/env bash
# protection check at the gateway (issue 5; RFC 9482 §4: a proxy can
# validate the protection of what it forwards). Upstream "protection_trusted":
#   (a) a cr signed by a certificate chaining to it is forwarded (enrols);
#   (b) the same request with one bit of its signature flipped is 4.00
#       naming the protection, and never reaches the CA;
#   (c) with trust anchors that do not anchor the signer: 4.00;
#   (d) MAC protection (a secret only the CA shares) passes;
#   (e) a protection_trusted file that cannot be read is a start-up error
#       naming the key;
#   (f) an unprotected request is 4.00 naming it, and never reaches the CA.
# "Never reaches the CA": the mock CA's count of requests received.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cli
require_cmd openssl python3

make_pki
P=$PKI
start_ca "$P"
SIG=(--cert "$P/client.pem" --key "$P/client.key" --trusted "$P/trusted.pem" --extracerts "$P/chain.pem")
cr() {  # cr NAME: signed cr through the gateway; RC
        RC=0
        timeout 60 "$CMPCOAP" cr --server "$GW_URI/.well-known/cmp" "${SIG[@]}" --newkey "$P/ee.key" \
                --subject "/CN=$1" --certout "$T/$1.pem" --reqout "$T/$1.req.der" --timeout 20 >"$T/$1.log" 2>&1 || RC=$?
}
forwarded() { grep -c 'cr to /.well-known/cmp -> 2.04 via ca' "$T/gw.log" || true; }
ca_requests() { grep -c 'Received request' "$T/ca.log" || true; }

step "(a) a signature chaining to protection_trusted: forwarded"
write_config "$T/good.json" "[ { \"name\": \"ca\", \"uri\": \"$CA_URI\", \"protection_trusted\": \"$P/trusted.pem\" } ]"
start_gw "$T/good.json"
cr signed
((RC == 0)) || { cat "$T/signed.log" >&2; tail -n 20 "$T/gw.log" >&2; fail "signed cr refused"; }
cert_eq "$T/signed.pem" "$P/ee.pem" || fail "not the CA's certificate"
expect_eq "$(forwarded)" 1 "signed crs forwarded"

step "(b) one bit of the signature flipped: 4.00, not forwarded"
# the protection BIT STRING follows the [0] tag at depth 1 of the PKIMessage
python3 - "$T/signed.req.der" "$T/tampered.der" <<'PY'
import subprocess, sys
src, dst = sys.argv[1], sys.argv[2]
der = bytearray(open(src, "rb").read())
out = subprocess.run(["openssl", "asn1parse", "-inform", "DER", "-in", src], capture_output=True, text=True).stdout
lines = out.splitlines()
for i, l in enumerate(lines):
    if "d=1" in l and "cont [ 0 ]" in l:
        nxt = lines[i + 1]
        off = int(nxt.split(":")[0]); hl = int(nxt.split("hl=")[1].split()[0]); ln = int(nxt.split("l=")[2].split()[0])
        der[off + hl + ln // 2] ^= 0x01
        break
else:
    sys.exit("no protection found")
open(dst, "wb").write(der)
PY
before=$(ca_requests)
expect_code tampered 4.00 -m post -t 259 -f "$T/tampered.der" "$GW_URI/.well-known/cmp"
expect_contains "$COAP_DIAG" "protection does not verify" "tampered diagnostic"
expect_eq "$(forwarded)" 1 "crs forwarded after the tampered one"
expect_eq "$(ca_requests)" "$before" "requests that reached the CA after the tampered one"

step "(f) an unprotected request: 4.00 naming it, not forwarded"
before=$(ca_requests)
RC=0
timeout 60 "$CMPCOAP" genm --server "$GW_URI/.well-known/cmp" --ref node --unprotected_requests --unprotected_errors \
        --trusted "$P/trusted.pem" --timeout 20 >"$T/unprotected.log" 2>&1 || RC=$?
((RC != 0)) || { cat "$T/unprotected.log" >&2; fail "an unprotected genm was answered"; }
expect_contains "$(cat "$T/unprotected.log")" "server answered 4.00" "unprotected genm"
expect_contains "$(cat "$T/unprotected.log")" "unprotected PKIMessage" "unprotected genm diagnostic"
expect_eq "$(ca_requests)" "$before" "requests that reached the CA after the unprotected one"

step "(d) MAC protection passes"
timeout 60 "$CMPCOAP" ir --server "$GW_URI/.well-known/cmp" --ref "$CA_REF" --secret "$CA_SECRET" \
        --newkey "$P/ee.key" --subject /CN=mac --certout "$T/mac.pem" --timeout 20 >"$T/mac.log" 2>&1 ||
        { cat "$T/mac.log" >&2; fail "MAC-protected ir refused"; }

step "(c) trust anchors that do not anchor the signer: 4.00"
stop_gw
write_config "$T/other.json" "[ { \"name\": \"ca\", \"uri\": \"$CA_URI\", \"protection_trusted\": \"$P/srv.pem\" } ]"
start_gw "$T/other.json"
before=$(ca_requests)
expect_code untrusted 4.00 -m post -t 259 -f "$T/signed.req.der" "$GW_URI/.well-known/cmp"
expect_contains "$COAP_DIAG" "protection does not verify" "untrusted signer diagnostic"
expect_eq "$(ca_requests)" "$before" "requests that reached the CA after the untrusted signer's"
stop_gw

step "(e) an unreadable protection_trusted stops the start with the key named"
write_config "$T/bad.json" "[ { \"name\": \"ca\", \"uri\": \"$CA_URI\", \"protection_trusted\": \"$T/missing.pem\" } ]"
rc=0
timeout 10 "$CMPGWD" --config "$T/bad.json" >"$T/bad.log" 2>&1 || rc=$?
((rc != 0 && rc < 124)) || fail "cmpgwd started (or hung) with a missing protection_trusted file (exit $rc)"
expect_contains "$(cat "$T/bad.log")" "upstreams[0].protection_trusted" "start-up error"
log "ok"
