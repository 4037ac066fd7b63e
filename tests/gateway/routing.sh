#!/usr/bin/env bash
# Routing (RFC 9482 §3; issue 6): a label route first, then the upstream
# that lists the request's Uri-Host, then the default; 4.04 when nothing
# takes it; and the HTTP path built from an upstream URI ending in
# /.well-known/cmp: /p/<label>/<HTTP operation label> (PRODUCT.md's table).
# The path-recording upstream is a fixture standing in for an RA: it answers
# every POST with a genp captured from openssl cmp and writes down the path.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cmd openssl python3 "$COAP_CLIENT"

make_pki
start_ca "$PKI"
capture_requests "$T/req"
capture_genp "$T/genp.der"

rec_port=$(free_port tcp)
python3 - "$rec_port" "$T/genp.der" "$T/paths" >"$T/rec.log" 2>&1 <<'PY' &
import http.server, sys
port, answer, paths = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        open(paths, "a").write(self.path + "\n")
        self.send_response(200); self.send_header("Content-Type", "application/pkixcmp")
        self.send_header("Content-Length", str(len(answer))); self.end_headers(); self.wfile.write(answer)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
PIDS+=($!)
wait_tcp "${PIDS[-1]}" "$rec_port" 10 "$T/rec.log"
dead_port=$(free_port tcp)

write_config "$T/gw.json" "[
  { \"name\": \"ca\", \"uri\": \"$CA_URI\", \"hosts\": [\"ca.test\"], \"labels\": [\"a\"] },
  { \"name\": \"ra\", \"uri\": \"http://127.0.0.1:$rec_port/.well-known/cmp\", \"labels\": [\"factory\"] },
  { \"name\": \"dead\", \"uri\": \"http://127.0.0.1:$dead_port/pkix/\", \"default\": true } ]"
start_gw "$T/gw.json"
CMP=$GW_URI/.well-known/cmp
post() { local name=$1 want=$2; shift 2; expect_code "$name" "$want" -m post -t 259 -b 64 -f "$T/req/genm.der" "$@"; }

step "Uri-Host picks the upstream; without it the default takes the request"
post host 2.04 -O 3,ca.test "$CMP"
grep -q 'genm to /.well-known/cmp -> 2.04 via ca' "$T/gw.log" || fail "Uri-Host ca.test did not reach upstream ca"
post host-case 2.04 -O 3,CA.TEST "$CMP"
post nohost 5.03 "$CMP"
grep -q 'via dead' "$T/gw.log" || fail "a request without Uri-Host did not reach the default"
post label-first 2.04 -O 3,other.test "$CMP/p/a"

step "the HTTP path: /p/<label>/<HTTP operation> under /.well-known/cmp"
post crts 2.04 "$CMP/p/factory/crts"
post bare 2.04 "$CMP/p/factory"
expect_eq "$(sed -n 1p "$T/paths")" "/.well-known/cmp/p/factory/getcacerts" "path for crts"
expect_eq "$(sed -n 2p "$T/paths")" "/.well-known/cmp/p/factory" "path without an operation"

step "no default: an unknown host and an unknown label are 4.04"
stop_gw
write_config "$T/gw2.json" "[ { \"name\": \"ca\", \"uri\": \"$CA_URI\", \"hosts\": [\"ca.test\"], \"default\": false } ]"
start_gw "$T/gw2.json"
post host2 2.04 -O 3,ca.test "$CMP"
post otherhost 4.04 -O 3,other.test "$CMP"
expect_contains "$COAP_DIAG" "no upstream takes" "4.04 diagnostic"
post nolabel 4.04 "$CMP/p/zzz"
