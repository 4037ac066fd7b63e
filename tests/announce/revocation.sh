#!/usr/bin/env bash
# revocation: CRLANN / RANN published with `cmpgwctl announce` → D-Bus.
# A newer CRL gives CrlUpdated and exactly one CertificateRevoked per serial
# it adds; a device enrolled through the gateway whose certificate the CRL
# revokes (the mock CA's ee.pem, serial 3001) becomes revoked with
# DeviceRevoked. An older CRL, a tampered CRLANN and one from a signer
# outside the trust anchors change nothing, and `cmpgwctl announce` exits 1
# saying why. A RANN revokes one more serial.
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
write_ann_config "$T/gw.json"
start_ann_gw "$T/gw.json"
start_monitor
# the same signals as an operator sees them: cmpgwctl monitor without --json
"$CMPGWCTL" monitor >"$T/monitor.txt" 2>"$T/monitor-text.err" &
PIDS+=("$!")
wait_grep "$T/monitor-text.err" 5 '^Monitoring' || fail "cmpgwctl monitor did not subscribe: $(cat "$T/monitor-text.err")"
EE_SERIAL=$(cert_serial "$PKI/ee.pem")          # 3001

step "enrol a device through the gateway (the CA issues ee.pem)"
enrol_node node1
ctl dev0 --json device "$DEV"
expect_rc dev0 0
json_check "device enrolled" "$T/dev0.out" 'assert j["state"] == "enrolled", j'

step "CRL #1 (revokes 3002): CrlUpdated, one CertificateRevoked"
# fixed times, so the signals' fields can be compared with what the CRL says
THIS1=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)
NEXT1=$(date -u -d "$THIS1 + 7 days" +%Y-%m-%dT%H:%M:%SZ)
make_crlann crl1 1 --this-update "$THIS1" --revoked 3002:1:2025-01-02T03:04:05Z
announce ann1 "$T/crl1.der"
expect_rc ann1 0
wait_signal CrlUpdated 1
json_check "CrlUpdated #1: issuer, CRL number, thisUpdate, nextUpdate, DER" "$T/signal.json" '
assert "cmpgw test issuing CA" in j["issuer"], j
assert j["crl_number"].lstrip("0") == "1", j
assert (j["this_update"], j["next_update"]) == (a[0], a[1]), (j, a)
assert bytes(j["der"]) == open(a[2], "rb").read(), "the DER is not the CRL announced"' \
        "$THIS1" "$NEXT1" "$T/crl1.crl.der"
wait_signal CertificateRevoked 1
json_check "CertificateRevoked 3002: issuer, serial, reason, date" "$T/signal.json" '
assert j["serial"].upper().lstrip("0X").lstrip("0") == "3002", j
assert "cmpgw test issuing CA" in j["issuer"], j
assert j["reason"] == 1 and j["revocation_date"] == "2025-01-02T03:04:05Z", j'
sleep 1
expect_eq "$(signal_count CertificateRevoked)" 1 "CertificateRevoked after CRL #1"
expect_eq "$(signal_count DeviceRevoked)" 0 "DeviceRevoked after CRL #1 (3002 is no device)"

step "CRL #2 (3002 again + 3001 new): one more CertificateRevoked, the device revoked"
make_crlann crl2 2 --revoked 3002:1 --revoked "$EE_SERIAL:1"
announce ann2 "$T/crl2.der"
expect_rc ann2 0
wait_signal CrlUpdated 2
wait_signal CertificateRevoked 2
json_check "CertificateRevoked 3001" "$T/signal.json" '
assert j["serial"].upper().lstrip("0X").lstrip("0") == a[0].lstrip("0"), (j, a[0])' "$EE_SERIAL"
wait_signal DeviceRevoked 1
json_check "DeviceRevoked" "$T/signal.json" 'assert j["id"] == int(a[0]), j' "$DEV"
sleep 1
expect_eq "$(signal_count CertificateRevoked)" 2 "CertificateRevoked after CRL #2 (3002 was revoked already)"
ctl dev1 --json device "$DEV"
expect_rc dev1 0
json_check "device revoked" "$T/dev1.out" 'assert j["state"] == "revoked", j'

step "an older CRL (#1 again, freshly signed) changes nothing"
make_crlann old 1 --revoked 5001
announce old "$T/old.der"
expect_rc old 1
expect_nonempty "$(cat "$T/old.err")" "reason for refusing the older CRL"
log "older CRL refused: $(head -c 300 "$T/old.err")"

step "a tampered CRLANN (#3) changes nothing"
make_crlann crl3-bad 3 --revoked 5002
announce bad "$T/crl3-bad.der"
expect_rc bad 1
expect_nonempty "$(cat "$T/bad.err")" "reason for refusing the tampered CRLANN"
log "tampered CRLANN refused: $(head -c 300 "$T/bad.err")"

step "a CRLANN from a signer outside the trust anchors changes nothing"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/rogue.key" \
        -subj "/O=cmpgw test/CN=rogue" -days 30 -out "$T/rogue.pem" \
        -addext keyUsage=critical,digitalSignature,keyCertSign,cRLSign >/dev/null 2>&1
mkann mkcrl --ca-cert "$PKI/ica.pem" --ca-key "$PKI/ica.key" --number 4 --revoked 5003 -o "$T/crl4.crl.der"
mkann crlann --crl "$T/crl4.crl.der" --signer-cert "$T/rogue.pem" --signer-key "$T/rogue.key" -o "$T/rogue.der"
announce rogue "$T/rogue.der"
expect_rc rogue 1
expect_nonempty "$(cat "$T/rogue.err")" "reason for refusing the untrusted CRLANN"
log "untrusted CRLANN refused: $(head -c 300 "$T/rogue.err")"

step "not an announcement (a CRL file itself) is refused"
announce notann "$T/crl2.crl.der"
expect_rc notann 1

sleep 1
expect_eq "$(signal_count CrlUpdated)" 2 "CrlUpdated after the refused ones"
expect_eq "$(signal_count CertificateRevoked)" 2 "CertificateRevoked after the refused ones"
ctl anns announcements
expect_rc anns 0
grep -q "issuing CA" "$T/anns.out" || { cat "$T/anns.out" >&2; fail "cmpgwctl announcements does not show the CRL issuer"; }
ctl annsj --json announcements
expect_rc annsj 0
json_check "the cached CRL is number 2, the latest announcement its CRLANN" "$T/annsj.out" '
import hashlib
crls = [e for e in j if e.get("kind") == "crl"]
assert len(crls) == 1 and crls[0]["crl_number"] == "2" and crls[0]["revoked_count"] == 2, crls
assert crls[0]["sha256"] == hashlib.sha256(open(a[1], "rb").read()).hexdigest(), crls
ann = [e for e in j if e.get("kind") == "crlann"]
der = open(a[0], "rb").read()
assert len(ann) == 1 and ann[0]["latest"] and ann[0]["size"] == len(der), ann
assert ann[0]["sha256"] == hashlib.sha256(der).hexdigest(), ann' "$T/crl2.der" "$T/crl2.crl.der"

step "RANN for serial 4002: one more CertificateRevoked"
ann_sign_opts
mkann rann --issuer-cert "$PKI/ica.pem" --serial 4002 --reason 4 --revoked-at 2025-06-07T08:09:10Z \
        "${SIGN[@]}" -o "$T/rann.der"
announce rann "$T/rann.der"
expect_rc rann 0
wait_signal CertificateRevoked 3
json_check "CertificateRevoked from RANN" "$T/signal.json" '
assert j["serial"].upper().lstrip("0X").lstrip("0") == "4002", j
assert "cmpgw test issuing CA" in j["issuer"], j
assert j["reason"] == 4 and j["revocation_date"] == "2025-06-07T08:09:10Z", j'
sleep 1
expect_eq "$(signal_count CertificateRevoked)" 3 "CertificateRevoked after the RANN"
ctl annsr --json announcements
expect_rc annsr 0
json_check "cmpgwctl announcements: the RANN is the latest, the CRLANN kept" "$T/annsr.out" '
kinds = {e["kind"]: e for e in j}
assert kinds["rann"]["latest"] and kinds["rann"]["size"] == int(a[0]), j
assert not kinds["crlann"]["latest"] and kinds["crl"]["crl_number"] == "2", j' "$(stat -c %s "$T/rann.der")"

step "cmpgwctl monitor (text) printed the same signals"
text_count() { grep -cE "^[0-9:TZ-]+ $1 " "$T/monitor.txt" || true; }
expect_eq "$(text_count CrlUpdated)" 2 "CrlUpdated lines of cmpgwctl monitor"
expect_eq "$(text_count CertificateRevoked)" 3 "CertificateRevoked lines of cmpgwctl monitor"
expect_eq "$(text_count DeviceRevoked)" 1 "DeviceRevoked lines of cmpgwctl monitor"
grep -qE '^[0-9:TZ-]+ CertificateRevoked issuer="CN=cmpgw test issuing CA,O=cmpgw test" serial=3002 reason=1 revocation_date=2025-01-02T03:04:05Z$' \
        "$T/monitor.txt" || { cat "$T/monitor.txt" >&2; fail "cmpgwctl monitor: no CertificateRevoked line for 3002"; }
# a CRL's DER as its size and SHA-256, not hundreds of numbers
crl1_text="der=<$(stat -c %s "$T/crl1.crl.der") bytes sha256 $(sha256sum "$T/crl1.crl.der" | cut -c1-16 | tr a-f A-F)>"
grep -qF -- "$crl1_text" "$T/monitor.txt" ||
        { grep CrlUpdated "$T/monitor.txt" >&2; fail "cmpgwctl monitor: CrlUpdated of CRL 1 without '$crl1_text'"; }
gw_alive
log "CRL and RANN signals as expected"
