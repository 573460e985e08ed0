"""HTTP/1.1 on raw sockets, shared by the test apps that play a lenient
target or client (h1_framing.py, smuggle.py, two_paths.py)."""
import socket
import threading


def read_line(f):
    return f.readline(65537)


def read_head(f):
    """The lines of the next head (without their line ends), skipping
    empty lines before it; None at the end of the stream."""
    lines = []
    while True:
        line = read_line(f)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            if not lines:
                continue
            return lines
        lines.append(line.rstrip(b"\r\n"))


def serve_forever(addr, port, handle, *args):
    """Accepts connections on ADDR:PORT for good, each handled on its own
    thread as `handle(conn, peer, *args)`. With PORT 0 the kernel picks
    one, printed as `listening PORT` once connections are accepted."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, int(port)))
    srv.listen(512)
    if int(port) == 0:
        print("listening %d" % srv.getsockname()[1], flush=True)
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=handle, args=(conn, peer) + args, daemon=True).start()
