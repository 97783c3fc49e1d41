"""The one timestamp format: RFC 3339 UTC, microseconds truncated, ``Z``."""

from __future__ import annotations

from obs_pipeline import timestamps
from obs_pipeline.timestamps import SecondPrefixes, format_ns, parse_timestamp


class TestFormat:
    def test_microseconds_truncated_never_rounded(self):
        """Nanoseconds are cut, so a time never moves into the next second."""
        assert format_ns(1_773_743_445_999_999_999) == "2026-03-17T10:30:45.999999Z"
        assert format_ns(1_000) == "1970-01-01T00:00:00.000001Z"

    def test_round_trip_through_the_parser(self):
        """What we write, we read back to the microsecond."""
        ns = 1_773_743_445_123_456_000
        assert parse_timestamp(format_ns(ns)) == ns

    def test_prefix_cache_is_bounded(self):
        """An owner's cache of second prefixes never grows past MAX_PREFIXES, and stays right."""
        prefixes = SecondPrefixes()
        for second in range(timestamps.MAX_PREFIXES * 2 + 3):
            assert prefixes.of(second) == format_ns(second * 1_000_000_000)[:19]
        assert len(prefixes.known) <= timestamps.MAX_PREFIXES
