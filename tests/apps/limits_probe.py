"""Raw-socket probes of the proxy's limits, run inside a client namespace.
Prints one JSON object.

usage: limits_probe.py HOST PORT HEADER_TIMEOUT_S IDLE_TIMEOUT_S
"""
import json
import socket
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
header_timeout, idle_timeout = float(sys.argv[3]), float(sys.argv[4])
out = {}


def connect():
    s = socket.create_connection((host, port), timeout=10)
    return s


def read_all(s, limit):
    """Reads until the peer closes or `limit` seconds pass."""
    s.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except socket.timeout:
        return data, False


def ok_request():
    s = connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
    data, _ = read_all(s, 5)
    s.close()
    return data.split(b"\r\n", 1)[0].decode()


# A malformed request: 400, connection closed.
s = connect()
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n")
data, closed = read_all(s, 5)
out["malformed"] = data.split(b"\r\n", 1)[0].decode()
s.close()

# A client that never finishes its headers is cut off after the timeout,
# while another client is served meanwhile.
slow = connect()
slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
t0 = time.monotonic()
out["otherWhileSlow"] = ok_request()
data, closed = read_all(slow, header_timeout + 5)
out["slowClosed"] = closed
out["slowClosedAfter"] = round(time.monotonic() - t0, 1)
out["slowAnswer"] = data.split(b"\r\n", 1)[0].decode()

# An idle keep-alive connection is closed after the idle timeout.
s = connect()
s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
s.settimeout(5)
first = s.recv(65536)
out["keepAliveFirst"] = first.split(b"\r\n", 1)[0].decode()
t0 = time.monotonic()
data, closed = read_all(s, idle_timeout + 5)
out["idleClosed"] = closed
out["idleClosedAfter"] = round(time.monotonic() - t0, 1)
print(json.dumps(out))
