#!/usr/bin/env bash
# hostile: bad input on the wire.  Starts OpenSSL's mock CA and one cmpgwd,
# then runs hostile.py (stdlib-only /usr/bin/python3): ~100 hostile cases
# over raw UDP and coap-client-openssl -- malformed CoAP, unknown/duplicate/
# over-long options, path tricks in labels, truncated/trailing/BER/non-CMP
# DER, announcements POSTed by a node, bogus Block1/Block2 sequences, huge
# Size1, abandoned transfers, oversized datagrams, floods from one address
# -- each with its expected answer, several rounds over the same sockets
# with cmpgwd's VmRSS compared between round 2 and the last, then an
# honest block-wise cr and a cmpcoap enrolment, and cmpgwd must be alive.
# stop_all (lib.sh) then fails the test if cmpgwd crashed or a sanitizer
# (ASan build: LeakSanitizer at exit) reported anything.
#
# Environment: HOSTILE_ROUNDS (default 4), HOSTILE_RSS_LIMIT (kB, default
# 1024), HOSTILE_SKIP=name,name (skip cases; names: hostile.py --list),
# HOSTILE_STRICT=1 (TODO cases fail), KEEP=1 (keep the temp dir).
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cli
require_cmd "$COAP_CLIENT" openssl
PY=/usr/bin/python3             # Debian's, standard library only
[[ -x $PY ]] || skip "no $PY"

make_pki
start_ca "$PKI"
capture_requests "$T/req"

# One upstream, the default route, also reached by label "h".  Small limits
# so that the cases can reach them: 4096-byte bodies, transfers abandoned
# for 2 s are discarded (coap.transfer_timeout, cmpgw.json(5)), and the
# upstream gets 2 s (a BER body makes the mock CA hang: 5.04 after that).
# The default limits apply (limits.rate 20/s, burst 40 per address): the
# ~100 cases per round from 127.0.0.1 stay under them, the flood from
# 127.0.0.3 does not (flood-burst in hostile.py expects its 4.29s).
MAX_SIZE=4096
TRANSFER_TIMEOUT=2
write_config "$T/gw.json" \
        "[ { \"name\": \"ca\", \"uri\": \"$CA_URI\", \"timeout\": 2, \"labels\": [ \"h\" ], \"default\": true } ]" \
        "{ \"max_message_size\": $MAX_SIZE, \"transfer_timeout\": $TRANSFER_TIMEOUT, \"block_size\": 1024 }"
start_gw "$T/gw.json"

# the honest and the flooding peers use other loopback addresses
for a in 127.0.0.2 127.0.0.3 127.0.0.4; do
        "$PY" -c "import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind((sys.argv[1], 0))" "$a" ||
                skip "cannot bind UDP to $a"
done

step "hostile cases (cmpgwd pid $GW_PID, coap://127.0.0.1:$GW_PORT)"
t0=$SECONDS
rc=0
timeout 540 "$PY" "$LIBDIR/../hostile/hostile.py" \
        --port "$GW_PORT" --pid "$GW_PID" --req "$T/req" --pki "$PKI" --workdir "$T" \
        --gw-log "$T/gw.log" --max-size "$MAX_SIZE" --transfer-timeout "$TRANSFER_TIMEOUT" \
        --rounds "${HOSTILE_ROUNDS:-4}" --rss-limit "${HOSTILE_RSS_LIMIT:-1024}" \
        --coap-client "$(command -v "$COAP_CLIENT")" --cmpcoap "$CMPCOAP" \
        --ca-ref "$CA_REF" --ca-secret "$CA_SECRET" || rc=$?
log "hostile.py exited $rc after $((SECONDS - t0)) s"
if ! kill -0 "$GW_PID" 2>/dev/null || [[ $(awk '{ print $3 }' "/proc/$GW_PID/stat" 2>/dev/null) == Z ]]; then
        log "cmpgwd log tail:"
        tail -n 40 "$T/gw.log" >&2
        fail "cmpgwd is gone"
fi
((rc == 0)) || fail "hostile.py: $rc (see the 'not ok' lines above)"
log "PASS"
