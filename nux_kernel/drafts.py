"""Stage drafts: one ``%%nux`` cell read into plain data, with the line of every key.

A draft is what a cell says, before the catalog and the graph are consulted. Model and data
cells have a YAML body; code cells hold a Python function with optional ``#|`` option lines (or a
YAML body naming a code-kind catalog component such as ``text.template``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from nux_kernel.codecell import analyze_code, load_options, split_options
from nux_kernel.limits import MAX_CELL_CHARS, TextLimitError, load_yaml
from nux_runtime.errors import Problem
from nux_runtime.spec import Origin

__all__ = ["STAGE_KEYS", "Draft", "read_draft"]

STAGE_KEYS = (
    "uses", "inputs", "params", "tune", "when", "resources", "scale", "timeout_s", "retries",
    "fallback", "description",
)
CODE_OPTION_KEYS = tuple(k for k in STAGE_KEYS if k not in ("uses", "inputs", "params"))
_USES_LINE = re.compile(r"^\s*uses\s*:")


@dataclass
class Draft:
    """A stage as its cell wrote it; ``lines`` maps key paths to 1-based cell lines."""

    stage: str
    kind: str
    cell: str
    uses: str
    inputs: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    tune: dict[str, Any] = field(default_factory=dict)
    when: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    function: str | None = None
    input_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_schema: dict[str, Any] = field(default_factory=dict)
    imports: list[tuple[str, int]] = field(default_factory=list)
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    #: Problems that leave the rest of the cell readable (an unknown key): reported beside
    #: whatever the later checks find in the same cell, not instead of it.
    problems: list[Problem] = field(default_factory=list)

    def line(self, *path: str) -> int:
        """The line of the deepest known key on ``path`` (the header line when none is)."""
        for depth in range(len(path), 0, -1):
            if path[:depth] in self.lines:
                return self.lines[path[:depth]]
            below = [ln for key, ln in self.lines.items() if key[:depth] == path[:depth]]
            if below:
                return min(below)
        return 1

    def origin(self) -> Origin:
        return Origin(cell=self.cell, line=1)

    def problem(self, code: str, message: str, fix: str, *path: str, field_name: str | None = None
                ) -> Problem:
        return Problem(code=code, message=message, fix=fix, cell=self.cell, stage=self.stage,
                       line=self.line(*path) if path else 1, field=field_name)


def _key_fix(key: str, known: tuple[str, ...], lead: str = "use one of") -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"{lead}: {', '.join(known)}"


def _key_lines(text: str, offset: int) -> dict[tuple[str, ...], int]:
    """Lines of the top-level keys of a YAML mapping and of the keys one level below."""
    lines: dict[tuple[str, ...], int] = {}
    node = yaml.compose(text) if text.strip() else None
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        lines[(key.value,)] = key.start_mark.line + offset
        if isinstance(value, yaml.MappingNode):
            for sub, _ in value.value:
                if isinstance(sub, yaml.ScalarNode):
                    lines[(key.value, sub.value)] = sub.start_mark.line + offset
    return lines


def _yaml_draft(stage: str, kind: str, cell: str, text: str, offset: int) -> Draft | list[Problem]:
    def fail(message: str, fix: str, line: int) -> list[Problem]:
        return [Problem(code="yaml", message=message, fix=fix, cell=cell, stage=stage, line=line)]

    try:
        data = load_yaml(text)
        lines = _key_lines(text, offset)
    except TextLimitError as exc:
        return [Problem(code="yaml-limit", message=f"the cell body is refused: {exc.message}",
                        fix="write the stage's settings out plainly, without anchors and aliases",
                        cell=cell, stage=stage, line=offset + exc.line)]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        return fail(f"the cell body is not valid YAML: {reason}",
                    "fix the indentation or quoting on that line (see docs/workbook-format.md)",
                    offset + (mark.line if mark else 0))
    if data is None:
        return fail("the cell is empty", f"add at least `uses: <component>` below `%%nux {kind} "
                    f"{stage}`", 1)
    if not isinstance(data, dict):
        return fail("the cell body must be a YAML mapping (`key: value` lines)",
                    "start with `uses: <component id>`", offset)
    problems: list[Problem] = []
    draft = Draft(stage=stage, kind=kind, cell=cell, uses="", lines=lines)
    for key in data:
        if key not in STAGE_KEYS:
            draft.problems.append(draft.problem(
                "unknown-key", f"unknown key {key!r}", _key_fix(str(key), STAGE_KEYS),
                str(key)))
    uses = data.get("uses")
    if not isinstance(uses, str) or not uses:
        problems.append(draft.problem("uses", "the cell names no component",
                                      "add `uses: <component id>` (see `nux catalog`)", "uses"))
    else:
        draft.uses = uses
    inputs = data.get("inputs", [])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        problems.append(draft.problem("inputs", "`inputs` must be a list of names",
                                      "write `inputs: [question, context]`", "inputs"))
    else:
        draft.inputs = list(inputs)
    for key in ("params", "tune"):
        value = data.get(key, {}) or {}
        if not isinstance(value, dict):
            problems.append(draft.problem(key, f"`{key}` must be a mapping",
                                          f"write `{key}: {{name: value}}`", key))
            value = {}
        setattr(draft, key, {str(k): v for k, v in value.items()})
    _read_options(draft, data, problems)
    return draft.problems + problems if problems else draft


def _read_options(draft: Draft, data: dict[str, Any], problems: list[Problem]) -> None:
    when = data.get("when")
    if when is not None and not isinstance(when, str | bool):
        problems.append(draft.problem("when", "`when` must be an expression string",
                                      "write e.g. `when: \"route == 'hard'\"`", "when"))
    elif when is not None:
        draft.when = str(when)
    draft.options = {k: data[k] for k in ("resources", "scale", "timeout_s", "retries", "fallback",
                                          "description") if k in data}


def read_draft(stage: str, kind: str, cell: str, body: str) -> Draft | list[Problem]:
    """Read one cell's body (below its ``%%nux`` header, which is line 1)."""
    if len(body) > MAX_CELL_CHARS:
        return [Problem(code="cell-size",
                        message=f"the cell is longer than {MAX_CELL_CHARS // 1024} KiB",
                        fix="keep data in a file or a data stage, not in the cell",
                        cell=cell, stage=stage, line=1)]
    if kind != "code":
        return _yaml_draft(stage, kind, cell, body, offset=2)
    option_text, code, n_options = split_options(body)
    if _USES_LINE.match(next((ln for ln in code.split("\n") if ln.strip()), "")):
        if n_options:
            return [Problem(code="yaml", message="a YAML code cell takes its options in the YAML",
                            fix="move the `#|` lines into the YAML body", cell=cell, stage=stage,
                            line=2)]
        return _yaml_draft(stage, kind, cell, body, offset=2)
    options = load_options(option_text, stage=stage, cell=cell, line_offset=2)
    if isinstance(options, Problem):
        return [options]
    draft = Draft(stage=stage, kind=kind, cell=cell, uses="code")
    draft.lines = {(k,): 2 + i for i, ln in enumerate(option_text.split("\n"))
                   for k in [ln.split(":", 1)[0].strip()] if k}
    problems: list[Problem] = []
    for key in options:
        if key not in CODE_OPTION_KEYS:
            draft.problems.append(draft.problem(
                "unknown-key", f"unknown `#|` option {key!r}",
                _key_fix(str(key), CODE_OPTION_KEYS, "code cells take"), str(key)))
    analyzed = analyze_code(code, stage=stage, cell=cell, line_offset=2 + n_options)
    if isinstance(analyzed, list):
        return draft.problems + problems + analyzed
    draft.source = code.strip("\n") + "\n"
    draft.function = analyzed.function
    draft.inputs = analyzed.inputs
    draft.params = analyzed.params
    draft.input_schemas = analyzed.input_schemas
    draft.output_schema = analyzed.output_schema
    draft.imports = analyzed.imports
    for name, line in analyzed.lines.items():
        key = "inputs" if name in analyzed.inputs else "params"
        draft.lines[(key, name)] = line
    tune = options.get("tune", {}) or {}
    if not isinstance(tune, dict):
        problems.append(draft.problem("tune", "`tune` must be a mapping",
                                      "write `#| tune: {limit: {int: [1, 8]}}`", "tune"))
    else:
        draft.tune = {str(k): v for k, v in tune.items()}
    _read_options(draft, options, problems)
    return draft.problems + problems if problems else draft
