"""The redaction corpus: real-looking secrets of every rule, embedded as they occur, and look-alikes.

Secrets are generated from a seeded RNG in each provider's real format (prefix, alphabet,
length), so none is a real credential and the corpus is the same on every run. Each is embedded
in one of the places agents put them: prose, a ``gen_ai.input.messages`` JSON document, a tool
call's JSON arguments inside JSON, a shell command, a URL query, an HTTP header, a stack trace,
a log line. Look-alikes are what telemetry is full of and must stay untouched: ids, digests,
base64 images, model names, paths, prose with ``sk-`` and ``password`` in it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass

#: Lines the corpus test leaves for the end of the test output (see conftest.py).
REPORT: list[str] = []
_rng = random.Random(20261201)  # reproducible fake data, not crypto
ALNUM = string.ascii_letters + string.digits
UPPER_B32 = string.ascii_uppercase + "234567"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"


def _r(alphabet: str, n: int) -> str:
    return "".join(_rng.choices(alphabet, k=n))


@dataclass(frozen=True)
class Case:
    """One corpus entry: ``text`` holds ``secret`` (the part that must vanish), caught by ``rule``."""

    rule: str
    secret: str
    text: str
    context: str


@dataclass(frozen=True)
class KeyCase:
    """A secret recognised by its attribute key (``sensitive-key``)."""

    key: str
    value: str


def _pem(kind: str) -> str:
    body = base64.b64encode(_rng.randbytes(600)).decode()
    lines = "\n".join(textwrap.wrap(body, 64))
    return f"-----BEGIN {kind}-----\n{lines}\n-----END {kind}-----"


def _jwt() -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    header = part({"alg": "HS256", "typ": "JWT"})
    payload = part({"sub": _r(HEX, 12), "iat": _rng.randint(1_700_000_000, 1_800_000_000), "scope": "admin"})
    return f"{header}.{payload}.{_r(URLSAFE, 43)}"


def _password() -> str:
    return _r(ALNUM, 6) + _rng.choice("!#-_.") + _r(ALNUM, _rng.randint(4, 12))


# rule id -> generators of (secret, text-with-secret) pairs; a text of None means "embed it".
_Gen = Callable[[], tuple[str, str | None]]


def _token(make: Callable[[], str]) -> _Gen:
    return lambda: (make(), None)


def _ctx(make_secret: Callable[[], str], template: str) -> _Gen:
    def gen() -> tuple[str, str | None]:
        secret = make_secret()
        return secret, template.format(s=secret)
    return gen


GENERATORS: dict[str, list[_Gen]] = {
    "private-key": [_token(lambda: _pem("RSA PRIVATE KEY")), _token(lambda: _pem("PRIVATE KEY")),
                    _token(lambda: _pem("EC PRIVATE KEY")), _token(lambda: _pem("OPENSSH PRIVATE KEY")),
                    _token(lambda: _pem("ENCRYPTED PRIVATE KEY"))],
    "anthropic-api-key": [_token(lambda: f"sk-ant-api03-{_r(URLSAFE, 93)}AA"),
                          _token(lambda: f"sk-ant-admin01-{_r(URLSAFE, 93)}AA")],
    "openrouter-api-key": [_token(lambda: f"sk-or-v1-{_r(HEX, 64)}")],
    "langfuse-key": [_token(lambda: f"sk-lf-{uuid.UUID(int=_rng.getrandbits(128))}"),
                     _token(lambda: f"pk-lf-{uuid.UUID(int=_rng.getrandbits(128))}")],
    "openai-api-key": [_token(lambda: f"sk-proj-{_r(URLSAFE, 74)}T3BlbkFJ{_r(URLSAFE, 74)}"),
                       _token(lambda: f"sk-svcacct-{_r(URLSAFE, 74)}T3BlbkFJ{_r(URLSAFE, 74)}"),
                       _token(lambda: f"sk-admin-{_r(URLSAFE, 58)}T3BlbkFJ{_r(URLSAFE, 58)}"),
                       _token(lambda: f"sk-{_r(ALNUM, 20)}T3BlbkFJ{_r(ALNUM, 20)}"),
                       _token(lambda: f"sk-{_r(ALNUM, 48)}"),
                       _token(lambda: f"sk-None-{_r(ALNUM, 48)}")],
    "groq-api-key": [_token(lambda: f"gsk_{_r(ALNUM, 52)}")],
    "xai-api-key": [_token(lambda: f"xai-{_r(ALNUM, 80)}")],
    "perplexity-api-key": [_token(lambda: f"pplx-{_r(ALNUM, 48)}")],
    "huggingface-token": [_token(lambda: f"hf_{_r(ALNUM, 34)}"), _token(lambda: f"api_org_{_r(ALNUM, 34)}")],
    "google-api-key": [_token(lambda: f"AIza{_r(URLSAFE, 35)}")],
    "aws-access-key-id": [_token(lambda: f"AKIA{_r(UPPER_B32, 16)}"), _token(lambda: f"ASIA{_r(UPPER_B32, 16)}")],
    "aws-bedrock-api-key": [_token(lambda: f"ABSK{_r(B64, 132)}")],
    "aws-secret-access-key": [
        _ctx(lambda: _r(B64, 40), "aws_secret_access_key = {s}"),
        _ctx(lambda: _r(B64, 40), "export AWS_SECRET_ACCESS_KEY={s}; aws s3 ls"),
        _ctx(lambda: _r(B64, 40), '{{"AWS_SECRET_ACCESS_KEY": "{s}", "region": "eu-west-1"}}'),
    ],
    "github-pat": [_token(lambda: f"ghp_{_r(ALNUM, 36)}")],
    "github-oauth-token": [_token(lambda: f"gho_{_r(ALNUM, 36)}")],
    "github-app-token": [_token(lambda: f"ghu_{_r(ALNUM, 36)}"), _token(lambda: f"ghs_{_r(ALNUM, 36)}")],
    "github-refresh-token": [_token(lambda: f"ghr_{_r(ALNUM, 76)}")],
    "github-fine-grained-pat": [_token(lambda: f"github_pat_{_r(ALNUM, 22)}_{_r(ALNUM, 59)}")],
    "gitlab-token": [_token(lambda: f"glpat-{_r(URLSAFE, 20)}"), _token(lambda: f"glrt-{_r(URLSAFE, 20)}"),
                     _token(lambda: f"gldt-{_r(URLSAFE, 20)}")],
    "slack-webhook-url": [_token(lambda: f"https://hooks.slack.com/services/T{_r(UPPER_B32, 8)}/B{_r(UPPER_B32, 8)}/"
                                         f"{_r(ALNUM, 24)}")],
    "slack-token": [_token(lambda: f"xoxb-{_r(string.digits, 12)}-{_r(string.digits, 13)}-{_r(ALNUM, 24)}"),
                    _token(lambda: f"xoxp-{_r(string.digits, 12)}-{_r(string.digits, 12)}-{_r(string.digits, 13)}-"
                                   f"{_r(HEX, 32)}"),
                    _token(lambda: f"xapp-1-A{_r(UPPER_B32, 10)}-{_r(string.digits, 13)}-{_r(HEX, 64)}")],
    "stripe-key": [_token(lambda: f"sk_live_{_r(ALNUM, 24)}"), _token(lambda: f"rk_test_{_r(ALNUM, 24)}"),
                   _token(lambda: f"whsec_{_r(ALNUM, 32)}")],
    "npm-token": [_token(lambda: f"npm_{_r(ALNUM, 36)}")],
    "pypi-token": [_token(lambda: f"pypi-AgEIcHlwaS5vcmc{_r(URLSAFE, 70)}")],
    "logfire-token": [_token(lambda: f"pylf_v1_us_{_r(ALNUM, 40)}"), _token(lambda: f"pylf_v1_eu_{_r(ALNUM, 40)}")],
    "jwt": [_token(_jwt)],
    "authorization-header": [
        _ctx(lambda: _r(ALNUM, 40), "Authorization: Bearer {s}"),
        _ctx(lambda: base64.b64encode(f"admin:{_password()}".encode()).decode(), "Authorization: Basic {s}"),
        _ctx(lambda: _r(ALNUM, 32), "curl -H 'authorization: token {s}' https://api.example.com/v1/items"),
        _ctx(lambda: _r(HEX, 40), '{{"headers": {{"Authorization": "Bearer {s}"}}}}'),
    ],
    "bearer-token": [_ctx(lambda: _r(URLSAFE, 36), "401 Unauthorized: the bearer {s} has expired")],
    "database-connection-string": [
        _ctx(_password, "postgres://app:{s}@db.internal:5432/orders"),
        _ctx(_password, "mysql://root:{s}@10.0.0.7:3306/shop"),
        _ctx(_password, "mongodb+srv://svc:{s}@cluster0.ab12c.mongodb.net/prod?retryWrites=true"),
        _ctx(_password, "redis://:{s}@cache:6379/0"),
        _ctx(_password, "amqp://guest:{s}@rabbit:5672/"),
    ],
    "url-userinfo": [_ctx(_password, "https://deploy:{s}@git.example.com/team/repo.git"),
                     _ctx(_password, "ftp://backup:{s}@files.example.org/dumps/")],
    "password-assignment": [
        _ctx(_password, "password={s}"),
        _ctx(_password, '"password": "{s}"'),
        _ctx(_password, "client_secret = {s}"),
        _ctx(_password, "--db-passwd={s}"),
        _ctx(lambda: _r(ALNUM, 24), "api_key={s}"),
        _ctx(_password, "'secret': '{s}'"),
        _ctx(lambda: _r(ALNUM, 30), "ACCESS_TOKEN={s}"),
    ],
}

_CONTEXTS: dict[str, Callable[[str], str]] = {
    "prose": lambda s: f"I set it to {s} and the deploy worked.",
    "messages-json": lambda s: json.dumps([{"role": "user", "parts": [{"type": "text", "content": f"my key:\n{s}\n"}]}]),
    "tool-arguments": lambda s: json.dumps({"name": "http_post", "arguments": json.dumps({"body": f"cfg {s} end"})}),
    "shell": lambda s: f"$ ./deploy.sh --verbose {s} --region eu-west-1",
    "url-query": lambda s: f"GET https://api.example.com/v1/search?q=x&k={s}&page=2",
    "header": lambda s: f"X-Debug-Info: {s}\r\nContent-Type: application/json\r\n",
    "stack-trace": lambda s: ('Traceback (most recent call last):\n  File "agent/tools.py", line 88, in call\n'
                              f"    raise AuthError(creds)\nAuthError: rejected {s}\n"),
    "log-line": lambda s: f"2026-11-01T10:00:00.123Z ERROR upstream rejected {s} (status=401)",
}
# Contexts that would change what a URL-shaped or multi-line secret means.
_ONLY_PLAIN = {"private-key": ("prose", "messages-json", "stack-trace", "log-line"),
               "slack-webhook-url": ("prose", "messages-json", "shell", "log-line", "stack-trace")}


def secret_cases(per_rule: int = 7) -> list[Case]:
    """At least ``per_rule`` cases of every rule, each in a different context where possible."""
    cases: list[Case] = []
    names = list(_CONTEXTS)
    for rule, gens in GENERATORS.items():
        allowed = _ONLY_PLAIN.get(rule, tuple(names))
        for i in range(per_rule):
            secret, text = gens[i % len(gens)]()
            context = allowed[i % len(allowed)]
            embedded = _CONTEXTS[context](text if text is not None else secret)
            cases.append(Case(rule, secret, embedded, context))
    return cases


KEY_CASES = [
    KeyCase("db.password", "Winter2026!"), KeyCase("http.request.header.authorization", "Basic YWRtaW46YWRtaW4="),
    KeyCase("http.request.header.cookie", "session=abc123; theme=dark"), KeyCase("x-api-key", "k-19ab"),
    KeyCase("app.client_secret", "tiny"), KeyCase("github.token", "notaprefix123"), KeyCase("api_key", "12345"),
    KeyCase("private_key", "MIIEvQIBADANBgkq"), KeyCase("user.credentials", "alice/hunter2"),
    KeyCase("service.auth", "opaque-value"),
]


def _b64_image() -> str:
    return "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + _rng.randbytes(300)).decode()


_LOOKALIKE_GENS: list[Callable[[], str]] = [
    lambda: _rng.randbytes(16).hex(),  # trace id
    lambda: _rng.randbytes(8).hex(),  # span id
    lambda: str(uuid.UUID(int=_rng.getrandbits(128))),
    lambda: hashlib.sha256(_rng.randbytes(32)).hexdigest(),
    lambda: hashlib.sha1(_rng.randbytes(32)).hexdigest(),  # a look-alike digest
    lambda: f"sha256:{hashlib.sha256(_rng.randbytes(8)).hexdigest()}",
    _b64_image,
    lambda: base64.b64encode(_rng.randbytes(48)).decode(),
    lambda: f"chatcmpl-{_r(ALNUM, 29)}",
    lambda: f"call_{_r(ALNUM, 24)}",
    lambda: f"resp_{_r(HEX, 48)}",
    lambda: f"msg_01{_r(ALNUM, 22)}",
    lambda: f"toolu_01{_r(ALNUM, 22)}",
    lambda: f"sess-{_rng.getrandbits(128):032x}",
    lambda: _rng.choice(["gpt-4o-mini", "gpt-4.1", "o3-mini", "claude-sonnet-4-5", "claude-opus-4-1-20250805",
                         "anthropic.claude-3-5-sonnet-20240620-v1:0", "gemini-2.5-pro", "grok-4", "llama-3.1-70b"]),
    lambda: _rng.choice(["/home/agent/.ssh/id_ed25519.pub", "C:\\Users\\dev\\AppData\\token_cache.json",
                         "/var/run/secrets/kubernetes.io/serviceaccount", "./config/password_policy.yaml"]),
    lambda: _rng.choice(["the task-runner restarted the desk-lamp service", "a risk-free sk-learn pipeline",
                         "ask-me-anything about the roadmap", "the sk-proj- prefix marks project keys",
                         "whisk-together-the-eggs-and-the-flour-slowly"]),
    lambda: _rng.choice(["please reset your password using the link we sent", "Enter your password:",
                         "the token limit was exceeded for this request", "he was the bearer of bad news",
                         "Authorization failed for user alice", "basic authentication is disabled here",
                         "the secret to good soup is patience", "password reset requested at 10:02"]),
    lambda: _rng.choice(["postgres://db.internal:5432/app", "https://user@example.com/profile",
                         "https://example.com:8443/api/v1/items?id=42", "see hooks.slack.com for webhooks",
                         "redis://cache:6379/0", "mailto:ops@example.com"]),
    lambda: _rng.choice(["password=${DB_PASSWORD}", "api_key=<your key here>", "password=*****",
                         "export OPENAI_API_KEY=$OPENAI_API_KEY", "token: {{ secrets.GITHUB_TOKEN }}"]),
    lambda: f"arn:aws:iam::{_r(string.digits, 12)}:role/agent-{_r(string.ascii_lowercase, 6)}",
    lambda: f"commit {_rng.randbytes(20).hex()} merged into main",
    lambda: f"v{_rng.randint(0, 9)}.{_rng.randint(0, 30)}.{_rng.randint(0, 99)}",
    lambda: f"pod agent-worker-{_r(HEX, 10)}-{_r(string.ascii_lowercase + string.digits, 5)}",
    lambda: json.dumps({"usage": {"prompt_tokens": _rng.randint(1, 9999), "completion_tokens": 12},
                        "model": "gpt-4o", "id": f"chatcmpl-{_r(ALNUM, 20)}"}),
]


def lookalikes(count: int = 225) -> list[str]:
    """``count`` values that hold no secret."""
    return [_LOOKALIKE_GENS[i % len(_LOOKALIKE_GENS)]() for i in range(count)]


# Attribute keys that look sensitive by name but are not (with a value that is no secret either).
SAFE_KEY_CASES = [
    ("gen_ai.usage.input_tokens", 1234), ("gen_ai.usage.output_tokens", 56), ("gen_ai.request.max_tokens", 4096),
    ("llm.token_count.prompt", 88), ("gen_ai.token.type", "input"), ("session.id", "sess-42"),
    ("gen_ai.response.id", "chatcmpl-abc"), ("auth.method", "oauth2"), ("tokenizer", "cl100k_base"),
    ("gen_ai.usage.cache_read.input_tokens", 12),
]
