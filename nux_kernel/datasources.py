"""Where a workbook's data comes from: the ingest workbook of each collection it reads.

A served workbook searches Qdrant collections that another workbook fills (the flagship's
``rag_qa.ipynb`` reads ``handbook``, which ``ingest.ipynb`` writes from ``corpus/``). The export
ships that ingest workbook as a job, so it has to be found first, by reading text only:

1. ``metadata.nux.ingest`` of the served notebook names it, per collection
   (``ingest: {handbook: ingest.ipynb}``, paths relative to the notebook);
2. otherwise the sibling notebooks of the served one are read, and the one whose
   ``qdrant.ingest`` stage writes the collection is taken (two candidates: a problem asking to
   name one).

Every candidate is compiled (compiling never executes a cell). A collection with no ingest
workbook is left for the exporter to report, with the fix.

:func:`stale_collections` says which collections do not hold what their ingest workbook writes
now (a document changed, or ``nux pin`` wrote other chunking settings into it): a score measured
on such a collection is not the score of what the export ingests in production.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nux_kernel.catalog import Catalog
from nux_kernel.compiler import check_workbook
from nux_kernel.notebook import read_notebook
from nux_runtime.data import data_dependencies
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import WorkbookSpec

__all__ = ["IngestSource", "WorkbookSources", "find_sources", "stale_collections"]


@dataclass(frozen=True)
class IngestSource:
    """The workbook that fills one collection: its notebook, its spec, the stages that write."""

    collection: str
    notebook: Path
    spec: WorkbookSpec
    stages: tuple[str, ...]

    @property
    def base_dir(self) -> Path:
        return self.notebook.parent


@dataclass(frozen=True)
class WorkbookSources:
    """What the export needs to know about a workbook's folder and data."""

    base_dir: Path
    notebook: Path | None = None
    ingests: dict[str, IngestSource] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()


def _writers(spec: WorkbookSpec, collection: str) -> tuple[str, ...]:
    return tuple(ref.stage for ref in data_dependencies(spec)
                 if ref.kind == "qdrant-collection" and ref.access == "write"
                 and ref.name == collection)


def _metadata_ingest(notebook: Path) -> tuple[dict[str, str], list[Problem]]:
    try:
        raw = json.loads(notebook.read_text(encoding="utf-8"))
        named = raw.get("metadata", {}).get("nux", {}).get("ingest")
    except (OSError, ValueError, AttributeError):
        return {}, []
    if named is None:
        return {}, []
    if not isinstance(named, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in named.items()):
        return {}, [Problem(code="export-data", field="metadata.nux.ingest",
                            message="`ingest` must map collection names to notebooks",
                            fix="write e.g. `ingest: {handbook: ingest.ipynb}`")]
    return dict(named), []


def _compiled(path: Path, catalog: Catalog | None) -> WorkbookSpec | None:
    try:
        spec, _ = check_workbook(read_notebook(path), catalog)
    except NuxError:
        return None
    return spec


def find_sources(notebook: str | Path | None, spec: WorkbookSpec, *,
                 base_dir: str | Path | None = None,
                 catalog: Catalog | None = None) -> WorkbookSources:
    """The ingest workbook of every collection ``spec`` reads, found beside ``notebook`` (or in
    ``base_dir`` for a workbook built in Python)."""
    path = Path(notebook).resolve() if notebook is not None else None
    folder = path.parent if path is not None else Path(base_dir or Path.cwd()).resolve()
    wanted = sorted({ref.name for ref in data_dependencies(spec)
                     if ref.kind == "qdrant-collection" and ref.access == "read"})
    named, problems = _metadata_ingest(path) if path is not None else ({}, [])
    ingests: dict[str, IngestSource] = {}
    siblings: list[tuple[Path, WorkbookSpec]] | None = None
    for collection in wanted:
        if collection in named:
            candidate = (folder / named[collection]).resolve()
            found = _compiled(candidate, catalog) if candidate.is_file() else None
            stages = _writers(found, collection) if found is not None else ()
            if found is None or not stages:
                why = ("does not exist" if not candidate.is_file() else "does not compile"
                       if found is None else f"has no qdrant.ingest stage writing {collection!r}")
                problems.append(Problem(
                    code="export-data", field=f"metadata.nux.ingest.{collection}",
                    message=f"the ingest workbook {named[collection]} named for collection "
                            f"{collection!r} {why}",
                    fix="name the notebook whose qdrant.ingest stage writes the collection "
                        "(`nux validate` it first)"))
                continue
            ingests[collection] = IngestSource(collection, candidate, found, stages)
            continue
        if siblings is None:
            siblings = []
            for other in sorted(folder.glob("*.ipynb")):
                if path is not None and other.resolve() == path:
                    continue
                try:
                    text = other.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                if "qdrant.ingest" not in text:
                    continue
                compiled = _compiled(other, catalog)
                if compiled is not None:
                    siblings.append((other.resolve(), compiled))
        matches = [(p, s, _writers(s, collection)) for p, s in siblings]
        matches = [m for m in matches if m[2]]
        if len(matches) > 1:
            problems.append(Problem(
                code="export-data", field="metadata.nux.ingest",
                message=f"collection {collection!r} is written by several notebooks beside the "
                        f"workbook: {', '.join(p.name for p, _, _ in matches)}",
                fix=f"name one in the workbook's metadata: `ingest: {{{collection}: "
                    f"{matches[0][0].name}}}`"))
        elif matches:
            other, compiled, stages = matches[0]
            ingests[collection] = IngestSource(collection, other, compiled, stages)
    return WorkbookSources(base_dir=folder, notebook=path, ingests=ingests,
                           problems=tuple(problems))


def stale_collections(sources: WorkbookSources) -> list[Problem]:
    """One problem per collection the workbook reads that does not hold what its ingest
    workbook writes now, told from the documents' bytes, the ingest's chunking settings and the
    digests the collection stores (nothing is run, embedded or written)."""
    from nux_runtime.components.base import RuntimeContext
    from nux_runtime.components.qdrant_ingest import ingest_drift

    problems: list[Problem] = []
    for collection, source in sorted(sources.ingests.items()):
        context = RuntimeContext(base_dir=source.base_dir)
        for stage_id in source.stages:
            drift = ingest_drift(source.spec.stage(stage_id), context)
            if not drift:
                continue
            name = source.notebook.name
            try:
                shown = source.notebook.relative_to(Path.cwd())
            except ValueError:
                shown = source.notebook
            problems.append(Problem(
                code="stale-data", stage=stage_id, field=f"collection {collection}",
                message=f"collection {collection!r} does not hold what {name} ingests now: "
                        f"{drift.describe()}",
                fix=f"run `nux run {shown}` to ingest it, then evaluate or export again"))
    return problems
