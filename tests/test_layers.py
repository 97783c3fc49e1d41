"""The layers of DESIGN §1 hold: ``lint-imports`` keeps every contract, and each contract bites.

The contracts live in ``[tool.importlinter]`` of ``pyproject.toml``. A contract that nothing can
break protects nothing, so each one is also run against a copy of the package with one
forbidden import added, and must fail there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PROBE = "_layer_probe"

# contract id -> (the subpackage that gets the probe module, the import it must not make)
VIOLATIONS = {
    "config-below-engine": ("config", "import obs_pipeline.engine.graph"),
    "components-independent": ("receivers", "import obs_pipeline.exporters.debug"),
    "components-below-engine": ("processors", "import obs_pipeline.config"),
    "only-commands-know-the-cli": ("telemetry", "import click"),
    "engine-below-commands": ("engine", "import obs_pipeline.commands"),
}

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[test]')")


def _lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``obs_pipeline/`` and ``pyproject.toml`` that a test may add modules to."""
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "obs_pipeline", root / "obs_pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


class TestLayers:
    def test_the_tree_keeps_every_contract(self):
        """lint-imports exits 0 on the package as it is."""
        result = _lint_imports(ROOT)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_every_contract_has_a_violation_case(self):
        """Each contract in pyproject.toml is exercised by a deliberate violation below."""
        config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
        assert sorted(c["id"] for c in config["contracts"]) == sorted(VIOLATIONS)

    @pytest.mark.parametrize("contract", sorted(VIOLATIONS))
    def test_a_forbidden_import_breaks_its_contract(self, package_copy: Path, contract: str):
        """One module with one forbidden import makes lint-imports fail, naming that module."""
        subpackage, statement = VIOLATIONS[contract]
        probe = package_copy / "obs_pipeline" / subpackage / f"{PROBE}.py"
        probe.write_text(f'"""Breaks {contract} on purpose."""\n\n{statement}\n')
        try:
            result = _lint_imports(package_copy, "--contract", contract, str(package_copy / "pyproject.toml"))
        finally:
            probe.unlink()
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "BROKEN" in output
        assert f"obs_pipeline.{subpackage}.{PROBE}" in output
