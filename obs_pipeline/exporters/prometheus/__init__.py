"""``prometheus``: a pull endpoint of agent metrics derived from spans and log records, and of OTLP metrics.

Layout: :mod:`.rules` is the rule format, the shipped ``default_rules.yaml`` and the rules'
checks; :mod:`.derive` the hot path from spans, log records and events to samples (through the
raw-attribute :mod:`obs_pipeline.otlp_view`); :mod:`.otlp_metrics` received OTLP metrics (names, units,
temporality); :mod:`.series` the series served, with expiration and the cardinality cap;
:mod:`.server` the endpoint. This module holds the config, the exporter and the factory.

Each exporter has its own ``CollectorRegistry``, scraped at ``http://<endpoint>/metrics``.
Deriving never fails a batch: an item that cannot be derived is skipped and the batch logs one
warning; bytes that are not OTLP at all are a permanent error. What the exporter serves lives in
memory: it starts from zero when the process starts (or the config is reloaded), which
Prometheus reads as a counter reset.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData
from prometheus_client import CollectorRegistry

from obs_pipeline.batch import Batch
from obs_pipeline.components import Exporter, ExporterFactory, Host, PartialSuccess, Settings
from obs_pipeline.errors import PermanentError, Problem
from obs_pipeline.exporters.prometheus.derive import Deriver
from obs_pipeline.exporters.prometheus.otlp_metrics import OtlpMetrics
from obs_pipeline.exporters.prometheus.rules import Rule, check_rules, default_rules, parse_rule
from obs_pipeline.exporters.prometheus.series import Store, StoreCollector
from obs_pipeline.exporters.prometheus.server import PATH, MetricsServer
from obs_pipeline.signals import Signal
from obs_pipeline.units import parse_duration

__all__ = ["FACTORY", "TYPE", "Config", "PrometheusExporter", "check", "endpoints", "parse"]

TYPE = "prometheus"
DEFAULT_ENDPOINT = "127.0.0.1:9464"
DEFAULT_NAMESPACE = "agent"
DEFAULT_EXPIRATION = 300.0  # 5m, the collector's metric_expiration
DEFAULT_MAX_SERIES = 2000
#: Received metric names refused (name clash, too many) that are logged, at most.
MAX_LOGGED_REFUSALS = 100


@dataclass(frozen=True, kw_only=True)
class Config:
    """The ``prometheus`` exporter's settings (``schemas/exporters/prometheus.schema.json``).

    ``timeout`` and ``sending_queue`` are the engine's (:class:`~obs_pipeline.delivery.DeliverySettings`).
    """

    endpoint: str = DEFAULT_ENDPOINT  # host:port of GET /metrics
    namespace: str = DEFAULT_NAMESPACE  # prefix of the derived metrics' names; "" for none
    const_labels: tuple[tuple[str, str], ...] = ()  # added to every series, sorted by name
    metric_expiration: float = DEFAULT_EXPIRATION  # seconds without an update before a series goes; 0: never
    max_series_per_metric: int = DEFAULT_MAX_SERIES  # the cardinality cap
    default_rules: bool = True  # derive the shipped agent metrics
    metrics: tuple[Rule, ...] = ()  # the user's rules, in order

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule the exporter derives: the shipped ones (unless turned off), then the user's."""
        return (default_rules() if self.default_rules else ()) + self.metrics


def parse(raw: dict[str, Any]) -> Config:
    """The validated config body, schema defaults filled in -> :class:`Config`."""
    return Config(
        endpoint=raw["endpoint"],
        namespace=raw["namespace"],
        const_labels=tuple(sorted(raw["const_labels"].items())),
        metric_expiration=parse_duration(raw["metric_expiration"]),
        max_series_per_metric=raw["max_series_per_metric"],
        default_rules=raw["default_rules"],
        metrics=tuple(parse_rule(rule, f"metrics[{i}]") for i, rule in enumerate(raw["metrics"])),
    )


def check(cfg: Config) -> list[Problem]:
    """The rules' checks (identity labels, sources, buckets, metrics shared by several rules), with paths in the body."""
    return check_rules(cfg.rules, cfg.namespace, (name for name, _ in cfg.const_labels))


def endpoints(cfg: Config) -> list[tuple[str, str]]:
    """The address it listens on, for the config's port-clash check."""
    return [("endpoint", cfg.endpoint)]


class PrometheusExporter(Exporter):
    """Derives and accumulates metrics from every batch; serves them to Prometheus on its endpoint."""

    def __init__(self, settings: Settings, cfg: Config) -> None:
        super().__init__(settings)
        self.cfg = cfg
        overflow = settings.metrics.exporter_series_overflow.labels(exporter=self.id)
        self.store = Store(expiration=cfg.metric_expiration, limit=cfg.max_series_per_metric,
                           const_labels=dict(cfg.const_labels), on_overflow=overflow.inc)
        self.deriver = Deriver(cfg.rules, self.store, cfg.namespace)
        self.received = OtlpMetrics(self.store, self._refused)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(self.store, self._before_scrape))
        self.server = MetricsServer(self.id, cfg.endpoint, self.registry)
        self._logged_refusals: set[str] = set()

    @property
    def port(self) -> int:
        """The port the endpoint is bound to (useful with port 0), once started."""
        return self.server.port

    async def on_start(self, host: Host) -> None:
        """Bind the endpoint now, so a port in use stops the pipeline before it accepts data."""
        await self.server.start()
        address, _, _ = self.cfg.endpoint.rpartition(":")
        self.log.info("serving metrics for Prometheus on http://%s:%d%s", address, self.server.port, PATH)

    async def on_shutdown(self) -> None:
        """Close the endpoint; what it served goes with it."""
        await self.server.stop()

    async def export(self, batch: Batch) -> PartialSuccess | None:
        """Derive (traces, logs) or add (metrics) ``batch``; a large batch yields to the loop between chunks.

        Raises:
            PermanentError: the batch's bytes are not valid OTLP.
        """
        now = time.monotonic()
        try:
            if batch.signal is Signal.TRACES:
                for _ in self.deriver.traces(batch, now):
                    await asyncio.sleep(0)
            elif isinstance(message := batch.message, LogsData):
                self.deriver.logs(message, now)
            elif isinstance(message, MetricsData):
                self.received.ingest(message, now)
        except DecodeError as exc:
            raise PermanentError(f"{self.id}: the batch is not valid OTLP {batch.signal.value}") from exc
        failures, seen, first = self.deriver.take_failures()
        if failures:
            self.log.warning("%d of %d items could not be derived (%s); their metrics are not counted",
                             failures, seen, first)
        return None

    def _before_scrape(self) -> None:
        self.store.expire(time.monotonic())

    def _refused(self, name: str) -> None:
        if name in self._logged_refusals or len(self._logged_refusals) >= MAX_LOGGED_REFUSALS:
            return
        self._logged_refusals.add(name)
        self.log.warning("received metric %s is not served: another metric already serves that name "
                         "(a derived one, or one of another type), or too many metric names were received", name)


FACTORY = ExporterFactory[Config](
    type=TYPE,
    signals=frozenset({Signal.TRACES, Signal.METRICS, Signal.LOGS}),
    schema="exporters/prometheus.schema.json",
    description="Serves agent metrics derived from spans and log records, and the OTLP metrics received, for Prometheus to scrape.",
    parse=parse,
    create=PrometheusExporter,
    check=check,
    endpoints=endpoints,
)
