"""The budget processor: charge each batch's costs, mark its spans, fire events, serve decisions.

It subclasses :class:`~obs_pipeline.components.Processor` rather than ``FunctionProcessor``
because charging awaits the state store (Redis), but keeps the function processor's contract:
items in and out are counted, a batch the next stage refused comes back as the same object and
is handed on again without being charged twice, and a batch with nothing to charge passes
untouched, wire bytes kept.

A failing state store never stops telemetry: with Redis away the store counts locally (see
:mod:`.redis_store`); any other store failure passes the batch on uncharged, counted
(``obs_pipeline_budget_state_errors_total{reason="store_failed"}``) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import quote

from obs_pipeline.batch import Batch
from obs_pipeline.components import Consumer, Host, Processor, ProcessorSettings, State
from obs_pipeline.errors import ProcessingError, RefusedError, describe_exception
from obs_pipeline.genai import COST_PREFIX
from obs_pipeline.processors._helper import ProcessorCounters
from obs_pipeline.processors.budget import charging
from obs_pipeline.processors.budget.config import ANNOTATE, AUDIT, NANO, WEBHOOK, Config
from obs_pipeline.processors.budget.decisions import Decisions, Reservations
from obs_pipeline.processors.budget.endpoint import DecisionServer
from obs_pipeline.processors.budget.scope import RESERVATION_ID, ScopeReader
from obs_pipeline.processors.budget.store import SqliteStore, Store
from obs_pipeline.processors.budget.webhook import WebhookSender, payload

__all__ = ["GAUGE_EVERY", "STATE_FILE", "BudgetProcessor", "make_store", "state_path"]

STATE_FILE = "budget.sqlite3"
GAUGE_EVERY = 15.0
_MARKERS = (COST_PREFIX.encode(), RESERVATION_ID.encode())
WEBHOOK_DRAIN = 2.0  # seconds the shutdown waits for queued webhook events


class _Same(enum.Enum):
    """Marks a remembered result that is the refused batch itself."""

    SAME = "same"


_SAME = _Same.SAME


def state_path(data_dir: Path, component_id: str) -> Path:
    """The SQLite file of one budget processor: ``data_dir/processors/<pct-encoded id>/budget.sqlite3``."""
    return data_dir / "processors" / quote(component_id, safe="") / STATE_FILE


def make_store(cfg: Config, data_dir: Path, component_id: str, log: Any) -> Store:
    """The configured state store (not opened)."""
    if cfg.redis_url is not None:
        from obs_pipeline.processors.budget.redis_store import RedisStore  # noqa: PLC0415 - only Redis users load redis

        return RedisStore(cfg.redis_url, cfg.key_prefix, component_id, log)
    return SqliteStore(state_path(data_dir, component_id))


def _estimator(log: Any) -> Any:
    """The cost processor's price book, for reservations priced by model (every estimate None when it cannot load)."""
    try:
        from obs_pipeline.processors.cost.pricing import PriceBook  # noqa: PLC0415 - loads price tables

        return PriceBook().estimate_usd
    except Exception as exc:
        log.warning("no price tables (%s): reservations by model are unpriced", describe_exception(exc))
        return lambda *_args: None


class BudgetProcessor(Processor):
    """See the module docstring; ``store`` and ``estimate`` may be given by tests."""

    def __init__(self, settings: ProcessorSettings, cfg: Config, next_consumer: Consumer, *,
                 store: Store | None = None) -> None:
        super().__init__(settings, next_consumer)
        self.cfg = cfg
        self.budgets = cfg.budgets
        scopes = list(dict.fromkeys(b.scope for b in cfg.budgets))
        self.reader = ScopeReader(scopes)
        self.scope_of = [scopes.index(b.scope) for b in cfg.budgets]
        self.store = store or make_store(cfg, settings.data_dir, self.id, self.log)
        self.reservations = Reservations(cfg.reservation_ttl, cfg.max_reservations_per_scope)
        self.counters = ProcessorCounters(settings)
        self.counters.dropped("processing_error", 0)
        metrics, pid = settings.metrics, self.id
        self._events = {(b.id, kind): metrics.budget_events.labels(processor=pid, budget=b.id, event=kind)
                        for b in cfg.budgets for kind in (charging.WARNING, charging.EXCEEDED)}
        self._charged = {b.id: metrics.budget_charged_usd.labels(processor=pid, budget=b.id) for b in cfg.budgets}
        self._unpriced = {b.id: metrics.budget_unpriced_spans.labels(processor=pid, budget=b.id) for b in cfg.budgets}
        self._gauge = {b.id: metrics.budget_spend_usd.labels(processor=pid, budget=b.id) for b in cfg.budgets}
        self._errors = {r: metrics.budget_state_errors.labels(processor=pid, reason=r)
                        for r in ("redis_unavailable", "store_failed")}
        self._outages_seen = 0
        self.webhook = (WebhookSender(cfg.webhook, {o: metrics.budget_webhook_events.labels(processor=pid, outcome=o)
                                                    for o in ("sent", "failed", "dropped")}, self.log)
                        if cfg.webhook is not None and WEBHOOK in cfg.actions else None)
        self._webhook_task: asyncio.Task[None] | None = None
        self.decisions = Decisions(cfg, self.store, self.reservations, _estimator(self.log))
        self.server = (DecisionServer(self.id, cfg.endpoint, self.decisions, cfg.bearer_token, self.log)
                       if cfg.endpoint is not None else None)
        # Refused input -> its result while the caller holds the input (a weak key). The input itself
        # is stored as _SAME, never as its own value: that would keep it alive for ever.
        self._refused: weakref.WeakKeyDictionary[Batch, Batch | _Same] = weakref.WeakKeyDictionary()
        self.clock = time.time

    async def on_start(self, host: Host) -> None:
        """Open the store (Redis: PING, or a clear StartupError), bind the endpoint, start the webhook."""
        await self.store.open()
        if self.server is not None:
            await self.server.start()
        if self.webhook is not None:
            self._webhook_task = self.spawn(self.webhook.run(), "webhook")
        if self.budgets:
            self.spawn(self._gauge_loop(), "spend gauge")
        self.log.info("budget state in %s; %d budgets%s", self.store.kind, len(self.budgets),
                      f"; decision endpoint on {self.cfg.endpoint}" if self.server is not None else "")

    async def on_shutdown(self) -> None:
        """Close the endpoint, give queued webhook events a moment (the rest are counted dropped), close the store."""
        if self.server is not None:
            await self.server.stop()
        if self.webhook is not None:
            await self.webhook.drain(WEBHOOK_DRAIN)
            task, self._webhook_task = self._webhook_task, None
            if task is not None:
                task.cancel()
                await asyncio.wait([task])  # (not `await task`: a cancellation of this shutdown must go on)
            self.webhook.abandon()
        await self.store.close()

    async def consume(self, batch: Batch) -> None:
        """Charge and mark ``batch``, then hand it on (a refused batch coming back is not charged again).

        Raises:
            RefusedError: shutting down, or the next stage refused.
            ProcessingError: reading the batch failed (a bug or data it cannot handle).
        """
        if self.state in (State.STOPPING, State.STOPPED):
            raise RefusedError("shutting_down")
        remembered = self._refused.pop(batch, None)
        out = batch if remembered is _SAME else remembered
        if out is None:
            items = batch.items
            self.counters.incoming.inc(items)
            try:
                out = await self.process(batch)
            except Exception as exc:
                self.counters.dropped("processing_error", items)
                self.log.warning("failed on a batch of %d items: %s", items, describe_exception(exc))
                raise ProcessingError(f"{self.id}: failed on the batch ({type(exc).__name__})") from exc
        try:
            await self.next.consume(out)
        except RefusedError:
            self._refused[batch] = _SAME if out is batch else out
            raise
        self.counters.outgoing.inc(out.items)

    async def process(self, batch: Batch) -> Batch:
        """Charge the batch's spans and mark them; the batch itself when there is nothing to charge."""
        wire = batch.wire
        if not self.budgets or (wire is not None and not any(m in wire for m in _MARKERS)):
            return batch
        found = charging.read_spans(batch.message, self.reader, self.scope_of)
        if not found.charges:
            self._settle(found)
            return batch
        now = self.clock()
        charges = charging.plan(found, self.budgets, now, fail_closed=self.cfg.fail_closed)
        try:
            outcomes = await self.store.apply(charges, now)
        except Exception as exc:
            self._errors["store_failed"].inc()
            self.log.error("the %s state store failed (%s): %d spans passed on uncharged", self.store.kind,
                           describe_exception(exc), len(found.charges))
            self._settle(found)
            return batch
        self._settle(found)  # after the charge: the endpoint never sees neither the reservation nor the spend
        self._count_outages()
        marks, events = charging.settle(found, self.budgets, charges, outcomes, fail_closed=self.cfg.fail_closed)
        self._count(found, charges, events, now)
        annotate, audit = ANNOTATE in self.cfg.actions, AUDIT in self.cfg.actions
        if annotate or (audit and events):
            batch.mutable()
            for sc in found.charges:
                mark = marks.pop(id(sc.span), None)
                if mark is not None:
                    charging.annotate(sc.span, mark, state_attributes=annotate, event_attributes=audit,
                                      replace=sc.carries_ours)
            return batch.settled()
        return batch

    def _settle(self, found: charging.BatchRead) -> None:
        for rid in found.reservations:
            self.reservations.settle(rid)

    def _count(self, found: charging.BatchRead, charges: list[Any], events: list[charging.Event], now: float) -> None:
        for c in charges:
            if c.amount:
                self._charged[c.budget].inc(c.amount / NANO)
        unpriced = [0] * len(self.budgets)
        for sc in found.charges:
            unpriced[sc.budget_index] += sc.unpriced
        for index, count in enumerate(unpriced):
            if count:
                self._unpriced[self.budgets[index].id].inc(count)
        for event in events:
            self._events[(event.budget.id, event.kind)].inc()
            self.log.info("budget %s: %s event (%s window)", event.budget.id, event.kind, event.budget.window.text)
            if self.webhook is not None:
                self.webhook.submit(payload(event, now))

    def _count_outages(self) -> None:
        outages = getattr(self.store, "outages", 0)
        if outages > self._outages_seen:
            self._errors["redis_unavailable"].inc(outages - self._outages_seen)
            self._outages_seen = outages

    async def _gauge_loop(self) -> None:
        """Refresh the spend gauge every :data:`GAUGE_EVERY` seconds."""
        while True:
            await self.refresh_gauge()
            await asyncio.sleep(GAUGE_EVERY)

    async def refresh_gauge(self) -> None:
        """Set ``obs_pipeline_budget_spend_usd`` of every budget from the store's total for its current window."""
        now = self.clock()
        for budget in self.budgets:
            with contextlib.suppress(Exception):  # a store that fails is counted on the charging path
                self._gauge[budget.id].set(await self.store.total(budget.id, budget.window.slot(now), now) / NANO)
