"""The pull endpoint: ``GET /metrics`` in the Prometheus text format, from the exporter's own registry."""

from __future__ import annotations

import errno

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from obs_pipeline.errors import StartupError
from obs_pipeline.units import parse_endpoint

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
        host, port = parse_endpoint(self.endpoint)
        app = web.Application()
        app.router.add_get(PATH, self._scrape)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or type(exc).__name__
            raise StartupError(f"{self.owner}: cannot listen on {self.endpoint}: {reason}") from exc
        self._runner = runner
        server = getattr(site, "_server", None)  # aiohttp keeps the asyncio server private
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        """Close the endpoint (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _scrape(self, _request: web.Request) -> web.Response:
        # generate_latest writes the classic text format (names escaped to [a-zA-Z0-9_:]): version 0.0.4,
        # which every Prometheus server reads.
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
