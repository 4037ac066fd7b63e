#!/usr/bin/env bash
# restart: the CRL cache survives a restart of cmpgwd: `cmpgwctl
# announcements` shows the cached CRL afterwards, and a CRL older than the
# cached one is still refused (so the cache, not just a list, came back).
# A node observing with `cmpcoap observe --reregister 2` registers again at
# the restarted gateway (which forgot its observers) and receives the next
# announcement.
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

step "a node observes ann (cmpcoap observe --reregister 2) and holds CRL #5"
mkdir -p "$T/obs"
timeout 60 "$CMPCOAP" observe "$GW_URI/.well-known/cmp/ann" --out-dir "$T/obs" --count 2 --reregister 2 \
        --timeout 50 --verbosity 7 >"$T/obs.out" 2>"$T/obs.err" &
OBS_PID=$!
PIDS+=("$OBS_PID")
for _ in $(seq 100); do [[ -s $T/obs/ann-1.der ]] && break; sleep 0.1; done
cmp -s "$T/obs/ann-1.der" "$T/crl5.der" || { cat "$T/obs.err" >&2; fail "the observing node does not hold CRL #5"; }

step "restart cmpgwd"
stop_gw
start_ann_gw "$T/gw.json"
regs=$(grep -c 'registered as an observer' "$T/obs.err" || true)
wait_grep_count "$T/obs.err" 10 $((regs + 1)) 'registered as an observer' ||
        { cat "$T/obs.err" >&2; fail "cmpcoap observe did not register again at the restarted gateway within 10 s"; }
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
rc=0
wait "$OBS_PID" || rc=$?
((rc == 0)) || { cat "$T/obs.err" >&2; fail "the observing node did not get CRL #6 after the restart (exit $rc)"; }
cmp -s "$T/obs/ann-2.der" "$T/crl6.der" || fail "the node's second announcement is not CRL #6"
gw_alive
