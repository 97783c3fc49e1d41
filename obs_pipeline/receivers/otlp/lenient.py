"""Lenient decoding of OTLP protobuf requests that the strict parse refuses for one bad value.

protobuf refuses a whole message for one ``string`` field that is not valid UTF-8, or for one
``AnyValue`` nested deeper than its limit (100 levels, the root message being level 0). An SDK
told INVALID_ARGUMENT drops the batch for good, so the receivers do not give up there: only
when the strict parse raised, :func:`decode` parses the request again into a parallel set of
message classes, built at import time from the same descriptors, in which

* every ``string`` field is declared ``bytes`` (the same wire type), so nothing is validated, and
* ``AnyValue.array_value`` and ``AnyValue.kvlist_value`` are ``bytes`` too, so the parse never
  recurses into values and cannot hit the depth limit: they are parsed one level at a time here.

It then walks the message: a string that is not UTF-8 is decoded with U+FFFD for each bad byte
sequence (reason ``invalid_utf8``); an AnyValue whose array or kvlist would put a message past
level :data:`MAX_DEPTH` is replaced by the string :data:`TRUNCATED` (reason ``too_deep``),
exactly at the first level that cannot hold it, so nothing protobuf could hold is cut. The
result is serialized and parsed with the real class, so what goes on is an ordinary message.

Bytes that are not protobuf at all still raise ``DecodeError``. The walk is Python (about
40 MB/s, a few times faster than OTLP/JSON) and runs only for refused requests; a refused
request over :data:`THREAD_THRESHOLD` bytes is repaired in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.message import DecodeError
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from obs_pipeline.signals import Message, Signal, message_class

__all__ = ["INVALID_UTF8", "MAX_DEPTH", "TOO_DEEP", "TRUNCATED", "Repaired", "decode", "decode_async", "describe"]

#: protobuf's (upb's) nesting limit: the root message is level 0, a message at level 101 is refused.
MAX_DEPTH = 100
#: What replaces an AnyValue that protobuf cannot hold (as its ``string_value``).
TRUNCATED = f"[truncated: nested deeper than protobuf's {MAX_DEPTH} message levels]"
INVALID_UTF8 = "invalid_utf8"
TOO_DEEP = "too_deep"
#: Requests larger than this are repaired in a worker thread (a smaller one costs the loop under
#: ~10 ms: the walk does about 40 MB/s). The walk is pure Python, so the thread gives the event
#: loop the GIL back every switch interval (5 ms) instead of holding it for the whole walk.
THREAD_THRESHOLD = 256 * 1024

_ANY_VALUE = "opentelemetry.proto.common.v1.AnyValue"
_ARRAY_VALUE = "opentelemetry.proto.common.v1.ArrayValue"
_KVLIST_VALUE = "opentelemetry.proto.common.v1.KeyValueList"
_OPAQUE = {"array_value": _ARRAY_VALUE, "kvlist_value": _KVLIST_VALUE}  # AnyValue fields kept as bytes
_TRUNCATED_BYTES = TRUNCATED.encode()
_ROOTS: dict[Signal, FileDescriptor] = {
    Signal.TRACES: trace_pb2.DESCRIPTOR, Signal.METRICS: metrics_pb2.DESCRIPTOR, Signal.LOGS: logs_pb2.DESCRIPTOR,
}


@dataclass
class _Plan:
    """What to look at in one message type: its (former) string fields and the messages below it."""

    strings: list[str] = field(default_factory=list)
    repeated_strings: list[str] = field(default_factory=list)
    children: list[tuple[str, bool, _Plan]] = field(default_factory=list)  # (field, repeated, plan)
    any_value: bool = False


def _loosen(message: descriptor_pb2.DescriptorProto, prefix: str, strings: set[tuple[str, str]]) -> None:
    """Declare ``message``'s string fields (and AnyValue's nested values) bytes, recording which they were."""
    full_name = f"{prefix}.{message.name}"
    for fld in message.field:
        if fld.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
            fld.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            strings.add((full_name, fld.name))
        elif full_name == _ANY_VALUE and fld.name in _OPAQUE:
            fld.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            fld.ClearField("type_name")
    for nested in message.nested_type:
        _loosen(nested, full_name, strings)


def _build() -> tuple[dict[str, type[Any]], dict[str, _Plan]]:
    """The lenient classes (by full name) and the walk plan of every message type."""
    pool = descriptor_pool.DescriptorPool()
    strings: set[tuple[str, str]] = set()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb)
        for message in proto.message_type:
            _loosen(message, proto.package, strings)
        pool.Add(proto)
        added.add(file.name)

    for root in _ROOTS.values():
        add(root)

    classes: dict[str, type[Any]] = {}
    plans: dict[str, _Plan] = {}

    def plan_of(descriptor: Descriptor) -> _Plan:
        name = descriptor.full_name
        if name in plans:
            return plans[name]
        plan = plans[name] = _Plan(any_value=name == _ANY_VALUE)
        classes[name] = message_factory.GetMessageClass(descriptor)
        for fld in descriptor.fields:
            repeated = fld.is_repeated
            if (name, fld.name) in strings:
                (plan.repeated_strings if repeated else plan.strings).append(fld.name)
            elif fld.message_type is not None:
                plan.children.append((fld.name, repeated, plan_of(fld.message_type)))
        return plan

    for root in _ROOTS.values():  # the lenient copies, not the real descriptors
        for descriptor in pool.FindFileByName(root.name).message_types_by_name.values():
            plan_of(descriptor)
    for name in _OPAQUE.values():
        plan_of(pool.FindMessageTypeByName(name))
    return classes, plans


_CLASSES, _PLANS = _build()
_ROOT_NAMES = {signal: message_class(signal).DESCRIPTOR.full_name for signal in Signal}


class _Repair:
    """One walk over a lenient message, counting what it changed by reason."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def _count(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def _fixed(self, raw: bytes) -> bytes | None:
        """``raw`` made valid UTF-8, or None when it already is."""
        if raw.isascii():
            return None
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            self._count(INVALID_UTF8)
            return raw.decode("utf-8", "replace").encode("utf-8")
        return None

    def message(self, msg: Any, plan: _Plan, depth: int) -> bool:
        """Repair ``msg`` (at nesting level ``depth``) in place; True when anything changed."""
        changed = False
        for name in plan.strings:
            fixed = self._fixed(getattr(msg, name))
            if fixed is not None:
                setattr(msg, name, fixed)
                changed = True
        for name in plan.repeated_strings:
            values = getattr(msg, name)
            for index, raw in enumerate(values):
                fixed = self._fixed(raw)
                if fixed is not None:
                    values[index] = fixed
                    changed = True
        if plan.any_value:
            changed = self._any_value(msg, depth) or changed
        for name, repeated, sub in plan.children:
            if repeated:
                for item in getattr(msg, name):
                    changed = self.message(item, sub, depth + 1) or changed
            elif msg.HasField(name):
                changed = self.message(getattr(msg, name), sub, depth + 1) or changed
        return changed

    def _any_value(self, value: Any, depth: int) -> bool:
        """Descend into an AnyValue's array or kvlist (kept as bytes), or cut it where it is too deep."""
        kind = value.WhichOneof("value")
        if kind not in _OPAQUE:
            return False
        inner = _CLASSES[_OPAQUE[kind]].FromString(getattr(value, kind))
        # The ArrayValue/KeyValueList is one level below this AnyValue, its entries two, and a
        # KeyValue's value three: the deepest of them present must be within the limit.
        needed = 1
        if inner.values:
            needed = 2
            if kind == "kvlist_value" and any(kv.HasField("value") for kv in inner.values):
                needed = 3
        if depth + needed > MAX_DEPTH:
            value.string_value = _TRUNCATED_BYTES
            self._count(TOO_DEEP)
            return True
        if self.message(inner, _PLANS[_OPAQUE[kind]], depth + 1):
            setattr(value, kind, inner.SerializeToString())
            return True
        return False


@dataclass(frozen=True)
class Repaired:
    """A refused request, repaired: the message, its serialization, and what was repaired, by reason."""

    message: Message
    wire: bytes
    repairs: dict[str, int]


def decode(signal: Signal, payload: bytes) -> Repaired:
    """Parse OTLP protobuf bytes that the strict parse refused, repairing what it refused.

    Raises:
        google.protobuf.message.DecodeError: the bytes are not OTLP protobuf, or nothing in them
            could be repaired.
    """
    root = _ROOT_NAMES[signal]
    loose = _CLASSES[root].FromString(payload)  # DecodeError: not protobuf at all
    repair = _Repair()
    if not repair.message(loose, _PLANS[root], 0):
        raise DecodeError(f"nothing to repair in a refused OTLP {signal.value} request")
    wire = loose.SerializeToString()
    message: Message = message_class(signal).FromString(wire)
    return Repaired(message, wire, repair.counts)


async def decode_async(signal: Signal, payload: bytes) -> Repaired:
    """:func:`decode`, in a worker thread when ``payload`` is over :data:`THREAD_THRESHOLD` bytes."""
    if len(payload) > THREAD_THRESHOLD:
        return await asyncio.to_thread(decode, signal, payload)
    return decode(signal, payload)


def describe(repairs: dict[str, int]) -> str:
    """``invalid_utf8=2, too_deep=1``, for a log line."""
    return ", ".join(f"{reason}={count}" for reason, count in sorted(repairs.items()))
