"""``logfire``: traces, metrics and logs to Pydantic Logfire, over OTLP/HTTP with protobuf bodies.

Logfire ingests plain OTLP: ``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs`` at
``https://logfire-us.pydantic.dev`` or ``https://logfire-eu.pydantic.dev``, authenticated by the
header ``Authorization: <write token>`` (the raw token, no ``Bearer``). The region is read from
the token as the Logfire SDK does (``pylf_v1_eu_...`` is EU, ``pylf_v1_us_...`` US, a token
without a known region US); ``endpoint`` overrides the base URL. The transport is the ``otlp``
exporter's (:mod:`obs_pipeline.exporters.otlp.http_transport`), so statuses, retries and partial
successes behave exactly as there.

An empty token (``token: ${env:LOGFIRE_TOKEN:-}`` with the variable unset) disables the
exporter instead of failing the pipeline: it logs ``disabled, token not set`` once at start and
the pipeline runs on. The batches its pipelines hand it are not sent anywhere, and are not
counted as sent: each is reported as a partial success with ``reason="disabled"``, so
``obs_pipeline_exporter_sent_items_total{exporter="logfire"}`` stays 0 and
``obs_pipeline_exporter_failed_items_total{exporter="logfire",reason="disabled"}`` counts every
item that did not go to Logfire, with no warning per batch and no effect on the exit code
(switching Logfire off was the user's choice, not a loss).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from obs_pipeline.batch import Batch
from obs_pipeline.components import Exporter, ExporterFactory, Host, PartialSuccess, Settings
from obs_pipeline.errors import PermanentError, Problem
from obs_pipeline.exporters.otlp import OtlpSender, origin
from obs_pipeline.exporters.otlp.config import HTTP, TlsConfig, check_url, signal_urls
from obs_pipeline.exporters.otlp.config import Config as OtlpConfig
from obs_pipeline.secret import Secret
from obs_pipeline.signals import Signal

__all__ = ["DISABLED", "FACTORY", "REGIONS", "TYPE", "Config", "LogfireExporter", "base_url", "check", "parse",
           "region_of"]

TYPE = "logfire"
REGIONS = {"us": "https://logfire-us.pydantic.dev", "eu": "https://logfire-eu.pydantic.dev"}
DEFAULT_REGION = "us"  # tokens made before regions existed carry none: they are US tokens
DEFAULT_COMPRESSION = "gzip"
#: ``pylf_v<N>_<region>_...``: the Logfire SDK's token shape (``logfire/_internal/auth.py``).
_TOKEN = re.compile(r"^pylf_v[0-9]+_(?P<region>[a-z]+)_")
DISABLED = "disabled, token not set"


@dataclass(frozen=True, kw_only=True)
class Config:
    """The ``logfire`` exporter's settings (``schemas/exporters/logfire.schema.json``).

    ``timeout``, ``retry_on_failure`` and ``sending_queue`` are the engine's.
    """

    token: Secret  # the project's write token; empty: the exporter is disabled
    endpoint: str = ""  # base URL instead of the token's region; empty: from the token
    compression: str = DEFAULT_COMPRESSION  # gzip | none


def parse(raw: dict[str, Any]) -> Config:
    """The validated body (the token wrapped in Secret) -> Config."""
    token = raw["token"]
    return Config(token=token if isinstance(token, Secret) else Secret(str(token)), endpoint=raw["endpoint"],
                  compression=raw["compression"])


def check(cfg: Config) -> list[Problem]:
    """``endpoint`` must be an http(s) URL; a token must be one header value."""
    problems = check_url("endpoint", cfg.endpoint) if cfg.endpoint else []
    text = cfg.token.reveal()
    # An empty token is not even a warning: the exporter's one line at start says it (what
    # ``${env:LOGFIRE_TOKEN:-}`` asks for is "send to Logfire when there is a token"), and run would repeat a warning.
    if "\n" in text or "\r" in text:
        problems.append(Problem("token", "contains a line break (newline or carriage return)"))
    elif text and not (text.isascii() and text.isprintable()):
        # It goes into an HTTP header, which only carries printable ASCII; anything else would fail
        # at every send and be retried until the retries ran out.
        problems.append(Problem("token", "must be printable ASCII (it is sent as an HTTP header value)"))
    return problems


def region_of(token: str) -> str:
    """The region a token belongs to: ``eu`` or ``us`` (unknown or absent: ``us``)."""
    match = _TOKEN.match(token)
    region = match.group("region") if match else DEFAULT_REGION
    return region if region in REGIONS else DEFAULT_REGION


def base_url(cfg: Config) -> str:
    """Where the exporter sends: ``endpoint`` when set, else the token's region."""
    return cfg.endpoint or REGIONS[region_of(cfg.token.reveal())]


def _otlp_config(cfg: Config) -> OtlpConfig:
    """The ``otlp`` settings Logfire takes: HTTP/protobuf, the token as ``Authorization``, the system's CAs."""
    return OtlpConfig(protocol=HTTP, endpoint=base_url(cfg), headers={"Authorization": cfg.token},
                      compression=cfg.compression, tls=TlsConfig())


class LogfireExporter(Exporter):
    """The ``otlp`` exporter's HTTP transport pointed at Logfire; disabled when there is no token."""

    def __init__(self, settings: Settings, cfg: Config) -> None:
        super().__init__(settings)
        self.cfg = cfg
        self.disabled = not cfg.token
        self.otlp = _otlp_config(cfg)
        #: The URL of each signal's requests.
        self.urls = signal_urls(self.otlp)
        self.sender: OtlpSender | None = None

    async def on_start(self, host: Host) -> None:
        """Open the session, or log once that the exporter is disabled."""
        if self.disabled:
            self.log.warning(DISABLED)
            return
        from obs_pipeline.exporters.otlp.http_transport import HttpTransport  # noqa: PLC0415 - aiohttp only when used

        otlp = self.otlp
        transport = HttpTransport(urls=self.urls, headers=otlp.headers, compression=otlp.compression, tls=otlp.tls,
                                  what=self.id)
        self.sender = OtlpSender(transport, self.id, self.log)
        await transport.open()
        source = "the endpoint setting" if self.cfg.endpoint else f"region {region_of(self.cfg.token.reveal())}, from the token"
        self.log.info("exporting to %s (%s)", origin(otlp.endpoint), source)

    async def export(self, batch: Batch) -> PartialSuccess | None:
        """Send ``batch`` to Logfire; when disabled, report all of it rejected (nothing is counted as sent).

        Raises:
            RetryableError: a retryable status or a connection failure.
            PermanentError: any other status (401 for a wrong token).
        """
        if self.disabled:
            return PartialSuccess(batch.items, DISABLED, reason="disabled")
        if self.sender is None:
            raise PermanentError(f"{self.id}: not started")
        return await self.sender.export(batch)

    async def on_shutdown(self) -> None:
        """Close the session."""
        sender, self.sender = self.sender, None
        if sender is not None:
            await sender.close()


FACTORY = ExporterFactory[Config](
    type=TYPE,
    signals=frozenset(Signal),
    schema="exporters/logfire.schema.json",
    description="Sends traces, metrics and logs to Pydantic Logfire over OTLP/HTTP, in the region of the token.",
    parse=parse,
    create=LogfireExporter,
    check=check,
)
