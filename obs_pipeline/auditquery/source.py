"""Where the audit trail is: ``--path``, or the ``jsonl_audit`` exporters of a ``--config`` file.

The config is loaded with the normal loader (``obs_pipeline.config.load_config``), so the
command reads exactly the files the pipeline writes: every ``jsonl_audit`` exporter's ``path``,
relative paths taken from the working directory as ``run`` takes them, placeholders globbed
(:func:`obs_pipeline.auditquery.trail.trails_of`). A config that fails only because an audit
file cannot be *written* (a read-only copy of the trail) is still read: reading needs no write
access.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from obs_pipeline.auditquery.trail import Trail, trails_of
from obs_pipeline.config import load_config

__all__ = ["AUDIT_EXPORTER_TYPE", "SourceError", "audit_exporters", "audit_paths", "resolve_trails"]

AUDIT_EXPORTER_TYPE = "jsonl_audit"
#: A problem with a jsonl_audit exporter's ``path`` (``exporters.jsonl_audit/tenants.path``).
_WRITE_PROBLEM = re.compile(rf"exporters\.{AUDIT_EXPORTER_TYPE}(?:/[^.]+)?\.path")


class SourceError(Exception):
    """No audit trail can be named from the arguments; the message says why, for the user."""


def audit_exporters(config: Path, environ: Mapping[str, str] | None = None) -> list[tuple[str, Any | None]]:
    """``(path, exporter config)`` of every ``jsonl_audit`` exporter of ``config``, in the file's order.

    The exporter config is None when the config is valid but for the audit files' write access
    (a read-only copy): then only the paths as written are known.

    Raises:
        SourceError: the config is invalid, or has no ``jsonl_audit`` exporter.
    """
    from obs_pipeline.config import ConfigError  # noqa: PLC0415 - beside load_config, which raises it

    try:
        loaded = load_config(config, environ)
    except ConfigError as exc:
        errors = [problem for problem in exc.problems if problem.severity == "error"]
        if errors and all(_WRITE_PROBLEM.fullmatch(problem.path) and "cannot write" in problem.message
                          for problem in errors):
            # reading needs no write access (a read-only copy, an auditor)
            return [(path, None) for path in _written_paths(config)]
        problems = "\n".join(str(problem) for problem in errors)
        raise SourceError(f"{config}: invalid config\n{problems}") from None
    found: list[tuple[str, Any | None]] = []
    for component in loaded.exporters.values():
        if component.factory.type != AUDIT_EXPORTER_TYPE:
            continue
        path = getattr(component.config, "path", None)
        if isinstance(path, str):
            found.append((path, component.config))
    if not found:
        raise SourceError(f"{config}: no {AUDIT_EXPORTER_TYPE} exporter, so no audit trail to read (use --path)")
    return found


def audit_paths(config: Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``path`` of every ``jsonl_audit`` exporter of ``config``, in the file's order (no duplicates).

    Raises:
        SourceError: the config is invalid, or has no ``jsonl_audit`` exporter.
    """
    paths: list[str] = []
    for path, _ in audit_exporters(config, environ):
        if path not in paths:
            paths.append(path)
    return paths


def _written_paths(config: Path) -> list[str]:
    """The ``jsonl_audit`` paths as written in a config that is valid but for the files' write access.

    Raises:
        SourceError: a path that is not plain text (an ``${env:...}`` reference, which only the
            full load resolves).
    """
    import yaml  # noqa: PLC0415 - the config layer's own parser, needed on this path only

    document = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    exporters = document.get("exporters") or {}
    paths: list[str] = []
    for component_id, body in exporters.items():
        if str(component_id).split("/", 1)[0] != AUDIT_EXPORTER_TYPE or not isinstance(body, dict):
            continue
        path = body.get("path")
        if not isinstance(path, str) or "${" in path:
            raise SourceError(f"{config}: exporters.{component_id}.path cannot be read without loading the config")
        if path not in paths:
            paths.append(path)
    return paths


def resolve_trails(path: str | None, config: Path | None, environ: Mapping[str, str] | None = None) -> list[Trail]:
    """The trails named by ``--path`` (wins) or ``--config``.

    Raises:
        SourceError: neither is given, or the config names no audit file.
    """
    if path:
        paths = [path]
    elif config is not None:
        paths = audit_paths(config, environ if environ is not None else os.environ)
    else:
        raise SourceError("name the audit trail with --path FILE or --config pipeline.yaml")
    trails: list[Trail] = []
    for each in paths:
        for trail in trails_of(each):
            if trail not in trails:
                trails.append(trail)
    if not trails:
        raise SourceError(f"no audit file matches {', '.join(paths)}")
    return trails
