"""Bad input: counted, marked unpriced or ignored; never a crash, never a negative or made-up cost."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest

from obs_pipeline.batch import Batch
from obs_pipeline.signals import Signal
from tests.processors.cost.kit import NOW, Run, chat, price, traces, values

M = 1_000_000
AMOUNT = "gen_ai.usage.cost.amount"


@pytest.mark.parametrize("bad", [-5, 1.5, "abc", math.nan, math.inf, -0.5, True, b"\x01", 10**12, "1e999", ""])
def test_a_count_that_is_no_count_makes_the_span_unpriced(bad: object) -> None:
    out = price(chat("openai", "gpt-4o", input=bad, output=10))  # type: ignore[arg-type]
    assert AMOUNT not in out
    assert out["gen_ai.usage.cost.unpriced"] is True
    assert out["gen_ai.usage.cost.unpriced_reason"] == "invalid_tokens"


@pytest.mark.parametrize("good", ["1000", 1000.0, " 1000 ", "1e3"])
def test_a_count_sent_as_a_whole_double_or_a_numeric_string_is_a_count(good: object) -> None:
    out = price(chat("openai", "gpt-4o", input=good, output=0))  # type: ignore[arg-type]
    assert out[AMOUNT] == pytest.approx(1000 * 2.5 / M)


def test_max_tokens_is_configurable() -> None:
    out = price(chat("openai", "gpt-4o", input=5000, output=0), body={"max_tokens": 4096})
    assert out["gen_ai.usage.cost.unpriced_reason"] == "invalid_tokens"


def test_missing_model() -> None:
    span = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 10}
    assert price(span)["gen_ai.usage.cost.unpriced_reason"] == "missing_model"


def test_no_usage_at_all() -> None:
    out = price(chat("openai", "gpt-4o"))
    assert out["gen_ai.usage.cost.unpriced_reason"] == "no_usage"


def test_only_a_total_cannot_be_split_into_input_and_output() -> None:
    out = price(chat("openai", "gpt-4o", total=1000))
    assert out["gen_ai.usage.cost.unpriced_reason"] == "no_usage"


def test_more_cache_than_input_from_a_provider_that_counts_it_inside() -> None:
    # OpenAI's prompt_tokens include cached_tokens: 100 input with 500 cached is a contradiction. genai-prices
    # itself raises on a negative uncached input; here it is counted and marked.
    async def go() -> tuple[dict[str, object], float]:
        async with Run() as run:
            out = await run.send(Batch(Signal.TRACES, traces(chat("openai", "gpt-4o", input=100, cache_read=500,
                                                                  output=1))))
            return (values(out.message.resource_spans[0].scope_spans[0].spans[0].attributes),
                    run.sample("obs_pipeline_cost_unpriced_spans_total", reason="negative_uncached"))
    out, counted = asyncio.run(go())
    assert out["gen_ai.usage.cost.unpriced_reason"] == "negative_uncached"
    assert counted == 1


def test_more_reasoning_than_output_outside_gemini_is_invalid() -> None:
    out = price(chat("openai", "o3", input=10, output=5, reasoning=50))
    assert out["gen_ai.usage.cost.unpriced_reason"] == "invalid_tokens"


def test_a_start_time_hours_in_the_future_is_priced_at_todays_price_and_counted() -> None:
    # A span claiming to start in 2030 must not pick a price scheduled for a later date.
    future = datetime.now(UTC) + timedelta(days=400)

    async def go() -> tuple[dict[str, object], float]:
        async with Run() as run:
            out = await run.send(Batch(Signal.TRACES, traces(chat("openai", "gpt-4o", input=1000, output=0),
                                                             start=future)))
            return (values(out.message.resource_spans[0].scope_spans[0].spans[0].attributes),
                    run.sample("obs_pipeline_cost_normalized_spans_total", reason="future_start_time"))
    out, counted = asyncio.run(go())
    assert out[AMOUNT] == pytest.approx(1000 * 2.5 / M)
    assert counted == 1


def test_a_start_time_hours_in_the_past_is_fine() -> None:
    out = price(chat("openai", "gpt-4o", input=1000, output=0), start=NOW - timedelta(hours=7))
    assert out[AMOUNT] == pytest.approx(1000 * 2.5 / M)


def test_a_span_without_start_time_is_priced_now() -> None:
    data = traces(chat("openai", "gpt-4o", input=1000, output=0))
    data.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano = 0

    async def go() -> dict[str, object]:
        async with Run() as run:
            out = await run.send(Batch(Signal.TRACES, data))
            return values(out.message.resource_spans[0].scope_spans[0].spans[0].attributes)
    assert asyncio.run(go())[AMOUNT] == pytest.approx(1000 * 2.5 / M)


@pytest.mark.parametrize("model", ["x" * 5000, "  ", "gpt-4o\x00"])
def test_odd_model_names(model: str) -> None:
    out = price(chat("openai", model, input=10, output=10))
    assert AMOUNT not in out
    assert out["gen_ai.usage.cost.unpriced"] is True


@pytest.mark.parametrize("reported", [-1.0, math.nan, "a lot", math.inf])
def test_a_reported_cost_that_is_no_amount_is_ignored(reported: object) -> None:
    out = price({**chat("openai", "gpt-4o", input=1000, output=0), "gen_ai.usage.cost": reported})
    assert out[AMOUNT] == pytest.approx(1000 * 2.5 / M)
    assert out["gen_ai.usage.cost.source"].startswith("genai-prices@")
    assert out["gen_ai.usage.cost"] == reported or math.isnan(out["gen_ai.usage.cost"])  # left as it came


def test_non_string_provider_and_operation_values() -> None:
    span = {"gen_ai.operation.name": 7, "gen_ai.provider.name": 3, "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 10}
    assert price(span) == span  # no inference operation: untouched


def test_costs_are_never_negative_on_random_counts() -> None:
    import random  # noqa: PLC0415 - only this test

    rng = random.Random(9)
    spans = []
    for _ in range(300):
        counts = {k: rng.choice([-1, 0, 1, 7, 10_000, 250_000, "x", 2.5])
                  for k in ("input", "output", "cache_read", "cache_write", "reasoning")}
        spans.append(chat(rng.choice(["openai", "anthropic", "gcp.gemini", None]),
                          rng.choice(["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro", "o3"]), **counts))
    from tests.processors.cost.kit import price_all  # noqa: PLC0415

    for out in price_all(*spans):
        assert (AMOUNT in out) != (out.get("gen_ai.usage.cost.unpriced") is True)
        if AMOUNT in out:
            assert out[AMOUNT] >= 0
