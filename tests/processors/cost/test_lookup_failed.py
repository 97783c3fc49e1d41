"""A price lookup that raises (a bug or bad data in the price tables) costs that span's price only."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from genai_prices import data_snapshot

from obs_pipeline.batch import Batch
from obs_pipeline.signals import Signal
from tests.processors.cost.kit import Run, chat, traces, values

BROKEN = "broken-model-1"


@pytest.fixture
def broken_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """genai-prices' model lookup raises a ValueError (not "not found") for one model; the rest work."""
    snapshot = data_snapshot.get_snapshot()
    real = type(snapshot).find_provider_model

    def find(self: Any, model_ref: str, *args: Any) -> Any:
        if model_ref == BROKEN:
            raise ValueError("bad price data")
        return real(self, model_ref, *args)

    monkeypatch.setattr(type(snapshot), "find_provider_model", find)


@pytest.mark.usefixtures("broken_tables")
def test_a_failing_lookup_marks_only_that_span_unpriced(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    good, bad = chat("openai", "gpt-4o", input=1000, output=100), chat("openai", BROKEN, input=1000, output=100)

    async def go() -> tuple[list[dict[str, Any]], Run]:
        async with Run() as run:
            out = await run.send(Batch(Signal.TRACES, traces(good, bad, good)))
            await run.send(Batch(Signal.TRACES, traces(bad)))  # the same failure again: counted, not logged again
        return [values(s.attributes) for s in out.message.resource_spans[0].scope_spans[0].spans], run

    spans, run = asyncio.run(go())
    assert spans[0]["gen_ai.usage.cost.amount"] > 0
    assert spans[2]["gen_ai.usage.cost.amount"] > 0
    assert spans[1]["gen_ai.usage.cost.unpriced"] is True
    assert spans[1]["gen_ai.usage.cost.unpriced_reason"] == "lookup_failed"
    assert "gen_ai.usage.cost.amount" not in spans[1]
    assert run.sample("obs_pipeline_cost_unpriced_spans_total", reason="lookup_failed") == 2
    assert run.sample("obs_pipeline_processor_dropped_items_total", reason="processing_error") == 0
    warnings = [r.getMessage() for r in caplog.records if "lookup_failed" in r.getMessage()]
    assert len(warnings) == 1
    assert "ValueError" in warnings[0]
    assert BROKEN not in warnings[0]  # telemetry content (the model name) never goes into our logs
