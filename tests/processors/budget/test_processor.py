"""The budget processor in-process: states, events, scopes, bad input, restarts, concurrency."""

from __future__ import annotations

import asyncio
import gc
import math
import multiprocessing
import weakref
from pathlib import Path

import pytest

from obs_pipeline.errors import RefusedError
from obs_pipeline.processors.budget.processor import state_path
from obs_pipeline.processors.budget.store import Charge, SqliteStore
from obs_pipeline.processors.budget.windows import parse_window
from obs_pipeline.testing import RefusingConsumer
from tests.processors.budget.kit import Harness, attrs, batch, span, spans_of

CAP = {"budgets": [{"id": "cap", "scope": "session", "limit_usd": 1, "warn_at": [0.5, 0.8]}]}
EVENT_KEYS = {"budget.event", "budget.scope", "budget.scope_value", "budget.window", "budget.threshold"}


class TestStatesAndEvents:
    async def test_state_moves_ok_warning_exceeded_and_each_event_fires_once(self, tmp_path):
        """Spend, state and limit are on every charged span; each threshold's event on the span that reached it only."""
        async with Harness(tmp_path, CAP) as h:
            first = await h.send(span(0.3, session__id="s1"), span(0.3, session__id="s1"))
            assert [a["budget.state"] for a in first] == ["ok", "warning"]
            assert [a["budget.spend"] for a in first] == [0.3, 0.6]
            assert "budget.event" not in first[0]
            assert first[1]["budget.event"] == "warning"
            assert first[1]["budget.threshold"] == 0.5
            assert first[1]["budget.scope"] == "session"
            assert first[1]["budget.scope_value"] == "s1"
            assert first[1]["budget.window"] == "session"
            over = await h.send(span(0.5, session__id="s1"))
            assert over[0]["budget.state"] == "exceeded"
            assert over[0]["budget.event"] == "exceeded"  # the 0.8 warning is passed over by the exceed
            assert "budget.threshold" not in over[0]
            later = await h.send(span(0.1, session__id="s1"))
            assert later[0]["budget.state"] == "exceeded"
            assert "budget.event" not in later[0]
            assert h.metric("obs_pipeline_budget_events_total", budget="cap", event="exceeded") == 1
            assert h.metric("obs_pipeline_budget_events_total", budget="cap", event="warning") == 1
            assert h.metric("obs_pipeline_budget_charged_usd_total", budget="cap") == pytest.approx(1.2)

    async def test_reaching_the_limit_exactly_is_exceeded(self, tmp_path):
        async with Harness(tmp_path, CAP) as h:
            out = await h.send(span(0.25, session__id="s"), span(0.75, session__id="s"))
            assert out[1]["budget.state"] == "exceeded"
            assert out[1]["budget.spend"] == 1.0

    async def test_annotate_alone_writes_no_event_attributes(self, tmp_path):
        async with Harness(tmp_path, {**CAP, "actions": ["annotate"]}) as h:
            out = await h.send(span(2.0, session__id="s"))
            assert out[0]["budget.state"] == "exceeded"
            assert not EVENT_KEYS & out[0].keys()
            assert h.metric("obs_pipeline_budget_events_total", budget="cap", event="exceeded") == 1

    async def test_audit_alone_marks_only_the_span_that_fired(self, tmp_path):
        async with Harness(tmp_path, {**CAP, "actions": ["audit"]}) as h:
            out = await h.send(span(0.1, session__id="s"), span(2.0, session__id="s"))
            assert "budget.id" not in out[0]
            assert out[1]["budget.event"] == "exceeded"
            assert out[1]["budget.spend"] == pytest.approx(2.1)
            assert out[1]["budget.limit"] == 1.0

    async def test_the_most_severe_budget_is_annotated(self, tmp_path):
        body = {"budgets": [
            {"id": "session-cap", "scope": "session", "limit_usd": 10},
            {"id": "user-cap", "scope": "user", "limit_usd": 1},
        ]}
        async with Harness(tmp_path, body) as h:
            out = await h.send(span(0.4, session__id="s", user__id="u"))
            assert out[0]["budget.id"] == "user-cap"  # 40% of its limit beats 4%
            out = await h.send(span(0.7, session__id="s", user__id="u"))
            assert (out[0]["budget.id"], out[0]["budget.event"]) == ("user-cap", "exceeded")
            assert h.metric("obs_pipeline_budget_charged_usd_total", budget="session-cap") == pytest.approx(1.1)

    async def test_an_agent_span_setting_budget_attributes_is_overwritten(self, tmp_path):
        async with Harness(tmp_path, CAP) as h:
            out = await h.send(span(2.0, session__id="s", budget__state="ok", budget__id="forged"))
            assert out[0]["budget.state"] == "exceeded"
            assert out[0]["budget.id"] == "cap"


class TestScopes:
    async def test_session_resolves_like_the_audit_line(self, tmp_path):
        """gen_ai.conversation.id beats an alias whatever the order; the span beats its resource."""
        async with Harness(tmp_path, CAP) as h:
            await h.send(span(0.1, session__id="alias", gen_ai__conversation__id="canon"))
            await h.send(span(0.2, langfuse__session__id="lf"))
            await h.send(span(0.3), resource={"session.id": "from-resource"})
            await h.send(span(0.4, session__id="span-wins"), resource={"session.id": "from-resource"})
            scopes = dict(await h.proc.store.scopes("cap", parse_window("session").slot(0), 0, 10))
            assert {k: v.spend for k, v in scopes.items()} == {
                "canon": 100_000_000, "lf": 200_000_000, "from-resource": 300_000_000, "span-wins": 400_000_000,
            }

    async def test_tenant_user_agent_and_any_attribute(self, tmp_path):
        body = {"budgets": [
            {"id": "t", "scope": "tenant", "limit_usd": 9}, {"id": "u", "scope": "user", "limit_usd": 9},
            {"id": "a", "scope": "agent", "limit_usd": 9}, {"id": "c", "scope": "customer_id", "limit_usd": 9},
        ]}
        async with Harness(tmp_path, body) as h:
            await h.send(span(1.0, enduser__id="bob", gen_ai__agent__name="planner", customer_id=42),
                         resource={"tenant.id": "acme"})
            for budget, value in (("t", "acme"), ("u", "bob"), ("a", "planner"), ("c", "42")):
                reading = await h.proc.store.read(budget, value, parse_window("session").slot(0), 0)
                assert reading.spend == 1_000_000_000, budget

    async def test_a_span_without_the_scope_is_not_charged(self, tmp_path):
        async with Harness(tmp_path, CAP) as h:
            out = await h.send(span(0.5))
            assert "budget.id" not in out[0]
            assert h.metric("obs_pipeline_budget_charged_usd_total", budget="cap") == 0


class TestBadInputAndUnpriced:
    @pytest.mark.parametrize("amount", [-1.0, math.nan, math.inf, 1e300, "-3"])
    async def test_bad_costs_are_unpriced_charge_nothing_and_never_crash(self, tmp_path, amount):
        async with Harness(tmp_path, CAP) as h:
            out = await h.send(span(None, session__id="s", gen_ai__usage__cost__amount=amount),
                               span(0.1, session__id="s"))
            assert out[0]["budget.spend"] == 0
            assert out[1]["budget.spend"] == pytest.approx(0.1)
            assert h.metric("obs_pipeline_budget_unpriced_spans_total", budget="cap") == 1

    async def test_fail_open_counts_unpriced_and_stays_allowed(self, tmp_path):
        async with Harness(tmp_path, CAP) as h:
            out = await h.send(span(unpriced=True, session__id="s"))
            assert out[0]["budget.state"] == "ok"
            assert h.metric("obs_pipeline_budget_unpriced_spans_total", budget="cap") == 1
            assert (await h.proc.decisions.one("cap", "s"))["allowed"] is True

    async def test_fail_closed_makes_the_scope_exceeded(self, tmp_path):
        async with Harness(tmp_path, {**CAP, "unpriced": "fail_closed"}) as h:
            out = await h.send(span(0.1, session__id="s"), span(unpriced=True, session__id="s"),
                               span(0.1, session__id="s"))
            assert [a["budget.state"] for a in out] == ["ok", "exceeded", "exceeded"]
            assert out[1]["budget.event"] == "exceeded"
            answer = await h.proc.decisions.one("cap", "s")
            assert answer["allowed"] is False
            assert answer["unpriced_blocked"] is True


class TestPassThrough:
    async def test_a_batch_without_costs_keeps_its_wire_bytes(self, tmp_path):
        async with Harness(tmp_path, CAP) as h:
            original = batch(span(None, session__id="s"))
            wired = type(original).from_wire(original.signal, original.serialized())
            await h.proc.consume(wired)
            assert h.sink.batches[-1] is wired
            assert wired.wire is not None

    async def test_a_refused_batch_retried_is_charged_once(self, tmp_path):
        async with Harness(tmp_path, CAP) as h:
            refusing = RefusingConsumer(times=1)
            h.proc.next = refusing
            b = batch(span(0.3, session__id="s"))
            with pytest.raises(RefusedError):
                await h.proc.consume(b)
            await h.proc.consume(b)
            assert attrs(spans_of(refusing.batches[0])[0])["budget.spend"] == pytest.approx(0.3)
            assert h.metric("obs_pipeline_budget_charged_usd_total", budget="cap") == pytest.approx(0.3)

    async def test_a_refused_batch_nobody_retries_is_not_kept_alive(self, tmp_path):
        """A refused batch with nothing to charge is remembered only while its sender holds it."""
        async with Harness(tmp_path, CAP) as h:
            h.proc.next = RefusingConsumer()
            b = batch(span(None, session__id="s"))
            with pytest.raises(RefusedError):
                await h.proc.consume(b)
            alive = weakref.ref(b)
            del b
            gc.collect()
            assert alive() is None


class TestSqliteState:
    async def test_a_restart_keeps_spend_and_fired_warnings(self, tmp_path):
        async with Harness(tmp_path, CAP) as h:
            await h.send(span(0.6, session__id="s"))
        assert state_path(tmp_path, "budget").exists()
        async with Harness(tmp_path, CAP) as h:
            out = await h.send(span(0.1, session__id="s"))
            assert out[0]["budget.spend"] == pytest.approx(0.7)
            assert out[0]["budget.state"] == "warning"
            assert "budget.event" not in out[0]  # the 0.5 warning fired before the restart
            out = await h.send(span(0.1, session__id="s"))
            assert out[0]["budget.threshold"] == 0.8

    async def test_concurrent_batches_in_one_process_lose_no_update(self, tmp_path):
        async with Harness(tmp_path, CAP) as h:
            await asyncio.gather(*(h.proc.consume(batch(span(0.01, session__id="s"))) for _ in range(200)))
            reading = await h.proc.store.read("cap", "s", parse_window("session").slot(0), 0)
            assert reading.spend == 2_000_000_000
            assert h.metric("obs_pipeline_budget_events_total", budget="cap", event="exceeded") == 1

    async def test_the_spend_gauge_adds_every_scope_value_of_the_current_window(self, tmp_path):
        """obs_pipeline_budget_spend_usd is the budget's spend over all its scope values, none left out."""
        rolling = {"budgets": [{"id": "hourly", "scope": "session", "limit_usd": 1000, "window": "1h"}]}
        async with Harness(tmp_path, rolling) as h:
            await h.proc.consume(batch(*(span(0.25, session__id=f"s{i}") for i in range(40))))
            now = h.proc.clock()
            earlier = now - 2 * 3600  # two hours ago: out of the window
            h.proc.store.apply_now([Charge(budget="hourly", scope_value="s0", slot=parse_window("1h").slot(earlier),
                                           amount=5 * 10**9, limit=10**12)], earlier)
            assert await h.proc.store.total("hourly", parse_window("1h").slot(now), now) == 10 * 10**9
            await h.proc.refresh_gauge()
            assert h.metric("obs_pipeline_budget_spend_usd", budget="hourly") == pytest.approx(10.0)

    def test_two_processes_on_one_file_lose_no_update_and_fire_once(self, tmp_path):
        path = tmp_path / "state.sqlite3"
        SqliteStore(path).connect().close()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            fired = sum(pool.starmap(_charge_many, [(str(path), 300), (str(path), 300)]))
        store = SqliteStore(path)
        reading = store.read_now("cap", "s", parse_window("1d").slot(1e9), 1e9)
        assert reading.spend == 600 * 7_000_000  # 600 charges of $0.007
        assert fired == 1


def _charge_many(path: str, n: int) -> int:
    """Charge $0.007 n times, one transaction each; how many exceeded events this process saw fire."""
    store = SqliteStore(Path(path))
    slot = parse_window("1d").slot(1e9)
    fired = 0
    for _ in range(n):
        charge = Charge(budget="cap", scope_value="s", slot=slot, amount=7_000_000, limit=3_000_000_000)
        fired += store.apply_now([charge], 1e9)[0].fired & 1
    return fired


class TestWindows:
    async def test_rolling_spend_leaves_the_window_and_warnings_re_arm(self, tmp_path):
        body = {"budgets": [{"id": "r", "scope": "session", "limit_usd": 1, "window": "30m", "warn_at": [0.5]}]}
        async with Harness(tmp_path, body) as h:
            now = [1_000_000.0]
            h.proc.clock = lambda: now[0]
            assert (await h.send(span(0.6, session__id="s")))[0]["budget.event"] == "warning"
            now[0] += 20 * 60
            out = await h.send(span(0.3, session__id="s"))
            assert (out[0]["budget.spend"], "budget.event" in out[0]) == (pytest.approx(0.9), False)
            now[0] += 11 * 60  # the first $0.60 is now more than 30m old
            out = await h.send(span(0.3, session__id="s"))
            assert out[0]["budget.spend"] == pytest.approx(0.6)
            assert out[0]["budget.event"] == "warning"  # a window length after it fired, it may fire again

    async def test_a_calendar_day_resets_at_midnight_utc(self, tmp_path):
        body = {"budgets": [{"id": "d", "scope": "tenant", "limit_usd": 1, "window": "1d"}]}
        async with Harness(tmp_path, body) as h:
            now = [1_767_225_540.0]  # 2025-12-31T23:59:00Z
            h.proc.clock = lambda: now[0]
            assert (await h.send(span(1.5), resource={"tenant.id": "t"}))[0]["budget.state"] == "exceeded"
            now[0] += 120
            out = await h.send(span(0.5), resource={"tenant.id": "t"})
            assert (out[0]["budget.state"], out[0]["budget.spend"]) == ("ok", 0.5)

    async def test_an_idle_session_is_forgotten_after_session_ttl(self, tmp_path):
        """Session state slides with each charge; after session_ttl without one it starts from 0."""
        async with Harness(tmp_path, {**CAP, "session_ttl": "1h"}) as h:
            now = [1_000_000.0]
            h.proc.clock = lambda: now[0]
            assert (await h.send(span(0.6, session__id="s")))[0]["budget.event"] == "warning"
            for _ in range(3):  # active: every 50 minutes
                now[0] += 50 * 60
                out = await h.send(span(0.01, session__id="s"))
                assert "budget.event" not in out[0]
            assert out[0]["budget.spend"] == pytest.approx(0.63)
            now[0] += 61 * 60
            out = await h.send(span(0.6, session__id="s"))
            assert (out[0]["budget.spend"], out[0]["budget.event"]) == (pytest.approx(0.6), "warning")
