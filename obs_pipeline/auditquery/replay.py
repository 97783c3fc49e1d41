"""``obs-pipeline replay``: the sessions of a trail, and one session's timeline grouped by turn.

A **turn** is one agent invocation: the top-most ``invoke_agent`` span of a call tree (a
sub-agent's ``invoke_agent`` below it belongs to the same turn), with every line below it in the
tree (``parent_span_id`` within the trace). The tree is built from the lines alone:

* a *span's* line (``event_id`` is ``<trace_id>:<span_id>`` or ``span:…``) hangs below its parent;
* any other line (a log record: a budget or security event, an agent's own audit line) hangs
  below the span that was active when it was written (its ``span_id``), else below its
  ``parent_span_id``, else in the turn of its trace that had started by then;
* a tree with no ``invoke_agent`` span is one turn, rooted at its top span (an agent that is
  not instrumented at the agent level still gets one turn per call tree);
* a line with no trace goes into the last turn that started at or before its time.

Turns are numbered from 1 in the order they started; steps inside a turn are in time order,
each with its depth below the turn's root. A session's lines are held in memory to build its
tree (one session, not the trail); :func:`list_sessions` streams, in bounded memory.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from obs_pipeline.audit.line import LLM, TOOL
from obs_pipeline.auditquery.describe import cost_of, is_problem, kind_of, tokens_of
from obs_pipeline.auditquery.traces import TraceResolver
from obs_pipeline.auditquery.trail import Line

__all__ = ["INVOKE_AGENT", "SessionSummary", "Step", "Turn", "build_turns", "is_span_line", "list_sessions",
           "select_steps"]

INVOKE_AGENT = "invoke_agent"


def is_span_line(line: Line) -> bool:
    """Whether the line was made from a span (not a log record): its event id says so."""
    record = line.record
    event_id = record.get("event_id")
    if not isinstance(event_id, str):
        return False
    return event_id.startswith("span:") or event_id == f"{record.get('trace_id')}:{record.get('span_id')}"


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a turn, ``depth`` levels below the turn's root (the root is depth 0)."""

    line: Line
    depth: int


@dataclass(slots=True)
class Turn:
    """One agent invocation and everything below it."""

    number: int
    root: Line
    steps: list[Step] = field(default_factory=list)  # the root first, then in time order

    def totals(self) -> dict[str, Any]:
        """LLM and tool calls, problems, tokens, cost and the root's duration."""
        lines = [step.line for step in self.steps]
        llm = [line for line in lines if kind_of(line) == LLM]
        costs = [cost for line in lines if (cost := cost_of(line)) is not None]
        tokens_in = sum(tokens_of(line).get("input", 0) for line in llm)
        tokens_out = sum(tokens_of(line).get("output", 0) for line in llm)
        return {
            "turn": self.number, "started": self.root.timestamp, "llm_calls": len(llm),
            "tool_calls": sum(kind_of(line) == TOOL for line in lines),
            "errors": sum(is_problem(line) for line in lines), "input_tokens": tokens_in,
            "output_tokens": tokens_out, "cost_usd": round(sum(costs), 9) if costs else None,
            "duration_ms": self.root.detail.get("duration_ms"),
        }


class _Tree:
    """The span tree of a session's lines: who is whose parent, by (trace, span id)."""

    def __init__(self, lines: list[Line]) -> None:
        self.spans: dict[tuple[str, str], Line] = {}
        for line in lines:
            trace, span = line.record.get("trace_id"), line.record.get("span_id")
            if is_span_line(line) and isinstance(trace, str) and isinstance(span, str):
                self.spans.setdefault((trace, span), line)

    def anchor(self, line: Line) -> Line | None:
        """The span a line hangs at: itself for a span, the active span or its parent for a log record."""
        record = line.record
        trace = record.get("trace_id")
        if not isinstance(trace, str):
            return None
        if is_span_line(line):
            return line
        for key in ("span_id", "parent_span_id"):
            found = self.spans.get((trace, record.get(key)))  # type: ignore[arg-type]
            if found is not None:
                return found
        return None

    def chain(self, span: Line) -> list[Line]:
        """``span`` and its ancestors present in the trail, nearest first (a cycle is cut)."""
        chain = [span]
        seen = {id(span)}
        trace = span.record.get("trace_id")
        while True:
            parent = self.spans.get((trace, chain[-1].record.get("parent_span_id")))  # type: ignore[arg-type]
            if parent is None or id(parent) in seen:
                return chain
            seen.add(id(parent))
            chain.append(parent)


def _root_of(chain: list[Line]) -> tuple[Line, int]:
    """(the turn root of a chain, the chain's first line's depth below it)."""
    agents = [index for index, line in enumerate(chain) if line.record.get("event_type") == INVOKE_AGENT]
    top = agents[-1] if agents else len(chain) - 1
    return chain[top], top


def build_turns(lines: Iterable[Line]) -> list[Turn]:
    """The turns of one session's lines (in file order), numbered by start time."""
    ordered = list(lines)
    order = {id(line): index for index, line in enumerate(ordered)}
    tree = _Tree(ordered)
    placed: list[tuple[Line, Line, int]] = []  # (line, root, depth)
    loose: list[Line] = []
    for line in ordered:
        span = tree.anchor(line)
        if span is None:
            loose.append(line)
            continue
        root, depth = _root_of(tree.chain(span))
        placed.append((line, root, depth + (0 if span is line else 1)))
    roots = sorted({id(root): root for _, root, _ in placed}.values(), key=lambda r: (r.timestamp, order[id(r)]))
    if not roots and loose:
        roots = [loose.pop(0)]
        placed.append((roots[0], roots[0], 0))
    turns = {id(root): Turn(number, root) for number, root in enumerate(roots, 1)}
    starts = [root.timestamp for root in roots]
    for line in loose:
        at = max(bisect.bisect_right(starts, line.timestamp) - 1, 0) if roots else None
        if at is not None:
            placed.append((line, roots[at], 1))
    for line, root, depth in placed:
        turns[id(root)].steps.append(Step(line, depth))
    for turn in turns.values():
        turn.steps.sort(key=lambda step: (step.line is not turn.root, step.line.timestamp, order[id(step.line)]))
    return [turns[id(root)] for root in roots]


@dataclass(slots=True)
class SessionSummary:
    """One session's figures in ``replay list``."""

    session: str
    first: str = ""
    last: str = ""
    events: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    agents: set[str] = field(default_factory=set)
    tenants: set[str] = field(default_factory=set)

    def add(self, line: Line) -> None:
        """Count one line."""
        stamp = line.timestamp
        if stamp and (not self.first or stamp < self.first):
            self.first = stamp
        self.last = max(self.last, stamp)
        self.events += 1
        kind = kind_of(line)
        cost = cost_of(line)
        self.llm_calls += kind == LLM
        self.tool_calls += kind == TOOL
        self.errors += is_problem(line)
        if cost is not None:
            self.cost_usd += cost
        elif kind == LLM:
            self.unpriced_calls += 1
        if line.text("agent") and len(self.agents) < 16:
            self.agents.add(line.record["agent"])
        if line.tenant is not None:
            self.tenants.add(line.tenant)

    def merge(self, other: SessionSummary) -> None:
        """Add the figures of lines counted before their session was known."""
        for stamp in (other.first, other.last):
            if stamp:
                self.first = min(self.first, stamp) if self.first else stamp
                self.last = max(self.last, stamp)
        self.events += other.events
        self.llm_calls += other.llm_calls
        self.tool_calls += other.tool_calls
        self.errors += other.errors
        self.cost_usd += other.cost_usd
        self.unpriced_calls += other.unpriced_calls
        self.agents |= other.agents
        self.tenants |= other.tenants

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {"session_id": self.session, "first": self.first, "last": self.last, "events": self.events,
                "llm_calls": self.llm_calls, "tool_calls": self.tool_calls, "errors": self.errors,
                "cost_usd": round(self.cost_usd, 9), "unpriced_calls": self.unpriced_calls,
                "agents": sorted(self.agents), "tenants": sorted(self.tenants)}


def list_sessions(lines: Iterable[Line]) -> list[SessionSummary]:
    """Every session of ``lines`` with its figures, most recent first, in one pass.

    A line without a session counts for the session of its trace (held per trace until it shows).
    """
    sessions: dict[str, SessionSummary] = {}

    def fold(session: str | None, held: SessionSummary) -> None:
        if session is not None:
            sessions[session].merge(held)

    traces = TraceResolver(lambda: SessionSummary(""), fold)
    for line in lines:
        session = line.text("session_id")
        trace = line.text("trace_id")
        if session is not None:
            sessions.setdefault(session, SessionSummary(session)).add(line)
            if trace is not None:
                traces.learn(trace, session)
        elif trace is not None:
            owner = traces.known(trace)
            if owner is not None:
                sessions[owner].add(line)
            else:
                traces.hold(trace).add(line)
    traces.finish()
    return sorted(sessions.values(), key=lambda s: (s.last, s.session), reverse=True)


def select_steps(turns: list[Turn], *, kinds: frozenset[str] = frozenset(), errors: bool = False,
                 turn: int | None = None) -> list[tuple[Turn, list[tuple[Line, int]]]]:
    """Each chosen turn with its steps that pass ``--kind`` / ``--errors`` (turn numbers stay those of the session).

    ``turn`` picks one turn by number; a turn left without steps is still listed when no step
    filter is set, and dropped when one is (``--errors`` lists only turns that had a problem).
    """
    chosen: list[tuple[Turn, list[tuple[Line, int]]]] = []
    for each in turns:
        if turn is not None and each.number != turn:
            continue
        steps = [(step.line, step.depth) for step in each.steps
                 if (not kinds or kind_of(step.line) in kinds) and (not errors or is_problem(step.line))]
        if steps or not (kinds or errors):
            chosen.append((each, steps))
    return chosen
