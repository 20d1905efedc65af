"""Data written for people: YAML with a comment on each value, Python string literals.

PyYAML writes no comments, and ``workbook.yaml`` says beside each value which notebook cell it
came from, so :func:`yaml_text` writes the block layout itself: one key or item per line, two
spaces per level, strings as JSON strings (valid YAML) unless they are plain words. A comment
goes at the end of its value's line, or on its own line above when that line would pass 100
characters, and always above a list item. ``yaml.safe_load`` reads back exactly the value
written (a test holds that).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Path", "python_string", "yaml_text"]

LINE_LENGTH = 100
Path = tuple[str | int, ...]
# A string YAML reads back as the same string without quotes.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_SPECIAL = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan",
                      "inf"})
# What YAML may hold unescaped inside double quotes.
_PRINTABLE = re.compile("[\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


def python_string(value: str) -> str:
    """A string literal in ruff's preferred quotes."""
    if '"' in value and "'" not in value:
        return repr(value) if repr(value).startswith("'") else "'" + repr(value)[1:-1] + "'"
    body = repr(value)
    if body.startswith('"'):
        return body
    return '"' + body[1:-1].replace("\\'", "'").replace('"', '\\"') + '"'


def _scalar(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _SPECIAL:
            return value
        return json.dumps(value, ensure_ascii=not _PRINTABLE.fullmatch(value))
    if isinstance(value, Mapping | list | tuple) and not value:
        return "{}" if isinstance(value, Mapping) else "[]"
    return None


def _float(value: float) -> str:
    """A float as YAML 1.1 reads one: ``.inf``, ``.nan``, a dot before any exponent."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text and "." not in text:
        text = text.replace("e", ".0e")
    return text


def _line(text: str, comment: str | None, pad: str, out: list[str]) -> None:
    """``text`` with its comment at the end, or on lines above when that is too long."""
    if comment is None:
        out.append(text)
    elif len(text) + 4 + len(comment) <= LINE_LENGTH:
        out.append(f"{text}  # {comment}")
    else:
        out += _above(comment, pad)
        out.append(text)


def _above(comment: str, pad: str) -> list[str]:
    return [f"{pad}# {comment}"]  # one line, however long: a search finds it whole


def _block(value: Mapping[str, Any] | Sequence[Any], indent: int,
           comments: Mapping[Path, str], path: Path, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = (*path, key)
            head = f"{pad}{_scalar(str(key))}:"
            text = _scalar(item)
            if text is not None:
                _line(f"{head} {text}", comments.get(here), pad, out)
            else:
                _line(head, comments.get(here), pad, out)
                _block(item, indent + 2, comments, here, out)
        return
    for index, item in enumerate(value):
        here = (*path, index)
        if here in comments:
            out += _above(comments[here], pad)
        text = _scalar(item)
        if text is not None:
            out.append(f"{pad}- {text}")
            continue
        start = len(out)
        _block(item, indent + 2, comments, here, out)
        out[start] = f"{pad}- {out[start][indent + 2:]}"


def yaml_text(value: Mapping[str, Any], comments: Mapping[Path, str] | None = None) -> str:
    """``value`` (dicts, lists, scalars) as block YAML; ``comments`` maps the path of a value
    (its keys and indexes) to the comment written beside it."""
    out: list[str] = []
    _block(value, 0, comments or {}, (), out)
    return "\n".join(out) + "\n"
