"""A verdict is of the data it was measured on: `nux eval` warns and `nux export` refuses when a
collection does not hold what its ingest workbook writes now (a changed or added document,
chunking settings `nux pin` wrote), and a cached verdict is never reused after the data it read
changed (a re-ingest, a changed database file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nux_kernel import Workbook
from nux_kernel.cli import main
from tests.fixtures.shop import set_tea_price

DOCS = {
    "kettle.md": "# Kettle\n\nThe office kettle is descaled every Friday by the facilities team.",
    "printer.md": "# Printer\n\nThe second-floor printer takes badge login; toner is in room 204.",
}
CASES = [{"inputs": {"question": "Where is the toner?"}, "expected": "204"},
         {"inputs": {"question": "When is the kettle descaled?"}, "expected": "Friday"}]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.stdout, result.stderr


def _ingest_workbook(folder: Path, chunk_size: int) -> Path:
    wb = Workbook("office-ingest", inputs={}, output="ingest", base_dir=folder)
    wb.data("ingest", uses="qdrant.ingest",
            params={"folder": "docs", "collection": "office", "chunk_size": chunk_size,
                    "chunk_overlap": 8})
    return wb.save(folder / "ingest.ipynb")


def _office(folder: Path) -> Path:
    """An ingest workbook over docs/ and a workbook that answers from the collection."""
    (folder / "docs").mkdir(parents=True)
    for name, text in DOCS.items():
        (folder / "docs" / name).write_text(text, encoding="utf-8")
    _ingest_workbook(folder, 64)
    (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES),
                                        encoding="utf-8")
    wb = Workbook("office", inputs={"question": "string"}, output="answer",
                  test_bank="cases.jsonl", base_dir=folder,
                  criteria=[{"name": "found", "type": "contains"}],
                  acceptance={"pass_rate": 1.0})
    wb.data("retrieve", uses="qdrant.search", inputs=["question"],
            params={"collection": "office", "top_k": 2})
    wb.code("answer", "def answer(retrieve: list[dict]) -> str:\n"
                      "    return ' '.join(hit['text'] for hit in retrieve)\n")
    return wb.save(folder / "office.ipynb")


def _run_ingest(folder: Path) -> dict[str, Any]:
    code, stdout, stderr = invoke("run", str(folder / "ingest.ipynb"), "--json")
    assert code == 0, stderr
    result: dict[str, Any] = json.loads(stdout)[0]["output"]
    return result


def _eval(notebook: Path) -> dict[str, Any]:
    code, stdout, stderr = invoke("eval", str(notebook), "--json")
    assert code in (0, 1), stderr
    result: dict[str, Any] = json.loads(stdout)
    return result


@pytest.mark.slow
def test_a_collection_behind_its_ingest_workbook_is_named_and_gates_the_export(
        tmp_path: Path) -> None:
    notebook = _office(tmp_path)
    assert _run_ingest(tmp_path)["added"] == 2
    first = _eval(notebook)
    assert first["passed"] and first["stale_data"] == []
    out = tmp_path / "deploy"
    code, stdout, stderr = invoke("export", str(notebook), "--out", str(out), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["acceptance"]["source"] == "nux eval (cached)"

    # what `nux pin` does to a tuned chunk size: the notebook changes, the collection does not
    _ingest_workbook(tmp_path, 32)
    (tmp_path / "docs" / "badges.md").write_text("# Badges\n\nLost badges go to reception.",
                                                 encoding="utf-8")
    stale = _eval(notebook)["stale_data"]
    assert [p["code"] for p in stale] == ["stale-data"]
    assert stale[0]["stage"] == "ingest" and stale[0]["field"] == "collection office"
    assert "2 documents changed or chunked with other settings (kettle.md, printer.md)" in \
        stale[0]["message"]
    assert "1 document not ingested (badges.md)" in stale[0]["message"]
    assert "nux run" in stale[0]["fix"] and "ingest.ipynb" in stale[0]["fix"]
    code, _, stderr = invoke("eval", str(notebook))
    assert "warning: " in stderr and "[stale-data]" in stderr

    code, _, stderr = invoke("export", str(notebook), "--out", str(out))
    assert code == 2 and "[stale-data]" in stderr and "office" in stderr
    assert "measured on data the export does not ingest" in stderr and "--force" in stderr
    assert "Traceback" not in stderr
    code, _, stderr = invoke("export", str(notebook), "--out", str(out), "--force")
    assert code == 0 and "FORCED" in stderr
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["forced"] is True
    assert provenance["acceptance"]["stale_data"][0]["code"] == "stale-data"
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "**Forced export.**" in readme and "stale-data-forced" in readme
    assert "does not hold what ingest.ipynb ingests now" in readme

    # ingesting as the export will: nothing stale, and the old verdict is not reused (the
    # collection's version changed), so the new one is measured
    report = _run_ingest(tmp_path)
    assert report["replaced"] == 2 and report["added"] == 1
    code, stdout, stderr = invoke("export", str(notebook), "--out", str(out), "--json")
    assert code == 0, stderr
    done = json.loads(stdout)
    assert done["acceptance"]["source"] == "nux eval" and "stale_data" not in done["acceptance"]
    assert done["forced"] is False


def test_a_changed_database_file_invalidates_the_cached_verdict(tmp_path: Path) -> None:
    set_tea_price(tmp_path / "shop.db", 3)
    (tmp_path / "cases.jsonl").write_text(
        json.dumps({"inputs": {"item": "tea"}, "expected": "3"}) + "\n", encoding="utf-8")
    wb = Workbook("prices", inputs={"item": "string"}, output="price", base_dir=tmp_path,
                  test_bank="cases.jsonl", criteria=[{"type": "exact", "name": "same"}],
                  acceptance={"pass_rate": 1.0})
    wb.data("rows", uses="sql.query", inputs=["item"],
            params={"path": "shop.db", "query": "SELECT price FROM prices WHERE item = :item"})
    wb.code("price", "def price(rows: list[dict]) -> str:\n    return str(rows[0]['price'])\n")
    notebook = wb.save(tmp_path / "prices.ipynb")
    assert _eval(notebook)["passed"]
    out = tmp_path / "deploy"
    code, stdout, stderr = invoke("export", str(notebook), "--out", str(out), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["acceptance"]["source"] == "nux eval (cached)"

    set_tea_price(tmp_path / "shop.db", 5)  # same spec, same bank, other data: measured again
    code, _, stderr = invoke("export", str(notebook), "--out", str(out))
    assert code == 2 and "pass_rate is 0.0" in stderr
