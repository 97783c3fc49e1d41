"""Our own log lines: the two formats, and that telemetry content never reaches them."""

from __future__ import annotations

import io
import json
import logging

from obs_pipeline.telemetry.logs import configure_logging


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
