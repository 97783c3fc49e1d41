"""The error hierarchy, in one place.

::

    ObsPipelineError
    ├── ConfigError            startup: the config is invalid; reported with file:line:col and path, exit 1
    ├── StartupError           startup: a component could not start (port in use, unwritable path), exit 1
    ├── RefusedError           runtime: the pipeline did not accept a batch; the receiver tells its sender
    │                          (retryable: gRPC UNAVAILABLE / HTTP 503, with a retry hint)
    ├── ProcessingError        runtime: a processor failed on a batch (a bug or data it cannot handle);
    │                          the batch is not passed on, the sender gets a non-retryable error
    └── ExportError            runtime: an exporter failed to deliver
        ├── RetryableError     the exporter helper retries it (honouring ``retry_after``)
        └── PermanentError     dropped at once and counted (``permanent_error``)

Runtime errors never crash the process: bad input is reported to its sender and counted. Only
``obs_pipeline.commands`` calls ``sys.exit``. Messages never contain telemetry values or secrets.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass


class ObsPipelineError(Exception):
    """Base of every error obs-pipeline raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One config problem: where it is and what is wrong.

    ``path`` is the JSON path in the user's key names (``exporters.otlp/backend.endpoint``);
    ``line``/``column`` are 1-based positions in ``file`` (0 when unknown).
    """

    path: str
    message: str
    file: str = ""
    line: int = 0
    column: int = 0
    severity: str = "error"  # "error" | "warning" | "note" (a fact worth saying, such as the price data in use)

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line:
            where = f"{where}:{self.line}:{self.column}"
        prefix = f"{where}: " if where else ""
        path = f"{self.path}: " if self.path else ""
        tag = f"{self.severity}: " if self.severity in ("warning", "note") else ""
        return f"{prefix}{tag}{path}{self.message}"


class ConfigError(ObsPipelineError):
    """The config is invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StartupError(ObsPipelineError):
    """A component failed to start (for example: address already in use)."""


class RefusedError(ObsPipelineError):
    """The pipeline did not accept a batch. Receivers map this to a retryable status.

    ``reason`` is the metric label (``queue_full``, ``shutting_down``); ``retry_after`` is the
    delay in seconds suggested to the sender.
    """

    def __init__(self, reason: str, retry_after: float = 1.0) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(f"pipeline refused data: {reason}")


class ProcessingError(ObsPipelineError):
    """A processor raised on a batch. Receivers answer INTERNAL / 500: retrying would fail again.

    The message names the processor and the exception's class, never its text (which may quote
    telemetry).
    """


class ExportError(ObsPipelineError):
    """An exporter failed to deliver a batch."""


class RetryableError(ExportError):
    """A transient failure: the exporter helper retries, waiting at least ``retry_after``."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PermanentError(ExportError):
    """A failure that retrying cannot fix: the batch is dropped and counted."""


def describe_exception(exc: BaseException) -> str:
    """``KeyError at obs_pipeline/x.py:12``: where it happened, without the message.

    Exception messages may quote telemetry (a key, a value), so logs get the class and the
    innermost frame only.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    path = last.filename
    marker = path.rfind("obs_pipeline/")
    if marker >= 0:
        path = path[marker:]
    return f"{type(exc).__name__} at {path}:{last.lineno}"
