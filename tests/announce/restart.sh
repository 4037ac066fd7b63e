#!/usr/bin/env bash
# restart: the CRL cache survives a restart of cmpgwd: `cmpgwctl
# announcements` shows the cached CRL afterwards, and a CRL older than the
# cached one is still refused (so the cache, not just a list, came back).
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

make_crlann crl5 5 --revoked 3002
announce ann5 "$T/crl5.der"
expect_rc ann5 0
ctl before announcements
expect_rc before 0
grep -q "issuing CA" "$T/before.out" || { cat "$T/before.out" >&2; fail "announcements before the restart: no CRL"; }

step "restart cmpgwd"
stop_gw
start_ann_gw "$T/gw.json"
ctl after announcements
expect_rc after 0
grep -q "issuing CA" "$T/after.out" || { cat "$T/after.out" >&2; fail "cmpgwctl announcements after the restart shows no CRL"; }
ctl afterj --json announcements
expect_rc afterj 0
json_check "announcements --json after the restart" "$T/afterj.out" '
crls = [e for e in j if e.get("kind") == "crl"]
assert len(crls) == 1 and "issuing CA" in crls[0]["issuer"] and crls[0]["crl_number"] == "5", crls'

step "an older CRL (#4) is refused after the restart"
make_crlann crl4 4
announce ann4 "$T/crl4.der"
expect_rc ann4 1
log "refused after restart: $(head -c 200 "$T/ann4.err")"

step "a newer CRL (#6) is accepted"
make_crlann crl6 6 --revoked 3002 --revoked 3003
announce ann6 "$T/crl6.der"
expect_rc ann6 0
gw_alive
