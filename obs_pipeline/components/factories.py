"""The per-kind factory types: what a component type declares, typed over its ``Config``.

One factory type per kind, so ``create`` has one signature per kind; the traits only some
receivers have (finite, exclusive, narrowed by config) are grouped in :class:`ReceiverTraits`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from obs_pipeline.components.contract import (
    Consumer,
    Exporter,
    Kind,
    Processor,
    ProcessorSettings,
    Receiver,
    Settings,
)
from obs_pipeline.signals import Signal

if TYPE_CHECKING:
    from obs_pipeline.errors import Problem

ConfigT = TypeVar("ConfigT")
SCHEMA_DIR = Path(__file__).parent.parent / "schemas"


def _same_config(cfg: ConfigT) -> ConfigT:
    """The config itself: a component with no effects outside its data."""
    return cfg


def _no_problems(_cfg: object) -> list[Problem]:
    return []


def _reads_nothing(_cfg: object, _path: str) -> str | None:
    return None


def _writes_nothing(_cfg: object) -> list[str]:
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
    """A receiver type: ``create(settings, cfg, consumers)``.

    ``reads``: for the loop check (a pipeline must not read back the files it writes), the config
    key (relative path, ``include``) that makes it read the file at an absolute path, or None.
    """

    kind: ClassVar[Kind] = Kind.RECEIVER
    create: Callable[[Settings, ConfigT, Mapping[Signal, Consumer]], Receiver]
    traits: ReceiverTraits = ReceiverTraits()
    reads: Callable[[ConfigT, str], str | None] = _reads_nothing


@dataclass(frozen=True, kw_only=True)
class ProcessorFactory(_Factory[ConfigT]):
    """A processor type: ``create(settings, cfg, next_consumer)``.

    ``mutates_data``: it changes batches in place, so a batch that several pipelines share is
    copied for its pipeline. (Wire bytes need no such flag: :meth:`Batch.mutable` drops them.)
    ``sealed``: the same config with every effect outside the data switched off (listeners,
    shared stores, webhooks), for ``obs-pipeline test``, which must never touch what a running
    pipeline holds or charges; a processor with no such effects keeps the identity.
    """

    kind: ClassVar[Kind] = Kind.PROCESSOR
    create: Callable[[ProcessorSettings, ConfigT, Consumer], Processor]
    mutates_data: bool = False
    sealed: Callable[[ConfigT], ConfigT] = _same_config


@dataclass(frozen=True, kw_only=True)
class ExporterFactory(_Factory[ConfigT]):
    """An exporter type: ``create(settings, cfg)``; the engine adds queue, retries and timeout.

    The shared ``timeout``, ``retry_on_failure`` and ``sending_queue`` keys that the exporter's
    schema references are not part of its ``Config``: the config layer builds them into one
    :class:`~obs_pipeline.delivery.DeliverySettings` (``ComponentConfig.delivery``).

    ``writes``: absolute paths of files it writes, a rotated one among them (the loop check).
    """

    kind: ClassVar[Kind] = Kind.EXPORTER
    create: Callable[[Settings, ConfigT], Exporter]
    writes: Callable[[ConfigT], list[str]] = _writes_nothing


Factory = ReceiverFactory[Any] | ProcessorFactory[Any] | ExporterFactory[Any]
#: The factory classes, for ``isinstance`` checks on a registered object.
FACTORY_TYPES = (ReceiverFactory, ProcessorFactory, ExporterFactory)


__all__ = [
    "FACTORY_TYPES",
    "SCHEMA_DIR",
    "ExporterFactory",
    "Factory",
    "ProcessorFactory",
    "Produces",
    "ReceiverFactory",
    "ReceiverTraits",
]
