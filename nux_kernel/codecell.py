"""Code cells, read without running them: the function, its typed inputs, params and imports.

A ``%%nux code`` cell holds a plain Python function. Its positional parameters name its inputs
(workbook inputs or upstream stages), its keyword-only parameters with defaults are params, its
annotations give the JSON schemas of its inputs and output. Leading ``#| key: value`` lines
(the cell-option convention of Quarto and nbdev) set stage options such as ``when``,
``resources`` and ``scale``.
"""

from __future__ import annotations

import ast
import builtins
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import TypeAdapter

from nux_runtime.errors import Problem

__all__ = ["CodeCell", "analyze_code", "annotation_schema", "load_options", "split_options"]

_TYPE_NAMESPACE: dict[str, Any] = {
    **{n: getattr(builtins, n) for n in ("str", "int", "float", "bool", "bytes", "list", "dict",
                                         "tuple", "set", "frozenset", "object", "type")},
    **{n: getattr(typing, n) for n in typing.__all__ if not n.startswith("_")},
    "None": None,
}


@dataclass
class CodeCell:
    """What the compiler needs from a code cell."""

    function: str
    inputs: list[str]
    params: dict[str, Any]
    input_schemas: dict[str, dict[str, Any]]
    output_schema: dict[str, Any]
    imports: list[tuple[str, int]] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)


def split_options(body: str) -> tuple[str, str, int]:
    """Split leading ``#|`` option lines from the code: (options YAML, code, option lines)."""
    lines = body.split("\n")
    options: list[str] = []
    for line in lines:
        if line.startswith("#|"):
            options.append(line[2:].removeprefix(" "))
        else:
            break
    return "\n".join(options), "\n".join(lines[len(options):]), len(options)


def annotation_schema(expression: str) -> dict[str, Any]:
    """JSON schema of a type annotation such as ``list[dict]`` (pydantic's own mapping)."""
    tp = eval(compile(expression, "<annotation>", "eval"), {"__builtins__": {}}, _TYPE_NAMESPACE)
    schema: dict[str, Any] = TypeAdapter(tp).json_schema()
    return schema


def _literal(node: ast.expr) -> Any:
    return ast.literal_eval(node)


def analyze_code(code: str, *, stage: str, cell: str, line_offset: int) -> CodeCell | list[Problem]:
    """Find the stage function in a code cell and read its signature (never executes it).

    ``line_offset`` is the cell line of the code's first line, for problem locations.
    """
    def at(lineno: int) -> int:
        return lineno + line_offset - 1

    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [Problem(
            code="code-syntax", message=f"syntax error: {exc.msg}",
            fix="fix the Python syntax in the cell", cell=cell, stage=stage,
            line=at(exc.lineno or 1),
        )]
    problems: list[Problem] = []
    imports: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.extend((alias.name, at(node.lineno)) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                problems.append(Problem(
                    code="code-import", message="relative imports are not allowed in a code cell",
                    fix="import by absolute module name", cell=cell, stage=stage,
                    line=at(node.lineno),
                ))
            elif node.module:
                imports.append((node.module, at(node.lineno)))
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    chosen = next((f for f in functions if f.name == stage), None)
    if chosen is None and len(functions) == 1:
        chosen = functions[0]
    if chosen is None:
        found = ", ".join(f.name for f in functions) or "none"
        problems.append(Problem(
            code="code-function",
            message=f"a code cell needs one function (named {stage!r} when there are several); "
                    f"found: {found}",
            fix=f"define `def {stage}(...) -> ...:` in the cell", cell=cell, stage=stage,
            line=at(1),
        ))
        return problems
    args = chosen.args
    if args.vararg or args.kwarg:
        problems.append(Problem(
            code="code-signature", message="*args and **kwargs cannot name inputs",
            fix="list each input as a parameter", cell=cell, stage=stage, line=at(chosen.lineno),
        ))
    positional = args.posonlyargs + args.args
    if args.defaults:
        problems.append(Problem(
            code="code-signature",
            message="inputs cannot have defaults; params are keyword-only",
            fix="put params after `*`, e.g. `def f(question: str, *, limit: int = 3)`",
            cell=cell, stage=stage, line=at(chosen.lineno),
        ))
    input_schemas: dict[str, dict[str, Any]] = {}
    for arg in positional:
        input_schemas[arg.arg] = _schema_of(arg.annotation, problems, stage, cell, at)
    params: dict[str, Any] = {}
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if default is None:
            problems.append(Problem(
                code="code-signature",
                message=f"param {arg.arg!r} needs a default value",
                fix=f"give it a default, e.g. `{arg.arg}: int = 3`",
                cell=cell, stage=stage, line=at(arg.lineno),
            ))
            continue
        try:
            params[arg.arg] = _literal(default)
        except ValueError:
            problems.append(Problem(
                code="code-signature",
                message=f"the default of param {arg.arg!r} must be a literal",
                fix="use a number, string, bool, list or dict literal",
                cell=cell, stage=stage, line=at(arg.lineno),
            ))
    output_schema = _schema_of(chosen.returns, problems, stage, cell, at)
    if problems:
        return problems
    return CodeCell(
        function=chosen.name, inputs=[a.arg for a in positional], params=params,
        input_schemas=input_schemas, output_schema=output_schema, imports=imports,
        lines={a.arg: at(a.lineno) for a in [*positional, *args.kwonlyargs]},
    )


def _schema_of(node: ast.expr | None, problems: list[Problem], stage: str, cell: str,
               at: typing.Callable[[int], int]) -> dict[str, Any]:
    if node is None:
        return {}
    text = ast.unparse(node)
    try:
        return annotation_schema(text)
    except Exception:  # eval of an unknown name, or a type pydantic cannot describe
        problems.append(Problem(
            code="code-annotation",
            message=f"the annotation `{text}` is not a type NUX can describe",
            fix="use builtin and typing types (str, int, list[dict], dict[str, float], ...)",
            cell=cell, stage=stage, line=at(node.lineno),
        ))
        return {}


def load_options(text: str, *, stage: str, cell: str, line_offset: int) -> dict[str, Any] | Problem:
    """Parse ``#|`` option lines as YAML."""
    if not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return Problem(
            code="yaml", message=f"the `#|` options are not valid YAML: {exc}",
            fix="write one `#| key: value` per line", cell=cell, stage=stage,
            line=line_offset + (mark.line if mark else 0),
        )
    if not isinstance(data, dict):
        return Problem(code="yaml", message="the `#|` options must be `key: value` lines",
                       fix="write one `#| key: value` per line", cell=cell, stage=stage,
                       line=line_offset)
    return data
