#!/usr/bin/env bash
# coaps: cmpgwd's coaps:// listener (DTLS through libcoap's OpenSSL backend)
# and cmpcoap speaking coaps (issue 5):
#   (a) PSK: coap-client-openssl -u/-k discovers over coaps, a wrong key or an
#       unknown identity gets nothing; cmpcoap ir with a PSK enrols through
#       the gateway against the mock CA, its ir and certConf in one DTLS
#       session (one handshake), and the registry records the PSK
#       identity; cmpcoap with a wrong key names the failed handshake
#   (b) certificates: cmpcoap with a client certificate enrols and the
#       registry records its subject; with client_certificate "required" a
#       client without one is refused (cmpcoap and coap-client)
#   (c) a psk_file readable by others: cmpgwd refuses to start, naming the
#       file and chmod 600
#   (d) SIGHUP re-reads the PSK file, client_ca, and the gateway's
#       certificate and key
#   (e) the DTLS binding holds on an open listener too: a MAC senderKID
#       other than the PSK identity, or a signature by another certificate
#       than the DTLS client certificate, is 4.03, logged, never at the CA
#   (f) two coaps listeners with different certificates or client_ca:
#       cmpgwd refuses to start, naming the listener (libcoap keeps one set
#       per context); client_certificate may differ
#   (g) client_certificate per listener: next to an "optional" listener, a
#       "required" one still fails a handshake without a client certificate
#       (cmpcoap, coap-client; nothing reaches the CA) and serves one with
#       it; the "optional" one serves both
#   (h) next to an "optional" listener a "none" one asks for no client
#       certificate: a node offering one not anchored by client_ca is
#       served, and a cr signed by another than the DTLS certificate is not
#       bound to it (served, no client_subject recorded), where the
#       "optional" listener refuses both
#   (i) a "required" listener whose handshakes could not ask for a
#       certificate (a reload that keeps the running credentials) refuses
#       each request without one: 4.01, logged, nothing at the CA
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cli
require_cmd openssl sqlite3 "$COAP_CLIENT"

make_pki
start_ca "$PKI"
P=$PKI
DTLS_PORT=$(free_port udp)
DTLS_URI=coaps://127.0.0.1:$DTLS_PORT
PSK_KEY=k3y-for-node-psk
printf '# cmpgw test PSKs\nnode-psk:%s\nother:0x00112233445566778899aabbccddeeff\n' "$PSK_KEY" >"$T/psk.txt"
chmod 600 "$T/psk.txt"
printf '%s\n' "$PSK_KEY" >"$T/psk.key"
MAC=(--ref "$CA_REF" --secret "$CA_SECRET")

# coaps_config FILE EXTRA_JSON: coap:// on GW_PORT (start_gw probes it) and
# coaps:// on DTLS_PORT with the PSK file plus EXTRA_JSON keys
coaps_config() {
        local file=$1 extra=${2:-}
        write_config "$file"
        python3 - "$file" "$DTLS_URI" "$T/psk.txt" "$extra" <<'PY'
import json, sys
f, uri, psk, extra = sys.argv[1:]
c = json.load(open(f))
l = {"uri": uri, "psk_file": psk}
if extra:
    l.update(json.loads(extra))
c["listen"].append(l)
json.dump(c, open(f, "w"), indent=2)
PY
}

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
        cert_eq "$2" "$P/ee.pem" || fail "$1: $2 is not the CA's certificate"
        log "ok: $1 got $(openssl x509 -in "$2" -noout -subject | tr '\n' ' ')"
}
# discover_at NAME URI ARGS...: coap-client GET URI/.well-known/core over
# coaps; output in $T/NAME.out
discover_at() {
        local name=$1 uri=$2
        shift 2
        timeout 30 "$COAP_CLIENT" -B 3 "$@" -m get "$uri/.well-known/core" >"$T/$name.out" 2>&1 || true
}
discover() { discover_at "$1" "$DTLS_URI" "${@:2}"; }
# registry_ids: "psk_identity|client_subject" of the devices the gateway saw
registry_ids() {
        sqlite3 "$T/registry.db" "SELECT coalesce(psk_identity, '') || '|' || coalesce(client_subject, '') FROM devices ORDER BY id"
}
ca_requests() { grep -c 'Received request' "$T/ca.log" || true; }
# mismatch NAME DIAG ARGS...: cmpcoap ARGS is refused 4.03 with DIAG, the
# refusal is in cmpgwd's log, and the CA sees nothing of it
mismatch() {
        local name=$1 diag=$2 before
        shift 2
        before=$(ca_requests)
        must_fail "$name" "$@" --newkey "$P/ee.key" --certout "$T/$name.pem" --timeout 20
        expect_contains "$(cat "$T/$name.log")" "server answered 4.03" "$name"
        expect_contains "$(cat "$T/$name.log")" "$diag" "$name: diagnostic"
        grep -qF "refused with 4.03: $diag" "$T/gw.log" || fail "$name: the refusal is not in cmpgwd's log"
        expect_eq "$(ca_requests)" "$before" "$name: requests that reached the CA"
        [[ ! -s $T/$name.pem ]] || fail "$name: a certificate was written"
}

step "(c) a psk_file readable by group and others: cmpgwd refuses to start"
coaps_config "$T/gw.json"
chmod 644 "$T/psk.txt"
rc=0
timeout 10 "$CMPGWD" --config "$T/gw.json" >"$T/start644.log" 2>&1 || rc=$?
((rc != 0 && rc < 124)) || fail "cmpgwd started (or hung, exit $rc) with a psk_file of mode 644: $(cat "$T/start644.log")"
out=$(cat "$T/start644.log")
expect_contains "$out" "$T/psk.txt" "start-up error"
expect_contains "$out" "chmod 600" "start-up error"
expect_contains "$out" "listen[1].psk_file" "start-up error"
log "ok: refused (exit $rc): $(grep psk_file "$T/start644.log" | head -n 1)"
chmod 600 "$T/psk.txt"

step "a coaps listener without credentials is a config error naming the key"
python3 - "$T/gw.json" "$T/nocreds.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); del c["listen"][1]["psk_file"]
json.dump(c, open(sys.argv[2], "w"))
PY
rc=0
out=$("$CMPGWD" --check-config --config "$T/nocreds.json" 2>&1) || rc=$?
((rc == 1)) || fail "no-credentials config: --check-config exited $rc: $out"
expect_contains "$out" "listen[1].psk_file: missing" "no-credentials config"

step "(a) PSK: discovery over coaps with coap-client-openssl"
start_gw "$T/gw.json"
discover psk-ok -u node-psk -k "$PSK_KEY"
grep -q 'ct=259' "$T/psk-ok.out" || { cat "$T/psk-ok.out" >&2; fail "PSK discovery over coaps: no links with ct=259"; }
log "ok: coaps GET /.well-known/core with PSK node-psk"
discover psk-wrong -u node-psk -k not-the-key
if grep -q 'ct=259' "$T/psk-wrong.out"; then fail "a wrong PSK key got an answer over coaps"; fi
log "ok: a wrong key gets nothing: $(grep -av '^$' "$T/psk-wrong.out" | tail -n 1)"
discover psk-unknown -u nobody -k "$PSK_KEY"
if grep -q 'ct=259' "$T/psk-unknown.out"; then fail "an unknown PSK identity got an answer over coaps"; fi
grep -q 'unknown PSK identity "nobody"' "$T/gw.log" || fail "cmpgwd did not log the unknown identity"
grep -q "$PSK_KEY" "$T/gw.log" && fail "cmpgwd logged a PSK key"
log "ok: an unknown identity is refused and logged (without keys)"
discover plain-to-coaps
if grep -q 'ct=259' "$T/plain-to-coaps.out"; then fail "coaps answered a client without any credentials"; fi

step "(a) PSK: cmpcoap ir over coaps enrols; the registry records the PSK identity"
# the MAC reference (senderKID) is the PSK identity: a PSK session binds
# them (issue 5, cmpgw.json(5) ADMISSION); the mock CA takes any reference
hs0=$(grep -c 'DTLS session with .*PSK identity node-psk' "$T/gw.log" || true)
conf0=$(grep -c 'certConf to /.well-known/cmp -> 2.04' "$T/gw.log" || true)
must_pass ir-psk ir --server "$DTLS_URI" --psk-identity node-psk --psk-key "file:$T/psk.key" \
        --ref node-psk --secret "$CA_SECRET" --newkey "$P/ee.key" --subject /CN=node-psk --certout "$T/ir-psk.pem"
got_cert ir-psk "$T/ir-psk.pem"
# RFC 9482 §4: DTLS associations SHOULD be kept alive and reused: the ir
# and the certConf of one enrolment share one handshake
expect_eq "$(($(grep -c 'certConf to /.well-known/cmp -> 2.04' "$T/gw.log") - conf0))" 1 "certConfs of the PSK ir"
expect_eq "$(($(grep -c 'DTLS session with .*PSK identity node-psk' "$T/gw.log") - hs0))" 1 \
        "DTLS handshakes of one enrolment (ir and certConf)"
ids=$(registry_ids)
expect_eq "$ids" "node-psk|" "registry psk_identity|client_subject after the PSK ir"
log "ok: registry: $ids"

step "(a) PSK given as 0xHEX"
must_pass genm-hex genm --server "$DTLS_URI" --psk-identity other \
        --psk-key 0x00112233445566778899aabbccddeeff --ref other --secret "$CA_SECRET"

step "(e) an open listener binds the PSK identity: another MAC senderKID is 4.03"
mismatch ir-kid-mismatch "not admitted: CMP senderKID \"$CA_REF\" is not the DTLS PSK identity \"node-psk\"" \
        ir --server "$DTLS_URI" --psk-identity node-psk --psk-key "file:$T/psk.key" "${MAC[@]}" --subject /CN=node-psk

step "(a) cmpcoap with a wrong PSK key names the failed handshake"
must_fail ir-badpsk ir --server "$DTLS_URI" --psk-identity node-psk --psk-key pass-wrong \
        "${MAC[@]}" --newkey "$P/ee.key" --subject /CN=x --certout "$T/bad.pem" --timeout 8
out=$(cat "$T/ir-badpsk.log")
expect_contains "$out" "DTLS handshake with 127.0.0.1:$DTLS_PORT failed" "cmpcoap with a wrong key"
expect_contains "$out" "--psk-identity" "cmpcoap with a wrong key"
[[ ! -s $T/bad.pem ]] || fail "ir-badpsk wrote a certificate"

step "(d) SIGHUP re-reads the PSK file"
printf 'node-psk:rotated-key\n' >"$T/psk.txt"
reload_gw_logged 'coaps credentials re-read'
discover psk-rotated -u node-psk -k rotated-key
grep -q 'ct=259' "$T/psk-rotated.out" || fail "the rotated key does not work after SIGHUP"
discover psk-old -u node-psk -k "$PSK_KEY"
if grep -q 'ct=259' "$T/psk-old.out"; then fail "the old key still works after SIGHUP"; fi
log "ok: the new key works, the old one does not"
printf 'node-psk:%s\nother:0x00112233445566778899aabbccddeeff\n' "$PSK_KEY" >"$T/psk.txt"
gw_alive
stop_gw

step "(b) certificates: cmpcoap with a client certificate enrols; the registry records its subject"
cp "$P/chain.pem" "$T/client-ca.pem"
cp "$P/gw-dtls-chain.pem" "$T/gw-cert.pem"
cp "$P/gw-dtls.key" "$T/gw-key.pem"
coaps_config "$T/gw-cert.json" "{\"certificate\": \"$T/gw-cert.pem\", \"private_key\": \"$T/gw-key.pem\", \"client_ca\": \"$T/client-ca.pem\"}"
start_gw "$T/gw-cert.json"
TLS=(--tls-cert "$P/client-dtls.pem" --tls-key "$P/client-dtls.key" --tls-trusted "$P/trusted.pem")
must_pass ir-cert ir --server "$DTLS_URI" "${TLS[@]}" "${MAC[@]}" \
        --newkey "$P/ee.key" --subject /CN=node-cert --certout "$T/ir-cert.pem"
got_cert ir-cert "$T/ir-cert.pem"
ids=$(registry_ids)
expect_eq "$ids" "|CN=dtls client,O=cmpgw test" "registry psk_identity|client_subject after the certificate ir"
log "ok: registry: $ids"
step "(e) an open listener binds the client certificate: a cr signed by another is 4.03"
mismatch cr-cert-mismatch "not admitted: CMP sender CN=client" \
        cr --server "$DTLS_URI" "${TLS[@]}" --cert "$P/client.pem" --key "$P/client.key" \
        --trusted "$P/trusted.pem" --extracerts "$P/chain.pem" --subject /CN=node-cert
expect_contains "$(cat "$T/cr-cert-mismatch.log")" "is not the subject of the DTLS client certificate" "cr-cert-mismatch"
step "(d) SIGHUP re-reads client_ca: a withdrawn CA's client certificate is refused, then served again"
cp "$P/srv.pem" "$T/client-ca.pem"      # does not anchor client-dtls.pem
reload_gw_logged 'coaps credentials re-read' 2
must_fail genm-ca-withdrawn genm --server "$DTLS_URI" "${TLS[@]}" "${MAC[@]}" --timeout 30
expect_contains "$(cat "$T/genm-ca-withdrawn.log")" "DTLS handshake with 127.0.0.1:$DTLS_PORT failed" "client_ca withdrawn"
cp "$P/chain.pem" "$T/client-ca.pem"
reload_gw_logged 'coaps credentials re-read' 3
must_pass genm-ca-back genm --server "$DTLS_URI" "${TLS[@]}" "${MAC[@]}"

step "(d) SIGHUP re-reads the gateway's certificate and key: a rotated certificate is served"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=rotated gateway" \
        -addext subjectAltName=IP:127.0.0.1 -keyout "$T/rotated.key" -out "$T/rotated.pem" 2>"$T/rotated.log" ||
        { cat "$T/rotated.log" >&2; fail "cannot make the rotated certificate"; }
cp "$T/rotated.pem" "$T/gw-cert.pem"
cp "$T/rotated.key" "$T/gw-key.pem"
reload_gw_logged 'coaps credentials re-read' 4
must_pass genm-rotated genm --server "$DTLS_URI" --tls-trusted "$T/rotated.pem" "${MAC[@]}"
must_fail genm-rotated-old genm --server "$DTLS_URI" --tls-trusted "$P/trusted.pem" "${MAC[@]}" --timeout 30
expect_contains "$(cat "$T/genm-rotated-old.log")" "DTLS handshake with 127.0.0.1:$DTLS_PORT failed" "the old anchor after rotation"
cp "$P/gw-dtls-chain.pem" "$T/gw-cert.pem"
cp "$P/gw-dtls.key" "$T/gw-key.pem"
reload_gw_logged 'coaps credentials re-read' 5
step "(b) optional: a client without a certificate (server authenticated) is served"
must_pass genm-nocert genm --server "$DTLS_URI" --tls-trusted "$P/trusted.pem" "${MAC[@]}"
step "(b) cmpcoap refuses a server certificate its --tls-trusted does not anchor"
must_fail genm-untrusted genm --server "$DTLS_URI" --tls-trusted "$P/srv.pem" "${MAC[@]}" --timeout 30
expect_contains "$(cat "$T/genm-untrusted.log")" "DTLS handshake with 127.0.0.1:$DTLS_PORT failed" "untrusted server"
stop_gw

step "(b) client_certificate \"required\": a client without a certificate is refused"
coaps_config "$T/gw-req.json" "{\"certificate\": \"$P/gw-dtls-chain.pem\", \"private_key\": \"$P/gw-dtls.key\", \"client_ca\": \"$P/chain.pem\", \"client_certificate\": \"required\"}"
start_gw "$T/gw-req.json"
must_fail genm-req-nocert genm --server "$DTLS_URI" --tls-trusted "$P/trusted.pem" "${MAC[@]}" --timeout 30
expect_contains "$(cat "$T/genm-req-nocert.log")" "DTLS handshake with 127.0.0.1:$DTLS_PORT failed" "required, no certificate"
discover req-nocert -R "$P/trusted.pem"
if grep -q 'ct=259' "$T/req-nocert.out"; then fail "coap-client without a certificate was served"; fi
discover req-cert -R "$P/trusted.pem" -c "$P/client-dtls.pem" -j "$P/client-dtls.key"
grep -q 'ct=259' "$T/req-cert.out" || { cat "$T/req-cert.out" >&2; fail "coap-client with a certificate was refused"; }
must_pass genm-req-cert genm --server "$DTLS_URI" "${TLS[@]}" "${MAC[@]}"
log "ok: without a certificate refused, with one served"

gw_alive
stop_gw

# two_coaps_config FILE EXTRA_A URI_B EXTRA_B: coaps_config FILE EXTRA_A
# (listen[1] on DTLS_URI), and listen[2] on URI_B alike but for EXTRA_B
two_coaps_config() {
        coaps_config "$1" "$2"
        /usr/bin/python3 - "$1" "$3" "$4" <<'PY'
import json, sys
f, uri, extra = sys.argv[1:]
c = json.load(open(f))
c["listen"].append(dict(c["listen"][1], uri=uri, **json.loads(extra)))
json.dump(c, open(f, "w"), indent=2)
PY
}
CERTS="\"certificate\": \"$P/gw-dtls-chain.pem\", \"private_key\": \"$P/gw-dtls.key\", \"client_ca\": \"$P/chain.pem\""
B_URI=coaps://127.0.0.1:$(free_port udp)

step "(f) two coaps listeners with different client_ca or certificates: cmpgwd refuses to start"
for other in "\"client_ca\": \"$P/srv.pem\"" "\"certificate\": \"$T/rotated.pem\", \"private_key\": \"$T/rotated.key\""; do
        two_coaps_config "$T/gw-two.json" "{$CERTS}" "$B_URI" "{$other}"
        rc=0
        timeout 10 "$CMPGWD" --config "$T/gw-two.json" >"$T/start-two.log" 2>&1 || rc=$?
        ((rc != 0 && rc < 124)) || fail "cmpgwd started (or hung, exit $rc) with two coaps listeners differing in $other"
        expect_contains "$(cat "$T/start-two.log")" \
                "listen[2]: every coaps:// listener must name the same psk_file, certificate, private_key and client_ca as $DTLS_URI" \
                "start-up error"
        expect_contains "$(cat "$T/start-two.log")" "only client_certificate may differ" "start-up error"
        log "ok: refused (exit $rc) with $other"
done

step "(g) client_certificate per listener: \"required\" next to \"optional\""
two_coaps_config "$T/gw-req-opt.json" "{$CERTS, \"client_certificate\": \"required\"}" "$B_URI" \
        '{"client_certificate": "optional"}'
start_gw "$T/gw-req-opt.json"
grep -qF "listening on $DTLS_URI (DTLS: PSK, certificate, client certificate required)" "$T/gw.log" ||
        fail "the start-up log does not name listen[1]'s own client_certificate"
grep -qF "listening on $B_URI (DTLS: PSK, certificate, client certificate optional)" "$T/gw.log" ||
        fail "the start-up log does not name listen[2]'s own client_certificate"
before=$(ca_requests)
must_fail genm-a-nocert genm --server "$DTLS_URI" --tls-trusted "$P/trusted.pem" "${MAC[@]}" --timeout 30
expect_contains "$(cat "$T/genm-a-nocert.log")" "DTLS handshake with 127.0.0.1:$DTLS_PORT failed" \
        "required listener, no certificate"
discover a-nocert -R "$P/trusted.pem"
if grep -q 'ct=259' "$T/a-nocert.out"; then fail "the required listener served coap-client without a certificate"; fi
expect_eq "$(ca_requests)" "$before" "requests from clients without a certificate that reached the CA"
must_pass genm-b-nocert genm --server "$B_URI" --tls-trusted "$P/trusted.pem" "${MAC[@]}"
discover_at b-nocert "$B_URI" -R "$P/trusted.pem"
grep -q 'ct=259' "$T/b-nocert.out" || { cat "$T/b-nocert.out" >&2; fail "the optional listener refused coap-client without a certificate"; }
must_pass genm-a-cert genm --server "$DTLS_URI" "${TLS[@]}" "${MAC[@]}"
discover a-cert -R "$P/trusted.pem" -c "$P/client-dtls.pem" -j "$P/client-dtls.key"
grep -q 'ct=259' "$T/a-cert.out" || { cat "$T/a-cert.out" >&2; fail "the required listener refused coap-client with a certificate"; }
must_pass genm-a-psk genm --server "$DTLS_URI" --psk-identity node-psk --psk-key "file:$T/psk.key" \
        --ref node-psk --secret "$CA_SECRET"
log "ok: required refuses a handshake without a certificate, optional serves it, both serve one with it and PSK"
gw_alive
stop_gw

step "(h) client_certificate \"none\" next to \"optional\": a client certificate is not asked for there"
two_coaps_config "$T/gw-none-opt.json" "{$CERTS, \"client_certificate\": \"none\"}" "$B_URI" \
        '{"client_certificate": "optional"}'
start_gw "$T/gw-none-opt.json"
grep -qF "listening on $DTLS_URI (DTLS: PSK, certificate, no client certificates)" "$T/gw.log" ||
        fail "the start-up log does not name listen[1]'s own client_certificate"
SELF=(--tls-cert "$T/rotated.pem" --tls-key "$T/rotated.key" --tls-trusted "$P/trusted.pem")
must_pass genm-none-self genm --server "$DTLS_URI" "${SELF[@]}" "${MAC[@]}"
must_fail genm-opt-self genm --server "$B_URI" "${SELF[@]}" "${MAC[@]}" --timeout 30
expect_contains "$(cat "$T/genm-opt-self.log")" "DTLS handshake with ${B_URI#coaps://} failed" \
        "optional listener, a certificate client_ca does not anchor"
must_pass cr-none cr --server "$DTLS_URI" "${TLS[@]}" --cert "$P/client.pem" --key "$P/client.key" \
        --trusted "$P/trusted.pem" --extracerts "$P/chain.pem" --newkey "$P/ee.key" --subject /CN=node-none \
        --certout "$T/cr-none.pem"
got_cert cr-none "$T/cr-none.pem"
# the mock CA issues ee.pem whatever is asked: its device is the cr's
seen=$(sqlite3 "$T/registry.db" "SELECT coalesce(sender, '') || '|' || coalesce(client_subject, '') FROM devices WHERE subject = 'CN=ee,O=cmpgw test'")
expect_eq "$seen" "CN=client,O=cmpgw test|" "registry sender|client_subject after the cr on the \"none\" listener"
mismatch cr-opt-mismatch "not admitted: CMP sender CN=client" \
        cr --server "$B_URI" "${TLS[@]}" --cert "$P/client.pem" --key "$P/client.key" \
        --trusted "$P/trusted.pem" --extracerts "$P/chain.pem" --subject /CN=node-opt
log "ok: the none listener neither asks for nor binds a client certificate; the optional one does both"
gw_alive
stop_gw

step "(i) a \"required\" listener refuses requests of sessions without a client certificate: 4.01"
# both "none" at start: the context loads no client_ca; the reload makes
# listen[1] "required" but turns PSK off, so the running credentials stay
two_coaps_config "$T/gw-none-none.json" "{$CERTS, \"client_certificate\": \"none\"}" "$B_URI" \
        '{"client_certificate": "none"}'
start_gw "$T/gw-none-none.json"
two_coaps_config "$T/gw-req-kept.json" "{$CERTS, \"client_certificate\": \"required\"}" "$B_URI" \
        '{"client_certificate": "none"}'
/usr/bin/python3 - "$T/gw-req-kept.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for l in c["listen"][1:]:
    del l["psk_file"]
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
cp "$T/gw-req-kept.json" "$T/gw-none-none.json"
reload_gw_logged 'keeping the running DTLS credentials'
before=$(ca_requests)
must_fail genm-kept-nocert genm --server "$DTLS_URI" --tls-trusted "$P/trusted.pem" "${MAC[@]}" --timeout 30
diag="not admitted: listener $DTLS_URI has client_certificate required"
expect_contains "$(cat "$T/genm-kept-nocert.log")" "server answered 4.01" "required listener, session without a certificate"
expect_contains "$(cat "$T/genm-kept-nocert.log")" "$diag" "required listener: diagnostic"
grep -qF "refused with 4.01: $diag" "$T/gw.log" || fail "the 4.01 refusal is not in cmpgwd's log"
expect_eq "$(ca_requests)" "$before" "requests without a certificate on the required listener that reached the CA"
must_pass genm-kept-b genm --server "$B_URI" --tls-trusted "$P/trusted.pem" "${MAC[@]}"
log "ok: 4.01 on the required listener, served on the other"
gw_alive
stop_gw

kill -0 "$CA_PID" 2>/dev/null || fail "the mock CA died (see $T/ca.log)"
log "PASS"
