"""The process exit codes of every command, defined once (DESIGN §7).

``run`` and ``validate`` share them, so a CI job reads the same number the same way whichever
command it ran.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What an ``obs-pipeline`` process's exit status means."""

    OK = 0  #: valid config; a run that ended with everything delivered
    FAILED = 1  #: invalid config, a component failed to start, or a run stopped by a fatal error
    USAGE = 2  #: bad command-line arguments (click's own code)
    DATA_LOST = 3  #: a run ended (end of input or a signal) with accepted items failed or dropped


__all__ = ["ExitCode"]
