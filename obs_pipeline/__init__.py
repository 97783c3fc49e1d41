"""obs-pipeline: a declarative telemetry pipeline for AI agents.

The package is organised like the OpenTelemetry Collector: ``receivers/``, ``processors/`` and
``exporters/`` hold one module per component type, ``schemas/`` one JSON Schema per type, and
``pipeline.py`` wires them into a graph from a validated config.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
