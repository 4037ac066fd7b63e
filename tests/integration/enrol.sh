#!/usr/bin/env bash
# enrol: cmpcoap, through cmpgwd, against OpenSSL's mock CA: ir (MAC),
# cr (signature), p10cr, kur, rr, genm.  The mock CA always issues its fixed
# -rsp_cert (ee.pem), so every enrolment uses ee.key as the new key and must
# return exactly ee.pem.  It handles one transaction at a time and revokes
# only ee.pem's serial (PEERS.md).
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cli
require_cmd openssl

make_pki
start_ca "$PKI"
write_config "$T/gw.json"
start_gw "$T/gw.json"
CMP=$GW_URI/.well-known/cmp
P=$PKI

# run NAME ARGS...: cmpcoap ARGS, output in $T/NAME.log; sets RC
run() {
        local name=$1
        shift
        RC=0
        timeout 60 "$CMPCOAP" "$@" >"$T/$name.log" 2>&1 || RC=$?
        log "cmpcoap $* -> exit $RC"
}
must_pass() {
        run "$@"
        if ((RC != 0)); then
                tail -n 20 "$T/$1.log" >&2
                log "cmpgwd log tail:"; tail -n 15 "$T/gw.log" >&2
                log "CA log tail:"; tail -n 10 "$T/ca.log" >&2
                fail "$1: cmpcoap exited $RC"
        fi
}
must_fail() {
        run "$@"
        ((RC != 0)) || { tail -n 20 "$T/$1.log" >&2; fail "$1: cmpcoap succeeded where it must fail"; }
        ((RC < 124)) || { tail -n 20 "$T/$1.log" >&2; fail "$1: cmpcoap died/hung (exit $RC)"; }
}
got_cert() {
        [[ -s $2 ]] || fail "$1: no certificate in $2"
        cert_eq "$2" "$P/ee.pem" || fail "$1: $2 is not the CA's certificate: $(openssl x509 -in "$2" -noout -subject -serial 2>&1)"
        log "ok: $1 got $(openssl x509 -in "$2" -noout -subject -serial | tr '\n' ' ')"
}
MAC=(--ref "$CA_REF" --secret "$CA_SECRET")
SIG=(--cert "$P/client.pem" --key "$P/client.key" --trusted "$P/trusted.pem")

step "ir, MAC-protected"
must_pass ir ir --server "$CMP" "${MAC[@]}" --newkey "$P/ee.key" --subject /CN=node1 \
        --certout "$T/ir.pem"
got_cert ir "$T/ir.pem"

step "ir to the operation resource /.well-known/cmp/ir"
must_pass ir-op ir --server "$CMP/ir" "${MAC[@]}" --newkey "$P/ee.key" --subject /CN=node1b \
        --certout "$T/ir-op.pem"
got_cert ir-op "$T/ir-op.pem"

step "cr, signature-protected"
must_pass cr cr --server "$CMP" "${SIG[@]}" --newkey "$P/ee.key" --subject /CN=node2 \
        --certout "$T/cr.pem"
got_cert cr "$T/cr.pem"

step "p10cr"
must_pass p10cr p10cr --server "$CMP" "${SIG[@]}" --csr "$P/ee.csr" --certout "$T/p10cr.pem"
got_cert p10cr "$T/p10cr.pem"

step "kur of ee.pem"
must_pass kur kur --server "$CMP" --oldcert "$P/ee.pem" --cert "$P/ee.pem" --key "$P/ee.key" \
        --trusted "$P/trusted.pem" --newkey "$P/ee.key" --certout "$T/kur.pem"
got_cert kur "$T/kur.pem"

step "rr of ee.pem"
must_pass rr rr --server "$CMP" "${SIG[@]}" --oldcert "$P/ee.pem" --revreason 0

step "genm"
must_pass genm genm --server "$CMP" "${MAC[@]}"

step "negative: ir with a wrong secret is refused"
must_fail ir-badsecret ir --server "$CMP" --ref "$CA_REF" --secret pass:wrong \
        --newkey "$P/ee.key" --subject /CN=node3 --certout "$T/bad.pem"
[[ ! -s $T/bad.pem ]] || fail "ir-badsecret wrote a certificate"

step "negative: rr of a certificate the CA did not issue is refused"
must_fail rr-other rr --server "$CMP" "${SIG[@]}" --oldcert "$P/client.pem" --revreason 0

step "after the failures, an ir still works"
must_pass ir-again ir --server "$CMP" "${MAC[@]}" --newkey "$P/ee.key" --subject /CN=node4 \
        --certout "$T/ir-again.pem"
got_cert ir-again "$T/ir-again.pem"

gw_alive
kill -0 "$CA_PID" 2>/dev/null || fail "the mock CA died (see $T/ca.log)"
log "PASS"
