"""The audit-query bench's own logic, without timing: the trail it generates and what each phase counts."""

from __future__ import annotations

from bench.audit_query import LINES_PER_TURN, generate, run_phase
from obs_pipeline.audit.files import audit_files


def test_generated_trail_and_phase_results(tmp_path):
    live = generate(tmp_path, 80 * LINES_PER_TURN)
    assert [file.name for file in audit_files(live)] == [
        "audit-20260301T000000000000Z.jsonl.gz", "audit-20260315T000000000000Z.jsonl", "audit.jsonl"]
    assert run_phase("count", live)["result"] == 640
    assert run_phase("cost", live)["result"] == 80 * 4  # four calls a turn, priced or not
    assert run_phase("query-session", live)["result"] == LINES_PER_TURN  # turn 7, its child lines through the trace
    assert 0 < run_phase("query", live)["result"] < 80 * 3
    assert run_phase("query-rare", live)["result"] == 1  # turn 1's second call
