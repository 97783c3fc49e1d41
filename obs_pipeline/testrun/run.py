"""Run one case's record through the processors of a config, in-process.

The processors are built exactly as ``run`` builds them (each one's factory, with the typed
config the loader made) and chained in order into a capturing consumer; they are started, given
the one record, and shut down, which flushes a buffering processor such as ``batch``. No
receiver, no exporter, no network: what comes out is what the pipeline's exporters would get.
Each case gets fresh processors, so a stateful one (a budget) starts clean every time, and its
state lives in a temporary ``data_dir`` that is removed afterwards; listeners and shared state
stores are switched off (each factory's ``sealed``).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obs_pipeline.batch import Batch
from obs_pipeline.components import (
    ComponentID,
    Consumer,
    Kind,
    Processor,
    ProcessorFactory,
    ProcessorSettings,
)
from obs_pipeline.config import PipelineConfig
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.logs import component_logger
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import CapturingConsumer, RecordingHost
from obs_pipeline.testrun.cases import TestCase
from obs_pipeline.testrun.records import records_of

__all__ = ["SHUTDOWN_SECONDS", "Outcome", "resolve_chain", "run_case"]

#: How long the processors may take to flush at the end of a case.
SHUTDOWN_SECONDS = 10.0


@dataclass(frozen=True)
class Outcome:
    """What came out of the processors: the records in readable form, or why nothing could run."""

    records: list[dict[str, Any]]
    error: str | None = None  # a processor raised: its class and message (the user's own data)


def resolve_chain(config: PipelineConfig, case: TestCase) -> tuple[str, tuple[ComponentID, ...]] | str:
    """``(pipeline id, processor ids)`` the case runs through, or a message saying why none fits.

    ``processors:`` names them directly; ``pipeline:`` takes that pipeline's; without either, the
    pipeline named after the record's signal (``traces``, ``logs``), else the first of that signal.
    """
    if case.processors is not None:
        ids = []
        for text in case.processors:
            try:
                cid = ComponentID.parse(text)
            except ValueError:
                return f"processors: {text!r} is not a component id"
            if cid not in config.processors:
                return f"processors: {text!r} is not configured in {config.source}"
            ids.append(cid)
        return case.signal.value, tuple(ids)
    specs = [spec for spec in config.pipelines if spec.signal is case.signal]
    if case.pipeline is not None:
        chosen = [spec for spec in config.pipelines if spec.id == case.pipeline]
        if not chosen:
            return f"pipeline: {case.pipeline!r} is not in {config.source}"
        if chosen[0].signal is not case.signal:
            word = "span" if case.signal is Signal.TRACES else "log record"
            return f"pipeline: {case.pipeline!r} carries {chosen[0].signal.value}, not a {word}"
    else:
        chosen = [spec for spec in specs if spec.id == case.signal.value] or specs
        if not chosen:
            return f"{config.source} has no {case.signal.value} pipeline; name the processors with `processors:`"
    return chosen[0].id, chosen[0].processors


def _build(config: PipelineConfig, pipeline: str, ids: Sequence[ComponentID], signal: Signal, *,
           sink: Consumer, data_dir: Path) -> list[Processor]:
    """The processors, last first, each feeding the next, as the engine's graph builds them."""
    metrics = SelfMetrics()
    chain: list[Processor] = []
    consumer = sink
    for at, cid in reversed(list(enumerate(ids))):
        cc = config.processors[cid]
        assert isinstance(cc.factory, ProcessorFactory)
        settings = ProcessorSettings(
            id=cid, kind=Kind.PROCESSOR, metrics=metrics,
            logger=component_logger("processor", str(cid), pipeline=pipeline),
            data_dir=data_dir, signal=signal, pipeline=pipeline, upstream=tuple(p.type for p in ids[:at]),
        )
        processor = cc.factory.create(settings, cc.factory.sealed(cc.config), consumer)
        chain.insert(0, processor)
        consumer = processor
    return chain


async def _run(config: PipelineConfig, case: TestCase, pipeline: str, ids: Sequence[ComponentID]) -> Outcome:
    sink = CapturingConsumer()
    with tempfile.TemporaryDirectory(prefix="obs-pipeline-test-") as data_dir:
        chain = _build(config, pipeline, ids, case.signal, sink=sink, data_dir=Path(data_dir))
        started: list[Processor] = []
        error: str | None = None
        host = RecordingHost()  # a background task that dies is reported here, and fails the case
        try:
            for processor in reversed(chain):
                await processor.start(host)
                started.append(processor)
            message = type(case.message).FromString(case.message.SerializeToString())
            entry: Consumer = chain[0] if chain else sink
            await entry.consume(Batch(case.signal, message))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            deadline = time.monotonic() + SHUTDOWN_SECONDS
            for processor in reversed(started):  # the first one first, so each flushes into a live one
                try:
                    await asyncio.wait_for(processor.shutdown(deadline), SHUTDOWN_SECONDS)
                except Exception as exc:
                    error = error or f"{processor.id}: shutdown failed: {type(exc).__name__}: {exc}"
        for component, fatal in host.fatal:
            error = error or f"{component}: a background task failed: {type(fatal).__name__}: {fatal}"
    records = [record for batch in sink.batches for record in records_of(batch.message)]
    return Outcome(records, error)


def run_case(config: PipelineConfig, case: TestCase, pipeline: str, ids: Sequence[ComponentID]) -> Outcome:
    """Run ``case`` through the processors ``ids`` of ``config`` and return what came out."""
    return asyncio.run(_run(config, case, pipeline, ids))
