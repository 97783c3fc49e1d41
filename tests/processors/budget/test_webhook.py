"""The webhook action against a real HTTP server: the body, retries, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from obs_pipeline.processors.budget import webhook as webhook_module
from tests.processors.budget.kit import Harness, span


class Receiver:
    """A webhook receiver that answers ``statuses`` in turn (then 200) and keeps what it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.bodies.append(await request.json())
            self.got.set()
        return web.Response(status=status)

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_post("/hooks/{secret}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)  # its log would show the URL
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks/T0P-S3CRET"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def body(url: str) -> dict:
    return {
        "budgets": [{"id": "tenant-daily", "scope": "tenant", "limit_usd": 1, "window": "1d", "warn_at": [0.5]}],
        "actions": ["annotate", "audit", "webhook"],
        "webhook": {"url": url, "headers": {"X-Api-Key": "hdr-secret"}},
    }


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(webhook_module, "INITIAL_BACKOFF", 0.01)


class TestWebhook:
    async def test_events_are_posted_once_each_with_litellm_fields(self, tmp_path):
        receiver = Receiver([])
        async with receiver as url, Harness(tmp_path, body(url)) as h:
            await h.send(span(0.6), span(0.6), span(0.6), resource={"tenant.id": "acme"})
            await h.proc.webhook.drain(5)
        warning, exceeded = receiver.bodies
        assert (warning["event"], warning["threshold"], warning["team_id"]) == ("threshold_crossed", 0.5, "acme")
        assert exceeded["event"] == "budget_crossed"
        assert exceeded["budget_id"] == "tenant-daily"
        assert exceeded["spend"] == pytest.approx(1.2)
        assert exceeded["max_budget"] == 1
        assert exceeded["window"] == "1d"
        assert exceeded["budget_reset_at"].endswith("T00:00:00Z")
        assert len(exceeded["trace_id"]) == 32
        assert receiver.headers[0]["X-Api-Key"] == "hdr-secret"
        assert h.metric("obs_pipeline_budget_webhook_events_total", outcome="sent") == 2

    async def test_failures_are_retried_and_secrets_never_logged(self, tmp_path, caplog):
        caplog.set_level(logging.DEBUG)
        receiver = Receiver([500, 503])
        async with receiver as url, Harness(tmp_path, body(url)) as h:
            await h.send(span(2.0), resource={"tenant.id": "acme"})
            await asyncio.wait_for(receiver.got.wait(), 5)
            await h.proc.webhook.drain(5)
        assert len(receiver.bodies) == 1
        assert h.metric("obs_pipeline_budget_webhook_events_total", outcome="sent") == 1
        assert "retrying" in caplog.text
        assert "T0P-S3CRET" not in caplog.text
        assert "hdr-secret" not in caplog.text

    async def test_a_permanent_refusal_is_counted_not_retried(self, tmp_path):
        receiver = Receiver([404])
        async with receiver as url, Harness(tmp_path, body(url)) as h:
            await h.send(span(2.0), resource={"tenant.id": "acme"})
            await h.proc.webhook.drain(5)
        assert receiver.bodies == []
        assert h.metric("obs_pipeline_budget_webhook_events_total", outcome="failed") == 1

    async def test_a_webhook_that_hangs_never_blocks_the_pipeline(self, tmp_path):
        """The batch is handed on while the webhook is down; events beyond the queue are dropped and counted."""
        cfg = body("http://127.0.0.1:9/hooks/x")  # nothing listens on the discard port
        cfg["webhook"]["queue_size"] = 1
        cfg["budgets"][0]["warn_at"] = []
        cfg["budgets"].append({"id": "b2", "scope": "tenant", "limit_usd": 1})
        cfg["budgets"].append({"id": "b3", "scope": "tenant", "limit_usd": 1})
        async with Harness(tmp_path, cfg) as h:
            out = await asyncio.wait_for(h.send(span(5.0), resource={"tenant.id": "acme"}), 2)
            assert out[0]["budget.state"] == "exceeded"
            assert h.metric("obs_pipeline_budget_webhook_events_total", outcome="dropped") >= 1
        outcomes = [h.metric("obs_pipeline_budget_webhook_events_total", outcome=o) for o in ("sent", "failed", "dropped")]
        assert sum(outcomes) == 3  # after the shutdown every event is accounted for: none vanished

    async def test_an_event_that_cannot_be_sent_is_counted_and_the_sender_lives_on(self, tmp_path):
        """A header value no HTTP request may carry fails each event; the processor keeps running."""
        receiver = Receiver([])
        async with receiver as url:
            cfg = body(url)
            cfg["webhook"]["headers"] = {"X-Api-Key": "bad\r\nvalue"}
            async with Harness(tmp_path, cfg) as h:
                await h.send(span(2.0), resource={"tenant.id": "acme"})
                await h.proc.webhook.drain(5)
                assert h.proc.failed is None
                assert h.host.fatal == []
        assert receiver.bodies == []
        assert h.metric("obs_pipeline_budget_webhook_events_total", outcome="failed") == 1
