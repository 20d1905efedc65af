"""The Qdrant side shared by ingest, search and the LlamaIndex retriever.

Where the store is: embedded local mode (qdrant-client ``path=``, a folder beside the workbook,
``.nux/qdrant`` by default) or a Qdrant server (``url`` plus an API key read from the environment
variable ``api_key_env`` names). Local mode allows one client per folder per process, so clients
are shared (:func:`get_client`), and one process per folder: a process that only reads (a search
stage in a tuning worker, a Ray actor, a second kernel) while another process holds the folder
opens a private snapshot copy of it instead; a process that writes (an ingest) gets a problem
naming the process that holds the folder and what to do.

Every ingest stores the collection's version (a digest of what it holds: each file's digest and
the chunking settings) in the collection's metadata; stages that read a collection put that
version in their stage-cache key (:meth:`QdrantStage.cache_state`), so an ingest that changed the
collection recomputes exactly the answers that read it. An ingest clears the version before its
first write: one that stops half-way leaves a collection without a version, which is never
cached. The same version keys the in-process search index of a local collection
(:mod:`nux_runtime.components.qdrant_index`).

A NUX collection holds, per chunk, three named dense vectors of the same embedding (one per
distance, so ``metric`` is a search-time choice), a BM25-style sparse vector (term frequencies
saturated and length-normalized here; Qdrant applies IDF) and the payload ``text``, ``source``,
``chunk``, ``digest``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nux_runtime.components.base import Component, RuntimeContext, Uncacheable, shared
from nux_runtime.components.embed import get_embedder
from nux_runtime.errors import NuxError, StageError
from nux_runtime.spec import StageSpec

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = [
    "DEFAULT_PATH",
    "METRICS",
    "SPARSE",
    "QdrantStage",
    "client_lock",
    "collection_exists",
    "collection_version",
    "ensure_collection",
    "get_client",
    "set_collection_version",
    "sparse_document",
    "sparse_query",
    "store_client",
]

DEFAULT_PATH = ".nux/qdrant"
#: metric param -> named dense vector in the collection.
METRICS = {"cosine": "dense_cosine", "dot": "dense_dot", "euclid": "dense_euclid"}
SPARSE = "sparse_bm25"
#: the collection-metadata key holding the version an ingest wrote
VERSION_KEY = "nux_version"
#: the file in a local store folder naming the process that holds it
HOLDER_FILE = ".nux-holder.json"

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOP_WORDS = (
    "a an and are as at be but by for from has have he her his i if in into is it its of on or "
    "our she so that the their them then there these they this to was we were what when where "
    "which who why will with you your"
)
_STOP = frozenset(_STOP_WORDS.split(" "))
BM25_K1 = 1.2
BM25_B = 0.75


def terms(text: str) -> list[str]:
    """Lower-cased word tokens without stop words: what the sparse vectors count."""
    return [w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _STOP]


def _index(term: str) -> int:
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


def _sparse(weights: Mapping[int, float]) -> Any:
    from qdrant_client import models

    items = sorted(weights.items())
    return models.SparseVector(indices=[i for i, _ in items], values=[v for _, v in items])


def sparse_document(text: str, avg_len: float = 120.0) -> Any:
    """A chunk's BM25 term weights (the document side; IDF is applied by the collection)."""
    words = terms(text)
    counts = Counter(_index(w) for w in words)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * len(words) / avg_len)
    return _sparse({i: tf * (BM25_K1 + 1) / (tf + norm) for i, tf in counts.items()})


def sparse_query(text: str) -> Any:
    """A query's sparse vector: each distinct term once."""
    return _sparse(dict.fromkeys((_index(w) for w in terms(text)), 1.0))


def get_client(*, path: str | None = None, url: str | None = None,
               api_key: str | None = None, timeout: float | None = None,
               read_only: bool = False) -> QdrantClient:
    """The process-wide client for a local folder or a server URL.

    A local folder another process holds is opened as a private snapshot when ``read_only``,
    and refused with a problem naming the holder otherwise.
    """
    try:
        from qdrant_client import QdrantClient
    except ImportError:
        raise NuxError("qdrant-client is not installed; install `nux-runtime[qdrant]`") from None
    if url:
        return shared("qdrant", ("url", url, api_key),
                      lambda: QdrantClient(url=url, api_key=api_key,
                                           timeout=int(timeout) if timeout else None))
    if not path:
        raise NuxError("a Qdrant store needs `path` (local mode) or `url` (server)")
    client = shared("qdrant", ("path", path), lambda: _open_local(path, read_only))
    if path in _snapshots and not read_only:
        raise NuxError(f"the local Qdrant store {path} is held by {_holder(Path(path))}, so "
                       "this process reads a snapshot of it and cannot write; stop that "
                       "process and run again, or use a Qdrant server (`url:`)")
    return client


#: local folders this process reads through a snapshot (another process holds them)
_snapshots: set[str] = set()


def _holder(folder: Path) -> str:
    """Who holds a local store folder, as recorded when it was opened."""
    try:
        info = json.loads((folder / HOLDER_FILE).read_text(encoding="utf-8"))
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
    alive = True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        alive = False
    except PermissionError:
        pass
    command = str(info.get("command", ""))[:120]
    return f"process {pid} (`{command}`{'' if alive else ', no longer running'})"


def _open_local(path: str, read_only: bool) -> QdrantClient:
    """The client of a local folder (of a snapshot of it when another process holds it)."""
    from qdrant_client import QdrantClient

    folder = Path(path)
    try:
        client = QdrantClient(path=path)
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        if not read_only:
            raise NuxError(
                f"the local Qdrant store {path} is held by {_holder(folder)} (a `nux serve`, a "
                "Jupyter kernel or a tuning run that reads it); stop that process (or restart "
                "the kernel) and run again, or use a Qdrant server (`url:`) to write while "
                "others read") from None
        _snapshots.add(path)
        return QdrantClient(path=_snapshot(folder))
    with contextlib.suppress(OSError):
        (folder / HOLDER_FILE).write_text(json.dumps({
            "pid": os.getpid(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
            "since": time.time()}),
            encoding="utf-8")
    return client


def _snapshot(folder: Path) -> str:
    """A private copy of a local store folder (removed when the process exits)."""
    copy = Path(tempfile.mkdtemp(prefix="nux-qdrant-"))
    atexit.register(shutil.rmtree, copy, True)
    shutil.copytree(folder, copy, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".lock", HOLDER_FILE))
    return str(copy)


def store_client(params: Mapping[str, Any], context: RuntimeContext, *,
                 read_only: bool = False) -> QdrantClient:
    """The client a stage's params name: ``url`` (+ ``api_key_env``) or a local ``path``."""
    url = params.get("url")
    if url:
        env_name = params.get("api_key_env")
        api_key = context.env.get(str(env_name)) if env_name else None
        if env_name and not api_key:
            raise NuxError(f"the environment variable {env_name} (api_key_env) is not set")
        return get_client(url=str(url), api_key=api_key, timeout=params.get("timeout_s"))
    folder = context.path(str(params.get("path") or DEFAULT_PATH))
    folder.mkdir(parents=True, exist_ok=True)
    return get_client(path=str(folder.resolve()), read_only=read_only)


def client_lock(client: QdrantClient) -> threading.RLock:
    """Serializes writes through one client (local mode is not safe for concurrent writers)."""
    return shared("qdrant-lock", id(client), threading.RLock)


def collection_exists(client: QdrantClient, name: str) -> bool:
    return bool(client.collection_exists(name))


def collection_version(client: QdrantClient, name: str) -> str | None:
    """The version the last ingest stored in the collection (None: no collection, or one no
    NUX ingest has versioned)."""
    if not collection_exists(client, name):
        return None
    metadata = client.get_collection(name).config.metadata or {}
    version = metadata.get(VERSION_KEY)
    return str(version) if version else None


def set_collection_version(client: QdrantClient, name: str, version: str) -> None:
    client.update_collection(name, metadata={VERSION_KEY: version})


def ensure_collection(client: QdrantClient, name: str, dimension: int) -> None:
    """Create the collection with NUX's vectors unless it exists (and check its dimension)."""
    from qdrant_client import models

    if collection_exists(client, name):
        info = client.get_collection(name)
        vectors = info.config.params.vectors
        if not isinstance(vectors, dict) or METRICS["cosine"] not in vectors:
            raise NuxError(f"collection {name!r} was not written by NUX (no {METRICS['cosine']} "
                           "vector); ingest into a new collection")
        size = vectors[METRICS["cosine"]].size
        if size != dimension:
            raise NuxError(f"collection {name!r} holds {size}-dimension vectors; the embedder "
                           f"gives {dimension}")
        return
    distances = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT,
                 "euclid": models.Distance.EUCLID}
    client.create_collection(
        name,
        vectors_config={METRICS[m]: models.VectorParams(size=dimension, distance=d)
                        for m, d in distances.items()},
        sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
    )
    with warnings.catch_warnings():  # local mode keeps no payload index and says so
        warnings.simplefilter("ignore")
        for field in ("source", "digest"):
            client.create_payload_index(name, field, field_schema=models.PayloadSchemaType.KEYWORD)


class QdrantStage(Component):
    """A stage over a Qdrant collection: the process-wide embedder its ``embedder`` param names
    and the client its ``path`` or ``url`` names, both loaded once (a StageError if not).

    A reading stage's cache key holds the collection's version; ``writes`` stages (an ingest)
    are never cached and need the store itself, not a snapshot."""

    writes: ClassVar[bool] = False

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        try:
            self.embedder = get_embedder(str(self.params.get("embedder", "minilm")))
            self.client = store_client(self.params, context, read_only=not self.writes)
        except NuxError as exc:
            raise StageError(stage.id, str(exc), category="resource") from None

    @classmethod
    def may_cache(cls, stage: StageSpec) -> bool:
        return cls.cacheable and not cls.writes

    @classmethod
    def cache_state(cls, stage: StageSpec, context: RuntimeContext) -> str | None:
        """The version of the collection the stage reads (what the last ingest stored)."""
        name = str(stage.params.get("collection", ""))
        try:
            client = store_client(stage.params, context, read_only=True)
            version = collection_version(client, name)
        except NuxError as exc:
            raise StageError(stage.id, str(exc), category="resource") from None
        except Exception as exc:  # an unreachable server: the call itself will say so
            raise Uncacheable(f"{type(exc).__name__}: {exc}") from None
        if version is None:
            raise Uncacheable(f"collection {name!r} has no version; re-run its ingest")
        return f"qdrant:{name}:{version}"
