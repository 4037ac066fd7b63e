#!/usr/bin/env bash
# mkpki.sh OUTDIR -- a small EC (P-256) test PKI for cmpgw's tests.
#
# Makes, in OUTDIR (created if missing):
#   root.pem root.key        self-signed root CA
#   ica.pem ica.key          intermediate (issuing) CA, signed by root
#   srv.pem srv.key          CMP server (RA/CA) cert for `openssl cmp -srv_cert`
#   ee.pem ee.key            end entity: the fixed -rsp_cert of the mock CA;
#                            tests use ee.key as --newkey / for --csr
#   ee.csr                   PKCS#10 request of ee.key (subject CN=ee)
#   client.pem client.key    second end entity: signs cr/kur requests
#   chain.pem                ica.pem + root.pem   (extraCerts / -untrusted)
#   ica-chain.pem            ica.pem              (issuing CA alone)
#   srv-chain.pem            srv.pem + ica.pem
#   client-chain.pem         client.pem + ica.pem
#   trusted.pem              root.pem (trust anchor for both ends)
# and, for coaps (DTLS) tests, signed by the issuing CA:
#   gw-dtls.pem gw-dtls.key  the gateway's DTLS server cert, SAN IP:127.0.0.1
#                            and DNS:localhost (gw-dtls-chain.pem: + ica.pem)
#   client-dtls.pem client-dtls.key  a DTLS client cert, CN=dtls client
#                            (client-dtls-chain.pem: + ica.pem)
#
# Idempotent: an existing, complete PKI in OUTDIR is left alone (so the
# certificates stay stable within a test run).  Prints nothing on success.
set -euo pipefail

out=${1:?usage: mkpki.sh OUTDIR}
mkdir -p "$out"
cd "$out"

files=(root.pem root.key ica.pem ica.key srv.pem srv.key ee.pem ee.key ee.csr
       client.pem client.key chain.pem ica-chain.pem srv-chain.pem
       client-chain.pem trusted.pem)
dtls_files=(gw-dtls.pem gw-dtls.key gw-dtls-chain.pem client-dtls.pem client-dtls.key
            client-dtls-chain.pem)
complete=1
for f in "${files[@]}"; do [[ -s $f ]] || complete=0; done
dtls_complete=1
for f in "${dtls_files[@]}"; do [[ -s $f ]] || dtls_complete=0; done
((complete && dtls_complete)) && exit 0

umask 077
tmp=$(mktemp -d "./.mkpki.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

ossl() { openssl "$@" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }; }

cat >"$tmp/ext.cnf" <<'CNF'
[req]
distinguished_name = dn
[dn]

[ca_root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ca_int]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[cmp_srv]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
# id-kp-cmcRA (RFC 6402), as an RA would carry
extendedKeyUsage = 1.3.6.1.5.5.7.3.28
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[dtls_srv]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[dtls_cli]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ee]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = clientAuth, serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF

key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
             -pkeyopt ec_param_enc:named_curve -out "$tmp/$1.key"; }
# sign NAME SUBJECT ISSUER EXT SERIAL
sign() {
        ossl req -new -config "$tmp/ext.cnf" -key "$tmp/$1.key" -subj "$2" -out "$tmp/$1.csr"
        ossl x509 -req -in "$tmp/$1.csr" -CA "$tmp/$3.pem" -CAkey "$tmp/$3.key" \
             -set_serial "$5" -days 3650 -sha256 \
             -extfile "$tmp/ext.cnf" -extensions "$4" -out "$tmp/$1.pem"
}

# the DTLS pair alone, signed by an existing issuing CA (older PKI dirs keep
# their other files unchanged)
make_dtls() {
        key gw-dtls;     sign gw-dtls     "/O=cmpgw test/CN=cmpgw test gateway" ica dtls_srv 0x4001
        key client-dtls; sign client-dtls "/O=cmpgw test/CN=dtls client"        ica dtls_cli 0x4002
        cat "$tmp/gw-dtls.pem" "$tmp/ica.pem"     >"$tmp/gw-dtls-chain.pem"
        cat "$tmp/client-dtls.pem" "$tmp/ica.pem" >"$tmp/client-dtls-chain.pem"
        for f in "${dtls_files[@]}"; do
                chmod 644 "$tmp/$f"
                [[ $f == *.key ]] && chmod 600 "$tmp/$f"
        done
        ossl verify -CAfile "$tmp/root.pem" -untrusted "$tmp/ica.pem" \
             "$tmp/gw-dtls.pem" "$tmp/client-dtls.pem" >/dev/null
        for f in "${dtls_files[@]}"; do mv -f "$tmp/$f" "./$f"; done
}

if ((complete)); then
        cp root.pem ica.pem ica.key "$tmp/"
        make_dtls
        exit 0
fi

key root
ossl req -new -x509 -key "$tmp/root.key" -subj "/O=cmpgw test/CN=cmpgw test root CA" \
     -days 3650 -sha256 -config "$tmp/ext.cnf" -extensions ca_root \
     -set_serial 0x0001 -out "$tmp/root.pem"
key ica;    sign ica    "/O=cmpgw test/CN=cmpgw test issuing CA" root ca_int  0x1001
key srv;    sign srv    "/O=cmpgw test/CN=cmpgw test CMP server" ica  cmp_srv 0x2001
key ee;     sign ee     "/O=cmpgw test/CN=ee"                    ica  ee      0x3001
key client; sign client "/O=cmpgw test/CN=client"                ica  ee      0x3002

cat "$tmp/ica.pem" "$tmp/root.pem"   >"$tmp/chain.pem"
cat "$tmp/ica.pem"                   >"$tmp/ica-chain.pem"
cat "$tmp/srv.pem" "$tmp/ica.pem"    >"$tmp/srv-chain.pem"
cat "$tmp/client.pem" "$tmp/ica.pem" >"$tmp/client-chain.pem"
cp "$tmp/root.pem" "$tmp/trusted.pem"

for f in "${files[@]}"; do
        [[ $f == ee.csr ]] && continue
        chmod 644 "$tmp/$f"
        [[ $f == *.key ]] && chmod 600 "$tmp/$f"
done
chmod 644 "$tmp/ee.csr"
make_dtls
# verify before publishing
ossl verify -CAfile "$tmp/root.pem" -untrusted "$tmp/ica.pem" \
     "$tmp/srv.pem" "$tmp/ee.pem" "$tmp/client.pem" >/dev/null
for f in "${files[@]}"; do mv -f "$tmp/$f" "./$f"; done
