#!/usr/bin/env bash
# SIGTERM stops cleanly: a request in flight to a slow upstream is answered
# (5.03 with Max-Age) within the grace period, a request arriving meanwhile
# gets 5.03 at once, and cmpgwd exits 0.
# The upstream is a fixture standing in for a CA that accepts and never
# answers; no real CA can be made to hang on purpose.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cmd openssl python3 "$COAP_CLIENT"

make_pki
start_ca "$PKI"
capture_requests "$T/req"
stop_ca

hang_port=$(free_port tcp)
python3 - "$hang_port" >"$T/hang.log" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
held = []
while True:
    c, _ = s.accept(); held.append(c)   # read nothing, answer nothing
PY
PIDS+=($!)
wait_tcp "${PIDS[-1]}" "$hang_port" 10 "$T/hang.log"

conf=$T/gw.json
write_config "$conf" "[ { \"name\": \"slow\", \"uri\": \"http://127.0.0.1:$hang_port/pkix/\", \"timeout\": 60 } ]"
start_gw "$conf"

step "a request in flight, then SIGTERM"
COAP_WAIT=30 coap_req inflight -m post -t 259 -b 256 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp" &
client=$!
sleep 1.5
started=$SECONDS
kill -TERM "$GW_PID"
sleep 0.5
expect_code during 5.03 -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp"
expect_contains "$COAP_RESP" "Max-Age" "5.03 during shutdown"
wait "$client" || true
code=$(sed -nE 's/^v:1 t:[A-Z]+ c:([1-5]\.[0-9][0-9]) .*/\1/p' "$T/inflight.out" "$T/inflight.err" | grep -v '^0.00$' | tail -n 1 || true)
expect_eq "$code" 5.03 "the in-flight request's answer"
for _ in $(seq 100); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$GW_PID" 2>/dev/null && fail "cmpgwd still runs $((SECONDS - started)) s after SIGTERM"
st=0; wait "$GW_PID" || st=$?
expect_eq "$st" 0 "exit status after SIGTERM"
grep -q 'answering them 5.03' "$T/gw.log" || fail "the log does not say what happened to the request in flight"
keep=()
for p in "${PIDS[@]}"; do [[ $p == "$GW_PID" ]] || keep+=("$p"); done
PIDS=("${keep[@]}")
GW_PID=''
log "stopped cleanly within $((SECONDS - started)) s"
