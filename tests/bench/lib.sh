# lib.sh -- helpers shared by the benchmark scripts in tests/bench/ (not
# tests). Source it after tests/integration/lib.sh (temp dir $T, PIDS,
# make_pki, start_ca, ossl_cmp, free_port, fail):
#
#   wait_coap NAME URI NEEDLE   until GET URI/.well-known/core mentions NEEDLE
#   cpu_ticks PID               user+system clock ticks of PID so far
#   rss_kb PID                  VmRSS of PID in kB
#   capture_messages DIR        real CMP messages from the running mock CA:
#                               genm.der → genp.der, ir.der → ip.der,
#                               certconf.der → pkiconf.der (one enrolment)
#   start_nginx WWW             nginx (Debian's nginx-light) answering every
#                               POST to /pkix/NAME with the file WWW/pkix/NAME;
#                               sets NGX_PORT, NGX_PID
#
# shellcheck shell=bash

wait_coap() {
        local body='' i
        for ((i = 0; i < 50; i++)); do
                body=$("$COAP_CLIENT" -B 1 -m get "$2/.well-known/core" 2>/dev/null || true)
                [[ $body == *"$3"* ]] && return 0
                sleep 0.1
        done
        fail "$1 does not answer on $2 (last: '$body')"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

capture_messages() {
        local out=$1
        mkdir -p "$out"
        ossl_cmp -cmd genm -ref "$CA_REF" -secret "$CA_SECRET" -reqout "$out/genm.der" -rspout "$out/genp.der" \
                >>"$T/capture.log" 2>&1 || fail "capture: openssl cmp genm"
        ossl_cmp -cmd ir -ref "$CA_REF" -secret "$CA_SECRET" -newkey "$PKI/ee.key" -subject /CN=bench \
                -certout "$out/ee.pem" -trusted "$PKI/trusted.pem" \
                -reqout "$out/ir.der,$out/certconf.der" -rspout "$out/ip.der,$out/pkiconf.der" \
                >>"$T/capture.log" 2>&1 || fail "capture: openssl cmp ir"
        local f
        for f in genm genp ir ip certconf pkiconf; do
                [[ -s $out/$f.der ]] || fail "capture: no $out/$f.der"
        done
}

start_nginx() {
        local www=$1 user_line=''
        command -v nginx >/dev/null || fail "nginx missing: apt-get install nginx-light"
        NGX_PORT=$(free_port tcp)
        mkdir -p "$T/ngx"
        # the worker must read the files in our private temp dir
        ((EUID == 0)) && user_line='user root;'
        # static files cannot be POSTed to, so 405 is turned into the file
        cat >"$T/ngx/nginx.conf" <<NGX
$user_line
worker_processes 1;
pid $T/ngx/nginx.pid;
error_log $T/ngx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $T/ngx/body;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NGX_PORT;
        root $www;
        default_type application/pkixcmp;
        error_page 405 =200 \$uri;
    }
}
NGX
        nginx -c "$T/ngx/nginx.conf" -e "$T/ngx/error.log"
        local i
        for ((i = 0; i < 50; i++)); do [[ -s $T/ngx/nginx.pid ]] && break; sleep 0.1; done
        [[ -s $T/ngx/nginx.pid ]] || fail "nginx did not start (see $T/ngx/error.log)"
        NGX_PID=$(cat "$T/ngx/nginx.pid")
        PIDS+=("$NGX_PID")
}
