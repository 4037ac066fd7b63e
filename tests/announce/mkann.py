#!/usr/bin/python3
"""mkann.py -- make CMP announcement messages (RFC 4210 §5.3.13-16) and CRLs
for cmpgw's tests.

OpenSSL 3.0 can neither make announcements nor answer genm with CRLs, so
this is an independent implementation: the ASN.1 structures of Debian's
python3-pyasn1-modules (rfc4210, rfc2459/rfc5280), signatures from
python3-cryptography.  It stands in for a CA that publishes announcements.

  mkann.py crlann --crl CRL [--crl CRL...]          -o OUT.der  [common]
  mkann.py rann   --issuer-cert CA.pem --serial HEX [--reason N]
                  [--status 4|5] [--revoked-at ISO]  -o OUT.der  [common]
  mkann.py cann   --cert CERT.pem                    -o OUT.der  [common]
  mkann.py ckuann --old-with-new C --new-with-old C --new-with-new C
                                                     -o OUT.der  [common]
      common: --signer-cert S.pem --signer-key S.key [--extracerts F.pem]
              [--tamper] [--unprotected] [--recipient-null]
  mkann.py mkcrl  --ca-cert CA.pem --ca-key CA.key --number N
                  [--revoked HEX[:REASON]]... [--this-update ISO]
                  [--next-update-days D] -o OUT.der|OUT.pem
  mkann.py check  FILE.der --trusted ROOT.pem   verify our own output:
                  type, protection signature over DER(ProtectedPart), chain

Every announcement is signature-protected: protectionAlg ecdsa-with-SHA256
(RFC 4210 §5.1.3.3, RFC 5758 §3.2: parameters absent), sender = the
signer's subject as a directoryName, senderKID = its subjectKeyIdentifier,
a fresh 16-byte transactionID and senderNonce, messageTime now.  The signer
certificate goes first in extraCerts, then --extracerts (duplicates
dropped).  --tamper flips one bit of the signature (the message still
parses; only its protection is wrong).

Certificates and CRLs are embedded byte-for-byte as read (checked after
encoding).  Exit status: 0 ok, 1 error, 2 usage.
"""
import argparse
import datetime
import hashlib
import os
import sys

from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, tag, univ, useful
from pyasn1_modules import rfc2459, rfc2511

# pyasn1-modules 0.2.8 (Debian 12): rfc2511.GeneralName is a stand-in OCTET
# STRING, so CertId (in RevAnnContent) would encode its issuer wrongly.  Give
# CertId the real GeneralName before rfc4210 builds its types from it.
rfc2511.CertId.componentType = namedtype.NamedTypes(
    namedtype.NamedType('issuer', rfc2459.GeneralName()),
    namedtype.NamedType('serialNumber', univ.Integer()))
from pyasn1_modules import rfc4210  # noqa: E402

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtensionOID

ECDSA_SHA256 = univ.ObjectIdentifier("1.2.840.10045.4.3.2")
SHA256_RSA = univ.ObjectIdentifier("1.2.840.113549.1.1.11")
ID_CE_REASON_CODE = univ.ObjectIdentifier("2.5.29.21")
BODY_NAMES = {15: "ckuann", 16: "cann", 17: "rann", 18: "crlann"}


class Error(Exception):
    pass


# ------------------------------------------------------------------ files

def read_pem_or_der_all(path, kind):
    """All DER objects of a PEM (any number of blocks) or one DER file."""
    data = open(path, "rb").read()
    if b"-----BEGIN" in data:
        if kind == "cert":
            objs = x509.load_pem_x509_certificates(data) if hasattr(
                x509, "load_pem_x509_certificates") else _pem_certs(data)
            return [o.public_bytes(serialization.Encoding.DER) for o in objs]
        return [x509.load_pem_x509_crl(data).public_bytes(serialization.Encoding.DER)]
    if kind == "cert":
        x509.load_der_x509_certificate(data)
    else:
        x509.load_der_x509_crl(data)
    return [data]


def _pem_certs(data):
    out, marker = [], b"-----END CERTIFICATE-----"
    for chunk in data.split(marker)[:-1]:
        out.append(x509.load_pem_x509_certificate(chunk + marker + b"\n"))
    return out


def load_cert(path):
    ders = read_pem_or_der_all(path, "cert")
    if not ders:
        raise Error("%s: no certificate" % path)
    return ders[0]


def load_key(path):
    data = open(path, "rb").read()
    try:
        return serialization.load_pem_private_key(data, None)
    except ValueError:
        return serialization.load_der_private_key(data, None)


def write_out(path, der):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(der)
    os.replace(tmp, path)


# ------------------------------------------------------------------ ASN.1

def asn1_cert(der):
    cert, rest = der_decoder.decode(der, asn1Spec=rfc4210.CMPCertificate())
    if rest:
        raise Error("trailing bytes after a certificate")
    return cert


def asn1_crl(der):
    crl, rest = der_decoder.decode(der, asn1Spec=rfc2459.CertificateList())
    if rest:
        raise Error("trailing bytes after a CRL")
    return crl


def asn1_name(cert_der):
    """The subject Name of a certificate, as an rfc2459.Name."""
    subj = x509.load_der_x509_certificate(cert_der).subject.public_bytes()
    name, rest = der_decoder.decode(subj, asn1Spec=rfc2459.Name())
    assert not rest
    return name


def general_name_dn(name):
    gn = rfc2459.GeneralName()
    dn = gn.getComponentByName("directoryName")
    dn.setComponentByPosition(0, name.getComponentByPosition(0))
    gn.setComponentByName("directoryName", dn)
    return gn


def null_dn():
    name = rfc2459.Name()
    name.setComponentByPosition(0, rfc2459.RDNSequence())
    return general_name_dn(name)


def gentime(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ")


def ctx_tag(cls, n, constructed=False):
    return tag.Tag(tag.tagClassContext,
                   tag.tagFormatConstructed if constructed else tag.tagFormatSimple, n)


def build_header(signer_der, recipient_null=True, unprotected=False, key=None):
    h = rfc4210.PKIHeader()
    h["pvno"] = 2   # cmp2000 (RFC 4210)
    h["sender"] = general_name_dn(asn1_name(signer_der))
    h["recipient"] = null_dn()
    h["messageTime"] = h["messageTime"].clone(gentime(datetime.datetime.now(datetime.timezone.utc)))
    if not unprotected:
        alg = h["protectionAlg"]
        if isinstance(key, rsa.RSAPrivateKey):
            alg["algorithm"] = SHA256_RSA
            alg["parameters"] = univ.Null("")
        else:
            # RFC 5758 §3.2: ecdsa-with-SHA256 parameters MUST be absent
            alg["algorithm"] = ECDSA_SHA256
        h["protectionAlg"] = alg
    try:
        skid = x509.load_der_x509_certificate(signer_der).extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest
        h["senderKID"] = h["senderKID"].clone(skid)
    except x509.ExtensionNotFound:
        pass
    h["transactionID"] = h["transactionID"].clone(os.urandom(16))
    h["senderNonce"] = h["senderNonce"].clone(os.urandom(16))
    return h


def sign(key, data):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise Error("only EC and RSA signer keys are supported")


def finish(args, body_name, fill_body, embedded):
    """Build, protect, encode, check and write the PKIMessage."""
    signer_der = load_cert(args.signer_cert)
    key = load_key(args.signer_key)
    pub_signer = x509.load_der_x509_certificate(signer_der).public_key().public_numbers()
    if key.public_key().public_numbers() != pub_signer:
        raise Error("--signer-key does not belong to --signer-cert")
    header = build_header(signer_der, unprotected=args.unprotected, key=key)
    body = rfc4210.PKIBody()
    comp = body.getComponentByName(body_name)
    comp = fill_body(comp)
    body.setComponentByName(body_name, comp)

    msg = rfc4210.PKIMessage()
    msg["header"] = header
    msg["body"] = body
    if not args.unprotected:
        pp = rfc4210.ProtectedPart()
        pp["header"] = header
        pp["infoValue"] = body
        sig = bytearray(sign(key, der_encoder.encode(pp)))
        if args.tamper:
            sig[len(sig) // 2] ^= 0x01
        msg["protection"] = msg["protection"].clone(univ.BitString.fromOctetString(bytes(sig)))
    certs = [signer_der]
    for path in args.extracerts or []:
        for der in read_pem_or_der_all(path, "cert"):
            if der not in certs:
                certs.append(der)
    extra = msg["extraCerts"]
    for i, der in enumerate(certs):
        extra.setComponentByPosition(i, asn1_cert(der))
    msg["extraCerts"] = extra
    out = der_encoder.encode(msg)
    for raw in embedded + certs:
        if raw not in out:
            raise Error("internal: an embedded object did not survive encoding byte-for-byte")
    # our own decoder must read it back completely
    back, rest = der_decoder.decode(out, asn1Spec=rfc4210.PKIMessage())
    if rest or der_encoder.encode(back) != out:
        raise Error("internal: the message does not round-trip")
    write_out(args.out, out)
    print("%s: %s, %d bytes, sha256 %s" % (args.out, body_name, len(out),
                                           hashlib.sha256(out).hexdigest()))


# ------------------------------------------------------------------ bodies

def cmd_crlann(args):
    crls = []
    for path in args.crl:
        crls += read_pem_or_der_all(path, "crl")

    def fill(comp):
        for i, der in enumerate(crls):
            comp.setComponentByPosition(i, asn1_crl(der))
        return comp
    finish(args, "crlann", fill, crls)


def cmd_cann(args):
    der = load_cert(args.cert)

    def fill(comp):
        return _copy_into(comp, asn1_cert(der))
    finish(args, "cann", fill, [der])


def _copy_into(target, source):
    """Fill a (tagged) Sequence from a decoded one of the same type."""
    for name in source.keys() if hasattr(source, "keys") else []:
        if source[name].isValue:
            target[name] = source[name]
    return target


def cmd_ckuann(args):
    ders = [load_cert(args.old_with_new), load_cert(args.new_with_old), load_cert(args.new_with_new)]

    def fill(comp):
        for field, der in zip(("oldWithNew", "newWithOld", "newWithNew"), ders):
            comp[field] = _copy_into(comp[field], asn1_cert(der))
        return comp
    finish(args, "ckuann", fill, ders)


def cmd_rann(args):
    issuer_der = load_cert(args.issuer_cert)
    try:
        serial = int(args.serial, 16)
    except ValueError:
        raise Error("--serial: '%s' is not hexadecimal" % args.serial)
    when = parse_time(args.revoked_at) if args.revoked_at else datetime.datetime.now(datetime.timezone.utc)

    def fill(comp):
        comp["status"] = args.status
        cid = comp["certId"]
        cid["issuer"] = general_name_dn(asn1_name(issuer_der))
        cid["serialNumber"] = serial
        comp["willBeRevokedAt"] = gentime(when)
        comp["badSinceDate"] = gentime(when)
        if args.reason is not None:
            exts = comp["crlDetails"]
            ext = rfc2459.Extension()
            ext["extnID"] = ID_CE_REASON_CODE
            ext["critical"] = False
            ext["extnValue"] = der_encoder.encode(univ.Enumerated(args.reason))
            exts.setComponentByPosition(0, ext)
        return comp
    finish(args, "rann", fill, [])


# ------------------------------------------------------------------ CRLs

REASONS = {
    0: x509.ReasonFlags.unspecified, 1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise, 3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded, 5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold, 8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn, 10: x509.ReasonFlags.aa_compromise,
}


def parse_time(text):
    dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt


def cmd_mkcrl(args):
    ca = x509.load_der_x509_certificate(load_cert(args.ca_cert))
    key = load_key(args.ca_key)
    this = parse_time(args.this_update) if args.this_update else \
        datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    b = (x509.CertificateRevocationListBuilder()
         .issuer_name(ca.subject)
         .last_update(this)
         .next_update(this + datetime.timedelta(days=args.next_update_days))
         .add_extension(x509.CRLNumber(args.number), critical=False))
    try:
        ski = ca.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                            critical=False)
    except x509.ExtensionNotFound:
        pass
    for spec in args.revoked or []:
        parts = spec.split(":", 2)          # the ISO time has colons of its own
        rb = x509.RevokedCertificateBuilder().serial_number(int(parts[0], 16)).revocation_date(
            parse_time(parts[2]) if len(parts) > 2 else this)
        if len(parts) > 1 and parts[1] != "":
            r = int(parts[1])
            if r not in REASONS:
                raise Error("--revoked %s: reason %d is not an RFC 5280 reason code" % (spec, r))
            if r != 0:   # RFC 5280 §5.3.1: unspecified SHOULD be absent
                rb = rb.add_extension(x509.CRLReason(REASONS[r]), critical=False)
        b = b.add_revoked_certificate(rb.build())
    crl = b.sign(key, hashes.SHA256())
    if args.out.endswith(".pem"):
        data = crl.public_bytes(serialization.Encoding.PEM)
    else:
        data = crl.public_bytes(serialization.Encoding.DER)
    if not crl.is_signature_valid(ca.public_key()):
        raise Error("internal: the CRL does not verify")
    write_out(args.out, data)
    print("%s: CRL number %d, %d revoked, thisUpdate %s" % (
        args.out, args.number, len(args.revoked or []), gentime(this)))


# ------------------------------------------------------------------ check

def strip_tag(der):
    """The contents of an explicitly tagged value: the inner TLV."""
    n = der[1]
    return der[2 + (n & 0x7f if n & 0x80 else 0):]


def verify_issued(child, parent):
    pub = parent.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(child.signature_hash_algorithm))
        else:
            pub.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(),
                       child.signature_hash_algorithm)
    except InvalidSignature:
        raise Error("%s: signature by %s does not verify" % (child.subject.rfc4514_string(),
                                                             parent.subject.rfc4514_string()))


def cmd_check(args):
    der = open(args.file, "rb").read()
    msg, rest = der_decoder.decode(der, asn1Spec=rfc4210.PKIMessage())
    if rest:
        raise Error("%d trailing bytes" % len(rest))
    if der_encoder.encode(msg) != der:
        raise Error("not DER (does not re-encode identically)")
    body = msg["body"]
    name = body.getName()
    print("type %s" % name)
    if not msg["protection"].isValue:
        raise Error("unprotected")
    alg = msg["header"]["protectionAlg"]["algorithm"]
    extra = msg["extraCerts"]
    if not extra.isValue or len(extra) == 0:
        raise Error("no extraCerts: cannot find the protection certificate")
    certs = [x509.load_der_x509_certificate(der_encoder.encode(c)) for c in extra]
    signer = certs[0]
    pp = rfc4210.ProtectedPart()
    pp["header"] = msg["header"]
    pp["infoValue"] = body
    tbs = der_encoder.encode(pp)
    sig = msg["protection"].asOctets()
    pub = signer.public_key()
    try:
        if alg == ECDSA_SHA256:
            pub.verify(sig, tbs, ec.ECDSA(hashes.SHA256()))
        elif alg == SHA256_RSA:
            pub.verify(sig, tbs, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise Error("protectionAlg %s not supported here" % alg)
    except InvalidSignature:
        raise Error("protection signature does NOT verify")
    print("protection ok (signer %s)" % signer.subject.rfc4514_string())
    sender = der_encoder.encode(msg["header"]["sender"]["directoryName"][0])
    if sender != signer.subject.public_bytes():
        raise Error("sender is not the signer's subject")
    if args.trusted:
        roots = [x509.load_der_x509_certificate(d) for d in read_pem_or_der_all(args.trusted, "cert")]
        cur, seen = signer, 0
        pool = certs[1:]
        while True:
            anchor = [r for r in roots if r.subject == cur.issuer]
            if anchor:
                verify_issued(cur, anchor[0])
                break
            nxt = [c for c in pool if c.subject == cur.issuer]
            seen += 1
            if not nxt or seen > 8:
                raise Error("no chain from %s to --trusted" % cur.subject.rfc4514_string())
            verify_issued(cur, nxt[0])
            cur = nxt[0]
        print("chain ok")
    if name == "crlann":
        for c in body["crlann"]:
            crl = x509.load_der_x509_crl(der_encoder.encode(c))
            num = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            print("crl issuer %s number %d revoked %d" % (crl.issuer.rfc4514_string(), num, len(crl)))
    elif name == "rann":
        print("rann serial %X status %d" % (int(body["rann"]["certId"]["serialNumber"]),
                                            int(body["rann"]["status"])))
    elif name == "cann":
        c = x509.load_der_x509_certificate(strip_tag(der_encoder.encode(body["cann"])))
        print("cann subject %s" % c.subject.rfc4514_string())


# ------------------------------------------------------------------ main

def main():
    p = argparse.ArgumentParser(prog="mkann.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--signer-cert", required=True)
        sp.add_argument("--signer-key", required=True)
        sp.add_argument("--extracerts", action="append", help="PEM file(s) after the signer certificate")
        sp.add_argument("--tamper", action="store_true", help="flip one bit of the signature")
        sp.add_argument("--unprotected", action="store_true", help="no protection (negative tests)")
        sp.add_argument("-o", "--out", required=True)

    sp = sub.add_parser("crlann")
    sp.add_argument("--crl", action="append", required=True)
    common(sp)
    sp = sub.add_parser("rann")
    sp.add_argument("--issuer-cert", required=True)
    sp.add_argument("--serial", required=True, help="hex")
    sp.add_argument("--reason", type=int)
    sp.add_argument("--status", type=int, default=5, choices=(4, 5),
                    help="4 revocationWarning, 5 revocationNotification (default)")
    sp.add_argument("--revoked-at", help="ISO 8601 time (default now)")
    common(sp)
    sp = sub.add_parser("cann")
    sp.add_argument("--cert", required=True)
    common(sp)
    sp = sub.add_parser("ckuann")
    sp.add_argument("--old-with-new", required=True)
    sp.add_argument("--new-with-old", required=True)
    sp.add_argument("--new-with-new", required=True)
    common(sp)
    sp = sub.add_parser("mkcrl")
    sp.add_argument("--ca-cert", required=True)
    sp.add_argument("--ca-key", required=True)
    sp.add_argument("--number", type=int, required=True)
    sp.add_argument("--revoked", action="append", metavar="HEX[:REASON[:ISOTIME]]")
    sp.add_argument("--this-update", help="ISO 8601 (default now)")
    sp.add_argument("--next-update-days", type=int, default=7)
    sp.add_argument("-o", "--out", required=True)
    sp = sub.add_parser("check")
    sp.add_argument("file")
    sp.add_argument("--trusted")
    args = p.parse_args()
    try:
        {"crlann": cmd_crlann, "rann": cmd_rann, "cann": cmd_cann, "ckuann": cmd_ckuann,
         "mkcrl": cmd_mkcrl, "check": cmd_check}[args.cmd](args)
    except (Error, OSError, ValueError) as e:
        print("mkann.py: %s" % e, file=sys.stderr)
        return 1
    except PyAsn1Error as e:
        print("mkann.py: ASN.1: %s" % str(e)[:400], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
