"""Shared helpers for the receiver tests: metrics readers and loopback addresses."""

from __future__ import annotations

import socket

import pytest

from obs_pipeline.telemetry.metrics import SelfMetrics


def sample(metrics: SelfMetrics, name: str, **labels: str) -> float:
    """The value of ``obs_pipeline_<name>_total`` with ``labels`` (0 when never counted)."""
    value = metrics.registry.get_sample_value(f"obs_pipeline_{name}_total", labels)
    return value or 0.0


@pytest.fixture
def metrics() -> SelfMetrics:
    """Fresh self-metrics for one test."""
    return SelfMetrics()


@pytest.fixture
def busy_port():
    """A loopback port that something is listening on (so binding it must fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
