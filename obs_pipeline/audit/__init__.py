"""The audit line and its file, apart from any exporter.

What ``jsonl_audit`` writes and the ``audit``, ``cost`` and ``replay`` commands read:

* :mod:`.line`: the keys in order, the categories and results, the one builder;
* :mod:`.files`: which files make up a trail (the rotated-file naming rule), in write order;
* :mod:`.reader`: iterate an audit file's lines, reporting a partial or unparsable one;
* :mod:`.hook`: the seam where a line is sealed before it is written;
* :mod:`.chain`, :mod:`.checkpoints`, :mod:`.verify`: the hash chain, its signed checkpoints and
  ``audit verify``.
"""

from __future__ import annotations

from obs_pipeline.audit.hook import NO_HOOK, LineHook
from obs_pipeline.audit.line import CATEGORIES, KEYS, RESULTS, AuditLine, build
from obs_pipeline.audit.reader import BadLine, Entry, read_entries

__all__ = ["CATEGORIES", "KEYS", "NO_HOOK", "RESULTS", "AuditLine", "BadLine", "Entry", "LineHook", "build",
           "read_entries"]
