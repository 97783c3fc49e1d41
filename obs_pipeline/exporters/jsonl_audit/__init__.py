"""``jsonl_audit``: the audit log, one JSON line per span and log record (DESIGN §5).

Layout: :mod:`.spans` and :mod:`.logs` turn a batch into lines (the line itself is
:mod:`obs_pipeline.audit.line`, the attribute readers :mod:`obs_pipeline.genai.attributes`,
:mod:`obs_pipeline.otlp_view` the raw-attribute view the span path reads), :mod:`.sink` routes them to
their files (:mod:`.paths` per-tenant templates, :mod:`.trail` rotation and the hash chain, :mod:`.rotation`
compression and retention) and :mod:`.writer` appends them to each file. This module holds the
config, the exporter and the factory.

Errors: the file is opened at ``start`` (a clear :class:`StartupError` naming the path and the OS
reason, "no process is reading the FIFO" for a FIFO without a reader); a failed write or fsync
(disk full, I/O error, the path replaced by a directory, a FIFO whose reader is gone or stuck) is
a :class:`RetryableError` (mapped by :func:`obs_pipeline.exporters._helper.map_errors`; a
broken pipe too, since the path is reopened and a FIFO may have a new reader by then): the file
is reopened on the next attempt, and the engine's bounded retries and queue give backpressure
instead of silently losing audit records. The exception is a broken pipe on an anonymous pipe
(``/dev/stdout`` read by ``head``, which exited): its reader cannot come back, so the write fails
permanently at once instead of being retried until the shutdown timeout. A retried batch may
repeat lines that were written before the failure; ``event_id`` lets readers dedupe
(:mod:`obs_pipeline.audit.reader`).
A file deleted or renamed while running is reopened at its path before the next batch.

A record the mapping cannot handle never costs its batch: it gets a minimal line with
``detail.mapping_error`` (the exception's class), and the batch logs one warning.
"""

from __future__ import annotations

import asyncio
import re
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData

from obs_pipeline.audit.files import COMPRESSED_SUFFIX, rotated_name
from obs_pipeline.audit.hook import NO_HOOK, LineHook
from obs_pipeline.batch import Batch
from obs_pipeline.components import Exporter, ExporterFactory, Host, PartialSuccess, Settings
from obs_pipeline.errors import PermanentError, Problem, StartupError
from obs_pipeline.exporters.jsonl_audit.content import DEFAULT_MAX_DETAIL_CHARS, Content, ContentPolicy
from obs_pipeline.exporters.jsonl_audit.logs import DEFAULT_PRESET, LogPreset, encode_logs
from obs_pipeline.exporters.jsonl_audit.options import CheckpointOptions, Fsync, parse_file_options
from obs_pipeline.exporters.jsonl_audit.rotation import Rotation
from obs_pipeline.exporters.jsonl_audit.sink import AuditSink, check_file_options
from obs_pipeline.exporters.jsonl_audit.spans import SpanEncoder
from obs_pipeline.signals import Signal

__all__ = ["FACTORY", "TYPE", "Config", "JsonlAuditExporter", "check", "parse", "writes"]

TYPE = "jsonl_audit"
DEFAULT_FSYNC = Fsync.NEVER


@dataclass(frozen=True, kw_only=True)
class Config:
    """The ``jsonl_audit`` exporter's settings (``schemas/exporters/jsonl_audit.schema.json``).

    ``timeout``, ``retry_on_failure`` and ``sending_queue`` are the engine's
    (:class:`~obs_pipeline.delivery.DeliverySettings`), not the exporter's.
    """

    path: str  # the audit file; opened for append, created 0600, parent directories created 0700
    fsync: Fsync = DEFAULT_FSYNC  # when to flush to the device (the old boolean: true is batch)
    # The file side (:mod:`.options`, :mod:`.sink`): rotation, retention, per-tenant paths, the chain.
    rotation: Rotation | None = None
    retention_days: float | None = None
    max_open_files: int = 64
    path_fallback: str = "unknown"
    hash_chain: bool = False
    checkpoint: CheckpointOptions | None = None
    # The line side (:mod:`.content`): prompt and completion content in detail.input/output.
    content: Content = Content.SUMMARY
    max_detail_chars: int = DEFAULT_MAX_DETAIL_CHARS

    def __post_init__(self) -> None:
        """Read ``fsync`` as the schema does in YAML: a word, or the old boolean (True: batch)."""
        object.__setattr__(self, "fsync", Fsync.of(self.fsync))


def parse(raw: dict[str, Any]) -> Config:
    """The validated config body, schema defaults filled in -> :class:`Config`."""
    return Config(path=raw["path"], **parse_file_options(raw), content=Content(raw["content"]),
                  max_detail_chars=raw["max_detail_chars"])


def check(cfg: Config) -> list[Problem]:
    """Validate-time checks: the path (template) can be written, the options fit together. Creates nothing."""
    return check_file_options(cfg)


class JsonlAuditExporter(Exporter):
    """Appends audit lines for spans and log records to one file."""

    def __init__(self, settings: Settings, cfg: Config, preset: LogPreset = DEFAULT_PRESET,
                 hook: LineHook = NO_HOOK) -> None:
        super().__init__(settings)
        self.cfg = cfg
        self.preset = preset
        self.hook = hook  # applied to each line before it is written, when there is no hash chain
        self.sink = AuditSink(cfg, settings, hook)  # the files: routing, rotation, the chain
        self.file = self.sink.file  # the one file of a path without placeholders, else None
        self.content = ContentPolicy(cfg.content, cfg.max_detail_chars)
        self.encoder = SpanEncoder(content=self.content)  # its value caches live as long as the exporter

    async def on_start(self, host: Host) -> None:
        """Open the file now, so an unusable path stops the pipeline before it accepts data."""
        try:
            self.sink.start(self.spawn)
        except OSError as exc:
            path = self.sink.described_path
            raise StartupError(f"{self.id}: cannot open {path} for append: {_reason(exc)}") from exc

    async def export(self, batch: Batch) -> PartialSuccess | None:
        """Map ``batch`` to lines and append them with one write (then fsync if configured).

        Spans are read from the batch's wire bytes when it has them (no OTLP parse). A large
        batch is encoded in chunks of spans with a pause for the event loop between them, so
        receivers keep answering while it is written.

        Raises:
            PermanentError: metrics, or bytes that are not valid OTLP.
            RetryableError: the write or the fsync failed.
        """
        errors: list[BaseException] = []
        try:
            # One part, the batch as it came, unless the path template names a resource attribute.
            parts = [(resource, await self._encode(part, errors)) for resource, part in self.sink.split(batch)]
        except DecodeError as exc:
            raise PermanentError(f"{self.id}: the batch is not valid OTLP {batch.signal.value}") from exc
        total = sum(len(lines) for _, lines in parts)
        if errors:
            self._warn_mapping_errors(batch.signal, total, errors)
            errors.clear()  # their tracebacks hold the encoder's frame: let it go now
        if not total:
            return None
        # One write per file; a broken pipe is retried only when reopening the path can find a new
        # reader (a named FIFO): an anonymous pipe's reader (``/dev/stdout | head``) never comes back.
        await self.sink.write(parts)
        return None

    async def _encode(self, batch: Batch, errors: list[BaseException]) -> list[bytes]:
        if batch.signal is Signal.TRACES:
            lines: list[bytes] = []
            for chunk in self.encoder.iter_encode(batch, errors):
                lines += chunk
                await asyncio.sleep(0)
            return lines
        message = batch.message if batch.signal is Signal.LOGS else None
        if isinstance(message, LogsData):
            return encode_logs(message, self.preset, errors, self.content)
        raise PermanentError(f"{self.id}: takes traces and logs, not {batch.signal.value}")

    async def on_shutdown(self) -> None:
        """Sign the last lines (with checkpoints) and close the files (every write is already in the kernel)."""
        await self.sink.close(self.shutdown_deadline)

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
            "%d of %d %s could not be fully mapped (%s%s); written as minimal lines with detail.mapping_error",
            len(errors), total, noun, ", ".join(names), where,
        )


def _reason(exc: OSError) -> str:
    """The OS reason without the path (we print the path ourselves): ``Permission denied``."""
    return exc.strerror or type(exc).__name__


def writes(cfg: Config) -> list[str]:
    """The live file and a rotated one (compressed too), a placeholder standing for any value (the loop check)."""
    live = Path(re.sub(r"\{[^{}]*\}", "value", cfg.path)).expanduser().absolute()
    rotated = rotated_name(live, datetime.now(UTC))
    return [str(live), str(rotated), f"{rotated}{COMPRESSED_SUFFIX}"]


FACTORY = ExporterFactory[Config](
    type=TYPE,
    signals=frozenset({Signal.TRACES, Signal.LOGS}),
    schema="exporters/jsonl_audit.schema.json",
    description="Appends one audit line (JSON) per span and log record to a file.",
    parse=parse,
    create=JsonlAuditExporter,
    check=check,
    writes=writes,
)
