"""The webhook action: POST each budget event as JSON, from a bounded queue, retried with backoff.

The pipeline only puts events into the queue (never waits); one supervised task sends them in
order. A 2xx answer is success; 408, 429 and 5xx and transport errors are retried with
exponential backoff and jitter (0.5s doubling to 30s, honouring ``Retry-After``) until
``max_elapsed_time``; other answers are permanent failures. Each outcome is counted
(``obs_pipeline_budget_webhook_events_total``). The URL is a secret: it is never logged.

The body copies LiteLLM's ``WebhookEvent`` fields (``event``, ``event_group``, ``event_message``,
``spend``, ``max_budget``, ``soft_budget``, ``user_id``, ``team_id``, ``token``, ...) so receivers
written for LiteLLM alerts work, and adds ours (``budget_id``, ``scope``, ``scope_value``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import aiohttp

from obs_pipeline.errors import describe_exception
from obs_pipeline.processors.budget.charging import EXCEEDED, Event
from obs_pipeline.processors.budget.config import NANO, WebhookConfig
from obs_pipeline.processors.budget.decisions import iso

__all__ = ["WebhookSender", "payload"]

INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 30.0
_RETRYABLE = frozenset({408, 425, 429})
_GROUP = {"user": "internal_user", "tenant": "team", "session": "customer", "agent": "customer"}


def payload(event: Event, now: float) -> dict[str, Any]:
    """The JSON body of one event."""
    budget = event.budget
    spend = event.spend / NANO
    crossed = "budget_crossed" if event.kind == EXCEEDED else "threshold_crossed"
    what = "exceeded" if event.kind == EXCEEDED else f"reached {event.threshold:.0%} of"
    return {
        "event": crossed,
        "event_group": _GROUP.get(budget.scope, "customer"),
        "event_message": f"Budget {budget.id} {what} its limit of ${budget.limit_usd:g} ({budget.window.text} window)",
        "spend": spend,
        "max_budget": budget.limit_usd,
        "soft_budget": (event.threshold or 0) * budget.limit_usd if event.threshold else None,
        "token": None,
        "user_id": event.scope_value if budget.scope == "user" else None,
        "team_id": event.scope_value if budget.scope == "tenant" else None,
        "customer_id": event.scope_value if budget.scope not in ("user", "tenant") else None,
        "budget_id": budget.id,
        "budget_event": event.kind,
        "scope": budget.scope,
        "scope_value": event.scope_value,
        "window": budget.window.text,
        "threshold": event.threshold,
        "limit": budget.limit_usd,
        "budget_reset_at": iso(event.resets_at),
        "trace_id": event.trace_id.hex(),
        "span_id": event.span_id.hex(),
        "timestamp": iso(now),
    }


class WebhookSender:
    """The queue and the sending loop (run it as a supervised task: :meth:`run`).

    Args:
        cfg: the webhook block.
        counters: ``obs_pipeline_budget_webhook_events_total`` by outcome (sent, failed, dropped).
        log: the component's logger.
    """

    def __init__(self, cfg: WebhookConfig, counters: dict[str, Any], log: Any) -> None:
        self.cfg = cfg
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(cfg.queue_size)
        self.log = log
        self._sent, self._failed, self._dropped = counters["sent"], counters["failed"], counters["dropped"]
        self.idle = asyncio.Event()
        self.idle.set()
        self._sending = 0  # 1 while an event is taken from the queue and not yet sent or given up

    def submit(self, body: dict[str, Any]) -> None:
        """Queue one event; when the queue is full it is dropped and counted, never waited for."""
        try:
            self.queue.put_nowait(body)
        except asyncio.QueueFull:
            self._dropped.inc()
            self.log.warning("the webhook queue is full (%d events): an event was dropped", self.cfg.queue_size)
            return
        self.idle.clear()

    async def run(self) -> None:
        """Send queued events for ever, one at a time."""
        headers = {name: value.reveal() for name, value in self.cfg.headers.items()}
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout or None)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            while True:
                body = await self.queue.get()
                self._sending = 1  # still 1 if this task is cancelled mid-send: abandon() counts it
                try:
                    await self._deliver(session, body)
                except Exception as exc:  # a bad header value, a bug: this event fails, the sender lives on
                    self._failed.inc()
                    self.log.error("the webhook could not send a budget event: %s", describe_exception(exc))
                self._sending = 0
                self.queue.task_done()
                if self.queue.empty():
                    self.idle.set()

    async def _deliver(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> None:
        url = self.cfg.url.reveal()
        give_up = time.monotonic() + self.cfg.max_elapsed_time
        backoff = INITIAL_BACKOFF
        while True:
            retry_after: float | None = None
            try:
                async with session.post(url, json=body) as resp:
                    status = resp.status
                    if 200 <= status < 300:
                        self._sent.inc()
                        return
                    if status not in _RETRYABLE and status < 500:
                        self._failed.inc()
                        self.log.error("the webhook answered %d to a budget event: not retried", status)
                        return
                    with contextlib.suppress(ValueError, TypeError):
                        retry_after = float(resp.headers.get("Retry-After", ""))
                reason = f"HTTP {status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                reason = type(exc).__name__
            wait = max(retry_after or 0.0, backoff * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not crypto
            if time.monotonic() + wait > give_up:
                self._failed.inc()
                self.log.error("the webhook failed (%s) on a budget event for %.0fs: gave up", reason,
                               self.cfg.max_elapsed_time)
                return
            self.log.warning("the webhook failed (%s); retrying in %.1fs", reason, wait)
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def drain(self, within: float) -> None:
        """Wait up to ``within`` seconds for the queue to empty (at shutdown)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), within)

    def abandon(self) -> None:
        """Count what :meth:`run` (cancelled by now) did not send as dropped, so no event vanishes uncounted."""
        left = self.queue.qsize() + self._sending
        self._sending = 0
        while not self.queue.empty():
            self.queue.get_nowait()
        if left:
            self._dropped.inc(left)
            self.log.warning("%d budget events were not sent to the webhook before the shutdown", left)
