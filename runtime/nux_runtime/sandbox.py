"""What a code stage's function may reach: the catalog's import allow-list and withheld builtins.

A ``%%nux code`` cell runs with its own ``__builtins__``, in ``nux run``, the magics, tuning and
the served app alike (all go through :class:`~nux_runtime.components.code.CodeStage`):

- ``import`` and ``__import__`` give only the modules on the allow-list and their submodules,
  seen through a view that refuses their private names, any module they hold that is not on
  the list (``typing.sys``), and the few functions that evaluate strings or fetch attributes by
  name (``typing.get_type_hints``, ``operator.attrgetter``, ...);
- the builtins that would undo these checks (``exec``, ``eval``, ``compile``, ``globals``,
  ``locals``, ``vars``, ``breakpoint``) are always withheld, and the catalog withholds more
  (``open``, ``input``, ...); ``getattr``, ``setattr`` and ``delattr`` refuse what the syntax
  check refuses;
- the source is checked before it runs (:func:`check_source`, also run by the compiler): no
  dunder attribute outside a short list of harmless ones (``__name__``, ``__init__``, ...), no
  frame, code or traceback internals (``gi_frame``, ``f_globals``, ``tb_frame``, ...);
  ``str.format`` is checked when called, so a format string cannot read attributes either.

This is a policy guard for vetted, reviewed code, not an operating-system sandbox: a stage
runs in the workbook's own process (a worker, a Ray replica), and that process is the
isolation boundary.
"""

from __future__ import annotations

import ast
import builtins
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import CodeType, ModuleType
from typing import Any

__all__ = [
    "ALWAYS_WITHHELD",
    "ImportRefused",
    "Refused",
    "Violation",
    "check_source",
    "load_function",
]

#: Withheld from every code stage, whatever the catalog says: each would undo the other checks.
ALWAYS_WITHHELD = frozenset(
    {"exec", "eval", "compile", "globals", "locals", "vars", "breakpoint"})
_SAFE_DUNDERS = frozenset({
    "__name__", "__qualname__", "__doc__", "__module__", "__class__", "__init__", "__post_init__",
    "__new__",
    "__enter__", "__exit__", "__iter__", "__next__", "__len__", "__contains__", "__getitem__",
    "__setitem__", "__delitem__", "__call__", "__repr__", "__str__", "__eq__", "__ne__",
    "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__bool__",
})
_INTERNALS = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "cr_origin",
    "ag_frame", "ag_code", "ag_await", "f_back", "f_builtins", "f_code", "f_globals",
    "f_locals", "f_trace", "tb_frame", "tb_next", "co_code", "co_consts", "co_names",
})
#: Functions of allow-listed modules that evaluate strings or fetch attributes by name.
_WITHHELD_FROM_MODULES: Mapping[str, frozenset[str]] = {
    "typing": frozenset({"get_type_hints", "ForwardRef", "evaluate_forward_ref"}),
    "operator": frozenset({"attrgetter", "methodcaller"}),
    "functools": frozenset({"singledispatch", "singledispatchmethod"}),
    "string": frozenset({"Formatter"}),
}
_FORMAT = "__nux_format__"


class Refused(Exception):
    """The code reached for something the sandbox withholds."""


class ImportRefused(Refused, ImportError):
    """An import outside the allow-list (also an ``ImportError``, for ``try: import``)."""


@dataclass(frozen=True)
class Violation:
    """A construct the syntax check refuses, at a line of the checked source."""

    line: int
    message: str
    fix: str


def _attribute_problem(name: str) -> str | None:
    if name.startswith("__") and name.endswith("__") and name not in _SAFE_DUNDERS:
        return f"the attribute `.{name}` is not allowed in a code cell"
    if name in _INTERNALS:
        return f"the interpreter internal `.{name}` is not allowed in a code cell"
    return None


def check_source(tree: ast.AST) -> list[Violation]:
    """Every construct of a parsed cell the sandbox refuses (none: the cell may run)."""
    found: list[Violation] = []
    fix = ("use the values themselves; dunder attributes other than __name__, __doc__, "
           "__init__, ... and interpreter internals are refused")
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.MatchClass):
            names = list(node.kwd_attrs)
        elif isinstance(node, ast.Name) and node.id.startswith("__nux"):
            found.append(Violation(node.lineno, f"the name `{node.id}` is reserved by NUX",
                                   "rename it"))
        for name in names:
            message = _attribute_problem(name)
            if message:
                found.append(Violation(getattr(node, "lineno", 1), message, fix))
    return found


def _allowed(module: str, allow: Iterable[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allow)


def _check_format(template: str) -> None:
    todo = [template]
    while todo:
        for _, field, spec, _ in string.Formatter().parse(todo.pop()):
            if field is not None and "." in field:
                raise Refused(f"the format field {{{field}}} reads an attribute; format "
                              "strings in a code cell may name arguments and indexes only "
                              "(use an f-string)")
            if spec:
                todo.append(spec)


class _Guard:
    """The builtins and module views of one code stage."""

    def __init__(self, stage: str, allow: tuple[str, ...], withhold: frozenset[str]) -> None:
        self.stage = stage
        self.allow = allow
        self.withhold = withhold
        self.views: dict[str, Any] = {}

    def builtins(self) -> dict[str, Any]:
        table = dict(vars(builtins))
        for name in self.withhold:
            table[name] = self._withheld(name)
        table.update({"__import__": self.import_, "getattr": self.getattr,
                      "setattr": self.setattr, "delattr": self.delattr, _FORMAT: self.format})
        for name in ("help", "exit", "quit", "copyright", "credits", "license"):
            table.pop(name, None)
        return table

    def _withheld(self, name: str) -> Callable[..., Any]:
        def withheld(*_args: Any, **_kwargs: Any) -> Any:
            raise Refused(f"the builtin `{name}` is withheld from code cells by the catalog")
        withheld.__name__ = withheld.__qualname__ = name
        return withheld

    def view(self, module: ModuleType) -> Any:
        """The module as the cell sees it (one view per module)."""
        name = module.__name__
        if name in self.views:
            return self.views[name]
        guard = self
        hidden = _WITHHELD_FROM_MODULES.get(name, frozenset())

        class ModuleView:
            __slots__ = ()

            def __getattr__(self, attr: str) -> Any:
                if attr.startswith("_") and attr not in ("__name__", "__doc__"):
                    raise Refused(f"`{name}.{attr}` is private to the module")
                if attr in hidden:
                    raise Refused(f"`{name}.{attr}` is withheld from code cells (it evaluates "
                                  "strings or reads attributes by name)")
                try:
                    value = getattr(module, attr)
                except AttributeError:
                    raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None
                if isinstance(value, ModuleType):
                    if not _allowed(value.__name__, guard.allow):
                        raise ImportRefused(f"`{name}.{attr}` is the module `{value.__name__}`, "
                                            "which is not on the catalog's import allow-list")
                    return guard.view(value)
                return value

            def __setattr__(self, attr: str, value: Any) -> None:
                raise Refused(f"a code cell cannot change the module `{name}`")

            def __delattr__(self, attr: str) -> None:
                raise Refused(f"a code cell cannot change the module `{name}`")

            def __dir__(self) -> list[str]:
                return [n for n in dir(module) if not n.startswith("_") and n not in hidden]

            def __repr__(self) -> str:
                return f"<module {name!r}>"

        view = ModuleView()
        self.views[name] = view
        return view

    def import_(self, name: str, globals: Any = None, locals: Any = None,
                fromlist: Any = (), level: int = 0) -> Any:
        if level:
            raise ImportRefused("relative imports are not allowed in a code cell")
        if not isinstance(name, str) or not _allowed(name, self.allow):
            shown = ", ".join(self.allow[:8]) or "none"
            raise ImportRefused(f"import of `{name}` refused: it is not on the catalog's import "
                                f"allow-list ({shown}{', ...' if len(self.allow) > 8 else ''})")
        for item in fromlist or ():
            if isinstance(item, str) and item.startswith("_"):
                raise Refused(f"`{name}.{item}` is private to the module")
        module = builtins.__import__(name, None, None, tuple(fromlist or ()), 0)
        return self.view(module)

    @staticmethod
    def _name(name: Any) -> str:
        if not isinstance(name, str):
            raise TypeError("attribute name must be string")
        problem = _attribute_problem(name)
        if problem:
            raise Refused(problem)
        return name

    def getattr(self, obj: Any, name: Any, *default: Any) -> Any:
        name = self._name(name)
        if name in ("format", "format_map") and (obj is str or isinstance(obj, str)):
            return self.format(obj, name)
        return getattr(obj, name, *default)

    def setattr(self, obj: Any, name: Any, value: Any) -> None:
        setattr(obj, self._name(name), value)

    def delattr(self, obj: Any, name: Any) -> None:
        delattr(obj, self._name(name))

    def format(self, obj: Any, name: str) -> Any:
        """``obj.format`` / ``obj.format_map`` as a cell reads it: checked for a str."""
        if obj is str:
            def unbound(template: str, *args: Any, **kwargs: Any) -> str:
                _check_format(template)
                return str.format(template, *args, **kwargs) if name == "format" else \
                    str.format_map(template, *args)
            return unbound
        if isinstance(obj, str):
            _check_format(obj)
        return getattr(obj, name)


class _Rewrite(ast.NodeTransformer):
    """``x.format`` -> ``__nux_format__(x, "format")``, so a str's format string is checked."""

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if node.attr in ("format", "format_map") and isinstance(node.ctx, ast.Load):
            call = ast.Call(func=ast.Name(id=_FORMAT, ctx=ast.Load()),
                            args=[node.value, ast.Constant(node.attr)], keywords=[])
            return ast.copy_location(call, node)
        return node


def load_function(source: str, function: str, *, stage: str, allow_imports: Iterable[str],
                  withhold_builtins: Iterable[str] = ()) -> Callable[..., Any]:
    """Check and run a code cell's source in its sandbox; the named function.

    Raises :class:`Refused` for a construct or import the sandbox refuses (also at the cell's
    top level), ``SyntaxError`` for source that does not parse and ``LookupError`` when the
    cell defines no such function.
    """
    tree = ast.parse(source, filename=f"<nux code cell {stage}>")
    violations = check_source(tree)
    if violations:
        first = violations[0]
        raise Refused(f"line {first.line}: {first.message}")
    tree = ast.fix_missing_locations(_Rewrite().visit(tree))
    # dont_inherit: the cell gets its own __future__ flags, not this module's
    code: CodeType = compile(tree, f"<nux code cell {stage}>", "exec", dont_inherit=True)
    guard = _Guard(stage, tuple(allow_imports), ALWAYS_WITHHELD | frozenset(withhold_builtins))
    namespace: dict[str, Any] = {"__name__": f"nux_stage_{stage}",
                                 "__builtins__": guard.builtins()}
    exec(code, namespace)  # the cell's own code, under its sandbox
    fn = namespace.get(function)
    if not callable(fn):
        raise LookupError(f"the cell defines no function {function!r}")
    return fn  # type: ignore[no-any-return]
