"""Show the corpus figures (recall, precision) at the end of the test output."""

from __future__ import annotations

from typing import Any

from tests.processors.redaction import corpus


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Write what the corpus test measured."""
    for line in corpus.REPORT:
        terminalreporter.write_line(line)
