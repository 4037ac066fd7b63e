#!/usr/bin/env bash
# observers: announcements.max_observers_per_peer = 1. A first observer from
# 127.0.0.1 is registered (Observe in the answer); a second one from the same
# address still gets 2.05 with the announcement but no Observe option (RFC
# 9482 §2.6 allows that). When the first one leaves (cmpcoap observe cancels
# on exit, RFC 7641 §3.6) the next one is registered again. Optional part:
# an observer killed without cancelling is dropped after a notification.
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
write_ann_config "$T/gw.json" 'c["announcements"]["max_observers_per_peer"] = 1'
start_ann_gw "$T/gw.json"
ANN=$GW_URI/.well-known/cmp/ann
make_crlann a 1
make_crlann b 2 --revoked 3002
make_crlann c 3 --revoked 3002 --revoked 3003
announce anna "$T/a.der"
expect_rc anna 0

# observed_answer NAME: did coap-client's first 2.05 carry Observe?
observed_answer() {
        grep -aE '^v:1 t:[A-Z]+ c:2\.05 ' "$T/$1.out" | head -n 1 | grep -q 'Observe:'
}

step "first observer (cmpcoap observe) is registered"
timeout 60 "$CMPCOAP" observe "$ANN" --count 2 --timeout 50 --verbosity 7 >"$T/obs1.out" 2>"$T/obs1.err" &
OBS1=$!
PIDS+=("$OBS1")
for _ in $(seq 100); do grep -q 'registered as an observer' "$T/obs1.err" && break; sleep 0.1; done
grep -q 'registered as an observer' "$T/obs1.err" || { cat "$T/obs1.err" >&2; fail "the first observer was not registered"; }

step "second observer from the same peer is not kept (limit 1 per peer)"
# libcoap 4.3.1 registers an observer before the handler runs and has no
# public way to drop one, so cmpgwd answers the observer over the per-peer
# limit 2.05 (the current announcement) and ends it with a 5.03 instead of
# its next notification (RFC 7641 §3.2: an error ends an observation).
COAP_WAIT=12 coap_req second -s 8 -m get "$ANN" &
SECOND=$!
sleep 1

step "the next announcement reaches the first observer only"
announce annb "$T/b.der"
expect_rc annb 0
rc=0
wait "$OBS1" || rc=$?
((rc == 0)) || { cat "$T/obs1.err" >&2; fail "first observer exited $rc"; }
grep -q 'announcement 2: crlann' "$T/obs1.out" || fail "the first observer did not print the second announcement"
wait "$SECOND" || true
n205=$(grep -acE '^v:1 t:[A-Z]+ c:2\.05 ' "$T/second.out" || true)
((n205 == 1)) || { grep -a '^v:1' "$T/second.out" | cut -c1-160 >&2; fail "the second observer from 127.0.0.1 got $n205 answers 2.05: it was kept as an observer (limit 1 per peer)"; }
cmp -s "$COAP_BODY" "$T/a.der" || cmp -s "$T/second.body" "$T/a.der" ||
        fail "the second observer did not get exactly the current announcement"
log "second observer: one 2.05 with the current announcement, not kept"
sleep 0.5

step "a new observer from the same peer is registered again"
"$COAP_CLIENT" -v 6 -s 30 -B 35 -m get -o "$T/third.body" "$ANN" >"$T/third.out" 2>&1 &
THIRD=$!
PIDS+=("$THIRD")
for _ in $(seq 50); do grep -aqE '^v:1 t:[A-Z]+ c:2\.05 ' "$T/third.out" && break; sleep 0.1; done
observed_answer third || { grep -a '^v:1' "$T/third.out" | cut -c1-160 >&2; fail "after the first observer left, a new one was not registered"; }

step "(optional) an observer killed without cancelling is dropped"
kill -KILL "$THIRD"
wait "$THIRD" 2>/dev/null || true
announce annc "$T/c.der"
expect_rc annc 0
dropped=0
for i in $(seq 1 12); do
        sleep 5
        COAP_WAIT=5 coap_req probe$i -s 2 -m get "$ANN"
        if observed_answer "probe$i"; then
                dropped=1
                log "the dead observer was dropped within $((i * 5)) s"
                break
        fi
done
((dropped)) || log "NOTE (optional part): a dead observer was not dropped within 60 s of a notification; cmpgwd may drop it only at the next Confirmable notification"
gw_alive
