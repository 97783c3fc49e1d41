"""What the exporter writes through: the trails, their maintenance task and the checkpoint timer.

Keeps the exporter (``__init__.py``) to config, encoding and the lifecycle; everything about
files is here and in :mod:`.trail`, :mod:`.rotation`, :mod:`.paths` and :mod:`.writer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from obs_pipeline.audit.hook import NO_HOOK, LineHook
from obs_pipeline.batch import Batch
from obs_pipeline.components import Settings
from obs_pipeline.errors import Problem
from obs_pipeline.exporters.jsonl_audit.options import CheckpointOptions, Fsync
from obs_pipeline.exporters.jsonl_audit.paths import PathTemplate, TemplateError
from obs_pipeline.exporters.jsonl_audit.rotation import Maintenance, Rotation
from obs_pipeline.exporters.jsonl_audit.routing import by_resource
from obs_pipeline.exporters.jsonl_audit.trail import Hooks, TrailOptions, Trails
from obs_pipeline.exporters.jsonl_audit.writer import AuditFile, check_path

__all__ = ["AuditSink", "FileConfig", "check_file_options"]


class FileConfig(Protocol):
    """The file-side fields of the exporter's ``Config``."""

    @property
    def path(self) -> str: ...  # noqa: D102 - described in the schema
    @property
    def fsync(self) -> Fsync: ...  # noqa: D102
    @property
    def rotation(self) -> Rotation | None: ...  # noqa: D102
    @property
    def retention_days(self) -> float | None: ...  # noqa: D102
    @property
    def max_open_files(self) -> int: ...  # noqa: D102
    @property
    def path_fallback(self) -> str: ...  # noqa: D102
    @property
    def hash_chain(self) -> bool: ...  # noqa: D102
    @property
    def checkpoint(self) -> CheckpointOptions | None: ...  # noqa: D102


def check_file_options(cfg: FileConfig) -> list[Problem]:
    """Validate-time checks: the template parses, its directory can be written, the options fit together."""
    try:
        template = PathTemplate.parse(cfg.path, cfg.path_fallback)
    except TemplateError as exc:
        return [Problem(path="path", message=str(exc))]
    problems: list[Problem] = []
    # A template's files live under its fixed root directory: check that a new file could be made there.
    reason = check_path(cfg.path if template.static else template.root / "<file>")
    if reason:
        problems.append(Problem(path="path", message=f"cannot write: {reason}"))
    if cfg.checkpoint is not None and not cfg.hash_chain:
        problems.append(Problem(path="checkpoint", message="checkpoints sign the hash chain: set hash_chain: true"))
    if cfg.checkpoint is not None and not cfg.checkpoint.key.reveal().strip():  # the message never shows the key
        problems.append(Problem(path="checkpoint.key", message="is empty: anyone could sign a forged checkpoint "
                                                               "with an empty key (set a long random secret)"))
    if cfg.retention_days and cfg.rotation is None:
        problems.append(Problem(path="retention_days", severity="warning",
                                message="nothing is ever rotated without rotation, so nothing is removed"))
    return problems


class AuditSink:
    """Routes lines to trails and runs their background work."""

    def __init__(self, cfg: FileConfig, settings: Settings, hook: LineHook = NO_HOOK) -> None:
        self.template = PathTemplate.parse(cfg.path, cfg.path_fallback)
        self.checkpoint = cfg.checkpoint
        exporter = str(settings.id)
        metrics = settings.metrics
        torn = metrics.exporter_audit_torn_lines.labels(exporter)
        removed = metrics.exporter_audit_files_removed.labels(exporter)
        torn.inc(0)
        removed.inc(0)
        self.maintenance = Maintenance(cfg.rotation, cfg.retention_days, settings.logger, removed.inc)
        opts = TrailOptions(fsync=cfg.fsync, rotation=cfg.rotation, hash_chain=cfg.hash_chain,
                            checkpoint=cfg.checkpoint, max_open_files=cfg.max_open_files, hook=hook)
        #: One batch at a time from sealing to fsync (``num_consumers`` > 1 exports concurrently), so
        #: lines are chained in write order and a checkpoint never signs lines still in flight.
        self._lock = asyncio.Lock()
        self.trails = Trails(self.template, opts, settings.logger, Hooks(torn=torn.inc, maintenance=self.maintenance),
                             exporter)

    @property
    def file(self) -> AuditFile | None:
        """The one file of a path without placeholders."""
        return self.trails.single.file if self.trails.single is not None else None

    @property
    def described_path(self) -> Path:
        """The path for messages: the file, or the template's directory."""
        return self.file.path if self.file is not None else self.template.root

    def start(self, spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]]) -> None:
        """Open the single file and start the background tasks.

        Raises:
            OSError: the file cannot be opened.
        """
        self.trails.open()
        if self.maintenance.needed:
            spawn(self.maintenance.run(), "audit file maintenance")
        if self.checkpoint is not None:
            spawn(self._checkpoints(self.checkpoint.every), "audit checkpoints")

    async def _checkpoints(self, every: float) -> None:
        while True:
            await asyncio.sleep(min(every, 1.0) if every > 0 else 1.0)
            async with self._lock:
                self.trails.checkpoint_due()

    def split(self, batch: Batch) -> list[tuple[dict[str, str], Batch]]:
        """``batch`` in the parts that are encoded apart (by resource, for a template that names one)."""
        return by_resource(batch, self.template.resource_keys)

    async def write(self, parts: list[tuple[dict[str, str], list[bytes]]]) -> None:
        """Append the encoded parts, one write per file.

        Raises:
            RetryableError | PermanentError: a write or fsync failed.
        """
        groups: dict[Path, list[bytes]] = {}
        for resource, lines in parts:
            for path, routed in self.trails.route(lines, resource).items():
                groups.setdefault(path, []).extend(routed)
        async with self._lock:
            await self.trails.write(groups)

    async def close(self, deadline: float | None) -> None:
        """Sign and close every file, then compress and expire what is queued, until ``deadline``.

        What is not done by then is done at the next start (a plain rotated file is complete).
        """
        async with self._lock:
            self.trails.close()
        await self.maintenance.drain(deadline)
