#!/usr/bin/env bash
# observers: announcements.max_observers_per_peer = 1 and max_observers = 2
# (issue 4/5). A first
# observer from 127.0.0.1 is registered; a second one from the same address
# gets 2.05 with the announcement and no Observe (RFC 9482 §2.6: a server
# that cannot add an observer still answers 2.xx), counted in
# GetStatistics; one from 127.0.0.2 is registered; one from 127.0.0.3 then
# finds the gateway at max_observers and gets 2.05 without Observe too.
# When the first leaves
# (cmpcoap cancels, RFC 7641 §3.6) a new one from 127.0.0.1 is registered;
# when that one is killed without cancelling, the next Confirmable
# notification finds it dead (RFC 7252 §4.2 retransmissions exhausted) and
# the address is free again.
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
write_ann_config "$T/gw.json" 'c["announcements"]["max_observers_per_peer"] = 1
c["announcements"]["max_observers"] = 2'
start_ann_gw "$T/gw.json"
ANN=$GW_URI/.well-known/cmp/ann
make_crlann a 1
make_crlann b 2 --revoked 3002
make_crlann c 3 --revoked 3002 --revoked 3003
announce anna "$T/a.der"
expect_rc anna 0

# observed_answer NAME: did coap-client's first 2.05 carry Observe?
observed_answer() {
        # -m 1, not | head -n 1: head leaving early would kill grep (SIGPIPE; pipefail)
        grep -a -m 1 -E '^v:1 t:[A-Z]+ c:2\.05 ' "$T/$1.out" | grep 'Observe:' >/dev/null
}

step "first observer (cmpcoap observe) is registered"
timeout 60 "$CMPCOAP" observe "$ANN" --count 2 --timeout 50 --verbosity 7 >"$T/obs1.out" 2>"$T/obs1.err" &
OBS1=$!
PIDS+=("$OBS1")
wait_grep "$T/obs1.err" 10 'registered as an observer' ||
        { cat "$T/obs1.err" >&2; fail "the first observer was not registered"; }

step "second observer from the same address: 2.05 without Observe (limit 1 per peer)"
COAP_WAIT=5 coap_req second -s 3 -m get "$ANN"
expect_eq "$COAP_CODE" 2.05 "second observer from 127.0.0.1"
[[ $COAP_RESP != *Observe:* ]] || fail "the answer past max_observers_per_peer carries an Observe option"
cmp -s "$T/second.body" "$T/a.der" || fail "the answer past max_observers_per_peer is not the latest announcement"

step "another address is registered meanwhile"
"$COAP_CLIENT" -v 6 -a 127.0.0.2 -s 30 -B 35 -m get -o "$T/other.body" "$ANN" >"$T/other.out" 2>&1 &
OTHER=$!
PIDS+=("$OTHER")
wait_grep "$T/other.out" 5 -aE '^v:1 t:[A-Z]+ c:2\.05 ' || true     # observed_answer says
observed_answer other || { grep -a '^v:1' "$T/other.out" | cut -c1-160 >&2; fail "127.0.0.2 was not registered"; }

step "a third address past max_observers (2): 2.05 without Observe"
COAP_WAIT=5 coap_req full -a 127.0.0.3 -s 3 -m get "$ANN"
expect_eq "$COAP_CODE" 2.05 "observer from 127.0.0.3 at max_observers"
[[ $COAP_RESP != *Observe:* ]] || fail "the answer past max_observers carries an Observe option"
cmp -s "$T/full.body" "$T/a.der" || fail "the answer past max_observers is not the latest announcement"

step "the next announcement reaches the registered observers"
announce annb "$T/b.der"
expect_rc annb 0
rc=0
wait "$OBS1" || rc=$?
((rc == 0)) || { cat "$T/obs1.err" >&2; fail "first observer exited $rc"; }
grep -q 'announcement 2: crlann' "$T/obs1.out" || fail "the first observer did not print the second announcement"
wait_grep_count "$T/other.out" 5 2 -aE '^v:1 t:[A-Z]+ c:2\.05 ' || fail "127.0.0.2 got no notification"
kill "$OTHER" 2>/dev/null || true
ctl stats1 --json stats
expect_rc stats1 0
# 2: the answers past max_observers_per_peer and past max_observers
expect_eq "$(json_get "$T/stats1.out" 'j["limited_observers"]')" 2 "GetStatistics limited_observers"
sleep 0.5

step "a new observer from the same peer is registered again"
"$COAP_CLIENT" -v 6 -s 30 -B 35 -m get -o "$T/third.body" "$ANN" >"$T/third.out" 2>&1 &
THIRD=$!
PIDS+=("$THIRD")
wait_grep "$T/third.out" 5 -aE '^v:1 t:[A-Z]+ c:2\.05 ' || true     # observed_answer says
observed_answer third || { grep -a '^v:1' "$T/third.out" | cut -c1-160 >&2; fail "after the first observer left, a new one was not registered"; }

step "an observer killed without cancelling is dropped at the next Confirmable notification"
kill -KILL "$THIRD"
wait "$THIRD" 2>/dev/null || true
announce annc "$T/c.der"
expect_rc annc 0
# RFC 7252 §4.2: the notification is retransmitted 4 times (up to ~93 s),
# then libcoap gives up and the observer is gone; 127.0.0.1 may register again
dropped=0
for i in $(seq 1 24); do
        sleep 5
        COAP_WAIT=5 coap_req probe$i -s 2 -m get "$ANN"
        if observed_answer "probe$i"; then
                dropped=1
                log "the dead observer was dropped within $((i * 5)) s"
                break
        fi
        expect_eq "$COAP_CODE" 2.05 "probe while the dead observer is held (answered without Observe)"
done
((dropped)) || fail "a dead observer was not dropped within 120 s of a Confirmable notification"
gw_alive
log "ok"
