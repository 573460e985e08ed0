"""An HTTPS app for the tests: answers JSON naming itself, the client it saw
and the server name the client sent (SNI), over TLS with the given
certificate. Used as an HTTPS target and behind TLS_PASSTHROUGH listeners.

usage: tls_app.py NAME HOST PORT CERT KEY
"""
import http.server
import json
import ssl
import sys

name, host, port, cert, key = sys.argv[1:6]
seen_sni = {}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({
            "app": name,
            "tls": True,
            "client": "%s:%d" % self.client_address,
            "sni": seen_sni.get(id(self.connection)),
            "path": self.path,
            "host": self.headers.get("host"),
        }).encode() + b"\n"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def remember_sni(sock, server_name, _ctx):
    seen_sni[id(sock)] = server_name


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.sni_callback = remember_sni
server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
