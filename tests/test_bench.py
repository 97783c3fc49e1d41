"""Checks of the bench's own logic (no timing): workload shape, retry hints, audit verification."""

from __future__ import annotations

from pathlib import Path

import orjson
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.loadgen import percentiles, retry_delay
from bench.run import verify_audit
from bench.workload import build_requests, build_templates, decode_span_id, id_prefix


def _spans(payload: bytes) -> list:
    req = ExportTraceServiceRequest.FromString(payload)
    return [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_workload_is_deterministic_and_shaped_like_python_limits():
    a, b = build_requests(3, seed=7), build_requests(3, seed=7)
    assert a == b
    assert a != build_requests(3, seed=8)
    spans = _spans(a[0])
    assert len(spans) == 100
    assert 110_000 < len(a[0]) < 140_000  # python-limits.md: 126,633 B per request
    assert all(len(s.attributes) == 12 for s in spans)
    ops = {s.attributes[0].value.string_value for s in spans}
    assert ops == {"chat", "execute_tool", "invoke_agent"}
    req = ExportTraceServiceRequest.FromString(a[0])
    assert len(req.resource_spans[0].resource.attributes) == 7


def test_rendered_ids_are_unique_and_decodable():
    template = build_templates(1)[0]
    seen = set()
    for seq in (0, 1, 2**40):
        spans = _spans(template.render(id_prefix(5, seq)))
        for i, span in enumerate(spans):
            assert decode_span_id(span.span_id) == (5, seq, i + 1)
            assert span.trace_id[:7] == id_prefix(5, seq)
            if span.parent_span_id:
                assert decode_span_id(span.parent_span_id)[:2] == (5, seq)
            seen.add(span.span_id)
    assert len(seen) == 300
    assert len(template.render(id_prefix(5, 9))) == template.size


def _write_audit(path: Path, keys: list[tuple[int, int, int]], extra: list[bytes] = ()) -> None:
    path.mkdir(parents=True)
    lines = [orjson.dumps({"span_id": (id_prefix(tag, seq) + bytes((idx + 1,))).hex()}) for tag, seq, idx in keys]
    (path / "audit.jsonl").write_bytes(b"\n".join([*lines, *extra]) + b"\n")


def test_verify_audit_counts_duplicates_missing_and_unexpected(tmp_path):
    spans = 4
    result = {"sent_requests": 3, "acked_spans": 8, "failed_seqs": [2], "unknown_seqs": []}
    keys = [(1, 0, i) for i in range(4)] + [(1, 1, i) for i in range(3)] + [(1, 1, 0), (1, 2, 0), (9, 0, 0)]
    _write_audit(tmp_path / "a", keys, [b"{not json"])
    got = verify_audit(tmp_path / "a", result, tag=1, spans_per_request=spans)
    assert got["lines"] == 11
    assert got["missing"] == 1  # seq 1 index 3
    assert got["duplicates"] == 1  # seq 1 index 0
    assert got["unexpected"] == 1  # seq 2 was refused
    assert got["unparseable"] == 1
    assert got["foreign"] == 1
    assert not got["ok"]


def test_verify_audit_ok_when_exactly_once(tmp_path):
    result = {"sent_requests": 2, "acked_spans": 8, "failed_seqs": [], "unknown_seqs": []}
    _write_audit(tmp_path / "a", [(1, s, i) for s in range(2) for i in range(4)])
    assert verify_audit(tmp_path / "a", result, tag=1, spans_per_request=4)["ok"]


def test_verify_audit_counts_derived_lines_apart_from_spans(tmp_path):
    """A security line shares its span's id: it is neither a duplicate nor a missing span."""
    result = {"sent_requests": 1, "acked_spans": 2, "failed_seqs": [], "unknown_seqs": []}
    span_id = (id_prefix(1, 0) + bytes((1,))).hex()
    derived = orjson.dumps({"span_id": span_id, "category": "security"})
    _write_audit(tmp_path / "a", [(1, 0, 0), (1, 0, 1)], [derived])
    got = verify_audit(tmp_path / "a", result, tag=1, spans_per_request=2)
    assert (got["ok"], got["derived"], got["duplicates"]) == (True, 1, 0)


def test_retry_delay_reads_retry_info_from_status_details():
    status = status_pb2.Status(code=14, message="full")
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=1, nanos=500_000_000)))
    assert retry_delay([("grpc-status-details-bin", status.SerializeToString())]) == 1.5
    assert retry_delay([("other", b"")]) is None
    assert retry_delay(None) is None


def test_percentiles():
    assert percentiles([]) == {}
    got = percentiles([float(i) for i in range(1, 101)])
    assert (got["p50"], got["p99"], got["max"]) == (51, 100, 100)


def test_bench_stages_runs_and_reports_every_stage(capsys):
    """One small round of ``python -m bench.stages``: it broke unnoticed once (a config without defaults)."""
    from bench import stages  # noqa: PLC0415 - only this test needs it

    assert stages.main(["--requests", "2", "--batch", "200", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for stage in ("bare parse (reference)", "batch merge (merge_into)", "export, file (map + encode + write)"):
        assert stage in out
