"""Head mode: keep or drop each span and log record at once, consistently by trace id.

Stateless and order-free: the decision is a function of the trace id (and the span's
``tracestate``) alone, so every sidecar, every restart and every signal keeps the same traces.

* ``hash_seed: 0``: consistent probability sampling (the collector's proportional mode). R is the
  ``rv`` value of the span's ``ot`` tracestate entry, else the trace id's low 56 bits; T comes from
  the percentage, multiplied with the probability of an arriving ``th`` (a threshold that R does
  not meet is erased: it cannot have been true). A kept span gets ``ot=th:<T>`` in its tracestate,
  other entries kept, so a backend can extrapolate counts (adjusted count = 1 / probability).
* ``hash_seed`` set: the collector's hash_seed mode, bit for bit: FNV-1a of the seed and the trace
  id, 14 bits. A kept span without sampling values gets ``ot=rv:<R>;th:<T>``.

Log records follow their trace id's decision and get a ``sampling.threshold`` attribute when kept;
records without a trace id are kept. At 100 % nothing is dropped or changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from obs_pipeline.batch import Batch
from obs_pipeline.processors.sampling.config import Config
from obs_pipeline.processors.sampling.threshold import (
    MAX_THRESHOLD,
    decode_th,
    encode_th,
    hashed_randomness,
    hashed_threshold,
    probability_to_threshold,
    threshold_to_probability,
    trace_id_randomness,
)
from obs_pipeline.signals import Signal

LOG_THRESHOLD_ATTRIBUTE = "sampling.threshold"
_ZERO_ID = bytes(16)


class HeadSampler:
    """The head-mode function over a batch: ``sampler(batch) -> batch | None``.

    Args:
        cfg: the processor's config (head mode).
    """

    def __init__(self, cfg: Config) -> None:
        self.keep_all = cfg.sampling_percentage >= 100
        self._precision = cfg.sampling_precision
        self._probability = cfg.sampling_percentage / 100
        self._seed = cfg.hash_seed
        self._fail_closed = cfg.fail_closed
        if cfg.hash_seed:
            self._threshold = hashed_threshold(cfg.sampling_percentage)
        elif cfg.sampling_percentage <= 0:
            self._threshold = MAX_THRESHOLD
        else:
            self._threshold = probability_to_threshold(self._probability, self._precision)
        self._th = encode_th(self._threshold) if self._threshold < MAX_THRESHOLD else ""

    def __call__(self, batch: Batch) -> Batch | None:
        """The batch with the dropped spans or records removed (None: all of them)."""
        if self.keep_all:
            return batch
        if batch.signal is Signal.LOGS:
            return batch if self._logs(batch) else None
        return batch if self._traces(batch) else None

    # -- traces -------------------------------------------------------------------------------

    def _traces(self, batch: Batch) -> bool:
        states: dict[tuple[str, int], str | None] = {}  # (tracestate, R) -> new tracestate or None: drop

        def keep(span: Any) -> bool:
            decided = self._span(span.trace_id, span.trace_state, states)
            if decided is not None and decided != span.trace_state:
                span.trace_state = decided
            return decided is not None

        message: Any = batch.mutable()
        return _retain(message.resource_spans, "scope_spans", "spans", keep)

    def _span(self, trace_id: bytes, tracestate: str, states: dict[tuple[str, int], str | None]) -> str | None:
        """The span's new tracestate when kept, None when dropped."""
        explicit = None
        if tracestate:
            explicit = _ot_values(tracestate)
        if self._seed:
            randomness = hashed_randomness(trace_id, self._seed)
        elif explicit is not None and explicit[0] is not None:
            randomness = explicit[0]
        elif trace_id and trace_id != _ZERO_ID:
            randomness = trace_id_randomness(trace_id)
        else:
            return None if self._fail_closed else tracestate  # no randomness: kept unchanged
        key = (tracestate, randomness)
        if key in states:
            return states[key]
        result = self._decide(tracestate, randomness, explicit)
        states[key] = result
        return result

    def _decide(self, tracestate: str, randomness: int, explicit: tuple[int | None, int | None] | None) -> str | None:
        rv, th = explicit if explicit is not None else (None, None)
        if self._seed:
            if randomness < self._threshold:
                return None
            if rv is not None or th is not None:
                return tracestate  # someone else's consistent sampling: leave its values alone
            return _with_ot(tracestate, {"rv": f"{randomness:014x}", "th": self._th})
        threshold = self._threshold
        if th is not None and randomness >= th:
            # An arriving threshold: its probability times ours (proportional).
            product = threshold_to_probability(th) * self._probability
            threshold = probability_to_threshold(product, self._precision) if product >= 1 / MAX_THRESHOLD else MAX_THRESHOLD
        if randomness < threshold:
            return None
        return _with_ot(tracestate, {"th": encode_th(threshold)})  # an inconsistent arriving th is replaced

    # -- logs ---------------------------------------------------------------------------------

    def _logs(self, batch: Batch) -> bool:
        reading: Any = batch.message
        if not any(_has_trace(r.trace_id) for rl in reading.resource_logs for sl in rl.scope_logs for r in sl.log_records):
            return True  # nothing to decide: the batch goes on untouched, wire bytes and all

        def keep(record: Any) -> bool:
            trace_id = record.trace_id
            if not _has_trace(trace_id):
                return True  # no trace: kept
            randomness = hashed_randomness(trace_id, self._seed) if self._seed else trace_id_randomness(trace_id)
            if randomness < self._threshold:
                return False
            _set_string(record.attributes, LOG_THRESHOLD_ATTRIBUTE, self._th)
            return True

        message: Any = batch.mutable()
        return _retain(message.resource_logs, "scope_logs", "log_records", keep)


def _retain(groups: Any, scopes: str, items: str, keep: Callable[[Any], bool]) -> bool:
    """Delete in place every span or record ``keep`` refuses, then the scopes and resources left empty.

    ``keep`` may change those it keeps. Returns whether anything is left. Backwards by index:
    deleting from the end keeps the indexes still to visit valid.
    """
    for group_index in range(len(groups) - 1, -1, -1):
        group_scopes = getattr(groups[group_index], scopes)
        for scope_index in range(len(group_scopes) - 1, -1, -1):
            entries = getattr(group_scopes[scope_index], items)
            for index in range(len(entries) - 1, -1, -1):
                if not keep(entries[index]):
                    del entries[index]
            if not entries:
                del group_scopes[scope_index]
        if not group_scopes:
            del groups[group_index]
    return len(groups) > 0


def _has_trace(trace_id: bytes) -> bool:
    return bool(trace_id) and trace_id != _ZERO_ID


def _ot_values(tracestate: str) -> tuple[int | None, int | None] | None:
    """(rv, th) of the ``ot`` entry of a W3C tracestate; None when it has no ``ot`` entry."""
    for member in tracestate.split(","):
        key, sep, value = member.strip().partition("=")
        if sep and key == "ot":
            rv = th = None
            for part in value.split(";"):
                sub, _, text = part.partition(":")
                if sub == "rv" and len(text) == 14:
                    try:
                        rv = int(text, 16)
                    except ValueError:
                        rv = None
                elif sub == "th":
                    th = decode_th(text)
            return rv, th
    return None


def _with_ot(tracestate: str, values: dict[str, str]) -> str:
    """``tracestate`` with ``values`` set in its ``ot`` entry, which moves first (W3C: updated keys lead)."""
    others: list[str] = []
    parts: list[tuple[str, str]] = []
    for member in tracestate.split(",") if tracestate else ():
        member = member.strip()  # noqa: PLW2901 - normalised in place
        if not member:
            continue
        key, _, value = member.partition("=")
        if key == "ot":
            parts = [(sub, text) for sub, _, text in (p.partition(":") for p in value.split(";") if p)]
        else:
            others.append(member)
    current = dict(parts)
    current.update(values)
    ordered = [k for k in ("rv", "th") if k in current] + [k for k, _ in parts if k not in ("rv", "th")]
    ot = "ot=" + ";".join(f"{k}:{current[k]}" for k in ordered)
    return ",".join([ot, *others])


def _set_string(attributes: Any, key: str, value: str) -> None:
    """Set a string attribute in a repeated KeyValue field, replacing an existing one."""
    for kv in attributes:
        if kv.key == key:
            kv.value.string_value = value
            return
    kv = attributes.add()
    kv.key = key
    kv.value.string_value = value


__all__ = ["LOG_THRESHOLD_ATTRIBUTE", "HeadSampler"]
