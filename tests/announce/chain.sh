#!/usr/bin/env bash
# chain: node → gateway A (CoAP) → gateway B (CoAP) → CA. A observes B's
# ann (its upstream is B's coap:// URI); an announcement published at B
# with `cmpgwctl announce` reaches a node observing A. B is on the test bus
# (cmpgwctl talks to it); A has "dbus": "none" (one name per bus).
# Then B restarts (it forgets its observers): A registers again within its
# ann_reregister period (2 s here) and the next announcement at B reaches
# the node too (RFC 9482 §2.6: register again periodically and after
# failures). Last, B restarts with max_observers_per_peer 0 and answers A
# without Observe: A registers again with backoff (2 s, 4 s, ...: at most 4
# tries in 12 s where its 2 s period alone would make 7; counted by B as
# limited_observers), and observes again once B takes observers after a
# reload.
set -euo pipefail
# shellcheck source=tests/announce/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cli
require_ctl
require_mkann
require_cmd openssl dbus-daemon busctl "$COAP_CLIENT"

make_pki
start_bus
start_ca "$PKI"

# B: in front of the CA, on the bus, with the announcement trust anchors
write_ann_config "$T/b.json"
start_ann_gw "$T/b.json"
B_PORT=$GW_PORT

# A: upstream B over CoAP, no D-Bus
A_PORT=$(free_port udp)
"$ANN_PY" - "$T/b.json" "$T/a.json" "$A_PORT" "$B_PORT" "$T/a.db" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["listen"] = [{"uri": "coap://127.0.0.1:%s" % sys.argv[3]}]
c["upstreams"] = [{"name": "b", "uri": "coap://127.0.0.1:%s/.well-known/cmp" % sys.argv[4], "timeout": 10,
                   "announcements": True, "ann_reregister": 2}]
c["registry"]["path"] = sys.argv[5]
c["dbus"] = {"bus": "none"}
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
start_other_gw a "$T/a.json" "$A_PORT"
A_PID=$OTHER_GW_PID

step "node observes A"
timeout 60 "$CMPCOAP" observe "coap://127.0.0.1:$A_PORT/.well-known/cmp/ann" --out-dir "$T" --count 1 \
        --timeout 40 --verbosity 7 >"$T/node.out" 2>"$T/node.err" &
NODE=$!
PIDS+=("$NODE")
sleep 3    # A registers at B in the meantime

step "cmpgwctl announce at B"
make_crlann crl1 1 --revoked 3002
announce annb "$T/crl1.der"
expect_rc annb 0

rc=0
wait "$NODE" || rc=$?
if ((rc != 0)); then
        cat "$T/node.err" >&2
        tail -n 20 "$T/a.log" >&2
        fail "the announcement published at B did not reach the node through A (cmpcoap exited $rc)"
fi
cmp -s "$T/ann-1.der" "$T/crl1.der" || fail "the node's announcement differs from the one published at B"
grep -q 'upstream b: observing coap://127.0.0.1:'"$B_PORT"'/.well-known/cmp/ann' "$T/a.log" || fail "A's log does not say it observes B"
log "an announcement published at B reached the node through A, byte for byte"

step "B restarts and forgets its observers: A registers again, the next announcement arrives"
mkdir -p "$T/n2"
timeout 60 "$CMPCOAP" observe "coap://127.0.0.1:$A_PORT/.well-known/cmp/ann" --out-dir "$T/n2" --count 2 \
        --timeout 50 --verbosity 7 >"$T/node2.out" 2>"$T/node2.err" &
NODE2=$!
PIDS+=("$NODE2")
sleep 1
stop_gw
start_ann_gw "$T/b.json"
sleep 4         # A's ann_reregister is 2 s
make_crlann crl2 2 --revoked 3002 --revoked 3003
announce annb2 "$T/crl2.der"
expect_rc annb2 0
rc=0
wait "$NODE2" || rc=$?
((rc == 0)) || { cat "$T/node2.err" >&2; tail -n 20 "$T/a.log" >&2; fail "after B's restart the next announcement did not reach the node (exit $rc)"; }
cmp -s "$T/n2/ann-2.der" "$T/crl2.der" || fail "the second announcement differs from the one published at B"

step "B takes no observer: A registers again with backoff, then observes again"
"$ANN_PY" - "$T/b.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["announcements"]["max_observers_per_peer"] = 0
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
stop_gw
start_ann_gw "$T/b.json"
refused="upstream b: not observing coap://127.0.0.1:$B_PORT/.well-known/cmp/ann (answered without Observe); registering again in 2 s"
wait_grep "$T/a.log" 10 -F "$refused" || { tail -n 20 "$T/a.log" >&2; fail "A does not log that B answered without Observe"; }
sleep 12
ctl bstats --json stats
expect_rc bstats 0
tries=$(json_get "$T/bstats.out" 'j["limited_observers"]')
log "A's registrations refused by B in ~12 s: $tries"
((tries >= 3)) || fail "A registered $tries times in 12 s after a refusal: it should try again after 2 s and 4 s"
((tries <= 4)) || fail "A registered $tries times in 12 s after a refusal: no backoff (its period is 2 s)"
observing=$(grep -c "upstream b: observing" "$T/a.log")
"$ANN_PY" - "$T/b.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["announcements"]["max_observers_per_peer"] = 1
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
ctl breload reload
expect_rc breload 0
wait_grep_count "$T/a.log" 20 $((observing + 1)) "upstream b: observing" ||
        { tail -n 20 "$T/a.log" >&2; fail "A does not observe B again within 20 s of B taking observers"; }
kill -0 "$A_PID" 2>/dev/null || fail "gateway A is gone"
! grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$T/a.log" || fail "sanitizer report in A's log"
gw_alive
log "ok"
