"""gRPC server and client for the tests, without generated code: methods
take and return raw bytes.

  grpc_app.py serve ADDR             unary Echo, server-streaming Count, and
                                     Fail (aborts NOT_FOUND); each sets
                                     trailing metadata
  grpc_app.py call TARGET [CA_PEM]   calls all three, prints one JSON line
"""
import json
import sys
from concurrent import futures

import grpc

SERVICE = "latticed.test.Echo"


def echo(request, context):
    peer = context.peer()
    context.set_trailing_metadata((("x-trailer", "unary"), ("x-peer", peer)))
    return b"echo:" + request


def count(request, context):
    n = int(request.decode())
    for i in range(n):
        yield str(i).encode()
    context.set_trailing_metadata((("x-count", str(n)),))


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def serve(addr):
    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(addr)
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


def call(target, ca=None):
    if ca:
        with open(ca, "rb") as f:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(target)
    out = {}
    reply, c = channel.unary_unary("/%s/Echo" % SERVICE).with_call(b"hi", timeout=10)
    out["echo"] = reply.decode()
    out["echoTrailers"] = dict(c.trailing_metadata())
    it = channel.unary_stream("/%s/Count" % SERVICE)(b"5", timeout=10)
    out["count"] = [x.decode() for x in it]
    out["countTrailers"] = dict(it.trailing_metadata())
    try:
        channel.unary_unary("/%s/Fail" % SERVICE)(b"", timeout=10)
        out["fail"] = "OK"
    except grpc.RpcError as e:
        out["fail"] = e.code().name
        out["failDetails"] = e.details()
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        call(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
