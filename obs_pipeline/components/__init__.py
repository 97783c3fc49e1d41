"""The component contract, the per-kind factory types, and the registry of component types.

``contract`` holds what every component is and keeps (IDs, settings, the lifecycle),
``factories`` what a type declares; this module holds the registry and re-exports both.

A component type is one module that exposes ``FACTORY``, a :class:`ReceiverFactory`,
:class:`ProcessorFactory` or :class:`ExporterFactory` typed over its ``Config``: its type name,
supported signals, schema file, a ``parse`` from the validated config dict to its ``Config``,
and a ``create`` with one signature per kind. Adding a type means one module, one schema file and one
line in ``_BUILTIN`` (third parties: an ``obs_pipeline.components`` entry point named
``<kind>.<type>`` whose value is ``module:FACTORY``). Modules are imported only when a config
uses them, so grpc or aiohttp load only when needed.
"""

from __future__ import annotations

import importlib
from importlib import metadata

from obs_pipeline.components.contract import (
    TYPE_PATTERN,
    Component,
    ComponentID,
    Consumer,
    Exporter,
    Host,
    Kind,
    LifecycleError,
    PartialSuccess,
    Processor,
    ProcessorSettings,
    Receiver,
    Settings,
    State,
)
from obs_pipeline.components.factories import FACTORY_TYPES as _FACTORY_TYPES
from obs_pipeline.components.factories import (
    SCHEMA_DIR,
    ExporterFactory,
    Factory,
    ProcessorFactory,
    Produces,
    ReceiverFactory,
    ReceiverTraits,
)

ENTRY_POINT_GROUP = "obs_pipeline.components"

_BUILTIN: dict[tuple[Kind, str], str] = {
    (Kind.RECEIVER, "otlp"): "obs_pipeline.receivers.otlp:FACTORY",
    (Kind.RECEIVER, "stdin"): "obs_pipeline.receivers.stdin:FACTORY",
    (Kind.RECEIVER, "file_tail"): "obs_pipeline.receivers.file_tail:FACTORY",
    (Kind.PROCESSOR, "batch"): "obs_pipeline.processors.batch:FACTORY",
    (Kind.PROCESSOR, "cost"): "obs_pipeline.processors.cost:FACTORY",
    (Kind.PROCESSOR, "budget"): "obs_pipeline.processors.budget:FACTORY",
    (Kind.PROCESSOR, "redaction"): "obs_pipeline.processors.redaction:FACTORY",
    (Kind.PROCESSOR, "sampling"): "obs_pipeline.processors.sampling:FACTORY",
    (Kind.EXPORTER, "jsonl_audit"): "obs_pipeline.exporters.jsonl_audit:FACTORY",
    (Kind.EXPORTER, "debug"): "obs_pipeline.exporters.debug:FACTORY",
    (Kind.EXPORTER, "prometheus"): "obs_pipeline.exporters.prometheus:FACTORY",
    (Kind.EXPORTER, "otlp"): "obs_pipeline.exporters.otlp:FACTORY",
    (Kind.EXPORTER, "otlp_grpc"): "obs_pipeline.exporters.otlp:GRPC_FACTORY",
    (Kind.EXPORTER, "otlp_http"): "obs_pipeline.exporters.otlp:HTTP_FACTORY",
    (Kind.EXPORTER, "otlphttp"): "obs_pipeline.exporters.otlp:OTLPHTTP_FACTORY",
    (Kind.EXPORTER, "logfire"): "obs_pipeline.exporters.logfire:FACTORY",
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
        TypeError: the registered object is not a factory of that kind.
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
