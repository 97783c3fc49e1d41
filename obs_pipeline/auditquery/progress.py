"""Progress on stderr for a long read, in a terminal only: silence for scripts and quick reads.

Nothing is shown during the first second (:data:`DELAY_SECONDS`), so a small trail prints no
flicker; after that a one-line status (lines read, the current file) is redrawn a few times a
second. The clock is looked at once every :data:`CHECK_EVERY` lines, so the wrapper costs next
to nothing per line.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TextIO

from obs_pipeline.auditquery.trail import Line

__all__ = ["CHECK_EVERY", "DELAY_SECONDS", "with_progress"]

DELAY_SECONDS = 1.0
CHECK_EVERY = 4096
_REDRAW_SECONDS = 0.25


def with_progress(lines: Iterable[Line], stream: TextIO, label: str = "reading") -> Iterator[Line]:
    """``lines`` unchanged; when ``stream`` is a terminal and the read lasts over a second, a status on it."""
    if not stream.isatty():
        yield from lines
        return
    from rich.console import Console  # noqa: PLC0415 - only a terminal pays for rich

    console = Console(file=stream, stderr=True)
    started = time.monotonic()
    status = None
    count = 0
    next_draw = started + DELAY_SECONDS
    try:
        for line in lines:
            count += 1
            if count % CHECK_EVERY == 0 and (now := time.monotonic()) >= next_draw:
                text = f"{label}: {count:,} lines ({line.file.name})"
                if status is None:
                    status = console.status(text)
                    status.start()
                else:
                    status.update(text)
                next_draw = now + _REDRAW_SECONDS
            yield line
    finally:
        if status is not None:
            status.stop()
