"""The price lookup: the compiled arithmetic equals genai-prices', the cache, the budget processor's API."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from genai_prices import Usage
from genai_prices.data import providers

from obs_pipeline.processors.cost import pricing
from obs_pipeline.processors.cost.pricing import Override, PriceBook, Quote, _candidates
from obs_pipeline.processors.cost.usage import Tokens

M = 1_000_000
WHEN = datetime(2026, 11, 20, 9, tzinfo=UTC)


def test_compiled_prices_equal_genai_prices_on_every_bundled_model() -> None:
    rng = random.Random(4)
    checked = 0
    for provider in providers:
        for model in provider.models:
            rate = next(r for c, r in _candidates(model, WHEN.date()) if c is None or c.active(WHEN))
            for _ in range(2):
                inp = rng.choice([0, 10, 1000, 150_000, 200_000, 200_001, 300_000])
                read, write = rng.randint(0, inp // 3), rng.randint(0, inp // 3)
                out = rng.choice([0, 5, 5000])
                reasoning = rng.randint(0, out)
                usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=read, cache_write_tokens=write,
                              output_reasoning_tokens=reasoning)
                expected = float(model.get_prices(WHEN).calc_price(usage)["total_price"])
                got = rate.usd(Tokens(inp, out, read, write, reasoning))
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-15), (provider.id, model.id)
                checked += 1
    assert checked > 4000


def test_estimate_usd_for_the_budget_reservations() -> None:
    book = PriceBook()
    # gpt-4o: $2.50 in, $10 out per MTok.
    assert book.estimate_usd("openai", "gpt-4o", 1000, 2000) == pytest.approx(1000 * 2.5 / M + 2000 * 10 / M)
    assert book.estimate_usd("openai", "no-such-model", 1000, 2000) is None
    assert book.estimate_usd("ibm.watsonx.ai", "granite", 1, 1) is None
    assert book.estimate_usd("openai", "gpt-4o", -1, 2) is None
    # o3 on a day before the June 2025 cut: $10 / $40.
    when = datetime(2025, 5, 1, tzinfo=UTC)
    assert book.estimate_usd("openai", "o3", 1000, 1000, when) == pytest.approx(1000 * 10 / M + 1000 * 40 / M)


def test_overrides_apply_to_estimates() -> None:
    book = PriceBook([Override(model="house-*", provider="acme", input_mtok=1, output_mtok=2)])
    assert book.estimate_usd("acme", "House-7B", M, M) == pytest.approx(3.0)
    assert book.estimate_usd("other", "house-7b", M, M) is None


def test_override_provider_matches_the_otel_name_or_the_genai_prices_id() -> None:
    book = PriceBook([Override(model="*", provider="aws", input_mtok=1, output_mtok=1)])
    quote = book.quote("aws.bedrock", "anything", Tokens(M, 0))
    assert quote == Quote(1.0, pricing.OVERRIDE)


def test_extra_provider_ids() -> None:
    book = PriceBook(provider_ids={"my-gateway": "openai", "openai": None})
    assert book.estimate_usd("my-gateway", "gpt-4o", M, 0) == pytest.approx(2.5)
    assert book.quote("openai", "gpt-4o", Tokens(1, 1)) == pricing.UNKNOWN_PROVIDER


def test_lookups_are_cached_per_provider_model_and_day(monkeypatch: pytest.MonkeyPatch) -> None:
    book = PriceBook()
    calls: list[tuple[str, str]] = []
    real = book._look_up

    def counting(provider: str | None, model: str, day: object, tier: str | None = None) -> object:
        calls.append((provider or "", model))
        return real(provider, model, day, tier)  # type: ignore[arg-type]
    monkeypatch.setattr(book, "_look_up", counting)
    for hour in range(24):
        book.quote("openai", "gpt-4o", Tokens(10, 10), WHEN.replace(hour=hour))
        book.quote("openai", "nope", Tokens(10, 10), WHEN.replace(hour=hour))
    book.quote("openai", "gpt-4o", Tokens(10, 10), WHEN + timedelta(days=1))
    assert calls == [("openai", "gpt-4o"), ("openai", "nope"), ("openai", "gpt-4o")]


def test_the_cache_is_bounded() -> None:
    book = PriceBook(cache_size=10)
    for i in range(100):
        book.quote("openai", f"model-{i}", Tokens(1, 1), WHEN)
    assert len(book._cache) <= 10


def test_thread_safe() -> None:
    book = PriceBook()

    def work(i: int) -> float | None:
        return book.estimate_usd("openai", "gpt-4o", i, i, WHEN + timedelta(days=i % 7))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(400)))
    assert results == [pytest.approx(i * 12.5 / M) for i in range(400)]
