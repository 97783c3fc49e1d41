"""The series an exporter serves: metric families, expiration, the cardinality cap, exposition.

A family holds its series in a dict from a key (a tuple) to a small state object, each stamped
with the ``time.monotonic()`` of its last update. Derived families (:class:`CounterFamily`,
:class:`HistogramFamily`) have fixed label names, so a key is the tuple of label values; received
OTLP families (:class:`ReceivedFamily`) key by sorted ``(label, value)`` pairs.

* Expiration: a series not updated for ``metric_expiration`` is dropped at the next scrape (and
  when a full family makes room), as the collector's exporter does after 5 minutes.
* The cap: a family with ``max_series_per_metric`` series folds samples of any further label
  combination into one overflow series, labelled ``otel_metric_overflow="true"`` (what the
  OpenTelemetry SDKs do at their cardinality limit), so sums over the metric stay right; each
  such sample is counted (``obs_pipeline_exporter_series_overflow_total``).

Everything runs on the event loop: exports update, scrapes read, never at the same time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import utils as prometheus_utils
from prometheus_client.metrics_core import Metric

from obs_pipeline.exporters.prometheus.rules import COUNTER, HISTOGRAM, OVERFLOW_LABEL, sample_names

__all__ = [
    "MAX_RECEIVED_METRICS", "Buckets", "CounterFamily", "Family", "Hist", "HistogramFamily", "Quantiles",
    "ReceivedFamily", "Scalar", "Store", "StoreCollector", "go_float",
]

#: Received metric names served at most; points of further names are dropped (and logged once).
MAX_RECEIVED_METRICS = 1000
#: A full family sweeps its expired series at most this often (seconds) before it overflows.
SWEEP_INTERVAL = 1.0
_OVERFLOW = {OVERFLOW_LABEL: "true"}
_INF = "+Inf"


def go_float(value: float) -> str:
    """A float as the exposition format writes it (``1.0``, ``+Inf``): ``le`` and ``quantile`` values."""
    text: str = prometheus_utils.floatToGoString(value)  # type: ignore[no-untyped-call]  # unannotated there
    return text


class Scalar:
    """A counter's or gauge's value; ``time`` and ``start`` are a received point's (ns), for ordering."""

    __slots__ = ("start", "time", "updated", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.updated = 0.0
        self.time = 0
        self.start = 0


class Hist:
    """A derived histogram's series: one count per bucket (the last is +Inf), sum and count."""

    __slots__ = ("count", "counts", "sum", "updated")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * n_buckets
        self.sum = 0.0
        self.count = 0
        self.updated = 0.0


class Buckets:
    """A received histogram's series: count per upper bound (not cumulative), sum and count."""

    __slots__ = ("buckets", "count", "start", "sum", "time", "updated")

    def __init__(self) -> None:
        self.buckets: dict[float, float] = {}
        self.count = 0.0
        self.sum: float | None = None
        self.updated = 0.0
        self.time = 0
        self.start = 0


class Quantiles:
    """A received summary's series: the latest point's count, sum and quantiles."""

    __slots__ = ("count", "quantiles", "sum", "time", "updated")

    def __init__(self) -> None:
        self.count = 0.0
        self.sum = 0.0
        self.quantiles: tuple[tuple[float, float], ...] = ()
        self.updated = 0.0
        self.time = 0


class Family:
    """One metric family: its series, the cap, expiration, and its exposition (subclasses)."""

    type = "gauge"

    def __init__(self, name: str, help_: str, store: Store) -> None:
        self.name = name
        self.help = help_
        self.store = store
        self.series: dict[tuple[Any, ...], Any] = {}
        self.overflow: Any = None  # the overflow series' state, once there is one
        self._last_sweep = -math.inf

    def new_state(self) -> Any:
        """A fresh series state."""
        return Scalar()

    def state(self, key: tuple[Any, ...], now: float) -> Any:
        """The state of series ``key``, created when new; the overflow series' when the family is full."""
        found = self.series.get(key)
        if found is not None:
            return found
        return self.add(key, now)

    def add(self, key: tuple[Any, ...], now: float) -> Any:
        """Create series ``key`` (callers checked it is absent), or count an overflow."""
        store = self.store
        if len(self.series) >= store.limit:
            if store.expiration and now - self._last_sweep >= SWEEP_INTERVAL:
                self._last_sweep = now
                self.expire(now - store.expiration)
            if len(self.series) >= store.limit:
                store.on_overflow()
                if self.overflow is None:
                    self.overflow = self.new_state()
                return self.overflow
        state = self.series[key] = self.new_state()
        return state

    def expire(self, older_than: float) -> None:
        """Drop every series last updated before ``older_than`` (monotonic seconds)."""
        stale = [key for key, state in self.series.items() if state.updated < older_than]
        for key in stale:
            del self.series[key]
        if self.overflow is not None and self.overflow.updated < older_than:
            self.overflow = None

    def labels_of(self, key: tuple[Any, ...]) -> dict[str, str]:
        """The labels of series ``key``, before const labels."""
        return dict(key)

    def metric(self) -> Metric:
        """The family with its current samples, for prometheus_client's exposition."""
        metric = Metric(self.name, self.help, self.type)
        for key, state in self.series.items():
            self.add_samples(metric, self.store.labels(self.labels_of(key)), state)
        if self.overflow is not None:
            self.add_samples(metric, self.store.labels(_OVERFLOW), self.overflow)
        return metric

    def add_samples(self, metric: Metric, labels: dict[str, str], state: Any) -> None:
        """Add one series' samples to ``metric``."""
        metric.add_sample(self.name, labels, state.value)


class CounterFamily(Family):
    """A derived counter: fixed label names, key = label values."""

    type = COUNTER

    def __init__(self, name: str, help_: str, store: Store, label_names: tuple[str, ...]) -> None:
        super().__init__(name, help_, store)
        self.label_names = label_names
        self._total = f"{name}_total"

    def labels_of(self, key: tuple[Any, ...]) -> dict[str, str]:
        """Label names zipped with the key's values."""
        return dict(zip(self.label_names, key, strict=True))

    def add_samples(self, metric: Metric, labels: dict[str, str], state: Any) -> None:
        """``name_total``."""
        metric.add_sample(self._total, labels, state.value)


class HistogramFamily(Family):
    """A derived histogram: fixed label names and bucket bounds."""

    type = HISTOGRAM

    def __init__(self, name: str, help_: str, store: Store, label_names: tuple[str, ...], bounds: tuple[float, ...]) -> None:
        super().__init__(name, help_, store)
        self.label_names = label_names
        self.bounds = bounds
        self._les = (*(go_float(b) for b in bounds), _INF)

    def new_state(self) -> Hist:
        """Zero counts, one per bound and +Inf."""
        return Hist(len(self.bounds) + 1)

    def labels_of(self, key: tuple[Any, ...]) -> dict[str, str]:
        """Label names zipped with the key's values."""
        return dict(zip(self.label_names, key, strict=True))

    def add_samples(self, metric: Metric, labels: dict[str, str], state: Any) -> None:
        """Cumulative ``_bucket`` samples, then ``_count`` and ``_sum``."""
        total = 0
        bucket = f"{self.name}_bucket"
        for le, count in zip(self._les, state.counts, strict=True):
            total += count
            metric.add_sample(bucket, {**labels, "le": le}, total)
        metric.add_sample(f"{self.name}_count", labels, state.count)
        metric.add_sample(f"{self.name}_sum", labels, state.sum)


class ReceivedFamily(Family):
    """A family of received OTLP points: a counter, gauge, histogram or summary, key = label pairs.

    ``sources`` holds the last cumulative point of each series whose identity labels were
    dropped (:mod:`.otlp_metrics`), keyed by its full key, so its increments can be added up.
    """

    def __init__(self, name: str, help_: str, store: Store, type_: str) -> None:
        super().__init__(name, help_, store)
        self.type = type_
        self.sources: dict[tuple[Any, ...], Any] = {}
        self._suffix = "_total" if type_ == COUNTER else ""

    def new_state(self) -> Any:
        """The state of this family's type."""
        if self.type == HISTOGRAM:
            return Buckets()
        if self.type == "summary":
            return Quantiles()
        return Scalar()

    def expire(self, older_than: float) -> None:
        """Series and identity sources both expire."""
        super().expire(older_than)
        stale = [key for key, state in self.sources.items() if state.updated < older_than]
        for key in stale:
            del self.sources[key]

    def add_samples(self, metric: Metric, labels: dict[str, str], state: Any) -> None:
        """The samples of one series, by type."""
        name = self.name
        if self.type == HISTOGRAM:
            total = 0.0
            for bound in sorted(state.buckets):
                total += state.buckets[bound]
                if bound != math.inf:
                    metric.add_sample(f"{name}_bucket", {**labels, "le": go_float(bound)}, total)
            metric.add_sample(f"{name}_bucket", {**labels, "le": _INF}, state.count)
            metric.add_sample(f"{name}_count", labels, state.count)
            if state.sum is not None:
                metric.add_sample(f"{name}_sum", labels, state.sum)
        elif self.type == "summary":
            for quantile, value in state.quantiles:
                metric.add_sample(name, {**labels, "quantile": go_float(quantile)}, value)
            metric.add_sample(f"{name}_count", labels, state.count)
            metric.add_sample(f"{name}_sum", labels, state.sum)
        else:
            metric.add_sample(name + self._suffix, labels, state.value)


class Store:
    """Every family one exporter serves, with the settings they share.

    Args:
        expiration: ``metric_expiration`` in seconds; 0 keeps series for ever.
        limit: ``max_series_per_metric``.
        const_labels: added to every sample.
        on_overflow: called once per sample folded into an overflow series.
    """

    def __init__(self, *, expiration: float, limit: int, const_labels: Mapping[str, str],
                 on_overflow: Callable[[], None]) -> None:
        self.expiration = expiration
        self.limit = limit
        self.const_labels = dict(const_labels)
        self.on_overflow = on_overflow
        self.derived: dict[str, Family] = {}
        self.received: dict[str, ReceivedFamily] = {}
        self._taken: set[str] = set()  # every family and sample name already served

    def labels(self, own: dict[str, str]) -> dict[str, str]:
        """A sample's labels with the const labels, which win over received ones."""
        return {**own, **self.const_labels} if self.const_labels else own

    def add_derived(self, family: Family) -> Family:
        """Register a derived family (names checked by the rules' checks); returns it."""
        self.derived[family.name] = family
        self._taken.update((family.name, *sample_names(family.name, family.type)))
        return family

    def received_family(self, name: str, type_: str, help_: str) -> ReceivedFamily | None:
        """The family of received metric ``name``, created on first use; None when it cannot be served.

        A name whose samples another family serves (a derived metric, or a received one of
        another type), and any new name past :data:`MAX_RECEIVED_METRICS`, is refused.
        """
        family = self.received.get(name)
        if family is not None:
            return family if family.type == type_ else None
        samples = (name, *sample_names(name, type_))
        if len(self.received) >= MAX_RECEIVED_METRICS or any(s in self._taken for s in samples):
            return None
        family = self.received[name] = ReceivedFamily(name, help_, self, type_)
        self._taken.update(samples)
        return family

    def expire(self, now: float) -> None:
        """Drop expired series; a received family left without series goes too."""
        if not self.expiration:
            return
        older_than = now - self.expiration
        for family in self.derived.values():
            family.expire(older_than)
        for name, received in list(self.received.items()):
            received.expire(older_than)
            if not received.series and received.overflow is None and not received.sources:
                del self.received[name]
                self._taken.difference_update((name, *sample_names(name, received.type)))

    def collect(self) -> Iterator[Metric]:
        """Every family with its samples: derived ones (in rule order), then received ones."""
        for family in self.derived.values():
            yield family.metric()
        for received in self.received.values():
            yield received.metric()


class StoreCollector:
    """A prometheus_client collector over a :class:`Store` (registered in the exporter's own registry)."""

    def __init__(self, store: Store, before_collect: Callable[[], None]) -> None:
        self.store = store
        self.before_collect = before_collect

    def collect(self) -> Iterator[Metric]:
        """Expire, then yield every family."""
        self.before_collect()
        yield from self.store.collect()
