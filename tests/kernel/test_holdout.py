"""A test bank's held-out part: ``nux eval`` reports it beside the tuning part, the export's
verdict carries both, and a split that is neither part is a clear problem."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from nux_kernel import Workbook
from nux_kernel.cli.main import main
from nux_kernel.compiler import compile_notebook
from nux_kernel.provenance import acceptance_verdict


def _workbook(folder: Path, splits: list[str]) -> Path:
    (folder / "bank.jsonl").write_text("".join(
        json.dumps({"inputs": {"text": w}, "expected": w.upper() if i else "no",
                    "split": split}) + "\n"
        for i, (w, split) in enumerate(zip("abcd", splits, strict=True))), encoding="utf-8")
    wb = Workbook("upper", inputs={"text": "string"}, output="shout", test_bank="bank.jsonl",
                  criteria=[{"type": "exact", "name": "same"}], acceptance={"pass_rate": 0.5},
                  base_dir=folder)
    wb.code("shout", "def shout(text: str) -> str:\n    return text.upper()\n")
    return wb.save(folder / "upper.ipynb")


def test_eval_and_the_export_verdict_report_the_held_out_part(tmp_path: Path) -> None:
    path = _workbook(tmp_path, ["holdout", "tune", "tune", "holdout"])
    done = CliRunner().invoke(main, ["eval", str(path), "--json"])
    assert done.exit_code == 0, done.output
    splits = json.loads(done.output)["summary"]["splits"]
    assert splits["tune"]["cases"] == 2 and splits["tune"]["pass_rate"] == 1.0
    assert splits["holdout"]["cases"] == 2 and splits["holdout"]["pass_rate"] == 0.5
    verdict = acceptance_verdict(compile_notebook(path), tmp_path)
    assert verdict is not None and verdict["splits"]["holdout"]["pass_rate"] == 0.5


def test_a_split_that_is_neither_part_is_a_clear_problem(tmp_path: Path) -> None:
    path = _workbook(tmp_path, ["tune", "test", "tune", "tune"])
    done = CliRunner().invoke(main, ["eval", str(path)])
    assert done.exit_code == 2
    assert "split 'test' is neither `tune` nor `holdout`" in done.output
    assert "Traceback" not in done.output
