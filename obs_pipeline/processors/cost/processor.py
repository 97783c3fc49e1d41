"""The batch function: find the inference spans, price them, write the cost attributes.

The scan reads the batch's wire bytes through the raw-attribute view (:mod:`obs_pipeline.otlp_view`),
so a batch without an inference span to price is handed on untouched, wire bytes and all, and is
never parsed into messages. Only a batch with something to price is made mutable; the cost
attributes are appended to each span in one ``MergeFromString`` of prebuilt bytes. Spans this
processor (or another cost processor) already handled are recognised by their attributes and
left alone, so the function is idempotent per batch.
"""

from __future__ import annotations

import math
import struct
import time
from collections import Counter

from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from obs_pipeline import wire
from obs_pipeline.batch import Batch
from obs_pipeline.components import ProcessorSettings
from obs_pipeline.otlp_view import TracesView
from obs_pipeline.processors.cost.config import Config
from obs_pipeline.processors.cost.normalize import normalize
from obs_pipeline.processors.cost.pricing import (
    LOOKUP_FAILED,
    OVERRIDE,
    SOURCE_GENAI_PRICES,
    PriceBook,
    Quote,
)
from obs_pipeline.processors.cost.reading import (
    COST_AMOUNT,
    COST_CURRENCY,
    COST_SOURCE,
    COST_UNPRICED,
    COST_UNPRICED_REASON,
    DRIFT,
    ESTIMATE,
    SpanFacts,
    SpanReader,
)

__all__ = ["FUTURE_START_TIME", "PROVIDER", "USD", "CostFunction"]

USD = "USD"
PROVIDER = "provider"  # gen_ai.usage.cost.source of a cost the span came with
FUTURE_START_TIME = "future_start_time"
_NS = 1_000_000_000
_OURS = (SOURCE_GENAI_PRICES.partition("@")[0] + "@", OVERRIDE)


#: The metric label of a source: ``genai-prices`` without its version.
_LABELS = {SOURCE_GENAI_PRICES: "genai-prices"}


def _handled(facts: SpanFacts) -> bool:
    """Whether a cost processor already wrote this span's cost (or its unpriced mark)."""
    if facts.unpriced or ESTIMATE in facts.present:
        return True
    return (facts.source or "").startswith(_OURS)


class CostFunction:
    """``Batch -> Batch``: prices the inference spans of a traces batch (see the module docstring)."""

    def __init__(self, settings: ProcessorSettings, cfg: Config, book: PriceBook) -> None:
        self.cfg = cfg
        self.book = book
        metrics = settings.metrics
        labels = {"processor": str(settings.id), "pipeline": settings.pipeline}
        self._priced = {s: metrics.cost_priced_spans.labels(**labels, source=s)
                        for s in ("genai-prices", OVERRIDE, PROVIDER)}
        self._unpriced = metrics.cost_unpriced_spans.labels
        self._normalized = metrics.cost_normalized_spans.labels
        self._drift = metrics.cost_drift_spans.labels(**labels)
        self._labels = labels
        self._log = settings.logger
        self._failures_logged: set[str] = set()
        self._reader = SpanReader(cfg.max_tokens)
        self._out = _Attributes()
        self._skew_ns = int(cfg.max_clock_skew * _NS)

    def __call__(self, batch: Batch) -> Batch:
        """Price the batch's inference spans; a batch with none comes back as it was."""
        found: list[tuple[int, int, int, SpanFacts]] = []
        read = self._reader.read
        for r, group in enumerate(TracesView.FromString(batch.serialized()).resource_spans):
            for s, scope_spans in enumerate(group.scope_spans):
                for i, span in enumerate(scope_spans.spans):
                    facts = read(span.attributes)
                    if facts is not None and not _handled(facts):
                        found.append((r, s, i, facts))
        if not found:
            return batch
        message = batch.mutable()
        assert isinstance(message, TracesData)  # the factory takes traces only
        tally: Counter[tuple[str, str]] = Counter()
        now_ns = time.time_ns()
        for r, s, i, facts in found:
            scope_spans = message.resource_spans[r].scope_spans[s]
            self._price(scope_spans.spans[i], facts, scope_spans.scope.name, now_ns, tally)
        self._count(tally)
        return batch

    def _when(self, span: Span, now_ns: int, tally: Counter[tuple[str, str]]) -> int:
        """The span's start (ns), for historic prices; its arrival when unset or too far in the future."""
        start: int = span.start_time_unix_nano
        if start == 0:
            return now_ns
        if start > now_ns + self._skew_ns:
            tally["normalized", FUTURE_START_TIME] += 1
            return now_ns
        return start

    def _price(self, span: Span, facts: SpanFacts, scope: str, now_ns: int, tally: Counter[tuple[str, str]]) -> None:
        normalized = normalize(facts.tokens, facts.provider, facts.model, scope, self.cfg.token_conventions)
        if isinstance(normalized, str):
            quote: Quote | str = normalized
        else:
            tokens, applied = normalized
            for reason in applied:
                tally["normalized", reason] += 1
            quote = self.book.quote_ns(facts.provider, facts.model, tokens, self._when(span, now_ns, tally),
                                       facts.service_tier)
        out = self._out
        if facts.reported_usd is not None:
            parts = self._keep_reported(facts, quote, tally)
        elif isinstance(quote, str):
            parts = [out.constant(COST_UNPRICED, True), out.constant(COST_UNPRICED_REASON, quote)]
            tally["unpriced", quote] += 1
        else:
            usd = quote.usd
            parts = [out.double(COST_AMOUNT, usd), out.constant(COST_CURRENCY, USD),
                     out.constant(COST_SOURCE, quote.source)]
            parts.extend(out.double(name, usd) for name in self.cfg.aliases if name not in facts.present)
            tally["priced", _LABELS.get(quote.source, quote.source)] += 1
        span.MergeFromString(b"".join(parts))

    def _keep_reported(self, facts: SpanFacts, quote: Quote | str, tally: Counter[tuple[str, str]]) -> list[bytes]:
        """Keep the cost the span came with (``source=provider``); our estimate goes beside it."""
        out = self._out
        reported = facts.reported_usd
        assert reported is not None
        currency = facts.reported_currency or USD
        present = facts.present
        parts = []
        if COST_AMOUNT not in present:
            parts.append(out.double(COST_AMOUNT, reported))
        if COST_CURRENCY not in present:
            parts.append(out.constant(COST_CURRENCY, USD))
        if COST_SOURCE not in present:
            parts.append(out.constant(COST_SOURCE, PROVIDER))
        if currency == USD:
            parts.extend(out.double(name, reported) for name in self.cfg.aliases if name not in present)
        tally["priced", PROVIDER] += 1
        if isinstance(quote, Quote):
            parts.append(out.double(ESTIMATE, quote.usd))
            if currency == USD and _drifts(reported, quote.usd, self.cfg.drift_threshold):
                parts.append(out.constant(DRIFT, True))
                tally["drift", ""] += 1
        return parts

    def _count(self, tally: Counter[tuple[str, str]]) -> None:
        """Move the counters once per batch (and log a new kind of lookup failure, once)."""
        failed = tally.get(("unpriced", LOOKUP_FAILED), 0)
        if failed and (kind := self.book.last_failure or "Exception") not in self._failures_logged:
            self._failures_logged.add(kind)
            self._log.warning("the price lookup failed (%s) on %d spans: marked unpriced (lookup_failed); "
                              "further failures of this kind are only counted", kind, failed)
        for (what, reason), n in tally.items():
            if what == "priced":
                self._priced[reason].inc(n)
            elif what == "unpriced":
                self._unpriced(**self._labels, reason=reason).inc(n)
            elif what == "normalized":
                self._normalized(**self._labels, reason=reason).inc(n)
            else:
                self._drift.inc(n)


def _drifts(reported: float, estimate: float, threshold: float) -> bool:
    """Whether the estimate differs from the reported cost by more than ``threshold`` of it."""
    if reported == 0:
        return estimate > 0
    return math.fabs(estimate - reported) / reported > threshold


_pack_double = struct.Struct("<d").pack


class _Attributes:
    """Serialized attributes to merge into a span: one ``MergeFromString`` appends them all.

    Adding six ``KeyValue`` objects one by one costs about ten times more than parsing their
    bytes in one call; constant ones (currency, source, unpriced) are built once.
    """

    def __init__(self) -> None:
        self._doubles: dict[str, bytes] = {}
        self._constants: dict[tuple[str, str | bool], bytes] = {}

    def double(self, key: str, value: float) -> bytes:
        """``key`` = a double ``value``."""
        prefix = self._doubles.get(key)
        if prefix is None:
            prefix = self._doubles[key] = wire.double_attribute_prefix(key)
        return prefix + _pack_double(value)

    def constant(self, key: str, value: str | bool) -> bytes:
        """``key`` = a string or boolean ``value`` (cached: call it with few distinct values)."""
        found = self._constants.get((key, value))
        if found is None:
            any_value = wire.any_bool(value) if isinstance(value, bool) else wire.any_string(value)
            found = self._constants[key, value] = wire.attribute(key, any_value)
        return found
