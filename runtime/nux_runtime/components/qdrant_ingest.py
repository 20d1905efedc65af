"""``qdrant.ingest``: a folder of documents -> chunks -> MiniLM embeddings -> a Qdrant collection.

Idempotent and incremental. Every chunk carries its file's ``digest``: the sha256 of the file's
bytes and of the chunking settings (splitter, chunk size, overlap, embedder). Re-ingesting
writes nothing for a file whose digest is unchanged, replaces all chunks of a file whose digest
changed, and removes the chunks of files that are gone (unless ``prune: false``). The manifest of
what is stored is read back from the collection itself, so a local store and a server behave
alike. Its digest is stored as the collection's version, which the stages reading the collection
put in their stage-cache keys. An ingest writes, so the stage cache never answers it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nux_runtime.components.base import RuntimeContext, StageResult
from nux_runtime.components.documents import Document, find_documents, load_text, split_text
from nux_runtime.components.qdrant_store import (
    METRICS,
    SPARSE,
    QdrantStage,
    client_lock,
    collection_exists,
    ensure_collection,
    set_collection_version,
    sparse_document,
    store_client,
)
from nux_runtime.errors import NuxError, StageError
from nux_runtime.spec import StageSpec

__all__ = ["IngestDrift", "QdrantIngest", "chunking_signature", "ingest_drift",
           "manifest_version", "stored_manifest"]

#: the chunking settings a chunk's digest covers, with their defaults
CHUNKING = {"splitter": "sentence", "chunk_size": 160, "chunk_overlap": 20, "embedder": "minilm"}

_POINT_NAMESPACE = uuid.UUID("6f0b3a5e-2d7c-4e55-9d7a-8e3c1b0f4a21")


def stored_manifest(client: Any, collection: str) -> dict[str, str]:
    """source -> digest of every file the collection holds chunks of."""
    manifest: dict[str, str] = {}
    offset: Any = None
    while True:
        points, offset = client.scroll(collection, limit=1024, offset=offset,
                                       with_payload=["source", "digest"], with_vectors=False)
        for point in points:
            payload = point.payload or {}
            manifest[str(payload.get("source"))] = str(payload.get("digest"))
        if offset is None:
            return manifest


def _source_filter(source: str) -> Any:
    from qdrant_client import models

    return models.FilterSelector(filter=models.Filter(must=[
        models.FieldCondition(key="source", match=models.MatchValue(value=source))]))


def manifest_version(manifest: Mapping[str, str]) -> str:
    """The version of a collection holding exactly ``manifest`` (source -> digest)."""
    text = json.dumps(sorted(manifest.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def chunking_signature(params: Mapping[str, Any]) -> str:
    """The chunking settings of an ingest's params, as its chunks' digests cover them."""
    return "|".join(f"{k}={params.get(k, default)}" for k, default in CHUNKING.items())


def _chunk_digest(file_digest: str, signature: str) -> str:
    return hashlib.sha256(f"{file_digest}|{signature}".encode()).hexdigest()


@dataclass(frozen=True)
class IngestDrift:
    """How a collection differs from what its ingest stage would write now (sources)."""

    #: stored from other bytes or with other chunking settings than the stage's now
    changed: tuple[str, ...] = ()
    #: in the folder, not in the collection
    missing: tuple[str, ...] = ()
    #: in the collection, gone from the folder (the ingest prunes them)
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.missing or self.removed)

    def describe(self) -> str:
        """``2 documents changed or chunked with other settings (a.md, b.md), 1 not ingested``"""
        parts = []
        for names, what in ((self.changed, "changed or chunked with other settings"),
                            (self.missing, "not ingested"),
                            (self.removed, "removed from the folder")):
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                noun = "document" if len(names) == 1 else "documents"
                parts.append(f"{len(names)} {noun} {what} ({shown})")
        return "; ".join(parts)


def ingest_drift(stage: StageSpec, context: RuntimeContext) -> IngestDrift | None:
    """How the collection ``stage`` writes differs from what the stage would write now, told
    from its folder's bytes, its chunking settings and the digests the collection stores:
    nothing is embedded or written. None when it cannot be told (the folder comes as an
    input, the folder or the collection does not exist, the store cannot be opened)."""
    params = stage.params
    folder_param, collection = params.get("folder"), params.get("collection")
    if not isinstance(folder_param, str) or not isinstance(collection, str):
        return None
    folder = context.path(folder_param)
    if not folder.is_dir():
        return None
    suffixes = params.get("suffixes")
    try:
        client = store_client(params, context, read_only=True)
        if not collection_exists(client, collection):
            return None
        with client_lock(client):
            stored = stored_manifest(client, collection)
    except Exception:  # an unreachable server, a store another process holds: not told
        return None
    signature = chunking_signature(params)
    docs = list(find_documents(folder, tuple(suffixes) if suffixes else None))
    changed, missing = [], []
    for doc in docs:
        before = stored.get(doc.source)
        if before is None:
            try:
                empty = not load_text(doc.path).strip()  # an empty file stores no chunk
            except Exception:
                empty = False
            if not empty:
                missing.append(doc.source)
        elif before != _chunk_digest(doc.digest, signature):
            changed.append(doc.source)
    present = {doc.source for doc in docs}
    removed = sorted(set(stored) - present) if params.get("prune", True) else []
    return IngestDrift(tuple(changed), tuple(missing), tuple(removed))


class QdrantIngest(QdrantStage):
    """Ingests ``params.folder`` (or the folder given as its one input) into a collection."""

    cacheable = False
    writes = True

    def _folder(self, inputs: Mapping[str, Any]) -> Path:
        given = next(iter(inputs.values()), None) if inputs else None
        value = given if isinstance(given, str) and given else self.params.get("folder")
        if not value:
            raise StageError(self.stage.id, "no folder to ingest: set `folder:` or pass a path",
                             category="input")
        folder = self.context.path(str(value))
        if not folder.is_dir():
            raise StageError(self.stage.id, f"the folder {folder} does not exist",
                             category="input")
        return folder

    def _chunks(self, doc: Document) -> list[str]:
        try:
            text = load_text(doc.path)
        except NuxError as exc:
            raise StageError(self.stage.id, f"{doc.source}: {exc}", category="resource") from None
        except Exception as exc:  # a malformed file names itself
            raise StageError(self.stage.id, f"cannot read {doc.source}: {exc}",
                             category="input") from None
        size = int(self.params.get("chunk_size", 160))
        overlap = int(self.params.get("chunk_overlap", 20))
        if overlap >= size:
            raise StageError(self.stage.id, f"chunk_overlap ({overlap}) must be smaller than "
                             f"chunk_size ({size})", category="input")
        return split_text(text, splitter=str(self.params.get("splitter", "sentence")),
                          chunk_size=size, chunk_overlap=overlap,
                          tokenizer=self.embedder.model.tokenizer)

    def _points(self, doc: Document, digest: str, chunks: list[str]) -> list[Any]:
        from qdrant_client import models

        vectors = self.embedder.embed(chunks)
        avg_len = float(self.params.get("chunk_size", 160)) * 0.6
        points = []
        for i, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True)):
            dense = vector.tolist()
            points.append(models.PointStruct(
                id=str(uuid.uuid5(_POINT_NAMESPACE, f"{doc.source}#{i}")),
                vector={**{name: dense for name in METRICS.values()},
                        SPARSE: sparse_document(chunk, avg_len)},
                payload={"text": chunk, "source": doc.source, "chunk": i, "digest": digest,
                         "suffix": doc.path.suffix.lower().lstrip(".")},
            ))
        return points

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult:
        folder = self._folder(inputs)
        collection = str(self.params["collection"])
        suffixes = self.params.get("suffixes")
        docs = list(find_documents(folder, tuple(suffixes) if suffixes else None))
        if not docs:
            raise StageError(self.stage.id, f"the folder {folder} holds no .md, .txt, .html or "
                             ".pdf files", category="input")
        signature = chunking_signature(self.params)
        counts = {"added": 0, "replaced": 0, "unchanged": 0, "removed": 0, "chunks_written": 0}
        tokens = 0
        with client_lock(self.client):
            try:
                ensure_collection(self.client, collection, self.embedder.dimension)
            except NuxError as exc:
                raise StageError(self.stage.id, str(exc), category="resource") from None
            stored = stored_manifest(self.client, collection)
            versioned = True

            def writing() -> None:
                # until the new version is stored the collection has none: an ingest that
                # stops half-way leaves readers uncached and searched by Qdrant itself
                nonlocal versioned
                if versioned:
                    set_collection_version(self.client, collection, "")
                    versioned = False

            for doc in docs:
                digest = _chunk_digest(doc.digest, signature)
                before = stored.get(doc.source)
                if before == digest:
                    counts["unchanged"] += 1
                    continue
                chunks = self._chunks(doc)
                writing()
                if before is not None:
                    self.client.delete(collection, points_selector=_source_filter(doc.source))
                if chunks:
                    self.client.upsert(collection, points=self._points(doc, digest, chunks))
                    tokens += self.embedder.count_tokens(chunks)
                counts["replaced" if before is not None else "added"] += 1
                counts["chunks_written"] += len(chunks)
            if self.params.get("prune", True):
                present = {d.source for d in docs}
                for source in sorted(set(stored) - present):
                    writing()
                    self.client.delete(collection, points_selector=_source_filter(source))
                    counts["removed"] += 1
            total = int(self.client.count(collection, exact=True).count)
            version = manifest_version(stored_manifest(self.client, collection))
            set_collection_version(self.client, collection, version)
        report = {"collection": collection, "files": len(docs), **counts, "chunks": total,
                  "version": version}
        return StageResult(report, tokens_in=tokens)
