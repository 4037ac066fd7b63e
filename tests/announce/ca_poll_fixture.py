#!/usr/bin/python3
"""ca_poll_fixture.py -- a test fixture that STANDS IN FOR A CA answering
RFC 9483 section 4.3 support messages over HTTP (RFC 6712), for cmpgw's
genm polling test (tests/announce/poll.sh).

No real peer can play this part: OpenSSL 3.0's `openssl cmp` server answers
genm by echoing the requested InfoTypes without values (PEERS.md).  This
fixture is an independent implementation built on Debian's
python3-pyasn1-modules (RFC 4210 structures) and python3-cryptography, with
mkann.py's helpers; it is not the code under test.

  ca_poll_fixture.py --port N --dir STATE --signer-cert S.pem --signer-key S.key
                     [--extracerts F.pem] --trusted ROOT.pem

It listens on 127.0.0.1:N and answers every POSTed genm with a signed genp
(sender = the signer, transactionID of the genm, recipNonce = its
senderNonce, signer and --extracerts in extraCerts).  What it answers is
read from STATE at each request, so a test switches content while it runs:

  STATE/cacerts.pem          id-it-caCerts: these certificates (absent: no value)
  STATE/root-update/{new-with-new,new-with-old,old-with-new}.pem
                             id-it-rootCaCert -> id-it-rootCaKeyUpdate
                             (a missing file leaves that field out;
                             no new-with-new.pem: no value)
  STATE/crl.der              id-it-crlStatusList -> id-it-crls: this CRL,
                             unless the genm's CRLStatus for its issuer
                             carries a thisUpdate not older than the CRL's
                             (then no value, as a CA would); with
                             STATE/crl-always it is sent regardless
  STATE/mode                 "ok" (default), "badsig" (one bit of the
                             protection flipped), "wrongtid" (another
                             transactionID)

Each genm is checked the way a CA would: its signature over
DER(ProtectedPart) with the first extraCerts certificate, and that
certificate's chain to --trusted.  One JSON line per request goes to
STATE/requests.log: path, infotype, protection ("ok" or why not), signer,
crl_status (issuer, this_update), root (subject of a rootCaCert value),
answered ("value", "absent" or "refused") and mode.
"""
import argparse
import datetime
import http.server
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mkann  # noqa: E402  (also fixes pyasn1-modules' CertId first)

from cryptography import x509  # noqa: E402
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding  # noqa: E402
from pyasn1.codec.der import decoder as der_decoder  # noqa: E402
from pyasn1.codec.der import encoder as der_encoder  # noqa: E402
from pyasn1.type import namedtype, tag, univ  # noqa: E402
from pyasn1_modules import rfc2459, rfc4210  # noqa: E402

ID_IT = "1.3.6.1.5.5.7.4."
CA_CERTS, ROOT_CA_KEY_UPDATE, ROOT_CA_CERT = ID_IT + "17", ID_IT + "18", ID_IT + "20"
CRL_STATUS_LIST, CRLS = ID_IT + "22", ID_IT + "23"
GENP = "genp" if "genp" in [t.name for t in rfc4210.PKIBody.componentType.namedTypes] else "gen"


def ctx(n):
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, n)


# RFC 9483 section 4.3 / RFC 9480 (EXPLICIT TAGS); not in pyasn1-modules 0.2.8
class Certificates(univ.SequenceOf):
    componentType = rfc4210.CMPCertificate()


class CertificateLists(univ.SequenceOf):
    componentType = rfc2459.CertificateList()


class RootCaKeyUpdateContent(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("newWithNew", rfc4210.CMPCertificate()),
        namedtype.OptionalNamedType("newWithOld", rfc4210.CMPCertificate().subtype(explicitTag=ctx(0))),
        namedtype.OptionalNamedType("oldWithNew", rfc4210.CMPCertificate().subtype(explicitTag=ctx(1))))


class CRLSource(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("dpn", rfc2459.DistributionPointName().subtype(explicitTag=ctx(0))),
        namedtype.NamedType("issuer", rfc2459.GeneralNames().subtype(explicitTag=ctx(1))))


class CRLStatus(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("source", CRLSource()),
        namedtype.OptionalNamedType("thisUpdate", rfc2459.Time()))


class CRLStatusList(univ.SequenceOf):
    componentType = CRLStatus()


class Refused(Exception):
    pass


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


SHORT = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU"}


def name_text(der):
    """A DER Name as RFC 4514-like text, for the request log."""
    name, _ = der_decoder.decode(der, asn1Spec=rfc2459.Name())
    parts = []
    for rdn in name[0]:
        for atv in rdn:
            value, _ = der_decoder.decode(bytes(atv["value"]))
            parts.append("%s=%s" % (SHORT.get(str(atv["type"]), str(atv["type"])), str(value)))
    return ",".join(reversed(parts))


# ------------------------------------------------------------ the genm

def check_protection(msg, trusted):
    """The genm's signature and its signer's chain, as a CA checks them."""
    if not msg["protection"].isValue or not msg["extraCerts"].isValue or len(msg["extraCerts"]) == 0:
        raise Refused("no signature protection with extraCerts")
    certs = [x509.load_der_x509_certificate(der_encoder.encode(c)) for c in msg["extraCerts"]]
    signer = certs[0]
    pp = rfc4210.ProtectedPart()
    pp["header"] = msg["header"]
    pp["infoValue"] = msg["body"]
    tbs, sig = der_encoder.encode(pp), msg["protection"].asOctets()
    try:
        pub = signer.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, tbs, ec.ECDSA(hashes.SHA256()))
        else:
            pub.verify(sig, tbs, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise Refused("the genm's signature does not verify")
    cur, pool = signer, certs[1:]
    for _ in range(8):
        anchor = [r for r in trusted if r.subject == cur.issuer]
        if anchor:
            mkann.verify_issued(cur, anchor[0])
            return signer.subject.rfc4514_string()
        nxt = [c for c in pool if c.subject == cur.issuer]
        if not nxt:
            break
        mkann.verify_issued(cur, nxt[0])
        cur = nxt[0]
    raise Refused("no chain from %s to the trust anchors" % signer.subject.rfc4514_string())


def crl_statuses(value):
    out = []
    lst, _ = der_decoder.decode(bytes(value), asn1Spec=CRLStatusList())
    for st in lst:
        src = st["source"]
        issuer = None
        if src.getName() == "issuer":
            for gn in src["issuer"]:
                if gn.getName() == "directoryName":
                    # GeneralName's directoryName is [4] EXPLICIT: the Name inside
                    issuer = mkann.strip_tag(der_encoder.encode(gn["directoryName"]))
        this = None
        if st["thisUpdate"].isValue:
            this = st["thisUpdate"].getComponent().asDateTime.astimezone(datetime.timezone.utc)
        out.append((issuer, this))
    return out


# ------------------------------------------------------------ the answer

def ca_certs_value(state):
    pem = read(os.path.join(state, "cacerts.pem"))
    if not pem:
        return None
    seq = Certificates()
    for i, der in enumerate(mkann.read_pem_or_der_all(os.path.join(state, "cacerts.pem"), "cert")):
        seq.setComponentByPosition(i, mkann.asn1_cert(der))
    return der_encoder.encode(seq)


def root_update_value(state):
    d = os.path.join(state, "root-update")
    if not os.path.exists(os.path.join(d, "new-with-new.pem")):
        return None
    v = RootCaKeyUpdateContent()
    for field, f in (("newWithNew", "new-with-new.pem"), ("newWithOld", "new-with-old.pem"),
                     ("oldWithNew", "old-with-new.pem")):
        if os.path.exists(os.path.join(d, f)):
            v[field] = mkann._copy_into(v[field], mkann.asn1_cert(mkann.load_cert(os.path.join(d, f))))
    return der_encoder.encode(v)


def crls_value(state, statuses):
    der = read(os.path.join(state, "crl.der"))
    if not der:
        return None
    crl = x509.load_der_x509_crl(der)
    issuer = crl.issuer.public_bytes()
    if not os.path.exists(os.path.join(state, "crl-always")):
        for iss, this in statuses:
            last = crl.last_update.replace(tzinfo=datetime.timezone.utc)
            if iss == issuer and this is not None and this >= last:
                return None     # RFC 9483 section 4.3.4: nothing newer
    seq = CertificateLists()
    seq.setComponentByPosition(0, mkann.asn1_crl(der))
    return der_encoder.encode(seq)


def build_genp(args, req, answer_oid, value, mode):
    signer_der = mkann.load_cert(args.signer_cert)
    key = mkann.load_key(args.signer_key)
    h = mkann.build_header(signer_der, key=key)
    rh = req["header"]
    h["recipient"] = rh["sender"]
    tid = bytes(rh["transactionID"])
    if mode == "wrongtid":
        tid = os.urandom(len(tid))
    h["transactionID"] = h["transactionID"].clone(tid)
    h["recipNonce"] = h["recipNonce"].clone(bytes(rh["senderNonce"]))
    body = rfc4210.PKIBody()
    # pyasn1-modules 0.2.8 names the genp alternative [22] "gen"
    genp = body.getComponentByName(GENP)
    itav = rfc4210.InfoTypeAndValue()
    itav["infoType"] = univ.ObjectIdentifier(answer_oid)
    if value is not None:
        itav["infoValue"] = univ.Any(value)
    genp.setComponentByPosition(0, itav)
    body.setComponentByName(GENP, genp)
    msg = rfc4210.PKIMessage()
    msg["header"] = h
    msg["body"] = body
    pp = rfc4210.ProtectedPart()
    pp["header"] = h
    pp["infoValue"] = body
    sig = bytearray(mkann.sign(key, der_encoder.encode(pp)))
    if mode == "badsig":
        sig[len(sig) // 2] ^= 0x01
    msg["protection"] = msg["protection"].clone(univ.BitString.fromOctetString(bytes(sig)))
    certs = [signer_der]
    for der in mkann.read_pem_or_der_all(args.extracerts, "cert") if args.extracerts else []:
        if der not in certs:
            certs.append(der)
    extra = msg["extraCerts"]
    for i, der in enumerate(certs):
        extra.setComponentByPosition(i, mkann.asn1_cert(der))
    msg["extraCerts"] = extra
    return der_encoder.encode(msg)


def answer(args, trusted, data, rec):
    req, rest = der_decoder.decode(data, asn1Spec=rfc4210.PKIMessage())
    if rest or req["body"].getName() != "genm":
        raise Refused("not one genm PKIMessage")
    rec["protection"] = "?"
    rec["signer"] = check_protection(req, trusted)
    rec["protection"] = "ok"
    itavs = req["body"]["genm"]
    if len(itavs) != 1:
        raise Refused("RFC 9483 section 4.3: one InfoTypeAndValue per genm, got %d" % len(itavs))
    oid = str(itavs[0]["infoType"])
    has_value = itavs[0]["infoValue"].isValue
    rec["infotype"] = oid
    state = args.dir
    mode = (read(os.path.join(state, "mode")) or b"ok").decode().strip()
    rec["mode"] = mode
    if oid == CA_CERTS:
        out_oid, value = CA_CERTS, ca_certs_value(state)
    elif oid == ROOT_CA_CERT:
        if has_value:
            rec["root"] = x509.load_der_x509_certificate(bytes(itavs[0]["infoValue"])).subject.rfc4514_string()
        out_oid, value = ROOT_CA_KEY_UPDATE, root_update_value(state)
    elif oid == CRL_STATUS_LIST:
        if not has_value:
            raise Refused("id-it-crlStatusList without a value")
        statuses = crl_statuses(itavs[0]["infoValue"])
        rec["crl_status"] = [{"issuer": name_text(i) if i else None,
                              "this_update": t.isoformat() if t else None} for i, t in statuses]
        out_oid, value = CRLS, crls_value(state, statuses)
    else:
        raise Refused("info type %s is not served here" % oid)
    rec["answered"] = "absent" if value is None else "value"
    return build_genp(args, req, out_oid, value, mode)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        rec = {"path": self.path}
        try:
            out = answer(self.server.args, self.server.trusted, data, rec)
        except Exception as e:  # Refused, mkann.Error, ASN.1 errors: a CA answers, it does not crash
            rec["answered"] = "refused"
            rec["error"] = str(e)[:300]
            self.server.log(rec)
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.log(rec)
        self.send_response(200)
        self.send_header("Content-Type", "application/pkixcmp")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, fmt, *a):
        sys.stderr.write("ca_poll_fixture: %s\n" % (fmt % a))


class Server(http.server.HTTPServer):
    def log(self, rec):
        with open(os.path.join(self.args.dir, "requests.log"), "a") as f:
            f.write(json.dumps(rec) + "\n")


def main():
    p = argparse.ArgumentParser(prog="ca_poll_fixture.py", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--signer-cert", required=True)
    p.add_argument("--signer-key", required=True)
    p.add_argument("--extracerts")
    p.add_argument("--trusted", required=True)
    args = p.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.args = args
    srv.trusted = [x509.load_der_x509_certificate(d) for d in mkann.read_pem_or_der_all(args.trusted, "cert")]
    sys.stderr.write("ca_poll_fixture: standing in for a CA on http://127.0.0.1:%d/ (OpenSSL 3.0 cannot answer "
                     "these genm)\n" % args.port)
    srv.serve_forever()


if __name__ == "__main__":
    main()
