"""The public surface is pinned: ``__all__`` of the public modules, name by name.

After httpx's ``tests/test_exported_members.py``. Changing what a module exports is a decision:
it fails here until the list below is changed with it. A public name defined in one of these
modules but left out of its ``__all__`` fails too, so the two cannot drift apart.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXPECTED: dict[str, list[str]] = {
    "obs_pipeline": [
        "Batch",
        "ConfigError",
        "Consumer",
        "ExportError",
        "Exporter",
        "ExporterFactory",
        "Host",
        "ObsPipelineError",
        "PartialSuccess",
        "PermanentError",
        "Problem",
        "ProcessingError",
        "Processor",
        "ProcessorFactory",
        "ProcessorSettings",
        "Receiver",
        "ReceiverFactory",
        "ReceiverTraits",
        "RefusedError",
        "RetryableError",
        "Settings",
        "Signal",
        "StartupError",
        "__version__",
    ],
    "obs_pipeline.components": [
        "ENTRY_POINT_GROUP",
        "SCHEMA_DIR",
        "TYPE_PATTERN",
        "Component",
        "ComponentID",
        "Consumer",
        "Exporter",
        "ExporterFactory",
        "Factory",
        "Host",
        "Kind",
        "LifecycleError",
        "PartialSuccess",
        "Processor",
        "ProcessorFactory",
        "ProcessorSettings",
        "Produces",
        "Receiver",
        "ReceiverFactory",
        "ReceiverTraits",
        "Settings",
        "State",
        "get_factory",
        "known_types",
    ],
    "obs_pipeline.testing": [
        "CapturingConsumer",
        "RecordingHost",
        "RefusingConsumer",
        "make_processor_settings",
        "make_settings",
        "parse_config",
    ],
    "obs_pipeline.telemetry.logs": [
        "COMPONENT_KINDS",
        "ComponentLogger",
        "JsonFormatter",
        "TextFormatter",
        "component_logger",
        "configure_logging",
    ],
}

# Public-looking names a module defines on purpose without exporting them.
NOT_EXPORTED: dict[str, set[str]] = {
    "obs_pipeline.components": {"metadata"},  # importlib.metadata, for the entry-point registry
}

# What ``import obs_pipeline`` must not load: the heavy optional parts and the command line.
NOT_LOADED_BY_THE_PACKAGE = ("grpc", "aiohttp", "click", "prometheus_client")


def _ruff_order(name: str) -> tuple[int, list[int | str]]:
    """The order ruff's RUF022 keeps ``__all__`` in: CONSTANTS, then Classes, then the rest, naturally."""
    kind = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    return kind, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _defined_names(module: ModuleType) -> set[str]:
    """Names the module's own source binds at top level (a package's ``__init__``: its imports too)."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    is_package = module.__file__.endswith("__init__.py")
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif is_package and isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _is_public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__") and name != "__all__")


@pytest.mark.parametrize("module_name", sorted(EXPECTED))
class TestExportedMembers:
    def test_all_is_exactly_the_pinned_list(self, module_name: str):
        """``__all__`` equals the list written in this test, in the same order."""
        assert importlib.import_module(module_name).__all__ == EXPECTED[module_name]

    def test_all_is_sorted_without_duplicates(self, module_name: str):
        """``__all__`` is in ruff's RUF022 order and names nothing twice."""
        exported = importlib.import_module(module_name).__all__
        assert exported == sorted(exported, key=_ruff_order)
        assert len(set(exported)) == len(exported)

    def test_every_exported_name_exists(self, module_name: str):
        """Each name in ``__all__`` is an attribute of the module (``from m import *`` works)."""
        module = importlib.import_module(module_name)
        assert [name for name in module.__all__ if not hasattr(module, name)] == []

    def test_every_public_name_defined_here_is_exported(self, module_name: str):
        """A public name the module defines is in ``__all__``, unless it is listed as deliberately not."""
        module = importlib.import_module(module_name)
        public = {name for name in _defined_names(module) if _is_public(name)}
        assert sorted(public - NOT_EXPORTED.get(module_name, set())) == sorted(module.__all__)


class TestPackageImport:
    def test_importing_the_package_loads_no_server_or_cli_code(self):
        """``import obs_pipeline`` (what a component author does) loads neither grpc, aiohttp nor click."""
        code = (
            "import sys, obs_pipeline\n"
            f"print(sorted(m for m in {NOT_LOADED_BY_THE_PACKAGE!r} if m in sys.modules))"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        assert result.stdout.strip() == "[]"

    def test_a_component_can_be_written_against_the_package_alone(self):
        """The factory of each kind and its base class come from the top-level package."""
        import obs_pipeline  # noqa: PLC0415

        assert obs_pipeline.ReceiverFactory.kind.singular == "receiver"
        assert obs_pipeline.ProcessorFactory.kind.singular == "processor"
        assert obs_pipeline.ExporterFactory.kind.singular == "exporter"
        assert issubclass(obs_pipeline.RetryableError, obs_pipeline.ObsPipelineError)
