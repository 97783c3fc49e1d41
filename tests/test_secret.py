"""``Secret``: nothing but ``reveal()`` gives its text."""

from __future__ import annotations

import copy
import json
import logging
import pickle

import pytest

from obs_pipeline.secret import REDACTED, Secret


class TestSecret:
    def test_every_way_of_printing_it_is_redacted(self):
        """repr, str, f-strings (with a format spec), %-formatting and containers all show [REDACTED]."""
        secret = Secret("hunter2")
        shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret, "%r" % secret,  # noqa: UP031
                 "{}".format(secret), repr({"token": secret}), repr([secret]), f"{secret:>12}"]  # noqa: UP032
        assert all("hunter2" not in text for text in shown)
        assert shown[:6] == [REDACTED] * 6
        assert shown[-1] == f"{REDACTED:>12}"

    def test_reveal_gives_the_text(self):
        """The one way to the value, for the place that sends it."""
        assert Secret("hunter2").reveal() == "hunter2"

    def test_equal_by_value_and_hashable(self):
        """Two parses of the same config compare equal, and a Secret can be a dict key or set member."""
        assert Secret("a") == Secret("a")
        assert Secret("a") != Secret("b")
        assert Secret("a") != "a"  # never equal to the bare text: no accidental comparisons with str
        assert len({Secret("a"), Secret("a"), Secret("b")}) == 2

    def test_truthiness_is_whether_it_is_set(self):
        """An empty token means "send none" in several schemas."""
        assert not Secret("")
        assert Secret("x")

    def test_refuses_pickle_and_json(self):
        """It cannot leave the process by accident."""
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with pytest.raises(TypeError):
                pickle.dumps(Secret("hunter2"), protocol=protocol)
        with pytest.raises(TypeError):
            json.dumps({"token": Secret("hunter2")})

    def test_copies_are_itself_and_it_is_immutable(self):
        """deepcopy of a config keeps working; the value cannot be swapped afterwards."""
        secret = Secret("hunter2")
        assert copy.deepcopy({"t": secret})["t"] is secret
        assert copy.copy(secret) is secret
        with pytest.raises(AttributeError):
            secret._value = "other"  # type: ignore[misc]
        with pytest.raises(TypeError):
            Secret(123)  # type: ignore[arg-type]

    def test_not_a_str(self):
        """str methods, concatenation and encoding, which would bypass __str__, are not there."""
        secret = Secret("hunter2")
        assert not isinstance(secret, str)
        with pytest.raises(TypeError):
            _ = secret + ""  # type: ignore[operator]
        assert not hasattr(secret, "encode")

    def test_logging_shows_redacted(self, caplog: pytest.LogCaptureFixture):
        """A log call with the secret as an argument prints [REDACTED]."""
        with caplog.at_level(logging.INFO):
            logging.getLogger("test").info("token %s, %r", Secret("hunter2"), Secret("hunter2"))
        assert "hunter2" not in caplog.text
        assert REDACTED in caplog.text
