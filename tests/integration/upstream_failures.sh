#!/usr/bin/env bash
# upstream_failures: how cmpgwd answers when the upstream PKI fails
# (PRODUCT.md, CoAP interface, errors table):
#   refused / unreachable          -> 5.03 with Max-Age
#   no answer in time              -> 5.04 (upstream "timeout": 2)
#   garbage / non-CMP 200 body     -> 5.02
#   HTTP 4xx/5xx                   -> mapped per RFC 7252 §10.1, a CMP error
#                                     body (application/pkixcmp) relayed
# The broken CAs are python3 fixtures (tests only): a real CA does not
# misbehave on demand.  The real mock CA (openssl cmp) is used for the
# "CA stopped" case.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cmd "$COAP_CLIENT" openssl python3

make_pki
start_ca "$PKI"
capture_requests "$T/req"
R=$T/req

# A real CMP error message from the mock CA: rr for a certificate it did
# not issue is rejected with an error PKIMessage (MAC-protected, so that it
# is small and fits one CoAP PDU: coap-client shows only the first block of
# an error payload).
ossl_cmp -cmd rr -ref "$CA_REF" -secret "$CA_SECRET" -oldcert "$PKI/client.pem" -revreason 0 \
        -rspout "$T/error.der" >>"$T/capture.log" 2>&1 && fail "mock CA accepted rr for client.pem"
expect_eq "$(pkimsg_type "$T/error.der")" error "rejected rr answer"
esize=$(stat -c %s "$T/error.der")
((esize < 1000)) || fail "test bug: the CMP error message has $esize bytes"
# what coap-client prints for that payload: non-printable bytes as '.'
error_shown=$(python3 -c 'import sys; print("".join(chr(c) if 32 <= c < 127 else "." for c in open(sys.argv[1], "rb").read()))' "$T/error.der")

# ---- the broken-CA fixture: one HTTP server, behaviour chosen by the path
FIX_PORT=$(free_port tcp)
cat >"$T/fixture.py" <<'PY'
# Test fixture standing in for a broken CA (not a CA): answers every POST
# according to its path.
import http.server, socketserver, sys, time
ERROR_DER = open(sys.argv[2], "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, fmt, *a):
        sys.stderr.write("fixture: " + (fmt % a) + "\n"); sys.stderr.flush()
    def send(self, code, ctype, body):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n: self.rfile.read(n)
        p = self.path.rstrip("/")
        if p == "/hang":
            time.sleep(3600); return
        if p == "/text":    return self.send(200, "text/plain", b"hello, I am not a CA\n")
        if p == "/pkixjunk":return self.send(200, "application/pkixcmp", b"\x30\x03junk")
        if p == "/empty":   return self.send(200, "application/pkixcmp", b"")
        if p == "/e404":    return self.send(404, "text/html", b"<h1>Not Found</h1>")
        if p == "/e500":    return self.send(500, "text/plain", b"internal error")
        if p == "/e503":    return self.send(503, "text/plain", b"busy")
        if p == "/e400cmp": return self.send(400, "application/pkixcmp", ERROR_DER)
        if p == "/e500cmp": return self.send(500, "application/pkixcmp", ERROR_DER)
        self.send(418, "text/plain", b"fixture: unknown path " + p.encode())
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$T/fixture.py" "$FIX_PORT" "$T/error.der" >>"$T/fixture.log" 2>&1 &
PIDS+=($!)
wait_tcp "$!" "$FIX_PORT" 10 "$T/fixture.log"

DEAD_PORT=$(free_port tcp)   # nothing listens here
FIX=http://127.0.0.1:$FIX_PORT
up() { printf '{ "name": "%s", "uri": "%s", "labels": [ "%s" ], "timeout": %s }' "$1" "$2" "$1" "${3:-5}"; }
write_config "$T/gw.json" "[
    $(up ca "$CA_URI"),
    $(up dead "http://127.0.0.1:$DEAD_PORT/pkix/"),
    $(up hang "$FIX/hang" 2),
    $(up text "$FIX/text"),
    $(up pkixjunk "$FIX/pkixjunk"),
    $(up empty "$FIX/empty"),
    $(up e404 "$FIX/e404"),
    $(up e500 "$FIX/e500"),
    $(up e503 "$FIX/e503"),
    $(up e400cmp "$FIX/e400cmp"),
    $(up e500cmp "$FIX/e500cmp") ]"
start_gw "$T/gw.json"
P=$GW_URI/.well-known/cmp/p
post() { expect_code "$1" "$2" -m post -t 259 -f "$R/genm.der" "$P/$1"; }

step "baseline: the real CA through /p/ca answers 2.04"
post ca 2.04
expect_eq "$(pkimsg_type "$COAP_BODY")" genp "genm via /p/ca"

step "5.03 with Max-Age: nothing listens on the upstream port"
post dead 5.03
max_age=$(coap_option Max-Age)
expect_nonempty "$max_age" "Max-Age of 5.03 ($COAP_RESP)"

step "5.03 with Max-Age: the real CA stopped"
stop_ca
post ca 5.03
expect_nonempty "$(coap_option Max-Age)" "Max-Age of 5.03 after the CA stopped ($COAP_RESP)"

step "5.04: the upstream accepts and never answers (timeout 2 s)"
t0=$(date +%s%N)
post hang 5.04
ms=$((($(date +%s%N) - t0) / 1000000))
log "5.04 after $ms ms"
((ms >= 1500)) || fail "5.04 after only $ms ms with an upstream timeout of 2 s"
((ms <= 8000)) || fail "5.04 took $ms ms with an upstream timeout of 2 s"

step "the gateway still serves other requests after a timeout"
post text 5.02

step "5.02: a 200 answer that is not CMP"
post pkixjunk 5.02
post empty 5.02

step "HTTP errors mapped per RFC 7252 §10.1"
post e404 4.04
post e500 5.00
post e503 5.03

step "HTTP error with a CMP error body: mapped code, the body relayed"
for m in e400cmp:4.00 e500cmp:5.00; do
        post "${m%%:*}" "${m#*:}"
        [[ $COAP_RESP =~ Content-Format:(259|application/pkixcmp) ]] ||
                fail "${m%%:*}: relayed CMP error without Content-Format 259: $COAP_RESP"
        # coap-client prints an error payload on stderr, one char per byte
        [[ $COAP_DIAG == "$error_shown" ]] ||
                fail "${m%%:*}: the CMP error body was not relayed unchanged (got ${#COAP_DIAG} bytes: '$COAP_DIAG')"
done

gw_alive
log "PASS"
