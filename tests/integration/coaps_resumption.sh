#!/usr/bin/env bash
# coaps_resumption: cmpgwd's coaps listener never resumes a DTLS session
# (issue 5). A resumed session skips the PSK lookup and the client_ca check,
# so a PSK identity or CA withdrawn by SIGHUP would go on being served until
# the client's ticket expires, and a resumed session carries no PSK identity
# for the registry; OpenSSL also refuses to resume a client-certificate
# session without a session id context (alert internal_error, not a full
# handshake). The client is `openssl s_client -dtls1_2` with -sess_out /
# -sess_in (libcoap 4.3.1's client cannot offer a session):
#   (a) PSK: offering the previous session gets a full handshake ("New")
#   (b) certificates: the same, and no internal_error alert
#   (c) a PSK identity removed from psk_file + SIGHUP: its old session is
#       not resumed, the handshake is refused
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cmd openssl "$COAP_CLIENT"

make_pki
P=$PKI
CA_URI=http://127.0.0.1:9/pkix/        # never contacted: only handshakes here
DTLS_PORT=$(free_port udp)
PSK_KEY=k3y-for-node-psk
printf 'node-psk:%s\nother:0x00112233445566778899aabbccddeeff\n' "$PSK_KEY" >"$T/psk.txt"
chmod 600 "$T/psk.txt"
PSK=(-psk_identity node-psk -psk "$(printf %s "$PSK_KEY" | od -An -tx1 | tr -d ' \n')")
CERT=(-cert "$P/client-dtls.pem" -key "$P/client-dtls.key" -CAfile "$P/trusted.pem")

# coaps_gw FILE CREDS_JSON: coap on GW_PORT, coaps on DTLS_PORT with CREDS
coaps_gw() {
        write_config "$1"
        python3 - "$1" "coaps://127.0.0.1:$DTLS_PORT" "$2" <<'PY'
import json, sys
f, uri, creds = sys.argv[1:]
c = json.load(open(f))
l = {"uri": uri}
l.update(json.loads(creds))
c["listen"].append(l)
json.dump(c, open(f, "w"), indent=2)
PY
        start_gw "$1"
}

# handshake NAME ARGS...: one s_client handshake (kept open 1 s, then
# closed); its output in $T/NAME.out; prints "New", "Reused" or "failed"
handshake() {
        local name=$1
        shift
        sleep 1 | timeout 10 openssl s_client -dtls1_2 -connect "127.0.0.1:$DTLS_PORT" "$@" \
                >"$T/$name.out" 2>&1 || true
        if grep -q 'alert' "$T/$name.out"; then
                echo failed
        else
                sed -nE 's/^(New|Reused), .*/\1/p' "$T/$name.out" | head -n 1
        fi
}

# first_session NAME SESS ARGS...: a handshake that saves its session in
# SESS if it is resumable (a session ID or a ticket); with none, the server
# offered nothing to resume, which must show in the output
first_session() {
        local name=$1 sess=$2
        shift 2
        expect_eq "$(handshake "$name" "$@" -sess_out "$sess")" New "$name"
        if [[ ! -s $sess ]]; then
                grep -qE '^ +Session-ID: *$' "$T/$name.out" || fail "$name: no session saved, yet a session ID"
                grep -q 'TLS session ticket:' "$T/$name.out" && fail "$name: no session saved, yet a ticket"
                log "$name: nothing to resume (no session ID, no ticket)"
        fi
}

step "(a) PSK-only listener: its first session ever is not resumed"
coaps_gw "$T/gw-psk.json" "{\"psk_file\": \"$T/psk.txt\"}"
# the very first handshake: the only one before cmpgwd sees libcoap's SSL_CTX
first_session psk1 "$T/psk1.sess" "${PSK[@]}"
if [[ -s $T/psk1.sess ]]; then
        expect_eq "$(handshake psk2 "${PSK[@]}" -sess_in "$T/psk1.sess")" New "PSK handshake offering the first session"
fi
first_session psk3 "$T/psk3.sess" "${PSK[@]}"
[[ ! -s $T/psk3.sess ]] || fail "the second PSK session is resumable (session ID or ticket)"

step "(c) a PSK identity withdrawn by SIGHUP does not come back by resumption"
printf 'other:0x00112233445566778899aabbccddeeff\n' >"$T/psk.txt"
reload_gw_logged 'coaps credentials re-read'
expect_eq "$(handshake psk4 "${PSK[@]}")" failed "a new handshake with the withdrawn identity"
if [[ -s $T/psk1.sess ]]; then
        out=$(handshake psk5 "${PSK[@]}" -sess_in "$T/psk1.sess")
        [[ $out == failed ]] || { cat "$T/psk5.out" >&2; fail "the withdrawn identity's old session was served: $out"; }
fi
gw_alive
stop_gw
printf 'node-psk:%s\n' "$PSK_KEY" >"$T/psk.txt"

step "(b) PSK and certificates: full handshakes, no internal_error alert"
GW_PORT=''
coaps_gw "$T/gw-cert.json" "{\"psk_file\": \"$T/psk.txt\", \"certificate\": \"$P/gw-dtls-chain.pem\",
        \"private_key\": \"$P/gw-dtls.key\", \"client_ca\": \"$P/chain.pem\"}"
for kind in cert psk; do
        if [[ $kind == cert ]]; then args=("${CERT[@]}"); else args=("${PSK[@]}"); fi
        first_session "$kind-a" "$T/$kind-a.sess" "${args[@]}"
        if [[ -s $T/$kind-a.sess ]]; then
                out=$(handshake "$kind-b" "${args[@]}" -sess_in "$T/$kind-a.sess")
                [[ $out == New ]] || { cat "$T/$kind-b.out" >&2; fail "$kind handshake offering the old session: $out"; }
        fi
done

gw_alive
log "PASS"
