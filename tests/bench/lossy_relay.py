#!/usr/bin/python3
"""lossy_relay.py -- a UDP relay that drops datagrams at random (not a test).

    lossy_relay.py LISTEN_PORT TARGET_PORT LOSS [SEED]

Stands in for a lossy radio link between nodes and a CoAP server, which
loopback cannot be (no netem here): listens on 127.0.0.1:LISTEN_PORT; each
client address gets its own socket towards 127.0.0.1:TARGET_PORT, so the
server sees one peer per client. Every datagram, either way, is dropped
with probability LOSS (0..1), from a seeded generator (default seed 1).
On SIGTERM it prints "forwarded=N dropped_up=U dropped_down=D" and exits.
"""
import random
import select
import signal
import socket
import sys


def main():
    listen_port, target_port, loss = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", listen_port))
    towards = {}    # client address -> socket to the target
    client_of = {}  # that socket -> client address
    count = {"forwarded": 0, "dropped_up": 0, "dropped_down": 0}

    def done(*_):
        print(" ".join("%s=%d" % kv for kv in count.items()), flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, done)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([front] + list(client_of), [], [])
        for s in readable:
            data, addr = s.recvfrom(65536)
            up = s is front
            if rng.random() < loss:
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
