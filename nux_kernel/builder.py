"""The `Workbook` builder: the same workbook as a notebook, written in plain Python.

Each call adds the cell a notebook would hold, so a builder and the equivalent ``.ipynb``
compile through one path to the same `WorkbookSpec` (same hash), and :meth:`Workbook.save`
writes that notebook::

    wb = Workbook("faq", inputs={"question": "string"}, output="answer")
    wb.code("clean", "def clean(question: str) -> str:\\n    return question.strip()\\n")
    wb.model("answer", uses="llm.local/gemma-3-270m", inputs=["clean"],
             params={"template": "Q: {clean}\\nA:"})
    spec = wb.compile()
"""

from __future__ import annotations

import builtins
import dis
import inspect
import sys
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
import yaml

from nux_kernel.catalog import Catalog
from nux_kernel.compiler import check_workbook, compile_workbook
from nux_kernel.notebook import CellSource, WorkbookSource
from nux_runtime.errors import Problem, WorkbookError
from nux_runtime.spec import WorkbookSpec

__all__ = ["Workbook"]


def _global_names(code: types.CodeType | None) -> list[str]:
    """Names ``code`` (and the functions nested in it) load as globals, in order."""
    if code is None:
        return []
    names: list[str] = []
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(
                instruction.argval, str):
            names.append(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _global_names(const)
    return [n for n in dict.fromkeys(names) if not hasattr(builtins, n)]


def _is_constant(value: Any) -> bool:
    if isinstance(value, bool | int | float | str | bytes | type(None)):
        return True
    if isinstance(value, tuple | frozenset):
        return all(_is_constant(v) for v in value)
    return False


def _yaml_body(fields: Mapping[str, Any]) -> str:
    body = {k: v for k, v in fields.items() if v not in (None, {}, [])}
    return yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=100)


class Workbook:
    """Build a workbook stage by stage; compile it or save it as an ``.ipynb``."""

    def __init__(self, name: str, *, inputs: Mapping[str, Any] | Sequence[str] | None = None,
                 output: str | Sequence[str] = (), description: str = "",
                 criteria: Sequence[Mapping[str, Any]] = (),
                 acceptance: Mapping[str, float] | None = None, test_bank: str | None = None,
                 prompts: Mapping[str, str] | None = None,
                 base_dir: str | Path | None = None) -> None:
        self.metadata: dict[str, Any] = {"name": name}
        if description:
            self.metadata["description"] = description
        self.metadata["inputs"] = (
            dict(inputs) if isinstance(inputs, Mapping) else list(inputs or []))
        self.metadata["output"] = output if isinstance(output, str) else list(output)
        if criteria:
            self.metadata["criteria"] = [dict(c) for c in criteria]
        if acceptance:
            self.metadata["acceptance"] = dict(acceptance)
        if test_bank:
            self.metadata["test_bank"] = test_bank
        if prompts:
            self.metadata["prompts"] = dict(prompts)
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.cells: list[CellSource] = []
        #: What the builder itself found (a function reading a name a cell cannot carry).
        self.problems: list[Problem] = []

    def _add(self, kind: str, stage: str, body: str) -> Workbook:
        self.cells.append(CellSource(cell=stage, kind=kind, stage=stage, body=body,
                                     index=len(self.cells)))
        return self

    def _declarative(self, kind: str, stage: str, uses: str, inputs: Sequence[str],
                     options: Mapping[str, Any]) -> Workbook:
        return self._add(kind, stage, _yaml_body({"uses": uses, "inputs": list(inputs),
                                                  **options}))

    def model(self, stage: str, *, uses: str, inputs: Sequence[str] = (), **options: Any
              ) -> Workbook:
        """A model cell (``params``, ``tune``, ``when``, ``resources``, ``scale``, ...)."""
        return self._declarative("model", stage, uses, inputs, options)

    def data(self, stage: str, *, uses: str, inputs: Sequence[str] = (), **options: Any
             ) -> Workbook:
        """A data-connector cell."""
        return self._declarative("data", stage, uses, inputs, options)

    def code(self, stage: str, function: str | Callable[..., Any], **options: Any) -> Workbook:
        """A code cell from a function or its source; ``options`` become ``#|`` lines.

        A function's cell carries what the function reads from its module: an imported module
        becomes an ``import`` line, an imported function a ``from ... import`` line and a
        plain constant an assignment. Anything else it reads there (a helper defined beside it)
        cannot travel in a cell and is reported by :meth:`check`.
        """
        if isinstance(function, str):
            source, preamble = function, []
        else:
            source = textwrap.dedent(inspect.getsource(function))
            preamble = self._carried(stage, function)
        lines = [f"#| {k}: {yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()}"
                 .removesuffix("\n...") for k, v in options.items() if v is not None]
        return self._add("code", stage, "\n".join([*lines, *preamble, source.strip("\n")])
                         + "\n")

    def _carried(self, stage: str, function: Callable[..., Any]) -> list[str]:
        """The lines that give ``function`` the module-level names its code reads."""
        lines: list[str] = []
        scope = getattr(function, "__globals__", {})
        own = getattr(function, "__module__", None)
        for name in _global_names(getattr(function, "__code__", None)):
            if name not in scope or name == getattr(function, "__name__", None):
                continue
            value = scope[name]
            origin = getattr(value, "__module__", None)
            if isinstance(value, types.ModuleType):
                lines.append(f"import {value.__name__}" if value.__name__ == name
                             else f"import {value.__name__} as {name}")
            elif _is_constant(value):
                lines.append(f"{name} = {value!r}")
            elif (isinstance(origin, str) and origin != own
                  and getattr(sys.modules.get(origin), getattr(value, "__name__", ""), None)
                  is value):
                real = str(getattr(value, "__name__", name))
                lines.append(f"from {origin} import {real}" if real == name
                             else f"from {origin} import {real} as {name}")
            else:
                self.problems.append(Problem(
                    code="code-global", message=f"the function reads {name!r} from its module "
                    f"({type(value).__name__}), which a code cell cannot carry",
                    fix=f"define {name} inside the function, import it from a package, or "
                    "make it a stage input", cell=stage, stage=stage, line=1))
        return lines

    def template(self, stage: str, *, inputs: Sequence[str], template: str | None = None,
                 prompt: str | None = None, **options: Any) -> Workbook:
        """A prompt-template cell (``text.template``)."""
        params = {"template": template} if template is not None else {"prompt": prompt}
        return self._declarative("code", stage, "text.template", inputs,
                                 {"params": params, **options})

    def source(self) -> WorkbookSource:
        return WorkbookSource(metadata=self.metadata, cells=list(self.cells),
                              base_dir=self.base_dir)

    def check(self, catalog: Catalog | None = None) -> list[Problem]:
        return [*self.problems, *check_workbook(self.source(), catalog)[1]]

    def compile(self, catalog: Catalog | None = None) -> WorkbookSpec:
        if self.problems:
            raise WorkbookError(problems=self.check(catalog))
        return compile_workbook(self.source(), catalog)

    def to_notebook(self) -> nbformat.NotebookNode:
        nb = nbformat.v4.new_notebook()
        nb.metadata["nux"] = self.metadata
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells.append(nbformat.v4.new_code_cell("%load_ext nux_kernel"))
        for cell in self.cells:
            nb.cells.append(nbformat.v4.new_code_cell(cell.text().rstrip("\n"), id=cell.stage))
        return nb

    def save(self, path: str | Path) -> Path:
        """Write the workbook as an ``.ipynb`` (its cells carry the stage ids as cell ids)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(self.to_notebook(), str(p))
        return p
