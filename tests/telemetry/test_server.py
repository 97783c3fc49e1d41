"""The /metrics, /healthz and /readyz endpoints, served for real on loopback."""

from __future__ import annotations

import aiohttp
import pytest

from obs_pipeline.errors import StartupError
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.telemetry.server import TelemetryServer
from tests.e2e.harness import free_port


class TestTelemetryServer:
    async def test_readyz_follows_readiness_and_metrics_show_counters(self):
        """/readyz is 503 until ready, then 200; /healthz is always 200; /metrics is Prometheus text."""
        metrics = SelfMetrics()
        metrics.exporter_sent.labels(exporter="jsonl_audit", signal="traces").inc(42)
        ready = False
        mport, hport = free_port(), free_port()
        server = TelemetryServer(metrics, f"127.0.0.1:{mport}", f"127.0.0.1:{hport}", lambda: ready)
        await server.start()
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{hport}/readyz") as resp:
                    assert resp.status == 503
                async with http.get(f"http://127.0.0.1:{hport}/healthz") as resp:
                    assert resp.status == 200
                ready = True
                async with http.get(f"http://127.0.0.1:{hport}/readyz") as resp:
                    assert resp.status == 200
                async with http.get(f"http://127.0.0.1:{mport}/metrics") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain")
                    page = await resp.text()
            assert 'obs_pipeline_exporter_sent_items_total{exporter="jsonl_audit",signal="traces"} 42.0' in page
            assert "_created" not in page
        finally:
            await server.stop()
            await server.stop()

    async def test_busy_port_is_a_startup_error_naming_the_endpoint(self):
        """A taken metrics port fails start with a clear message and leaves nothing bound."""
        import socket  # noqa: PLC0415

        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen()
            port = blocker.getsockname()[1]
            server = TelemetryServer(SelfMetrics(), f"127.0.0.1:{port}", None, lambda: True)
            with pytest.raises(StartupError, match=f"127.0.0.1:{port}: address already in use"):
                await server.start()
