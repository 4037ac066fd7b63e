#!/usr/bin/env bash
# deps.sh -- make sure the Debian (12) packages cmpgw needs are installed.
# As root: installs the missing ones with apt-get (noninteractive).
# Otherwise: prints the apt-get line to run and exits 1.
# `tools/deps.sh --list` prints the package list and exits.
set -euo pipefail

build=(meson ninja-build gcc pkg-config libcoap3-dev libcurl4-openssl-dev
       libssl-dev libsystemd-dev libjson-c-dev libsqlite3-dev)
# run time and tests: coap-client-openssl, openssl cmp (the mock CA),
# dbus-daemon, python3 (test fixtures), clang (fuzzing),
# systemd (systemd-analyze verify of the unit), iproute2 + util-linux
# (ip, unshare: the multicast test runs in a network namespace of its own),
# python3-pyasn1-modules + python3-cryptography (tests/announce/mkann.py
# makes the announcement messages OpenSSL 3.0 cannot make), valgrind
# (tests/gateway/valgrind_loop.sh)
runtime=(libcoap3-bin openssl dbus python3 clang systemd iproute2 util-linux sqlite3
         python3-pyasn1-modules python3-cryptography valgrind)
pkgs=("${build[@]}" "${runtime[@]}")

if [[ ${1:-} == --list ]]; then
        printf '%s\n' "${pkgs[@]}"
        exit 0
fi

missing=()
for p in "${pkgs[@]}"; do
        st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [[ $st == installed ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

if ((EUID != 0)); then
        echo "deps.sh: missing packages: ${missing[*]}" >&2
        echo "deps.sh: run as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
