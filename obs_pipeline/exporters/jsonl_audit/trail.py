"""The audit trails an exporter writes: one per resolved path, each a live file with its chain.

A :class:`Trail` is one live file (:class:`~.writer.AuditFile`: one ``write()`` per batch,
reopened when its path is replaced), rotated before a batch when due (:mod:`.rotation`), its
lines sealed by the hash chain (:mod:`obs_pipeline.audit.chain`) and its checkpoints signed.
The chain's state is trusted only while the file is known: at each (re)open, and after a failed
write (which may have reached the file in part), it is read back from the trail's tail, so the
chain goes on after the last line really written, across restarts and torn lines.

:class:`Trails` routes each batch's lines to their trails by the path template (:mod:`.paths`),
one write per trail per batch, and keeps at most ``max_open_files`` open (the least recently
used one is checkpointed and closed first; it is opened again, and its chain resumed from its
file, when a line comes for it).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from obs_pipeline.audit.chain import HashChain
from obs_pipeline.audit.checkpoints import CheckpointWriter
from obs_pipeline.audit.hook import NO_HOOK, LineHook
from obs_pipeline.exporters._helper import map_errors
from obs_pipeline.exporters.jsonl_audit.options import CheckpointOptions, Fsync
from obs_pipeline.exporters.jsonl_audit.paths import PathTemplate
from obs_pipeline.exporters.jsonl_audit.rotation import Maintenance, Rotation, rotate, sync_directory
from obs_pipeline.exporters.jsonl_audit.writer import AuditFile, frame, make_parents

__all__ = ["Trail", "TrailOptions", "Trails"]

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass(frozen=True, kw_only=True)
class TrailOptions:
    """What the trails need of the exporter's config."""

    fsync: Fsync = Fsync.NEVER
    rotation: Rotation | None = None
    hash_chain: bool = False
    checkpoint: CheckpointOptions | None = None
    max_open_files: int = 64
    hook: LineHook = NO_HOOK  # applied to each line when there is no chain (a test's seam)

    def __post_init__(self) -> None:
        """Refuse a hook beside the hash chain: the chain seals every line, so the hook would never run."""
        if self.hash_chain and self.hook is not NO_HOOK:
            raise ValueError("a line hook and hash_chain exclude each other: the chain is the trail's hook")


@dataclass(frozen=True, kw_only=True)
class Hooks:
    """Where a trail reports what it found: the exporter's counters, and the maintenance task."""

    torn: Callable[[int], None]
    maintenance: Maintenance


class Trail:
    """One live audit file. Not thread-safe: the exporter uses it from the event loop."""

    def __init__(self, path: Path, opts: TrailOptions, log: Log, hooks: Hooks) -> None:
        self.file = AuditFile(path, log)
        self.opts = opts
        self.log = log
        self.hooks = hooks
        self.chain = HashChain() if opts.hash_chain else None
        self.checkpoints: CheckpointWriter | None = None
        if self.chain is not None and opts.checkpoint is not None:
            cp = opts.checkpoint
            self.checkpoints = CheckpointWriter(self.file.path, cp.key.reveal().encode(), cp.every_lines, cp.every,
                                                sync=opts.fsync is Fsync.ALWAYS)
        self._generation = 0  # ``file.opened`` when the chain state was last read back
        self._chain_known = False
        self._started = datetime.now(UTC)  # when the live file was started (daily rotation)

    def open(self) -> None:
        """Open the file now (at start), reading the chain back from its tail.

        Raises:
            OSError: as :meth:`AuditFile.open`.
        """
        self.file.open()
        self._opened()

    def _opened(self) -> None:
        """After the file was (re)opened: its start day, the chain's state, the maintenance's notice."""
        f = self.file
        self._generation = f.opened
        self._started = datetime.fromtimestamp(f.modified, UTC) if f.size else datetime.now(UTC)
        if f.is_regular:
            self.hooks.maintenance.notice(f.path)
            if self.opts.fsync is Fsync.ALWAYS and not f.size:
                sync_directory(f.path.parent)
        self._resume()

    def _resume(self) -> None:
        chain = self.chain
        if chain is None:
            return
        if self.file.is_regular:
            found = chain.resume(self.file.path)
            if found.torn:
                self.log.warning("audit file %s: %d torn line(s) at its end (a crash mid-write); the hash chain "
                                 "resumes after seq %d", found.file or self.file.path, found.torn, found.state.seq)
                self.hooks.torn(found.torn)
            if self.checkpoints is not None:
                self.checkpoints.start_from(found.state)
        self._chain_known = True

    async def write(self, lines: list[bytes]) -> None:
        """Seal and append ``lines`` in one write, rotating first when due.

        Raises:
            OSError: the open, the rotation or the write failed; the file is closed and the chain
                is read back from the file before the next write.
        """
        f = self.file
        f.prepare()
        if f.opened != self._generation or not self._chain_known:
            self._opened()
        payload = frame(lines, self.chain if self.chain is not None else self.opts.hook)
        rotation = self.opts.rotation
        now = datetime.now(UTC)
        if rotation is not None and f.is_regular and rotation.due(f.size, len(payload), self._started, now):
            await self._rotate(now)
        try:
            await f.append(payload)
        except BaseException:
            self._chain_known = False  # part of the batch may be in the file: read the chain back
            raise

    async def flush(self) -> None:
        """After a write: fsync as configured, then sign a checkpoint when one is due.

        Raises:
            OSError: the fsync failed; the file is closed and will be reopened next time.
        """
        if self.opts.fsync is not Fsync.NEVER:
            await asyncio.to_thread(self.file.sync)  # a disk flush takes milliseconds: off the event loop
        self.checkpoint(only_if_due=True)

    async def _rotate(self, now: datetime) -> None:
        """Rename the live file away and open a new one; the renames and directory fsyncs run off the event loop."""
        f = self.file
        always = self.opts.fsync is Fsync.ALWAYS

        def blocking() -> Path:
            f.close()
            rotated = rotate(f.path, now, sync_dir=always)
            f.prepare()
            if always:
                sync_directory(f.path.parent)
            return rotated

        rotated = await asyncio.to_thread(blocking)
        self.log.info("rotated audit file %s to %s", f.path, rotated.name)
        self._generation = f.opened  # a new file, the same chain: nothing to read back
        self._started = now
        self.hooks.maintenance.notice(f.path)  # sets an asyncio event: on the loop

    def checkpoint(self, *, only_if_due: bool) -> None:
        """Sign where the chain stands (when due, or whenever lines are unsigned). Logs a failure, never raises."""
        cp, chain = self.checkpoints, self.chain
        if cp is None or chain is None or not self._chain_known:
            return
        if only_if_due and not cp.due(chain.state):
            return
        try:
            cp.write(chain.state)
        except OSError as exc:
            self.log.warning("cannot write checkpoint file %s: %s; trying again with the next batch", cp.path,
                             exc.strerror or type(exc).__name__)

    def close(self) -> None:
        """Sign the last lines, then close the file."""
        self.checkpoint(only_if_due=False)
        self.file.close()


class Trails:
    """Every trail of one exporter, by path, at most ``max_open_files`` of them open."""

    def __init__(self, template: PathTemplate, opts: TrailOptions, log: Log, hooks: Hooks, name: str) -> None:
        self.template = template
        self.opts = opts
        self.log = log
        self.hooks = hooks
        self.name = name  # the exporter's id, for error messages
        self._open: OrderedDict[Path, Trail] = OrderedDict()
        #: The one trail of a path without placeholders (the common case), made at once.
        self.single = Trail(template.resolve({}, {}), opts, log, hooks) if template.static else None

    def open(self) -> None:
        """Open the single trail now; for a template, create the directory its files go under.

        A template's files open when their first line comes.

        Raises:
            OSError: the single file cannot be opened, or the template's directory cannot be made.
        """
        if self.single is not None:
            self.single.open()
            return
        root = self.template.root
        make_parents(root)
        if not root.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(root))
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(root))

    def route(self, lines: list[bytes], resource: dict[str, str]) -> dict[Path, list[bytes]]:
        """``lines`` grouped by the file each goes to, in order."""
        if self.single is not None:
            return {self.single.file.path: lines}
        keys = self.template.line_keys
        groups: dict[Path, list[bytes]] = {}
        for line in lines:
            values = orjson.loads(line) if keys else {}
            groups.setdefault(self.template.resolve(values, resource), []).append(line)
        return groups

    async def write(self, groups: dict[Path, list[bytes]]) -> None:
        """Write each group to its trail (one write each).

        Raises:
            RetryableError | PermanentError: a write failed (see ``map_errors``).
        """
        for path, lines in groups.items():
            trail = self.single if self.single is not None else self._trail(path)
            with map_errors(f"{self.name}: cannot write {path}", reopens=trail.file.reopens):
                await trail.write(lines)
            with map_errors(f"{self.name}: cannot fsync {path}", reopens=trail.file.reopens):
                await trail.flush()

    def _trail(self, path: Path) -> Trail:
        trail = self._open.get(path)
        if trail is not None:
            self._open.move_to_end(path)
            return trail
        while len(self._open) >= self.opts.max_open_files:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        trail = self._open[path] = Trail(path, self.opts, self.log, self.hooks)
        return trail

    def all(self) -> list[Trail]:
        """Every trail made so far (open or closed)."""
        return [self.single] if self.single is not None else list(self._open.values())

    def checkpoint_due(self) -> None:
        """Sign every trail whose checkpoint is due (the ``every`` timer)."""
        for trail in self.all():
            trail.checkpoint(only_if_due=True)

    def close(self) -> None:
        """Sign and close every trail."""
        for trail in self.all():
            trail.close()
        self._open.clear()
