"""Re-exporting over a stack file the platform engineer has edited.

``Pulumi.<stack>.yaml`` starts as the export's defaults; then the platform engineer sets values
(``pulumi config set``), secrets (``secure:`` entries) and Pulumi adds an ``encryptionsalt``.
A re-export keeps that file as it is, line for line, and changes only what the export itself
changed: a setting whose value is still the previous export's default takes the new default, a
new setting is added with its default, and every change is reported. A value the platform engineer
set is never touched (the report says when the export's default moved under it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["merge_stack"]

_ENTRY = re.compile(r"^  (?P<key>[^\s#:][^\s:]*:[^\s:]+):(?:\s|$)")
_TOP = re.compile(r"^[^\s#]")


@dataclass
class _Entry:
    key: str
    start: int
    end: int  # exclusive
    doc: int  # first comment line above it (== start when none)


def _entries(lines: list[str]) -> tuple[dict[str, _Entry], int | None, int]:
    """The config entries, the index of the ``config:`` line, and where its block ends."""
    found: dict[str, _Entry] = {}
    config = next((i for i, line in enumerate(lines) if line.rstrip() == "config:"), None)
    if config is None:
        return found, None, len(lines)
    end = len(lines)
    for i in range(config + 1, len(lines)):
        if _TOP.match(lines[i]):
            end = i
            break
    i = config + 1
    while i < end:
        match = _ENTRY.match(lines[i])
        if not match:
            i += 1
            continue
        doc = i
        while doc - 1 > config and lines[doc - 1].startswith("  #"):
            doc -= 1
        j = i + 1
        while j < end and lines[j].startswith("   ") and not _ENTRY.match(lines[j]):
            j += 1
        found[match.group("key")] = _Entry(match.group("key"), i, j, doc)
        i = j
    while end - 1 > config and not lines[end - 1].strip():
        end -= 1
    return found, config, end


def _show(value: Any) -> str:
    if isinstance(value, Mapping) and "secure" in value:
        return "(secret)"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def merge_stack(existing: str, rendered: str, old_defaults: Mapping[str, Any] | None,
                new_defaults: Mapping[str, Any], project: str
                ) -> tuple[str, list[str]]:
    """The stack file to write over ``existing``, and what changed (one line each).

    ``rendered`` is the stack file this export writes for a new stack; ``old_defaults`` the
    settings the previous export wrote (None when unknown: then every existing value is kept).
    """
    try:
        parsed = yaml.safe_load(existing) or {}
    except yaml.YAMLError:
        return existing, [f"kept the stack file as it is: it is not valid YAML, so the new "
                          f"settings were not added ({', '.join(sorted(new_defaults))})"]
    current = parsed.get("config") or {} if isinstance(parsed, dict) else {}
    lines = existing.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    new_lines = rendered.splitlines(keepends=True)
    new_entries, _, _ = _entries(new_lines)
    entries, config, end = _entries(lines)
    changes: list[str] = []
    replaced: dict[int, list[str]] = {}
    added: list[str] = []
    for name, default in new_defaults.items():
        key = f"{project}:{name}"
        fresh = new_entries[key]
        if key not in entries:
            added += new_lines[fresh.doc:fresh.end]
            changes.append(f"added setting {name}: {_show(default)}")
            continue
        value = current.get(key) if isinstance(current, Mapping) else None
        if old_defaults is None or name not in old_defaults or old_defaults[name] == default:
            continue
        before = old_defaults[name]
        if value == before:
            entry = entries[key]
            replaced[entry.start] = new_lines[fresh.start:fresh.end]
            changes.append(f"setting {name}: {_show(before)} -> {_show(default)} (the "
                           "export's default changed)")
        else:
            changes.append(f"kept your setting {name}: {_show(value)} (the export's default "
                           f"is now {_show(default)})")
    for key in entries:
        name = key.partition(":")[2]
        if key.startswith(f"{project}:") and name not in new_defaults and not (
                isinstance(current, Mapping) and isinstance(current.get(key), Mapping)
                and "secure" in current[key]):
            changes.append(f"kept setting {name}, which this export no longer uses")
    skip = {i for entry in entries.values() if entry.start in replaced
            for i in range(entry.start + 1, entry.end)}
    out: list[str] = []
    for i, line in enumerate(lines):
        if config is not None and i == end and added:
            out += added
            added = []
        if i not in skip:
            out += replaced.get(i, [line])
    if added:
        if config is None:
            out.append("config:\n")
        out += added
    return "".join(out), changes
