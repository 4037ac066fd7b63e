#!/usr/bin/env bash
# upstreams[].max_connections caps the HTTP exchanges (and so connections)
# to one upstream at once; the rest wait their turn and are answered (issue
# 6: keep-alive pool with a cap). The upstream is a fixture standing in for
# a slow RA: it takes 1 s per request, answers a genp and records how many
# requests it had at once. The same cap holds for a CoAP upstream (a
# session per exchange, the rest wait): a second cmpgwd in front of it.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cmd openssl python3 "$COAP_CLIENT"

make_pki
start_ca "$PKI"
capture_requests "$T/req"
capture_genp "$T/genp.der"
stop_ca

port=$(free_port tcp)
python3 - "$port" "$T/genp.der" "$T/peak" >"$T/slow.log" 2>&1 <<'PY' &
import http.server, sys, threading, time
port, answer, peak_file = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
lock, now, peak = threading.Lock(), [0], [0]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            now[0] += 1; peak[0] = max(peak[0], now[0]); open(peak_file, "w").write(str(peak[0]))
        time.sleep(1)
        with lock:
            now[0] -= 1
        self.send_response(200); self.send_header("Content-Type", "application/pkixcmp")
        self.send_header("Content-Length", str(len(answer))); self.end_headers(); self.wfile.write(answer)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
PIDS+=($!)
wait_tcp "${PIDS[-1]}" "$port" 10 "$T/slow.log"
write_config "$T/gw.json" "[ { \"name\": \"slow\", \"uri\": \"http://127.0.0.1:$port/pkix/\", \"max_connections\": 2, \"timeout\": 20 } ]"
start_gw "$T/gw.json"

step "6 nodes at once against a cap of 2"
start=$SECONDS
clients=()
for i in 1 2 3 4 5 6; do
        COAP_WAIT=30 coap_req "n$i" -m post -t 259 -b 64 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp" &
        clients+=($!)
done
for p in "${clients[@]}"; do wait "$p" || true; done
for i in 1 2 3 4 5 6; do
        code=$(grep -haE '^v:1 t:[A-Z]+ c:[1-5]\.[0-9][0-9] ' "$T/n$i.out" "$T/n$i.err" | grep -av ' c:0\.00 \| c:2\.31 ' |
                tail -n 1 | sed -nE 's/^v:1 t:[A-Z]+ c:([1-5]\.[0-9][0-9]) .*/\1/p')
        expect_eq "$code" 2.04 "node $i's answer"
done
expect_eq "$(cat "$T/peak")" 2 "requests the upstream had at once"
((SECONDS - start >= 3)) || fail "6 requests of 1 s through 2 connections took $((SECONDS - start)) s"
log "6 answered in $((SECONDS - start)) s with at most 2 at the upstream"

step "a CoAP upstream: 6 nodes at once against a cap of 2 sessions"
# gateway B (no cap to speak of) in front of the same slow RA; gateway A
# reaches B over CoAP with max_connections 2: A keeps at most 2 exchanges
# on the wire (one per session) and the rest wait for a session, never
# sharing one (a libcoap server keeps one Block2 transfer per session)
echo 0 >"$T/peak"
b_port=$(free_port udp)
cat >"$T/b.json" <<JSON
{ "listen": [ { "uri": "coap://127.0.0.1:$b_port" } ],
  "upstreams": [ { "name": "slow", "uri": "http://127.0.0.1:$port/pkix/", "max_connections": 10, "timeout": 20 } ],
  "registry": { "path": "$T/b.db" }, "dbus": { "bus": "none" } }
JSON
start_other_gw b "$T/b.json" "$b_port"
stop_gw
GW_PORT=$(free_port udp)
write_config "$T/a.json" "[ { \"name\": \"b\", \"uri\": \"coap://127.0.0.1:$b_port/.well-known/cmp\", \"max_connections\": 2, \"timeout\": 20 } ]"
start_gw "$T/a.json"
start=$SECONDS
clients=()
for i in 1 2 3 4 5 6; do
        COAP_WAIT=30 coap_req "c$i" -m post -t 259 -b 64 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp" &
        clients+=($!)
done
for p in "${clients[@]}"; do wait "$p" || true; done
for i in 1 2 3 4 5 6; do
        code=$(grep -haE '^v:1 t:[A-Z]+ c:[1-5]\.[0-9][0-9] ' "$T/c$i.out" "$T/c$i.err" | grep -av ' c:0\.00 \| c:2\.31 ' |
                tail -n 1 | sed -nE 's/^v:1 t:[A-Z]+ c:([1-5]\.[0-9][0-9]) .*/\1/p')
        expect_eq "$code" 2.04 "node $i's answer through the CoAP upstream"
done
expect_eq "$(cat "$T/peak")" 2 "requests the RA had at once behind a CoAP upstream with 2 sessions"
log "6 answered in $((SECONDS - start)) s through a CoAP upstream of 2 sessions"
