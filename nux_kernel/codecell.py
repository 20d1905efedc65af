"""Code cells, read without running them: the function, its typed inputs, params and imports.

A ``%%nux code`` cell holds a plain Python function. Its positional parameters name its inputs
(workbook inputs or upstream stages), its keyword-only parameters with defaults are params, its
annotations give the JSON schemas of its inputs and output. Leading ``#| key: value`` lines
(the cell-option convention of Quarto and nbdev) set stage options such as ``when``,
``resources`` and ``scale``.
"""

from __future__ import annotations

import ast
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import TypeAdapter

from nux_kernel.limits import TextLimitError, load_yaml
from nux_runtime.errors import Problem
from nux_runtime.sandbox import check_source

__all__ = [
    "ALLOWED_TYPES",
    "AnnotationError",
    "CodeCell",
    "analyze_code",
    "annotation_schema",
    "load_options",
    "split_options",
]

#: The closed set of names an annotation may use, bare or as ``typing.<name>``.
_PLAIN: dict[str, Any] = {
    "str": str, "int": int, "float": float, "bool": bool, "bytes": bytes, "object": object,
    "list": list, "dict": dict, "tuple": tuple, "set": set, "frozenset": frozenset,
    "Any": typing.Any, "List": list, "Dict": dict, "Tuple": tuple, "Set": set,
    "FrozenSet": frozenset, "Sequence": typing.Sequence, "Mapping": typing.Mapping,
}
_GENERIC = {"list", "dict", "tuple", "set", "frozenset", "List", "Dict", "Tuple", "Set",
            "FrozenSet", "Sequence", "Mapping"}
_SPECIAL = {"Optional", "Union", "Literal"}
ALLOWED_TYPES = ("str, int, float, bool, bytes, None, Any, list[...], dict[str, ...], "
                 "tuple[...], set[...], Optional[...], Union[...], X | Y, Literal[...] "
                 "(bare or as typing.List, typing.Dict, ...)")
_MAX_ANNOTATION_DEPTH = 16


class AnnotationError(ValueError):
    """An annotation outside the closed set of forms NUX reads."""


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


def _name(node: ast.expr) -> str | None:
    """``str`` or ``typing.List`` -> the plain name; anything else -> None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id in ("typing", "t"):
        return node.attr
    return None


def _type_of(node: ast.expr, level: int = 0) -> Any:
    """Build the type an annotation names from its syntax tree, never evaluating it."""
    if level > _MAX_ANNOTATION_DEPTH:
        raise AnnotationError("it nests too deeply")
    if isinstance(node, ast.Constant):
        if node.value is None:
            return None
        if isinstance(node.value, str) and len(node.value) < 1000:  # a quoted annotation
            try:
                inner = ast.parse(node.value.strip(), mode="eval").body
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                raise AnnotationError("the quoted annotation is not an expression") from None
            return _type_of(inner, level + 1)
        raise AnnotationError(f"{node.value!r} is not a type")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_type_of(node.left, level + 1), _type_of(node.right, level + 1)]  # noqa: UP007
    name = _name(node)
    if name is not None:
        if name == "None":
            return None
        if name in _PLAIN:
            return _PLAIN[name]
        raise AnnotationError(f"`{name}` is not one of the types NUX reads")
    if not isinstance(node, ast.Subscript):
        raise AnnotationError("only type names, X[...] and X | Y are read")
    base = _name(node.value)
    items = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    if base == "Literal":
        values: list[Any] = []
        for item in items:
            if not (isinstance(item, ast.Constant)
                    and (item.value is None or isinstance(item.value, str | int | bool))):
                raise AnnotationError("Literal[...] takes strings, numbers, booleans or None")
            values.append(item.value)
        return typing.Literal[tuple(values)]
    if base not in _GENERIC and base not in ("Optional", "Union"):
        raise AnnotationError(f"`{ast.unparse(node.value)}[...]` is not one of the forms NUX reads")
    args: list[Any] = []
    for item in items:
        if base in ("tuple", "Tuple") and isinstance(item, ast.Constant) \
                and item.value is Ellipsis:
            args.append(Ellipsis)
        else:
            args.append(_type_of(item, level + 1))
    if base == "Optional":
        if len(args) != 1:
            raise AnnotationError("Optional[...] takes one type")
        return typing.Optional[args[0]]  # noqa: UP045
    if base == "Union":
        return typing.Union[tuple(args)]  # noqa: UP007
    generic = _PLAIN[base]
    try:
        return generic[tuple(args)] if len(args) > 1 else generic[args[0]]
    except TypeError as exc:
        raise AnnotationError(str(exc)) from None


def annotation_schema(expression: str | ast.expr) -> dict[str, Any]:
    """JSON schema of a type annotation such as ``list[dict]``, read from its syntax tree.

    The annotation is never evaluated: only the closed set of forms in :data:`ALLOWED_TYPES` is
    read, built into the type it names and described by pydantic; anything else raises
    :class:`AnnotationError`.
    """
    if isinstance(expression, str):
        try:
            expression = ast.parse(expression.strip(), mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            raise AnnotationError("it is not an expression") from None
    tp = _type_of(expression)
    try:
        schema: dict[str, Any] = TypeAdapter(tp).json_schema()
    except Exception as exc:  # pydantic cannot describe the type (e.g. dict[list, str])
        raise AnnotationError(f"it has no JSON schema ({type(exc).__name__})") from None
    return schema


def _literal(node: ast.expr) -> Any:
    return ast.literal_eval(node)


def _dynamic_import(call: ast.Call) -> bool:
    """``__import__("os")`` or ``importlib.import_module("os")``: a module named in the text."""
    func = call.func
    named = (isinstance(func, ast.Name) and func.id == "__import__") or (
        isinstance(func, ast.Attribute) and func.attr == "import_module")
    return named and bool(call.args) and isinstance(call.args[0], ast.Constant) \
        and isinstance(call.args[0].value, str)


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
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        reason = "it holds NUL bytes" if isinstance(exc, ValueError) else "it nests too deeply"
        return [Problem(
            code="code-syntax", message=f"the cell is not Python source NUX can read: {reason}",
            fix="write the stage function as plain Python text", cell=cell, stage=stage,
            line=at(1),
        )]
    problems: list[Problem] = [
        Problem(code="code-sandbox", message=v.message, fix=v.fix, cell=cell, stage=stage,
                line=at(v.line))
        for v in check_source(tree)]
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
        elif isinstance(node, ast.Call) and _dynamic_import(node):
            # a dynamic import the text names; the sandbox refuses the others when they run
            imports.append((node.args[0].value, at(node.lineno)))  # type: ignore[attr-defined]
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
    try:
        return annotation_schema(node)
    except AnnotationError as exc:
        try:
            text = ast.unparse(node)
        except (RecursionError, ValueError):
            text = "..."
        text = text if len(text) <= 80 else text[:77] + "..."
        problems.append(Problem(
            code="code-annotation",
            message=f"the annotation `{text}` is not a type NUX can describe: {exc}",
            fix=f"annotate with {ALLOWED_TYPES}",
            cell=cell, stage=stage, line=at(node.lineno),
        ))
        return {}


def load_options(text: str, *, stage: str, cell: str, line_offset: int) -> dict[str, Any] | Problem:
    """Parse ``#|`` option lines as YAML."""
    if not text.strip():
        return {}
    try:
        data = load_yaml(text)
    except TextLimitError as exc:
        return Problem(
            code="yaml-limit", message=f"the `#|` options are refused: {exc.message}",
            fix="write one short `#| key: value` per line, without anchors and aliases",
            cell=cell, stage=stage, line=line_offset + exc.line,
        )
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
