#!/usr/bin/env bash
# No CMP message is ever delivered twice: against an HTTP upstream that, like
# `openssl cmp` (PEERS.md), says keep-alive but closes the connection after
# every answer, a run of enrolments through cmpgwd reaches the upstream
# exactly once each and every node gets its answer.
# The upstream is a fixture standing in for such a CA: it answers each POST
# with a real ip message captured from `openssl cmp` and counts what arrives.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cmd openssl python3 "$COAP_CLIENT"

make_pki
start_ca "$PKI"
ossl_cmp -cmd ir -ref "$CA_REF" -secret "$CA_SECRET" -newkey "$PKI/ee.key" -subject /CN=reuse \
        -implicit_confirm -disable_confirm -certout "$T/ee.pem" -trusted "$PKI/trusted.pem" \
        -reqout "$T/ir.der" -rspout "$T/ip.der" >"$T/capture.log" 2>&1 ||
        { cat "$T/capture.log" >&2; fail "capture of an ir/ip pair"; }
stop_ca
expect_eq "$(pkimsg_type "$T/ip.der")" ip "captured answer"

port=$(free_port tcp)
python3 - "$port" "$T/ip.der" "$T/count" >"$T/fixture.log" 2>&1 <<'PY' &
import socket, sys
port, answer, count = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(16)
n = 0
while True:
    c, _ = s.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(65536)
        if not chunk: break
        data += chunk
    if not data: c.close(); continue
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = c.recv(65536)
        if not chunk: break
        body += chunk
    n += 1
    open(count, "w").write(str(n))
    c.sendall(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Type: application/pkixcmp\r\n"
              b"Content-Length: %d\r\n\r\n" % len(answer) + answer)
    c.close()   # like openssl cmp after a message that ends a transaction
PY
PIDS+=($!)
wait_tcp "${PIDS[-1]}" "$port" 10 "$T/fixture.log"

conf=$T/gw.json
write_config "$conf" "[ { \"name\": \"closer\", \"uri\": \"http://127.0.0.1:$port/pkix/\", \"timeout\": 5 } ]"
start_gw "$conf"

n=20
step "$n enrolments, one after the other"
for i in $(seq $n); do
        # block-wise (2 blocks), so the answer comes as a separate response at once
        expect_code "ir$i" 2.04 -m post -t 259 -b 256 -f "$T/ir.der" "$GW_URI/.well-known/cmp/ir"
        expect_eq "$(pkimsg_type "$COAP_BODY")" ip "answer $i"
done
expect_eq "$(cat "$T/count")" "$n" "requests that reached the upstream"
log "$n requests, $n deliveries; $(grep -c 'resending once' "$T/gw.log" || true) resent on a fresh connection"
