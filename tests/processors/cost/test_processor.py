"""The processor's contract with the pipeline: untouched batches, idempotence, aliases, counters, factory."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import date, timedelta
from pathlib import Path

import pytest

from obs_pipeline.batch import Batch
from obs_pipeline.errors import ConfigError
from obs_pipeline.processors import cost
from obs_pipeline.processors.cost.data_age import price_data
from obs_pipeline.signals import Signal
from obs_pipeline.testing import parse_config
from tests.processors.cost.kit import Run, chat, price, traces, values

M = 1_000_000
AMOUNT = "gen_ai.usage.cost.amount"


def test_a_batch_without_inference_spans_keeps_its_wire_bytes() -> None:
    data = traces({"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 10},
                  {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}, {"http.method": "GET"})
    wire = data.SerializeToString()

    async def go() -> Batch:
        async with Run() as run:
            return await run.send(Batch.from_wire(Signal.TRACES, wire))
    out = asyncio.run(go())
    assert out.wire is wire  # the very bytes: nothing was re-serialized


def test_a_priced_batch_has_no_stale_bytes() -> None:
    data = traces(chat("openai", "gpt-4o", input=10, output=10))

    async def go() -> Batch:
        async with Run() as run:
            return await run.send(Batch.from_wire(Signal.TRACES, data.SerializeToString()))
    out = asyncio.run(go())
    assert out.serialized() == out.message.SerializeToString()
    assert AMOUNT in values(out.message.resource_spans[0].scope_spans[0].spans[0].attributes)


def test_pricing_twice_changes_nothing_the_second_time() -> None:
    async def go() -> tuple[list[str], list[str]]:
        async with Run() as run:
            once = await run.send(Batch(Signal.TRACES, traces(chat("openai", "gpt-4o", input=10, output=10),
                                                              chat("openai", "nope", input=1, output=1))))
            first = [kv.key for s in once.message.resource_spans[0].scope_spans[0].spans for kv in s.attributes]
            twice = await run.send(Batch(Signal.TRACES, once.message))
            second = [kv.key for s in twice.message.resource_spans[0].scope_spans[0].spans for kv in s.attributes]
            return first, second
    first, second = asyncio.run(go())
    assert first == second
    assert first.count(AMOUNT) == 1


def test_aliases_are_switchable() -> None:
    out = price(chat("openai", "gpt-4o", input=1000, output=0),
                body={"aliases": {"operation_cost": False, "llm_cost_total": False}})
    assert out["gen_ai.usage.cost"] == out[AMOUNT]
    assert "operation.cost" not in out
    assert "llm.cost.total" not in out


@pytest.mark.parametrize("name", ["llm.cost.total", "operation.cost", "gen_ai.usage.cost.amount"])
def test_a_cost_reported_under_any_backend_name_is_kept(name: str) -> None:
    out = price({**chat("openai", "gpt-4o", input=1000, output=0), name: 0.0025})
    assert out[AMOUNT] == 0.0025
    assert out["gen_ai.usage.cost.source"] == "provider"
    assert out["obs_pipeline.cost.estimate_usd"] == pytest.approx(1000 * 2.5 / M)
    assert "obs_pipeline.cost.drift" not in out


def test_a_reported_cost_of_an_unpriced_model_is_kept_without_estimate() -> None:
    out = price({**chat("acme", "house-model", input=1000, output=0), "gen_ai.usage.cost": 0.5})
    assert out[AMOUNT] == 0.5
    assert out["gen_ai.usage.cost.source"] == "provider"
    assert "obs_pipeline.cost.estimate_usd" not in out
    assert "gen_ai.usage.cost.unpriced" not in out


def test_a_reported_cost_in_another_currency_is_not_compared_with_usd() -> None:
    out = price({**chat("openai", "gpt-4o", input=1000, output=0),
                 "gen_ai.usage.cost.amount": 9.0, "gen_ai.usage.cost.currency": "EUR"})
    assert out[AMOUNT] == 9.0
    assert out["gen_ai.usage.cost.currency"] == "EUR"
    assert "obs_pipeline.cost.drift" not in out
    assert "operation.cost" not in out  # the aliases are USD


def test_drift_threshold_is_configurable() -> None:
    span = {**chat("openai", "gpt-4o", input=1000, output=0), "gen_ai.usage.cost": 0.0026}  # 4% off $0.0025
    assert "obs_pipeline.cost.drift" not in price(span)
    assert price(span, body={"drift_threshold": 0.01})["obs_pipeline.cost.drift"] is True


def test_counters_move_per_outcome() -> None:
    spans = [chat("openai", "gpt-4o", input=10, output=1), chat("openai", "gpt-4o", input=10, output=1),
             chat("openai", "nope", input=10, output=1), chat("openai", "gpt-4o", input=-1, output=1),
             {**chat("openai", "gpt-4o", input=1000, output=0), "gen_ai.usage.cost": 1.0},
             chat("x", "ft", input=1, output=1),
             chat("anthropic", "claude-sonnet-4-5", input=10, cache_read=100, output=1)]

    async def go() -> Run:
        async with Run({"overrides": [{"model": "ft", "input": 1, "output": 1}]}) as run:
            await run.send(Batch(Signal.TRACES, traces(*spans)))
            return run
    run = asyncio.run(go())
    assert run.sample("obs_pipeline_cost_priced_spans_total", source="genai-prices") == 3
    assert run.sample("obs_pipeline_cost_priced_spans_total", source="override") == 1
    assert run.sample("obs_pipeline_cost_priced_spans_total", source="provider") == 1
    assert run.sample("obs_pipeline_cost_unpriced_spans_total", reason="unknown_model") == 1
    assert run.sample("obs_pipeline_cost_unpriced_spans_total", reason="invalid_tokens") == 1
    assert run.sample("obs_pipeline_cost_drift_spans_total") == 1
    assert run.sample("obs_pipeline_cost_normalized_spans_total", reason="input_excludes_cache") == 1


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="max_price_age"):
        parse_config(cost.FACTORY, {"max_price_age": "ninety days"})
    with pytest.raises(ConfigError, match="overrides"):
        parse_config(cost.FACTORY, {"overrides": [{"model": "x", "input": -1, "output": 1}]})
    with pytest.raises(ConfigError, match="output"):
        parse_config(cost.FACTORY, {"overrides": [{"model": "x", "input": 1}]})


def test_price_data_age_warning() -> None:
    data = price_data()
    assert data.source.startswith("genai-prices@")
    cfg = parse_config(cost.FACTORY, {"max_price_age": "30d"})
    [note] = cost.check(cfg, today=data.date + timedelta(days=30))
    assert (note.severity, note.message) == ("note", f"prices from {data.source}, data of {data.date.isoformat()} (30 days old)")
    [problem] = cost.check(cfg, today=data.date + timedelta(days=31))
    assert problem.severity == "warning"
    assert problem.path == "max_price_age"
    assert data.version in problem.message
    assert data.date.isoformat() in problem.message
    assert "31 days old" in problem.message


def test_the_data_date_ignores_changes_scheduled_after_install() -> None:
    from genai_prices.data_snapshot import get_snapshot  # noqa: PLC0415

    from obs_pipeline.processors.cost.data_age import data_date  # noqa: PLC0415

    providers = get_snapshot().providers
    assert data_date(providers, date(2026, 6, 1)) <= date(2026, 6, 1)
    assert data_date(providers, date(2026, 6, 1)) < data_date(providers, date(2026, 11, 30))


def test_the_start_up_log_names_the_price_data(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        async with Run():
            pass
    with caplog.at_level(logging.INFO):
        asyncio.run(go())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"prices from {price_data().source}" in text
    assert price_data().date.isoformat() in text


def test_factory_declares_what_the_engine_needs() -> None:
    assert cost.FACTORY.mutates_data
    assert cost.FACTORY.signals == frozenset({Signal.TRACES})


def test_validate_warns_about_stale_price_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io  # noqa: PLC0415

    from obs_pipeline.commands.validate import validate_files  # noqa: PLC0415
    from obs_pipeline.processors.cost import config as cost_config  # noqa: PLC0415

    old = dataclasses.replace(price_data(), date=date(2020, 1, 1))
    monkeypatch.setattr(cost_config, "price_data", lambda: old)
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "receivers: {otlp: {protocols: {http: {endpoint: 127.0.0.1:0}}}}\n"
        "processors: {cost: {max_price_age: 30d}}\n"
        "exporters: {debug: {}}\n"
        "service: {pipelines: {traces: {receivers: [otlp], processors: [cost], exporters: [debug]}}}\n")
    out = io.StringIO()
    assert validate_files([path], out=out) == 0
    text = out.getvalue()
    assert "warning: processors.cost.max_price_age" in text
    assert f"{old.source}, dated 2020-01-01" in text
    assert "valid (1 warning)" in text


def test_a_span_reporting_source_provider_itself_gets_an_estimate_once() -> None:
    span = {**chat("openai", "gpt-4o", input=1000, output=0), "gen_ai.usage.cost.amount": 0.01,
            "gen_ai.usage.cost.source": "provider"}

    async def go() -> tuple[dict[str, object], list[str]]:
        async with Run() as run:
            once = await run.send(Batch(Signal.TRACES, traces(span)))
            twice = await run.send(Batch(Signal.TRACES, once.message))
            attributes = twice.message.resource_spans[0].scope_spans[0].spans[0].attributes
            return values(attributes), [kv.key for kv in attributes]
    out, keys = asyncio.run(go())
    assert out["obs_pipeline.cost.estimate_usd"] == pytest.approx(1000 * 2.5 / M)
    assert out["obs_pipeline.cost.drift"] is True  # $0.01 reported, $0.0025 estimated
    assert len(keys) == len(set(keys))
