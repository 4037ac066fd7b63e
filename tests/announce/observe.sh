#!/usr/bin/env bash
# observe: GET /.well-known/cmp/ann with Observe (RFC 7641, RFC 9482 §2.6).
# libcoap's coap-client-openssl -s and `cmpcoap observe --out-dir` both
# receive a CRLANN published with `cmpgwctl announce FILE`, byte for byte
# (block-wise: it is larger than one 1024-byte block); a third observer of
# a label's ann (/.well-known/cmp/p/<label>/ann) receives the same. The ann
# resources are listed in /.well-known/core with ct=259 and obs. Before any
# announcement a GET of ann is answered 2.05 with no payload.
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
write_ann_config "$T/gw.json" 'c["upstreams"][0]["labels"] = ["ra1"]'
start_ann_gw "$T/gw.json"
ANN=$GW_URI/.well-known/cmp/ann
LABEL_ANN=$GW_URI/.well-known/cmp/p/ra1/ann

step "/.well-known/core lists ann with ct=259 and obs"
coap_req core -m get "$GW_URI/.well-known/core"
expect_eq "$COAP_CODE" 2.05 "GET /.well-known/core"
link=$(tr ',' '\n' <"$COAP_BODY" | grep -a '</.well-known/cmp/ann>' || true)
expect_nonempty "$link" "link </.well-known/cmp/ann> in $(cat "$COAP_BODY")"
expect_contains "$link" "ct=259" "ann link"
expect_contains "$link" ";obs" "ann link"
link=$(tr ',' '\n' <"$COAP_BODY" | grep -a '</.well-known/cmp/p/ra1/ann>' || true)
expect_nonempty "$link" "link </.well-known/cmp/p/ra1/ann> in $(cat "$COAP_BODY")"
expect_contains "$link" "ct=259" "label ann link"
expect_contains "$link" ";obs" "label ann link"

step "GET ann before any announcement: 2.05 with no payload and no Content-Format (cmpgwd(8))"
coap_req before -m get "$ANN"
log "before any announcement: ${COAP_CODE:-no response}, $(stat -c %s "$COAP_BODY") bytes${COAP_DIAG:+: $COAP_DIAG}"
expect_eq "$COAP_CODE" 2.05 "GET ann before any announcement"
expect_eq "$(stat -c %s "$COAP_BODY")" 0 "bytes of the answer before any announcement"
[[ $COAP_RESP != *Content-Format:* ]] || fail "the answer before any announcement carries a Content-Format: $COAP_RESP"

make_crlann first 1
make_crlann second 2 --revoked 3002 --revoked 4002:4
(($(stat -c %s "$T/second.der") > 1024)) || fail "the test CRLANN should need Block2"

step "cmpgwctl announce (first) before the observers start"
announce ann1 "$T/first.der"
expect_rc ann1 0

step "observers: coap-client-openssl -s and cmpcoap observe"
"$COAP_CLIENT" -v 6 -s 15 -B 20 -m get -o "$T/cc.body" "$ANN" >"$T/cc.out" 2>&1 &
CC_PID=$!
PIDS+=("$CC_PID")
mkdir -p "$T/out"
timeout 40 "$CMPCOAP" observe "$ANN" --out-dir "$T/out" --count 2 --timeout 30 >"$T/obs.out" 2>"$T/obs.err" &
OBS_PID=$!
PIDS+=("$OBS_PID")
mkdir -p "$T/outp"
timeout 40 "$CMPCOAP" observe "$LABEL_ANN" --out-dir "$T/outp" --count 2 --timeout 30 >"$T/obsp.out" 2>"$T/obsp.err" &
OBSP_PID=$!
PIDS+=("$OBSP_PID")
# both registered: each holds the first announcement
wait_file_size "$T/cc.body" "$(stat -c %s "$T/first.der")" 10 ||
        { cat "$T/cc.out" >&2; fail "coap-client did not receive the current announcement"; }
for _ in $(seq 100); do [[ -s $T/out/ann-1.der ]] && break; sleep 0.1; done
[[ -s $T/out/ann-1.der ]] || { cat "$T/obs.err" >&2; fail "cmpcoap observe did not receive the current announcement"; }
cmp -s "$T/out/ann-1.der" "$T/first.der" || fail "cmpcoap observe: ann-1.der differs from the published CRLANN"
for _ in $(seq 100); do [[ -s $T/outp/ann-1.der ]] && break; sleep 0.1; done
cmp -s "$T/outp/ann-1.der" "$T/first.der" ||
        { cat "$T/obsp.err" >&2; fail "cmpcoap observe of p/ra1/ann: no ann-1.der, or not the published CRLANN"; }
grep -aqE '^v:1 t:(ACK|CON|NON) c:2\.05 .*Observe:' "$T/cc.out" ||
        { grep -a 'c:2.05' "$T/cc.out" >&2; fail "the answer to coap-client's GET carries no Observe option"; }

step "cmpgwctl announce (second): a notification to both"
announce ann2 "$T/second.der"
expect_rc ann2 0
want=$(($(stat -c %s "$T/first.der") + $(stat -c %s "$T/second.der")))
wait_file_size "$T/cc.body" "$want" 10 ||
        { grep -a '^v:1' "$T/cc.out" | cut -c1-160 >&2; fail "coap-client got $(stat -c %s "$T/cc.body") of $want bytes"; }
cat "$T/first.der" "$T/second.der" | cmp -s - "$T/cc.body" ||
        fail "coap-client -o: the bodies are not the two CRLANNs byte for byte"
rc=0
wait "$OBS_PID" || rc=$?
((rc == 0)) || { cat "$T/obs.err" >&2; fail "cmpcoap observe exited $rc"; }
cmp -s "$T/out/ann-2.der" "$T/second.der" || fail "cmpcoap observe: ann-2.der differs from the published CRLANN"
out=$(cat "$T/obs.out")
expect_contains "$out" "announcement 2: crlann, $(stat -c %s "$T/second.der") bytes" "cmpcoap observe output"
expect_contains "$out" "number=02 revoked=2" "cmpcoap observe output"
expect_contains "$out" 'issuer="CN=cmpgw test issuing CA' "cmpcoap observe output"
rc=0
wait "$OBSP_PID" || rc=$?
((rc == 0)) || { cat "$T/obsp.err" >&2; fail "cmpcoap observe of p/ra1/ann exited $rc"; }
cmp -s "$T/outp/ann-2.der" "$T/second.der" || fail "cmpcoap observe of p/ra1/ann: ann-2.der differs from the published CRLANN"
log "coap-client and cmpcoap observe received both announcements byte for byte"

step "cmpcoap observe --server (…/cmp + /ann) gets the current one at once"
timeout 20 "$CMPCOAP" observe --server "$GW_URI/.well-known/cmp" --count 1 --timeout 10 >"$T/obs2.out" 2>"$T/obs2.err" ||
        { cat "$T/obs2.err" >&2; fail "cmpcoap observe --server"; }
expect_contains "$(cat "$T/obs2.out")" "announcement 1: crlann" "cmpcoap observe --server"
gw_alive
