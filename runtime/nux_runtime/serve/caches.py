"""Answer caches of the ingress, both keyed by the spec hash (a new version never reuses answers).

* :class:`ExactCache`: the same inputs after normalization (Unicode NFKC, trimmed and collapsed
  whitespace, optionally case-folded) -> the same answer, for a TTL, bounded LRU.
* :class:`SemanticCache`: the request's text embedded with MiniLM and searched in a Qdrant
  collection (local mode: in memory or a folder); an answer is reused when the cosine similarity
  reaches the threshold, within the TTL, and every non-text input is identical.
"""

from __future__ import annotations

import hashlib
import threading
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from nux_runtime.serve.settings import CacheSettings, SemanticCacheSettings
from nux_runtime.spec import canonical_json

__all__ = ["CachedAnswer", "ExactCache", "SemanticCache", "normalize"]

CachedAnswer = dict[str, Any]


def normalize(value: Any, *, casefold: bool = False) -> Any:
    """Inputs as the exact cache compares them."""
    if isinstance(value, str):
        text = " ".join(unicodedata.normalize("NFKC", value).split())
        return text.casefold() if casefold else text
    if isinstance(value, dict):
        return {k: normalize(v, casefold=casefold) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v, casefold=casefold) for v in value]
    return value


class ExactCache:
    """An LRU of answers with a TTL, keyed by (spec hash, normalized inputs)."""

    def __init__(self, spec_hash: str, settings: CacheSettings) -> None:
        self.spec_hash = spec_hash
        self.settings = settings
        self._items: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, inputs: Mapping[str, Any]) -> str:
        body = canonical_json(normalize(dict(inputs), casefold=self.settings.casefold))
        return hashlib.sha256(f"{self.spec_hash}:{body}".encode()).hexdigest()

    def get(self, inputs: Mapping[str, Any]) -> CachedAnswer | None:
        key = self.key(inputs)
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if time.monotonic() - item[0] > self.settings.ttl_s:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, inputs: Mapping[str, Any], answer: CachedAnswer) -> None:
        key = self.key(inputs)
        with self._lock:
            self._items[key] = (time.monotonic(), answer)
            self._items.move_to_end(key)
            while len(self._items) > self.settings.max_entries:
                self._items.popitem(last=False)


class SemanticCache:
    """Near-duplicate requests answered from a Qdrant collection of earlier answers."""

    def __init__(self, spec_hash: str, settings: SemanticCacheSettings) -> None:
        from qdrant_client import QdrantClient, models

        from nux_runtime.components.embed import get_embedder

        self.spec_hash = spec_hash
        self.settings = settings
        self.embedder = get_embedder(settings.embedder)
        self.models = models
        self.client = (QdrantClient(path=settings.qdrant_path) if settings.qdrant_path
                       else QdrantClient(location=":memory:"))
        self.collection = f"nux-answers-{spec_hash[:16]}"
        if not self.client.collection_exists(self.collection):
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=self.embedder.dimension,
                                                   distance=models.Distance.COSINE))
        self._lock = threading.Lock()
        self._last_sweep = time.time()

    @staticmethod
    def split(inputs: Mapping[str, Any]) -> tuple[str, str]:
        """(the text that is embedded, the digest of everything else)."""
        text = "\n".join(f"{k}: {' '.join(v.split())}" for k, v in sorted(inputs.items())
                         if isinstance(v, str))
        rest = canonical_json({k: v for k, v in inputs.items() if not isinstance(v, str)})
        return text, hashlib.sha256(rest.encode()).hexdigest()

    def _vector(self, text: str) -> list[float]:
        return [float(x) for x in self.embedder.embed([text])[0]]

    def get(self, inputs: Mapping[str, Any]) -> tuple[CachedAnswer, float] | None:
        """The cached answer and its similarity, or None (blocking: run it in a thread)."""
        text, rest = self.split(inputs)
        if not text:
            return None
        m = self.models
        vector = self._vector(text)
        now = time.time()
        flt = m.Filter(must=[
            m.FieldCondition(key="spec", match=m.MatchValue(value=self.spec_hash)),
            m.FieldCondition(key="rest", match=m.MatchValue(value=rest)),
            m.FieldCondition(key="created", range=m.Range(gte=now - self.settings.ttl_s)),
        ])
        with self._lock:
            hits = self.client.query_points(
                self.collection, query=vector, query_filter=flt, limit=1,
                score_threshold=self.settings.threshold, with_payload=True).points
        if not hits:
            return None
        payload = hits[0].payload or {}
        return dict(payload.get("answer") or {}), float(hits[0].score)

    def put(self, inputs: Mapping[str, Any], answer: CachedAnswer) -> None:
        text, rest = self.split(inputs)
        if not text:
            return
        m = self.models
        point = m.PointStruct(id=str(uuid.uuid4()), vector=self._vector(text), payload={
            "spec": self.spec_hash, "rest": rest, "created": time.time(), "answer": answer})
        with self._lock:
            self.client.upsert(self.collection, points=[point])
            self._sweep()

    def _sweep(self) -> None:
        now = time.time()
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        m = self.models
        self.client.delete(self.collection, points_selector=m.FilterSelector(filter=m.Filter(
            must=[m.FieldCondition(key="created",
                                   range=m.Range(lt=now - self.settings.ttl_s))])))
