"""``llamaindex.retriever``: a LlamaIndex retriever over a NUX Qdrant collection.

For teams that already build with LlamaIndex: the collection ``qdrant.ingest`` wrote is opened
as a LlamaIndex ``QdrantVectorStore`` (on the shared Qdrant client, using the named dense vector
of the chosen metric) and wrapped in a ``VectorStoreIndex`` whose embedding model is NUX's shared
MiniLM (:class:`MiniLMEmbedding`). ``retriever()`` gives the LlamaIndex retriever itself; the
stage answers like ``qdrant.search``: ``[{text, score, source, chunk, id}]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

from llama_index.core.embeddings import BaseEmbedding
from pydantic import PrivateAttr
from qdrant_client.http.exceptions import UnexpectedResponse

from nux_runtime.components.base import RuntimeContext, StageResult
from nux_runtime.components.embed import Embedder, get_embedder
from nux_runtime.components.qdrant_store import (
    METRICS,
    QdrantStage,
    client_lock,
    collection_exists,
)
from nux_runtime.errors import StageError
from nux_runtime.spec import StageSpec

__all__ = ["LlamaIndexRetriever", "MiniLMEmbedding", "node_hits"]


def node_hits(nodes: Sequence[Any]) -> list[dict[str, Any]]:
    """Retrieved LlamaIndex nodes as ``qdrant.search`` reports hits."""
    return [{
        "text": node.node.get_content(),
        "score": float(node.score or 0.0),
        "source": node.node.metadata.get("source"),
        "chunk": node.node.metadata.get("chunk"),
        "id": str(node.node.node_id),
    } for node in nodes]


class MiniLMEmbedding(BaseEmbedding):
    """A LlamaIndex embedding model backed by NUX's process-wide embedder."""

    _embedder: Embedder = PrivateAttr()

    def __init__(self, name: str = "minilm", **kwargs: Any) -> None:
        super().__init__(model_name=name, **kwargs)
        self._embedder = get_embedder(name)

    def _get_query_embedding(self, query: str) -> list[float]:
        return list(self._embedder.embed([query])[0].tolist())

    def _get_text_embedding(self, text: str) -> list[float]:
        return list(self._embedder.embed([text])[0].tolist())

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [list(v) for v in self._embedder.embed(texts).tolist()]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


class LlamaIndexRetriever(QdrantStage):
    """Retrieves the ``top_k`` nodes for the stage's one text input through LlamaIndex."""

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        self.embed_model = MiniLMEmbedding(str(self.params.get("embedder", "minilm")))
        self.collection = str(self.params["collection"])
        self._index: Any = None

    def index(self) -> Any:
        """The LlamaIndex ``VectorStoreIndex`` over the collection (built on first use)."""
        if self._index is None:
            from llama_index.core import VectorStoreIndex
            from llama_index.vector_stores.qdrant import QdrantVectorStore

            store = QdrantVectorStore(
                collection_name=self.collection, client=self.client,
                dense_vector_name=METRICS[str(self.params.get("metric", "cosine"))])
            self._index = VectorStoreIndex.from_vector_store(store, embed_model=self.embed_model)
        return self._index

    def retriever(self) -> Any:
        """The LlamaIndex retriever this stage runs (top_k and metadata filters applied)."""
        from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters

        filters = self.params.get("filter") or {}
        return self.index().as_retriever(
            similarity_top_k=int(self.params.get("top_k", 4)),
            filters=MetadataFilters(filters=[ExactMatchFilter(key=k, value=v)
                                             for k, v in filters.items()]) if filters else None,
        )

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult:
        values = list(inputs.values())
        if len(values) != 1 or not isinstance(values[0], str) or not values[0].strip():
            raise StageError(self.stage.id, "retrieves with exactly one non-empty text input",
                             category="input")
        # local mode is one in-process store: a retrieval waits for a running ingest to finish
        with nullcontext() if self.params.get("url") else client_lock(self.client):
            nodes = self._retrieve(values[0])
        return StageResult(node_hits(nodes),
                           tokens_in=self.embed_model._embedder.count_tokens(values))

    def _check_collection(self) -> None:
        if not collection_exists(self.client, self.collection):
            raise StageError(self.stage.id, f"collection {self.collection!r} does not exist; run "
                             "a qdrant.ingest stage into it first", category="resource")
        if not self.client.count(self.collection, exact=True).count:
            raise StageError(self.stage.id, f"collection {self.collection!r} is empty; ingest "
                             "documents into it first", category="resource")

    def _retrieve(self, query: str) -> list[Any]:
        try:
            nodes = list(self.retriever().retrieve(query))
        except (ValueError, KeyError, UnexpectedResponse) as exc:
            self._check_collection()  # a missing collection says so plainly
            raise StageError(self.stage.id, f"the retrieval was refused: {exc}",
                             category="input") from None
        if not nodes:
            self._check_collection()  # an empty collection says so plainly
            self._index = None  # the collection was filled after this index was opened
            nodes = list(self.retriever().retrieve(query))
        return nodes
