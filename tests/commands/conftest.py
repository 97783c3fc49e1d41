"""Command tests use the config tests' registries."""

from tests.config.conftest import any_registry, fake_registry, real_registry

__all__ = ["any_registry", "fake_registry", "real_registry"]
