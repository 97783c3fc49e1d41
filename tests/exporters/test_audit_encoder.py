"""jsonl_audit's span encoder: one key order on every path, wire-only batches, chunking, its caches."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Status, TracesData

from obs_pipeline import batch as batch_module
from obs_pipeline.audit import line as audit
from obs_pipeline.audit.reader import read_entries
from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.exporters.jsonl_audit import FACTORY, JsonlAuditExporter
from obs_pipeline.exporters.jsonl_audit import spans as spans_module
from obs_pipeline.exporters.jsonl_audit.logs import encode_logs
from obs_pipeline.exporters.jsonl_audit.spans import CHUNK_SPANS, MAX_CACHED, SpanEncoder, encode_traces
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_settings, parse_config
from tests.exporters.builders import CHAT, T0, add_attributes, logs, traces

#: DESIGN §5, written out independently of the code.
KEY_ORDER = ["timestamp", "session_id", "task_id", "event_type", "category", "result", "detail",
             "event_id", "trace_id", "span_id", "parent_span_id", "user_id", "agent", "service"]


def exporter(path: Path, **cfg: Any) -> JsonlAuditExporter:
    exp = FACTORY.create(make_settings("jsonl_audit", Kind.EXPORTER), parse_config(FACTORY, {"path": str(path), **cfg}))
    assert isinstance(exp, JsonlAuditExporter)
    return exp


def one_group(n: int) -> TracesData:
    """One ResourceSpans, one ScopeSpans, ``n`` chat spans."""
    data = TracesData()
    rs = data.resource_spans.add()
    add_attributes(rs.resource.attributes, {"service.name": "svc"})
    spans = rs.scope_spans.add().spans
    for i in range(n):
        span = spans.add(trace_id=b"\x01" * 16, span_id=i.to_bytes(8, "big"), name="chat",
                         start_time_unix_nano=T0, end_time_unix_nano=T0 + 1000)
        add_attributes(span.attributes, {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": i})
    return data


class TestKeyOrder:
    def test_every_path_writes_the_key_order(self, monkeypatch):
        """Spans (from a message and from bytes), log records and both minimal error lines: one key order."""
        assert list(audit.KEYS) == KEY_ORDER
        data = traces(CHAT, {"name": "plain", "status": (Status.STATUS_CODE_ERROR, "boom")})
        lines = [*encode_traces(data), *encode_traces(None, data.SerializeToString()),
                 *encode_logs(logs({"body": "text"}, {"body": {"result": "deny", "extra": 1}}))]

        def broken(*_args: Any) -> Any:
            raise RuntimeError

        monkeypatch.setattr(spans_module, "_exception_type", broken)  # the error span's mapping fails
        span_errors = encode_traces(data)
        monkeypatch.setattr("obs_pipeline.exporters.jsonl_audit.logs._detail", broken)
        log_errors = encode_logs(logs({"body": "text"}))
        assert [orjson.loads(x)["detail"].get("mapping_error") for x in [*span_errors, *log_errors]] == [
            None, "RuntimeError", "RuntimeError"]
        for raw in [*lines, *span_errors, *log_errors]:
            assert list(orjson.loads(raw)) == KEY_ORDER, raw

    def test_builder_gives_the_key_order_whatever_the_argument_order(self):
        """The builder is keyword-only, and its line has KEYS order."""
        fields = dict.fromkeys(reversed(KEY_ORDER), None)
        assert list(audit.build(**fields)) == KEY_ORDER  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            audit.build(*fields.values())  # type: ignore[misc]


class TestWireOnly:
    async def test_a_wire_only_batch_is_written_without_an_otlp_parse(self, tmp_path, monkeypatch):
        """A batch of bytes alone (what the batch processor hands on) never parses OTLP, resource included."""
        def no_parse(*_args: Any) -> Any:
            raise AssertionError("the batch's message was parsed")

        monkeypatch.setattr(batch_module, "parse", no_parse)
        data = traces(CHAT, {"name": "plain"},
                      resource={"service.name": "from-resource", "session.id": "res-session", "task.id": "t-7"})
        wire = data.SerializeToString()
        path = tmp_path / "audit.jsonl"
        exp = exporter(path, content="none")
        await exp.start(RecordingHost())
        await exp.export(Batch.from_wire(Signal.TRACES, wire))
        await exp.shutdown()
        lines = [e.record for e in read_entries(path)]
        assert [(x["service"], x["session_id"], x["task_id"]) for x in lines] == [
            ("from-resource", "conv-0", "t-7"), ("from-resource", "res-session", "t-7")]
        monkeypatch.undo()
        assert [orjson.loads(x) for x in encode_traces(data)] == lines

    async def test_bytes_that_are_not_traces_are_a_permanent_error(self, tmp_path):
        """A batch whose bytes do not parse cannot succeed on a retry."""
        from obs_pipeline.errors import PermanentError  # noqa: PLC0415

        exp = exporter(tmp_path / "audit.jsonl")
        await exp.start(RecordingHost())
        with pytest.raises(PermanentError, match="not valid OTLP traces"):
            await exp.export(Batch.from_wire(Signal.TRACES, b"\x0a\xff\xff"))
        await exp.shutdown()
        assert (tmp_path / "audit.jsonl").read_bytes() == b""


class TestChunks:
    def test_one_large_resource_group_is_cut_by_span_count(self):
        """16k spans in one ResourceSpans come out in chunks of CHUNK_SPANS, not as one block."""
        data = one_group(16 * CHUNK_SPANS)
        for batch in (Batch(Signal.TRACES, data), Batch.from_wire(Signal.TRACES, data.SerializeToString())):
            chunks = list(SpanEncoder().iter_encode(batch))
            assert [len(c) for c in chunks] == [CHUNK_SPANS] * 16
            assert [orjson.loads(x)["detail"]["tokens"]["input"] for c in chunks for x in c] == list(range(16 * CHUNK_SPANS))

    async def test_the_event_loop_runs_while_a_large_group_is_encoded(self, tmp_path):
        """While one 16k-span resource group is exported, another task keeps running (a receiver answers)."""
        wire = one_group(16 * CHUNK_SPANS).SerializeToString()
        exp = exporter(tmp_path / "audit.jsonl")
        await exp.start(RecordingHost())
        beats: list[float] = []
        running = True

        async def heartbeat() -> None:
            while running:
                beats.append(time.perf_counter())
                await asyncio.sleep(0)

        task = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)
        before = len(beats)
        await exp.export(Batch.from_wire(Signal.TRACES, wire))
        during = len(beats) - before
        running = False
        await task
        await exp.shutdown()
        assert during >= 8  # one beat per chunk handed out (16), give or take the scheduling
        assert sum(1 for _ in read_entries(tmp_path / "audit.jsonl")) == 16 * CHUNK_SPANS


class RecordingDict(dict[bytes, Any]):
    """A cache that records the length of every key looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[int] = []

    def get(self, key: bytes, default: Any = None) -> Any:
        self.looked_up.append(len(key))
        return super().get(key, default)


class TestCaches:
    def test_long_attributes_are_never_looked_up(self):
        """A prompt longer than any cached KeyValue is not hashed for a certain miss; short ones hit."""
        encoder = SpanEncoder()
        encoder.kv_cache = RecordingDict()
        data = traces(CHAT, CHAT)
        lines = encoder.encode(Batch(Signal.TRACES, data))
        assert orjson.loads(lines[0]) == orjson.loads(lines[1])
        assert encoder.kv_cache.looked_up
        assert max(encoder.kv_cache.looked_up) <= MAX_CACHED  # the 600-character prompt was skipped unhashed
        assert all(len(key) <= MAX_CACHED for key in encoder.kv_cache)

    def test_caches_belong_to_the_encoder(self):
        """Each exporter's encoder has its own caches: nothing is shared through module state."""
        first, second = SpanEncoder(), SpanEncoder()
        first.encode(Batch(Signal.TRACES, traces(CHAT)))
        assert first.kv_cache
        assert first.int_values
        assert (second.kv_cache, second.int_values, second.status_cache, second.prefixes.known) == ({}, {}, {}, {})
        assert not any(name.isupper() and name.endswith("CACHE") for name in vars(spans_module))

    def test_values_are_the_same_with_warm_and_cold_caches(self):
        """A second batch, read from the caches, maps exactly as the first did."""
        encoder = SpanEncoder()
        data = traces(CHAT, {"name": "t", "status": (Status.STATUS_CODE_OK, "")})
        first = encoder.encode(Batch(Signal.TRACES, data))
        assert encoder.encode(Batch(Signal.TRACES, data)) == first
        encoder.clear()
        assert encoder.encode(Batch(Signal.TRACES, data)) == first
