"""Bounds on the user text NUX reads: YAML and JSON size, nesting and alias expansion.

Compiling, validating and exporting read notebooks that may come from anyone. PyYAML's safe
loader builds no objects of its own choosing, but an alias graph (nine nested anchors, each
repeating the one before it ten times) stands for billions of nodes, and deep nesting exhausts
the stack. :func:`load_yaml` walks the YAML event stream first, without building anything, and
refuses a document whose expanded size, nesting or length is past these limits; :func:`depth`
measures a parsed JSON value the same way.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = [
    "MAX_CELL_CHARS",
    "MAX_DEPTH",
    "MAX_NOTEBOOK_BYTES",
    "MAX_YAML_CHARS",
    "MAX_YAML_NODES",
    "TextLimitError",
    "depth",
    "load_yaml",
]

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024  # outputs (plots) included
MAX_CELL_CHARS = 256 * 1024  # one %%nux cell: a stage, not a data file
MAX_YAML_CHARS = 256 * 1024
MAX_YAML_NODES = 20_000  # after expanding every alias
MAX_DEPTH = 32  # nested mappings and lists, in YAML and in metadata.nux


class TextLimitError(ValueError):
    """User text past a limit; ``line`` is the 0-based line where it was found."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _check_events(text: str, max_nodes: int) -> None:
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = []  # [anchor, expanded size] of each open collection
    total = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line if event.start_mark else 0
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_DEPTH:
                raise TextLimitError(f"the YAML nests deeper than {MAX_DEPTH} levels", line)
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
            if anchor is not None:
                sizes[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in {frame[0] for frame in stack}:
                raise TextLimitError(f"the alias *{event.anchor} refers to itself", line)
            size = sizes.get(event.anchor or "", 1)  # an unknown anchor: the loader says so
        else:
            continue
        total += size
        if stack:
            stack[-1][1] += size
        if total > max_nodes or (stack and stack[-1][1] > max_nodes):
            raise TextLimitError(
                f"the YAML expands to more than {max_nodes} values (aliases repeat what "
                "their anchor holds)", line)


def load_yaml(text: str, *, max_chars: int = MAX_YAML_CHARS,
              max_nodes: int = MAX_YAML_NODES) -> Any:
    """``yaml.safe_load`` within the limits; raises :class:`TextLimitError` or ``YAMLError``."""
    if len(text) > max_chars:
        raise TextLimitError(f"the YAML is longer than {max_chars // 1024} KiB")
    _check_events(text, max_nodes)
    return yaml.safe_load(text)


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a JSON value, counted without recursion and stopping past ``limit``."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, level = todo.pop()
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        todo.extend((child, level + 1) for child in children)
    return deepest
