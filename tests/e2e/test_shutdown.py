"""SIGTERM in the middle of a load run: nothing the client was told had been accepted is lost."""

from __future__ import annotations

import collections
import threading
import time

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.harness import PipelineProcess, signal

pytestmark = pytest.mark.e2e

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_REQUEST = 50


def _request(sender: int, seq: int) -> tuple[bytes, list[str]]:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "load"
    ss = rs.scope_spans.add()
    ids = []
    trace_id = ((sender + 1) << 64 | seq).to_bytes(16, "big")  # never all zero: OTLP calls that invalid
    for i in range(SPANS_PER_REQUEST):
        span_id = (seq * SPANS_PER_REQUEST + i + 1).to_bytes(8, "big")
        ss.spans.add(trace_id=trace_id, span_id=span_id, name="chat", start_time_unix_nano=1, end_time_unix_nano=2)
        ids.append(f"{trace_id.hex()}:{span_id.hex()}")
    return req.SerializeToString(), ids


class Sender(threading.Thread):
    """Sends requests until the server goes away; remembers the spans it got an OK for."""

    def __init__(self, port: int, sender: int) -> None:
        super().__init__(daemon=True)
        self.port, self.sender = port, sender
        self.acked: list[str] = []
        self.codes: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        call = channel.unary_unary(EXPORT)
        for seq in range(100_000):
            payload, ids = _request(self.sender, seq)
            try:
                call(payload, timeout=10)
            except grpc.RpcError as exc:
                self.codes[exc.code().name] += 1
                if exc.code() is grpc.StatusCode.UNAVAILABLE and self.codes["UNAVAILABLE"] > 20:
                    break
                time.sleep(0.01)
                continue
            self.codes["OK"] += 1
            self.acked += ids
        channel.close()


class TestGracefulShutdown:
    def test_sigterm_under_load_loses_nothing_that_was_acknowledged(self, pipeline_factory):
        """Four senders at full speed; SIGTERM; exit 0 and every acknowledged span is in the audit file."""
        pipe: PipelineProcess = pipeline_factory().start()
        senders = [Sender(pipe.grpc_port, n) for n in range(4)]
        for s in senders:
            s.start()
        deadline = time.monotonic() + 20
        while sum(len(s.acked) for s in senders) < 20_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipe.stop(signal.SIGTERM) == 0, pipe.stderr()
        for s in senders:
            s.join(timeout=30)
        acked = [i for s in senders for i in s.acked]
        assert len(acked) >= 5_000, "the load phase must have delivered a real amount of data"
        written = collections.Counter(line["event_id"] for line in pipe.audit_lines())
        missing = [i for i in acked if written[i] == 0]
        assert not missing, f"{len(missing)} acknowledged spans are missing from the audit file"
        assert max(written.values()) == 1, "no span was written twice"
        assert "Traceback" not in pipe.stderr()


class TestForcedShutdown:
    def test_a_second_sigterm_during_a_stuck_drain_exits_1_and_says_what_it_abandons(self, pipeline_factory):
        """The audit file is /dev/full, so the drain keeps retrying; a second SIGTERM stops it at once."""
        pipe: PipelineProcess = pipeline_factory()
        pipe.config["exporters"]["jsonl_audit"]["path"] = "/dev/full"
        pipe.config["exporters"]["jsonl_audit"]["retry_on_failure"] = {"initial_interval": "100ms"}
        pipe.config["service"]["shutdown_timeout"] = "60s"
        import yaml  # noqa: PLC0415

        pipe.config_path.write_text(yaml.safe_dump(pipe.config))
        pipe.start()
        payload, _ids = _request(9, 1)
        channel = grpc.insecure_channel(f"127.0.0.1:{pipe.grpc_port}")
        channel.unary_unary(EXPORT)(payload, timeout=5)
        channel.close()
        time.sleep(0.5)  # the batch reaches the exporter, whose writes fail with ENOSPC
        assert pipe.proc is not None
        pipe.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert pipe.proc.poll() is None, "still draining: the exporter keeps retrying"
        began = time.monotonic()
        pipe.proc.send_signal(signal.SIGTERM)
        assert pipe.wait(timeout=10) == 1
        assert time.monotonic() - began < 5
        err = pipe.stderr()
        assert "received SIGTERM again" in err
        assert f"{SPANS_PER_REQUEST} items still buffered or queued are abandoned" in err
        assert "Traceback" not in err


class TestUploadInFlight:
    def test_a_post_still_uploading_at_sigterm_gets_its_answer_and_is_written(self, pipeline_factory):
        """Raw socket: half a body, SIGTERM, the other half: the client gets 200 and the spans are in the audit."""
        import socket  # noqa: PLC0415

        pipe: PipelineProcess = pipeline_factory()
        pipe.start()
        body, ids = _request(7, 1)
        with socket.create_connection(("127.0.0.1", pipe.http_port), timeout=10) as sock:
            sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
            time.sleep(0.3)
            assert pipe.proc is not None
            pipe.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            sock.sendall(body[len(body) // 2:])
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        began = time.monotonic()
        assert pipe.wait(timeout=30) == 0, pipe.stderr()
        assert time.monotonic() - began < 5, "the drain did not sit out a fixed grace period"
        written = {line["event_id"] for line in pipe.audit_lines()}
        assert set(ids) <= written
