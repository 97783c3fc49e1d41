"""Timestamps as agent frameworks write them, and as we write them.

One parser (:func:`parse_timestamp`: ISO 8601 text or epoch numbers of any unit) for every place
that reads a time from JSON (the stdin and file receivers, the audit mapping of log bodies), so
they agree on what a time is; one format (:func:`format_ns`: RFC 3339 UTC, microseconds, ``Z``)
for every place that writes one (the audit line, debug).
"""

from __future__ import annotations

import functools
import math
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

_UINT64_MAX = 2**64 - 1
_MAX_DIGITS = 40
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_FRACTION = re.compile(r"(\d{2}:\d{2}:\d{2})[.,](\d+)")
_NUMBER = re.compile(r"\d+(\.\d+)?")


def _epoch_to_ns(value: int | Decimal) -> int | None:
    """Epoch seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude.

    Decimal, not float: a float epoch in nanoseconds is off by hundreds of ns.
    """
    if value <= 0:
        return None
    if value < 10**11:  # seconds until the year 5138
        ns = value * 10**9
    elif value < 10**14:
        ns = value * 10**6
    elif value < 10**17:
        ns = value * 10**3
    else:
        ns = value
    ns = int(ns)
    return ns if 0 < ns <= _UINT64_MAX else None


def parse_timestamp(value: Any) -> int | None:
    """Nanoseconds since the epoch from an ISO-8601 string (naive = UTC) or an epoch number.

    Never raises: anything that is not a time in the uint64 range gives None.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _epoch_to_ns(value)
    if isinstance(value, float):
        # repr() is the shortest text that reads back as this float: "1773743445.123", not ...12299990654
        return _epoch_to_ns(Decimal(repr(value))) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _NUMBER.fullmatch(text):
        if len(text) > _MAX_DIGITS:  # int() refuses over 4300 digits; no epoch needs more than 20
            return None
        return _epoch_to_ns(Decimal(text) if "." in text else int(text))
    fraction_ns = 0
    match = _FRACTION.search(text)
    if match:
        digits = match.group(2)
        fraction_ns = int(digits[:9].ljust(9, "0"))
        text = text[: match.start(2) - 1] + text[match.end(2):]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - _EPOCH) // _SECOND
    ns = seconds * 1_000_000_000 + fraction_ns
    return ns if 0 < ns <= _UINT64_MAX else None


# --- formatting ---------------------------------------------------------------------------------

#: ``"000"`` .. ``"999"``: two lookups format microseconds faster than ``:06d``.
THREE_DIGITS: tuple[str, ...] = tuple(f"{i:03d}" for i in range(1000))
#: Distinct seconds a :class:`SecondPrefixes` remembers before it starts again.
MAX_PREFIXES = 4096


def _prefix(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class SecondPrefixes:
    """``YYYY-MM-DDTHH:MM:SS`` per Unix second, cached by its owner: a batch's records share few seconds.

    A hot path reads :attr:`known` inline (``known.get(second) or prefixes.of(second)``) and
    calls :meth:`of` only on a miss.
    """

    __slots__ = ("known",)

    def __init__(self) -> None:
        self.known: dict[int, str] = {}

    def of(self, second: int) -> str:
        """The prefix of ``second``, remembered."""
        text = self.known.get(second)
        if text is None:
            if len(self.known) >= MAX_PREFIXES:
                self.known.clear()
            text = self.known[second] = _prefix(second)
        return text


@functools.lru_cache(maxsize=256)
def _cached_prefix(second: int) -> str:
    return _prefix(second)


def format_ns(unix_nano: int) -> str:
    """RFC 3339 UTC with microseconds (truncated) and ``Z``: ``2026-03-17T10:30:45.123456Z``."""
    second, nanos = divmod(unix_nano, 1_000_000_000)
    return f"{_cached_prefix(second)}.{nanos // 1000:06d}Z"
