#!/usr/bin/env python3
"""A tiny authoritative DNS server for tests: answers the names in a JSON
file, reread at every query, and NXDOMAIN for the rest, over UDP on
127.0.0.1 (or ADDR:PORT). A name's value is a list of TXT strings
({"name.": ["value", ...]}) or an object of record lists and a TTL
({"name.": {"A": ["10.0.16.20"], "TXT": [...], "ttl": 1}}). Writes the port
it bound to PORT_FILE once it listens.

usage: txt_dns.py RECORDS_JSON PORT_FILE [ADDR:PORT]
"""
import json
import socket
import struct
import sys


def question(packet):
    """(name, end offset) of the first question; names are plain labels."""
    labels, i = [], 12
    while packet[i] != 0:
        n = packet[i]
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return ".".join(labels).lower() + ".", i + 5


def answer(packet, records):
    ident, = struct.unpack("!H", packet[:2])
    name, end = question(packet)
    qtype, = struct.unpack("!H", packet[end - 4:end - 2])
    value = records.get(name)
    if isinstance(value, list):
        value = {"TXT": value}
    rcode = 0 if value is not None else 3
    value = value or {}
    ttl = int(value.get("ttl", 60))
    rdatas = []
    if qtype == 16:
        for v in value.get("TXT", []):
            data = v.encode()
            rdatas.append(bytes([len(data)]) + data)
    elif qtype == 1:
        rdatas = [socket.inet_aton(a) for a in value.get("A", [])]
    head = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, len(rdatas), 0, 0)
    out = head + packet[12:end]
    for rdata in rdatas:
        out += struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, len(rdata)) + rdata
    return out


def main():
    records_path, port_path = sys.argv[1], sys.argv[2]
    addr, port = ("127.0.0.1", "0")
    if len(sys.argv) > 3:
        addr, port = sys.argv[3].rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    with open(port_path + ".tmp", "w") as f:
        f.write(str(s.getsockname()[1]))
    import os
    os.rename(port_path + ".tmp", port_path)
    while True:
        packet, peer = s.recvfrom(4096)
        try:
            with open(records_path) as f:
                records = {k.lower(): v for k, v in json.load(f).items()}
        except (OSError, ValueError):
            records = {}
        try:
            s.sendto(answer(packet, records), peer)
        except (IndexError, struct.error):
            pass


if __name__ == "__main__":
    main()
