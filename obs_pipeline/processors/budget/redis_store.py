"""Spend in Redis, shared by many pipelines: one Lua script per charge, keys that expire with their window.

Keys (``key_prefix`` first; budget and scope value percent-encoded inside a hash tag, so one
scope's keys share a Redis Cluster slot): ``<prefix>{<budget>/<scope>}:<window>:<step>`` holds
the spend in nano-dollars (``INCRBY``), ``<prefix>{<budget>/<scope>}:<window>:marks`` a hash of
the fired event bits and the fail-closed block, ``...:applied`` the last charge sequence applied
per pipeline process. The script adds, sums the window's steps, and marks new events in one atomic
step, so across processes each event fires once; a charge is applied at most once even when its
command timed out and was replayed (a paused Redis may still run the first one).

When Redis goes away at run time the store keeps counting locally (an in-memory SQLite store,
seeded with the last spend Redis reported for each window) and keeps what it charged; a
background task pings Redis every second and, once it answers, adds the pending charges (and
marks the events fired meanwhile). During the outage a process does not see other processes'
spend, and an event may fire once in each process. Nothing is refused because of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from obs_pipeline.errors import StartupError, describe_exception
from obs_pipeline.processors.budget.store import Charge, Outcome, Reading, SqliteStore, Store
from obs_pipeline.processors.budget.windows import ROLLING, Slot
from obs_pipeline.secret import Secret

__all__ = ["UNAVAILABLE", "RedisStore", "where"]

#: What counts as "Redis is away" (anything else is a bug and raises).
UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
RECONNECT_EVERY = 1.0
TOTAL_CHUNK = 500  # keys per SCAN step and per MGET of the spend gauge

# KEYS: marks hash, applied hash, the current step's spend, the window's other steps (rolling).
# ARGV: process id, charge sequence, amount, limit, spend expiry, marks expiry, block, mark, slide,
# n, then n thresholds. A charge this process already applied (its sequence is not above the last
# one recorded for the window) adds nothing: a command that timed out may still run after its replay.
_SCRIPT = """
local pid, seq = ARGV[1], tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local spend_at = tonumber(ARGV[5])
local marks_at = tonumber(ARGV[6])
local block = tonumber(ARGV[7])
local mark = tonumber(ARGV[8])
local slide = tonumber(ARGV[9])
local n = tonumber(ARGV[10])
local last = tonumber(redis.call('HGET', KEYS[2], pid) or '0')
if seq <= last then
  amount, block, mark = 0, 0, 0
else
  redis.call('HSET', KEYS[2], pid, seq)
  if spend_at > 0 then redis.call('EXPIREAT', KEYS[2], spend_at) end
end
local total
if amount ~= 0 then
  total = redis.call('INCRBY', KEYS[3], amount)
  if spend_at > 0 then redis.call('EXPIREAT', KEYS[3], spend_at) end
else
  total = tonumber(redis.call('GET', KEYS[3]) or '0')
end
for i = 4, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then total = total + tonumber(v) end
end
local fired = tonumber(redis.call('HGET', KEYS[1], 'fired') or '0')
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked') or '0')
if block == 1 then blocked = 1 end
local bits = mark
if total >= limit or blocked == 1 then bits = bit.bor(bits, 1) end
for i = 1, n do
  if total >= tonumber(ARGV[10 + i]) then bits = bit.bor(bits, 2 ^ i) end
end
local new = bit.band(bits, bit.bnot(fired))
if new ~= 0 or block == 1 then
  redis.call('HSET', KEYS[1], 'fired', bit.bor(fired, bits), 'blocked', blocked)
  if marks_at > 0 and (slide == 1 or redis.call('TTL', KEYS[1]) == -1) then redis.call('EXPIREAT', KEYS[1], marks_at) end
elseif slide == 1 and fired ~= 0 then
  redis.call('EXPIREAT', KEYS[1], marks_at)
end
return {total, new, blocked}
"""


def where(url: str) -> str:
    """``host:port/db`` of a Redis URL, for messages: never the password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


class RedisStore(Store):
    """The shared store (see the module docstring).

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``), revealed only to make the client.
        prefix: the key prefix.
        owner: the component id, for messages.
        log: the component's logger.
    """

    kind = "redis"

    def __init__(self, url: Secret, prefix: str, owner: str, log: Any) -> None:
        self._url = url
        #: ``host:port/db``: what messages name, never the password.
        self.where = where(url.reveal())
        self.prefix = prefix
        self.owner = owner
        self.log = log
        self.client: aioredis.Redis | None = None
        self._script: Any = None
        self._local: SqliteStore | None = None  # the fallback while Redis is away
        self._seeded: set[tuple[str, str, str]] = set()
        self._known: dict[tuple[str, str, str], Reading] = {}  # last state Redis reported per window
        self._pending: list[Charge] = []
        self._reconnect: asyncio.Task[None] | None = None
        self.outages = 0
        #: Names this process's charges in Redis; with :attr:`_seq`, makes each charge apply once.
        self.process_id = secrets.token_hex(8)
        self._seq = itertools.count(1)
        self._order = asyncio.Lock()

    @property
    def degraded(self) -> bool:
        """Whether charges are being kept locally because Redis is away."""
        return self._local is not None

    @property
    def pending_nano(self) -> int:
        """Spend charged locally and not yet added to Redis."""
        return sum(c.amount for c in self._pending)

    async def open(self) -> None:
        """Connect and PING.

        Raises:
            StartupError: Redis does not answer (the message names host, port and db, not the password).
        """
        self.client = aioredis.Redis.from_url(self._url.reveal(), socket_timeout=1.0, socket_connect_timeout=2.0)
        self._script = self.client.register_script(_SCRIPT)
        try:
            await self.client.ping()
        except (*UNAVAILABLE, redis_errors.RedisError) as exc:
            await self.close()
            raise StartupError(f"{self.owner}: cannot reach the Redis state store at {self.where}: "
                               f"{type(exc).__name__}; start Redis or set state: sqlite") from exc

    def key(self, budget: str, scope_value: str, window: str) -> str:
        """The key stem of one budget's scope value in one window."""
        return f"{self.prefix}{{{quote(budget, safe='')}/{quote(scope_value, safe='')}}}:{window}"

    def _keys_args(self, c: Charge) -> tuple[list[str], list[int | str]]:
        stem = self.key(c.budget, c.scope_value, c.slot.key)
        keys = [f"{stem}:marks", f"{stem}:applied", f"{stem}:{c.slot.bucket}"]
        if c.slot.key == ROLLING:
            keys += [f"{stem}:{b}" for b in range(c.slot.first_bucket, c.slot.bucket)]
        expires = int(c.slot.expires or 0)
        args: list[int | str] = [self.process_id, c.seq, c.amount, c.limit, expires, expires, int(c.block), c.mark,
                                 int(c.slot.sliding), len(c.thresholds), *c.thresholds]
        return keys, args

    async def _run(self, charges: Sequence[Charge]) -> list[Outcome]:
        assert self.client is not None
        async with self.client.pipeline(transaction=False) as pipe:
            for c in charges:
                keys, args = self._keys_args(c)
                await self._script(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        out = []
        for c, (total, new, blocked) in zip(charges, results, strict=True):
            outcome = Outcome(int(total), int(new) & ~c.mark, bool(blocked))
            self._known[(c.budget, c.scope_value, c.slot.key)] = Reading(outcome.spend, outcome.blocked,
                                                                         int(new) | c.mark)
            out.append(outcome)
        return out

    async def apply(self, charges: Sequence[Charge], now: float) -> list[Outcome]:
        """Charge in Redis; while it is away, locally (see the module docstring)."""
        async with self._order:  # one batch in flight: charges reach Redis in sequence order
            charges = [replace(c, seq=next(self._seq)) for c in charges]
            if self._local is None:
                try:
                    return await self._run(charges)
                except UNAVAILABLE as exc:
                    self._degrade(exc)
            return self._apply_locally(charges, now)

    def _degrade(self, exc: BaseException) -> None:
        if self._local is not None:  # already counting locally (a concurrent call failed too)
            return
        self.outages += 1
        self.log.warning("the Redis state store at %s is unreachable (%s): counting locally until it is back",
                         self.where, type(exc).__name__)
        self._local = SqliteStore(":memory:")
        self._seeded.clear()
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop(), name=f"{self.owner}: redis")
            self._reconnect.add_done_callback(self._reconnect_done)

    def _reconnect_done(self, task: asyncio.Task[None]) -> None:
        """Say so if the reconnecting task died: the store would stay local, and stale, for good."""
        if not task.cancelled() and (error := task.exception()) is not None:
            self.log.error("reconnecting to Redis stopped (%s): charges stay local until a restart",
                           describe_exception(error))

    def _apply_locally(self, charges: Sequence[Charge], now: float) -> list[Outcome]:
        local = self._local
        assert local is not None
        seeds = []
        for c in charges:
            window = (c.budget, c.scope_value, c.slot.key)
            if window not in self._seeded:
                self._seeded.add(window)
                known = self._known.get(window, Reading())
                seeds.append(replace(c, amount=known.spend, block=known.blocked, mark=known.fired))
        if seeds:
            local.apply_now(seeds, now)
        out = local.apply_now(charges, now)
        for c, outcome in zip(charges, out, strict=True):
            self._pending.append(replace(c, mark=c.mark | outcome.fired))
        return out

    async def _reconnect_loop(self) -> None:
        """Ping until Redis answers, then add what was charged meanwhile."""
        while self._local is not None:
            await asyncio.sleep(RECONNECT_EVERY)
            client = self.client
            if client is None:  # closed
                return
            try:
                await client.ping()
                async with self._order:
                    pending = self._pending
                    if pending:
                        await self._run(pending)
                    self._pending = []
                    local, self._local = self._local, None
            except UNAVAILABLE:
                continue
            except Exception as exc:  # never let the reconnecting task die: the store would stay local for good
                self.log.error("reconciling with Redis failed (%s); retrying", describe_exception(exc))
                continue
            self.log.info("the Redis state store at %s is back: added %d charges made meanwhile",
                          self.where, len(pending))
            if local is not None:
                await local.close()

    async def read(self, budget: str, scope_value: str, slot: Slot, now: float) -> Reading:
        """One window's state (from the local fallback, or the last known one, while Redis is away)."""
        window = (budget, scope_value, slot.key)
        if self._local is None:
            assert self.client is not None
            stem = self.key(budget, scope_value, slot.key)
            buckets = [slot.bucket] if slot.key != ROLLING else list(range(slot.first_bucket, slot.bucket + 1))
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.mget([f"{stem}:{b}" for b in buckets])
                    pipe.hmget(f"{stem}:marks", ["fired", "blocked"])
                    values, (fired, blocked) = await pipe.execute()
            except UNAVAILABLE as exc:
                self._degrade(exc)
            else:
                reading = Reading(sum(int(v) for v in values if v is not None), bool(int(blocked or 0)),
                                  int(fired or 0))
                self._known[window] = reading
                return reading
        if window in self._seeded and self._local is not None:
            return self._local.read_now(budget, scope_value, slot, now)
        return self._known.get(window, Reading())

    async def scopes(self, budget: str, slot: Slot, now: float, limit: int) -> list[tuple[str, Reading]]:
        """Scope values with spend in ``slot`` (a SCAN over this budget's keys; for status and listings)."""
        assert self.client is not None
        if self._local is not None:  # Redis is away: what this process charged meanwhile
            return await self._local.scopes(budget, slot, now, limit)
        pattern = f"{self.prefix}{{{quote(budget, safe='')}/*}}:{slot.key}:*"
        values: set[str] = set()
        try:
            async for raw in self.client.scan_iter(match=pattern, count=500):
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                inner = name[len(self.prefix) + 1:name.rindex("}")]
                values.add(unquote(inner.partition("/")[2]))
                if len(values) >= limit * 4:
                    break
        except UNAVAILABLE as exc:
            self._degrade(exc)
            return []
        readings = [(value, await self.read(budget, value, slot, now)) for value in values]
        readings.sort(key=lambda item: -item[1].spend)
        return readings[:limit]

    async def total(self, budget: str, slot: Slot, now: float) -> int:
        """Spend in ``slot`` over every scope value of ``budget``: a SCAN of its step keys, read with MGET.

        Raises:
            redis.exceptions.ConnectionError: Redis is away (the store counts locally from now on).
        """
        if self._local is not None:  # Redis is away: what this process charged meanwhile
            return self._local.total_now(budget, slot, now)
        assert self.client is not None
        pattern = f"{self.prefix}{{{quote(budget, safe='')}/*}}:{slot.key}:*"
        total = 0
        names: list[str] = []
        try:
            async for raw in self.client.scan_iter(match=pattern, count=TOTAL_CHUNK):
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                step = name.rpartition(":")[2]
                if step.isdigit() and int(step) >= slot.first_bucket:  # not :marks nor :applied, nor an old step
                    names.append(name)
                if len(names) >= TOTAL_CHUNK:
                    total += sum(int(v) for v in await self.client.mget(names) if v is not None)
                    names = []
            if names:
                total += sum(int(v) for v in await self.client.mget(names) if v is not None)
        except UNAVAILABLE as exc:
            self._degrade(exc)
            raise
        return total

    async def close(self) -> None:
        """Stop reconnecting (one last try to add what was charged locally) and close the connections."""
        if self._pending and self.client is not None:
            try:
                await self._run(self._pending)
                self._pending = []
            except Exception as exc:
                self.log.error("%d charges ($%.6f) made while Redis was away could not be added to it (%s)",
                               len(self._pending), self.pending_nano / 1e9, type(exc).__name__)
        task, self._reconnect = self._reconnect, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

