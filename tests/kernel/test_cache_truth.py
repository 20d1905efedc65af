"""The stage cache never serves a stale answer: an ingest is never cached, a stage reading a
collection or a database file is keyed by that state's version, and the export's cached
acceptance verdict is keyed by the test bank's content. A cache hit reports what the hit cost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nux_kernel import Workbook
from nux_kernel.cache import StageCache, UnhashableInput
from nux_kernel.compiler import compile_notebook
from nux_kernel.evaluate import evaluate_workbook
from nux_kernel.evaluate.history import record_run
from nux_kernel.executor import Executor
from nux_kernel.provenance import acceptance_verdict
from tests.fixtures.shop import set_tea_price

NUX = str(Path(sys.executable).parent / "nux")
REPO = Path(__file__).resolve().parents[2]
QUESTION = "Which tool sends on-call pages?"


def _nux(*args: str, cwd: Path) -> Any:
    done = subprocess.run([NUX, *args, "--json"], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _stage(run: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(t for t in run["traces"] if t["stage"] == stage)


@pytest.mark.slow
def test_a_changed_document_is_reingested_and_the_next_question_reads_it(tmp_path: Path
                                                                          ) -> None:
    folder = tmp_path / "rag_qa"
    shutil.copytree(REPO / "examples" / "rag_qa", folder,
                    ignore=shutil.ignore_patterns(".nux", "build"))
    # the flagship's collection, searched by a workbook whose answer is the chunks it found
    lookup = Workbook("lookup", inputs={"question": "string"}, output="texts",
                      base_dir=folder)
    lookup.data("retrieve", uses="qdrant.search", inputs=["question"],
                params={"collection": "handbook", "top_k": 5, "hybrid": True})
    lookup.code("texts", "def texts(retrieve: list[dict]) -> str:\n"
                         "    return ' '.join(hit['text'] for hit in retrieve)\n")
    lookup.save(folder / "lookup.ipynb")
    first = _nux("run", "ingest.ipynb", cwd=folder)[0]
    assert first["ok"] and first["output"]["added"] == 33
    ask = ("run", "lookup.ipynb", "-i", f"question={QUESTION}")
    before = _nux(*ask, cwd=folder)[0]
    assert "Pages come through **PagerDuty**" in before["output"]
    assert _stage(before, "retrieve")["cold_start_ms"] > 0.0  # the embedder loaded

    page = folder / "corpus" / "on-call.md"
    page.write_text(page.read_text(encoding="utf-8").replace("PagerDuty", "Opsgenie"),
                    encoding="utf-8")
    ingest = _nux("run", "ingest.ipynb", cwd=folder)[0]
    assert not _stage(ingest, "ingest")["cache_hit"] and ingest["output"]["replaced"] == 1
    assert ingest["output"]["version"] != first["output"]["version"]

    after = _nux(*ask, cwd=folder)[0]
    assert not _stage(after, "retrieve")["cache_hit"]
    assert "Pages come through **Opsgenie**" in after["output"]
    assert "Pages come through **PagerDuty**" not in after["output"]
    warm = _nux(*ask, cwd=folder)[0]
    assert all(t["cache_hit"] for t in warm["traces"]) and warm["output"] == after["output"]
    # a hit reports the lookup, and keeps the warm compute of the answer apart, and the
    # opening of the store in this fresh process apart from both
    hit = _stage(warm, "retrieve")
    assert hit["latency_ms"] < hit["compute_ms"] and hit["latency_ms"] < hit["cold_start_ms"]


def _sql_workbook(folder: Path) -> Path:
    wb = Workbook("prices", inputs={"item": "string"}, output="price", base_dir=folder)
    wb.data("price", uses="sql.query", inputs=["item"],
            params={"path": "shop.db", "query": "SELECT price FROM prices WHERE item = :item"})
    return wb.save(folder / "prices.ipynb")


def test_a_changed_sqlite_file_changes_the_sql_stage_answer(tmp_path: Path) -> None:
    set_tea_price(tmp_path / "shop.db", 3)
    spec = compile_notebook(_sql_workbook(tmp_path))
    executor = Executor(spec, base_dir=tmp_path)
    try:
        assert executor.run({"item": "tea"}).output == [{"price": 3}]
        cached = executor.run({"item": "tea"})
        assert cached.traces["price"].cache_hit and cached.output == [{"price": 3}]
        set_tea_price(tmp_path / "shop.db", 5)
        changed = executor.run({"item": "tea"})
        assert not changed.traces["price"].cache_hit
        assert changed.output == [{"price": 5}]
    finally:
        executor.close()


def test_a_changed_bank_invalidates_the_cached_verdict(tmp_path: Path) -> None:
    (tmp_path / "bank.jsonl").write_text(
        json.dumps({"inputs": {"text": "a"}, "expected": "A"}) + "\n", encoding="utf-8")
    wb = Workbook("upper", inputs={"text": "string"}, output="shout", test_bank="bank.jsonl",
                  criteria=[{"type": "exact", "name": "same"}], acceptance={"pass_rate": 1.0},
                  base_dir=tmp_path)
    wb.code("shout", "def shout(text: str) -> str:\n    return text.upper()\n")
    spec = compile_notebook(wb.save(tmp_path / "upper.ipynb"))
    record_run(evaluate_workbook(spec, base_dir=tmp_path), tmp_path)
    verdict = acceptance_verdict(spec, tmp_path)
    assert verdict is not None and verdict["passed"] and verdict["source"] == "nux eval (cached)"

    with (tmp_path / "bank.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"inputs": {"text": "b"}, "expected": "b"}) + "\n")
    fresh = acceptance_verdict(spec, tmp_path)
    assert fresh is not None and fresh["source"] == "nux eval" and not fresh["passed"]
    assert fresh["cases"] == 2


def test_an_input_without_a_value_form_is_never_keyed_by_its_repr(tmp_path: Path) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "always the same"

    with pytest.raises(UnhashableInput):
        StageCache.key("stage", {"x": Opaque()})
    wb = Workbook("opaque", inputs={"n": "integer"}, output="count", base_dir=tmp_path)
    wb.code("thing", "class Box:\n    def __init__(self, n: int) -> None:\n        self.n = n\n"
                     "def thing(n: int) -> object:\n    return Box(n)\n")
    wb.code("count", "def count(thing: object) -> int:\n    return int(getattr(thing, 'n'))\n")
    spec = compile_notebook(wb.save(tmp_path / "opaque.ipynb"))
    executor = Executor(spec, base_dir=tmp_path)
    try:
        assert executor.run({"n": 1}).output == 1
        assert executor.run({"n": 2}).output == 2
        again = executor.run({"n": 2})
        assert again.output == 2 and not again.traces["count"].cache_hit
    finally:
        executor.close()
