#!/usr/bin/env python3
"""Run inside a client namespace: says "ready", waits for "go" on stdin,
then asks http://NAME/ every millisecond until it answers 200; prints the
microseconds that took (0 if not within 10 s). The cluster bench's probe
of when node B's data path serves a change made through node A."""
import socket
import sys
import time

name = sys.argv[1]
print("ready", flush=True)
sys.stdin.readline()
start = time.monotonic()
request = f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
while time.monotonic() - start < 10:
    try:
        addr = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)[0][4]
        with socket.create_connection(addr, timeout=1) as s:
            s.sendall(request)
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                print(int((time.monotonic() - start) * 1e6), flush=True)
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.001)
print(0, flush=True)
sys.exit(1)
