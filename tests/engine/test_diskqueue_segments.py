"""The disk queue's files on a real filesystem: records written and read back, damage skipped and counted.

No mocks: every test writes real segment files in a temp directory, damages them the way a crash
or a bad disk does (a flipped byte, a file cut short), and opens the directory again. The disk
running full is a real file size limit (``RLIMIT_FSIZE``) in a child process.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from obs_pipeline.engine.storage.segments import (
    ACK,
    RECORD_HEADER,
    SEGMENT_HEADER,
    QueueLockedError,
    SegmentFiles,
    SegmentWrite,
    segment_name,
)

REPO = Path(__file__).parents[2]


def _payload(i: int, size: int = 100) -> bytes:
    return (f"record-{i}:".encode() * size)[:size]


def _write(directory: Path, records: list[bytes], *, number: int = 1) -> SegmentFiles:
    """A fresh, locked store with one segment holding ``records`` (items = index + 1, traces)."""
    files = SegmentFiles(directory)
    opened = files.open()
    assert opened.segments == []
    plan = SegmentWrite(number, 0, [(p, i + 1, 1) for i, p in enumerate(records)])
    assert files.write([plan]) == (len(records), None, False)
    return files


def _offsets(records: list[bytes]) -> list[int]:
    offsets, pos = [], SEGMENT_HEADER.size
    for payload in records:
        offsets.append(pos)
        pos += RECORD_HEADER.size + len(payload)
    return offsets


def _reopen(directory: Path):
    files = SegmentFiles(directory)
    try:
        return files.open(), files
    except BaseException:
        files.close()
        raise


class TestWriteAndRead:
    def test_records_are_read_back_in_order_with_their_counts_after_a_restart(self, tmp_path):
        """Written, closed, opened again by a new SegmentFiles: every record, in order, byte for byte."""
        records = [_payload(i, 50 + i) for i in range(5)]
        _write(tmp_path, records).close()
        opened, files = _reopen(tmp_path)
        (seg,) = opened.segments
        assert list(seg.offsets) == _offsets(records)
        assert list(seg.items) == [1, 2, 3, 4, 5]
        assert opened.damaged == []
        assert opened.next_number == 2
        read = [files.read(1, off, size) for off, size in zip(seg.offsets, seg.sizes, strict=True)]
        assert read == [(p, i + 1, 1) for i, p in enumerate(records)]
        files.close()

    def test_appends_go_at_the_planned_offset_of_the_same_segment(self, tmp_path):
        """A second group appends after the first; both are read back."""
        files = _write(tmp_path, [b"a" * 10])
        end = SEGMENT_HEADER.size + RECORD_HEADER.size + 10
        assert files.write([SegmentWrite(1, end, [(b"b" * 20, 7, 3)])]) == (1, None, False)
        files.close()
        opened, files = _reopen(tmp_path)
        (seg,) = opened.segments
        assert files.read(1, seg.offsets[1], seg.sizes[1]) == (b"b" * 20, 7, 3)
        files.close()

    def test_records_with_a_gap_between_them_are_read_with_one_read(self, tmp_path):
        """read_many takes each record at its own offset, so a skipped stretch between them is not misread."""
        records = [_payload(i) for i in range(4)]
        files = _write(tmp_path, records)
        offsets = _offsets(records)
        places = [(offsets[i], RECORD_HEADER.size + len(records[i])) for i in (0, 1, 3)]
        assert [r[0] for r in files.read_many(1, places)] == [records[0], records[1], records[3]]
        files.close()

    def test_files_are_private_to_the_owner(self, tmp_path):
        """Segments hold telemetry (prompts): the directory is 0700, the files 0600."""
        queue = tmp_path / "q"
        files = _write(queue, [b"x"])
        files.ack(1, [0])
        assert queue.stat().st_mode & 0o777 == 0o700
        for path in queue.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600, path.name
        files.close()


class TestDamage:
    def test_a_flipped_byte_skips_that_record_only_and_counts_it(self, tmp_path):
        """Bit rot inside the second record's payload: records 1 and 3 survive, one damaged stretch is counted."""
        records = [_payload(i) for i in range(3)]
        _write(tmp_path, records).close()
        path = tmp_path / segment_name(1)
        data = bytearray(path.read_bytes())
        data[_offsets(records)[1] + RECORD_HEADER.size + 10] ^= 0xFF
        path.write_bytes(bytes(data))
        opened, files = _reopen(tmp_path)
        (seg,) = opened.segments
        assert [files.read(1, o, s)[0] for o, s in zip(seg.offsets, seg.sizes, strict=True)] == [records[0], records[2]]
        assert opened.damaged == [(1, 1, False)]
        files.close()

    def test_a_damaged_length_field_is_resynchronised_at_the_next_record(self, tmp_path):
        """The length of record 1 says 2 GB: the scan finds record 2 by its magic and checksum."""
        records = [_payload(i) for i in range(3)]
        _write(tmp_path, records).close()
        path = tmp_path / segment_name(1)
        data = bytearray(path.read_bytes())
        data[_offsets(records)[0] + 4: _offsets(records)[0] + 8] = (2**31 - 5).to_bytes(4, "little")
        path.write_bytes(bytes(data))
        opened, files = _reopen(tmp_path)
        (seg,) = opened.segments
        assert list(seg.offsets) == _offsets(records)[1:]
        assert opened.damaged == [(1, 1, False)]
        files.close()

    def test_a_torn_last_record_is_skipped_and_counted(self, tmp_path):
        """A write cut short by a crash: the whole records before it stay, the tail counts as one torn stretch."""
        records = [_payload(i) for i in range(3)]
        _write(tmp_path, records).close()
        path = tmp_path / segment_name(1)
        data = path.read_bytes()
        path.write_bytes(data[: _offsets(records)[2] + 30])
        opened, files = _reopen(tmp_path)
        (seg,) = opened.segments
        assert len(seg.offsets) == 2
        assert opened.damaged == [(1, 1, True)]
        files.close()

    def test_a_file_that_is_all_garbage_never_stops_the_start(self, tmp_path):
        """Random bytes where a segment should be: counted, nothing to send, deleted; the next start is clean."""
        tmp_path.joinpath(segment_name(3)).write_bytes(bytes(range(256)) * 40)
        opened, files = _reopen(tmp_path)
        assert opened.segments == []
        assert opened.damaged == [(3, 1, True)]
        assert opened.next_number == 4
        files.close()
        assert not tmp_path.joinpath(segment_name(3)).exists()
        opened, files = _reopen(tmp_path)
        assert opened.damaged == []
        files.close()

    def test_a_segment_of_an_unknown_version_is_left_alone(self, tmp_path):
        """Written by a newer format: not read, not deleted, and new segments are numbered past it."""
        _write(tmp_path, [b"x"]).close()
        path = tmp_path / segment_name(1)
        data = bytearray(path.read_bytes())
        data[4:6] = (9).to_bytes(2, "little")
        path.write_bytes(bytes(data))
        opened, files = _reopen(tmp_path)
        assert opened.segments == []
        assert opened.left_alone == [f"{segment_name(1)} (format version 9)"]
        assert opened.next_number == 2
        files.close()
        assert path.exists()

    def test_an_empty_segment_left_by_a_crash_is_removed_quietly(self, tmp_path):
        """A segment created but never written (the crash came first): nothing was acknowledged, nothing is counted."""
        tmp_path.joinpath(segment_name(5)).write_bytes(b"")
        opened, files = _reopen(tmp_path)
        assert (opened.segments, opened.damaged) == ([], [])
        files.close()
        assert not tmp_path.joinpath(segment_name(5)).exists()


class TestAcknowledgements:
    def test_done_records_are_not_loaded_again_and_a_finished_segment_is_deleted(self, tmp_path):
        """Acks survive a restart; once all of a segment's records are done, the next start deletes it."""
        files = _write(tmp_path, [_payload(i) for i in range(3)])
        files.ack(1, [0, 2])
        files.close()
        opened, files = _reopen(tmp_path)
        assert list(opened.segments[0].done) == [1, 0, 1]
        files.ack(1, [1])
        files.close()
        opened, files = _reopen(tmp_path)
        assert opened.segments == []
        files.close()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["lock"]

    def test_a_torn_or_damaged_ack_entry_is_ignored(self, tmp_path):
        """A bad acknowledgement can only make a record be sent again, never skip one."""
        files = _write(tmp_path, [_payload(i) for i in range(3)])
        files.ack(1, [0, 1])
        files.close()
        ack = tmp_path / segment_name(1, ".ack")
        data = bytearray(ack.read_bytes())
        data[ACK.size + 5] ^= 0x01  # damage the second entry's checksum
        ack.write_bytes(bytes(data) + b"\x02\x00")  # and a torn third entry
        opened, files = _reopen(tmp_path)
        assert list(opened.segments[0].done) == [1, 0, 0]
        files.close()

    def test_an_ack_file_without_its_segment_is_deleted(self, tmp_path):
        """A crash between deleting a segment and its ack file: the next start removes the orphan."""
        tmp_path.joinpath(segment_name(4, ".ack")).write_bytes(b"\x00" * 8)
        _opened, files = _reopen(tmp_path)
        files.close()
        assert not tmp_path.joinpath(segment_name(4, ".ack")).exists()

    def test_delete_removes_the_segment_and_its_acks(self, tmp_path):
        """Space is given back: both files go."""
        files = _write(tmp_path, [b"x"])
        files.ack(1, [0])
        files.delete(1)
        files.close()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["lock"]


class TestLock:
    def test_a_second_process_cannot_open_the_same_queue(self, tmp_path):
        """The directory is locked while in use; another process gets QueueLockedError naming the holder."""
        files = _write(tmp_path, [b"x"])
        code = textwrap.dedent(f"""
            from pathlib import Path
            from obs_pipeline.engine.storage.segments import SegmentFiles, QueueLockedError
            try:
                SegmentFiles(Path({str(tmp_path)!r})).open()
            except QueueLockedError as exc:
                print("locked:", exc.strerror)
        """)
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        assert out.stdout.startswith("locked: in use by another process (pid "), out.stderr
        files.close()

    def test_closing_releases_the_lock(self, tmp_path):
        """While open, a second open fails; after close it succeeds."""
        files = _write(tmp_path, [b"x"])
        with pytest.raises(QueueLockedError):
            SegmentFiles(tmp_path).open()
        files.close()
        opened, again = _reopen(tmp_path)
        assert len(opened.segments) == 1
        again.close()


_FILL = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from obs_pipeline.engine.storage.segments import SegmentFiles, SegmentWrite, SEGMENT_HEADER, RECORD_HEADER
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    files = SegmentFiles(Path(sys.argv[1]))
    files.open()
    offset, stored, errors = 0, [], []
    for i in range(1000):
        payload = (b"%06d" % i) * 500
        written, error, seal = files.write([SegmentWrite(1, offset, [(payload, 1, 1)])])
        if error is not None:
            errors.append([error.errno, seal])
            if len(errors) == 3:
                break
            continue
        stored.append(i)
        offset = (offset or SEGMENT_HEADER.size) + RECORD_HEADER.size + len(payload)
    files.close()
    print(json.dumps({"stored": stored, "errors": errors}))
""")


class TestFullDisk:
    def test_a_write_past_the_file_size_limit_fails_cleanly_and_keeps_what_was_stored(self, tmp_path):
        """RLIMIT_FSIZE in a child: the write that does not fit fails with EFBIG, is cut back, and every stored record reads back."""
        queue = tmp_path / "q"
        limit = 20_000
        out = subprocess.run([sys.executable, "-c", _FILL, str(queue), str(limit)], cwd=REPO,
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout)
        assert result["errors"] == [[errno.EFBIG, False]] * 3, "refused, and the segment stays usable"
        stored = result["stored"]
        assert stored == list(range(len(stored)))
        assert 5 <= len(stored) <= limit // 3000
        assert (queue / segment_name(1)).stat().st_size <= limit
        opened, files = _reopen(queue)
        (seg,) = opened.segments
        assert opened.damaged == [], "the failed write left no partial record behind"
        payloads = [files.read(1, o, s)[0] for o, s in zip(seg.offsets, seg.sizes, strict=True)]
        assert payloads == [(b"%06d" % i) * 500 for i in stored]
        files.close()
