"""``obs_pipeline_redaction_values_total``: every value masked or found is counted, in every signal."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from obs_pipeline.batch import Batch
from obs_pipeline.processors.redaction import FACTORY, Redactor
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import CapturingConsumer, make_processor_settings, parse_config
from tests.processors.redaction.kit import log_request, run, span_request

OPENAI = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
METRIC = "obs_pipeline_redaction_values_total"


def _redactor(metrics: SelfMetrics, signal: Signal = Signal.TRACES, **body: Any) -> Redactor:
    settings = make_processor_settings("redaction", signal, metrics=metrics)
    return Redactor(parse_config(FACTORY, body), settings)


def _count(metrics: SelfMetrics, rule: str, mode: str = "masked", pipeline: str = "traces") -> float:
    value = metrics.registry.get_sample_value(
        METRIC, {"processor": "redaction", "pipeline": pipeline, "rule": rule, "mode": mode})
    return value or 0.0


def _metrics_request() -> ExportMetricsServiceRequest:
    """One gauge point and its exemplar, each with a secret in an attribute, one under a sensitive key."""
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="requests")
    point = metric.gauge.data_points.add(as_int=1)
    point.attributes.add(key="route").value.string_value = f"/v1?key={OPENAI}"
    point.attributes.add(key="api_key").value.string_value = "hunter2hunter2"
    exemplar = point.exemplars.add(as_int=1)
    exemplar.filtered_attributes.add(key="header").value.string_value = f"Bearer {OPENAI}"
    return request


def test_metric_data_points_and_exemplars_are_counted() -> None:
    """Metric points get no summary attributes, so the metric is the only place their redactions show."""
    metrics = SelfMetrics()
    out = run(_redactor(metrics, Signal.METRICS), _metrics_request(), Signal.METRICS)
    point = out.message.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    assert OPENAI not in str(point)
    assert _count(metrics, "openai-api-key", pipeline="metrics") == 2  # the point's and the exemplar's
    assert _count(metrics, "sensitive-key", pipeline="metrics") == 1


def test_unscanned_values_are_counted() -> None:
    """A value over max_value_size becomes the unscanned marker, and is counted under rule ``unscanned``."""
    metrics = SelfMetrics()
    out = run(_redactor(metrics, max_value_size="1KiB"), span_request({"blob": "x" * 5000}))
    assert "[REDACTED:unscanned]" in str(out.message)
    assert _count(metrics, "unscanned") == 1


def test_detect_mode_findings_are_counted_as_detected() -> None:
    """Detect mode changes nothing, but what it finds is counted with ``mode="detected"``."""
    metrics = SelfMetrics()
    request = span_request({"prompt": f"use {OPENAI}"})
    out = run(_redactor(metrics, mode="detect"), request)
    assert OPENAI in str(out.message)
    assert _count(metrics, "openai-api-key", mode="detected") == 1
    assert _count(metrics, "openai-api-key", mode="masked") == 0


def test_logs_blocked_keys_and_resources_without_records_are_counted() -> None:
    """Log bodies and blocked keys count, and a resource secret with no record under it is counted too."""
    metrics = SelfMetrics()
    request = log_request(body=f"token {OPENAI}", attrs={"x-internal": "abc"})
    empty = request.resource_logs.add()  # a resource whose scope has no record: no summary, still counted
    empty.resource.attributes.add(key="env").value.string_value = OPENAI
    empty.scope_logs.add()
    run(_redactor(metrics, Signal.LOGS, blocked_keys=["^x-internal$"]), request, Signal.LOGS)
    assert _count(metrics, "openai-api-key", pipeline="logs") == 2
    assert _count(metrics, "blocked-key", pipeline="logs") == 1


def test_the_factory_built_processor_counts_once_per_value() -> None:
    """Through the factory (as in a pipeline), a clean batch counts nothing and each secret once."""
    metrics = SelfMetrics()
    settings = make_processor_settings("redaction", metrics=metrics)
    sink = CapturingConsumer()
    processor = FACTORY.create(settings, parse_config(FACTORY, {}), sink)
    clean = span_request({"model": "gpt-4o"}).SerializeToString()
    dirty = span_request({"a": OPENAI, "b": f"again {OPENAI}"}).SerializeToString()
    for wire in (clean, dirty):
        asyncio.run(processor.consume(Batch.from_wire(Signal.TRACES, wire)))
    assert _count(metrics, "openai-api-key") == 2
    assert OPENAI not in str(sink.batches[-1].message)
