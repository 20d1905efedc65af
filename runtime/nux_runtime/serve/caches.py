"""Answer caches of the ingress, in process or shared by every replica through Redis.

Both caches are scoped: the spec hash (a new version never reuses answers), the caller's API key
when the request names one (one tenant never sees another's answers) and the digest of the
params the stage replicas run with (a Serve config's ``user_config`` changes them without a new
spec). :func:`cache_scope` makes the scope; the caches add the spec hash.

* :class:`ExactCache`: the same inputs after normalization (Unicode NFKC, trimmed and collapsed
  whitespace, optionally case-folded) -> the same answer, for a TTL. In process: a bounded
  ``cachetools.TTLCache``; with Redis: one key per answer with the TTL as its expiry (redis-py's
  asyncio client, so the event loop never waits on a socket).
* :class:`SemanticCache`: the request's text embedded with MiniLM; an answer is reused when the
  cosine similarity to an earlier request of the same scope (and identical non-text inputs)
  reaches the threshold, within the TTL. Entries live in a Redis stream per scope (``XADD`` with
  ``MAXLEN`` for the size bound, ``MINID`` trimming and key expiry for the TTL); each replica
  mirrors the streams it reads, pulling only entries newer than the last it saw, and searches
  the mirror with one matrix product. Without Redis the mirror is the store. (RedisVL's
  ``SemanticCache`` needs the Redis query engine, which the plain ``redis-server`` does not have;
  a stream works on any Redis.) Embedding is nearly all of a lookup's time, so the vectors of
  the last :data:`MEMO_SIZE` texts are kept: the same text is never embedded twice, and its
  in-process lookup (:meth:`SemanticCache.lookup`) runs on the event loop, with no thread hop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from cachetools import LRUCache, TTLCache

from nux_runtime.serve.settings import CacheSettings, SemanticCacheSettings
from nux_runtime.spec import canonical_json

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from nux_runtime.components.embed import Embedder

__all__ = ["MEMO_SIZE", "CachedAnswer", "ExactCache", "Lookup", "SemanticCache", "cache_scope",
           "normalize"]

CachedAnswer = dict[str, Any]
#: Texts whose embedding a semantic cache keeps (384 floats each for MiniLM: 6 MB in all).
MEMO_SIZE = 4096


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


def cache_scope(tenant: str | None, params: Mapping[str, Any]) -> str:
    """The scope of a request's answers: its caller (None: no key) and the stages' params."""
    body = canonical_json({"tenant": tenant or "", "params": dict(params)})
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ExactCache:
    """Answers keyed by (spec hash, scope, normalized inputs) for a TTL."""

    def __init__(self, spec_hash: str, settings: CacheSettings, *,
                 redis_client: redis.asyncio.Redis | None = None, prefix: str = "nux") -> None:
        self.spec_hash = spec_hash
        self.settings = settings
        self.redis = redis_client
        self.prefix = prefix
        self._local: TTLCache[str, CachedAnswer] = TTLCache(settings.max_entries, settings.ttl_s)
        self._lock = threading.Lock()

    def key(self, inputs: Mapping[str, Any], scope: str = "") -> str:
        body = canonical_json(normalize(dict(inputs), casefold=self.settings.casefold))
        return f"{self.prefix}:exact:{_digest(f'{self.spec_hash}:{scope}:{body}')}"

    async def get(self, inputs: Mapping[str, Any], scope: str = "") -> CachedAnswer | None:
        key = self.key(inputs, scope)
        if self.redis is None:
            with self._lock:
                return self._local.get(key)
        raw = await self.redis.get(key)
        return None if raw is None else dict(json.loads(raw))

    async def put(self, inputs: Mapping[str, Any], answer: CachedAnswer, scope: str = "") -> None:
        key = self.key(inputs, scope)
        if self.redis is None:
            with self._lock:
                self._local[key] = answer
            return
        await self.redis.set(key, json.dumps(answer, default=str),
                             px=max(1, int(self.settings.ttl_s * 1000)))


@dataclass(frozen=True)
class Lookup:
    """A semantic lookup: the answer when one was close enough, and the nearest distance."""

    answer: CachedAnswer | None
    similarity: float | None

    @property
    def distance(self) -> float | None:
        """Cosine distance to the nearest entry of the scope (None: the scope is empty)."""
        return None if self.similarity is None else max(0.0, 1.0 - self.similarity)


@dataclass
class _Mirror:
    """A scope's entries as this replica knows them: stream ids, vectors and answers."""

    dimension: int
    last_id: str = "0-0"
    created_ms: list[int] = field(default_factory=list)
    answers: list[CachedAnswer] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def __post_init__(self) -> None:
        self.vectors = np.zeros((0, self.dimension), dtype=np.float32)

    def add(self, rows: list[tuple[int, np.ndarray, CachedAnswer]], keep: int,
            oldest_ms: int) -> None:
        if rows:
            self.created_ms.extend(r[0] for r in rows)
            self.answers.extend(r[2] for r in rows)
            self.vectors = np.vstack([self.vectors, np.stack([r[1] for r in rows])])
        start = 0
        while start < len(self.created_ms) and self.created_ms[start] < oldest_ms:
            start += 1
        start = max(start, len(self.created_ms) - keep)
        if start:
            del self.created_ms[:start], self.answers[:start]
            self.vectors = self.vectors[start:]

    def nearest(self, vector: np.ndarray) -> tuple[int, float] | None:
        if not self.answers:
            return None
        sims = self.vectors @ vector
        best = int(np.argmax(sims))
        return best, float(sims[best])


class SemanticCache:
    """Near-duplicate requests of one scope answered from earlier answers (blocking: use a
    thread). ``redis_client`` shares the entries with every replica; without it they stay here."""

    def __init__(self, spec_hash: str, settings: SemanticCacheSettings, *,
                 redis_client: redis.Redis | None = None, prefix: str = "nux",
                 embedder: Embedder | None = None) -> None:
        if embedder is None:
            from nux_runtime.components.embed import get_embedder

            embedder = get_embedder(settings.embedder)
        self.embedder = embedder
        self.spec_hash = spec_hash
        self.settings = settings
        self.redis = redis_client
        self.prefix = prefix
        self._mirrors: LRUCache[str, _Mirror] = LRUCache(maxsize=1024)
        self._lock = threading.Lock()
        # text -> its embedding (a pure function of the text: the model is fixed per cache)
        self._memo: LRUCache[str, np.ndarray] = LRUCache(maxsize=MEMO_SIZE)
        self._memo_lock = threading.Lock()

    @staticmethod
    def split(inputs: Mapping[str, Any]) -> tuple[str, str]:
        """(the text that is embedded, the digest of everything else)."""
        text = "\n".join(f"{k}: {' '.join(v.split())}" for k, v in sorted(inputs.items())
                         if isinstance(v, str))
        rest = canonical_json({k: v for k, v in inputs.items() if not isinstance(v, str)})
        return text, _digest(rest)

    def stream_key(self, scope: str, rest: str) -> str:
        return f"{self.prefix}:semantic:{_digest(f'{self.spec_hash}:{scope}:{rest}')[:40]}"

    def _vector(self, text: str) -> np.ndarray:
        """The text's embedding: memoized, else MiniLM (blocking)."""
        with self._memo_lock:
            vector = self._memo.get(text)
        if vector is None:
            vector = np.asarray(self.embedder.embed([text])[0], dtype=np.float32)
            vector.flags.writeable = False  # shared by every lookup of the same text
            with self._memo_lock:
                self._memo[text] = vector
        return vector

    def blocks(self, inputs: Mapping[str, Any]) -> bool:
        """Whether a lookup or put of ``inputs`` waits on something (MiniLM or Redis)."""
        if self.redis is not None:
            return True
        text, _ = self.split(inputs)
        with self._memo_lock:
            return bool(text) and text not in self._memo

    async def lookup(self, inputs: Mapping[str, Any], scope: str = "") -> Lookup:
        """:meth:`get` for an event loop: inline when nothing blocks (in process, the text's
        embedding known), in a worker thread otherwise."""
        if self.blocks(inputs):
            return await asyncio.to_thread(self.get, inputs, scope)
        return self.get(inputs, scope)

    async def remember(self, inputs: Mapping[str, Any], answer: CachedAnswer,
                       scope: str = "") -> None:
        """:meth:`put` for an event loop, like :meth:`lookup`."""
        if self.blocks(inputs):
            await asyncio.to_thread(self.put, inputs, answer, scope)
        else:
            self.put(inputs, answer, scope)

    def _mirror(self, key: str) -> _Mirror:
        mirror = self._mirrors.get(key)
        if mirror is None:
            mirror = self._mirrors[key] = _Mirror(self.embedder.dimension)
        return mirror

    def _pull(self, key: str, mirror: _Mirror, now_ms: int) -> None:
        """Bring the mirror up to date with the shared stream (entries after the last seen)."""
        rows: list[tuple[int, np.ndarray, CachedAnswer]] = []
        if self.redis is not None:
            entries: Any = self.redis.xrange(key, min=f"({mirror.last_id}", max="+")
            for entry_id, fields in entries:
                entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                mirror.last_id = entry
                vector = np.frombuffer(fields[b"v"], dtype=np.float32)
                if vector.shape != (self.embedder.dimension,):
                    continue  # written by another embedding model
                rows.append((int(entry.split("-")[0]), vector, json.loads(fields[b"a"])))
        ttl_ms = int(self.settings.ttl_s * 1000)
        mirror.add(rows, self.settings.max_entries, now_ms - ttl_ms)

    def get(self, inputs: Mapping[str, Any], scope: str = "") -> Lookup:
        """The nearest earlier answer of the scope, reused when similar enough."""
        text, rest = self.split(inputs)
        if not text:
            return Lookup(None, None)
        vector = self._vector(text)
        key = self.stream_key(scope, rest)
        with self._lock:
            mirror = self._mirror(key)
            self._pull(key, mirror, int(time.time() * 1000))
            found = mirror.nearest(vector)
            if found is None:
                return Lookup(None, None)
            index, similarity = found
            answer = mirror.answers[index] if similarity >= self.settings.threshold else None
        return Lookup(None if answer is None else dict(answer), similarity)

    def put(self, inputs: Mapping[str, Any], answer: CachedAnswer, scope: str = "") -> None:
        text, rest = self.split(inputs)
        if not text:
            return
        vector = self._vector(text)
        key = self.stream_key(scope, rest)
        now_ms = int(time.time() * 1000)
        ttl_ms = int(self.settings.ttl_s * 1000)
        if self.redis is None:
            with self._lock:
                self._mirror(key).add([(now_ms, vector, dict(answer))],
                                      self.settings.max_entries, now_ms - ttl_ms)
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(key, {"v": vector.tobytes(), "a": json.dumps(answer, default=str)},
                  maxlen=self.settings.max_entries, approximate=False)
        pipe.xtrim(key, minid=str(now_ms - ttl_ms), approximate=False)
        pipe.pexpire(key, ttl_ms)
        pipe.execute()
