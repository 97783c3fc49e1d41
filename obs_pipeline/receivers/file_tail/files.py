"""Which files to read, and which file each one is: discovery and identity by fingerprint.

A file is known by a fingerprint of its first ``fingerprint_size`` bytes (a hash of them and
their length), not by its name or inode: a file renamed by a rotation is the same file and is
neither read again nor lost; a file shorter than the fingerprint size matches a longer one that
starts with the same bytes (it grew). Each scan globs the ``include`` patterns, drops what
``exclude`` matches, and looks at every path whose size, inode or mtime changed:

* a new fingerprint is a new file, read from the start (from its end on the first scan with
  ``start_at: end``);
* a known fingerprint on another inode while the known file was truncated is a copytruncate
  copy: reading goes on in the copy at the same offset; while the original is whole it is a
  plain copy and the file is read once;
* a known file smaller than what was read was truncated in place: it is read again from the start
  when it still starts with the same bytes, otherwise its new content is a new file;
* a known file that no longer matches any path (deleted, or rotated out of the pattern) keeps
  its open descriptor and is read to its end, then dropped after :data:`KEEP_GENERATIONS` scans.

Problem paths (a directory, no read permission, a symlink loop) are counted once per path and
logged for the first :data:`LOGGED_PROBLEMS` of each kind; the scan goes on with the others.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import hashlib
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from obs_pipeline.receivers.file_tail.splitter import LineSplitter

KEEP_GENERATIONS = 3  # scans a file that matches no path is kept (and read to its end) before being dropped
LOGGED_PROBLEMS = 10  # per kind of problem, paths logged before they are only counted
NOT_REGULAR, PERMISSION_DENIED, SYMLINK_LOOP, IO_ERROR = "not_regular", "permission_denied", "symlink_loop", "io_error"
PROBLEMS = (NOT_REGULAR, PERMISSION_DENIED, SYMLINK_LOOP, IO_ERROR)


def fingerprint(head: bytes) -> bytes:
    """The hash of a file's first bytes (16 bytes of BLAKE2b)."""
    return hashlib.blake2b(head, digest_size=16).digest()


def uid_source(head: bytes) -> str:
    """A file's stable name in record uids: the hash of its first line (bounded by the fingerprint size)."""
    newline = head.find(b"\n")
    first = head if newline < 0 else head[: newline + 1]
    return "file:" + hashlib.blake2b(first, digest_size=16).hexdigest()


def _basename(path: str) -> str:
    return path.rpartition(os.sep)[2]


class Tracked:
    """One known file: its identity, its open descriptor (if any) and where reading is."""

    __slots__ = ("backlog", "committed", "dev", "dropped", "fd", "fp_hash", "fp_len", "idle_since", "ino", "name",
                 "path", "splitter", "truncated", "uid_source", "unseen")

    def __init__(self, *, fp_len: int, fp_hash: bytes, uid: str, path: str, offset: int, max_line_size: int) -> None:
        self.fp_len = fp_len
        self.fp_hash = fp_hash
        self.uid_source = uid
        self.path = path
        self.name = _basename(path)
        self.fd: int | None = None
        self.dev = self.ino = -1
        self.splitter = LineSplitter(max_line_size, offset)
        self.committed = offset  # the end of the last line the pipeline accepted
        self.unseen = 0  # scans in a row that found no path for it
        self.truncated = False
        self.dropped = False
        self.backlog = False  # closed (too many open files) with bytes not read yet
        self.idle_since = time.monotonic()

    def close(self) -> None:
        """Close the descriptor (the state is kept)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def problem_kind(exc: OSError) -> str | None:
    """The counted kind of an OS error on a path; None for one that vanished meanwhile."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return None
    if exc.errno == errno.ELOOP:
        return SYMLINK_LOOP
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PERMISSION_DENIED
    if exc.errno == errno.EISDIR:
        return NOT_REGULAR
    return IO_ERROR


class Tracker:
    """The known files of one receiver; :meth:`scan` updates them from the file system."""

    def __init__(self, *, include: Iterable[str], exclude: Iterable[str], fingerprint_size: int,
                 max_line_size: int, max_open: int, start_at_end: bool,
                 on_problem: Callable[[str, str, bool], None], on_event: Callable[[str], None]) -> None:
        self.include = [str(Path(p).expanduser()) for p in include]
        self.exclude = [str(Path(p).expanduser()) for p in exclude]
        self.fingerprint_size = fingerprint_size
        self.max_line_size = max_line_size
        self.max_open = max_open
        self.start_at_end = start_at_end
        self.files: list[Tracked] = []
        self._index: dict[tuple[int, bytes], Tracked] = {}
        self._lengths: Counter[int] = Counter()
        self._cache: dict[str, tuple[int, int, int, int, Tracked]] = {}
        self._problems: dict[str, str] = {}
        self._logged: Counter[str] = Counter()
        self._on_problem = on_problem  # (path, kind, log_it)
        self._on_event = on_event  # "copytruncate" | "in_place": a truncation was followed
        self.first_scan = True
        self.matched = 0
        self.open_count = 0
        self._holders: dict[tuple[int, int], Tracked] = {}  # (dev, inode) -> the file reading it

    # -- identity -------------------------------------------------------------------------------

    def _add_index(self, t: Tracked) -> None:
        self._index[(t.fp_len, t.fp_hash)] = t
        self._lengths[t.fp_len] += 1

    def _drop_index(self, t: Tracked) -> None:
        if self._index.get((t.fp_len, t.fp_hash)) is t:
            del self._index[(t.fp_len, t.fp_hash)]
        self._lengths[t.fp_len] -= 1
        if self._lengths[t.fp_len] <= 0:
            del self._lengths[t.fp_len]

    def _match(self, head: bytes) -> Tracked | None:
        """The known file whose fingerprint ``head`` starts with (the longest such fingerprint)."""
        for length in sorted((n for n in self._lengths if n <= len(head)), reverse=True):
            t = self._index.get((length, fingerprint(head[:length])))
            if t is not None:
                return t
        return None

    def refresh_fingerprint(self, t: Tracked) -> None:
        """Lengthen ``t``'s fingerprint after it grew (only while shorter than the fingerprint size)."""
        if t.fd is None or t.fp_len >= self.fingerprint_size:
            return
        head = os.pread(t.fd, self.fingerprint_size, 0)
        if len(head) > t.fp_len and fingerprint(head[: t.fp_len]) == t.fp_hash:
            self._drop_index(t)
            t.fp_len, t.fp_hash = len(head), fingerprint(head)
            self._add_index(t)

    def restore(self, entries: Iterable[dict[str, Any]]) -> None:
        """Known files from a checkpoint (no descriptor until a scan finds them)."""
        for entry in entries:
            t = Tracked(fp_len=entry["fp_len"], fp_hash=bytes.fromhex(entry["fp"]), uid=entry["uid"],
                        path=entry["path"], offset=entry["offset"], max_line_size=self.max_line_size)
            self.files.append(t)
            self._add_index(t)

    def forget(self, t: Tracked) -> None:
        """Drop ``t`` for good (closing it)."""
        self.close(t)
        t.dropped = True
        self._drop_index(t)
        self.files.remove(t)

    def close(self, t: Tracked) -> None:
        """Close ``t``'s descriptor, keeping its state."""
        if t.fd is not None:
            t.close()
            self.open_count -= 1
            if self._holders.get((t.dev, t.ino)) is t:
                del self._holders[(t.dev, t.ino)]

    def same_file(self, t: Tracked) -> bool:
        """Whether ``t``'s descriptor still starts with its fingerprint (False: truncated or rewritten)."""
        if t.fd is None:
            return False
        return fingerprint(os.pread(t.fd, t.fp_len, 0)) == t.fp_hash

    def ensure_open(self, t: Tracked) -> bool:
        """Reopen a file closed for the descriptor limit (False when its path is no longer it)."""
        if t.fd is not None:
            return True
        try:
            fd = os.open(t.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            t.backlog = False
            return False
        st = os.fstat(fd)
        head = os.pread(fd, t.fp_len, 0)
        if (st.st_dev, st.st_ino) != (t.dev, t.ino) and fingerprint(head) != t.fp_hash:
            os.close(fd)
            t.backlog = False
            return False
        self._attach(t, fd, st, t.path)
        t.backlog = False
        return True

    def limit_open(self) -> None:
        """Close idle files (read to their end) past ``max_open`` descriptors; half as many while others wait."""
        waiting = any(t.backlog for t in self.files)
        target = self.max_open // 2 if waiting else self.max_open
        if self.open_count <= target:
            return
        idle = sorted((t for t in self.files if t.fd is not None and not t.splitter.pending),
                      key=lambda t: t.idle_since)
        for t in idle:
            if self.open_count <= target:
                break
            if t.fd is not None and os.fstat(t.fd).st_size == t.splitter.pos:
                self.close(t)

    # -- scanning -------------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """The paths the globs match now, sorted, without the excluded ones."""
        found: set[str] = set()
        for pattern in self.include:
            found.update(glob.glob(pattern, recursive=True))  # noqa: PTH207 - absolute patterns; Path.glob takes relative ones
        if self.exclude:
            found = {p for p in found if not any(fnmatch.fnmatch(p, x) for x in self.exclude)}
        return sorted(found)

    def scan(self) -> None:
        """Match every path to a known file or a new one; age the files no path matched."""
        for known in self.files:
            if known.fd is not None and os.fstat(known.fd).st_size < known.splitter.pos:
                known.truncated = True
        paths = self.discover()
        self.matched = len(paths)
        seen: set[Tracked] = set()
        cache: dict[str, tuple[int, int, int, int, Tracked]] = {}
        problems: dict[str, str] = {}
        for path in paths:
            try:
                st = os.stat(path)  # noqa: PTH116 - str paths: the scan stats thousands of them
                if not stat.S_ISREG(st.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "not a regular file")
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                hit = self._cache.get(path)
                if hit is not None and hit[:4] == key and not hit[4].truncated and not hit[4].dropped:
                    t: Tracked | None = hit[4]
                else:
                    t = self._examine(path, st)
            except OSError as exc:
                kind = problem_kind(exc)
                if kind is not None:
                    problems[path] = kind
                continue
            if t is not None:
                seen.add(t)
                cache[path] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, t)
        self._cache = cache
        self._report(problems)
        self._resolve_truncations(cache)
        for known in self.files:
            known.unseen = 0 if known in seen else known.unseen + 1
        self.limit_open()
        self.first_scan = False

    def _report(self, problems: dict[str, str]) -> None:
        for path, kind in problems.items():
            if self._problems.get(path) != kind:
                self._logged[kind] += 1
                self._on_problem(path, kind, self._logged[kind] <= LOGGED_PROBLEMS)
        self._problems = problems

    def _examine(self, path: str, st: os.stat_result) -> Tracked | None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)  # the file opened, which a rotation may have put in place since the stat
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file")
            head = os.pread(fd, self.fingerprint_size, 0)
        except OSError:
            os.close(fd)
            raise
        if not head:  # nothing to identify it by yet
            os.close(fd)
            return None
        t = self._match(head)
        if t is None:
            holder = self._holders.get((st.st_dev, st.st_ino))
            if holder is not None:  # its reader's file now starts differently: truncated and written again
                holder.truncated = True
            start = st.st_size if self.first_scan and self.start_at_end else 0
            t = Tracked(fp_len=len(head), fp_hash=fingerprint(head), uid=uid_source(head), path=path,
                        offset=start, max_line_size=self.max_line_size)
            self._attach(t, fd, st, path)
            self.files.append(t)
            self._add_index(t)
            return t
        if t.fd is None:
            self._attach(t, fd, st, path)
            if st.st_size < t.splitter.pos:
                self._restart(t, head)
            return t
        if (t.dev, t.ino) == (st.st_dev, st.st_ino):
            os.close(fd)
            t.path, t.name = path, _basename(path)  # renamed
            if st.st_size < t.splitter.pos:
                self._restart(t, head)
            return t
        if t.truncated:  # the original was truncated: this is its copy, go on reading there
            self.close(t)
            self._attach(t, fd, st, path)
            t.truncated = False
            self._on_event("copytruncate")
            return t
        os.close(fd)  # a copy of a file that is still whole: read it once, from the original
        return t

    def _attach(self, t: Tracked, fd: int, st: os.stat_result, path: str) -> None:
        t.path, t.name = path, _basename(path)
        t.dev, t.ino = st.st_dev, st.st_ino
        if self.open_count >= self.max_open:  # over the limit: read it later, reopened by ensure_open
            os.close(fd)
            t.backlog = st.st_size > t.splitter.pos
            return
        t.fd = fd
        self.open_count += 1
        self._holders[(st.st_dev, st.st_ino)] = t

    def _restart(self, t: Tracked, head: bytes) -> None:
        """``t`` was truncated in place and starts with the same bytes: read it again from the start."""
        self._drop_index(t)
        t.fp_len, t.fp_hash = len(head), fingerprint(head)
        self._add_index(t)
        t.splitter.reset(0)
        t.committed = 0
        t.truncated = False
        self._on_event("in_place")

    def _resolve_truncations(self, cache: dict[str, tuple[int, int, int, int, Tracked]]) -> None:
        """Look again at a truncated file's copies seen earlier; with none, its new content is a new file."""
        for t in [t for t in self.files if t.truncated]:
            for path, hit in list(cache.items()):
                if hit[4] is t and (hit[0], hit[1]) != (t.dev, t.ino) and t.truncated:
                    try:
                        self._examine(path, os.stat(path))  # noqa: PTH116 - str paths, as in scan
                    except OSError:
                        continue
            if t.truncated:
                self._on_event("in_place")
                self.forget(t)
