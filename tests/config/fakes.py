"""Test doubles for the component registry: real schema files, trivial code.

The config layer only needs a factory's type, kind, signals, schema, ``parse``, ``check`` and
``endpoints``. These fakes keep the built-in schema files (so the schema pass is the real one)
and replace the code, so the config tests do not depend on the component modules being done.
``prom`` and ``webhook`` stand in for third-party components with their own schema files.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from obs_pipeline import components
from obs_pipeline.components import (
    ExporterFactory,
    Factory,
    Kind,
    ProcessorFactory,
    Produces,
    ReceiverFactory,
    ReceiverTraits,
)
from obs_pipeline.errors import Problem
from obs_pipeline.secret import Secret
from obs_pipeline.signals import Signal

SCHEMAS = Path(__file__).parent / "testdata" / "schemas"
REAL_BUILTIN = dict(components._BUILTIN)
ALL = frozenset(Signal)


def _parse(raw: dict[str, Any]) -> dict[str, Any]:
    return dict(raw)


def _create(settings: Any, *_args: Any) -> Any:
    """``validate`` builds (never starts) every component; a fake builds a do-nothing one."""
    return components.Component(settings)


def _otlp_endpoints(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    protocols = cfg.get("protocols", {})
    return [(f"protocols.{p}.endpoint", protocols[p]["endpoint"]) for p in ("grpc", "http") if p in protocols]


def _batch_check(cfg: dict[str, Any]) -> list[Problem]:
    if cfg["send_batch_max_size"] and cfg["send_batch_max_size"] < cfg["send_batch_size"]:
        return [Problem("send_batch_max_size", "must be 0 or at least send_batch_size")]
    return []


_FACTORY_CLASS: dict[Kind, type[ReceiverFactory[Any] | ProcessorFactory[Any] | ExporterFactory[Any]]] = {
    Kind.RECEIVER: ReceiverFactory, Kind.PROCESSOR: ProcessorFactory, Kind.EXPORTER: ExporterFactory,
}


def _factory(kind: Kind, type_: str, schema: str, signals: frozenset[Signal] = ALL, **extra: Any) -> Factory:
    """A fake of ``kind``; ``extra`` holds the factory class's own fields (``traits=`` for a receiver)."""
    return _FACTORY_CLASS[kind](
        type=type_, signals=signals, schema=schema, description=f"The fake {type_} {kind.singular}.",
        parse=_parse, create=_create, **extra,
    )


OTLP = _factory(Kind.RECEIVER, "otlp", "receivers/otlp.schema.json", endpoints=_otlp_endpoints)


def _stdin_produces(cfg: dict[str, Any]) -> Produces:
    """As the real stdin: text lines are logs; json lines are logs unless they are OTLP/JSON."""
    if cfg["format"] == "text":
        return Produces(frozenset({Signal.LOGS}), because="with format text")
    if cfg["format"] == "json":
        return Produces(ALL, because="with format json", usual=frozenset({Signal.LOGS}), usual_input="plain JSON lines")
    return Produces(ALL)


STDIN = _factory(
    Kind.RECEIVER, "stdin", "receivers/stdin.schema.json",
    traits=ReceiverTraits(finite=True, exclusive_use="reads standard input", produces=_stdin_produces),
)
BATCH = _factory(Kind.PROCESSOR, "batch", "processors/batch.schema.json", check=_batch_check)
JSONL_AUDIT = _factory(Kind.EXPORTER, "jsonl_audit", "exporters/jsonl_audit.schema.json")
DEBUG = _factory(Kind.EXPORTER, "debug", "exporters/debug.schema.json")
PROMETHEUS = _factory(Kind.EXPORTER, "prometheus", "exporters/prometheus.schema.json",
                      endpoints=lambda cfg: [("endpoint", cfg["endpoint"])])
OTLP_EXPORTER = _factory(Kind.EXPORTER, "otlp", "exporters/otlp.schema.json")
OTLP_GRPC = _factory(Kind.EXPORTER, "otlp_grpc", "exporters/otlp_grpc.schema.json")
OTLP_HTTP = _factory(Kind.EXPORTER, "otlp_http", "exporters/otlp_http.schema.json")
OTLPHTTP = _factory(Kind.EXPORTER, "otlphttp", "exporters/otlp_http.schema.json")
LOGFIRE = _factory(Kind.EXPORTER, "logfire", "exporters/logfire.schema.json")
FILE_TAIL = _factory(Kind.RECEIVER, "file_tail", "receivers/file_tail.schema.json")
REDACTION = _factory(Kind.PROCESSOR, "redaction", "processors/redaction.schema.json")
COST = _factory(Kind.PROCESSOR, "cost", "processors/cost.schema.json", signals=frozenset({Signal.TRACES}))
BUDGET = _factory(Kind.PROCESSOR, "budget", "processors/budget.schema.json", signals=frozenset({Signal.TRACES}))
SAMPLING = _factory(Kind.PROCESSOR, "sampling", "processors/sampling.schema.json", signals=frozenset({Signal.TRACES, Signal.LOGS}))
PROM = _factory(
    Kind.EXPORTER, "prom", str(SCHEMAS / "prom.schema.json"), frozenset({Signal.TRACES, Signal.METRICS}),
    endpoints=lambda cfg: [("endpoint", cfg["endpoint"])],
)

PARSED: list[dict[str, Any]] = []  # every body WEBHOOK's parse was given, for the Secret tests


def _webhook_parse(raw: dict[str, Any]) -> dict[str, Any]:
    """Deliberately careless: its error messages repeat the URL and the token, even revealed."""
    PARSED.append(raw)
    if not raw["url"].startswith(("http://", "https://")):
        raise ValueError(f"{raw['url']!r} is not an http(s) URL (token {raw['token']!r})")
    return dict(raw)


def _webhook_check(cfg: dict[str, Any]) -> list[Problem]:
    """Careless on purpose: a component that reveals a secret in a message (the loader must still hide it)."""
    token = cfg["token"]
    if isinstance(token, Secret) and token.reveal().startswith("bad-"):
        return [Problem("token", f"token {token.reveal()} is revoked; token {token} rejected")]
    return []


WEBHOOK = ExporterFactory(
    type="webhook", signals=ALL, schema=str(SCHEMAS / "webhook.schema.json"),
    description="The fake webhook exporter.", parse=_webhook_parse, check=_webhook_check, create=_create,
)

BUILTIN_FAKES = {
    (Kind.RECEIVER, "otlp"): "OTLP",
    (Kind.RECEIVER, "stdin"): "STDIN",
    (Kind.RECEIVER, "file_tail"): "FILE_TAIL",
    (Kind.PROCESSOR, "batch"): "BATCH",
    (Kind.PROCESSOR, "redaction"): "REDACTION",
    (Kind.PROCESSOR, "cost"): "COST",
    (Kind.PROCESSOR, "budget"): "BUDGET",
    (Kind.PROCESSOR, "sampling"): "SAMPLING",
    (Kind.EXPORTER, "jsonl_audit"): "JSONL_AUDIT",
    (Kind.EXPORTER, "debug"): "DEBUG",
    (Kind.EXPORTER, "prometheus"): "PROMETHEUS",
    (Kind.EXPORTER, "otlp"): "OTLP_EXPORTER",
    (Kind.EXPORTER, "otlp_grpc"): "OTLP_GRPC",
    (Kind.EXPORTER, "otlp_http"): "OTLP_HTTP",
    (Kind.EXPORTER, "otlphttp"): "OTLPHTTP",
    (Kind.EXPORTER, "logfire"): "LOGFIRE",
}
EXTRA_FAKES = {(Kind.EXPORTER, "prom"): "PROM", (Kind.EXPORTER, "webhook"): "WEBHOOK"}


def registry(*, real: bool) -> dict[tuple[Kind, str], str]:
    """A ``components._BUILTIN`` table plus the test-only types.

    ``real=False``: every built-in is a fake. ``real=True``: every built-in whose module imports is
    the real one; the others (still being written) stay fakes.
    """
    fake = {key: f"{__name__}:{attr}" for key, attr in BUILTIN_FAKES.items()}
    table = {key: (target if real and _importable(target) else fake[key]) for key, target in REAL_BUILTIN.items()}
    table.update({key: f"{__name__}:{attr}" for key, attr in EXTRA_FAKES.items()})
    return table


def _importable(target: str) -> bool:
    module, _, attr = target.partition(":")
    try:
        return isinstance(getattr(importlib.import_module(module), attr), tuple(_FACTORY_CLASS.values()))
    except Exception:
        return False


def real_components_missing() -> list[str]:
    """The built-in types whose module cannot be imported yet (empty when all are done)."""
    return [f"{kind.singular} {type_}" for (kind, type_), target in REAL_BUILTIN.items() if not _importable(target)]
