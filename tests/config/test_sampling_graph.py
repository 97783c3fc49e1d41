"""validate warns when a pipeline that samples also feeds the audit log or budgets, and keeps tail mode to traces."""

from __future__ import annotations

from pathlib import Path

import yaml

from obs_pipeline.config import check_config


def _check(tmp_path: Path, pipelines: dict, *, budget: bool = False) -> list[str]:
    processors = {"sampling": {"sampling_percentage": 10},
                  "sampling/tail": {"mode": "tail", "policies": [{"name": "all", "type": "always_sample"}]}}
    if budget:
        processors |= {"cost": None, "budget": {"endpoint": None, "budgets": [{"id": "cap", "scope": "session", "limit_usd": 1}]}}
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "processors": processors,
        "exporters": {"jsonl_audit": {"path": str(tmp_path / "audit.jsonl")}, "debug": None},
        "service": {"pipelines": pipelines, "data_dir": str(tmp_path / "data")},
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
        assert any(p.startswith('warning: pipeline traces samples with "sampling" ahead of exporter "jsonl_audit", '
                                "which must see every span")
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

    def test_a_budget_ahead_of_the_sampler_sees_every_span(self, tmp_path):
        """cost, budget, then sampling to a backend: the budget saw everything, no warning about it."""
        problems = _check(tmp_path, {
            "traces": {"receivers": ["otlp"], "processors": ["cost", "budget", "sampling"], "exporters": ["debug"]},
        }, budget=True)
        assert [p for p in problems if "sampl" in p or "budget" in p] == [], problems

    def test_a_budget_behind_the_sampler_is_warned_about(self, tmp_path):
        problems = _check(tmp_path, {
            "traces": {"receivers": ["otlp"], "processors": ["cost", "sampling", "budget"], "exporters": ["debug"]},
        }, budget=True)
        assert any('ahead of processor "budget"' in p for p in problems), problems

    def test_a_logs_pipeline_speaks_of_records(self, tmp_path):
        problems = _check(tmp_path, {
            "logs": {"receivers": ["otlp"], "processors": ["sampling"], "exporters": ["jsonl_audit"]},
        })
        assert any("see every record" in p and "(logs/backend)" in p for p in problems), problems


class TestBudgetNeedsCost:
    def test_a_budget_without_cost_before_it_is_warned_about(self, tmp_path):
        """[budget, cost] and [budget] meter nothing the cost processor prices: say so."""
        for processors in (["budget", "cost"], ["budget"]):
            problems = _check(tmp_path, {
                "traces": {"receivers": ["otlp"], "processors": processors, "exporters": ["debug"]},
            }, budget=True)
            assert any(p.startswith('warning: processor "budget" meters gen_ai.usage.cost.amount, but no cost processor '
                                    "comes before it") for p in problems), (processors, problems)

    def test_cost_then_budget_is_quiet(self, tmp_path):
        problems = _check(tmp_path, {
            "traces": {"receivers": ["otlp"], "processors": ["cost", "budget"], "exporters": ["debug"]},
        }, budget=True)
        assert [p for p in problems if "budget" in p] == [], problems
