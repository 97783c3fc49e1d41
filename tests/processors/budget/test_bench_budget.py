"""bench/budget.py's logic, without timing: it measures every part and builds a valid pipeline."""

from __future__ import annotations

from bench import budget as bench_budget
from bench import run as bench_run
from obs_pipeline.config import check_config


def test_measure_reports_each_part():
    figures = bench_budget.measure(rounds=1, requests=1)
    assert set(figures) == {"parse", "cost", "budget", "cost + budget"}
    assert all(best >= 0 and median >= 0 for best, median in figures.values())


def test_the_budget_pipeline_config_is_valid(tmp_path):
    args = bench_run.parse_args(["--no-sink"])
    pipe = bench_budget.BudgetPipeline(tmp_path / "p", args)
    config, problems = check_config(pipe.config_path)
    assert [p for p in problems if p.severity == "error"] == []
    assert config is not None
    assert [str(p) for p in config.pipelines[0].processors] == ["cost", "budget", "batch"]
