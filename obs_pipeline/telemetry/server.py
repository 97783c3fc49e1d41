"""HTTP endpoints about the pipeline itself: ``/metrics`` (Prometheus text), ``/healthz``, ``/readyz``."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from obs_pipeline.errors import StartupError
from obs_pipeline.listen import listen
from obs_pipeline.telemetry.metrics import SelfMetrics


class TelemetryServer:
    """Serves metrics and health on their configured endpoints (either may be off)."""

    def __init__(
        self,
        metrics: SelfMetrics,
        metrics_endpoint: str | None,
        health_endpoint: str | None,
        is_ready: Callable[[], bool],
    ) -> None:
        self._metrics = metrics
        self._is_ready = is_ready
        self._plan: list[tuple[str, web.Application]] = []
        if metrics_endpoint:
            app = web.Application()
            app.router.add_get("/metrics", self._serve_metrics)
            self._plan.append((metrics_endpoint, app))
        if health_endpoint:
            app = web.Application()
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._readyz)
            self._plan.append((health_endpoint, app))
        self._runners: list[web.AppRunner] = []
        self.bound: dict[str, int] = {}  # configured endpoint -> bound port (useful with port 0)

    async def start(self) -> None:
        """Bind every endpoint.

        Raises:
            StartupError: an endpoint could not be bound.
        """
        for endpoint, app in self._plan:
            try:
                runner, self.bound[endpoint] = await listen(app, endpoint, "service.telemetry")
            except StartupError:
                await self.stop()
                raise
            self._runners.append(runner)

    async def stop(self) -> None:
        """Close every endpoint (idempotent)."""
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    async def _serve_metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        if self._is_ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)
