"""Load a pipeline.yaml: read, parse, substitute, schema pass, defaults, components, graph pass.

Every step collects problems instead of stopping at the first, and later steps skip what earlier
ones rejected, so a file with three mistakes gets exactly three messages. ``validate`` and
``run`` both come through :func:`check_config`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from obs_pipeline.components import SCHEMA_DIR, ComponentID, Kind, get_factory, known_types
from obs_pipeline.config.document import Document, Findings, JsonPath, format_path, is_under
from obs_pipeline.config.envsubst import EnvResult, substitute
from obs_pipeline.config.graph import Declared, check_graph, relative_problem
from obs_pipeline.config.messages import MessageContext, describe
from obs_pipeline.config.model import ComponentConfig, PipelineConfig, PipelineSpec, TelemetryConfig
from obs_pipeline.config.schemas import SchemaError, compose_schema
from obs_pipeline.config.schemawalk import SchemaWalker, json_type
from obs_pipeline.config.yamlload import load_document
from obs_pipeline.delivery import DeliverySettings
from obs_pipeline.errors import ConfigError, Problem
from obs_pipeline.signals import Signal
from obs_pipeline.units import parse_duration

MIN_HIDDEN = 4  # shorter environment values ("1", "on") are too common to scrub from messages
LOG_LEVEL_ALIASES = {"warn": "warning"}  # collector configs write WARN (zap's name); Python's is warning


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> PipelineConfig:
    """Load and fully validate a pipeline.yaml.

    Args:
        path: the config file.
        environ: variables for ``${env:...}`` (default: ``os.environ``).

    Returns:
        The typed config; its ``warnings`` hold problems that do not stop a run.

    Raises:
        ConfigError: carrying every problem found (errors and warnings), in file order.
    """
    config, problems = check_config(path, environ)
    if config is None:
        raise ConfigError(problems)
    return config


def check_config(path: str | Path, environ: Mapping[str, str] | None = None) -> tuple[PipelineConfig | None, list[Problem]]:
    """Like :func:`load_config`, but return ``(config or None, every problem)`` instead of raising."""
    source = Path(path)
    file = str(path)
    text, problem = _read(source, file)
    if text is None:
        return None, [problem] if problem else []
    doc, parse_problems = load_document(text, file)
    if doc is None:
        return None, [p for _, p in parse_problems]
    findings = Findings(doc)
    for problem_path, parse_problem in parse_problems:
        findings.problems.append(parse_problem)
        findings.error_paths.add(problem_path)
    env = substitute(findings, os.environ if environ is None else environ)
    declared, selection = _declare(findings)
    try:
        bundle = compose_schema(selection)
    except SchemaError as exc:
        findings.add((), f"internal error: {exc}")
        return None, findings.sorted()
    walker = SchemaWalker(bundle)
    walker.normalize_nulls(doc.data)
    _keep_strings(doc, env, walker)
    context = MessageContext(walker, env.sources, known_types)
    for error in Draft202012Validator(bundle).iter_errors(doc.data):
        for error_path, message, at_key in describe(error, context):
            if not any(is_under(error_path, failed) for failed in env.failed):
                findings.add(error_path, message, key=at_key)
    walker.fill_defaults(doc.data)
    for components in declared.values():
        for component in components.values():
            if component.factory is not None and not findings.has_error_under(component.path):
                first = len(findings.problems)
                _parse_component(findings, component, walker)
                own = _env_values(env, context, within=component.path)
                findings.problems[first:] = [_scrub(p, own) for p in findings.problems[first:]]
    check_graph(findings, declared)
    shutdown_timeout = _check_service(findings)
    secrets = _secret_values(doc, context)
    findings.problems = [_scrub(p, {**secrets, **_env_values(env, context, at=p.path)}) for p in findings.problems]
    if findings.has_errors or shutdown_timeout is None:
        return None, findings.sorted()
    warnings = tuple(p for p in findings.sorted() if p.severity != "error")  # warnings and notes
    return _build(source, doc, declared, shutdown_timeout, warnings), list(warnings)


def component_body(kind: Kind, type_: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One component's body as ``load_config`` hands it to ``parse``: checked, defaults filled, secrets wrapped.

    For tests and embedding, which build a component without a whole pipeline.yaml: call
    ``factory.parse(component_body(kind, type_, {...}))`` instead of passing a partial dict.

    Raises:
        ConfigError: the body does not pass the component's schema (paths relative to the body).
        KeyError: no such type of that kind.
    """
    factory = get_factory(kind, type_)
    walker = SchemaWalker(compose_schema({kind: {type_: factory.schema_path}}))
    path: JsonPath = (kind.value, type_)
    data: dict[str, Any] = {kind.value: {type_: None if body is None else copy.deepcopy(dict(body))}}
    walker.normalize_nulls(data)
    context = MessageContext(walker, {}, known_types)
    problems = [
        Problem(format_path(error_path[len(path):]), message)
        for error in Draft202012Validator(walker.root).iter_errors(data)
        for error_path, message, _ in describe(error, context)
        if is_under(error_path, path)
    ]
    if problems:
        raise ConfigError(problems)
    walker.fill_defaults(data)
    filled: dict[str, Any] = walker.with_secrets(data[kind.value][type_], walker.at(path))
    return filled


def _read(source: Path, file: str) -> tuple[str | None, Problem | None]:
    """The file's text, or a problem saying plainly why it cannot be read."""
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        return None, Problem("", "no such file", file)
    except IsADirectoryError:
        return None, Problem("", "is a directory, not a config file", file)
    except PermissionError:
        return None, Problem("", "permission denied", file)
    except OSError as exc:
        return None, Problem("", f"cannot read the file: {exc.strerror or type(exc).__name__}", file)
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, Problem("", f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", file, line, column)


def _declare(findings: Findings) -> tuple[dict[Kind, dict[ComponentID, Declared]], dict[Kind, dict[str, Path | None]]]:
    """The components the file defines, and the schema file of each type it uses."""
    declared: dict[Kind, dict[ComponentID, Declared]] = {kind: {} for kind in Kind}
    selection: dict[Kind, dict[str, Path | None]] = {kind: {} for kind in Kind}
    for kind in Kind:
        section = findings.doc.get((kind.value,))
        if not isinstance(section, dict):
            continue
        known = known_types(kind)
        for key in section:
            try:
                cid = ComponentID.parse(key)
            except ValueError:
                continue  # the schema pass reports it
            factory = None
            if cid.type in known:
                try:
                    factory = get_factory(kind, cid.type)
                    selection[kind][cid.type] = factory.schema_path
                except Exception as exc:
                    findings.add((kind.value, key), f"cannot load {kind.singular} type \"{cid.type}\": {type(exc).__name__}: {exc}", key=True)
                    fallback = SCHEMA_DIR / kind.value / f"{cid.type}.schema.json"
                    selection[kind].setdefault(cid.type, fallback if fallback.is_file() else None)
            declared[kind][cid] = Declared(cid, key, kind, factory)
    return declared, selection


def _keep_strings(doc: Document, env: EnvResult, walker: SchemaWalker) -> None:
    """A string-typed field keeps a re-typed expansion as text (``0123`` stays ``"0123"``)."""
    for path, expanded in env.expanded.items():
        value = doc.get(path)
        if isinstance(value, str):
            continue
        schema = walker.at(path)
        allowed = walker.types(schema) if schema is not None else set()
        found = json_type(value)
        fits = found in allowed or (found == "integer" and "number" in allowed)
        if allowed and not fits and "string" in allowed:
            parent = doc.get(path[:-1])
            parent[path[-1]] = expanded


def _env_values(
    env: EnvResult, context: MessageContext, *, within: JsonPath | None = None, at: str | None = None,
) -> dict[str, str]:
    """Expanded environment values a message may repeat -> the reference to show instead.

    Only values whose place is related to the message's are hidden, so an unrelated message that
    happens to contain the same text (``jsonl_audit`` while ``${env:AP}`` is ``audit``) is left
    alone. ``within``: values inside a component's body, for that component's own messages
    (``parse``/``check`` may quote any of its values). ``at``: values at a problem's path or at
    one of its ancestors (a message about a value that came, whole or in part, from the
    environment). The schema pass already shows such values through
    :meth:`MessageContext.show`; this covers messages written elsewhere.
    """
    hidden: dict[str, str] = {}
    for path, expanded in env.expanded.items():
        related = (within is not None and is_under(path, within)) or (at is not None and _is_at_or_under(at, path))
        if related and len(expanded) >= MIN_HIDDEN:
            hidden[expanded] = context.show(path, expanded)
    return hidden


def _is_at_or_under(problem_path: str, value_path: JsonPath) -> bool:
    """Whether a problem's (formatted) path is ``value_path`` or lies inside it."""
    prefix = format_path(value_path)
    return problem_path == prefix or problem_path.startswith((f"{prefix}.", f"{prefix}["))


def _secret_values(doc: Document, context: MessageContext) -> dict[str, str]:
    """Secret text, hidden from every message wherever it appears.

    Components get secrets as :class:`~obs_pipeline.secret.Secret`, which never prints; this
    is the last line of defence for one that called ``reveal()`` in a message, and for values
    that only a secret-sounding key (``token``, ``headers``) marks.
    """
    hidden: dict[str, str] = {}

    def walk(node: Any, path: JsonPath) -> None:
        if isinstance(node, dict | list):
            for key, value in node.items() if isinstance(node, dict) else enumerate(node):
                walk(value, (*path, key))
        elif isinstance(node, str) and len(node) >= MIN_HIDDEN and context.is_secret(path):
            hidden.setdefault(node, "<secret>")

    walk(doc.data, ())
    return hidden


def _scrub(problem: Problem, hidden: Mapping[str, str]) -> Problem:
    """``problem`` with every hidden text in its message replaced, longest first."""
    message = problem.message
    for text in sorted(hidden, key=len, reverse=True):
        message = message.replace(text, hidden[text])
    return problem if message == problem.message else dataclasses.replace(problem, message=message)


def _parse_component(findings: Findings, component: Declared, walker: SchemaWalker) -> None:
    """``factory.parse`` (secrets wrapped) and ``factory.check``, with their problems placed in the file."""
    factory = component.factory
    assert factory is not None
    body = walker.with_secrets(findings.doc.get(component.path), walker.at(component.path))
    what = f"{component.kind.singular} type {factory.type}"
    try:
        config = factory.parse(body)
    except ConfigError as exc:
        for problem in exc.problems:
            relative_problem(findings, component.path, problem)
        return
    except ValueError as exc:
        findings.add(component.path, str(exc), key=True)
        return
    except Exception as exc:
        findings.add(component.path, f"internal error in the {what} reading its config ({type(exc).__name__})", key=True)
        return
    component.config, component.parsed = config, True
    try:
        extra: list[Any] = list(factory.check(config))
    except Exception as exc:
        findings.add(component.path, f"internal error in the {what} checking its config ({type(exc).__name__})", key=True)
        return
    for item in extra:
        problems = item.problems if isinstance(item, ConfigError) else [item]
        for problem in problems:
            if isinstance(problem, Problem):
                relative_problem(findings, component.path, problem)
            else:
                findings.add(component.path, str(problem), key=True)


def _check_service(findings: Findings) -> float | None:
    """Checks on the filled-in service section that the schema cannot make; the shutdown timeout."""
    data_dir = findings.doc.get(("service", "data_dir"))
    if isinstance(data_dir, str) and Path(data_dir).exists() and not Path(data_dir).is_dir():
        findings.add(("service", "data_dir"), f'"{data_dir}" exists and is not a directory')
    path: JsonPath = ("service", "shutdown_timeout")
    timeout = findings.doc.get(path)
    if not isinstance(timeout, str) or findings.has_error_at_or_above(path):
        return None
    try:
        return parse_duration(timeout)
    except ValueError as exc:
        findings.add(path, str(exc))
        return None


def log_level(written: str) -> str:
    """A level the schema accepted (``INFO``, ``Warn``), as :class:`TelemetryConfig` holds it (``info``, ``warning``)."""
    level = written.lower()
    return LOG_LEVEL_ALIASES.get(level, level)


def _build(
    source: Path, doc: Document, declared: dict[Kind, dict[ComponentID, Declared]], shutdown_timeout: float,
    warnings: tuple[Problem, ...],
) -> PipelineConfig:
    """The typed config; only called when both passes found no errors."""
    service = doc.data["service"]
    components: dict[Kind, dict[ComponentID, ComponentConfig]] = {}
    for kind, entries in declared.items():
        components[kind] = {}
        for cid, entry in entries.items():
            assert entry.factory is not None
            delivery = DeliverySettings.from_body(doc.data[kind.value][entry.key]) if kind is Kind.EXPORTER else None
            components[kind][cid] = ComponentConfig(cid, kind, entry.factory, entry.config, delivery)
    pipelines = tuple(
        PipelineSpec(
            id=pipeline_id,
            signal=Signal(pipeline_id.partition("/")[0]),
            receivers=tuple(ComponentID.parse(t) for t in spec["receivers"]),
            processors=tuple(ComponentID.parse(t) for t in spec["processors"]),
            exporters=tuple(ComponentID.parse(t) for t in spec["exporters"]),
        )
        for pipeline_id, spec in service["pipelines"].items()
    )
    telemetry = service["telemetry"]
    return PipelineConfig(
        source=source,
        receivers=components[Kind.RECEIVER],
        processors=components[Kind.PROCESSOR],
        exporters=components[Kind.EXPORTER],
        pipelines=pipelines,
        telemetry=TelemetryConfig(
            log_level=log_level(telemetry["logs"]["level"]),
            log_format=telemetry["logs"]["format"],
            metrics_endpoint=telemetry["metrics"]["endpoint"] if telemetry["metrics"]["enabled"] else None,
            health_endpoint=telemetry["health"]["endpoint"] if telemetry["health"]["enabled"] else None,
        ),
        data_dir=Path(service["data_dir"]),
        shutdown_timeout=shutdown_timeout,
        warnings=warnings,
    )
