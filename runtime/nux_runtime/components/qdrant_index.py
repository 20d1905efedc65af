"""An in-process search index over a collection of the embedded (local-mode) Qdrant store.

qdrant-client's local mode scores a sparse query in Python, point by point, so a hybrid search
over 10k chunks costs hundreds of milliseconds. :class:`CollectionIndex` holds what a search of
one collection version reads, in the form numpy scores fastest: the live points' ids and
payloads, a float32 matrix per named dense vector and an inverted index of the sparse vectors.
It scores exactly as Qdrant does (cosine and dot: larger is better, euclid: the distance,
smaller is better; sparse: the dot product with the query's terms weighted by Qdrant's IDF,
``ln(1 + (N - df + 0.5) / (df + 0.5))``, over the points sharing at least one term; RRF:
``sum 1 / (rank + 2)`` over the lists, first-seen order on equal scores) and orders equal scores
by the point's position in id order, where Qdrant leaves their order open.

Maximal marginal relevance (:func:`mmr`) re-ranks the candidates Qdrant would (the nearest
``candidates`` points, or a hybrid search's fused ones, nearest first) as Qdrant does: the most
relevant first, then each time the candidate with the largest
``(1 - diversity) * sim(query, c) - diversity * max(sim(c, p) for p picked)``, where sim is the
metric's raw similarity (cosine similarity or dot product in double precision; for euclid the
negated squared distance, in float32). A pick keeps its search score (for euclid, the distance).

Everything is read through the client's public API (``scroll``), and a filter's matching points
are those Qdrant's own ``scroll`` returns for it, so a filter means what it means to Qdrant. An
index is keyed by the collection version every ingest stores (:func:`collection_index`): the
first search after an ingest rebuilds it, so it never serves a replaced chunk. A Qdrant server
(``url:``) is searched by the server itself; an index is only built for a local store.
"""

from __future__ import annotations

import json
import math
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nux_runtime.components.qdrant_store import METRICS, SPARSE, collection_version

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = [
    "RRF_K",
    "CollectionIndex",
    "Hit",
    "SparseIndex",
    "collection_index",
    "forget_index",
    "mmr",
    "rrf",
]

#: Qdrant's default RRF ranking constant: a point at 0-based rank r scores 1 / (r + RRF_K)
RRF_K = 2
_PAGE = 2048


@dataclass(frozen=True)
class Hit:
    """One scored point: its row in the index (id order) and Qdrant's score for it."""

    row: int
    score: float


def rrf(lists: Sequence[Sequence[Hit]], limit: int) -> list[Hit]:
    """Reciprocal rank fusion as Qdrant computes it (equal scores keep first-seen order)."""
    scores: dict[int, float] = {}
    for hits in lists:
        for rank, hit in enumerate(hits):
            scores[hit.row] = scores.get(hit.row, 0.0) + 1.0 / (rank + RRF_K)
    fused = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    return [Hit(row, score) for row, score in fused[:limit]]


def _similarity(metric: str, vector: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Qdrant's raw similarity of ``vector`` to each row of ``vectors``, larger is closer: the
    dot product (of unit vectors for cosine), for euclid the negated squared distance in float32."""
    if metric == "euclid":
        squares = np.square(vectors - vector, dtype=np.float32)
        return -squares.sum(axis=-1, dtype=np.float32).astype(np.float64)
    return vectors @ vector


def mmr(query: Sequence[float], vectors: np.ndarray, metric: str, limit: int,
        diversity: float) -> list[int]:
    """Maximal marginal relevance as Qdrant computes it: the positions in ``vectors`` (the
    candidates, best first) of the ``limit`` picks, in pick order.

    The first pick is the candidate most similar to the query; each next one maximizes
    ``(1 - diversity) * sim(query, c) - diversity * max(sim(c, p) for p picked)``. Like Qdrant,
    an equal value goes to the candidate visited last, and a pick's place among the pending
    candidates is taken by the last of them."""
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"MMR diversity must be between 0 and 1, got {diversity}")
    weights = np.asarray(vectors, dtype=np.float64)
    target = np.asarray(query, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(weights, axis=-1, keepdims=True)
        weights = weights / np.where(norms != 0.0, norms, 1.0)
        norm = np.linalg.norm(target)
        target = target / norm if norm else target
    relevance = _similarity(metric, target, weights)
    keep = 1.0 - diversity  # Qdrant's lambda; the penalty weighs 1 - lambda
    closest = np.full(len(weights), -np.inf)
    pending = np.arange(len(weights))
    picks: list[int] = []
    while len(pending) and len(picks) < limit:
        if picks:
            values = keep * relevance[pending] - (1.0 - keep) * closest[pending]
        else:
            values = relevance[pending]
        at = len(pending) - 1 - int(np.argmax(values[::-1]))  # the last of equal values
        pick = int(pending[at])
        pending[at] = pending[-1]
        pending = pending[:-1]
        picks.append(pick)
        closest = np.maximum(closest, _similarity(metric, weights[pick], weights))
    return picks


def _top(scores: np.ndarray, rows: np.ndarray, limit: int, *, larger_is_better: bool) -> list[Hit]:
    """The ``limit`` best of ``rows`` by ``scores[rows]``; equal scores in row order."""
    if limit <= 0 or not len(rows):
        return []
    values = scores[rows]
    keys = -values if larger_is_better else values
    if len(rows) > limit:
        # everything scoring at least as well as the limit-th best, ties at the cut included
        cut = np.partition(keys, limit - 1)[limit - 1]
        keep = keys <= cut
        rows, values, keys = rows[keep], values[keep], keys[keep]
    order = np.lexsort((rows, keys))[:limit]
    return [Hit(int(rows[i]), float(values[i])) for i in order]


@dataclass
class SparseIndex:
    """The collection's sparse vectors as posting lists, with Qdrant's document frequencies."""

    #: term index -> (rows holding the term, ascending; the term's weight in each row)
    postings: dict[int, tuple[np.ndarray, np.ndarray]]
    #: the number of points that have the sparse vector (IDF's N)
    documents: int
    size: int

    @classmethod
    def build(cls, vectors: Sequence[tuple[int, Sequence[int], Sequence[float]]],
              size: int) -> SparseIndex:
        """From ``(row, indices, values)`` of every point holding a sparse vector."""
        lengths = np.fromiter((len(ix) for _, ix, _ in vectors), dtype=np.int64,
                              count=len(vectors))
        rows = np.repeat(np.fromiter((r for r, _, _ in vectors), dtype=np.int64,
                                     count=len(vectors)), lengths)
        terms = np.fromiter((i for _, ix, _ in vectors for i in ix), dtype=np.int64,
                            count=int(lengths.sum()))
        values = np.fromiter((v for _, _, vs in vectors for v in vs), dtype=np.float64,
                             count=int(lengths.sum()))
        order = np.argsort(terms, kind="stable")  # rows stay ascending within a term
        terms, rows, values = terms[order], rows[order], values[order]
        unique, starts = np.unique(terms, return_index=True)
        ends = [*starts[1:].tolist(), len(terms)]
        postings = {int(t): (rows[s:e], values[s:e])
                    for t, s, e in zip(unique.tolist(), starts.tolist(), ends, strict=True)}
        return cls(postings, len(vectors), size)

    def idf(self, frequency: int) -> float:
        """Qdrant's IDF modifier for a term held by ``frequency`` of the points."""
        n = self.documents
        return math.log((n - frequency + 0.5) / (frequency + 0.5) + 1)

    def scores(self, indices: Sequence[int], values: Sequence[float]
               ) -> tuple[np.ndarray, np.ndarray]:
        """(score per row, rows sharing at least one term with the query).

        Like Qdrant's local mode: the products are summed in ascending term order in double
        precision, then rounded to float32."""
        total = np.zeros(self.size, dtype=np.float64)
        matched = np.zeros(self.size, dtype=bool)
        for term, value in sorted(zip(indices, values, strict=True)):
            posting = self.postings.get(int(term))
            if posting is None:
                continue
            rows, weights = posting
            total[rows] += (value * self.idf(len(rows))) * weights
            matched[rows] = True
        return total.astype(np.float32), np.flatnonzero(matched)


@dataclass
class CollectionIndex:
    """What a search of one version of a collection reads, built from the store on first use."""

    client: QdrantClient
    collection: str
    version: str
    ids: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    _rows: dict[str, int] = field(default_factory=dict)
    _dense: dict[str, np.ndarray] = field(default_factory=dict)
    _sparse: SparseIndex | None = None
    _masks: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, client: QdrantClient, collection: str, version: str) -> CollectionIndex:
        index = cls(client, collection, version)
        for record in index._scroll(with_payload=True):
            index._rows[str(record.id)] = len(index.ids)
            index.ids.append(str(record.id))
            index.payloads.append(dict(record.payload or {}))
        return index

    def __len__(self) -> int:
        return len(self.ids)

    def _scroll(self, *, query_filter: Any = None, with_payload: bool = False,
                vector: str | None = None) -> list[Any]:
        records: list[Any] = []
        offset: Any = None
        while True:
            page, offset = self.client.scroll(
                self.collection, scroll_filter=query_filter, limit=_PAGE, offset=offset,
                with_payload=with_payload, with_vectors=[vector] if vector else False)
            records += page
            if offset is None:
                return records

    def _row(self, point_id: Any) -> int:
        row = self._rows.get(str(point_id))
        if row is None:  # the collection changed without a new version
            raise LookupError(f"point {point_id} of {self.collection!r} is not in the index")
        return row

    def dense(self, name: str) -> np.ndarray:
        """The float32 matrix of the named dense vector, one row per point (as stored)."""
        matrix = self._dense.get(name)
        if matrix is None:
            records = self._scroll(vector=name)
            if len(records) != len(self):
                raise LookupError(f"{self.collection!r} changed without a new version")
            rows = [self._row(r.id) for r in records]
            vectors = [r.vector.get(name) if isinstance(r.vector, dict) else None
                       for r in records]
            if any(v is None for v in vectors):
                raise LookupError(f"a point of {self.collection!r} has no {name} vector")
            stored = np.asarray(vectors, dtype=np.float32)
            matrix = np.empty_like(stored)
            matrix[rows] = stored
            self._dense[name] = matrix
        return matrix

    def sparse(self) -> SparseIndex:
        if self._sparse is None:
            vectors = []
            for record in self._scroll(vector=SPARSE):
                vector = record.vector.get(SPARSE) if isinstance(record.vector, dict) else None
                if vector is not None:
                    vectors.append((self._row(record.id), vector.indices, vector.values))
            self._sparse = SparseIndex.build(vectors, len(self))
        return self._sparse

    def rows(self, query_filter: Any, key: Mapping[str, Any] | None) -> np.ndarray:
        """The rows a filter keeps (all rows without one), as Qdrant's own scroll selects them."""
        if query_filter is None:
            return np.arange(len(self))
        name = json.dumps(key, sort_keys=True, default=str)
        mask = self._masks.get(name)
        if mask is None:
            mask = np.zeros(len(self), dtype=bool)
            mask[[self._row(r.id) for r in self._scroll(query_filter=query_filter)]] = True
            self._masks[name] = mask
        return np.flatnonzero(mask)

    def search_dense(self, vector: Sequence[float], metric: str, rows: np.ndarray, limit: int,
                     score_threshold: float | None = None) -> list[Hit]:
        """Qdrant's nearest-vector search on ``METRICS[metric]`` among ``rows``."""
        matrix = self.dense(METRICS[metric])
        query = np.asarray(vector, dtype=np.float32)
        if metric == "euclid":
            scores = np.linalg.norm(matrix - query, axis=-1)
        else:
            if metric == "cosine":  # stored vectors are unit length; Qdrant normalizes the query
                norm = np.linalg.norm(query)
                query = query / norm if norm else query
            scores = matrix @ query
        larger = metric != "euclid"
        if score_threshold is not None:  # Qdrant keeps strictly better scores
            keep = scores[rows] > score_threshold if larger else scores[rows] < score_threshold
            rows = rows[keep]
        return _top(scores, rows, limit, larger_is_better=larger)

    def diversify(self, vector: Sequence[float], metric: str, candidates: Sequence[Hit],
                  limit: int, diversity: float) -> list[Hit]:
        """Qdrant's MMR of ``candidates`` (nearest-vector hits, best first) on the dense vector
        of ``metric``; each pick keeps its candidate's score."""
        vectors = self.dense(METRICS[metric])[[hit.row for hit in candidates]]
        return [candidates[i] for i in mmr(vector, vectors, metric, limit, diversity)]

    def search_sparse(self, indices: Sequence[int], values: Sequence[float], rows: np.ndarray,
                      limit: int) -> list[Hit]:
        """Qdrant's sparse search (IDF-weighted dot product) among ``rows``."""
        scores, matched = self.sparse().scores(indices, values)
        if len(rows) < len(self):
            matched = np.intersect1d(matched, rows, assume_unique=True)
        return _top(scores, matched, limit, larger_is_better=True)


_indexes: weakref.WeakKeyDictionary[Any, dict[str, CollectionIndex]] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def collection_index(client: QdrantClient, collection: str) -> CollectionIndex | None:
    """The index of the collection's current version (built now if the version is new).

    None when the collection does not exist or carries no version (no NUX ingest wrote it):
    such a collection is searched by Qdrant itself. The caller holds the client's lock, so no
    write lands between reading the version and reading the points.
    """
    version = collection_version(client, collection)
    if version is None:
        return None
    with _indexes_lock:
        indexes = _indexes.setdefault(client, {})
        index = indexes.get(collection)
    if index is None or index.version != version:
        index = CollectionIndex.build(client, collection, version)
        with _indexes_lock:
            indexes[collection] = index
    return index


def forget_index(client: QdrantClient, collection: str) -> None:
    """Drop the collection's index (the next search rebuilds it)."""
    with _indexes_lock:
        _indexes.get(client, {}).pop(collection, None)
