"""A bare ``grpc.aio`` OTLP trace server that parses each request and acks it: the transport ceiling.

``python -m bench.sink --port N`` serves ``TraceService/Export``, parses the bytes with upb
(``ExportTraceServiceRequest.FromString``), counts the spans and replies OK. It does nothing
else, so the bench's optional ``--sink`` phase measures what gRPC receive + parse alone costs
in this run (python-limits.md bench 5: ~360k spans/CPU-s), next to the pipeline.
It prints ``{"event": "ready", "port": N}`` once it listens and exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import grpc
import grpc.aio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench.loadgen import EXPORT_METHOD, MAX_MESSAGE

_OK = ExportTraceServiceResponse().SerializeToString()


async def serve(port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    spans = 0

    async def export(request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        nonlocal spans
        data = ExportTraceServiceRequest.FromString(request)
        spans += sum(len(ss.spans) for rs in data.resource_spans for ss in rs.scope_spans)
        return _OK

    service, _, method = EXPORT_METHOD[1:].partition("/")
    handler = grpc.method_handlers_generic_handler(service, {
        method: grpc.unary_unary_rpc_method_handler(export, request_deserializer=None, response_serializer=None),
    })
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sys.stdout.write(json.dumps({"event": "ready", "port": bound}) + "\n")
    sys.stdout.flush()
    await stop.wait()
    await server.stop(1)
    sys.stdout.write(json.dumps({"event": "stopped", "spans": spans}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    asyncio.run(serve(p.parse_args(argv).port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
