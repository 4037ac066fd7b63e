#!/usr/bin/env bash
# CMP-level polling (pollReq/pollRep, checkAfter; RFC 4210 §5.3.22) passes
# through the gateway untouched: OpenSSL's mock CA with -poll_count 2
# -check_after 1 answers the ir with "waiting", cmpcoap polls through
# cmpgwd, and the enrolment completes; the gateway forwarded each pollReq.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cli
require_cmd openssl

make_pki
start_ca "$PKI" -poll_count 2 -check_after 1
write_config "$T/gw.json"
start_gw "$T/gw.json"

start_ms=$(($(date +%s%N) / 1000000))
timeout 60 "$CMPCOAP" ir --server "$GW_URI/.well-known/cmp/ir" --ref "$CA_REF" --secret "$CA_SECRET" \
        --newkey "$PKI/ee.key" --subject /CN=patient --certout "$T/out.pem" --timeout 30 >"$T/ir.log" 2>&1 ||
        { cat "$T/ir.log" >&2; tail -n 20 "$T/gw.log" >&2; fail "cmpcoap ir with polling failed"; }
cert_eq "$T/out.pem" "$PKI/ee.pem" || fail "not the CA's certificate"
polls=$(grep -c 'pollReq to /.well-known/cmp/ir -> 2.04' "$T/gw.log" || true)
((polls >= 2)) || { grep 'request ' "$T/gw.log" >&2; fail "expected at least 2 pollReq forwarded through the gateway, saw $polls"; }
# the CA answers the first pollReq with pollRep checkAfter=1: the client
# waits that second before it polls again (RFC 4210 §5.3.22)
took_ms=$(($(date +%s%N) / 1000000 - start_ms))
((took_ms >= 1000)) || fail "the enrolment took $took_ms ms: checkAfter (1 s) was not honoured"
grep -q 'received POLLREP\|POLLREP' "$T/ir.log" || log "note: cmpcoap's log does not show pollRep"
log "enrolled after $polls pollReq through the gateway in $took_ms ms"
