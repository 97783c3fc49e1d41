"""The budget processor's typed config and the checks ``validate`` runs on it.

The schema (``schemas/processors/budget.schema.json``) holds the defaults and the shapes; here are
the rules a schema cannot say: budget ids unique, a scope that is a typo, a Redis URL that cannot
be parsed, a webhook without a URL. Reachability of Redis is checked at start (a clear
``StartupError``), not by ``validate``, which must run where the store is not reachable.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from obs_pipeline.errors import Problem
from obs_pipeline.processors.budget.scope import KNOWN_NAMES, SHORTHANDS
from obs_pipeline.processors.budget.windows import ROLLING, Window, parse_window
from obs_pipeline.secret import Secret
from obs_pipeline.units import parse_duration, parse_endpoint

__all__ = ["ANNOTATE", "AUDIT", "WEBHOOK", "Budget", "Config", "WebhookConfig", "check", "endpoints", "scope_problem"]

ANNOTATE = "annotate"
AUDIT = "audit"
WEBHOOK = "webhook"
SQLITE = "sqlite"
REDIS = "redis"
FAIL_OPEN = "fail_open"
FAIL_CLOSED = "fail_closed"
#: Nano-dollars per dollar: spend is kept as an integer number of them, so sums are exact.
NANO = 1_000_000_000


@dataclass(frozen=True, kw_only=True)
class Budget:
    """One named budget: who spends (``scope``), how much (``limit_usd``), over what ``window``."""

    id: str
    scope: str
    limit_usd: float
    window: Window
    warn_at: tuple[float, ...] = ()

    @property
    def limit_nano(self) -> int:
        """The limit in nano-dollars."""
        return round(self.limit_usd * NANO)

    def thresholds_nano(self) -> tuple[int, ...]:
        """Each ``warn_at`` fraction as an amount in nano-dollars, in ascending order."""
        return tuple(math.ceil(fraction * self.limit_usd * NANO) for fraction in self.warn_at)


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    """``webhook``: where events are POSTed."""

    url: Secret
    headers: Mapping[str, Secret] = field(default_factory=dict)
    timeout: float = 5.0
    max_elapsed_time: float = 300.0
    queue_size: int = 1000


@dataclass(frozen=True, kw_only=True)
class Config:
    """See ``schemas/processors/budget.schema.json`` for each option."""

    budgets: tuple[Budget, ...] = ()
    #: The store's kind, ``sqlite`` or ``redis``; the URL of a Redis store is :attr:`redis_url`.
    state: str = SQLITE
    #: ``state: redis://[:password@]host:port/db``: a :class:`Secret` (it may hold a password),
    #: revealed only where the client is made.
    redis_url: Secret | None = None
    key_prefix: str = "obs_pipeline:budget:"
    endpoint: str | None = "127.0.0.1:8890"
    bearer_token: Secret | None = None
    actions: frozenset[str] = frozenset({ANNOTATE, AUDIT})
    webhook: WebhookConfig | None = None
    unpriced: str = FAIL_OPEN
    reservation_ttl: float = 300.0
    max_reservations_per_scope: int = 64
    session_ttl: float = 30 * 86400.0

    def sealed(self) -> Config:
        """The config with no effects outside the data, for ``obs-pipeline test``.

        No endpoint, no webhook, and local state (under the test case's own ``data_dir``) in place
        of a shared Redis, so a test run never holds a running pipeline's port nor charges its budgets.
        """
        return dataclasses.replace(self, endpoint=None, webhook=None, actions=self.actions - {WEBHOOK}, state=SQLITE,
                                   redis_url=None)

    @property
    def fail_closed(self) -> bool:
        """Whether unpriced usage makes a scope exceeded."""
        return self.unpriced == FAIL_CLOSED

    @property
    def uses_redis(self) -> bool:
        """Whether the state is in Redis."""
        return self.redis_url is not None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Config:
        """From the validated dict (schema defaults filled in)."""
        session_ttl = parse_duration(raw["session_ttl"])
        budgets = tuple(
            Budget(id=b["id"], scope=b["scope"], limit_usd=float(b["limit_usd"]),
                   window=parse_window(b["window"], session_ttl), warn_at=tuple(sorted(float(w) for w in b["warn_at"])))
            for b in raw["budgets"]
        )
        hook = raw["webhook"]
        webhook = None if hook is None else WebhookConfig(
            url=hook["url"], headers=dict(hook["headers"]), timeout=parse_duration(hook["timeout"]),
            max_elapsed_time=parse_duration(hook["max_elapsed_time"]), queue_size=hook["queue_size"],
        )
        auth = raw["auth"]
        state = raw["state"]  # marked x-secret in the schema, so a Secret even when it is "sqlite"
        url = state if isinstance(state, Secret) else Secret(state)
        redis_url = None if url.reveal() == SQLITE else url
        return cls(
            budgets=budgets, state=SQLITE if redis_url is None else REDIS, redis_url=redis_url,
            key_prefix=raw["key_prefix"], endpoint=raw["endpoint"],
            bearer_token=None if auth is None else auth["bearer_token"], actions=frozenset(raw["actions"]),
            webhook=webhook, unpriced=raw["unpriced"], reservation_ttl=parse_duration(raw["reservation_ttl"]),
            max_reservations_per_scope=raw["max_reservations_per_scope"], session_ttl=session_ttl,
        )


def scope_problem(scope: str) -> str | None:
    """Why ``scope`` looks like a typo, or None when it is usable (docs/budget.md#scopes).

    The rule: a shorthand is a single lower-case word, so a word without ``.`` or ``_`` must be one
    of them; an attribute name is accepted unless it is one or two edits away from a GenAI name
    or alias we know (``gen_ai.conversaton.id``), which is a typo that would silently meter nothing.
    """
    if scope in SHORTHANDS or scope in KNOWN_NAMES:
        return None
    if "." not in scope and "_" not in scope:
        close = difflib.get_close_matches(scope, SHORTHANDS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (f"unknown scope {scope!r}: use a shorthand ({', '.join(SHORTHANDS)}) or an attribute name "
                f"with '.' or '_' (gen_ai.conversation.id, customer_id){hint}")
    for known in KNOWN_NAMES:
        if abs(len(known) - len(scope)) <= 2 and _edits(scope, known) <= 2:
            return f"scope {scope!r} is not an attribute obs-pipeline knows; did you mean {known!r}?"
    return None


def _edits(a: str, b: str) -> int:
    """Levenshtein distance (names are short; called only by validate)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


#: How long validate waits for a Redis server to accept a connection.
REACH_TIMEOUT = 1.0


def _unreachable(secret: Secret) -> str | None:
    """Why nothing accepts a TCP connection at the Redis URL's host:port now, or None (it does).

    A warning, not an error: ``validate`` often runs in CI, where the production Redis is not
    reachable by design; ``run`` fails at start with a clear error if it still is not. Only the
    host, port and database are named, never the password.
    """
    parts = urlsplit(secret.reveal())
    host, port = parts.hostname or "", parts.port or 6379
    where = f"{host}:{port}/{parts.path.lstrip('/') or '0'}"
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT):
            return None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return f"cannot reach Redis at {where} now ({why}): run will fail at start unless it is up by then"


def _state_problem(secret: Secret | None) -> str | None:
    """What is wrong with the Redis URL, in words that never quote it (it may hold a password)."""
    if secret is None:
        return None
    state = secret.reveal()
    try:
        parts = urlsplit(state)
        port = parts.port
    except ValueError:  # (its message would quote part of the URL)
        return "is not a Redis URL (its port is not a number, or its host is malformed); use redis://host:port/db"
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        return "is not a Redis URL: use redis://host:port/db"
    del port  # None is Redis's 6379; a bad one raised above
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        return f"has a database {db!r} that is not a number: use redis://host:port/db, such as /0"
    if parts.query or parts.fragment:
        return "takes no query or fragment: use redis://host:port/db"
    return None


def check(cfg: Config) -> list[Problem]:
    """Cross-field rules: unique ids, scopes that are not typos, the Redis URL's shape, the webhook."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, budget in enumerate(cfg.budgets):
        if budget.id in seen:
            problems.append(Problem(f"budgets[{i}].id", f"budget id {budget.id!r} is used twice"))
        seen.add(budget.id)
        if (reason := scope_problem(budget.scope)) is not None:
            problems.append(Problem(f"budgets[{i}].scope", reason))
        if budget.window.kind == ROLLING and budget.window.seconds <= 0:
            problems.append(Problem(f"budgets[{i}].window", "a rolling window must be longer than 0s"))
    if (reason := _state_problem(cfg.redis_url)) is not None:
        problems.append(Problem("state", reason))  # the URL may hold a password: never quote it
    elif cfg.redis_url is not None and (reason := _unreachable(cfg.redis_url)) is not None:
        problems.append(Problem("state", reason, severity="warning"))
    if WEBHOOK in cfg.actions and cfg.webhook is None:
        problems.append(Problem("actions", "webhook is listed but there is no webhook: {url: ...} block"))
    if cfg.webhook is not None:
        scheme = urlsplit(cfg.webhook.url.reveal()).scheme
        if scheme not in ("http", "https"):
            problems.append(Problem("webhook.url", "must be an http:// or https:// URL"))
        if WEBHOOK not in cfg.actions:
            problems.append(Problem("webhook", "is set but actions does not list webhook, so nothing is sent",
                                    severity="warning"))
    if cfg.bearer_token is not None and not cfg.bearer_token.reveal():
        problems.append(Problem("auth.bearer_token", "must not be empty (is its environment variable set?)"))
    if cfg.endpoint is not None and cfg.bearer_token is None:
        try:
            host, _ = parse_endpoint(cfg.endpoint)
        except ValueError:
            host = "127.0.0.1"
        if host not in ("127.0.0.1", "localhost", "::1"):
            problems.append(Problem("endpoint", "listens beyond loopback without auth: anyone who reaches it can "
                                    "read spend and reserve budget", severity="warning"))
    if not cfg.budgets:
        problems.append(Problem("budgets", "is empty: the processor charges nothing", severity="warning"))
    return problems


def endpoints(cfg: Config) -> list[tuple[str, str]]:
    """The decision endpoint, for the port-clash check."""
    return [] if cfg.endpoint is None else [("endpoint", cfg.endpoint)]

