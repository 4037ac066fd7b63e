# lib.sh -- helpers for the announcement tests (issue 4, RFC 9482 §2.6).
# Sources tests/dbus/lib.sh (which sources tests/integration/lib.sh) and adds:
#
#   require_mkann            skip unless /usr/bin/python3 has pyasn1-modules
#                            and cryptography (tools/deps.sh installs them)
#   mkann ARGS...            tests/announce/mkann.py ARGS (log: $T/mkann.log)
#   SIGN                     mkann.py signer options: the CMP server
#                            certificate srv.pem (chain to trusted.pem via
#                            ica.pem in extraCerts)
#   make_crlann NAME NUMBER [--revoked HEX[:REASON]]...
#                            a CRL of the issuing CA ($T/NAME.crl.der) with
#                            that CRL number and entries, and its CRLANN
#                            $T/NAME.der; NAME ending in -bad: --tamper
#   write_ann_config FILE [PYCODE]   write_dbus_config plus
#                            "announcements": {"trusted": trusted.pem};
#                            PYCODE may change c (the parsed config) further
#   start_ann_gw FILE        start_gw_dbus
#   announce NAME FILE       cmpgwctl announce FILE (ctl NAME ...)
#   signal_count NAME        how many signals NAME the monitor printed
#   wait_file_size FILE N SECS   until FILE holds >= N bytes
#   start_poll_fixture DIR PORT   ca_poll_fixture.py (it stands in for a CA
#                            answering genm, which OpenSSL 3.0 cannot) on
#                            127.0.0.1:PORT with its state in DIR, signing
#                            as srv.pem; FX_PID, log $T/fixture.log
#   make_root_update DIR     a root CA key update (RFC 4210 §4.4) of the
#                            test root: DIR/new-with-new.pem (self-signed,
#                            "cmpgw test root CA 2", key DIR/new.key),
#                            new-with-old.pem, old-with-new.pem
#   enrol_node CN            ir through the gateway with the mock CA's secret
#                            (it issues ee.pem), until DeviceEnrolled; DEV is
#                            the device's id (start_monitor first)
#
# The announcements are made by mkann.py, an independent implementation of
# RFC 4210's announcement messages: it stands in for a CA that publishes
# them, which OpenSSL 3.0 cannot do (PEERS.md).
#
# shellcheck shell=bash
# shellcheck disable=SC2034

source "$(dirname "${BASH_SOURCE[0]}")/../dbus/lib.sh"

ANN_PY=/usr/bin/python3
MKANN=$SRCDIR/tests/announce/mkann.py

require_mkann() {
        "$ANN_PY" -c 'import pyasn1_modules.rfc4210, cryptography.x509' 2>/dev/null ||
                skip "$ANN_PY lacks pyasn1-modules or cryptography (apt-get install python3-pyasn1-modules python3-cryptography)"
}

mkann() {
        "$ANN_PY" "$MKANN" "$@" >>"$T/mkann.log" 2>&1 || { tail -n 5 "$T/mkann.log" >&2; fail "mkann.py $1 failed"; }
}

SIGN=()
ann_sign_opts() {
        SIGN=(--signer-cert "$PKI/srv.pem" --signer-key "$PKI/srv.key" --extracerts "$PKI/ica-chain.pem")
}

make_crlann() {
        local name=$1 number=$2
        shift 2
        local tamper=()
        [[ $name == *-bad ]] && tamper=(--tamper)
        ann_sign_opts
        mkann mkcrl --ca-cert "$PKI/ica.pem" --ca-key "$PKI/ica.key" --number "$number" "$@" -o "$T/$name.crl.der"
        mkann crlann --crl "$T/$name.crl.der" "${SIGN[@]}" "${tamper[@]}" -o "$T/$name.der"
}

write_ann_config() {
        local file=$1 code=${2:-}
        write_dbus_config "$file"
        "$ANN_PY" - "$file" "$PKI/trusted.pem" "$code" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["announcements"] = {"trusted": sys.argv[2]}
exec(sys.argv[3])
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
}

start_ann_gw() { start_gw_dbus "$1"; }

announce() {
        local name=$1 file=$2
        ctl "$name" announce "$file"
}

signal_count() {
        grep -c "\"signal\":\"$1\"" "$T/monitor.json" 2>/dev/null || true
}

wait_file_size() {
        local file=$1 n=$2 secs=$3 i
        for ((i = 0; i < secs * 10; i++)); do
                [[ -f $file ]] && (($(stat -c %s "$file") >= n)) && return 0
                sleep 0.1
        done
        return 1
}

start_poll_fixture() {
        "$ANN_PY" "$SRCDIR/tests/announce/ca_poll_fixture.py" --port "$2" --dir "$1" \
                --signer-cert "$PKI/srv.pem" --signer-key "$PKI/srv.key" --extracerts "$PKI/ica-chain.pem" \
                --trusted "$PKI/trusted.pem" >>"$T/fixture.log" 2>&1 &
        FX_PID=$!
        PIDS+=("$FX_PID")
        wait_tcp "$FX_PID" "$2" 10 "$T/fixture.log"
}

make_root_update() {
        local d=$1
        mkdir -p "$d"
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/new.key" 2>/dev/null
        printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' \
                >"$d/root.ext"
        openssl req -x509 -new -key "$d/new.key" -subj "/O=cmpgw test/CN=cmpgw test root CA 2" -days 3650 \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
                -out "$d/new-with-new.pem" 2>/dev/null
        openssl req -new -key "$d/new.key" -subj "/O=cmpgw test/CN=cmpgw test root CA 2" -out "$d/new.csr" 2>/dev/null
        openssl x509 -req -in "$d/new.csr" -CA "$PKI/root.pem" -CAkey "$PKI/root.key" -set_serial 0x7001 \
                -days 3650 -extfile "$d/root.ext" -out "$d/new-with-old.pem" 2>/dev/null
        openssl x509 -x509toreq -in "$PKI/root.pem" -key "$PKI/root.key" -out "$d/old.csr" 2>/dev/null
        openssl x509 -req -in "$d/old.csr" -CA "$d/new-with-new.pem" -CAkey "$d/new.key" -set_serial 0x7002 \
                -days 3650 -extfile "$d/root.ext" -out "$d/old-with-new.pem" 2>/dev/null ||
                fail "cannot make the root CA update in $d"
}

enrol_node() {
        local n=$(($(signal_count DeviceEnrolled) + 1))
        timeout 60 "$CMPCOAP" ir --server "$GW_URI/.well-known/cmp" --ref "$CA_REF" --secret "$CA_SECRET" \
                --newkey "$PKI/ee.key" --subject "/CN=$1" --certout "$T/$1.pem" >"$T/ir-$1.log" 2>&1 ||
                { cat "$T/ir-$1.log" >&2; fail "ir of $1 failed"; }
        wait_signal DeviceEnrolled "$n"
        DEV=$(json_get "$T/signal.json" 'j["id"]')
}

# same_hex A B: case-insensitive hex serials, leading zeros ignored
same_hex() {
        local a=${1^^} b=${2^^}
        a=${a#0X}; b=${b#0X}
        a=$(sed 's/^0*//' <<<"$a"); b=$(sed 's/^0*//' <<<"$b")
        [[ $a == "$b" ]]
}
