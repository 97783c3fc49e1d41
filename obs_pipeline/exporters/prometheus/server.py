"""The pull endpoint: ``GET /metrics`` in the Prometheus text format, from the exporter's own registry."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from obs_pipeline.listen import listen

__all__ = ["PATH", "MetricsServer"]

PATH = "/metrics"


class MetricsServer:
    """Serves ``registry`` at ``http://<endpoint>/metrics``.

    Args:
        owner: the component ID, for messages.
        endpoint: host:port to listen on (port 0: any free port, see :attr:`port`).
        registry: what a scrape collects.
    """

    def __init__(self, owner: str, endpoint: str, registry: CollectorRegistry) -> None:
        self.owner = owner
        self.endpoint = endpoint
        self.registry = registry
        self.port = 0  # the bound port, once started
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind the endpoint.

        Raises:
            StartupError: it cannot be bound (in use, no such address, no permission).
        """
        app = web.Application()
        app.router.add_get(PATH, self._scrape)
        self._runner, self.port = await listen(app, self.endpoint, self.owner)

    async def stop(self) -> None:
        """Close the endpoint (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _scrape(self, _request: web.Request) -> web.Response:
        # generate_latest writes the classic text format (names escaped to [a-zA-Z0-9_:]): version 0.0.4,
        # which every Prometheus server reads.
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
