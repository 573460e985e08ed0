"""Calls a latticed service with botocore's SigV4 signer (service
vpc-lattice-svcs), as an AWS SDK would. Prints one JSON line: status,
response headers, body.

usage: sigv4_client.py URL KEY SECRET signed|unsigned CA_PEM [BODY]
  signed    the payload hash is part of the signature
  unsigned  x-amz-content-sha256: UNSIGNED-PAYLOAD
"""
import json
import ssl
import sys
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

url, key, secret, mode, ca = sys.argv[1:6]
body = sys.argv[6].encode() if len(sys.argv) > 6 else None
method = "POST" if body is not None else "GET"
headers = {"content-type": "text/plain"} if body is not None else {}
request = AWSRequest(method=method, url=url, data=body, headers=headers)
if mode == "unsigned":
    request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    request.context["payload_signing_enabled"] = False
SigV4Auth(Credentials(key, secret), "vpc-lattice-svcs", "us-east-1").add_auth(request)
prepared = request.prepare()
req = urllib.request.Request(prepared.url, data=body, method=method, headers=dict(prepared.headers))
ctx = ssl.create_default_context(cafile=ca)
try:
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        status, text, hdrs = r.status, r.read().decode(), dict(r.headers)
except urllib.error.HTTPError as e:
    status, text, hdrs = e.code, e.read().decode(), dict(e.headers)
print(json.dumps({"status": status, "headers": {k.lower(): v for k, v in hdrs.items()}, "body": text}))
