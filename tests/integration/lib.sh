# lib.sh -- shared helpers for cmpgw's integration tests.  Source it:
#
#   source "$(dirname "$0")/lib.sh"
#
# Environment (set by tests/integration/meson.build; defaults for running a
# test by hand from the source tree):
#   SRCDIR   source tree                    (default: two levels up)
#   CMPGWD   path of the built daemon       (default: $SRCDIR/build/daemon/cmpgwd)
#   CMPCOAP  path of the built client       (default: $SRCDIR/build/cli/cmpcoap)
#   KEEP=1   keep the per-test temp dir (its path is printed at exit)
#
# Exit codes follow meson/automake: 0 pass, 1 fail, 77 skip.
#
# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the sourcing tests

set -euo pipefail

LIBDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${SRCDIR:=$(cd "$LIBDIR/../.." && pwd)}"
: "${CMPGWD:=$SRCDIR/build/daemon/cmpgwd}"
: "${CMPCOAP:=$SRCDIR/build/cli/cmpcoap}"
COAP_CLIENT=${COAP_CLIENT:-coap-client-openssl}
TEST_NAME=$(basename "$0" .sh)

# The shared secret and reference of the mock CA's MAC-based protection.
CA_REF=1234
CA_SECRET=pass:s3cr3t-test

T=$(mktemp -d "${TMPDIR:-/tmp}/cmpgw-$TEST_NAME.XXXXXX")
PIDS=()          # everything we started, killed by stop_all
GW_EXTRA_ARGS=() # more cmpgwd arguments for start_gw (e.g. a second -v)
CA_PID=''
GW_PID=''
CA_PORT=''
GW_PORT=''
PKI=$T/pki

# ---------------------------------------------------------------- output

log()  { printf '[%s] %s\n' "$TEST_NAME" "$*" >&2; }
step() { printf '[%s] --- %s\n' "$TEST_NAME" "$*" >&2; }

FAIL_MSG=''      # the first failure, repeated last by stop_all when it says more
fail() {
        FAIL_MSG=${FAIL_MSG:-$*}
        printf '[%s] FAIL: %s\n' "$TEST_NAME" "$*" >&2
        exit 1
}

skip() {
        printf '[%s] SKIP: %s\n' "$TEST_NAME" "$*" >&2
        exit 77
}

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
        [[ $1 == "$2" ]] || fail "${3:-value}: expected '$2', got '$1'"
}

# expect_contains HAYSTACK NEEDLE WHAT
expect_contains() {
        [[ $1 == *"$2"* ]] || fail "${3:-text}: expected to contain '$2', got '$1'"
}

# expect_nonempty VALUE WHAT
expect_nonempty() {
        [[ -n $1 ]] || fail "${2:-value} is empty"
}

require_cmd() {
        local c
        for c in "$@"; do
                command -v "$c" >/dev/null 2>&1 || skip "missing program: $c"
        done
}

require_gw()  { [[ -x $CMPGWD ]]  || skip "no daemon binary at $CMPGWD"; }
require_cli() { [[ -x $CMPCOAP ]] || skip "no client binary at $CMPCOAP"; }

# ---------------------------------------------------------------- cleanup

# Kill what we started (by recorded PID only), wait for it, and check that
# the daemon did not die of a sanitizer report or a crash signal.
# GW_STOP_TIMEOUT (seconds, default 5): how long cmpgwd may take to exit
# (under valgrind its leak check takes longer); everything else gets 5 s.
# A test may define stop_report RC: called once everything is stopped,
# before the temp dir goes (e.g. to print valgrind's summary).
stop_all() {
        local rc=$? pid i st secs
        set +e
        for pid in "${PIDS[@]}"; do
                kill -TERM "$pid" 2>/dev/null
        done
        for pid in "${PIDS[@]}"; do
                secs=5
                [[ $pid == "$GW_PID" ]] && secs=${GW_STOP_TIMEOUT:-5}
                for ((i = 0; i < secs * 10; i++)); do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.1
                done
                if kill -0 "$pid" 2>/dev/null; then
                        log "pid $pid ignored SIGTERM for $secs s; killing it"
                        kill -KILL "$pid" 2>/dev/null
                        [[ $pid == "$GW_PID" ]] && gw_problem="cmpgwd did not exit within $secs s of SIGTERM"
                fi
                wait "$pid" 2>/dev/null
                st=$?
                if [[ $pid == "$GW_PID" && -z ${gw_problem:-} ]]; then
                        # 143 = killed by SIGTERM without a handler; tolerated
                        # here, but crash signals (134 ABRT, 139 SEGV, ...) and
                        # sanitizer exits are failures.
                        if ((st != 0 && st != 143)); then
                                gw_problem="cmpgwd exited with status $st after SIGTERM"
                        fi
                fi
        done
        PIDS=()
        if [[ -n $GW_PID && -f $T/gw.log ]] &&
           grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:' "$T/gw.log"; then
                gw_problem="sanitizer report in cmpgwd's log"
        fi
        if [[ -n ${gw_problem:-} ]]; then
                printf '[%s] FAIL: %s\n' "$TEST_NAME" "$gw_problem" >&2
                tail -n 40 "$T/gw.log" >&2
                ((rc == 0 || rc == 77)) && rc=1
        fi
        local more=${gw_problem:-}
        if declare -F stop_report >/dev/null; then
                stop_report "$rc"
                more=1
        fi
        # a CI record may keep only the end of the output: the first failure last
        [[ -n $FAIL_MSG && -n $more ]] && printf '[%s] first failure: %s\n' "$TEST_NAME" "$FAIL_MSG" >&2
        if [[ ${KEEP:-0} == 1 ]]; then
                log "kept $T"
        else
                rm -rf "$T"
        fi
        exit "$rc"
}
trap stop_all EXIT
trap 'exit 1' INT TERM

# ---------------------------------------------------------------- ports

# free_port udp|tcp: a port that is free on 127.0.0.1 right now.
free_port() {
        python3 - "$1" <<'PY'
import socket, sys
kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}

# tcp_listening PORT: true when some socket listens on TCP PORT (any
# address family).  Looks at /proc so that no connection is made: the mock
# CA serves one connection at a time.
tcp_listening() {
        local hex
        hex=$(printf '%04X' "$1")
        awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
                /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# wait_for_pid_listen PID PORT SECONDS LOG
wait_tcp() {
        local pid=$1 port=$2 secs=$3 logf=$4 i
        for ((i = 0; i < secs * 20; i++)); do
                tcp_listening "$port" && return 0
                kill -0 "$pid" 2>/dev/null || { tail -n 20 "$logf" >&2; fail "process $pid exited before listening on $port"; }
                sleep 0.05
        done
        tail -n 20 "$logf" >&2
        fail "nothing listens on TCP $port after $secs s"
}

# wait_grep FILE SECS GREP_ARGS...: until `grep GREP_ARGS FILE` finds a
# line, looking every 0.1 s for SECS seconds; status 1 when it never does,
# and the caller says what was missing:
#   wait_grep "$T/gw.log" 5 -F 'reloaded' || fail "no reload logged"
wait_grep() {
        local file=$1 secs=$2 i
        shift 2
        for ((i = 0; i < secs * 10; i++)); do
                grep -q "$@" "$file" 2>/dev/null && return 0
                sleep 0.1
        done
        return 1
}

# wait_grep_count FILE SECS N GREP_ARGS...: the same, until N lines match
wait_grep_count() {
        local file=$1 secs=$2 n=$3 i c
        shift 3
        for ((i = 0; i < secs * 10; i++)); do
                c=$(grep -c "$@" "$file" 2>/dev/null) || true
                ((${c:-0} >= n)) && return 0
                sleep 0.1
        done
        return 1
}

# ---------------------------------------------------------------- PKI and CA

# make_pki [DIR]: the test PKI (tests/pki/mkpki.sh) in DIR (default $PKI).
make_pki() {
        "$SRCDIR/tests/pki/mkpki.sh" "${1:-$PKI}" || fail "mkpki.sh failed"
}

# start_ca DIR [extra openssl cmp server args]: OpenSSL's mock CA on a free
# TCP port (CA_PORT), serving http://127.0.0.1:$CA_PORT/pkix/ (CA_URI).
# DIR is a PKI made by mkpki.sh (made if missing).  Log: $T/ca.log.
start_ca() {
        local dir=$1
        shift
        start_ca_at "$(free_port tcp)" "$dir" "$dir/ee.pem" "$@"
}

# start_ca_at PORT DIR RSP_CERT [extra args]: the mock CA on a given port
# (again, after stop_ca: the gateway's configured upstream comes back),
# answering with RSP_CERT.
start_ca_at() {
        local port=$1 dir=$2 rsp=$3
        shift 3
        [[ -s $dir/ee.pem ]] || make_pki "$dir"
        CA_PORT=$port
        openssl cmp -port "$CA_PORT" \
                -srv_ref "$CA_REF" -srv_secret "$CA_SECRET" \
                -srv_cert "$dir/srv.pem" -srv_key "$dir/srv.key" \
                -srv_trusted "$dir/trusted.pem" -srv_untrusted "$dir/ica-chain.pem" \
                -rsp_cert "$rsp" -rsp_extracerts "$dir/chain.pem" \
                -rsp_capubs "$dir/root.pem" \
                "$@" >>"$T/ca.log" 2>&1 &
        CA_PID=$!
        PIDS+=("$CA_PID")
        CA_URI=http://127.0.0.1:$CA_PORT/pkix/
        wait_tcp "$CA_PID" "$CA_PORT" 10 "$T/ca.log"
}

stop_pid() {
        local pid=$1 i
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        STOP_STATUS=0
        wait "$pid" 2>/dev/null || STOP_STATUS=$?
        local p keep=()
        for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
        PIDS=("${keep[@]}")
}

stop_ca() { [[ -n $CA_PID ]] && stop_pid "$CA_PID"; CA_PID=''; }

# ossl_cmp ARGS: `openssl cmp` as a client of the mock CA (over HTTP,
# without the gateway), one connection per message.
ossl_cmp() {
        openssl cmp -server "127.0.0.1:$CA_PORT" -path pkix/ -keep_alive 0 \
                -msg_timeout 10 -total_timeout 20 "$@"
}

# capture_requests DIR: real DER requests, made by `openssl cmp` as a client
# of the running mock CA (start_ca first) and saved with -reqout:
#   ir.der     ir, MAC-protected (PBM, --ref/--secret)
#   cr.der     cr, signature-protected, with extraCerts (> 1024 bytes)
#   p10cr.der  p10cr, signature-protected
#   kur.der    kur for ee.pem, signed with ee.key (do not replay it: a
#              replayed kur makes the 3.0 mock CA segfault, PEERS.md)
#   rr.der     rr for ee.pem (the only serial the mock CA revokes)
#   genm.der   genm, MAC-protected
#   certconf-ir.der  the certConf that followed the ir
# Each exchange must succeed.
capture_requests() {
        local out=$1 p=$PKI
        mkdir -p "$out"
        local trust=(-trusted "$p/trusted.pem")
        local sig=(-cert "$p/client.pem" -key "$p/client.key" "${trust[@]}")
        ossl_cmp -cmd ir -ref "$CA_REF" -secret "$CA_SECRET" \
                -newkey "$p/ee.key" -subject /CN=node-ir -certout "$out/ir.pem" \
                -reqout "$out/ir.der,$out/certconf-ir.der" >>"$T/capture.log" 2>&1 ||
                { tail "$T/capture.log" >&2; fail "capture: openssl cmp ir"; }
        ossl_cmp -cmd cr "${sig[@]}" -extracerts "$p/chain.pem" \
                -newkey "$p/ee.key" -subject /CN=node-cr -certout "$out/cr.pem" \
                -reqout "$out/cr.der,$out/certconf-cr.der" >>"$T/capture.log" 2>&1 ||
                { tail "$T/capture.log" >&2; fail "capture: openssl cmp cr"; }
        ossl_cmp -cmd p10cr "${sig[@]}" -csr "$p/ee.csr" -certout "$out/p10cr.pem" \
                -reqout "$out/p10cr.der,$out/certconf-p10cr.der" >>"$T/capture.log" 2>&1 ||
                { tail "$T/capture.log" >&2; fail "capture: openssl cmp p10cr"; }
        ossl_cmp -cmd kur -cert "$p/ee.pem" -key "$p/ee.key" "${trust[@]}" \
                -oldcert "$p/ee.pem" -newkey "$p/ee.key" -certout "$out/kur.pem" \
                -reqout "$out/kur.der,$out/certconf-kur.der" >>"$T/capture.log" 2>&1 ||
                { tail "$T/capture.log" >&2; fail "capture: openssl cmp kur"; }
        ossl_cmp -cmd rr "${sig[@]}" -oldcert "$p/ee.pem" -revreason 0 \
                -reqout "$out/rr.der" >>"$T/capture.log" 2>&1 ||
                { tail "$T/capture.log" >&2; fail "capture: openssl cmp rr"; }
        ossl_cmp -cmd genm -ref "$CA_REF" -secret "$CA_SECRET" \
                -reqout "$out/genm.der" >>"$T/capture.log" 2>&1 ||
                { tail "$T/capture.log" >&2; fail "capture: openssl cmp genm"; }
        local f
        for f in ir cr p10cr kur rr genm certconf-ir; do
                [[ -s $out/$f.der ]] || fail "capture: $out/$f.der missing"
        done
        expect_eq "$(pkimsg_type "$out/ir.der")" ir "captured ir body"
        expect_eq "$(pkimsg_type "$out/cr.der")" cr "captured cr body"
        expect_eq "$(pkimsg_type "$out/rr.der")" rr "captured rr body"
        expect_eq "$(pkimsg_type "$out/genm.der")" genm "captured genm body"
        expect_eq "$(pkimsg_type "$out/certconf-ir.der")" certConf "captured certConf body"
}

# pkimsg_type FILE: the PKIBody choice of a DER PKIMessage (ir, ip, cr, ...,
# error); prints "invalid: REASON" (and returns 1) unless FILE holds exactly
# one DER PKIMessage (SEQUENCE { header SEQUENCE, [n] body, ... }).
pkimsg_type() {
        python3 - "$1" <<'PY'
import sys
NAMES = ["ir", "ip", "cr", "cp", "p10cr", "popdecc", "popdecr", "kur", "kup",
         "krr", "krp", "rr", "rp", "ccr", "ccp", "ckuann", "cann", "rann",
         "crlann", "pkiconf", "nested", "genm", "genp", "error", "certConf",
         "pollReq", "pollRep"]
def tlv(b, i):
    if i + 2 > len(b): raise ValueError("truncated")
    tag = b[i]; i += 1
    if tag & 0x1f == 0x1f: raise ValueError("long tag")
    n = b[i]; i += 1
    if n & 0x80:
        k = n & 0x7f
        if k == 0 or k > 4 or i + k > len(b): raise ValueError("bad length")
        n = int.from_bytes(b[i:i + k], "big"); i += k
    if i + n > len(b): raise ValueError("truncated")
    return tag, i, i + n
try:
    b = open(sys.argv[1], "rb").read()
    tag, s, e = tlv(b, 0)
    if tag != 0x30: raise ValueError("not a SEQUENCE")
    if e != len(b): raise ValueError("%d trailing bytes" % (len(b) - e))
    htag, hs, he = tlv(b, s)
    if htag != 0x30: raise ValueError("header not a SEQUENCE")
    btag, bs, be = tlv(b, he)
    if btag & 0xe0 != 0xa0: raise ValueError("body not [n] constructed")
    n = btag & 0x1f
    print(NAMES[n] if n < len(NAMES) else "body%d" % n)
except Exception as ex:
    print("invalid: %s" % ex)
    sys.exit(1)
PY
}

# ---------------------------------------------------------------- gateway

# write_config FILE [UPSTREAMS_JSON [COAP_JSON]]: a minimal cmpgwd config
# listening on coap://127.0.0.1:$GW_PORT (a free UDP port, chosen here
# unless GW_PORT is set), with dbus "none" and the registry in $T.
# UPSTREAMS_JSON defaults to one upstream "ca" at $CA_URI, timeout
# $UPSTREAM_TIMEOUT (default 5) seconds.
write_config() {
        local file=$1
        local ups=${2:-}
        local coap=${3:-}
        [[ -n $GW_PORT ]] || GW_PORT=$(free_port udp)
        if [[ -z $ups ]]; then
                [[ -n ${CA_URI:-} ]] || fail "write_config: no CA_URI (start_ca first)"
                ups="[ { \"name\": \"ca\", \"uri\": \"$CA_URI\", \"timeout\": ${UPSTREAM_TIMEOUT:-5} } ]"
        fi
        {
                printf '{\n'
                printf '  "listen":    [ { "uri": "coap://127.0.0.1:%s" } ],\n' "$GW_PORT"
                printf '  "upstreams": %s,\n' "$ups"
                [[ -z $coap ]] || printf '  "coap":      %s,\n' "$coap"
                printf '  "registry":  { "path": "%s" },\n' "$T/registry.db"
                printf '  "dbus":      { "bus": "none" }\n'
                printf '}\n'
        } >"$file"
        GW_URI=coap://127.0.0.1:$GW_PORT
}

# start_gw CONFIGFILE: start cmpgwd --verbose "${GW_EXTRA_ARGS[@]}" (stderr
# to $T/gw.log) and wait until it
# answers GET /.well-known/core with links carrying ct=259.
start_gw() {
        local conf=$1 body=''
        [[ -n $GW_PORT ]] || fail "start_gw: GW_PORT unset (use write_config)"
        "$CMPGWD" --config "$conf" --verbose "${GW_EXTRA_ARGS[@]}" >>"$T/gw.log" 2>&1 &
        GW_PID=$!
        PIDS+=("$GW_PID")
        GW_URI=coap://127.0.0.1:$GW_PORT
        local deadline=$((SECONDS + ${GW_START_TIMEOUT:-10}))
        while ((SECONDS < deadline)); do
                if ! kill -0 "$GW_PID" 2>/dev/null; then
                        tail -n 30 "$T/gw.log" >&2
                        fail "cmpgwd exited during start-up"
                fi
                body=$("$COAP_CLIENT" -B 1 -m get "$GW_URI/.well-known/core" 2>/dev/null || true)
                [[ $body == *ct=259* ]] && return 0
                sleep 0.2
        done
        tail -n 30 "$T/gw.log" >&2
        fail "cmpgwd did not serve /.well-known/core with ct=259 within ${GW_START_TIMEOUT:-10} s (last body: '$body')"
}

# start_other_gw NAME CONFIG PORT: a further cmpgwd (a gateway in a chain)
# logging to $T/NAME.log; waits until coap://127.0.0.1:PORT serves
# /.well-known/core with ct=259 and sets OTHER_GW_PID.
start_other_gw() {
        local name=$1 conf=$2 port=$3 i
        "$CMPGWD" --config "$conf" --verbose >>"$T/$name.log" 2>&1 &
        OTHER_GW_PID=$!
        PIDS+=("$OTHER_GW_PID")
        for ((i = 0; i < 100; i++)); do
                [[ $("$COAP_CLIENT" -B 1 -m get "coap://127.0.0.1:$port/.well-known/core" 2>/dev/null) == *ct=259* ]] &&
                        return 0
                kill -0 "$OTHER_GW_PID" 2>/dev/null || { tail -n 20 "$T/$name.log" >&2; fail "gateway $name exited"; }
                sleep 0.1
        done
        tail -n 20 "$T/$name.log" >&2
        fail "gateway $name did not serve /.well-known/core with ct=259 within 10 s"
}

# start_ca_gw NAME: a further cmpgwd on coap://127.0.0.1:$OTHER_GW_PORT (a
# free port) whose one upstream is the mock CA (start_ca first): the next
# hop of a chain. Config $T/NAME.json, registry $T/NAME.db, log $T/NAME.log.
start_ca_gw() {
        local name=$1
        OTHER_GW_PORT=$(free_port udp)
        cat >"$T/$name.json" <<JSON
{ "listen": [ { "uri": "coap://127.0.0.1:$OTHER_GW_PORT" } ],
  "upstreams": [ { "name": "ca", "uri": "$CA_URI", "timeout": 10 } ],
  "registry": { "path": "$T/$name.db" }, "dbus": { "bus": "none" } }
JSON
        start_other_gw "$name" "$T/$name.json" "$OTHER_GW_PORT"
}

# start_lossy_relay TARGET_PORT SEED NAME: tests/bench/lossy_relay.py (it
# stands in for a lossy link: 5 % of the datagrams dropped each way, seeded)
# in front of UDP TARGET_PORT; RELAY_PORT, RELAY_PID; its log in
# $T/NAME.log, its counts in $T/NAME.out
start_lossy_relay() {
        local target=$1 seed=$2 name=$3 w
        RELAY_PORT=$(free_port udp)
        /usr/bin/python3 "$SRCDIR/tests/bench/lossy_relay.py" "$RELAY_PORT" "$target" 0.05 "$seed" \
                --log "$T/$name.log" >"$T/$name.out" 2>&1 &
        RELAY_PID=$!
        PIDS+=("$RELAY_PID")
        for ((w = 0; w < 50; w++)); do grep -qs ready "$T/$name.out" && break; sleep 0.1; done
        grep -q ready "$T/$name.out" || fail "lossy_relay.py did not start: $(cat "$T/$name.out")"
}

# reload_gw_logged PATTERN [N [SECS]]: SIGHUP to cmpgwd, then wait (SECS,
# default 10) until its log holds N (default 1) lines matching PATTERN, e.g.
# the Nth reload's
reload_gw_logged() {
        local pattern=$1 want=${2:-1} secs=${3:-10} i
        kill -HUP "$GW_PID"
        for ((i = 0; i < secs * 10; i++)); do
                (($(grep -c -- "$pattern" "$T/gw.log") >= want)) && return 0
                sleep 0.1
        done
        tail -n 15 "$T/gw.log" >&2
        fail "after SIGHUP: '$pattern' logged $(grep -c -- "$pattern" "$T/gw.log") times within $secs s, expected $want"
}

# capture_genp FILE: a genp from the mock CA (start_ca first), for fixtures
# that stand in for an RA
capture_genp() {
        ossl_cmp -cmd genm -ref "$CA_REF" -secret "$CA_SECRET" -rspout "$1" >>"$T/cap.log" 2>&1 ||
                fail "capture of a genp"
}

# stop_gw: SIGTERM to cmpgwd, which must exit 0 within 5 s, as stop_all
# wants of the last one; a crash, a sanitizer's exit or a hang of a
# gateway stopped mid-test would otherwise go unseen (127: reaped already)
stop_gw() {
        [[ -n $GW_PID ]] || return 1
        stop_pid "$GW_PID"
        ((STOP_STATUS == 0 || STOP_STATUS == 143 || STOP_STATUS == 127)) || {
                tail -n 30 "$T/gw.log" >&2
                fail "cmpgwd (pid $GW_PID) exited with status $STOP_STATUS when stopped (137: not within 5 s of SIGTERM)"
        }
}

gw_alive() {
        kill -0 "$GW_PID" 2>/dev/null || { tail -n 30 "$T/gw.log" >&2; fail "cmpgwd is gone"; }
}

# ---------------------------------------------------------------- CoAP

# coap_req NAME ARGS...: run coap-client-openssl -v 6 ARGS (a method, URI,
# body options...), the response body to $T/NAME.body, and set
#   COAP_CODE  code of the final response, e.g. "2.04", "4.04"; "" if none
#   COAP_DIAG  diagnostic payload of a 4.xx/5.xx response
#   COAP_RESP  the logged line of the final response PDU (options in [...])
#   COAP_BODY  path of the body file
# coap-client exits 0 even on errors, so everything comes from its output.
coap_req() {
        local name=$1
        shift
        COAP_BODY=$T/$name.body
        rm -f "$COAP_BODY"
        "$COAP_CLIENT" -v 6 -B "${COAP_WAIT:-20}" -o "$COAP_BODY" "$@" \
                >"$T/$name.out" 2>"$T/$name.err" || true
        # response PDUs are logged as "v:1 t:ACK c:4.04 i:... [ opts ] :: ..."
        # (requests have c:POST etc.; empty ACKs c:0.00)
        COAP_RESP=$(grep -haE '^v:1 t:[A-Z]+ c:[1-5]\.[0-9][0-9] ' "$T/$name.out" "$T/$name.err" |
                grep -av ' c:0\.00 ' | tail -n 1 || true)
        COAP_CODE=$(sed -nE 's/^v:1 t:[A-Z]+ c:([1-5]\.[0-9][0-9]) .*/\1/p' <<<"$COAP_RESP")
        COAP_DIAG=''
        if [[ $COAP_CODE == [45].* ]]; then
                # coap-client prints "4.04 <payload>" on stderr
                COAP_DIAG=$(grep -aE "^${COAP_CODE//./\\.}( |$)" "$T/$name.err" | tail -n 1 |
                        cut -c6- || true)
        fi
        [[ -f $COAP_BODY ]] || : >"$COAP_BODY"
}

# expect_code NAME EXPECTED ARGS...: coap_req and check the code; 4.xx and
# 5.xx answers must carry a diagnostic payload (RFC 7252 §5.5.2).
expect_code() {
        local name=$1 want=$2
        shift 2
        coap_req "$name" "$@"
        if [[ $COAP_CODE != "$want" ]]; then
                log "coap-client output ($name):"
                grep -av '^<<' "$T/$name.out" | tail -n 15 >&2 || true
                tail -n 5 "$T/$name.err" >&2 || true
                log "cmpgwd log tail:"
                tail -n 15 "$T/gw.log" >&2 || true
                fail "$name: expected $want, got '${COAP_CODE:-no response}'"
        fi
        if [[ $want == [45].* && -z $COAP_DIAG ]]; then
                fail "$name: $want without a diagnostic payload"
        fi
        log "ok: $name -> $COAP_CODE${COAP_DIAG:+ (${COAP_DIAG:0:100})}"
}

# coap_option NAME: the value of option NAME (e.g. Max-Age, Size1) in the
# final response, "" if absent.
coap_option() {
        sed -nE "s/.*\[ (.*) \].*/\1/p" <<<"$COAP_RESP" | tr ',' '\n' |
                sed -nE "s/^ *$1:(.*)$/\1/p" | head -n 1
}

# der_eq A B: same certificate (PEM or DER) in A and B
cert_eq() {
        local a b
        a=$(openssl x509 -in "$1" -outform DER 2>/dev/null | od -An -tx1 | tr -d ' \n') || return 1
        b=$(openssl x509 -in "$2" -outform DER 2>/dev/null | od -An -tx1 | tr -d ' \n') || return 1
        [[ -n $a && $a == "$b" ]]
}

# ---------------------------------------------------------------- raw CoAP

# coap_udp HOST PORT WAIT MSG...: send hand-made CoAP datagrams from ONE UDP
# socket (so they share a session at the server) and print, per message,
# one line for every datagram that comes back within WAIT seconds that has
# the message's MID or token:
#   reply t:ACK c:4.13 mid:0x1234 tok:0a Size1:4096 Max-Age:5 Block1:0/1/6 :: 'diagnostic'
# and "reply none" when no reply with a code came.  A separate response (CON with the token) is ACKed.  A
# reply with a code (not an empty ACK) ends the wait for that message.
# MSG is ';'-separated key=value fields:
#   t=CON|NON  c=POST|GET|PUT|DELETE|FETCH  mid=N  tok=HEX  path=a/b/c
#   cf=N  b1=NUM:M:SZX  size1=N  rtag=HEX  sleep=SECONDS (before sending)
#   body=@FILE[:OFFSET:LEN] | body=TEXT   to=HOST (this message only)
# HOST may be a multicast group (sent out of 127.0.0.1, TTL 1, loopback on).
coap_udp() {
        python3 - "$@" <<'PY'
import os, socket, struct, sys, time
host, port, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
CODES = {"GET": 1, "POST": 2, "PUT": 3, "DELETE": 4, "FETCH": 5}
TYPES = {"CON": 0, "NON": 1, "ACK": 2, "RST": 3}
TNAME = {v: k for k, v in TYPES.items()}
ONAME = {14: "Max-Age", 60: "Size1", 27: "Block1", 23: "Block2", 12: "Content-Format"}
def uint(n):
    return b"" if n == 0 else n.to_bytes((n.bit_length() + 7) // 8, "big")
def ext(v):
    if v < 13: return v, b""
    if v < 269: return 13, bytes([v - 13])
    return 14, struct.pack(">H", v - 269)
def encode(t, code, mid, tok, opts, payload):
    out = bytes([0x40 | (t << 4) | len(tok), code]) + struct.pack(">H", mid) + tok
    last = 0
    for num, val in sorted(opts, key=lambda o: o[0]):
        d, dx = ext(num - last); l, lx = ext(len(val))
        out += bytes([(d << 4) | l]) + dx + lx + val
        last = num
    if payload: out += b"\xff" + payload
    return out
def decode(b):
    t = (b[0] >> 4) & 3; tkl = b[0] & 15; code = b[1]
    mid = struct.unpack(">H", b[2:4])[0]; tok = b[4:4 + tkl]; i = 4 + tkl
    opts = []; num = 0; payload = b""
    while i < len(b):
        if b[i] == 0xff: payload = b[i + 1:]; break
        d = b[i] >> 4; l = b[i] & 15; i += 1
        def x(v):
            nonlocal i
            if v == 13: v = b[i] + 13; i += 1
            elif v == 14: v = struct.unpack(">H", b[i:i + 2])[0] + 269; i += 2
            return v
        d = x(d); l = x(l); num += d
        opts.append((num, b[i:i + l])); i += l
    return t, code, mid, tok, opts, payload
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((os.environ.get("COAP_UDP_SRC", "0.0.0.0"), 0))     # e.g. 127.0.0.2: another peer
if any(socket.inet_aton(h)[0] & 0xf0 == 0xe0 for h in
       [host] + [kv[3:] for a in sys.argv[4:] for kv in a.split(";") if kv.startswith("to=")]):
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
print("src port %d" % s.getsockname()[1], file=sys.stderr)
for n, spec in enumerate(sys.argv[4:]):
    f = dict(kv.split("=", 1) for kv in spec.split(";") if kv)
    if "sleep" in f: time.sleep(float(f["sleep"]))
    t = TYPES[f.get("t", "CON")]; code = CODES[f.get("c", "POST")]
    mid = int(f.get("mid", str(0x4000 + n)), 0)
    tok = bytes.fromhex(f.get("tok", "%04x" % (0x7000 + n)))
    opts = [(11, seg.encode()) for seg in f.get("path", "").split("/") if seg]
    if "cf" in f: opts.append((12, uint(int(f["cf"]))))
    if "b1" in f:
        num, more, szx = (int(v) for v in f["b1"].split(":"))
        opts.append((27, uint((num << 4) | (more << 3) | szx)))
    if "size1" in f: opts.append((60, uint(int(f["size1"]))))
    if "rtag" in f: opts.append((292, bytes.fromhex(f["rtag"])))
    payload = b""
    if "body" in f:
        v = f["body"]
        if v.startswith("@"):
            parts = v[1:].split(":")
            data = open(parts[0], "rb").read()
            if len(parts) == 3: data = data[int(parts[1]):int(parts[1]) + int(parts[2])]
            payload = data
        else:
            payload = v.encode()
    s.sendto(encode(t, code, mid, tok, opts, payload), (f.get("to", host), port))
    deadline = time.time() + wait; coded = False
    while True:
        left = deadline - time.time()
        if left <= 0: break
        s.settimeout(left)
        try: b, a = s.recvfrom(65536)
        except socket.timeout: break
        rt, rc, rmid, rtok, ropts, rp = decode(b)
        if rmid != mid and rtok != tok: continue
        if rt == 0:     # separate CON response: ACK it
            s.sendto(bytes([0x60, 0]) + struct.pack(">H", rmid), a)
        desc = ["reply", "t:%s" % TNAME[rt], "c:%d.%02d" % (rc >> 5, rc & 31),
                "mid:0x%04x" % rmid, "tok:%s" % rtok.hex(), "from:%s" % a[0]]
        for num, val in ropts:
            if num in ONAME:
                v = int.from_bytes(val, "big")
                if num in (27, 23): v = "%d/%d/%d" % (v >> 4, (v >> 3) & 1, v & 7)
                desc.append("%s:%s" % (ONAME[num], v))
        if rp:
            desc.append(":: '%s'" % "".join(chr(c) if 32 <= c < 127 else "." for c in rp))
        print(" ".join(desc)); sys.stdout.flush()
        if rc != 0: coded = True; break
    if not coded: print("reply none")
    sys.stdout.flush()
PY
}
