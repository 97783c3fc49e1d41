"""Each fixture through its preset and a real jsonl_audit exporter gives the expected audit lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from obs_pipeline.batch import Batch
from obs_pipeline.commands import main
from obs_pipeline.components import Kind
from obs_pipeline.exporters import jsonl_audit
from obs_pipeline.receivers import file_tail
from obs_pipeline.receivers.file_tail import presets
from obs_pipeline.receivers.file_tail.mapping import Mapper
from obs_pipeline.receivers.linebatch import SEVERITY_NUMBERS
from obs_pipeline.testing import RecordingHost, make_settings, parse_config
from tests.receivers.file_tail.kit import FIXTURES, tailing, wait_until

FIXTURE_OF = {"missy_audit": "missy_audit", "agent_os_audit": "agent_os_audit", "agent_os_log": "agent_os_log",
              "action_trace": "action_trace", "otlp_json": "otlp_traces"}


class _AuditSink:
    """A consumer that hands every batch to a real jsonl_audit exporter."""

    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter
        self.items = 0

    async def consume(self, batch: Batch) -> None:
        await self.exporter.export(batch)
        self.items += batch.items


async def _audit_lines(tmp_path: Path, preset: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(audit lines, source lines) of the preset's fixture read through file_tail -> jsonl_audit."""
    source = tmp_path / "in" / f"{FIXTURE_OF[preset]}.jsonl"
    source.parent.mkdir()
    shutil.copy(FIXTURES / source.name, source)
    audit = tmp_path / "audit.jsonl"
    exporter = jsonl_audit.FACTORY.create(make_settings("jsonl_audit", Kind.EXPORTER),
                                          parse_config(jsonl_audit.FACTORY, {"path": str(audit)}))
    await exporter.start(RecordingHost())
    sink = _AuditSink(exporter)
    src = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    expected = len(src) if preset != "otlp_json" else sum(
        len(ss["spans"]) for line in src for rs in line["resourceSpans"] for ss in rs["scopeSpans"])
    body = {"include": [str(source)], "preset": preset, "start_at": "beginning"}
    async with tailing(tmp_path, body, sink):
        await wait_until(lambda: sink.items >= expected)
    await exporter.shutdown()
    return [json.loads(line) for line in audit.read_text().splitlines()], src


class TestPresetsThroughTheAuditLog:
    async def test_missy_audit_comes_out_unchanged(self, tmp_path: Path):
        """The runtime's own audit lines: session, task, event type, category, result and detail kept."""
        lines, src = await _audit_lines(tmp_path, "missy_audit")
        assert [(line["session_id"], line["task_id"], line["event_type"], line["category"], line["result"])
                for line in lines] == [(s["session_id"], s["task_id"], s["event_type"], s["category"], s["result"])
                                       for s in src]
        assert [line["detail"] for line in lines] == [s["detail"] for s in src]
        assert lines[0]["timestamp"] == "2026-03-17T10:30:45.123456Z"

    async def test_agent_os_audit_decision_becomes_result(self, tmp_path: Path):
        """decision -> result, context.session_id -> session_id, the kernel's id -> event_id; a security event."""
        lines, src = await _audit_lines(tmp_path, "agent_os_audit")
        assert [line["result"] for line in lines] == [s["decision"] for s in src]
        assert {line["session_id"] for line in lines} == {"sess-123"}
        assert {line["category"] for line in lines} == {"security"}
        assert [line["event_id"] for line in lines] == [s["id"] for s in src]
        assert lines[0]["detail"]["resource"] == "/prod/config.yaml"
        assert lines[0]["detail"]["message"] == "Production writes blocked"
        assert lines[0]["user_id"] == "system"
        assert lines[0]["agent"] == "agent-001"

    async def test_agent_os_log_keeps_trace_context(self, tmp_path: Path):
        """The kernel's log: trace and span ids, the action as event type, the message and level in detail."""
        lines, src = await _audit_lines(tmp_path, "agent_os_log")
        assert [line["trace_id"] for line in lines] == [s["trace_id"] for s in src]
        assert [line["span_id"] for line in lines] == [s["span_id"] for s in src]
        assert [line["event_type"] for line in lines] == [s["action"] for s in src]
        assert [line["result"] for line in lines] == [s["decision"] for s in src]
        assert [line["detail"]["message"] for line in lines] == [s["message"] for s in src]
        assert [line["detail"]["level"] for line in lines] == [s["level"] for s in src]

    async def test_action_trace_conversation_status_and_summaries(self, tmp_path: Path):
        """conversation_id -> session_id, status error -> result error, the summaries land in detail."""
        lines, src = await _audit_lines(tmp_path, "action_trace")
        assert {line["session_id"] for line in lines} == {"conv-9f2"}
        assert [line["result"] for line in lines] == ["error" if s["status"] == "error" else "allow" for s in src]
        assert [line["category"] for line in lines][:3] == ["llm", "tool", "tool"]
        assert [line["detail"]["input_summary"] for line in lines] == [s["input_summary"] for s in src]
        assert [line["detail"]["output_summary"] for line in lines] == [s["output_summary"] for s in src]
        failed = next(line for line in lines if line["result"] == "error")
        assert failed["detail"]["message"] == "timeout after 30s"

    async def test_otlp_json_spans_become_span_lines(self, tmp_path: Path):
        """The collector's OTLP/JSON file: every span gets its line, with its session and error status."""
        lines, _ = await _audit_lines(tmp_path, "otlp_json")
        assert {line["session_id"] for line in lines} >= {"conv-0"}
        assert "error" in {line["result"] for line in lines}
        assert {line["event_type"] for line in lines} >= {"invoke_agent", "chat", "execute_tool"}


class TestPresetFiles:
    @pytest.mark.parametrize("name", presets.names())
    def test_every_preset_is_a_valid_receiver_config(self, name: str):
        """A preset's mapping compiles and passes the receiver's schema (as a mapping_file would)."""
        doc = presets.load(name)
        assert {"name", "description", "format", "include_example"} <= set(doc)
        assert doc["name"] == name
        cfg = parse_config(file_tail.FACTORY, {"include": doc["include_example"], "preset": name})
        assert file_tail.FACTORY.check(cfg) == []
        if "mapping" in doc:
            Mapper(doc["mapping"], SEVERITY_NUMBERS)
            mapped = parse_config(file_tail.FACTORY, {"include": ["x"], "mapping": doc["mapping"]})
            assert file_tail.FACTORY.check(mapped) == []

    def test_the_five_presets_ship(self):
        """The fixtures' frameworks each have a preset."""
        assert set(presets.names()) == set(FIXTURE_OF)

    def test_cli_lists_and_prints(self):
        """`obs-pipeline presets` lists every preset; `presets NAME` prints its file; an unknown one exits 2."""
        runner = CliRunner()
        listing = runner.invoke(main, ["presets"])
        assert listing.exit_code == 0
        for name in presets.names():
            assert name in listing.output
        shown = runner.invoke(main, ["presets", "action_trace"])
        assert shown.exit_code == 0
        assert shown.output == presets.text("action_trace")
        unknown = runner.invoke(main, ["presets", "nope"])
        assert unknown.exit_code == 2
        assert "missy_audit" in unknown.output

    def test_a_printed_preset_works_as_a_mapping_file(self, tmp_path: Path):
        """The output of `presets NAME` saved to a file is a valid mapping_file."""
        path = tmp_path / "mine.yaml"
        path.write_text(presets.text("agent_os_audit"))
        cfg = parse_config(file_tail.FACTORY, {"include": ["x"], "mapping_file": str(path)})
        assert file_tail.FACTORY.check(cfg) == []
        assert cfg.resolved["mapping"]["result"] == "decision"
