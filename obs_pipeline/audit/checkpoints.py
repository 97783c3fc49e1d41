"""HMAC-signed checkpoints of a hash chain, in a side file ``<live>.checkpoints``.

A hash chain alone shows that no line was changed *unless the whole chain was recomputed*, and
cannot show that lines were cut from its end. A checkpoint signs where the chain stood (``seq``
and ``hash``) with a key the file's editor does not have, so a recomputed chain no longer
matches a signed hash, and a trail that ends before a signed ``seq`` was cut.

One JSON object per line: ``{"file": "audit.jsonl", "seq": 1000, "hash": "<hex>", "time":
"<RFC 3339 UTC>", "hmac": "<hex>"}``; ``hmac`` is HMAC-SHA256 with the key over the RFC 8785
canonical JSON of the object without ``hmac``. ``file`` is the live file's name when it was
written (informational: the line is found by its ``seq``, wherever rotation moved it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import rfc8785

from obs_pipeline.audit.chain import ChainState

__all__ = ["CHECKPOINT_SUFFIX", "Checkpoint", "CheckpointWriter", "checkpoint_path", "read_checkpoints", "sign"]

CHECKPOINT_SUFFIX = ".checkpoints"
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def checkpoint_path(live: Path) -> Path:
    """The side file of the trail whose live file is ``live``."""
    return live.with_name(live.name + CHECKPOINT_SUFFIX)


def sign(key: bytes, record: dict[str, Any]) -> str:
    """HMAC-SHA256 (hex) of ``record`` without ``hmac``, canonicalized (RFC 8785)."""
    body = rfc8785.dumps({k: v for k, v in record.items() if k != "hmac"})
    return hmac.new(key, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One line of the side file, read back."""

    number: int  # 1-based line number in the side file
    seq: int | None
    hash: str | None
    time: str | None
    valid: bool  # the HMAC matches (False as well for a line that is not a checkpoint at all)
    torn: bool = False  # not JSON: a write cut short (a crash), which signs nothing


def read_checkpoints(path: Path, key: bytes) -> Iterator[Checkpoint]:
    """The checkpoints in ``path``, each checked against ``key``.

    Raises:
        OSError: the file cannot be read.
    """
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield Checkpoint(number, None, None, None, valid=False, torn=True)
                continue
            if not isinstance(record, dict):
                yield Checkpoint(number, None, None, None, valid=False)
                continue
            seq, digest, when, mac = (record.get(k) for k in ("seq", "hash", "time", "hmac"))
            ok = (isinstance(seq, int) and isinstance(digest, str) and isinstance(mac, str)
                  and hmac.compare_digest(sign(key, record), mac))
            yield Checkpoint(number, seq if isinstance(seq, int) else None, digest if isinstance(digest, str) else None,
                             when if isinstance(when, str) else None, valid=ok)


class CheckpointWriter:
    """Appends a signed checkpoint every ``every_lines`` lines or ``every_seconds``, whichever comes first."""

    def __init__(self, live: Path, key: bytes, every_lines: int, every_seconds: float, *, sync: bool) -> None:
        self.path = checkpoint_path(live)
        self.live_name = live.name
        self.key = key
        self.every_lines = every_lines
        self.every_seconds = every_seconds
        self.sync = sync
        self._signed = ChainState()  # the last state signed (or found in the trail at start)
        self._at = time.monotonic()
        self._checked_end = False  # whether the side file is known to end with a newline (or be empty)

    def start_from(self, state: ChainState) -> None:
        """Count lines from ``state`` on (the trail's state at start): nothing before it is due."""
        self._signed = state
        self._at = time.monotonic()

    def due(self, state: ChainState, now: float | None = None) -> bool:
        """Whether lines were written since the last checkpoint and one is due."""
        unsigned = state.seq - self._signed.seq
        if unsigned <= 0:
            return False
        elapsed = (time.monotonic() if now is None else now) - self._at
        return unsigned >= self.every_lines or elapsed >= self.every_seconds

    def write(self, state: ChainState) -> None:
        """Append a checkpoint of ``state`` (one ``write()``), unless it is signed already.

        Raises:
            OSError: the side file cannot be written.
        """
        if state.seq <= self._signed.seq:
            return
        record: dict[str, Any] = {
            "file": self.live_name, "seq": state.seq, "hash": state.hash,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        record["hmac"] = sign(self.key, record)
        payload = orjson.dumps(record) + b"\n"
        if not self._checked_end and not _ends_with_newline(self.path):
            payload = b"\n" + payload  # a torn last checkpoint (a crash mid-write) stays a line of its own
        fd = os.open(self.path, _FLAGS, 0o600)
        try:
            self._checked_end = False  # until this write is known to be whole
            os.write(fd, payload)
            if self.sync:
                os.fsync(fd)
            self._checked_end = True
        finally:
            os.close(fd)
        self._signed = state
        self._at = time.monotonic()


def _ends_with_newline(path: Path) -> bool:
    """Whether ``path`` is missing, empty or ends with a newline (unreadable counts as "no": add one)."""
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            if not end:
                return True
            f.seek(end - 1)
            return f.read(1) == b"\n"
    except FileNotFoundError:
        return True
    except OSError:
        return False
