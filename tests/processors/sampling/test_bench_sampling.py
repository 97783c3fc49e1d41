"""bench/sampling.py's own logic, without timing: the variants hand on what they should."""

from __future__ import annotations

import asyncio

from bench.sampling import TAIL, cache_entry_bytes, requests, run_through


def test_variants_hand_on_what_they_should():
    """Pass-through hands on every span; head 10 % about a tenth; tail (5 policies) a share of whole traces."""
    wires = requests(20, seed=3)
    assert asyncio.run(run_through(None, wires)) == 2000
    head = asyncio.run(run_through({"sampling_percentage": 10}, wires))
    tail = asyncio.run(run_through(TAIL, wires))
    assert 0 < head < 600
    assert 0 < tail <= 2000  # the workload is error- and latency-heavy: most traces match a policy
    assert tail % 20 == 0  # 20 spans per trace, and traces leave whole


def test_cache_entry_estimate_is_plausible():
    """A remembered trace id costs tens to a few hundred bytes."""
    assert 50 < cache_entry_bytes(1000) < 400
