"""YAML with limits: configuration files come from operators, git pushes and control planes, so
a file must not be able to stall the process or exhaust its memory.

PyYAML's safe loader refuses arbitrary objects but nothing else. Three shapes still hurt:
- size: parsing is pure Python (about 2 MB/s), and the parsed tree costs tens of bytes per byte;
- depth: composing recurses per level, so a few thousand `[` end in a RecursionError;
- aliases: `*a` shares a node, so a few hundred bytes of nested aliases describe a tree of
  millions of leaves that every later walk (protobuf parsing, validation) expands; an alias inside
  its own anchor makes a cycle that no walk finishes.
Each limit is checked while composing, before anything is constructed, and an over-limit file is
a `YAMLLimitError` (a `yaml.YAMLError`, so callers' existing handling names the file and line).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, SequenceNode


@dataclass(frozen=True, slots=True)
class YamlLimits:
    max_bytes: int = 16 * 1024 * 1024
    # Envoy's deepest real configs (a route's typed_per_filter_config in a listener's filter
    # chain) nest about 30 levels; a Struct payload may add some.
    max_depth: int = 128
    # Nodes that aliases add beyond the document's own (a template reused a thousand times is
    # well within it; a "billion laughs" document is not).
    max_alias_nodes: int = 100_000


LIMITS = YamlLimits()


class YAMLLimitError(ComposerError):
    """A document over one of the limits; `str()` is PyYAML's `problem` + mark format."""


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: io.StringIO, limits: YamlLimits) -> None:
        super().__init__(stream)
        self.limits = limits
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > self.limits.max_depth:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YAMLLimitError(
                    None, None, f"nested deeper than {self.limits.max_depth} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_aliases(node, self.limits.max_alias_nodes)
        return self.construct_document(node)


def _check_aliases(root: Node, budget: int) -> None:
    """Refuse a cycle, or more than `budget` nodes added by expanding shared (aliased) nodes.

    The expanded size of each node is computed once (post-order, iteratively: the document may
    be as deep as `max_depth`, and Python's recursion is not the place to find out).
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    distinct = 0
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
            continue
        if key in size:
            continue
        if key in on_path:
            raise YAMLLimitError(
                None, None, "an alias refers to a node that contains it (a cycle)", node.start_mark
            )
        distinct += 1
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise YAMLLimitError(
                    None,
                    None,
                    "an alias refers to a node that contains it (a cycle)",
                    child.start_mark,
                )
            if id(child) not in size:
                stack.append((child, False))
    added = size[id(root)] - distinct
    if added > budget:
        raise YAMLLimitError(
            None,
            None,
            f"aliases expand the document by {added} nodes (more than {budget})",
            root.start_mark,
        )


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml(text: str, source: str, limits: YamlLimits = LIMITS) -> Any:
    """YAML (or JSON, a subset) whose errors name `source`, not `<unicode string>`."""
    if len(text) > limits.max_bytes:  # characters, a lower bound on bytes
        raise YAMLLimitError(None, None, _too_large(limits), None)
    stream = io.StringIO(text)
    stream.name = source  # PyYAML's marks take the stream's name
    loader = _BoundedLoader(stream, limits)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_error(exc: yaml.YAMLError, source: str) -> str:
    """One line: `file:line:column: invalid YAML: problem (context)`, or for a document over a
    limit `file:line:column: problem`."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    if isinstance(exc, YAMLLimitError):
        return f"{where}: {problem}"
    return f"{where}: invalid YAML: {problem}" + (f" ({context})" if context else "")


def read_text(path: Path, limits: YamlLimits = LIMITS) -> str:
    """A config file's text, refusing one over the size limit before reading it.

    Raises OSError, UnicodeDecodeError or `YAMLLimitError`.
    """
    with path.open("rb") as file:
        data = file.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise YAMLLimitError(None, None, _too_large(limits), None)
    return data.decode("utf-8")


def _too_large(limits: YamlLimits) -> str:
    return f"larger than {_size(limits.max_bytes)}, the limit for a config file"


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} bytes"
