"""The real redaction, cost and budget processors in front of the audit mapping: their attributes become lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from obs_pipeline.batch import Batch
from obs_pipeline.components import Consumer, Kind, Processor, get_factory, known_types
from obs_pipeline.exporters.jsonl_audit.content import ContentPolicy
from obs_pipeline.exporters.jsonl_audit.spans import SpanEncoder
from obs_pipeline.signals import Signal
from obs_pipeline.testing import CapturingConsumer, RecordingHost, make_processor_settings, parse_config
from tests.exporters.builders import traces

CHAIN = ("redaction", "cost", "budget")
pytestmark = pytest.mark.skipif(not set(CHAIN) <= set(known_types(Kind.PROCESSOR)),
                                reason="the redaction, cost and budget processors are not all registered yet")

SECRET = "sk-proj-Xk3vR9mQ2pL7wN4tY8zB1cF6hJ0sD5gA"
BODIES: dict[str, dict[str, Any]] = {
    "redaction": {},
    "cost": {},
    "budget": {"budgets": [{"id": "session-cap", "scope": "session", "limit_usd": 0.001, "window": "session"}],
               "endpoint": "127.0.0.1:0"},
}


async def _through_processors(tmp_path: Path, data: Any) -> list[Batch]:
    sink = CapturingConsumer()
    chain: list[Processor] = []
    consumer: Consumer = sink
    for name in reversed(CHAIN):
        factory = get_factory(Kind.PROCESSOR, name)
        processor = factory.create(make_processor_settings(name, data_dir=tmp_path),
                                   parse_config(factory, BODIES[name]), consumer)
        chain.insert(0, processor)
        consumer = processor
    for processor in reversed(chain):
        await processor.start(RecordingHost())
    await chain[0].consume(Batch(Signal.TRACES, data))
    for processor in chain:
        await processor.shutdown()
    return sink.batches


async def test_a_priced_redacted_span_over_budget_gives_three_lines(tmp_path: Path) -> None:
    """cost_usd and redacted content on the span's line, then its security line, then its budget line."""
    span = {"name": "chat gpt-4o", "attrs": {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100, "gen_ai.conversation.id": "s1",
        "gen_ai.input.messages": f"use {SECRET} please"}}
    batches = await _through_processors(tmp_path, traces(span))
    encoder = SpanEncoder(content=ContentPolicy())
    lines = [orjson.loads(line) for batch in batches for line in encoder.encode(batch)]
    assert [x["category"] for x in lines] == ["llm", "security", "budget"]
    own, security, budget = lines
    assert own["detail"]["cost_usd"] > 0
    assert own["detail"]["input"] == {"text": "use [REDACTED:openai-api-key] please"}
    assert security["detail"] == {"rules": ["openai-api-key"], "locations": ["attributes.gen_ai.input.messages"],
                                  "count": 1}
    assert (budget["event_type"], budget["result"]) == ("budget_exceeded", "deny")
    assert budget["detail"]["budget_id"] == "session-cap"
    assert budget["detail"]["scope_value"] == "s1"
    assert budget["detail"]["spend"] == pytest.approx(own["detail"]["cost_usd"])
    assert SECRET not in orjson.dumps(lines).decode()
