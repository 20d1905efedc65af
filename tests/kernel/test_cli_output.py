"""What the CLI prints, read in an 80-column terminal: one line per row, no empty stage
column, non-ASCII as text, every trial on request, a skipped answer said out loud."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from rich.cells import cell_len

from nux_kernel import Workbook
from nux_kernel.catalog import load_catalog
from nux_kernel.cli import main

LONG_STAGE = "normalize_the_question_text"


def nux(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed CLI in its own process, as a user's 80-column terminal runs it."""
    env = {**os.environ, "COLUMNS": "80", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([str(Path(sys.executable).parent / "nux"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def fits(text: str) -> None:
    wide = [line for line in text.splitlines() if cell_len(line) > 80]
    assert not wide, wide


def test_run_at_80_columns(tmp_path: Path) -> None:
    wb = Workbook("größen", inputs={"question": "string"}, output="answer")
    wb.code(LONG_STAGE, f"def {LONG_STAGE}(question: str) -> str:\n"
                        "    return ' '.join(question.split()) * 4\n")
    wb.code("facts", f"def facts({LONG_STAGE}: str) -> dict:\n"
                     f"    return {{'wörter': len({LONG_STAGE}.split()), 'stadt': 'Zürich'}}\n")
    wb.code("answer", "import json\ndef answer(facts: dict) -> str:\n"
                      "    return json.dumps(facts, ensure_ascii=False)\n")
    path = wb.save(tmp_path / "wb.ipynb")
    result = nux("run", str(path), "-i", "question=Wie groß ist die Straße in Zürich heute?")
    assert result.returncode == 0, result.stderr
    fits(result.stdout)
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines()
            if line.startswith("│")}
    assert set(rows) == {LONG_STAGE, "facts", "answer"}, result.stdout
    assert all(" ok " in row for row in rows.values())
    assert 'output: {"wörter": 29, "stadt": "Zürich"}' in result.stdout
    assert "\\u00" not in result.stdout
    as_json = nux("run", str(path), "-i", "question=Straße", "--json")
    assert "Zürich" in as_json.stdout and "\\u00" not in as_json.stdout


def test_catalog_at_80_columns() -> None:
    result = nux("catalog")
    assert result.returncode == 0, result.stderr
    fits(result.stdout)
    heads = [line.split(" ", 1)[0] for line in result.stdout.splitlines()
             if line and not line.startswith(" ") and not line.startswith("catalog ")]
    assert heads == list(load_catalog().components)
    for entry in load_catalog().components.values():
        listed = " ".join(result.stdout.split(f"\n{entry.id} (", 1)[1].split("\n\n", 1)[0]
                          .split())
        assert all(p in listed for p in entry.params), (entry.id, listed)


def test_run_whose_output_stage_is_skipped_says_so_and_fails(tmp_path: Path) -> None:
    wb = Workbook("gate", inputs={"question": "string"}, output="answer")
    wb.code("answer", "def answer(question: str) -> str:\n    return question\n",
            when="question == 'go'")
    path = wb.save(tmp_path / "gate.ipynb")
    result = CliRunner().invoke(main, ["run", str(path), "-i", "question=stop"])
    assert result.exit_code == 1
    assert "no answer: stage answer: the output stage was skipped" in result.stderr
    assert "stage answer skipped:" in result.stderr and "output:" not in result.stdout


def test_eval_and_tune_show_every_trial_at_80_columns(tmp_path: Path) -> None:
    wb = Workbook("knob", inputs={"question": "string"}, output="answer",
                  criteria=[{"type": "contains", "name": "echo"}],
                  acceptance={"echo.pass_rate": 0.0}, test_bank="bank.jsonl")
    wb.code("answer", "def answer(question: str, *, k: int = 1) -> str:\n"
                      "    return (question + ' ') * k\n", tune={"k": {"int": [1, 4]}})
    path = wb.save(tmp_path / "knob.ipynb")
    (tmp_path / "bank.jsonl").write_text("".join(
        json.dumps({"inputs": {"question": q}, "expected": q}, ensure_ascii=False) + "\n"
        for q in ("Grüße aus Köln, wie lang ist ein sehr langer Satz wirklich", "zwei")))
    runner = CliRunner()
    evaluated = runner.invoke(main, ["eval", str(path)])
    assert evaluated.exit_code == 0, evaluated.output
    fits("\n".join(line for line in evaluated.stdout.splitlines()
                   if line[:1] in "┏┃┡│└" or line.startswith(("pass rate", "latency", "tokens"))))
    assert "Grüße" in evaluated.stdout
    tuned = runner.invoke(main, ["tune", str(path), "--trials", "4", "--seed", "1",
                                 "--no-plots"])
    assert tuned.exit_code == 0, tuned.output
    shown = runner.invoke(main, ["tune", str(path), "--show", "--all", "--no-plots"])
    assert shown.exit_code == 0, shown.output
    fits(shown.stdout)
    assert "every trial" in shown.stdout
    numbers = {line.split("│")[1].strip().rstrip("*+ ") for line in shown.stdout.splitlines()
               if line.startswith("│")}
    assert numbers == {"0", "1", "2", "3"}
    listed = runner.invoke(main, ["tune", str(path), "--show", "--all", "--json", "--no-plots"])
    assert [t["trial"] for t in json.loads(listed.stdout)[0]["trials"]] == [0, 1, 2, 3]
