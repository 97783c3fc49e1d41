"""bench/redaction.py's logic, without timing: the pipeline it builds and its exactly-once check."""

from __future__ import annotations

import yaml

from bench.redaction import RedactionPipeline, _exactly_once, _security_lines
from bench.run import parse_args


def test_the_redaction_pipeline_puts_redaction_ahead_of_batch(tmp_path):
    """The compared pipeline differs from bench/run.py's by the redaction processor only."""
    pipe = RedactionPipeline(tmp_path / "p", parse_args(["--no-sink"]))
    config = yaml.safe_load(pipe.config_path.read_text())
    assert config["service"]["pipelines"]["traces"]["processors"] == ["redaction", "batch"]
    assert "redaction" in config["processors"]


def test_security_lines_are_the_only_duplicates_allowed(tmp_path):
    """A security line per redacting span shares its span id; any other duplicate fails."""
    (tmp_path / "audit.jsonl").write_text('{"category":"security","span_id":"a"}\n{"category":"llm","span_id":"a"}\n')
    extra = _security_lines(tmp_path)
    assert extra == 1
    audit = {"ok": False, "missing": 0, "unexpected": 0, "unparseable": 0, "duplicates": 1}
    assert _exactly_once({"audit": audit, "security_lines": extra})
    assert not _exactly_once({"audit": {**audit, "duplicates": 2}, "security_lines": extra})
