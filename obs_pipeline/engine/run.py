"""``obs-pipeline run``: the control loop.

It starts the telemetry endpoints and the graph of a validated config, and then waits for the
first of: SIGTERM/SIGINT, a fatal error reported by a component, the end of every finite
receiver's input (stdin), or SIGHUP. Then it drains within ``service.shutdown_timeout`` and
returns the exit code. A second SIGINT/SIGTERM during the drain stops waiting and exits 1.

SIGHUP reloads, as the collector and Vector do: the file is validated first; an invalid file is
logged and the running pipeline goes on unchanged; a valid one drains the old graph (nothing
acknowledged is lost) and starts the new one, with the same self-metrics (counters never restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

from obs_pipeline.components import ReceiverFactory
from obs_pipeline.config import ConfigError, PipelineConfig, load_config
from obs_pipeline.engine.graph import Graph
from obs_pipeline.errors import StartupError, describe_exception
from obs_pipeline.exitcodes import ExitCode
from obs_pipeline.telemetry.logs import configure_logging
from obs_pipeline.telemetry.metrics import LOSS_REASONS, SelfMetrics
from obs_pipeline.telemetry.server import TelemetryServer

log = logging.getLogger("obs_pipeline.run")

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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
async def running(
    config: PipelineConfig, metrics: SelfMetrics | None = None,
) -> AsyncIterator[tuple[Graph, RunHost, TelemetryServer]]:
    """Start the pipeline of a loaded config; on exit, drain it within ``shutdown_timeout``.

    Tests use this to run a pipeline in-process. ``metrics`` is shared across reloads, so our
    counters never restart while the process lives.

    Raises:
        StartupError: something could not start; whatever had started is stopped again.
    """
    metrics = metrics or SelfMetrics()
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


class _Event(enum.Enum):
    """What the control loop wakes up for."""

    STOP = "stop"  # SIGTERM/SIGINT, a fatal error, or the end of all input
    RELOAD = "reload"  # SIGHUP


class _Control:
    """What the signals asked for: the first SIGTERM/SIGINT drains, a second cuts the drain short, SIGHUP reloads."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.stop_requested = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.terminations = 0
        self.graph: Graph | None = None
        self._task = asyncio.current_task()

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            log.info("received %s: reloading %s", name, self.config.source)
            self.reload_requested.set()
            return
        self.terminations += 1
        if self.terminations == 1:
            log.info("received %s: draining (shutdown_timeout %.0fs)", name, self.config.shutdown_timeout)
            self.stop_requested.set()
            return
        abandoned = self.graph.pending_items() if self.graph is not None else 0
        log.error("received %s again: stopping without waiting for the drain; %d items still buffered or "
                  "queued are abandoned", name, abandoned)
        if self._task is not None:
            self._task.cancel()

    async def next_event(self, host: RunHost) -> _Event:
        """Wait for a stop or a reload request, whichever comes first."""
        if not self.stop_requested.is_set() and not host.stop.is_set() and not self.reload_requested.is_set():
            await _first(self.stop_requested.wait(), host.stop.wait(), self.reload_requested.wait())
        if self.stop_requested.is_set() or host.stop.is_set():
            return _Event.STOP
        self.reload_requested.clear()
        return _Event.RELOAD


@contextlib.contextmanager
def capture_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Route SIGTERM, SIGINT and SIGHUP to ``handler`` in the running loop; restore the previous handlers after."""
    loop = asyncio.get_running_loop()
    previous = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    for signum in HANDLED_SIGNALS:
        loop.add_signal_handler(signum, handler, signum)
    try:
        yield
    finally:
        for signum, before in previous.items():
            loop.remove_signal_handler(signum)
            if before is not None:  # None: a handler not installed from Python, nothing to put back
                signal.signal(signum, before)


async def serve(config: PipelineConfig) -> ExitCode:
    """Run until a stop condition, reloading on SIGHUP; return the exit code.

    The signal handlers stay installed until the drain is over, so a second SIGTERM/SIGINT
    during the drain is seen: it logs how much is abandoned and stops at once (exit 1).
    """
    control = _Control(config)
    metrics = SelfMetrics()
    current: PipelineConfig | None = config
    host: RunHost | None = None
    last_good: PipelineConfig | None = None  # the config that last started, to go back to
    try:
        with capture_signals(control.on_signal):
            while current is not None:
                try:
                    next_config, host = await _serve_one(current, control, metrics)
                except StartupError as exc:
                    log.error("%s", exc)
                    if last_good is None:
                        return ExitCode.FAILED
                    log.error("the reloaded config could not start; starting the previous one again")
                    current, last_good = last_good, None
                    continue
                last_good, current = current, next_config
    except asyncio.CancelledError:
        if control.terminations > 1:
            return ExitCode.FAILED
        raise
    log.info("obs-pipeline stopped; %s", _totals(metrics))
    if host is not None and host.fatal:
        return ExitCode.FAILED
    lost = _lost_items(metrics)
    if lost:
        log.error("%d accepted items were not delivered (failed or dropped): exit %d", lost, ExitCode.DATA_LOST)
        return ExitCode.DATA_LOST
    return ExitCode.OK


async def _serve_one(
    config: PipelineConfig, control: _Control, metrics: SelfMetrics,
) -> tuple[PipelineConfig | None, RunHost]:
    """Run one graph until a stop or a valid reload; drain it; return the config to run next (None: stop)."""
    control.config = config
    next_config: PipelineConfig | None = None
    async with running(config, metrics) as (graph, host, _telemetry):
        control.graph = graph
        control.reload_requested.clear()  # a SIGHUP during the previous drain asked for this very start
        log.info("obs-pipeline started: %d pipelines, receivers %s, exporters %s", len(graph.pipelines),
                 ", ".join(map(str, graph.receivers)), ", ".join(map(str, graph.exporters)))
        while next_config is None:
            if await control.next_event(host) is _Event.STOP:
                break
            next_config = reload_config(config, bool(graph.finite_receivers))
        stopping_since = time.monotonic()
    what = "reload" if next_config is not None and not control.stop_requested.is_set() else "stop"
    log.info("drained in %.2fs for the %s", time.monotonic() - stopping_since, what)
    if what == "stop":
        return None, host
    assert next_config is not None
    configure_logging(next_config.telemetry.log_level, next_config.telemetry.log_format)
    return next_config, host


def reload_config(running_config: PipelineConfig, has_finite_receiver: bool) -> PipelineConfig | None:
    """The new config to switch to, or None (logged) when the file is invalid or cannot be reloaded.

    The file is validated exactly as ``run`` does at start; an invalid one leaves the running
    pipeline as it is, and so does an unchanged one (a reload costs a drain). The path is the one
    given at start, relative to the working directory of the process, and ``${env:...}`` is read
    from the process's environment as it is now.
    """
    try:
        new = load_config(running_config.source)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        log.error("%s: invalid config, not reloaded; the running pipeline goes on unchanged", running_config.source)
        return None
    new_finite = any(
        isinstance(cc.factory, ReceiverFactory) and cc.factory.traits.finite for cc in new.receivers.values()
    )
    if has_finite_receiver or new_finite:
        log.error("%s: not reloaded: a pipeline that reads standard input cannot hand it over without losing a "
                  "partial line; stop it and start it again", running_config.source)
        return None
    if new == running_config:
        log.info("%s: unchanged, nothing to reload", running_config.source)
        return None
    for warning in new.warnings:
        if warning.severity == "warning":  # notes are validate's: each component says its own at start
            log.warning("%s", warning)
    return new


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of ``waits`` finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _lost_items(metrics: SelfMetrics) -> int:
    """Accepted items that never reached their destination: exporter failures and loss-type drops.

    Deliberate drops (sampling, filtering, an exporter the user disabled) are not losses; a
    processor's failures and what it could not flush by the deadline are.
    """
    lost = 0.0
    for metric in metrics.registry.collect():
        for sample in metric.samples:
            if not sample.name.endswith("_total"):
                continue
            reason = sample.labels.get("reason")
            if (metric.name == "obs_pipeline_exporter_failed_items" and reason != "disabled") or (
                metric.name == "obs_pipeline_processor_dropped_items" and reason in LOSS_REASONS
            ):
                lost += sample.value
    return int(lost)


def _totals(metrics: SelfMetrics) -> str:
    """One line that answers "did anything get lost?" after the drain, from our own counters."""
    registry = metrics.registry

    def total(name: str) -> int:
        return int(sum(s.value for m in registry.collect() if m.name == name for s in m.samples
                       if s.name.endswith("_total")))

    drops: dict[str, int] = {}
    for metric in registry.collect():
        if metric.name == "obs_pipeline_processor_dropped_items":
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.value:
                    reason = sample.labels.get("reason", "")
                    drops[reason] = drops.get(reason, 0) + int(sample.value)
    lost = sum(count for reason, count in drops.items() if reason in LOSS_REASONS)
    on_purpose = ", ".join(f"{reason} {count}" for reason, count in sorted(drops.items()) if reason not in LOSS_REASONS)
    return (f"totals: accepted {total('obs_pipeline_receiver_accepted_items')}, "
            f"refused {total('obs_pipeline_receiver_refused_items')}, "
            f"sent {total('obs_pipeline_exporter_sent_items')}, "
            f"failed {total('obs_pipeline_exporter_failed_items')}, "
            f"dropped {lost} items" + (f"; dropped on purpose: {on_purpose}" if on_purpose else ""))
