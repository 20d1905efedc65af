"""Workbooks as the browser sends them: a notebook path under the server root or the notebook's
JSON (unsaved edits included), read into a `WorkbookSource`, checked, and described as a graph.

Everything returned here is a plain JSON payload: problems carry their cell id and line so the
browser can show each one on the cell it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nux_kernel.catalog import Catalog, CatalogEntry, load_catalog
from nux_kernel.compiler import check_workbook, input_schema
from nux_kernel.drafts import read_draft
from nux_kernel.notebook import WorkbookSource, notebook_source, read_notebook
from nux_runtime.errors import NuxError, Problem, WorkbookError
from nux_runtime.spec import WorkbookSpec

__all__ = [
    "CheckedWorkbook",
    "catalog_for",
    "catalog_payload",
    "check",
    "graph_payload",
    "resolve_path",
    "source_from_request",
]


def resolve_path(root: Path, relative: str) -> Path:
    """A notebook path the browser names, inside the server root (nothing outside it)."""
    root = root.expanduser().resolve()
    candidate = (root / relative.lstrip("/")).resolve()
    if candidate != root and root not in candidate.parents:
        raise NuxError(problems=[Problem(
            code="path", message=f"{relative!r} is outside the folder JupyterLab serves",
            fix="open a workbook inside the JupyterLab root folder")])
    return candidate


def _from_json(notebook: Any, path: Path) -> WorkbookSource:
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise WorkbookError(problems=[Problem(
            code="notebook-format", message=f"{path.name} is not a Jupyter notebook "
            "(no `cells` list)", fix="send the notebook's JSON as JupyterLab saves it")])
    # The kernel's reader is the one definition of how a notebook becomes a workbook; the
    # browser's unsaved copy goes through it unchanged, without touching the disk.
    source = notebook_source(notebook, path)
    source.base_dir = path.parent
    source.path = path
    return source


def source_from_request(root: Path, body: dict[str, Any]) -> WorkbookSource:
    """``{"path": "dir/wb.ipynb", "notebook": {...}?}`` -> the workbook source."""
    rel = body.get("path")
    if not isinstance(rel, str) or not rel:
        raise NuxError(problems=[Problem(code="request", message="the request names no `path`",
                                         fix="send the notebook's path relative to the root")])
    path = resolve_path(root, rel)
    notebook = body.get("notebook")
    if notebook is None:
        return read_notebook(path)
    return _from_json(notebook, path)


def catalog_for(root: Path, body: dict[str, Any]) -> Catalog:
    """The catalog a request names (a path under the root, or NUX_CATALOG / the default)."""
    rel = body.get("catalog")
    if isinstance(rel, str) and rel.strip():
        return load_catalog(resolve_path(root, rel.strip()))
    return load_catalog()


def _entry_payload(entry: CatalogEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "version": entry.version,
        "description": entry.description,
        "params": entry.params,
        "required": entry.required,
        "free_params": entry.free_params,
        "output": entry.output,
        "resources": entry.resources.model_dump(mode="json"),
        "scale": entry.scale.model_dump(mode="json"),
        "cost": entry.cost.model_dump(mode="json"),
        "vetting": entry.vetting.model_dump(mode="json"),
    }


def catalog_payload(catalog: Catalog) -> dict[str, Any]:
    """The catalog as the picker shows it: every component with its schema and vetting."""
    return {
        "name": catalog.name,
        "version": catalog.version,
        "path": catalog.path,
        "hash": catalog.hash,
        "allow_imports": catalog.allow_imports,
        "components": [_entry_payload(e) for e in catalog.components.values()],
    }


def graph_payload(source: WorkbookSource) -> dict[str, Any]:
    """Nodes (workbook inputs and stages, by kind) and edges (from each stage's inputs).

    Built from the cells as written, so a workbook with problems still shows its graph.
    """
    ignored: list[Problem] = []
    schema = input_schema(source.metadata.get("inputs"), ignored)
    inputs = [str(name) for name in schema.get("properties", {})]
    nodes: list[dict[str, Any]] = [{"id": n, "kind": "input", "cell": None} for n in inputs]
    edges: list[dict[str, str]] = []
    seen: set[str] = set(inputs)
    for cell in source.cells:
        if cell.stage in seen:
            continue
        seen.add(cell.stage)
        draft = read_draft(cell.stage, cell.kind, cell.cell, cell.body)
        node: dict[str, Any] = {"id": cell.stage, "kind": cell.kind, "cell": cell.cell,
                                "uses": "", "index": cell.index}
        if not isinstance(draft, list):
            node["uses"] = draft.uses
            node["tunable"] = sorted(draft.tune)
            edges.extend({"source": name, "target": cell.stage} for name in draft.inputs)
        nodes.append(node)
    output = source.metadata.get("output")
    outputs = [output] if isinstance(output, str) else [o for o in output or [] if
                                                         isinstance(o, str)]
    return {"inputs": inputs, "input_schemas": schema.get("properties", {}), "nodes": nodes,
            "edges": edges, "output": outputs}


@dataclass
class CheckedWorkbook:
    """A workbook read and checked: its source, its spec (None with problems) and problems."""

    source: WorkbookSource
    spec: WorkbookSpec | None
    problems: list[Problem]

    def payload(self) -> dict[str, Any]:
        order = {c.cell: c.index for c in self.source.cells}
        problems = sorted(self.problems, key=lambda p: (
            p.cell is not None, order.get(p.cell or "", 1 << 30), p.line or 0))
        body: dict[str, Any] = {
            "ok": self.spec is not None,
            "problems": [p.to_dict() for p in problems],
            "graph": graph_payload(self.source),
        }
        if self.spec is not None:
            body["hash"] = self.spec.hash
            body["stages"] = {s.id: s.hash for s in self.spec.stages}
        return body


def check(root: Path, body: dict[str, Any]) -> CheckedWorkbook:
    """Read and check the workbook a request names; problems are collected, not raised."""
    source = source_from_request(root, body)
    spec, problems = check_workbook(source, catalog_for(root, body))
    return CheckedWorkbook(source, spec, problems)
