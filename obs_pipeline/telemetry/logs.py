"""Our own log lines: text or JSON, to stderr.

Log calls across the code base pass component IDs, counts and error classes, never telemetry
content, so a secret in a span attribute cannot reach our logs.

A component logs through :func:`component_logger`, which puts its ID and kind on every record
as the fields ``component`` and ``kind`` (and ``pipeline`` for a processor), so JSON logs can be
filtered by component. The text format prints the ID before the message (``otlp: listening``),
so a component's log call never names the component itself.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import orjson

__all__ = ["COMPONENT_KINDS", "ComponentLogger", "JsonFormatter", "TextFormatter", "component_logger", "configure_logging"]

COMPONENT_KINDS = frozenset({"receiver", "processor", "exporter"})

_STANDARD = set(vars(logging.makeLogRecord({})))


class ComponentLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds the fields of one component (``component``, ``kind``, ...) to every record.

    Fields a call passes in ``extra=`` are added too, and win over the component's on a clash
    (the rule of :class:`logging.LoggerAdapter` with ``merge_extra=True`` in Python 3.13).
    """

    extra: Mapping[str, object]

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the component's fields into the record's ``extra``."""
        call_extra = kwargs.get("extra")
        kwargs["extra"] = {**self.extra, **call_extra} if call_extra else self.extra
        return msg, kwargs


def component_logger(kind: str, component_id: str, pipeline: str | None = None) -> ComponentLogger:
    """The logger of one component: ``obs_pipeline.<kind>.<component_id>``, with its fields.

    Args:
        kind: ``receiver``, ``processor`` or ``exporter`` (``Kind.singular``).
        component_id: the ID as written in the config (``otlp/2``).
        pipeline: for a processor, the pipeline it runs in (``traces``); the text format then
            prints ``batch (traces): `` before the message.

    Raises:
        ValueError: ``kind`` is not one of the three kinds (``Kind.RECEIVER`` itself reads
            ``receivers``: pass ``Kind.RECEIVER.singular``).

    Returns:
        An adapter whose records carry ``component``, ``kind`` and, if given, ``pipeline``.
    """
    if kind not in COMPONENT_KINDS:
        raise ValueError(f"component kind {kind!r} is not one of {sorted(COMPONENT_KINDS)}")
    fields: dict[str, object] = {"component": component_id, "kind": kind}
    if pipeline is not None:
        fields["pipeline"] = pipeline
    return ComponentLogger(logging.getLogger(f"obs_pipeline.{kind}.{component_id}"), fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and any ``extra`` fields.

    A component's records carry ``component`` and ``kind`` (and a processor's ``pipeline``).
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        line: dict[str, object] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({key: value for key, value in vars(record).items() if key not in _STANDARD and not key.startswith("_")})
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``2026-11-23T10:00:00.123Z info    otlp: message``; tracebacks only at debug level.

    A record with a ``component`` field gets ``<component>: `` (a processor's: ``<component>
    (<pipeline>): ``) before its message; the logger name would only repeat it.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one readable line."""
        line = f"{_iso(record.created)} {record.levelname.lower():<7} {_prefix(record)}{record.getMessage()}"
        if record.exc_info and record.exc_info[0] is not None and logging.getLogger("obs_pipeline").isEnabledFor(
            logging.DEBUG
        ):
            line += "\n" + self.formatException(record.exc_info)
        return line


def _prefix(record: logging.LogRecord) -> str:
    component = getattr(record, "component", None)
    if component is None:
        return ""
    pipeline = getattr(record, "pipeline", None)
    return f"{component} ({pipeline}): " if pipeline is not None else f"{component}: "


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def configure_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the ``obs_pipeline`` loggers to stderr in the chosen format (idempotent)."""
    logger = logging.getLogger("obs_pipeline")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    # grpc and aiohttp log through their own loggers; keep them quiet unless debugging.
    for noisy in ("grpc", "aiohttp.access", "aiohttp.server", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.ERROR)
