"""obs-pipeline's own telemetry: logs, metrics and the health/metrics HTTP endpoints."""
