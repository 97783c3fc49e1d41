"""YAML text -> :class:`Document`, with positions, and with duplicate keys as errors.

``yaml.safe_load`` forgets where values came from and silently keeps the last of two equal keys.
So we compose the node tree (SafeLoader) and build the data ourselves: mapping keys stay the
strings the user wrote (``on:`` is not ``True``), timestamps stay strings (JSON has no dates),
``<<`` merge keys work, and aliases are bounded so a "billion laughs" file cannot exhaust memory.

Nesting is bounded too: PyYAML composes recursively, so ``[[[[...]]]]`` a few hundred levels deep
would overflow Python's stack. The composer stops at :data:`MAX_DEPTH` with a position, and a
``RecursionError`` from anywhere in loading (a caller already deep in its stack) is still a problem.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from obs_pipeline.config.document import Document, JsonPath, Position, format_path
from obs_pipeline.errors import Problem

MAX_NODES = 200_000  # values built, aliases counted each time they are used
MAX_DEPTH = 100
_KEEP_AS_TEXT = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SHAPE = "a mapping with receivers, processors, exporters and service"
_TOO_DEEP = f"YAML is nested too deeply (more than {MAX_DEPTH} levels)"


class _LimitExceededError(Exception):
    """Too many or too deeply nested values: the file is hostile or broken."""

    def __init__(self, message: str, position: Position | None = None) -> None:
        super().__init__(message)
        self.position = position


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses to nest deeper than :data:`MAX_DEPTH` below the top."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = -1  # the top-level node is at depth 0, as in ``_Builder.build``

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        """Compose one node, or raise ``_LimitExceededError`` at the first node too deep."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # types-PyYAML leaves it untyped
                raise _LimitExceededError(_TOO_DEEP, (mark.line + 1, mark.column + 1))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _mark(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _yaml_error(exc: yaml.YAMLError, file: str) -> Problem:
    """A YAML syntax error as ``file:line:col: invalid YAML: ...``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if isinstance(exc, yaml.reader.ReaderError):
        # Raised for bytes YAML forbids (NUL, most control characters) before any mark exists.
        return Problem("", f"invalid YAML: unacceptable character #x{exc.character:04x}", file)
    if mark is None or problem is None:
        return Problem("", f"invalid YAML: {exc}", file)
    message = f"invalid YAML: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        where = f" that started at line {context_mark.line + 1}" if context_mark else ""
        message += f" ({context}{where})"
    return Problem("", message, file, mark.line + 1, mark.column + 1)


def _limit_problem(exc: _LimitExceededError, file: str) -> Problem:
    line, column = exc.position or (0, 0)
    return Problem("", str(exc), file, line, column)


def load_document(text: str, file: str) -> tuple[Document | None, list[tuple[JsonPath, Problem]]]:
    """Parse ``text``; return the document (None when nothing usable was read) and its problems.

    Problems that stop loading (syntax, empty file, not a mapping) come back with a None document;
    the others (duplicate keys, unknown tags) come with the document so later passes still run.
    """
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader checks the characters here
        root = loader.get_single_node()  # compose builds nodes only: no objects
    except yaml.YAMLError as exc:
        return None, [((), _yaml_error(exc, file))]
    except _LimitExceededError as exc:
        return None, [((), _limit_problem(exc, file))]
    except RecursionError:  # little stack left when we were called: no position is reliable
        return None, [((), Problem("", _TOO_DEEP, file, 1, 1))]
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        return None, [((), Problem("", f"the file is empty; expected {_SHAPE}", file))]
    if not isinstance(root, MappingNode):
        what = "a list" if isinstance(root, SequenceNode) else "a single value"
        line, column = _mark(root)
        return None, [((), Problem("", f"the top level must be {_SHAPE}, not {what}", file, line, column))]
    builder = _Builder(file)
    doc = Document(file, None)
    try:
        doc.data = builder.build(root, (), 0)
    except _LimitExceededError as exc:
        return None, [*builder.problems, ((), _limit_problem(exc, file))]
    except RecursionError:
        return None, [*builder.problems, ((), Problem("", _TOO_DEEP, file, *_mark(root)))]
    doc.value_pos, doc.key_pos = builder.value_pos, builder.key_pos
    return doc, builder.problems


class _Builder:
    """Walks the composed node tree, building data and recording positions by JSON path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.value_pos: dict[JsonPath, Position] = {}
        self.key_pos: dict[JsonPath, Position] = {}
        self.problems: list[tuple[JsonPath, Problem]] = []
        self._constructor = SafeConstructor()
        self._active: set[int] = set()  # nodes on the current path, to catch recursive aliases
        self._checked: set[int] = set()  # mappings already checked for duplicate keys
        self._count = 0

    def _problem(self, path: JsonPath, node: Node, message: str, *, at_key: bool = False) -> None:
        line, column = (at_key and self.key_pos.get(path)) or _mark(node)
        self.problems.append((path, Problem(format_path(path), message, self.file, line, column)))

    def build(self, node: Node, path: JsonPath, depth: int) -> Any:
        """Data for ``node`` at ``path``."""
        self._count += 1
        if self._count > MAX_NODES:
            raise _LimitExceededError(f"the file expands to more than {MAX_NODES} values (aliases?)", _mark(node))
        if depth > MAX_DEPTH:  # the composer stops this in the text; aliases can still nest deeper
            raise _LimitExceededError(_TOO_DEEP, _mark(node))
        self.value_pos.setdefault(path, _mark(node))
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._active:
            self._problem(path, node, "an alias refers to the value that contains it", at_key=True)
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(child, (*path, i), depth + 1) for i, child in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            return self._mapping(node, path, depth, set())
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: ScalarNode, path: JsonPath) -> Any:
        if node.tag in _KEEP_AS_TEXT:
            return node.value
        try:
            return self._constructor.construct_object(node, deep=True)
        except ConstructorError as exc:
            self._problem(path, node, f"unsupported YAML value: {exc.problem}")
            return node.value

    def _mapping(self, node: MappingNode, path: JsonPath, depth: int, skip: set[str]) -> dict[str, Any]:
        """Build a mapping; ``skip`` holds keys already set explicitly (merge sources lose to them)."""
        result: dict[str, Any] = {}
        seen: dict[str, Position] = {}
        merges: list[Node] = []
        report_duplicates = id(node) not in self._checked
        self._checked.add(id(node))
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.extend(value_node.value if isinstance(value_node, SequenceNode) else [value_node])
                continue
            if not isinstance(key_node, ScalarNode):
                self._problem(path, key_node, "a key must be a plain string, not a list or mapping")
                continue
            key = key_node.value
            if key in seen:
                if report_duplicates:
                    self._problem((*path, key), key_node, f'duplicate key "{key}" (first defined at line {seen[key][0]})')
                continue
            seen[key] = _mark(key_node)
            if key in skip:
                continue
            self.key_pos[(*path, key)] = seen[key]
            result[key] = self.build(value_node, (*path, key), depth + 1)
        for source in merges:
            if not isinstance(source, MappingNode):
                self._problem(path, source, "a merge key (<<) must refer to a mapping")
                continue
            merged = self._mapping(source, path, depth + 1, skip | set(result))
            for key, value in merged.items():
                result.setdefault(key, value)
        return result
