"""The served app against a hand-written Ray Serve composition of the same stage functions.

Both run in the same Ray, in the same run, on the same four stage functions (clean; topic and
lookup side by side; answer), one deployment each. NUX builds its app from the workbook spec
(an ingress walking the DAG with validation, metrics, logs and traces; caches and rate limit
off); the baseline is what an engineer would write by hand (a FastAPI ingress awaiting the
handles, ``asyncio.gather`` for the two side branches). Measured: p50/p95 latency and throughput
at concurrency 1 and 16, and the p50 of a semantic-cache hit against an uncached NUX request:
for a text asked before (its embedding is memoized) and for a new text (MiniLM runs: the same
questions with the case of their letters flipped at random, which the uncased model reads as the
same text, so every request is a hit).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from ray import serve

from benchmarks.report import Row

TOPIC = "serve"
CLEAN = "def clean(question: str) -> str:\n    return ' '.join(question.split())\n"
TOPIC_FN = ("def topic(clean: str) -> str:\n"
            "    return 'billing' if 'refund' in clean else 'general'\n")
LOOKUP = "def lookup(clean: str, tier: str) -> str:\n    return f'{tier}:{len(clean.split())}'\n"
TEMPLATE = "[{topic}] {clean} ({lookup})"
ANSWER = ("def answer(clean: str, topic: str, lookup: str) -> str:\n"
          f"    return {TEMPLATE!r}.format(clean=clean, topic=topic, lookup=lookup)\n")
QUESTIONS = ["where is my refund", "reset my password please", "upgrade my plan to pro",
             "the invoice total looks wrong", "how do I change my login email"]


def _workbook(base: Path) -> Any:
    from nux_kernel import Workbook

    wb = Workbook("bench", base_dir=base, output="answer",
                  inputs={"question": "string", "tier": "string"})
    wb.code("clean", CLEAN)
    wb.code("topic", TOPIC_FN)
    wb.code("lookup", LOOKUP)
    wb.template("answer", inputs=["clean", "topic", "lookup"], template=TEMPLATE)
    return wb.compile()


app = FastAPI()


class Function:
    """One stage function as its own deployment (hand-written)."""

    def __init__(self, source: str, name: str) -> None:
        namespace: dict[str, Any] = {}
        exec(compile(source, name, "exec"), namespace)
        self.fn = namespace[name]

    def __call__(self, kwargs: dict[str, Any]) -> Any:
        return self.fn(**kwargs)


_HANDLES: dict[str, Any] = {}


@app.post("/v1/run")
async def composition_run(request: Request) -> dict[str, Any]:
    """The hand-written walk: clean, then topic and lookup together, then the answer."""
    body = await request.json()
    clean = await _HANDLES["clean"].remote({"question": body["question"]})
    topic, lookup = await asyncio.gather(
        _HANDLES["topic"].remote({"clean": clean}),
        _HANDLES["lookup"].remote({"clean": clean, "tier": body["tier"]}))
    answer = await _HANDLES["answer"].remote({"clean": clean, "topic": topic, "lookup": lookup})
    return {"output": answer}


@serve.ingress(app)
class Composition:
    """The hand-written ingress deployment holding the four function handles."""

    def __init__(self, clean: Any, topic: Any, lookup: Any, answer: Any) -> None:
        _HANDLES.update(clean=clean, topic=topic, lookup=lookup, answer=answer)


def _baseline_app() -> Any:
    """The hand-written composition: the same functions, one deployment each."""
    function: Any = serve.deployment(Function, ray_actor_options={"num_cpus": 0.1})
    ingress: Any = serve.deployment(Composition, ray_actor_options={"num_cpus": 0.1},
                                    max_ongoing_requests=256)
    return ingress.bind(function.options(name="clean").bind(CLEAN, "clean"),
                        function.options(name="topic").bind(TOPIC_FN, "topic"),
                        function.options(name="lookup").bind(LOOKUP, "lookup"),
                        function.options(name="answer").bind(ANSWER, "answer"))


def _recased(text: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


async def _measure(url: str, concurrency: int, total: int, *, vary: str = "number",
                   headers: dict[str, str] | None = None) -> tuple[list[float], float]:
    """``vary``: "number" (a new question each time), "case" (a question asked before, its
    letters' case flipped at random), "no" (the questions as they are)."""
    latencies: list[float] = []
    counter = iter(range(total))
    rng = random.Random(total)

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            q = QUESTIONS[i % len(QUESTIONS)]
            if vary == "number":
                q += f" #{i}"
            elif vary == "case":
                q = _recased(q, rng)
            t0 = time.perf_counter()
            r = await client.post("/v1/run", json={"question": q, "tier": "pro"},
                                  headers=headers or {})
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, total / (time.perf_counter() - start)


async def _healthz(url: str, total: int) -> list[float]:
    """Latencies of a route that does no work: the proxy and ingress hop alone."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(total):
            t0 = time.perf_counter()
            (await client.get("/healthz")).raise_for_status()
            latencies.append(time.perf_counter() - t0)
    return latencies


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


def run() -> list[Row]:
    from nux_runtime.serve.app import build_app
    from nux_runtime.serve.local import start_local, stop_local

    # Replicas import this module by name: let the workers Ray starts find the repository.
    root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)
    base = Path(tempfile.mkdtemp(prefix="nux-bench-serve-"))
    spec = _workbook(base)
    (base / "spec.json").write_text(spec.to_json())
    common = {"spec_path": str(base / "spec.json"), "stage_cpus": 0.1, "ingress_cpus": 0.1,
              "rate_limit": {"enabled": False}, "cache": {"enabled": False}}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rows: list[Row] = []
    try:
        start_local(4, port=port)
        serve.run(build_app(common), name="nux", route_prefix="/nux")
        serve.run(_baseline_app(), name="hand", route_prefix="/hand")
        serve.run(build_app({**common, "semantic_cache": {"enabled": True, "threshold": 0.9}}),
                  name="sem", route_prefix="/sem")
        root = f"http://127.0.0.1:{port}"
        for concurrency, total in ((1, 150), (16, 800)):
            nux: list[float] = []
            hand: list[float] = []
            nux_rps: list[float] = []
            hand_rps: list[float] = []
            asyncio.run(_measure(f"{root}/nux", concurrency, 40))  # warm both
            asyncio.run(_measure(f"{root}/hand", concurrency, 40))
            for _ in range(2):  # alternate so drift on a shared machine hits both
                lat, rps = asyncio.run(_measure(f"{root}/nux", concurrency, total // 2))
                nux += lat
                nux_rps.append(rps)
                lat, rps = asyncio.run(_measure(f"{root}/hand", concurrency, total // 2))
                hand += lat
                hand_rps.append(rps)
            p50, b50 = _p(nux, 0.5), _p(hand, 0.5)
            p95, b95 = _p(nux, 0.95), _p(hand, 0.95)
            rps, brps = statistics.mean(nux_rps), statistics.mean(hand_rps)
            rows += [
                Row(TOPIC, f"p50 latency, concurrency {concurrency}", p50, "ms",
                    "hand-written Serve", b50, "within 10%", p50 <= b50 * 1.1),
                Row(TOPIC, f"p95 latency, concurrency {concurrency}", p95, "ms",
                    "hand-written Serve", b95),
                Row(TOPIC, f"throughput, concurrency {concurrency}", rps, "req/s",
                    "hand-written Serve", brps, ">= 90%", rps >= brps * 0.9),
            ]
        uncached, _ = asyncio.run(_measure(f"{root}/sem", 1, 30,
                                           headers={"Cache-Control": "no-cache"}))
        asyncio.run(_measure(f"{root}/sem", 1, len(QUESTIONS), vary="no"))  # fill the cache
        seen, _ = asyncio.run(_measure(f"{root}/sem", 1, 60, vary="no"))
        new, _ = asyncio.run(_measure(f"{root}/sem", 1, 60, vary="case"))
        floor = asyncio.run(_healthz(f"{root}/sem", 60))
        rows += [
            Row(TOPIC, "semantic-cache hit p50, a text asked before (embedding memoized)",
                _p(seen, 0.5), "ms", "uncached NUX request", _p(uncached, 0.5), "under 10 ms",
                _p(seen, 0.5) < 10.0),
            Row(TOPIC, "semantic-cache hit p50 over Serve's HTTP floor (same text)",
                _p(seen, 0.5), "ms", "GET /healthz through the same proxy", _p(floor, 0.5)),
            Row(TOPIC, "semantic-cache hit p50, a new text (MiniLM runs)", _p(new, 0.5), "ms",
                "uncached NUX request", _p(uncached, 0.5), "reported"),
        ]
    finally:
        stop_local()
    return rows
