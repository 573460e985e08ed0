"""The same requests through latticed's two HTTP/1.1 paths, with raw
sockets on both ends.

usage: two_paths.py serve ADDR PORT LOG
       two_paths.py probe HOST PORT

`serve` is an HTTP/1.1 target that appends one JSON line to LOG for every
request it parses: the request line, every field as it arrived (in order,
names as spelled), and the body, decoded from its framing. What it answers
depends on the path:
- `/ok`: 200, a body, and hop-by-hop fields of its own (`Connection:
  x-resp-hop`, `X-Resp-Hop`, `Keep-Alive`, `Upgrade`) that must not reach
  the client;
- `/trailers`: 200, a chunked body with a trailer field;
- `/continue`: an interim 100 Continue, then 200 with a date of its own;
- `/broken`: half a response head, then it closes (a 502);
- `/slow`: nothing for 30 s (a 504 at latticed's request timeout).

`probe` sends each case twice, each time on a new connection: once as the
fast path takes it, once with more than eight names in `Connection`, which
hands it to the hyper path (the names are not fields of the request, so
the two requests mean the same). It reads each answer whole and prints one
JSON object: case -> {fast, hyper} -> status, fields (in order, names as
spelled), body.
"""
import json
import socket
import sys
import threading
import time

from rawhttp import read_head, read_line, serve_forever

lock = threading.Lock()


def fields_of(lines):
    out = []
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        out.append([name, value.strip()])
    return out


def read_body(f, fields, response_to_head=False, status=200):
    lower = [(n.lower(), v) for n, v in fields]
    te = [v for n, v in lower if n == "transfer-encoding"]
    cl = [v for n, v in lower if n == "content-length"]
    if response_to_head or status in (204, 304) or 100 <= status < 200:
        return b"", []
    if any("chunked" in v.lower() for v in te):
        body, trailers = b"", []
        while True:
            line = read_line(f)
            if not line:
                return body, trailers
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:
                    t = read_line(f)
                    if not t or t in (b"\r\n", b"\n"):
                        return body, trailers
                    trailers.append(t.rstrip(b"\r\n").decode("latin-1"))
            body += f.read(size)
            read_line(f)
    if cl:
        return f.read(int(cl[0])), []
    return None, []


def handle(conn, _peer, log):
    f = conn.makefile("rb")
    try:
        while True:
            head = read_head(f)
            if head is None:
                return
            line = head[0].decode("latin-1")
            fields = fields_of(head[1:])
            body, trailers = read_body(f, fields)
            path = line.split(" ")[1] if " " in line else ""
            with lock, open(log, "a") as out:
                out.write(json.dumps({"line": line, "fields": fields,
                                      "body": (body or b"").decode("latin-1"),
                                      "trailers": trailers}) + "\n")
            if not answer(conn, path):
                return
    except OSError:
        return
    finally:
        conn.close()


def answer(conn, path):
    """Answers; False once the connection must end."""
    if path.startswith("/ok"):
        body = b"ok from the target\n"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-App: one\r\n"
                     b"Connection: x-resp-hop\r\nX-Resp-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
                     b"Upgrade: h2c\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    elif path.startswith("/trailers"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: x-checksum\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n"
                     b"6\r\nfirst \r\n6\r\nsecond\r\n0\r\nx-checksum: 42\r\n\r\n")
    elif path.startswith("/continue"):
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(b"HTTP/1.1 200 OK\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n"
                     b"Content-Length: 9\r\n\r\ncontinued")
    elif path.startswith("/broken"):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
        return False
    elif path.startswith("/slow"):
        time.sleep(30)
        return False
    else:
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    return True


# Each case: method, path, fields after Host, body. Hop-by-hop fields of
# every kind, TE with and without trailers, a field listed in Connection,
# Lattice's own fields as a client might forge them, names in odd case.
CASES = {
    "plain": ("GET", "/ok", [("User-Agent", "probe"), ("X-Mixed-Case", "Kept")], b""),
    "hop-by-hop": ("GET", "/ok", [("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive"),
                                 ("Upgrade-Insecure-Requests", "1"), ("X-Listed", "drop me"),
                                 ("Connection", "x-listed"), ("Trailer", "x-t")], b""),
    "te-trailers": ("GET", "/ok", [("TE", "trailers"), ("Connection", "TE")], b""),
    "te-gzip": ("GET", "/ok", [("TE", "gzip, trailers;q=0.5")], b""),
    "forged": ("GET", "/ok", [("X-Forwarded-For", "6.6.6.6"), ("x_amzn_lattice_identity", "Principal=evil"),
                              ("X-Amzn-Lattice-Network", "x"), ("x-amzn-requestid", "forged")], b""),
    "post-body": ("POST", "/ok", [("Content-Type", "text/plain"), ("Content-Length", "11")], b"hello world"),
    "head": ("HEAD", "/ok", [], b""),
    "trailers": ("GET", "/trailers", [], b""),
    "trailers-te": ("GET", "/trailers", [("TE", "trailers")], b""),
    "continue": ("GET", "/continue", [], b""),
    "broken": ("GET", "/broken", [], b""),
    "slow": ("GET", "/slow", [], b""),
}

# Nine names in Connection: more than the fast path keeps, so the hyper
# path takes the request. None is a field of the request.
HYPER = ("Connection", ", ".join("x-unused-%d" % i for i in range(9)))


def request(host, method, path, fields, body, hyper):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    lines += ["%s: %s" % f for f in fields]
    if hyper:
        lines.append("%s: %s" % HYPER)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(host, port, data, head_request):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(data)
    f = s.makefile("rb")
    try:
        while True:
            head = read_head(f)
            if head is None:
                return {"status": None}
            status = int(head[0].split(b" ")[1])
            fields = fields_of(head[1:])
            if 100 <= status < 200:
                continue
            body, trailers = read_body(f, fields, head_request, status)
            if body is None:
                body = f.read()
            return {"status": status, "fields": fields, "body": body.decode("latin-1"),
                    "trailers": trailers}
    except OSError as e:
        return {"status": None, "error": str(e)}
    finally:
        s.close()


def probe(host, port):
    out = {}
    for name, (method, path, fields, body) in CASES.items():
        out[name] = {}
        for path_name, hyper in (("fast", False), ("hyper", True)):
            data = request(host, method, "%s?case=%s&via=%s" % (path, name, path_name), fields, body, hyper)
            out[name][path_name] = exchange(host, port, data, method == "HEAD")
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve_forever(sys.argv[2], sys.argv[3], handle, sys.argv[4])
    else:
        probe(sys.argv[2], int(sys.argv[3]))
