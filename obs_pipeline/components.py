"""The component contract and the registry of component types.

A component type is one module that exposes ``FACTORY``: its type name, kind, supported
signals, schema file, a ``parse`` from the validated config dict to its typed ``Config``, and a
``create`` that builds the runtime object. Adding a type means one module, one schema file and one
line in ``_BUILTIN`` (third parties: an ``obs_pipeline.components`` entry point named
``<kind>.<type>`` whose value is ``module:FACTORY``). Modules are imported only when a config
uses them, so grpc or aiohttp load only when needed.

Lifecycle (after the OTel Collector's ``component.Component``):

* ``start(host)`` returns quickly; long work runs in tasks the component owns and cancels.
* ``shutdown()`` stops accepting, flushes downstream, cancels its tasks; it is safe without
  ``start`` and safe to call twice. The pipeline bounds it with ``shutdown_timeout``.
* A ``start`` that fails undoes its own partial start.
"""

from __future__ import annotations

import enum
import importlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from obs_pipeline.signals import Message, Signal

if TYPE_CHECKING:
    from obs_pipeline.errors import Problem
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

    ``wire``, when given, is the exact protobuf serialization of ``data`` as it is now (the
    request bytes a receiver parsed). Stages that only read pass it on, so batching can join
    bytes instead of deep-copying messages and an exporter can skip re-serializing. Whoever
    changes ``data`` must drop it: the pipeline never hands ``wire`` to a processor whose
    factory declares ``mutates_data``, so stale bytes cannot bypass, say, redaction.
    """

    async def consume(self, data: Message, wire: bytes | None = None) -> None:
        """Accept ``data`` or raise ``RefusedError``."""


class Host(Protocol):
    """What a running component may ask of the pipeline that runs it."""

    def report_fatal(self, component: str, error: BaseException) -> None:
        """A component failed after startup in a way it cannot recover from: stop the pipeline."""

    def receiver_finished(self, component: str) -> None:
        """A finite receiver (stdin) reached the end of its input and has handed everything on."""


@dataclass
class Settings:
    """What every component gets at creation, besides its own config."""

    id: ComponentID
    kind: Kind
    metrics: SelfMetrics
    logger: logging.Logger
    data_dir: Path


class Component:
    """Base of receivers, processors and exporters: a no-op lifecycle."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.id = str(settings.id)
        self.log = settings.logger

    async def start(self, host: Host) -> None:
        """Start background work; return quickly."""

    async def shutdown(self) -> None:
        """Stop accepting, flush, cancel own tasks. Idempotent; safe without ``start``."""


class Receiver(Component):
    """Takes data from outside and hands it to one consumer per signal it feeds.

    ``consumers`` has an entry for every signal for which a pipeline lists this receiver.
    """

    def __init__(self, settings: Settings, consumers: Mapping[Signal, Consumer]) -> None:
        super().__init__(settings)
        self.consumers = consumers


class Processor(Component):
    """Transforms, batches or drops data of one signal in one pipeline, then calls ``next``."""

    def __init__(self, settings: Settings, signal: Signal, pipeline: str, next_consumer: Consumer) -> None:
        super().__init__(settings)
        self.signal = signal
        self.pipeline = pipeline
        self.next = next_consumer

    async def consume(self, data: Message, wire: bytes | None = None) -> None:
        """Process ``data`` and pass it on; the default passes it (and its wire bytes) through."""
        await self.next.consume(data, wire)

    def pending_items(self) -> int:
        """Items accepted but not yet handed on (a buffering processor overrides this)."""
        return 0


class Exporter(Component):
    """Delivers batches somewhere. The pipeline wraps it in a bounded queue with retries.

    ``export`` raises :class:`~obs_pipeline.errors.RetryableError` or
    :class:`~obs_pipeline.errors.PermanentError`; anything else counts as permanent.
    """

    async def export(self, signal: Signal, data: Message) -> None:
        """Deliver ``data``."""
        raise NotImplementedError

    async def export_wire(self, signal: Signal, data: Message, wire: bytes | None) -> None:
        """Deliver ``data``, whose serialization is ``wire`` when known.

        The exporter helper calls this one. Override it when the bytes save work (an exporter
        that re-serializes anyway); the default ignores them.
        """
        await self.export(signal, data)


def _no_problems(_cfg: Any) -> list[Problem]:
    return []


def _no_endpoints(_cfg: Any) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Produces:
    """What a receiver makes of its input with a given config: ``Factory.produces`` returns it.

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


@dataclass(frozen=True)
class Factory:
    """The declaration of a component type.

    Attributes:
        type: the config type name (``otlp``).
        kind: receiver, processor or exporter.
        signals: the signals it supports; the graph pass rejects others.
        schema: its JSON Schema file, relative to ``obs_pipeline/schemas`` (or absolute).
        description: one line for ``docs/`` and ``obs-pipeline schema``.
        parse: the validated config dict (schema defaults filled in) -> the typed ``Config``.
        create: builds the component. Receivers: ``create(settings, cfg, consumers)``;
            processors: ``create(settings, cfg, signal, pipeline, next_consumer)``;
            exporters: ``create(settings, cfg)``.
        check: cross-field and environment checks on a parsed config (paths usable, limits
            consistent); problems carry paths relative to the component's body.
        endpoints: ``(relative path, "host:port")`` pairs it will listen on, for the port-clash check.
        mutates_data: processors only: it changes data in place, so a shared batch is copied.
        finite: receivers only: it ends by itself (stdin), which lets ``run`` exit when all have.
        exclusive: at most one component of this type may be used by the pipelines of one
            process: it owns a process-wide resource such as standard input. The graph pass
            rejects every reference to a second ID of the type; one ID listed in several pipelines
            is fine (the pipeline builds it once and fans its output out).
        exclusive_use: exclusive types only: what it does with that resource, as it reads after
            the component's ID in a message (``reads standard input``).
        produces: receivers only: the signals a parsed config can produce, as a
            :class:`Produces` or a bare ``frozenset`` of signals; None means any of ``signals``.
            The graph pass rejects a receiver none of whose pipelines takes any of them.
    """

    type: str
    kind: Kind
    signals: frozenset[Signal]
    schema: str
    description: str
    parse: Callable[[dict[str, Any]], Any]
    create: Callable[..., Component]
    check: Callable[[Any], list[Problem]] = _no_problems
    endpoints: Callable[[Any], list[tuple[str, str]]] = _no_endpoints
    mutates_data: bool = False
    finite: bool = False
    exclusive: bool = False
    exclusive_use: str = ""
    produces: Callable[[Any], Produces | frozenset[Signal]] | None = None

    @property
    def schema_path(self) -> Path:
        """Absolute path of the schema file."""
        path = Path(self.schema)
        return path if path.is_absolute() else SCHEMA_DIR / path


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
    if not isinstance(factory, Factory):
        raise TypeError(f"{target} is not an obs_pipeline.components.Factory")
    return factory
