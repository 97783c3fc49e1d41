"""Progress on stderr: only in a terminal, only once a read has lasted past the delay; the lines pass unchanged."""

from __future__ import annotations

import io
from pathlib import Path

from obs_pipeline.auditquery import progress
from obs_pipeline.auditquery.trail import Line


class Terminal(io.StringIO):
    def isatty(self):
        return True


LINES = [Line({"n": n}, b"", Path("audit.jsonl"), n) for n in range(10)]


def test_a_pipe_gets_nothing():
    stream = io.StringIO()
    assert list(progress.with_progress(LINES, stream)) == LINES
    assert stream.getvalue() == ""


def test_a_quick_read_in_a_terminal_gets_nothing():
    stream = Terminal()
    assert list(progress.with_progress(LINES, stream)) == LINES
    assert stream.getvalue() == ""


def test_a_long_read_in_a_terminal_shows_lines_read(monkeypatch):
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0.0)
    monkeypatch.setattr(progress, "CHECK_EVERY", 2)
    stream = Terminal()
    assert list(progress.with_progress(LINES, stream, "reading")) == LINES
    assert "reading: 2 lines (audit.jsonl)" in stream.getvalue()
