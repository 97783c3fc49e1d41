"""The decision endpoint: an aiohttp server an agent runtime asks before its next LLM call.

``GET /v1/budgets``, ``GET /v1/budgets/{id}/{scope_value}``, ``POST /v1/budgets/{id}/{scope_value}/reserve``
and ``DELETE .../reserve/{reservation_id}`` (a call that was not made: release its hold now);
answers in :mod:`.decisions`. With ``auth`` every request needs ``Authorization: Bearer <token>``,
compared in constant time; others get 401 before anything is read. Errors name the request's
problem, never a scope value or the token.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from obs_pipeline.errors import describe_exception
from obs_pipeline.listen import listen
from obs_pipeline.processors.budget.decisions import Decisions
from obs_pipeline.secret import Secret

__all__ = ["DecisionServer"]

MAX_BODY = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


class DecisionServer:
    """Serves :class:`Decisions` on ``endpoint``.

    Args:
        owner: the component id, for messages.
        endpoint: host:port (port 0: any free port, see :attr:`port`).
        decisions: the answers.
        token: the bearer token every request must carry, or None.
        log: the component's logger.
    """

    def __init__(self, owner: str, endpoint: str, decisions: Decisions, token: Secret | None, log: Any) -> None:
        self.owner = owner
        self.endpoint = endpoint
        self.decisions = decisions
        self._token = token.reveal().encode() if token is not None else None
        self.log = log
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind the endpoint.

        Raises:
            StartupError: it cannot be bound.
        """
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.router.add_get("/v1/budgets", self._list)
        app.router.add_get("/v1/budgets/{id}/{scope_value}", self._one)
        app.router.add_post("/v1/budgets/{id}/{scope_value}/reserve", self._reserve)
        app.router.add_delete("/v1/budgets/{id}/{scope_value}/reserve/{reservation_id}", self._release)
        self._runner, self.port = await listen(app, self.endpoint, self.owner, "decision endpoint")

    async def stop(self) -> None:
        """Close the endpoint (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is not None:
            scheme, _, given = (request.headers.get("Authorization") or "").strip().partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8", "replace"),
                                                                     self._token):
                return web.json_response({"error": "missing or invalid bearer token"}, status=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            self.log.error("the decision endpoint failed on a request: %s", describe_exception(exc))
            return _json(500, {"error": "internal error"})

    async def _list(self, _request: web.Request) -> web.Response:
        return _json(200, await self.decisions.listing())

    async def _one(self, request: web.Request) -> web.Response:
        answer = await self.decisions.one(request.match_info["id"], request.match_info["scope_value"])
        if answer is None:
            return _json(404, {"error": "no such budget"})
        return _json(200, answer)

    async def _reserve(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except (ValueError, UnicodeDecodeError):
            return _json(400, {"error": "the body is not JSON"})
        status, answer = await self.decisions.reserve(request.match_info["id"], request.match_info["scope_value"], body)
        headers = {"Retry-After": "1"} if status == 429 else None
        return web.json_response(answer, status=status, headers=headers)

    async def _release(self, request: web.Request) -> web.Response:
        info = request.match_info
        released = self.decisions.reservations.release(info["id"], info["scope_value"], info["reservation_id"])
        if not released:
            return _json(404, {"error": "no such reservation (released, matched by its span, or expired)"})
        return _json(200, {"released": True})
