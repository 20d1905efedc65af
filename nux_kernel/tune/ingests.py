"""Chunking as a search dimension: an ingest's ``tune:`` entries, tuned with the stages that read.

A served workbook reads collections that another workbook fills (``nux_kernel/datasources.py``
finds it). When that ingest stage has ``tune:`` entries (``chunk_size``, ``chunk_overlap``,
``splitter``, ...), ``nux tune`` on the served workbook searches them together with its own
stages, under the pseudo-stage ``<collection>:<ingest stage>``. Each ingest configuration gets
its own collection in its own embedded store, ``.nux/tune/ingests/<collection>-<digest>`` beside
the served workbook, where the digest covers the stage and the content of the folder it reads:
it is built once (under a file lock, so ``--workers`` processes and Ray actors on this machine
build it once between them) and reused by every trial that asks for it; the stages that read the
collection search that store in the trial. The user's own collection is never written.

``nux pin`` writes the chosen configuration into the ingest notebook's cell, so the next
``nux run`` of it, and the export's ingest job, ingest what was tuned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from nux_kernel.datasources import IngestSource, find_sources
from nux_kernel.executor import Executor
from nux_kernel.tune.space import Overrides, apply_params
from nux_runtime.components.documents import find_documents
from nux_runtime.data import data_dependencies
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import StageSpec, WorkbookSpec, canonical_json

__all__ = ["INGEST_SEP", "IngestBuilder", "TunedIngest", "tuned_ingests"]

#: ``<collection>:<ingest stage>``: the pseudo-stage an ingest's dimensions are named under
INGEST_SEP = ":"
BUILT = "nux-ingest.json"


@dataclass(frozen=True)
class TunedIngest:
    """An ingest stage with ``tune:`` entries that fills a collection the workbook reads."""

    key: str
    collection: str
    source: IngestSource
    stage: StageSpec


def tuned_ingests(spec: WorkbookSpec, base_dir: str | Path, notebook: str | Path | None = None
                  ) -> dict[str, TunedIngest]:
    """Pseudo-stage -> tuned ingest, for every collection ``spec`` reads whose ingest tunes."""
    found: dict[str, TunedIngest] = {}
    sources = find_sources(notebook, spec, base_dir=base_dir)
    for collection, source in sorted(sources.ingests.items()):
        for stage_id in source.stages:
            stage = source.spec.stage(stage_id)
            if stage.tune:
                key = f"{collection}{INGEST_SEP}{stage_id}"
                found[key] = TunedIngest(key, collection, source, stage)
    return found


def _documents_digest(folder: Path, suffixes: Any) -> str:
    """A digest of the documents the ingest reads under ``folder`` (names and bytes)."""
    found = [] if not folder.is_dir() else [
        (doc.source, doc.digest) for doc in find_documents(
            folder, tuple(suffixes) if isinstance(suffixes, list | tuple) else None)]
    return hashlib.sha256(canonical_json(found).encode()).hexdigest()


class IngestBuilder:
    """Builds (once) the store of each ingest configuration a trial asks for, and points the
    stages that read its collection at it."""

    def __init__(self, spec: WorkbookSpec, base_dir: Path,
                 ingests: Mapping[str, TunedIngest]) -> None:
        self.spec = spec
        self.root = base_dir / ".nux" / "tune" / "ingests"
        self.ingests = dict(ingests)
        self.built: dict[str, Path] = {}
        #: configurations this process built (the others it found built)
        self.builds = 0

    def _store(self, tuned: TunedIngest, params: Mapping[str, Any]) -> Path:
        stage = tuned.stage
        merged = {k: v for k, v in {**stage.params, **params}.items()
                  if k not in ("path", "url", "api_key_env")}
        folder = merged.get("folder")
        content = (_documents_digest(tuned.source.base_dir / folder, merged.get("suffixes"))
                   if isinstance(folder, str) else "")
        body = {"uses": stage.component.id, "version": stage.component.version,
                "params": merged, "content": content}
        digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()[:12]
        return self.root / f"{tuned.collection}-{digest}"

    def build(self, tuned: TunedIngest, params: Mapping[str, Any]) -> Path:
        """The store holding ``tuned``'s collection ingested with ``params``."""
        store = self._store(tuned, params)
        if str(store) in self.built:
            return store
        store.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(store) + ".lock"):
            done = store / BUILT
            if not done.is_file():
                spec = apply_params(tuned.source.spec,
                                    {tuned.stage.id: {**params, "path": str(store)}})
                executor = Executor(spec, base_dir=tuned.source.base_dir, cache=False)
                try:
                    run = executor.run({}, targets=[tuned.stage.id])
                finally:
                    executor.close()
                if run.errors:
                    raise NuxError(problems=[Problem(
                        code="tune", stage=tuned.stage.id,
                        message=f"ingesting {tuned.collection!r} of {tuned.source.notebook.name}"
                                f" with {dict(params)} failed: {run.errors[0].cause}",
                        fix="narrow the ingest cell's `tune:` ranges to settings that ingest")])
                done.write_text(json.dumps({"collection": tuned.collection,
                                            "params": dict(params)}, sort_keys=True),
                                encoding="utf-8")
                self.builds += 1
        self.built[str(store)] = store
        return store

    def apply(self, overrides: Overrides) -> Overrides:
        """The overrides of the served stages: the trial's own, and each stage that reads a
        tuned collection pointed at the store of the trial's configuration."""
        out: Overrides = {k: dict(v) for k, v in overrides.items() if k not in self.ingests}
        for key, params in overrides.items():
            tuned = self.ingests.get(key)
            if tuned is None:
                continue
            store = self.build(tuned, params)
            for ref in data_dependencies(self.spec):
                if (ref.kind != "qdrant-collection" or ref.access != "read"
                        or ref.name != tuned.collection):
                    continue
                if self.spec.stage(ref.stage).params.get("url"):
                    raise NuxError(problems=[Problem(
                        code="tune", stage=ref.stage, field="params.url",
                        message=f"stage {ref.stage} reads {tuned.collection!r} from a Qdrant "
                                "server; chunking is tuned on the embedded store",
                        fix="tune with the embedded store (drop `url` while tuning), or drop "
                            f"the `tune:` entries of {tuned.source.notebook.name}")])
                out.setdefault(ref.stage, {})["path"] = str(store)
        return out
