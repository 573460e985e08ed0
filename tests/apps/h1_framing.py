"""HTTP/1.1 framing through the proxy, with raw sockets on both ends.

usage: h1_framing.py serve ADDR PORT
       h1_framing.py probe HOST PORT

`serve` is a target answering by path with every way HTTP/1.1 frames a
body: Content-Length, chunked (with trailers), close-delimited, HEAD, 204,
304, a 100 Continue before the final answer. Each answer's JSON says what
the target received (method, path, body length and digest, headers) and on
which connection (the client port), so reuse is visible.

`probe` runs one keep-alive connection through the proxy and checks each
answer's framing, then prints one JSON object of results.
"""
import hashlib
import json
import socket
import sys

from rawhttp import serve_forever


def read_head(f):
    lines = []
    while True:
        line = f.readline(65537)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.rstrip(b"\r\n"))


def parse_headers(lines):
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.decode().strip().lower(), value.decode().strip()))
    return headers


def read_chunked(f):
    body = b""
    while True:
        size = int(f.readline().split(b";")[0].strip(), 16)
        if size == 0:
            while f.readline() not in (b"\r\n", b"\n", b""):
                pass
            return body
        body += f.read(size)
        f.readline()


def serve_conn(conn, peer):
    f = conn.makefile("rb")
    while True:
        head = read_head(f)
        if head is None:
            return
        method, path, _ = head[0].decode().split(" ", 2)
        headers = parse_headers(head[1:])
        h = dict(headers)
        if h.get("transfer-encoding", "").lower() == "chunked":
            body = read_chunked(f)
        else:
            body = f.read(int(h.get("content-length", "0")))
        info = json.dumps({
            "method": method,
            "path": path,
            "port": peer[1],
            "bodyLen": len(body),
            "bodySha": hashlib.sha256(body).hexdigest(),
            "headers": headers,
        }).encode() + b"\n"
        if path == "/chunked":
            parts = [info[:10], info[10:], b"x" * 5000]
            out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n"
            for p in parts:
                out += b"%x;ext=1\r\n%s\r\n" % (len(p), p)
            out += b"0\r\nx-sum: 1\r\n\r\n"
            # Slowly, in pieces, so the proxy sees partial chunks.
            for i in range(0, len(out), 777):
                conn.sendall(out[i:i + 777])
        elif path == "/close":
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + info + b"y" * 3000)
            conn.close()
            return
        elif path == "/nocontent":
            conn.sendall(b"HTTP/1.1 204 No Content\r\nX-Info: %d\r\n\r\n" % peer[1])
        elif path == "/notmodified":
            conn.sendall(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n")
        elif path == "/continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(info), info))
        else:
            # Content-Length; HEAD gets the length and no body.
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: keep-alive, x-hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n\r\n%s"
                         % (len(info), b"" if method == "HEAD" else info))


class Client:
    def __init__(self, host, port):
        self.host = host
        self.sock = socket.create_connection((host, port), timeout=10)
        self.f = self.sock.makefile("rb")

    def send(self, method, path, headers=(), body=b"", chunked=False):
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self.host)
        for k, v in headers:
            head += "%s: %s\r\n" % (k, v)
        if chunked:
            head += "Transfer-Encoding: chunked\r\n\r\n"
            data = head.encode()
            for i in range(0, len(body), 1000):
                part = body[i:i + 1000]
                data += b"%x\r\n%s\r\n" % (len(part), part)
            data += b"0\r\n\r\n"
        else:
            if body or method == "POST":
                head += "Content-Length: %d\r\n" % len(body)
            data = head.encode() + b"\r\n" + body
        self.sock.sendall(data)

    def read(self, method="GET"):
        head = read_head(self.f)
        status = int(head[0].split(b" ")[1])
        headers = parse_headers(head[1:])
        h = dict(headers)
        if method == "HEAD" or status in (204, 304):
            body, framing = b"", "none"
        elif h.get("transfer-encoding", "").lower().endswith("chunked"):
            body, framing = read_chunked(self.f), "chunked"
        elif "content-length" in h:
            body, framing = self.f.read(int(h["content-length"])), "length"
        else:
            body, framing = self.f.read(), "close"
        info = None
        if body.startswith(b"{"):
            info = json.loads(body.split(b"\n", 1)[0])
        return {"status": status, "framing": framing, "headers": headers, "len": len(body), "info": info}


def probe(host, port):
    out = {}
    c = Client(host, port)
    big = bytes(range(256)) * 400  # 102400 bytes, more than one read
    c.send("GET", "/length", [("Connection", "x-secret"), ("X-Secret", "1"), ("X-Forwarded-For", "6.6.6.6"),
                              ("TE", "trailers")])
    out["length"] = c.read()
    c.send("GET", "/chunked")
    out["chunked"] = c.read()
    c.send("HEAD", "/length")
    out["head"] = c.read("HEAD")
    c.send("GET", "/nocontent")
    out["nocontent"] = c.read()
    c.send("GET", "/notmodified")
    out["notmodified"] = c.read()
    c.send("GET", "/continue")
    out["continue"] = c.read()
    c.send("POST", "/upload", body=big)
    out["upload"] = c.read()
    out["uploadSha"] = hashlib.sha256(big).hexdigest()
    # Two requests in one write (pipelined): two answers, in order.
    c.sock.sendall(b"GET /p1 HTTP/1.1\r\nHost: %s\r\n\r\nGET /p2 HTTP/1.1\r\nHost: %s\r\n\r\n"
                   % (host.encode(), host.encode()))
    out["pipelined"] = [c.read()["info"]["path"], c.read()["info"]["path"]]
    c.send("GET", "/close")
    out["close"] = c.read()
    out["closedAfter"] = c.sock.recv(1) == b""
    # A chunked request body, after a plain request: not the fast path's
    # (hyper takes the connection over); the connection goes on.
    c = Client(host, port)
    c.send("GET", "/before")
    out["before"] = c.read()
    c.send("POST", "/chunked-upload", body=big, chunked=True)
    out["chunkedUpload"] = c.read()
    c.send("GET", "/after")
    out["after"] = c.read()
    # The same framings on the hyper side (its answers are re-framed).
    c.send("GET", "/chunked")
    out["hyperChunked"] = c.read()
    c.send("HEAD", "/length")
    out["hyperHead"] = c.read("HEAD")
    c.send("GET", "/continue")
    out["hyperContinue"] = c.read()
    c.send("GET", "/nocontent")
    out["hyperNoContent"] = c.read()
    c.send("GET", "/close")
    out["hyperClose"] = c.read()
    c.send("GET", "/after-close")
    out["hyperAfterClose"] = c.read()
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve_forever(sys.argv[2], sys.argv[3], serve_conn)
    else:
        probe(sys.argv[2], int(sys.argv[3]))
