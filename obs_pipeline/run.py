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
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from obs_pipeline.errors import ConfigError, StartupError
from obs_pipeline.pipeline import Graph
from obs_pipeline.telemetry.logs import configure_logging
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.telemetry.server import TelemetryServer

log = logging.getLogger("obs_pipeline.run")

EXIT_OK = 0
EXIT_FAILED = 1


class RunHost:
    """The :class:`~obs_pipeline.components.Host` of a running pipeline: it decides when to stop."""

    def __init__(self, finite_receivers: set[str], only_finite: bool) -> None:
        self.stop = asyncio.Event()
        self.fatal: str | None = None
        self._waiting_for = set(finite_receivers)
        self._only_finite = only_finite

    def report_fatal(self, component: str, error: BaseException) -> None:
        """Stop the pipeline because ``component`` cannot go on."""
        log.error("%s: fatal error, shutting down: %s", component, error)
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


async def serve(config: object) -> int:
    """Run until a stop condition; return the exit code."""
    loop = asyncio.get_running_loop()
    signals_seen: list[int] = []
    current = asyncio.current_task()

    async with contextlib.AsyncExitStack() as stack:
        try:
            graph, host, _telemetry = await stack.enter_async_context(running(config))
        except StartupError as exc:
            log.error("%s", exc)
            return EXIT_FAILED

        def on_signal(signum: int) -> None:
            signals_seen.append(signum)
            if len(signals_seen) == 1:
                log.info("received %s: draining (shutdown_timeout %.0fs)", signal.Signals(signum).name,
                         getattr(config, "shutdown_timeout", 0))
                host.stop.set()
            elif current is not None:
                log.warning("received %s again: stopping without waiting for the drain", signal.Signals(signum).name)
                current.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        stack.callback(_remove_handlers, loop)
        log.info("obs-pipeline started: %d pipelines, receivers %s, exporters %s", len(graph.pipelines),
                 ", ".join(map(str, graph.receivers)), ", ".join(map(str, graph.exporters)))
        await host.stop.wait()
        stopping_since = time.monotonic()
    log.info("obs-pipeline stopped (drained in %.2fs)", time.monotonic() - stopping_since)
    return EXIT_FAILED if host.fatal else EXIT_OK


def _remove_handlers(loop: asyncio.AbstractEventLoop) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)


def run_pipeline(config_path: Path) -> int:
    """Load, validate and run ``config_path``; the ``run`` command's body. Returns the exit code."""
    from obs_pipeline.config import load_config  # noqa: PLC0415

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{config_path}: invalid config, not started", file=sys.stderr)
        return EXIT_FAILED
    configure_logging(config.telemetry.log_level, config.telemetry.log_format)
    for warning in config.warnings:
        log.warning("%s", warning)
    try:
        return asyncio.run(serve(config))
    except asyncio.CancelledError:  # a second signal cut the drain short
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
