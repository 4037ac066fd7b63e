#!/usr/bin/env bash
# https:// upstreams with trust anchors and a client certificate (issue 5;
# RFC 9482 §4). The HTTPS server is a fixture standing in for an RA (openssl
# cmp serves plain HTTP only): Python's ssl module with the test PKI's
# server certificate, requiring a client certificate from chain.pem's CAs,
# answering every POST with a genp captured from openssl cmp.
#   (a) ca_file + certificate/private_key: 2.04
#   (b) no client certificate: the fixture refuses the handshake → 5.02
#       with curl's words; (c) ca_file not anchoring the server: 5.02 naming
#       the certificate problem; nothing is sent in either case;
#   (e) the ca_file, and then the client certificate and key, rewritten in
#       place and SIGHUP: the new files apply to the next connection
#       (withdrawn anchor or refused certificate: 5.02, nothing sent;
#       back: 2.04).
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cmd openssl /usr/bin/python3

make_pki
P=$PKI
start_ca "$P"
capture_requests "$T/req"
capture_genp "$T/genp.der"
stop_ca

port=$(free_port tcp)
/usr/bin/python3 - "$port" "$T/genp.der" "$P" "$T/posts" >"$T/tls.log" 2>&1 <<'PY' &
import http.server, ssl, sys
port, answer, pki, posts = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        open(posts, "a").write(self.path + "\n")
        self.send_response(200); self.send_header("Content-Type", "application/pkixcmp")
        self.send_header("Content-Length", str(len(answer))); self.end_headers(); self.wfile.write(answer)
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(pki + "/gw-dtls-chain.pem", pki + "/gw-dtls.key")
ctx.load_verify_locations(pki + "/chain.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
srv = http.server.HTTPServer(("127.0.0.1", port), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
PIDS+=($!)
wait_tcp "${PIDS[-1]}" "$port" 10 "$T/tls.log"
URI=https://127.0.0.1:$port/pkix/

run_gw() {      # run_gw NAME TLS_JSON: a gateway with one https upstream
        stop_gw || true
        write_config "$T/$1.json" "[ { \"name\": \"ra\", \"uri\": \"$URI\", \"timeout\": 5, $2 } ]"
        start_gw "$T/$1.json"
}
posts() { [[ -f $T/posts ]] && wc -l <"$T/posts" || echo 0; }

step "(a) ca_file + client certificate: served"
run_gw good "\"ca_file\": \"$P/trusted.pem\", \"certificate\": \"$P/client-dtls-chain.pem\", \"private_key\": \"$P/client-dtls.key\""
expect_code good 2.04 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_eq "$(pkimsg_type "$COAP_BODY")" genp "answer over https"
expect_eq "$(posts)" 1 "POSTs that reached the fixture"

step "(b) no client certificate: 5.02, nothing sent"
run_gw nocert "\"ca_file\": \"$P/trusted.pem\""
expect_code nocert 5.02 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
log "diagnostic: $COAP_DIAG"
expect_eq "$(posts)" 1 "POSTs after a refused handshake"

step "(c) ca_file that does not anchor the server: 5.02 naming the certificate"
run_gw untrusted "\"ca_file\": \"$P/srv.pem\", \"certificate\": \"$P/client-dtls-chain.pem\", \"private_key\": \"$P/client-dtls.key\""
expect_code untrusted 5.02 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_contains "$COAP_DIAG" "certificate" "untrusted server diagnostic"
expect_eq "$(posts)" 1 "POSTs after an untrusted server"

step "(e) SIGHUP after the ca_file changed in place: new connections use its new anchors"
# the same path, other contents: what an operator's certificate rotation does
cp "$P/trusted.pem" "$T/ca.pem"
cp "$P/client-dtls-chain.pem" "$T/client.pem"
cp "$P/client-dtls.key" "$T/client.key"
run_gw rotate "\"ca_file\": \"$T/ca.pem\", \"certificate\": \"$T/client.pem\", \"private_key\": \"$T/client.key\""
expect_code rotate1 2.04 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_eq "$(posts)" 2 "POSTs with the first anchors"
cp "$P/srv.pem" "$T/ca.pem"     # no longer anchors the server
reload_gw_logged 'reloaded'
expect_code rotate2 5.02 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_contains "$COAP_DIAG" "certificate" "withdrawn anchor diagnostic"
expect_eq "$(posts)" 2 "POSTs after the anchor was withdrawn"
cp "$P/trusted.pem" "$T/ca.pem"
reload_gw_logged 'reloaded' 2
expect_code rotate3 2.04 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_eq "$(posts)" 3 "POSTs after the anchor came back"

step "(e) SIGHUP after the client certificate and key changed in place: the next connection presents them"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=not from chain.pem" \
        -keyout "$T/client.key" -out "$T/client.pem" 2>"$T/selfsigned.log" ||
        { cat "$T/selfsigned.log" >&2; fail "cannot make a self-signed client certificate"; }
reload_gw_logged 'reloaded' 3
expect_code rotate4 5.02 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_eq "$(posts)" 3 "POSTs with a client certificate the fixture refuses"
cp "$P/client-dtls-chain.pem" "$T/client.pem"
cp "$P/client-dtls.key" "$T/client.key"
reload_gw_logged 'reloaded' 4
expect_code rotate5 2.04 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_eq "$(posts)" 4 "POSTs after the client certificate came back"

step "(d) ca_file on an http:// upstream is a config error naming the key"
write_config "$T/bad.json" "[ { \"name\": \"ra\", \"uri\": \"http://127.0.0.1:$port/\", \"ca_file\": \"$P/trusted.pem\" } ]"
out=$("$CMPGWD" --config "$T/bad.json" --check-config 2>&1) && fail "ca_file on http:// accepted"
expect_contains "$out" "upstreams[0].ca_file" "ca_file on http://"
gw_alive
log "ok"
