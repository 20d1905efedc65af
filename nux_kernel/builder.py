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

import inspect
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
import yaml

from nux_kernel.catalog import Catalog
from nux_kernel.compiler import check_workbook, compile_workbook
from nux_kernel.notebook import CellSource, WorkbookSource
from nux_runtime.errors import Problem
from nux_runtime.spec import WorkbookSpec

__all__ = ["Workbook"]


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
        """A code cell from a function or its source; ``options`` become ``#|`` lines."""
        source = function if isinstance(function, str) else textwrap.dedent(
            inspect.getsource(function))
        lines = [f"#| {k}: {yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()}"
                 .removesuffix("\n...") for k, v in options.items() if v is not None]
        return self._add("code", stage, "\n".join([*lines, source.strip("\n")]) + "\n")

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
        return check_workbook(self.source(), catalog)[1]

    def compile(self, catalog: Catalog | None = None) -> WorkbookSpec:
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
