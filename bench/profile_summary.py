"""Summarize a py-spy ``--format raw`` profile: ``python -m bench.profile_summary profile.txt [--cpu-us N]``.

py-spy's raw format is one collapsed stack per line (``frame;frame;...;leaf count``, root
first). This groups samples three ways, because the question is "which code of ours costs
what per request":

* by *stage*: the leaf-most frame of this repository (``obs_pipeline/...``), by function, or for
  samples with no such frame the library they are in (grpc, asyncio, threading = grpc's poller);
* by *line* within the hottest of our functions (which statement: ``orjson.dumps``, a dict
  build, ``write``);
* by *leaf* (self time), which with ``--native`` names the C function (upb, orjson, libc).

With ``--cpu-us`` (the pipeline's CPU µs per request from ``bench.run``), shares are also shown
as µs per request. py-spy samples wall time of running threads (idle frames excluded), so shares
are of the sampled, not-idle time; threads that never enter Python are invisible to it.
"""

from __future__ import annotations

import argparse
import collections
import linecache
import re
import sys
from collections.abc import Iterable
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")
IDLE = ("epoll_wait", "EpollSelector.select", "select_epoll_poll", "poll (", "pthread_cond_wait", "futex")
LIBRARIES = (
    ("grpc", "grpc"), ("asyncio", "asyncio"), ("threading", "threading"), ("prometheus_client", "prometheus_client"),
    ("_upb", "protobuf (upb)"), ("google/protobuf", "protobuf (python)"), ("orjson", "orjson"),
    ("aiohttp", "aiohttp"), ("libc", "libc"), ("libpython", "python runtime"),
)


def parse(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """Stacks (root first) with their sample counts."""
    out = []
    for raw in lines:
        line = raw.rstrip("\n")
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def split_frame(frame: str) -> tuple[str, str, str]:
    """(function, file, line) of ``func (file:line)``."""
    m = FRAME.match(frame)
    return (m["func"], m["file"], m["line"] or "") if m else (frame, "", "")


def is_ours(frame: str) -> bool:
    """A frame of this repository's package."""
    return "obs_pipeline/" in split_frame(frame)[1]


def library(frame: str) -> str:
    """Which library a frame belongs to (or its file)."""
    _, file, _ = split_frame(frame)
    for needle, name in LIBRARIES:
        if needle in file or needle in frame:
            return name
    return file or frame


def source_line(src: Path | None, file: str, line: str) -> str:
    """The text of ``file:line`` under ``src`` (the profiled code), or ""."""
    if src is None or not line:
        return ""
    path = src / file[file.index("obs_pipeline/"):] if "obs_pipeline/" in file else src / file
    try:
        return linecache.getline(str(path), int(line)).strip()[:90]
    except ValueError:
        return ""


def summarize(stacks: list[tuple[list[str], int]], cpu_us: float | None, top: int, src: Path | None = None) -> str:
    """The three tables, as text."""
    busy = [(s, n) for s, n in stacks if not any(mark in s[-1] for mark in IDLE)]
    total = sum(n for _, n in busy) or 1
    idle = sum(n for _, n in stacks) - total
    stage: collections.Counter[str] = collections.Counter()
    lines: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    leaf: collections.Counter[str] = collections.Counter()
    for stack, n in busy:
        ours = [f for f in stack if is_ours(f)]
        if ours:
            func, file, line = split_frame(ours[-1])
            key = f"{file.split('obs_pipeline/', 1)[-1]}:{func}"
            below = stack[stack.index(ours[-1]) + 1:]
            callee = f" -> {library(below[-1])}" if below else ""
            text = source_line(src, file, line)
            lines[key][f"line {line}{callee}" + (f"  `{text}`" if text else "")] += n
        else:
            key = f"[{library(stack[-1])}] " + (split_frame(stack[-2])[0] if len(stack) > 1 else "")
        stage[key] += n
        leaf[f"{split_frame(stack[-1])[0]} [{library(stack[-1])}]"] += n

    def fmt(name: str, n: int) -> str:
        share = n / total
        us = f" {share * cpu_us:8.1f} µs/req" if cpu_us else ""
        return f"  {100 * share:5.1f}%{us}  {name}"

    out = [f"{total} busy samples ({idle} idle samples left out)", "", "by stage (leaf-most obs_pipeline frame):"]
    for name, n in stage.most_common(top):
        out.append(fmt(name, n))
        for sub, m in lines.get(name, collections.Counter()).most_common(6):
            out.append("      " + fmt(sub, m).strip())
    out += ["", "by leaf (self time):"]
    out += [fmt(name, n) for name, n in leaf.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.profile_summary", description=__doc__.split("\n\n")[0])
    p.add_argument("profile", help="py-spy --format raw output")
    p.add_argument("--cpu-us", type=float, default=None, help="pipeline CPU µs per request, to convert shares")
    p.add_argument("--top", type=int, default=25, help="rows per table")
    p.add_argument("--src", type=Path, default=Path(__file__).resolve().parent / "results" / "profile-src",
                   help="the profiled sources (bench.run --profile copies them here), to show each line's text")
    a = p.parse_args(argv)
    with open(a.profile) as fh:
        print(summarize(parse(fh), a.cpu_us, a.top, a.src if a.src.exists() else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
