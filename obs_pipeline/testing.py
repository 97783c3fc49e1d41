"""Test doubles for components: consumers that capture or refuse, a host, settings.

Shipped with the package so users testing their own components (and our tests) can run a
receiver or processor in-process without a pipeline::

    consumer = CapturingConsumer()
    receiver = FACTORY.create(make_settings("otlp"), cfg, {Signal.TRACES: consumer})
    await receiver.start(RecordingHost())
    ...
    await consumer.wait_for_items(3)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from obs_pipeline.batch import Batch
from obs_pipeline.components import ComponentID, Factory, Kind, ProcessorSettings, Settings
from obs_pipeline.errors import RefusedError
from obs_pipeline.signals import Message, Signal
from obs_pipeline.telemetry.logs import component_logger
from obs_pipeline.telemetry.metrics import SelfMetrics

__all__ = [
    "CapturingConsumer", "RecordingHost", "RefusingConsumer", "make_processor_settings", "make_settings", "parse_config",
]


class CapturingConsumer:
    """Accepts everything and keeps it, in order, in ``batches`` (their messages in ``messages``)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self._changed = asyncio.Condition()

    async def consume(self, batch: Batch) -> None:
        """Keep ``batch``."""
        self.batches.append(batch)
        await self._notify()

    @property
    def messages(self) -> list[Message]:
        """The captured batches' messages, in order."""
        return [b.message for b in self.batches]

    @property
    def items(self) -> int:
        """Spans, data points or log records captured so far."""
        return sum(b.items for b in self.batches)

    async def wait_for_items(self, n: int, within: float = 5.0) -> None:
        """Wait until at least ``n`` items arrived.

        Raises:
            TimeoutError: they did not arrive within ``within`` seconds.
        """
        await self._wait(lambda: self.items >= n, within)

    async def _wait(self, predicate: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


class RefusingConsumer(CapturingConsumer):
    """Refuses with ``RefusedError(reason, retry_after)``; after ``times`` refusals (if given) it accepts.

    ``refusals`` counts the refused calls: a sender that retries correctly makes it grow and then
    finds its batch in ``messages``.
    """

    def __init__(self, reason: str = "queue_full", retry_after: float = 1.0, times: int | None = None) -> None:
        super().__init__()
        self.reason = reason
        self.retry_after = retry_after
        self.times = times
        self.refusals = 0

    async def consume(self, batch: Batch) -> None:
        """Refuse, or accept once ``times`` refusals were made."""
        if self.times is None or self.refusals < self.times:
            self.refusals += 1
            await self._notify()
            raise RefusedError(self.reason, retry_after=self.retry_after)
        await super().consume(batch)

    async def wait_for_refusals(self, n: int, within: float = 5.0) -> None:
        """Wait until at least ``n`` calls were refused.

        Raises:
            TimeoutError: they were not made within ``within`` seconds.
        """
        await self._wait(lambda: self.refusals >= n, within)


class RecordingHost:
    """A :class:`~obs_pipeline.components.Host` that records what components tell it."""

    def __init__(self) -> None:
        self.finished: list[str] = []
        self.fatal: list[tuple[str, BaseException]] = []
        self.finished_event = asyncio.Event()

    def report_fatal(self, component: str, error: BaseException) -> None:
        """Record a fatal error."""
        self.fatal.append((component, error))

    def receiver_finished(self, component: str) -> None:
        """Record that a finite receiver reached the end of its input."""
        self.finished.append(component)
        self.finished_event.set()


def make_settings(
    component_id: str, kind: Kind = Kind.RECEIVER, metrics: SelfMetrics | None = None,
    data_dir: Path | None = None,
) -> Settings:
    """Settings for a component under test, with fresh metrics unless ``metrics`` is given."""
    cid = ComponentID.parse(component_id)
    return Settings(
        id=cid, kind=kind, metrics=metrics or SelfMetrics(),
        logger=component_logger(kind.singular, str(cid)),
        data_dir=data_dir or Path.cwd(),
    )


def make_processor_settings(
    component_id: str, signal: Signal = Signal.TRACES, pipeline: str | None = None,
    metrics: SelfMetrics | None = None, data_dir: Path | None = None, *, upstream: tuple[str, ...] = (),
) -> ProcessorSettings:
    """Settings for a processor under test, in pipeline ``pipeline`` (default: the signal's name).

    ``upstream``: the types of the processors ahead of it in that pipeline.
    """
    cid = ComponentID.parse(component_id)
    return ProcessorSettings(
        id=cid, kind=Kind.PROCESSOR, metrics=metrics or SelfMetrics(),
        logger=component_logger("processor", str(cid), pipeline=pipeline or signal.value),
        data_dir=data_dir or Path.cwd(), signal=signal, pipeline=pipeline or signal.value, upstream=upstream,
    )


def parse_config(factory: Factory, body: dict[str, Any] | None = None) -> Any:
    """The typed config of one component body, exactly as ``load_config`` would build it.

    For tests of a component on its own: ``parse_config(stdin.FACTORY, {"format": "text"})``.
    The body is validated against the component's schema, its defaults filled in and its secrets
    wrapped, so the component sees what it sees in production.

    Raises:
        ConfigError: the body does not pass the component's schema.
    """
    from obs_pipeline.config import component_body  # noqa: PLC0415 - only tests need the config layer

    return factory.parse(component_body(factory.kind, factory.type, body))
