"""qdrant.ingest and qdrant.search on Qdrant's embedded local store: the contract, incremental
ingestion, and every search option."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest

from nux_kernel import Executor, Workbook
from nux_kernel.testing import ComponentContract
from nux_runtime.components.base import RuntimeContext
from nux_runtime.components.embed import Embedder
from nux_runtime.components.qdrant_store import ensure_collection, store_client

pytestmark = pytest.mark.slow

HANDBOOK = Path(__file__).parent / "data" / "handbook"


def copy_handbook(base_dir: Path) -> Path:
    target = base_dir / "handbook"
    shutil.copytree(HANDBOOK, target)
    return target


def ingest(base_dir: Path, **params: Any) -> dict[str, Any]:
    wb = Workbook("ingest", inputs=[], output="load")
    wb.data("load", uses="qdrant.ingest",
            params={"folder": "handbook", "collection": "handbook", **params})
    result = Executor(wb.compile(), base_dir=base_dir, cache=False).run({})
    assert result.ok, [e.to_dict() for e in result.errors]
    return dict(result.output)


def search(base_dir: Path, question: str, **params: Any) -> list[dict[str, Any]]:
    wb = Workbook("search", inputs={"question": "string"}, output="find")
    wb.data("find", uses="qdrant.search", inputs=["question"],
            params={"collection": "handbook", **params})
    result = Executor(wb.compile(), base_dir=base_dir, cache=False).run({"question": question})
    assert result.ok, [e.to_dict() for e in result.errors]
    return list(result.output)


class TestIngestContract(ComponentContract):
    component = "qdrant.ingest"
    inputs: ClassVar[Any] = {"folder": "string"}
    params: ClassVar[Any] = {"collection": "handbook", "chunk_size": 64, "chunk_overlap": 8}
    cases: ClassVar[Any] = [{"folder": "handbook"}, {"folder": "handbook"}]
    bad_params: ClassVar[Any] = {"chunk_size": 1000}
    failing_case: ClassVar[Any] = {"folder": "no-such-folder"}
    failing_cause = "does not exist"
    failing_category = "input"
    deterministic = False  # a second ingest of the same folder reports it unchanged
    counts_tokens = False  # nothing is embedded when nothing changed

    @pytest.fixture
    def workbook_dir(self, tmp_path: Path) -> Path:
        copy_handbook(tmp_path)
        return tmp_path


class TestSearchContract(ComponentContract):
    component = "qdrant.search"
    inputs: ClassVar[Any] = {"question": "string"}
    params: ClassVar[Any] = {"collection": "handbook", "top_k": 3, "hybrid": True}
    cases: ClassVar[Any] = [{"question": "How do I reset my password?"},
                            {"question": "When does the office open?"}]
    bad_params: ClassVar[Any] = {"top_k": 0}
    failing_params: ClassVar[Any] = {"collection": "absent"}
    failing_cause = "collection 'absent' does not exist"
    failing_category = "resource"
    counts_tokens = True

    @pytest.fixture
    def workbook_dir(self, tmp_path: Path) -> Path:
        copy_handbook(tmp_path)
        ingest(tmp_path, chunk_size=64, chunk_overlap=8)
        return tmp_path


def test_ingest_is_incremental(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = copy_handbook(tmp_path)
    first = ingest(tmp_path, chunk_size=64)
    assert first["added"] == 3 and first["chunks"] == first["chunks_written"] > 3

    # unchanged files write nothing: no upsert, no delete reaches the store
    client = store_client({"path": ".nux/qdrant"}, RuntimeContext(tmp_path))
    writes: list[str] = []

    def spy(method: str) -> Any:
        original = getattr(client, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            writes.append(method)
            return original(*args, **kwargs)

        return call

    for method in ("upsert", "delete"):
        monkeypatch.setattr(client, method, spy(method))
    again = ingest(tmp_path, chunk_size=64)
    assert again["unchanged"] == 3 and again["chunks_written"] == 0 and writes == []
    assert again["chunks"] == first["chunks"]

    # a changed file replaces its chunks: old text gone, new text found
    (folder / "holidays.txt").write_text("Employees get 30 days of paid holiday in 2027.\n")
    changed = ingest(tmp_path, chunk_size=64)
    assert changed["replaced"] == 1 and changed["unchanged"] == 2 and writes
    hits = search(tmp_path, "How many holiday days do employees get?", top_k=10,
                  filter={"source": "holidays.txt"})
    assert [h["text"] for h in hits] == ["Employees get 30 days of paid holiday in 2027."]

    # a removed file loses its chunks
    (folder / "office.html").unlink()
    pruned = ingest(tmp_path, chunk_size=64)
    assert pruned["removed"] == 1
    assert not search(tmp_path, "office hours", top_k=10, filter={"source": "office.html"})

    # new chunking settings re-chunk every file
    rechunked = ingest(tmp_path, chunk_size=128, splitter="recursive")
    assert rechunked["replaced"] == 2


@pytest.mark.parametrize("splitter", ["sentence", "recursive"])
def test_chunks_fit_the_embedder(tmp_path: Path, minilm: Embedder, splitter: str) -> None:
    copy_handbook(tmp_path)
    ingest(tmp_path, chunk_size=32, chunk_overlap=4, splitter=splitter)
    hits = search(tmp_path, "password", top_k=50)
    assert len(hits) > 3
    for hit in hits:
        assert len(minilm.model.tokenizer.encode(hit["text"], add_special_tokens=False)) <= 32


def test_html_is_read_as_text_without_scripts(tmp_path: Path) -> None:
    copy_handbook(tmp_path)
    ingest(tmp_path)
    texts = " ".join(h["text"] for h in search(tmp_path, "office", top_k=50,
                                                filter={"source": "office.html"}))
    assert "The office opens at 8 am" in texts
    assert "tracking" not in texts and "color" not in texts and "<p>" not in texts


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` in Helvetica (written by hand: no PDF writer needed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def test_pdf_text_is_ingested(tmp_path: Path) -> None:
    folder = copy_handbook(tmp_path)
    (folder / "garage.pdf").write_bytes(minimal_pdf("The parking garage closes at midnight."))
    assert ingest(tmp_path)["files"] == 4
    [best, *_] = search(tmp_path, "When does the parking garage close?")
    assert best["source"] == "garage.pdf"
    assert best["text"] == "The parking garage closes at midnight."


def test_dense_search_ranks_the_answer_first(tmp_path: Path) -> None:
    copy_handbook(tmp_path)
    ingest(tmp_path, chunk_size=64)
    [best, *_] = search(tmp_path, "How can I change my password?")
    assert best["source"] == "passwords.md" and "reset" in best["text"].lower()
    assert set(best) >= {"text", "score", "source", "chunk", "id"}


def test_metrics_score_in_their_own_terms(tmp_path: Path) -> None:
    copy_handbook(tmp_path)
    ingest(tmp_path, chunk_size=64)
    question = "When does the office open?"
    cosine = search(tmp_path, question, top_k=5, metric="cosine")
    dot = search(tmp_path, question, top_k=5, metric="dot")
    euclid = search(tmp_path, question, top_k=5, metric="euclid")
    assert [h["id"] for h in cosine] == [h["id"] for h in dot] == [h["id"] for h in euclid]
    assert [h["score"] for h in cosine] == sorted((h["score"] for h in cosine), reverse=True)
    assert [h["score"] for h in euclid] == sorted(h["score"] for h in euclid)
    for c, e in zip(cosine, euclid, strict=True):  # unit vectors: |a-b|^2 = 2 - 2 cos
        assert e["score"] ** 2 == pytest.approx(2 - 2 * c["score"], abs=1e-4)


def test_score_threshold_and_filters(tmp_path: Path) -> None:
    copy_handbook(tmp_path)
    ingest(tmp_path, chunk_size=64)
    question = "How do I reset my password?"
    everything = search(tmp_path, question, top_k=50)
    cut = (everything[1]["score"] + everything[2]["score"]) / 2
    kept = search(tmp_path, question, top_k=50, score_threshold=cut)
    assert [h["id"] for h in kept] == [h["id"] for h in everything[:2]]
    only = search(tmp_path, question, top_k=50, filter={"source": ["holidays.txt", "office.html"]})
    assert only and {h["source"] for h in only} <= {"holidays.txt", "office.html"}


def test_hybrid_lifts_an_exact_code_that_dense_search_ranks_low(tmp_path: Path) -> None:
    folder = tmp_path / "handbook"
    folder.mkdir()
    for name, text in {
        "a.txt": "Employees wear their badge at all times on site.",
        "b.txt": "Lost badges are replaced by reception the same day.",
        "c.txt": "Contract QK-9913 covers the cleaning service.",
        "d.txt": "Visitors wear a paper badge and sign in at reception.",
    }.items():
        (folder / name).write_text(text + "\n")
    ingest(tmp_path)
    question = "QK-9913 badge reception"
    dense = [h["source"] for h in search(tmp_path, question, top_k=4)]
    hybrid = [h["source"] for h in search(tmp_path, question, top_k=4, hybrid=True)]
    assert dense.index("c.txt") >= 2, dense  # meaning alone ranks the code low
    assert hybrid.index("c.txt") < dense.index("c.txt"), (dense, hybrid)
    assert sorted(hybrid) == sorted(dense)


def test_mmr_trades_near_duplicates_for_diversity(tmp_path: Path) -> None:
    folder = tmp_path / "handbook"
    folder.mkdir()
    same = "To reset your password open Settings, choose Security and press Reset password."
    (folder / "a.txt").write_text(same + "\n")
    (folder / "b.txt").write_text(same.replace("press", "click") + "\n")
    (folder / "c.txt").write_text("Forgotten passwords are handled by the service desk by phone.\n")
    ingest(tmp_path)
    question = "How do I reset my password in Settings?"
    plain = search(tmp_path, question, top_k=2)
    diverse = search(tmp_path, question, top_k=2, mmr=True, diversity=0.9)
    assert {h["source"] for h in plain} == {"a.txt", "b.txt"}
    assert "c.txt" in {h["source"] for h in diverse}
    both = search(tmp_path, question, top_k=2, mmr=True, diversity=0.9, hybrid=True)
    assert "c.txt" in {h["source"] for h in both}


def test_an_empty_collection_is_a_clear_error(tmp_path: Path, minilm: Embedder) -> None:
    client = store_client({"path": ".nux/qdrant"}, RuntimeContext(tmp_path))
    ensure_collection(client, "handbook", minilm.dimension)
    wb = Workbook("search", inputs={"question": "string"}, output="find")
    wb.data("find", uses="qdrant.search", inputs=["question"], params={"collection": "handbook"})
    result = Executor(wb.compile(), base_dir=tmp_path, cache=False).run({"question": "hello"})
    [error] = result.errors
    assert error.stage == "find" and error.category == "resource"
    assert "is empty" in error.cause and "ingest" in error.cause


def test_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "handbook").mkdir()
    wb = Workbook("ingest", inputs=[], output="load")
    wb.data("load", uses="qdrant.ingest", params={"folder": "handbook", "collection": "h"})
    [error] = Executor(wb.compile(), base_dir=tmp_path, cache=False).run({}).errors
    assert error.stage == "load" and "holds no .md" in error.cause
