"""The hash chain: sealed lines, continuity across restarts and torn lines, checkpoints, the documented verifier."""

from __future__ import annotations

import gzip
import hashlib
import logging
import random
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import rfc8785

from obs_pipeline.audit import chain
from obs_pipeline.audit.chain import GENESIS, HashChain, fast_canonical, line_hash, resume_state
from obs_pipeline.audit.checkpoints import checkpoint_path, read_checkpoints
from obs_pipeline.audit.files import audit_files, rotated_name
from obs_pipeline.audit.hook import LineHook
from obs_pipeline.audit.verify import verify_trail
from obs_pipeline.errors import RetryableError
from obs_pipeline.exporters.jsonl_audit import rotation
from obs_pipeline.testing import RecordingHost
from tests.exporters.jsonl_audit.kit import batch_of, exporter, read_trail, write_trail

DOCS = Path(__file__).resolve().parents[3] / "docs" / "audit-line.md"


def sample_value(exp: object, name: str) -> float:
    """A counter's value for the test exporter."""
    registry = exp.settings.metrics.registry  # type: ignore[attr-defined]
    value = registry.get_sample_value(f"{name}_total", {"exporter": "jsonl_audit"})
    return 0.0 if value is None else value


class TestSeal:
    def test_is_a_line_hook(self):
        """The chain plugs into the writer's seam."""
        assert isinstance(HashChain(), LineHook)

    def test_keys_appended_and_hash_over_canonical_json(self):
        """seq, prev_hash and hash come last; hash is SHA-256 of the RFC 8785 form without hash."""
        chain = HashChain()
        first = orjson.loads(chain.seal(b'{"b":1,"a":{"y":2.0,"x":"\\u00e9"}}'))
        second = orjson.loads(chain.seal(b'{"b":2}'))
        assert list(first) == ["b", "a", "seq", "prev_hash", "hash"]
        assert (first["seq"], first["prev_hash"]) == (1, GENESIS)
        without = {k: v for k, v in first.items() if k != "hash"}
        assert first["hash"] == hashlib.sha256(rfc8785.dumps(without)).hexdigest()
        assert (second["seq"], second["prev_hash"]) == (2, first["hash"])
        assert line_hash(second) == second["hash"]

    def test_unsafe_integer_written_as_text(self):
        """An integer beyond 2**53 has no RFC 8785 form: it is written as its decimal text, and the line verifies."""
        line = orjson.loads(HashChain().seal(b'{"detail":{"id":1152921504606846976,"n":[9007199254740993]}}'))
        assert line["detail"] == {"id": "1152921504606846976", "n": ["9007199254740993"]}
        assert line_hash(line) == line["hash"]


def random_value(rng: random.Random, depth: int = 0) -> object:
    """A JSON value with the awkward parts of RFC 8785: key order, escapes, non-BMP text, float forms."""
    alphabet = ["a", "Z", "0", "\x00", "\x1f", "\x7f", '"', "\\", "/", "é", "\u2028", "\ue000", "\uffff", "😀", "\U00010000"]
    kinds = ["str", "int", "float", "bool", "null"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
    if kind == "int":
        return rng.choice([0, -1, 1, 2**53 - 1, -(2**53 - 1), rng.randint(-10**12, 10**12)])
    if kind == "float":
        return rng.choice([0.0, -0.0, 2280.0, 0.1, 1e21, 1e20, 1e-7, 1e-6, 5e-324, 1.7976931348623157e308,
                           2.0**53, 2.0**60, 123456789012345680.0, rng.uniform(-1e6, 1e6),
                           rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30)])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {str(random_value(rng, 3)) + rng.choice(alphabet): random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


class TestCanonical:
    def test_fast_path_is_byte_for_byte_rfc8785(self):
        """The writer's serializer gives exactly rfc8785's bytes (so the package's verifier agrees) on 5,000 values."""
        rng = random.Random(8785)
        fast = 0
        for _ in range(5000):
            record = {"k": random_value(rng), **{f"x{n}": random_value(rng) for n in range(3)}}
            assert fast_canonical(record) == rfc8785.dumps(record), record
            fast += _takes_the_fast_path(record)
        assert fast > 2500  # most values are the serializer's own work, not a fallback to rfc8785

    def test_keys_sort_by_utf16_code_units_not_code_points(self):
        """U+1F600 (a surrogate pair, D83D...) sorts before U+E000 and U+FFFF in RFC 8785, after them by code point."""
        record = {"\uffff": 1, "\U0001f600": 2, "\ue000": 3, "z": [1.5, {"\U00010000": None, "\ue000": True}]}
        assert fast_canonical(record) == rfc8785.dumps(record)
        assert fast_canonical(record).endswith('"\U0001f600":2,"\ue000":3,"\uffff":1}'.encode())
        assert _takes_the_fast_path(record)


def _takes_the_fast_path(record: dict[str, object]) -> bool:
    """Whether the hand-written serializer handles ``record`` itself (no fallback to rfc8785)."""
    try:
        chain._fast(record, [])  # the fallback would hide a fast path that never runs
    except chain._Slow:
        return False
    return True


class TestTrail:
    async def test_restart_continues_the_chain(self, tmp_path):
        """A second run goes on from the first run's last line: seq and prev_hash continue."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 2, hash_chain=True)
        await write_trail(path, 2, start=100, hash_chain=True)
        lines = read_trail(path)
        assert [x["seq"] for x in lines] == list(range(1, 21))
        assert lines[10]["prev_hash"] == lines[9]["hash"]
        assert verify_trail(path).intact

    async def test_torn_last_line_is_reported_and_the_chain_resumes(self, tmp_path, caplog):
        """A crash mid-write leaves a partial line: the next start warns, counts it and chains after the last good line."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 1, hash_chain=True)
        last = read_trail(path)[-1]
        with path.open("ab") as f:
            f.write(b'{"timestamp":"2026-03-17T10:30:45Z","session_id":"cut mid-wr')
        caplog.set_level(logging.WARNING)
        exp = await write_trail(path, 1, start=50, hash_chain=True)
        assert sample_value(exp, "obs_pipeline_exporter_audit_torn_lines") == 1
        assert any("1 torn line(s)" in r.getMessage() and "resumes after seq 5" in r.getMessage() for r in caplog.records)
        raw = path.read_bytes().splitlines()
        assert raw[5].startswith(b'{"timestamp":"2026-03-17T10:30:45Z","session_id":"cut mid-wr')  # left in place
        after = orjson.loads(raw[6])
        assert (after["seq"], after["prev_hash"]) == (6, last["hash"])
        report = verify_trail(path)
        assert report.intact
        assert report.notes == [f"{path}:6: a torn line skipped (a write cut short by a crash; the chain goes on after it)"]

    async def test_failed_write_resumes_from_the_file(self, tmp_path):
        """After a failed write the chain is read back from the file, so the retry continues what is really there."""
        path = tmp_path / "audit.jsonl"
        exp = exporter(path, hash_chain=True)
        await exp.start(RecordingHost())
        await exp.export(batch_of(0, 3))
        path.unlink()
        path.mkdir()  # the next write fails: a directory is at the path
        with pytest.raises(RetryableError):
            await exp.export(batch_of(3, 3))
        path.rmdir()
        await exp.export(batch_of(3, 3))  # a new file: the chain goes on from what the trail holds
        await exp.shutdown()
        assert [x["seq"] for x in read_trail(path)] == [1, 2, 3]  # the old file was deleted: the trail restarted

    async def test_retried_batch_keeps_the_chain_valid(self, tmp_path):
        """The same batch written twice (a retry) repeats event ids with new seqs; readers dedupe on event_id."""
        path = tmp_path / "audit.jsonl"
        exp = exporter(path, hash_chain=True)
        await exp.start(RecordingHost())
        batch = batch_of(0, 4)
        await exp.export(batch)
        await exp.export(batch)
        await exp.shutdown()
        lines = read_trail(path)
        assert len({x["event_id"] for x in lines}) == 4
        assert [x["seq"] for x in lines] == list(range(1, 9))
        assert verify_trail(path).intact

    async def test_unchained_lines_before_the_chain_are_a_note(self, tmp_path):
        """Turning hash_chain on for an existing file starts the chain at seq 1 after the old lines."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 1)
        await write_trail(path, 1, start=10, hash_chain=True)
        assert resume_state(path).state.seq == 5
        report = verify_trail(path)
        assert report.intact
        assert report.first_seq == 1
        assert "5 line(s) before the chain starts carry no hash" in report.notes[0]

    async def test_resume_reads_the_last_rotated_file_when_the_live_one_is_empty(self, tmp_path):
        """Right after a rotation the live file is empty: the chain's state comes from the newest rotated file."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 3, hash_chain=True, rotation={"max_size": 2000, "compress": True})
        last = read_trail(path)[-1]
        path.rename(rotated_name(path, datetime.now(UTC)))
        path.touch(mode=0o600)
        found = resume_state(path)
        assert (found.state.seq, found.state.hash) == (15, last["hash"])
        await write_trail(path, 1, start=99, hash_chain=True)
        assert read_trail(path)[0]["seq"] == 16
        assert verify_trail(path).intact

    async def test_verify_reads_a_file_compressed_while_it_runs(self, tmp_path, monkeypatch):
        """A live pipeline may compress a rotated file after ``audit verify`` listed it: the ``.gz`` is read instead."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 3, hash_chain=True, rotation={"max_size": 2000, "compress": False})
        listed = audit_files(path)
        plain = [f for f in listed if f != path]
        assert plain
        assert not any(f.name.endswith(".gz") for f in plain)
        for rotated in plain:
            rotation.compress(rotated)  # what the pipeline's maintenance task does, after the listing
        monkeypatch.setattr("obs_pipeline.audit.verify.audit_files", lambda _live: listed)
        report = verify_trail(path)
        assert report.intact, report.broken
        assert report.lines == 15

    @pytest.mark.parametrize("torn", [3, 300])
    def test_resume_from_a_compressed_file_finds_its_last_good_line_past_torn_ones(self, tmp_path, torn):
        """The newest rotated file is compressed and ends in torn lines: few (its kept tail) or many (read again)."""
        path = tmp_path / "audit.jsonl"
        chain = HashChain()
        sealed = [chain.seal(b'{"n":%d}' % n) for n in range(400)]
        rotated = rotated_name(path, datetime.now(UTC))
        body = b"".join(line + b"\n" for line in sealed) + b'{"n":\n' * torn
        rotated.with_name(rotated.name + ".gz").write_bytes(gzip.compress(body))
        path.touch(mode=0o600)
        found = resume_state(path)
        assert (found.state.seq, found.state.hash, found.torn) == (400, chain.state.hash, torn)


class TestCheckpoints:
    async def test_written_every_n_lines_and_at_shutdown(self, tmp_path):
        """A checkpoint per every_lines (checked after each batch) and one for the last lines at shutdown."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 5, per_batch=3, hash_chain=True, checkpoint={"key": "k3y", "every_lines": 5})
        points = list(read_checkpoints(checkpoint_path(path), b"k3y"))
        assert [p.seq for p in points] == [6, 12, 15]
        assert all(p.valid for p in points)
        hashes = {x["seq"]: x["hash"] for x in read_trail(path)}
        assert [p.hash for p in points] == [hashes[6], hashes[12], hashes[15]]
        assert oct(checkpoint_path(path).stat().st_mode & 0o777) == "0o600"
        assert not any(p.valid for p in read_checkpoints(checkpoint_path(path), b"other key"))

    async def test_restart_does_not_sign_again(self, tmp_path):
        """A start with nothing new to sign writes no checkpoint."""
        path = tmp_path / "audit.jsonl"
        opts = {"hash_chain": True, "checkpoint": {"key": "k", "every_lines": 100}}
        await write_trail(path, 1, **opts)
        await write_trail(path, 0, **opts)
        assert [p.seq for p in read_checkpoints(checkpoint_path(path), b"k")] == [5]

    async def test_a_torn_checkpoint_is_skipped_and_the_next_one_stays_whole(self, tmp_path):
        """A checkpoint cut short by a crash is a line of its own, not glued to the next one; verify notes it."""
        path = tmp_path / "audit.jsonl"
        opts = {"hash_chain": True, "checkpoint": {"key": "k", "every_lines": 100}}
        await write_trail(path, 1, **opts)
        side = checkpoint_path(path)
        side.write_bytes(side.read_bytes() + b'{"file":"audit.jsonl","seq":9')
        await write_trail(path, 1, start=50, **opts)
        points = list(read_checkpoints(side, b"k"))
        assert [(p.seq, p.valid, p.torn) for p in points] == [(5, True, False), (None, False, True), (10, True, False)]
        report = verify_trail(path, b"k")
        assert report.intact, report.broken
        assert report.checkpoints == 2
        assert "1 torn line(s) in the checkpoint file skipped" in report.notes[0]


def _snippet() -> str:
    """The verifier the docs give to third parties."""
    section = DOCS.read_text().split("## Hash chain", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def run_script(script: Path, files: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the docs' verifier as a third party would: a separate Python process."""
    return subprocess.run([sys.executable, str(script), *files], capture_output=True, text=True, check=False, timeout=60)


class TestDocumentedVerifier:
    def test_snippet_is_about_twenty_lines(self):
        """The docs promise a verifier in about twenty lines."""
        code = [line for line in _snippet().splitlines() if line.strip()]
        assert len(code) <= 24

    async def test_snippet_verifies_our_trail_and_finds_an_edit(self, tmp_path):
        """The docs' verifier accepts a rotated, compressed trail we wrote, and rejects an edited one."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 6, hash_chain=True, rotation={"max_size": 3000, "compress": True})
        script = tmp_path / "verify.py"
        script.write_text(_snippet())
        files = [str(p) for p in audit_files(path)]
        assert len(files) > 2
        assert any(f.endswith(".gz") for f in files)
        done = run_script(script, files)
        assert (done.returncode, done.stdout) == (0, "intact: 30 lines\n")
        raw = path.read_bytes().replace(b'"gen_ai.request.model"', b'"x"').replace(b'"model":"m"', b'"model":"n"', 1)
        path.write_bytes(raw)
        done = run_script(script, files)
        assert done.returncode == 1
        assert done.stderr.strip() == f"{path}:1: the line was changed"


class TestBench:
    async def test_each_variant_of_the_bench_writes_a_trail_that_verifies(self, tmp_path):
        """bench/audit_chain.py's rounds (no timing here): every variant's trail holds every line, chained ones verify."""
        from bench.audit_chain import VARIANTS, check, run_round  # noqa: PLC0415 - the bench, only for this test
        from bench.workload import SPANS_PER_REQUEST, build_requests  # noqa: PLC0415

        payloads = build_requests(2)
        for name, options in VARIANTS.items():
            directory = tmp_path / name.replace(" ", "")
            await run_round(directory, payloads, options)
            assert check(directory, options, 2 * SPANS_PER_REQUEST) == "ok", name
