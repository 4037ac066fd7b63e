#!/usr/bin/env bash
# demo.sh -- cmpgw end to end on this machine: builds, makes a test PKI,
# starts OpenSSL's mock CA (`openssl cmp -port`) and cmpgwd on free loopback
# ports, enrols three simulated sensor nodes with cmpcoap (ir, MAC), shows
# what they got, does one genm, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
SRCDIR=$(pwd)
export SRCDIR

say() { printf '\n==> %s\n' "$*"; }

say "checking Debian packages (tools/deps.sh)"
tools/deps.sh

say "building (build/)"
if [[ -f build/build.ninja ]]; then meson setup --reconfigure build >/dev/null
else meson setup build >/dev/null; fi
ninja -C build >/dev/null
CMPGWD=$SRCDIR/build/daemon/cmpgwd
CMPCOAP=$SRCDIR/build/cli/cmpcoap
export CMPGWD CMPCOAP

# lib.sh: temp dir, PKI, CA and gateway start-up, cleanup on exit (trap)
# shellcheck source=tests/integration/lib.sh
source tests/integration/lib.sh
TEST_NAME=demo

say "making a test PKI (root CA, issuing CA, CMP server, end entity) in $PKI"
make_pki
openssl x509 -in "$PKI/ee.pem" -noout -subject -issuer | sed 's/^/    /'

say "starting the CA: openssl cmp -port (mock CA), HTTP on 127.0.0.1"
start_ca "$PKI"
echo "    CA at $CA_URI (pid $CA_PID, log $T/ca.log)"

say "starting cmpgwd"
write_config "$T/cmpgw.json"
sed 's/^/    /' "$T/cmpgw.json"
start_gw "$T/cmpgw.json"
echo "    gateway at $GW_URI (pid $GW_PID, log $T/gw.log)"

say "discovery: GET $GW_URI/.well-known/core"
"$COAP_CLIENT" -B 5 -m get "$GW_URI/.well-known/core" | tr ',' '\n' | sed 's/^/    /'

CMP=$GW_URI/.well-known/cmp
for n in 1 2 3; do
        say "node $n: cmpcoap ir --server $CMP --ref $CA_REF --secret ... --subject /CN=sensor-$n"
        "$CMPCOAP" ir --server "$CMP" --ref "$CA_REF" --secret "$CA_SECRET" \
                --newkey "$PKI/ee.key" --subject "/CN=sensor-$n" \
                --certout "$T/sensor-$n.pem" 2>&1 | sed 's/^/    /'
        echo "    issued certificate:"
        openssl x509 -in "$T/sensor-$n.pem" -noout -subject -issuer -serial -enddate | sed 's/^/      /'
done
echo
echo "    (OpenSSL's mock CA issues one fixed certificate whatever the request"
echo "     asks for, so all three nodes receive the same subject.)"

say "genm: cmpcoap genm --server $CMP"
"$CMPCOAP" genm --server "$CMP" --ref "$CA_REF" --secret "$CA_SECRET" 2>&1 | sed 's/^/    /'

say "gateway log (last lines)"
tail -n 15 "$T/gw.log" | sed 's/^/    /'

say "stopping the CA and the gateway"
