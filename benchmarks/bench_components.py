"""Vetted components against the raw libraries they wrap, measured in the same run.

- Local LLM tokens/s: a ``llm.local/gemma-3-270m`` stage run by the playground executor vs
  ``Llama.create_completion`` on the same loaded model, same prompt and options, runs
  interleaved (goal: NUX within 5%).
- Embedding throughput: an ``embed.local/minilm`` stage on a batch of texts vs
  ``SentenceTransformer.encode`` on the same model (goal: within 5%).
- Qdrant search p50 at 10k chunks (local mode): a ``qdrant.search`` stage (query embedding
  included), dense and hybrid, vs ``SentenceTransformer.encode`` + ``QdrantClient.query_points``
  on the same store.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.report import Row
from nux_kernel import Executor, Workbook

ROUNDS = 7
GOAL_RATIO = 0.95
LLM_TOKENS = 64
EMBED_TEXTS = 256
CHUNKS = 10_000
QUERIES = 60


def _interleaved(a: Callable[[], float], b: Callable[[], float], rounds: int
                 ) -> tuple[float, float]:
    """Median of each rate, measured alternately so drift hits both sides alike."""
    a(), b()  # warm both paths
    xs, ys = [], []
    for _ in range(rounds):
        xs.append(a())
        ys.append(b())
    return statistics.median(xs), statistics.median(ys)


def bench_llm(tmp: Path) -> list[Row]:
    from nux_runtime.components.llm_local import get_llama

    template = "Story: {topic}\nText:"
    params = {"template": template, "max_tokens": LLM_TOKENS, "temperature": 0.0, "stop": ["\x00"],
              "seed": 1}
    wb = Workbook("bench-llm", inputs={"topic": "string"}, output="write")
    wb.model("write", uses="llm.local/gemma-3-270m", inputs=["topic"], params=params)
    executor = Executor(wb.compile(), base_dir=tmp, cache=False)
    inputs = {"topic": "a lighthouse keeper who finds a map"}
    llama = get_llama()
    prompt = template.format(**inputs)

    def nux() -> float:
        start = time.perf_counter()
        result = executor.run(inputs)
        elapsed = time.perf_counter() - start
        return result.traces["write"].tokens_out / elapsed

    def raw() -> float:
        start = time.perf_counter()
        out = llama.create_completion(prompt, max_tokens=LLM_TOKENS, temperature=0.0,
                                      top_p=0.95, stop=["\x00"], seed=1)
        elapsed = time.perf_counter() - start
        return int(out["usage"]["completion_tokens"]) / elapsed  # type: ignore[index]

    ours, theirs = _interleaved(nux, raw, ROUNDS)
    executor.close()
    return [Row("components", f"local LLM tokens/s ({LLM_TOKENS} tokens, gemma-3-270m)", ours,
                "tokens/s", "llama-cpp-python direct", theirs, "within 5% of direct",
                ours / theirs >= GOAL_RATIO)]


def bench_embed(tmp: Path) -> list[Row]:
    from nux_runtime.components.embed import get_embedder

    rng = random.Random(7)
    words = ["policy", "holiday", "password", "office", "badge", "server", "request", "answer",
             "manager", "team"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 40)))
             for _ in range(EMBED_TEXTS)]
    wb = Workbook("bench-embed", inputs={"texts": {"type": "array", "items": {"type": "string"}}},
                  output="vec")
    wb.model("vec", uses="embed.local/minilm", inputs=["texts"], params={"batch_size": 32})
    executor = Executor(wb.compile(), base_dir=tmp, cache=False)
    model = get_embedder().model

    def nux() -> float:
        start = time.perf_counter()
        executor.run({"texts": texts})
        return EMBED_TEXTS / (time.perf_counter() - start)

    def raw() -> float:
        start = time.perf_counter()
        model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                     show_progress_bar=False).tolist()
        return EMBED_TEXTS / (time.perf_counter() - start)

    ours, theirs = _interleaved(nux, raw, ROUNDS)
    executor.close()
    return [Row("components", f"embeddings texts/s ({EMBED_TEXTS} texts, MiniLM)", ours,
                "texts/s", "sentence-transformers direct", theirs, "within 5% of direct",
                ours / theirs >= GOAL_RATIO)]


def bench_qdrant(tmp: Path) -> list[Row]:
    import numpy as np
    from qdrant_client import models

    from nux_runtime.components.base import RuntimeContext
    from nux_runtime.components.embed import get_embedder
    from nux_runtime.components.qdrant_store import (
        METRICS,
        SPARSE,
        ensure_collection,
        sparse_document,
        store_client,
    )

    embedder = get_embedder()
    client = store_client({"path": ".nux/qdrant"}, RuntimeContext(tmp))
    ensure_collection(client, "bench", embedder.dimension)
    rng = np.random.default_rng(7)
    vocab = [f"term{i}" for i in range(5000)]
    for start in range(0, CHUNKS, 1000):
        vectors = rng.standard_normal((1000, embedder.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        points = []
        for i, vector in enumerate(vectors):
            text = " ".join(rng.choice(vocab, size=60))
            dense = vector.tolist()
            points.append(models.PointStruct(
                id=str(uuid.UUID(int=start + i)),
                vector={**{name: dense for name in METRICS.values()},
                        SPARSE: sparse_document(text)},
                payload={"text": text, "source": f"doc{(start + i) // 20}.md", "chunk": i % 20,
                         "digest": "bench"}))
        client.upsert("bench", points=points)

    questions = [" ".join(rng.choice(vocab, size=8)) for _ in range(QUERIES)]

    def p50_stage(**params: object) -> float:
        wb = Workbook("bench-search", inputs={"question": "string"}, output="find")
        wb.data("find", uses="qdrant.search", inputs=["question"],
                params={"collection": "bench", "top_k": 5, **params})
        executor = Executor(wb.compile(), base_dir=tmp, cache=False)
        executor.run({"question": questions[0]})
        samples = []
        for q in questions:
            start = time.perf_counter()
            executor.run({"question": q})
            samples.append((time.perf_counter() - start) * 1000.0)
        executor.close()
        return statistics.median(samples)

    def p50_raw() -> float:
        samples = []
        for q in questions:
            start = time.perf_counter()
            vector = embedder.model.encode([q], normalize_embeddings=True)[0].tolist()
            client.query_points("bench", query=vector, using=METRICS["cosine"], limit=5,
                                with_payload=True)
            samples.append((time.perf_counter() - start) * 1000.0)
        return statistics.median(samples)

    raw = p50_raw()
    dense = p50_stage()
    hybrid = p50_stage(hybrid=True)
    return [
        Row("components", f"qdrant.search p50, dense, {CHUNKS // 1000}k chunks", dense, "ms",
            "encode + query_points", raw),
        Row("components", f"qdrant.search p50, hybrid RRF, {CHUNKS // 1000}k chunks", hybrid,
            "ms", "encode + query_points", raw),
    ]


def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += bench_llm(Path(tmp))
        rows += bench_embed(Path(tmp))
        rows += bench_qdrant(Path(tmp))
    return rows
