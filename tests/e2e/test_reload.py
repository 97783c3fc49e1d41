"""SIGHUP reloads the config: validated first, the old graph drained, the new one started."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.harness import PipelineProcess, free_port, metric_value, signal

pytestmark = pytest.mark.e2e

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _send(port: int, first: int, count: int) -> None:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(first, first + count):
        ss.spans.add(trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"), name=f"span-{i}",
                     start_time_unix_nano=1, end_time_unix_nano=2)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        channel.unary_unary(EXPORT)(req.SerializeToString(), timeout=5)


def _names(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()  # (read while the pipeline writes: the last line may not be complete yet)
    return [json.loads(line)["event_type"] for line in text[:text.rfind("\n") + 1].splitlines() if line.strip()]


def _wait_for(predicate, what: str, pipe: PipelineProcess, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"{what} did not happen:\n{pipe.stderr()}"
        time.sleep(0.05)


class TestReload:
    def test_a_valid_reload_drains_the_old_graph_and_starts_the_new_one(self, pipeline_factory, tmp_path):
        """Spans held in a 30 s batch buffer reach the old file; the new config (new port, new file) takes over."""
        pipe: PipelineProcess = pipeline_factory()
        pipe.config["processors"]["batch"] = {"timeout": "30s"}  # they would wait 30 s without the drain
        pipe.config_path.write_text(yaml.safe_dump(pipe.config))
        pipe.start()
        _send(pipe.grpc_port, 0, 3)
        new_grpc = free_port()
        second_audit = tmp_path / "second.jsonl"
        reloaded = json.loads(json.dumps(pipe.config))
        reloaded["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = f"127.0.0.1:{new_grpc}"
        reloaded["exporters"]["jsonl_audit"]["path"] = str(second_audit)
        pipe.config_path.write_text(yaml.safe_dump(reloaded))
        assert pipe.proc is not None
        pipe.proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: "drained in" in pipe.stderr() and pipe.stderr().count("obs-pipeline started") == 2,
                  "the reload", pipe)
        assert _names(pipe.audit_path) == ["span-0", "span-1", "span-2"], "the old buffer was flushed, not lost"
        _send(new_grpc, 3, 2)
        page = pipe.metrics()
        assert metric_value(page, "obs_pipeline_receiver_accepted_items_total", transport="grpc") == 5, \
            "counters carry on across the reload"
        assert pipe.stop() == 0, pipe.stderr()
        assert _names(second_audit) == ["span-3", "span-4"]
        assert "Traceback" not in pipe.stderr()

    def test_an_invalid_file_is_reported_and_the_running_pipeline_goes_on(self, pipeline_factory):
        """A typo in the reloaded file: its error is logged with file:line, and the old pipeline keeps serving."""
        pipe: PipelineProcess = pipeline_factory()
        pipe.start()
        good = pipe.config_path.read_text()
        pipe.config_path.write_text(good.replace("timeout: 50ms", "timout: 50ms"))
        assert pipe.proc is not None
        pipe.proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: "not reloaded" in pipe.stderr(), "the rejection", pipe)
        err = pipe.stderr()
        assert 'unknown key "timout"' in err
        assert "pipeline.yaml:" in err
        _send(pipe.grpc_port, 0, 2)
        assert pipe.stop() == 0, pipe.stderr()
        assert _names(pipe.audit_path) == ["span-0", "span-1"]
        assert err.count("obs-pipeline started") == 1

    def test_a_reload_whose_ports_are_taken_goes_back_to_the_previous_config(self, pipeline_factory):
        """The new config cannot bind: the previous one is started again and keeps serving."""
        import socket  # noqa: PLC0415

        pipe: PipelineProcess = pipeline_factory()
        pipe.start()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            taken = squatter.getsockname()[1]
            reloaded = json.loads(json.dumps(pipe.config))
            reloaded["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = f"127.0.0.1:{taken}"
            pipe.config_path.write_text(yaml.safe_dump(reloaded))
            assert pipe.proc is not None
            pipe.proc.send_signal(signal.SIGHUP)
            _wait_for(lambda: pipe.stderr().count("obs-pipeline started") == 2, "the fallback", pipe)
        assert "starting the previous one again" in pipe.stderr()
        _send(pipe.grpc_port, 0, 1)
        assert pipe.stop() == 0, pipe.stderr()
        assert _names(pipe.audit_path) == ["span-0"]

    def test_an_unchanged_file_is_not_reloaded(self, pipeline_factory):
        """SIGHUP with the same file: nothing drains, nothing restarts, the listeners never close."""
        pipe: PipelineProcess = pipeline_factory()
        pipe.start()
        assert pipe.proc is not None
        pipe.proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: "unchanged, nothing to reload" in pipe.stderr(), "the no-op", pipe)
        _send(pipe.grpc_port, 0, 1)
        assert pipe.stop() == 0
        assert pipe.stderr().count("obs-pipeline started") == 1
