"""Registries for the config tests: fake components always, the real ones as they land."""

from __future__ import annotations

import pytest

from obs_pipeline import components
from tests.config import fakes


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built-in types backed by the fakes (real schema files), plus the test-only prom/webhook."""
    monkeypatch.setattr(components, "_BUILTIN", fakes.registry(real=False))


@pytest.fixture
def real_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real built-in components that import (fakes for those still being written), plus prom/webhook."""
    if len(fakes.real_components_missing()) == len(fakes.REAL_BUILTIN):
        pytest.skip("no real component imports yet")
    monkeypatch.setattr(components, "_BUILTIN", fakes.registry(real=True))


@pytest.fixture(params=["fake", "real"])
def any_registry(request: pytest.FixtureRequest) -> str:
    """Runs a test once with the fakes and once with the real components."""
    request.getfixturevalue(f"{request.param}_registry")
    return request.param
