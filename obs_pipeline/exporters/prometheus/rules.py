"""The rules that derive agent metrics: their parsed form, the shipped defaults, and their checks.

A rule is data (``schemas/exporters/prometheus.schema.json``, ``$defs/rule``): a name, a kind
(counter or histogram), a match on spans, log records or events, a value, and labels. The
defaults ship in ``default_rules.yaml``, in exactly the format users write under ``metrics:``.
Attribute names in a rule are resolved once, here, to their canonical GenAI name
(:func:`obs_pipeline.genai.canonical`); :mod:`.derive` reads each with its aliases.

The cardinality guard starts here: a label whose value would be a session, user, task, trace or
span id is a validate error unless the rule says ``identity: true`` on it (:func:`check_rules`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from obs_pipeline import genai
from obs_pipeline.errors import Problem

__all__ = [
    "COUNTER", "DEFAULT_BUCKETS", "HISTOGRAM", "IDENTITY_ATTRIBUTES", "IDENTITY_FIELDS", "LOG_RECORDS",
    "OVERFLOW_LABEL", "RESERVED_LABELS", "SPANS", "SPAN_EVENTS", "Condition", "Label", "Rule", "Value",
    "check_rules", "default_rules", "family_name", "load_rules", "parse_rule", "sample_names", "value_text",
]

COUNTER, HISTOGRAM = "counter", "histogram"
SPANS, LOG_RECORDS, SPAN_EVENTS = "spans", "log_records", "span_events"
COUNT, DURATION, ATTRIBUTE = "count", "duration", "attribute"
DEFAULT_RULES_FILE = "default_rules.yaml"

# Defaults of the keys inside a rule. The config layer fills them in for user rules; the shipped
# file is read without it, so parse_rule applies these (a test holds them equal to the schema's).
DEFAULT_KIND = COUNTER
DEFAULT_DESCRIPTION = ""
DEFAULT_STATUS = "any"
DEFAULT_VALUE = COUNT
DEFAULT_SCALE = 1.0
#: Prometheus' own default buckets, for a histogram rule that names none.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: The label of a metric's overflow series (the OpenTelemetry SDKs' ``otel.metric.overflow``).
OVERFLOW_LABEL = "otel_metric_overflow"
#: Label names a rule or ``const_labels`` may not use: Prometheus' own, and the overflow marker.
RESERVED_LABELS = frozenset({"le", "quantile", OVERFLOW_LABEL})

# Not in the GenAI conventions' names (obs_pipeline.genai), but an id per response all the same.
_RESPONSE_ID = "gen_ai.response.id"
#: Attribute names (canonical and alias) whose values are ids of a session, user, task, call or
#: record: one series per id. Never a label unless the rule says ``identity: true``, and dropped
#: from the labels of received OTLP metrics.
IDENTITY_ATTRIBUTES: frozenset[str] = frozenset({
    *genai.names_for(genai.CONVERSATION_ID), *genai.names_for(genai.USER_ID), *genai.names_for(genai.TASK_ID),
    genai.TOOL_CALL_ID, genai.LOG_RECORD_UID, _RESPONSE_ID, "trace_id", "span_id", "trace.id", "span.id",
})
#: Fields that are ids in the same way.
IDENTITY_FIELDS = frozenset({"trace_id", "span_id"})
_IDENTITY_NOUN = {genai.CONVERSATION_ID: "session", genai.USER_ID: "user", genai.TASK_ID: "task"}


@dataclass(frozen=True)
class Label:
    """Where one label's value comes from: attributes (first present), a field, or a constant."""

    name: str
    attributes: tuple[str, ...] = ()  # canonical names
    field: str = ""  # status | error_type | name | trace_id | span_id
    value: str | None = None  # a constant
    default: str = ""  # when the attributes are absent
    identity: bool = False  # the rule allows an id here
    written: tuple[str, ...] = ()  # the attribute names as the rule wrote them, for messages


@dataclass(frozen=True)
class Condition:
    """A condition on one attribute: one of ``allowed`` (texts; ``absent_ok``: or absent), or present / absent."""

    attribute: str  # canonical
    allowed: frozenset[str] = frozenset()
    absent_ok: bool = False
    exists: bool | None = None  # set: the condition is only presence (True) or absence (False)


@dataclass(frozen=True)
class Value:
    """What a matched item adds: 1, its duration, or an attribute's number times ``scale``."""

    kind: str = COUNT  # count | duration | attribute
    attributes: tuple[str, ...] = ()  # canonical names, for kind attribute
    scale: float = DEFAULT_SCALE


@dataclass(frozen=True)
class Rule:
    """One parsed rule. ``where`` says where it was written (``metrics[2]``, ``default_rules.yaml[0]``)."""

    name: str
    kind: str = DEFAULT_KIND
    description: str = DEFAULT_DESCRIPTION
    sources: frozenset[str] = frozenset({SPANS})  # resolved: what the rule looks at
    operations: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()
    status: str = DEFAULT_STATUS
    conditions: tuple[Condition, ...] = ()
    value: Value = field(default_factory=Value)
    labels: tuple[Label, ...] = ()
    buckets: tuple[float, ...] | None = None
    where: str = ""

    @property
    def bounds(self) -> tuple[float, ...]:
        """A histogram's bucket bounds (the defaults when the rule names none)."""
        return DEFAULT_BUCKETS if self.buckets is None else self.buckets


# --- parsing ------------------------------------------------------------------------------------

def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Attribute names as written (a string or a list) -> canonical names, in order, without repeats."""
    written = [value] if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(genai.canonical(name) for name in written))


def _written(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def value_text(value: Any) -> str:
    """A value as text, the same for a rule's condition and an item's attribute.

    Booleans are ``true``/``false``; a whole float is written as an integer (``3.0`` -> ``3``), so
    a YAML ``3`` matches an attribute sent as a double, and values Python holds equal (``3`` and
    ``3.0``) always have one text.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _label(name: str, spec: Any) -> Label:
    if isinstance(spec, str | list):
        return Label(name, attributes=_names(spec), written=_written(spec))
    attribute = spec.get("attribute", [])
    value = spec.get("value")
    return Label(
        name, attributes=_names(attribute), field=spec.get("field", ""),
        value=None if value is None else str(value), default=spec.get("default", ""),
        identity=bool(spec.get("identity", False)), written=_written(attribute),
    )


def _condition(name: str, spec: Any) -> Condition:
    canonical = genai.canonical(name)
    if isinstance(spec, dict):
        return Condition(canonical, exists=bool(spec["exists"]))
    values = spec if isinstance(spec, list) else [spec]
    return Condition(canonical, frozenset(value_text(v) for v in values if v is not None), absent_ok=None in values)


def _value(spec: Any) -> Value:
    if isinstance(spec, str):
        return Value(spec)
    return Value(ATTRIBUTE, _names(spec["attribute"]), float(spec.get("scale", DEFAULT_SCALE)))


def parse_rule(raw: Mapping[str, Any], where: str) -> Rule:
    """A rule's validated body (defaults filled in or not) -> :class:`Rule`."""
    match: Mapping[str, Any] = raw.get("match") or {}
    events = frozenset(match.get("event", []))
    written = tuple(match.get("source", []))
    if written:
        sources = frozenset(written)
    else:
        sources = frozenset({SPAN_EVENTS, LOG_RECORDS}) if events else frozenset({SPANS})
    buckets = raw.get("buckets")
    return Rule(
        name=raw["name"],
        kind=raw.get("kind", DEFAULT_KIND),
        description=raw.get("description", DEFAULT_DESCRIPTION),
        sources=sources,
        operations=frozenset(genai.normalize_operation(op) for op in match.get("operation", [])),
        categories=frozenset(match.get("category", [])),
        events=events,
        status=match.get("status", DEFAULT_STATUS),
        conditions=tuple(_condition(name, spec) for name, spec in (match.get("attributes") or {}).items()),
        value=_value(raw.get("value", DEFAULT_VALUE)),
        labels=tuple(_label(name, spec) for name, spec in (raw.get("labels") or {}).items()),
        buckets=None if buckets is None else tuple(float(b) for b in buckets),
        where=where,
    )


def load_rules(text: str, where: str) -> list[Rule]:
    """Rules from a YAML list in the rule format (``where``: its name, for :attr:`Rule.where`)."""
    raw = yaml.safe_load(text) or []
    return [parse_rule(item, f"{where}[{i}]") for i, item in enumerate(raw)]


@cache
def default_rules() -> tuple[Rule, ...]:
    """The shipped rules (``default_rules.yaml``, package data), read once."""
    text = resources.files(__package__).joinpath(DEFAULT_RULES_FILE).read_text(encoding="utf-8")
    return tuple(load_rules(text, DEFAULT_RULES_FILE))


# --- names --------------------------------------------------------------------------------------

def family_name(namespace: str, rule: Rule) -> str:
    """The metric family's name: namespace + name, a counter's without ``_total`` (served with it)."""
    name = f"{namespace}_{rule.name}" if namespace else rule.name
    if rule.kind == COUNTER and name.endswith("_total") and len(name) > len("_total"):
        name = name.removesuffix("_total")
    return name


def sample_names(name: str, kind: str) -> tuple[str, ...]:
    """The names of the samples a family of ``kind`` serves (``x_total``; ``x_bucket``, ``x_sum``, ``x_count``)."""
    if kind == COUNTER:
        return (f"{name}_total",)
    if kind == HISTOGRAM:
        return f"{name}_bucket", f"{name}_sum", f"{name}_count"
    if kind == "summary":
        return name, f"{name}_sum", f"{name}_count"
    return (name,)


# --- checks -------------------------------------------------------------------------------------

def _identity_of(label: Label) -> str | None:
    """What id a label would carry (``session``, ``trace``), if any."""
    for written in label.written or label.attributes:
        canonical = genai.canonical(written)
        if canonical in IDENTITY_ATTRIBUTES or written in IDENTITY_ATTRIBUTES:
            noun = _IDENTITY_NOUN.get(canonical, "request")
            return f"{written} is a {noun} id"
    if label.field in IDENTITY_FIELDS:
        return f"field {label.field} is a {label.field.removesuffix('_id')} id"
    return None


def _check_label(rule: Rule, label: Label) -> list[Problem]:
    path = f"{rule.where}.labels.{label.name}"
    given = sum((bool(label.attributes), bool(label.field), label.value is not None))
    if given != 1:
        return [Problem(path, "set exactly one of attribute, field and value")]
    if label.name in RESERVED_LABELS:
        return [Problem(path, f'"{label.name}" is reserved (Prometheus uses le and quantile; {OVERFLOW_LABEL} marks overflow)')]
    identity = _identity_of(label)
    if identity and not label.identity:
        return [Problem(path, f"{identity}: as a label it makes one series per id, without bound; "
                              "add identity: true to this label if that is what you want")]
    return []


def _check_match(rule: Rule) -> list[Problem]:
    problems: list[Problem] = []
    where = f"{rule.where}.match"
    if rule.events and SPANS in rule.sources:
        problems.append(Problem(f"{where}.source", "spans have no event name: with event, use span_events and log_records"))
    if not rule.events and SPAN_EVENTS in rule.sources:
        problems.append(Problem(f"{where}.event", "span_events needs the event names to match"))
    if rule.value.kind == DURATION and rule.sources != frozenset({SPANS}):
        problems.append(Problem(f"{rule.where}.value", "duration is a span's: log records and events have none"))
    return problems


def _check_buckets(rule: Rule) -> list[Problem]:
    path = f"{rule.where}.buckets"
    if rule.buckets is None:
        return []
    if rule.kind != HISTOGRAM:
        return [Problem(path, "only a histogram has buckets")]
    if not all(math.isfinite(b) for b in rule.buckets):
        return [Problem(path, "bucket bounds must be finite numbers (the +Inf bucket is always there)")]
    if any(b >= c for b, c in zip(rule.buckets, rule.buckets[1:], strict=False)):
        return [Problem(path, "bucket bounds must increase")]
    return []


@dataclass
class _Family:
    kind: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    where: str


def _check_family(rule: Rule, name: str, families: dict[str, _Family], samples: dict[str, str]) -> list[Problem]:
    """Rules that share a metric must agree on kind, labels and buckets; no two metrics may serve one sample name."""
    labels = tuple(sorted(label.name for label in rule.labels))
    bounds = rule.bounds if rule.kind == HISTOGRAM else ()
    seen = families.get(name)
    if seen is None:
        for sample in (name, *sample_names(name, rule.kind)):
            if sample in samples:
                return [Problem(f"{rule.where}.name", f"{sample} is already served by the metric {samples[sample]}")]
        families[name] = _Family(rule.kind, labels, bounds, rule.where)
        samples.update(dict.fromkeys((name, *sample_names(name, rule.kind)), name))
        return []
    other = f"the rule at {seen.where}" if not seen.where.startswith(DEFAULT_RULES_FILE) else "a default rule"
    if seen.kind != rule.kind:
        return [Problem(f"{rule.where}.kind", f"{name} is a {seen.kind} in {other}")]
    if seen.labels != labels:
        shown = ", ".join(seen.labels) or "no labels"
        return [Problem(f"{rule.where}.labels", f"{name} has labels {shown} in {other}: rules of one metric need the same labels")]
    if seen.bounds != bounds:
        return [Problem(f"{rule.where}.buckets", f"{name} has other buckets in {other}")]
    return []


def check_rules(rules: Iterable[Rule], namespace: str, const_labels: Iterable[str] = ()) -> list[Problem]:
    """Every problem of ``rules`` that the schema cannot see, with paths relative to the exporter's body.

    Checked: each label has one source and is not an id without ``identity: true``; sources and
    events fit together; buckets increase; rules of one metric agree; ``const_labels`` neither
    repeat a rule's label nor use a reserved name.
    """
    problems: list[Problem] = []
    families: dict[str, _Family] = {}
    samples: dict[str, str] = {}
    label_names: set[str] = set()
    for rule in rules:
        for label in rule.labels:
            problems += _check_label(rule, label)
            label_names.add(label.name)
        problems += _check_match(rule)
        problems += _check_buckets(rule)
        problems += _check_family(rule, family_name(namespace, rule), families, samples)
    for name in const_labels:
        if name in RESERVED_LABELS:
            problems.append(Problem(f"const_labels.{name}", f'"{name}" is reserved'))
        elif name in label_names:
            problems.append(Problem(f"const_labels.{name}", f'a rule already has a label "{name}"'))
    return problems
