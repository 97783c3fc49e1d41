"""Every fixture through its preset, the redaction processor and jsonl_audit in a real obs-pipeline run."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import PipelineProcess
from tests.receivers.file_tail.kit import FIXTURES

PRESETS = {"missy_audit": "missy_audit", "agent_os_audit": "agent_os_audit", "agent_os_log": "agent_os_log",
           "action_trace": "action_trace", "otlp_json": "otlp_traces"}
#: The fake credentials the fixtures carry (see tests/fixtures/README.md).
SECRETS = re.compile(r"sk-proj-[A-Za-z0-9]{20,}|eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9\.[A-Za-z0-9._-]+")


def _expected_items() -> int:
    total = 0
    for fixture in PRESETS.values():
        for line in (FIXTURES / f"{fixture}.jsonl").read_text().splitlines():
            if not line.strip():
                continue
            doc = json.loads(line)
            total += sum(len(ss["spans"]) for rs in doc.get("resourceSpans", []) for ss in rs["scopeSpans"]) or 1
    return total


@pytest.mark.e2e
def test_fixture_secrets_are_redacted_in_the_audit_log(tmp_path: Path):
    """No fake credential from any fixture reaches the audit file; the sessions and results do."""
    source = tmp_path / "in"
    source.mkdir()
    for fixture in PRESETS.values():
        shutil.copy(FIXTURES / f"{fixture}.jsonl", source / f"{fixture}.jsonl")
    assert SECRETS.search("".join((source / f"{f}.jsonl").read_text() for f in PRESETS.values()))
    proc = PipelineProcess(tmp_path)
    receivers = {f"file_tail/{preset}": {"include": [str(source / f"{fixture}.jsonl")], "preset": preset,
                                         "start_at": "beginning", "poll_interval": "50ms"}
                 for preset, fixture in PRESETS.items()}
    proc.config = {
        "receivers": receivers,
        "processors": {"redaction": None},
        "exporters": {"jsonl_audit": {"path": str(proc.audit_path)}},
        "service": {
            "data_dir": str(tmp_path / "data"),
            "pipelines": {
                "logs": {"receivers": sorted(set(receivers) - {"file_tail/otlp_json"}), "processors": ["redaction"],
                         "exporters": ["jsonl_audit"]},
                "traces": {"receivers": ["file_tail/otlp_json"], "processors": ["redaction"],
                           "exporters": ["jsonl_audit"]},
            },
            "telemetry": {"metrics": {"endpoint": f"127.0.0.1:{proc.metrics_port}"},
                          "health": {"endpoint": f"127.0.0.1:{proc.health_port}"}},
        },
    }
    proc.config_path.write_text(yaml.safe_dump(proc.config, sort_keys=False))
    expected = _expected_items()
    proc.start()
    try:
        deadline = time.monotonic() + 20
        while len(proc.audit_lines()) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # what more there is (span events) arrives with the same batches
        assert proc.stop() == 0
    finally:
        proc.kill()
    text = proc.audit_path.read_text()
    lines = proc.audit_lines()
    assert len(lines) >= expected  # a span may get more than one line (its events)
    assert SECRETS.search(text) is None
    assert "[REDACTED" in text
    sessions = {line["session_id"] for line in lines}
    assert {"abc-123", "def-456", "sess-123", "conv-9f2", "conv-0"} <= sessions
    assert {"allow", "deny", "error"} <= {line["result"] for line in lines}
