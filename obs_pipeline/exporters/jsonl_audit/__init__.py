"""``jsonl_audit``: the audit log, one JSON line per span and log record (DESIGN §5).

Layout: :mod:`.spans` and :mod:`.logs` turn a batch into lines (:mod:`.common` holds what they
share, :mod:`.view` the raw-attribute view the span path reads), :mod:`.writer` appends them to
the file. This module holds the config, the exporter and the factory.

Errors: the file is opened at ``start`` (a clear :class:`StartupError` naming the path and the OS
reason, "no process is reading the FIFO" for a FIFO without a reader); a failed write or fsync
(disk full, I/O error, the path replaced by a directory, a FIFO whose reader is gone or stuck) is
a :class:`RetryableError`: the file is reopened on the next attempt, and the exporter helper's
bounded retries and queue give backpressure instead of silently losing audit records. A retried
batch may repeat lines that were written before the failure; ``event_id`` lets readers dedupe.
A file deleted or renamed while running is reopened at its path before the next batch.

A record the mapping cannot handle never costs its batch: it gets a minimal line with
``detail.mapping_error`` (the exception's class), and the batch logs one warning.
"""

from __future__ import annotations

import asyncio
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obs_pipeline.components import Exporter, Factory, Host, Kind, Settings
from obs_pipeline.errors import PermanentError, Problem, RetryableError, StartupError
from obs_pipeline.exporters.jsonl_audit.logs import DEFAULT_PRESET, LogPreset, encode_logs
from obs_pipeline.exporters.jsonl_audit.spans import iter_encode_traces
from obs_pipeline.exporters.jsonl_audit.writer import AuditFile, check_path
from obs_pipeline.signals import Message, Signal

TYPE = "jsonl_audit"
DEFAULT_FSYNC = False


@dataclass(frozen=True, kw_only=True)
class Config:
    """The ``jsonl_audit`` exporter's settings (``schemas/exporters/jsonl_audit.schema.json``)."""

    path: str  # the audit file; opened for append, created 0600, parent directories created 0700
    fsync: bool = DEFAULT_FSYNC  # fdatasync after every batch
    sending_queue: dict[str, Any] = field(default_factory=dict)  # used by the exporter helper
    retry_on_failure: dict[str, Any] = field(default_factory=dict)  # used by the exporter helper


def parse(raw: dict[str, Any] | None) -> Config:
    """The validated config body (schema defaults filled in) -> :class:`Config`."""
    body = raw or {}
    return Config(
        path=body["path"],
        fsync=bool(body.get("fsync", DEFAULT_FSYNC)),
        sending_queue=dict(body.get("sending_queue") or {}),
        retry_on_failure=dict(body.get("retry_on_failure") or {}),
    )


def check(cfg: Config) -> list[Problem]:
    """Validate-time check that the path can be written. Creates nothing."""
    reason = check_path(cfg.path)
    return [Problem(path="path", message=f"cannot write: {reason}")] if reason else []


class JsonlAuditExporter(Exporter):
    """Appends audit lines for spans and log records to one file."""

    def __init__(self, settings: Settings, cfg: Config, preset: LogPreset = DEFAULT_PRESET) -> None:
        super().__init__(settings)
        self.cfg = cfg
        self.preset = preset
        self.file = AuditFile(cfg.path, self.log)

    async def start(self, host: Host) -> None:
        """Open the file now, so an unusable path stops the pipeline before it accepts data."""
        try:
            self.file.open()
        except OSError as exc:
            raise StartupError(f"{self.id}: cannot open {self.file.path} for append: {_reason(exc)}") from exc

    async def export(self, signal: Signal, data: Message) -> None:
        """Map ``data`` to lines and append them with one write (then fsync if configured)."""
        await self.export_wire(signal, data, None)

    async def export_wire(self, signal: Signal, data: Message, wire: bytes | None) -> None:
        """As :meth:`export`, reading spans from ``wire`` when given (no re-serialization).

        A large batch is encoded in chunks with a pause for the event loop between them, so
        receivers keep answering while it is written.
        """
        errors: list[BaseException] = []
        if signal is Signal.TRACES:
            lines: list[bytes] = []
            for chunk in iter_encode_traces(data, wire, errors=errors):
                lines += chunk
                await asyncio.sleep(0)
        elif signal is Signal.LOGS:
            lines = encode_logs(data, self.preset, errors)
        else:
            raise PermanentError(f"{self.id}: takes traces and logs, not {signal.value}")
        if errors:
            self._warn_mapping_errors(signal, len(lines), errors)
            errors.clear()  # their tracebacks hold the encoder's frame: let it go now
        if not lines:
            return
        lines.append(b"")
        payload = b"\n".join(lines)
        try:
            await self.file.append(payload)
        except OSError as exc:
            raise RetryableError(f"{self.id}: cannot write {self.file.path}: {_reason(exc)}") from exc
        if self.cfg.fsync:
            try:
                # A disk flush takes milliseconds: keep it off the event loop.
                await asyncio.to_thread(self.file.sync)
            except OSError as exc:
                raise RetryableError(f"{self.id}: cannot fsync {self.file.path}: {_reason(exc)}") from exc

    async def shutdown(self) -> None:
        """Close the file (every write is already in the kernel). Idempotent; safe without start."""
        self.file.close()

    def _warn_mapping_errors(self, signal: Signal, total: int, errors: list[BaseException]) -> None:
        """One warning per batch: how many records got a minimal line, the error classes and where.

        Never the exception messages: they may quote attribute values.
        """
        names = sorted({type(exc).__name__ for exc in errors})
        where = ""
        frames = traceback.extract_tb(errors[0].__traceback__)
        if frames:
            where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}"
        noun = "spans" if signal is Signal.TRACES else "log records"
        self.log.warning(
            "%s: %d of %d %s could not be fully mapped (%s%s); written as minimal lines with detail.mapping_error",
            self.id, len(errors), total, noun, ", ".join(names), where,
        )


def _reason(exc: OSError) -> str:
    """The OS reason without the path (we print the path ourselves): ``Permission denied``."""
    return exc.strerror or str(exc)


FACTORY = Factory(
    type=TYPE,
    kind=Kind.EXPORTER,
    signals=frozenset({Signal.TRACES, Signal.LOGS}),
    schema="exporters/jsonl_audit.schema.json",
    description="Appends one audit line (JSON) per span and log record to a file.",
    parse=parse,
    create=JsonlAuditExporter,
    check=check,
)

__all__ = ["FACTORY", "TYPE", "Config", "JsonlAuditExporter", "check", "parse"]
