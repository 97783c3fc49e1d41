"""The config layer: pipeline.yaml -> a validated, typed :class:`PipelineConfig`.

Modules, one job each: ``yamlload`` (YAML with positions), ``envsubst`` (``${env:...}``),
``schemas`` (composing the JSON Schema), ``schemawalk`` (nulls and defaults), ``messages``
(schema errors in the user's words), ``graph`` (references, signals, ports), ``loader`` (the
passes in order), ``model`` (the typed result). Reporting is ``obs_pipeline.commands.validate``'s
job; the config layer never imports the engine.
"""

from __future__ import annotations

from obs_pipeline.config.loader import check_config, component_body, load_config
from obs_pipeline.config.model import ComponentConfig, PipelineConfig, PipelineSpec, TelemetryConfig
from obs_pipeline.config.schemas import SchemaError, compose_schema
from obs_pipeline.errors import ConfigError, Problem

__all__ = [
    "ComponentConfig",
    "ConfigError",
    "PipelineConfig",
    "PipelineSpec",
    "Problem",
    "SchemaError",
    "TelemetryConfig",
    "check_config",
    "component_body",
    "compose_schema",
    "load_config",
]
