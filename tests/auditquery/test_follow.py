"""``replay tail``: lines as they arrive, across a rotation (rename + new file), none lost or repeated."""

from __future__ import annotations

from obs_pipeline.auditquery.follow import FollowedFile, SessionFollower, follow, tail_session
from obs_pipeline.auditquery.trail import Line, Trail
from tests.auditquery.trailkit import T2, chat, dumps, session_one_turn_one, session_two, span


class Script:
    """A ``sleep`` that performs the next scripted file action each time the follower waits; stops after the last."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.done = False

    def __call__(self, _seconds):
        if self.steps:
            self.steps.pop(0)()
        else:
            self.done = True


def append(path, data):
    with path.open("ab") as out:
        out.write(data)


def ids(lines):
    return [line.record["event_id"][-16:] for line in lines]


class TestFollow:
    def test_new_lines_partial_lines_and_a_rotation(self, tmp_path):
        live = tmp_path / "audit.jsonl"
        first, second, third, late = (dumps([record]) for record in session_one_turn_one()[:4])
        live.write_bytes(first)

        rotated = tmp_path / "audit-20260317T100000000000Z.jsonl"

        def rotate():
            append(live, second[10:])  # the line is complete now
            live.rename(rotated)  # the writer renames it and will create a new one
            append(rotated, late)  # a batch written through the old descriptor, before the writer reopens

        script = Script(lambda: append(live, second[:5]), lambda: append(live, second[5:10]), rotate,
                        lambda: live.write_bytes(third))
        problems: list[str] = []
        got = list(follow([FollowedFile(live)], problems.append, stop=lambda: script.done, sleep=script))
        expected = session_one_turn_one()
        assert ids(got) == ids([Line(record, b"", live, 0) for record in (*expected[:2], expected[3], expected[2])])
        assert problems == []

    def test_truncation_in_place_starts_again(self, tmp_path):
        live = tmp_path / "audit.jsonl"
        records = session_two()
        live.write_bytes(dumps(records[:2]))

        def truncate():
            live.write_bytes(dumps(records[2:]))  # shorter than before: copytruncate, then a new line

        script = Script(truncate)
        got = list(follow([FollowedFile(live)], print, stop=lambda: script.done, sleep=script))
        assert len(got) == 3

    def test_a_path_that_appears_later(self, tmp_path):
        live = tmp_path / "audit.jsonl"
        script = Script(lambda: live.write_bytes(dumps(session_two()[:1])))
        assert len(list(follow([FollowedFile(live)], print, stop=lambda: script.done, sleep=script))) == 1


class TestTailSession:
    def test_child_lines_wait_for_their_session(self):
        keep = SessionFollower(frozenset({"s1"}))
        child = Line(chat("10:05:02", T2, "c3", "b", "m", (1, 1), 0.1), b"", None, 1)
        parent = Line(span("10:05:00", T2, "b", event_type="invoke_agent", category="agent", session="s1"), b"", None, 2)
        other = Line(span("10:05:00", "f" * 32, "z", event_type="invoke_agent", category="agent", session="s9"),
                     b"", None, 3)
        assert keep.feed(child) == []
        assert keep.feed(other) == []
        assert keep.feed(parent) == [parent, child]
        later = Line(chat("10:05:09", T2, "c9", "b", "m", (1, 1), 0.1), b"", None, 4)
        assert keep.feed(later) == [later]

    def test_history_then_live_across_rotated_files(self, tmp_path):
        live = tmp_path / "audit.jsonl"
        (tmp_path / "audit-20260317T100000000000Z.jsonl").write_bytes(dumps(session_one_turn_one()))
        live.write_bytes(dumps(session_two()[:2]))
        script = Script(lambda: append(live, dumps([chat("11:00:05", session_two()[0]["trace_id"], "c5", "d", "m",
                                                          (1, 1), 0.1)])))
        s1 = list(tail_session([Trail(live)], frozenset({"s1"}), print, stop=lambda: True))
        assert len(s1) == 5
        s2 = list(tail_session([Trail(live)], frozenset({"s2"}), print, stop=lambda: script.done, sleep=script))
        assert [line.record["event_type"] for line in s2] == ["invoke_agent", "chat", "chat"]
