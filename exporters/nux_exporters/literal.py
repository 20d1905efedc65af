"""Python literals written the way ``ruff format`` writes them, with a comment on each value.

Collections are always expanded one item per line with a trailing comma (ruff keeps that
layout), strings take double quotes unless that needs more escapes, and a comment goes at the
end of its line when the line stays within the limit, on its own line above otherwise.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LINE_LENGTH", "Code", "comment_lines", "python_literal", "python_string"]

LINE_LENGTH = 100
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Code:
    """An expression written as is (a call, a name) where a value would go."""

    text: str


def python_string(value: str) -> str:
    """A string literal in ruff's preferred quotes."""
    if '"' in value and "'" not in value:
        return repr(value) if repr(value).startswith("'") else "'" + repr(value)[1:-1] + "'"
    body = repr(value)
    if body.startswith('"'):
        return body
    return '"' + body[1:-1].replace("\\'", "'").replace('"', '\\"') + '"'


def _scalar(value: Any) -> str | None:
    if isinstance(value, Code):
        return value.text
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return python_string(value)
    if isinstance(value, Mapping | list | tuple) and not value:
        return "{}" if isinstance(value, Mapping) else "[]"
    return None


def comment_lines(comment: str, pad: str) -> list[str]:
    """``# comment`` lines above a value, wrapped at the line limit."""
    width = max(40, LINE_LENGTH - len(pad) - 2)
    return [f"{pad}# {part}" for part in textwrap.wrap(comment, width)]


def _with_comment(line: str, comment: str | None, pad: str, out: list[str]) -> None:
    if comment is None:
        out.append(line)
    elif len(line) + 4 + len(comment) <= LINE_LENGTH:
        out.append(f"{line}  # {comment}")
    else:
        out += comment_lines(comment, pad)
        out.append(line)


def _items(value: Any, level: int, comments: Mapping[Path, str], path: Path,
           out: list[str]) -> None:
    pad = "    " * level
    entries: Sequence[tuple[Any, Any]]
    entries = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
    for key, item in entries:
        here = (*path, key)
        prefix = f"{python_string(str(key))}: " if isinstance(value, Mapping) else ""
        comment = comments.get(here)
        text = _scalar(item)
        if text is not None:
            _with_comment(f"{pad}{prefix}{text},", comment, pad, out)
            continue
        if comment is not None:
            out += comment_lines(comment, pad)
        opener = "{" if isinstance(item, Mapping) else "["
        closer = "}" if isinstance(item, Mapping) else "]"
        out.append(f"{pad}{prefix}{opener}")
        _items(item, level + 1, comments, here, out)
        out.append(f"{pad}{closer},")


def python_literal(value: Any, *, level: int = 0,
                   comments: Mapping[Path, str] | None = None) -> str:
    """``value`` (dicts, lists, scalars, :class:`Code`) as formatted Python source.

    ``comments`` maps a path of keys/indexes to the comment for the value at that path; the
    first line has no indentation (it follows ``NAME = ``), the rest is indented ``level``.
    """
    text = _scalar(value)
    if text is not None:
        return text
    out: list[str] = ["{" if isinstance(value, Mapping) else "["]
    _items(value, level + 1, comments or {}, (), out)
    out.append("    " * level + ("}" if isinstance(value, Mapping) else "]"))
    return "\n".join(out)
