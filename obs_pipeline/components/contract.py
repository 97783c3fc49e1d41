"""The component contract: IDs, kinds, settings, consumers, and the lifecycle every component keeps.

Lifecycle (after the OTel Collector's ``component.Component``), enforced by :class:`Component`:

* ``start(host)`` returns quickly; long work runs in supervised tasks (:meth:`Component.spawn`):
  one that dies is reported to the host as a fatal error. A second ``start`` raises.
* ``shutdown()`` stops accepting, flushes downstream, cancels its tasks; it is safe without
  ``start`` and safe to call twice. The pipeline bounds it with ``shutdown_timeout``.
* A ``start`` that fails undoes its own partial start.
"""

from __future__ import annotations

import asyncio
import enum
import re
import typing
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from obs_pipeline.batch import Batch
from obs_pipeline.errors import describe_exception
from obs_pipeline.signals import Signal

if TYPE_CHECKING:
    from obs_pipeline.telemetry.logs import ComponentLogger
    from obs_pipeline.telemetry.metrics import SelfMetrics

TYPE_PATTERN = re.compile(r"^[a-zA-Z][0-9a-zA-Z_]{0,62}$")


class Kind(enum.StrEnum):
    """A component kind; its value is the top-level config key."""

    RECEIVER = "receivers"
    PROCESSOR = "processors"
    EXPORTER = "exporters"

    @property
    def singular(self) -> str:
        """``receiver``, ``processor`` or ``exporter``: the word used in messages."""
        return self.value[:-1]


@dataclass(frozen=True, order=True)
class ComponentID:
    """``type[/name]``, as written in the config."""

    type: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> ComponentID:
        """Split ``batch/2`` into type ``batch`` and name ``2``.

        Raises:
            ValueError: the type part is not a valid type name or the name part is empty.
        """
        type_, sep, name = text.partition("/")
        if not TYPE_PATTERN.fullmatch(type_):
            raise ValueError(f"{text!r} is not a component ID: the type must match {TYPE_PATTERN.pattern}")
        if sep and not name.strip():
            raise ValueError(f"{text!r} is not a component ID: the name after '/' is empty")
        return cls(type_, name)

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type


class Consumer(Protocol):
    """Anything a batch can be handed to: a processor, a fan-out or an exporter's queue.

    ``consume`` returns once the data is accepted; it raises
    :class:`~obs_pipeline.errors.RefusedError` when it is not (the sender should retry).
    """

    async def consume(self, batch: Batch) -> None:
        """Accept ``batch`` or raise ``RefusedError``."""


class Host(Protocol):
    """What a running component may ask of the pipeline that runs it."""

    def report_fatal(self, component: str, error: BaseException) -> None:
        """A component failed after startup in a way it cannot recover from: stop the pipeline."""

    def receiver_finished(self, component: str) -> None:
        """A finite receiver (stdin) reached the end of its input and has handed everything on."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What every component gets at creation, besides its own config."""

    id: ComponentID
    kind: Kind
    metrics: SelfMetrics
    logger: ComponentLogger  # adds the component's id and kind to every record: never repeat them in a message
    data_dir: Path


@dataclass(frozen=True, kw_only=True)
class ProcessorSettings(Settings):
    """A processor's settings: it runs in one pipeline, for one signal."""

    signal: Signal
    pipeline: str  # the pipeline ID, ``traces`` or ``logs/audit``
    #: The types of the processors ahead of this one in its pipeline, in order: what has already
    #: happened to the data it gets (e.g. a second ``redaction`` trusts the first one's summary).
    upstream: tuple[str, ...] = ()


class State(enum.Enum):
    """Where a component is in its lifecycle; each method checks it, so misuse raises."""

    CREATED = "created"  # built, nothing running; ``start`` or ``shutdown`` may follow
    STARTING = "starting"  # ``on_start`` is running
    RUNNING = "running"  # started; background tasks may be running
    STOPPING = "stopping"  # ``on_shutdown`` is running
    STOPPED = "stopped"  # final: a stopped component cannot be started again


class LifecycleError(RuntimeError):
    """A component was used out of order (started twice, started after shutdown): a bug."""


class Component:
    """Base of receivers, processors and exporters: the lifecycle contract, written once.

    Subclasses override :meth:`on_start` and :meth:`on_shutdown`; :meth:`start` and
    :meth:`shutdown` enforce the order, undo a failed start, and make shutdown idempotent and safe
    without start (a shutdown that arrives while starting waits for the start to finish).
    Background work is started with :meth:`spawn`, which supervises it: a task that dies with an
    exception sets :attr:`failed` and is reported to the host as a fatal error.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.id = str(settings.id)
        self.log = settings.logger
        self.state = State.CREATED
        self.host: Host | None = None
        #: The error of a supervised task that died; the component refuses data from then on.
        self.failed: BaseException | None = None
        #: When :meth:`shutdown` must be done (``time.monotonic()``), if the caller said; for
        #: ``on_shutdown`` to share out, such as the grace a receiver gives requests in flight.
        self.shutdown_deadline: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._start_finished = asyncio.Event()

    @typing.final
    async def start(self, host: Host) -> None:
        """Start background work and return quickly; a failure undoes the partial start.

        Raises:
            LifecycleError: the component was started before, or was shut down.
        """
        if self.state is not State.CREATED:
            raise LifecycleError(f"{self.settings.kind.singular} {self.id}: cannot start a component that is {self.state.value}")
        self.state = State.STARTING
        self.host = host
        try:
            await self.on_start(host)
        except BaseException:
            await self._stop(undoing_start=True)
            raise
        finally:
            self._start_finished.set()
        self.state = State.RUNNING

    @typing.final
    async def shutdown(self, deadline: float | None = None) -> None:
        """Stop accepting, flush, cancel own tasks. Idempotent; safe without ``start``.

        Args:
            deadline: when it must be done (``time.monotonic()``); the caller also enforces it.
        """
        self.shutdown_deadline = deadline
        if self.state is State.STARTING:
            await self._start_finished.wait()
        if self.state in (State.STOPPING, State.STOPPED):
            return
        if self.state is State.CREATED:
            self.state = State.STOPPED
            return
        await self._stop(undoing_start=False)

    async def _stop(self, *, undoing_start: bool) -> None:
        self.state = State.STOPPING
        try:
            await self.on_shutdown()
        except Exception as exc:
            if not undoing_start:
                raise
            self.log.error("undoing a failed start also failed: %s", describe_exception(exc))
        finally:
            for task in list(self._tasks):
                task.cancel()
            self.state = State.STOPPED

    async def on_start(self, host: Host) -> None:
        """Bind, open, spawn tasks. Called once, by :meth:`start`."""

    async def on_shutdown(self) -> None:
        """Stop accepting, flush downstream, stop own tasks. Called at most once, after a start."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a supervised background task of this component.

        If it raises (anything but cancellation), the error is logged, kept in :attr:`failed` and
        reported to the host as fatal, so the pipeline stops and drains instead of accepting data
        nobody will handle. Tasks still running after :meth:`on_shutdown` are cancelled.

        Raises:
            LifecycleError: the component is not starting or running.
        """
        if self.state not in (State.STARTING, State.RUNNING, State.STOPPING):
            coro.close()
            raise LifecycleError(f"{self.settings.kind.singular} {self.id}: cannot spawn {name!r} when {self.state.value}")
        task = asyncio.create_task(coro, name=f"{self.settings.kind.singular} {self.id}: {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        self.failed = self.failed or error
        self.log.error("background task %r died: %s", task.get_name(), describe_exception(error))
        if self.host is not None:
            self.host.report_fatal(self.id, error)


class Receiver(Component):
    """Takes data from outside and hands it to one consumer per signal it feeds.

    ``consumers`` has an entry for every signal for which a pipeline lists this receiver.
    """

    def __init__(self, settings: Settings, consumers: Mapping[Signal, Consumer]) -> None:
        super().__init__(settings)
        self.consumers = consumers


class Processor(Component):
    """Transforms, batches or drops data of one signal in one pipeline, then calls ``next``.

    Prefer :class:`obs_pipeline.processors._helper.FunctionProcessor` (a function over a batch)
    or :class:`~obs_pipeline.processors._helper.BufferingProcessor` over subclassing this.
    """

    def __init__(self, settings: ProcessorSettings, next_consumer: Consumer) -> None:
        super().__init__(settings)
        self.signal = settings.signal
        self.pipeline = settings.pipeline
        self.next = next_consumer

    async def consume(self, batch: Batch) -> None:
        """Process ``batch`` and pass it on; the default passes it through."""
        await self.next.consume(batch)

    def pending_items(self) -> int:
        """Items accepted but not yet handed on (a buffering processor overrides this)."""
        return 0


@dataclass(frozen=True)
class PartialSuccess:
    """What an export returns when the destination took the batch but rejected some items.

    Partial success is success: the batch is not retried; the rejected items are counted as
    failed (``reason="rejected"``) and ``message`` (the destination's words) is logged.

    ``reason="disabled"`` is for an exporter the user switched off on purpose (logfire without a
    token): its items are counted as failed with that reason, not logged per batch (the exporter
    says so once at start), and are no loss: they do not make ``run`` exit 3.
    """

    rejected: int
    message: str = ""
    reason: str = "rejected"  # "rejected" | "disabled"


class Exporter(Component):
    """Delivers batches somewhere. The engine wraps it in a bounded queue with retries.

    ``export`` raises :class:`~obs_pipeline.errors.PermanentError` (dropped and counted) or
    :class:`~obs_pipeline.errors.RetryableError`; any other exception is retried like a retryable
    one, as the collector does. Map transport exceptions with
    :func:`obs_pipeline.exporters._helper.map_errors`.
    """

    async def export(self, batch: Batch) -> PartialSuccess | None:
        """Deliver ``batch``: None when all of it was delivered."""
        raise NotImplementedError


__all__ = [
    "TYPE_PATTERN",
    "Component",
    "ComponentID",
    "Consumer",
    "Exporter",
    "Host",
    "Kind",
    "LifecycleError",
    "PartialSuccess",
    "Processor",
    "ProcessorSettings",
    "Receiver",
    "Settings",
    "State",
]
