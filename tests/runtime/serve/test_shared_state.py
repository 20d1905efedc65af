"""State that ingress replicas share through a real Redis (and keep in process without one):
the rate limit, the exact cache and the semantic cache; the request log's redaction."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from nux_runtime.serve import caches
from nux_runtime.serve.auth import RateLimiter
from nux_runtime.serve.caches import ExactCache, SemanticCache, cache_scope
from nux_runtime.serve.logs import RequestLog
from nux_runtime.serve.settings import (
    CacheSettings,
    RateLimitSettings,
    SemanticCacheSettings,
    SharedStateSettings,
)


def test_the_redis_url_comes_from_its_setting_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUX_REDIS_URL", raising=False)
    assert SharedStateSettings().url() is None
    monkeypatch.setenv("NUX_REDIS_URL", "redis://cache:6379/0")
    assert SharedStateSettings().url() == "redis://cache:6379/0"
    assert SharedStateSettings(redis_url="redis://x/1").url() == "redis://x/1"


def test_two_replicas_share_one_rate_limit(redis_url: str) -> None:
    settings = RateLimitSettings(rate_per_s=1.0, burst=5)  # 5 per 5 s
    replicas = [RateLimiter(settings, redis_url=redis_url, namespace="t") for _ in range(2)]

    async def scenario() -> list[float]:
        return [await replicas[i % 2].take("key") for i in range(8)]

    waits = asyncio.run(scenario())
    assert waits[:5] == [0.0] * 5
    assert all(w > 0 for w in waits[5:]), waits  # not 5 per replica
    alone = [RateLimiter(settings) for _ in range(2)]  # in process: each its own
    assert asyncio.run(alone[0].take("key")) == asyncio.run(alone[1].take("key")) == 0.0


def test_exact_answers_are_shared_scoped_and_expire(redis_url: str) -> None:
    async def scenario() -> None:
        client_a, client_b = redis.asyncio.from_url(redis_url), redis.asyncio.from_url(redis_url)
        settings = CacheSettings(ttl_s=0.5)
        a = ExactCache("spec1", settings, redis_client=client_a)
        b = ExactCache("spec1", settings, redis_client=client_b)
        other_spec = ExactCache("spec2", settings, redis_client=client_b)
        scope = cache_scope("tenant-a", {"answer": {"t": 0.1}})
        await a.put({"q": "hello  world"}, {"output": "hi"}, scope)
        assert await b.get({"q": "hello world"}, scope) == {"output": "hi"}
        assert await b.get({"q": "hello world"}, cache_scope("tenant-b", {})) is None
        assert await other_spec.get({"q": "hello world"}, scope) is None
        await asyncio.sleep(0.7)
        assert await b.get({"q": "hello world"}, scope) is None
        await client_a.aclose()
        await client_b.aclose()

    asyncio.run(scenario())


def test_scopes_differ_by_tenant_and_params() -> None:
    base = cache_scope("k1", {"a": {"t": 0.1}})
    assert base == cache_scope("k1", {"a": {"t": 0.1}})
    assert base != cache_scope("k2", {"a": {"t": 0.1}})
    assert base != cache_scope("k1", {"a": {"t": 0.2}})
    assert base != cache_scope(None, {"a": {"t": 0.1}})


@pytest.fixture(scope="module")
def embedder() -> object:
    from nux_runtime.components.embed import get_embedder

    return get_embedder("minilm")


def test_semantic_answers_are_shared_scoped_bounded_and_expire(redis_url: str,
                                                               embedder: object) -> None:
    import redis as sync_redis

    def replica(ttl_s: float) -> SemanticCache:
        settings = SemanticCacheSettings(enabled=True, threshold=0.9, ttl_s=ttl_s, max_entries=2)
        return SemanticCache("spec1", settings, embedder=embedder,  # type: ignore[arg-type]
                             redis_client=sync_redis.Redis.from_url(redis_url))

    a, b = replica(600), replica(600)
    scope = cache_scope("tenant-a", {})
    asked = {"question": "What is the capital city of France?"}
    a.put(asked, {"output": "Paris"}, scope)
    near = b.get({"question": "what is the capital city of France"}, scope)
    assert near.answer == {"output": "Paris"} and near.similarity is not None
    assert near.distance is not None and near.distance < 0.1
    far = b.get({"question": "How many legs does a spider have?"}, scope)
    assert far.answer is None and far.distance is not None and far.distance > 0.1
    assert b.get(asked, cache_scope("tenant-b", {})).answer is None
    # The size bound: two entries per scope, the oldest goes first.
    a.put({"question": "Who wrote Hamlet?"}, {"output": "Shakespeare"}, scope)
    a.put({"question": "What colour is the sky?"}, {"output": "blue"}, scope)
    assert b.get(asked, scope).answer is None
    assert b.get({"question": "Who wrote Hamlet?"}, scope).answer == {"output": "Shakespeare"}
    # The TTL: an entry older than ttl_s is never an answer, in a mirror or read afresh.
    short_a, short_b = replica(1.0), replica(1.0)
    short_scope = cache_scope("tenant-c", {})
    short_a.put(asked, {"output": "Paris"}, short_scope)
    time.sleep(1.2)
    assert short_a.get(asked, short_scope).answer is None
    assert short_b.get(asked, short_scope).answer is None


def test_semantic_cache_in_process_keeps_non_text_inputs_apart(embedder: object) -> None:
    cache = SemanticCache("spec1", SemanticCacheSettings(enabled=True, threshold=0.9),
                          embedder=embedder)  # type: ignore[arg-type]
    cache.put({"question": "Where is my refund?", "tier": 1}, {"output": "one"})
    assert cache.get({"question": "where is my refund", "tier": 1}).answer == {"output": "one"}
    assert cache.get({"question": "where is my refund", "tier": 2}).answer is None


class _Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.dimension, self.texts = inner, inner.dimension, list[str]()

    def embed(self, texts: list[str], **options: Any) -> Any:
        self.texts += texts
        return self.inner.embed(texts, **options)


def test_semantic_cache_embeds_a_text_once_and_keeps_its_scopes(
        embedder: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caches, "MEMO_SIZE", 2)
    counting = _Counting(embedder)
    cache = SemanticCache("spec1", SemanticCacheSettings(enabled=True, threshold=0.9),
                          embedder=counting)  # type: ignore[arg-type]
    asked = {"question": "Where is my refund?"}
    assert cache.blocks(asked)  # MiniLM must run: off the event loop
    asyncio.run(cache.remember(asked, {"output": "one"}, "tenant-a"))
    assert not cache.blocks({"question": " Where is  my refund?"})  # the same text
    found = asyncio.run(cache.lookup({"question": " Where is  my refund?"}, "tenant-a"))
    assert found.answer == {"output": "one"} and found.similarity == pytest.approx(1.0)
    assert asyncio.run(cache.lookup(asked, "tenant-b")).answer is None  # still scoped
    assert counting.texts == ["question: Where is my refund?"]  # embedded once
    # the memo is bounded: the oldest text is embedded again when it comes back
    for text in ("Who wrote Hamlet?", "What colour is the sky?"):
        cache.put({"question": text}, {"output": text}, "tenant-a")
    assert cache.blocks(asked)
    assert cache.get(asked, "tenant-a").answer == {"output": "one"}
    assert len(counting.texts) == 4


def _wait_for_lines(path: Path, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_the_request_log_is_redacted_by_default_and_owner_only(tmp_path: Path) -> None:
    record = {"request_id": "r1", "inputs": {"question": "mail jane.doe@example.com"},
              "output": "call 415-555-0199", "spec_hash": "abc"}
    redacted = RequestLog(str(tmp_path / "logs" / "requests.jsonl"))
    redacted.write(dict(record))
    line = _wait_for_lines(redacted.path, 1)[0]
    assert line["inputs"] == {"question": "mail [email]"} and line["output"] == "call [phone]"
    assert line["request_id"] == "r1"
    verbatim = RequestLog(str(tmp_path / "verbatim.jsonl"), verbatim=True)
    verbatim.write(dict(record))
    assert _wait_for_lines(verbatim.path, 1)[0]["inputs"] == record["inputs"]
    for path in (redacted.path, verbatim.path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loose = tmp_path / "loose.jsonl"
    loose.write_text("")
    loose.chmod(0o644)
    RequestLog(str(loose))
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    logging.shutdown()
