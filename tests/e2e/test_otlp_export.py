"""One obs-pipeline sending to another over OTLP: two ``obs-pipeline run`` processes on loopback.

The *source* runs ``otlp -> batch -> otlp exporter``; the *destination* is the shipped shape,
``otlp -> batch -> jsonl_audit``. Spans posted to the source must come out of the destination's
audit file exactly once, whatever the protocol and compression, and also when the destination
only comes up after the source has accepted them.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obs_pipeline.components import SCHEMA_DIR
from obs_pipeline.config.schemas import read_schema
from obs_pipeline.signals import Signal
from tests.e2e.harness import PipelineProcess, metric_value
from tests.enginekit import traces
from tests.test_components import _one_item
from tests.tlskit import make_pki

pytestmark = pytest.mark.e2e

FAST_RETRY = {"initial_interval": "100ms", "max_interval": "500ms", "max_elapsed_time": "60s"}


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Any]:
    """Make PipelineProcess objects, each in its own directory under tmp_path; kill leftovers at the end."""
    made: list[PipelineProcess] = []

    def make(name: str) -> PipelineProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        proc = PipelineProcess(workdir)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.kill()


def send_to(proc: PipelineProcess, data: Any, path: str = "/v1/traces") -> None:
    """POST an OTLP/HTTP protobuf request to ``proc``'s receiver; it must be accepted."""
    request = urllib.request.Request(f"http://127.0.0.1:{proc.http_port}{path}", data=data.SerializeToString(),
                                     headers={"Content-Type": "application/x-protobuf"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def use_exporter(source: PipelineProcess, name: str, body: dict[str, Any], *, signals: tuple[str, ...] = ("traces",),
                 also: tuple[str, ...] = ()) -> None:
    """Make ``source`` send its pipelines' data to exporter ``name`` (plus ``also``)."""
    source.config["exporters"] = {name: {"retry_on_failure": FAST_RETRY, **body}}
    if also:
        source.config["exporters"]["jsonl_audit"] = {"path": str(source.audit_path)}
    source.config["service"]["pipelines"] = {
        signal: {"receivers": ["otlp"], "processors": ["batch"], "exporters": [name, *also]} for signal in signals}
    source.config_path.write_text(json.dumps(source.config))


def event_ids(n: int, start: int = 0) -> set[str]:
    return {f"{'01' * 16}:{i:016x}" for i in range(start, start + n)}


def wait_for_lines(proc: PipelineProcess, n: int, within: float = 30.0) -> list[dict[str, Any]]:
    end = time.monotonic() + within
    while time.monotonic() < end:
        lines = proc.audit_lines()
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{len(proc.audit_lines())} of {n} audit lines arrived:\n{proc.stderr()}")


def wait_for_metric(proc: PipelineProcess, name: str, value: float, within: float = 20.0, **labels: str) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if metric_value(proc.metrics(), name, **labels) >= value:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} never reached {value}:\n{proc.stderr()}")


def exporter_body(destination: PipelineProcess, protocol: str, compression: str) -> dict[str, Any]:
    if protocol == "grpc":
        return {"endpoint": f"127.0.0.1:{destination.grpc_port}", "tls": {"insecure": True}, "compression": compression}
    return {"protocol": "http/protobuf", "endpoint": f"http://127.0.0.1:{destination.http_port}",
            "compression": compression}


class TestPipelineToPipeline:
    @pytest.mark.parametrize("compression", ["gzip", "none"])
    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_spans_arrive_once_in_the_destinations_audit_file(self, processes, protocol, compression):
        destination = processes("destination").start()
        source = processes("source")
        use_exporter(source, "otlp/destination", exporter_body(destination, protocol, compression))
        source.start()
        send_to(source, traces(30, start=1))
        send_to(source, traces(20, start=31))
        lines = wait_for_lines(destination, 50)
        time.sleep(0.3)
        lines = destination.audit_lines()
        assert len(lines) == 50
        assert {line["event_id"] for line in lines} == event_ids(50, start=1)
        wait_for_metric(source, "obs_pipeline_exporter_sent_items_total", 50, exporter="otlp/destination",
                        signal="traces")
        transport = "grpc" if protocol == "grpc" else "http"
        assert metric_value(destination.metrics(), "obs_pipeline_receiver_accepted_items_total", transport=transport,
                            signal="traces") == 50
        assert source.stop() == 0, source.stderr()
        assert destination.stop() == 0, destination.stderr()
        assert "Traceback" not in source.stderr() + destination.stderr()

    @pytest.mark.parametrize("type_", ["otlp_grpc", "otlphttp"])
    def test_the_collectors_type_names_work_the_same(self, processes, type_):
        destination = processes("destination").start()
        source = processes("source")
        body = ({"endpoint": f"127.0.0.1:{destination.grpc_port}", "tls": {"insecure": True}} if type_ == "otlp_grpc"
                else {"endpoint": f"http://127.0.0.1:{destination.http_port}"})
        use_exporter(source, type_, body, signals=("traces", "logs"))
        source.start()
        send_to(source, traces(5, start=1))
        send_to(source, _one_item(Signal.LOGS), "/v1/logs")
        lines = wait_for_lines(destination, 6)
        assert len(lines) == 6
        assert {line["event_id"] for line in lines} >= event_ids(5, start=1)
        assert source.stop() == 0
        assert destination.stop() == 0

    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_destination_down_at_start_then_up_gets_everything(self, processes, protocol):
        """The source accepts while nothing listens, retries, and delivers all of it once the destination starts."""
        destination = processes("destination")  # ports chosen, not started
        source = processes("source")
        use_exporter(source, "otlp", exporter_body(destination, protocol, "gzip"))
        source.start()
        for i in range(4):
            send_to(source, traces(10, start=1 + 10 * i))
        wait_for_metric(source, "obs_pipeline_exporter_queue_size", 40, exporter="otlp")
        end = time.monotonic() + 20
        while source.stderr().count("export failed, retrying") < 3:  # several failed attempts
            assert time.monotonic() < end, source.stderr()
            time.sleep(0.05)
        assert metric_value(source.metrics(), "obs_pipeline_exporter_sent_items_total", exporter="otlp") == 0
        destination.start()
        lines = wait_for_lines(destination, 40)
        time.sleep(0.3)
        assert {line["event_id"] for line in destination.audit_lines()} == event_ids(40, start=1)
        assert len(lines) == 40
        wait_for_metric(source, "obs_pipeline_exporter_sent_items_total", 40, exporter="otlp", signal="traces")
        page = source.metrics()
        assert sum(metric_value(page, "obs_pipeline_exporter_failed_items_total", exporter="otlp", reason=reason)
                   for reason in ("permanent_error", "retries_exhausted", "shutdown", "rejected")) == 0
        assert source.stop() == 0, source.stderr()
        assert destination.stop() == 0

    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_a_permanent_refusal_is_dropped_at_once_and_counted(self, processes, protocol):
        """A destination without a logs pipeline answers UNIMPLEMENTED / 404: no retries, counted, exit 3."""
        destination = processes("destination")
        destination.config["service"]["pipelines"].pop("logs")
        destination.config_path.write_text(json.dumps(destination.config))
        destination.start()
        source = processes("source")
        use_exporter(source, "otlp", exporter_body(destination, protocol, "gzip"), signals=("logs",))
        source.start()
        send_to(source, _one_item(Signal.LOGS), "/v1/logs")
        wait_for_metric(source, "obs_pipeline_exporter_failed_items_total", 1, exporter="otlp", signal="logs",
                        reason="permanent_error")
        time.sleep(0.6)  # retries would come every 100-500ms
        err = source.stderr()
        assert "export failed, retrying" not in err
        assert err.count("gave up on 1 logs (failed: permanent_error)") == 1
        assert source.stop() == 3, "an item accepted and not delivered is a loss"
        assert destination.stop() == 0


class TestTlsToTheReceiver:
    def test_mutual_tls_and_a_bearer_token_to_an_obs_pipeline_receiver(self, processes, tmp_path, monkeypatch):
        """gRPC and HTTP with mutual TLS to the otlp receiver's own tls, the token in a header from the environment."""
        grpc_props = read_schema(SCHEMA_DIR / "receivers" / "otlp.schema.json")["properties"]["protocols"][
            "properties"]["grpc"]["properties"]
        if "tls" not in grpc_props or "auth" not in grpc_props:
            pytest.skip("the otlp receiver has no tls or auth block (TLS is also tested against local servers in "
                        "tests/exporters/test_otlp.py)")
        token = "e2e-token-0123456789abcdef"
        monkeypatch.setenv("OTLP_E2E_TOKEN", token)
        pki = make_pki(tmp_path / "pki")
        destination = processes("destination")
        server_tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                      "client_ca_file": str(pki.ca_cert)}
        for protocol in ("grpc", "http"):
            destination.config["receivers"]["otlp"]["protocols"][protocol]["tls"] = server_tls
            destination.config["receivers"]["otlp"]["protocols"][protocol]["auth"] = {
                "bearer_token": "${env:OTLP_E2E_TOKEN}"}
        destination.config_path.write_text(json.dumps(destination.config))
        destination.start()
        client_tls = {"ca_file": str(pki.ca_cert), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
        headers = {"Authorization": "Bearer ${env:OTLP_E2E_TOKEN}"}
        source = processes("source")
        source.config["exporters"] = {
            "otlp/grpc": {"endpoint": f"localhost:{destination.grpc_port}", "tls": client_tls, "headers": headers},
            "otlp/http": {"protocol": "http/protobuf", "endpoint": f"https://localhost:{destination.http_port}",
                          "tls": client_tls, "headers": headers},
        }
        source.config["service"]["pipelines"] = {
            "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["otlp/grpc", "otlp/http"]}}
        source.config_path.write_text(json.dumps(source.config))
        source.start()
        send_to(source, traces(5, start=1))
        lines = wait_for_lines(destination, 10)
        assert len(lines) == 10, "5 spans over each of the two exporters"
        page = destination.metrics()
        assert metric_value(page, "obs_pipeline_receiver_accepted_items_total", transport="grpc") == 5
        assert metric_value(page, "obs_pipeline_receiver_accepted_items_total", transport="http") == 5
        assert source.stop() == 0
        assert destination.stop() == 0
        assert token not in source.stderr() + destination.stderr()


class TestLogfireDisabled:
    def test_an_unset_token_logs_one_line_and_the_pipeline_runs_on(self, processes, monkeypatch):
        """logfire with ${env:LOGFIRE_TOKEN:-} unset next to jsonl_audit: the audit gets everything, logfire nothing."""
        monkeypatch.delenv("LOGFIRE_TOKEN", raising=False)
        assert "LOGFIRE_TOKEN" not in os.environ
        source = processes("source")
        use_exporter(source, "logfire", {"token": "${env:LOGFIRE_TOKEN:-}"}, also=("jsonl_audit",))
        source.start()
        send_to(source, traces(8, start=1))
        assert len(wait_for_lines(source, 8)) == 8
        wait_for_metric(source, "obs_pipeline_exporter_failed_items_total", 8, exporter="logfire", signal="traces",
                        reason="disabled")
        page = source.metrics()
        assert metric_value(page, "obs_pipeline_exporter_sent_items_total", exporter="logfire", signal="traces") == 0
        assert metric_value(page, "obs_pipeline_exporter_sent_items_total", exporter="jsonl_audit", signal="traces") == 8
        code = source.stop()
        start = source.stderr().split("obs-pipeline started", 1)[0]
        about_logfire = [line for line in start.splitlines() if "logfire" in line]
        assert len(about_logfire) == 1, start
        assert about_logfire[0].endswith(" warning logfire: disabled, token not set")
        assert code == 0, "a destination the user switched off is no loss: a CI run without the token passes"
        assert "the destination rejected" not in source.stderr(), "disabled is said once, not per batch"
