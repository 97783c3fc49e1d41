"""What the cost processor reads from a span: operation, provider, model, token counts, a reported cost.

Names come from :mod:`obs_pipeline.genai` (canonical name first, then its aliases), so every
alias learnt there is priced here. Token counts are read strictly, unlike the audit line's
lenient reader: a count that is negative, fractional, not a number, a boolean or absurdly large
is *invalid*, which makes the span unpriced instead of priced from a guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from obs_pipeline import genai
from obs_pipeline.genai import (
    COST_ALIASES,
    COST_AMOUNT,
    COST_CURRENCY,
    COST_SOURCE,
    COST_UNPRICED,
    COST_UNPRICED_REASON,
)
from obs_pipeline.genai.attributes import cost_amount

__all__ = [
    "COST_AMOUNT", "COST_CURRENCY", "COST_SOURCE", "COST_UNPRICED", "COST_UNPRICED_REASON", "DRIFT", "ESTIMATE",
    "INFERENCE_KINDS", "INFERENCE_OPERATIONS", "INVALID", "REPORTED_COST_ALIASES", "SpanFacts", "SpanReader", "count",
]

# The cost attributes (semantic-conventions-genai PR 443) are named in obs_pipeline.genai; these are ours.
ESTIMATE = "obs_pipeline.cost.estimate_usd"
DRIFT = "obs_pipeline.cost.drift"
#: Costs backends read: a span carrying one already has a cost from its instrumentation, kept as
#: the ``provider`` cost.
REPORTED_COST_ALIASES = COST_ALIASES

#: ``gen_ai.operation.name`` values of inference calls: the only spans priced (agent and workflow
#: spans may repeat their children's usage).
INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
#: OpenInference span kinds of inference calls, for spans without an operation name.
INFERENCE_KINDS = frozenset({"LLM", "EMBEDDING"})


class _Invalid:
    """A token count that is present and is not a count."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = _Invalid()
Count = int | _Invalid | None

# Field numbers of what is read.
(_OP, _PROVIDER, _REQ_MODEL, _RESP_MODEL, _IN, _OUT, _CACHE_READ, _CACHE_WRITE, _REASONING, _TOTAL, _OI_KIND,
 _AMOUNT, _SOURCE, _CURRENCY, _UNPRICED, _ALT_COST, _ESTIMATE, _TIER, _REQ_TIER) = range(19)
_N = 19
_TOKEN_FIELDS = (_IN, _OUT, _CACHE_READ, _CACHE_WRITE, _REASONING, _TOTAL)


def _table() -> dict[str, tuple[int, int]]:
    """Attribute name -> (field, rank): rank 0 for the canonical name, higher for aliases in order."""
    table: dict[str, tuple[int, int]] = {}
    for fld, canonical in ((_OP, genai.OPERATION_NAME), (_PROVIDER, genai.PROVIDER_NAME),
                           (_REQ_MODEL, genai.REQUEST_MODEL), (_RESP_MODEL, genai.RESPONSE_MODEL),
                           (_IN, genai.USAGE_INPUT_TOKENS), (_OUT, genai.USAGE_OUTPUT_TOKENS),
                           (_CACHE_READ, genai.USAGE_CACHE_READ_INPUT_TOKENS),
                           (_CACHE_WRITE, genai.USAGE_CACHE_WRITE_INPUT_TOKENS),
                           (_REASONING, genai.USAGE_REASONING_OUTPUT_TOKENS), (_TOTAL, genai.USAGE_TOTAL_TOKENS),
                           (_TIER, genai.OPENAI_RESPONSE_SERVICE_TIER), (_REQ_TIER, genai.OPENAI_REQUEST_SERVICE_TIER)):
        for rank, name in enumerate(genai.names_for(canonical)):
            table[name] = (fld, rank)
    table[genai.OPENINFERENCE_SPAN_KIND] = (_OI_KIND, 0)
    for fld, name in ((_AMOUNT, COST_AMOUNT), (_SOURCE, COST_SOURCE), (_CURRENCY, COST_CURRENCY),
                      (_UNPRICED, COST_UNPRICED), (_ESTIMATE, ESTIMATE)):
        table[name] = (fld, 0)
    for rank, name in enumerate(REPORTED_COST_ALIASES):
        table[name] = (_ALT_COST, rank)
    return table


_TABLE = _table()


def count(value: AnyValue, max_tokens: int) -> Count:
    """A token count: an int in ``[0, max_tokens]``, :data:`INVALID`, or None for an empty value."""
    kind = value.WhichOneof("value")
    if kind == "int_value":
        number: float = value.int_value
    elif kind == "double_value":
        number = value.double_value
    elif kind == "string_value":
        text = value.string_value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return INVALID
    elif kind is None:
        return None
    else:  # bool, bytes, array, map
        return INVALID
    if not math.isfinite(number) or number < 0 or number > max_tokens or number != int(number):
        return INVALID
    return int(number)


@dataclass(slots=True)
class SpanFacts:
    """What one inference span says about its cost (None: not reported)."""

    provider: str | None = None
    model: str | None = None
    tokens: dict[str, Count] = field(default_factory=dict)  # input, output, cache_read, cache_write, reasoning, total
    reported_usd: float | None = None  # a cost the provider or the instrumentation put on the span
    reported_currency: str | None = None
    source: str | None = None
    unpriced: bool = False
    present: frozenset[str] = frozenset()  # the cost attribute names already on the span
    service_tier: str | None = None  # the OpenAI service tier that served the call (flex, priority...)


_TOKEN_NAMES = {_IN: "input", _OUT: "output", _CACHE_READ: "cache_read", _CACHE_WRITE: "cache_write",
                _REASONING: "reasoning", _TOTAL: "total"}
_COST_FIELDS = frozenset({_AMOUNT, _CURRENCY, _SOURCE, _UNPRICED, _ALT_COST, _ESTIMATE})
_BYTES_TABLE = {name.encode(): slot for name, slot in _TABLE.items()}
#: Longest serialized ``KeyValue`` kept in a reader's cache, and entries before the cache starts again.
MAX_CACHED = 256
MAX_TIER_CHARS = 32
MAX_ENTRIES = 50_000
#: A cache entry: (field, rank, value read, attribute name); field -1 for an attribute not read.
Entry = tuple[int, int, object, str]
_SKIP: Entry = (-1, 0, None, "")


def _key(raw: bytes) -> bytes | None:
    """The key of a serialized ``KeyValue`` when it comes first with a one-byte length (it always does)."""
    if len(raw) > 1 and raw[0] == 0x0A and raw[1] < 0x80:
        return raw[2:2 + raw[1]]
    return None


class SpanReader:
    """Reads spans from their serialized ``KeyValue`` attributes (the OTLP view), caching repeated ones.

    Model, provider, operation and most token counts repeat from span to span: a ``KeyValue``
    seen before costs one dict lookup, and one that is not read (a prompt) is recognised by its
    key bytes without being decoded.
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._cache: dict[bytes, Entry] = {}

    def _classify(self, raw: bytes) -> Entry:
        key = _key(raw)
        if key is not None:
            slot = _BYTES_TABLE.get(key)
            if slot is None:
                return _SKIP
            kv = KeyValue.FromString(raw)
        else:
            kv = KeyValue.FromString(raw)
            found = _TABLE.get(kv.key)
            if found is None:
                return _SKIP
            slot = found
        fld, rank = slot
        value: object
        if fld in _TOKEN_NAMES:
            value = count(kv.value, self.max_tokens)
        elif fld in (_AMOUNT, _ALT_COST, _ESTIMATE):
            value = cost_amount(kv.value)
        elif fld == _UNPRICED:
            value = kv.value.bool_value
        else:
            value = kv.value.string_value
        return fld, rank, value, kv.key

    def read(self, attributes: Sequence[bytes]) -> SpanFacts | None:
        """The facts of an inference span, or None when the span is no inference call (it is not priced)."""
        values: list[object] = [None] * _N
        ranks = [99] * _N
        present: list[str] = []
        cache = self._cache
        for raw in attributes:
            entry = cache.get(raw)
            if entry is None:
                entry = self._classify(raw)
                if len(raw) <= MAX_CACHED:
                    if len(cache) >= MAX_ENTRIES:
                        cache.clear()
                    cache[raw] = entry
            fld, rank, value, name = entry
            if fld < 0:
                continue
            if rank < ranks[fld]:
                values[fld], ranks[fld] = value, rank
            if fld in _COST_FIELDS:
                present.append(name)
        return _facts(values, ranks, present)


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _facts(values: list[object], ranks: list[int], present: list[str]) -> SpanFacts | None:
    operation = values[_OP]
    if isinstance(operation, str):
        if ranks[_OP] > 0:
            operation = genai.normalize_operation(operation)
        if operation not in INFERENCE_OPERATIONS:
            return None
    elif values[_OI_KIND] not in INFERENCE_KINDS:
        return None
    provider = _text(values[_PROVIDER])
    facts = SpanFacts(
        provider=genai.normalize_provider(provider) if provider else None,
        model=_text(values[_RESP_MODEL]) or _text(values[_REQ_MODEL]),
        tokens={name: values[fld] for fld, name in _TOKEN_NAMES.items() if values[fld] is not None},  # type: ignore[misc]
        present=frozenset(present),
    )
    tier = _text(values[_TIER]) or _text(values[_REQ_TIER])
    if tier is not None and tier != "auto" and len(tier) <= MAX_TIER_CHARS:
        facts.service_tier = tier
    if isinstance(source := values[_SOURCE], str):
        facts.source = source
    facts.unpriced = values[_UNPRICED] is True
    if isinstance(currency := values[_CURRENCY], str):
        facts.reported_currency = currency or None
    amount = values[_AMOUNT] if ranks[_AMOUNT] < 99 else values[_ALT_COST]
    if isinstance(amount, float):
        facts.reported_usd = amount
    return facts
