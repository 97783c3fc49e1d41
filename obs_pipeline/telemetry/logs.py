"""Our own log lines: text or JSON, to stderr.

Log calls across the code base pass component IDs, counts and error classes, never telemetry
content, so a secret in a span attribute cannot reach our logs.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import orjson

_STANDARD = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        line: dict[str, object] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``2026-11-23T10:00:00.123Z info    otlp: message``; tracebacks only at debug level.

    Component messages start with the component ID, so the logger name would only repeat it.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one readable line."""
        line = f"{_iso(record.created)} {record.levelname.lower():<7} {record.getMessage()}"
        if record.exc_info and record.exc_info[0] is not None and logging.getLogger("obs_pipeline").isEnabledFor(
            logging.DEBUG
        ):
            line += "\n" + self.formatException(record.exc_info)
        return line


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
