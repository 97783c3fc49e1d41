"""Telemetry content never reaches obs-pipeline's own log lines, whatever happens to the request."""

from __future__ import annotations

import gzip
import urllib.request

import grpc
import pytest

from tests.e2e.harness import PipelineProcess
from tests.enginekit import traces

pytestmark = pytest.mark.e2e

SECRET = "sk-proj-T0pS3cr3tV4lu3DoNotLeak"


def _post(url: str, body: bytes, content_type: str, encoding: str | None = None) -> int:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


class TestNoLeaksInOwnLogs:
    def test_secret_values_in_good_and_bad_requests_never_appear_in_stderr(self, pipeline_factory):
        """At debug level, with JSON logs: valid, malformed and oversize requests carrying a secret leave no trace of it."""
        pipe: PipelineProcess = pipeline_factory()
        pipe.config["service"]["telemetry"]["logs"] = {"level": "debug", "format": "json"}
        pipe.config["receivers"]["otlp"]["protocols"]["http"]["max_request_body_size"] = "64KiB"
        import yaml  # noqa: PLC0415

        pipe.config_path.write_text(yaml.safe_dump(pipe.config))
        pipe.start()
        data = traces(2)
        kv = data.resource_spans[0].scope_spans[0].spans[0].attributes.add()
        kv.key, kv.value.string_value = "api_key", SECRET
        good = data.SerializeToString()
        base = f"http://127.0.0.1:{pipe.http_port}/v1/traces"
        assert _post(base, good, "application/x-protobuf") == 200
        assert _post(base, b'{"resourceSpans": [{"x": "' + SECRET.encode() + b'"', "application/json") == 400
        assert _post(base, good[:-7] + SECRET.encode(), "application/x-protobuf") == 400
        assert _post(base, b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + SECRET.encode() + b'"}]}]}]}',
                     "application/json") == 400
        bomb = gzip.compress(SECRET.encode() * 20_000)
        assert _post(base, bomb, "application/x-protobuf", "gzip") == 413
        channel = grpc.insecure_channel(f"127.0.0.1:{pipe.grpc_port}")
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        export(good, timeout=5)
        with pytest.raises(grpc.RpcError):
            export(SECRET.encode() * 3, timeout=5)
        channel.close()
        assert pipe.stop() == 0
        err = pipe.stderr()
        assert '"level": "debug"' in err or '"level":"debug"' in err, "debug logging was on"
        assert SECRET not in err
        assert SECRET[:12] not in err
