"""The hand-written docs match the product: every metric is documented, every component is introduced.

``docs/components/`` is generated and checked by ``test_docsgen``; these tests cover what a person
writes: ``docs/telemetry.md`` against the metrics registered in ``SelfMetrics`` (names, labels and
the reason values the code uses), and the README's overview against the registered component types.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from prometheus_client import ProcessCollector, generate_latest

from obs_pipeline.components import Kind, known_types
from obs_pipeline.engine.queue import FAILURE_REASONS
from obs_pipeline.telemetry.metrics import LOSS_REASONS, SelfMetrics

REPO = Path(__file__).parents[2]
DOCS = REPO / "docs"
TELEMETRY = DOCS / "telemetry.md"
# The collector's other names for the otlp exporter, introduced with it.
ALIASES = {"otlp_grpc", "otlp_http", "otlphttp"}
_ROW = re.compile(r"^\| `(obs_pipeline_\w+)` \| ([^|]*) \| (.*) \|$")


def _exposed_name(metric: Any) -> str:
    """The name a metric has on /metrics: counters gain ``_total``."""
    return f"{metric._name}_total" if metric._type == "counter" else metric._name


def _registered() -> dict[str, tuple[str, ...]]:
    """Every metric registered in a fresh SelfMetrics: exposed name -> label names."""
    registry = SelfMetrics().registry
    # (prometheus_client's process collector is not ours: it has a row of its own, tested below)
    return {_exposed_name(m): tuple(m._labelnames) for m in registry._collector_to_names
            if not isinstance(m, ProcessCollector)}


def _documented() -> dict[str, tuple[set[str], str]]:
    """The metrics table of telemetry.md: name -> (label names, meaning)."""
    rows: dict[str, tuple[set[str], str]] = {}
    for line in TELEMETRY.read_text(encoding="utf-8").splitlines():
        if match := _ROW.match(line):
            name, labels, meaning = match.groups()
            assert name not in rows, f"{name} has two rows"
            rows[name] = ({label.strip() for label in labels.split(",") if label.strip()}, meaning)
    return rows


def _code_literals(pattern: str) -> set[str]:
    """Every string a regex's first group captures in obs_pipeline/**/*.py."""
    found: set[str] = set()
    for path in (REPO / "obs_pipeline").rglob("*.py"):
        found |= set(re.findall(pattern, path.read_text(encoding="utf-8")))
    return found


class TestTelemetryDoc:
    def test_every_registered_metric_has_one_row_with_its_labels(self):
        """telemetry.md lists exactly the metrics SelfMetrics registers, each with exactly its labels."""
        registered, documented = _registered(), _documented()
        assert sorted(documented) == sorted(registered)
        for name, labels in registered.items():
            assert documented[name][0] == set(labels), name

    def test_the_process_series_are_exposed_and_named(self):
        """What a processor's CPU is a share of (process_cpu_seconds_total) is on /metrics, and in the doc."""
        page = generate_latest(SelfMetrics().registry).decode()
        assert "\nprocess_cpu_seconds_total " in page
        assert "`process_cpu_seconds_total`" in TELEMETRY.read_text(encoding="utf-8")

    def test_exporter_failure_and_loss_reasons(self):
        """Every reason the queue counts a failure under, and every loss reason, is explained."""
        failed = _documented()["obs_pipeline_exporter_failed_items_total"][1]
        dropped = _documented()["obs_pipeline_processor_dropped_items_total"][1]
        assert [r for r in FAILURE_REASONS if f"`{r}`" not in failed] == []
        assert [r for r in sorted(LOSS_REASONS) if f"`{r}`" not in dropped] == []

    def test_receiver_refusal_reasons(self):
        """Every reason a receiver counts a refusal under (as written in the code) is explained."""
        reasons = (
            _code_literals(r'RefusedError\(\s*"(\w+)"')
            | _code_literals(r'Outcome\(\s*\w+,\s*\d+,\s*"(\w+)"')
            | _code_literals(r'\.refused\(\s*[\w.]+,\s*"(\w+)"')
        )
        assert {"queue_full", "shutting_down", "malformed"} <= reasons  # the patterns still find them
        refused = _documented()["obs_pipeline_receiver_refused_items_total"][1]
        assert sorted(r for r in reasons if f"`{r}`" not in refused) == []



class TestOverview:
    def test_every_registered_type_is_named_in_the_readme(self):
        """A newcomer reading the README's overview meets every receiver, processor and exporter we ship."""
        readme = (REPO / "README.md").read_text(encoding="utf-8")
        missing = [f"{kind.singular} {type_}" for kind in Kind for type_ in known_types(kind)
                   if type_ not in ALIASES and f"`{type_}`" not in readme]
        assert missing == []

    def test_package_description_names_what_it_does(self):
        """pyproject's one-line description (what PyPI shows) names the capabilities users search for."""
        description = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["description"]
        for capability in ("redaction", "cost", "budget", "sampling", "audit", "OTLP"):
            assert capability.lower() in description.lower(), description
