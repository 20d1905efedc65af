"""Data in production: what the served stages read, and the path each takes to get there.

Every data dependency (:func:`nux_runtime.data.data_dependencies`) gets a production path, or
the export refuses, naming the stage and the fix:

- a Qdrant collection: the ingest workbook that writes it becomes a job (``jobs/<job>.json``, run
  by ``python -m nux_runtime.jobs`` in the runtime image against the production Qdrant before the
  RayService), its documents shipped under ``data/``; or the export is told the production
  Qdrant already holds it (``collections={name: "external"}``);
- a SQLite file inside the workbook's folder: shipped read-only under ``data/`` (baked into the
  image at ``/opt/nux/data``);
- a database URL secret (``url_env``): a Pulumi secret; a plain database URL: a stack setting.

Locations that differ between the notebook and production (an endpoint's ``base_url``, a
database URL, a collection's name) become stack settings (:class:`Location`) whose default is the
notebook's value; the spec is never changed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nux_runtime.data import DataRef, data_dependencies, stage_data
from nux_runtime.errors import Problem
from nux_runtime.spec import WorkbookSpec

__all__ = [
    "DATA_DIR",
    "DATA_MOUNT",
    "JOBS_DIR",
    "JOBS_MOUNT",
    "DataFile",
    "DataPlan",
    "JobPlan",
    "Location",
    "Sources",
    "camel",
    "plan_data",
]

DATA_DIR = "data"
JOBS_DIR = "jobs"
#: where the image holds data/ and jobs/ (the Dockerfile copies them there)
DATA_MOUNT = "/opt/nux/data"
JOBS_MOUNT = "/opt/nux/jobs"
_HIDDEN = re.compile(r"(^|/)\.")


class IngestLike(Protocol):
    """An ingest workbook found for a collection (``nux_kernel.datasources.IngestSource``)."""

    @property
    def collection(self) -> str: ...

    @property
    def notebook(self) -> Path: ...

    @property
    def spec(self) -> WorkbookSpec: ...

    @property
    def stages(self) -> tuple[str, ...]: ...


class Sources(Protocol):
    """What the kernel found about the workbook's folder (``nux_kernel.datasources``)."""

    @property
    def base_dir(self) -> Path: ...

    @property
    def ingests(self) -> Mapping[str, IngestLike]: ...

    @property
    def problems(self) -> tuple[Problem, ...]: ...


@dataclass(frozen=True)
class DataFile:
    """A file shipped in the export: its path under ``data/`` and where it is read from."""

    path: str
    source: Path


@dataclass(frozen=True)
class JobPlan:
    """One ingest job: the ingest workbook's spec, the stages to run, what it writes."""

    name: str
    collection: str
    notebook: str
    spec: WorkbookSpec
    stages: tuple[str, ...]
    base_dir: str

    @property
    def file(self) -> str:
        return f"{self.name}.json"


@dataclass(frozen=True)
class Location:
    """A stack setting for a location: ``key`` (Pulumi config), the params it sets."""

    key: str
    default: str
    what: str
    #: (stage, param path) pairs of the served workbook it sets
    targets: tuple[tuple[str, str], ...]
    #: (job, stage) pairs of ingest jobs it sets (the collection a job writes)
    job_targets: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DataPlan:
    refs: tuple[DataRef, ...] = ()
    files: tuple[DataFile, ...] = ()
    jobs: tuple[JobPlan, ...] = ()
    locations: tuple[Location, ...] = ()
    collections: Mapping[str, str] = field(default_factory=dict)

    @property
    def ships_data(self) -> bool:
        """Whether stages read data at all (then their paths resolve in ``data/``)."""
        return bool(self.refs)


def camel(*parts: str) -> str:
    """``("answer_llm", "base_url")`` -> ``answerLlmBaseUrl``."""
    words = [w for part in parts for w in re.split(r"[^A-Za-z0-9]+", part) if w]
    words = [w for word in words for w in re.split(r"_", word) if w]
    if not words:
        return ""
    head, *rest = words
    return head[0].lower() + head[1:] + "".join(w[0].upper() + w[1:] for w in rest)


def _problem(stage: str | None, field_name: str, message: str, fix: str) -> Problem:
    return Problem(code="export-data", message=message, fix=fix, stage=stage, cell=stage,
                   field=field_name)


def _inside(base: Path, path: Path) -> str | None:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return None


def _folder_files(folder: Path, base: Path) -> list[DataFile]:
    files = []
    for path in sorted(folder.rglob("*")):
        rel = _inside(base, path)
        if rel is None or not path.is_file() or _HIDDEN.search(rel):
            continue
        files.append(DataFile(rel, path))
    return files


def _sqlite(ref: DataRef, sources: Sources | None, problems: list[Problem]
            ) -> DataFile | None:
    if ref.param == "url":
        problems.append(_problem(ref.stage, "params.url", f"stage {ref.stage!r} opens the SQLite "
                                 f"file {ref.name} by URL, which production resolves against "
                                 "its own working directory", "name the file with `path:` "
                                 "(relative to the workbook, shipped with the export), or a "
                                 "database URL secret with `url_env:`"))
        return None
    if sources is None:
        problems.append(_problem(ref.stage, "params.path", f"stage {ref.stage!r} reads the "
                                 f"SQLite file {ref.name}, and the export was not told the "
                                 "workbook's folder to take it from", "export the notebook "
                                 "(`nux export wb.ipynb`), or name a database URL secret with "
                                 "`url_env:`"))
        return None
    path = Path(ref.name).expanduser()
    path = path if path.is_absolute() else sources.base_dir / path
    rel = _inside(sources.base_dir, path)
    if rel is None:
        problems.append(_problem(ref.stage, "params.path", f"stage {ref.stage!r} reads {path}, "
                                 "outside the workbook's folder: it would not exist in "
                                 "production", "copy the database into the workbook's folder "
                                 "and give its relative `path:`, or name a database URL secret "
                                 "with `url_env:`"))
        return None
    if not path.is_file():
        problems.append(_problem(ref.stage, "params.path", f"stage {ref.stage!r} reads the "
                                 f"SQLite file {rel}, which does not exist", "create it in the "
                                 "workbook's folder, or name a database URL secret with "
                                 "`url_env:`"))
        return None
    return DataFile(rel, path)


def _job(ingest: IngestLike, sources: Sources, problems: list[Problem]
         ) -> tuple[JobPlan | None, list[DataFile]]:
    collection = ingest.collection
    base = _inside(sources.base_dir, ingest.notebook.parent)
    name = "ingest-" + re.sub(r"[^a-z0-9-]+", "-", collection.lower()).strip("-")
    if base is None:
        problems.append(_problem(None, f"ingest.{collection}", f"the ingest workbook "
                                 f"{ingest.notebook} of collection {collection!r} is outside "
                                 "the workbook's folder, so its documents cannot travel",
                                 "move it (and its documents) into the workbook's folder"))
        return None, []
    files: list[DataFile] = []
    for stage_id in ingest.stages:
        stage = ingest.spec.by_id[stage_id]
        folder_refs = [r for r in stage_data(stage) if r.kind == "folder"]
        if not folder_refs:
            problems.append(_problem(stage_id, "params.folder", f"ingest stage {stage_id!r} of "
                                     f"{ingest.notebook.name} takes its folder as an input, so "
                                     "the export cannot tell which documents to ship",
                                     "set `folder:` in the ingest cell"))
            continue
        folder = Path(folder_refs[0].name).expanduser()
        folder = folder if folder.is_absolute() else ingest.notebook.parent / folder
        if _inside(sources.base_dir, folder) is None:
            problems.append(_problem(stage_id, "params.folder", f"ingest stage {stage_id!r} of "
                                     f"{ingest.notebook.name} reads {folder}, outside the "
                                     "workbook's folder: it would not exist in production",
                                     "move the documents into the workbook's folder and give "
                                     "their relative `folder:`"))
            continue
        if not folder.is_dir():
            problems.append(_problem(stage_id, "params.folder", f"ingest stage {stage_id!r} of "
                                     f"{ingest.notebook.name} reads the folder "
                                     f"{folder_refs[0].name}, which does not exist",
                                     "create it, or fix `folder:`"))
            continue
        files += _folder_files(folder, sources.base_dir)
    job = JobPlan(name=name, collection=collection, notebook=ingest.notebook.name,
                  spec=ingest.spec, stages=ingest.stages, base_dir=base or ".")
    return job, files


def plan_data(spec: WorkbookSpec, sources: Sources | None,
              collections: Mapping[str, str]) -> tuple[DataPlan, list[Problem]]:
    """Every data dependency of ``spec`` with its production path; the problems found."""
    problems: list[Problem] = list(sources.problems) if sources is not None else []
    refs = data_dependencies(spec)
    files: dict[str, DataFile] = {}
    jobs: list[JobPlan] = []
    sourced: dict[str, str] = {}
    locations: list[Location] = []
    readers: dict[str, list[str]] = {}
    for ref in refs:
        if ref.kind == "sqlite-file":
            shipped = _sqlite(ref, sources, problems)
            if shipped is not None:
                files[shipped.path] = shipped
        elif ref.kind == "database-url":
            locations.append(Location(camel(ref.stage, "database_url"), ref.name,
                                      f"database URL of stage {ref.stage} (no password: put "
                                      "one in a `url_env` secret)", ((ref.stage, "url"),)))
        elif ref.kind == "qdrant-collection" and ref.access == "read":
            readers.setdefault(ref.name, []).append(ref.stage)
    for stage in spec.stages:
        if stage.component.implementation == "llm.openai" and stage.params.get("base_url"):
            locations.append(Location(camel(stage.id, "base_url"), str(stage.params["base_url"]),
                                      f"OpenAI-compatible endpoint of stage {stage.id}",
                                      ((stage.id, "base_url"),)))
        options = stage.params.get("options")
        if (stage.component.implementation == "llm.langchain" and isinstance(options, dict)
                and options.get("base_url")):
            locations.append(Location(camel(stage.id, "base_url"), str(options["base_url"]),
                                      f"OpenAI-compatible endpoint of stage {stage.id}",
                                      ((stage.id, "options.base_url"),)))
    for collection, stages in sorted(readers.items()):
        ingest = sources.ingests.get(collection) if sources is not None else None
        job_targets: tuple[tuple[str, str], ...] = ()
        if collections.get(collection) == "external":
            sourced[collection] = "external"
        elif ingest is not None and sources is not None:
            job, documents = _job(ingest, sources, problems)
            if job is not None:
                jobs.append(job)
                sourced[collection] = f"job:{job.name}"
                job_targets = tuple((job.name, s) for s in job.stages)
                files.update((f.path, f) for f in documents)
        else:
            problems.append(_problem(
                stages[0], "params.collection",
                f"stage {', '.join(repr(s) for s in stages)} reads the Qdrant collection "
                f"{collection!r}, and nothing fills it in production: no ingest workbook "
                "writes it", "keep the ingest workbook (a notebook whose qdrant.ingest stage "
                f"writes {collection!r}) beside this one or name it in metadata.nux.ingest, or "
                f"export with --collection {collection}=external when the production Qdrant "
                "already holds it"))
            continue
        locations.append(Location(camel("collection", collection), collection,
                                  f"Qdrant collection read by {', '.join(stages)}",
                                  tuple((s, "collection") for s in stages), job_targets))
    unknown = sorted(set(collections) - set(readers))
    for name in unknown:
        problems.append(_problem(None, "collections", f"--collection names {name!r}, which no "
                                 "stage reads", "name a collection a stage searches"))
    bad = sorted(v for v in collections.values() if v != "external")
    for value in bad:
        problems.append(_problem(None, "collections", f"unknown collection source {value!r}",
                                 "write NAME=external (the production Qdrant holds it)"))
    return DataPlan(refs=refs, files=tuple(files[k] for k in sorted(files)), jobs=tuple(jobs),
                    locations=tuple(locations), collections=sourced), problems


def data_digest(plan: DataPlan) -> str:
    """A digest of everything the image carries besides the spec: shipped files and jobs."""
    digest = hashlib.sha256()
    for item in plan.files:
        digest.update(item.path.encode() + b"\0" + item.source.read_bytes() + b"\0")
    for job in plan.jobs:
        digest.update(job.name.encode() + b"\0" + job.spec.hash.encode() + b"\0")
    return digest.hexdigest()

