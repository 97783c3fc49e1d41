"""``obs-pipeline run``: the control loop.

It validates the config (the same code path as ``validate``), starts the telemetry endpoints and
the graph, and then waits for the first of: SIGTERM/SIGINT, a fatal error reported by a
component, or the end of every finite receiver's input (stdin). Then it drains within
``service.shutdown_timeout`` and returns the exit code. A second SIGINT/SIGTERM during the
drain stops waiting and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

from obs_pipeline.engine.graph import Graph
from obs_pipeline.errors import StartupError, describe_exception
from obs_pipeline.exitcodes import ExitCode
from obs_pipeline.telemetry.metrics import LOSS_REASONS, SelfMetrics
from obs_pipeline.telemetry.server import TelemetryServer

log = logging.getLogger("obs_pipeline.run")


class RunHost:
    """The :class:`~obs_pipeline.components.Host` of a running pipeline: it decides when to stop."""

    def __init__(self, finite_receivers: set[str], only_finite: bool) -> None:
        self.stop = asyncio.Event()
        self.fatal: str | None = None
        self._waiting_for = set(finite_receivers)
        self._only_finite = only_finite

    def report_fatal(self, component: str, error: BaseException) -> None:
        """Stop the pipeline because ``component`` cannot go on."""
        log.error("%s: fatal error, shutting down: %s", component, describe_exception(error))
        self.fatal = component
        self.stop.set()

    def receiver_finished(self, component: str) -> None:
        """A finite receiver is done; when all receivers were finite and are done, stop."""
        self._waiting_for.discard(component)
        if self._only_finite and not self._waiting_for:
            log.info("end of input: draining and stopping")
            self.stop.set()


@contextlib.asynccontextmanager
async def running(config: object) -> AsyncIterator[tuple[Graph, RunHost, TelemetryServer]]:
    """Start the pipeline of a loaded config; on exit, drain it within ``shutdown_timeout``.

    Tests use this to run a pipeline in-process.

    Raises:
        StartupError: something could not start; whatever had started is stopped again.
    """
    from obs_pipeline.config import PipelineConfig  # noqa: PLC0415

    assert isinstance(config, PipelineConfig)
    metrics = SelfMetrics()
    graph = Graph(config, metrics)
    finite = graph.finite_receivers
    host = RunHost(finite, only_finite=bool(finite) and finite == {str(r) for r in graph.receivers})
    ready = False
    telemetry = TelemetryServer(
        metrics, config.telemetry.metrics_endpoint, config.telemetry.health_endpoint, lambda: ready,
    )
    await telemetry.start()
    try:
        await graph.start(host)
    except StartupError:
        await telemetry.stop()
        raise
    ready = True
    try:
        yield graph, host, telemetry
    finally:
        ready = False
        await graph.shutdown(time.monotonic() + config.shutdown_timeout)
        await telemetry.stop()


async def serve(config: object) -> ExitCode:
    """Run until a stop condition; return the exit code.

    The signal handlers stay installed until the drain is over, so a second SIGTERM/SIGINT
    during the drain is seen: it logs how much is abandoned and stops at once (exit 1).
    """
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    signals_seen: list[int] = []
    stop_requested = asyncio.Event()
    graphs: list[Graph] = []

    def on_signal(signum: int) -> None:
        signals_seen.append(signum)
        name = signal.Signals(signum).name
        if len(signals_seen) == 1:
            log.info("received %s: draining (shutdown_timeout %.0fs)", name, getattr(config, "shutdown_timeout", 0))
            stop_requested.set()
            return
        abandoned = graphs[0].pending_items() if graphs else 0
        log.error("received %s again: stopping without waiting for the drain; %d items still buffered or "
                  "queued are abandoned", name, abandoned)
        if current is not None:
            current.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with running(config) as (graph, host, _telemetry):
            graphs.append(graph)
            log.info("obs-pipeline started: %d pipelines, receivers %s, exporters %s", len(graph.pipelines),
                     ", ".join(map(str, graph.receivers)), ", ".join(map(str, graph.exporters)))
            if not stop_requested.is_set():
                await _first(stop_requested.wait(), host.stop.wait())
            stopping_since = time.monotonic()
    except StartupError as exc:
        log.error("%s", exc)
        return ExitCode.FAILED
    except asyncio.CancelledError:
        if len(signals_seen) > 1:
            return ExitCode.FAILED
        raise
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("obs-pipeline stopped (drained in %.2fs); %s", time.monotonic() - stopping_since, _totals(graph))
    if host.fatal:
        return ExitCode.FAILED
    lost = _lost_items(graph)
    if lost:
        log.error("%d accepted items were not delivered (failed or dropped): exit %d", lost, ExitCode.DATA_LOST)
        return ExitCode.DATA_LOST
    return ExitCode.OK


async def _first(*waits: Any) -> None:
    """Wait until the first of ``waits`` finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _lost_items(graph: Graph) -> int:
    """Accepted items that never reached their destination: exporter failures and loss-type drops.

    Deliberate drops (sampling, filtering) are not losses; a processor's failures and what it
    could not flush by the deadline are.
    """
    lost = 0.0
    for metric in graph.metrics.registry.collect():
        for sample in metric.samples:
            if not sample.name.endswith("_total"):
                continue
            if metric.name == "obs_pipeline_exporter_failed_items" or (
                metric.name == "obs_pipeline_processor_dropped_items" and sample.labels.get("reason") in LOSS_REASONS
            ):
                lost += sample.value
    return int(lost)


def _totals(graph: Graph) -> str:
    """One line that answers "did anything get lost?" after the drain, from our own counters."""
    registry = graph.metrics.registry

    def total(name: str) -> int:
        return int(sum(s.value for m in registry.collect() if m.name == name for s in m.samples
                       if s.name.endswith("_total")))

    return (f"totals: accepted {total('obs_pipeline_receiver_accepted_items')}, "
            f"refused {total('obs_pipeline_receiver_refused_items')}, "
            f"sent {total('obs_pipeline_exporter_sent_items')}, "
            f"failed {total('obs_pipeline_exporter_failed_items')}, "
            f"dropped {total('obs_pipeline_processor_dropped_items')} items")
