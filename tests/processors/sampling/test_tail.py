"""Tail mode: whole traces kept by policy, late spans, bounds, the drain, counting."""

from __future__ import annotations

import asyncio
import random

import pytest

from obs_pipeline.batch import Batch
from obs_pipeline.errors import RefusedError
from obs_pipeline.processors.sampling import FACTORY
from obs_pipeline.processors.sampling.tail import TailSampler
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import (
    CapturingConsumer,
    RecordingHost,
    RefusingConsumer,
    make_processor_settings,
    parse_config,
)
from tests.processors.sampling.kit import kept_trace_ids, span_ids, spans, trace_ids

ERRORS = {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}
EXPENSIVE = {"name": "expensive", "type": "cost", "cost": {"min_usd": 0.5}}


async def _sampler(policies, metrics=None, sink=None, **body) -> tuple[TailSampler, CapturingConsumer]:
    cfg = parse_config(FACTORY, {"mode": "tail", "decision_wait": "50ms", "policies": policies, **body})
    sink = sink if sink is not None else CapturingConsumer()
    proc = FACTORY.create(make_processor_settings("sampling/tail", metrics=metrics), cfg, sink)
    assert isinstance(proc, TailSampler)
    await proc.start(RecordingHost())
    return proc, sink


def _value(metrics: SelfMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"processor": "sampling/tail", "pipeline": "traces", **labels}) or 0.0


class TestPolicies:
    async def test_one_error_span_among_50_arriving_last_keeps_the_whole_trace(self):
        """49 OK spans, then (in a later batch) one ERROR span: all 50 leave together, in one batch."""
        proc, sink = await _sampler([ERRORS])
        failing, fine = trace_ids(2)
        for number in range(49):
            await proc.consume(spans([(failing, number), (fine, number)]))
        await proc.consume(spans([(failing, 49), (fine, 49)], error={(failing, 49)}))
        await sink.wait_for_items(50)
        await proc.shutdown()
        assert len(sink.batches) == 1
        assert sorted(span_ids(sink.batches)) == sorted((failing, f"call-{n}") for n in range(50))

    async def test_an_expensive_trace_of_many_cheap_calls_is_kept(self):
        """100 calls of $0.01 add up to $1.00 >= $0.50: kept; 10 such calls ($0.10) are not."""
        metrics = SelfMetrics()
        proc, sink = await _sampler([ERRORS, EXPENSIVE], metrics)
        costly, cheap = trace_ids(2, seed=2)
        for number in range(100):
            batch = [(costly, number)] + ([(cheap, number)] if number < 10 else [])
            await proc.consume(spans(batch, cost=0.01))
        await sink.wait_for_items(100)
        await proc.shutdown()
        assert kept_trace_ids(sink.batches) == {costly}
        assert _value(metrics, "obs_pipeline_processor_sampling_traces_total", policy="expensive", decision="kept") == 1
        assert _value(metrics, "obs_pipeline_processor_sampling_traces_total", policy="none", decision="dropped") == 1
        assert _value(metrics, "obs_pipeline_processor_dropped_items_total", reason="sampled") == 10

    async def test_a_cost_that_is_no_cost_does_not_poison_the_trace_sum(self):
        """A NaN, negative or infinite cost on one span adds nothing: the other calls still make the trace expensive."""
        proc, sink = await _sampler([EXPENSIVE])
        (trace,) = trace_ids(1, seed=3)
        for number, bad in enumerate((float("nan"), -5.0, float("inf"))):
            await proc.consume(spans([(trace, number)], cost=bad))
        await proc.consume(spans([(trace, 3)], cost=0.6))
        await sink.wait_for_items(4)
        await proc.shutdown()
        assert kept_trace_ids(sink.batches) == {trace}

    @pytest.mark.parametrize(("policy", "keeps", "drops"), [
        ({"type": "latency", "latency": {"threshold_ms": 100}}, {"duration_ms": 150}, {"duration_ms": 50}),
        ({"type": "latency", "latency": {"threshold_ms": 100, "upper_threshold_ms": 200}},
         {"duration_ms": 150}, {"duration_ms": 250}),
        ({"type": "string_attribute", "string_attribute": {"key": "tenant.tier", "values": ["gold"]}},
         {"attributes": {"tenant.tier": "gold"}}, {"attributes": {"tenant.tier": "silver"}}),
        ({"type": "string_attribute", "string_attribute": {"key": "url.path", "values": ["^/v1/chat"],
                                                            "enabled_regex_matching": True}},
         {"attributes": {"url.path": "/v1/chat/x"}}, {"attributes": {"url.path": "/health"}}),
        ({"type": "string_attribute", "string_attribute": {"key": "tenant.tier", "values": ["free"], "invert_match": True}},
         {"attributes": {}}, {"attributes": {"tenant.tier": "free"}}),
        ({"type": "numeric_attribute", "numeric_attribute": {"key": "http.response.status_code", "min_value": 500}},
         {"attributes": {"http.response.status_code": 503}}, {"attributes": {"http.response.status_code": 200}}),
        ({"type": "boolean_attribute", "boolean_attribute": {"key": "app.force_sample", "value": True}},
         {"attributes": {"app.force_sample": True}}, {"attributes": {"app.force_sample": False}}),
        ({"type": "span_count", "span_count": {"min_spans": 1, "max_spans": 1}}, {}, {"extra": True}),
        ({"type": "always_sample"}, {}, None),
        ({"type": "and", "and": {"and_sub_policy": [
            {"name": "a", "type": "latency", "latency": {"threshold_ms": 100}},
            {"name": "b", "type": "boolean_attribute", "boolean_attribute": {"key": "vip", "value": True}}]}},
         {"duration_ms": 150, "attributes": {"vip": True}}, {"duration_ms": 150, "attributes": {"vip": False}}),
    ], ids=["latency", "latency-upper", "string", "regex", "invert", "numeric", "boolean", "span_count", "always", "and"])
    async def test_each_policy_keeps_what_it_matches_and_no_more(self, policy, keeps, drops):
        """One trace that matches the policy is kept, one that does not is dropped."""
        proc, sink = await _sampler([{"name": "p", **policy}])
        kept_id, dropped_id = trace_ids(2, seed=4)
        extra = drops.pop("extra", False) if drops else False
        await proc.consume(spans([(kept_id, 0)], **keeps))
        if drops is not None:
            await proc.consume(spans([(dropped_id, 0), *([(dropped_id, 1)] if extra else [])], **drops))
        await proc.shutdown()
        assert kept_trace_ids(sink.batches) == {kept_id}

    async def test_a_drop_policy_wins_over_a_keeping_one(self):
        """always_sample keeps everything except what the drop policy matches."""
        drop = {"name": "no-health", "type": "drop", "drop": {"drop_sub_policy": [
            {"name": "health", "type": "string_attribute", "string_attribute": {"key": "url.path", "values": ["/health"]}}]}}
        proc, sink = await _sampler([{"name": "all", "type": "always_sample"}, drop])
        health, work = trace_ids(2, seed=6)
        await proc.consume(spans([(health, 0)], attributes={"url.path": "/health"}))
        await proc.consume(spans([(work, 0)], attributes={"url.path": "/v1/chat"}))
        await proc.shutdown()
        assert kept_trace_ids(sink.batches) == {work}

    async def test_probabilistic_policy_keeps_the_same_traces_in_any_instance(self):
        """Two instances keep exactly the same trace ids; about the configured share."""
        policy = [{"name": "rest", "type": "probabilistic", "probabilistic": {"sampling_percentage": 20}}]
        ids = trace_ids(2000, seed=8)
        kept = []
        for order in (ids, ids[::-1]):
            proc, sink = await _sampler(policy)
            for start in range(0, len(order), 100):
                await proc.consume(spans((t, 0) for t in order[start:start + 100]))
            await proc.shutdown()
            kept.append(kept_trace_ids(sink.batches))
        assert kept[0] == kept[1]
        assert 300 < len(kept[0]) < 500


class TestLateSpans:
    async def test_spans_after_the_decision_follow_it(self):
        """A late span of a kept trace is handed on; one of a dropped trace is dropped and counted."""
        metrics = SelfMetrics()
        proc, sink = await _sampler([ERRORS], metrics)
        kept_id, dropped_id = trace_ids(2, seed=9)
        await proc.consume(spans([(kept_id, 0), (dropped_id, 0)], error={(kept_id, 0)}))
        await sink.wait_for_items(1)
        await proc.consume(spans([(kept_id, 1), (dropped_id, 1)]))
        await sink.wait_for_items(2)
        await proc.shutdown()
        assert sorted(span_ids(sink.batches)) == [(kept_id, "call-0"), (kept_id, "call-1")]
        assert _value(metrics, "obs_pipeline_processor_sampling_late_spans_total", decision="kept") == 1
        assert _value(metrics, "obs_pipeline_processor_sampling_late_spans_total", decision="dropped") == 1
        assert _value(metrics, "obs_pipeline_processor_dropped_items_total", reason="sampled") == 2


class TestBounds:
    async def test_num_traces_decides_the_oldest_early_and_counts_it(self):
        """With num_traces 10, 25 traces: 15 are decided early (counted), all 25 kept, none lost."""
        metrics = SelfMetrics()
        proc, sink = await _sampler([{"name": "all", "type": "always_sample"}], metrics, decision_wait="1h", num_traces=10)
        for trace_id in trace_ids(25, seed=10):
            await proc.consume(spans([(trace_id, 0)]))
        assert len(proc.traces) == 10
        await proc.shutdown()
        assert sink.items == 25
        assert _value(metrics, "obs_pipeline_processor_sampling_early_decisions_total", reason="num_traces") == 15
        assert _value(metrics, "obs_pipeline_processor_sampling_early_decisions_total", reason="shutdown") == 10

    @pytest.mark.e2e  # about 10 s of CPU
    async def test_memory_stays_within_max_memory_while_a_million_traces_pass(self):
        """1,000,000 one-span traces through a 4 MiB buffer: the accounted bytes never pass it.

        Every batch is 1,000 new traces; with decision_wait 1h only the bound decides them. The
        accounted bytes (serialized spans plus bookkeeping, see bench/sampling.py for how they
        compare with the real allocation) are checked after every batch, and every span is
        either handed on or counted as sampled.
        """
        metrics = SelfMetrics()
        limit = 4 * 1024 * 1024
        policy = [{"name": "tenth", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}}]
        proc, sink = await _sampler(policy, metrics, decision_wait="1h", max_memory=limit, num_traces=1_000_000)
        template = spans([(b"\x00" * 16, 0)])
        peak = 0
        for start in range(0, 1_000_000, 1000):
            batch = _numbered(template, start, 1000)
            await proc.consume(batch)
            peak = max(peak, proc.accounted_bytes())
            await asyncio.sleep(0)
        await proc.shutdown()
        assert peak <= limit
        assert peak > limit // 2  # the bound was what decided
        dropped = _value(metrics, "obs_pipeline_processor_dropped_items_total", reason="sampled")
        assert sink.items + dropped == 1_000_000
        assert 95_000 < sink.items < 105_000
        assert _value(metrics, "obs_pipeline_processor_sampling_early_decisions_total", reason="max_memory") > 900_000

    async def test_decided_spans_the_next_stage_does_not_take_make_it_refuse(self, monkeypatch):
        """With the next stage refusing, decided spans fill max_memory and new data is refused (retryable)."""
        monkeypatch.setattr("obs_pipeline.processors.sampling.tail.OUTBOX_WAIT", 0.01)
        refusing = RefusingConsumer(retry_after=0.01)
        proc, _ = await _sampler([{"name": "all", "type": "always_sample"}], sink=refusing,
                                 decision_wait="1h", max_memory=256 * 1024)
        refused = 0
        for start in range(0, 2000, 100):
            try:
                await proc.consume(spans((t, 0) for t in trace_ids(100, seed=start)))
            except RefusedError as exc:
                assert exc.reason == "queue_full"
                refused += 1
        assert refused
        assert proc.accounted_bytes() <= 256 * 1024
        refusing.times = 0  # accept from now on
        await proc.shutdown()


class TestDrain:
    async def test_shutdown_decides_every_buffered_trace_and_hands_the_kept_ones_on(self):
        """decision_wait 1h: shutdown decides 300 traces at once; the kept ones all arrive."""
        metrics = SelfMetrics()
        proc, sink = await _sampler([ERRORS], metrics, decision_wait="1h")
        ids = trace_ids(300, seed=12)
        await proc.consume(spans(((t, 0) for t in ids), error={(t, 0) for t in ids[:100]}))
        assert sink.items == 0
        await proc.shutdown()
        assert kept_trace_ids(sink.batches) == set(ids[:100])
        assert _value(metrics, "obs_pipeline_processor_sampling_early_decisions_total", reason="shutdown") == 300
        assert proc.pending_items() == 0


def _numbered(template: Batch, start: int, count: int) -> Batch:
    """``count`` one-span traces with random ids (seeded by ``start``; a cheap way to make many)."""
    rng = random.Random(start)
    data = template.message.__class__()
    data.CopyFrom(template.message)
    scope = data.resource_spans[0].scope_spans[0]
    span = scope.spans[0]
    wire = span.SerializeToString()
    del scope.spans[:]
    for i in range(start, start + count):  # the index keeps them distinct, the random half hashes well
        new = scope.spans.add()
        new.ParseFromString(wire)
        new.trace_id = i.to_bytes(8, "big") + rng.randbytes(8)
    return Batch(template.signal, data)


class TestHeaders:
    async def test_a_trace_spread_over_many_requests_holds_its_resource_once(self):
        """100 requests with one span each of one trace, same resource: one header, released whole, nothing left."""
        proc, sink = await _sampler([{"name": "all", "type": "always_sample"}], decision_wait="1h")
        (trace_id,) = trace_ids(1, seed=14)
        for number in range(100):
            await proc.consume(spans([(trace_id, number)]))
        assert len(proc.headers) == 1
        await proc.shutdown()
        assert len(sink.batches) == 1
        assert len(sink.batches[0].message.resource_spans) == 1
        assert sink.items == 100
        assert proc.headers == {}
        assert proc.accounted_bytes() == 0
