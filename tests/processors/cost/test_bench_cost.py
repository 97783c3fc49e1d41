"""``bench/cost.py``'s logic, without timing: its workloads and what it reports."""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from bench.cost import measure, workload


def test_the_clean_workload_has_no_inference_span_and_the_full_one_has_many() -> None:
    full, clean, per_request = workload(2)
    assert per_request == 100

    def operations(payload: bytes) -> set[str]:
        data = TracesData.FromString(payload)
        return {s.attributes[0].value.string_value for rs in data.resource_spans for ss in rs.scope_spans
                for s in ss.spans}
    assert "chat" in operations(full[0])
    assert "chat" not in operations(clean[0])
    assert operations(clean[0])


def test_measure_reports_every_variant() -> None:
    figures = measure(rounds=1, requests=1)
    assert set(figures) == {"parse", "cost", "cost, cold cache", "genai-prices calc_price", "clean batch"}
    assert all(best >= 0 and median >= 0 for best, median in figures.values())
