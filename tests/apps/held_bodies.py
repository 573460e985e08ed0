"""Bodies an AWS_IAM service must read whole, sent by a client that wants
the proxy to hold memory: large declared lengths, bodies that never
finish, keys that do not exist.

usage: held_bodies.py HOST PORT KNOWN_KEY

Opens, in order:
- `unknown`: a request signed (in form) with a key latticed does not know,
  declaring 4 MiB and sending none of it;
- `held0`, `held1`: requests with a known key declaring 3 MiB each and
  sending 1 KiB, then stalling;
- `over`: a third such request.

Prints one JSON object: for each, the status answered and how many
seconds after its head it came (null if none within 20 s).
"""
import json
import socket
import sys
import time

host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
day = amz_date[:8]


def head(access_key, length):
    auth = ("AWS4-HMAC-SHA256 Credential=%s/%s/us-east-1/vpc-lattice-svcs/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=%s" % (access_key, day, "0" * 64))
    return ("POST /upload HTTP/1.1\r\nHost: %s\r\nx-amz-date: %s\r\nAuthorization: %s\r\n"
            "Content-Length: %d\r\n\r\n" % (host, amz_date, auth, length)).encode()


def status_of(sock, started, limit=20.0):
    sock.settimeout(limit)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return None, None
            data += chunk
    except OSError:
        return None, None
    return int(data.split(b" ")[1]), round(time.monotonic() - started, 3)


def open_request(access_key, length, send):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(head(access_key, length) + b"x" * send)
    return s, time.monotonic()


out = {}
s, t = open_request("AKIDOESNOTEXIST00000", 4 << 20, 0)
st, after = status_of(s, t)
out["unknown"] = {"status": st, "after": after}
s.close()

held = [open_request(key, 3 << 20, 1024) for _ in range(2)]
# Give the proxy a moment to take both bodies' memory.
time.sleep(0.5)
s, t = open_request(key, 3 << 20, 1024)
st, after = status_of(s, t, limit=5.0)
out["over"] = {"status": st, "after": after}
s.close()
for i, (s, t) in enumerate(held):
    st, after = status_of(s, t)
    out["held%d" % i] = {"status": st, "after": after}
    s.close()
print(json.dumps(out))
