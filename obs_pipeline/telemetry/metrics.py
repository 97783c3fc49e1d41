"""Our own metrics (DESIGN §6), in a registry of their own.

Counters move once per batch, never once per item, so they cost nothing on the hot path.
Label values are component and pipeline IDs, never telemetry content.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The ``*_created`` timestamp series double the size of /metrics and no dashboard of ours uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated


#: ``processor_dropped_items`` reasons that mean accepted data was lost (not dropped on purpose,
#: as ``sampled`` or ``filtered`` are): a run that had any exits with ``ExitCode.DATA_LOST``.
LOSS_REASONS = frozenset({"processing_error", "shutdown", "downstream_error"})


class SelfMetrics:
    """The ``obs_pipeline_*`` metrics of one running pipeline."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.receiver_accepted = Counter(
            "obs_pipeline_receiver_accepted_items",
            "Items (spans, data points, log records) a receiver handed to the pipeline and acknowledged.",
            ["receiver", "transport", "signal"], registry=r,
        )
        self.receiver_refused = Counter(
            "obs_pipeline_receiver_refused_items",
            "Items a receiver did not pass on, by reason (queue_full, shutting_down, processor_failed, exporter_failed, "
            "internal_error, export_failed, processing_error; stdin: malformed, no_pipeline).",
            ["receiver", "transport", "signal", "reason"], registry=r,
        )
        self.receiver_malformed_requests = Counter(
            "obs_pipeline_receiver_malformed_requests",
            "Requests or lines that could not be decoded at all (their item count is unknown).",
            ["receiver", "transport"], registry=r,
        )
        self.receiver_unauthenticated_requests = Counter(
            "obs_pipeline_receiver_unauthenticated_requests",
            "Requests a receiver refused because they did not carry its bearer token (missing or wrong), before decoding them.",
            ["receiver", "transport"], registry=r,
        )
        self.receiver_draining_requests = Counter(
            "obs_pipeline_receiver_draining_requests",
            "Requests a receiver answered with a retryable refusal because it was shutting down or reloading, "
            "before reading them (their item count is unknown).",
            ["receiver", "transport"], registry=r,
        )
        self.receiver_repaired_values = Counter(
            "obs_pipeline_receiver_repaired_values",
            "Values a receiver repaired instead of refusing their request or line, by reason (invalid_utf8, "
            "too_deep; JSON lines: lone_surrogate, non_finite_number, big_integer, nested_as_json).",
            ["receiver", "transport", "signal", "reason"], registry=r,
        )
        self.processor_incoming = Counter(
            "obs_pipeline_processor_incoming_items",
            "Items a processor accepted from the stage before it.",
            ["processor", "pipeline"], registry=r,
        )
        self.processor_outgoing = Counter(
            "obs_pipeline_processor_outgoing_items",
            "Items a processor handed on to the stage after it.",
            ["processor", "pipeline"], registry=r,
        )
        self.processor_dropped = Counter(
            "obs_pipeline_processor_dropped_items",
            "Items a processor dropped on purpose or could not deliver, by reason.",
            ["processor", "pipeline", "reason"], registry=r,
        )
        self.exporter_sent = Counter(
            "obs_pipeline_exporter_sent_items",
            "Items an exporter delivered.",
            ["exporter", "signal"], registry=r,
        )
        self.exporter_failed = Counter(
            "obs_pipeline_exporter_failed_items",
            "Items an exporter gave up on, by reason (permanent_error, rejected, retries_exhausted, retries_disabled, shutdown, "
            "internal_error).",
            ["exporter", "signal", "reason"], registry=r,
        )
        self.exporter_queue_size = Gauge(
            "obs_pipeline_exporter_queue_size", "Items waiting in an exporter's sending queue.",
            ["exporter"], registry=r,
        )
        self.exporter_queue_capacity = Gauge(
            "obs_pipeline_exporter_queue_capacity", "Capacity of an exporter's sending queue, in items.",
            ["exporter"], registry=r,
        )
        self.exporter_queue_stored_bytes = Gauge(
            "obs_pipeline_exporter_queue_stored_bytes", "Bytes the files of an exporter's disk queue take.",
            ["exporter"], registry=r,
        )
        self.exporter_queue_capacity_bytes = Gauge(
            "obs_pipeline_exporter_queue_capacity_bytes", "Capacity of an exporter's disk queue (max_size), in bytes.",
            ["exporter"], registry=r,
        )
        self.exporter_queue_corrupt_records = Counter(
            "obs_pipeline_exporter_queue_corrupt_records",
            "Damaged stretches of an exporter's disk queue files (bad checksum, torn write) that were skipped.",
            ["exporter"], registry=r,
        )
        self.exporter_send_duration = Histogram(
            "obs_pipeline_exporter_send_duration_seconds", "Time an exporter took per batch, retries included.",
            ["exporter"], registry=r,
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
        )
        self.exporter_series_overflow = Counter(
            "obs_pipeline_exporter_series_overflow",
            "Samples a prometheus exporter added to a metric's overflow series (otel_metric_overflow=\"true\") "
            "because the metric already had max_series_per_metric series.",
            ["exporter"], registry=r,
        )
