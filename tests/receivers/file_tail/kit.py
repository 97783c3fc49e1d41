"""Helpers for the file_tail tests: a receiver running in-process on real files."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from obs_pipeline.genai.attributes import any_value_to_json
from obs_pipeline.receivers import file_tail
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import CapturingConsumer, RecordingHost, make_settings, parse_config

FIXTURES = Path(__file__).parents[2] / "fixtures"  # tests/fixtures: the frameworks' sample files


def bodies(consumer: CapturingConsumer) -> list[Any]:
    """Every log record's body (a string or a dict) in arrival order."""
    out = []
    for message in consumer.messages:
        for rl in message.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    out.append(any_value_to_json(record.body))
    return out


def records(consumer: CapturingConsumer) -> list[Any]:
    """Every log record, in arrival order."""
    return [r for m in consumer.messages for rl in m.resource_logs for sl in rl.scope_logs for r in sl.log_records]


@contextlib.asynccontextmanager
async def tailing(data_dir: Path, body: dict[str, Any], consumer: Any = None, *, component: str = "file_tail",
                  metrics: SelfMetrics | None = None) -> AsyncIterator[tuple[Any, Any]]:
    """A started file_tail receiver and its consumer; shut down on exit."""
    body = {"poll_interval": "20ms", "watch": "poll", **body}
    cfg = parse_config(file_tail.FACTORY, body)
    assert file_tail.FACTORY.check(cfg) == []
    consumer = consumer if consumer is not None else CapturingConsumer()
    settings = make_settings(component, metrics=metrics, data_dir=data_dir)
    receiver = file_tail.FACTORY.create(settings, cfg, {Signal.LOGS: consumer, Signal.TRACES: consumer})
    await receiver.start(RecordingHost())
    try:
        yield receiver, consumer
    finally:
        await receiver.shutdown()


async def wait_until(predicate: Any, within: float = 10.0) -> None:
    """Poll ``predicate`` until it is true."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls state no event announces (files, counters)
            await asyncio.sleep(0.02)
