#!/usr/bin/env bash
# config_check: `cmpgwd --check-config` accepts PRODUCT.md's minimal file
# verbatim and rejects an unknown key, a bad URI and a wrong type, each with
# a message naming the key.  No network needed.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw

# check NAME EXPECT(ok|bad) NEEDLE: run --check-config on $T/NAME.json
check() {
        local name=$1 want=$2 needle=${3:-} rc=0 out
        out=$("$CMPGWD" --check-config --config "$T/$name.json" 2>&1) || rc=$?
        if [[ $want == ok ]]; then
                ((rc == 0)) || fail "$name: --check-config exited $rc for a valid file: $out"
        else
                ((rc != 0)) || fail "$name: --check-config accepted an invalid file (output: '$out')"
                ((rc < 128)) || fail "$name: --check-config died with status $rc: $out"
                [[ -n $out ]] || fail "$name: rejected without any message"
                [[ -z $needle || $out == *"$needle"* ]] ||
                        fail "$name: message does not name '$needle': $out"
        fi
        log "ok: $name (exit $rc)${out:+: ${out//$'\n'/ | }}"
}

step "PRODUCT.md's minimal configuration, verbatim"
cat >"$T/minimal.json" <<'JSON'
{
  "listen":    [ { "uri": "coap://127.0.0.1:5683" } ],
  "upstreams": [ { "name": "ca", "uri": "http://127.0.0.1:8080/pkix/" } ],
  "registry":  { "path": "/var/lib/cmpgw/registry.db" },
  "dbus":      { "bus": "system" }
}
JSON
check minimal ok

step "the full contract of the brief (coap block, labels, default, timeout)"
cat >"$T/full.json" <<'JSON'
{
  "listen":    [ { "uri": "coap://127.0.0.1:5683" } ],
  "upstreams": [ { "name": "ca", "uri": "http://127.0.0.1:8080/pkix/", "timeout": 2,
                   "labels": [ "a" ], "default": true } ],
  "coap":      { "block_size": 1024, "max_message_size": 65536 },
  "registry":  { "path": "/var/lib/cmpgw/registry.db" },
  "dbus":      { "bus": "none" }
}
JSON
check full ok

step "an unknown top-level key"
sed 's/"dbus":/"dbsu":/' "$T/minimal.json" >"$T/unknown-top.json"
check unknown-top bad dbsu

step "an unknown key inside an upstream"
sed 's|"uri": "http://127.0.0.1:8080/pkix/"|"uri": "http://127.0.0.1:8080/pkix/", "timout": 3|' \
        "$T/minimal.json" >"$T/unknown-nested.json"
check unknown-nested bad timout

step "a listen URI that is not a URI"
sed 's|coap://127.0.0.1:5683|not a uri|' "$T/minimal.json" >"$T/bad-uri.json"
check bad-uri bad uri

step "a listen URI with a scheme the gateway does not listen on"
sed 's|coap://127.0.0.1:5683|http://127.0.0.1:5683|' "$T/minimal.json" >"$T/bad-scheme.json"
check bad-scheme bad uri

step "an upstream URI with a bad scheme"
sed 's|http://127.0.0.1:8080/pkix/|ftp://127.0.0.1/x|' "$T/minimal.json" >"$T/bad-upstream-uri.json"
check bad-upstream-uri bad uri

step "a wrong type: listen is an object, not an array"
sed 's|"listen":    \[ { "uri": "coap://127.0.0.1:5683" } \],|"listen": { "uri": "coap://127.0.0.1:5683" },|' \
        "$T/minimal.json" >"$T/wrong-type-listen.json"
grep -q '"listen": {' "$T/wrong-type-listen.json" || fail "test bug: sed did not apply"
check wrong-type-listen bad listen

step "a wrong type: timeout is a string"
sed 's|"uri": "http://127.0.0.1:8080/pkix/"|"uri": "http://127.0.0.1:8080/pkix/", "timeout": "2"|' \
        "$T/minimal.json" >"$T/wrong-type-timeout.json"
check wrong-type-timeout bad timeout

step "a wrong value: dbus.bus is not system/session/none"
sed 's|"bus": "system"|"bus": "sytem"|' "$T/minimal.json" >"$T/bad-bus.json"
check bad-bus bad bus

step "not JSON at all"
printf '{ "listen": [ \n' >"$T/truncated.json"
check truncated bad

step "a missing file"
rc=0
out=$("$CMPGWD" --check-config --config "$T/does-not-exist.json" 2>&1) || rc=$?
((rc != 0 && rc < 128)) || fail "missing file: exit status $rc"
expect_contains "$out" "does-not-exist.json" "missing-file message"

step "--version"
out=$("$CMPGWD" --version 2>&1) || fail "--version failed: $out"
expect_nonempty "$out" "--version output"
log "PASS"
