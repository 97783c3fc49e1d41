"""Costs the processor writes, checked against costs computed by hand from published prices.

Every expected value is written as the arithmetic: tokens x USD per million tokens / 1e6, with the
price cited as genai-prices 0.2.3 bundles it (from the provider's pricing page named beside it).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from obs_pipeline.processors.cost.pricing import SOURCE_GENAI_PRICES
from tests.processors.cost.kit import chat, price, price_all

M = 1_000_000
AMOUNT = "gen_ai.usage.cost.amount"


def assert_cost(attributes: dict[str, object], usd: float, source: str = SOURCE_GENAI_PRICES) -> None:
    assert attributes[AMOUNT] == pytest.approx(usd, rel=1e-12)
    assert attributes["gen_ai.usage.cost.currency"] == "USD"
    assert attributes["gen_ai.usage.cost.source"] == source
    assert "gen_ai.usage.cost.unpriced" not in attributes


def test_plain_input_and_output() -> None:
    # gpt-4o (openai.com/api/pricing): $2.50 input, $10 output per MTok.
    out = price(chat("openai", "gpt-4o", input=1000, output=500))
    assert_cost(out, 1000 * 2.5 / M + 500 * 10 / M)  # $0.0075


def test_cache_read_is_a_subset_of_input() -> None:
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per MTok; 8,000 of the 10,000 input tokens cached.
    out = price(chat("openai", "gpt-4o", input=10_000, cache_read=8000, output=100))
    assert_cost(out, (10_000 - 8000) * 2.5 / M + 8000 * 1.25 / M + 100 * 10 / M)  # $0.016


def test_cache_read_and_write() -> None:
    # claude-sonnet-4-5 (anthropic.com/pricing): $3 input, $0.30 cache read, $3.75 cache write (5m), $15 output.
    out = price(chat("anthropic", "claude-sonnet-4-5", input=10_000, cache_read=8000, cache_write=1000, output=100))
    assert_cost(out, (10_000 - 8000 - 1000) * 3 / M + 8000 * 0.3 / M + 1000 * 3.75 / M + 100 * 15 / M)  # $0.01065


def test_renamed_cache_creation_is_read_like_cache_write() -> None:
    # The semconv 1.40-1.41 name, still emitted by released instrumentations; same prices as above.
    span = chat("anthropic", "claude-sonnet-4-5", input=2000, output=10)
    span["gen_ai.usage.cache_creation.input_tokens"] = 1000
    assert_cost(price(span), 1000 * 3 / M + 1000 * 3.75 / M + 10 * 15 / M)


def test_reasoning_tokens_are_inside_output_and_not_counted_twice() -> None:
    # o3 since 2025-06-10 (openai.com/api/pricing): $2 input, $8 output per MTok; reasoning billed as output.
    out = price(chat("openai", "o3", input=1000, output=3000, reasoning=2000))
    assert_cost(out, 1000 * 2 / M + 3000 * 8 / M)  # $0.026, not 1000*2 + (3000+2000)*8


def test_tier_boundary_is_a_cliff_on_the_whole_input() -> None:
    # gemini-2.5-pro (ai.google.dev/gemini-api/docs/pricing): $1.25 in / $10 out up to 200k input tokens,
    # $2.50 in / $15 out for every token of a prompt over 200k.
    at, over = price_all(chat("gcp.gemini", "gemini-2.5-pro", input=200_000, output=1000),
                         chat("gcp.gemini", "gemini-2.5-pro", input=200_001, output=1000))
    assert_cost(at, 200_000 * 1.25 / M + 1000 * 10 / M)  # $0.26
    assert_cost(over, 200_001 * 2.5 / M + 1000 * 15 / M)  # $0.5150025


def test_override_wins_with_a_glob_model_pattern() -> None:
    body = {"overrides": [{"provider": "openai", "model": "ft:gpt-4o-mini:acme:*",
                           "input": 0.3, "output": 1.2, "cache_read": 0.15}]}
    out = price(chat("openai", "ft:gpt-4o-mini:acme:support-v3", input=10_000, cache_read=4000, output=2000), body=body)
    assert_cost(out, (10_000 - 4000) * 0.3 / M + 4000 * 0.15 / M + 2000 * 1.2 / M, source="override")  # $0.0048


def test_override_beats_a_model_genai_prices_knows() -> None:
    body = {"overrides": [{"model": "gpt-4o", "input": 2.0, "output": 8.0}]}  # a negotiated rate
    out = price(chat("openai", "gpt-4o", input=1000, cache_read=500, output=1000), body=body)
    assert_cost(out, 1000 * 2.0 / M + 1000 * 8.0 / M, source="override")  # cache read at the input price


def test_alias_provider_x_ai() -> None:
    # genai-prices' id is x-ai and it matches only "xai": x_ai alone raises LookupError there.
    # grok-4 (docs.x.ai/docs/models): $3 input, $15 output per MTok.
    assert_cost(price(chat("x_ai", "grok-4", input=1000, output=1000)), 1000 * 3 / M + 1000 * 15 / M)  # $0.018


def test_alias_provider_from_the_legacy_gen_ai_system_value() -> None:
    # gen_ai.system=gemini (semconv <= 1.36) -> gcp.gemini -> google. gemini-2.5-flash: $0.30 in, $2.50 out.
    span = {"gen_ai.operation.name": "generate_content", "gen_ai.system": "gemini",
            "gen_ai.request.model": "gemini-2.5-flash", "gen_ai.usage.input_tokens": 4000,
            "gen_ai.usage.output_tokens": 400}
    assert_cost(price(span), 4000 * 0.3 / M + 400 * 2.5 / M)


def test_historic_price_at_the_span_start() -> None:
    # o3: $10 input / $40 output until 2025-06-09, $2 / $8 from 2025-06-10 (the June 2025 price cut).
    before = price(chat("openai", "o3", input=1000, output=1000), start=datetime(2025, 5, 1, 12, tzinfo=UTC))
    after = price(chat("openai", "o3", input=1000, output=1000), start=datetime(2025, 6, 10, 0, 1, tzinfo=UTC))
    assert_cost(before, 1000 * 10 / M + 1000 * 40 / M)  # $0.05
    assert_cost(after, 1000 * 2 / M + 1000 * 8 / M)  # $0.01


def test_time_of_day_price() -> None:
    # deepseek-chat (api-docs.deepseek.com/quick_start/pricing): $0.27 in / $1.10 out from 00:30 to 16:30 UTC,
    # the off-peak $0.135 / $0.55 otherwise.
    day = price(chat("deepseek", "deepseek-chat", input=M, output=0), start=datetime(2026, 11, 20, 10, tzinfo=UTC))
    night = price(chat("deepseek", "deepseek-chat", input=M, output=0), start=datetime(2026, 11, 20, 20, tzinfo=UTC))
    assert_cost(day, M * 0.27 / M)
    assert_cost(night, M * 0.135 / M)


def test_embeddings() -> None:
    # text-embedding-3-small: $0.02 per MTok of input.
    span = {"gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "text-embedding-3-small", "gen_ai.usage.input_tokens": 5000}
    assert_cost(price(span), 5000 * 0.02 / M)


@pytest.mark.parametrize(("provider", "model", "reason"), [
    ("openai", "my-finetune-xyz", "unknown_model"),
    ("ibm.watsonx.ai", "granite-3-8b-instruct", "unknown_provider"),
    ("acme-inference", "gpt-4o", "unknown_provider"),
])
def test_unknown_model_or_provider_is_unpriced_never_zero(provider: str, model: str, reason: str) -> None:
    out = price(chat(provider, model, input=1000, output=1000))
    assert out["gen_ai.usage.cost.unpriced"] is True
    assert out["gen_ai.usage.cost.unpriced_reason"] == reason
    assert AMOUNT not in out
    assert "operation.cost" not in out


def test_agent_span_repeating_its_childrens_usage_is_not_priced() -> None:
    # An invoke_agent span may carry the run's total usage (genai.md §1.3): pricing it would count twice.
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support",
             "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
             "gen_ai.usage.input_tokens": 2000, "gen_ai.usage.output_tokens": 1000}
    child1 = chat("openai", "gpt-4o", input=1000, output=500)
    child2 = chat("openai", "gpt-4o", input=1000, output=500)
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}
    out_agent, out1, out2, out_tool = price_all(agent, child1, child2, tool)
    assert out_agent == agent
    assert out_tool == tool
    total = out1[AMOUNT] + out2[AMOUNT]
    assert total == pytest.approx(2 * (1000 * 2.5 / M + 500 * 10 / M))  # $0.015: the agent's usage, priced once


def test_bedrock_call_with_cache_points() -> None:
    # Bedrock Converse reports inputTokens without the cache (cachePoint blocks): here 500 uncached, 6,000 read,
    # 1,500 written, 200 out, totalTokens 8,200 = 500 + 6000 + 1500 + 200, which tells the convention.
    # global.anthropic.claude-sonnet-4-5 (aws.amazon.com/bedrock/pricing): $3 in, $0.30 cache read,
    # $3.75 cache write, $15 out per MTok.
    out = price(chat("aws.bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
                     input=500, cache_read=6000, cache_write=1500, output=200, total=8200))
    assert_cost(out, 500 * 3 / M + 6000 * 0.3 / M + 1500 * 3.75 / M + 200 * 15 / M)  # $0.011925


def test_bedrock_regional_profile_price() -> None:
    # us. (regional) profiles cost 10% more: $3.30 in, $0.33 cache read, $16.50 out per MTok.
    out = price(chat("aws.bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                     input=7000, cache_read=6000, output=100))
    assert_cost(out, 1000 * 3.3 / M + 6000 * 0.33 / M + 100 * 16.5 / M)


def test_gemini_call_with_thinking_tokens() -> None:
    # Gemini reports thoughtsTokenCount beside candidatesTokenCount and bills thinking as output.
    # gemini-2.5-flash (ai.google.dev/gemini-api/docs/pricing): $0.30 in, $2.50 out (thinking included).
    # 200 candidates + 800 thoughts: output is 1,000 tokens, not 200 (total 2,000 = 1000 + 200 + 800).
    with_total = price(chat("gcp.gemini", "gemini-2.5-flash", input=1000, output=200, reasoning=800, total=2000))
    without_total = price(chat("gcp.gemini", "gemini-2.5-flash", input=1000, output=200, reasoning=800))
    assert_cost(with_total, 1000 * 0.3 / M + (200 + 800) * 2.5 / M)  # $0.0028
    assert_cost(without_total, 1000 * 0.3 / M + (200 + 800) * 2.5 / M)


def test_openrouter_call_with_a_provider_reported_cost() -> None:
    # OpenRouter returns usage.cost; the instrumentation put it in gen_ai.usage.cost. Our estimate for
    # anthropic/claude-sonnet-4.5 on OpenRouter (openrouter.ai/anthropic/claude-sonnet-4.5): $3 in, $15 out.
    estimate = 1000 * 3 / M + 500 * 15 / M  # $0.0105
    span = chat("openrouter", "anthropic/claude-sonnet-4.5", input=1000, output=500)
    agreeing = price({**span, "gen_ai.usage.cost": 0.0104})
    assert agreeing[AMOUNT] == 0.0104  # the provider's figure is kept
    assert agreeing["gen_ai.usage.cost"] == 0.0104
    assert agreeing["gen_ai.usage.cost.source"] == "provider"
    assert agreeing["obs_pipeline.cost.estimate_usd"] == pytest.approx(estimate)
    assert "obs_pipeline.cost.drift" not in agreeing  # 1% apart
    drifting = price({**span, "gen_ai.usage.cost": 0.0125})  # 16% above the estimate
    assert drifting["obs_pipeline.cost.drift"] is True
    assert drifting[AMOUNT] == 0.0125


def test_anthropic_style_input_without_the_cache() -> None:
    # An instrumentation copying Anthropic's usage.input_tokens (uncached only: 100) next to 5,000 cache reads.
    # claude-sonnet-4-5: $3 in, $0.30 cache read, $15 out.
    out = price(chat("anthropic", "claude-sonnet-4-5", input=100, cache_read=5000, output=50))
    assert_cost(out, 100 * 3 / M + 5000 * 0.3 / M + 50 * 15 / M)  # $0.00255


def test_token_convention_rule_from_the_config() -> None:
    # Detection cannot tell 2,000 uncached from 2,000 in all when the cache is smaller; the rule says.
    body = {"token_conventions": [{"scope": "my-claude-wrapper", "input_excludes_cache": True}]}
    out = price(chat("anthropic", "claude-sonnet-4-5", input=2000, cache_read=1000, output=0),
                body=body, scope="my-claude-wrapper")
    assert_cost(out, 2000 * 3 / M + 1000 * 0.3 / M)


def test_a_total_computed_from_anthropic_style_input_does_not_hide_it() -> None:
    # total = input + output although input (100) excludes the 5,000 cache reads: still Anthropic's convention.
    out = price(chat("anthropic", "claude-sonnet-4-5", input=100, cache_read=5000, output=50, total=150))
    assert_cost(out, 100 * 3 / M + 5000 * 0.3 / M + 50 * 15 / M)


@pytest.mark.parametrize(("tier", "usd"), [
    # o3 (openai.com/api/pricing): standard $2 in / $8 out, Flex $1 / $4, Priority $3.50 / $14 per MTok.
    ({"openai.response.service_tier": "flex"}, 1000 * 1 / M + 1000 * 4 / M),
    ({"gen_ai.openai.response.service_tier": "priority"}, 1000 * 3.5 / M + 1000 * 14 / M),  # semconv <= 1.36
    ({"openai.request.service_tier": "flex"}, 1000 * 1 / M + 1000 * 4 / M),
    ({"openai.request.service_tier": "auto"}, 1000 * 2 / M + 1000 * 8 / M),  # unresolved: the standard price
    ({"openai.request.service_tier": "auto", "openai.response.service_tier": "priority"},
     1000 * 3.5 / M + 1000 * 14 / M),
    ({"openai.response.service_tier": "no-such-tier"}, 1000 * 2 / M + 1000 * 8 / M),
])
def test_openai_service_tier_prices(tier: dict[str, str], usd: float) -> None:
    assert_cost(price({**chat("openai", "o3", input=1000, output=1000), **tier}), usd)
