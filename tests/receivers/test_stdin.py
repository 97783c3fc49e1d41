"""The stdin receiver, fed through real pipes and files."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import orjson
import pytest
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData

from obs_pipeline.receivers.linebatch import parse_timestamp
from obs_pipeline.receivers.stdin import FACTORY, StdinReceiver
from obs_pipeline.signals import Signal
from obs_pipeline.testing import (
    CapturingConsumer,
    RecordingHost,
    RefusingConsumer,
    make_settings,
    parse_config,
)
from tests.receivers.conftest import sample

FIXTURES = Path("/work/shared/fixtures")
OTLP_LINES = (FIXTURES / "otlp_traces.jsonl").read_bytes()
AGENT_OS_LOG = (FIXTURES / "agent_os_log.jsonl").read_bytes()


def parse(body):
    """The typed config of ``body``, schema defaults filled in as the config layer does."""
    return parse_config(FACTORY, body)


def open_binary(path: str | Path):
    """Open ``path`` for reading bytes (outside the event loop's async code, for ruff's sake)."""
    return open(path, "rb")


class Pipe:
    """An OS pipe whose read end is the receiver's input."""

    def __init__(self) -> None:
        read_fd, self.write_fd = os.pipe()
        self.reader = os.fdopen(read_fd, "rb", buffering=0)

    def write(self, data: bytes) -> None:
        os.write(self.write_fd, data)

    def close(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1


def make(consumers, metrics, stream, **options) -> tuple[StdinReceiver, RecordingHost]:
    receiver = StdinReceiver(make_settings("stdin", metrics=metrics), parse(options), consumers, stream=stream)
    return receiver, RecordingHost()


async def feed(data: bytes, consumers, metrics, **options) -> RecordingHost:
    """Run the receiver over ``data`` through a pipe until end of input; return its host."""
    pipe = Pipe()
    receiver, host = make(consumers, metrics, pipe.reader, **options)
    await receiver.start(host)
    try:
        pipe.write(data)
        pipe.close()
        await asyncio.wait_for(host.finished_event.wait(), 5)
    finally:
        await receiver.shutdown()
        pipe.close()
        pipe.reader.close()
    return host


def records(consumer: CapturingConsumer) -> list:
    return [r for m in consumer.messages for rl in m.resource_logs for sl in rl.scope_logs for r in sl.log_records]


def as_python(value):
    """An AnyValue back to Python, to compare bodies."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: as_python(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [as_python(v) for v in value.array_value.values]
    return getattr(value, kind)


def lines(*objects) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objects)


def accepted(metrics, signal="logs") -> float:
    return sample(metrics, "receiver_accepted_items", receiver="stdin", transport="stdin", signal=signal)


class TestJsonFormat:
    async def test_objects_become_typed_log_bodies(self, metrics):
        """Each object is a log record whose body is the object, with every JSON type kept."""
        obj = {"event": "tool_call", "n": 3, "ratio": 0.25, "ok": True, "none": None,
               "detail": {"tool": "shell", "args": ["-l", 2, {"deep": False}]}, "empty": {}}
        consumer = CapturingConsumer()
        await feed(lines(obj), {Signal.LOGS: consumer}, metrics)
        (record,) = records(consumer)
        assert as_python(record.body) == {**obj, "empty": {}}
        body = {kv.key: kv.value for kv in record.body.kvlist_value.values}
        assert body["n"].WhichOneof("value") == "int_value"
        assert body["ratio"].WhichOneof("value") == "double_value"
        assert body["ok"].WhichOneof("value") == "bool_value"
        assert body["none"].WhichOneof("value") is None
        assert body["empty"].WhichOneof("value") == "kvlist_value"
        assert record.observed_time_unix_nano > 0
        assert accepted(metrics) == 1

    async def test_timestamp_severity_and_ids(self, metrics):
        """timestamp, level and hex trace_id/span_id fields fill the record's own fields."""
        obj = {"timestamp": "2026-03-17T10:30:45.123456789Z", "level": "WARNING", "message": "slow",
               "trace_id": "5B8EFFF798038103D269B633813FC60C", "span_id": "eee19b7ec3c1b174"}
        bad_ids = {"ts": 1773743445, "severity": 17, "trace_id": "xyz", "span_id": "0000000000000000"}
        consumer = CapturingConsumer()
        await feed(lines(obj, bad_ids), {Signal.LOGS: consumer}, metrics)
        first, second = records(consumer)
        assert first.time_unix_nano == 1773743445_123456789
        assert (first.severity_text, first.severity_number) == ("WARNING", 13)
        assert first.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
        assert first.span_id.hex() == "eee19b7ec3c1b174"
        assert second.time_unix_nano == 1773743445 * 10**9
        assert second.severity_number == 17
        assert (second.trace_id, second.span_id) == (b"", b"")

    async def test_otlp_json_lines_keep_their_signal(self, metrics):
        """In json format, OTLP/JSON lines are decoded as their signal, next to plain log lines."""
        traces, logs = CapturingConsumer(), CapturingConsumer()
        data = OTLP_LINES.splitlines()[0] + b"\n" + lines({"message": "plain"})
        await feed(data, {Signal.TRACES: traces, Signal.LOGS: logs}, metrics)
        assert traces.items == 4
        assert as_python(records(logs)[0].body) == {"message": "plain"}
        assert accepted(metrics, "traces") == 4

    async def test_a_fixture_from_an_agent_framework(self, metrics):
        """A real agent log (agent_os_log.jsonl) reads without a malformed line."""
        data = AGENT_OS_LOG
        consumer = CapturingConsumer()
        await feed(data, {Signal.LOGS: consumer}, metrics)
        assert consumer.items == len([line for line in data.splitlines() if line.strip()])
        assert all(r.time_unix_nano > 0 for r in records(consumer))
        assert sample(metrics, "receiver_malformed_requests", receiver="stdin", transport="stdin") == 0


class TestOtherFormats:
    async def test_otlp_json_format(self, metrics):
        """format otlp_json reads the collector's file-exporter lines; other JSON is malformed."""
        consumer = CapturingConsumer()
        data = OTLP_LINES + lines({"message": "not otlp"})
        await feed(data, {Signal.TRACES: consumer}, metrics, format="otlp_json")
        assert consumer.items == 12
        assert sample(metrics, "receiver_malformed_requests", receiver="stdin", transport="stdin") == 1

    async def test_text_format(self, metrics):
        """format text makes each line a string body; CRLF endings and blank lines are dropped."""
        consumer = CapturingConsumer()
        await feed(b"first line\r\n\n   \nsecond {not json}\nno newline at end", {Signal.LOGS: consumer}, metrics,
                   format="text")
        assert [r.body.string_value for r in records(consumer)] == ["first line", "second {not json}",
                                                                    "no newline at end"]


class TestMalformedLines:
    async def test_bad_lines_are_counted_and_skipped(self, metrics, caplog):
        """Bad JSON, non-objects, invalid UTF-8, bad OTLP and overlong lines are counted; the rest goes on."""
        caplog.set_level(logging.WARNING)
        data = b"".join([
            lines({"n": 1}),
            b"{broken sk-secret-one\n",
            b"[1, 2, 3]\n",
            b'{"text": "\xff\xfe"}\n',
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "sk-secret-two"}]}]}]}\n',
            b'{"pad": "' + b"x" * 300 + b'"}\n',
            lines({"n": 2}),
        ])
        consumer = CapturingConsumer()
        await feed(data, {Signal.LOGS: consumer, Signal.TRACES: CapturingConsumer()}, metrics,
                   max_line_size=200)
        assert [as_python(r.body) for r in records(consumer)] == [{"n": 1}, {"n": 2}]
        assert sample(metrics, "receiver_malformed_requests", receiver="stdin", transport="stdin") == 5
        assert sample(metrics, "receiver_refused_items", receiver="stdin", transport="stdin", signal="logs",
                      reason="malformed") == 5
        for lineno in (2, 3, 4, 5, 6):
            assert f"line {lineno} skipped" in caplog.text
        assert "sk-secret" not in caplog.text
        assert "longer than max_line_size" in caplog.text

    async def test_overlong_line_split_across_reads(self, metrics):
        """A line longer than max_line_size that arrives in pieces is skipped as a whole."""
        pipe = Pipe()
        consumer = CapturingConsumer()
        receiver, host = make({Signal.LOGS: consumer}, metrics, pipe.reader, max_line_size=100)
        await receiver.start(host)
        pipe.write(lines({"n": 1}) + b'{"pad": "' + b"y" * 80)
        await consumer.wait_for_items(1)
        pipe.write(b"y" * 80 + b'"}\n' + lines({"n": 2}))
        pipe.close()
        await asyncio.wait_for(host.finished_event.wait(), 5)
        await receiver.shutdown()
        pipe.reader.close()
        assert [as_python(r.body) for r in records(consumer)] == [{"n": 1}, {"n": 2}]
        assert sample(metrics, "receiver_malformed_requests", receiver="stdin", transport="stdin") == 1

    async def test_signal_without_pipeline_is_refused_and_counted(self, metrics, caplog):
        """An OTLP/JSON traces line when only logs are wired is counted as refused (no_pipeline)."""
        caplog.set_level(logging.WARNING)
        consumer = CapturingConsumer()
        data = OTLP_LINES.splitlines()[0] + b"\n" + lines({"ok": 1})
        await feed(data, {Signal.LOGS: consumer}, metrics)
        assert consumer.items == 1
        assert sample(metrics, "receiver_refused_items", receiver="stdin", transport="stdin", signal="traces",
                      reason="no_pipeline") == 4
        assert "line 1 skipped: no pipeline takes traces" in caplog.text


class TestBatching:
    async def test_batches_hold_at_most_max_batch_lines(self, metrics):
        """Lines are grouped into batches of max_batch_lines, in order."""
        consumer = CapturingConsumer()
        await feed(lines(*({"n": i} for i in range(5))), {Signal.LOGS: consumer}, metrics, max_batch_lines=2)
        assert [len(records_of) for records_of in
                ([r for rl in m.resource_logs for sl in rl.scope_logs for r in sl.log_records]
                 for m in consumer.messages)] == [2, 2, 1]
        assert [as_python(r.body)["n"] for r in records(consumer)] == list(range(5))

    async def test_available_lines_are_sent_without_waiting_for_more(self, metrics):
        """A partial batch goes on as soon as no more input is waiting; EOF is not needed."""
        pipe = Pipe()
        consumer = CapturingConsumer()
        receiver, host = make({Signal.LOGS: consumer}, metrics, pipe.reader)
        await receiver.start(host)
        try:
            pipe.write(lines({"n": 1}, {"n": 2}))
            await consumer.wait_for_items(2, within=3)
            assert host.finished == []
        finally:
            pipe.close()
            await receiver.shutdown()
            pipe.reader.close()


class TestBackpressure:
    async def test_refused_batch_is_retried_without_loss(self, metrics):
        """While the pipeline refuses, the same batch is retried; every line arrives exactly once."""
        consumer = RefusingConsumer(retry_after=0.01, times=3)
        await feed(lines(*({"n": i} for i in range(10))), {Signal.LOGS: consumer}, metrics)
        assert consumer.refusals == 3
        assert [as_python(r.body)["n"] for r in records(consumer)] == list(range(10))
        assert accepted(metrics) == 10

    async def test_shutdown_while_refused_counts_shutting_down(self, metrics):
        """If the pipeline still refuses at shutdown, the batch is counted as refused, and shutdown returns."""
        pipe = Pipe()
        consumer = RefusingConsumer(retry_after=5.0)
        receiver, host = make({Signal.LOGS: consumer}, metrics, pipe.reader)
        await receiver.start(host)
        pipe.write(lines({"n": 1}, {"n": 2}))
        await consumer.wait_for_refusals(1)
        await asyncio.wait_for(receiver.shutdown(), 2)
        pipe.close()
        pipe.reader.close()
        assert sample(metrics, "receiver_refused_items", receiver="stdin", transport="stdin", signal="logs",
                      reason="shutting_down") == 2
        assert host.finished == []


class TestLifecycle:
    async def test_eof_reports_finished(self, metrics):
        """At end of input the receiver hands on its last batch and tells the host it finished."""
        consumer = CapturingConsumer()
        host = await feed(lines({"n": 1}), {Signal.LOGS: consumer}, metrics)
        assert host.finished == ["stdin"]
        assert host.fatal == []
        assert consumer.items == 1

    async def test_dev_null_and_regular_files(self, metrics, tmp_path):
        """/dev/null finishes at once; a regular file is read to its end."""
        path = tmp_path / "input.jsonl"
        path.write_bytes(lines({"n": 1}, {"n": 2}))
        for source, expected in ((os.devnull, 0), (path, 2)):
            consumer = CapturingConsumer()
            with open_binary(source) as stream:
                receiver, host = make({Signal.LOGS: consumer}, metrics, stream)
                await receiver.start(host)
                await asyncio.wait_for(host.finished_event.wait(), 5)
                await receiver.shutdown()
            assert consumer.items == expected

    async def test_terminal_input(self, metrics):
        """A TTY works too: lines arrive as typed, and Ctrl-D ends the input."""
        controller, terminal = os.openpty()
        consumer = CapturingConsumer()
        with os.fdopen(terminal, "rb", buffering=0) as stream:
            receiver, host = make({Signal.LOGS: consumer}, metrics, stream, format="text")
            await receiver.start(host)
            try:
                os.write(controller, b"typed by hand\n")
                await consumer.wait_for_items(1)
                os.write(controller, b"\x04")
                await asyncio.wait_for(host.finished_event.wait(), 5)
            finally:
                await receiver.shutdown()
                os.close(controller)
        assert [r.body.string_value for r in records(consumer)] == ["typed by hand"]

    async def test_non_blocking_descriptor(self, metrics):
        """An inherited O_NONBLOCK input is waited on, not mistaken for the end of input."""
        pipe = Pipe()
        os.set_blocking(pipe.reader.fileno(), False)
        consumer = CapturingConsumer()
        receiver, host = make({Signal.LOGS: consumer}, metrics, pipe.reader)
        await receiver.start(host)
        await asyncio.sleep(0.05)
        pipe.write(lines({"n": 1}))
        pipe.close()
        await asyncio.wait_for(host.finished_event.wait(), 5)
        await receiver.shutdown()
        pipe.reader.close()
        assert consumer.items == 1

    async def test_shutdown_without_eof(self, metrics):
        """Shutdown while input is still open returns promptly, after handing on what was read."""
        pipe = Pipe()
        consumer = CapturingConsumer()
        receiver, host = make({Signal.LOGS: consumer}, metrics, pipe.reader)
        await receiver.start(host)
        pipe.write(lines({"n": 1}))
        await consumer.wait_for_items(1)
        await asyncio.wait_for(receiver.shutdown(), 2)
        await receiver.shutdown()
        pipe.close()
        pipe.reader.close()
        assert host.finished == []

    async def test_shutdown_is_safe_without_start(self, metrics):
        """shutdown() before start() does nothing."""
        receiver, _host = make({Signal.LOGS: CapturingConsumer()}, metrics, None)
        await receiver.shutdown()
        await receiver.shutdown()


class TestTimestamps:
    @pytest.mark.parametrize(("value", "expected"), [
        ("2026-03-17T10:30:45Z", 1773743445 * 10**9),
        ("2026-03-17T10:30:45.5", 1773743445 * 10**9 + 500_000_000),
        ("2026-03-17T12:30:45.000001+02:00", 1773743445 * 10**9 + 1000),
        ("2026-03-17 10:30:45", 1773743445 * 10**9),
        (1773743445, 1773743445 * 10**9),
        (1773743445.25, 1773743445 * 10**9 + 250_000_000),
        (1773743445123, 1773743445123 * 10**6),
        ("1773743445123", 1773743445123 * 10**6),
        ("yesterday", None),
        (True, None),
        (-5, None),
        ({"a": 1}, None),
    ])
    def test_parse_timestamp(self, value, expected):
        """ISO-8601 (naive = UTC) and epoch seconds/ms become nanoseconds; anything else is None."""
        assert parse_timestamp(value) == expected


def attribute(record, key: str):
    """A record attribute back to Python, or None when absent."""
    for kv in record.attributes:
        if kv.key == key:
            return as_python(kv.value)
    return None


REPAIRED = "obs_pipeline.decoding.repaired"


def repaired(metrics, reason: str, signal: str = "logs") -> float:
    return sample(metrics, "receiver_repaired_values", receiver="stdin", transport="stdin", signal=signal,
                  reason=reason)


def malformed(metrics) -> float:
    return sample(metrics, "receiver_malformed_requests", receiver="stdin", transport="stdin")


class TestJsonAsAgentsWriteIt:
    async def test_utf8_bom_on_the_first_line(self, metrics):
        """A file saved with a BOM: the first line reads like the others, and nothing is marked."""
        consumer = CapturingConsumer()
        await feed(b"\xef\xbb\xbf" + lines({"n": 1}, {"n": 2}), {Signal.LOGS: consumer}, metrics)
        assert [as_python(r.body) for r in records(consumer)] == [{"n": 1}, {"n": 2}]
        assert attribute(records(consumer)[0], REPAIRED) is None
        assert malformed(metrics) == 0

    async def test_bom_before_otlp_json_and_text(self, metrics):
        """The BOM is dropped in every format."""
        traces, logs = CapturingConsumer(), CapturingConsumer()
        await feed(b"\xef\xbb\xbf" + OTLP_LINES.splitlines()[0] + b"\n", {Signal.TRACES: traces}, metrics,
                   format="otlp_json")
        await feed(b"\xef\xbb\xbfhello\n", {Signal.LOGS: logs}, metrics, format="text")
        assert traces.items == 4
        assert records(logs)[0].body.string_value == "hello"

    async def test_lone_surrogate_becomes_replacement_character(self, metrics):
        """A string cut mid-emoji by a JavaScript agent (a lone surrogate escape) is kept, with U+FFFD, and marked."""
        data = (b'{"msg": "cut \\ud83d", "ok": "\\ud83d\\ude00", "\\udc00key": 1}\n'
                + lines({"n": 2}))
        consumer = CapturingConsumer()
        await feed(data, {Signal.LOGS: consumer}, metrics)
        first, second = records(consumer)
        assert as_python(first.body) == {"msg": "cut \ufffd", "ok": "\U0001f600", "\ufffdkey": 1}
        assert attribute(first, REPAIRED) == ["lone_surrogate"]
        assert attribute(second, REPAIRED) is None
        assert repaired(metrics, "lone_surrogate") == 2
        assert malformed(metrics) == 0

    async def test_numbers_beyond_double_become_their_literal_text(self, metrics):
        """1e400, -1e400 and Python's NaN/Infinity become the strings they were written as."""
        data = b'{"big": 1e400, "neg": -1E400, "nan": NaN, "inf": -Infinity, "fine": 1.5}\n'
        consumer = CapturingConsumer()
        await feed(data, {Signal.LOGS: consumer}, metrics)
        (record,) = records(consumer)
        assert as_python(record.body) == {"big": "1e400", "neg": "-1E400", "nan": "NaN", "inf": "-Infinity",
                                          "fine": 1.5}
        assert attribute(record, REPAIRED) == ["non_finite_number"]
        assert repaired(metrics, "non_finite_number") == 4

    async def test_integers_beyond_64_bits_keep_every_digit(self, metrics):
        """orjson would turn these into lossy doubles; they become their decimal strings, and are marked."""
        data = (b'{"id": 123456789012345678901234567890, "low": -9223372036854775809, '
                b'"u64": 18446744073709551615, "ns": 1773743445123456789, "small": -5}\n')
        consumer = CapturingConsumer()
        await feed(data, {Signal.LOGS: consumer}, metrics)
        (record,) = records(consumer)
        body = as_python(record.body)
        assert body == {"id": "123456789012345678901234567890", "low": "-9223372036854775809",
                        "u64": "18446744073709551615", "ns": 1773743445123456789, "small": -5}
        assert attribute(record, REPAIRED) == ["big_integer"]
        assert repaired(metrics, "big_integer") == 3

    async def test_a_huge_integer_literal(self, metrics):
        """An integer of 5,000 digits (past Python's int parsing limit) is kept as its text."""
        digits = "7" * 5000
        consumer = CapturingConsumer()
        await feed(b'{"n": ' + digits.encode() + b"}\n", {Signal.LOGS: consumer}, metrics)
        (record,) = records(consumer)
        assert as_python(record.body) == {"n": digits}
        assert attribute(record, REPAIRED) == ["big_integer"]

    async def test_several_conversions_are_listed_once_each(self, metrics):
        """The mark lists each kind of conversion once, sorted."""
        data = b'{"a": 1e999, "b": "\\ud800", "c": 99999999999999999999999, "d": "\\udfff"}\n'
        consumer = CapturingConsumer()
        await feed(data, {Signal.LOGS: consumer}, metrics)
        (record,) = records(consumer)
        assert attribute(record, REPAIRED) == ["big_integer", "lone_surrogate", "non_finite_number"]

    async def test_body_nesting_past_max_body_depth_is_kept_as_json_text(self, metrics):
        """Past MAX_BODY_DEPTH levels the rest of a body is its JSON text; even 300 levels never stop the input."""
        from obs_pipeline.receivers.linebatch import MAX_BODY_DEPTH  # noqa: PLC0415

        deep = b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}\n"
        consumer = CapturingConsumer()
        host = await feed(deep + lines({"n": 2}), {Signal.LOGS: consumer}, metrics)
        assert host.fatal == []
        first, second = records(consumer)
        levels, value = 0, as_python(first.body)["a"]
        while isinstance(value, list):
            value, levels = value[0], levels + 1
        assert levels == MAX_BODY_DEPTH - 1
        assert value == "[" * (300 - levels) + "]" * (300 - levels)
        assert attribute(first, REPAIRED) == ["nested_as_json"]
        assert as_python(second.body) == {"n": 2}

    async def test_what_is_not_json_is_still_malformed(self, metrics, caplog):
        """The fallback parser does not make broken JSON or raw invalid UTF-8 acceptable."""
        caplog.set_level(logging.WARNING)
        data = b'{"a": 1e400\n{"b": "\xff"}\n' + b"[" * 5000 + b"\n" + lines({"n": 1})
        consumer = CapturingConsumer()
        await feed(data, {Signal.LOGS: consumer}, metrics)
        assert [as_python(r.body) for r in records(consumer)] == [{"n": 1}]
        assert malformed(metrics) == 3
        assert "line 1 skipped: not valid JSON" in caplog.text
        assert "line 2 skipped: invalid UTF-8" in caplog.text
        assert "line 3 skipped" in caplog.text

    async def test_otlp_json_line_with_a_lone_surrogate(self, metrics):
        """An OTLP/JSON line is repaired the same way before it is decoded (counted, not marked)."""
        obj = orjson.loads(OTLP_LINES.splitlines()[0])
        obj["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = "PLACEHOLDER"
        line = orjson.dumps(obj).replace(b"PLACEHOLDER", b"agent \\ud83d")
        consumer = CapturingConsumer()
        await feed(line + b"\n", {Signal.TRACES: consumer}, metrics)
        span = consumer.messages[0].resource_spans[0].scope_spans[0].spans[0]
        assert span.name == "agent \ufffd"
        assert repaired(metrics, "lone_surrogate", signal="traces") == 1


class TestSeverity:
    @pytest.mark.parametrize(("obj", "text", "number"), [
        ({"level": "info"}, "info", 9),
        ({"Level": "ERROR"}, "ERROR", 17),
        ({"LEVEL": "warn"}, "warn", 13),
        ({"severity": "Debug"}, "Debug", 5),
        ({"SEVERITY": "fatal"}, "fatal", 21),
        ({"lvl": "error"}, "error", 17),
        ({"Lvl": "trace"}, "trace", 1),
        ({"levelname": "CRITICAL"}, "CRITICAL", 21),
        ({"levelName": "WARNING"}, "WARNING", 13),
        ({"level": "notice", "levelname": "ERROR"}, "notice", 10),  # level comes first
        ({"level": None, "lvl": "info"}, "info", 9),  # an empty field is skipped
        ({"severity": 17}, "", 17),
        ({"status": "error"}, "", 17),
        ({"Status": "ERROR"}, "", 17),
        ({"status": "ok"}, "", 0),
        ({"level": "info", "status": "error"}, "info", 9),  # the source's own level wins
        ({"level": "E", "status": "error"}, "E", 17),  # an unknown level gives no number: status decides
    ])
    async def test_severity_fields(self, metrics, obj, text, number):
        """level/severity/lvl/levelname in any case set the severity; status "error" means ERROR when it is unset."""
        consumer = CapturingConsumer()
        await feed(lines({**obj, "msg": "m"}), {Signal.LOGS: consumer}, metrics)
        (record,) = records(consumer)
        assert (record.severity_text, record.severity_number) == (text, number)

    async def test_status_error_is_result_error_in_the_audit_line(self, metrics):
        """What the audit exporter writes: status "error" and Level ERROR give result error, the rest allow."""
        from obs_pipeline.exporters.jsonl_audit.logs import encode_logs  # noqa: PLC0415

        consumer = CapturingConsumer()
        await feed(lines({"msg": "a", "status": "Error"}, {"msg": "b", "Level": "ERROR"}, {"msg": "c", "lvl": "info"}),
                   {Signal.LOGS: consumer}, metrics)
        audit = [orjson.loads(line) for line in encode_logs(consumer.messages[0])]
        assert [line["result"] for line in audit] == ["error", "error", "allow"]


class TestRecordIds:
    async def run_once(self, data: bytes, metrics, **options) -> tuple[StdinReceiver, list]:
        pipe = Pipe()
        consumer = CapturingConsumer()
        receiver, host = make({Signal.LOGS: consumer}, metrics, pipe.reader, **options)
        await receiver.start(host)
        try:
            pipe.write(data)
            pipe.close()
            await asyncio.wait_for(host.finished_event.wait(), 5)
        finally:
            await receiver.shutdown()
            pipe.reader.close()
        return receiver, records(consumer)

    async def test_every_record_gets_a_uid_unique_per_line_and_run(self, metrics):
        """Identical lines get different ids; the same input read twice gets different ids."""
        data = lines({"same": 1}, {"same": 1}) + b"\n" + lines({"same": 1})
        _first_run, first = await self.run_once(data, metrics)
        _second_run, second = await self.run_once(data, metrics)
        ids = [attribute(r, "log.record.uid") for r in first]
        again = [attribute(r, "log.record.uid") for r in second]
        assert len(set(ids)) == 3
        assert not set(ids) & set(again)
        assert all(isinstance(uid, str) and len(uid) == 32 and int(uid, 16) >= 0 for uid in ids + again)

    async def test_uid_is_derived_from_the_run_and_the_line_number(self, metrics):
        """The id is a pure function of (source, the receiver's start time, the line number): blank and bad lines count."""
        from obs_pipeline.receivers.linebatch import record_uid  # noqa: PLC0415

        data = lines({"n": 1}) + b"\n{broken\n" + lines({"n": 4})
        receiver, got = await self.run_once(data, metrics)
        assert [attribute(r, "log.record.uid") for r in got] == [
            record_uid("stdin", receiver.started_ns, 1), record_uid("stdin", receiver.started_ns, 4)]
        assert record_uid("stdin", receiver.started_ns, 4) == record_uid("stdin", receiver.started_ns, 4)
        assert record_uid("stdin", receiver.started_ns, 4) != record_uid("stdin", receiver.started_ns + 1, 4)
        assert record_uid("stdin", receiver.started_ns, 4) != record_uid("file", receiver.started_ns, 4)

    async def test_text_lines_get_a_uid_too(self, metrics):
        _receiver, got = await self.run_once(b"one\ntwo\n", metrics, format="text")
        assert len({attribute(r, "log.record.uid") for r in got}) == 2

    async def test_audit_event_id_differs_for_identical_lines(self, metrics):
        """Two identical lines are two audit events (event_id from log.record.uid)."""
        from obs_pipeline.exporters.jsonl_audit.logs import encode_logs  # noqa: PLC0415

        _receiver, got = await self.run_once(lines({"msg": "retry"}, {"msg": "retry"}), metrics)
        data = LogsData()
        data.resource_logs.add().scope_logs.add().log_records.extend(got)
        event_ids = [orjson.loads(line)["event_id"] for line in encode_logs(data)]
        assert event_ids[0] != event_ids[1]

    async def test_bad_hex_ids_are_ignored(self, metrics):
        """trace_id/span_id that are all zeros, the wrong length or not hex leave the record's ids empty."""
        objs = [
            {"trace_id": "0" * 32, "span_id": "0" * 16},
            {"trace_id": "ab" * 15, "span_id": "ab" * 7},
            {"trace_id": "ab" * 17, "span_id": "ab" * 9},
            {"traceId": "zz" * 16, "spanId": "zz" * 8},
            {"trace_id": 12345, "span_id": None},
            {"trace_id": "AB" * 16, "span_id": "cd" * 8},
        ]
        consumer = CapturingConsumer()
        await feed(lines(*objs), {Signal.LOGS: consumer}, metrics)
        got = [(r.trace_id.hex(), r.span_id.hex()) for r in records(consumer)]
        assert got == [("", "")] * 5 + [("ab" * 16, "cd" * 8)]
        assert as_python(records(consumer)[0].body) == objs[0]  # the fields stay in the body
