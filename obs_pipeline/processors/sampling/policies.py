"""Tail sampling policies as data: what each one watches while spans arrive, and how it decides.

A trace is never re-read at decision time. While its spans arrive, :meth:`PolicySet.observe`
folds each span into the trace's :class:`Summary` (span count, earliest start, latest end, the
status codes seen, cost sums, and one bit per attribute condition some span or resource met);
each policy then decides from the summary alone. That keeps a decision O(policies) and lets the
buffer hold spans as opaque bytes.

The decision rule is the collector's: a matching ``drop`` policy drops the trace; otherwise any
policy that keeps it keeps it; otherwise it is dropped. The policy named in our metrics is the
first that decided (in configuration order), or :data:`~.config.NO_POLICY`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import re2

from obs_pipeline.genai import COST_AMOUNT
from obs_pipeline.genai.attributes import cost_amount
from obs_pipeline.processors.sampling.config import NO_POLICY, PolicySpec
from obs_pipeline.processors.sampling.threshold import fnv1a_64, salt_state, tail_hash_threshold

STATUS_BITS = {"UNSET": 1, "OK": 2, "ERROR": 4}  # bit per span status code (0, 1, 2)
_NS_PER_MS = 1_000_000

#: A condition on one attribute value (an ``AnyValue``).
ValueTest = Callable[[Any], bool]


class PolicyError(ValueError):
    """A policy that cannot be compiled; ``where`` is the path below the policy (``.latency``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


class Summary:
    """What the policies know of one trace, folded from its spans as they arrive."""

    __slots__ = ("count", "end", "matched", "start", "status", "sums")

    def __init__(self, sums: int) -> None:
        self.count = 0
        self.start = 0  # earliest start, ns (0: none yet)
        self.end = 0  # latest end, ns
        self.status = 0  # STATUS_BITS of the codes seen
        self.matched = 0  # one bit per attribute condition that some span or resource met
        self.sums = [0.0] * sums  # one per summed attribute (cost)


@dataclass(frozen=True)
class Policy:
    """A compiled policy: ``keeps(summary, trace_id)`` says whether it matches the trace."""

    name: str
    keeps: Callable[[Summary, bytes], bool]
    drop: bool = False


class PolicySet:
    """Every policy of one processor, and the per-span observation they need (built once)."""

    def __init__(self, specs: Iterable[PolicySpec]) -> None:
        self._tests: dict[str, list[tuple[int, ValueTest]]] = {}  # attribute key -> (bit, test)
        self._sum_slots: dict[str, int] = {}  # summed attribute key -> slot
        self.policies = [self._compile(spec, "") for spec in specs]
        self._drops = [p for p in self.policies if p.drop]
        self._keeps = [p for p in self.policies if not p.drop]
        self.sums = len(self._sum_slots)
        # attribute key -> (its tests, its sum slot or None): one lookup per span attribute
        self._watched: dict[str, tuple[list[tuple[int, ValueTest]], int | None]] = {
            key: (self._tests.get(key, []), self._sum_slots.get(key)) for key in {*self._tests, *self._sum_slots}}
        self._watched_bytes = [key.encode() for key in self._watched]

    def new_summary(self) -> Summary:
        """An empty summary with this set's sum slots."""
        return Summary(self.sums)

    def resource_bits(self, attributes: Iterable[Any]) -> int:
        """The condition bits a resource's attributes meet (every span under it meets them too)."""
        bits = 0
        tests = self._tests
        for kv in attributes:
            for bit, test in tests.get(kv.key, ()):
                if test(kv.value):
                    bits |= bit
        return bits

    def observe(self, summary: Summary, span: Any, resource_bits: int, wire: bytes) -> None:
        """Fold one span (``wire``: its serialization) into its trace's summary."""
        summary.count += 1
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        if start and (not summary.start or start < summary.start):
            summary.start = start
        summary.end = max(end, summary.end)
        summary.status |= 1 << span.status.code if span.status.code < 3 else 0
        bits = resource_bits
        watched = self._watched
        if watched and any(key in wire for key in self._watched_bytes):  # a C scan skips spans without them
            for kv in span.attributes:
                watch = watched.get(kv.key)
                if watch is None:
                    continue
                tests, slot = watch
                value = kv.value
                for bit, test in tests:
                    if test(value):
                        bits |= bit
                if slot is not None:
                    summary.sums[slot] += cost_amount(value) or 0.0  # a NaN would make the sum NaN
        summary.matched |= bits

    def decide(self, summary: Summary, trace_id: bytes) -> tuple[bool, str]:
        """(kept, the deciding policy's name): drop policies first, then the first that keeps."""
        for policy in self._drops:
            if policy.keeps(summary, trace_id):
                return False, policy.name
        for policy in self._keeps:
            if policy.keeps(summary, trace_id):
                return True, policy.name
        return False, NO_POLICY

    # -- compiling ----------------------------------------------------------------------------

    def _compile(self, spec: PolicySpec, where: str) -> Policy:
        if spec.type in ("and", "drop"):
            subs = [self._compile(sub, f"{where}.{spec.type}.{spec.type}_sub_policy[{i}]")
                    for i, sub in enumerate(spec.sub_policies)]
            tests = [sub.keeps for sub in subs]
            return Policy(spec.name, lambda s, t: all(test(s, t) for test in tests), drop=spec.type == "drop")
        build = getattr(self, f"_{spec.type}", None)
        if build is None:
            raise PolicyError(f"{where}.type", f'unknown policy type "{spec.type}"')
        return Policy(spec.name, build(spec.settings, f"{where}.{spec.type}"))

    def _attribute_bit(self, key: str, test: ValueTest) -> int:
        bit = 1 << sum(len(v) for v in self._tests.values())
        self._tests.setdefault(key, []).append((bit, test))
        return bit

    @staticmethod
    def _always_sample(_settings: dict[str, Any], _where: str) -> Callable[[Summary, bytes], bool]:
        return lambda _s, _t: True

    @staticmethod
    def _status_code(settings: dict[str, Any], _where: str) -> Callable[[Summary, bytes], bool]:
        mask = 0
        for code in settings["status_codes"]:
            mask |= STATUS_BITS[code]
        return lambda s, _t: bool(s.status & mask)

    @staticmethod
    def _latency(settings: dict[str, Any], where: str) -> Callable[[Summary, bytes], bool]:
        low = settings["threshold_ms"] * _NS_PER_MS
        high = settings.get("upper_threshold_ms", 0) * _NS_PER_MS
        if high and high < low:
            raise PolicyError(f"{where}.upper_threshold_ms", "must be 0 or at least threshold_ms")
        if high:
            return lambda s, _t: low <= s.end - s.start <= high and s.start > 0
        return lambda s, _t: s.end - s.start >= low and s.start > 0

    def _cost(self, settings: dict[str, Any], _where: str) -> Callable[[Summary, bytes], bool]:
        slot = self._sum_slots.setdefault(settings.get("key", COST_AMOUNT), len(self._sum_slots))
        minimum = float(settings["min_usd"])
        return lambda s, _t: s.sums[slot] >= minimum

    def _string_attribute(self, settings: dict[str, Any], where: str) -> Callable[[Summary, bytes], bool]:
        values = list(settings["values"])
        if settings.get("enabled_regex_matching", False):
            patterns = []
            options = re2.Options()
            options.log_errors = False  # the error is raised (and reported by validate), not also written to stderr
            for i, value in enumerate(values):
                try:
                    patterns.append(re2.compile(value, options))
                except re2.error as exc:
                    detail = exc.args[0] if exc.args else ""
                    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
                    raise PolicyError(f"{where}.values[{i}]", f"is not an RE2 regular expression ({text})") from None
            test: ValueTest = lambda v: v.HasField("string_value") and any(p.search(v.string_value) for p in patterns)  # noqa: E731
        else:
            wanted = frozenset(values)
            test = lambda v: v.HasField("string_value") and v.string_value in wanted  # noqa: E731
        return self._matched(settings, test)

    def _numeric_attribute(self, settings: dict[str, Any], where: str) -> Callable[[Summary, bytes], bool]:
        low, high = settings.get("min_value"), settings.get("max_value")
        if low is None and high is None:
            raise PolicyError(where, "set min_value, max_value or both")
        if low is not None and high is not None and high < low:
            raise PolicyError(f"{where}.max_value", "must be at least min_value")
        lo = float("-inf") if low is None else float(low)
        hi = float("inf") if high is None else float(high)

        def test(v: Any) -> bool:
            kind = v.WhichOneof("value")
            if kind == "int_value":
                return bool(lo <= v.int_value <= hi)
            return kind == "double_value" and bool(lo <= v.double_value <= hi)

        return self._matched(settings, test)

    def _boolean_attribute(self, settings: dict[str, Any], _where: str) -> Callable[[Summary, bytes], bool]:
        wanted = bool(settings["value"])
        return self._matched(settings, lambda v: v.HasField("bool_value") and v.bool_value is wanted)

    @staticmethod
    def _span_count(settings: dict[str, Any], where: str) -> Callable[[Summary, bytes], bool]:
        low, high = settings["min_spans"], settings.get("max_spans", 0)
        if high and high < low:
            raise PolicyError(f"{where}.max_spans", "must be 0 or at least min_spans")
        return lambda s, _t: s.count >= low and (not high or s.count <= high)

    @staticmethod
    def _probabilistic(settings: dict[str, Any], _where: str) -> Callable[[Summary, bytes], bool]:
        state = salt_state(settings.get("hash_salt", "").encode())
        bound = tail_hash_threshold(float(settings["sampling_percentage"]))
        if bound == 0:
            return lambda _s, _t: False
        return lambda _s, t: fnv1a_64(t, state) <= bound

    def _matched(self, settings: dict[str, Any], test: ValueTest) -> Callable[[Summary, bytes], bool]:
        bit = self._attribute_bit(settings["key"], test)
        if settings.get("invert_match", False):
            return lambda s, _t: not s.matched & bit
        return lambda s, _t: bool(s.matched & bit)


def compile_policy(spec: PolicySpec) -> Policy:
    """Compile one policy alone (for config checks).

    Raises:
        PolicyError: it does not compile.
    """
    return PolicySet([spec]).policies[0]


__all__ = ["Policy", "PolicyError", "PolicySet", "Summary", "compile_policy"]
