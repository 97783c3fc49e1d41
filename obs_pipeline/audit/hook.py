"""The seam where each serialized line is sealed before it is written: the hash chain's.

With ``hash_chain: true`` (DESIGN §5) each line gains ``seq``, ``prev_hash`` and ``hash``
(:class:`obs_pipeline.audit.chain.HashChain`, a :class:`LineHook`): a function of the line and of
the lines before it, so it must run in write order, after the line is serialized and before it
reaches the file. :func:`seal_all` is where the writer applies it; the default, :data:`NO_HOOK`,
costs nothing (the lines are not even copied).
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

__all__ = ["NO_HOOK", "LineHook", "NoHook", "seal_all"]


@runtime_checkable
class LineHook(Protocol):
    """Turns each serialized audit line (no newline) into the line to write, in write order."""

    def seal(self, line: bytes) -> bytes:
        """The line to write in place of ``line``; called once per line, in file order."""
        ...


class NoHook:
    """Writes every line as it is."""

    def seal(self, line: bytes) -> bytes:
        """``line`` unchanged."""
        return line


NO_HOOK: Final = NoHook()


def seal_all(hook: LineHook, lines: list[bytes]) -> list[bytes]:
    """``lines`` through ``hook``, in order (``lines`` itself for :data:`NO_HOOK`)."""
    if hook is NO_HOOK:
        return lines
    seal = hook.seal
    return [seal(line) for line in lines]
