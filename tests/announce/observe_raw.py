#!/usr/bin/python3
"""observe_raw.py HOST PORT CMPGWCTL ANN_B ANN_C ANN_D -- RFC 7641 on ann,
seen by a raw CoAP client (no real peer sends an RST to a notification, or
re-registers with the same token and another block size, on demand).
observe_raw.py HOST PORT CMPGWCTL --refresh SECS -- only the periodic
Confirmable notification (RFC 7641 §4.5) of a gateway whose
announcements.refresh is SECS: two come, nothing being published.

One UDP socket (one session at the gateway). Prints what it checks; exit
status 1 on the first check that fails. cmpgwctl (on the test's bus) says
how many observers the gateway holds (GetStatistics ann_observers) and
publishes ANN_B, ANN_C, ANN_D in turn."""
import json, os, socket, subprocess, sys, time

# the CoAP encoder and decoder of the hostile test (RFC 7252 §3)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hostile"))
from hostile import ACK, CON, RST, O_BLOCK2 as BLOCK2, O_OBSERVE as OBSERVE, O_URI_PATH as URI_PATH  # noqa: E402
from hostile import decode as decode_pdu, encode, uint  # noqa: E402

host, port, ctl = sys.argv[1], int(sys.argv[2]), sys.argv[3]
anns = sys.argv[4:7]
refresh = float(sys.argv[5]) if sys.argv[4] == "--refresh" else None
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect((host, port))
mid = 0x2000


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    print(("ok: " if cond else "FAIL: ") + msg, flush=True)
    if not cond:
        sys.exit(1)


def decode(b):
    """a message as a dict; option values as numbers (all we read are uints)"""
    t, code, m, tok, opts, payload = decode_pdu(b)
    return {"t": t, "code": code, "mid": m, "tok": tok, "payload": payload,
            "opts": {num: int.from_bytes(v, "big") for num, v in opts}}


def get(tok, observe=None, szx=None):
    """a Confirmable GET of ann; returns its piggybacked answer"""
    global mid
    mid += 1
    opts = [(URI_PATH, s.encode()) for s in (".well-known", "cmp", "ann")]
    if observe is not None:
        opts.append((OBSERVE, uint(observe)))
    if szx is not None:
        opts.append((BLOCK2, uint(szx)))
    sock.send(encode(CON, 1, mid, tok, opts))
    return receive(lambda p: p["t"] == ACK and p["mid"] == mid, 5, "the answer to GET mid %#x" % mid)


def receive(match, secs, what):
    deadline = time.monotonic() + secs
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None if what is None else fail("no " + what + " in %g s" % secs)
        sock.settimeout(left)
        try:
            p = decode(sock.recv(2048))
        except socket.timeout:
            continue
        if match(p):
            return p


def notification(tok, secs=5, what="notification"):
    return receive(lambda p: p["t"] == CON and p["code"] == 0x45 and p["tok"] == tok, secs, what)


def observers():
    out = subprocess.run([ctl, "--json", "stats"], check=True, capture_output=True, timeout=30).stdout
    return json.loads(out)["ann_observers"]


def observers_become(n, secs=5):
    deadline = time.monotonic() + secs
    while observers() != n and time.monotonic() < deadline:
        time.sleep(0.1)
    return observers() == n


def publish(f):
    subprocess.run([ctl, "announce", f], check=True, capture_output=True, timeout=30)


A, B = bytes.fromhex("a1a2a3a4"), bytes.fromhex("b1b2")

if refresh is not None:
    # §4.5: a Confirmable notification of the current representation, at
    # least every 24 h, drops observers that are gone; here every SECS s
    r = get(A, observe=0)
    check(r["code"] == 0x45 and OBSERVE in r["opts"], "registration answered 2.05 with Observe")
    last = r["opts"][OBSERVE]
    at = []
    for i in (1, 2):
        n = notification(A, refresh + 3, "refresh notification %d" % i)
        at.append(time.monotonic())
        sock.send(encode(ACK, 0, n["mid"], b"", []))
        check(n["opts"].get(OBSERVE, -1) > last, "refresh %d: Observe %d > %d" % (i, n["opts"].get(OBSERVE, -1), last))
        check(n["payload"] == r["payload"], "refresh %d: the current announcement again" % i)
        last = n["opts"][OBSERVE]
    gap = at[1] - at[0]
    check(gap >= refresh - 0.5, "the second refresh %.1f s after the first (every %g s)" % (gap, refresh))
    r = get(A, observe=1)
    check(observers() == 0, "deregistered")
    sys.exit(0)

# RFC 7641 §3.1/§4.1: registration; the answer carries Observe
r = get(A, observe=0, szx=2)
check(r["code"] == 0x45 and OBSERVE in r["opts"], "registration answered 2.05 with Observe")
check(r["opts"].get(BLOCK2, -1) & 7 == 2, "in the 64-byte blocks asked for")
v0 = r["opts"][OBSERVE]
check(observers() == 1, "the gateway holds 1 observer")

# §4.1: the same token again replaces the registration (here: its block size)
r = get(A, observe=0, szx=6)
check(r["code"] == 0x45 and OBSERVE in r["opts"], "re-registration answered 2.05 with Observe")
v1 = r["opts"][OBSERVE]
check(v1 > v0, "re-registration's Observe %d > the registration's %d (§4.4)" % (v1, v0))
check(observers() == 1, "re-registration replaced the observer: still 1")

publish(anns[0])
n = notification(A)
sock.send(encode(ACK, 0, n["mid"], b"", []))
check(n["opts"].get(OBSERVE, -1) > v1, "notification Observe %d > %d (§3.4)" % (n["opts"].get(OBSERVE, -1), v1))
check(n["opts"].get(BLOCK2, -1) & 7 == 6, "the notification in the re-registration's 1024-byte blocks")

# §3.6: GET with Observe 1 deregisters; the answer has no Observe
r = get(A, observe=1)
check(r["code"] == 0x45 and OBSERVE not in r["opts"], "deregistration answered 2.05 without Observe")
check(observers() == 0, "deregistered: the gateway holds no observer")

# §3.6: an RST to a notification deregisters
r = get(B, observe=0)
check(OBSERVE in r["opts"] and observers() == 1, "registered again with another token")
publish(anns[1])
n = notification(B)
sock.send(encode(RST, 0, n["mid"], b"", []))
check(observers_become(0), "an RST to the notification deregistered it")
publish(anns[2])
check(notification(B, 2, None) is None, "no notification after the RST")

# §4.1: an error answer registers nothing and carries no Observe
r = get(A, observe=0, szx=7)
check(r["code"] == 0x80 and OBSERVE not in r["opts"], "Block2 SZX 7: 4.00 without Observe")
check(observers() == 0, "and no observer")
