"""The audit line and its file, apart from any exporter.

What ``jsonl_audit`` writes and the coming ``audit``/``replay`` commands will read:

* :mod:`.line`: the keys in order, the categories and results, the one builder;
* :mod:`.reader`: iterate an audit file's lines, reporting a partial or unparsable one;
* :mod:`.hook`: the seam where the hash chain will seal each line before it is written.
"""

from __future__ import annotations

from obs_pipeline.audit.hook import NO_HOOK, LineHook
from obs_pipeline.audit.line import CATEGORIES, KEYS, RESULTS, AuditLine, build
from obs_pipeline.audit.reader import BadLine, Entry, read_entries

__all__ = ["CATEGORIES", "KEYS", "NO_HOOK", "RESULTS", "AuditLine", "BadLine", "Entry", "LineHook", "build",
           "read_entries"]
