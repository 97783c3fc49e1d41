"""The compatibility matrix of docs/cost.md: every instrumentation's spans, as fixtures, priced by hand.

Each fixture in ``tests/fixtures/genai/`` is one OTLP/JSON ``TracesData`` with the attribute names
that instrumentation writes. A fixture the docs name must be here, and the other way round.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from obs_pipeline import otlp_json
from obs_pipeline.batch import Batch
from obs_pipeline.processors.cost.pricing import SOURCE_GENAI_PRICES
from obs_pipeline.signals import Signal
from tests.processors.cost.kit import Run, values

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "genai"
DOC = ROOT / "docs" / "cost.md"
M = 1_000_000
OURS = SOURCE_GENAI_PRICES

# Prices (USD per MTok, genai-prices 0.2.3): claude-sonnet-4-5 $3 in / $0.30 cache read / $3.75 cache write /
# $15 out; o3 $2 in / $0.50 cached / $8 out; gpt-4o $2.50 / $1.25 cached / $10; gpt-3.5-turbo-instruct $1.50 / $2;
# gemini-2.5-flash $0.30 / $2.50; Bedrock global claude-sonnet-4-5 as Anthropic's.
CLAUDE_CACHED = 1000 * 3 / M + 8000 * 0.3 / M + 1000 * 3.75 / M + 100 * 15 / M  # 10,000 in (8k read, 1k write), 100 out
O3_REASONING = 2000 * 2 / M + 1000 * 0.5 / M + 1500 * 8 / M  # 3,000 in (1k cached), 1,500 out (1k reasoning)

#: fixture -> (the cost written, its source, the estimate beside a reported cost or None).
EXPECTED: dict[str, tuple[float, str, float | None]] = {
    "otel_genai_latest.json": (CLAUDE_CACHED, OURS, None),
    "otel_semconv_1_41.json": (O3_REASONING, OURS, None),
    "otel_semconv_1_40_cache_creation.json": (CLAUDE_CACHED, OURS, None),
    "otel_semconv_1_36_gen_ai_system.json": (1000 * 2.5 / M + 200 * 10 / M, OURS, None),
    "openllmetry.json": (CLAUDE_CACHED, OURS, None),
    "openllmetry_legacy.json": (2000 * 1.5 / M + 500 * 2 / M, OURS, None),
    "openinference.json": (CLAUDE_CACHED, OURS, None),
    "openinference_reasoning.json": (O3_REASONING, OURS, None),
    "openinference_cost.json": (0.0045, "provider", 1000 * 2.5 / M + 200 * 10 / M),
    "pydantic_ai_logfire.json": (0.01125, "provider", 2000 * 2.5 / M + 1000 * 1.25 / M + 500 * 10 / M),
    "pydantic_ai_anthropic_cache_write.json": (CLAUDE_CACHED, OURS, None),
    "openlit.json": (0.0045, "provider", 1000 * 2.5 / M + 200 * 10 / M),
    "sentry.json": (O3_REASONING, OURS, None),
    "sentry_anthropic.json": (CLAUDE_CACHED, OURS, None),
    "openlit_reasoning.json": (3000 * 2 / M + 1500 * 8 / M, OURS, None),
    "openllmetry_reasoning.json": (3000 * 2 / M + 1500 * 8 / M, OURS, None),
    "botocore_bedrock_converse.json": (500 * 3 / M + 6000 * 0.3 / M + 1500 * 3.75 / M + 200 * 15 / M, OURS, None),
    "google_genai_thinking.json": (1000 * 0.3 / M + (200 + 800) * 2.5 / M, OURS, None),
    "openrouter_reported_cost.json": (0.0105, "provider", 1000 * 3 / M + 500 * 15 / M),
}


def _priced(name: str) -> dict[str, Any]:
    message = otlp_json.decode(Signal.TRACES, json.loads((FIXTURES / name).read_text()))

    async def go() -> dict[str, Any]:
        async with Run() as run:
            out = await run.send(Batch(Signal.TRACES, message))
            return values(out.message.resource_spans[0].scope_spans[0].spans[0].attributes)
    return asyncio.run(go())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_is_priced_as_computed_by_hand(name: str) -> None:
    usd, source, estimate = EXPECTED[name]
    out = _priced(name)
    assert out["gen_ai.usage.cost.amount"] == pytest.approx(usd, rel=1e-12)
    assert out["gen_ai.usage.cost.source"] == source
    assert out["gen_ai.usage.cost.currency"] == "USD"
    if estimate is None:
        assert "obs_pipeline.cost.estimate_usd" not in out
    else:
        assert out["obs_pipeline.cost.estimate_usd"] == pytest.approx(estimate, rel=1e-12)
        assert "obs_pipeline.cost.drift" not in out


def test_every_attribute_name_of_the_matrix_is_in_a_fixture() -> None:
    text = DOC.read_text()
    matrix = text[text.index("## Compatibility matrix"):text.index("## A cost the span already carries")]
    rows = "\n".join(line for line in matrix.splitlines() if line.startswith("| "))
    names = {n for n in re.findall(r"`((?:gen_ai|llm|operation|openinference)\.[a-z_.]+)`", rows)
             if not n.endswith(".json")}
    keys = {kv["key"] for p in FIXTURES.glob("*.json")
            for rs in json.loads(p.read_text())["resourceSpans"] for ss in rs["scopeSpans"]
            for span in ss["spans"] for kv in span["attributes"]}
    assert len(names) > 30
    assert sorted(names - keys) == []


def test_every_fixture_is_checked_and_named_in_the_docs() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.json")}
    in_docs = set(re.findall(r"`([a-z0-9_]+\.json)`", DOC.read_text()))
    assert on_disk == set(EXPECTED)
    assert in_docs == on_disk
