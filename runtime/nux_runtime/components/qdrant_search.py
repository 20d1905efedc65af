"""``qdrant.search``: the chunks of a collection nearest to a query.

Dense search on the MiniLM embedding with the chosen ``metric`` (cosine, dot or euclid: the
collection holds one named vector per distance), optionally ``hybrid`` with a BM25-style sparse
search fused by reciprocal rank (Qdrant's RRF), optionally diversified by maximal marginal
relevance (``mmr``), filtered by payload values (``filter: {source: handbook.md}``) and cut at
``score_threshold``. The answer is a list of ``{text, score, source, chunk, id}``, best first.

On the embedded local store, every search (dense, hybrid, ``mmr``) runs on the in-process index
of the collection's current version (:mod:`nux_runtime.components.qdrant_index`: numpy scores and
MMR picks that equal Qdrant's), since qdrant-client's local mode scores in Python. A Qdrant server
(``url:``) and a collection no ingest versioned are searched by Qdrant itself.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from contextlib import nullcontext, suppress
from typing import Any

import numpy as np
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from nux_runtime.components.base import RuntimeContext, StageResult
from nux_runtime.components.qdrant_index import collection_index, forget_index, rrf
from nux_runtime.components.qdrant_store import (
    METRICS,
    SPARSE,
    QdrantStage,
    client_lock,
    collection_exists,
    sparse_query,
)
from nux_runtime.errors import StageError
from nux_runtime.spec import StageSpec

__all__ = ["QdrantSearch", "payload_filter"]

#: a found point: (id, score, payload)
Point = tuple[str, float, dict[str, Any]]


def payload_filter(spec: Mapping[str, Any] | None) -> Any:
    """``{field: value}`` / ``{field: [values]}`` -> a Qdrant filter (all fields must match)."""
    if not spec:
        return None
    from qdrant_client import models

    must: list[Any] = []
    for key, value in spec.items():
        if isinstance(value, list | tuple):
            match: Any = models.MatchAny(any=list(value))
        else:
            match = models.MatchValue(value=value)
        must.append(models.FieldCondition(key=str(key), match=match))
    return models.Filter(must=must)


class QdrantSearch(QdrantStage):
    """Finds the ``top_k`` chunks for the stage's one text input."""

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        if not self.params.get("url"):
            self._load_index()

    def _load_index(self) -> None:
        """Build the local collection's index with the stage (a cold start, not a call's cost);
        what goes wrong here the first call reports."""
        collection = str(self.params.get("collection", ""))
        with client_lock(self.client), suppress(ValueError, LookupError):
            index = collection_index(self.client, collection)
            if index is not None and len(index):
                index.dense(METRICS[str(self.params.get("metric", "cosine"))])
                index.rows(payload_filter(self.params.get("filter")), self.params.get("filter"))
                if self.params.get("hybrid"):
                    index.sparse()

    def _query_text(self, inputs: Mapping[str, Any]) -> str:
        values = [v for v in inputs.values() if isinstance(v, str)]
        if len(values) != 1 or len(inputs) != 1:
            raise StageError(self.stage.id, "searches with exactly one text input, got "
                             f"{', '.join(inputs) or 'none'}", category="input")
        if not values[0].strip():
            raise StageError(self.stage.id, "the query is empty", category="input")
        return values[0]

    def _check_collection(self, collection: str) -> None:
        where = self.params.get("url") or self.context.path(
            str(self.params.get("path") or ".nux/qdrant"))
        if not collection_exists(self.client, collection):
            raise StageError(self.stage.id, f"collection {collection!r} does not exist in {where}; "
                             "run a qdrant.ingest stage into it first", category="resource")
        if not self.client.count(collection, exact=True).count:
            raise StageError(self.stage.id, f"collection {collection!r} in {where} is empty; "
                             "ingest documents into it first", category="resource")

    def _query(self, collection: str, text: str, vector: list[float]) -> Any:
        from qdrant_client import models

        top_k = int(self.params.get("top_k", 4))
        using = METRICS[str(self.params.get("metric", "cosine"))]
        threshold = self.params.get("score_threshold")
        candidates = max(int(self.params.get("candidates", 20)), top_k)
        query_filter = payload_filter(self.params.get("filter"))
        mmr = (models.Mmr(diversity=float(self.params.get("diversity", 0.5)),
                          candidates_limit=candidates)
               if self.params.get("mmr") else None)
        dense: Any = models.NearestQuery(nearest=vector, mmr=mmr) if mmr else vector
        if not self.params.get("hybrid"):
            return self.client.query_points(
                collection, query=dense, using=using, limit=top_k, query_filter=query_filter,
                score_threshold=threshold, with_payload=True)
        fused = [
            models.Prefetch(query=vector, using=using, limit=candidates,
                            score_threshold=threshold),
            models.Prefetch(query=sparse_query(text), using=SPARSE, limit=candidates),
        ]
        rrf = models.FusionQuery(fusion=models.Fusion.RRF)
        if not mmr:
            return self.client.query_points(
                collection, prefetch=fused, query=rrf, limit=top_k, query_filter=query_filter,
                with_payload=True)
        # diversify the fused candidates by their dense vectors
        return self.client.query_points(
            collection, prefetch=models.Prefetch(prefetch=fused, query=rrf, limit=candidates),
            query=dense, using=using, limit=top_k, query_filter=query_filter, with_payload=True)

    def _indexed(self, collection: str, text: str, vector: list[float]) -> list[Point] | None:
        """The search on the local collection's in-process index (None: Qdrant searches)."""
        if self.params.get("url"):
            return None
        index = collection_index(self.client, collection)
        if index is None:
            return None
        if not len(index):
            return []
        top_k = int(self.params.get("top_k", 4))
        metric = str(self.params.get("metric", "cosine"))
        threshold = self.params.get("score_threshold")
        spec = self.params.get("filter")
        candidates = max(int(self.params.get("candidates", 20)), top_k)
        mmr = bool(self.params.get("mmr"))
        try:
            rows = index.rows(payload_filter(spec), spec)
            if not self.params.get("hybrid"):
                hits = index.search_dense(vector, metric, rows, candidates if mmr else top_k,
                                          threshold)
            else:
                terms = sparse_query(text)
                hits = rrf([index.search_dense(vector, metric, rows, candidates, threshold),
                            index.search_sparse(terms.indices, terms.values, rows, candidates)],
                           candidates if mmr else top_k)
                if mmr:  # the fused candidates, nearest first by the dense vector
                    fused = np.array([hit.row for hit in hits], dtype=np.int64)
                    hits = index.search_dense(vector, metric, fused, candidates)
            if mmr:
                hits = index.diversify(vector, metric, hits, top_k,
                                       float(self.params.get("diversity", 0.5)))
        except LookupError:  # the collection changed without a new version: Qdrant answers
            forget_index(self.client, collection)
            return None
        return [(index.ids[h.row], h.score, copy.deepcopy(index.payloads[h.row])) for h in hits]

    def _search(self, collection: str, text: str, vector: list[float]) -> list[Point]:
        points = self._indexed(collection, text, vector)
        if points is None:
            response = self._query(collection, text, vector)
            points = [(str(p.id), float(p.score), dict(p.payload or {}))
                      for p in response.points]
        return points

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult:
        text = self._query_text(inputs)
        collection = str(self.params["collection"])
        vector = self.embedder.embed([text])[0].tolist()
        # local mode is one in-process store: a search waits for a running ingest to finish
        guard = nullcontext() if self.params.get("url") else client_lock(self.client)
        with guard:
            try:
                points = self._search(collection, text, vector)
            except (ValueError, KeyError, UnexpectedResponse) as exc:
                self._check_collection(collection)  # a missing collection says so plainly
                raise StageError(self.stage.id, f"the search was refused: {exc}",
                                 category="input") from None
            except ResponseHandlingException as exc:
                raise StageError(self.stage.id, f"cannot reach Qdrant: {exc}",
                                 category="transient") from None
            if not points:
                self._check_collection(collection)  # an empty collection says so plainly
        hits = []
        for point_id, score, payload in points:
            hits.append({
                "text": str(payload.pop("text", "")),
                "score": score,
                "source": payload.pop("source", None),
                "chunk": payload.pop("chunk", None),
                "id": point_id,
                **{k: v for k, v in payload.items() if k != "digest"},
            })
        return StageResult(hits, tokens_in=self.embedder.count_tokens([text]))
