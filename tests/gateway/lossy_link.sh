#!/usr/bin/env bash
# Enrolments over a lossy link are never lost (issue 5). cmpcoap (a libcoap
# 4.3.1 client, as Debian's nodes are) enrols N times against the mock CA
# through cmpgwd, every datagram passing tests/bench/lossy_relay.py, which
# stands in for a lossy radio link (loopback has no netem here) and drops
# a seeded 5 % of them each way. Every enrolment must end with the CA's
# certificate within cmpcoap's --timeout.
#
# What this catches: the 4.3.1 client does not acknowledge a duplicate
# Confirmable response (RFC 7252 §4.5), so when its ACK of a separate
# response was lost cmpgwd retransmitted that response unanswered for
# MAX_TRANSMIT_SPAN and libcoap held every further Confirmable message to
# the client behind it (NSTART 1): the certConf's pkiConf never came in
# time. Against the gateway before the fix (which answered block-wise
# requests with an empty ACK and a separate response), seed 1 dropped the
# client's ACK of the separate ip in the 9th enrolment (the pkiConf never
# came: lost), seed 7 one in the 4th; each seed lost 1 of 12 enrolments.
# The fixed gateway piggybacks these answers (coap_server.c, "answers kept
# for retransmissions"), so its datagram sequence, and what the seeds hit,
# differ; the test still fails on any enrolment lost to any cause.
#
#   LOSSY_ENROLMENTS=N (default 12 per seed), LOSSY_SEEDS="1 7"
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cli
require_cmd openssl

N=${LOSSY_ENROLMENTS:-12}
SEEDS=${LOSSY_SEEDS:-1 7}
make_pki
start_ca "$PKI"
UPSTREAM_TIMEOUT=10 write_config "$T/gw.json"
start_gw "$T/gw.json"

lost=0
for seed in $SEEDS; do
        step "seed $seed: $N enrolments through a link dropping 5 % each way"
        start_lossy_relay "$GW_PORT" "$seed" "relay-$seed"
        for ((i = 1; i <= N; i++)); do
                rm -f "$T/ee.pem"
                rc=0
                # 256-byte blocks: the ir goes block-wise, as from a node
                timeout 60 "$CMPCOAP" ir --server "coap://127.0.0.1:$RELAY_PORT/.well-known/cmp" --ref "$CA_REF" \
                        --secret "$CA_SECRET" --newkey "$PKI/ee.key" --subject /CN=lossy --block-size 256 \
                        --certout "$T/ee.pem" --trusted "$PKI/trusted.pem" --timeout 30 \
                        >"$T/ir-$seed-$i.log" 2>&1 || rc=$?
                if ((rc != 0)) || ! cert_eq "$T/ee.pem" "$PKI/ee.pem"; then
                        log "seed $seed, enrolment $i: lost (cmpcoap exit $rc): $(tail -n 2 "$T/ir-$seed-$i.log" | tr '\n' ' ')"
                        lost=$((lost + 1))
                fi
        done
        stop_pid "$RELAY_PID"
        log "seed $seed: $(tail -n 1 "$T/relay-$seed.out")"
done
((lost == 0)) || fail "$lost enrolments lost on the lossy link (relay logs: $T/relay-*.log, KEEP=1 keeps them)"
log "every enrolment through the lossy link ended with the certificate"
