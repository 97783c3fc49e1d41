"""What validate says about a budget config, and the windows it parses."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from obs_pipeline.config import check_config
from obs_pipeline.processors import budget
from obs_pipeline.processors.budget.config import scope_problem
from obs_pipeline.processors.budget.windows import parse_window
from obs_pipeline.secret import Secret
from obs_pipeline.testing import parse_config
from tests.processors.budget.redis_kit import REDIS_SERVER, RedisServer, free_port


def problems(tmp_path, processor: str, environ: dict | None = None) -> list[str]:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent("""\
        receivers: {otlp: {}}
        processors:
          budget:
        %s
        exporters: {debug: {}}
        service:
          pipelines:
            traces: {receivers: [otlp], processors: [budget], exporters: [debug]}
        """) % textwrap.indent(textwrap.dedent(processor), "    "))
    _config, found = check_config(path, environ=environ or {})
    return [str(p) for p in found if p.severity == "error"]


class TestValidate:
    def test_the_issue_example_is_valid(self, tmp_path):
        assert problems(tmp_path, """\
            budgets:
              - {id: session-cap, scope: session, limit_usd: 5, window: session}
              - {id: tenant-daily, scope: tenant, limit_usd: 200, window: 1d, warn_at: [0.5, 0.8]}
            state: sqlite
            endpoint: 127.0.0.1:8890
            auth: {bearer_token: "${env:BUDGET_TOKEN}"}
            actions: [annotate, audit]
            unpriced: fail_open
            """, {"BUDGET_TOKEN": "t0ken"}) == []

    @pytest.mark.parametrize(("window", "expected"), [
        ("1day", "is not a window"), ("30 minutes", "is not a window"), ("0s", "longer than 0s"), ("1w", "is not a window"),
    ])
    def test_a_window_that_is_not_a_duration(self, tmp_path, window, expected):
        found = problems(tmp_path, f"budgets: [{{id: b, scope: session, limit_usd: 1, window: '{window}'}}]")
        assert len(found) == 1
        assert "budgets[0].window" in found[0]
        assert expected in found[0]

    @pytest.mark.parametrize(("scope", "hint"), [
        ("sesion", "did you mean 'session'"), ("tennant", "did you mean 'tenant'"), ("customer", "shorthand"),
        ("gen_ai.conversaton.id", "did you mean 'gen_ai.conversation.id'"), ("enduser.idd", "'enduser.id'"),
    ])
    def test_a_scope_with_a_typo(self, tmp_path, scope, hint):
        found = problems(tmp_path, f"budgets: [{{id: b, scope: {scope}, limit_usd: 1}}]")
        assert len(found) == 1
        assert "budgets[0].scope" in found[0]
        assert hint in found[0]

    @pytest.mark.parametrize("url", ["redis://:pw@/0", "redis://host:port/0", "redis://h:6379/zero",
                                     "memcached://h:1", "redis://h:6379/0?x=1", "reddis://:pw@h:1/0"])
    def test_an_invalid_redis_url_is_an_error_that_never_shows_it(self, tmp_path, url):
        found = problems(tmp_path, f"""\
            budgets: [{{id: b, scope: session, limit_usd: 1}}]
            state: "{url}"
            """)
        assert len(found) == 1
        assert "state" in found[0]
        assert "pw@" not in found[0]

    def test_limits_and_thresholds(self, tmp_path):
        text = "\n".join(problems(tmp_path, "budgets: [{id: b, scope: user, limit_usd: -1, warn_at: [1.5]}]"))
        assert "budgets[0].limit_usd" in text
        assert "budgets[0].warn_at[0]" in text

    def test_cross_field_rules(self, tmp_path):
        found = problems(tmp_path, """\
            budgets:
              - {id: b, scope: session, limit_usd: 1}
              - {id: b, scope: user, limit_usd: 2}
            actions: [annotate, webhook]
            auth: {bearer_token: ""}
            """)
        text = "\n".join(found)
        assert len(found) == 3
        assert "used twice" in text
        assert "no webhook" in text
        assert "bearer_token" in text

    def test_a_secret_webhook_url_is_never_shown(self, tmp_path):
        found = problems(tmp_path, """\
            budgets: [{id: b, scope: session, limit_usd: 1}]
            actions: [webhook]
            webhook: {url: "ftp://hooks.example/SECRETPART"}
            """)
        assert len(found) == 1
        assert "SECRETPART" not in found[0]


class TestRedisUrlIsASecret:
    URL = "redis://:hunter2@127.0.0.1:6390/2"

    def test_the_parsed_config_holds_the_url_as_a_secret(self):
        """Nothing that prints the config (repr, str, a log of it) shows the password."""
        cfg = parse_config(budget.FACTORY, {"budgets": [], "state": self.URL})
        assert (cfg.state, cfg.uses_redis) == ("redis", True)
        assert isinstance(cfg.redis_url, Secret)
        assert cfg.redis_url.reveal() == self.URL
        assert "hunter2" not in repr(cfg)
        assert "hunter2" not in str(cfg)

    def test_sealing_drops_the_redis_url(self):
        """``obs-pipeline test`` runs on local state: the sealed config holds no URL at all."""
        sealed = parse_config(budget.FACTORY, {"budgets": [], "state": self.URL}).sealed()
        assert (sealed.state, sealed.redis_url, sealed.uses_redis) == ("sqlite", None, False)

    @pytest.mark.parametrize("url", ["reddis://:hunter2@h:1/0", "redis://h:hunter2/0", "redis://:hunter2@h:1/x"])
    def test_no_problem_quotes_any_part_of_a_bad_url(self, tmp_path, url):
        found = problems(tmp_path, f"""\
            budgets: [{{id: b, scope: session, limit_usd: 1}}]
            state: "{url}"
            """)
        assert len(found) == 1
        assert "hunter2" not in found[0]

    def test_sqlite_is_no_redis(self):
        cfg = parse_config(budget.FACTORY, {"budgets": []})
        assert (cfg.state, cfg.redis_url, cfg.uses_redis) == ("sqlite", None, False)


class TestScopeRule:
    @pytest.mark.parametrize("scope", ["session", "user", "tenant", "agent", "gen_ai.conversation.id", "session.id",
                                       "customer_id", "tenant.id", "my.org.team", "deployment.environment"])
    def test_accepted(self, scope):
        assert scope_problem(scope) is None


class TestWindows:
    def test_calendar_day_and_month_reset_at_midnight_utc(self):
        moment = dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC).timestamp()
        day, month = parse_window("1d").slot(moment), parse_window("1mo").slot(moment)
        assert (day.key, month.key) == ("2026-12-31", "2026-12")
        new_year = dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
        assert day.resets_at == month.resets_at == new_year
        assert parse_window("1mo").slot(dt.datetime(2027, 2, 10, tzinfo=dt.UTC).timestamp()).resets_at == \
            dt.datetime(2027, 3, 1, tzinfo=dt.UTC).timestamp()

    def test_rolling_windows_count_sixty_steps(self):
        window = parse_window("30m")
        slot = window.slot(3600.0)
        assert window.step == 30.0
        assert slot.bucket - slot.first_bucket == 59
        assert slot.resets_at is None
        assert slot.fired_ttl == 1800

    def test_session_never_resets(self):
        slot = parse_window("session").slot(1e9)
        assert (slot.expires, slot.resets_at) == (None, None)


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (scripts/test installs it)")
class TestRedisReachability:
    """validate says when nothing answers at the Redis URL (a warning: CI often cannot reach production)."""

    def _warnings(self, tmp_path, url: str) -> list[str]:
        path = tmp_path / "pipeline.yaml"
        path.write_text(textwrap.dedent(f"""\
            receivers: {{otlp: {{}}}}
            processors:
              cost:
              budget: {{budgets: [{{id: cap, scope: session, limit_usd: 1}}], state: "{url}", endpoint: null}}
            exporters: {{debug: {{}}}}
            service:
              pipelines:
                traces: {{receivers: [otlp], processors: [cost, budget], exporters: [debug]}}
            """))
        _config, found = check_config(path, environ={})
        return [str(p) for p in found if p.severity == "warning"]

    def test_an_unreachable_redis_is_named_without_its_password(self, tmp_path):
        port = free_port()
        [warning] = self._warnings(tmp_path, f"redis://:hunter2@127.0.0.1:{port}/3")
        assert f"cannot reach Redis at 127.0.0.1:{port}/3 now" in warning
        assert "hunter2" not in warning

    def test_a_running_redis_gives_no_warning(self, tmp_path):
        server = RedisServer(tmp_path, password="hunter2").start()
        try:
            assert self._warnings(tmp_path, server.url) == []
        finally:
            server.stop()
