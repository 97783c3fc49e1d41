"""The one timestamp parser: what agent frameworks write, and garbage that must not raise."""

from __future__ import annotations

import pytest

from obs_pipeline.timestamps import parse_timestamp

T = 1_773_743_445 * 10**9


class TestParseTimestamp:
    @pytest.mark.parametrize(("value", "expected"), [
        ("2026-03-17T10:30:45.123456", T + 123_456_000),
        ("2026-03-17T10:30:45.123456Z", T + 123_456_000),
        ("2026-03-17T11:30:45+01:00", T),
        ("2026-03-17T10:30:45.123456789Z", T + 123_456_789),
        (1_773_743_445, T),
        (1_773_743_445_123, T + 123_000_000),
        ("1773743445.5", T + 500_000_000),
    ])
    def test_reads_iso_text_and_epoch_numbers_of_any_unit(self, value, expected):
        """ISO 8601 (naive = UTC, nanosecond fractions) and epoch s/ms given as numbers or text."""
        assert parse_timestamp(value) == expected

    @pytest.mark.parametrize("value", [
        "9" * 5000, "1e999", float("inf"), float("nan"), -5, 0, True, None, "yesterday", "", [], {}, 2**80,
    ])
    def test_anything_else_is_none_never_an_exception(self, value):
        """Garbage in a log line's time field gives None, so one bad line cannot stop a batch."""
        assert parse_timestamp(value) is None
