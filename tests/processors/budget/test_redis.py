"""The Redis state store against a real redis-server: atomic charges, expiry, start errors, outages."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from dataclasses import replace

import pytest
import redis
import yaml
from click.testing import CliRunner

from obs_pipeline.commands import main
from obs_pipeline.errors import StartupError
from obs_pipeline.processors.budget.redis_store import RedisStore
from obs_pipeline.processors.budget.store import Charge
from obs_pipeline.processors.budget.windows import parse_window
from obs_pipeline.secret import Secret
from obs_pipeline.telemetry.logs import component_logger
from tests.e2e.harness import free_port
from tests.processors.budget.kit import Harness, batch, span
from tests.processors.budget.redis_kit import RedisServer, needs_redis, redis_server

pytestmark = needs_redis
__all__ = ["redis_server"]  # the fixture


def body(url: str, **extra) -> dict:
    return {"budgets": [{"id": "cap", "scope": "session", "limit_usd": 1, "warn_at": [0.5]},
                        {"id": "hourly", "scope": "session", "limit_usd": 50, "window": "1h"},
                        {"id": "daily", "scope": "session", "limit_usd": 50, "window": "1d"}],
            "state": url, **extra}


async def spend(url: str, budget: str, value: str, window: str = "session") -> int:
    store = RedisStore(Secret(url), "obs_pipeline:budget:", "budget", component_logger("processor", "budget"))
    await store.open()
    try:
        now = time.time()
        return (await store.read(budget, value, parse_window(window).slot(now), now)).spend
    finally:
        await store.close()


class TestStart:
    async def test_unreachable_redis_is_a_clear_start_error_without_the_password(self, tmp_path):
        port = free_port()
        url = f"redis://:hunter2@127.0.0.1:{port}/3"
        h = Harness(tmp_path, body(url))
        with pytest.raises(StartupError) as caught:
            await h.proc.start(h.host)
        message = str(caught.value)
        assert f"127.0.0.1:{port}/3" in message
        assert "hunter2" not in message
        assert "ConnectionError" in message


class TestShared:
    async def test_two_processors_on_one_redis_lose_no_update_and_fire_once(self, tmp_path, redis_server):
        a, b = Harness(tmp_path / "a", body(redis_server.url)), Harness(tmp_path / "b", body(redis_server.url))
        async with a, b:
            sends = [h.proc.consume(batch(span(0.013, session__id="s"))) for _ in range(50) for h in (a, b)]
            await asyncio.gather(*sends)
            fired = sum(h.metric("obs_pipeline_budget_events_total", budget="cap", event="exceeded") for h in (a, b))
            warned = sum(h.metric("obs_pipeline_budget_events_total", budget="cap", event="warning") for h in (a, b))
        assert await spend(redis_server.url, "cap", "s") == 100 * 13_000_000
        assert (fired, warned) == (1, 1)

    async def test_window_keys_expire(self, tmp_path, redis_server):
        async with Harness(tmp_path, body(redis_server.url)) as h:
            await h.send(span(0.1, session__id="s"))
        client = redis.Redis.from_url(redis_server.url)
        ttls = {key.decode(): client.ttl(key) for key in client.scan_iter("obs_pipeline:budget:*")}
        session = [k for k in ttls if k.startswith("obs_pipeline:budget:{cap/s}:session:")]
        hourly = [k for k in ttls if ":rolling:" in k]
        daily = [k for k in ttls if "{daily/s}" in k]
        assert session
        assert all(0 < ttls[k] <= 720 * 3600 for k in session)  # forgotten after session_ttl without a charge
        assert hourly
        assert all(0 < ttls[k] <= 3600 + 60 for k in hourly)
        assert daily
        assert all(0 < ttls[k] <= 2 * 86400 for k in daily)

    async def test_the_endpoint_reads_redis(self, tmp_path, redis_server):
        async with Harness(tmp_path / "a", body(redis_server.url)) as a, \
                Harness(tmp_path / "b", body(redis_server.url)) as b:
            await a.send(span(2.0, session__id="s"))
            answer = await b.proc.decisions.one("cap", "s")
            assert (answer["allowed"], answer["spend"]) == (False, 2.0)
            listing = await b.proc.decisions.listing()
            assert listing["budgets"][0]["scopes"][0]["scope_value"] == "s"


    async def test_the_spend_gauge_total_adds_every_scope_value_in_redis(self, tmp_path, redis_server):
        """The gauge's total reads every scope value's step keys, and not the marks."""
        async with Harness(tmp_path, body(redis_server.url)) as h:
            await h.proc.consume(batch(*(span(0.25, session__id=f"s{i}") for i in range(30))))
            now = time.time()
            for budget, window in (("cap", "session"), ("hourly", "1h"), ("daily", "1d")):
                assert await h.proc.store.total(budget, parse_window(window).slot(now), now) == 7_500_000_000


class TestOutage:
    async def test_redis_going_away_keeps_counting_locally_and_reconciles(self, tmp_path, redis_server):
        """Spans keep flowing and being marked; the spend made meanwhile reaches Redis when it is back."""
        async with Harness(tmp_path, body(redis_server.url)) as h:
            before = await h.send(span(0.3, session__id="s"))
            assert before[0]["budget.spend"] == pytest.approx(0.3)
            redis_server.stop()
            during = await h.send(span(0.4, session__id="s"))
            assert during[0]["budget.spend"] == pytest.approx(0.7)  # the last spend Redis reported, plus ours
            assert during[0]["budget.event"] == "warning"
            assert h.metric("obs_pipeline_budget_state_errors_total", reason="redis_unavailable") == 1
            answer = await h.proc.decisions.one("cap", "s")
            assert (answer["degraded"], answer["spend"]) == (True, pytest.approx(0.7))
            listing = await h.proc.decisions.listing()
            assert listing["degraded"] is True
            assert listing["budgets"][0]["scopes"][0]["spend"] == pytest.approx(0.7)
            await h.send(span(0.1, session__id="s"))
            redis_server.start()  # the same port, empty (no persistence)
            for _ in range(100):
                if not h.proc.store.degraded:
                    break
                await asyncio.sleep(0.05)
            assert not h.proc.store.degraded
            assert await spend(redis_server.url, "cap", "s") == 500_000_000  # the outage's 0.4 + 0.1
            after = await h.send(span(0.1, session__id="s"))
            assert after[0]["budget.spend"] == pytest.approx(0.6)
            assert "budget.event" not in after[0]  # the warning fired during the outage is marked in Redis


class TestSessionTtl:
    async def test_session_ttl_zero_keeps_session_keys_for_ever(self, tmp_path, redis_server):
        async with Harness(tmp_path, body(redis_server.url, session_ttl="0s")) as h:
            await h.send(span(0.1, session__id="s"))
        client = redis.Redis.from_url(redis_server.url)
        assert client.ttl("obs_pipeline:budget:{cap/s}:session:0") == -1


class TestPausedRedis:
    async def test_a_hanging_redis_times_out_into_local_counting_and_reconciles_exactly(self, tmp_path, redis_server):
        """A paused Redis (SIGSTOP): the batch waits 1s at most, then counts locally; SIGCONT: the spend is exact."""
        async with Harness(tmp_path, body(redis_server.url)) as h:
            await h.send(span(0.3, session__id="s"))
            redis_server.proc.send_signal(signal.SIGSTOP)
            try:
                during = await h.send(span(0.4, session__id="s"))  # times out after 1s: counted locally
                assert during[0]["budget.spend"] == pytest.approx(0.7)
                assert h.proc.store.degraded
                await h.send(span(0.1, session__id="s"))
            finally:
                redis_server.proc.send_signal(signal.SIGCONT)
            for _ in range(100):
                if not h.proc.store.degraded:
                    break
                await asyncio.sleep(0.05)
            assert await spend(redis_server.url, "cap", "s") == 800_000_000

    async def test_a_charge_replayed_after_it_ran_adds_nothing(self, tmp_path, redis_server):
        """A command that timed out may still run when Redis resumes: its replay must not count twice."""
        store = RedisStore(Secret(redis_server.url), "obs_pipeline:budget:", "budget", component_logger("processor", "budget"))
        await store.open()
        try:
            slot = parse_window("1d").slot(time.time())
            charge = Charge(budget="cap", scope_value="s", slot=slot, amount=5, limit=100, seq=7)
            first, replayed = await store._run([charge]), await store._run([charge])
            later = await store._run([replace(charge, seq=8)])
            assert (first[0].spend, replayed[0].spend, later[0].spend) == (5, 5, 10)
        finally:
            await store.close()


class TestPassword:
    """A Redis URL with a password: it reaches Redis, and no log line, error or status output shows it."""

    PASSWORD = "hunter2-s3cret"

    async def test_charges_outage_and_status_never_show_the_password(self, tmp_path, caplog):
        caplog.set_level(logging.DEBUG)
        server = RedisServer(tmp_path, password=self.PASSWORD).start()
        try:
            async with Harness(tmp_path / "p", body(server.url)) as h:
                assert (await h.send(span(0.3, session__id="s")))[0]["budget.spend"] == pytest.approx(0.3)
                server.stop()
                await h.send(span(0.1, session__id="s"))  # counted locally, with a warning naming host:port/db
                server.start()
                for _ in range(100):
                    if not h.proc.store.degraded:
                        break
                    await asyncio.sleep(0.05)
                assert not h.proc.store.degraded
            assert await spend(server.url, "cap", "s") == 100_000_000  # (the restarted Redis is empty)
            assert f"127.0.0.1:{server.port}/0" in caplog.text
            assert self.PASSWORD not in caplog.text
            result = await asyncio.to_thread(_status, tmp_path, server.url)
        finally:
            server.stop()
        assert result.exit_code == 0, result.output
        assert {row["store"] for row in json.loads(result.output)["budgets"]} == {"redis"}
        assert self.PASSWORD not in result.output

    async def test_a_wrong_password_is_a_start_error_without_it(self, tmp_path):
        server = RedisServer(tmp_path, password=self.PASSWORD).start()
        try:
            wrong = server.url.replace(self.PASSWORD, "not-the-" + self.PASSWORD)
            h = Harness(tmp_path / "p", body(wrong))
            with pytest.raises(StartupError) as caught:
                await h.proc.start(h.host)
        finally:
            server.stop()
        assert f"127.0.0.1:{server.port}/0" in str(caught.value)
        assert self.PASSWORD not in str(caught.value)


def _status(tmp_path, url: str):
    """``obs-pipeline budget status --json`` on a config whose state is ``url``."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({
        "receivers": {"otlp": {}},
        "processors": {"budget": {"budgets": body(url)["budgets"], "state": url, "endpoint": None}},
        "exporters": {"debug": {}},
        "service": {"data_dir": str(tmp_path / "data"),
                    "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["budget"], "exporters": ["debug"]}}},
    }))
    return CliRunner().invoke(main, ["budget", "status", "--config", str(path), "--json"])
