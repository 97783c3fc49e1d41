"""Received OTLP metrics on the prometheus endpoint: names, units, types, temporality, labels, the identity guard."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, MetricsData

from obs_pipeline.components import Kind
from obs_pipeline.exporters.prometheus import FACTORY, PrometheusExporter
from obs_pipeline.exporters.prometheus.otlp_metrics import exponential_buckets, label_name, metric_name
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import make_settings, parse_config
from tests.exporters.builders import add_attributes

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
T = 1_773_743_445_000_000_000
SCOPE = {"otel_scope_name": "agent.sdk"}
JOB = {"job": "my-agent"}


class Received:
    """A prometheus exporter (not started) fed MetricsData directly."""

    def __init__(self, body: dict[str, Any] | None = None) -> None:
        self.metrics = SelfMetrics()
        cfg = parse_config(FACTORY, {"endpoint": "127.0.0.1:0", **(body or {})})
        self.exporter: PrometheusExporter = FACTORY.create(make_settings("prometheus", Kind.EXPORTER, self.metrics), cfg)

    def send(self, data: MetricsData) -> Received:
        self.exporter.received.ingest(data, time.monotonic())
        return self

    def value(self, name: str, **labels: str) -> float | None:
        return self.exporter.registry.get_sample_value(name, {**JOB, **SCOPE, **labels})

    def names(self) -> set[str]:
        return {s.name for m in self.exporter.registry.collect() for s in m.samples}

    def types(self) -> dict[str, str]:
        return {m.name: m.type for m in self.exporter.registry.collect()}


def metrics(resource: dict[str, Any] | None = None) -> tuple[MetricsData, Any]:
    """A MetricsData with one resource and scope; returns it and the scope's metric list."""
    data = MetricsData()
    rm = data.resource_metrics.add()
    add_attributes(rm.resource.attributes, {"service.name": "my-agent"} if resource is None else resource)
    sm = rm.scope_metrics.add()
    sm.scope.name = "agent.sdk"
    return data, sm.metrics


def sum_metric(name: str, points: list[tuple[dict[str, Any], float]], *, temporality=CUMULATIVE, monotonic=True,
               unit: str = "", time_ns: int = T, start_ns: int = T - 10**9) -> MetricsData:
    data, metrics_ = metrics()
    metric = metrics_.add(name=name, unit=unit, description=f"the {name}")
    metric.sum.aggregation_temporality = temporality
    metric.sum.is_monotonic = monotonic
    for attrs, value in points:
        point = metric.sum.data_points.add(time_unix_nano=time_ns, start_time_unix_nano=start_ns)
        if isinstance(value, int):
            point.as_int = value
        else:
            point.as_double = value
        add_attributes(point.attributes, attrs)
    return data


class TestNames:
    @pytest.mark.parametrize(("name", "unit", "type_", "expected"), [
        ("gen_ai.client.operation.duration", "s", "histogram", "gen_ai_client_operation_duration_seconds"),
        ("gen_ai.client.token.usage", "{token}", "histogram", "gen_ai_client_token_usage"),
        ("agent.steps", "{step}", "counter", "agent_steps_total"),
        ("agent.requests", "1", "counter", "agent_requests_total"),
        ("http.requests.total", "", "counter", "http_requests_total"),
        ("total.requests", "", "counter", "requests_total"),
        ("cpu.utilization", "1", "gauge", "cpu_utilization_ratio"),
        ("queue.depth", "1", "sum", "queue_depth"),
        ("network.io", "By/s", "gauge", "network_io_bytes_per_second"),
        ("request.duration_seconds", "s", "histogram", "request_duration_seconds"),
        ("latency", "ms", "histogram", "latency_milliseconds"),
        ("disk.free", "%", "gauge", "disk_free_percent"),
        ("2xx.responses", "", "counter", "_2xx_responses_total"),
        ("weird--name..with__runs", "", "gauge", "weird_name_with_runs"),
        ("namespace:subsystem:metric", "", "gauge", "namespace:subsystem:metric"),
        ("rate", "{req}/s", "gauge", "rate_per_second"),
        ("custom", "widgets", "gauge", "custom_widgets"),
    ])
    def test_metric_names(self, name, unit, type_, expected):
        """The OpenTelemetry-to-Prometheus rules (the collector's UnderscoreEscapingWithSuffixes)."""
        assert metric_name(name, unit, type_) == expected

    @pytest.mark.parametrize(("key", "expected"), [
        ("http.method", "http_method"), ("gen_ai.request.model", "gen_ai_request_model"), ("123abc", "key_123abc"),
        ("__reserved__", "__reserved__"), ("a..b", "a_b"), ("ünïcode", "_n_code"), ("...", ""),
    ])
    def test_label_names(self, key, expected):
        """Invalid characters become _, runs collapse, a leading digit gets key_, __x__ stays."""
        assert label_name(key) == expected


class TestTypesAndTemporality:
    def test_a_cumulative_counter_is_served_as_it_is(self):
        """Monotonic cumulative sum -> counter with _total; the newest point wins, a late older one is ignored."""
        r = Received().send(sum_metric("agent.requests", [({"kind": "a"}, 5)], unit="1"))
        r.send(sum_metric("agent.requests", [({"kind": "a"}, 9)], unit="1", time_ns=T + 10))
        r.send(sum_metric("agent.requests", [({"kind": "a"}, 7)], unit="1", time_ns=T + 5))
        assert r.value("agent_requests_total", kind="a") == 9
        assert r.types()["agent_requests"] == "counter"

    def test_delta_sums_are_added_up(self):
        """Delta points become a cumulative series: what Prometheus needs."""
        r = Received()
        for value in (3, 4, 5.5):
            r.send(sum_metric("tokens", [({"model": "m"}, value)], temporality=DELTA))
        assert r.value("tokens_total", model="m") == 12.5

    def test_a_delta_counter_never_goes_down(self):
        """A negative delta on a monotonic sum is ignored."""
        r = Received().send(sum_metric("c", [({}, 5)], temporality=DELTA)).send(sum_metric("c", [({}, -2)], temporality=DELTA))
        assert r.value("c_total") == 5

    def test_up_down_counters_are_gauges(self):
        """A non-monotonic sum: a gauge, cumulative as it is, delta added up (and it may go down)."""
        r = Received().send(sum_metric("queue.depth", [({}, 5)], monotonic=False))
        assert r.value("queue_depth") == 5
        for delta in (4, -6):
            r.send(sum_metric("active", [({}, delta)], monotonic=False, temporality=DELTA))
        assert r.value("active") == -2
        assert r.types()["queue_depth"] == "gauge"

    def test_gauges(self):
        """A gauge's newest point; unit 1 gives _ratio."""
        data, m = metrics()
        gauge = m.add(name="cache.hit", unit="1")
        gauge.gauge.data_points.add(as_double=0.25, time_unix_nano=T)
        gauge.gauge.data_points.add(as_double=0.75, time_unix_nano=T + 1)
        assert Received().send(data).value("cache_hit_ratio") == 0.75

    def test_a_cumulative_histogram(self):
        """Explicit buckets become cumulative le buckets, with _sum and _count."""
        data, m = metrics()
        hist = m.add(name="gen_ai.client.operation.duration", unit="s")
        hist.histogram.aggregation_temporality = CUMULATIVE
        point = hist.histogram.data_points.add(count=6, sum=7.5, explicit_bounds=[0.5, 1, 5], bucket_counts=[1, 2, 2, 1],
                                               time_unix_nano=T)
        add_attributes(point.attributes, {"gen_ai.provider.name": "openai"})
        r = Received().send(data)
        name = "gen_ai_client_operation_duration_seconds"
        got = [r.value(f"{name}_bucket", gen_ai_provider_name="openai", le=le) for le in ("0.5", "1.0", "5.0", "+Inf")]
        assert got == [1, 3, 5, 6]
        assert r.value(f"{name}_count", gen_ai_provider_name="openai") == 6
        assert r.value(f"{name}_sum", gen_ai_provider_name="openai") == 7.5

    def test_delta_histograms_are_added_up(self):
        """Delta histograms: buckets, count and sum accumulate."""
        r = Received()
        for counts in ([1, 0], [2, 3]):
            data, m = metrics()
            hist = m.add(name="lat", unit="s")
            hist.histogram.aggregation_temporality = DELTA
            hist.histogram.data_points.add(count=sum(counts), sum=1.0, explicit_bounds=[1], bucket_counts=counts)
            r.send(data)
        assert r.value("lat_seconds_bucket", le="1.0") == 3
        assert r.value("lat_seconds_bucket", le="+Inf") == 6
        assert r.value("lat_seconds_sum") == 2.0

    def test_exponential_histograms_become_classic_buckets(self):
        """Scale 0: bounds are powers of two; the zero bucket's bound is the zero threshold; negatives below."""
        data, m = metrics()
        hist = m.add(name="size", unit="By")
        hist.exponential_histogram.aggregation_temporality = CUMULATIVE
        point = hist.exponential_histogram.data_points.add(count=8, sum=20.0, scale=0, zero_count=1, zero_threshold=0.0)
        point.positive.offset = 1  # buckets (2, 4], (4, 8]
        point.positive.bucket_counts.extend([3, 2])
        point.negative.offset = 0  # bucket [-2, -1)
        point.negative.bucket_counts.extend([2])
        r = Received().send(data)
        got = {le: r.value("size_bytes_bucket", le=le) for le in ("-1.0", "0.0", "4.0", "8.0", "+Inf")}
        assert got == {"-1.0": 2, "0.0": 3, "4.0": 6, "8.0": 8, "+Inf": 8}

    def test_fine_exponential_scales_are_merged_down(self):
        """Scale 5 (32 buckets per power of two) is served at scale 3: eight, on bounds every coarser scale shares."""
        point = type("P", (), {})()
        point.scale, point.zero_count, point.zero_threshold = 5, 0, 0.0
        positive = type("B", (), {"offset": 32, "bucket_counts": [1] * 32})()  # (2, 4] at scale 5
        point.positive, point.negative = positive, type("B", (), {"offset": 0, "bucket_counts": []})()
        buckets = exponential_buckets(point)
        assert len(buckets) == 8
        assert sum(buckets.values()) == 32
        assert max(buckets) == pytest.approx(4.0)
        assert min(buckets) == pytest.approx(2 ** (9 / 8))

    def test_summaries(self):
        """Quantiles, _sum and _count of the newest point."""
        data, m = metrics()
        summary = m.add(name="rpc.latency", unit="ms")
        point = summary.summary.data_points.add(count=10, sum=55.0, time_unix_nano=T)
        point.quantile_values.add(quantile=0.5, value=4.0)
        point.quantile_values.add(quantile=0.99, value=9.5)
        r = Received().send(data)
        assert r.value("rpc_latency_milliseconds", quantile="0.5") == 4.0
        assert r.value("rpc_latency_milliseconds", quantile="0.99") == 9.5
        assert r.value("rpc_latency_milliseconds_count") == 10
        assert r.types()["rpc_latency_milliseconds"] == "summary"

    def test_points_without_a_recorded_value_are_skipped(self):
        """DATA_POINT_FLAGS_NO_RECORDED_VALUE: the point says nothing."""
        data = sum_metric("c", [({}, 5)])
        data.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].flags = 1
        assert Received().send(data).value("c_total") is None


class TestLabels:
    def test_resource_and_scope_labels(self):
        """job from service.namespace/service.name, instance from service.instance.id, the scope's name and version."""
        data, m = metrics({"service.name": "api", "service.namespace": "shop", "service.instance.id": "i-1"})
        data.resource_metrics[0].scope_metrics[0].scope.version = "1.2"
        m.add(name="g").gauge.data_points.add(as_int=1)
        r = Received().send(data)
        labels = {"job": "shop/api", "instance": "i-1", "otel_scope_name": "agent.sdk", "otel_scope_version": "1.2"}
        assert r.exporter.registry.get_sample_value("g", labels) == 1

    def test_attribute_values_and_colliding_names(self):
        """Non-string values as text (lists as JSON); two keys with one label name have their values joined by ;."""
        r = Received().send(sum_metric("c", [({"a.b": "x", "a_b": "y", "n": 3, "flag": True, "tags": ["p", "q"]}, 1)]))
        assert r.value("c_total", a_b="x;y", n="3", flag="true", tags='["p","q"]') == 1

    def test_const_labels_win(self):
        """const_labels are added to received series too."""
        r = Received({"const_labels": {"env": "prod"}}).send(sum_metric("c", [({"env": "dev"}, 1)]))
        assert r.value("c_total", env="prod") == 1

    def test_identity_attributes_are_dropped_and_their_series_added_up(self):
        """Session and user ids never become labels: delta points add; cumulative ones add their increments."""
        r = Received()
        r.send(sum_metric("tokens", [({"gen_ai.conversation.id": "s1", "model": "m"}, 3),
                                     ({"session.id": "s2", "model": "m"}, 4)], temporality=DELTA))
        assert r.value("tokens_total", model="m") == 7
        r.send(sum_metric("calls", [({"user.id": "u1"}, 10), ({"user.id": "u2"}, 5)]))
        r.send(sum_metric("calls", [({"user.id": "u1"}, 12), ({"user.id": "u2"}, 5)], time_ns=T + 1))
        assert r.value("calls_total") == 17
        r.send(sum_metric("calls", [({"user.id": "u1"}, 1)], time_ns=T + 2, start_ns=T + 1))  # u1 restarted: lower
        assert r.value("calls_total") == 18
        r.send(sum_metric("calls", [({"user.id": "u1"}, 20)], time_ns=T + 3, start_ns=T + 2))  # restarted again: higher
        assert r.value("calls_total") == 38
        assert not any("s1" in s.labels.values() or "u1" in s.labels.values()
                       for m in r.exporter.registry.collect() for s in m.samples)

    def test_cumulative_histograms_with_identity_attributes_add_increments(self):
        """Two sessions' cumulative histograms: one served series, their sum, growing by increments."""
        r = Received()
        for step, (a, b) in enumerate([([1, 0], [0, 1]), ([2, 1], [0, 1])]):
            data, m = metrics()
            hist = m.add(name="lat", unit="s")
            hist.histogram.aggregation_temporality = CUMULATIVE
            for session, counts in (("s1", a), ("s2", b)):
                point = hist.histogram.data_points.add(count=sum(counts), sum=float(sum(counts)), explicit_bounds=[1],
                                                       bucket_counts=counts, time_unix_nano=T + step,
                                                       start_time_unix_nano=T - 1)
                add_attributes(point.attributes, {"gen_ai.conversation.id": session})
            r.send(data)
        assert r.value("lat_seconds_bucket", le="1.0") == 2
        assert r.value("lat_seconds_count") == 4
        assert r.value("lat_seconds_sum") == 4.0


class TestConflicts:
    def test_a_received_metric_named_like_a_derived_one_is_not_served(self, caplog):
        """agent.llm.requests would be served as agent_llm_requests_total, which the rules own: refused, logged once."""
        r = Received()
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                r.send(sum_metric("agent.llm.requests", [({}, 5)]))
        assert r.exporter.registry.get_sample_value("agent_llm_requests_total", {}) is None
        assert sum("agent_llm_requests is not served" in m for m in caplog.messages) == 1

    def test_one_name_of_two_types_keeps_the_first(self):
        """A gauge and a histogram that map to one name: the first type seen is served."""
        data, m = metrics()
        m.add(name="x").gauge.data_points.add(as_int=1)
        h = m.add(name="x")
        h.histogram.data_points.add(count=1, explicit_bounds=[], bucket_counts=[1])
        r = Received().send(data)
        assert r.types()["x"] == "gauge"

    def test_received_series_expire_and_their_family_goes(self):
        """After metric_expiration without points, a received metric disappears from the page."""
        r = Received({"metric_expiration": "1s"}).send(sum_metric("c", [({}, 1)]))
        r.exporter.store.expire(time.monotonic() + 5)
        assert "c_total" not in r.names()
        assert r.exporter.store.received == {}

    def test_the_cap_applies_to_received_metrics(self):
        """max_series_per_metric: further label sets fold into the overflow series."""
        r = Received({"max_series_per_metric": 2})
        r.send(sum_metric("c", [({"k": str(i)}, 1) for i in range(5)], temporality=DELTA))
        assert r.exporter.registry.get_sample_value("c_total", {"otel_metric_overflow": "true"}) == 3
        assert r.metrics.registry.get_sample_value("obs_pipeline_exporter_series_overflow_total", {"exporter": "prometheus"}) == 3


def test_infinite_bounds_are_handled():
    """A huge exponential index gives +Inf, not an OverflowError."""
    point = type("P", (), {})()
    point.scale, point.zero_count, point.zero_threshold = 0, 0, 0.0
    point.positive = type("B", (), {"offset": 5000, "bucket_counts": [1]})()
    point.negative = type("B", (), {"offset": 0, "bucket_counts": []})()
    assert exponential_buckets(point) == {math.inf: 1.0}
