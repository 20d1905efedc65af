"""qdrant.search on a local store answers from the in-process index of the collection's version:
the same hits as Qdrant's engine (qdrant-client's local mode) for every search option, MMR
included, and after a re-ingest the new text, never the old."""

from __future__ import annotations

import itertools
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from nux_kernel import Executor, Workbook
from nux_runtime.components import qdrant_search
from nux_runtime.components.base import RuntimeContext, Uncacheable
from nux_runtime.components.qdrant_index import (
    CollectionIndex,
    Hit,
    collection_index,
    forget_index,
    rrf,
)
from nux_runtime.components.qdrant_search import QdrantSearch, payload_filter
from nux_runtime.components.qdrant_store import (
    METRICS,
    SPARSE,
    QdrantStage,
    collection_version,
    ensure_collection,
    set_collection_version,
    sparse_document,
    sparse_query,
    store_client,
)
from tests.runtime.components.test_qdrant import HANDBOOK, ingest, search

TOPICS = {
    "badges.txt": "Badges are issued by reception on the first day. A lost badge is blocked within "
                  "the hour and replaced the same day. Visitors wear a paper badge marked ZX-4471.",
    "expenses.md": "Travel expenses are claimed in the finance portal within thirty days. Receipts "
                   "over fifty euros must be scanned. Taxis are refunded only after ten pm.",
    "laptops.md": "Laptops are replaced every four years. A broken screen is repaired by the "
                  "service desk; a lost laptop is reported to security and to your manager.",
    "parking.txt": "The north lot is free for employees. Electric cars charge on level two of the "
                   "garage, which closes at midnight. Bicycles are parked by the south entrance.",
}

QUESTIONS = ["How many holiday days do employees get?", "badge ZX-4471 reception",
             "what is it", "Who repairs a broken laptop screen?"]

CASES: list[dict[str, Any]] = [
    {},
    {"top_k": 50},
    {"metric": "dot", "top_k": 8},
    {"metric": "euclid", "top_k": 8},
    {"filter": {"source": "passwords.md"}, "top_k": 8},
    {"filter": {"source": ["holidays.txt", "badges.txt"]}, "top_k": 8},
    {"filter": {"suffix": "md"}, "top_k": 8},
    {"filter": {"chunk": 0}, "top_k": 8},
    {"score_threshold": 0.25, "top_k": 50},
    {"metric": "euclid", "score_threshold": 1.2, "top_k": 50},
    {"hybrid": True},
    {"hybrid": True, "top_k": 10, "candidates": 5},
    {"hybrid": True, "top_k": 6, "filter": {"source": ["passwords.md", "badges.txt"]}},
    {"hybrid": True, "top_k": 10, "score_threshold": 0.3},
    {"hybrid": True, "top_k": 8, "metric": "euclid"},
    {"mmr": True},
    {"mmr": True, "diversity": 0.0, "top_k": 8},
    {"mmr": True, "diversity": 1.0, "top_k": 8},
    {"mmr": True, "top_k": 10, "candidates": 30},
    {"mmr": True, "metric": "dot", "diversity": 0.3, "top_k": 6},
    {"mmr": True, "metric": "euclid", "diversity": 0.7, "top_k": 6},
    {"mmr": True, "top_k": 6, "filter": {"source": ["passwords.md", "badges.txt", "laptops.md"]}},
    {"mmr": True, "score_threshold": 0.3, "top_k": 10},
    {"mmr": True, "metric": "euclid", "score_threshold": 1.2, "top_k": 10},
    {"hybrid": True, "mmr": True},
    {"hybrid": True, "mmr": True, "diversity": 0.9, "top_k": 8, "candidates": 12},
    {"hybrid": True, "mmr": True, "diversity": 0.0, "top_k": 8},
    {"hybrid": True, "mmr": True, "top_k": 6, "filter": {"source": ["passwords.md", "badges.txt"]}},
    {"hybrid": True, "mmr": True, "top_k": 10, "score_threshold": 0.3, "metric": "dot"},
    {"hybrid": True, "mmr": True, "top_k": 8, "metric": "euclid", "diversity": 1.0},
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The handbook and four more files, ingested in small chunks (one store for the module)."""
    base = tmp_path_factory.mktemp("corpus")
    shutil.copytree(HANDBOOK, base / "handbook")
    for name, text in TOPICS.items():
        (base / "handbook" / name).write_text(text + "\n")
    ingest(base, chunk_size=32, chunk_overlap=4)
    return base


def engine_search(monkeypatch: pytest.MonkeyPatch, base_dir: Path, question: str,
                  **params: Any) -> list[dict[str, Any]]:
    """The same stage, searched by Qdrant's engine (qdrant-client's local mode)."""
    with monkeypatch.context() as patch:
        patch.setattr(qdrant_search, "collection_index", lambda client, collection: None)
        return search(base_dir, question, **params)


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the search reached Qdrant's engine instead of the index")


def index_search(monkeypatch: pytest.MonkeyPatch, base_dir: Path, question: str,
                 **params: Any) -> list[dict[str, Any]]:
    """The stage as it runs, with the engine's query refused: the index must answer."""
    with monkeypatch.context() as patch:
        patch.setattr(QdrantSearch, "_query", _refuse)
        return search(base_dir, question, **params)


def _runs(scores: list[float]) -> list[list[int]]:
    """Positions grouped into runs of equal scores (whose order Qdrant leaves open)."""
    runs: list[list[int]] = []
    for i, score in enumerate(scores):
        if runs and score == pytest.approx(scores[runs[-1][0]], rel=1e-6, abs=1e-9):
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def assert_same_hits(ours: list[Any], engine: list[Any], *, key: Any = None,
                     limit: int | None = None) -> None:
    """Same length, same scores (to float32 precision) and the same points at every rank, up to
    the order of equal scores (a run of them cut by ``limit`` may hold different points)."""
    def ident(hit: Any) -> Any:
        return key(hit) if key else hit["id"]

    def score(hit: Any) -> float:
        return float(hit[1] if key else hit["score"])

    assert len(ours) == len(engine), (ours, engine)
    assert [score(h) for h in ours] == pytest.approx([score(h) for h in engine], rel=1e-5,
                                                     abs=1e-6)
    runs = _runs([score(h) for h in engine])
    if limit is not None and len(engine) == limit:
        runs = runs[:-1]
    for run in runs:
        assert {ident(ours[i]) for i in run} == {ident(engine[i]) for i in run}, (ours, engine)
    if not key:
        by_id = {h["id"]: h for h in engine}
        for hit in ours:
            assert {**hit, "score": 0} == {**by_id[hit["id"]], "score": 0}


@pytest.mark.slow
@pytest.mark.parametrize("params", CASES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items())
                         or "dense")
def test_search_returns_the_engines_hits(corpus: Path, monkeypatch: pytest.MonkeyPatch,
                                         params: dict[str, Any]) -> None:
    for question in QUESTIONS:
        ours = index_search(monkeypatch, corpus, question, **params)
        engine = engine_search(monkeypatch, corpus, question, **params)
        assert_same_hits(ours, engine)


@pytest.mark.slow
def test_an_mmr_stage_builds_and_searches_the_index(corpus: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"mmr": True, "hybrid": True, "diversity": 0.7, "top_k": 6}
    question = "Who repairs a broken laptop screen?"
    engine = engine_search(monkeypatch, corpus, question, **params)
    client = store_client({"path": ".nux/qdrant"}, RuntimeContext(corpus))
    forget_index(client, "handbook")
    loaded: list[str] = []
    dense, sparse = CollectionIndex.dense, CollectionIndex.sparse

    def load_dense(index: CollectionIndex, name: str) -> np.ndarray:
        loaded.append(name)
        return dense(index, name)

    def load_sparse(index: CollectionIndex) -> Any:
        loaded.append(SPARSE)
        return sparse(index)

    monkeypatch.setattr(CollectionIndex, "dense", load_dense)
    monkeypatch.setattr(CollectionIndex, "sparse", load_sparse)
    wb = Workbook("search", inputs={"question": "string"}, output="find")
    wb.data("find", uses="qdrant.search", inputs=["question"],
            params={"collection": "handbook", **params})
    [stage] = wb.compile().stages
    find = QdrantSearch(stage, RuntimeContext(corpus))
    assert loaded == [METRICS["cosine"], SPARSE]  # built with the stage, before any call
    with monkeypatch.context() as patch:
        patch.setattr(QdrantSearch, "_query", _refuse)
        ours = find({"question": question}).value
    assert_same_hits(ours, engine)
    assert len(ours) == 6


@pytest.mark.slow
def test_a_reingest_is_searched_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(HANDBOOK, tmp_path / "handbook")
    question = "How many holiday days do employees get?"
    first = ingest(tmp_path, chunk_size=64)
    [before, *_] = index_search(monkeypatch, tmp_path, question, hybrid=True)
    assert "25 days" in before["text"]
    client = store_client({"path": ".nux/qdrant"}, RuntimeContext(tmp_path))
    built = collection_index(client, "handbook")
    assert built is not None and built.version == first["version"]

    (tmp_path / "handbook" / "holidays.txt").write_text("Staff get 30 days of paid leave.\n")
    second = ingest(tmp_path, chunk_size=64)
    assert second["version"] != first["version"]
    for params in ({}, {"hybrid": True}, {"filter": {"source": "holidays.txt"}, "top_k": 10}):
        ours = index_search(monkeypatch, tmp_path, question, **params)
        assert ours[0]["text"] == "Staff get 30 days of paid leave."
        assert not any("25 days" in h["text"] for h in ours)
        assert_same_hits(ours, engine_search(monkeypatch, tmp_path, question, **params))
    rebuilt = collection_index(client, "handbook")
    assert rebuilt is not None and rebuilt is not built and rebuilt.version == second["version"]

    (tmp_path / "handbook" / "holidays.txt").unlink()
    ingest(tmp_path, chunk_size=64)
    assert not index_search(monkeypatch, tmp_path, question, top_k=10,
                            filter={"source": "holidays.txt"})


@pytest.mark.slow
def test_an_interrupted_ingest_leaves_the_collection_unversioned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "handbook"
    shutil.copytree(HANDBOOK, folder)
    ingest(tmp_path, chunk_size=64)
    question = "How many holiday days do employees get?"
    index_search(monkeypatch, tmp_path, question)  # the index of the first version
    (folder / "holidays.txt").write_text("Staff get 30 days of paid leave.\n")
    (folder / "zz-broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    wb_result = _run_ingest(tmp_path)
    assert not wb_result.ok  # holidays.txt was rewritten before the broken file stopped it

    client = store_client({"path": ".nux/qdrant"}, RuntimeContext(tmp_path))
    assert collection_version(client, "handbook") is None
    assert collection_index(client, "handbook") is None
    wb = Workbook("search", inputs={"question": "string"}, output="find")
    wb.data("find", uses="qdrant.search", inputs=["question"], params={"collection": "handbook"})
    [stage] = wb.compile().stages
    with pytest.raises(Uncacheable):
        QdrantStage.cache_state(stage, RuntimeContext(tmp_path))
    [best, *_] = search(tmp_path, question)  # Qdrant itself answers, with what the store holds
    assert best["text"] == "Staff get 30 days of paid leave."


def _run_ingest(base_dir: Path) -> Any:
    wb = Workbook("ingest", inputs=[], output="load")
    wb.data("load", uses="qdrant.ingest",
            params={"folder": "handbook", "collection": "handbook", "chunk_size": 64})
    return Executor(wb.compile(), base_dir=base_dir, cache=False).run({})


def _store(tmp_path: Path, size: int = 400, dim: int = 8) -> QdrantClient:
    """A versioned local collection of random unit vectors and short texts with many equal
    scores: duplicate vectors, and few words drawn from a small vocabulary."""
    client = QdrantClient(path=str(tmp_path / "store"))
    ensure_collection(client, "c", dim)
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(30)]
    points = []
    vector: list[float] = []
    for i in range(size):
        if i % 25 != 1:
            raw = rng.standard_normal(dim)
            vector = (raw / np.linalg.norm(raw)).tolist()
        text = " ".join(rng.choice(vocab, size=int(rng.integers(2, 9))))
        points.append(models.PointStruct(
            id=str(uuid.UUID(int=(i * 7919) % 100_003)),
            vector={**dict.fromkeys(METRICS.values(), vector), SPARSE: sparse_document(text)},
            payload={"text": text, "source": f"doc{i % 4}.md", "chunk": i}))
    client.upsert("c", points=points)
    set_collection_version(client, "c", "v1")
    return client


def test_the_index_scores_as_the_engine(tmp_path: Path) -> None:
    client = _store(tmp_path)
    index = collection_index(client, "c")
    assert index is not None and len(index) == 400
    row = {point_id: i for i, point_id in enumerate(index.ids)}
    rng = np.random.default_rng(5)
    for _ in range(12):
        vector = rng.standard_normal(8).tolist()
        terms = sparse_query(" ".join(f"w{i}" for i in rng.integers(0, 30, size=3)))
        for spec in (None, {"source": "doc1.md"}, {"source": ["doc2.md", "doc3.md"]}):
            query_filter = payload_filter(spec)
            rows = index.rows(query_filter, spec)
            for metric, threshold in (("cosine", None), ("dot", 0.1), ("euclid", None),
                                      ("euclid", 1.3), ("cosine", 0.2)):
                ours = index.search_dense(vector, metric, rows, 15, threshold)
                engine = client.query_points(
                    "c", query=vector, using=METRICS[metric], limit=15,
                    query_filter=query_filter, score_threshold=threshold).points
                assert_same_hits([(index.ids[h.row], h.score) for h in ours],
                                 [(str(p.id), p.score) for p in engine],
                                 key=lambda h: h[0], limit=15)
            ours = index.search_sparse(terms.indices, terms.values, rows, 20)
            sparse = client.query_points("c", query=terms, using=SPARSE, limit=20,
                                         query_filter=query_filter).points
            assert len(ours) == len(sparse)
            # BM25 scores equal to the bit, ties in point-id order
            assert [h.score for h in ours] == [p.score for p in sparse]
            assert all(a.row < b.row for a, b in itertools.pairwise(ours)
                       if a.score == b.score)
            # fusing the engine's own lists gives the engine's hybrid answer exactly
            dense = client.query_points("c", query=vector, using=METRICS["cosine"], limit=20,
                                        query_filter=query_filter).points
            fused = client.query_points(
                "c", prefetch=[models.Prefetch(query=vector, using=METRICS["cosine"], limit=20),
                               models.Prefetch(query=terms, using=SPARSE, limit=20)],
                query=models.FusionQuery(fusion=models.Fusion.RRF), limit=8,
                query_filter=query_filter).points
            mine = rrf([[Hit(row[str(p.id)], p.score) for p in dense],
                        [Hit(row[str(p.id)], p.score) for p in sparse]], 8)
            assert [(index.ids[h.row], h.score) for h in mine] == [(str(p.id), p.score)
                                                                    for p in fused]
    client.close()


def _twins(index: CollectionIndex) -> dict[str, str]:
    """Each point's id -> the id of the first point holding the same vector (Qdrant may pick
    either of two equal vectors: they are the same answer)."""
    first: dict[bytes, str] = {}
    matrix = index.dense(METRICS["cosine"])
    return {point_id: first.setdefault(matrix[row].tobytes(), point_id)
            for row, point_id in enumerate(index.ids)}


def test_mmr_picks_as_the_engine(tmp_path: Path) -> None:
    client = _store(tmp_path)
    index = collection_index(client, "c")
    assert index is not None
    twin = _twins(index)
    row = {point_id: i for i, point_id in enumerate(index.ids)}
    rng = np.random.default_rng(7)
    for _ in range(6):
        vector = rng.standard_normal(8).tolist()
        terms = sparse_query(" ".join(f"w{i}" for i in rng.integers(0, 30, size=3)))
        for spec in (None, {"source": ["doc1.md", "doc2.md"]}):
            query_filter = payload_filter(spec)
            rows = index.rows(query_filter, spec)
            for metric, threshold in (("cosine", None), ("dot", None), ("euclid", None),
                                      ("cosine", 0.2), ("euclid", 1.3)):
                using = METRICS[metric]
                for diversity in (0.0, 0.5, 1.0):
                    mmr = models.Mmr(diversity=diversity, candidates_limit=20)
                    pool = index.search_dense(vector, metric, rows, 20, threshold)
                    ours = index.diversify(vector, metric, pool, 8, diversity)
                    engine = client.query_points(
                        "c", query=models.NearestQuery(nearest=vector, mmr=mmr), using=using,
                        limit=8, query_filter=query_filter, score_threshold=threshold).points
                    assert len(ours) == min(8, len(pool))
                    assert_same_hits([(twin[index.ids[h.row]], h.score) for h in ours],
                                     [(twin[str(p.id)], p.score) for p in engine],
                                     key=lambda h: h[0])

                    # hybrid: the engine's fused candidates (its own lists, whose order of
                    # equal scores is open), nearest first, diversified by the dense vector
                    lists = [models.Prefetch(query=vector, using=using, limit=20,
                                             score_threshold=threshold),
                             models.Prefetch(query=terms, using=SPARSE, limit=20)]
                    fused = rrf([[Hit(row[str(p.id)], p.score) for p in client.query_points(
                        "c", query=part.query, using=part.using, limit=20,
                        query_filter=query_filter, score_threshold=part.score_threshold).points]
                        for part in lists], 20)
                    pool = index.search_dense(vector, metric, np.array([h.row for h in fused]),
                                              20)
                    ours = index.diversify(vector, metric, pool, 8, diversity)
                    engine = client.query_points(
                        "c", prefetch=models.Prefetch(
                            prefetch=lists, query=models.FusionQuery(fusion=models.Fusion.RRF),
                            limit=20),
                        query=models.NearestQuery(nearest=vector, mmr=mmr), using=using,
                        limit=8, query_filter=query_filter).points
                    assert len(ours) == 8
                    assert_same_hits([(twin[index.ids[h.row]], h.score) for h in ours],
                                     [(twin[str(p.id)], p.score) for p in engine],
                                     key=lambda h: h[0])
    with pytest.raises(ValueError, match="diversity"):
        index.diversify([1.0] * 8, "cosine", [], 4, 1.5)
    client.close()


def test_an_unversioned_collection_has_no_index(tmp_path: Path) -> None:
    client = _store(tmp_path, size=10)
    set_collection_version(client, "c", "")
    assert collection_index(client, "c") is None
    assert collection_index(client, "absent") is None
    client.close()
