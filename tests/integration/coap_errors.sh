#!/usr/bin/env bash
# coap_errors: the CoAP error contract of PRODUCT.md ("CoAP interface"),
# driven with coap-client-openssl against cmpgwd with OpenSSL's mock CA
# behind it.  Every error must carry a diagnostic payload.  Positive checks
# (a valid request gets 2.04 + a PKIMessage) make sure the error answers are
# not the gateway's only answer.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
require_gw
require_cmd "$COAP_CLIENT" openssl python3

make_pki
start_ca "$PKI"
capture_requests "$T/req"
R=$T/req

write_config "$T/gw.json" "" '{ "max_message_size": 4096 }'
start_gw "$T/gw.json"
CMP=$GW_URI/.well-known/cmp

step "GET /.well-known/core lists the CMP resources with ct=259"
coap_req core -m get "$GW_URI/.well-known/core"
expect_eq "$COAP_CODE" 2.05 "GET /.well-known/core"
links=$(<"$COAP_BODY")
expect_contains "$links" '</.well-known/cmp>' "link format"
expect_contains "$links" 'ct=259' "link format"
# every link to a CMP resource says ct=259
python3 - "$links" <<'PY' || fail "a CMP link without ct=259: $links"
import sys
links = [l.strip() for l in sys.argv[1].split(",")]
cmp = [l for l in links if l.startswith("</.well-known/cmp")]
bad = [l for l in cmp if "ct=259" not in [p.strip() for p in l.split(";")[1:]]]
sys.exit(1 if not cmp or bad else 0)
PY

step "positive: a captured ir on /.well-known/cmp/ir gets 2.04 and a PKIMessage"
expect_code ok-ir 2.04 -m post -t 259 -f "$R/ir.der" "$CMP/ir"
t=$(pkimsg_type "$COAP_BODY") || fail "ir response is not a PKIMessage: $t"
[[ $t == ip || $t == error ]] || fail "ir answered with body $t"
log "ir -> $t"

step "positive: a captured genm on /.well-known/cmp, no Content-Format at all"
expect_code ok-genm-nocf 2.04 -m post -f "$R/genm.der" "$CMP"
t=$(pkimsg_type "$COAP_BODY") || fail "genm response is not a PKIMessage: $t"
expect_eq "$t" genp "genm response body"

step "4.05: methods other than POST on CMP resources"
expect_code put-cmp 4.05 -m put -t 259 -f "$R/genm.der" "$CMP"
expect_code get-cmp 4.05 -m get "$CMP"
expect_code delete-ir 4.05 -m delete "$CMP/ir"
expect_code get-ir 4.05 -m get "$CMP/ir"

step "4.05: POST on ann (only GET is allowed there)"
expect_code post-ann 4.05 -m post -t 259 -f "$R/genm.der" "$CMP/ann"
expect_code put-ann 4.05 -m put -t 259 -f "$R/genm.der" "$CMP/ann"
expect_code delete-ann 4.05 -m delete "$CMP/ann"

step "4.15: Content-Format present and not 259"
expect_code cf-text 4.15 -m post -t 0 -f "$R/genm.der" "$CMP"
expect_code cf-octet 4.15 -m post -t 42 -f "$R/ir.der" "$CMP/ir"

step "4.00: a body that is not DER"
head -c 300 /dev/urandom >"$T/garbage.bin"
printf '\x01' | dd of="$T/garbage.bin" bs=1 count=1 conv=notrunc 2>/dev/null # never a SEQUENCE
expect_code garbage 4.00 -m post -t 259 -f "$T/garbage.bin" "$CMP"
printf 'hello' >"$T/text.bin"
expect_code text 4.00 -m post -t 259 -f "$T/text.bin" "$CMP"

step "4.00: an empty body"
: >"$T/empty.bin"
expect_code empty 4.00 -m post -t 259 -f "$T/empty.bin" "$CMP"

step "4.00: a DER PKIMessage followed by one extra byte"
cat "$R/genm.der" >"$T/trailing.bin"
printf '\x00' >>"$T/trailing.bin"
expect_code trailing 4.00 -m post -t 259 -f "$T/trailing.bin" "$CMP"

step "4.00: a truncated DER PKIMessage (its last 10 bytes cut)"
gsize=$(stat -c %s "$R/genm.der")
head -c $((gsize - 10)) "$R/genm.der" >"$T/truncated.bin"
expect_code truncated 4.00 -m post -t 259 -f "$T/truncated.bin" "$CMP"

step "4.00: a DER SEQUENCE that is no PKIMessage (a certificate)"
openssl x509 -in "$PKI/ee.pem" -outform DER -out "$T/cert.der"
expect_code cert-der 4.00 -m post -t 259 -f "$T/cert.der" "$CMP"

step "4.13 with Size1: 5000 bytes over a 4096-byte limit, block-wise"
head -c 5000 /dev/zero | tr '\0' 'A' >"$T/big.bin"
expect_code too-big 4.13 -m post -t 259 -b 1024 -f "$T/big.bin" "$CMP"
size1=$(coap_option Size1)
expect_nonempty "$size1" "Size1 option of the 4.13 answer ($COAP_RESP)"
expect_eq "$size1" 4096 "Size1 of the 4.13 answer"

# vm KEY: VmRSS / VmSize of cmpgwd in kB
vm() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$GW_PID/status"; }
# udp_reply FILE N: the N-th line of coap_udp's output that has a code or is
# "reply none" (empty ACKs skipped)
udp_reply() { grep -E '^reply (none|.* c:[1-5]\.)' "$1" | sed -n "$2p"; }
# udp_expect FILE N CODE WHAT: that line has CODE, and a 4.xx/5.xx a payload
udp_expect() {
        local line
        line=$(udp_reply "$1" "$2")
        [[ $line == *" c:$3 "* ]] || { log "coap_udp output:"; cat "$1" >&2; fail "$4: expected $3, got '${line:-nothing}'"; }
        if [[ $3 == [45].* && $line != *" :: '"?* ]]; then
                fail "$4: $3 without a diagnostic payload: $line"
        fi
        log "ok: $4 -> ${line:0:140}"
}

step "4.13 at once: block 0 claims Size1 = 4 GB (4294967295); memory does not grow"
rss0=$(vm VmRSS) size0=$(vm VmSize)
t0=$(date +%s%N)
coap_udp 127.0.0.1 "$GW_PORT" 5 \
        "t=CON;path=.well-known/cmp;cf=259;b1=0:1:6;size1=4294967295;body=@$R/cr.der:0:1024" \
        >"$T/size1-4g.udp" 2>>"$T/udp.err"
ms=$((($(date +%s%N) - t0) / 1000000))
udp_expect "$T/size1-4g.udp" 1 4.13 "Size1 4 GB claim"
line=$(udp_reply "$T/size1-4g.udp" 1)
[[ $line == *" Size1:4096 "* ]] || fail "4.13 to the 4 GB claim without Size1:4096: $line"
((ms < 1500)) || fail "4.13 to the 4 GB claim took $ms ms (expected at once)"
# ten more claims, each a new transfer (own socket and Request-Tag)
for i in 1 2 3 4 5 6 7 8 9 10; do
        coap_udp 127.0.0.1 "$GW_PORT" 3 \
                "t=CON;path=.well-known/cmp;cf=259;b1=0:1:6;size1=4294967295;rtag=$(printf %02x "$i");body=@$R/cr.der:0:1024" \
                >"$T/size1-4g-$i.udp" 2>>"$T/udp.err"
        udp_expect "$T/size1-4g-$i.udp" 1 4.13 "Size1 4 GB claim #$i"
done
gw_alive
rss1=$(vm VmRSS) size1=$(vm VmSize)
log "cmpgwd VmRSS ${rss0} -> ${rss1} kB, VmSize ${size0} -> ${size1} kB"
((rss1 - rss0 < 16384)) || fail "VmRSS grew by $((rss1 - rss0)) kB after 4 GB Size1 claims"
((size1 - size0 < 65536)) || fail "VmSize grew by $((size1 - size0)) kB after 4 GB Size1 claims"

step "4.13 with Size1: a block-wise body without Size1 that grows past 4096 bytes"
head -c 6000 /dev/zero | tr '\0' 'B' >"$T/big6k.bin"
msgs=()
for n in 0 1 2 3 4; do
        msgs+=("t=CON;tok=4131;path=.well-known/cmp;cf=259;b1=$n:1:6;body=@$T/big6k.bin:$((n * 1024)):1024")
done
coap_udp 127.0.0.1 "$GW_PORT" 5 "${msgs[@]}" >"$T/grow.udp" 2>>"$T/udp.err"
for n in 1 2 3; do udp_expect "$T/grow.udp" "$n" 2.31 "oversized block-wise body, block $((n - 1))"; done
# block 3 (bytes 3072..4095, M=1) announces more than 4096 bytes: 4.13 there
# or at block 4 (bytes 4096..5119) at the latest
n=4
[[ $(udp_reply "$T/grow.udp" 4) == *" c:2.31 "* ]] && n=5
udp_expect "$T/grow.udp" "$n" 4.13 "oversized block-wise body, block $((n - 1))"
line=$(udp_reply "$T/grow.udp" "$n")
[[ $line == *" Size1:4096 "* ]] || fail "4.13 to the growing body without Size1:4096: $line"

step "control: a block-wise body of exactly 4096 bytes is within the limit (4.00 for its content, not 4.13)"
msgs=()
for n in 0 1 2 3; do
        msgs+=("t=CON;tok=4132;path=.well-known/cmp;cf=259;b1=$n:$((n < 3 ? 1 : 0)):6;body=@$T/big6k.bin:$((n * 1024)):1024")
done
coap_udp 127.0.0.1 "$GW_PORT" 5 "${msgs[@]}" >"$T/limit.udp" 2>>"$T/udp.err"
for n in 1 2 3; do udp_expect "$T/limit.udp" "$n" 2.31 "4096-byte body, block $((n - 1))"; done
udp_expect "$T/limit.udp" 4 4.00 "4096-byte body of 'B's, last block"

step "4.08: Block1 with a gap (block 0, then block 2)"
gsize=$(stat -c %s "$R/genm.der")
blk="t=CON;tok=4081;path=.well-known/cmp;cf=259;size1=$gsize"
coap_udp 127.0.0.1 "$GW_PORT" 5 \
        "$blk;b1=0:1:0;body=@$R/genm.der:0:16" \
        "$blk;b1=2:1:0;body=@$R/genm.der:32:16" >"$T/gap.udp" 2>>"$T/udp.err"
udp_expect "$T/gap.udp" 1 2.31 "Block1 block 0"
udp_expect "$T/gap.udp" 2 4.08 "Block1 block 2 after block 0"
step "control: the same hand-made Block1 framing without the gap gets 2.04 + genp"
msgs=()
nblk=$(((gsize + 15) / 16))
for ((n = 0; n < nblk; n++)); do
        more=$((n < nblk - 1 ? 1 : 0))
        msgs+=("$blk;b1=$n:$more:0;body=@$R/genm.der:$((n * 16)):16")
done
coap_udp 127.0.0.1 "$GW_PORT" 10 "${msgs[@]}" >"$T/nogap.udp" 2>>"$T/udp.err"
for ((n = 1; n < nblk; n++)); do
        [[ $(udp_reply "$T/nogap.udp" "$n") == *" c:2.31 "* ]] ||
                udp_expect "$T/nogap.udp" "$n" 2.31 "Block1 block $((n - 1)) of $nblk"
done
udp_expect "$T/nogap.udp" "$nblk" 2.04 "Block1 transfer of the genm in $nblk blocks"
grep -qE "c:2\.04 .*Content-Format:259" "$T/nogap.udp" || fail "2.04 after Block1 without Content-Format 259: $(cat "$T/nogap.udp")"

step "4.04: an unknown operation"
expect_code unknown-op 4.04 -m post -t 259 -f "$R/genm.der" "$CMP/foo"
expect_code unknown-deep 4.04 -m post -t 259 -f "$R/genm.der" "$CMP/ir/extra"

step "4.00: a body foreign to the operation (rr on ir, ir on rr, genm on kur)"
expect_code rr-on-ir 4.00 -m post -t 259 -f "$R/rr.der" "$CMP/ir"
expect_code ir-on-rr 4.00 -m post -t 259 -f "$R/ir.der" "$CMP/rr"
expect_code cr-on-p10 4.00 -m post -t 259 -f "$R/cr.der" "$CMP/p10"

step "a certConf belongs to every enrolment: forwarded from /cr (2.04 + the CA's PKIMessage)"
expect_code certconf-cr 2.04 -m post -t 259 -f "$R/certconf-ir.der" "$CMP/cr"
t=$(pkimsg_type "$COAP_BODY") || fail "certConf on /cr: the answer is not a PKIMessage: $t"
[[ $t == pkiconf || $t == error ]] || fail "certConf on /cr answered with body $t"
log "ok: certConf on /cr -> 2.04 $t"

# remsg IN OUT TAG [CONTENT_HEX]: a PKIMessage with IN's header and body
# [TAG] (content CONTENT_HEX, default IN's body content), unprotected.  The
# gateway looks at the body type; the CA answers such a message with an
# error PKIMessage, which the gateway relays with 2.04.
remsg() {
        python3 - "$@" <<'PY'
import sys
def tlv(b, i):
    tag = b[i]; n = b[i + 1]; j = i + 2
    if n & 0x80:
        k = n & 0x7f; n = int.from_bytes(b[j:j + k], "big"); j += k
    return tag, i, j, j + n          # tag, start, content start, end
def enc(tag, content):
    n = len(content)
    if n < 0x80: l = bytes([n])
    else:
        nb = n.to_bytes((n.bit_length() + 7) // 8, "big"); l = bytes([0x80 | len(nb)]) + nb
    return bytes([tag]) + l + content
b = open(sys.argv[1], "rb").read()
_, _, s, e = tlv(b, 0)
_, hs, _, he = tlv(b, s)
_, _, bs, be = tlv(b, he)
content = bytes.fromhex(sys.argv[4]) if len(sys.argv) > 4 else b[bs:be]
open(sys.argv[2], "wb").write(enc(0x30, b[hs:he] + enc(0xa0 | int(sys.argv[3]), content)))
PY
}
remsg "$R/genm.der" "$T/pollreq.der" 25 30053003020100
remsg "$R/genm.der" "$T/errormsg.der" 23 30053003020102
remsg "$R/genm.der" "$T/genp.der" 22
expect_eq "$(pkimsg_type "$T/pollreq.der")" pollReq "crafted pollReq"
expect_eq "$(pkimsg_type "$T/errormsg.der")" error "crafted error"
expect_eq "$(pkimsg_type "$T/genp.der")" genp "crafted genp"

step "pollReq and error belong to every enrolment: forwarded (2.04 + a PKIMessage)"
for m in pollreq:ir pollreq:kur pollreq:p10 errormsg:cr errormsg:ir errormsg:rr errormsg:crts; do
        expect_code "${m/:/-on-}" 2.04 -m post -t 259 -f "$T/${m%%:*}.der" "$CMP/${m#*:}"
        t=$(pkimsg_type "$COAP_BODY") || fail "${m%%:*} on /${m#*:}: the answer is not a PKIMessage: $t"
done

step "4.00: foreign bodies (pollReq on rr, certConf on crts, genm on ir, a genp response on the bare resource)"
expect_code pollreq-on-rr 4.00 -m post -t 259 -f "$T/pollreq.der" "$CMP/rr"
expect_code certconf-on-crts 4.00 -m post -t 259 -f "$R/certconf-ir.der" "$CMP/crts"
expect_code genm-on-ir 4.00 -m post -t 259 -f "$R/genm.der" "$CMP/ir"
expect_code genp-bare 4.00 -m post -t 259 -f "$T/genp.der" "$CMP"

gw_alive
stop_gw

step "two labelled upstreams, no default: an unknown label and no label are 4.04"
GW_PORT=''
write_config "$T/gw2.json" "[
    { \"name\": \"a\", \"uri\": \"$CA_URI\", \"labels\": [ \"a\" ], \"timeout\": 5 },
    { \"name\": \"b\", \"uri\": \"$CA_URI\", \"labels\": [ \"b\" ], \"timeout\": 5 } ]"
start_gw "$T/gw2.json"
CMP=$GW_URI/.well-known/cmp
expect_code label-unknown 4.04 -m post -t 259 -f "$R/genm.der" "$CMP/p/zzz"
expect_code label-unknown-op 4.04 -m post -t 259 -f "$R/genm.der" "$CMP/p/zzz/crts"
expect_code no-label-no-default 4.04 -m post -t 259 -f "$R/genm.der" "$CMP"
expect_code label-a 2.04 -m post -t 259 -f "$R/genm.der" "$CMP/p/a"
expect_eq "$(pkimsg_type "$COAP_BODY")" genp "genm via /p/a"
expect_code label-b-crts 2.04 -m post -t 259 -f "$R/genm.der" "$CMP/p/b/crts"
expect_eq "$(pkimsg_type "$COAP_BODY")" genp "genm via /p/b/crts"
gw_alive
log "PASS"
