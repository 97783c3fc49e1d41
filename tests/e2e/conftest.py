"""Fixtures for the end-to-end tests: a pipeline subprocess that is always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import PipelineProcess


@pytest.fixture
def pipeline_factory(tmp_path: Path) -> Iterator[type[PipelineProcess]]:
    """Build PipelineProcess objects in tmp_path; kill any still running at the end."""
    made: list[PipelineProcess] = []

    def make(config=None, **kwargs) -> PipelineProcess:
        proc = PipelineProcess(tmp_path, config, **kwargs)
        made.append(proc)
        return proc

    yield make  # type: ignore[misc]
    for proc in made:
        proc.kill()
