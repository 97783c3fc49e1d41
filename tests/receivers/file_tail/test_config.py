"""`validate` checks a file_tail receiver's preset, mapping and pattern; text lines through an RE2 pattern."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import yaml

from obs_pipeline.commands.validate import validate_files
from obs_pipeline.config import load_config
from obs_pipeline.exitcodes import ExitCode
from obs_pipeline.receivers import file_tail
from obs_pipeline.testing import parse_config
from tests.receivers.file_tail.kit import records, tailing


def _validate(tmp_path: Path, receiver: dict) -> tuple[ExitCode, str]:
    config = {
        "receivers": {"file_tail/agent": receiver},
        "exporters": {"jsonl_audit": {"path": str(tmp_path / "audit.jsonl")}},
        "service": {"data_dir": str(tmp_path / "data"),
                    "pipelines": {"logs": {"receivers": ["file_tail/agent"], "exporters": ["jsonl_audit"]}}},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    out = io.StringIO()
    return validate_files([path], out=out), out.getvalue()


class TestValidate:
    def test_a_preset_config_is_valid(self, tmp_path: Path):
        """include + preset is all a known framework needs."""
        code, out = _validate(tmp_path, {"include": [str(tmp_path / "traces" / "*.jsonl")], "preset": "action_trace"})
        assert code == ExitCode.OK, out

    @pytest.mark.parametrize(("receiver", "words"), [
        ({"preset": "nope"}, "unknown preset 'nope'; known: action_trace"),
        ({"mapping": {"sesion_id": "x"}}, "sesion_id"),
        ({"mapping": {"result": {"field": "a", "value": "b"}}}, "either field or value"),
        ({"mapping": {"timestamp": {"field": "t", "timezone": "Mars/Olympus"}}}, "IANA time zone"),
        ({"format": "text", "pattern": "(?P<message>.*"}, "not a valid RE2 pattern"),
        ({"format": "text", "pattern": "(.*)"}, "no named group"),
        ({"format": "text", "pattern": "(?<=a)b"}, "not a valid RE2 pattern"),  # lookbehind: not RE2
        ({"preset": "missy_audit", "mapping": {"result": "r"}}, "not preset and mapping"),
        ({"format": "otlp_json", "mapping": {"result": "r"}}, "needs format json or text"),
        ({"mapping_file": "/nonexistent/map.yaml"}, "cannot read it"),
    ])
    def test_mistakes_are_reported_with_their_path(self, tmp_path: Path, receiver: dict, words: str):
        """Each mistake fails validate with a message naming the key."""
        code, out = _validate(tmp_path, {"include": ["x.log"], **receiver})
        assert code == ExitCode.FAILED
        assert "receivers.file_tail/agent" in out
        assert words in out

    def test_include_is_required(self, tmp_path: Path):
        """A receiver without include is invalid."""
        code, out = _validate(tmp_path, {"preset": "missy_audit"})
        assert code == ExitCode.FAILED
        assert "include" in out


class TestTextPattern:
    async def test_python_logging_lines_through_a_pattern(self, tmp_path: Path):
        """A Python logging file: time, level, logger and message from named groups; a traceback line stays text."""
        log = tmp_path / "app.log"
        handler = logging.FileHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger = logging.getLogger("agent.test")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logger.warning("tool %s slow", "search")
            logger.error("tool failed")
        finally:
            handler.close()
            logger.removeHandler(handler)
        with log.open("a") as f:
            f.write("Traceback (most recent call last):\n")
        body = {
            "include": [str(log)], "format": "text", "start_at": "beginning",
            "pattern": r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<agent>\S+) (?P<message>.*)",
            "mapping": {"timestamp": {"field": "time", "format": "%Y-%m-%d %H:%M:%S,%f", "timezone": "UTC"},
                        "severity": "level", "message": "message", "agent": "agent", "event_type": {"value": "log"}},
        }
        async with tailing(tmp_path, body) as (_, consumer):
            await consumer.wait_for_items(3)
        first, second, third = records(consumer)
        assert first.severity_text == "WARNING"
        assert first.severity_number == 13
        assert second.severity_number == 17
        assert first.time_unix_nano > 0
        fields = {kv.key: kv.value.string_value for kv in first.body.kvlist_value.values}
        assert fields["message"] == "tool search slow"
        assert fields["agent"] == "agent.test"
        assert third.body.string_value == "Traceback (most recent call last):"

    def test_pattern_groups_without_mapping_use_audit_names(self):
        """With no mapping, groups named after audit fields map onto them."""
        cfg = parse_config(file_tail.FACTORY, {"include": ["x"], "format": "text",
                                               "pattern": r"(?P<session_id>\S+) (?P<message>.*)"})
        assert file_tail.FACTORY.check(cfg) == []


class TestEnvironment:
    def test_env_reference_in_a_glob(self, tmp_path: Path):
        """${env:VAR} in include is substituted by the config layer, like everywhere else."""
        config = {
            "receivers": {"file_tail": {"include": ["${env:AGENT_LOGS}/*.jsonl"], "preset": "missy_audit"}},
            "exporters": {"jsonl_audit": {"path": str(tmp_path / "audit.jsonl")}},
            "service": {"pipelines": {"logs": {"receivers": ["file_tail"], "exporters": ["jsonl_audit"]}}},
        }
        path = tmp_path / "pipeline.yaml"
        path.write_text(yaml.safe_dump(config))
        loaded = load_config(path, environ={"AGENT_LOGS": "/var/log/agents"})
        cfg = next(c.config for c in loaded.receivers.values() if c.id.type == "file_tail")
        assert cfg.include == ("/var/log/agents/*.jsonl",)
