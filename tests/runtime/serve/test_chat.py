"""The served gemma workbook: streamed tokens, the semantic cache and the rate limit."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from nux_kernel import Workbook
from tests.fixtures.ray_serve import ServeCluster
from tests.runtime.serve.conftest import LIMITED_KEY, Served
from tests.runtime.serve.test_http import parse_sse

pytestmark = pytest.mark.slow


def test_stream_sends_the_llm_tokens_as_they_come(chat: Served) -> None:
    with chat.client() as api:
        r = api.post("/v1/run/stream", json={"question": "Name a primary color."},
                     headers={"Cache-Control": "no-cache"})
    assert r.status_code == 200, r.text
    events = parse_sse(r.text)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done"
    tokens = [data["token"] for e, data in events if e == "token"]
    assert len(tokens) > 1, "a streaming LLM stage sends more than one token event"
    done = events[-1][1]
    assert done["output"] == "".join(tokens)
    streamed = done["stages"]["reply"]
    with chat.client() as api:
        plain = api.post("/v1/run", json={"question": "Name a primary color."},
                         headers={"Cache-Control": "no-cache"}).json()["stages"]["reply"]
    # Priced like the plain call: the prompt's tokens, and the written text's tokens (the plain
    # count also holds the token that carried the stop sequence).
    assert streamed["tokens_in"] == plain["tokens_in"] > 0
    assert abs(streamed["tokens_out"] - plain["tokens_out"]) <= 1
    assert streamed["cost_usd"] > 0


def test_semantic_cache_answers_a_paraphrase(chat: Served) -> None:
    with chat.client() as api:
        first = api.post("/v1/run", json={"question": "What is the capital city of France?"})
        near = api.post("/v1/run", json={"question": "what is the capital city of France"})
        other = api.post("/v1/run", json={"question": "How many legs does a spider have?"})
    assert first.status_code == near.status_code == other.status_code == 200
    assert first.json()["cache"] is None
    assert near.json()["cache"] == "semantic"
    assert near.json()["similarity"] >= 0.9
    assert near.json()["output"] == first.json()["output"]
    assert other.json()["cache"] is None
    assert first.json()["stages"]["reply"]["tokens_in"] > 0


def test_rate_limit_per_key_is_429_with_retry_after(chat: Served) -> None:
    # The limit applies before the body is read: cheap invalid bodies drain the bucket.
    statuses = []
    with chat.client(LIMITED_KEY) as api:
        for _ in range(14):
            r = api.post("/v1/run", json={})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
                assert r.json()["error"] == "rate-limited"
    assert statuses[0] == 422
    assert 429 in statuses
    # Another key has its own bucket.
    with chat.client() as api:
        assert api.get("/healthz").status_code == 200
        assert api.post("/v1/run", json={}).status_code == 422


#: streams in flight at once: more than a stage replica's default worker threads on a machine
#: of up to 28 CPUs (min(32, CPUs + 4)), all let into the replica at once
STREAMS = 32


@pytest.fixture(scope="module")
def many_streams(ray_serve: ServeCluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    from nux_runtime.serve.app import build_app

    base = tmp_path_factory.mktemp("streams")
    wb = Workbook("streams", base_dir=base, output="reply", inputs={"question": "string"})
    wb.model("reply", uses="llm.local/gemma-3-270m", inputs=["question"],
             params={"template": "Question: {question}\nAnswer:", "max_tokens": 6,
                     "temperature": 0.0, "stop": ["\n\n"]},
             scale={"max_ongoing_requests": STREAMS})
    (base / "spec.json").write_text(wb.compile().to_json())
    return ray_serve.deploy(build_app({
        "spec_path": str(base / "spec.json"), "base_dir": str(base), "stage_cpus": 0.25,
        "ingress_cpus": 0.1, "rate_limit": {"enabled": False}, "cache": {"enabled": False},
        "semantic_cache": {"enabled": False}}), "streams")


def test_more_streams_than_the_replica_has_threads_all_finish(many_streams: str) -> None:
    # A stream holds the model from its first token to its last. Streams waiting for it must
    # not take the threads the one holding it needs to go on.
    async def stream(client: httpx.AsyncClient, i: int) -> list[tuple[str, Any]]:
        r = await client.post("/v1/run/stream", json={"question": f"Count to {i}."})
        assert r.status_code == 200, r.text
        return parse_sse(r.text)

    async def all_streams() -> list[list[tuple[str, Any]]]:
        async with httpx.AsyncClient(base_url=many_streams, timeout=180,
                                     limits=httpx.Limits(max_connections=STREAMS)) as client:
            return await asyncio.gather(*(stream(client, i) for i in range(STREAMS)))

    answers = asyncio.run(asyncio.wait_for(all_streams(), 240))
    assert [events[-1][0] for events in answers] == ["done"] * STREAMS, answers[0][-1]
