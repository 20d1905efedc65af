"""Every template and example runs and evaluates on a few of its own cases, with the real parts:
gemma-3-270m on llama.cpp, MiniLM, Qdrant's local store and SQLite.

Each workbook is copied into a temporary folder (its run state stays out of the source tree);
documents are ingested by running the batch ingest workbook, then ``nux eval`` scores three
cases of the workbook's own test bank. Everything runs in this process, so the models are
loaded once (the session fixtures of tests/fixtures/models.py) and shared by every workbook.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nux_kernel.cli import main
from nux_kernel.evaluate.bank import load_bank
from tests.e2e.workbooks import SHIPPED, Shipped

pytestmark = pytest.mark.slow

CASES = 3


@pytest.fixture(scope="module")
def models(minilm: object, gemma: object) -> tuple[object, object]:
    """Both embedded models, loaded once for the whole session."""
    return minilm, gemma


def _three_cases(shipped: Shipped, folder: Path) -> Path:
    bank = shipped.folder / "cases.jsonl"
    lines = bank.read_text(encoding="utf-8").splitlines()[:CASES]
    small = folder / "three.jsonl"
    small.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return small


@pytest.mark.parametrize("shipped", SHIPPED, ids=[s.name for s in SHIPPED])
def test_shipped_workbook_evaluates_on_three_cases(shipped: Shipped, tmp_path: Path,
                                                   models: tuple[object, object]) -> None:
    notebook = shipped.copy_to(tmp_path / "wb")
    runner = CliRunner()
    if shipped.ingest:
        ingested = runner.invoke(main, ["run", str(notebook.parent / shipped.ingest), "--json",
                                        "--no-cache"])
        assert ingested.exit_code == 0, ingested.output
        traces = json.loads(ingested.stdout)[0]["traces"]
        assert traces and all(t["status"] == "ok" for t in traces), traces
        assert all("'chunks': 0" not in t["output_preview"] for t in traces)
    bank = _three_cases(shipped, notebook.parent)
    result = runner.invoke(main, ["eval", str(notebook), "--bank", str(bank), "--json",
                                  "--concurrency", "1"])
    assert result.exit_code in (0, 1), result.output  # 1: an acceptance threshold failed
    summary = json.loads(result.stdout)["summary"]
    assert summary["cases"] == CASES and summary["answered"] == CASES
    assert summary["error_rate"] == 0.0
    assert summary["pass_rate"] > 0, "the real model answers at least one case right"
    assert summary["latency_ms"]["p95"] > 0 and summary["cost_per_request"] > 0
    expected = [c.expected for c in load_bank(bank)]
    assert len(expected) == CASES


def test_extract_json_retries_when_the_first_answer_is_cut_short(
        tmp_path: Path, models: tuple[object, object]) -> None:
    """Failure injection: the first extraction may write 4 tokens, never a whole JSON object;
    `parse` rejects it, `retry` asks again and `reparse` answers with the validated object."""
    shipped = next(s for s in SHIPPED if s.name == "extract-json")
    notebook = shipped.copy_to(tmp_path / "wb")
    text = notebook.read_text(encoding="utf-8")
    assert text.count("max_tokens: 48\\n") == 1
    notebook.write_text(text.replace("max_tokens: 48\\n", "max_tokens: 4\\n"), encoding="utf-8")
    result = CliRunner().invoke(main, [
        "run", str(notebook), "--json", "-i",
        "text=Hi, this is Laura Chen from Boston. Please book 3 tickets for Saturday."])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)[0]
    status = {t["stage"]: t["status"] for t in run["traces"]}
    assert status == {"extract": "ok", "parse": "ok", "accept": "skipped", "retry": "ok",
                      "reparse": "ok"}
    assert "'ok': False" in next(t["output_preview"] for t in run["traces"]
                                 if t["stage"] == "parse")
    answer = run["output"]
    assert set(answer) == {"name", "city", "tickets"} and isinstance(answer["tickets"], int)
    assert answer["name"] == "Laura Chen"
