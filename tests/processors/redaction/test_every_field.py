"""Every string field of every OTLP request is scanned: read off the protobuf descriptors, so a new field fails here.

Each request is filled from its descriptor: every string field (repeated ones too) holds a secret,
every message field is filled the same way (one element of a repeated one, the first member of a
oneof), ids and other bytes are left empty. Nothing of the secret may be left after redaction.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from obs_pipeline.batch import Batch
from obs_pipeline.processors.redaction import FACTORY, Redactor
from obs_pipeline.signals import Signal
from obs_pipeline.testing import parse_config

SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" + "k1L2m3N4o5P6q7R8"


def _fill(message: Any, depth: int = 0) -> int:
    """Put the secret in every string reachable from ``message``; how many strings were set."""
    count = 0
    for field in message.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None and message.WhichOneof(oneof.name) is not None:
            continue  # the first member of a oneof only
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == FieldDescriptor.LABEL_REPEATED
        if field.type == FieldDescriptor.TYPE_STRING:
            if repeated:
                getattr(message, field.name).append(f"x {SECRET}")
            else:
                setattr(message, field.name, f"x {SECRET}")
            count += 1
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < 12:
            if field.message_type.GetOptions().map_entry:
                continue
            child = getattr(message, field.name).add() if repeated else getattr(message, field.name)
            count += _fill(child, depth + 1)
            if not repeated and oneof is None and not child.ListFields():
                message.ClearField(field.name)
    return count


@pytest.mark.parametrize(("signal", "request_class"), [
    (Signal.TRACES, ExportTraceServiceRequest), (Signal.LOGS, ExportLogsServiceRequest),
    (Signal.METRICS, ExportMetricsServiceRequest),
])
@pytest.mark.parametrize("hyperscan", [True, False])
def test_no_string_field_of_a_request_keeps_a_secret(signal: Signal, request_class: Any, hyperscan: bool) -> None:
    request = request_class()
    strings = _fill(request)
    assert strings > 10
    data = request.SerializeToString()
    assert data.count(SECRET.encode()) >= strings
    out = Redactor(parse_config(FACTORY, None), hyperscan=hyperscan)(Batch.from_wire(signal, data)).settled()
    assert SECRET.encode() not in out.serialized()
    assert SECRET[:12].encode() not in out.serialized()
