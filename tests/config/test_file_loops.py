"""validate refuses a pipeline that would tail the audit files it writes (each line read back, for ever)."""

from __future__ import annotations

from pathlib import Path

import yaml

from obs_pipeline.config import check_config


def _problems(tmp_path: Path, tail: dict, *, same_pipeline: bool = True, audit: str = "audit/audit.jsonl") -> list[str]:
    pipelines = {"logs": {"receivers": ["file_tail", "otlp"], "exporters": ["jsonl_audit"]}}
    if not same_pipeline:
        pipelines = {"logs": {"receivers": ["otlp"], "exporters": ["jsonl_audit"]},
                     "logs/tail": {"receivers": ["file_tail"], "exporters": ["debug"]}}
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}, "file_tail": tail},
        "exporters": {"jsonl_audit": {"path": str(tmp_path / audit)}, "debug": None},
        "service": {"pipelines": pipelines, "data_dir": str(tmp_path / "data")},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    _config, problems = check_config(path, {})
    return [f"{p.severity}: {p.path}: {p.message}" for p in problems]


def test_tailing_the_audit_directory_in_the_same_pipeline_is_an_error(tmp_path):
    problems = _problems(tmp_path, {"include": [str(tmp_path / "agent.jsonl"), str(tmp_path / "audit" / "*.jsonl")]})
    assert [p for p in problems if p.startswith("error: receivers.file_tail.include.1: matches ")] != [], problems
    assert any("read back and written again" in p and '"jsonl_audit"' in p for p in problems), problems


def test_rotated_audit_files_count_too(tmp_path):
    problems = _problems(tmp_path, {"include": [str(tmp_path / "audit" / "audit-*.jsonl.gz")]})
    assert any(p.startswith("error: receivers.file_tail.include.0: matches ") for p in problems), problems


def test_per_tenant_audit_files_count_too(tmp_path):
    problems = _problems(tmp_path, {"include": [str(tmp_path / "audit" / "*" / "*.jsonl")]},
                         audit="audit/{tenant}/audit.jsonl")
    assert any(p.startswith("error: receivers.file_tail.include.0: matches ") for p in problems), problems


def test_excluding_the_audit_files_or_another_pipeline_is_fine(tmp_path):
    glob = str(tmp_path / "audit" / "*")
    excluded = _problems(tmp_path, {"include": [glob], "exclude": [str(tmp_path / "audit" / "audit*")]})
    elsewhere = _problems(tmp_path, {"include": [glob]}, same_pipeline=False)
    assert [p for p in excluded + elsewhere if "read back" in p] == []
