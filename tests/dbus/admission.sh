#!/usr/bin/env bash
# admission (issue 5): admission policies and the DTLS identity binding,
# with cmpgwctl over a private system-like bus, the mock CA (openssl cmp)
# and cmpcoap / coap-client as nodes. One cmpgwd with
#   listen[0] coap://  open        (start-up probe; per-label policy)
#   listen[1] coap://  registered
#   listen[2] coaps:// registered, PSK and certificates, relay "gw-relay"
#   listen[3] coap://0.0.0.0 open (a wildcard address)
#   admission.labels: factory → registered
# (a) the open listeners enrol an unknown node (the wildcard one too: a
#     request no listener claimed would be taken as "registered");
# (b) the registered listener refuses an unknown node with 4.03 (its
#     sender and senderKID are not admitted) and nothing reaches the CA;
#     `device add --sender` admits it (plain coap), `device remove` (in the
#     other spelling of the name) refuses it again; --sender-kid admits by
#     the MAC reference;
# (c) a request with no identity at all is 4.01 — no real client sends
#     one (openssl cmp and cmpcoap refuse to), so it is a captured genm
#     with its protection and senderKID removed (pyasn1);
# (d) coaps with a PSK: refused until `device add --psk-identity`, then
#     enrols; a MAC senderKID other than the PSK identity is 4.03, logged,
#     counted, not forwarded, even though the PSK identity is admitted; a
#     relay's PSK identity is not bound;
# (e) coaps with a client certificate: a cr signed by another certificate
#     than the DTLS one is 4.03; signed by the DTLS certificate it enrols
#     once its subject is admitted (`device add --client-subject`);
# (f) per-label policy: /p/factory on the open listener is "registered";
#     an entry admitted with --label factory admits there and nowhere else;
# (g) GetStatistics counts refused_admission and refused_identity_mismatch;
#     `cmpgwctl admitted` lists the entries;
# (h) cmpgwctl usage errors; the bus policy: nobody may list but not add
#     or remove (exit 4), the privileged group may (root only: setpriv);
# (i) config errors name the key (cmpgwd --check-config).
set -euo pipefail
# shellcheck source=tests/dbus/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cli
require_ctl
require_cmd openssl sqlite3 busctl dbus-daemon "$COAP_CLIENT"
/usr/bin/python3 -c 'import pyasn1_modules.rfc4210' 2>/dev/null || skip "no python3-pyasn1-modules"

make_pki
P=$PKI
start_bus
start_ca "$P"
MAC=(--ref "$CA_REF" --secret "$CA_SECRET")
PSK_KEY=k3y-of-node-psk
printf 'node-psk:%s\ngw-relay:r3lay-key\n' "$PSK_KEY" >"$T/psk.txt"
chmod 600 "$T/psk.txt"
printf '%s\n' "$PSK_KEY" >"$T/node-psk.key"
printf 'r3lay-key\n' >"$T/relay.key"

REG_PORT=$(free_port udp)
DTLS_PORT=$(free_port udp)
WILD_PORT=$(free_port udp)
write_dbus_config "$T/gw.json"
/usr/bin/python3 - "$T/gw.json" "$REG_PORT" "$DTLS_PORT" "$T/psk.txt" "$P" "$WILD_PORT" <<'PY'
import json, sys
f, reg, dtls, psk, p, wild = sys.argv[1:]
c = json.load(open(f))
c["listen"].append({"uri": "coap://127.0.0.1:%s" % reg, "admission": "registered"})
c["listen"].append({"uri": "coaps://127.0.0.1:%s" % dtls, "admission": "registered", "psk_file": psk,
                    "certificate": p + "/gw-dtls-chain.pem", "private_key": p + "/gw-dtls.key",
                    "client_ca": p + "/chain.pem", "relays": ["gw-relay"]})
c["listen"].append({"uri": "coap://0.0.0.0:%s" % wild})
c["admission"] = {"labels": {"factory": "registered"}}
json.dump(c, open(f, "w"), indent=2)
PY
start_gw_dbus "$T/gw.json"
OPEN=coap://127.0.0.1:$GW_PORT/.well-known/cmp
REG=coap://127.0.0.1:$REG_PORT/.well-known/cmp
DTLS=coaps://127.0.0.1:$DTLS_PORT/.well-known/cmp

# run NAME ARGS...: cmpcoap ARGS, output in $T/NAME.log; sets RC
run() {
        local name=$1
        shift
        RC=0
        timeout 60 "$CMPCOAP" "$@" --timeout 20 >"$T/$name.log" 2>&1 || RC=$?
        log "cmpcoap $1 ($name) -> exit $RC"
}
enrols() {      # enrols NAME ARGS...: cmpcoap ir/cr ARGS must get the CA's certificate
        local name=$1
        shift
        run "$name" "$@" --newkey "$P/ee.key" --certout "$T/$name.pem"
        if ((RC != 0)); then
                tail -n 8 "$T/$name.log" >&2
                log "cmpgwd log tail:"; tail -n 8 "$T/gw.log" >&2
                fail "$name: not enrolled (cmpcoap exit $RC)"
        fi
        cert_eq "$T/$name.pem" "$P/ee.pem" || fail "$name: not the CA's certificate"
}
# refused NAME CODE TEXT ARGS...: cmpcoap ARGS gets CODE with TEXT in the
# diagnostic, and the CA sees nothing of it
refused() {
        local name=$1 code=$2 text=$3 before
        shift 3
        before=$(ca_requests)
        run "$name" "$@" --newkey "$P/ee.key" --certout "$T/$name.pem"
        ((RC != 0)) || fail "$name: cmpcoap succeeded; expected $code"
        expect_contains "$(cat "$T/$name.log")" "server answered $code" "$name"
        expect_contains "$(cat "$T/$name.log")" "$text" "$name: diagnostic"
        expect_eq "$(ca_requests)" "$before" "$name: requests that reached the CA"
        [[ ! -s $T/$name.pem ]] || fail "$name: a certificate was written"
}
ca_requests() { grep -c 'Received request' "$T/ca.log" || true; }
stat_of() {     # stat_of KEY: a GetStatistics counter
        ctl stats --json stats
        expect_rc stats 0
        json_get "$T/stats.out" "j['$1']"
}

step "(a) the open listeners enrol a node nobody admitted"
enrols open ir --server "$OPEN" "${MAC[@]}" --subject /CN=node-open
enrols open-wildcard ir --server "coap://127.0.0.1:$WILD_PORT/.well-known/cmp" "${MAC[@]}" --subject /CN=node-open
log "ok: enrolled on the open listeners"

step "(b) the registered listener refuses an unknown node: 4.03, nothing reaches the CA"
refused plain-unknown 4.03 "not admitted: sender CN=node-plain is not registered" \
        ir --server "$REG" "${MAC[@]}" --subject /CN=node-plain
grep -q 'ir refused with 4.03: not admitted: sender CN=node-plain' "$T/gw.log" ||
        fail "the refusal is not in cmpgwd's log"
expect_eq "$(stat_of refused_admission)" 1 "refused_admission"

step "(b) device add --sender admits it over plain coap"
ctl add-sender device add --sender /CN=node-plain
expect_rc add-sender 0
expect_eq "$(cat "$T/add-sender.out")" "Admitted sender CN=node-plain." "device add output"
ctl add-again device add --sender CN=node-plain
expect_rc add-again 0
expect_contains "$(cat "$T/add-again.out")" "Already admitted: sender CN=node-plain" "device add twice"
enrols plain-admitted ir --server "$REG" "${MAC[@]}" --subject /CN=node-plain
log "ok: enrolled once admitted"

step "(b) device remove (the other spelling of the name): refused again"
ctl rm-sender device remove --sender CN=node-plain
expect_rc rm-sender 0
refused plain-removed 4.03 "not registered" ir --server "$REG" "${MAC[@]}" --subject /CN=node-plain
ctl rm-again device remove --sender CN=node-plain
expect_rc rm-again 1
expect_contains "$(cat "$T/rm-again.err")" "sender CN=node-plain is not admitted" "removing twice"

step "(b) --sender-kid admits by the MAC reference (text; 0xHEX removes it)"
ctl add-kid device add --sender-kid "$CA_REF"
expect_rc add-kid 0
enrols kid-admitted ir --server "$REG" "${MAC[@]}" --subject /CN=node-kid
ctl rm-kid device remove --sender-kid "0x$(printf %s "$CA_REF" | od -An -tx1 | tr -d ' \n')"
expect_rc rm-kid 0
refused kid-removed 4.03 "not registered" ir --server "$REG" "${MAC[@]}" --subject /CN=node-kid

step "(c) no identity at all: 4.01"
ossl_cmp -cmd genm -ref "$CA_REF" -secret "$CA_SECRET" -reqout "$T/genm.der" >"$T/genm-capture.log" 2>&1 ||
        { cat "$T/genm-capture.log" >&2; fail "capture of a genm"; }
/usr/bin/python3 - "$T/genm.der" "$T/anonymous.der" <<'PY'
import sys
from pyasn1.codec.der import decoder, encoder
from pyasn1_modules import rfc4210
msg, rest = decoder.decode(open(sys.argv[1], "rb").read(), asn1Spec=rfc4210.PKIMessage())
assert not rest
new = rfc4210.PKIMessage()
for name in msg["header"]:      # sender and recipient stay NULL-DN
    if name not in ("protectionAlg", "senderKID") and msg["header"][name].isValue:
        new["header"][name] = msg["header"][name]
new["body"] = msg["body"]
open(sys.argv[2], "wb").write(encoder.encode(new))
PY
before=$(ca_requests)
expect_code anonymous 4.01 -m post -t 259 -f "$T/anonymous.der" "$REG"
expect_contains "$COAP_DIAG" "no credentials" "4.01 diagnostic"
expect_eq "$(ca_requests)" "$before" "requests that reached the CA"
# the same bytes on the open listener do reach the CA: a well-formed request
coap_req anonymous-open -m post -t 259 -f "$T/anonymous.der" "$OPEN"
expect_eq "$(ca_requests)" "$((before + 1))" "requests that reached the CA from the open listener"

step "(d) coaps with a PSK: refused until device add --psk-identity"
PSK=(--psk-identity node-psk --psk-key "file:$T/node-psk.key")
refused psk-unknown 4.03 "psk-identity node-psk is not registered" \
        ir --server "$DTLS" "${PSK[@]}" --ref node-psk --secret "$CA_SECRET" --subject /CN=node-psk
ctl add-psk device add --psk-identity node-psk
expect_rc add-psk 0
enrols psk-admitted ir --server "$DTLS" "${PSK[@]}" --ref node-psk --secret "$CA_SECRET" --subject /CN=node-psk
expect_eq "$(sqlite3 "$T/registry.db" "SELECT psk_identity FROM devices WHERE sender = 'CN=node-psk'")" \
        node-psk "registry: the device's PSK identity"

step "(d) a MAC senderKID that is not the PSK identity: 4.03, logged, counted"
refused psk-mismatch 4.03 'senderKID "1234" is not the DTLS PSK identity "node-psk"' \
        ir --server "$DTLS" "${PSK[@]}" "${MAC[@]}" --subject /CN=node-psk
grep -q 'refused with 4.03: not admitted: CMP senderKID "1234" is not the DTLS PSK identity "node-psk"' "$T/gw.log" ||
        fail "the identity mismatch is not in cmpgwd's log"
expect_eq "$(stat_of refused_identity_mismatch)" 1 "refused_identity_mismatch"

step "(d) a relay's PSK identity is not bound (it forwards others' senderKIDs)"
ctl add-relay device add --psk-identity gw-relay
expect_rc add-relay 0
enrols relay ir --server "$DTLS" --psk-identity gw-relay --psk-key "file:$T/relay.key" "${MAC[@]}" \
        --subject /CN=node-behind-relay

step "(e) coaps with a client certificate: the CMP sender must be its subject"
TLS=(--tls-cert "$P/client-dtls.pem" --tls-key "$P/client-dtls.key" --tls-trusted "$P/trusted.pem")
ctl add-subject device add --client-subject "/O=cmpgw test/CN=dtls client"
expect_rc add-subject 0
expect_contains "$(cat "$T/add-subject.out")" "client-subject CN=dtls client,O=cmpgw test" "canonical subject"
refused cert-mismatch 4.03 "CMP sender CN=client" \
        cr --server "$DTLS" "${TLS[@]}" --cert "$P/client.pem" --key "$P/client.key" \
        --trusted "$P/trusted.pem" --extracerts "$P/chain.pem" --subject /CN=node-cert
expect_contains "$(cat "$T/cert-mismatch.log")" "is not the subject of the DTLS client certificate" "cert mismatch"
expect_eq "$(stat_of refused_identity_mismatch)" 2 "refused_identity_mismatch"
enrols cert-bound cr --server "$DTLS" "${TLS[@]}" --cert "$P/client-dtls.pem" --key "$P/client-dtls.key" \
        --trusted "$P/trusted.pem" --extracerts "$P/chain.pem" --subject /CN=node-cert
log "ok: signed with the DTLS certificate, enrolled"

step "(f) per-label policy: /p/factory is registered on the open listener"
refused label-unknown 4.03 "not registered" ir --server "$OPEN/p/factory" "${MAC[@]}" --subject /CN=node-f
enrols label-other ir --server "$OPEN/p/lab" "${MAC[@]}" --subject /CN=node-f
ctl add-label device add --sender /CN=node-f --label factory
expect_rc add-label 0
enrols label-admitted ir --server "$OPEN/p/factory" "${MAC[@]}" --subject /CN=node-f
refused label-elsewhere 4.03 "not registered" ir --server "$REG" "${MAC[@]}" --subject /CN=node-f
ctl rm-label-wrong device remove --sender /CN=node-f
expect_rc rm-label-wrong 1
ctl rm-label device remove --sender /CN=node-f --label factory
expect_rc rm-label 0
refused label-removed 4.03 "not registered" ir --server "$OPEN/p/factory" "${MAC[@]}" --subject /CN=node-f

step "(g) statistics and the list of admitted identities"
expect_eq "$(stat_of refused_admission)" 8 "refused_admission (4.03 seven times, 4.01 once)"
ctl admitted-json --json admitted
expect_rc admitted-json 0
json_check "admitted --json" "$T/admitted-json.out" '
kinds = sorted((e["kind"], e["value"]) for e in j)
assert kinds == [("client-subject", "CN=dtls client,O=cmpgw test"), ("psk-identity", "gw-relay"),
                 ("psk-identity", "node-psk")], kinds
assert all("added_at" in e and "label" not in e for e in j), j'
ctl admitted-table admitted
expect_rc admitted-table 0
expect_contains "$(cat "$T/admitted-table.out")" "3 identities admitted." "admitted table"
ctl add-kid2 device add --sender-kid 0x00ff
ctl admitted-kid admitted
expect_contains "$(cat "$T/admitted-kid.out")" "0x00FF" "a senderKID that is not text"
ctl add-kid3 device add --sender-kid node-7 --label factory
ctl admitted-kid3 admitted
expect_contains "$(cat "$T/admitted-kid3.out")" "node-7 (0x6E6F64652D37)" "a senderKID that is text"

step "(h) cmpgwctl usage errors"
ctl u1 device add
expect_rc u1 2
expect_contains "$(cat "$T/u1.err")" "give one of --psk-identity ID" "device add without identity"
ctl u2 device add --sender CN=a --psk-identity b
expect_rc u2 2
ctl u3 device add --sender node-without-equals
expect_rc u3 2
expect_contains "$(cat "$T/u3.err")" "is not a distinguished name" "a sender that is no DN"
ctl u4 device add --sender-kid 0xZZ
expect_rc u4 2
ctl u5 device add --psk-identity a --label ../x
expect_rc u5 2
expect_contains "$(cat "$T/u5.err")" "is not a label" "a bad label"
ctl u6 devices --psk-identity a
expect_rc u6 2

if ((EUID == 0)) && getent passwd nobody >/dev/null && getent group nogroup >/dev/null &&
   getent group "$TEST_GROUP" >/dev/null; then
        step "(h) bus policy: nobody may list, not add or remove; group $TEST_GROUP may"
        ctl_as_nobody nb-list --json admitted
        expect_rc nb-list 0
        ctl_as_nobody nb-add device add --psk-identity intruder
        expect_rc nb-add 4
        expect_eq "$(cat "$T/nb-add.err")" "cmpgwctl: permission denied: AddAdmitted needs root or group cmpgw" \
                "device add as nobody"
        ctl_as_nobody nb-rm device remove --psk-identity node-psk
        expect_rc nb-rm 4
        setpriv --reuid=nobody --regid=nogroup --clear-groups \
                dbus-send --system --print-reply --dest="$GW_NAME" "$GW_OBJ" org.cmpgw.Gateway1.AddAdmitted \
                string:psk-identity string:intruder string: >"$T/nb-send.out" 2>"$T/nb-send.err" &&
                fail "AddAdmitted as nobody succeeded"
        expect_contains "$(cat "$T/nb-send.err")" "Rejected send message" "AddAdmitted refused by the bus policy"
        ctl still --json admitted
        json_check "nothing added by nobody" "$T/still.out" 'assert all(e["value"] != "intruder" for e in j), j'
        ctl_as_nobody grp-add --groups "$TEST_GROUP" device add --psk-identity grp-node
        expect_rc grp-add 0
        ctl_as_nobody grp-rm --groups "$TEST_GROUP" device remove --psk-identity grp-node
        expect_rc grp-rm 0
else
        log "bus policy part skipped: needs root, users nobody/nogroup and group $TEST_GROUP"
fi

step "(i) config errors name the key"
check_config() {        # check_config NAME JSON-EDIT NEEDLE
        /usr/bin/python3 - "$T/gw.json" "$T/$1.json" "$2" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"))
PY
        local rc=0 out
        out=$("$CMPGWD" --check-config --config "$T/$1.json" 2>&1) || rc=$?
        ((rc == 1)) || fail "$1: --check-config exited $rc: $out"
        expect_contains "$out" "$3" "$1"
}
check_config bad-policy 'c["listen"][1]["admission"] = "closed"' \
        'listen[1].admission: "closed": expected "open" or "registered"'
check_config bad-relays 'c["listen"][1]["relays"] = ["gw"]' \
        'listen[1].relays: relays are DTLS identities: they belong to coaps:// listeners only'
check_config bad-label 'c["admission"]["labels"]["factory"] = "yes"' \
        'admission.labels.factory: "yes": expected "open" or "registered"'
check_config bad-key 'c["admission"]["default"] = "open"' 'admission.default: unknown key'

gw_alive
kill -0 "$CA_PID" 2>/dev/null || fail "the mock CA died (see $T/ca.log)"
log "PASS"
