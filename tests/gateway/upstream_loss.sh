#!/usr/bin/env bash
# A lossy link between two gateways (issue 6): node → cmpgwd A → (5 % of
# the datagrams dropped each way) → cmpgwd B → mock CA over HTTP. A's CoAP
# client must recover every lost request, block and answer on its own
# (RFC 7252 §4.2 retransmission, RFC 7959 block by block) and B must
# answer retransmitted requests without forwarding them twice: every
# enrolment ends with the CA's certificate. tests/bench/lossy_relay.py
# stands in for the lossy link (loopback has no netem here). A drives its
# upstream retransmissions with libcoap's own timer only (no session walk
# after a request on an established session): a missed timer shows here
# as a 5.04 after the upstream timeout.
#   UPSTREAM_LOSS_ENROLMENTS=N (default 10), UPSTREAM_LOSS_SEED (default 3)
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cli
require_cmd openssl

N=${UPSTREAM_LOSS_ENROLMENTS:-10}
SEED=${UPSTREAM_LOSS_SEED:-3}
make_pki
start_ca "$PKI"
start_ca_gw b
start_lossy_relay "$OTHER_GW_PORT" "$SEED" relay
write_config "$T/gw.json" "[ { \"name\": \"b\", \"uri\": \"coap://127.0.0.1:$RELAY_PORT/.well-known/cmp\", \"timeout\": 60 } ]"
start_gw "$T/gw.json"

step "$N enrolments through A, whose link to B drops 5 % each way (seed $SEED)"
lost=0
for ((i = 1; i <= N; i++)); do
        rm -f "$T/ee.pem"
        rc=0
        timeout 90 "$CMPCOAP" ir --server "$GW_URI/.well-known/cmp" --ref "$CA_REF" --secret "$CA_SECRET" \
                --newkey "$PKI/ee.key" --subject /CN=upstream-loss --certout "$T/ee.pem" \
                --trusted "$PKI/trusted.pem" --timeout 80 >"$T/ir-$i.log" 2>&1 || rc=$?
        if ((rc != 0)) || ! cert_eq "$T/ee.pem" "$PKI/ee.pem"; then
                log "enrolment $i: lost (cmpcoap exit $rc): $(tail -n 2 "$T/ir-$i.log" | tr '\n' ' ')"
                lost=$((lost + 1))
        fi
done
stop_pid "$RELAY_PID"
log "relay: $(tail -n 1 "$T/relay.out")"
dropped=$(grep -c " DROP " "$T/relay.log" || true)
((dropped > 0)) || fail "the relay dropped nothing: the test would not test recovery (relay log: $T/relay.log)"
((lost == 0)) || fail "$lost of $N enrolments lost on the link between the gateways"
served=$(grep -c "certConf to /.well-known/cmp -> 2.04" "$T/b.log" || true)
((served == N)) || fail "B answered $served certConf, expected $N: a request forwarded twice or lost"
log "every enrolment ended with the certificate; $dropped datagrams dropped between the gateways"
