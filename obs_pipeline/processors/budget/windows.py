"""Budget windows: ``session`` (never resets), rolling durations, and calendar days and months in UTC.

A window maps a moment (the time the pipeline sees a span, never the span's own clock, which
may be hours off) to a :class:`Slot`: the key its spend is kept under, and for rolling windows
the step (bucket) the spend goes into. A rolling window of length L is counted in
:data:`ROLLING_STEPS` steps of L/60 (at least one second): its spend is the sum of the last 60
steps, so spend leaves the window in steps of L/60.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from obs_pipeline.units import parse_duration

__all__ = ["DAY", "MONTH", "ROLLING", "ROLLING_STEPS", "SESSION", "Slot", "Window", "parse_window"]

SESSION = "session"
ROLLING = "rolling"
DAY = "day"
MONTH = "month"
ROLLING_STEPS = 60
_CALENDAR = {"1d": DAY, "1mo": MONTH}


@dataclass(frozen=True)
class Slot:
    """Where one moment's spend goes.

    Attributes:
        key: the window's name in the store (``session``, ``rolling``, ``2026-12-01``, ``2026-12``).
        bucket: the rolling step (0 for other windows).
        first_bucket: the oldest step still inside the window (== ``bucket`` for other windows).
        expires: epoch seconds after which the stored spend is no longer needed, or None.
        resets_at: epoch seconds at which the spend goes back to 0, or None (session, rolling).
        fired_ttl: seconds a fired warning stays fired in a rolling window (0: as long as the window).
        sliding: ``expires`` moves with every charge (an idle session's state is forgotten).
    """

    key: str
    bucket: int
    first_bucket: int
    expires: float | None
    resets_at: float | None
    fired_ttl: float
    sliding: bool = False


@dataclass(frozen=True)
class Window:
    """A parsed ``window`` setting; ``idle_ttl``: seconds an idle session's state is kept (0: for ever)."""

    text: str
    kind: str
    seconds: float = 0.0
    idle_ttl: float = 0.0

    @property
    def step(self) -> float:
        """Seconds per rolling step."""
        return max(1.0, self.seconds / ROLLING_STEPS)

    def slot(self, now: float) -> Slot:
        """The slot of the moment ``now`` (epoch seconds)."""
        if self.kind == SESSION:
            if self.idle_ttl:
                return Slot(SESSION, 0, 0, now + self.idle_ttl, None, 0.0, sliding=True)
            return Slot(SESSION, 0, 0, None, None, 0.0)
        if self.kind == ROLLING:
            step = self.step
            bucket = int(now // step)
            return Slot(ROLLING, bucket, bucket - ROLLING_STEPS + 1, (bucket + 1) * step + self.seconds, None,
                        self.seconds)
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        if self.kind == DAY:
            start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            end = start + dt.timedelta(days=1)
            key = start.strftime("%Y-%m-%d")
        else:
            start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            end = (start + dt.timedelta(days=32)).replace(day=1)
            key = start.strftime("%Y-%m")
        reset = end.timestamp()
        # Kept one window longer than needed, so `budget status` just after a reset still finds it.
        return Slot(key, 0, 0, reset + (reset - start.timestamp()), reset, 0.0)


def parse_window(text: str, idle_ttl: float = 0.0) -> Window:
    """``session``, ``1d``, ``1mo`` or a duration (rolling); ``idle_ttl`` applies to ``session`` only.

    Raises:
        ValueError: none of them (the schema's pattern lets no other text through).
    """
    if text == SESSION:
        return Window(text, SESSION, idle_ttl=idle_ttl)
    if text in _CALENDAR:
        return Window(text, _CALENDAR[text])
    return Window(text, ROLLING, parse_duration(text))  # 0s passes here; config.check reports it
