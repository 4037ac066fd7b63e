#!/usr/bin/env bash
# SIGHUP reloads routes at once; a bad new configuration is refused with a
# log line naming the key, and the running configuration keeps serving.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cmd openssl python3 "$COAP_CLIENT"

make_pki
start_ca "$PKI"
capture_requests "$T/req"

conf=$T/gw.json
write_config "$conf" "[ { \"name\": \"ca\", \"uri\": \"$CA_URI\", \"labels\": [\"a\"], \"default\": false } ]"
start_gw "$conf"

post() { expect_code "$1" "$2" -m post -t 259 -f "$T/req/genm.der" "$GW_URI/.well-known/cmp/p/$3"; }

step "label a routed, b not"
post a1 2.04 a
post b1 4.04 b

step "SIGHUP with label b instead of a"
write_config "$conf" "[ { \"name\": \"ca\", \"uri\": \"$CA_URI\", \"labels\": [\"b\"], \"default\": false } ]"
kill -HUP "$GW_PID"
wait_grep "$T/gw.log" 5 'reloaded' || fail "no 'reloaded' in the log after SIGHUP"
post b2 2.04 b
post a2 4.04 a
expect_code core2 2.05 -m get "$GW_URI/.well-known/core"
expect_contains "$(cat "$COAP_BODY")" "</.well-known/cmp/p/b>" "discovery after reload"
[[ $(cat "$COAP_BODY") != *"/p/a>"* ]] || fail "discovery still lists label a"

step "SIGHUP with a broken file keeps the running configuration"
printf '{ "listen": [ { "uri": "coap://127.0.0.1:%s" } ], "upstreams": [ { "name": "ca", "uri": "%s", "labelz": ["a"] } ] }\n' \
        "$GW_PORT" "$CA_URI" >"$conf"
kill -HUP "$GW_PID"
wait_grep "$T/gw.log" 5 'reload failed' || true       # the check below says
grep -q 'reload failed, keeping the running configuration: .*upstreams\[0\]\.labelz: unknown key' "$T/gw.log" ||
        fail "the log does not say why the reload failed: $(grep -a 'reload' "$T/gw.log" | tail -n 2)"
post b3 2.04 b
post a3 4.04 a
gw_alive
log "reload works; a bad file changes nothing"
