"""``obs-pipeline run`` as a user meets it: stdin, health and metrics, bad configs, busy ports."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.e2e.harness import PipelineProcess, metric_value

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _stdin_config(pipe: PipelineProcess) -> dict:
    cfg = pipe.default_config()
    cfg["receivers"] = {"stdin": {"format": "json"}}
    cfg["service"]["pipelines"] = {
        "logs": {"receivers": ["stdin"], "processors": ["batch"], "exporters": ["jsonl_audit"]},
    }
    return cfg


class TestStdin:
    def test_json_lines_from_stdin_are_audited_and_run_exits_0_at_eof(self, pipeline_factory, tmp_path):
        """An agent's audit JSONL piped in comes out as audit lines; a malformed line is reported and skipped."""
        good = (FIXTURES / "missy_audit.jsonl").read_text().splitlines()
        feed = tmp_path / "feed.jsonl"
        feed.write_text("\n".join([*good[:3], '{"session_id": "abc", broken', *good[3:]]) + "\n")
        with feed.open("rb") as stdin:
            pipe: PipelineProcess = pipeline_factory(stdin=stdin)
            pipe.config = _stdin_config(pipe)
            pipe.config_path.write_text(json.dumps(pipe.config))
            pipe.start(wait_ready=False)
            assert pipe.wait(timeout=30) == 0, pipe.stderr()
        lines = pipe.audit_lines()
        assert len(lines) == len(good)
        expected = [json.loads(g) for g in good]
        assert [line["event_type"] for line in lines] == [e["event_type"] for e in expected]
        assert [line["result"] for line in lines] == [e["result"] for e in expected]
        assert lines[1]["detail"]["message"] == expected[1]["detail"]["message"]
        err = pipe.stderr()
        assert "line 4" in err, "the malformed line is reported with its number"
        assert "broken" not in err, "but its content is not echoed"
        assert "Traceback" not in err


class TestSelfTelemetry:
    def test_health_readiness_and_metrics_endpoints(self, pipeline_factory):
        """/healthz and /readyz answer 200 while running; /metrics counts what was accepted and refused."""
        pipe: PipelineProcess = pipeline_factory().start()
        assert pipe.http_get(f"http://127.0.0.1:{pipe.health_port}/healthz")[0] == 200
        assert pipe.http_get(f"http://127.0.0.1:{pipe.health_port}/readyz")[0] == 200
        channel = grpc.insecure_channel(f"127.0.0.1:{pipe.grpc_port}")
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            export(b"\xff\xff\xff garbage", timeout=5)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        from tests.enginekit import traces  # noqa: PLC0415

        export(traces(3).SerializeToString(), timeout=5)
        channel.close()
        page = pipe.metrics()
        assert metric_value(page, "obs_pipeline_receiver_accepted_items_total", receiver="otlp", transport="grpc",
                            signal="traces") == 3
        assert metric_value(page, "obs_pipeline_receiver_malformed_requests_total", receiver="otlp") >= 1
        assert "obs_pipeline_exporter_queue_capacity" in page
        assert pipe.stop() == 0


class TestStartupFailures:
    def test_invalid_config_exits_1_with_the_problem_and_no_traceback(self, tmp_path):
        """A typo in the config: exit 1, file:line and path reported, nothing started."""
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: localhost\n"
            "exporters:\n  debug: {}\n"
            "service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
        )
        proc = subprocess.run([sys.executable, "-m", "obs_pipeline", "run", str(cfg)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 1
        assert "bad.yaml:5:" in proc.stderr
        assert "receivers.otlp.protocols.grpc.endpoint" in proc.stderr
        assert "Traceback" not in proc.stderr

    def test_port_in_use_exits_1_with_a_clear_message(self, pipeline_factory):
        """Another process holds the gRPC port: exit 1 naming the address, no traceback."""
        pipe: PipelineProcess = pipeline_factory()
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", pipe.grpc_port))
            blocker.listen()
            pipe.start(wait_ready=False)
            assert pipe.wait(timeout=30) == 1
        err = pipe.stderr()
        assert f"127.0.0.1:{pipe.grpc_port}" in err
        assert "Traceback" not in err


class TestExitCodes:
    def test_a_run_that_loses_data_exits_3_so_ci_fails(self, pipeline_factory, tmp_path):
        """stdin to an audit file on a full disk: the run ends at EOF but says it lost data (exit 3), not 0."""
        good = (FIXTURES / "missy_audit.jsonl").read_text()
        feed = tmp_path / "feed.jsonl"
        feed.write_text(good)
        with feed.open("rb") as stdin:
            pipe: PipelineProcess = pipeline_factory(stdin=stdin)
            pipe.config = _stdin_config(pipe)
            pipe.config["exporters"]["jsonl_audit"]["path"] = "/dev/full"
            pipe.config["exporters"]["jsonl_audit"]["retry_on_failure"] = {
                "initial_interval": "50ms", "max_elapsed_time": "300ms"}
            pipe.config_path.write_text(json.dumps(pipe.config))
            pipe.start(wait_ready=False)
            code = pipe.wait(timeout=30)
        err = pipe.stderr()
        assert code == 3, err
        assert "were not delivered" in err
        assert "Traceback" not in err
