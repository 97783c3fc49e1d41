"""``obs-pipeline budget status`` reading a SQLite state written by the processor."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from obs_pipeline.commands import main
from tests.processors.budget.kit import Harness, span

BUDGETS = [{"id": "session-cap", "scope": "session", "limit_usd": 1, "warn_at": [0.5]},
           {"id": "tenant-daily", "scope": "tenant", "limit_usd": 200, "window": "1d"}]


def config(tmp_path) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({
        "receivers": {"otlp": {}},
        "processors": {"budget": {"budgets": BUDGETS}},
        "exporters": {"debug": {}},
        "service": {"data_dir": str(tmp_path / "data"),
                    "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["budget"], "exporters": ["debug"]}}},
    }))
    return str(path)


async def spend(data_dir) -> None:
    async with Harness(data_dir, {"budgets": BUDGETS}) as h:
        await h.send(span(1.25, session__id="run-7"), span(0.6, session__id="run-8"), resource={"tenant.id": "acme"})


def test_status_shows_spend_state_and_reset(tmp_path):
    path = config(tmp_path)
    asyncio.run(spend(tmp_path / "data"))
    result = CliRunner().invoke(main, ["budget", "status", "--config", path, "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["budget"], r["scope_value"]): r for r in json.loads(result.output)["budgets"]}
    assert rows[("session-cap", "run-7")]["state"] == "exceeded"
    assert rows[("session-cap", "run-8")]["state"] == "warning"
    assert rows[("tenant-daily", "acme")]["spend"] == 1.85
    assert rows[("tenant-daily", "acme")]["resets_at"].endswith("T00:00:00Z")
    table = CliRunner().invoke(main, ["budget", "status", "--config", path])
    assert table.exit_code == 0
    assert "run-7" in table.output
    assert "exceeded" in table.output
    assert "$1.2500" in table.output


def test_status_without_state_yet_lists_the_budgets(tmp_path):
    result = CliRunner().invoke(main, ["budget", "status", "--config", config(tmp_path), "--json"])
    assert result.exit_code == 0
    assert [r["budget"] for r in json.loads(result.output)["budgets"]] == ["session-cap", "tenant-daily"]
    assert not (tmp_path / "data").exists()  # status never creates state


def test_status_with_an_unreachable_redis_fails_clearly(tmp_path):
    path = tmp_path / "p.yaml"
    cfg = yaml.safe_load(Path(config(tmp_path)).read_text())
    cfg["processors"]["budget"]["state"] = "redis://:pw@127.0.0.1:1/0"
    path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(main, ["budget", "status", "--config", str(path)])
    assert result.exit_code == 1
    assert "cannot reach the Redis state store at 127.0.0.1:1/0" in result.output
    assert "pw" not in result.output
