"""Where reading stands, on disk: ``<data_dir>/receivers/<pct-encoded id>/checkpoints.json``.

One JSON document with every known file's fingerprint (hash and length), record-uid source, last
path (for people reading it) and the offset after the last line the pipeline *accepted*. It is
written whole to a temporary file, synced and renamed over the old one, so a crash leaves the old
or the new version, never a torn one. An unreadable checkpoint is set aside (renamed
``.corrupt``) and reading starts as on a first start.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterable
from hashlib import blake2b
from pathlib import Path
from typing import Any

import orjson

from obs_pipeline.receivers.file_tail.files import Tracked

VERSION = 1
FILE_NAME = "checkpoints.json"
MAX_NAME = 120


def directory(data_dir: Path, receiver_id: str) -> Path:
    """``<data_dir>/receivers/<id>``, the ID percent-encoded (``file_tail/agent`` -> ``file_tail%2Fagent``)."""
    name = urllib.parse.quote(receiver_id, safe="")
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME - 17]}-{blake2b(receiver_id.encode(), digest_size=8).hexdigest()}"
    return data_dir / "receivers" / name


class Checkpoints:
    """Loads and saves one receiver's checkpoint file."""

    def __init__(self, path: Path, fingerprint_size: int) -> None:
        self.path = path
        self.fingerprint_size = fingerprint_size

    def load(self) -> list[dict[str, Any]] | None:
        """The saved entries; None when there is no usable checkpoint.

        Raises:
            ValueError: the file exists and is not a checkpoint (it has been set aside).
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = orjson.loads(raw)
            entries = doc["files"]
            if doc.get("version") != VERSION or not isinstance(entries, list):
                raise TypeError("not a checkpoint")
            for e in entries:
                bytes.fromhex(e["fp"])
                if not (isinstance(e["fp_len"], int) and isinstance(e["offset"], int) and isinstance(e["uid"], str)):
                    raise TypeError("bad entry")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_suffix(".corrupt"))
            raise ValueError("checkpoint is not readable") from None
        return [e for e in entries if e["fp_len"] <= self.fingerprint_size]  # longer ones can match no head now

    def save(self, files: Iterable[Tracked]) -> None:
        """Write the committed offsets of ``files`` atomically (write, fsync, rename)."""
        doc = {
            "version": VERSION,
            "fingerprint_size": self.fingerprint_size,
            "files": [
                {"fp": t.fp_hash.hex(), "fp_len": t.fp_len, "uid": t.uid_source, "offset": t.committed, "path": t.path}
                for t in files
            ],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(doc))
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)
