#!/usr/bin/env bash
# multicast: cmpgwd never answers a multicast request (RFC 9482 §2.5;
# PRODUCT.md, "CoAP interface").
#
# Runs in a private network namespace (unshare --net), so the host's network
# is not touched: there lo is brought up with multicast on, 224.0.0.0/4 is
# routed to it, and a helper socket joins the All-CoAP-Nodes group
# 224.0.1.187 on lo so that the kernel delivers datagrams for the group to
# cmpgwd's wildcard socket (coap://0.0.0.0:PORT).
#
# Every request is sent from one UDP socket first to 224.0.1.187:PORT (no
# datagram may come back within 6 s: libcoap delays multicast answers by up
# to its 5 s leisure) and then, from the very same socket, to
# 127.0.0.1:PORT, where it must be answered: the request itself is fine.
# cmpgwd runs with -v -v, so libcoap logs every datagram with its local
# address: the log must show each multicast datagram received on
# 224.0.1.187:PORT (it did reach the daemon) and nothing sent from there.
set -euo pipefail

# ---- into a private network namespace (before lib.sh: its temp dir and
# EXIT trap belong to the process that runs the test)
if [[ -z ${CMPGW_IN_NETNS:-} ]]; then
        me=$(basename "$0" .sh)
        if ! command -v unshare >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
                echo "[$me] SKIP: needs unshare and ip (util-linux, iproute2)" >&2
                exit 77
        fi
        if unshare --net true 2>/dev/null; then
                CMPGW_IN_NETNS=1 exec unshare --net bash "$0" "$@"
        elif unshare --net --map-root-user true 2>/dev/null; then
                CMPGW_IN_NETNS=1 exec unshare --net --map-root-user bash "$0" "$@"
        fi
        echo "[$me] SKIP: cannot create a network namespace (unshare --net: not root, no user namespaces)" >&2
        exit 77
fi
export -n CMPGW_IN_NETNS

# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cmd "$COAP_CLIENT" openssl python3 ip

[[ $(readlink /proc/self/ns/net) != $(readlink /proc/1/ns/net) ]] ||
        fail "not in a private network namespace; refusing to change the host's network"

GROUP=224.0.1.187       # All CoAP Nodes (RFC 7252 §12.8)
step "network namespace: lo up, multicast on, $GROUP/4 routed to lo"
ip link set lo up
ip link set lo multicast on
ip route replace 224.0.0.0/4 dev lo
ip -4 route get "$GROUP" | grep 'dev lo' >/dev/null || fail "no route for $GROUP via lo: $(ip -4 route get "$GROUP")"

make_pki
start_ca "$PKI"
capture_requests "$T/req"
R=$T/req

# the listener on the wildcard address (write_config's is 127.0.0.1)
GW_PORT=$(free_port udp)
cat >"$T/gw.json" <<EOF
{
  "listen":    [ { "uri": "coap://0.0.0.0:$GW_PORT" } ],
  "upstreams": [ { "name": "ca", "uri": "$CA_URI", "timeout": 5 } ],
  "registry":  { "path": "$T/registry.db" },
  "dbus":      { "bus": "none" }
}
EOF
GW_EXTRA_ARGS=(--verbose)       # -v -v: libcoap logs every datagram
start_gw "$T/gw.json"

step "join $GROUP on lo (a helper socket that stays open)"
python3 - "$GROUP" "$T/joined" <<'PY' >>"$T/join.log" 2>&1 &
import socket, struct, sys, time
m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
m.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton(sys.argv[1]), socket.inet_aton("127.0.0.1")))
open(sys.argv[2], "w").close()
time.sleep(3600)
PY
PIDS+=($!)
for ((i = 0; i < 50; i++)); do [[ -e $T/joined ]] && break; sleep 0.1; done
[[ -e $T/joined ]] || { cat "$T/join.log" >&2; fail "could not join $GROUP"; }
# /proc/net/igmp lists groups in host byte order: 224.0.1.187 -> BB0100E0
grep -A9 -E '^[0-9]+\s+lo\s' /proc/net/igmp | grep BB0100E0 >/dev/null ||
        fail "$GROUP not joined on lo: $(cat /proc/net/igmp)"

# ---- the exchanges, in parallel (each waits 6 s for a multicast answer)
CMP=.well-known/cmp
genm="path=$CMP;cf=259;body=@$R/genm.der"
core="c=GET;path=.well-known/core"
# NAME  WAIT  MSG...: run coap_udp in the background, output in $T/NAME.*
names=()
probe_pids=()
probe() {
        local name=$1 wait=$2
        shift 2
        names+=("$name")
        coap_udp "$GROUP" "$GW_PORT" "$wait" "$@" >"$T/$name.udp" 2>"$T/$name.udp.err" &
        probe_pids+=($!)
}
step "send to $GROUP:$GW_PORT, then the same from the same socket to 127.0.0.1"
probe con-genm  6 "t=CON;$genm"             "t=CON;$genm;to=127.0.0.1"
probe non-genm  6 "t=NON;$genm"             "t=NON;$genm;to=127.0.0.1"
probe non-core  6 "t=NON;$core"             "t=CON;$core;to=127.0.0.1"
probe con-core  6 "t=CON;$core"             "t=CON;$core;to=127.0.0.1"
# requests that unicast would get an error for: errors are not sent either
probe non-ir-genm 6 "t=NON;path=$CMP/ir;cf=259;body=@$R/genm.der" \
                    "t=NON;path=$CMP/ir;cf=259;body=@$R/genm.der;to=127.0.0.1"
probe non-put   6 "t=NON;c=PUT;$genm"       "t=NON;c=PUT;$genm;to=127.0.0.1"
probe non-cf0   6 "t=NON;path=$CMP;cf=0;body=@$R/genm.der" \
                  "t=NON;path=$CMP;cf=0;body=@$R/genm.der;to=127.0.0.1"
probe non-unknown 6 "t=NON;path=$CMP/foo;cf=259;body=@$R/genm.der" \
                    "t=NON;path=$CMP/foo;cf=259;body=@$R/genm.der;to=127.0.0.1"
probe non-ann   6 "t=NON;c=GET;path=$CMP/ann" "t=NON;c=GET;path=$CMP/ann;to=127.0.0.1"
# the other order: the socket's session at the gateway is unicast first
probe uni-first 6 "t=CON;mid=0x5001;tok=5001;$genm;to=127.0.0.1" \
                  "t=NON;mid=0x5002;tok=5002;$genm" \
                  "t=NON;mid=0x5003;tok=5003;$core"
# a multicast copy of an answered request (same MID and token): the answer
# kept for retransmissions must not go out to it either
probe replay    6 "t=CON;mid=0x6001;tok=6001;$genm;to=127.0.0.1" \
                  "t=NON;mid=0x6001;tok=6001;$genm"
# and a real client: coap-client sends multicast as NON, collects answers
"$COAP_CLIENT" -v 6 -N -B 6 -m get "coap://$GROUP:$GW_PORT/.well-known/core" \
        >"$T/client-core.out" 2>"$T/client-core.err" &
client_pid=$!
for p in "${probe_pids[@]}"; do
        wait "$p" || fail "a probe (pid $p) failed: $(cat "$T"/*.udp.err | grep -v '^src port' | tail -n 5)"
done
wait "$client_pid" || true
gw_alive

# ---- the verdicts
bad=()
# msgs_of NAME: one line per message of probe NAME: its replies (coap_udp
# prints empty ACKs, then the reply with a code) or "reply none"
msgs_of() {
        python3 - "$T/$1.udp" <<'PY'
import sys
groups, cur = [], []
for l in open(sys.argv[1]):
    l = l.rstrip("\n")
    if not l.startswith("reply"): continue
    cur.append(l)
    if l == "reply none" or " c:0.00 " not in l:
        groups.append(" | ".join(cur)); cur = []
for g in groups: print(g)
PY
}
check() {       # NAME MC_INDEX UNI_INDEX UNI_CODE
        local name=$1 mi=$2 ui=$3 want=$4 lines mc uni
        mapfile -t lines < <(msgs_of "$name")
        mc=${lines[mi - 1]:-}
        uni=${lines[ui - 1]:-}
        if [[ $mc != "reply none" ]]; then
                bad+=("$name: the multicast request was answered: ${mc:0:200}")
        else
                log "ok: $name: no answer to the multicast request"
        fi
        if [[ $uni != *" c:$want "* ]]; then
                fail "$name: the same request unicast from the same socket got '${uni:-nothing}' (expected $want): the control failed"
        fi
        log "ok: $name: unicast control -> ${uni:0:90}"
}
check con-genm    1 2 2.04
check non-genm    1 2 2.04
check non-core    1 2 2.05
check con-core    1 2 2.05
check non-ir-genm 1 2 4.00
check non-put     1 2 4.05
check non-cf0     1 2 4.15
check non-unknown 1 2 4.04
check non-ann     1 2 2.05
check uni-first   2 1 2.04
check uni-first   3 1 2.04
check replay      2 1 2.04
# the unicast genm answers are CMP
for n in con-genm non-genm; do
        grep -q 'c:2.04 .*Content-Format:259' "$T/$n.udp" || fail "$n: unicast 2.04 without Content-Format 259: $(cat "$T/$n.udp")"
done

step "coap-client -N GET coap://$GROUP:$GW_PORT/.well-known/core"
if grep -aqE '^v:1 t:[A-Z]+ c:[1-5]\.[0-9][0-9] ' "$T/client-core.out" "$T/client-core.err"; then
        bad+=("coap-client: the multicast GET /.well-known/core was answered: $(grep -ahE '^v:1 t:[A-Z]+ c:[1-5]' "$T/client-core.out" "$T/client-core.err" | cut -c1-160 | head -n 2)")
else
        log "ok: coap-client got no answer to the multicast discovery"
fi
grep -aq 'c:GET' "$T/client-core.out" "$T/client-core.err" || fail "coap-client did not send its multicast GET: $(tail -n 3 "$T/client-core.err")"

step "the daemon's log: every multicast datagram arrived, nothing was sent back from $GROUP"
for n in "${names[@]}"; do
        port=$(sed -nE 's/^src port ([0-9]+)$/\1/p' "$T/$n.udp.err")
        expect_nonempty "$port" "source port of probe $n"
        grep -aqE "\*  $GROUP:$GW_PORT <-> 127\.0\.0\.1:$port .*received" "$T/gw.log" ||
                fail "$n: cmpgwd's log shows no datagram received on $GROUP:$GW_PORT from port $port: the test proves nothing"
        if grep -aqE "\*  $GROUP:$GW_PORT <-> 127\.0\.0\.1:$port .*sent" "$T/gw.log"; then
                bad+=("$n: cmpgwd's log shows a datagram sent in reply to multicast: $(grep -aE "$GROUP:$GW_PORT <-> 127\.0\.0\.1:$port .*sent" "$T/gw.log" | head -n 1)")
        fi
done
log "ok: ${#names[@]} probes' multicast datagrams are in cmpgwd's log"

if ((${#bad[@]})); then
        for b in "${bad[@]}"; do log "multicast answered: $b"; done
        grep -aE "$GROUP:$GW_PORT" "$T/gw.log" | tail -n 20 >&2
        fail "${#bad[@]} multicast request(s) answered (RFC 9482 §2.5: never)"
fi
gw_alive
log "PASS"
