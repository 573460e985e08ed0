#!/usr/bin/env python3
"""Run inside a client namespace: says "ready", waits for "go" on stdin,
then, every millisecond, asks the namespace's latticed resolver
(169.254.171.253) for NAME's address and http://NAME/ at it, until it
answers 200; prints the microseconds that took ("0 REASON" if not within
10 s). The cluster bench's probe of when node B's data path serves a change
made through node A.

The resolver is asked directly, not through glibc: `ip netns exec`
bind-mounts /etc/netns/NS/resolv.conf when the process starts, and a
process that outlives a rewrite of that file keeps reading the old one."""
import socket
import struct
import sys
import time

RESOLVER = ("169.254.171.253", 53)


def lookup(name):
    """NAME's first A record from the resolver, or None."""
    qid = 0x1234
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(query, RESOLVER)
        answer = s.recv(1500)
    _, flags, _, count, _, _ = struct.unpack(">HHHHHH", answer[:12])
    if flags & 0xF or count == 0:
        return None
    # Skip the question, then take the first answer's last four bytes
    # (an A record's RDATA; the name is a compression pointer).
    at = 12 + len(question) + 4
    rtype, _, _, length = struct.unpack(">HHIH", answer[at + 2:at + 12])
    if rtype != 1 or length != 4:
        return None
    return socket.inet_ntoa(answer[at + 12:at + 16])


name = sys.argv[1]
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic()
last = "no answer"
request = f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
while time.monotonic() - start < 10:
    try:
        addr = lookup(name)
        if addr is None:
            last = "no address yet"
        else:
            with socket.create_connection((addr, 80), timeout=1) as s:
                s.sendall(request)
                head = s.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    print(int((time.monotonic() - start) * 1e6), flush=True)
                    sys.exit(0)
                last = repr(head)
    except OSError as e:
        last = repr(e)
    time.sleep(0.001)
print(f"0 {last}", flush=True)
sys.exit(1)
