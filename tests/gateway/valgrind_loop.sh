#!/usr/bin/env bash
# valgrind_loop (issue 5): a long enrolment loop through one cmpgwd leaks
# nothing and makes no memory error. cmpgwd runs under
#   valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
# (in an ASan build, where valgrind cannot run, it runs as built and
# LeakSanitizer checks the same at exit), with every module in use:
#   - LOOPS (default 200) ir/certConf over coap against OpenSSL's mock CA;
#   - every 20th round: cr, p10cr, kur (on a restarted CA: the mock CA can
#     crash on a second kur, PEERS.md), rr, genm and an ir with implicit
#     confirmation; an ir over coaps with a PSK and one with a client
#     certificate; an ir through a second cmpgwd (a coap:// upstream, so
#     upstream_coap.c is in the loop); cmpgwctl status/devices/stats over a
#     private dbus-daemon; bad input (a wrong MAC secret, an rr the CA
#     refuses, garbage, a wrong Content-Format, an unknown path, a DTLS
#     handshake with a wrong key, an abandoned block-wise transfer);
#   - every 50th round: SIGHUP (config and coaps credentials re-read);
#   - at the end: a CRL announcement to an observer (cmpcoap observe) and a
#     tampered one, a flood from 127.0.0.3 (4.29), the CA down (5.0x) and
#     back.
# Then SIGTERM; the test fails on any valgrind error or definite/indirect
# leak (suppressions: tests/gateway/valgrind.supp, each with its reason), or
# when the loop did not do what it says (request counts from the log).
set -euo pipefail
# shellcheck source=tests/announce/lib.sh
source "$(dirname "$0")/../announce/lib.sh"
require_gw
require_cli
require_ctl
require_mkann
require_cmd openssl sqlite3 dbus-daemon "$COAP_CLIENT"

LOOPS=${LOOPS:-200}
EVERY=20        # the round of other operations comes every EVERY ir
VG_LOG=$T/valgrind.log
if ldd "$CMPGWD" | grep -q libasan; then
        VG=()   # LeakSanitizer (ASAN_OPTIONS detect_leaks) checks at exit
        log "ASan build: cmpgwd runs without valgrind; LeakSanitizer checks for leaks at exit"
else
        require_cmd valgrind
        # shellcheck disable=SC2054  # the commas are valgrind's
        VG=(valgrind --leak-check=full --show-leak-kinds=definite,indirect
            --errors-for-leak-kinds=definite,indirect --error-exitcode=99
            --num-callers=40 --suppressions="$SRCDIR/tests/gateway/valgrind.supp"
            --log-file="$VG_LOG")
fi

make_pki
start_bus
start_ca "$PKI"
P=$PKI
MAC=(--ref "$CA_REF" --secret "$CA_SECRET")
SIG=(--cert "$P/client.pem" --key "$P/client.key" --trusted "$P/trusted.pem")

# a second gateway (not under valgrind): the coap:// upstream for label "chain"
start_ca_gw b
B_PORT=$OTHER_GW_PORT

# the gateway under test: coap and coaps (PSK and certificates), D-Bus,
# announcements, limits that a flood exceeds but the loop (one request at a
# time) does not
DTLS_PORT=$(free_port udp)
DTLS_URI=coaps://127.0.0.1:$DTLS_PORT
# the PSK identity is the CA's reference value: with MAC protection over a
# PSK session the senderKID must name the PSK identity (admission binding)
PSK_ID=$CA_REF
PSK_KEY=k3y-for-node-psk
printf '%s:%s\n' "$PSK_ID" "$PSK_KEY" >"$T/psk.txt"
chmod 600 "$T/psk.txt"
write_ann_config "$T/gw.json" "
c['upstreams'] = [
    {'name': 'ca', 'uri': '$CA_URI', 'timeout': 5, 'default': True},
    {'name': 'b', 'uri': 'coap://127.0.0.1:$B_PORT/.well-known/cmp', 'timeout': 10, 'labels': ['chain']}]
c['listen'].append({'uri': '$DTLS_URI', 'psk_file': '$T/psk.txt', 'certificate': '$P/gw-dtls-chain.pem',
                    'private_key': '$P/gw-dtls.key', 'client_ca': '$P/chain.pem'})
c['limits'] = {'rate': 50, 'burst': 100, 'in_flight_per_peer': 4}
c['coap'] = {'transfer_timeout': 2}
"
# start_gw runs "$CMPGWD"; valgrind runs in the same process (same PID)
printf '#!/bin/sh\nexec %s "%s" "$@"\n' "${VG[*]}" "$CMPGWD" >"$T/cmpgwd-vg"
chmod +x "$T/cmpgwd-vg"
REAL_CMPGWD=$CMPGWD
CMPGWD=$T/cmpgwd-vg GW_START_TIMEOUT=60 start_gw_dbus "$T/gw.json"
CMPGWD=$REAL_CMPGWD
CMP=$GW_URI/.well-known/cmp

# cmpcoap NAME ARGS...: must succeed
ok() {
        local name=$1 rc=0
        shift
        timeout 120 "$CMPCOAP" "$@" --timeout 100 >"$T/$name.log" 2>&1 || rc=$?
        if ((rc != 0)); then
                tail -n 15 "$T/$name.log" >&2
                tail -n 15 "$T/gw.log" >&2
                fail "$name: cmpcoap $1 exited $rc"
        fi
}
# cmpcoap NAME ARGS...: must fail, without hanging (give a --timeout)
refused() {
        local name=$1 rc=0
        shift
        timeout 120 "$CMPCOAP" "$@" >"$T/$name.log" 2>&1 || rc=$?
        ((rc != 0 && rc < 124)) || { tail -n 15 "$T/$name.log" >&2; fail "$name: cmpcoap $1 exited $rc, expected a refusal"; }
}
# ctl_ok NAME ARGS...: cmpgwctl over the private bus, must succeed
ctl_ok() {
        ctl "$@"
        expect_rc "$1" 0
}

# the mock CA always issues ee.pem: one device, whose transport identity is
# that of its latest exchange
registry_ids() {
        sqlite3 "$T/registry.db" "SELECT coalesce(psk_identity, '') || '|' || coalesce(client_subject, '') FROM devices"
}

head -c 3000 /dev/urandom >"$T/junk"
bad_input() {
        local n=$1 rtag
        rtag=$(printf '%04x' "$n")
        refused "bad-secret$n" ir --server "$CMP" --ref "$CA_REF" --secret pass:wrong \
                --newkey "$P/ee.key" --subject "/CN=bad$n" --timeout 30
        refused "bad-rr$n" rr --server "$CMP" "${SIG[@]}" --oldcert "$P/client.pem" --revreason 0 --timeout 30
        expect_code "garbage$n" 4.00 -m post -t 259 -f "$T/junk" "$CMP"
        expect_code "format$n" 4.15 -m post -t 0 -f "$T/req/genm.der" "$CMP"
        expect_code "path$n" 4.04 -m post -t 259 -f "$T/req/genm.der" "$CMP/p/no-such-label/x/y"
        refused "bad-psk$n" genm --server "$DTLS_URI" --psk-identity "$PSK_ID" --psk-key wrong-key "${MAC[@]}" --timeout 4
        # the first two blocks of a transfer that never ends (dropped after
        # coap.transfer_timeout); up to 5 s for each 2.31: cmpgwd runs under valgrind
        coap_udp 127.0.0.1 "$GW_PORT" 5 \
                "path=.well-known/cmp;cf=259;b1=0:1:6;size1=3000;rtag=$rtag;body=@$T/junk:0:1024" \
                "path=.well-known/cmp;cf=259;b1=1:1:6;rtag=$rtag;body=@$T/junk:1024:1024" >"$T/abandon$n.udp" 2>/dev/null
        [[ $(grep -c 'c:2.31' "$T/abandon$n.udp") == 2 ]] || { cat "$T/abandon$n.udp" >&2; fail "abandoned transfer $n: blocks not 2.31"; }
}

others() {
        local n=$1
        ok "cr$n" cr --server "$CMP" "${SIG[@]}" --extracerts "$P/chain.pem" --newkey "$P/ee.key" --subject "/CN=cr$n"
        ok "p10cr$n" p10cr --server "$CMP" "${SIG[@]}" --csr "$P/ee.csr"
        # the mock CA may crash on a second kur in its life (PEERS.md): a new one
        restart_ca
        ok "kur$n" kur --server "$CMP" --oldcert "$P/ee.pem" --cert "$P/ee.pem" --key "$P/ee.key" \
                --trusted "$P/trusted.pem" --newkey "$P/ee.key"
        ok "rr$n" rr --server "$CMP" "${SIG[@]}" --oldcert "$P/ee.pem" --revreason 0
        ok "genm$n" genm --server "$CMP" "${MAC[@]}"
        ok "implicit$n" ir --server "$CMP/ir" "${MAC[@]}" --newkey "$P/ee.key" --subject "/CN=implicit$n" --implicit_confirm
        ok "psk$n" ir --server "$DTLS_URI" --psk-identity "$PSK_ID" --psk-key "$PSK_KEY" "${MAC[@]}" \
                --newkey "$P/ee.key" --subject "/CN=psk$n"
        expect_eq "$(registry_ids)" "$PSK_ID|" "registry psk_identity|client_subject after the PSK ir"
        ok "cert$n" ir --server "$DTLS_URI" --tls-cert "$P/client-dtls.pem" --tls-key "$P/client-dtls.key" \
                --tls-trusted "$P/trusted.pem" "${MAC[@]}" --newkey "$P/ee.key" --subject "/CN=cert$n"
        expect_eq "$(registry_ids)" "|CN=dtls client,O=cmpgw test" "registry psk_identity|client_subject after the certificate ir"
        ok "chain$n" ir --server "$CMP/p/chain" "${MAC[@]}" --newkey "$P/ee.key" --subject "/CN=chain$n"
        ctl_ok "status$n" status
        ctl_ok "devices$n" --json devices --limit 50
        ctl_ok "stats$n" stats
        bad_input "$n"
}

restart_ca() {
        # shellcheck disable=SC2153  # CA_PORT is lib.sh's
        local port=$CA_PORT
        stop_ca
        start_ca_at "$port" "$P" "$P/ee.pem"
}

mkdir -p "$T/req"
ossl_cmp -cmd genm -ref "$CA_REF" -secret "$CA_SECRET" -reqout "$T/req/genm.der" >"$T/capture.log" 2>&1 ||
        { cat "$T/capture.log" >&2; fail "capture of a genm"; }

step "$LOOPS rounds of ir/certConf (cmpgwd under ${VG[0]:-ASan})"
t0=$SECONDS
for ((i = 1; i <= LOOPS; i++)); do
        ok "ir$i" ir --server "$CMP" "${MAC[@]}" --newkey "$P/ee.key" --subject "/CN=node-$i"
        ((i % EVERY)) || others "$i"
        ((i % 50)) || reload_gw_logged 'coaps credentials re-read' $((i / 50))
        ((i % 50)) || log "round $i after $((SECONDS - t0)) s"
done

step "a CRL announcement to an observer; a tampered one changes nothing"
timeout 120 "$CMPCOAP" observe "$CMP/ann" --count 1 --out-dir "$T/obs" --timeout 110 >"$T/observe.log" 2>&1 &
OBS_PID=$!
PIDS+=("$OBS_PID")
mkdir -p "$T/obs"
sleep 2
make_crlann crl1 1 --revoked "$(cert_serial "$P/ee.pem")"
make_crlann crl2-bad 2
announce ann-bad "$T/crl2-bad.der"
((CTL_RC != 0)) || fail "a tampered announcement was accepted"
announce ann1 "$T/crl1.der"
expect_rc ann1 0
wait_file_size "$T/obs/ann-1.der" "$(stat -c %s "$T/crl1.der")" 60 ||
        { cat "$T/observe.log" >&2; fail "the observer did not get the announcement"; }
cmp -s "$T/obs/ann-1.der" "$T/crl1.der" || fail "the observer's announcement differs from the published one"
st=0
wait "$OBS_PID" || st=$?
keep=(); for p in "${PIDS[@]}"; do [[ $p == "$OBS_PID" ]] || keep+=("$p"); done; PIDS=("${keep[@]}")
expect_eq "$st" 0 "cmpcoap observe --count 1's exit status"

step "a flood from 127.0.0.3 is refused with 4.29; 127.0.0.2 is served"
flood=()
for ((k = 0; k < 300; k++)); do flood+=("t=NON;c=POST;path=.well-known/cmp;cf=259;body=@$T/req/genm.der"); done
# sent back to back, no wait for answers: past 4 in flight, or past burst
# 100 + 50/s, it is 4.29 (some datagrams may not even reach the socket)
COAP_UDP_SRC=127.0.0.3 coap_udp 127.0.0.1 "$GW_PORT" 0 "${flood[@]}" >/dev/null 2>&1
sleep 5
ctl_ok flood-stats --json stats
json_check "4.29 after the flood" "$T/flood-stats.out" \
        'assert j["limited_rate"] + j["limited_in_flight"] >= 50, (j["limited_rate"], j["limited_in_flight"])'
log "flood of 300: $(json_get "$T/flood-stats.out" 'j["limited_rate"]') limits.rate, $(json_get "$T/flood-stats.out" 'j["limited_in_flight"]') limits.in_flight_per_peer"
expect_code other-peer 2.04 -a 127.0.0.2 -m post -t 259 -f "$T/req/genm.der" "$CMP"

step "the CA down: 5.0x; back: served"
ca_port=$CA_PORT
stop_ca
coap_req down -m post -t 259 -f "$T/req/genm.der" "$CMP"
[[ $COAP_CODE == 5.0[234] ]] || fail "CA down: expected 5.02/5.03/5.04, got '$COAP_CODE'"
start_ca_at "$ca_port" "$P" "$P/ee.pem"
ok ir-back ir --server "$CMP" "${MAC[@]}" --newkey "$P/ee.key" --subject /CN=back

step "the loop did what it says (cmpgwd's request log)"
count() { grep -c "$1" "$T/gw.log" || true; }
rounds=$((LOOPS / EVERY))
n_ir=$(count ': ir to /.well-known/cmp -> 2.04 via ca')
n_conf=$(count ': certConf to /.well-known/cmp -> 2.04 via ca')
((n_ir >= LOOPS + rounds * 2 && n_conf >= LOOPS + rounds * 2)) ||
        fail "expected at least $((LOOPS + rounds * 2)) ir and $((LOOPS + rounds * 2)) certConf served, log has $n_ir and $n_conf"
for what in 'cr to /.well-known/cmp -> 2.04' 'p10cr to /.well-known/cmp -> 2.04' 'kur to /.well-known/cmp -> 2.04' \
            'rr to /.well-known/cmp -> 2.04' 'ir to /.well-known/cmp/p/chain -> 2.04 via b'; do
        (($(count "$what") >= rounds)) || fail "fewer than $rounds '$what' in cmpgwd's log"
done
log "served: $n_ir ir, $n_conf certConf"

step "SIGTERM: cmpgwd exits 0; nothing leaked, no memory error"
kill -TERM "$GW_PID"
st=0
for ((w = 0; w < 1200; w++)); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$GW_PID" 2>/dev/null && fail "cmpgwd did not exit within 120 s of SIGTERM"
wait "$GW_PID" || st=$?
keep=(); for p in "${PIDS[@]}"; do [[ $p == "$GW_PID" ]] || keep+=("$p"); done; PIDS=("${keep[@]}")
if ((${#VG[@]})); then
        ((st != 99)) || { cat "$VG_LOG" >&2; fail "valgrind reported errors or definite/indirect leaks (log above)"; }
        grep -q 'ERROR SUMMARY: 0 errors' "$VG_LOG" || { cat "$VG_LOG" >&2; fail "valgrind: errors (log above)"; }
        grep -qE 'definitely lost: [1-9]|indirectly lost: [1-9]' "$VG_LOG" && { cat "$VG_LOG" >&2; fail "valgrind: leaks"; }
        log "valgrind: $(grep -E 'in use at exit|ERROR SUMMARY' "$VG_LOG" | sed 's/^==[0-9]*== *//' | tr '\n' ' ')"
fi
expect_eq "$st" 0 "cmpgwd's exit status after SIGTERM"
log "PASS"
