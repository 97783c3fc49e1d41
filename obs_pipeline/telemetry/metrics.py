"""Our own metrics (DESIGN §6), in a registry of their own.

Counters move once per batch, never once per item, so they cost nothing on the hot path.
Label values are component and pipeline IDs, never telemetry content.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

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
        # process_cpu_seconds_total and the rest, read from /proc at each scrape: what the
        # processors' own CPU (processor_cpu) is a share of.
        ProcessCollector(registry=r)
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
        self.processor_cpu = Counter(
            "obs_pipeline_processor_cpu_seconds",
            "CPU seconds a processor written as a function over batches (redaction, cost, head sampling) spent "
            "on them: the thread's CPU time, so time spent waiting is not counted.",
            ["processor", "pipeline"], registry=r,
        )
        self.processor_sampling_traces = Counter(
            "obs_pipeline_processor_sampling_traces",
            "Traces a tail sampler decided, by the policy that decided (none: no policy kept it) and decision (kept, dropped).",
            ["processor", "pipeline", "policy", "decision"], registry=r,
        )
        self.processor_sampling_early_decisions = Counter(
            "obs_pipeline_processor_sampling_early_decisions",
            "Traces a tail sampler decided before decision_wait passed, by reason (num_traces, max_memory, shutdown).",
            ["processor", "pipeline", "reason"], registry=r,
        )
        self.processor_sampling_late_spans = Counter(
            "obs_pipeline_processor_sampling_late_spans",
            "Spans that arrived after their trace was decided and followed the decision (kept, dropped).",
            ["processor", "pipeline", "decision"], registry=r,
        )
        self.processor_sampling_buffered_traces = Gauge(
            "obs_pipeline_processor_sampling_buffered_traces", "Traces a tail sampler holds, waiting for a decision.",
            ["processor", "pipeline"], registry=r,
        )
        self.processor_sampling_buffered_bytes = Gauge(
            "obs_pipeline_processor_sampling_buffered_bytes",
            "Bytes a tail sampler accounts for (buffered spans plus decided spans waiting for the next stage), bounded by max_memory.",
            ["processor", "pipeline"], registry=r,
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
        self.exporter_audit_torn_lines = Counter(
            "obs_pipeline_exporter_audit_torn_lines",
            "Torn lines (a crash mid-write) a jsonl_audit exporter found at the end of its file when it opened it; "
            "its hash chain resumes after the last good line.",
            ["exporter"], registry=r,
        )
        self.exporter_audit_files_removed = Counter(
            "obs_pipeline_exporter_audit_files_removed",
            "Rotated audit files a jsonl_audit exporter removed because they were older than retention_days.",
            ["exporter"], registry=r,
        )
        self.exporter_series_overflow = Counter(
            "obs_pipeline_exporter_series_overflow",
            "Samples a prometheus exporter added to a metric's overflow series (otel_metric_overflow=\"true\") "
            "because the metric already had max_series_per_metric series.",
            ["exporter"], registry=r,
        )
        self.cost_priced_spans = Counter(
            "obs_pipeline_cost_priced_spans",
            "Inference spans a cost processor gave a cost, by source (genai-prices, override, provider).",
            ["processor", "pipeline", "source"], registry=r,
        )
        self.cost_unpriced_spans = Counter(
            "obs_pipeline_cost_unpriced_spans",
            "Inference spans a cost processor marked gen_ai.usage.cost.unpriced, by reason (unknown_model, "
            "unknown_provider, missing_model, no_usage, invalid_tokens, negative_uncached, lookup_failed).",
            ["processor", "pipeline", "reason"], registry=r,
        )
        self.cost_drift_spans = Counter(
            "obs_pipeline_cost_drift_spans",
            "Spans whose provider-reported cost differs from the cost processor's estimate by more than drift_threshold.",
            ["processor", "pipeline"], registry=r,
        )
        self.cost_normalized_spans = Counter(
            "obs_pipeline_cost_normalized_spans",
            "Inference spans whose counts or time a cost processor read in another convention, by reason "
            "(input_excludes_cache, output_excludes_reasoning, future_start_time).",
            ["processor", "pipeline", "reason"], registry=r,
        )
        self.redaction_values = Counter(
            "obs_pipeline_redaction_values",
            "Values a redaction processor masked (mode masked) or, in detect mode, found (mode detected), in every "
            "signal, by rule id (unscanned, sensitive-key and blocked-key included).",
            ["processor", "pipeline", "rule", "mode"], registry=r,
        )
        self.budget_events = Counter(
            "obs_pipeline_budget_events",
            "Budget events a budget processor fired (event: warning, exceeded), by budget id; once per window and scope value.",
            ["processor", "budget", "event"], registry=r,
        )
        self.budget_charged_usd = Counter(
            "obs_pipeline_budget_charged_usd",
            "US dollars a budget processor charged to a budget (this process only; every scope value together).",
            ["processor", "budget"], registry=r,
        )
        self.budget_spend_usd = Gauge(
            "obs_pipeline_budget_spend_usd",
            "Spend in a budget's current window over all its scope values, read from the state store every 15s "
            "(shared by every process on one store: aggregate with max, not sum).",
            ["processor", "budget"], registry=r,
        )
        self.budget_unpriced_spans = Counter(
            "obs_pipeline_budget_unpriced_spans",
            "Spans marked gen_ai.usage.cost.unpriced that a budget processor met in a budget's scope, by budget.",
            ["processor", "budget"], registry=r,
        )
        self.budget_state_errors = Counter(
            "obs_pipeline_budget_state_errors",
            "State store failures of a budget processor, by reason (redis_unavailable: counting locally; "
            "store_failed: a batch passed on uncharged).",
            ["processor", "reason"], registry=r,
        )
        self.budget_webhook_events = Counter(
            "obs_pipeline_budget_webhook_events",
            "Budget events a budget processor's webhook handled, by outcome (sent, failed, dropped).",
            ["processor", "outcome"], registry=r,
        )
        self.file_tail_lines_read = Counter(
            "obs_pipeline_file_tail_lines_read", "Lines a file_tail receiver read and the pipeline accepted.",
            ["receiver"], registry=r,
        )
        self.file_tail_files_open = Gauge(
            "obs_pipeline_file_tail_files_open", "Files a file_tail receiver holds open.", ["receiver"], registry=r,
        )
        self.file_tail_files_tracked = Gauge(
            "obs_pipeline_file_tail_files_tracked", "Files a file_tail receiver knows (open or not) and checkpoints.",
            ["receiver"], registry=r,
        )
        self.file_tail_file_errors = Counter(
            "obs_pipeline_file_tail_file_errors",
            "Matched paths a file_tail receiver skipped, once per path and reason (not_regular, permission_denied, "
            "symlink_loop, io_error).",
            ["receiver", "reason"], registry=r,
        )
        self.file_tail_truncations = Counter(
            "obs_pipeline_file_tail_truncations",
            "Truncated files a file_tail receiver followed, by kind (copytruncate, in_place).",
            ["receiver", "kind"], registry=r,
        )
