"""Secrets glued to an identifier on their left (``tool_AKIA...``, ``KEY_sk-proj-...``), and their look-alikes.

Issue 8's trial found that a token right after a letter, digit or underscore slipped past the
rules (they were anchored at a word boundary on the left), and a tool named ``tool_AKIA...``
reached the audit line. Every rule widened for that is here, glued in each way identifiers are
built. Rules whose prefix is short or ends English words (``hf_``, ``sk_live_``, ``sk-proj-``
without OpenAI's ``T3BlbkFJ`` marker) only accept glue that is not a lowercase letter, and
Bedrock's ``ABSK`` (a base64 body) only an underscore (docs/redaction.md, "Left context"), so
they get only those glues. The look-alikes are what the
widening must not start catching: kebab and snake words ending in ``sk``, base64 and hex blobs
with ``AKIA``-like runs the right-hand anchoring still rejects.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable

from tests.processors.redaction.corpus import ALNUM, HEX, UPPER_B32, URLSAFE, Case

_rng = random.Random(20261202)  # reproducible fake data, not crypto


def _r(alphabet: str, n: int) -> str:
    return "".join(_rng.choices(alphabet, k=n))


#: How identifiers glue a secret on its left; each produces the whole value holding ``s``.
GLUES: dict[str, Callable[[str], str]] = {
    "tool_": lambda s: f"tool_{s}",
    "KEY_": lambda s: f"export KEY_{s}",
    "id_": lambda s: f"id_{s} failed",
    "key": lambda s: f"key{s}",
    "x9": lambda s: f"x9{s}",
    "json-key-suffix": lambda s: json.dumps({f"credentials_{s}": True, "n": 1}),
    "snake_case": lambda s: f"call my_deploy_tool_{s} now",
    "camelCase": lambda s: f"const githubToken{s} = 1",
}
#: The glues a lowercase-sensitive rule accepts (no lowercase letter right before the secret).
_NOT_LOWER = ("tool_", "KEY_", "id_", "x9", "json-key-suffix", "snake_case")
_CAPITAL_CAMEL = {"camelCase-capital": lambda s: f"const awsKEY{s} = 1"}

_TOKENS: dict[str, list[Callable[[], str]]] = {
    "anthropic-api-key": [lambda: f"sk-ant-api03-{_r(URLSAFE, 93)}AA"],
    "openrouter-api-key": [lambda: f"sk-or-v1-{_r(HEX, 64)}"],
    "langfuse-key": [lambda: f"sk-lf-{uuid.UUID(int=_rng.getrandbits(128))}",
                     lambda: f"pk-lf-{uuid.UUID(int=_rng.getrandbits(128))}"],
    "openai-api-key": [lambda: f"sk-proj-{_r(URLSAFE, 74)}T3BlbkFJ{_r(URLSAFE, 74)}",
                       lambda: f"sk-svcacct-{_r(URLSAFE, 74)}T3BlbkFJ{_r(URLSAFE, 74)}",
                       lambda: f"sk-admin-{_r(URLSAFE, 58)}T3BlbkFJ{_r(URLSAFE, 58)}",
                       lambda: f"sk-{_r(ALNUM, 20)}T3BlbkFJ{_r(ALNUM, 20)}"],
    "groq-api-key": [lambda: f"gsk_{_r(ALNUM, 52)}"],
    "xai-api-key": [lambda: f"xai-{_r(ALNUM, 80)}"],
    "perplexity-api-key": [lambda: f"pplx-{_r(ALNUM, 48)}"],
    "google-api-key": [lambda: f"AIza{_r(URLSAFE, 35)}"],
    "aws-access-key-id": [lambda: f"AKIA{_r(UPPER_B32, 16)}", lambda: f"ASIA{_r(UPPER_B32, 16)}"],
    "github-pat": [lambda: f"ghp_{_r(ALNUM, 36)}"],
    "github-oauth-token": [lambda: f"gho_{_r(ALNUM, 36)}"],
    "github-app-token": [lambda: f"ghu_{_r(ALNUM, 36)}", lambda: f"ghs_{_r(ALNUM, 36)}"],
    "github-refresh-token": [lambda: f"ghr_{_r(ALNUM, 76)}"],
    "github-fine-grained-pat": [lambda: f"github_pat_{_r(ALNUM, 22)}_{_r(ALNUM, 59)}"],
    "gitlab-token": [lambda: f"glpat-{_r(URLSAFE, 20)}", lambda: f"GR1348941{_r(URLSAFE, 20)}"],
    "slack-token": [lambda: f"xoxb-{_r(string.digits, 12)}-{_r(string.digits, 13)}-{_r(ALNUM, 24)}",
                    lambda: f"xapp-1-A{_r(UPPER_B32, 10)}-{_r(string.digits, 13)}-{_r(HEX, 64)}"],
    "stripe-key": [lambda: f"whsec_{_r(ALNUM, 32)}"],
    "npm-token": [lambda: f"npm_{_r(ALNUM, 36)}"],
    "pypi-token": [lambda: f"pypi-AgEIcHlwaS5vcmc{_r(URLSAFE, 70)}"],
    "logfire-token": [lambda: f"pylf_v1_us_{_r(ALNUM, 40)}"],
    "jwt": [lambda: ".".join(base64.urlsafe_b64encode(json.dumps(p).encode()).decode().rstrip("=") for p in
                             ({"alg": "HS256"}, {"sub": _r(HEX, 12), "scope": "admin"})) + "." + _r(URLSAFE, 43)],
}
# Accepted only after an underscore (a body of base64 characters: never inside a standard base64 blob).
_UNDERSCORE = ("tool_", "KEY_", "id_", "json-key-suffix", "snake_case")
_UNDERSCORE_TOKENS: dict[str, list[Callable[[], str]]] = {
    "aws-bedrock-api-key": [lambda: f"ABSK{_r(ALNUM + '+/', 132)}"],
}
# Accepted only after glue that is not a lowercase letter.
_NOT_LOWER_TOKENS: dict[str, list[Callable[[], str]]] = {
    "openai-api-key": [lambda: f"sk-proj-{_r(ALNUM, 32)}", lambda: f"sk-svcacct-{_r(URLSAFE, 40)}",
                       lambda: f"sk-admin-{_r(ALNUM, 40)}"],
    "huggingface-token": [lambda: f"hf_{_r(ALNUM, 34)}", lambda: f"api_org_{_r(ALNUM, 34)}"],
    "stripe-key": [lambda: f"sk_live_{_r(ALNUM, 24)}", lambda: f"rk_live_{_r(ALNUM, 99)}",
                   lambda: f"sk_test_{_r(ALNUM, 24)}"],
}


def glued_cases() -> list[Case]:
    """Every widened rule glued every way it accepts (``Case.context`` names the glue)."""
    cases: list[Case] = []
    groups = ((_TOKENS, GLUES), (_NOT_LOWER_TOKENS, {g: GLUES[g] for g in _NOT_LOWER} | _CAPITAL_CAMEL),
              (_UNDERSCORE_TOKENS, {g: GLUES[g] for g in _UNDERSCORE}))
    for tokens, glues in groups:
        for rule, makers in tokens.items():
            for i, (name, glue) in enumerate(glues.items()):
                secret = makers[i % len(makers)]()
                cases.append(Case(rule, secret, glue(secret), name))
    return cases


def _b64_with(run: str) -> str:
    """A standard base64 blob with ``run`` inside, glued on both sides to base64 characters."""
    head = base64.b64encode(_rng.randbytes(45)).decode()
    tail = base64.b64encode(_rng.randbytes(45)).decode()
    return head + run + tail


def _urlsafe_with(run: str) -> str:
    """A URL-safe base64 blob (cursors, signatures) with ``run`` inside."""
    head = base64.urlsafe_b64encode(_rng.randbytes(45)).decode()
    tail = base64.urlsafe_b64encode(_rng.randbytes(45)).decode()
    return head + run + tail


_LOOKALIKE_GENS: list[Callable[[], str]] = [
    # words that end in "sk" or "pk" before a key-like prefix
    lambda: f"mask-proj-{_r(string.ascii_lowercase, 30)}",
    lambda: "the task-proj-management-dashboard-quarterly-review is due",
    lambda: "open the disk-admin-console-settings-page-v2 and check",
    lambda: "ask-proj-roadmap-for-the-next-quarter-and-beyond",
    lambda: "desk-svcacct-rotation-schedule-2026-spring-edition",
    lambda: "risk-score=0.42 for task_id=981 (disk-usage 71%)",
    lambda: f"task_test_{_r(string.ascii_lowercase, 30)}",
    lambda: "disk_live_migration_checkpoint_version_two_ok",
    lambda: "mask_prod_rollout_dashboard_for_the_team_2026",
    lambda: f"bookshelf_{_r(ALNUM, 34)}",
    lambda: f"xhf_{_r(ALNUM, 34)}",
    lambda: f"desk-lf-{_r(string.ascii_lowercase, 8)}-backup-volume-name",
    # base64 blobs with AKIA-like runs the right-hand anchoring rejects
    lambda: _b64_with(f"AKIA{_r(UPPER_B32, 16)}{_r(string.ascii_lowercase, 1)}"),
    lambda: _b64_with(f"ASIA{_r(UPPER_B32, 16)}{_r('01', 1)}"),
    lambda: _b64_with(f"AKIA{_r(UPPER_B32, 17)}"),
    lambda: _b64_with(f"AKIA{_r(UPPER_B32, 15)}+"),
    lambda: _b64_with(f"X{'hf_'}{_r(ALNUM, 40)}"),
    lambda: _b64_with(f"AIza{_r(ALNUM, 30)}+"),
    lambda: _b64_with(f"ghp_{_r(ALNUM, 30)}/"),
    lambda: _b64_with(f"QABSK{_r(ALNUM + '+/', 120)}"),
    lambda: _b64_with(f"QAIza{_r(ALNUM, 35)}Q"),
    lambda: _urlsafe_with(f"Xghp_{_r(ALNUM, 40)}-"),
    lambda: _urlsafe_with(f"Xgsk_{_r(ALNUM, 40)}_"),
    lambda: _urlsafe_with(f"XAIza{_r(URLSAFE, 35)}Q"),
    lambda: _urlsafe_with(f"Xnpm_{_r(ALNUM, 36)}-"),
    # hex digests, upper and lower case (AKIA, ASIA, A3T cannot occur in hex)
    lambda: hashlib.sha256(_rng.randbytes(32)).hexdigest().upper(),
    lambda: f"sha512:{hashlib.sha512(_rng.randbytes(32)).hexdigest()}",
    lambda: f"etag W/\"{hashlib.md5(_rng.randbytes(8), usedforsecurity=False).hexdigest().upper()}\"",
    # prefixes too short for their rule, glued
    lambda: f"tool_AKIA{_r(UPPER_B32, 12)}",
    lambda: f"id_ghp_{_r(ALNUM, 30)}",
    lambda: f"KEY_sk-proj-{_r(ALNUM, 12)}",
    lambda: f"x9gsk_{_r(ALNUM, 20)}",
]


def glued_lookalikes(count: int = 96) -> list[str]:
    """``count`` values with a glued prefix that holds no secret."""
    return [_LOOKALIKE_GENS[i % len(_LOOKALIKE_GENS)]() for i in range(count)]
