"""Durations, sizes and endpoints as the config writes them (``200ms``, ``64MiB``, ``host:port``)."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
DURATION_PATTERN = r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$"
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

SIZE_PATTERN = r"^\d+(\.\d+)?\s*(B|KB|MB|GB|KiB|MiB|GiB)?$"
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$")

ENDPOINT_PATTERN = r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$"
_ENDPOINT = re.compile(ENDPOINT_PATTERN)


def parse_duration(text: str) -> float:
    """Return seconds for a Go-style duration such as ``1h30m`` or ``200ms``.

    Raises:
        ValueError: the text is not a duration.
    """
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration (use e.g. 200ms, 5s, 1h30m)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def parse_size(value: str | int) -> int:
    """Return bytes for a size such as ``64MiB`` (a bare integer is bytes).

    Raises:
        ValueError: the value is not a size.
    """
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a size (use e.g. 4MiB, 512KiB, 1000)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2) or ""])


def parse_endpoint(text: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 in brackets) into host and port.

    Raises:
        ValueError: the text is not host:port or the port is out of range.
    """
    match = _ENDPOINT.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not host:port")
    host, port = match.group(1), int(match.group(2))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return host.strip("[]"), port
