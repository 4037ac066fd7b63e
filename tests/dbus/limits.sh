#!/usr/bin/env bash
# limits (issue 5; RFC 9482 §4 resource exhaustion), each refusal counted in
# GetStatistics / `cmpgwctl stats`:
#   (a) limits.rate/burst per IP address: a quick run of genm from 127.0.0.1
#       gets 4.29 with Max-Age once the bucket is empty; 127.0.0.2 is still
#       served; after Max-Age 127.0.0.1 is served again.
#   (b) limits.in_flight_per_peer 1: a second request from the same address
#       while the first waits on a slow upstream is 4.29; another address is
#       not affected. The slow upstream is a fixture standing in for an RA
#       (it answers with a genp captured from openssl cmp after 3 s).
#   (c) limits.buffered_bytes: block-wise transfers past the global budget
#       are 5.03 with Max-Age; abandoned ones are dropped after
#       coap.transfer_timeout, and the budget is free again.
#   (d) limits.max_in_flight 2 (after a reload): while two addresses wait on
#       the slow upstream, a third address is answered 5.03 with Max-Age
#       coap.unavailable_max_age and nothing is queued; once they are
#       answered it is served again.
set -euo pipefail
# shellcheck source=tests/dbus/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_ctl
require_cmd openssl python3 busctl dbus-daemon "$COAP_CLIENT"

make_pki
start_bus
start_ca "$PKI"
capture_requests "$T/req"
capture_genp "$T/genp.der"

slow_port=$(free_port tcp)
python3 - "$slow_port" "$T/genp.der" >"$T/slow.log" 2>&1 <<'PY' &
import http.server, socketserver, sys, time
port, answer = int(sys.argv[1]), open(sys.argv[2], "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(3)
        self.send_response(200); self.send_header("Content-Type", "application/pkixcmp")
        self.send_header("Content-Length", str(len(answer))); self.end_headers(); self.wfile.write(answer)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
S(("127.0.0.1", port), H).serve_forever()
PY
PIDS+=($!)
wait_tcp "${PIDS[-1]}" "$slow_port" 10 "$T/slow.log"

write_dbus_config "$T/gw.json"
python3 - "$T/gw.json" "$slow_port" <<'PY'
import json, sys
f, port = sys.argv[1], sys.argv[2]
c = json.load(open(f))
c["upstreams"].append({"name": "slow", "uri": "http://127.0.0.1:%s/pkix/" % port, "labels": ["slow"], "timeout": 10})
c["upstreams"][0]["default"] = True
c["limits"] = {"rate": 1, "burst": 3, "in_flight_per_peer": 1, "buffered_bytes": 4096}
c["coap"] = {"max_message_size": 4096, "transfer_timeout": 2}
json.dump(c, open(f, "w"), indent=2)
PY
start_gw_dbus "$T/gw.json"
CMP=$GW_URI/.well-known/cmp
stat_of() { ctl "stats$1" --json stats; expect_rc "stats$1" 0; json_get "$T/stats$1.out" "j[\"$2\"]"; }

step "(a) a burst from 127.0.0.1 empties its bucket: 4.29 with Max-Age"
n429=0
n204=0
for i in $(seq 8); do
        coap_req "burst$i" -m post -t 259 -f "$T/req/genm.der" "$CMP"
        case $COAP_CODE in
        2.04) n204=$((n204 + 1)) ;;
        4.29)
                n429=$((n429 + 1))
                expect_contains "$COAP_DIAG" "limits.rate" "4.29 diagnostic"
                [[ -n $(coap_option Max-Age) ]] || fail "4.29 without Max-Age"
                # limits.rate 1/s: the next token is at most 1 s away
                expect_eq "$(coap_option Max-Age)" 1 "Max-Age of the 4.29 (when the next token comes)"
                ;;
        *) fail "burst$i: expected 2.04 or 4.29, got '$COAP_CODE'" ;;
        esac
done
log "burst of 8: $n204 served, $n429 refused"
((n204 >= 3 && n429 >= 1)) || fail "expected the 3 of the burst served and some refused, got $n204/$n429"
expect_eq "$(stat_of 1 limited_rate)" "$n429" "GetStatistics limited_rate"

step "(a) another address is served meanwhile"
expect_code other 2.04 -a 127.0.0.2 -m post -t 259 -f "$T/req/genm.der" "$CMP"
step "(a) after Max-Age 127.0.0.1 is served again"
sleep 2
expect_code again 2.04 -m post -t 259 -f "$T/req/genm.der" "$CMP"

step "(b) two at once from 127.0.0.3 to a slow upstream: the second is 4.29"
COAP_WAIT=15 coap_req first -a 127.0.0.3 -m post -t 259 -f "$T/req/genm.der" "$CMP/p/slow" &
first=$!
sleep 1
expect_code second 4.29 -a 127.0.0.3 -m post -t 259 -f "$T/req/genm.der" "$CMP/p/slow"
expect_contains "$COAP_DIAG" "limits.in_flight_per_peer" "in-flight diagnostic"
expect_eq "$(coap_option Max-Age)" 1 "Max-Age of the in-flight 4.29 (cmpgw.json(5): 1)"
expect_code third 2.04 -a 127.0.0.4 -m post -t 259 -f "$T/req/genm.der" "$CMP"
wait "$first"
grep -q 'c:2\.04' "$T/first.out" "$T/first.err" || fail "the first request to the slow upstream was not served"
expect_eq "$(stat_of 2 limited_in_flight)" 1 "GetStatistics limited_in_flight"

step "(c) block-wise transfers past limits.buffered_bytes (4096): 5.03"
head -c 4000 /dev/urandom >"$T/junk"
# peer A (127.0.0.1) holds 3072 bytes and goes quiet; B's (127.0.0.2) second
# block would pass 4096. (One address may hold in_flight_per_peer transfers.)
coap_udp 127.0.0.1 "$GW_PORT" 2 \
        "path=.well-known/cmp;cf=259;b1=0:1:6;size1=4000;rtag=aa;body=@$T/junk:0:1024" \
        "path=.well-known/cmp;cf=259;b1=1:1:6;rtag=aa;body=@$T/junk:1024:1024" \
        "path=.well-known/cmp;cf=259;b1=2:1:6;rtag=aa;body=@$T/junk:2048:1024" >"$T/a.udp" 2>/dev/null
COAP_UDP_SRC=127.0.0.2 coap_udp 127.0.0.1 "$GW_PORT" 2 \
        "path=.well-known/cmp;cf=259;b1=0:1:6;size1=4000;rtag=bb;body=@$T/junk:0:1024" \
        "path=.well-known/cmp;cf=259;b1=1:1:6;rtag=bb;body=@$T/junk:1024:1024" >"$T/b.udp" 2>/dev/null
grep -c 'c:2.31' "$T/a.udp" | grep -qx 3 || { cat "$T/a.udp" >&2; fail "peer A's three blocks were not all 2.31"; }
sed -n 2p "$T/b.udp" | grep -q 'c:5.03' || { cat "$T/b.udp" >&2; fail "peer B past the budget: expected 5.03"; }
sed -n 2p "$T/b.udp" | grep -q 'Max-Age' || fail "5.03 without Max-Age"
expect_eq "$(stat_of 3 limited_buffered)" 1 "GetStatistics limited_buffered"
step "(c) a second transfer from A's address is over its share (in_flight_per_peer 1): 4.29"
coap_udp 127.0.0.1 "$GW_PORT" 2 "path=.well-known/cmp;cf=259;b1=0:1:6;size1=4000;rtag=cc;body=@$T/junk:0:1024" >"$T/a2.udp" 2>/dev/null
grep -q 'c:4.29' "$T/a2.udp" || { cat "$T/a2.udp" >&2; fail "a second open transfer from one address was not refused"; }
expect_eq "$(stat_of 4 buffered_bytes)" 3072 "GetStatistics buffered_bytes while A is quiet"
step "(c) A's abandoned transfer is dropped after coap.transfer_timeout (2 s)"
sleep 4
expect_eq "$(stat_of 5 buffered_bytes)" 0 "buffered_bytes after the timeout"
expect_eq "$(stat_of 6 transfers_abandoned)" 1 "GetStatistics transfers_abandoned"
sleep 2
expect_code blockwise 2.04 -b 64 -m post -t 259 -f "$T/req/genm.der" "$CMP"

step "(d) limits.max_in_flight 2: a third transaction of all addresses is 5.03"
expect_eq "$(stat_of 7 limited_max_in_flight)" 0 "limited_max_in_flight before the cap"
python3 - "$T/gw.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["limits"] = {"rate": 1, "burst": 3, "in_flight_per_peer": 16, "max_in_flight": 2, "buffered_bytes": 4096}
c["coap"]["unavailable_max_age"] = 7
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
ctl reload reload
expect_rc reload 0
COAP_WAIT=15 coap_req slow1 -a 127.0.0.5 -m post -t 259 -f "$T/req/genm.der" "$CMP/p/slow" &
slow1=$!
COAP_WAIT=15 coap_req slow2 -a 127.0.0.6 -m post -t 259 -f "$T/req/genm.der" "$CMP/p/slow" &
slow2=$!
sleep 1
expect_code busy 5.03 -a 127.0.0.7 -m post -t 259 -f "$T/req/genm.der" "$CMP"
expect_contains "$COAP_DIAG" "limits.max_in_flight" "global cap diagnostic"
expect_eq "$(coap_option Max-Age)" 7 "Max-Age of the 5.03 (coap.unavailable_max_age)"
expect_eq "$(stat_of 8 limited_max_in_flight)" 1 "GetStatistics limited_max_in_flight"
expect_eq "$(stat_of 9 transactions_in_flight)" 2 "transactions in flight at the cap"
wait "$slow1" "$slow2"
for f in slow1 slow2; do
        grep -q 'c:2\.04' "$T/$f.out" "$T/$f.err" || fail "$f to the slow upstream was not served"
done
step "(d) below the cap again: 127.0.0.7 is served"
expect_code after 2.04 -a 127.0.0.7 -m post -t 259 -f "$T/req/genm.der" "$CMP"

ctl statsall stats
expect_rc statsall 0
grep -q 'limited_rate' "$T/statsall.out" || fail "cmpgwctl stats does not show limited_rate"
grep -q 'limited_max_in_flight: 1' "$T/statsall.out" || fail "cmpgwctl stats does not show limited_max_in_flight"
gw_alive
log "ok"
