"""The file-side options of ``jsonl_audit``: fsync, rotation, retention, per-tenant paths, the hash chain.

Parsed from the schema-filled body by :func:`parse_file_options` into the fields of
:class:`~obs_pipeline.exporters.jsonl_audit.Config`; the trail code (:mod:`.trail`) reads them.

``fsync`` keeps its old boolean form: ``true`` was "fdatasync after each batch", which is
``batch``; ``false`` is ``never``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from obs_pipeline.exporters.jsonl_audit.rotation import Rotation
from obs_pipeline.secret import Secret
from obs_pipeline.units import parse_duration, parse_size

__all__ = ["CheckpointOptions", "Fsync", "parse_file_options"]


class Fsync(enum.StrEnum):
    """When written lines are flushed to the device."""

    ALWAYS = "always"  #: each batch, and the directory entries and checkpoints too (a rotation survives a power loss)
    BATCH = "batch"  #: one fdatasync after each batch's write (the old ``fsync: true``)
    NEVER = "never"  #: left to the kernel (the old ``fsync: false``)

    @classmethod
    def of(cls, value: Fsync | str | bool) -> Fsync:
        """``fsync`` as a policy: a word, or the old boolean (True: one flush per batch, False: never)."""
        if isinstance(value, bool):
            return cls.BATCH if value else cls.NEVER
        return cls(value)


@dataclass(frozen=True, kw_only=True)
class CheckpointOptions:
    """The ``checkpoint`` block: sign where the chain stands every ``every_lines`` lines or ``every``."""

    key: Secret
    every_lines: int = 1000
    every: float = 60.0  # seconds


def parse_file_options(raw: dict[str, Any]) -> dict[str, Any]:
    """The file-side :class:`Config` fields from the schema-filled body (every key is there)."""
    fsync = Fsync.of(raw["fsync"])
    rotation = raw["rotation"]
    checkpoint = raw["checkpoint"]
    return {
        "fsync": fsync,
        "rotation": None if rotation is None else Rotation(
            max_size=None if rotation["max_size"] is None else parse_size(rotation["max_size"]),
            daily=rotation["daily"], compress=rotation["compress"]),
        "retention_days": raw["retention_days"],
        "max_open_files": raw["max_open_files"],
        "path_fallback": raw["path_fallback"],
        "hash_chain": raw["hash_chain"],
        "checkpoint": None if checkpoint is None else CheckpointOptions(
            key=checkpoint["key"], every_lines=checkpoint["every_lines"], every=parse_duration(checkpoint["every"])),
    }
