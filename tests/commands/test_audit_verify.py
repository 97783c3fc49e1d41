"""`obs-pipeline audit verify`: every kind of tampering found, and named by file and line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
import rfc8785
from click.testing import CliRunner

from obs_pipeline.audit.checkpoints import checkpoint_path
from obs_pipeline.audit.files import audit_files
from obs_pipeline.audit.verify import Break, verify_trail
from obs_pipeline.commands import main
from tests.exporters.jsonl_audit.kit import write_trail

KEY = b"s3cret-hmac-key"


async def trail(tmp_path: Path, *, compress: bool = False) -> list[Path]:
    """A chained trail of 40 lines (8 batches of 5) over several rotated files, signed every 5 lines."""
    path = tmp_path / "audit.jsonl"
    await write_trail(path, 8, hash_chain=True, rotation={"max_size": 6000, "compress": compress},
                      checkpoint={"key": KEY.decode(), "every_lines": 5})
    files = audit_files(path)
    assert len(files) >= 3
    return files


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def put(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def rechain(files: list[Path], edit: tuple[Path, int]) -> None:
    """Edit one line and recompute every hash after it: the attack only checkpoints catch."""
    prev = None
    for file in files:
        out = []
        for number, raw in enumerate(lines_of(file), 1):
            record = orjson.loads(raw)
            if (file, number) == edit:
                record["detail"]["model"] = "forged"
            if prev is not None:
                record["prev_hash"] = prev
            record.pop("hash")
            record["hash"] = prev = hashlib.sha256(rfc8785.dumps(record)).hexdigest()
            out.append(orjson.dumps(record) + b"\n")
        put(file, out)


def broken(files: list[Path], key: bytes | None = None) -> tuple[Path, int, str]:
    report = verify_trail(files[-1], key)
    assert report.broken is not None, "the damage was not found"
    return report.broken.file, report.broken.line, report.broken.reason


class TestIntact:
    async def test_a_written_trail_verifies_with_and_without_the_key(self, tmp_path):
        """What the exporter wrote verifies across its rotated files, every checkpoint matching."""
        files = await trail(tmp_path)
        plain = verify_trail(files[-1])
        keyed = verify_trail(files[-1], KEY)
        assert plain.intact
        assert keyed.intact
        assert (keyed.lines, keyed.first_seq, keyed.last_seq, keyed.checkpoints) == (40, 1, 40, 8)

    async def test_compressed_rotated_files_verify(self, tmp_path):
        """gzip-compressed rotated files are read as they are."""
        files = await trail(tmp_path, compress=True)
        assert files[0].name.endswith(".gz")
        assert verify_trail(files[-1], KEY).intact


class TestTampering:
    async def test_edit(self, tmp_path):
        """A changed value: the line no longer matches its own hash."""
        files = await trail(tmp_path)
        lines = lines_of(files[1])
        lines[2] = lines[2].replace(b'"model":"m"', b'"model":"M"')
        put(files[1], lines)
        assert broken(files)[:2] == (files[1], 3)
        assert "changed after it was written" in broken(files)[2]

    async def test_insertion_of_a_copy(self, tmp_path):
        """A copy of an earlier line inserted: its seq goes backwards."""
        files = await trail(tmp_path)
        lines = lines_of(files[1])
        lines.insert(3, lines[0])
        put(files[1], lines)
        file, line, reason = broken(files)
        assert (file, line) == (files[1], 4)
        assert "reordered, duplicated or inserted" in reason

    async def test_insertion_of_a_forged_line(self, tmp_path):
        """A new line with a correct hash and link: the original line after it no longer follows."""
        files = await trail(tmp_path)
        lines = lines_of(files[1])
        before = orjson.loads(lines[1])
        forged = {**before, "event_type": "forged", "seq": before["seq"] + 1, "prev_hash": before["hash"]}
        forged.pop("hash")
        forged["hash"] = hashlib.sha256(rfc8785.dumps(forged)).hexdigest()
        lines.insert(2, orjson.dumps(forged) + b"\n")
        put(files[1], lines)
        assert broken(files)[:2] == (files[1], 4)

    async def test_deletion(self, tmp_path):
        """A line removed: a gap in seq where it was."""
        files = await trail(tmp_path)
        lines = lines_of(files[1])
        del lines[3]
        put(files[1], lines)
        file, line, reason = broken(files)
        assert (file, line) == (files[1], 4)
        assert "1 line missing" in reason

    async def test_reordering(self, tmp_path):
        """Two lines swapped: the first of them breaks the chain."""
        files = await trail(tmp_path)
        lines = lines_of(files[0])
        lines[2], lines[3] = lines[3], lines[2]
        put(files[0], lines)
        assert broken(files)[:2] == (files[0], 3)

    async def test_truncated_rotated_file(self, tmp_path):
        """A rotated file cut short: the next file's first line shows the gap."""
        files = await trail(tmp_path)
        put(files[0], lines_of(files[0])[:-2])
        file, line, reason = broken(files)
        assert (file, line) == (files[1], 1)
        assert "at the start of this file" in reason

    async def test_missing_rotated_file(self, tmp_path):
        """A rotated file deleted from the middle of the trail."""
        files = await trail(tmp_path)
        files[1].unlink()
        file, line, reason = broken(files)
        assert (file, line) == (files[2], 1)
        assert "a rotated file is missing" in reason

    async def test_truncated_compressed_file(self, tmp_path):
        """A .gz cut short is a break at the line after its last whole one."""
        files = await trail(tmp_path, compress=True)
        data = files[0].read_bytes()
        files[0].write_bytes(data[: len(data) // 2])
        file, _, reason = broken(files)
        assert file == files[0]
        assert "truncated or corrupt" in reason

    async def test_first_line_removed(self, tmp_path):
        """The first line removed: the trail begins at seq 2, which is reported (as retention would be)."""
        files = await trail(tmp_path)
        put(files[0], lines_of(files[0])[1:])
        report = verify_trail(files[-1])
        assert report.intact
        assert report.notes[0].startswith("the trail begins at seq 2")


class TestLinesThatAreNotAuditLines:
    @pytest.mark.parametrize("inserted", [b"this is not json\n", b"[1, 2]\n", b"42\n", b'"text"\n', b'{"a": 1}\n'])
    async def test_an_inserted_line_is_a_break_at_its_line(self, tmp_path, inserted):
        """`sed -i '4i ...'`: a line that is not a write cut short by a crash is an insertion (file:line)."""
        files = await trail(tmp_path)
        lines = lines_of(files[1])
        lines.insert(3, inserted)
        put(files[1], lines)
        file, line, _ = broken(files)
        assert (file, line) == (files[1], 4)

    async def test_a_torn_looking_line_in_place_of_a_deleted_one_is_a_break(self, tmp_path):
        """A line cut like a crash's, but seq jumps after it: a line was replaced, not torn."""
        files = await trail(tmp_path)
        lines = lines_of(files[1])
        lines[3] = lines[3][:40] + b"\n"
        put(files[1], lines)
        file, line, reason = broken(files)
        assert (file, line) == (files[1], 4)
        assert "seq jumps" in reason

    async def test_a_torn_line_is_a_note_naming_its_file_and_line(self, tmp_path):
        """A crash's torn line with the chain going on after it: intact, and the note says where it is."""
        files = await trail(tmp_path)
        lines = lines_of(files[1])
        lines.insert(3, lines[3][:40] + b"\n")  # a batch cut short, then written again whole
        put(files[1], lines)
        report = verify_trail(files[-1])
        assert report.intact
        assert report.notes == [f"{files[1]}:4: a torn line skipped (a write cut short by a crash; the chain goes on after it)"]
        done = CliRunner().invoke(main, ["audit", "verify", "--json", str(files[-1])])
        assert done.exit_code == 0
        doc = orjson.loads(done.output)
        assert (doc["torn_lines"], doc["torn"]) == (1, [{"file": str(files[1]), "line": 4}])

    async def test_the_cli_exits_1_naming_the_inserted_line(self, tmp_path):
        """The new-user trial: a garbage line inserted used to pass as intact with an anonymous note."""
        files = await trail(tmp_path)
        lines = lines_of(files[-1])
        lines.insert(1, b"this is not json\n")
        put(files[-1], lines)
        done = CliRunner().invoke(main, ["audit", "verify", str(files[-1])])
        assert done.exit_code == 1
        assert f"BROKEN at {files[-1]}:2: a line that is not an audit line" in done.output


class TestOnlyTheKeyFinds:
    async def test_rewritten_chain(self, tmp_path):
        """An edit with every later hash recomputed passes the chain, and fails at the next signed line."""
        files = await trail(tmp_path)
        rechain(files, (files[0], 2))
        assert verify_trail(files[-1]).intact
        file, line, reason = broken(files, KEY)
        assert (file, line) == (files[0], 5)  # seq 5, the first checkpoint after the edit
        assert "rewritten at or before this line" in reason

    async def test_cut_tail(self, tmp_path):
        """Lines cut from the end leave a valid, shorter chain; the last checkpoint signed more."""
        files = await trail(tmp_path)
        lines = lines_of(files[-1])
        put(files[-1], lines[:-3])
        assert verify_trail(files[-1]).intact
        file, line, reason = broken(files, KEY)
        assert (file, line) == (files[-1], len(lines) - 3)
        assert reason.startswith("the trail ends at seq 37, but checkpoint line 8 signed seq 40")

    async def test_forged_checkpoint(self, tmp_path):
        """A checkpoint edited without the key fails its HMAC."""
        files = await trail(tmp_path)
        side = checkpoint_path(files[-1])
        lines = lines_of(side)
        lines[1] = lines[1].replace(b'"seq":10', b'"seq":11')
        put(side, lines)
        assert broken(files, KEY) == (side, 2, "the checkpoint's HMAC does not match (forged or edited, or another key)")

    async def test_missing_checkpoint_file(self, tmp_path):
        """With a key, a trail without its checkpoint file is broken."""
        files = await trail(tmp_path)
        checkpoint_path(files[-1]).unlink()
        assert broken(files, KEY)[:2] == (checkpoint_path(files[-1]), 0)


class TestCommand:
    async def test_exit_codes_and_report(self, tmp_path, monkeypatch):
        """0 and a summary when intact; 1 and file:line when broken; 2 for usage errors."""
        files = await trail(tmp_path)
        runner = CliRunner()
        monkeypatch.setenv("AUDIT_HMAC_KEY", KEY.decode())
        done = runner.invoke(main, ["audit", "verify", str(files[-1]), "--key-env", "AUDIT_HMAC_KEY"])
        assert done.exit_code == 0, done.output
        assert done.output.startswith(f"{files[-1]}: intact: {len(files)} file(s), 40 line(s), seq 1..40, 8 checkpoint(s)")
        lines = lines_of(files[1])
        put(files[1], [lines[0], *lines[2:]])
        done = runner.invoke(main, ["audit", "verify", str(files[-1])])
        assert done.exit_code == 1
        assert done.output.startswith(f"{files[-1]}: BROKEN at {files[1]}:2: seq jumps")
        assert runner.invoke(main, ["audit", "verify"]).exit_code == 2
        assert runner.invoke(main, ["audit", "verify", str(files[-1]), "--key-env", "NOT_SET_ANYWHERE"]).exit_code == 2

    async def test_json_output(self, tmp_path):
        """--json: one object per trail with the break's file and line."""
        files = await trail(tmp_path)
        files[1].unlink()
        done = CliRunner().invoke(main, ["audit", "verify", "--json", str(files[-1])])
        assert done.exit_code == 1
        doc = orjson.loads(done.output)
        assert (doc["intact"], doc["break"]["file"], doc["break"]["line"]) == (False, str(files[2]), 1)

    async def test_config_finds_the_path_and_the_key(self, tmp_path, monkeypatch):
        """--config verifies each jsonl_audit trail, with the checkpoint key the config names."""
        files = await trail(tmp_path)
        config = tmp_path / "pipeline.yaml"
        config.write_text(f"""
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}}}}}
exporters:
  jsonl_audit:
    path: {files[-1]}
    hash_chain: true
    checkpoint: {{key: "${{env:AUDIT_HMAC_KEY}}", every_lines: 5}}
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [jsonl_audit]}}
""")
        monkeypatch.setenv("AUDIT_HMAC_KEY", KEY.decode())
        runner = CliRunner()
        done = runner.invoke(main, ["audit", "verify", "--config", str(config)])
        assert done.exit_code == 0, done.output
        assert "8 checkpoint(s) matched" in done.output
        monkeypatch.setenv("AUDIT_HMAC_KEY", "another key")
        done = runner.invoke(main, ["audit", "verify", "--config", str(config)])
        assert done.exit_code == 1
        assert "HMAC does not match" in done.output

    async def test_unchained_trail_is_not_verified(self, tmp_path):
        """A trail written without hash_chain cannot pass: exit 1, saying why."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 1)
        done = CliRunner().invoke(main, ["audit", "verify", str(path)])
        assert done.exit_code == 1
        assert "hash_chain is off" in done.output

    @pytest.mark.parametrize("missing", ["nothing.jsonl", "dir/{tenant}.jsonl"])
    def test_no_file(self, tmp_path, missing):
        """A path with no audit file is broken, not intact."""
        done = CliRunner().invoke(main, ["audit", "verify", str(tmp_path / missing)])
        assert done.exit_code == 1

    def test_break_text(self, tmp_path):
        """A break reads file:line: reason."""
        assert str(Break(tmp_path / "a.jsonl", 3, "why")) == f"{tmp_path / 'a.jsonl'}:3: why"


class TestTemplates:
    async def test_each_tenant_trail_is_verified(self, tmp_path):
        """A template path verifies every trail it names, each on its own line of the report."""
        from obs_pipeline.testing import RecordingHost  # noqa: PLC0415
        from tests.exporters.jsonl_audit.kit import batch_of, exporter  # noqa: PLC0415

        template = str(tmp_path / "audit" / "{tenant}.jsonl")
        exp = exporter(template, hash_chain=True)
        await exp.start(RecordingHost())
        for n, tenant in enumerate(["acme", "globex"]):
            await exp.export(batch_of(n * 10, 3, resource={"tenant.id": tenant}))
        await exp.shutdown()
        assert oct((tmp_path / "audit").stat().st_mode & 0o777) == "0o700"
        assert oct((tmp_path / "audit" / "acme.jsonl").stat().st_mode & 0o777) == "0o600"
        done = CliRunner().invoke(main, ["audit", "verify", template])
        assert done.exit_code == 0, done.output
        assert [line.split(": intact")[0] for line in done.output.splitlines() if ": intact" in line] == [
            str(tmp_path / "audit" / "acme.jsonl"), str(tmp_path / "audit" / "globex.jsonl")]

    async def test_a_tenant_whose_live_file_was_deleted_is_still_verified(self, tmp_path):
        """A deleted live file does not hide its tenant's trail; with every file gone, its checkpoints still show it.

        Its rotated files are checked and, with the key, the cut tail is found.
        """
        from obs_pipeline.testing import RecordingHost  # noqa: PLC0415
        from tests.exporters.jsonl_audit.kit import batch_of, exporter  # noqa: PLC0415

        template = str(tmp_path / "audit" / "{tenant}.jsonl")
        exp = exporter(template, hash_chain=True, rotation={"max_size": 3000, "compress": False},
                       checkpoint={"key": KEY.decode(), "every_lines": 5})
        await exp.start(RecordingHost())
        for n in range(6):
            for offset, tenant in enumerate(["acme", "globex"]):
                await exp.export(batch_of(n * 100 + offset * 50, 3, resource={"tenant.id": tenant}))
        await exp.shutdown()
        globex = tmp_path / "audit" / "globex.jsonl"
        assert len(audit_files(globex)) > 1
        globex.unlink()
        runner = CliRunner(env={"AUDIT_HMAC_KEY": KEY.decode()})
        done = runner.invoke(main, ["audit", "verify", template, "--key-env", "AUDIT_HMAC_KEY"])
        assert done.exit_code == 1, done.output
        assert f"{globex}: BROKEN at" in done.output
        assert "its tail was cut" in done.output
        for rotated in audit_files(globex):
            rotated.unlink()
        done = runner.invoke(main, ["audit", "verify", template, "--key-env", "AUDIT_HMAC_KEY"])
        assert done.exit_code == 1, done.output
        assert f"{globex}: BROKEN at {globex}: no audit file is there" in done.output
