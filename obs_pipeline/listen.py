"""Binding an aiohttp application to a configured ``host:port``, written once for every listener we own.

Our own telemetry, the prometheus exporter's scrape endpoint and the budget processor's decision
endpoint all bind the same way: no access log, no signal handlers (the engine owns signals), a
:class:`~obs_pipeline.errors.StartupError` that names the component and the endpoint when the
address cannot be had, and the port actually bound (the configured one, or the kernel's pick for 0).
"""

from __future__ import annotations

import errno

from aiohttp import web

from obs_pipeline.errors import StartupError
from obs_pipeline.units import parse_endpoint

__all__ = ["listen"]


async def listen(app: web.Application, endpoint: str, owner: str, what: str = "") -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``endpoint``: its runner (``cleanup()`` closes it) and the bound port.

    Raises:
        StartupError: it cannot be bound ("<owner>: cannot listen on <endpoint> (<what>): <reason>").
    """
    host, port = parse_endpoint(endpoint)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or type(exc).__name__
        suffix = f" ({what})" if what else ""
        raise StartupError(f"{owner}: cannot listen on {endpoint}{suffix}: {reason}") from exc
    server = getattr(site, "_server", None)  # aiohttp keeps the asyncio server private
    sockets = getattr(server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1] if sockets else port
