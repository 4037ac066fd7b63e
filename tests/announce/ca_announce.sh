#!/usr/bin/env bash
# ca_announce: a CANN and a CKUANN made by an independent implementation
# (mkann.py: pyasn1-modules and python3-cryptography; OpenSSL 3.0 cannot
# make them), published with `cmpgwctl announce` (issue 4). poll.sh sees
# these kinds only as the gateway builds them itself, with the templates it
# parses with. A CANN gives CaCertificateAnnounced (subject, serial, the
# certificate's DER), a CKUANN CaKeyUpdated (subject and DER of
# newWithNew); a node observing ann receives each byte for byte and
# `cmpcoap observe` names its kind. A tampered CANN and an unprotected
# CKUANN are refused: no signal, the latest announcement stays.
set -euo pipefail
# shellcheck source=tests/announce/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cli
require_ctl
require_mkann
require_cmd openssl dbus-daemon busctl

make_pki
start_bus
CA_URI=http://127.0.0.1:9/pkix/        # no CMP request is made
write_ann_config "$T/gw.json"
start_ann_gw "$T/gw.json"
start_monitor
ann_sign_opts

step "a node observes ann (nothing announced yet)"
mkdir -p "$T/obs"
timeout 60 "$CMPCOAP" observe "$GW_URI/.well-known/cmp/ann" --out-dir "$T/obs" --count 2 --timeout 50 \
        --verbosity 7 >"$T/obs.out" 2>"$T/obs.err" &
OBS_PID=$!
PIDS+=("$OBS_PID")
wait_grep "$T/obs.err" 10 'registered as an observer' || { cat "$T/obs.err" >&2; fail "the node was not registered"; }

step "CANN of the issuing CA: CaCertificateAnnounced with its subject, serial and DER"
mkann cann --cert "$PKI/ica.pem" "${SIGN[@]}" -o "$T/cann.der"
openssl x509 -in "$PKI/ica.pem" -outform DER -out "$T/ica.der"
announce cann "$T/cann.der"
expect_rc cann 0
wait_signal CaCertificateAnnounced 1
json_check "CaCertificateAnnounced" "$T/signal.json" '
assert "CN=cmpgw test issuing CA" in j["subject"], j
assert int(j["serial"], 16) == int(a[0], 16), (j, a)
assert bytes(j["der"]) == open(a[1], "rb").read(), "the DER is not the announced certificate"' \
        "$(cert_serial "$PKI/ica.pem")" "$T/ica.der"

step "CKUANN of a new root: CaKeyUpdated with the subject and DER of newWithNew"
make_root_update "$T/ru"
mkann ckuann --old-with-new "$T/ru/old-with-new.pem" --new-with-old "$T/ru/new-with-old.pem" \
        --new-with-new "$T/ru/new-with-new.pem" "${SIGN[@]}" -o "$T/ckuann.der"
openssl x509 -in "$T/ru/new-with-new.pem" -outform DER -out "$T/nwn.der"
announce ckuann "$T/ckuann.der"
expect_rc ckuann 0
wait_signal CaKeyUpdated 1
json_check "CaKeyUpdated" "$T/signal.json" '
assert "CN=cmpgw test root CA 2" in j["subject"], j
assert bytes(j["new_cert_der"]) == open(a[0], "rb").read(), "the DER is not newWithNew"' "$T/nwn.der"

step "the observing node received both, byte for byte"
rc=0
wait "$OBS_PID" || rc=$?
((rc == 0)) || { cat "$T/obs.err" >&2; fail "cmpcoap observe exited $rc"; }
cmp -s "$T/obs/ann-1.der" "$T/cann.der" || fail "the node's first announcement is not the CANN"
cmp -s "$T/obs/ann-2.der" "$T/ckuann.der" || fail "the node's second announcement is not the CKUANN"
expect_contains "$(cat "$T/obs.out")" "announcement 1: cann" "cmpcoap observe output"
expect_contains "$(cat "$T/obs.out")" "announcement 2: ckuann" "cmpcoap observe output"

step "a tampered CANN and an unprotected CKUANN are refused and change nothing"
mkann cann --cert "$PKI/root.pem" "${SIGN[@]}" --tamper -o "$T/cann-bad.der"
announce cannbad "$T/cann-bad.der"
expect_rc cannbad 1
expect_contains "$(cat "$T/cannbad.err")" "announcement refused" "the tampered CANN"
mkann ckuann --old-with-new "$T/ru/old-with-new.pem" --new-with-old "$T/ru/new-with-old.pem" \
        --new-with-new "$T/ru/new-with-new.pem" "${SIGN[@]}" --unprotected -o "$T/ckuann-bad.der"
announce ckuannbad "$T/ckuann-bad.der"
expect_rc ckuannbad 1
expect_contains "$(cat "$T/ckuannbad.err")" "announcement refused" "the unprotected CKUANN"
log "refused: $(head -c 200 "$T/cannbad.err" | tr '\n' ' ') / $(head -c 200 "$T/ckuannbad.err" | tr '\n' ' ')"
sleep 1
expect_eq "$(signal_count CaCertificateAnnounced)" 1 "CaCertificateAnnounced after the refused ones"
expect_eq "$(signal_count CaKeyUpdated)" 1 "CaKeyUpdated after the refused ones"
ctl anns --json announcements
expect_rc anns 0
json_check "the CKUANN is still the latest" "$T/anns.out" '
import hashlib
latest = [e for e in j if e["latest"]]
assert len(latest) == 1 and latest[0]["kind"] == "ckuann", j
assert latest[0]["sha256"] == hashlib.sha256(open(a[0], "rb").read()).hexdigest(), j' "$T/ckuann.der"
gw_alive
log "ok"
