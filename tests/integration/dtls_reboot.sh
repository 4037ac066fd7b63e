#!/usr/bin/env bash
# dtls_reboot: a node that restarts keeps its address and port and starts a
# new DTLS handshake; cmpgwd must take it although the node's old session
# is still there (RFC 6347 §4.2.8; issue 5), and a spoofed ClientHello must
# not end a live session (the cookie exchange proves the address).
#   (a) coap-client-openssl observing ann from a fixed port is killed (no
#       close_notify: its session stays) and a fresh coap-client on the
#       same port POSTs a genm over coaps: 2.04 within its 10 s
#   (b) the same for a node whose old session holds a kept answer and an
#       unacknowledged separate response (openssl s_client sending CoAP:
#       it never ACKs)
#   (c) before (b), ClientHellos spoofed from the live s_client's address
#       (a raw socket; needs root): one without a cookie and one with a
#       cookie cmpgwd never issued. cmpgwd answers them with a
#       HelloVerifyRequest, and the live session still answers afterwards.
#       The ClientHellos are real ones of openssl s_client, captured by a
#       small fixture standing in for a DTLS server (it sends a
#       HelloVerifyRequest with a made-up cookie to get the second).
#   (d) a node that ended its session with close_notify enrols again from
#       the same port at once (its kept answer must not pin the closed
#       session).
#   (e) two coaps listeners: a node killed while in session with the first
#       handshakes from the same port with the second. That is a new
#       session (libcoap's cookie differs per listener): no HelloVerifyRequest
#       of ours, and its session on the first is not ended; restarted once
#       more towards the first, that session is the one replaced.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cmd openssl python3 "$COAP_CLIENT"

make_pki
start_ca "$PKI"
capture_requests "$T/req"
DTLS_PORT=$(free_port udp)
DTLS_PORT2=$(free_port udp)
PSK_KEY=k3y-for-the-node
PSK_HEX=$(printf %s "$PSK_KEY" | od -An -tx1 | tr -d ' \n')
printf '%s:%s\n' "$CA_REF" "$PSK_KEY" >"$T/psk.txt"
chmod 600 "$T/psk.txt"
write_config "$T/gw.json"
python3 - "$T/gw.json" "$T/psk.txt" "coaps://127.0.0.1:$DTLS_PORT" "coaps://127.0.0.1:$DTLS_PORT2" <<'PY'
import json, sys
f, psk, *uris = sys.argv[1:]
c = json.load(open(f))
c["listen"] += [{"uri": uri, "psk_file": psk} for uri in uris]
json.dump(c, open(f, "w"), indent=2)
PY
start_gw "$T/gw.json"
DTLS_URI=coaps://127.0.0.1:$DTLS_PORT

# post_from NAME PORT [URI]: a genm over coaps from 127.0.0.1:PORT to URI
# (default $DTLS_URI), PSK identity $CA_REF (the senderKID of the genm);
# must be 2.04 within coap-client's 10 s
post_from() {
        local name=$1 port=$2 uri=${3:-$DTLS_URI} t0=$SECONDS
        COAP_WAIT=10 expect_code "$name" 2.04 -p "$port" -u "$CA_REF" -k "$PSK_KEY" \
                -m post -t 259 -f "$T/req/genm.der" "$uri/.well-known/cmp"
        log "$name: answered after $((SECONDS - t0)) s"
}

# kill_node PID PORT: SIGKILL (no close_notify), then until UDP PORT is free
kill_node() {
        local i
        kill -9 "$1"
        wait "$1" 2>/dev/null || true
        for i in $(seq 50); do
                python3 -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(("127.0.0.1", int(sys.argv[1])))' \
                        "$2" 2>/dev/null && return 0
                sleep 0.1
        done
        fail "UDP port $2 still taken after its node was killed"
}

# wait_log TEXT: until cmpgwd's log has TEXT (5 s)
wait_log() { wait_grep "$T/gw.log" 5 -F -- "$1" || fail "cmpgwd did not log '$1'"; }

# coap_pdu ARGS: a CoAP message on stdout (python3 coap_pdu.py-style, inline):
# CON, MID $1, method $2 (1 GET, 2 POST), path $3, optional body file $4 (ct 259)
coap_pdu() {
        python3 - "$@" <<'PY'
import struct, sys
mid, code, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else b""
out, last = bytearray(struct.pack("!BBH", 0x41, code, mid) + b"\x5a"), 0
def opt(num, val):
    global last
    d, n = num - last, len(val)
    assert d < 13 and n < 269
    if n < 13:
        out.extend(bytes([d << 4 | n]))
    else:
        out.extend(bytes([d << 4 | 13, n - 13]))
    out.extend(val)
    last = num
for seg in path.split("/"):
    opt(11, seg.encode())
if body:
    opt(12, struct.pack("!H", 259))
    out.extend(b"\xff" + body)
sys.stdout.buffer.write(bytes(out))
PY
}

# killed_observer PORT: coap-client observes ann over coaps (the first
# listener) from 127.0.0.1:PORT, and is SIGKILLed once in session: no
# close_notify, its session stays
killed_observer() {
        local port=$1 obs
        "$COAP_CLIENT" -v 6 -p "$port" -u "$CA_REF" -k "$PSK_KEY" -s 60 -B 60 \
                -m get "$DTLS_URI/.well-known/cmp/ann" >"$T/obs-$port.out" 2>&1 &
        obs=$!
        PIDS+=("$obs")
        wait_log "DTLS session with 127.0.0.1:$port"
        sleep 1
        kill_node "$obs" "$port"
}

step "(a) a node observing ann is killed and restarts on the same port"
NODE_A=$(free_port udp)
killed_observer "$NODE_A"
post_from reboot-a "$NODE_A"
grep -q "127.0.0.1:$NODE_A started a new handshake on its established session" "$T/gw.log" ||
        fail "cmpgwd did not log the replaced session of 127.0.0.1:$NODE_A"

step "(b) a node with a kept answer (openssl s_client)"
NODE_B=$(free_port udp)
mkfifo "$T/live.in"
# -nbio: a blocking s_client that drops a record from another epoch (the
# HelloVerifyRequests of part c) waits in recvfrom for the next one and
# never reads stdin again; nodes' DTLS stacks do not block like that
openssl s_client -dtls1_2 -bind "127.0.0.1:$NODE_B" -connect "127.0.0.1:$DTLS_PORT" \
        -psk_identity "$CA_REF" -psk "$PSK_HEX" -nocommands -quiet -nbio \
        <"$T/live.in" >"$T/live.out" 2>"$T/live.err" &
live=$!
PIDS+=("$live")
exec 3>"$T/live.in"
wait_log "DTLS session with 127.0.0.1:$NODE_B"
coap_pdu 4660 2 .well-known/cmp "$T/req/genm.der" >&3
wait_log "from 127.0.0.1:$NODE_B: genm to /.well-known/cmp -> 2.04"

step "(c) spoofed ClientHellos from the live node's address do not end its session"
if python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)' 2>/dev/null; then
        # the fixture: a stand-in DTLS server capturing s_client's ClientHellos
        FIX_PORT=$(free_port udp)
        python3 - "$FIX_PORT" "$T/hello1.bin" "$T/hello2.bin" >"$T/fixture.log" 2>&1 <<'PY' &
import socket, struct, sys
port, out1, out2 = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))
s.settimeout(10)
ch, peer = s.recvfrom(4096)
open(out1, "wb").write(ch)
cookie = b"\x42" * 32        # never issued by cmpgwd
body = b"\xfe\xff" + bytes([len(cookie)]) + cookie
hs = bytes([3]) + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + len(body).to_bytes(3, "big") + body
rec = bytes([22]) + b"\xfe\xff" + ch[3:11] + struct.pack("!H", len(hs)) + hs
s.sendto(rec, peer)
while True:
    ch2, _ = s.recvfrom(4096)
    if ch2[0] == 22 and ch2[13] == 1:
        break
open(out2, "wb").write(ch2)
PY
        fixture=$!
        PIDS+=("$fixture")
        sleep 0.5
        timeout 5 openssl s_client -dtls1_2 -connect "127.0.0.1:$FIX_PORT" -psk_identity "$CA_REF" \
                -psk "$PSK_HEX" </dev/null >"$T/capture-hello.log" 2>&1 || true
        wait "$fixture" || { cat "$T/fixture.log" >&2; fail "the fixture captured no ClientHellos"; }
        # hello1, then 1.2 s later hello2 and at once hello1 again: the third
        # comes within a second of the second's HelloVerifyRequest and is
        # dropped (one a second per address: a flood is not reflected)
        for h in hello1 pause hello2 hello1; do
                [[ $h == pause ]] && { sleep 1.2; continue; }
                python3 - "$NODE_B" "$DTLS_PORT" "$T/$h.bin" <<'PY'
import socket, struct, sys
sport, dport, data = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "rb").read()
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.sendto(struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data, ("127.0.0.1", 0))
PY
        done
        sleep 1
        n=$(grep -c "a ClientHello from 127.0.0.1:$NODE_B on its established session: HelloVerifyRequest sent" "$T/gw.log" || true)
        expect_eq "$n" 2 "HelloVerifyRequests answering the spoofed ClientHellos (the third within 1 s dropped)"
        grep -q "127.0.0.1:$NODE_B started a new handshake" "$T/gw.log" &&
                fail "a spoofed ClientHello ended the live session of 127.0.0.1:$NODE_B"
        coap_pdu 4661 1 .well-known/core >&3
        for i in $(seq 50); do
                grep -aq 'ct=259' "$T/live.out" && break
                sleep 0.1
        done
        grep -aq 'ct=259' "$T/live.out" || fail "the live session did not answer after the spoofed ClientHellos"
        log "ok: the live session still answers"
else
        log "(c) skipped: no raw socket (needs CAP_NET_RAW) to spoof a source port"
fi

step "(b) the s_client node is killed and restarts on the same port"
exec 3>&-
kill_node "$live" "$NODE_B"
post_from reboot-b "$NODE_B"
grep -q "127.0.0.1:$NODE_B started a new handshake on its established session" "$T/gw.log" ||
        fail "cmpgwd did not log the replaced session of 127.0.0.1:$NODE_B"

step "(d) a node that closed its session cleanly (close_notify) comes back on the same port"
# coap-client ends its session with close_notify; cmpgwd's kept answer
# must not keep that closed session alive to swallow the next handshake
NODE_D=$(free_port udp)
post_from closed-1 "$NODE_D"
post_from closed-2 "$NODE_D"

step "(e) a node killed in session with the first listener handshakes with the second from the same port"
NODE_E=$(free_port udp)
killed_observer "$NODE_E"
post_from second-e "$NODE_E" "coaps://127.0.0.1:$DTLS_PORT2"
grep -q "a ClientHello from 127.0.0.1:$NODE_E on its established session" "$T/gw.log" &&
        fail "a handshake with the second listener was taken for one on the first listener's session"
grep -q "127.0.0.1:$NODE_E started a new handshake" "$T/gw.log" &&
        fail "a handshake with the second listener ended the node's session with the first"
post_from first-e "$NODE_E"
grep -q "127.0.0.1:$NODE_E started a new handshake on its established session" "$T/gw.log" ||
        fail "the node's session with the first listener was not there to be replaced"
gw_alive
log "ok"
