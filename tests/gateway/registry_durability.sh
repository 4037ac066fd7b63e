#!/usr/bin/env bash
# The registry survives a restart, and a SIGKILL in the middle of a burst of
# enrolments loses no transaction the gateway already answered: every
# enrolment that cmpcoap saw succeed (its certConf was answered pkiConf) is
# in the registry after the gateway is killed and started again.
# The mock CA issues one fixed certificate, so each enrolment gets its own
# end-entity certificate (CN=dev-N, made here) and the CA is restarted with it.
source "$(dirname "$0")/../integration/lib.sh"
require_gw
require_cli
require_cmd openssl python3 sqlite3

make_pki
mk_ee() {       # mk_ee N: dev-N.key/.pem signed by the issuing CA
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=dev-$1" \
                -keyout "$T/dev-$1.key" -out "$T/dev-$1.csr" 2>/dev/null
        openssl x509 -req -in "$T/dev-$1.csr" -CA "$PKI/ica.pem" -CAkey "$PKI/ica.key" -set_serial "$((5000 + $1))" \
                -days 365 -out "$T/dev-$1.pem" 2>/dev/null
}
ca_with() {     # ca_with N: the mock CA answering with dev-N's certificate
        [[ -n $CA_PID ]] && stop_ca
        start_ca_at "$ca_port" "$PKI" "$T/dev-$1.pem"
}

N=12 KILL_AT=$((4 + RANDOM % 5))
for i in $(seq $N); do mk_ee "$i"; done
ca_port=$(free_port tcp)
CA_URI=http://127.0.0.1:$ca_port/pkix/
conf=$T/gw.json
write_config "$conf"
start_gw "$conf"

answered=()
for i in $(seq $N); do
        ca_with "$i"
        timeout 60 "$CMPCOAP" ir --server "$GW_URI/.well-known/cmp" --ref "$CA_REF" --secret "$CA_SECRET" \
                --newkey "$T/dev-$i.key" --subject "/CN=dev-$i" --certout "$T/out-$i.pem" --timeout 20 \
                >"$T/ir-$i.log" 2>&1 &
        client=$!
        if ((i == KILL_AT)); then
                # somewhere inside this enrolment: before, between or after its two exchanges
                sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
                kill -KILL "$GW_PID"
                wait "$GW_PID" 2>/dev/null || true
                log "SIGKILL during enrolment $i"
                keep=(); for p in "${PIDS[@]}"; do [[ $p == "$GW_PID" ]] || keep+=("$p"); done; PIDS=("${keep[@]}")
                start_gw "$conf"
        fi
        rc=0
        wait "$client" || rc=$?
        ((rc == 0)) && answered+=("$i")
done
((${#answered[@]} >= N - 1)) || fail "only ${#answered[@]} of $N enrolments succeeded: ${answered[*]}"

step "the registry after SIGKILL and restart"
stop_gw
for i in "${answered[@]}"; do
        state=$(sqlite3 "$T/registry.db" "SELECT state FROM devices WHERE subject = 'CN=dev-$i';")
        expect_eq "$state" enrolled "registry state of dev-$i, whose enrolment was answered"
done
log "${#answered[@]} answered enrolments, all in the registry (SIGKILL during #$KILL_AT)"

step "a clean restart keeps them"
start_gw "$conf"
n=$(sqlite3 "$T/registry.db" "SELECT count(*) FROM devices WHERE state = 'enrolled';")
((n >= ${#answered[@]})) || fail "after a restart $n devices are enrolled, expected ${#answered[@]}"
total=$(sqlite3 "$T/registry.db" "SELECT count(*) FROM devices;")
grep -q "registry $T/registry.db: $total devices" "$T/gw.log" || fail "the restarted gateway does not report the $total devices"
