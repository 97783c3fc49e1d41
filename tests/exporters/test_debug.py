"""The debug exporter: what a person at the terminal sees at each verbosity."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.exporters import debug
from obs_pipeline.exporters.debug import FACTORY
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_settings, parse_config
from tests.exporters.builders import CHAT, SPAN, TRACE, logs, traces


async def render(verbosity: str, signal: Signal, data: object) -> str:
    """Export ``data`` through a debug exporter writing to a string."""
    stream = io.StringIO()
    exp = debug.DebugExporter(make_settings("debug", Kind.EXPORTER), parse_config(FACTORY, {"verbosity": verbosity}), stream)
    await exp.start(RecordingHost())
    await exp.export(Batch(signal, data))
    await exp.shutdown()
    return stream.getvalue()


def metrics() -> MetricsData:
    data = MetricsData()
    sm = data.resource_metrics.add().scope_metrics.add()
    gauge = sm.metrics.add(name="queue.size", unit="1")
    gauge.gauge.data_points.add(as_int=7, time_unix_nano=1_773_743_445_000_000_000)
    gauge.gauge.data_points.add(as_int=9)
    hist = sm.metrics.add(name="gen_ai.client.operation.duration", unit="s")
    point = hist.histogram.data_points.add(count=3, sum=1.5, explicit_bounds=[0.1, 1.0], bucket_counts=[1, 1, 1])
    point.attributes.add(key="gen_ai.request.model").value.string_value = "gpt-4o"
    return data


class TestBasic:
    async def test_traces_summary(self):
        """One line per batch with span and resource counts."""
        data = traces(CHAT, {"name": "b"})
        data.resource_spans.add().scope_spans.add().spans.add(name="c")
        assert await render("basic", Signal.TRACES, data) == "traces: 3 spans, 2 resources\n"

    async def test_logs_and_metrics_summary(self):
        """Logs count records; metrics count metrics and data points."""
        assert await render("basic", Signal.LOGS, logs({"body": "a"}, {"body": "b"})) == "logs: 2 log records, 1 resources\n"
        assert await render("basic", Signal.METRICS, metrics()) == "metrics: 2 metrics, 3 data points, 1 resources\n"


class TestNormal:
    async def test_one_line_per_span_with_genai_fields(self):
        """Each span line has name, ids, duration, status and the GenAI fields; long values are cut."""
        chat = dict(CHAT)
        chat["attrs"] = {**CHAT["attrs"], "gen_ai.tool.name": "t" * 200}
        error = {"name": "execute_tool x", "status": (Status.STATUS_CODE_ERROR, "boom"),
                 "attrs": {"gen_ai.operation.name": "execute_tool"}}
        text = await render("normal", Signal.TRACES, traces(chat, error))
        first, second = text.splitlines()
        assert first.startswith(f"span 'chat claude-sonnet-4-5' trace={TRACE.hex()} span={SPAN.hex()} 2280.0ms status=UNSET")
        for part in ("op=chat", "provider=anthropic", "model=claude-sonnet-4-5-20250929", "session=conv-0",
                     "tokens=2400/310"):
            assert part in first.split(" ")
        assert "tool=" + "t" * 79 + "…" in first
        assert "x" * 100 not in first  # the prompt is not printed at normal verbosity
        assert "status=ERROR(boom)" in second
        assert "op=execute_tool" in second

    async def test_aliases_are_resolved(self):
        """Old attribute names show up under the current labels."""
        text = await render("normal", Signal.TRACES, traces({"attrs": {
            "gen_ai.system": "openai", "gen_ai.usage.prompt_tokens": 5, "session.id": "s"}}))
        assert "provider=openai" in text
        assert "tokens=5/-" in text
        assert "session=s" in text

    async def test_log_lines(self):
        """A log line shows time, severity, event name and a compact body."""
        text = await render("normal", Signal.LOGS, logs(
            {"body": {"event_type": "policy_violation", "result": "deny"}, "severity_text": "WARN",
             "time_unix_nano": 1_773_743_445_123_456_000, "event_name": "audit"},
            {"body": "plain text"},
        ))
        first, second = text.splitlines()
        assert first == ('log 2026-03-17T10:30:45.123456Z WARN event=audit '
                         'body={"event_type":"policy_violation","result":"deny"}')
        assert second == "log - 0 body=plain text"

    async def test_metric_lines(self):
        """One line per metric with its type and number of points."""
        text = await render("normal", Signal.METRICS, metrics())
        assert text.splitlines() == ["metric queue.size [1] gauge points=2",
                                     "metric gen_ai.client.operation.duration [s] histogram points=1"]


class TestDetailed:
    async def test_every_span_field_and_attribute(self):
        """Detailed output lists resource attributes, span fields, every attribute and events."""
        span = {**CHAT, "events": [("exception", {"exception.type": "KeyError"})],
                "status": (Status.STATUS_CODE_ERROR, "bad")}
        text = await render("detailed", Signal.TRACES, traces(span))
        for expected in (
            "ResourceGroup #0", "-> service.name: Str(my-agent)", "Span #0",
            f"Trace ID       : {TRACE.hex()}", "Name           : chat claude-sonnet-4-5",
            "Start time     : 2026-03-17T10:30:45.123456Z", "Status code    : ERROR", "Status message : bad",
            "-> gen_ai.usage.input_tokens: Int(2400)", "-> gen_ai.request.temperature: Double(0.2)",
            "-> gen_ai.input.messages: Str(" + "x" * 600 + ")", "Event #0: exception",
            "-> exception.type: Str(KeyError)",
        ):
            assert expected in text, expected

    async def test_log_record_fields(self):
        """Detailed log output shows the body as a map and the attributes."""
        text = await render("detailed", Signal.LOGS, logs({"body": {"a": 1, "b": [True]}, "attrs": {"k": "v"}}))
        assert 'Body           : Map({"a":1,"b":[true]})' in text
        assert "-> k: Str(v)" in text

    async def test_metric_points(self):
        """Detailed metric output shows each point's value and attributes."""
        text = await render("detailed", Signal.METRICS, metrics())
        assert "Value: 7" in text
        assert "Value: count=3 sum=1.5 bounds=[0.1, 1.0] buckets=[1, 1, 1]" in text
        assert "-> gen_ai.request.model: Str(gpt-4o)" in text


class TestComponent:
    def test_empty_body_means_basic(self):
        """An empty ``debug:`` block is basic verbosity, the schema's default and the named constant."""
        assert parse_config(FACTORY, None) == debug.Config(verbosity="basic")
        assert debug.Config().verbosity == debug.DEFAULT_VERBOSITY == "basic"

    def test_parse_reads_the_schema_filled_body_without_fallbacks(self):
        """``parse`` takes what the schema filled in: no default of its own, no delivery blocks."""
        assert FACTORY.parse({"verbosity": "detailed", "sending_queue": {}}) == debug.Config(verbosity="detailed")
        with pytest.raises(KeyError, match="verbosity"):
            FACTORY.parse({})

    @pytest.mark.parametrize("verbosity", debug.VERBOSITIES)
    async def test_created_by_the_factory(self, verbosity, capsys):
        """The factory's exporter writes to stderr by default, and shuts down cleanly twice."""
        unstarted = FACTORY.create(make_settings("debug", Kind.EXPORTER), parse_config(FACTORY, {"verbosity": verbosity}))
        await unstarted.shutdown()
        await unstarted.shutdown()
        exp = FACTORY.create(make_settings("debug", Kind.EXPORTER), parse_config(FACTORY, {"verbosity": verbosity}))
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces(CHAT)))
        await exp.shutdown()
        await exp.shutdown()
        assert "chat" in capsys.readouterr().err or verbosity == "basic"

    def test_factory_declaration(self):
        """The debug exporter takes every signal."""
        assert FACTORY.signals == set(Signal)
        assert FACTORY.schema_path.is_file()


def test_debug_does_not_load_the_audit_exporter():
    """debug reads attributes through obs_pipeline.genai, never through jsonl_audit's internals."""
    script = ("import sys\nimport obs_pipeline.exporters.debug\n"
              "print([m for m in sys.modules if m.startswith('obs_pipeline.exporters.jsonl_audit')])")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "[]"
