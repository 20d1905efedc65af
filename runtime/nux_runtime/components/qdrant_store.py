"""The Qdrant side shared by ingest, search and the LlamaIndex retriever.

Where the store is: embedded local mode (qdrant-client ``path=``, a folder beside the workbook,
``.nux/qdrant`` by default) or a Qdrant server (``url`` plus an API key read from the environment
variable ``api_key_env`` names). Local mode allows one client per folder per process, so clients
are shared (:func:`get_client`).

A NUX collection holds, per chunk, three named dense vectors of the same embedding (one per
distance, so ``metric`` is a search-time choice), a BM25-style sparse vector (term frequencies
saturated and length-normalized here; Qdrant applies IDF) and the payload ``text``, ``source``,
``chunk``, ``digest``.
"""

from __future__ import annotations

import re
import threading
import warnings
import zlib
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nux_runtime.components.base import Component, RuntimeContext, shared
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
    "ensure_collection",
    "get_client",
    "sparse_document",
    "sparse_query",
    "store_client",
]

DEFAULT_PATH = ".nux/qdrant"
#: metric param -> named dense vector in the collection.
METRICS = {"cosine": "dense_cosine", "dot": "dense_dot", "euclid": "dense_euclid"}
SPARSE = "sparse_bm25"

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
               api_key: str | None = None, timeout: float | None = None) -> QdrantClient:
    """The process-wide client for a local folder or a server URL."""
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
    return shared("qdrant", ("path", path), lambda: QdrantClient(path=path))


def store_client(params: Mapping[str, Any], context: RuntimeContext) -> QdrantClient:
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
    return get_client(path=str(folder.resolve()))


def client_lock(client: QdrantClient) -> threading.RLock:
    """Serializes writes through one client (local mode is not safe for concurrent writers)."""
    return shared("qdrant-lock", id(client), threading.RLock)


def collection_exists(client: QdrantClient, name: str) -> bool:
    return bool(client.collection_exists(name))


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
    and the client its ``path`` or ``url`` names, both loaded once (a StageError if not)."""

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        try:
            self.embedder = get_embedder(str(self.params.get("embedder", "minilm")))
            self.client = store_client(self.params, context)
        except NuxError as exc:
            raise StageError(stage.id, str(exc), category="resource") from None
