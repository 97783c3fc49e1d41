"""validate warns when a pipeline that samples also feeds the audit log or budgets, and keeps tail mode to traces."""

from __future__ import annotations

from pathlib import Path

import yaml

from obs_pipeline.config import check_config


def _check(tmp_path: Path, pipelines: dict) -> list[str]:
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {"sampling": {"sampling_percentage": 10},
                       "sampling/tail": {"mode": "tail", "policies": [{"name": "all", "type": "always_sample"}]}},
        "exporters": {"jsonl_audit": {"path": str(tmp_path / "audit.jsonl")}, "debug": None},
        "service": {"pipelines": pipelines},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    _config, problems = check_config(path, {})
    return [f"{p.severity}: {p.message}" for p in problems if "unused" not in p.message and "not used" not in p.message]


class TestSamplingGraph:
    def test_sampling_next_to_the_audit_log_is_warned_about(self, tmp_path):
        """A traces pipeline with jsonl_audit and sampling: one warning that says where sampling belongs."""
        problems = _check(tmp_path, {
            "traces": {"receivers": ["otlp"], "processors": ["sampling"], "exporters": ["jsonl_audit"]},
            "logs": {"receivers": ["otlp"], "processors": ["sampling/tail"], "exporters": ["debug"]},
        })
        assert any(p.startswith("warning: pipeline traces samples with \"sampling\" but has a jsonl_audit exporter")
                   and "traces/backend" in p for p in problems), problems
        assert any(p.startswith('error: processor "sampling/tail" is in mode tail, which samples traces only')
                   for p in problems), problems

    def test_a_separate_backend_pipeline_is_not_warned_about(self, tmp_path):
        """Audit unsampled, backend sampled (the documented shape): no sampling warning."""
        problems = _check(tmp_path, {
            "traces": {"receivers": ["otlp"], "exporters": ["jsonl_audit"]},
            "traces/backend": {"receivers": ["otlp"], "processors": ["sampling/tail"], "exporters": ["debug"]},
            "logs/backend": {"receivers": ["otlp"], "processors": ["sampling"], "exporters": ["debug"]},
        })
        assert not [p for p in problems if "sampl" in p], problems
