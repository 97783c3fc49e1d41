"""The decision endpoint over real HTTP: answers, auth, reservations, and the flip to allowed false."""

from __future__ import annotations

import aiohttp
import pytest

from obs_pipeline.processors.budget.decisions import SWEEP_EVERY, Reservations
from tests.processors.budget.kit import Harness, span

BODY = {
    "budgets": [{"id": "cap", "scope": "session", "limit_usd": 1, "warn_at": [0.5]},
                {"id": "daily", "scope": "tenant", "limit_usd": 100, "window": "1d"}],
    "endpoint": "127.0.0.1:0",
    "max_reservations_per_scope": 2,
}


class Client:
    def __init__(self, h: Harness, token: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{h.proc.server.port}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, path: str) -> tuple[int, dict]:
        async with aiohttp.ClientSession(headers=self.headers) as s, s.get(self.base + path) as r:
            return r.status, await r.json()

    async def delete(self, path: str) -> tuple[int, dict]:
        async with aiohttp.ClientSession(headers=self.headers) as s, s.delete(self.base + path) as r:
            return r.status, await r.json()

    async def post(self, path: str, body: object) -> tuple[int, dict]:
        async with aiohttp.ClientSession(headers=self.headers) as s, s.post(self.base + path, json=body) as r:
            return r.status, await r.json()


class TestDecisions:
    async def test_one_scope_value_and_the_flip_to_not_allowed(self, tmp_path):
        async with Harness(tmp_path, BODY) as h:
            c = Client(h)
            status, answer = await c.get("/v1/budgets/cap/s1")
            assert status == 200
            assert answer | {} == answer
            assert (answer["allowed"], answer["state"], answer["spend"], answer["remaining"]) == (True, "ok", 0, 1.0)
            assert answer["resets_at"] is None
            await h.send(span(0.6, session__id="s1"))
            assert (await c.get("/v1/budgets/cap/s1"))[1]["state"] == "warning"
            await h.send(span(0.5, session__id="s1"))  # the batch that exceeds
            _, answer = await c.get("/v1/budgets/cap/s1")
            assert (answer["allowed"], answer["state"], answer["remaining"]) == (False, "exceeded", 0)
            assert answer["spend"] == pytest.approx(1.1)

    async def test_calendar_budgets_say_when_they_reset(self, tmp_path):
        async with Harness(tmp_path, BODY) as h:
            _, answer = await Client(h).get("/v1/budgets/daily/acme")
            assert answer["resets_at"].endswith("T00:00:00Z")

    async def test_the_listing_names_every_budget_and_its_spenders(self, tmp_path):
        async with Harness(tmp_path, BODY) as h:
            await h.send(span(0.2, session__id="a"), span(0.3, session__id="b"), resource={"tenant.id": "acme"})
            status, listing = await Client(h).get("/v1/budgets")
            assert status == 200
            by_id = {b["id"]: b for b in listing["budgets"]}
            assert [s["scope_value"] for s in by_id["cap"]["scopes"]] == ["b", "a"]
            assert by_id["daily"]["scopes"][0]["spend"] == pytest.approx(0.5)
            assert listing["state"] == "sqlite"

    async def test_unknown_budget_is_404(self, tmp_path):
        async with Harness(tmp_path, BODY) as h:
            assert (await Client(h).get("/v1/budgets/nope/x"))[0] == 404


class TestAuth:
    async def test_bearer_token_required(self, tmp_path):
        body = {**BODY, "auth": {"bearer_token": "s3cret-token"}}
        async with Harness(tmp_path, body) as h:
            assert (await Client(h).get("/v1/budgets"))[0] == 401
            assert (await Client(h, "wrong").get("/v1/budgets/cap/s"))[0] == 401
            assert (await Client(h, "wrong").post("/v1/budgets/cap/s/reserve", {"estimate_usd": 1}))[0] == 401
            assert (await Client(h, "s3cret-token").get("/v1/budgets/cap/s"))[0] == 200


class TestReservations:
    async def test_reservations_hold_budget_until_their_span_arrives(self, tmp_path):
        async with Harness(tmp_path, BODY) as h:
            c = Client(h)
            status, first = await c.post("/v1/budgets/cap/s/reserve", {"estimate_usd": 0.6})
            assert status == 200
            assert first["allowed"] is True
            assert first["reservation_id"].startswith("rsv_")
            assert first["reserved"] == pytest.approx(0.6)
            _, second = await c.post("/v1/budgets/cap/s/reserve", {"estimate_usd": 0.6})
            assert (second["allowed"], second["reason"]) == (False, "over_budget")
            # The call's span arrives with its real cost: the reservation is released.
            await h.send(span(0.2, session__id="s", budget__reservation__id=first["reservation_id"]))
            _, answer = await c.get("/v1/budgets/cap/s")
            assert answer["reserved"] == 0
            assert answer["spend"] == pytest.approx(0.2)
            _, third = await c.post("/v1/budgets/cap/s/reserve", {"estimate_usd": 0.6})
            assert third["allowed"] is True

    async def test_a_reservation_can_be_released(self, tmp_path):
        async with Harness(tmp_path, BODY) as h:
            c = Client(h)
            _, held = await c.post("/v1/budgets/cap/s/reserve", {"estimate_usd": 0.9})
            assert (await c.delete(f"/v1/budgets/cap/other/reserve/{held['reservation_id']}"))[0] == 404
            assert (await c.delete(f"/v1/budgets/cap/s/reserve/{held['reservation_id']}"))[0] == 200
            assert (await c.get("/v1/budgets/cap/s"))[1]["reserved"] == 0
            assert (await c.delete(f"/v1/budgets/cap/s/reserve/{held['reservation_id']}"))[0] == 404

    async def test_reservations_are_capped_per_scope(self, tmp_path):
        async with Harness(tmp_path, BODY) as h:
            c = Client(h)
            for _ in range(2):
                assert (await c.post("/v1/budgets/cap/s/reserve", {"estimate_usd": 0.01}))[0] == 200
            status, answer = await c.post("/v1/budgets/cap/s/reserve", {"estimate_usd": 0.01})
            assert (status, answer["reason"]) == (429, "too_many_reservations")
            assert (await c.post("/v1/budgets/cap/other/reserve", {"estimate_usd": 0.01}))[0] == 200

    async def test_reservations_expire(self, tmp_path):
        async with Harness(tmp_path, BODY) as h:
            now = [0.0]
            h.proc.reservations.clock = lambda: now[0]
            c = Client(h)
            await c.post("/v1/budgets/cap/s/reserve", {"estimate_usd": 0.9})
            now[0] = 301.0  # past the default reservation_ttl of 5m
            assert (await c.get("/v1/budgets/cap/s"))[1]["reserved"] == 0

    def test_expired_reservations_of_scope_values_never_asked_again_are_forgotten(self):
        """An agent that reserves once per session and never reports the span leaks nothing."""
        now = [0.0]
        held = Reservations(ttl=300.0, cap=64, clock=lambda: now[0])
        for session in range(1000):
            held.add("cap", f"session-{session}", 1)
        now[0] = 301.0 + SWEEP_EVERY
        held.add("cap", "a-new-session", 1)
        assert len(held) == 1

    async def test_priced_by_model_and_unpriced_follows_the_policy(self, tmp_path):
        async with Harness(tmp_path, BODY) as h:
            c = Client(h)
            status, answer = await c.post("/v1/budgets/cap/s/reserve",
                                          {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000,
                                           "max_output_tokens": 1000})
            assert status == 200
            assert answer["estimate_usd"] == pytest.approx(0.0125)  # $2.50 + $10 per million tokens
            _, unknown = await c.post("/v1/budgets/cap/s/reserve", {"model": "no-such-model-xyz", "input_tokens": 5})
            assert unknown["allowed"] is True
            assert unknown["estimate_usd"] == 0
        async with Harness(tmp_path / "closed", {**BODY, "unpriced": "fail_closed"}) as h:
            _, unknown = await Client(h).post("/v1/budgets/cap/s/reserve", {"model": "no-such-model-xyz"})
            assert (unknown["allowed"], unknown["reason"]) == (False, "unpriced")

    @pytest.mark.parametrize("body", [[], {"estimate_usd": -1}, {"estimate_usd": "1"}, {"estimate_usd": float("inf")},
                                      {"model": "gpt-4o", "input_tokens": -5}, {"model": "gpt-4o", "input_tokens": 1.5},
                                      {}])
    async def test_bad_bodies_are_400(self, tmp_path, body):
        async with Harness(tmp_path, BODY) as h:
            status, answer = await Client(h).post("/v1/budgets/cap/s/reserve", body)
            assert status == 400
            assert answer["error"]
