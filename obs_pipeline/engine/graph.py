"""Build the component graph from a validated config, and start and stop it in order.

The chain of one pipeline is: receiver → (fan-out over pipelines) → processors in order →
exporters fan-out → each exporter's queue. What travels is a :class:`~obs_pipeline.batch.Batch`. Receivers are shared by the pipelines that list them,
processors are instantiated per pipeline, exporters are shared by every pipeline (one queue and
one file handle per exporter ID).

Start order is exporters → processors → receivers, so every stage starts with a live consumer;
stop order is the reverse (receivers first, then processors flush, then exporter queues drain),
all under one ``shutdown_timeout`` deadline. Stopping keeps going past failures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from obs_pipeline.components import (
    Component,
    ComponentID,
    Consumer,
    ExporterFactory,
    Host,
    Processor,
    ProcessorFactory,
    ProcessorSettings,
    Receiver,
    ReceiverFactory,
    Settings,
)
from obs_pipeline.engine.fanout import ExportersFanout, single_or_fanout
from obs_pipeline.engine.queue import QueuedExporter
from obs_pipeline.errors import Problem, StartupError, describe_exception
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.logs import component_logger
from obs_pipeline.telemetry.metrics import SelfMetrics

if TYPE_CHECKING:
    from obs_pipeline.config import ComponentConfig, PipelineConfig

#: The part of ``shutdown_timeout`` that receivers may spend answering requests in flight.
RECEIVERS_SHARE = 0.5



@dataclass
class _BuiltPipeline:
    id: str
    signal: Signal
    entry: Consumer
    processors: list[Processor] = field(default_factory=list)
    mutates: bool = False


class Graph:
    """The running form of a :class:`PipelineConfig`: components wired, not yet started."""

    def __init__(self, config: PipelineConfig, metrics: SelfMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.exporters: dict[ComponentID, QueuedExporter] = {}
        self.pipelines: list[_BuiltPipeline] = []
        self.receivers: dict[ComponentID, Receiver] = {}
        self._started: list[Any] = []
        self._build()

    def _settings(self, cc: ComponentConfig) -> Settings:
        return Settings(
            id=cc.id, kind=cc.kind, metrics=self.metrics,
            logger=component_logger(cc.kind.singular, str(cc.id)), data_dir=self.config.data_dir,
        )

    def _build(self) -> None:
        cfg = self.config
        used = {e for p in cfg.pipelines for e in p.exporters}
        for eid in sorted(used):
            cc = cfg.exporters[eid]
            assert isinstance(cc.factory, ExporterFactory)
            exporter = cc.factory.create(self._settings(cc), cc.config)
            self.exporters[eid] = QueuedExporter(exporter, self.metrics, cc.delivery, data_dir=self.config.data_dir)
        for spec in cfg.pipelines:
            consumer: Consumer = ExportersFanout([self.exporters[e] for e in spec.exporters])
            built = _BuiltPipeline(spec.id, spec.signal, consumer)
            for at, pid in reversed(list(enumerate(spec.processors))):
                cc = cfg.processors[pid]
                assert isinstance(cc.factory, ProcessorFactory)
                settings = ProcessorSettings(
                    id=cc.id, kind=cc.kind, metrics=self.metrics,
                    logger=component_logger(cc.kind.singular, str(cc.id), pipeline=spec.id),
                    data_dir=self.config.data_dir, signal=spec.signal, pipeline=spec.id,
                    upstream=tuple(p.type for p in spec.processors[:at]),
                )
                processor = cc.factory.create(settings, cc.config, consumer)
                built.processors.insert(0, processor)
                built.mutates = built.mutates or cc.factory.mutates_data
                consumer = processor
            built.entry = consumer
            self.pipelines.append(built)
        for rid in sorted({r for p in cfg.pipelines for r in p.receivers}):
            cc = cfg.receivers[rid]
            assert isinstance(cc.factory, ReceiverFactory)
            consumers: dict[Signal, Consumer] = {}
            for signal in Signal:
                entries = [(p.entry, p.mutates) for p, spec in zip(self.pipelines, cfg.pipelines, strict=True)
                           if p.signal is signal and rid in spec.receivers]
                if entries:
                    consumers[signal] = single_or_fanout(entries)
            self.receivers[rid] = cc.factory.create(self._settings(cc), cc.config, consumers)

    @property
    def finite_receivers(self) -> set[str]:
        """IDs of receivers that end by themselves (stdin)."""
        finite = set()
        for rid in self.receivers:
            factory = self.config.receivers[rid].factory
            if isinstance(factory, ReceiverFactory) and factory.traits.finite:
                finite.add(str(rid))
        return finite

    def pending_items(self) -> int:
        """Items accepted but not yet delivered: buffered in processors or queued in exporters."""
        return (sum(p.pending_items() for built in self.pipelines for p in built.processors)
                + sum(e.pending_items() for e in self.exporters.values()))

    async def start(self, host: Host) -> None:
        """Start exporters, then processors (last first), then receivers.

        Raises:
            StartupError: a component failed to start; everything already started was stopped.
        """
        stages: list[Iterable[Any]] = [
            self.exporters.values(),
            [p for built in self.pipelines for p in reversed(built.processors)],
            self.receivers.values(),
        ]
        for stage in stages:
            for component in stage:
                try:
                    await component.start(host)
                except Exception as exc:
                    await self.shutdown(time.monotonic() + self.config.shutdown_timeout)
                    if isinstance(exc, StartupError):
                        raise
                    name = getattr(component, "id", "?")
                    raise StartupError(f"{name}: failed to start: {type(exc).__name__}: {exc}") from exc
                self._started.append(component)

    async def shutdown(self, deadline: float) -> None:
        """Stop receivers, flush processors, drain exporters; never raises; honours ``deadline``."""
        started = set(map(id, self._started))
        # Receivers give requests in flight their real answer, but only within their share of
        # the time, so processors and exporters keep the rest to flush what was acknowledged.
        receivers_deadline = time.monotonic() + max(0.0, deadline - time.monotonic()) * RECEIVERS_SHARE
        for receiver in self.receivers.values():
            if id(receiver) in started:
                await _bounded(receiver.shutdown(receivers_deadline), receivers_deadline, receiver)
        for built in self.pipelines:
            for processor in built.processors:
                if id(processor) in started:
                    await _bounded(processor.shutdown(deadline), deadline, processor)
        for exporter in self.exporters.values():
            if id(exporter) in started:
                await exporter.shutdown(deadline)
        self._started.clear()


def dry_run(config: PipelineConfig) -> list[Problem]:
    """Build the whole graph without starting it, as ``validate`` does (the same path as ``run``).

    Component constructors have no side effects (binding and opening happen in ``start``), so
    this only proves every factory can build its component from the parsed config.
    """
    try:
        Graph(config, SelfMetrics())
    except Exception as exc:
        return [Problem(path="service.pipelines", file=str(config.source),
                        message=f"the pipeline cannot be built: {type(exc).__name__}: {exc}")]
    return []


async def _bounded(awaitable: Any, deadline: float, component: Component) -> None:
    """Await a component's shutdown until the deadline; log and carry on past any failure."""
    try:
        await asyncio.wait_for(awaitable, timeout=max(0.01, deadline - time.monotonic()))
    except TimeoutError:
        component.log.error("shutdown did not finish by the deadline")
    except Exception as exc:
        component.log.error("shutdown failed: %s", describe_exception(exc))


__all__ = ["Graph", "dry_run"]
