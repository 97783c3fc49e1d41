"""The second validation pass: what JSON Schema cannot say about a pipeline.yaml.

References exist and have the right kind, no component appears twice in one pipeline list,
every component supports its pipeline's signal, no two listeners share a port, at most one ID
of an exclusive type (stdin) is used, every receiver's configured output reaches one of its
pipelines, a pipeline that samples while it audits or enforces budgets is reported (a warning),
and components that no pipeline uses are reported (as warnings). Like the schema pass
it collects everything; it skips values the schema pass already rejected, so one mistake gives
one message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from obs_pipeline.components import ComponentID, ExporterFactory, Factory, Kind, Produces, ReceiverFactory
from obs_pipeline.config.document import Findings, JsonPath, format_path
from obs_pipeline.errors import Problem
from obs_pipeline.signals import Signal
from obs_pipeline.units import parse_endpoint

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_LIST_KIND = {"receivers": Kind.RECEIVER, "processors": Kind.PROCESSOR, "exporters": Kind.EXPORTER}


@dataclass
class Declared:
    """A component key under receivers/processors/exporters with a valid ID."""

    id: ComponentID
    key: str  # as written: "otlp/backend"
    kind: Kind
    factory: Factory | None  # None: unknown type or its module failed to load
    config: Any = None  # the parsed config; None when it did not parse
    parsed: bool = False

    @property
    def path(self) -> JsonPath:
        """Where it is defined in the document."""
        return (self.kind.value, self.key)


@dataclass(frozen=True)
class Listener:
    """A host:port something will bind, with where it was configured."""

    path: JsonPath
    host: str
    port: int
    text: str
    written: bool  # False: a default, not in the file


@dataclass(frozen=True)
class Reference:
    """One pipeline list entry that names a configured component."""

    path: JsonPath  # ("service", "pipelines", "logs/a", "receivers", 0)
    pipeline: str
    signal: Signal
    component: Declared
    supported: bool  # False: the component does not support the pipeline's signal (reported)


def check_graph(findings: Findings, declared: Mapping[Kind, Mapping[ComponentID, Declared]]) -> None:
    """Run every graph check over the document in ``findings``."""
    references: list[Reference] = []
    pipelines = findings.doc.get(("service", "pipelines"))
    if isinstance(pipelines, dict):
        for pipeline_id, spec in pipelines.items():
            signal = Signal.__members__.get(pipeline_id.partition("/")[0].upper())
            if signal is None or not isinstance(spec, dict):
                continue
            for list_name, kind in _LIST_KIND.items():
                ids = spec.get(list_name)
                if isinstance(ids, list):
                    path = ("service", "pipelines", pipeline_id, list_name)
                    references += _check_list(findings, path, ids, kind, signal, declared=declared)
    used = {(ref.component.kind, ref.component.id) for ref in references}
    _check_exclusive(findings, references)
    _check_outputs(findings, references)
    _check_sampling(findings, references)
    _check_file_loops(findings, references)
    _check_unused(findings, declared, pipelines)
    _check_ports(findings, [c for k, components in declared.items() for cid, c in components.items() if (k, cid) in used])


def _check_unused(findings: Findings, declared: Mapping[Kind, Mapping[ComponentID, Declared]], pipelines: Any) -> None:
    """Warn about every component that no pipeline names, whatever errors the file has elsewhere.

    A component counts as used when any pipeline names it, even a pipeline or list the other
    checks rejected (``trace:`` for ``traces:``, a list of the wrong shape), and when a list of
    another kind names it while no component of that kind has the ID (``receivers: [batch]``,
    reported with "there is a processor"): the fix of that error uses it, so warning about it
    too would be a second message for one mistake; so would it for a component whose type is
    unknown. Without a readable ``service.pipelines`` nothing can be said, and nothing is.
    """
    if not isinstance(pipelines, dict):
        return
    named: dict[Kind, set[ComponentID]] = {kind: set() for kind in Kind}
    for spec in pipelines.values():
        for list_name, kind in _LIST_KIND.items():
            # a pipeline that is not a mapping: whatever it names might be meant for any of its lists
            for text in _strings(spec.get(list_name) if isinstance(spec, dict) else spec):
                try:
                    cid = ComponentID.parse(text)
                except ValueError:
                    continue
                for_kinds = [kind] if cid in declared[kind] else list(Kind)
                for each in for_kinds:
                    named[each].add(cid)
    for kind, components in declared.items():
        for cid, component in components.items():
            if cid not in named[kind] and component.factory is not None:  # an unknown type is reported already
                findings.add(
                    component.path, f"{kind.singular} {_q(cid)} is not used by any pipeline, so it will not run",
                    key=True, severity="warning",
                )


def _strings(node: Any) -> list[str]:
    """Every string inside ``node``: a list's IDs, or those of a value of the wrong shape."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def _q(cid: ComponentID | str) -> str:
    return f'"{cid}"'


def _check_list(
    findings: Findings, path: JsonPath, ids: list[Any], kind: Kind, signal: Signal,
    *, declared: Mapping[Kind, Mapping[ComponentID, Declared]],
) -> list[Reference]:
    """Check one ``receivers``/``processors``/``exporters`` list of one pipeline; its valid references."""
    references: list[Reference] = []
    first_index: dict[ComponentID, int] = {}
    for index, text in enumerate(ids):
        item_path = (*path, index)
        if not isinstance(text, str) or findings.has_error_at_or_above(item_path):
            continue
        try:
            cid = ComponentID.parse(text)
        except ValueError:
            findings.add(item_path, f'"{text}" is not a component ID (type or type/name)')
            continue
        if cid in first_index:
            findings.add(item_path, f"references {kind.singular} {_q(cid)} more than once (first at {list(path)[-1]}[{first_index[cid]}])")
            continue
        first_index[cid] = index
        component = declared[kind].get(cid)
        if component is None and not isinstance(findings.doc.get((kind.value,)), dict):
            continue  # the whole section is missing or not a mapping: the schema pass said so
        if component is None:
            elsewhere = [k.singular for k in Kind if k is not kind and cid in declared[k]]
            article = "an" if elsewhere and elsewhere[0][0] in "aeiou" else "a"
            hint = f" (there is {article} {elsewhere[0]} {_q(cid)})" if elsewhere else ""
            findings.add(item_path, f"references {kind.singular} {_q(cid)} which is not configured{hint}")
            continue
        factory = component.factory
        supported = factory is None or signal in factory.signals
        if factory is not None and not supported:
            listed = ", ".join(s.value for s in Signal if s in factory.signals) or "no signal"
            findings.add(item_path, f"{kind.singular} {_q(cid)} does not support {signal.value} (it supports {listed})")
        references.append(Reference(item_path, str(path[2]), signal, component, supported))
    return references


def _check_exclusive(findings: Findings, references: list[Reference]) -> None:
    """Report every reference to a second ID of an exclusive type (two stdin receivers).

    The first ID used, in file order, keeps the resource; each place that lists another one is
    reported, since each of them has to change.
    """
    owner: dict[tuple[Kind, str], Reference] = {}
    for ref in references:
        component, factory = ref.component, ref.component.factory
        if not isinstance(factory, ReceiverFactory) or not factory.traits.exclusive:
            continue
        first = owner.setdefault((component.kind, factory.type), ref)
        if first.component.id == component.id:
            continue
        kind = component.kind.singular
        use = factory.traits.exclusive_use
        findings.add(
            ref.path,
            f"{kind} {_q(component.id)} {use}, and so does {kind} {_q(first.component.id)} (in pipeline {first.pipeline}); "
            f"use one {factory.type} {kind} in several pipelines instead",
        )


def _signal_list(signals: frozenset[Signal], word: str) -> str:
    """``logs``, ``logs and metrics``, ``logs, metrics and traces`` (``word`` joins the last two)."""
    names = [s.value for s in Signal if s in signals]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


def _check_outputs(findings: Findings, references: list[Reference]) -> None:
    """Report a receiver whose configured output none of its pipelines takes (``ReceiverTraits.produces``).

    Reported once, at its first reference: adding it to one suitable pipeline fixes it.
    """
    by_receiver: dict[ComponentID, list[Reference]] = {}
    for ref in references:
        if ref.component.kind is Kind.RECEIVER and ref.supported and not findings.has_error_at_or_above(ref.path):
            by_receiver.setdefault(ref.component.id, []).append(ref)
    for cid, refs in by_receiver.items():
        component = refs[0].component
        factory = component.factory
        if not isinstance(factory, ReceiverFactory) or factory.traits.produces is None or not component.parsed:
            continue
        try:
            result = factory.traits.produces(component.config)
        except Exception as exc:
            what = f"{component.kind.singular} type {factory.type}"
            findings.add(component.path, f"internal error in the {what} telling what it produces ({type(exc).__name__})", key=True)
            continue
        output = result if isinstance(result, Produces) else Produces(frozenset(result))
        taken = frozenset(ref.signal for ref in refs)
        who = f"{component.kind.singular} {_q(cid)}" + (f" {output.because}" if output.because else "")
        if not output.signals & taken:
            findings.add(
                refs[0].path,
                f"{who} produces only {_signal_list(output.signals, 'and')}; "
                f"add it to a {_signal_list(output.signals, 'or')} pipeline",
            )
        elif output.usual and not output.usual & taken:
            usual = _signal_list(output.usual, "and")
            findings.add(
                refs[0].path,
                f"{who} produces {usual} from {output.usual_input}, but none of its pipelines takes {usual}, "
                f"so {output.usual_input} will be skipped; add it to a {_signal_list(output.usual, 'or')} pipeline "
                "to keep them",
                severity="warning",
            )


def _position(ref: Reference) -> int:
    """Where ``ref`` stands in its pipeline list (``processors: [a, b]``: b is 1)."""
    index = ref.path[-1]
    return index if isinstance(index, int) else -1


def _check_sampling(findings: Findings, references: list[Reference]) -> None:
    """Warn where sampling hides data from the audit log or a budget, or a budget comes before any cost.

    The audit log and budgets must see every span: sampling belongs in a separate pipeline to the
    backend (``traces/backend``), fed by the same receiver. A budget ahead of the sampler sees
    everything and is fine; exporters always come after every processor. A budget meters
    ``gen_ai.usage.cost.amount``, which the ``cost`` processor writes: without one before it, only
    spans that carry their own cost are counted. Tail mode takes traces only.
    """
    by_pipeline: dict[str, list[Reference]] = {}
    for ref in references:
        by_pipeline.setdefault(ref.pipeline, []).append(ref)
    for pipeline, refs in by_pipeline.items():
        processors = [ref for ref in refs if ref.component.kind is Kind.PROCESSOR and ref.component.factory is not None]
        by_type = {t: [ref for ref in processors if ref.component.factory is not None and ref.component.factory.type == t]
                   for t in ("sampling", "budget", "cost")}
        audits = [ref for ref in refs if ref.component.kind is Kind.EXPORTER and ref.component.factory is not None
                  and ref.component.factory.type == "jsonl_audit"]
        items = "span" if pipeline.partition("/")[0] == "traces" else "record"
        for ref in by_type["sampling"]:
            hidden = [f"exporter {_q(a.component.id)}" for a in audits[:1]]
            hidden += [f"processor {_q(b.component.id)}" for b in by_type["budget"] if _position(b) > _position(ref)]
            if hidden:
                findings.add(
                    ref.path,
                    f"pipeline {pipeline} samples with {_q(ref.component.id)} ahead of {' and '.join(hidden)}, which must "
                    f"see every {items}: put sampling in a separate pipeline to the backend "
                    f"({pipeline.partition('/')[0]}/backend)",
                    severity="warning",
                )
            if ref.signal is not Signal.TRACES and getattr(ref.component.config, "mode", None) == "tail":
                findings.add(ref.path, f"processor {_q(ref.component.id)} is in mode tail, which samples traces only; "
                                       f"use mode head in a {ref.signal.value} pipeline")
        for ref in by_type["budget"]:
            if not any(_position(c) < _position(ref) for c in by_type["cost"]):
                findings.add(
                    ref.path,
                    f"processor {_q(ref.component.id)} meters gen_ai.usage.cost.amount, but no cost processor comes "
                    f"before it in pipeline {pipeline}: only spans that carry their own cost are counted "
                    "(put cost ahead of it)",
                    severity="warning",
                )


def _declared(findings: Findings, component: Declared, call: Any) -> Any:
    """``call(config)`` for a parsed component, or None (an internal error is reported, not raised)."""
    if component.factory is None or not component.parsed:
        return None
    try:
        return call(component.config)
    except Exception as exc:
        findings.add(component.path, f"internal error listing the files it reads or writes ({type(exc).__name__})",
                     key=True)
        return None


def _check_file_loops(findings: Findings, references: list[Reference]) -> None:
    """A pipeline that reads files its own exporters write feeds every line back to itself, for ever."""
    by_pipeline: dict[str, list[Reference]] = {}
    for ref in references:
        by_pipeline.setdefault(ref.pipeline, []).append(ref)
    for pipeline, refs in by_pipeline.items():
        written = [(ref, path) for ref in refs if isinstance(ref.component.factory, ExporterFactory)
                   for path in _declared(findings, ref.component, ref.component.factory.writes) or ()]
        for reader in refs:
            factory = reader.component.factory
            if not isinstance(factory, ReceiverFactory):
                continue
            for writer, path in written:
                key = _declared(findings, reader.component, lambda cfg, f=factory, p=path: f.reads(cfg, p))
                if key is not None:
                    findings.add((*reader.component.path, *key.split(".")),
                                 f"matches {path}, which {_q(writer.component.id)} writes in pipeline {pipeline}: "
                                 "every line would be read back and written again, for ever; add it to exclude")
                    break


def _listeners(findings: Findings, components: list[Declared]) -> list[Listener]:
    """Every endpoint that will be bound: used components' ``endpoints`` plus our own telemetry."""
    found: list[Listener] = []
    candidates: list[tuple[JsonPath, str]] = []
    for component in components:
        if component.factory is None or not component.parsed:
            continue
        try:
            pairs = component.factory.endpoints(component.config)
        except Exception as exc:
            findings.add(component.path, f"internal error listing its endpoints ({type(exc).__name__})", key=True)
            continue
        for relative, text in pairs:
            candidates.append((resolve_relative(findings, component.path, relative), text))
    for name in ("metrics", "health"):
        block = findings.doc.get(("service", "telemetry", name))
        if isinstance(block, dict) and block.get("enabled") is True and isinstance(block.get("endpoint"), str):
            candidates.append((("service", "telemetry", name, "endpoint"), block["endpoint"]))
    for path, text in candidates:
        if findings.has_error_at_or_above(path):
            continue
        try:
            host, port = parse_endpoint(text)
        except ValueError as exc:  # the schema's pattern allows ports above 65535
            findings.add(path, str(exc))
            continue
        written = findings.doc.exact_position(path) is not None
        found.append(Listener(path, host.lower(), port, text, written))
    return found


def _clash(a: Listener, b: Listener) -> bool:
    if a.port != b.port or a.port == 0:
        return False
    if a.host == b.host or a.host in WILDCARD_HOSTS or b.host in WILDCARD_HOSTS:
        return True
    return "localhost" in (a.host, b.host) and a.host in LOOPBACK_NAMES and b.host in LOOPBACK_NAMES


def _check_ports(findings: Findings, components: list[Declared]) -> None:
    """Report every listener whose port an earlier one already takes (defaults count as earlier)."""
    listeners = _listeners(findings, components)
    listeners.sort(key=lambda lst: (lst.written, findings.doc.position(lst.path)))
    for i, later in enumerate(listeners):
        for earlier in listeners[:i]:
            if _clash(earlier, later):
                first = f"{format_path(earlier.path)} ({earlier.text}{'' if earlier.written else ', its default'})"
                clash = f"port {later.port} is already used by {first}"
                findings.add(later.path, clash if later.written else f"the default {later.text} clashes: {clash}")
                break


def resolve_relative(findings: Findings, base: JsonPath, relative: str) -> JsonPath:
    """A component-relative dotted path (``protocols.grpc.endpoint``, ``rules[2].pattern``) as a JsonPath.

    Keys may themselves contain dots (header names), so each step takes the longest key of the
    current mapping that the rest of the text starts with.
    """
    path: list[str | int] = list(base)
    node = findings.doc.get(base)
    rest = relative
    while rest:
        if rest.startswith("["):
            index_text, _, rest = rest[1:].partition("]")
            index = int(index_text) if index_text.isdigit() else 0
            path.append(index)
            node = node[index] if isinstance(node, list) and index < len(node) else None
            rest = rest.removeprefix(".")
            continue
        keys = sorted((k for k in node if isinstance(k, str)), key=len, reverse=True) if isinstance(node, dict) else []
        key = next((k for k in keys if rest == k or rest.startswith((f"{k}.", f"{k}["))), None)
        if key is None:
            key = rest.split(".", 1)[0].split("[", 1)[0]
        path.append(key)
        node = node.get(key) if isinstance(node, dict) else None
        rest = rest[len(key):].removeprefix(".")
    return tuple(path)


def relative_problem(findings: Findings, base: JsonPath, problem: Problem) -> None:
    """Record a component's own problem (path relative to its body) at its place in the file."""
    path = resolve_relative(findings, base, problem.path) if problem.path else base
    findings.add(path, problem.message, key=not problem.path, severity=problem.severity)
