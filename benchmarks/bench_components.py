"""Vetted components against the raw libraries they wrap, measured in the same run.

- Local LLM tokens/s: a ``llm.local/gemma-3-270m`` stage run by the playground executor vs
  ``Llama.create_completion`` on the same loaded model, same prompt and options, runs
  interleaved (goal: NUX within 5%).
- Embedding throughput: an ``embed.local/minilm`` stage on a batch of texts vs
  ``SentenceTransformer.encode`` on the same model (goal: within 5%).
- Qdrant search p50 at 10k chunks (local mode): a dense ``qdrant.search`` stage (query embedding
  included) vs ``SentenceTransformer.encode`` + ``QdrantClient.query_points`` on the same store
  (goal: within 1.2x), and the hybrid (dense + sparse, RRF) stage vs the dense stage (goal: within
  1.5x); the engine's own hybrid query is reported beside them. Queries run interleaved.
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
        set_collection_version,
        sparse_document,
        sparse_query,
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
    set_collection_version(client, "bench", "bench-1")  # what every qdrant.ingest stores

    questions = [" ".join(rng.choice(vocab, size=8)) for _ in range(QUERIES)]

    def stage(**params: object) -> Callable[[str], float]:
        wb = Workbook("bench-search", inputs={"question": "string"}, output="find")
        wb.data("find", uses="qdrant.search", inputs=["question"],
                params={"collection": "bench", "top_k": 5, **params})
        executor = Executor(wb.compile(), base_dir=tmp, cache=False)
        executor.run({"question": questions[0]})  # loads the stage and the collection's index

        def call(question: str) -> float:
            start = time.perf_counter()
            executor.run({"question": question})
            return (time.perf_counter() - start) * 1000.0

        return call

    def raw(question: str) -> float:
        start = time.perf_counter()
        vector = embedder.model.encode([question], normalize_embeddings=True)[0].tolist()
        client.query_points("bench", query=vector, using=METRICS["cosine"], limit=5,
                            with_payload=True)
        return (time.perf_counter() - start) * 1000.0

    def raw_hybrid(question: str) -> float:
        start = time.perf_counter()
        vector = embedder.model.encode([question], normalize_embeddings=True)[0].tolist()
        client.query_points(
            "bench", prefetch=[models.Prefetch(query=vector, using=METRICS["cosine"], limit=20),
                               models.Prefetch(query=sparse_query(question), using=SPARSE,
                                               limit=20)],
            query=models.FusionQuery(fusion=models.Fusion.RRF), limit=5, with_payload=True)
        return (time.perf_counter() - start) * 1000.0

    paths = {"raw": raw, "dense": stage(), "hybrid": stage(hybrid=True)}
    samples: dict[str, list[float]] = {name: [] for name in paths}
    raw("warm up"), raw_hybrid("warm up")
    for question in questions:  # interleaved, so drift hits every path alike
        for name, path in paths.items():
            samples[name].append(path(question))
    engine_hybrid = statistics.median(raw_hybrid(q) for q in questions[:QUERIES // 4])
    p50 = {name: statistics.median(values) for name, values in samples.items()}
    size = f"{CHUNKS // 1000}k chunks"
    return [
        Row("components", f"qdrant.search p50, dense, {size}", p50["dense"], "ms",
            "encode + query_points (local mode)", p50["raw"], "within 1.2x",
            p50["dense"] <= 1.2 * p50["raw"]),
        Row("components", f"qdrant.search p50, hybrid RRF, {size}", p50["hybrid"], "ms",
            "qdrant.search dense", p50["dense"], "within 1.5x",
            p50["hybrid"] <= 1.5 * p50["dense"]),
        Row("components", f"qdrant.search p50, hybrid RRF, {size}, vs the engine's hybrid",
            p50["hybrid"], "ms", "encode + query_points prefetch + RRF (local mode)",
            engine_hybrid, "reported"),
    ]


def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += bench_llm(Path(tmp))
        rows += bench_embed(Path(tmp))
        rows += bench_qdrant(Path(tmp))
    return rows
