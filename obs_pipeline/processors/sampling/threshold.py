"""Consistent probability sampling arithmetic: thresholds, randomness, ``th`` values, hashes.

After OpenTelemetry's "TraceState: Probability Sampling" and the collector's ``pkg/sampling``:
a 56-bit randomness value R (the low 56 bits of the trace id, or an ``rv`` value) is compared
with a 56-bit rejection threshold T derived from the probability; R >= T keeps. Any two samplers
that agree on R and T decide alike, whatever process they run in, so every value here is plain
integer arithmetic over the trace id's bytes (never Python's salted ``hash()``).

Also the two hashes the collector uses where it does not read the trace id's randomness: FNV-1a
32 over a seed and the trace id (``probabilistic_sampler``'s ``hash_seed`` mode, 14 bits), and
FNV-1a 64 over a salt and the trace id (``tail_sampling``'s ``probabilistic`` policy).
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

MAX_THRESHOLD = 1 << 56  # T for "never": no 56-bit randomness is at or above it
HASH_BUCKETS = 0x4000  # the hash_seed mode's 14 bits
DEFAULT_TAIL_SALT = b"default-hash-seed"  # the collector's tail_sampling default salt
_FNV32_OFFSET, _FNV32_PRIME = 0x811C9DC5, 0x01000193
_FNV64_OFFSET, _FNV64_PRIME = 0xCBF29CE484222325, 0x100000001B3
_MASK32, _MASK64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
_MAX_UINT64 = _MASK64


def probability_to_threshold(probability: float, precision: int) -> int:
    """T for ``probability`` in (0, 1], rounded to ``precision`` significant hex digits.

    Leading ``0`` digits (probabilities near 1, as the collector's
    ``ProbabilityToThresholdWithPrecision``) and leading ``f`` digits (small probabilities, as
    the specification's algorithm) do not count towards the precision.
    """
    if probability >= 1:
        return 0
    minimum = 1 / MAX_THRESHOLD
    probability = max(probability, minimum)
    precision += max(0, math.frexp(probability)[1] // -4)
    reject = 1 - probability
    while reject * 16 < 1:
        reject *= 16
        precision += 1
    precision = min(precision, 14)
    exact = MAX_THRESHOLD - round(probability * MAX_THRESHOLD)
    shift = 4 * (14 - precision)
    rounded = ((exact + (1 << (shift - 1))) >> shift) << shift if shift else exact
    return rounded if rounded < MAX_THRESHOLD else exact  # rounding up to "never" would not be a th


def threshold_to_probability(threshold: int) -> float:
    """The probability a threshold keeps."""
    return (MAX_THRESHOLD - threshold) / MAX_THRESHOLD


def encode_th(threshold: int) -> str:
    """The ``th`` value of a threshold: 14 hex digits without trailing zeros, ``0`` for "always"."""
    if threshold == 0:
        return "0"
    return f"{threshold:014x}".rstrip("0")


def decode_th(value: str) -> int | None:
    """A ``th`` value's threshold, or None when it is not one."""
    if not 0 < len(value) <= 14:
        return None
    try:
        return int(value, 16) << (4 * (14 - len(value)))
    except ValueError:
        return None


def trace_id_randomness(trace_id: bytes) -> int:
    """R from a trace id: its low 56 bits (W3C Trace Context Level 2)."""
    return int.from_bytes(trace_id[9:16], "big")


def fnv1a_32(data: bytes, seed: int) -> int:
    """FNV-1a 32 over the seed's 4 little-endian bytes and ``data`` (the collector's computeHash)."""
    h = _FNV32_OFFSET
    for byte in seed.to_bytes(4, "little") + data:
        h = ((h ^ byte) * _FNV32_PRIME) & _MASK32
    return h


def fnv1a_64(data: bytes, h: int = _FNV64_OFFSET) -> int:
    """FNV-1a 64 over ``data``, from state ``h`` (the offset basis, or the state after a prefix)."""
    for byte in data:
        h = ((h ^ byte) * _FNV64_PRIME) & _MASK64
    return h


def hashed_randomness(trace_id: bytes, seed: int) -> int:
    """R of the hash_seed mode, built exactly as the collector's ``randomnessFromBytes``.

    Only its top 14 bits decide; the rest make it a valid 56-bit ``rv`` value.
    """
    hashed32 = fnv1a_32(trace_id, seed)
    hashed = hashed32 & (HASH_BUCKETS - 1)
    rprime14 = HASH_BUCKETS - 1 - hashed
    unused18 = hashed32 >> 14
    mixed28 = (unused18 ^ (unused18 << 10)) & ((1 << 28) - 1)
    return (rprime14 << 42) | (mixed28 << 14) | hashed


def hashed_threshold(percentage: float) -> int:
    """T of the hash_seed mode: the collector's float32 arithmetic, so both keep the same traces."""
    scaled = int(_f32(_f32(percentage) * _f32(HASH_BUCKETS / 100.0)))
    return (HASH_BUCKETS - min(scaled, HASH_BUCKETS)) << 42


def tail_hash_threshold(percentage: float) -> int:
    """The tail ``probabilistic`` policy's bound: hashes at or below it keep."""
    return int(Fraction(_MAX_UINT64) * Fraction(percentage / 100)) if percentage < 100 else _MAX_UINT64


def salt_state(salt: bytes) -> int:
    """The FNV-1a 64 state after the salt, to hash many trace ids after it."""
    return fnv1a_64(salt or DEFAULT_TAIL_SALT)


def _f32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


__all__ = [
    "MAX_THRESHOLD",
    "decode_th",
    "encode_th",
    "hashed_randomness",
    "hashed_threshold",
    "probability_to_threshold",
    "salt_state",
    "tail_hash_threshold",
    "threshold_to_probability",
    "trace_id_randomness",
]
