"""Head mode: the kept share, consistency across instances and signals, tracestate, counting."""

from __future__ import annotations

import math
import random

import pytest

from obs_pipeline.processors.sampling import FACTORY
from obs_pipeline.processors.sampling.head import HeadSampler
from obs_pipeline.processors.sampling.threshold import hashed_threshold, threshold_to_probability
from obs_pipeline.telemetry.metrics import LOSS_REASONS, SelfMetrics
from obs_pipeline.testing import CapturingConsumer, RecordingHost, make_processor_settings, parse_config
from tests.processors.sampling.kit import kept_trace_ids, logs, span_ids, spans, trace_ids

N = 100_000


def _sampler(**body) -> HeadSampler:
    return HeadSampler(parse_config(FACTORY, body))


def _run(sampler: HeadSampler, ids: list[bytes], per_batch: int) -> set[bytes]:
    kept: set[bytes] = set()
    for start in range(0, len(ids), per_batch):
        out = sampler(spans((t, 0) for t in ids[start:start + per_batch]))
        if out is not None:
            kept |= kept_trace_ids([out])
    return kept


class TestShare:
    @pytest.mark.parametrize(("body", "probability"), [
        ({"sampling_percentage": 10}, threshold_to_probability(0xE666 << 40)),  # th:e666, 10.0006 %
        ({"sampling_percentage": 10, "hash_seed": 22}, threshold_to_probability(hashed_threshold(10))),  # 1638/16384
        ({"sampling_percentage": 50}, 0.5),
    ], ids=["w3c-10", "hash-seed-10", "w3c-50"])
    def test_kept_share_of_100k_traces_is_within_the_binomial_bound(self, body, probability):
        """Over 100,000 random trace ids the kept count is within 5 standard deviations of n·p.

        The kept count is Binomial(n=100,000, p) with p the probability the configured threshold
        keeps (for 10 %: th e666 keeps 0.100006; the hash_seed mode's 14 bits keep 1638/16384).
        Its standard deviation is sqrt(n·p·(1-p)), about 95 traces for p = 0.1 and 158 for p =
        0.5; a deviation beyond 5 of them has probability below 6e-7, so the test does not flake,
        while a sampler off by 0.5 percentage points (500 traces at p = 0.1) fails it.
        """
        kept = len(_run(_sampler(**body), trace_ids(N), per_batch=1000))
        sd = math.sqrt(N * probability * (1 - probability))
        assert abs(kept - N * probability) <= 5 * sd, (kept, N * probability, sd)

    def test_zero_drops_everything_with_a_trace_id(self):
        """0 % keeps no span; a batch of them becomes nothing at all."""
        assert _sampler(sampling_percentage=0)(spans((t, 0) for t in trace_ids(50))) is None


class TestConsistency:
    def test_two_instances_fed_in_different_orders_keep_the_same_trace_ids(self):
        """Shuffled order and other batch boundaries: exactly the same trace ids are kept."""
        ids = trace_ids(20_000, seed=3)
        shuffled = ids[:]
        random.Random(9).shuffle(shuffled)
        for body in ({"sampling_percentage": 25}, {"sampling_percentage": 25, "hash_seed": 4242}):
            first = _run(_sampler(**body), ids, per_batch=100)
            second = _run(_sampler(**body), shuffled, per_batch=37)
            assert first == second
            assert 0.2 < len(first) / len(ids) < 0.3

    def test_every_span_of_a_trace_shares_its_fate(self):
        """Spans of one trace arriving in separate batches are all kept or all dropped."""
        sampler = _sampler(sampling_percentage=30)
        ids = trace_ids(2_000, seed=5)
        seen: dict[bytes, set[bool]] = {}
        for number in range(3):
            out = sampler(spans((t, number) for t in ids))
            kept = kept_trace_ids([out]) if out is not None else set()
            for t in ids:
                seen.setdefault(t, set()).add(t in kept)
        assert all(len(fates) == 1 for fates in seen.values())

    @pytest.mark.parametrize("seed", [0, 77])
    def test_log_records_follow_their_trace_and_records_without_one_are_kept(self, seed):
        """A log record with a trace id is kept exactly when that trace's spans are; one without is kept."""
        sampler = _sampler(sampling_percentage=20, hash_seed=seed)
        ids = trace_ids(5_000, seed=11)
        kept_spans = kept_trace_ids([sampler(spans((t, 0) for t in ids))])
        out = sampler(logs([*ids, None, None]))
        records = [r for rl in out.message.resource_logs for sl in rl.scope_logs for r in sl.log_records]
        assert {r.trace_id for r in records if r.trace_id} == kept_spans
        assert sum(1 for r in records if not r.trace_id) == 2
        assert all(a.key == "sampling.threshold" for r in records if r.trace_id for a in r.attributes)


class TestTracestate:
    def _kept_states(self, sampler: HeadSampler, tracestate: str, n: int = 500) -> list[str]:
        out = sampler(spans(((t, 0) for t in trace_ids(n, seed=13)), tracestate=tracestate))
        return [s.trace_state for rs in out.message.resource_spans for ss in rs.scope_spans for s in ss.spans]

    def test_threshold_is_written_and_other_entries_kept(self):
        """A kept span carries ot=th:e666 (10 %) first, then the vendor entries it came with."""
        states = self._kept_states(_sampler(sampling_percentage=10), "vendor=abc,other=1")
        assert states
        assert set(states) == {"ot=th:e666,vendor=abc,other=1"}

    def test_an_arriving_threshold_is_multiplied(self):
        """Spans sampled at 50 % upstream (th:8) and at 50 % here leave with th:c (25 %)."""
        states = self._kept_states(_sampler(sampling_percentage=50), "ot=th:8")
        assert set(states) == {"ot=th:c"}

    def test_hash_seed_mode_writes_randomness_and_threshold(self):
        """hash_seed mode records the 14-bit hash as rv beside th, as the collector does."""
        states = self._kept_states(_sampler(sampling_percentage=10, hash_seed=1), "")
        assert states
        assert all(s.startswith("ot=rv:") and ";th:e668" in s for s in states)

    def test_explicit_rv_is_the_randomness(self):
        """An rv value in tracestate decides instead of the trace id: rv ff... keeps, rv 00... drops."""
        sampler = _sampler(sampling_percentage=10)
        assert self._kept_states(sampler, "ot=rv:ffffffffffffff", n=20) == ["ot=rv:ffffffffffffff;th:e666"] * 20
        assert sampler(spans(((t, 0) for t in trace_ids(20)), tracestate="ot=rv:00000000000000")) is None


class TestProcessor:
    async def test_dropped_spans_are_counted_as_sampled_which_is_no_loss(self):
        """Every dropped span is counted with reason sampled; that reason is not a data loss."""
        metrics = SelfMetrics()
        sink = CapturingConsumer()
        cfg = parse_config(FACTORY, {"sampling_percentage": 10})
        proc = FACTORY.create(make_processor_settings("sampling", metrics=metrics), cfg, sink)
        await proc.start(RecordingHost())
        await proc.consume(spans((t, 0) for t in trace_ids(1000)))
        await proc.shutdown()
        dropped = metrics.registry.get_sample_value(
            "obs_pipeline_processor_dropped_items_total", {"processor": "sampling", "pipeline": "traces", "reason": "sampled"})
        assert dropped == 1000 - sink.items
        assert 0 < sink.items < 200
        assert "sampled" not in LOSS_REASONS

    def test_hundred_percent_returns_the_batch_untouched(self):
        """The default (100 %) hands on the very batch, wire bytes and all."""
        batch = spans((t, 0) for t in trace_ids(10))
        assert _sampler()(batch) is batch
        assert span_ids([batch])

    def test_logs_without_trace_ids_pass_untouched(self):
        """File-tailed logs carry no trace id: the batch is handed on as it came, wire bytes kept."""
        batch = logs([None, None, None])
        wire = batch.serialized()
        out = _sampler(sampling_percentage=10)(batch)
        assert out is batch
        assert out.wire == wire
