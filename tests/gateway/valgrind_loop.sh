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
#
# cmpgwd under valgrind is 20-50 times slower, and CI machines are slower
# and busier still: no step relies on a fixed sleep. Each waits for the
# event it needs (the observer's registration, the gateway's socket drained
# after the flood, a reload logged) with a generous limit, and every
# failure prints what was seen, the last lines of valgrind's summary among
# them, at the end of the output (a CI record may keep only the end).
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
# valgrind's leak check at exit takes a while: stop_all waits for it
# shellcheck disable=SC2034  # read by lib.sh's stop_all
GW_STOP_TIMEOUT=120
# not "ldd | grep -q": grep -q leaves at the first match, ldd may then die
# of SIGPIPE and pipefail fail the test (seen on a busy machine: the ASan
# build's cmpgwd ran under valgrind and exited at start-up)
if [[ $(ldd "$CMPGWD") == *libasan* ]]; then
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

# vg_digest: what a short CI record needs of valgrind.log: the first error
# or leak record and the summaries
vg_digest() {
        local first
        [[ -s $VG_LOG ]] || { log "valgrind.log is empty or missing"; return 0; }
        log "valgrind.log, its first report and its summaries:"
        first=$(grep -nm1 -E '^==[0-9]+== (Invalid |Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination|Argument |Process terminating|.* are (definitely|indirectly) lost)' \
                "$VG_LOG" | cut -d: -f1 || true)
        # up to the blank line that ends the record, at most 16 lines
        [[ -z $first ]] || awk -v s="$first" 'NR >= s && NR < s + 16 { print; if (NR > s && /^==[0-9]+== *$/) exit }' \
                "$VG_LOG" >&2
        grep -E 'in use at exit|definitely lost:|indirectly lost:|possibly lost:|ERROR SUMMARY' "$VG_LOG" >&2 || true
}
# a failure anywhere: valgrind's view last, once cmpgwd has exited (stop_all)
stop_report() {
        (($1 != 0 && $1 != 77 && ${#VG[@]})) && vg_digest
        return 0
}

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
# cmpcoap NAME WHY ARGS...: must fail, without hanging (give a --timeout),
# and say WHY (an ERE): the refusal meant, not just any failure
refused() {
        local name=$1 why=$2 rc=0
        shift 2
        timeout 120 "$CMPCOAP" "$@" >"$T/$name.log" 2>&1 || rc=$?
        if ((rc == 0 || rc >= 124)) || ! grep -qE -- "$why" "$T/$name.log"; then
                tail -n 15 "$T/$name.log" >&2
                fail "$name: cmpcoap $1 exited $rc, expected a refusal saying '$why' (its log above)"
        fi
}
# ctl_ok NAME ARGS...: cmpgwctl over the private bus, must succeed
ctl_ok() {
        ctl "$@"
        expect_rc "$1" 0
}

# the mock CA always issues ee.pem: one device, whose transport identity is
# that of its latest exchange
registry_ids() {
        # a busy timeout: never "database is locked" if cmpgwd is writing
        sqlite3 -cmd '.timeout 10000' "$T/registry.db" \
                "SELECT coalesce(psk_identity, '') || '|' || coalesce(client_subject, '') FROM devices"
}

head -c 3000 /dev/urandom >"$T/junk"
bad_input() {
        local n=$1 rtag
        rtag=$(printf '%04x' "$n")
        refused "bad-secret$n" 'error validating protection' ir --server "$CMP" --ref "$CA_REF" --secret pass:wrong \
                --newkey "$P/ee.key" --subject "/CN=bad$n" --timeout 30
        refused "bad-rr$n" 'rr refused by the server' rr --server "$CMP" "${SIG[@]}" --oldcert "$P/client.pem" --revreason 0 --timeout 30
        expect_code "garbage$n" 4.00 -m post -t 259 -f "$T/junk" "$CMP"
        expect_code "format$n" 4.15 -m post -t 0 -f "$T/req/genm.der" "$CMP"
        expect_code "path$n" 4.04 -m post -t 259 -f "$T/req/genm.der" "$CMP/p/no-such-label/x/y"
        # a DTLS server drops a handshake with the wrong key: no alert, a timeout
        refused "bad-psk$n" 'DTLS handshake with .* failed' genm --server "$DTLS_URI" --psk-identity "$PSK_ID" --psk-key wrong-key "${MAC[@]}" --timeout 4
        # the first two blocks of a transfer that never ends (dropped after
        # coap.transfer_timeout); up to 5 s for each 2.31: cmpgwd runs under valgrind
        coap_udp 127.0.0.1 "$GW_PORT" 5 \
                "path=.well-known/cmp;cf=259;b1=0:1:6;size1=3000;rtag=$rtag;body=@$T/junk:0:1024" \
                "path=.well-known/cmp;cf=259;b1=1:1:6;rtag=$rtag;body=@$T/junk:1024:1024" >"$T/abandon$n.udp" 2>/dev/null
        [[ $(grep -c 'c:2.31' "$T/abandon$n.udp") == 2 ]] ||
                { tail -n 10 "$T/gw.log" >&2; cat "$T/abandon$n.udp" >&2; fail "abandoned transfer $n: blocks not 2.31 (replies above)"; }
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
        ((i % 50)) || reload_gw_logged 'coaps credentials re-read' $((i / 50)) 60
        ((i % 50)) || log "round $i after $((SECONDS - t0)) s"
done

step "a CRL announcement to an observer; a tampered one changes nothing"
make_crlann crl1 1 --revoked "$(cert_serial "$P/ee.pem")"
make_crlann crl2-bad 2
mkdir -p "$T/obs"
timeout 180 "$CMPCOAP" observe "$CMP/ann" --count 1 --out-dir "$T/obs" --timeout 170 --verbosity 7 \
        >"$T/observe.log" 2>&1 &
OBS_PID=$!
PIDS+=("$OBS_PID")
# both announcements come after the registration (the tampered one would
# reach the observer if it were published), however slow cmpgwd is
for ((w = 0; w < 600; w++)); do
        grep -q 'registered as an observer' "$T/observe.log" && break
        kill -0 "$OBS_PID" 2>/dev/null || break
        sleep 0.1
done
grep -q 'registered as an observer' "$T/observe.log" ||
        { tail -n 10 "$T/gw.log" >&2; tail -n 15 "$T/observe.log" >&2; fail "cmpcoap observe did not register within 60 s (its log above)"; }
announce ann-bad "$T/crl2-bad.der"
((CTL_RC != 0)) || fail "a tampered announcement was accepted"
announce ann1 "$T/crl1.der"
expect_rc ann1 0
wait_file_size "$T/obs/ann-1.der" "$(stat -c %s "$T/crl1.der")" 100 ||
        { tail -n 10 "$T/gw.log" >&2; tail -n 15 "$T/observe.log" >&2; fail "the observer did not get the announcement within 100 s (logs above)"; }
cmp -s "$T/obs/ann-1.der" "$T/crl1.der" || fail "the observer's announcement differs from the published one"
st=0
wait "$OBS_PID" || st=$?
keep=(); for p in "${PIDS[@]}"; do [[ $p == "$OBS_PID" ]] || keep+=("$p"); done; PIDS=("${keep[@]}")
((st == 0)) || { tail -n 15 "$T/observe.log" >&2; fail "cmpcoap observe --count 1 exited $st, expected 0 (its log above)"; }

# udp_socket PORT: "QUEUED DROPS" of the UDP socket on 127.0.0.1:PORT: bytes
# waiting to be read, datagrams the kernel dropped (its buffer was full)
udp_socket() {
        local want f
        want=$(printf '0100007F:%04X' "$1")
        while read -r -a f; do
                [[ ${f[1]} == "$want" ]] || continue
                echo "$((16#${f[4]#*:})) ${f[12]}"
                return 0
        done </proc/net/udp
        return 1
}

step "a flood from 127.0.0.3 is refused with 4.29; 127.0.0.2 is served"
read -r queued drops0 < <(udp_socket "$GW_PORT") || fail "no UDP socket on 127.0.0.1:$GW_PORT in /proc/net/udp"
flood=()
for ((k = 0; k < 300; k++)); do flood+=("t=NON;c=POST;path=.well-known/cmp;cf=259;body=@$T/req/genm.der"); done
# sent back to back, no wait for answers: past 4 in flight, or past burst
# 100 + 50/s, it is 4.29 (the kernel drops what does not fit in the socket)
COAP_UDP_SRC=127.0.0.3 coap_udp 127.0.0.1 "$GW_PORT" 0 "${flood[@]}" >/dev/null 2>&1
# cmpgwd under valgrind may take many seconds to read them: count once its
# socket is empty (what it read, it answered before it reads D-Bus again)
for ((w = 0; w < 1200; w++)); do
        read -r queued drops < <(udp_socket "$GW_PORT") || { gw_alive; fail "cmpgwd's socket on 127.0.0.1:$GW_PORT is gone"; }
        ((queued == 0)) && break
        sleep 0.1
done
((queued == 0)) || { tail -n 5 "$T/gw.log" >&2; fail "cmpgwd's socket still holds $queued bytes of the flood after 120 s"; }
dropped=$((drops - drops0))
ctl_ok flood-stats --json stats
rate=$(json_get "$T/flood-stats.out" 'j["limited_rate"]')
in_flight=$(json_get "$T/flood-stats.out" 'j["limited_in_flight"]')
served=$(grep -c 'from 127\.0\.0\.3:.* -> 2\.04' "$T/gw.log" || true)
log "flood of 300: $rate limits.rate, $in_flight limits.in_flight_per_peer, $served served, $dropped dropped by the kernel"
((rate + in_flight >= 50)) || { tail -n 5 "$T/gw.log" >&2; fail "flood: $((rate + in_flight)) refused with 4.29 ($rate limits.rate, $in_flight limits.in_flight_per_peer), expected at least 50; of 300 datagrams cmpgwd served $served and the kernel dropped $dropped"; }
expect_code other-peer 2.04 -a 127.0.0.2 -m post -t 259 -f "$T/req/genm.der" "$CMP"

step "the CA down: 5.0x; back: served"
ca_port=$CA_PORT
stop_ca
coap_req down -m post -t 259 -f "$T/req/genm.der" "$CMP"
[[ $COAP_CODE == 5.0[234] ]] ||
        { tail -n 5 "$T/gw.log" >&2; tail -n 5 "$T/down.err" >&2; fail "CA down: expected 5.02/5.03/5.04, got '${COAP_CODE:-no answer within ${COAP_WAIT:-20} s}'"; }
start_ca_at "$ca_port" "$P" "$P/ee.pem"
# the gateway may back off from the CA for a few seconds: cmpcoap resends
# after the 5.03's Max-Age (RFC 7252 §5.9.3.4), well within its --timeout
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
        n=$(count "$what")
        ((n >= rounds)) || fail "$n '$what' in cmpgwd's log, expected at least $rounds"
done
log "served: $n_ir ir, $n_conf certConf"

step "SIGTERM: cmpgwd exits 0; nothing leaked, no memory error"
kill -TERM "$GW_PID"
st=0
for ((w = 0; w < 1200; w++)); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$GW_PID" 2>/dev/null && { tail -n 5 "$T/gw.log" >&2; fail "cmpgwd did not exit within 120 s of SIGTERM"; }
wait "$GW_PID" || st=$?
keep=(); for p in "${PIDS[@]}"; do [[ $p == "$GW_PID" ]] || keep+=("$p"); done; PIDS=("${keep[@]}")
if ((${#VG[@]})); then
        vg_bad=''
        ((st != 99)) || vg_bad="valgrind reported errors or definite/indirect leaks (exit status 99)"
        grep -q 'ERROR SUMMARY: 0 errors' "$VG_LOG" || vg_bad=${vg_bad:-"valgrind.log has no 'ERROR SUMMARY: 0 errors'"}
        ! grep -qE 'definitely lost: [1-9]|indirectly lost: [1-9]' "$VG_LOG" || vg_bad=${vg_bad:-"valgrind: definite or indirect leaks"}
        # the whole log for a full record; stop_report repeats its essence last
        [[ -z $vg_bad ]] || { cat "$VG_LOG" >&2; fail "$vg_bad"; }
        log "valgrind: $(grep -E 'in use at exit|ERROR SUMMARY' "$VG_LOG" | sed 's/^==[0-9]*== *//' | tr '\n' ' ')"
fi
expect_eq "$st" 0 "cmpgwd's exit status after SIGTERM"
log "PASS"
