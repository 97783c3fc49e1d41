"""The answers of the decision endpoint: a budget's state for one scope value, listings, reservations.

A reservation holds an estimate against one budget's scope value in this pipeline process until
the span of that call arrives (the agent sets ``budget.reservation.id`` on it; its real cost then
replaces the estimate) or ``reservation_ttl`` passes. Reservations live in the process that made
them: with several pipelines on one Redis, an agent reserves at the pipeline it sends its spans to.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from obs_pipeline.processors.budget.charging import EXCEEDED, OK, WARNING
from obs_pipeline.processors.budget.config import NANO, Budget, Config
from obs_pipeline.processors.budget.store import Reading, Store

__all__ = ["Decisions", "Reservations", "iso", "state_of"]

#: Scope values listed per budget by ``GET /v1/budgets``.
LIST_LIMIT = 1000
MAX_ESTIMATE_USD = 1_000_000.0
MAX_TOKENS = 100_000_000
#: Seconds between sweeps of expired reservations (each scope value is also pruned when it is read).
SWEEP_EVERY = 60.0


def iso(epoch: float | None) -> str | None:
    """RFC 3339 UTC text of an epoch time, or None."""
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def state_of(budget: Budget, reading: Reading) -> str:
    """``ok``, ``warning`` or ``exceeded``: what a window's spend (or its fail-closed block) means for ``budget``."""
    if reading.blocked or reading.spend >= budget.limit_nano:
        return EXCEEDED
    return WARNING if any(reading.spend >= t for t in budget.thresholds_nano()) else OK


@dataclass
class _Held:
    budget: str
    scope_value: str
    amount: int
    expires: float


class Reservations:
    """Estimates held against budgets, capped per (budget, scope value), expiring after ``ttl``."""

    def __init__(self, ttl: float, cap: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.cap = cap
        self.clock = clock
        self._held: dict[str, _Held] = {}
        self._by_scope: dict[tuple[str, str], set[str]] = {}
        self._next_sweep = clock() + SWEEP_EVERY

    def _live(self, key: tuple[str, str]) -> set[str]:
        rids = self._by_scope.get(key, set())
        now = self.clock()
        for rid in [r for r in rids if self._held[r].expires <= now]:
            rids.discard(rid)
            del self._held[rid]
        if not rids:
            self._by_scope.pop(key, None)
        return rids

    def held(self, budget: str, scope_value: str) -> int:
        """Nano-dollars held for one scope value now."""
        return sum(self._held[r].amount for r in self._live((budget, scope_value)))

    def count(self, budget: str, scope_value: str) -> int:
        """Live reservations of one scope value."""
        return len(self._live((budget, scope_value)))

    def add(self, budget: str, scope_value: str, amount: int) -> tuple[str, float]:
        """Hold ``amount``: (reservation id, seconds until it expires)."""
        now = self.clock()
        if now >= self._next_sweep:
            self._sweep(now)
        rid = "rsv_" + secrets.token_hex(12)
        self._held[rid] = _Held(budget, scope_value, amount, now + self.ttl)
        self._by_scope.setdefault((budget, scope_value), set()).add(rid)
        return rid, self.ttl

    def __len__(self) -> int:
        """Reservations held, expired ones not yet forgotten included."""
        return len(self._held)

    def _sweep(self, now: float) -> None:
        """Forget every expired reservation: a scope value never asked about again is pruned nowhere else."""
        self._next_sweep = now + SWEEP_EVERY
        for rid in [r for r, held in self._held.items() if held.expires <= now]:
            self.settle(rid)

    def release(self, budget: str, scope_value: str, rid: str) -> bool:
        """Release reservation ``rid`` of this budget and scope value (True if it was held there)."""
        held = self._held.get(rid)
        if held is None or (held.budget, held.scope_value) != (budget, scope_value):
            return False
        return self.settle(rid)

    def settle(self, rid: str) -> bool:
        """The span of reservation ``rid`` arrived: release it (True if it was held)."""
        held = self._held.pop(rid, None)
        if held is None:
            return False
        rids = self._by_scope.get((held.budget, held.scope_value))
        if rids is not None:
            rids.discard(rid)
            if not rids:
                del self._by_scope[(held.budget, held.scope_value)]
        return True


class Decisions:
    """Reads the store and the reservations into the endpoint's JSON answers."""

    def __init__(self, cfg: Config, store: Store, reservations: Reservations,
                 estimate: Callable[[str | None, str, int, int], float | None],
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.reservations = reservations
        self.estimate = estimate
        self.clock = clock
        self.budgets = {b.id: b for b in cfg.budgets}

    def _view(self, budget: Budget, scope_value: str, reading: Reading, now: float) -> dict[str, Any]:
        limit = budget.limit_nano
        held = self.reservations.held(budget.id, scope_value)
        state = state_of(budget, reading)
        slot = budget.window.slot(now)
        return {
            "id": budget.id, "scope": budget.scope, "scope_value": scope_value, "window": budget.window.text,
            "allowed": state != EXCEEDED, "state": state,
            "spend": reading.spend / NANO, "limit": budget.limit_usd, "reserved": held / NANO,
            "remaining": max(0, limit - reading.spend - held) / NANO, "resets_at": iso(slot.resets_at),
            "unpriced_blocked": reading.blocked, "degraded": self.store.degraded,
        }

    async def one(self, budget_id: str, scope_value: str) -> dict[str, Any] | None:
        """``GET /v1/budgets/{id}/{scope_value}``; None for an unknown budget."""
        budget = self.budgets.get(budget_id)
        if budget is None:
            return None
        now = self.clock()
        reading = await self.store.read(budget.id, scope_value, budget.window.slot(now), now)
        return self._view(budget, scope_value, reading, now)

    async def listing(self) -> dict[str, Any]:
        """``GET /v1/budgets``: every budget, with the scope values that have spend in the current window."""
        now = self.clock()
        out = []
        for budget in self.cfg.budgets:
            slot = budget.window.slot(now)
            scopes = await self.store.scopes(budget.id, slot, now, LIST_LIMIT)
            out.append({
                "id": budget.id, "scope": budget.scope, "window": budget.window.text, "limit": budget.limit_usd,
                "warn_at": list(budget.warn_at), "resets_at": iso(slot.resets_at),
                "scopes": [self._view(budget, value, reading, now) for value, reading in scopes],
                "truncated": len(scopes) >= LIST_LIMIT,
            })
        return {"budgets": out, "state": self.store.kind, "degraded": self.store.degraded}

    async def reserve(self, budget_id: str, scope_value: str, body: Any) -> tuple[int, dict[str, Any]]:
        """``POST .../reserve``: (HTTP status, answer)."""
        budget = self.budgets.get(budget_id)
        if budget is None:
            return 404, {"error": f"no budget {budget_id!r}"}
        estimate, problem = self._estimate(body)
        if problem is not None:
            return 400, {"error": problem}
        now = self.clock()
        reading = await self.store.read(budget.id, scope_value, budget.window.slot(now), now)
        view = self._view(budget, scope_value, reading, now)
        if estimate is None:  # could not be priced
            if self.cfg.fail_closed:
                return 200, {**view, "allowed": False, "reason": "unpriced", "reservation_id": None}
            estimate = 0.0
        if self.reservations.count(budget.id, scope_value) >= self.cfg.max_reservations_per_scope:
            return 429, {**view, "allowed": False, "reason": "too_many_reservations", "reservation_id": None}
        amount = round(estimate * NANO)
        held = self.reservations.held(budget.id, scope_value)
        if not view["allowed"] or reading.spend + held + amount > budget.limit_nano:
            return 200, {**view, "allowed": False, "reason": "over_budget" if view["allowed"] else "exceeded",
                         "estimate_usd": estimate, "reservation_id": None}
        rid, ttl = self.reservations.add(budget.id, scope_value, amount)
        view = self._view(budget, scope_value, reading, now)
        return 200, {**view, "allowed": True, "estimate_usd": estimate, "reservation_id": rid,
                     "expires_at": iso(now + ttl)}

    def _estimate(self, body: Any) -> tuple[float | None, str | None]:
        """(estimate in USD or None when it cannot be priced, problem with the body or None)."""
        if not isinstance(body, dict):
            return None, "the body must be a JSON object"
        if "estimate_usd" in body:
            value = body["estimate_usd"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or not 0 <= value <= MAX_ESTIMATE_USD:
                return None, f"estimate_usd must be a number from 0 to {MAX_ESTIMATE_USD:g}"
            return float(value), None
        model, provider = body.get("model"), body.get("provider")
        if not isinstance(model, str) or not model:
            return None, "give estimate_usd, or model, input_tokens and max_output_tokens"
        if provider is not None and not isinstance(provider, str):
            return None, "provider must be a string"
        counts = []
        for name in ("input_tokens", "max_output_tokens"):
            value = body.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
                return None, f"{name} must be an integer from 0 to {MAX_TOKENS}"
            counts.append(value)
        try:
            usd = self.estimate(provider, model, counts[0], counts[1])
        except Exception:  # a price lookup that fails is an unpriced call, not a failed request
            usd = None
        if usd is not None and (not math.isfinite(usd) or usd < 0):
            usd = None
        return usd, None
