"""``sampling``: keep the traces that matter, by trace id (head mode) or by policy (tail mode).

* ``head`` (:mod:`.head`): each span and log record is kept or dropped at once, consistently by
  trace id, as the collector's ``probabilistic_sampler``; a function processor.
* ``tail`` (:mod:`.tail`): whole traces are buffered for ``decision_wait`` and kept when a policy
  says so (:mod:`.policies`: errors, latency, cost, attributes, span count, a share), as the
  collector's ``tail_sampling``, plus a ``cost`` policy; a buffering processor.

Dropped items are counted as ``obs_pipeline_processor_dropped_items_total{reason="sampled"}``,
a deliberate drop, never a loss. Never sample a pipeline that feeds the audit log: ``validate``
warns when a pipeline with a ``jsonl_audit`` exporter or a ``budget`` processor samples.
"""

from __future__ import annotations

from obs_pipeline.components import Consumer, Processor, ProcessorFactory, ProcessorSettings
from obs_pipeline.processors._helper import FunctionProcessor
from obs_pipeline.processors.sampling.config import HEAD, TAIL, Config, PolicySpec, check
from obs_pipeline.processors.sampling.head import HeadSampler
from obs_pipeline.signals import Signal

TYPE = "sampling"


def _create(settings: ProcessorSettings, cfg: Config, next_consumer: Consumer) -> Processor:
    if cfg.mode == TAIL:
        from obs_pipeline.processors.sampling.tail import TailSampler  # noqa: PLC0415 - tail mode only

        return TailSampler(settings, cfg, next_consumer)
    return FunctionProcessor(settings, next_consumer, HeadSampler(cfg), drop_reason="sampled")


FACTORY = ProcessorFactory[Config](
    type=TYPE,
    signals=frozenset({Signal.TRACES, Signal.LOGS}),
    schema="processors/sampling.schema.json",
    description="Keeps a consistent share of traces by trace id (head mode), or whole traces chosen by policies "
                "such as errors, latency and cost after buffering them (tail mode).",
    parse=Config.parse,
    create=_create,
    check=check,
    mutates_data=True,
)

__all__ = ["FACTORY", "HEAD", "TAIL", "TYPE", "Config", "PolicySpec", "check"]
