#!/usr/bin/env bash
# poll: genm polling of an HTTP upstream that cannot push announcements
# (issue 4; RFC 9483 §4.3, RFC 9482 §2.6).
#
# The polled upstream is tests/announce/ca_poll_fixture.py, a fixture that
# STANDS IN FOR A CA: OpenSSL 3.0's `openssl cmp` server cannot answer genm
# with CA certificates, root CA updates or CRLs (PEERS.md). It is built on
# pyasn1-modules and python3-cryptography (mkann.py), checks each genm's
# signature and chain as a CA would, and answers with signed genp whose
# content the test switches at run time. Enrolment goes to the real
# `openssl cmp` mock CA (upstream "ca").
#
# The gateway polls every second with its own CMP certificate (client.pem,
# issued by the issuing CA). It must: sign its genm (the fixture verifies
# them) and name the CRL issuer with the cached thisUpdate; announce each
# new CA certificate once (CaCertificateAnnounced), a root CA update once
# (CaKeyUpdated), each newer CRL once (CrlUpdated, one CertificateRevoked
# per newly revoked serial, the enrolled device revoked with
# DeviceRevoked), signed with its own key, to an observing node too; publish
# nothing for unchanged answers; refuse an older CRL, a genp with bad
# protection and one with another transactionID, changing nothing and
# logging why; back off from an upstream that is down, logging it
# rate-limited, and recover. Configuration errors name the key.
set -euo pipefail
# shellcheck source=tests/announce/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cli
require_ctl
require_mkann
require_cmd openssl dbus-daemon busctl

FX=$T/fx
FX_PID=''
ISSUING="O=cmpgw test/CN=cmpgw test issuing CA"

polls() { [[ -f $FX/requests.log ]] && wc -l <"$FX/requests.log" || echo 0; }

# wait_polls N: until the fixture has answered N more genm (at least one cycle each 3)
wait_polls() {
        local want=$(($(polls) + $1)) i
        for ((i = 0; i < 300; i++)); do
                (($(polls) >= want)) && return 0
                sleep 0.1
        done
        fail "the gateway did not send $1 more genm within 30 s ($(polls) so far)"
}

# mark_log: later wait_log calls look only at what the gateway logs after now
LOG_MARK=1
mark_log() { LOG_MARK=$(($(wc -l <"$T/gw.log") + 1)); }
new_log() { tail -n "+$LOG_MARK" "$T/gw.log"; }

# wait_log REGEX SECS: until the gateway's log (since mark_log) matches
wait_log() {
        local i
        for ((i = 0; i < $2 * 10; i++)); do
                # grep without -q reads to the end: with -q it may leave early,
                # tail dies of SIGPIPE and pipefail makes a match a failure
                new_log | grep -E "$1" >/dev/null && return 0
                sleep 0.1
        done
        new_log | tail -n 30 >&2
        fail "no log line matching '$1' within $2 s"
}

# the JSON of the last request the fixture logged for an info type
last_request() {
        grep "\"infotype\": \"1.3.6.1.5.5.7.4.$1\"" "$FX/requests.log" | tail -n 1 >"$T/req.json"
}

# a CA certificate signed by the root
make_ca_cert() {
        local name=$1 cn=$2 serial=$3
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$name.key" \
                -subj "/O=cmpgw test/CN=$cn" -out "$T/$name.csr" >/dev/null 2>&1
        printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' \
                >"$T/ca.ext"
        openssl x509 -req -in "$T/$name.csr" -CA "$PKI/root.pem" -CAkey "$PKI/root.key" -set_serial "$serial" \
                -days 365 -extfile "$T/ca.ext" -out "$T/$name.pem" >/dev/null 2>&1 || fail "cannot make $name"
}

# put_file SRC DST: atomically, the fixture reads its state per request
put_file() { cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; }

# a CRL of the issuing CA: make_crl OUT NUMBER AGE_SECONDS [--revoked HEX:REASON]...
make_crl() {
        local out=$1 number=$2 age=$3
        shift 3
        mkann mkcrl --ca-cert "$PKI/ica.pem" --ca-key "$PKI/ica.key" --number "$number" \
                --this-update "$(date -u -d "@$(($(date +%s) - age))" +%Y-%m-%dT%H:%M:%SZ)" "$@" -o "$out"
}

expect_signals() {
        local name=$1 want=$2 what=$3
        expect_eq "$(signal_count "$name")" "$want" "$name $what"
}

make_pki
start_bus
start_ca "$PKI"
mkdir -p "$FX"
FX_PORT=$(free_port tcp)
start_poll_fixture "$FX" "$FX_PORT"
write_ann_config "$T/gw.json" "
c['upstreams'][0]['default'] = True
c['upstreams'].append({'name': 'pki', 'uri': 'http://127.0.0.1:$FX_PORT/pkix/', 'timeout': 5,
    'poll': {'interval': 1, 'certificate': '$PKI/client-chain.pem', 'private_key': '$PKI/client.key'}})"
start_ann_gw "$T/gw.json"
start_monitor
EE_SERIAL=$(cert_serial "$PKI/ee.pem")          # 3001

step "the first polls: signed genm of each kind, nothing to announce yet"
wait_polls 6
expect_contains "$(cat "$T/gw.log")" "poll of upstream pki: caCerts, rootCaUpdate, crls every 1 s" "start-up log"
"$ANN_PY" - "$FX/requests.log" <<'PY' || fail "the genm the fixture received"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
assert all(r["protection"] == "ok" and r["signer"] == "CN=client,O=cmpgw test" for r in reqs), reqs
assert all(r["path"] == "/pkix/" for r in reqs), reqs
kinds = {r["infotype"] for r in reqs}
assert kinds == {"1.3.6.1.5.5.7.4.17", "1.3.6.1.5.5.7.4.20", "1.3.6.1.5.5.7.4.22"}, kinds
root = [r for r in reqs if r["infotype"].endswith(".20")]
assert all(r.get("root") == "CN=cmpgw test root CA,O=cmpgw test" for r in root), root
crl = [r for r in reqs if r["infotype"].endswith(".22")]
assert all(r["crl_status"] == [{"issuer": "CN=cmpgw test issuing CA,O=cmpgw test", "this_update": None}]
           for r in crl), crl
assert all(r["answered"] == "absent" for r in reqs), reqs
PY
ctl anns0 --json announcements
expect_rc anns0 0
json_check "no announcement yet" "$T/anns0.out" 'assert j == [], j'

step "enrol a device through the gateway (the mock CA issues ee.pem, serial $EE_SERIAL)"
enrol_node node1

step "caCerts names the issuing and the root CA: two CANNs, CaCertificateAnnounced twice"
cat "$PKI/ica.pem" "$PKI/root.pem" >"$T/cacerts.pem"
put_file "$T/cacerts.pem" "$FX/cacerts.pem"
wait_signal CaCertificateAnnounced 2
wait_polls 6
expect_signals CaCertificateAnnounced 2 "after unchanged polls"
"$ANN_PY" "$MKANN" check "$T/announcements/cann.der" --trusted "$PKI/trusted.pem" >"$T/cann.out" 2>&1 ||
        { cat "$T/cann.out" >&2; fail "the stored CANN does not verify"; }
expect_contains "$(cat "$T/cann.out")" "protection ok (signer CN=client,O=cmpgw test)" "the CANN, signed by the gateway"

step "one more CA certificate: exactly one more CaCertificateAnnounced"
make_ca_cert ica2 "cmpgw test issuing CA 2" 0x6001
cat "$T/cacerts.pem" "$T/ica2.pem" >"$T/cacerts2.pem"
put_file "$T/cacerts2.pem" "$FX/cacerts.pem"
wait_signal CaCertificateAnnounced 3
json_check "CaCertificateAnnounced names the new CA" "$T/signal.json" 'assert "issuing CA 2" in json.dumps(j), j'
wait_polls 6
expect_signals CaCertificateAnnounced 3 "after unchanged polls"

step "a node observes ann; CRL #1 revokes 3002 and the device: CrlUpdated, two CertificateRevoked, DeviceRevoked"
mkdir -p "$T/obs"
timeout 60 "$CMPCOAP" observe "$GW_URI/.well-known/cmp/ann" --out-dir "$T/obs" --count 2 --timeout 50 \
        >"$T/obs.out" 2>"$T/obs.err" &
OBS_PID=$!
PIDS+=("$OBS_PID")
for _ in $(seq 100); do [[ -s $T/obs/ann-1.der ]] && break; sleep 0.1; done
[[ -s $T/obs/ann-1.der ]] || { cat "$T/obs.err" >&2; fail "the observing node got no current announcement"; }
make_crl "$T/crl1.der" 1 120 --revoked 3002:1 --revoked "$EE_SERIAL:1"
put_file "$T/crl1.der" "$FX/crl.der"
wait_signal CrlUpdated 1
json_check "CrlUpdated names the issuing CA and CRL 1" "$T/signal.json" '
s = json.dumps(j)
assert "cmpgw test issuing CA" in s, j
assert any(str(v) in ("1", "01") for v in j.values()), j'
wait_signal CertificateRevoked 2
wait_signal DeviceRevoked 1
json_check "DeviceRevoked" "$T/signal.json" 'assert j["id"] == int(a[0]), j' "$DEV"
ctl dev1 --json device "$DEV"
json_check "device revoked" "$T/dev1.out" 'assert j["state"] == "revoked", j'
rc=0
wait "$OBS_PID" || rc=$?
((rc == 0)) || { cat "$T/obs.err" >&2; fail "cmpcoap observe exited $rc"; }
expect_contains "$(cat "$T/obs.out")" "announcement 2: crlann" "the observing node"
"$ANN_PY" "$MKANN" check "$T/obs/ann-2.der" --trusted "$PKI/trusted.pem" >"$T/check.out" 2>&1 ||
        { cat "$T/check.out" >&2; fail "the CRLANN the node received does not verify"; }
expect_contains "$(cat "$T/check.out")" "protection ok (signer CN=client,O=cmpgw test)" "the node's CRLANN"
expect_contains "$(cat "$T/check.out")" "number 1 revoked 2" "the node's CRLANN"
log "the node received the gateway's CRLANN: $(tr '\n' ' ' <"$T/check.out")"

step "unchanged: the genm carries the cached thisUpdate, the CA has nothing newer, nothing is published"
wait_polls 6
last_request 22
json_check "crlStatusList with the cached thisUpdate" "$T/req.json" '
st = [s for s in j["crl_status"] if "issuing CA," in s["issuer"]]
assert st and st[0]["this_update"], j
assert j["answered"] == "absent", j'
expect_signals CrlUpdated 1 "after unchanged polls"
expect_signals CertificateRevoked 2 "after unchanged polls"

step "CRL #2 adds 4001: exactly one more CertificateRevoked"
make_crl "$T/crl2.der" 2 60 --revoked 3002:1 --revoked "$EE_SERIAL:1" --revoked 4001:4
put_file "$T/crl2.der" "$FX/crl.der"
wait_signal CrlUpdated 2
wait_signal CertificateRevoked 3
json_check "CertificateRevoked 4001" "$T/signal.json" 'assert j["serial"].lstrip("0") == "4001", j'
wait_polls 6
expect_signals CertificateRevoked 3 "after CRL #2"
expect_signals DeviceRevoked 1 "after CRL #2"

step "the CA sends an older CRL (#1 again, newly signed): refused, logged, nothing changes"
make_crl "$T/crl1b.der" 1 90 --revoked 5001
mark_log
put_file "$T/crl1b.der" "$FX/crl.der"
touch "$FX/crl-always"
wait_log "poll of upstream pki: it sent a CRL of .*issuing CA.* that is not newer than the cached one" 15
rm -f "$FX/crl-always"
wait_polls 3
expect_signals CrlUpdated 2 "after the older CRL"
expect_signals CertificateRevoked 3 "after the older CRL"
ctl anns2 --json announcements
json_check "the cached CRL is still #2" "$T/anns2.out" '
c = [e for e in j if e.get("kind") == "crl"]
assert len(c) == 1 and c[0]["crl_number"] == "2", c'

step "a root CA update: one CKUANN, CaKeyUpdated once"
make_root_update "$T/ru"
mv "$T/ru" "$FX/root-update"
wait_signal CaKeyUpdated 1
json_check "CaKeyUpdated names the new root" "$T/signal.json" 'assert "root CA 2" in json.dumps(j), j'
wait_polls 6
expect_signals CaKeyUpdated 1 "after unchanged polls"

step "a genp with bad protection: refused, logged, nothing changes"
make_ca_cert ica3 "cmpgw test issuing CA 3" 0x6002
cat "$T/cacerts2.pem" "$T/ica3.pem" >"$T/cacerts3.pem"
mark_log
echo badsig >"$FX/mode"
put_file "$T/cacerts3.pem" "$FX/cacerts.pem"
wait_log "poll of upstream pki failed \(1 in a row\): [a-zA-Z]+: answer refused, nothing published: the protection does not verify" 15
expect_signals CaCertificateAnnounced 3 "after a genp with bad protection"

step "a genp with another transactionID: refused, logged"
echo wrongtid >"$FX/mode"
wait_log "poll of upstream pki failed \([0-9]+ in a row\): [a-zA-Z]+: answer refused, nothing published: its transactionID is not the genm's" 20
expect_signals CaCertificateAnnounced 3 "after a genp with another transactionID"

step "valid again: the new CA certificate is announced once"
echo ok >"$FX/mode"
wait_log "poll of upstream pki: answered again after [0-9]+ failed polls" 20     # the backoff may be at 8 s
wait_signal CaCertificateAnnounced 4
wait_polls 6
expect_signals CaCertificateAnnounced 4 "after recovery"

step "a reload with credentials that do not belong together is refused, naming the key"
cp "$T/gw.json" "$T/gw-good.json"
sed -i "s|$PKI/client.key|$PKI/srv.key|" "$T/gw.json"
ctl reload_bad reload
expect_rc reload_bad 1
expect_contains "$(cat "$T/reload_bad.err")" "upstreams[1].poll.certificate" "refused reload"
cp "$T/gw-good.json" "$T/gw.json"
wait_polls 3
log "refused reload: $(head -c 300 "$T/reload_bad.err")"

step "the upstream goes away: backoff, logged while it grows, the gateway keeps serving"
mark_log
stop_pid "$FX_PID"
wait_log "poll of upstream pki failed \([0-9]+ in a row\): .*; polling again in 8 s" 25
n_logged=$(new_log | grep -c "poll of upstream pki failed" || true)
new_log | grep "poll of upstream pki failed" | while read -r l; do log "  $l"; done
new_log | grep -E "poll of upstream pki failed \([0-9]+ in a row\): .*(unreachable|keeps failing)" >/dev/null ||
        fail "the backoff log does not say the upstream is unreachable"
((n_logged <= 4)) || fail "$n_logged failure lines for 3 failed polls: not rate-limited"
coap_req core -m get "$GW_URI/.well-known/core"
expect_eq "$COAP_CODE" 2.05 "GET /.well-known/core while the polled upstream is down"
ctl status status
expect_rc status 0
start_poll_fixture "$FX" "$FX_PORT"      # the same port: the configured upstream comes back
wait_log "poll of upstream pki: answered again after [0-9]+ failed polls" 30
n_after=$(new_log | grep -c "poll of upstream pki failed" || true)
log "backoff: $n_logged failure lines while down ($n_after in all), recovered"
expect_signals CaCertificateAnnounced 4 "after the upstream came back"
expect_signals CrlUpdated 2 "after the upstream came back"

step "configuration errors name the key"
bad() {
        local name=$1 code=$2 want=$3
        write_ann_config "$T/$name.json" "$code"
        if "$CMPGWD" --check-config --config "$T/$name.json" >"$T/$name.out" 2>&1; then
                fail "$name: --check-config accepted it"
        fi
        expect_contains "$(cat "$T/$name.out")" "$want" "$name"
}
bad coap "c['upstreams'][0]['uri'] = 'coap://127.0.0.1:5683'
c['upstreams'][0]['poll'] = {'certificate': '/c.pem', 'private_key': '/k.pem'}" "upstreams[0].poll: only an http://"
bad key "c['upstreams'][0]['poll'] = {'certificate': '/c.pem', 'private_key': '/k.pem', 'intervall': 5}" \
        "upstreams[0].poll.intervall: unknown key"
bad missing "c['upstreams'][0]['poll'] = {'certificate': '/c.pem'}" "upstreams[0].poll.private_key: missing"
bad what "c['upstreams'][0]['poll'] = {'certificate': '/c.pem', 'private_key': '/k.pem', 'what': ['ocsp']}" \
        "upstreams[0].poll.what"
# a certificate that does not chain to announcements.trusted stops the start
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/rogue.key" \
        -subj "/O=cmpgw test/CN=rogue" -days 30 -out "$T/rogue.pem" >/dev/null 2>&1
mkdir -p "$T/rogue"
SAVED_PORT=$GW_PORT
GW_PORT=$(free_port udp)
write_ann_config "$T/rogue.json" "
c['registry']['path'] = '$T/rogue/registry.db'
c['dbus'] = {'bus': 'none'}
c['upstreams'][0]['poll'] = {'certificate': '$T/rogue.pem', 'private_key': '$T/rogue.key'}"
GW_PORT=$SAVED_PORT
GW_URI=coap://127.0.0.1:$GW_PORT
rc=0
timeout 20 "$CMPGWD" --config "$T/rogue.json" >"$T/rogue.out" 2>&1 || rc=$?
((rc != 0)) || fail "cmpgwd started with a poll certificate outside announcements.trusted"
expect_contains "$(cat "$T/rogue.out")" "upstreams[0].poll.certificate" "start with a rogue certificate"
expect_contains "$(cat "$T/rogue.out")" "does not chain to announcements.trusted" "start with a rogue certificate"
! grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$T/rogue.out" ||
        { cat "$T/rogue.out" >&2; fail "sanitizer report from the refused start"; }
log "rogue certificate: $(grep -m1 'poll.certificate' "$T/rogue.out")"
gw_alive
log "polling: announcements from an upstream that cannot push, as expected"
