"""OTLP/JSON decoding and encoding: hex ids, the spec's leniencies, clear errors."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from obs_pipeline import otlp_json
from obs_pipeline.signals import Signal

FIXTURE = Path("/work/shared/fixtures/otlp_traces.jsonl")
LINES = FIXTURE.read_bytes().splitlines()


def spans_of(message):
    return [s for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]


class TestDecode:
    @pytest.mark.parametrize("index", range(len(LINES)))
    def test_fixture_ids_decode_to_their_bytes(self, index):
        """Every trace, span and parent id in the fixture becomes the bytes its hex spells."""
        raw = orjson.loads(LINES[index])
        expected = [s for rs in raw["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
        spans = spans_of(otlp_json.decode(Signal.TRACES, LINES[index]))
        assert len(spans) == len(expected) == 4
        for span, want in zip(spans, expected, strict=True):
            assert span.trace_id == bytes.fromhex(want["traceId"])
            assert span.span_id == bytes.fromhex(want["spanId"])
            assert span.parent_span_id == bytes.fromhex(want.get("parentSpanId", ""))
            assert span.name == want["name"]
            assert span.start_time_unix_nano == int(want["startTimeUnixNano"])

    def test_fixture_values_survive(self):
        """Attributes, int64 strings, enums and status come through typed."""
        spans = spans_of(otlp_json.decode(Signal.TRACES, LINES[2]))
        chat = spans[1]
        attrs = {kv.key: kv.value for kv in chat.attributes}
        assert attrs["gen_ai.usage.input_tokens"].int_value > 0
        assert chat.kind == 3
        assert spans[2].status.code == 2

    @pytest.mark.parametrize("index", range(len(LINES)))
    def test_round_trip_is_stable(self, index):
        """decode → encode → decode gives the same message, and encoding is a fixed point."""
        message = otlp_json.decode(Signal.TRACES, LINES[index])
        encoded = otlp_json.encode(Signal.TRACES, message)
        again = otlp_json.decode(Signal.TRACES, encoded)
        assert again == message
        assert otlp_json.encode(Signal.TRACES, again) == encoded
        assert orjson.loads(encoded) == orjson.loads(LINES[index])

    def test_encoded_ids_are_lowercase_hex(self):
        """Encoding writes ids as hex (what the spec and the fixture use), not base64."""
        message = otlp_json.decode(Signal.TRACES, LINES[0])
        span = orjson.loads(otlp_json.encode(Signal.TRACES, message))["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
        assert span["traceId"] == "db5b5fab8f4d3e27dda1494c73cf256d"
        assert span["parentSpanId"] == "c7fde805ec99108d"

    def test_snake_case_keys_enum_names_and_numeric_int64(self):
        """snake_case keys, enum names and 64-bit ints as numbers are accepted too."""
        obj = {"resource_spans": [{"scope_spans": [{"spans": [{
            "trace_id": "0102030405060708090a0b0c0d0e0f10", "span_id": "0102030405060708",
            "parent_span_id": "", "name": "x", "kind": "SPAN_KIND_CLIENT", "start_time_unix_nano": 1773743445000000000,
            "links": [{"trace_id": "ffffffffffffffffffffffffffffffff", "span_id": "00000000000000aa"}],
        }]}]}]}
        span = spans_of(otlp_json.decode(Signal.TRACES, obj))[0]
        assert span.trace_id == bytes(range(1, 17))
        assert span.kind == 3
        assert span.start_time_unix_nano == 1773743445000000000
        assert span.links[0].trace_id == b"\xff" * 16
        assert span.links[0].span_id == b"\0" * 7 + b"\xaa"

    def test_unknown_fields_are_ignored(self):
        """Fields the schema does not know (newer OTLP versions) do not fail decoding."""
        obj = {"resourceSpans": [{"futureField": 1, "scopeSpans": [{"spans": [{"name": "x", "newThing": {"a": 1}}]}]}]}
        assert spans_of(otlp_json.decode(Signal.TRACES, obj))[0].name == "x"

    def test_input_dict_is_not_modified(self):
        """Decoding a parsed object leaves the caller's object as it was."""
        obj = orjson.loads(LINES[0])
        before = copy.deepcopy(obj)
        otlp_json.decode(Signal.TRACES, obj)
        assert obj == before

    def test_logs_and_metric_exemplar_ids(self):
        """Log record ids and metric exemplar ids are hex too, both ways."""
        logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "severityNumber": 9, "body": {"stringValue": "hello"},
        }]}]}]}
        record = otlp_json.decode(Signal.LOGS, logs).resource_logs[0].scope_logs[0].log_records[0]
        assert record.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
        assert orjson.loads(otlp_json.encode(Signal.LOGS, otlp_json.decode(Signal.LOGS, logs))) == logs
        metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "m", "sum": {"dataPoints": [{
            "asInt": "5", "exemplars": [{"asInt": "5", "spanId": "eee19b7ec3c1b174",
                                         "traceId": "5b8efff798038103d269b633813fc60c"}],
        }]}}]}]}]}
        message = otlp_json.decode(Signal.METRICS, metrics)
        exemplar = message.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].exemplars[0]
        assert exemplar.span_id.hex() == "eee19b7ec3c1b174"
        assert orjson.loads(otlp_json.encode(Signal.METRICS, message)) == metrics


class TestErrors:
    def test_invalid_hex_names_the_field(self):
        """A non-hex id fails with a ValueError that names where it is."""
        obj = orjson.loads(LINES[1])
        obj["resourceSpans"][0]["scopeSpans"][0]["spans"][3]["parentSpanId"] = "not-hex-at-all!!"
        with pytest.raises(ValueError, match=r"resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[3\]\.parentSpanId") as info:
            otlp_json.decode(Signal.TRACES, obj)
        assert "not-hex" not in str(info.value)

    def test_base64_id_is_rejected(self):
        """protobuf's base64 ids are not OTLP/JSON; the error says ids are hex."""
        obj = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "W47/95gDgQPSabYzgT/GDA=="}]}]}]}
        with pytest.raises(ValueError, match="hex"):
            otlp_json.decode(Signal.TRACES, obj)

    def test_wrong_length_is_rejected(self):
        """A span id of the wrong length is an error, not a silently short id."""
        obj = {"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abcd"}]}]}]}
        with pytest.raises(ValueError, match="16 hex characters"):
            otlp_json.decode(Signal.TRACES, obj)

    def test_wrong_type_does_not_echo_the_value(self):
        """A value of the wrong type is reported by field path, without quoting it."""
        obj = {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [
            {"key": "k", "value": {"intValue": "sk-secret-token"}}]}]}]}]}
        with pytest.raises(ValueError, match="intValue") as info:
            otlp_json.decode(Signal.TRACES, obj)
        assert "sk-secret" not in str(info.value)

    @pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", "\"text\""])
    def test_not_an_object_is_a_value_error(self, raw):
        """Text that is not a JSON object is a ValueError."""
        with pytest.raises(ValueError):
            otlp_json.decode(Signal.TRACES, raw)


class TestDetectSignal:
    @pytest.mark.parametrize(("key", "signal"), [
        ("resourceSpans", Signal.TRACES), ("resource_spans", Signal.TRACES),
        ("resourceMetrics", Signal.METRICS), ("resource_metrics", Signal.METRICS),
        ("resourceLogs", Signal.LOGS), ("resource_logs", Signal.LOGS),
    ])
    def test_top_level_key_gives_the_signal(self, key, signal):
        """Each top-level key (either spelling) identifies its signal."""
        assert otlp_json.detect_signal({key: []}) is signal

    @pytest.mark.parametrize("obj", [{"message": "hi"}, [], "resourceSpans", None])
    def test_anything_else_is_none(self, obj):
        """Plain JSON objects and non-objects are not OTLP/JSON."""
        assert otlp_json.detect_signal(obj) is None
