#!/usr/bin/env bash
# coaps:// upstreams and SNI routing (issue 6; RFC 9482 §3, §4):
#   node → A (coap) → B (coaps listener) → CA (HTTP, openssl cmp)
# (a) A reaches B with a PSK from its psk_file; (b) with certificates:
#     A trusts B's certificate through ca_file and presents its own, which
#     B's registry records; SIGHUP re-reads A's ca_file (rewritten in
#     place: a withdrawn anchor is 5.02, a restored one served again);
# (c) a wrong PSK and an untrusted B certificate are 5.02 with a
#     diagnostic naming the DTLS handshake, never a hang;
# (d) config errors name the key; (e) B routes by SNI: a coaps request
#     whose DTLS server name is ra.test goes to the upstream listing that
#     host, one without goes to the default.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cli
require_cmd openssl sqlite3 python3

make_pki
P=$PKI
start_ca "$P"
capture_requests "$T/req"
MAC=(--ref "$CA_REF" --secret "$CA_SECRET")

printf 'gw-a:s3cret-of-gw-a\nnode:n0de-key\n' >"$T/b-psk.txt"
printf 'gw-a:s3cret-of-gw-a\n' >"$T/a-psk.txt"
printf 'gw-a:not-the-key\n' >"$T/a-badpsk.txt"
chmod 600 "$T"/*psk.txt

# B: coap:// (for the start-up probe) and coaps:// with PSKs and a
# certificate; upstream ca is the default, ra (nobody listens) takes ra.test.
# A is a relay of B's coaps listener: it forwards nodes' MAC senderKIDs,
# which a PSK session would otherwise bind to its PSK identity (issue 5)
B_PORT=$(free_port udp)
B_DTLS=$(free_port udp)
dead_port=$(free_port tcp)
cat >"$T/b.json" <<JSON
{ "listen": [ { "uri": "coap://127.0.0.1:$B_PORT" },
              { "uri": "coaps://127.0.0.1:$B_DTLS", "psk_file": "$T/b-psk.txt",
                "certificate": "$P/gw-dtls-chain.pem", "private_key": "$P/gw-dtls.key",
                "client_ca": "$P/chain.pem", "client_certificate": "optional",
                "relays": [ "gw-a" ] } ],
  "upstreams": [ { "name": "ca", "uri": "$CA_URI", "timeout": 10, "default": true },
                 { "name": "ra", "uri": "http://127.0.0.1:$dead_port/pkix/", "hosts": ["ra.test"], "timeout": 3 } ],
  "registry": { "path": "$T/b.db" }, "dbus": { "bus": "none" } }
JSON
start_other_gw b "$T/b.json" "$B_PORT"
B_PID=$OTHER_GW_PID
B_URI=coaps://127.0.0.1:$B_DTLS/.well-known/cmp

# a_config FILE TLS_JSON: A with one coaps upstream (B) plus TLS_JSON keys
a_config() {
        write_config "$1" "[ { \"name\": \"b\", \"uri\": \"$B_URI\", \"timeout\": 10, $2 } ]"
}
ir() {  # ir NAME SUBJECT: cmpcoap ir through A; sets RC
        RC=0
        timeout 60 "$CMPCOAP" ir --server "$GW_URI/.well-known/cmp" "${MAC[@]}" --newkey "$P/ee.key" \
                --subject "$2" --certout "$T/$1.pem" --timeout 40 >"$T/$1.log" 2>&1 || RC=$?
}
b_ids() {       # what B's registry says about who sent SUBJECT
        sqlite3 "$T/b.db" "SELECT coalesce(psk_identity, '') || '|' || coalesce(client_subject, '')
                           FROM devices WHERE sender LIKE '%$1%'"
}

step "(a) A → B over coaps with A's PSK"
a_config "$T/a-psk.json" "\"psk_file\": \"$T/a-psk.txt\""
start_gw "$T/a-psk.json"
ir ir-psk /CN=via-psk
((RC == 0)) || { cat "$T/ir-psk.log" >&2; tail -n 20 "$T/gw.log" "$T/b.log" >&2; fail "ir through coaps (PSK) failed"; }
cert_eq "$T/ir-psk.pem" "$P/ee.pem" || fail "not the CA's certificate"
grep -q 'ir to /.well-known/cmp -> 2.04 via b' "$T/gw.log" || fail "A did not forward the ir to B"
expect_eq "$(b_ids via-psk)" "gw-a|" "B's registry: PSK identity of the hop"
expect_code genm-psk 2.04 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"

step "(b) A → B over coaps with certificates (ca_file + A's client certificate)"
stop_gw
cp "$P/trusted.pem" "$T/a-ca.pem"
a_config "$T/a-cert.json" "\"ca_file\": \"$T/a-ca.pem\", \"certificate\": \"$P/client-dtls-chain.pem\", \"private_key\": \"$P/client-dtls.key\""
start_gw "$T/a-cert.json"
ir ir-cert /CN=via-cert
((RC == 0)) || { cat "$T/ir-cert.log" >&2; tail -n 20 "$T/gw.log" "$T/b.log" >&2; fail "ir through coaps (certificates) failed"; }
expect_eq "$(b_ids via-cert)" "|CN=dtls client,O=cmpgw test" "B's registry: client certificate of the hop"

step "(b) SIGHUP after A's ca_file changed in place: new sessions take the new anchors"
cp "$P/srv.pem" "$T/a-ca.pem"   # no longer anchors B
reload_gw_logged 'reloaded'
COAP_WAIT=60 expect_code rotated-out 5.02 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_contains "$COAP_DIAG" "DTLS handshake" "withdrawn anchor diagnostic"
cp "$P/trusted.pem" "$T/a-ca.pem"
reload_gw_logged 'reloaded' 2
expect_code rotated-back 2.04 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"

step "(c) a wrong PSK: 5.04 naming the DTLS handshake, in time (B drops what it cannot authenticate)"
stop_gw
write_config "$T/a-bad.json" "[ { \"name\": \"b\", \"uri\": \"$B_URI\", \"timeout\": 4, \"psk_file\": \"$T/a-badpsk.txt\" } ]"
start_gw "$T/a-bad.json"
start=$SECONDS
COAP_WAIT=60 expect_code badpsk 5.04 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_contains "$COAP_DIAG" "DTLS handshake" "wrong PSK diagnostic"
log "wrong PSK → 5.04 after $((SECONDS - start)) s"
COAP_WAIT=60 expect_code badpsk-again 5.04 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_contains "$COAP_DIAG" "DTLS handshake" "wrong PSK diagnostic (a new session)"

step "(c) B's certificate not anchored by ca_file: 5.02"
stop_gw
a_config "$T/a-untrusted.json" "\"ca_file\": \"$P/srv.pem\", \"certificate\": \"$P/client-dtls-chain.pem\", \"private_key\": \"$P/client-dtls.key\""
start_gw "$T/a-untrusted.json"
COAP_WAIT=60 expect_code untrusted 5.02 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_contains "$COAP_DIAG" "DTLS handshake" "untrusted certificate diagnostic"
stop_gw

step "(d) config errors name the key"
check_config() {        # check_config NAME TLS_JSON EXPECTED
        a_config "$T/$1.json" "$2"
        local out rc=0
        out=$("$CMPGWD" --config "$T/$1.json" --check-config 2>&1) || rc=$?
        ((rc != 0)) || fail "$1: --check accepted it"
        expect_contains "$out" "$3" "$1"
}
check_config nocreds '"labels": []' "upstreams[0].ca_file: missing"
check_config both "\"psk_file\": \"$T/a-psk.txt\", \"ca_file\": \"$P/trusted.pem\"" "not both"
check_config halfcert "\"ca_file\": \"$P/trusted.pem\", \"certificate\": \"$P/client-dtls.pem\"" "go together"
write_config "$T/httppsk.json" "[ { \"name\": \"ca\", \"uri\": \"$CA_URI\", \"psk_file\": \"$T/a-psk.txt\" } ]"
out=$("$CMPGWD" --config "$T/httppsk.json" --check-config 2>&1) && fail "psk_file on an http:// upstream accepted"
expect_contains "$out" "upstreams[0].psk_file" "psk_file on http://"

step "(e) B routes by SNI: --servername ra.test reaches upstream ra, none reaches the default"
# the node's MAC reference is its PSK identity (a PSK session binds them)
NODE_MAC=(--ref node --secret "$CA_SECRET")
RC=0
timeout 60 "$CMPCOAP" genm --server "coaps://127.0.0.1:$B_DTLS/.well-known/cmp" --psk-identity node \
        --psk-key n0de-key --servername ra.test "${NODE_MAC[@]}" --timeout 20 >"$T/sni-ra.log" 2>&1 || RC=$?
((RC != 0)) || fail "genm with SNI ra.test succeeded, but ra is down"
grep -q 'genm to /.well-known/cmp -> 5.0[0-9] via ra' "$T/b.log" ||
        { grep 'request ' "$T/b.log" >&2; fail "SNI ra.test did not route to upstream ra"; }
RC=0
timeout 60 "$CMPCOAP" genm --server "coaps://127.0.0.1:$B_DTLS/.well-known/cmp" --psk-identity node \
        --psk-key n0de-key "${NODE_MAC[@]}" --timeout 20 >"$T/sni-none.log" 2>&1 || RC=$?
((RC == 0)) || { cat "$T/sni-none.log" >&2; fail "genm without SNI did not reach the default upstream"; }
grep -q 'genm to /.well-known/cmp -> 2.04 via ca' "$T/b.log" || fail "no SNI: not routed to the default"

kill -0 "$B_PID" 2>/dev/null || { tail -n 30 "$T/b.log" >&2; fail "gateway B died"; }
! grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$T/b.log" ||
        { cat "$T/b.log" >&2; fail "sanitizer report in gateway B's log"; }
log "ok"
