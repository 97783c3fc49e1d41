"""``obs-pipeline cost``: spend and tokens grouped by one key, in one streaming pass.

What counts: a line with a numeric ``detail.cost_usd`` is a *priced* call (the cost processor
prices inference spans only, so agent spans that repeat their children's usage are not counted
twice); an ``llm`` line without one (``detail.unpriced: true``, or no cost processor in the
pipeline) is an *unpriced* call: its calls and tokens go to the unpriced row, never into a
group as if it cost $0 (its ``cost_usd`` is null in ``--json``). Retried copies of a line are
dropped on ``event_id``; a token count that is negative or not an integer is left out and counted.

Keys: ``session``, ``user`` and ``agent`` are often set on a turn's top span only; a line
without one takes its trace's (the first value seen in the trace). Those lines are held per
trace, as sums, until the trace's key shows (:class:`~obs_pipeline.auditquery.traces.TraceResolver`,
bounded), so memory is bounded by the turns in flight, not by the trail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from obs_pipeline.audit.line import BUDGET, LLM
from obs_pipeline.auditquery.describe import cost_of, invalid_tokens_of, tokens_of
from obs_pipeline.auditquery.traces import TraceResolver
from obs_pipeline.auditquery.trail import Line

__all__ = ["GROUPS", "NONE_KEY", "Amounts", "CostReport", "cost_report"]

NONE_KEY: Final = "(none)"
#: ``--by`` value -> the line key it reads (``day`` and ``tenant`` are computed).
_KEYS: Final = {"session": "session_id", "user": "user_id", "agent": "agent", "model": "model",
                "provider": "provider", "tenant": "tenant", "day": "day"}
GROUPS: Final = tuple(_KEYS)
#: Keys a line may leave to its trace.
_INHERITED: Final = frozenset({"session", "user", "agent"})
_TOKEN_FIELDS: Final = ("input", "output", "cache_read", "cache_write", "reasoning", "total")


@dataclass(slots=True)
class Amounts:
    """Calls, tokens and spend summed over some lines."""

    calls: int = 0
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    total: int = 0  # reported only as a total (never split, never beside input/output)
    cost_usd: float = 0.0

    def add(self, tokens: dict[str, int], cost: float) -> None:
        """Count one call."""
        self.calls += 1
        self.input += tokens.get("input", 0)
        self.output += tokens.get("output", 0)
        self.cache_read += tokens.get("cache_read", 0)
        self.cache_write += tokens.get("cache_write", 0)
        self.reasoning += tokens.get("reasoning", 0)
        self.total += tokens.get("total", 0)
        self.cost_usd += cost

    def merge(self, other: Amounts) -> None:
        """Add ``other`` in."""
        self.calls += other.calls
        for name in _TOKEN_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost_usd += other.cost_usd

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``cost_usd`` rounded to 1e-9 USD, below any price's precision)."""
        return {"calls": self.calls, **{name: getattr(self, name) for name in _TOKEN_FIELDS},
                "cost_usd": round(self.cost_usd, 9)}


@dataclass(slots=True)
class CostReport:
    """The rows (priced, by key, highest spend first), the unpriced share, and the totals."""

    by: str
    rows: list[tuple[str, Amounts]] = field(default_factory=list)
    unpriced: Amounts = field(default_factory=Amounts)
    unpriced_keys: list[tuple[str, int]] = field(default_factory=list)  # (key, calls), most calls first
    total: Amounts = field(default_factory=Amounts)
    duplicates: int = 0
    invalid_tokens: int = 0  # token counts left out: negative or not integers (a buggy SDK)

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "by": self.by,
            "rows": [{"key": key, **amounts.as_dict()} for key, amounts in self.rows],
            # Its cost is unknown, never $0: null.
            "unpriced": {**self.unpriced.as_dict(), "cost_usd": None,
                         "keys": [{"key": key, "calls": calls} for key, calls in self.unpriced_keys]},
            "total": self.total.as_dict(),
            "duplicates_dropped": self.duplicates,
            "invalid_token_counts": self.invalid_tokens,
        }


def _key_reader(by: str) -> Callable[[Line], str | None]:
    if by == "day":
        return lambda line: line.timestamp[:10] or None
    if by == "tenant":
        return lambda line: line.tenant
    field_name = _KEYS[by]
    if field_name in ("model", "provider"):
        def from_detail(line: Line) -> str | None:
            value = line.detail.get(field_name)
            return value if isinstance(value, str) and value else None
        return from_detail
    return lambda line: line.text(field_name)


def cost_report(lines: Iterable[Line], by: str) -> CostReport:
    """Spend and tokens of ``lines`` (already filtered and deduplicated) grouped ``by`` one of :data:`GROUPS`.

    Raises:
        ValueError: ``by`` is not one of :data:`GROUPS`.
    """
    if by not in _KEYS:
        raise ValueError(f"--by must be one of {', '.join(GROUPS)}, not {by!r}")
    key_of = _key_reader(by)
    inherits = by in _INHERITED
    priced: dict[str, Amounts] = {}
    unpriced: dict[str, Amounts] = {}

    def fold(key: str | None, held: tuple[Amounts, Amounts]) -> None:
        for table, part in ((priced, held[0]), (unpriced, held[1])):
            if part.calls:
                table.setdefault(key or NONE_KEY, Amounts()).merge(part)

    traces = TraceResolver(lambda: (Amounts(), Amounts()), fold)
    report = CostReport(by)
    for line in lines:
        record = line.record
        key = key_of(line)
        trace = record.get("trace_id")
        if inherits and isinstance(trace, str):
            if key is not None:
                traces.learn(trace, key)
            else:
                key = traces.known(trace)
        cost = cost_of(line)
        if cost is None and not (record.get("category") == LLM or line.detail.get("unpriced") is True):
            continue
        if record.get("category") == BUDGET:
            continue
        tokens = tokens_of(line)
        report.invalid_tokens += invalid_tokens_of(line)
        if key is None and inherits and isinstance(trace, str):
            held = traces.hold(trace)
            (held[0] if cost is not None else held[1]).add(tokens, cost or 0.0)
        else:
            table = priced if cost is not None else unpriced
            table.setdefault(key or NONE_KEY, Amounts()).add(tokens, cost or 0.0)
        (report.total if cost is not None else report.unpriced).add(tokens, cost or 0.0)
    traces.finish()
    report.rows = sorted(priced.items(), key=lambda item: (-item[1].cost_usd, item[0]))
    report.unpriced_keys = sorted(((key, amounts.calls) for key, amounts in unpriced.items()),
                                  key=lambda item: (-item[1], item[0]))
    report.total.merge(report.unpriced)  # the total row is the priced rows plus the unpriced row
    return report
