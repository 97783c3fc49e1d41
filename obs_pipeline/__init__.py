"""obs-pipeline: a declarative telemetry pipeline for AI agents.

The package is organised like the OpenTelemetry Collector: ``receivers/``, ``processors/`` and
``exporters/`` hold one module per component type, ``schemas/`` one JSON Schema per type, and
``engine/`` wires them into a graph from a validated config (``config/``).

The names below are what a third-party component author needs: the factory of each kind, the
component base classes and their settings, the :class:`Batch` that travels through the graph, and
the errors a component raises. Importing them loads protobuf, never grpc or aiohttp.
"""

from __future__ import annotations

from obs_pipeline.batch import Batch
from obs_pipeline.components import (
    Consumer,
    Exporter,
    ExporterFactory,
    Host,
    PartialSuccess,
    Processor,
    ProcessorFactory,
    ProcessorSettings,
    Receiver,
    ReceiverFactory,
    ReceiverTraits,
    Settings,
)
from obs_pipeline.errors import (
    ConfigError,
    ExportError,
    ObsPipelineError,
    PermanentError,
    Problem,
    ProcessingError,
    RefusedError,
    RetryableError,
    StartupError,
)
from obs_pipeline.signals import Signal

__version__ = "0.1.0"
__all__ = [
    "Batch",
    "ConfigError",
    "Consumer",
    "ExportError",
    "Exporter",
    "ExporterFactory",
    "Host",
    "ObsPipelineError",
    "PartialSuccess",
    "PermanentError",
    "Problem",
    "ProcessingError",
    "Processor",
    "ProcessorFactory",
    "ProcessorSettings",
    "Receiver",
    "ReceiverFactory",
    "ReceiverTraits",
    "RefusedError",
    "RetryableError",
    "Settings",
    "Signal",
    "StartupError",
    "__version__",
]
