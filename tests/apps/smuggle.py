"""Request smuggling and desync payloads, with raw sockets on both ends.

usage: smuggle.py serve ADDR PORT LOG
       smuggle.py probe HOST PORT
       smuggle.py stall HOST PORT SECONDS

`serve` is a deliberately lenient HTTP/1.1 target, as many real ones are:
it takes the first Content-Length, treats any Transfer-Encoding mentioning
"chunked" as chunked, reads chunk sizes loosely, and keeps connections
open. It appends one JSON line to LOG for every request it parses (method,
path, body length) and answers with `x-seen-path` naming that path.

`probe` sends each classic payload on a new connection to the proxy, reads
every answer it gets until the proxy closes or goes quiet, and then sends
an innocent "victim" request on another new connection. It prints one JSON
object: for each case, the statuses answered, the target paths the answers
name (from `x-seen-path`), and what the victim got back.

The test then holds the proxy to one rule: the target parsed exactly the
requests whose answers reached the client, and the victim got its own.
"""
import json
import socket
import sys
import threading
import time

from rawhttp import read_head, read_line, serve_forever

lock = threading.Lock()
BIG = 256 << 20


def lenient_body(f, headers):
    te = [v for n, v in headers if n == "transfer-encoding"]
    cl = [v for n, v in headers if n == "content-length"]
    if any("chunked" in v.lower() for v in te):
        body = b""
        while True:
            line = read_line(f)
            if not line:
                return body
            size_text = line.split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                size = 0
            if size <= 0:
                while read_line(f) not in (b"\r\n", b"\n", b""):
                    pass
                return body
            body += f.read(size)
            read_line(f)
    if cl:
        try:
            n = int(cl[0].split(",")[0].strip())
        except ValueError:
            n = 0
        return f.read(max(n, 0))
    return b""


def serve_conn(conn, _peer, log):
    f = conn.makefile("rb")
    try:
        while True:
            head = read_head(f)
            if head is None:
                return
            parts = head[0].decode("latin-1").split(" ")
            method, path = parts[0], parts[1] if len(parts) > 1 else ""
            headers = []
            for line in head[1:]:
                name, _, value = line.partition(b":")
                headers.append((name.decode("latin-1").strip().lower(), value.decode("latin-1").strip()))
            body = lenient_body(f, headers)
            with lock:
                with open(log, "a") as out:
                    out.write(json.dumps({
                        "method": method, "path": path, "bodyLen": len(body),
                        "headers": headers,
                    }) + "\n")
            if path.endswith("/big"):
                # For clients that stop reading: far more than socket
                # buffers hold.
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % BIG)
                block = b"z" * (1 << 20)
                for _ in range(BIG >> 20):
                    conn.sendall(block)
                continue
            answer = path.encode("latin-1")
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nx-seen-path: %s\r\n\r\n%s"
                         % (len(answer), answer, answer))
    except OSError:
        pass
    finally:
        conn.close()


def read_answers(sock, deadline_s=0.7):
    """Every answer on `sock` until it closes or is quiet for a while."""
    sock.settimeout(deadline_s)
    data = b""
    answers = []
    closed = False
    while True:
        # Parse what is complete.
        while True:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                break
            head = data[:end].decode("latin-1").split("\r\n")
            status = int(head[0].split(" ")[1])
            fields = {}
            for line in head[1:]:
                n, _, v = line.partition(":")
                fields.setdefault(n.strip().lower(), v.strip())
            rest = data[end + 4:]
            if "content-length" in fields:
                n = int(fields["content-length"])
                if len(rest) < n:
                    break
                data = rest[n:]
            elif "transfer-encoding" in fields:
                # The proxy relays the target's framing; ours never chunks.
                z = rest.find(b"0\r\n\r\n")
                if z < 0:
                    break
                data = rest[z + 5:]
            else:
                if not closed:
                    break
                data = b""
            answers.append({"status": status, "seen": fields.get("x-seen-path")})
        if closed:
            return answers, True
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return answers, False
        except OSError:
            chunk = b""
        if not chunk:
            closed = True
            continue
        data += chunk


def cases(host):
    h = host.encode()

    def req(first, extra, body):
        return first + b"\r\nHost: " + h + b"\r\n" + extra + b"\r\n" + body

    def smuggled(case):
        return b"GET /" + case + b"/smuggled HTTP/1.1\r\nHost: " + h + b"\r\n\r\n"

    def chunked(inner):
        # `inner` as one chunk, then the last chunk.
        return b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"

    def waiting(case):
        # A smuggled request that waits for a body: it would capture the
        # next request on a shared target connection.
        return (b"POST /" + case + b"/capture HTTP/1.1\r\nHost: " + h
                + b"\r\nContent-Length: 400\r\n\r\nx=")

    out = {}
    for name, extra in [
        ("cl-listed", b"Connection: content-length\r\n"),
        ("cl-listed-ka", b"Connection: keep-alive, Content-Length\r\n"),
        ("cl-listed-caps", b"Connection: CONTENT-LENGTH\r\n"),
        ("host-listed", b"Connection: host\r\n"),
    ]:
        c = name.encode()
        body = smuggled(c)
        out[name] = req(b"POST /" + c + b"/first HTTP/1.1",
                        extra + b"Content-Length: %d\r\n" % len(body), body)
        cap = waiting(c + b"-wait")
        out[name + "-wait"] = req(b"POST /" + c + b"-wait/first HTTP/1.1",
                                  extra + b"Content-Length: %d\r\n" % len(cap), cap)
    # CL.TE and TE.CL.
    c = b"cl-te"
    body = b"0\r\n\r\n" + smuggled(c)
    out["cl-te"] = req(b"POST /cl-te/first HTTP/1.1",
                       b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(body), body)
    c = b"te-cl"
    body = chunked(smuggled(c))
    out["te-cl"] = req(b"POST /te-cl/first HTTP/1.1",
                       b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", body)
    # TE.TE obfuscations: one side sees chunked, the other may not.
    for name, te in [
        ("te-xchunked", b"Transfer-Encoding: xchunked\r\n"),
        ("te-tab", b"Transfer-Encoding:\tchunked\r\n"),
        ("te-space-name", b"Transfer-Encoding : chunked\r\n"),
        ("te-double", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
        ("te-list", b"Transfer-Encoding: chunked, identity\r\n"),
        ("te-identity-chunked", b"Transfer-Encoding: identity, chunked\r\n"),
        ("te-fold", b"X-Pad: 1\r\n Transfer-Encoding: chunked\r\n"),
        ("te-caps", b"TRANSFER-ENCODING: CHUNKED\r\n"),
        ("te-quoted", b'Transfer-Encoding: "chunked"\r\n'),
        ("te-listed", b"Transfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n"),
    ]:
        c = name.encode()
        body = chunked(smuggled(c))
        out[name] = req(b"POST /" + c + b"/first HTTP/1.1",
                        te + b"Content-Length: %d\r\n" % len(body), body)
        out[name + "-nocl"] = req(b"POST /" + c + b"-nocl/first HTTP/1.1", te,
                                  b"0\r\n\r\n" + smuggled(c + b"-nocl"))
    # Content-Length variants.
    for name, cl in [
        ("cl-plus", b"Content-Length: +%d\r\n"),
        ("cl-pair", b"Content-Length: %d, %d\r\n"),
        ("cl-two", b"Content-Length: %d\r\nContent-Length: 0\r\n"),
        ("cl-hex", b"Content-Length: 0x%x\r\n"),
        ("cl-neg", b"Content-Length: -%d\r\n"),
        ("cl-space", b"Content-Length : %d\r\n"),
        ("cl-huge", b"Content-Length: 99999999999999999999%d\r\n"),
    ]:
        c = name.encode()
        body = smuggled(c)
        n = len(body)
        field = cl % ((n, n) if cl.count(b"%") == 2 else (n,))
        out[name] = req(b"POST /" + c + b"/first HTTP/1.1", field, body)
    # Chunk-size tricks (the proxy reads chunked bodies itself).
    for name, size in [
        ("chunk-ext", b"%x;x=y"),
        ("chunk-zeros", b"000%x"),
        ("chunk-space", b"%x "),
        ("chunk-overflow", b"1000000000000000%x"),
        ("chunk-negative", b"-%x"),
        ("chunk-0x", b"0x%x"),
    ]:
        c = name.encode()
        inner = smuggled(c)
        body = (size % len(inner)) + b"\r\n" + inner + b"\r\n0\r\n\r\n"
        out[name] = req(b"POST /" + c + b"/first HTTP/1.1", b"Transfer-Encoding: chunked\r\n", body)
    # Line ends and request-line tricks.
    out["bare-lf"] = (b"GET /bare-lf/first HTTP/1.1\nHost: " + h + b"\n\n")
    out["two-hosts"] = req(b"GET /two-hosts/first HTTP/1.1", b"Host: other.example\r\n", b"")
    out["pipelined"] = (req(b"GET /pipelined/first HTTP/1.1", b"", b"")
                        + req(b"GET /pipelined/second HTTP/1.1", b"", b""))
    out["http10-ka"] = (b"GET /http10-ka/first HTTP/1.0\r\nHost: " + h
                        + b"\r\nConnection: keep-alive\r\n\r\n" + smuggled(b"http10-ka"))
    out["absolute-form"] = (b"GET http://" + h + b"/absolute-form/first HTTP/1.1\r\nHost: " + h
                            + b"\r\n\r\n")
    out["nul-in-field"] = req(b"GET /nul-in-field/first HTTP/1.1", b"X-A: a\x00b\r\n", b"")
    out["cr-in-field"] = req(b"GET /cr-in-field/first HTTP/1.1", b"X-A: a\rGET /x\r\n", b"")
    return out


def probe(host, port):
    results = {}
    for name, payload in cases(host).items():
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(payload)
        answers, closed = read_answers(s)
        s.close()
        # The victim: another client's innocent request right after.
        v = socket.create_connection((host, int(port)), timeout=5)
        path = "/" + name + "/victim"
        v.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nCookie: secret-of-%s\r\nConnection: close\r\n\r\n"
                   % (path, host, name)).encode())
        victim, _ = read_answers(v)
        v.close()
        results[name] = {"answers": answers, "closed": closed, "victim": victim}
    print(json.dumps(results))


def stall(host, port, wait_s):
    """Asks for a large answer on each path and stops reading; after
    `wait_s` reads what is left. Prints the bytes received per path: all
    of the answer means the proxy held the connection open, waiting."""
    requests = {
        # Plain HTTP/1.1: the fast path.
        "fast": b"GET /stall/big HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode(),
        # A chunked request body: hyper's path.
        "hyper": (b"POST /stall/big HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n" % host.encode()),
    }
    socks = {}
    t0 = time.monotonic()
    times = {}
    for name, req in requests.items():
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(req)
        socks[name] = s
    time.sleep(float(wait_s))
    out = {}
    for name, s in socks.items():
        s.settimeout(10)
        got = 0
        try:
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            pass
        out[name] = got
        times[name] = round(time.monotonic() - t0, 2)
        s.close()
    out["full"] = BIG
    out["seconds"] = times
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve_forever(sys.argv[2], sys.argv[3], serve_conn, sys.argv[4])
    elif sys.argv[1] == "stall":
        stall(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        probe(sys.argv[2], sys.argv[3])
