"""Received OTLP metrics -> Prometheus series, named as the OpenTelemetry-to-Prometheus specification says.

Naming (the collector's default ``UnderscoreEscapingWithSuffixes``, after the Prometheus
``otlptranslator``): the name is split at every character outside ``[a-zA-Z0-9:]`` and joined
with ``_`` (so ``.`` becomes ``_`` and runs of ``_`` collapse); the unit is appended as a word
(``s`` -> ``seconds``, ``By`` -> ``bytes``, ``By/s`` -> ``bytes_per_second``; units in braces such
as ``{token}`` and ``1`` add nothing) unless the name has it already; a monotonic sum ends in
``_total`` and a gauge of unit ``1`` in ``_ratio``; a leading digit gets ``_``. Label names:
every character outside ``[a-zA-Z0-9]`` becomes ``_`` (runs collapse), a leading digit gets
``key_``; two attributes that end up with one label name have their values joined by ``;``.
Resource ``service.namespace``/``service.name`` becomes ``job`` and ``service.instance.id``
``instance``, the scope's name and version ``otel_scope_name`` / ``otel_scope_version``.

Types: gauge -> gauge; monotonic sum -> counter; other sums -> gauge; histogram -> histogram;
exponential histogram -> histogram with classic ``le`` buckets (the text format has no native
histograms), at most :data:`MAX_EXPONENTIAL_SCALE` (8 buckets per power of two); summary ->
summary.

Temporality: cumulative points are served as they are (the newest point wins; an older one that
arrives late is ignored). Delta points are added up, from the first one this exporter sees, into
a cumulative series: what Prometheus needs. A delta batch that a sender retries is added twice:
delivery is at-least-once.

The cardinality guard: attributes that are session, user, task or request ids
(:data:`~.rules.IDENTITY_ATTRIBUTES`) never become labels. Points that differ only in them are
added up: deltas directly, cumulative points through the increments of each original series
(kept per series, expiring like the series); for gauges and summaries the newest point wins.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, MetricsData

from obs_pipeline import genai
from obs_pipeline.exporters.prometheus.rules import COUNTER, HISTOGRAM, IDENTITY_ATTRIBUTES
from obs_pipeline.exporters.prometheus.series import Buckets, ReceivedFamily, Scalar, Store
from obs_pipeline.genai import attributes as attrs

__all__ = ["MAX_EXPONENTIAL_SCALE", "SOURCES_PER_SERIES", "OtlpMetrics", "exponential_buckets", "label_name", "metric_name"]

#: Exponential histograms finer than this scale are served at it: 2**3 = 8 buckets per power of two.
MAX_EXPONENTIAL_SCALE = 3
#: Original series tracked per served series, at most, for cumulative points whose identity labels were dropped.
SOURCES_PER_SERIES = 10
DELTA = 1  # AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
SUMMARY = "summary"
GAUGE = "gauge"
LABEL_CHARS = 256
MAX_CACHED_NAMES = 10_000

_UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
    "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams", "Cel": "celsius",
    "Hz": "hertz", "1": "", "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
_NAME_SPLIT = re.compile(r"[^a-zA-Z0-9:]+")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9]+")
_SERVICE_NAMESPACE = "service.namespace"
_SERVICE_INSTANCE = "service.instance.id"


# --- names ----------------------------------------------------------------------------------------

def _clean_unit(unit: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9:]", "_", unit)).strip("_")


def _unit_words(unit: str) -> tuple[str, str]:
    """``(main, per)`` unit words: ``By/s`` -> ``("bytes", "per_second")``; braces and ``1`` give nothing."""
    main_text, _, per_text = unit.partition("/")
    main_text, per_text = main_text.strip(), per_text.strip()
    main = _UNITS.get(main_text, main_text) if main_text and not any(c in main_text for c in "{}") else ""
    per = _PER_UNITS.get(per_text, per_text) if per_text and not any(c in per_text for c in "{}") else ""
    return _clean_unit(main), _clean_unit(per)


def metric_name(name: str, unit: str, type_: str) -> str:
    """The Prometheus name of an OTLP metric (``type_``: ``counter`` for a monotonic sum, ``gauge``, ...).

    A counter's name ends in ``_total``; the caller serves its family without it.
    """
    tokens = [t for t in _NAME_SPLIT.split(name) if t]
    main, per = _unit_words(unit)
    if main and main not in tokens:
        tokens.append(main)
    if per and per not in tokens:
        tokens += ["per", per]
    if type_ == COUNTER:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and type_ == GAUGE:
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    joined = "_".join(tokens)
    return f"_{joined}" if joined[:1].isdigit() else joined


def label_name(key: str) -> str:
    """The Prometheus label name of an attribute key (empty when nothing of it is left)."""
    reserved = len(key) > 4 and key.startswith("__") and key.endswith("__")
    cleaned = _LABEL_INVALID.sub("_", key[2:-2] if reserved else key)
    if reserved:
        return f"__{cleaned}__"
    if cleaned[:1].isdigit():
        cleaned = f"key_{cleaned}"
    return "" if cleaned.strip("_") == "" else cleaned


def _value_text(value: AnyValue) -> str:
    """An attribute value as label text: strings as they are, lists and maps as JSON."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        text: str = value.string_value
    elif kind == "bool_value":
        text = "true" if value.bool_value else "false"
    elif kind in ("int_value", "double_value"):
        text = str(getattr(value, kind))
    elif kind is None:
        text = ""
    else:
        text = orjson.dumps(attrs.any_value_to_json(value)).decode()
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS]


# --- exponential histograms ----------------------------------------------------------------------

def _power(exponent: float) -> float:
    try:
        return math.pow(2.0, exponent)
    except OverflowError:
        return math.inf


def exponential_buckets(point: Any) -> dict[float, float]:
    """An exponential histogram point's counts by classic upper bound (``le``), not cumulative.

    A bucket of positive index ``i`` at scale ``s`` holds values in ``(2**(i/2**s), 2**((i+1)/2**s)]``:
    its bound is the upper end; a negative bucket's is the upper end of its values, ``-2**(i/2**s)``;
    the zero bucket's is ``zero_threshold``. Finer scales are merged down to
    :data:`MAX_EXPONENTIAL_SCALE`, whose bounds are shared by every coarser scale.
    """
    scale = point.scale
    shift = max(0, scale - MAX_EXPONENTIAL_SCALE)
    width = 2.0 ** -(scale - shift)
    out: dict[float, float] = {}
    if point.zero_count:
        out[point.zero_threshold] = float(point.zero_count)
    for buckets, positive in ((point.positive, True), (point.negative, False)):
        offset = buckets.offset
        for i, count in enumerate(buckets.bucket_counts):
            if not count:
                continue
            index = (offset + i) >> shift
            bound = _power((index + 1) * width) if positive else -_power(index * width)
            out[bound] = out.get(bound, 0.0) + count
    return out


def _explicit_buckets(point: Any) -> dict[float, float]:
    bounds = list(point.explicit_bounds)
    counts = list(point.bucket_counts)
    if len(counts) != len(bounds) + 1:
        return {math.inf: float(point.count)}
    out: dict[float, float] = {}
    for bound, count in zip([*bounds, math.inf], counts, strict=True):
        out[bound] = out.get(bound, 0.0) + count
    return out


# --- ingest ---------------------------------------------------------------------------------------

class OtlpMetrics:
    """Adds received ``MetricsData`` to the received families of ``store``.

    Args:
        store: the exporter's series.
        refused: called with a metric's Prometheus name the first time it cannot be served.
    """

    def __init__(self, store: Store, refused: Any) -> None:
        self.store = store
        self.refused = refused
        self._names: dict[tuple[str, str, str], str] = {}
        self._labels: dict[str, str] = {}

    def _name(self, metric: Metric, type_: str) -> str:
        key = (metric.name, metric.unit, type_)
        found = self._names.get(key)
        if found is None:
            if len(self._names) >= MAX_CACHED_NAMES:
                self._names.clear()
            found = self._names[key] = metric_name(metric.name, metric.unit, type_)
        return found

    def _label(self, key: str) -> str:
        found = self._labels.get(key)
        if found is None:
            if len(self._labels) >= MAX_CACHED_NAMES:
                self._labels.clear()
            found = self._labels[key] = label_name(key)
        return found

    def ingest(self, data: MetricsData, now: float) -> None:
        """Add every data point of ``data``."""
        for group in data.resource_metrics:
            resource = _resource_labels(group.resource.attributes)
            for scope_group in group.scope_metrics:
                scope = scope_group.scope
                base = dict(resource)
                if scope.name:
                    base["otel_scope_name"] = scope.name
                if scope.version:
                    base["otel_scope_version"] = scope.version
                for metric in scope_group.metrics:
                    self._metric(metric, base, now)

    def _metric(self, metric: Metric, base: dict[str, str], now: float) -> None:
        kind = metric.WhichOneof("data")
        delta = False
        points: Any
        naming: str = kind or ""  # a non-monotonic sum is served as a gauge, but is not named like one (no _ratio)
        if kind == "gauge":
            type_, points = GAUGE, metric.gauge.data_points
        elif kind == "sum":
            type_ = COUNTER if metric.sum.is_monotonic else GAUGE
            naming = COUNTER if metric.sum.is_monotonic else "sum"
            points, delta = metric.sum.data_points, metric.sum.aggregation_temporality == DELTA
        elif kind in ("histogram", "exponential_histogram"):
            body = getattr(metric, kind)
            type_, points, delta = HISTOGRAM, body.data_points, body.aggregation_temporality == DELTA
        elif kind == SUMMARY:
            type_, points = SUMMARY, metric.summary.data_points
        else:
            return
        name = self._name(metric, naming)
        family_name = name.removesuffix("_total") if type_ == COUNTER and name != "_total" else name
        family = self.store.received_family(family_name, type_, metric.description or metric.name)
        if family is None:
            self.refused(family_name)
            return
        for point in points:
            if point.flags & NO_RECORDED_VALUE:
                continue
            key, source = self._key(point.attributes, base)
            if kind == "gauge" or (kind == "sum" and not delta and source is None):
                self._replace_scalar(family, key, point, now)
            elif kind == "sum":
                self._add_scalar(family, key, source, point, delta=delta, now=now)
            elif kind == SUMMARY:
                self._summary(family, key, point, now)
            else:
                counts = exponential_buckets(point) if kind == "exponential_histogram" else _explicit_buckets(point)
                self._histogram(family, key, source, point, counts=counts, delta=delta, now=now)

    def _key(self, attributes: Iterable[KeyValue], base: dict[str, str]) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
        """``(series key, source key)``: the label pairs; the source is the key with the dropped ids (None: none dropped)."""
        found: list[tuple[str, str, str]] = []
        dropped: list[tuple[str, str]] = []
        for kv in attributes:
            if kv.key in IDENTITY_ATTRIBUTES:
                dropped.append((kv.key, _value_text(kv.value)))
                continue
            name = self._label(kv.key)
            if name:
                found.append((name, kv.key, _value_text(kv.value)))
        labels: dict[str, str] = {}
        for name, _key, text in sorted(found):
            labels[name] = f"{labels[name]};{text}" if name in labels else text
        for name, text in base.items():
            labels.setdefault(name, text)
        key = tuple(sorted(labels.items()))
        return key, (None if not dropped else (*key, *sorted(dropped)))

    # --- by type ----------------------------------------------------------------------------------

    @staticmethod
    def _replace_scalar(family: ReceivedFamily, key: tuple[Any, ...], point: Any, now: float) -> None:
        """A gauge or cumulative point: the newest one wins."""
        state = family.state(key, now)
        if point.time_unix_nano >= state.time:
            state.value = _scalar(point)
            state.time = point.time_unix_nano
        state.updated = now

    def _add_scalar(self, family: ReceivedFamily, key: tuple[Any, ...], source: tuple[Any, ...] | None,
                    point: Any, *, delta: bool, now: float) -> None:
        """A delta point, or a cumulative one whose ids were dropped: its increment is added."""
        value = _scalar(point)
        if not delta:
            assert source is not None
            previous = self._source(family, source, Scalar, now)
            if previous is None:
                return
            reset = previous.updated == 0.0 or point.start_time_unix_nano != previous.start or (
                family.type == COUNTER and value < previous.value)
            increment = value if reset else value - previous.value
            previous.value, previous.start, previous.updated = value, point.start_time_unix_nano, now
            value = increment
        if family.type == COUNTER and value < 0:
            return
        state = family.state(key, now)
        state.value += value
        state.updated = now

    def _source(self, family: ReceivedFamily, source: tuple[Any, ...], kind: type[Any], now: float) -> Any:
        """The last cumulative point of an original series (a fresh one when new); None past the cap."""
        found = family.sources.get(source)
        if found is None:
            if len(family.sources) >= self.store.limit * SOURCES_PER_SERIES:
                if self.store.expiration:
                    family.expire(now - self.store.expiration)
                if len(family.sources) >= self.store.limit * SOURCES_PER_SERIES:
                    self.store.on_overflow()
                    return None
            found = family.sources[source] = kind()
        return found

    @staticmethod
    def _summary(family: ReceivedFamily, key: tuple[Any, ...], point: Any, now: float) -> None:
        state = family.state(key, now)
        if point.time_unix_nano >= state.time:
            state.count, state.sum, state.time = float(point.count), point.sum, point.time_unix_nano
            state.quantiles = tuple((q.quantile, q.value) for q in point.quantile_values)
        state.updated = now

    def _histogram(self, family: ReceivedFamily, key: tuple[Any, ...], source: tuple[Any, ...] | None, point: Any,
                   *, counts: dict[float, float], delta: bool, now: float) -> None:
        count = float(point.count)
        total = point.sum if point.HasField("sum") else None
        if not delta and source is None:
            state = family.state(key, now)
            if point.time_unix_nano >= state.time:
                state.buckets, state.count, state.sum, state.time = counts, count, total, point.time_unix_nano
            state.updated = now
            return
        if not delta:
            assert source is not None
            previous = self._source(family, source, Buckets, now)
            if previous is None:
                return
            diff = {b: c - previous.buckets.get(b, 0.0) for b, c in counts.items()}
            reset = (previous.updated == 0.0 or point.start_time_unix_nano != previous.start or count < previous.count
                     or set(previous.buckets) - set(counts) or any(c < 0 for c in diff.values()))
            increment = (counts, count, total) if reset else (
                diff, count - previous.count, None if total is None or previous.sum is None else total - previous.sum)
            previous.buckets, previous.count, previous.sum = counts, count, total
            previous.start, previous.updated = point.start_time_unix_nano, now
            counts, count, total = increment
        state = family.state(key, now)
        for bound, c in counts.items():
            state.buckets[bound] = state.buckets.get(bound, 0.0) + c
        state.count += count
        if total is not None:
            state.sum = total if state.sum is None else state.sum + total
        state.updated = now


def _scalar(point: Any) -> float:
    return float(point.as_double if point.WhichOneof("value") == "as_double" else point.as_int)


def _resource_labels(attributes: Iterable[KeyValue]) -> dict[str, str]:
    """``job`` (``service.namespace/service.name``) and ``instance`` (``service.instance.id``), when known."""
    found: dict[str, str] = {}
    for kv in attributes:
        if kv.key in (genai.SERVICE_NAME, _SERVICE_NAMESPACE, _SERVICE_INSTANCE) and kv.value.string_value:
            found[kv.key] = kv.value.string_value
    labels: dict[str, str] = {}
    service = found.get(genai.SERVICE_NAME)
    if service:
        namespace = found.get(_SERVICE_NAMESPACE)
        labels["job"] = f"{namespace}/{service}" if namespace else service
    if _SERVICE_INSTANCE in found:
        labels["instance"] = found[_SERVICE_INSTANCE]
    return labels
