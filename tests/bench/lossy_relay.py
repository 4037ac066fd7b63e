#!/usr/bin/python3
"""lossy_relay.py -- a UDP relay that drops datagrams at random (not a test).

    lossy_relay.py LISTEN_PORT TARGET_PORT LOSS [SEED] [--log FILE]

Stands in for a lossy radio link between nodes and a CoAP server, which
loopback cannot be (no netem here): listens on 127.0.0.1:LISTEN_PORT; each
client address gets its own socket towards 127.0.0.1:TARGET_PORT, so the
server sees one peer per client. Every datagram, either way, is dropped
with probability LOSS (0..1), from a seeded generator (default seed 1).
On SIGTERM it prints "forwarded=N dropped_up=U dropped_down=D" and exits.
--log FILE: one line per datagram, its fate, direction and CoAP header
(type, code, MID, token, Block1/Block2): to see which datagram a lost
exchange lost and what each side did next.
"""
import random
import select
import signal
import socket
import sys
import time

TYPES = "CON NON ACK RST".split()


def coap_summary(d):
    """type code MID token and Block options of a CoAP datagram"""
    if len(d) < 4:
        return "short"
    tkl, code, mid = d[0] & 15, d[1], d[2] << 8 | d[3]
    out = ["%s %d.%02d mid=%d tok=%s" % (TYPES[d[0] >> 4 & 3], code >> 5, code & 31, mid, d[4:4 + tkl].hex())]
    i, num = 4 + tkl, 0
    while i < len(d) and d[i] != 0xFF:
        delta, length = d[i] >> 4, d[i] & 15
        i += 1
        ext = []
        for v in (delta, length):
            if v == 13:
                ext.append(d[i] + 13)
                i += 1
            elif v == 14:
                ext.append((d[i] << 8 | d[i + 1]) + 269)
                i += 2
            else:
                ext.append(v)
        num += ext[0]
        val = int.from_bytes(d[i:i + ext[1]], "big")
        if num in (23, 27):
            out.append("B%d=%d/%d/%d" % (1 if num == 27 else 2, val >> 4, val >> 3 & 1, 16 << (val & 7)))
        i += ext[1]
    return " ".join(out) + " len=%d" % len(d)


def main():
    args = sys.argv[1:]
    log = None
    if "--log" in args:
        i = args.index("--log")
        log = open(args[i + 1], "w", buffering=1)
        del args[i:i + 2]
    listen_port, target_port, loss = int(args[0]), int(args[1]), float(args[2])
    rng = random.Random(int(args[3]) if len(args) > 3 else 1)
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", listen_port))
    towards = {}    # client address -> socket to the target
    client_of = {}  # that socket -> client address
    count = {"forwarded": 0, "dropped_up": 0, "dropped_down": 0}

    def done(*_):
        print(" ".join("%s=%d" % kv for kv in count.items()), flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, done)
    t0 = time.monotonic()
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([front] + list(client_of), [], [])
        for s in readable:
            data, addr = s.recvfrom(65536)
            up = s is front
            lost = rng.random() < loss
            if log:
                log.write("%.3f %s %s %d %s\n" % (time.monotonic() - t0, "DROP" if lost else "pass",
                                                  "up  " if up else "down", addr[1] if up else client_of[s][1],
                                                  coap_summary(data)))
            if lost:
                count["dropped_up" if up else "dropped_down"] += 1
                continue
            count["forwarded"] += 1
            if not up:
                front.sendto(data, client_of[s])
                continue
            t = towards.get(addr)
            if t is None:
                t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                t.connect(("127.0.0.1", target_port))
                towards[addr], client_of[t] = t, addr
            t.send(data)


if __name__ == "__main__":
    main()
