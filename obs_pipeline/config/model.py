"""The typed result of loading a config: what the engine (``engine/graph.py``, ``engine/run.py``) builds from.

Everything here has passed both validation passes, so consumers need no further checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obs_pipeline.components import ComponentID, Factory, Kind
from obs_pipeline.delivery import DeliverySettings
from obs_pipeline.errors import Problem
from obs_pipeline.signals import Signal


@dataclass(frozen=True)
class ComponentConfig:
    """One configured component: its ID, its factory, its typed config and, for an exporter, its delivery.

    ``delivery`` is built here, from the same filled body, so the engine's queue never reads
    ``timeout``/``retry_on_failure``/``sending_queue`` out of a component's own config.
    """

    id: ComponentID
    kind: Kind
    factory: Factory
    config: Any  # factory.parse(body with the schema defaults filled in, secrets wrapped)
    delivery: DeliverySettings | None = None  # exporters only; None for receivers and processors


@dataclass(frozen=True)
class PipelineSpec:
    """One entry of ``service.pipelines``, with every reference checked."""

    id: str  # "traces" or "logs/audit"
    signal: Signal
    receivers: tuple[ComponentID, ...]
    processors: tuple[ComponentID, ...]
    exporters: tuple[ComponentID, ...]


@dataclass(frozen=True)
class TelemetryConfig:
    """``service.telemetry``: obs-pipeline's own logs, metrics and health endpoint."""

    log_level: str  # debug | info | warning | error
    log_format: str  # text | json
    metrics_endpoint: str | None  # host:port; None when disabled
    health_endpoint: str | None  # host:port; None when disabled


@dataclass(frozen=True)
class PipelineConfig:
    """A whole, valid pipeline.yaml."""

    source: Path
    receivers: dict[ComponentID, ComponentConfig]
    processors: dict[ComponentID, ComponentConfig]
    exporters: dict[ComponentID, ComponentConfig]
    pipelines: tuple[PipelineSpec, ...]
    telemetry: TelemetryConfig
    data_dir: Path  # relative paths are relative to the working directory, like the collector's
    shutdown_timeout: float  # seconds
    warnings: tuple[Problem, ...]

    def components(self, kind: Kind) -> dict[ComponentID, ComponentConfig]:
        """The components of ``kind``, by ID."""
        return {Kind.RECEIVER: self.receivers, Kind.PROCESSOR: self.processors, Kind.EXPORTER: self.exporters}[kind]
