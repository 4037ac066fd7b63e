#!/usr/bin/env bash
# reload: announcements.trusted follows a reload, and only a reload that is
# taken. A reload the CoAP listeners refuse (here: a psk_file that became
# readable by others) must keep the running trust anchors too, not just the
# running routes: before, the new anchors were set before the listeners
# could refuse, so a refused reload half-happened.
#   (a) refused reload with other anchors: a CRLANN signed under the old
#       anchors is still accepted
#   (b) the same reload taken: the next CRLANN is refused, naming the
#       signer's chain (so (a) did test the anchors in force)
set -euo pipefail
# shellcheck source=tests/announce/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_ctl
require_mkann
require_cmd openssl dbus-daemon busctl "$COAP_CLIENT"

make_pki
start_bus
CA_URI=http://127.0.0.1:9/pkix/        # never contacted: announcements only
DTLS_PORT=$(free_port udp)
printf 'node:0x00112233445566778899aabbccddeeff\n' >"$T/psk.txt"
chmod 600 "$T/psk.txt"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=Other Root" \
        -keyout "$T/other.key" -out "$T/other.pem" >"$T/other.log" 2>&1 || { cat "$T/other.log" >&2; fail "openssl req"; }

# conf TRUSTED: the gateway's file, coaps with the PSK file, these anchors
conf() {
        write_ann_config "$T/gw.json" "
c['listen'].append({'uri': 'coaps://127.0.0.1:$DTLS_PORT', 'psk_file': '$T/psk.txt'})
c['announcements']['trusted'] = '$1'"
}

conf "$PKI/trusted.pem"
start_ann_gw "$T/gw.json"

step "(a) a reload refused by the coaps listener keeps the running anchors"
conf "$T/other.pem"
chmod 644 "$T/psk.txt"
ctl refused reload
expect_rc refused 1
expect_contains "$(cat "$T/gw.log")" "reload failed, keeping the running configuration" "gw.log"
make_crlann crl5 5 --revoked 3002
announce ann5 "$T/crl5.der"
expect_rc ann5 0

step "(b) the same reload taken: the old signer is no longer trusted"
chmod 600 "$T/psk.txt"
ctl taken reload
expect_rc taken 0
make_crlann crl6 6 --revoked 3002 --revoked 3003
announce ann6 "$T/crl6.der"
expect_rc ann6 1
log "refused under the new anchors: $(head -c 300 "$T/ann6.err")"
ctl state --json announcements
expect_rc state 0
json_check "the cached CRL is still #5" "$T/state.out" '
crls = [e for e in j if e.get("kind") == "crl"]
assert len(crls) == 1 and crls[0]["crl_number"] == "5", crls'
gw_alive
log "announcements.trusted changes with a taken reload only"
