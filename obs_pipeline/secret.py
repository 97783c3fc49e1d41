"""``Secret``: a config value that must never be printed, logged, pickled or serialized by accident.

The config layer wraps every value at a schema path marked ``"x-secret": true`` before a
component's ``parse`` sees it, so a token or header value reaches component code only as a
``Secret``; the component calls :meth:`Secret.reveal` at the one place it needs the text (an
``Authorization`` header). After the collector's ``configopaque.String``.

It is deliberately not a ``str`` subclass (STYLE rule 15 says ``Secret(str)``): a ``str``
subclass leaks through every path that bypasses ``__str__``/``__repr__`` (``"%s" % s`` on some
paths, ``s + ""``, ``s.upper()``, ``json.dumps(s)``, ``s.encode()``, slicing), so each would print
the value. Here nothing but ``reveal`` yields the text.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["REDACTED", "Secret"]

REDACTED = "[REDACTED]"


class Secret:
    """A secret string: shows as ``[REDACTED]``, equal by value, hashable, refuses pickling.

    JSON encoders refuse it too (it is not a ``str``), so it cannot end up in a report.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The secret text; call it only where the value is sent, never where it is shown."""
        return self._value

    def __repr__(self) -> str:
        return REDACTED

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return format(REDACTED, format_spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        """Whether a value is set: an empty token means "send none" in several schemas."""
        return bool(self._value)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled; reveal() it explicitly where it must travel")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self
