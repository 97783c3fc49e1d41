"""A declarative field mapping: one JSON object (or the named groups of a text line) onto a log record.

A mapping is data (a preset file, or ``mapping:`` in the config), compiled once into a
:class:`Mapper`. Each audit field (``session_id``, ``result``, ...) names the source field(s)
it comes from, tried in order (dotted paths reach into nested objects), an optional value
translation and a default, or a constant ``value``. ``timestamp`` and ``severity`` set the
record's own time and severity; ``trace_id``/``span_id`` its ids. What the mapping produces is a
body in the audit line's own names (``session_id``, ``category``, ``result``, ``detail``, ...),
which the ``jsonl_audit`` exporter writes as it is; ``detail`` gathers the listed fields, the
listed objects' keys and (with ``rest``, the default) every top-level field nothing else used,
so nothing the source wrote is lost.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from obs_pipeline.timestamps import parse_timestamp

#: The audit fields a mapping may fill (besides ``timestamp``, ``severity`` and ``detail``).
TEXT_FIELDS = ("session_id", "task_id", "event_type", "category", "result", "message", "event_id",
               "trace_id", "span_id", "parent_span_id", "user_id", "agent", "service")
FIELDS = ("timestamp", "severity", *TEXT_FIELDS, "detail")
TIMESTAMP_FORMATS = ("auto", "iso8601", "unix_s", "unix_ms", "unix_us", "unix_ns")
_UNIX_SCALE = {"unix_s": 10**9, "unix_ms": 10**6, "unix_us": 10**3, "unix_ns": 1}
_HEX = frozenset("0123456789abcdefABCDEF")


class MappingError(ValueError):
    """A mapping that cannot be compiled; ``path`` is where in the mapping (``result.values``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


@dataclass(frozen=True)
class _Field:
    paths: tuple[tuple[str, ...], ...]
    values: Mapping[str, Any]
    default: Any

    def get(self, obj: Mapping[str, Any], used: set[str] | None = None) -> Any:
        """The first present, non-empty value (translated), else the default; its top-level key goes into ``used``."""
        for path in self.paths:
            value = _get(obj, path)
            if value is None or value == "":
                continue
            if used is not None and len(path) == 1:
                used.add(path[0])
            if self.values and isinstance(value, str):
                return self.values.get(value, value)
            return value
        return self.default


def _get(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    if len(path) == 1:  # the common case, without a loop
        return obj.get(path[0])
    value: Any = obj
    for part in path:
        if type(value) is not dict:  # JSON objects are dicts; an ABC check costs 4x more
            return None
        value = value.get(part)
    return value


def _paths(raw: Any, where: str) -> tuple[tuple[str, ...], ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(p, str) and p for p in items):
        raise MappingError(where, "must be a field name or a list of field names")
    return tuple(tuple(p.split(".")) for p in items)


def _compile_field(name: str, raw: Any) -> _Field:
    if isinstance(raw, (str, list)):
        return _Field(_paths(raw, name), {}, None)
    if not isinstance(raw, Mapping):
        raise MappingError(name, "must be a field name, a list of them, or an object with field/value")
    unknown = set(raw) - {"field", "value", "values", "default", "format", "timezone"}
    if unknown:
        raise MappingError(name, f"unknown key {min(unknown)!r}")
    if raw.get("value") is not None:
        if raw.get("field") is not None:
            raise MappingError(name, "give either field or value, not both")
        return _Field((), {}, raw["value"])
    if raw.get("field") is None:
        raise MappingError(name, "needs field (where the value comes from) or value (a constant)")
    values = raw.get("values") or {}
    if not isinstance(values, Mapping):
        raise MappingError(f"{name}.values", "must map source values to audit values")
    return _Field(_paths(raw["field"], f"{name}.field"), {str(k): v for k, v in values.items()}, raw.get("default"))


@dataclass(frozen=True)
class Mapped:
    """What a mapping made of one object: the body, the time (ns, 0 if none), severity and ids."""

    body: dict[str, Any]
    time_ns: int
    severity_text: str
    severity_number: int
    trace_id: bytes
    span_id: bytes


class Mapper:
    """A compiled mapping; :meth:`apply` is the per-line work."""

    def __init__(self, spec: Mapping[str, Any], severity_numbers: Mapping[str, int]) -> None:
        if not isinstance(spec, Mapping):
            raise MappingError("", "a mapping must be an object")
        unknown = set(spec) - set(FIELDS)
        if unknown:
            raise MappingError(min(unknown), f"not a mapped field (known: {', '.join(FIELDS)})")
        self._severity_numbers = severity_numbers
        spec = {k: v for k, v in spec.items() if v is not None}  # null: not mapped (the schema's default)
        self._fields = {name: _compile_field(name, spec[name]) for name in TEXT_FIELDS if name in spec}
        self._severity = _compile_field("severity", spec["severity"]) if "severity" in spec else None
        self._timestamp = _compile_field("timestamp", spec["timestamp"]) if "timestamp" in spec else None
        ts_spec = spec.get("timestamp")
        self._time_format, self._zone = _time_format(ts_spec if isinstance(ts_spec, Mapping) else {})
        self._detail_fields, self._detail_objects, self._rest, self._exclude = _detail(spec.get("detail", {}))
        # Always kept out of the rest: what detail lists on its own and what it excludes. A mapped
        # field's key is kept out only when its value was the one used (see apply).
        listed = (*self._detail_fields, *self._detail_objects)
        self._consumed = frozenset(p[0] for p in listed if len(p) == 1) | self._exclude

    def apply(self, obj: Mapping[str, Any]) -> Mapped:
        """Map one object."""
        body: dict[str, Any] = {}
        detail: dict[str, Any] = {}
        used: set[str] = set()
        for name, spec in self._fields.items():
            value = spec.get(obj, used)
            if value is not None and value != "":
                body[name] = value
        time_ns = 0
        if self._timestamp is not None:
            raw = self._timestamp.get(obj, used)
            if raw is not None:
                parsed = self._parse_time(raw)
                if parsed is None:
                    detail["source_timestamp"] = raw
                else:
                    time_ns = parsed
        severity_text, severity_number = self._severity_of(obj, used)
        for path in self._detail_objects:
            value = _get(obj, path)
            if type(value) is dict:
                for key, item in value.items():
                    if item is not None and item != "":
                        detail.setdefault(key, item)
            elif value is not None:
                detail.setdefault(path[-1], value)
        for path in self._detail_fields:
            value = _get(obj, path)
            if value is not None and value != "":
                detail.setdefault(path[-1], value)
        if self._rest:
            consumed = self._consumed
            for key, value in obj.items():
                if key not in consumed and key not in used and value is not None and value != "":
                    detail.setdefault(key, value)
        trace_id = _hex_bytes(body.get("trace_id"), 16)
        span_id = _hex_bytes(body.get("span_id"), 8)
        if detail:
            body["detail"] = detail
        return Mapped(body, time_ns, severity_text, severity_number, trace_id, span_id)

    def _severity_of(self, obj: Mapping[str, Any], used: set[str]) -> tuple[str, int]:
        if self._severity is None:
            return "", 0
        value = self._severity.get(obj, used)
        if isinstance(value, str):
            return value, self._severity_numbers.get(value.strip().lower(), 0)
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 24:
            return "", value
        return "", 0

    def _parse_time(self, raw: Any) -> int | None:
        fmt = self._time_format
        if fmt in ("auto", "iso8601"):
            if fmt == "iso8601" and not isinstance(raw, str):
                return None
            if self._zone is not UTC and isinstance(raw, str):
                return _strptime_iso(raw, self._zone)
            return parse_timestamp(raw)
        if fmt in _UNIX_SCALE:
            if isinstance(raw, str):
                try:
                    raw = float(raw) if "." in raw else int(raw)
                except ValueError:
                    return None
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                return None
            ns = int(raw * _UNIX_SCALE[fmt])
            return ns if 0 <= ns < 2**64 else None
        if not isinstance(raw, str):
            return None
        try:
            moment = datetime.strptime(raw, fmt)  # noqa: DTZ007 - the zone is applied just below
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self._zone)
        return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _strptime_iso(raw: str, zone: tzinfo) -> int | None:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _time_format(spec: Mapping[str, Any]) -> tuple[str, tzinfo]:
    fmt = spec.get("format", "auto")
    if not isinstance(fmt, str) or (fmt not in TIMESTAMP_FORMATS and "%" not in fmt):
        raise MappingError("timestamp.format", f"must be one of {', '.join(TIMESTAMP_FORMATS)} or a strptime "
                           "pattern such as %Y-%m-%d %H:%M:%S,%f")
    zone_name = spec.get("timezone", "UTC")
    if zone_name == "UTC":
        return fmt, UTC
    try:
        return fmt, zoneinfo.ZoneInfo(str(zone_name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise MappingError("timestamp.timezone", "is not a known IANA time zone (such as Europe/Paris)") from None


def _detail(raw: Any) -> tuple[tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...], bool, frozenset[str]]:
    if not isinstance(raw, Mapping):
        raise MappingError("detail", "must be an object with fields, objects, rest, exclude")
    unknown = set(raw) - {"fields", "objects", "rest", "exclude"}
    if unknown:
        raise MappingError("detail", f"unknown key {min(unknown)!r}")
    fields = _paths(raw["fields"], "detail.fields") if raw.get("fields") else ()
    objects = _paths(raw["objects"], "detail.objects") if raw.get("objects") else ()
    exclude = raw.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
        raise MappingError("detail.exclude", "must be a list of top-level field names")
    rest = raw.get("rest", True)
    if not isinstance(rest, bool):
        raise MappingError("detail.rest", "must be true or false")
    return fields, objects, rest, frozenset(exclude)


def _hex_bytes(value: Any, size: int) -> bytes:
    if isinstance(value, str) and len(value) == size * 2 and _HEX.issuperset(value):
        raw = bytes.fromhex(value)
        if any(raw):
            return raw
    return b""
