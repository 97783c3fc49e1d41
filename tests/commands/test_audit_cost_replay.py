"""``audit``, ``cost`` and ``replay`` over a trail written by a running pipeline from OpenTelemetry SDK spans.

Two tenants (their own resource ``tenant.id``, so their own files through the path's
``{resource.tenant.id}``), three sessions, turns of an agent with chats and tool calls, one
unpriced model and one secret in a prompt; ``redaction`` and ``cost`` run in the pipeline. The
commands run as a user runs them, ``--config pipeline.yaml``, and what they print is checked
against what was sent.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from tests.e2e.harness import PipelineProcess

pytestmark = pytest.mark.e2e

SECRET = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example access key id
PRICE_IN, PRICE_OUT = 3.0, 15.0  # the override, USD per million tokens
#: tenant -> session -> turns, each turn a list of (model, input tokens, output tokens) and its tool names.
PLAN = {
    "acme": {"s-a1": [([("house-model", 1000, 100)], ["search"]),
                      ([("house-model", 2000, 200), ("mystery-x", 50, 5)], ["shell", "search"])],
             "s-a2": [([("house-model", 400, 40)], [])]},
    "globex": {"s-g1": [([("house-model", 7000, 700)], ["fetch"])]},
}


def _price(tokens_in: int, tokens_out: int) -> float:
    return (tokens_in * PRICE_IN + tokens_out * PRICE_OUT) / 1_000_000


def _send(endpoint: str) -> None:
    for tenant, sessions in PLAN.items():
        provider = TracerProvider(resource=Resource.create({"service.name": "agent", "tenant.id": tenant}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        tracer = provider.get_tracer("agent.runtime")
        for session, turns in sessions.items():
            for number, (calls, tools) in enumerate(turns, 1):
                with tracer.start_as_current_span("invoke_agent helper", attributes={
                        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper",
                        "gen_ai.conversation.id": session, "user.id": f"user-{tenant}"}):
                    for model, tokens_in, tokens_out in calls:
                        prompt = f"turn {number}: my key is {SECRET}" if session == "s-a1" and number == 1 else (
                            f"turn {number}")
                        with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes={
                                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "house",
                                "gen_ai.request.model": model, "gen_ai.usage.input_tokens": tokens_in,
                                "gen_ai.usage.output_tokens": tokens_out,
                                "gen_ai.input.messages": json.dumps(
                                    [{"role": "user", "parts": [{"type": "text", "content": prompt}]}])}):
                            pass
                    for tool in tools:
                        with tracer.start_as_current_span(f"execute_tool {tool}", attributes={
                                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool}):
                            pass
        provider.shutdown()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trail")
    proc = PipelineProcess(workdir)
    proc.config["processors"] = {
        "redaction": {},
        "cost": {"overrides": [{"model": "house-model", "input": PRICE_IN, "output": PRICE_OUT}]},
        "batch": {"timeout": "50ms"},
    }
    proc.config["exporters"]["jsonl_audit"] = {"path": "audit/{resource.tenant.id}/audit.jsonl"}
    pipelines = proc.config["service"]["pipelines"]
    pipelines["traces"]["processors"] = ["redaction", "cost", "batch"]
    pipelines["logs"]["processors"] = ["redaction", "batch"]
    import yaml  # noqa: PLC0415

    proc.config_path.write_text(yaml.safe_dump(proc.config, sort_keys=False))
    proc.start()
    try:
        _send(f"127.0.0.1:{proc.grpc_port}")
    finally:
        assert proc.stop() == 0, proc.stderr()
    return workdir


def cli(workdir, *args):
    result = subprocess.run([sys.executable, "-m", "obs_pipeline", *args, "--config", "pipeline.yaml"],
                            cwd=workdir, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout
    return result.stdout


def json_lines(text):
    return [json.loads(line) for line in text.splitlines()]


class TestFromThePipeline:
    def test_each_tenant_has_its_own_file(self, workdir):
        assert sorted(p.parent.name for p in (workdir / "audit").glob("*/audit.jsonl")) == ["acme", "globex"]

    def test_cost_by_tenant_and_session_equals_what_was_sent(self, workdir):
        by_tenant = json.loads(cli(workdir, "cost", "--by", "tenant", "--json"))
        expected: dict[str, float] = {}
        sessions: dict[str, float] = {}
        for tenant, plan in PLAN.items():
            for session, turns in plan.items():
                spend = sum(_price(i, o) for calls, _ in turns for model, i, o in calls if model == "house-model")
                sessions[session] = spend
                expected[tenant] = expected.get(tenant, 0.0) + spend
        assert {row["key"]: row["cost_usd"] for row in by_tenant["rows"]} == pytest.approx(expected)
        assert by_tenant["total"]["cost_usd"] == pytest.approx(sum(expected.values()))
        assert by_tenant["unpriced"]["calls"] == 1
        assert by_tenant["unpriced"]["keys"] == [{"key": "acme", "calls": 1}]
        by_session = json.loads(cli(workdir, "cost", "--by", "session", "--json"))
        assert {row["key"]: row["cost_usd"] for row in by_session["rows"]} == pytest.approx(sessions)
        assert by_session["total"]["input"] == sum(i for p in PLAN.values() for t in p.values() for c, _ in t
                                                   for _, i, _ in c)

    def test_filters_narrow(self, workdir):
        everything = json_lines(cli(workdir, "audit", "query", "--json"))
        acme = json_lines(cli(workdir, "audit", "query", "--json", "--tenant", "acme"))
        tools = json_lines(cli(workdir, "audit", "query", "--json", "--category", "tool"))
        session = json_lines(cli(workdir, "audit", "query", "--json", "--session", "s-a1"))
        assert 0 < len(acme) < len(everything)
        assert sorted(line["detail"]["tool"] for line in tools) == sorted(
            tool for p in PLAN.values() for t in p.values() for _, tools in t for tool in tools)
        spans_of_s_a1 = sum(1 + len(calls) + len(tools) for calls, tools in PLAN["acme"]["s-a1"])
        assert len([line for line in session if line["category"] != "security"]) == spans_of_s_a1
        assert {line["trace_id"] for line in session} <= {line["trace_id"] for line in acme}

    def test_security_shows_the_redaction_without_the_secret(self, workdir):
        events = json_lines(cli(workdir, "audit", "security", "--json"))
        assert [line["event_type"] for line in events] == ["secret_redacted"]
        assert events[0]["detail"]["count"] >= 1

    def test_replay_lists_turns_in_order_with_their_tool_calls(self, workdir):
        turns = json_lines(cli(workdir, "replay", "show", "s-a1", "--json"))
        assert [turn["turn"] for turn in turns] == [1, 2]
        for turn, (calls, tools) in zip(turns, PLAN["acme"]["s-a1"], strict=True):
            steps = turn["steps"]
            assert steps[0]["line"]["event_type"] == "invoke_agent"
            assert [s["line"]["detail"]["tool"] for s in steps if s["kind"] == "tool"] == tools
            assert [s["line"]["detail"]["model"] for s in steps if s["kind"] == "llm"] == [c[0] for c in calls]
            assert turn["llm_calls"] == len(calls)
        assert turns[0]["cost_usd"] == pytest.approx(_price(1000, 100))
        table = cli(workdir, "replay", "show", "s-a1")
        assert all(word in table for word in ("Turn 1", "Turn 2", "search"))

    def test_replay_list(self, workdir):
        sessions = json_lines(cli(workdir, "replay", "list", "--json"))
        assert sorted(item["session_id"] for item in sessions) == ["s-a1", "s-a2", "s-g1"]
        s_a1 = next(item for item in sessions if item["session_id"] == "s-a1")
        assert (s_a1["llm_calls"], s_a1["tool_calls"], s_a1["unpriced_calls"], s_a1["tenants"]) == (3, 3, 1, ["acme"])


def test_replay_tail_follows_a_session_across_size_rotations(tmp_path):
    """``replay tail`` runs while the pipeline writes and rotates (and compresses) the file: every line once."""
    proc = PipelineProcess(tmp_path)
    proc.config["exporters"]["jsonl_audit"] = {"path": "audit/audit.jsonl",
                                              "rotation": {"max_size": "4KiB", "compress": True}}
    import yaml  # noqa: PLC0415

    proc.config_path.write_text(yaml.safe_dump(proc.config, sort_keys=False))
    proc.start()
    # Ctrl-C must stop it. A shell that starts this suite in the background without job control
    # hands SIGINT down ignored, and an ignored signal stays ignored across exec (a handled one is
    # reset to its default): so it is handled here while the child starts.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        tail = subprocess.Popen([sys.executable, "-m", "obs_pipeline", "replay", "tail", "s-tail", "--json",
                                 "--poll", "0.05", "--config", "pipeline.yaml"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{proc.grpc_port}",
                                                                        insecure=True), schedule_delay_millis=20))
        tracer = provider.get_tracer("agent")
        sent = []
        for turn in range(30):
            with tracer.start_as_current_span("invoke_agent", attributes={
                    "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "s-tail"}) as root:
                with tracer.start_as_current_span("execute_tool", attributes={
                        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": f"tool-{turn}"}) as child:
                    pass
                sent += [child, root]
            provider.force_flush()
            time.sleep(0.07)  # past the batch processor's 50ms: one batch, so about one file, per turn or two
        provider.shutdown()
        assert proc.stop() == 0, proc.stderr()
        assert len(list((tmp_path / "audit").glob("audit-*Z.jsonl*"))) >= 3  # it did rotate
        expected = {f"{s.context.trace_id:032x}:{s.context.span_id:016x}" for s in sent}
        deadline = time.monotonic() + 20
        seen: list[str] = []
        while time.monotonic() < deadline and len(seen) < len(expected):
            line = tail.stdout.readline()
            if line:
                seen.append(json.loads(line)["event_id"])
    finally:
        tail.send_signal(signal.SIGINT)
        try:
            tail.wait(timeout=10)
        finally:
            tail.kill()  # (a no-op once it has exited: never left running)
            proc.kill()
    assert sorted(seen) == sorted(expected)
