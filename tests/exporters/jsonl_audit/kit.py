"""Helpers for the audit trail tests: real exporters writing real files."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.exporters.jsonl_audit import FACTORY, JsonlAuditExporter
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_settings, parse_config
from tests.exporters.builders import traces

__all__ = ["batch_of", "exporter", "read_trail", "write_trail"]


def exporter(path: Path | str, **cfg: Any) -> JsonlAuditExporter:
    """A jsonl_audit exporter on ``path`` with ``cfg`` (schema defaults filled in)."""
    return FACTORY.create(make_settings("jsonl_audit", Kind.EXPORTER), parse_config(FACTORY, {"path": str(path), **cfg}))


def batch_of(first: int, count: int, resource: dict[str, Any] | None = None, **attrs: Any) -> Batch:
    """``count`` chat spans with distinct span ids (``first`` on), so each line has its own event_id."""
    spans = [{"name": f"span-{n}", "span_id": (n + 1).to_bytes(8, "big"),
              "attrs": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", **attrs}}
             for n in range(first, first + count)]
    return Batch(Signal.TRACES, traces(*spans, resource=resource))


async def write_trail(path: Path, batches: int, per_batch: int = 5, start: int = 0, **cfg: Any) -> JsonlAuditExporter:
    """Start an exporter, write ``batches`` batches of ``per_batch`` lines, shut it down."""
    exp = exporter(path, **cfg)
    await exp.start(RecordingHost())
    for b in range(batches):
        await exp.export(batch_of(start + b * per_batch, per_batch))
    await exp.shutdown()
    return exp


def read_trail(path: Path) -> list[dict[str, Any]]:
    """Every line of one file (plain or gzip), parsed."""
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]
