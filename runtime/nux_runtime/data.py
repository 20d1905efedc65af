"""What a workbook reads and writes outside its inputs, read from its stages' params alone.

A stage's data dependencies (the Qdrant collections it searches or fills, the SQLite file or the
database it queries, the folder of documents it ingests) are named by its params, so they are
known from the frozen spec without running anything. The exporter lists them and gives each a
production path; the ingest job runner (:mod:`nux_runtime.jobs`) and the docs use the same
reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nux_runtime.spec import StageSpec, WorkbookSpec

__all__ = [
    "QDRANT_READERS",
    "DataKind",
    "DataRef",
    "data_dependencies",
    "sqlite_file",
    "stage_data",
]

DataKind = Literal["qdrant-collection", "sqlite-file", "database-url", "database-url-secret",
                   "folder"]

#: components that search a Qdrant collection (their ``collection`` param)
QDRANT_READERS = frozenset({"qdrant.search", "llamaindex.retriever", "llamaindex.query"})


@dataclass(frozen=True)
class DataRef:
    """One thing a stage reads or writes: what it is, its name, and the param that names it."""

    stage: str
    kind: DataKind
    name: str
    param: str
    access: Literal["read", "write"] = "read"

    def to_dict(self) -> dict[str, str]:
        return {"stage": self.stage, "kind": self.kind, "name": self.name, "param": self.param,
                "access": self.access}


def sqlite_file(url: str) -> str | None:
    """The file a ``sqlite:///path`` URL opens (None for other databases and ``:memory:``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] != "sqlite":
        return None
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?")[0]
    if not path or path == ":memory:":
        return None
    return path


def stage_data(stage: StageSpec) -> tuple[DataRef, ...]:
    """The data one stage reads or writes, from its component and params."""
    impl, params = stage.component.implementation, stage.params
    refs: list[DataRef] = []
    collection = params.get("collection")
    if impl in QDRANT_READERS and isinstance(collection, str):
        refs.append(DataRef(stage.id, "qdrant-collection", collection, "collection"))
    elif impl == "qdrant.ingest":
        if isinstance(params.get("folder"), str):
            refs.append(DataRef(stage.id, "folder", str(params["folder"]), "folder"))
        if isinstance(collection, str):
            refs.append(DataRef(stage.id, "qdrant-collection", collection, "collection",
                                "write"))
    elif impl == "sql.query":
        if params.get("url_env"):
            refs.append(DataRef(stage.id, "database-url-secret", str(params["url_env"]),
                                "url_env"))
        elif params.get("url"):
            url = str(params["url"])
            file = sqlite_file(url)
            refs.append(DataRef(stage.id, "sqlite-file", file, "url") if file
                        else DataRef(stage.id, "database-url", url, "url"))
        else:
            refs.append(DataRef(stage.id, "sqlite-file", str(params.get("path", "data.db")),
                                "path"))
    return tuple(refs)


def data_dependencies(spec: WorkbookSpec) -> tuple[DataRef, ...]:
    """Every stage's data dependencies, in stage order."""
    return tuple(ref for stage in spec.stages for ref in stage_data(stage))
