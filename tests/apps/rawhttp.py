"""HTTP/1.1 read on raw sockets, shared by the test apps that play a
lenient target or client (smuggle.py, two_paths.py)."""


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
