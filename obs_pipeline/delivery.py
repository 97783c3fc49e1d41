"""The delivery settings every exporter shares: ``timeout``, ``retry_on_failure``, ``sending_queue``.

After the collector's ``exporterhelper`` settings, with the same key names. The config layer
builds one :class:`DeliverySettings` per exporter from its validated body (the schema,
``schemas/common.schema.json``, holds the defaults); the engine's queue runs by it. Durations are
seconds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from obs_pipeline.units import parse_duration, parse_size

__all__ = ["DeliverySettings", "QueueSettings", "RetrySettings"]

#: Used only when a component is built without the config layer (tests, embedding).
DEFAULT_QUEUE_SIZE = 20_000
DEFAULT_MAX_SIZE = 1 << 30  # the schema's 1GiB

Storage = Literal["memory", "disk"]


@dataclass(frozen=True, kw_only=True)
class QueueSettings:
    """``sending_queue``."""

    enabled: bool = True  # queue batches and export them in the background
    queue_size: int = DEFAULT_QUEUE_SIZE  # capacity in items (storage disk: items kept in memory)
    num_consumers: int = 1  # batches exported concurrently
    storage: Storage = "memory"  # disk: under service.data_dir, persisted before the sender is acknowledged
    max_size: int = DEFAULT_MAX_SIZE  # storage disk: bytes on disk

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> QueueSettings:
        """From the validated block, defaults filled in."""
        return cls(enabled=body["enabled"], queue_size=body["queue_size"], num_consumers=body["num_consumers"],
                   storage=body["storage"], max_size=parse_size(body["max_size"]))

    @property
    def on_disk(self) -> bool:
        """Whether batches go to the disk queue (a queue that is enabled and stored on disk)."""
        return self.enabled and self.storage == "disk"


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    """``retry_on_failure``."""

    enabled: bool = True  # retry retryable failures
    initial_interval: float = 5.0  # first wait
    max_interval: float = 30.0  # upper bound of a wait
    max_elapsed_time: float = 300.0  # give up after retrying this long; 0: until shutdown
    multiplier: float = 1.5  # growth of the wait after each retry
    randomization_factor: float = 0.5  # jitter: interval * (1 +- factor)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RetrySettings:
        """From the validated block, defaults filled in."""
        return cls(
            enabled=body["enabled"],
            initial_interval=parse_duration(body["initial_interval"]),
            max_interval=parse_duration(body["max_interval"]),
            max_elapsed_time=parse_duration(body["max_elapsed_time"]),
            multiplier=float(body["multiplier"]),
            randomization_factor=float(body["randomization_factor"]),
        )

    def next_delay(self, interval: float) -> float:
        """A jittered wait around ``interval``: interval * (1 +- randomization_factor)."""
        spread = interval * self.randomization_factor
        return interval - spread + random.random() * 2 * spread  # noqa: S311 - jitter, not crypto


@dataclass(frozen=True, kw_only=True)
class DeliverySettings:
    """How the engine delivers to one exporter.

    ``timeout`` bounds one export attempt (None: unbounded); a timed-out attempt is retryable.
    """

    timeout: float | None = None
    retry: RetrySettings = field(default_factory=RetrySettings)
    queue: QueueSettings = field(default_factory=QueueSettings)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> DeliverySettings:
        """From an exporter's validated body; blocks its schema does not offer keep their defaults."""
        timeout = body.get("timeout")
        retry = body.get("retry_on_failure")
        queue = body.get("sending_queue")
        seconds = parse_duration(timeout) if isinstance(timeout, str) else 0.0
        return cls(
            timeout=seconds if seconds > 0 else None,  # "0s": no bound on an attempt
            retry=RetrySettings.from_body(retry) if isinstance(retry, Mapping) else RetrySettings(),
            queue=QueueSettings.from_body(queue) if isinstance(queue, Mapping) else QueueSettings(),
        )
