"""The price lookup: the token counts of one call -> USD, over the user's overrides and ``genai-prices``.

``genai-prices`` (Pydantic's tables, bundled: no network) takes ~50 µs a call, most of it matching
the model reference and decomposing the usage. A span only needs five token kinds, so a lookup
*compiles* the model's price for one UTC day into a :class:`Rate` (floats per million tokens,
with their tiers) and caches it per (provider, model, day); pricing a span is then a few
multiplications. The compiled arithmetic is the library's (tests compare both on every bundled
model): cached and reasoning tokens are subsets of input and output, priced at their own rate
when the model has one and at the parent's otherwise; tiers are "cliff" tiers chosen by the
call's whole input; a price per request is added once. Time-of-day prices (DeepSeek's off-peak)
stay conditional in the cached entry and are chosen per call.

A call that cannot be priced gets a reason (:data:`UNKNOWN_MODEL`...), never $0.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal
from importlib.metadata import version
from typing import Any, NamedTuple

from genai_prices import data_snapshot, types

from obs_pipeline.processors.cost.providers import PROVIDER_IDS
from obs_pipeline.processors.cost.usage import Tokens

__all__ = [
    "INVALID_TOKENS", "LOOKUP_FAILED", "MISSING_MODEL", "NEGATIVE_UNCACHED", "OVERRIDE", "PRICES_VERSION", "SOURCE_GENAI_PRICES",
    "UNKNOWN_MODEL", "UNKNOWN_PROVIDER", "Override", "PriceBook", "Quote", "Rate",
]

PRICES_VERSION = version("genai-prices")
SOURCE_GENAI_PRICES = f"genai-prices@{PRICES_VERSION}"
OVERRIDE = "override"

# Why a call is unpriced (the ``gen_ai.usage.cost.unpriced_reason`` values and metric labels).
UNKNOWN_MODEL = "unknown_model"
UNKNOWN_PROVIDER = "unknown_provider"
MISSING_MODEL = "missing_model"
NEGATIVE_UNCACHED = "negative_uncached"
INVALID_TOKENS = "invalid_tokens"
#: The price tables raised something other than "not found" (a bug or bad data in them): that
#: span is unpriced, the rest of its batch is priced as usual.
LOOKUP_FAILED = "lookup_failed"

#: Model references longer than this are no model names (and are never matched or cached).
MAX_MODEL_CHARS = 256
#: Lookups cached (provider, model, day); the least recently used go first.
DEFAULT_CACHE_SIZE = 4096
_MTOK = 1_000_000
_DAY_NS = 86_400 * 1_000_000_000
_EPOCH = date(1970, 1, 1)

#: A price: (base per unit, ((tier start, price), ...) highest start first).
Price = tuple[float, tuple[tuple[int, float], ...]]


@dataclass(frozen=True, kw_only=True)
class Override:
    """A user price, USD per million tokens, for a model (and provider) pattern: it wins over genai-prices.

    ``model`` and ``provider`` are case-insensitive globs (``ft:gpt-4o-mini:acme:*``); ``provider``
    None matches any provider, and is compared with the span's provider name (``aws.bedrock``) and
    with the genai-prices id it maps to (``aws``). Cache prices default to the input price.
    """

    model: str
    provider: str | None = None
    input_mtok: float = 0.0
    output_mtok: float = 0.0
    cache_read_mtok: float | None = None
    cache_write_mtok: float | None = None

    def matches(self, provider: str | None, provider_id: str | None, model: str) -> bool:
        """Whether this override prices ``model`` of ``provider`` (both lower-cased)."""
        if not fnmatch.fnmatchcase(model, self.model.lower()):
            return False
        if self.provider is None:
            return True
        pattern = self.provider.lower()
        return any(name is not None and fnmatch.fnmatchcase(name, pattern) for name in (provider, provider_id))

    def rate(self) -> Rate:
        """The override as a :class:`Rate`."""
        return Rate(input=_flat(self.input_mtok), output=_flat(self.output_mtok),
                    cache_read=_flat(self.cache_read_mtok), cache_write=_flat(self.cache_write_mtok))


@dataclass(frozen=True, slots=True)
class Rate:
    """A model's token prices on one day, USD per million tokens; None: priced as the parent unit."""

    input: Price | None
    output: Price | None
    cache_read: Price | None = None
    cache_write: Price | None = None
    reasoning: Price | None = None
    per_request: float = 0.0  # USD added once per call

    def usd(self, tokens: Tokens) -> float:
        """The cost of ``tokens`` (consistent counts: see :attr:`Tokens.consistent`)."""
        total_in = tokens.input
        p_in = _at(self.input, total_in)
        p_out = _at(self.output, total_in)
        p_read = p_in if self.cache_read is None else _at(self.cache_read, total_in)
        p_write = p_in if self.cache_write is None else _at(self.cache_write, total_in)
        p_reason = p_out if self.reasoning is None else _at(self.reasoning, total_in)
        cost = (tokens.uncached_input * p_in + tokens.cache_read * p_read + tokens.cache_write * p_write
                + (tokens.output - tokens.reasoning) * p_out + tokens.reasoning * p_reason)
        return cost / _MTOK + self.per_request


def _flat(value: float | None) -> Price | None:
    return None if value is None else (float(value), ())


def _at(price: Price | None, total_input: int) -> float:
    if price is None:
        return 0.0
    base, tiers = price
    for start, tier_price in tiers:
        if total_input > start:
            return tier_price
    return base


class Quote(NamedTuple):
    """A priced call: USD and where the price came from (``genai-prices@0.2.3`` or ``override``)."""

    usd: float
    source: str


# --- compiling genai-prices data ----------------------------------------------------------------

def _price(value: Any) -> Price | None:
    if value is None:
        return None
    if isinstance(value, types.TieredPrices):
        tiers = tuple(sorted(((t.start, float(t.price)) for t in value.tiers), reverse=True))
        return float(value.base), tiers
    return float(value), ()


def compile_price(model_price: types.ModelPrice) -> Rate:
    """A genai-prices ``ModelPrice`` as a :class:`Rate` (units other than tokens and requests cost 0 for a span)."""
    get = model_price.__dict__.get
    per_request = get("requests_kcount")
    return Rate(
        input=_price(get("input_mtok")), output=_price(get("output_mtok")),
        cache_read=_price(get("cache_read_mtok")), cache_write=_price(get("cache_write_mtok")),
        reasoning=_price(get("output_reasoning_mtok")),
        per_request=float(per_request) / 1000 if isinstance(per_request, Decimal) else 0.0,
    )


#: A cached lookup: candidates tried in order (a time-of-day constraint or None, and its rate) and
#: the source; or the reason the call cannot be priced.
_Entry = tuple[tuple[tuple[types.TimeOfDateConstraint | None, Rate], ...], str] | str


def _candidates(model: types.ModelInfo, day: date) -> tuple[tuple[types.TimeOfDateConstraint | None, Rate], ...]:
    """The model's prices that may apply on ``day``, in genai-prices' order (last conditional price first)."""
    if isinstance(model.prices, types.ModelPrice):
        return ((None, compile_price(model.prices)),)
    noon = datetime.combine(day, day_time(12), tzinfo=UTC)
    found: list[tuple[types.TimeOfDateConstraint | None, Rate]] = []
    for conditional in reversed(model.prices):
        constraint = conditional.constraint
        if isinstance(constraint, types.TimeOfDateConstraint):
            found.append((constraint, compile_price(conditional.prices)))
            continue
        if constraint is None or constraint.active(noon):
            found.append((None, compile_price(conditional.prices)))
            return tuple(found)
    found.append((None, compile_price(model.prices[0].prices)))
    return tuple(found)


class PriceBook:
    """Prices calls: overrides first, then genai-prices' bundled tables; cached per provider, model and day.

    Thread-safe (the budget processor's endpoint may call it from its own task).

    Args:
        overrides: user prices, tried in order; the first match wins.
        provider_ids: extra or replacing entries for the OTel name -> genai-prices id map.
        cache_size: lookups kept (provider, model, day); when full the cache starts again.
    """

    def __init__(
        self, overrides: Sequence[Override] = (), *, provider_ids: Mapping[str, str | None] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.overrides = tuple(overrides)
        self._ids: dict[str, str | None] = {**PROVIDER_IDS, **(provider_ids or {})}
        self._cache: dict[tuple[str | None, str, int, str | None], _Entry] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        #: The exception class of the last lookup that failed (``lookup_failed``), for the caller's log.
        self.last_failure: str | None = None

    def estimate_usd(
        self, provider: str | None, model: str, input_tokens: int, output_tokens: int, when: datetime | None = None,
    ) -> float | None:
        """The cost in USD of a call with these counts (no cache), or None when it cannot be priced."""
        if input_tokens < 0 or output_tokens < 0:
            return None
        quote = self.quote(provider, model, Tokens(input=input_tokens, output=output_tokens), when)
        return quote.usd if isinstance(quote, Quote) else None

    def quote(
        self, provider: str | None, model: str | None, tokens: Tokens, when: datetime | None = None,
        service_tier: str | None = None,
    ) -> Quote | str:
        """The price of one call started at ``when`` (default now; naive is UTC), or why it has none.

        ``service_tier``: the tier that served the call (OpenAI's ``flex``, ``priority``), whose
        prices genai-prices knows for some models; None is the standard price.
        """
        if when is None:
            start_ns = time.time_ns()
        else:
            start_ns = int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1e9)
        return self.quote_ns(provider, model, tokens, start_ns, service_tier)

    def quote_ns(
        self, provider: str | None, model: str | None, tokens: Tokens, start_ns: int, service_tier: str | None = None,
    ) -> Quote | str:
        """:meth:`quote` for a start time in nanoseconds since the epoch, as spans carry it (the hot path)."""
        if not model:
            return MISSING_MODEL
        if tokens.uncached_input < 0 or tokens.reasoning > tokens.output or min(tokens) < 0:
            return NEGATIVE_UNCACHED if tokens.uncached_input < 0 <= min(tokens) else INVALID_TOKENS
        day = start_ns // _DAY_NS
        key = (provider, model, day, service_tier)
        entry = self._cache.get(key)
        if entry is None:
            try:
                entry = self._look_up(provider.lower() if provider else None, model.strip().lower(),
                                      _EPOCH + timedelta(days=day), service_tier)
            except Exception as exc:  # not cached: the next span asks again
                self.last_failure = type(exc).__name__
                return LOOKUP_FAILED
            with self._lock:
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()  # starts again: cheaper per hit than keeping an LRU order
                self._cache[key] = entry
        if isinstance(entry, str):
            return entry
        candidates, source = entry
        try:  # (free when nothing raises)
            if len(candidates) == 1:
                return Quote(candidates[0][1].usd(tokens), source)
            when = datetime.fromtimestamp(start_ns / 1e9, UTC)
            for constraint, rate in candidates:
                if constraint is None or constraint.active(when):
                    return Quote(rate.usd(tokens), source)
            return Quote(candidates[-1][1].usd(tokens), source)  # pragma: no cover - the last candidate is unconditional
        except Exception as exc:  # a price genai-prices gave us that cannot be applied
            self.last_failure = type(exc).__name__
            return LOOKUP_FAILED

    def _look_up(self, provider: str | None, model: str, day: date, service_tier: str | None = None) -> _Entry:
        if len(model) > MAX_MODEL_CHARS:
            return UNKNOWN_MODEL
        provider_id = self._ids.get(provider, provider) if provider is not None else None
        for override in self.overrides:
            if override.matches(provider, provider_id, model):
                return ((None, override.rate()),), OVERRIDE
        if provider is not None and provider_id is None:
            return UNKNOWN_PROVIDER
        snapshot = data_snapshot.get_snapshot()
        if provider_id is not None and data_snapshot.find_provider_by_id(snapshot.providers, provider_id) is None:
            return UNKNOWN_PROVIDER
        try:
            found, info = snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            return UNKNOWN_MODEL
        # Tier prices apply to a provider's own models, not to those it falls back to (as genai-prices does).
        if service_tier and info.price_variants and any(info is m for m in found.models):
            noon = datetime.combine(day, day_time(12), tzinfo=UTC)
            rate = compile_price(info.get_prices(noon, {"service_tier": service_tier}))
            return ((None, rate),), SOURCE_GENAI_PRICES
        return _candidates(info, day), SOURCE_GENAI_PRICES
