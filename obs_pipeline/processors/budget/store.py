"""The state store contract and its SQLite implementation.

Spend is an integer number of nano-dollars, so sums are exact in SQLite, in Redis and across
processes. One :meth:`Store.apply` call charges a whole batch atomically: each charge adds its
amount to its window, reads the window's spend back, and marks the events it fires (bit 0:
exceeded, bit i: ``warn_at[i-1]``) in the same transaction, so of several processes charging
one scope exactly one sees each event fire.

SQLite: WAL mode with ``synchronous=NORMAL`` (a committed charge survives a crash of the process;
an OS crash may lose the last moments), ``BEGIN IMMEDIATE`` transactions, so processes on one host
may share the file. Calls are short and run on the event loop.
"""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from obs_pipeline.processors.budget.windows import Slot

__all__ = ["EXCEEDED_BIT", "Charge", "Outcome", "Reading", "SqliteStore", "Store", "events_bits"]

EXCEEDED_BIT = 1
_CLEANUP_EVERY = 60.0  # seconds between deletions of expired rows


@dataclass(frozen=True, kw_only=True)
class Charge:
    """Spend to add to one budget's scope value in one window slot."""

    budget: str
    scope_value: str
    slot: Slot
    amount: int  # nano-dollars, >= 0
    limit: int  # nano-dollars
    thresholds: tuple[int, ...] = ()  # nano-dollars, ascending
    block: bool = False  # fail_closed unpriced usage: exceeded for the rest of the window
    mark: int = 0  # event bits to mark fired without reporting them (reconciling an outage)
    seq: int = 0  # the Redis store's per-process charge sequence (0: not numbered)


@dataclass(frozen=True)
class Outcome:
    """A charge's result: the spend after it, the event bits it fired first, whether blocked."""

    spend: int
    fired: int
    blocked: bool


@dataclass(frozen=True)
class Reading:
    """A window's spend now, whether it is blocked, the event bits fired so far."""

    spend: int = 0
    blocked: bool = False
    fired: int = 0


def events_bits(spend: int, limit: int, thresholds: Sequence[int], *, blocked: bool) -> int:
    """The event bits that ``spend`` has reached."""
    bits = EXCEEDED_BIT if spend >= limit or blocked else 0
    for i, threshold in enumerate(thresholds, 1):
        if spend >= threshold:
            bits |= 1 << i
    return bits


class Store(abc.ABC):
    """Where spend lives. Every method may raise on I/O; the processor decides what that means."""

    #: ``sqlite`` or ``redis``, for messages and ``budget status``.
    kind = "store"

    @property
    def degraded(self) -> bool:
        """Whether the store is answering from a local fallback (Redis away)."""
        return False

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect or create; raise ``StartupError`` with a clear reason when that fails."""

    @abc.abstractmethod
    async def apply(self, charges: Sequence[Charge], now: float) -> list[Outcome]:
        """Charge everything atomically; one outcome per charge, in order."""

    @abc.abstractmethod
    async def read(self, budget: str, scope_value: str, slot: Slot, now: float) -> Reading:
        """The state of one window."""

    @abc.abstractmethod
    async def scopes(self, budget: str, slot: Slot, now: float, limit: int) -> list[tuple[str, Reading]]:
        """Up to ``limit`` scope values with spend (or a block) in ``slot``, most spent first."""

    async def total(self, budget: str, slot: Slot, now: float) -> int:
        """Spend in ``slot`` over every scope value of ``budget`` (the spend gauge), in nano-dollars.

        The default adds up :meth:`scopes`; stores override it with one aggregate, so the gauge
        costs the same however many scope values there are.
        """
        return sum(reading.spend for _, reading in await self.scopes(budget, slot, now, 1 << 31))

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    budget TEXT NOT NULL, scope TEXT NOT NULL, win TEXT NOT NULL, bucket INTEGER NOT NULL,
    amount INTEGER NOT NULL, expires REAL, PRIMARY KEY (budget, scope, win, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS marks (
    budget TEXT NOT NULL, scope TEXT NOT NULL, win TEXT NOT NULL, fired INTEGER NOT NULL,
    blocked INTEGER NOT NULL, expires REAL, PRIMARY KEY (budget, scope, win)) WITHOUT ROWID;
"""
# An expired row (not yet cleaned up) starts again from the new amount.
_ADD = ("INSERT INTO spend VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (budget, scope, win, bucket) DO UPDATE SET "
        "amount = CASE WHEN expires IS NOT NULL AND expires <= ?7 THEN excluded.amount ELSE amount + excluded.amount END, "
        "expires = excluded.expires")
_SUM = ("SELECT COALESCE(SUM(amount), 0) FROM spend WHERE budget = ? AND scope = ? AND win = ? AND bucket >= ? "
        "AND (expires IS NULL OR expires > ?)")
_MARKS = "SELECT fired, blocked, expires FROM marks WHERE budget = ? AND scope = ? AND win = ?"
_SET_MARKS = "INSERT OR REPLACE INTO marks VALUES (?, ?, ?, ?, ?, ?)"
_SLIDE_MARKS = "UPDATE marks SET expires = ? WHERE budget = ? AND scope = ? AND win = ?"


class SqliteStore(Store):
    """Spend in a SQLite file (or ``:memory:``, the Redis store's fallback)."""

    kind = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._cleaned = 0.0

    async def open(self) -> None:
        """Create the file and tables (WAL mode)."""
        self.connect()

    def connect(self) -> sqlite3.Connection:
        """The connection, opened on first use."""
        if self._db is None:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def apply(self, charges: Sequence[Charge], now: float) -> list[Outcome]:
        """Charge everything in one ``BEGIN IMMEDIATE`` transaction."""
        return self.apply_now(charges, now)

    def apply_now(self, charges: Sequence[Charge], now: float) -> list[Outcome]:
        """:meth:`apply`, synchronously."""
        db = self.connect()
        out: list[Outcome] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for c in charges:
                out.append(self._charge(db, c, now))
            if now - self._cleaned > _CLEANUP_EVERY:
                self._cleaned = now
                db.execute("DELETE FROM spend WHERE expires IS NOT NULL AND expires <= ?", (now,))
                db.execute("DELETE FROM marks WHERE expires IS NOT NULL AND expires <= ?", (now,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    @staticmethod
    def _charge(db: sqlite3.Connection, c: Charge, now: float) -> Outcome:
        key = (c.budget, c.scope_value, c.slot.key)
        if c.amount:
            db.execute(_ADD, (*key, c.slot.bucket, c.amount, c.slot.expires, now))
        spend = int(db.execute(_SUM, (*key, c.slot.first_bucket, now)).fetchone()[0])
        fired, blocked, expires = _marks(db, key, now)
        blocked = blocked or c.block
        bits = events_bits(spend, c.limit, c.thresholds, blocked=blocked) | c.mark
        new = bits & ~fired
        if new or c.block:
            if expires is None or expires <= now or c.slot.sliding:
                expires = now + c.slot.fired_ttl if c.slot.fired_ttl else c.slot.expires
            db.execute(_SET_MARKS, (*key, fired | bits, int(blocked), expires))
        elif c.slot.sliding and (fired or blocked):  # an active session keeps its fired events
            db.execute(_SLIDE_MARKS, (c.slot.expires, *key))
        return Outcome(spend, new & ~c.mark, blocked)

    async def read(self, budget: str, scope_value: str, slot: Slot, now: float) -> Reading:
        """The state of one window."""
        return self.read_now(budget, scope_value, slot, now)

    def read_now(self, budget: str, scope_value: str, slot: Slot, now: float) -> Reading:
        """:meth:`read`, synchronously."""
        db = self.connect()
        key = (budget, scope_value, slot.key)
        spend = int(db.execute(_SUM, (*key, slot.first_bucket, now)).fetchone()[0])
        fired, blocked, _ = _marks(db, key, now)
        return Reading(spend, blocked, fired)

    async def scopes(self, budget: str, slot: Slot, now: float, limit: int) -> list[tuple[str, Reading]]:
        """Scope values with spend or a block in ``slot``, most spent first."""
        db = self.connect()
        rows = db.execute(
            "SELECT scope, SUM(amount) FROM spend WHERE budget = ? AND win = ? AND bucket >= ? "
            "AND (expires IS NULL OR expires > ?) GROUP BY scope ORDER BY SUM(amount) DESC LIMIT ?",
            (budget, slot.key, slot.first_bucket, now, limit),
        ).fetchall()
        found = {scope: int(total) for scope, total in rows}
        marks = db.execute(
            "SELECT scope, fired, blocked FROM marks WHERE budget = ? AND win = ? AND (expires IS NULL OR expires > ?)",
            (budget, slot.key, now),
        ).fetchall()
        state = {scope: (int(fired), bool(blocked)) for scope, fired, blocked in marks}
        for scope, (_fired, blocked) in state.items():
            if blocked and scope not in found and len(found) < limit:
                found[scope] = 0
        return [(scope, Reading(spend, *_flip(state.get(scope, (0, False))))) for scope, spend in found.items()]

    async def total(self, budget: str, slot: Slot, now: float) -> int:
        """Spend in ``slot`` over every scope value of ``budget``: one SUM."""
        return self.total_now(budget, slot, now)

    def total_now(self, budget: str, slot: Slot, now: float) -> int:
        """:meth:`total`, synchronously."""
        row = self.connect().execute(
            "SELECT COALESCE(SUM(amount), 0) FROM spend WHERE budget = ? AND win = ? AND bucket >= ? "
            "AND (expires IS NULL OR expires > ?)", (budget, slot.key, slot.first_bucket, now)).fetchone()
        return int(row[0])

    async def close(self) -> None:
        """Close the file."""
        db, self._db = self._db, None
        if db is not None:
            db.close()


def _flip(marks: tuple[int, bool]) -> tuple[bool, int]:
    return marks[1], marks[0]


def _marks(db: sqlite3.Connection, key: tuple[str, str, str], now: float) -> tuple[int, bool, float | None]:
    row = db.execute(_MARKS, key).fetchone()
    if row is None or (row[2] is not None and row[2] <= now):
        return 0, False, None
    return int(row[0]), bool(row[1]), row[2]
