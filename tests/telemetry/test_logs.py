"""Our own log lines: the two formats, and the component logger that adds a component's fields."""

from __future__ import annotations

import io
import json
import logging

import pytest

from obs_pipeline.telemetry.logs import ComponentLogger, component_logger, configure_logging


class TestFormats:
    def test_json_format_writes_one_parseable_object_per_line(self):
        """format json: each line is a JSON object with ts, level, logger, msg and extra fields."""
        stream = io.StringIO()
        configure_logging("info", "json", stream)
        logging.getLogger("obs_pipeline.run").info("started %d pipelines", 2, extra={"component": "otlp"})
        logging.getLogger("obs_pipeline.run").debug("not shown at info")
        (line,) = stream.getvalue().splitlines()
        record = json.loads(line)
        assert record["level"] == "info"
        assert record["logger"] == "obs_pipeline.run"
        assert record["msg"] == "started 2 pipelines"
        assert record["component"] == "otlp"
        assert record["ts"].endswith("Z")

    def test_text_format_has_time_level_and_message_and_hides_tracebacks_below_debug(self):
        """format text: one line per record; an exception adds only its class unless at debug level."""
        stream = io.StringIO()
        configure_logging("info", "text", stream)
        log = logging.getLogger("obs_pipeline.exporter")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("exporter x: unexpected ValueError")
        text = stream.getvalue()
        assert text.count("\n") == 1
        assert " error   exporter x: unexpected ValueError" in text
        assert "Traceback" not in text

    def test_debug_level_shows_tracebacks(self):
        """At debug level a developer gets the traceback."""
        stream = io.StringIO()
        configure_logging("debug", "text", stream)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("obs_pipeline.exporter").exception("failed")
        assert "Traceback" in stream.getvalue()


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def _without_timestamp(line: str) -> str:
    return line.split(" ", 1)[1]


class TestComponentLogger:
    def test_json_records_carry_component_and_kind_as_fields(self):
        """format json: a component's line has ``component`` and ``kind``, and the message does not name it."""
        stream = io.StringIO()
        configure_logging("info", "json", stream)
        component_logger("receiver", "otlp/2").info("OTLP/gRPC listening on %s", "127.0.0.1:4317")
        (line,) = _lines(stream)
        record = json.loads(line)
        assert record["component"] == "otlp/2"
        assert record["kind"] == "receiver"
        assert record["logger"] == "obs_pipeline.receiver.otlp/2"
        assert record["msg"] == "OTLP/gRPC listening on 127.0.0.1:4317"
        assert "pipeline" not in record

    def test_text_lines_read_as_they_did_when_the_message_named_the_component(self):
        """format text: ``otlp: OTLP/gRPC listening on ...``, the same line the old ``"%s: ..."`` call made."""
        stream = io.StringIO()
        configure_logging("info", "text", stream)
        logging.getLogger("obs_pipeline.receiver.otlp").info("%s: OTLP/%s listening on %s", "otlp", "gRPC", "127.0.0.1:4317")
        component_logger("receiver", "otlp").info("OTLP/%s listening on %s", "gRPC", "127.0.0.1:4317")
        old, new = _lines(stream)
        assert _without_timestamp(new) == _without_timestamp(old) == "info    otlp: OTLP/gRPC listening on 127.0.0.1:4317"

    def test_a_processor_line_names_its_pipeline(self):
        """A processor's logger adds ``pipeline``; text prints ``batch (traces): `` as the old calls did."""
        stream = io.StringIO()
        configure_logging("info", "text", stream)
        log = component_logger("processor", "batch", pipeline="traces")
        log.error("%d items not flushed by the shutdown deadline", 3)
        (line,) = _lines(stream)
        assert _without_timestamp(line) == "error   batch (traces): 3 items not flushed by the shutdown deadline"
        stream = io.StringIO()
        configure_logging("info", "json", stream)
        log.warning("failed")
        record = json.loads(_lines(stream)[0])
        assert (record["component"], record["kind"], record["pipeline"]) == ("batch", "processor", "traces")

    def test_records_without_a_component_have_no_prefix(self):
        """Lines from the engine and the CLI (no component field) are unchanged."""
        stream = io.StringIO()
        configure_logging("info", "text", stream)
        logging.getLogger("obs_pipeline.run").info("end of input: draining and stopping")
        assert _without_timestamp(_lines(stream)[0]) == "info    end of input: draining and stopping"

    def test_a_call_can_add_fields_and_they_win_on_a_clash(self):
        """``extra=`` at the call adds fields to the component's; a clashing key takes the call's value."""
        stream = io.StringIO()
        configure_logging("info", "json", stream)
        log = component_logger("exporter", "jsonl_audit")
        log.warning("rotated", extra={"path": "audit.jsonl", "kind": "file"})
        log.warning("again")
        first, second = (json.loads(line) for line in _lines(stream))
        assert (first["component"], first["kind"], first["path"]) == ("jsonl_audit", "file", "audit.jsonl")
        assert (second["kind"], "path" in second) == ("exporter", False)

    def test_an_exception_keeps_the_fields_and_hides_the_traceback(self):
        """``log.exception`` on a component logger: JSON has the fields and the error class, text one line."""
        stream = io.StringIO()
        configure_logging("info", "json", stream)
        log = component_logger("exporter", "debug")
        try:
            raise OSError("disk full")
        except OSError:
            log.exception("write failed")
        record = json.loads(_lines(stream)[0])
        assert (record["component"], record["error"], record["msg"]) == ("debug", "OSError", "write failed")

    def test_the_kind_must_be_a_singular_kind_word(self):
        """``Kind.RECEIVER`` reads ``receivers``; passing it instead of ``.singular`` is refused."""
        with pytest.raises(ValueError, match="'receivers' is not one of"):
            component_logger("receivers", "otlp")
        assert isinstance(component_logger("receiver", "otlp"), ComponentLogger)
