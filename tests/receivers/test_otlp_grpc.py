"""The otlp receiver over gRPC: real servers and clients on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from obs_pipeline.components import LifecycleError
from obs_pipeline.errors import StartupError
from obs_pipeline.receivers.otlp import FACTORY, OtlpReceiver
from obs_pipeline.signals import Signal
from obs_pipeline.testing import (
    CapturingConsumer,
    RecordingHost,
    RefusingConsumer,
    make_settings,
    parse_config,
)
from tests.receivers.conftest import sample

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@contextlib.asynccontextmanager
async def running(consumers, metrics, endpoint="127.0.0.1:0", **grpc_options):
    """An otlp receiver serving gRPC on ``endpoint``; yields it started, shuts it down after."""
    cfg = parse({"protocols": {"grpc": {"endpoint": endpoint, **grpc_options}}})
    receiver = FACTORY.create(make_settings("otlp", metrics=metrics), cfg, consumers)
    await receiver.start(RecordingHost())
    try:
        yield receiver
    finally:
        await receiver.shutdown()


@contextlib.asynccontextmanager
async def channel_to(receiver: OtlpReceiver):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        yield channel


def parse(body):
    """The typed config of ``body``, schema defaults filled in as the config layer does."""
    return parse_config(FACTORY, body)


def traces_request(n: int = 2, name_size: int = 0) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(n):
        scope.spans.add(name=f"span-{i}" + "x" * name_size, trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"))
    return request


def export_with_sdk(port: int) -> list:
    """Create a parent and a child span with the OTel SDK and export them over gRPC."""
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, timeout=10)
    provider = TracerProvider(resource=Resource.create({"service.name": "agent-under-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.grpc")
    contexts = []
    with tracer.start_as_current_span("invoke_agent", attributes={"gen_ai.agent.name": "helper"}) as parent:
        contexts.append(parent.get_span_context())
        with tracer.start_as_current_span(
            "chat", attributes={"gen_ai.usage.input_tokens": 42, "gen_ai.request.temperature": 0.5},
        ) as child:
            contexts.append(child.get_span_context())
    provider.shutdown()
    return contexts


class TestExport:
    async def test_sdk_spans_arrive_intact(self, metrics):
        """Spans sent by the OTel SDK's gRPC exporter arrive with names, attributes and ids."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as receiver:
            contexts = await asyncio.to_thread(export_with_sdk, receiver.grpc_port)
            await consumer.wait_for_items(2)
        spans = {s.name: s for m in consumer.messages for rs in m.resource_spans for ss in rs.scope_spans
                 for s in ss.spans}
        assert set(spans) == {"invoke_agent", "chat"}
        chat, agent = spans["chat"], spans["invoke_agent"]
        assert chat.trace_id == contexts[1].trace_id.to_bytes(16, "big")
        assert chat.span_id == contexts[1].span_id.to_bytes(8, "big")
        assert chat.parent_span_id == agent.span_id == contexts[0].span_id.to_bytes(8, "big")
        attrs = {kv.key: kv.value for kv in chat.attributes}
        assert attrs["gen_ai.usage.input_tokens"].int_value == 42
        assert attrs["gen_ai.request.temperature"].double_value == 0.5
        resource = {kv.key: kv.value.string_value for kv in consumer.messages[0].resource_spans[0].resource.attributes}
        assert resource["service.name"] == "agent-under-test"
        assert sample(metrics, "receiver_accepted_items", receiver="otlp", transport="grpc", signal="traces") == 2

    async def test_logs_and_metrics_arrive(self, metrics):
        """The LogsService and MetricsService Export methods hand their data to their own consumers."""
        logs, metric_points = CapturingConsumer(), CapturingConsumer()
        async with running({Signal.LOGS: logs, Signal.METRICS: metric_points}, metrics) as receiver, \
                channel_to(receiver) as channel:
            log_request = logs_service_pb2.ExportLogsServiceRequest()
            record = log_request.resource_logs.add().scope_logs.add().log_records.add(severity_text="WARN")
            record.body.string_value = "disk almost full"
            await logs_service_pb2_grpc.LogsServiceStub(channel).Export(log_request)
            metric_request = metrics_service_pb2.ExportMetricsServiceRequest()
            metric = metric_request.resource_metrics.add().scope_metrics.add().metrics.add(name="agent.turns")
            metric.sum.data_points.add(as_int=3)
            metric.sum.data_points.add(as_int=4)
            await metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metric_request)
        assert logs.messages[0].resource_logs[0].scope_logs[0].log_records[0].body.string_value == "disk almost full"
        assert [p.as_int for p in metric_points.messages[0].resource_metrics[0].scope_metrics[0].metrics[0]
                .sum.data_points] == [3, 4]
        assert sample(metrics, "receiver_accepted_items", receiver="otlp", transport="grpc", signal="logs") == 1
        assert sample(metrics, "receiver_accepted_items", receiver="otlp", transport="grpc", signal="metrics") == 2

    async def test_empty_request_is_ok(self, metrics):
        """A request without items is answered OK with an empty response."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as receiver, channel_to(receiver) as channel:
            response = await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
                trace_service_pb2.ExportTraceServiceRequest())
        assert response == trace_service_pb2.ExportTraceServiceResponse()
        assert not response.HasField("partial_success")

    async def test_gzip_request_is_accepted(self, metrics):
        """A gzip-compressed call is decompressed by grpc and parsed as usual."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as receiver, channel_to(receiver) as channel:
            await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
                traces_request(3), compression=grpc.Compression.Gzip)
        assert consumer.items == 3


class TestBadRequests:
    async def test_malformed_protobuf_is_invalid_argument_and_server_keeps_serving(self, metrics):
        """Garbage bytes get INVALID_ARGUMENT, are counted, and the next good request succeeds."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as receiver, channel_to(receiver) as channel:
            raw = channel.unary_unary(TRACE_EXPORT)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await raw(b"\x0a\xff\xff\xff\xff\x0f")
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            await trace_service_pb2_grpc.TraceServiceStub(channel).Export(traces_request(1))
        assert consumer.items == 1
        assert sample(metrics, "receiver_malformed_requests", receiver="otlp", transport="grpc") == 1

    async def test_oversize_request_is_resource_exhausted(self, metrics):
        """A request over max_recv_msg_size is refused by grpc with RESOURCE_EXHAUSTED."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics, max_recv_msg_size="1KiB") as receiver, \
                channel_to(receiver) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Export(traces_request(2, name_size=2000))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await stub.Export(traces_request(1))
        assert consumer.items == 1

    async def test_signal_without_pipeline_is_unimplemented(self, metrics):
        """A service whose signal no pipeline takes is not registered: UNIMPLEMENTED."""
        async with running({Signal.TRACES: CapturingConsumer()}, metrics) as receiver, \
                channel_to(receiver) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await logs_service_pb2_grpc.LogsServiceStub(channel).Export(
                    logs_service_pb2.ExportLogsServiceRequest())
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


class TestBackpressure:
    async def test_refusal_is_unavailable_with_retry_info(self, metrics):
        """RefusedError becomes UNAVAILABLE carrying RetryInfo in both trailers the SDKs read."""
        consumer = RefusingConsumer("queue_full", retry_after=2.5)
        async with running({Signal.TRACES: consumer}, metrics) as receiver, channel_to(receiver) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await trace_service_pb2_grpc.TraceServiceStub(channel).Export(traces_request(3))
        error = info.value
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(error.trailing_metadata())
        status = Status.FromString(trailers["grpc-status-details-bin"])
        assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
        retry = RetryInfo()
        assert status.details[0].Unpack(retry)
        assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (2, 500_000_000)
        assert RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]) == retry
        assert sample(metrics, "receiver_refused_items", receiver="otlp", transport="grpc", signal="traces",
                      reason="queue_full") == 3
        assert sample(metrics, "receiver_accepted_items", receiver="otlp", transport="grpc", signal="traces") == 0

    async def test_sdk_exporter_retries_after_refusal(self, metrics):
        """The OTel SDK honours the RetryInfo, retries, and the batch then arrives once."""
        consumer = RefusingConsumer(retry_after=0.05, times=1)
        async with running({Signal.TRACES: consumer}, metrics) as receiver:
            await asyncio.to_thread(export_with_sdk, receiver.grpc_port)
            await consumer.wait_for_items(2)
        assert consumer.refusals >= 1
        assert consumer.items == 2

    async def test_unexpected_exception_is_unavailable_and_not_logged_with_content(self, metrics, caplog):
        """A consumer bug becomes UNAVAILABLE; the log names the error class, not its message."""

        class Broken:
            async def consume(self, batch):
                raise KeyError("sk-secret-value-in-a-message")

        caplog.set_level(logging.DEBUG)
        async with running({Signal.TRACES: Broken()}, metrics) as receiver, channel_to(receiver) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            for _ in range(2):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Export(traces_request(1))
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "KeyError" in caplog.text
        assert "sk-secret-value" not in caplog.text
        assert "sk-secret-value" not in info.value.details()
        assert sample(metrics, "receiver_refused_items", receiver="otlp", transport="grpc", signal="traces",
                      reason="internal_error") == 2


class TestLifecycle:
    async def test_address_in_use_is_startup_error(self, metrics, busy_port):
        """Binding a port that is taken fails start with a message that says so."""
        cfg = parse({"protocols": {"grpc": {"endpoint": f"127.0.0.1:{busy_port}"}}})
        receiver = FACTORY.create(make_settings("otlp/in", metrics=metrics), cfg, {Signal.TRACES: CapturingConsumer()})
        with pytest.raises(StartupError) as info:
            await receiver.start(RecordingHost())
        assert str(info.value) == f"otlp/in: cannot listen on 127.0.0.1:{busy_port}: address already in use"
        await receiver.shutdown()

    async def test_failed_http_start_releases_the_grpc_port(self, metrics, busy_port):
        """When HTTP cannot bind, the gRPC server that already started is stopped again."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            grpc_port = probe.getsockname()[1]
        cfg = parse({"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                   "http": {"endpoint": f"127.0.0.1:{busy_port}"}}})
        receiver = FACTORY.create(make_settings("otlp", metrics=metrics), cfg, {Signal.TRACES: CapturingConsumer()})
        with pytest.raises(StartupError, match="address already in use"):
            await receiver.start(RecordingHost())
        with socket.socket() as again:
            again.bind(("127.0.0.1", grpc_port))  # free again

    async def test_shutdown_is_idempotent_and_safe_without_start(self, metrics):
        """shutdown() before start() and twice after start() does nothing harmful; a stopped one never restarts."""
        cfg = parse({"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}})
        never_started = FACTORY.create(make_settings("otlp", metrics=metrics), cfg, {Signal.TRACES: CapturingConsumer()})
        await never_started.shutdown()
        with pytest.raises(LifecycleError):
            await never_started.start(RecordingHost())
        receiver = FACTORY.create(make_settings("otlp", metrics=metrics), cfg, {Signal.TRACES: CapturingConsumer()})
        await receiver.start(RecordingHost())
        await receiver.shutdown()
        await receiver.shutdown()

    async def test_request_in_flight_gets_its_answer_during_shutdown(self, metrics):
        """A call waiting on the pipeline when shutdown starts still gets OK; new calls are refused."""
        gate = asyncio.Event()
        entered = asyncio.Event()

        class Slow(CapturingConsumer):
            async def consume(self, batch):
                entered.set()
                await gate.wait()
                await super().consume(batch)

        consumer = Slow()
        cfg = parse({"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}})
        receiver = FACTORY.create(make_settings("otlp", metrics=metrics), cfg, {Signal.TRACES: consumer})
        await receiver.start(RecordingHost())
        async with channel_to(receiver) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            call = asyncio.ensure_future(stub.Export(traces_request(2)))
            await entered.wait()
            stopping = asyncio.ensure_future(receiver.shutdown())
            await asyncio.sleep(0.1)
            gate.set()
            await call
            await stopping
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Export(traces_request(1), timeout=2)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert consumer.items == 2


class TestConfig:
    def test_null_protocol_body_means_defaults(self):
        """``grpc:`` with no body turns gRPC on with the schema defaults; absent HTTP stays off."""
        cfg = parse({"protocols": {"grpc": None}})
        assert cfg.grpc is not None
        assert (cfg.grpc.endpoint, cfg.grpc.max_recv_msg_size) == ("127.0.0.1:4317", 4 * 2**20)
        assert cfg.http is None

    def test_endpoints_lists_enabled_protocols(self):
        """The port-clash check sees one entry per enabled protocol."""
        cfg = parse({"protocols": {"grpc": {"endpoint": "0.0.0.0:14317"}, "http": {"max_request_body_size": "1MiB"}}})
        assert FACTORY.endpoints(cfg) == [("protocols.grpc.endpoint", "0.0.0.0:14317"),
                                          ("protocols.http.endpoint", "127.0.0.1:4318")]
        assert cfg.http is not None
        assert cfg.http.max_request_body_size == 2**20

    def test_check_rejects_sizes_grpc_cannot_take(self):
        """A zero or over-2GiB message size is a config problem with its path."""
        cfg = parse({"protocols": {"grpc": {"max_recv_msg_size": "3GiB"}, "http": {"max_request_body_size": 0}}})
        assert [p.path for p in FACTORY.check(cfg)] == ["protocols.grpc.max_recv_msg_size",
                                                       "protocols.http.max_request_body_size"]
