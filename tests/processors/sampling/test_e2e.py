"""The sampling processor in real ``obs-pipeline run`` subprocesses, fed over OTLP/HTTP."""

from __future__ import annotations

import random
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.harness import PipelineProcess, metric_value, signal
from tests.processors.sampling.kit import trace_ids

pytestmark = pytest.mark.e2e


def _pipeline(workdir: Path, sampling: dict[str, Any], shutdown_timeout: str = "20s") -> PipelineProcess:
    """otlp -> sampling -> jsonl_audit, the audit file standing in for a backend we can read."""
    workdir.mkdir(parents=True, exist_ok=True)
    proc = PipelineProcess(workdir, {})
    config = proc.default_config()
    config["processors"] = {"sampling": sampling}
    config["service"]["pipelines"] = {
        "traces/backend": {"receivers": ["otlp"], "processors": ["sampling"], "exporters": ["jsonl_audit"]},
    }
    config["service"]["shutdown_timeout"] = shutdown_timeout
    proc.config = config
    proc.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return proc


def _post(proc: PipelineProcess, ids: list[bytes], spans_per_trace: int = 1) -> None:
    request = ExportTraceServiceRequest()
    ss = request.resource_spans.add().scope_spans.add()
    for trace_id in ids:
        for n in range(spans_per_trace):
            ss.spans.add(name="chat", trace_id=trace_id, span_id=(n + 1).to_bytes(8, "big"),
                         start_time_unix_nano=1, end_time_unix_nano=2)
    http = urllib.request.Request(
        f"http://127.0.0.1:{proc.http_port}/v1/traces", data=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"}, method="POST")
    with urllib.request.urlopen(http, timeout=10) as resp:
        assert resp.status == 200


def _audited_trace_ids(proc: PipelineProcess) -> set[str]:
    return {line["trace_id"] for line in proc.audit_lines()}


class TestHeadAcrossProcesses:
    def test_two_processes_given_the_same_traces_in_different_orders_keep_the_same_ids(self, tmp_path):
        """Two sidecars, 3,000 traces each in another order and other request sizes: identical kept sets."""
        ids = trace_ids(3000, seed=21)
        shuffled = ids[:]
        random.Random(5).shuffle(shuffled)
        kept = []
        for name, order, size in (("a", ids, 100), ("b", shuffled, 250)):
            proc = _pipeline(tmp_path / name, {"sampling_percentage": 30})
            try:
                proc.start()
                for start in range(0, len(order), size):
                    _post(proc, order[start:start + size])
                assert proc.stop() == 0
            finally:
                proc.kill()
            kept.append(_audited_trace_ids(proc))
            # The totals line keeps deliberate drops apart from losses ("did anything get lost?": no).
            totals = [line for line in proc.stderr().splitlines() if "totals:" in line][-1]
            assert ", dropped 0 items; dropped on purpose: sampled " in totals, totals
        assert kept[0] == kept[1]
        assert 0.25 < len(kept[0]) / len(ids) < 0.35


class TestTailDrain:
    def test_sigterm_with_10000_traces_buffered_decides_and_flushes_them_all(self, tmp_path):
        """decision_wait 1h, 10,000 traces buffered: SIGTERM decides them at once; every kept span is written."""
        proc = _pipeline(tmp_path / "tail", {
            "mode": "tail", "decision_wait": "1h", "num_traces": 20_000, "max_memory": "256MiB",
            "policies": [{"name": "all", "type": "always_sample"}],
        }, shutdown_timeout="20s")
        ids = trace_ids(10_000, seed=31)
        try:
            proc.start()
            for start in range(0, len(ids), 500):
                _post(proc, ids[start:start + 500], spans_per_trace=2)
            page = proc.metrics()
            assert metric_value(page, "obs_pipeline_processor_sampling_buffered_traces") == 10_000
            began = time.monotonic()
            code = proc.stop(signal.SIGTERM, timeout=30)
            took = time.monotonic() - began
        finally:
            proc.kill()
        assert code == 0, proc.stderr()
        assert took < 20
        lines = proc.audit_lines()
        assert len(lines) == 20_000
        assert {line["trace_id"] for line in lines} == {t.hex() for t in ids}
