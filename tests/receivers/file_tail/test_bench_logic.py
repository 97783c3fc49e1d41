"""The file_tail benchmark's logic (no timing): it reads every line of every shape and reports ratios."""

from __future__ import annotations

from bench import file_tail as bench


def test_every_shape_is_read_whole_and_reported(tmp_path):
    """A tiny run: each preset's file is read to its end by both variants; the report has a ratio per shape."""
    report = bench.run(50)
    assert set(report) == set(bench.SHAPES)
    for figures in report.values():
        assert figures["lines"] == 50
        assert figures["ratio"] > 0


def test_make_file_repeats_the_fixture(tmp_path):
    """The bench file is the fixture's lines, repeated to the size asked."""
    out = tmp_path / "f.jsonl"
    bench.make_file(bench.FIXTURES / "missy_audit.jsonl", 30, out)
    assert len(out.read_bytes().splitlines()) == 30
