"""The component contract and the registry of component types.

A component type is one module that exposes ``FACTORY``, a :class:`ReceiverFactory`,
:class:`ProcessorFactory` or :class:`ExporterFactory` typed over its ``Config``: its type name,
supported signals, schema file, a ``parse`` from the validated config dict to its ``Config``,
and a ``create`` with one signature per kind. Adding a type means one module, one schema file and one
line in ``_BUILTIN`` (third parties: an ``obs_pipeline.components`` entry point named
``<kind>.<type>`` whose value is ``module:FACTORY``). Modules are imported only when a config
uses them, so grpc or aiohttp load only when needed.

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
import importlib
import re
import typing
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from obs_pipeline.batch import Batch
from obs_pipeline.errors import describe_exception
from obs_pipeline.signals import Signal

ConfigT = TypeVar("ConfigT")

if TYPE_CHECKING:
    from obs_pipeline.errors import Problem
    from obs_pipeline.telemetry.logs import ComponentLogger
    from obs_pipeline.telemetry.metrics import SelfMetrics

SCHEMA_DIR = Path(__file__).parent / "schemas"
TYPE_PATTERN = re.compile(r"^[a-zA-Z][0-9a-zA-Z_]{0,62}$")
ENTRY_POINT_GROUP = "obs_pipeline.components"


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
    async def shutdown(self) -> None:
        """Stop accepting, flush, cancel own tasks. Idempotent; safe without ``start``."""
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
    """

    rejected: int
    message: str = ""


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


def _no_problems(_cfg: object) -> list[Problem]:
    return []


def _no_endpoints(_cfg: object) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Produces:
    """What a receiver makes of its input with a given config: ``ReceiverTraits.produces`` returns it.

    The graph pass compares it with the signals of the pipelines that list the receiver.

    Attributes:
        signals: every signal it can produce. If none of its pipelines takes any of them, nothing
            it reads can go anywhere: an error.
        because: the setting that narrows its output, as it reads after the receiver's ID in a
            message (``with format text``); empty when there is nothing to name.
        usual: the signals ordinary input becomes, when that is fewer than ``signals`` (empty:
            no such distinction). If none of its pipelines takes any of them, most input will be
            skipped: a warning.
        usual_input: that ordinary input, for the warning (``plain JSON lines``).
    """

    signals: frozenset[Signal]
    because: str = ""
    usual: frozenset[Signal] = frozenset()
    usual_input: str = "most input"


@dataclass(frozen=True, kw_only=True)
class ReceiverTraits:
    """What only some receivers are: finite, exclusive, narrowed by their config.

    Attributes:
        finite: it ends by itself (stdin), which lets ``run`` exit when all receivers have.
        exclusive_use: non-empty for a type of which at most one component may be used by the
            pipelines of one process, because it owns a process-wide resource: what it does with
            it, as it reads after the component's ID in a message (``reads standard input``).
            The graph pass rejects every reference to a second ID of the type.
        produces: the signals a parsed config can produce, as a :class:`Produces` or a bare
            ``frozenset``; None means any of the factory's ``signals``. The graph pass rejects a
            receiver none of whose pipelines takes any of them.
    """

    finite: bool = False
    exclusive_use: str = ""
    produces: Callable[[Any], Produces | frozenset[Signal]] | None = None

    @property
    def exclusive(self) -> bool:
        """Whether at most one component of the type may be used per process."""
        return bool(self.exclusive_use)


@dataclass(frozen=True, kw_only=True)
class _Factory(Generic[ConfigT]):
    """What every component type declares.

    Attributes:
        type: the config type name (``otlp``).
        signals: the signals it supports; the graph pass rejects others.
        schema: its JSON Schema file, relative to ``obs_pipeline/schemas`` (or absolute).
        description: one line for ``docs/`` and ``obs-pipeline schema``.
        parse: the validated config dict (schema defaults filled in) -> the typed ``Config``.
            The schema is the one source of defaults: ``parse`` reads every key, never a fallback.
        check: cross-field and environment checks on a parsed config (paths usable, limits
            consistent); problems carry paths relative to the component's body.
        endpoints: ``(relative path, "host:port")`` pairs it will listen on, for the port-clash check.
    """

    kind: ClassVar[Kind]
    type: str
    signals: frozenset[Signal]
    schema: str
    description: str
    parse: Callable[[dict[str, Any]], ConfigT]
    check: Callable[[ConfigT], list[Problem]] = _no_problems
    endpoints: Callable[[ConfigT], list[tuple[str, str]]] = _no_endpoints

    @property
    def schema_path(self) -> Path:
        """Absolute path of the schema file."""
        path = Path(self.schema)
        return path if path.is_absolute() else SCHEMA_DIR / path


@dataclass(frozen=True, kw_only=True)
class ReceiverFactory(_Factory[ConfigT]):
    """A receiver type: ``create(settings, cfg, consumers)``."""

    kind: ClassVar[Kind] = Kind.RECEIVER
    create: Callable[[Settings, ConfigT, Mapping[Signal, Consumer]], Receiver]
    traits: ReceiverTraits = ReceiverTraits()


@dataclass(frozen=True, kw_only=True)
class ProcessorFactory(_Factory[ConfigT]):
    """A processor type: ``create(settings, cfg, next_consumer)``.

    ``mutates_data``: it changes batches in place, so a batch that several pipelines share is
    copied for its pipeline. (Wire bytes need no such flag: :meth:`Batch.mutable` drops them.)
    """

    kind: ClassVar[Kind] = Kind.PROCESSOR
    create: Callable[[ProcessorSettings, ConfigT, Consumer], Processor]
    mutates_data: bool = False


@dataclass(frozen=True, kw_only=True)
class ExporterFactory(_Factory[ConfigT]):
    """An exporter type: ``create(settings, cfg)``; the engine adds queue, retries and timeout.

    ``delivery``: the exporter takes the shared ``timeout``, ``retry_on_failure`` and
    ``sending_queue`` settings (its schema references them); the config layer builds them into
    one :class:`~obs_pipeline.delivery.DeliverySettings`.
    """

    kind: ClassVar[Kind] = Kind.EXPORTER
    create: Callable[[Settings, ConfigT], Exporter]


Factory = ReceiverFactory[Any] | ProcessorFactory[Any] | ExporterFactory[Any]
_FACTORY_TYPES = (ReceiverFactory, ProcessorFactory, ExporterFactory)


_BUILTIN: dict[tuple[Kind, str], str] = {
    (Kind.RECEIVER, "otlp"): "obs_pipeline.receivers.otlp:FACTORY",
    (Kind.RECEIVER, "stdin"): "obs_pipeline.receivers.stdin:FACTORY",
    (Kind.PROCESSOR, "batch"): "obs_pipeline.processors.batch:FACTORY",
    (Kind.EXPORTER, "jsonl_audit"): "obs_pipeline.exporters.jsonl_audit:FACTORY",
    (Kind.EXPORTER, "debug"): "obs_pipeline.exporters.debug:FACTORY",
}


def _registry() -> dict[tuple[Kind, str], str]:
    """Built-in types plus third-party entry points (``<kind>.<type>`` = ``module:FACTORY``)."""
    table = dict(_BUILTIN)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        kind_word, _, type_ = ep.name.partition(".")
        for kind in Kind:
            if kind_word in (kind.value, kind.singular):
                table.setdefault((kind, type_), ep.value)
    return table


def known_types(kind: Kind) -> list[str]:
    """Sorted type names of ``kind``, for "unknown type" messages and the composed schema."""
    return sorted(t for k, t in _registry() if k is kind)


def get_factory(kind: Kind, type_: str) -> Factory:
    """Import and return the factory of ``type_``.

    Raises:
        KeyError: no such type of that kind.
    """
    target = _registry()[(kind, type_)]
    module_name, _, attr = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attr or "FACTORY")
    if not isinstance(factory, _FACTORY_TYPES) or factory.kind is not kind:
        raise TypeError(f"{target} is not an obs_pipeline.components.{_FACTORY_NAME[kind]}")
    return factory


_FACTORY_NAME = {Kind.RECEIVER: "ReceiverFactory", Kind.PROCESSOR: "ProcessorFactory", Kind.EXPORTER: "ExporterFactory"}

# The public names; tests/test_public_api.py pins this list.
__all__ = [
    "ENTRY_POINT_GROUP",
    "SCHEMA_DIR",
    "TYPE_PATTERN",
    "Component",
    "ComponentID",
    "Consumer",
    "Exporter",
    "ExporterFactory",
    "Factory",
    "Host",
    "Kind",
    "LifecycleError",
    "PartialSuccess",
    "Processor",
    "ProcessorFactory",
    "ProcessorSettings",
    "Produces",
    "Receiver",
    "ReceiverFactory",
    "ReceiverTraits",
    "Settings",
    "State",
    "get_factory",
    "known_types",
]
