"""The hand-written docs match the product: every metric is documented, nothing missing is promised.

``docs/components/`` is generated and checked by ``test_docsgen``; these tests cover what a person
writes: ``docs/telemetry.md`` against the metrics registered in ``SelfMetrics`` (names, labels and
the reason values the code uses), and the docs and schema descriptions against features that do
not exist yet, which may only be named in a sentence that says "not yet".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from obs_pipeline.config.schemas import builtin_schema_files, read_schema
from obs_pipeline.engine.queue import FAILURE_REASONS
from obs_pipeline.telemetry.metrics import LOSS_REASONS, SelfMetrics

REPO = Path(__file__).parents[2]
DOCS = REPO / "docs"
TELEMETRY = DOCS / "telemetry.md"
OTHERS = {"audit-line.md"}  # kept by the audit line's owners, checked by their tests
_ROW = re.compile(r"^\| `(obs_pipeline_\w+)` \| ([^|]*) \| (.*) \|$")


def _exposed_name(metric: Any) -> str:
    """The name a metric has on /metrics: counters gain ``_total``."""
    return f"{metric._name}_total" if metric._type == "counter" else metric._name


def _registered() -> dict[str, tuple[str, ...]]:
    """Every metric registered in a fresh SelfMetrics: exposed name -> label names."""
    registry = SelfMetrics().registry
    return {_exposed_name(m): tuple(m._labelnames) for m in registry._collector_to_names}


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


# Features that do not exist yet. A sentence that names one must say "not yet".
FEATURES = [
    r"\bredaction\b", r"\bbudgets?\b", r"\bcost (tracking|accounting|estimat\w*)\b", r"\bsampl(ing|er)\b",
    r"\bfile_tail\b", r"\bcheckpoints?\b", r"\bpresets?\b", r"\bhash chain\b", r"\brotat(e|ed|ion)\b",
    r"\bretention\b",
]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(])|\n\s*\n|\n(?=\s*[-|#*])")


def _sentences(text: str) -> Iterator[str]:
    for sentence in _SENTENCE_END.split(text):
        yield " ".join(sentence.split())


def _descriptions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield value
            else:
                yield from _descriptions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _descriptions(item)


def _texts() -> Iterator[tuple[str, str]]:
    """(where, text) for every hand-written doc page and every shipped schema description."""
    for page in sorted(DOCS.rglob("*.md")):
        if page.name not in OTHERS:
            yield str(page.relative_to(REPO)), page.read_text(encoding="utf-8")
    for schema in builtin_schema_files():
        for description in _descriptions(read_schema(schema)):
            yield str(schema.relative_to(REPO)), description


class TestNoPromises:
    def test_features_that_do_not_exist_are_marked_not_yet(self):
        """Docs and schema descriptions name a missing feature only in a sentence that says "not yet"."""
        promises = [
            f"{where}: {sentence}"
            for where, text in _texts()
            for sentence in _sentences(text)
            if any(re.search(feature, sentence, re.IGNORECASE) for feature in FEATURES)
            and "not yet" not in sentence.lower()
        ]
        assert promises == []

    def test_package_description(self):
        """pyproject's one-line description names only what the package does today."""
        description = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["description"]
        for missing in ("redaction", "cost", "budget", "OTLP out"):
            assert missing.lower() not in description.lower(), description
