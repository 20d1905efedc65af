"""``nux eval --compare`` calls a latency change a regression only beyond run-to-run noise: more
than a relative margin and more than two standard errors of the difference."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from nux_kernel import Workbook
from nux_kernel.compiler import compile_notebook
from nux_kernel.evaluate import evaluate_workbook
from nux_kernel.evaluate.history import compare


def test_latency_moves_within_noise_are_not_regressions(tmp_path: Path) -> None:
    (tmp_path / "bank.jsonl").write_text("".join(
        json.dumps({"inputs": {"text": w}, "expected": w.upper()}) + "\n"
        for w in ("a", "bb", "ccc", "dddd", "eeeee", "ffffff")), encoding="utf-8")
    wb = Workbook("shout", inputs={"text": "string"}, output="shout", test_bank="bank.jsonl",
                  criteria=[{"type": "exact", "name": "same"}], base_dir=tmp_path)
    wb.code("shout", "def shout(text: str) -> str:\n    return text.upper()\n")
    spec = compile_notebook(wb.save(tmp_path / "shout.ipynb"))
    report = evaluate_workbook(spec, base_dir=tmp_path)
    se = report.summary["latency_ms"]["se"]
    assert set(se) == {"p50", "p95", "p99", "mean"} and se["p50"] >= 0.0

    # known figures, so the verdicts do not depend on this machine's timing
    report.summary["latency_ms"] = {"p50": 3611.2, "p95": 4000.0, "p99": 4100.0, "mean": 3700.0,
                                    "se": {"p50": 150.0, "p95": 400.0, "p99": 420.0,
                                           "mean": 120.0}}

    def previous(p50: float, se: float) -> dict[str, object]:
        old = copy.deepcopy(report.to_dict())
        old["summary"]["latency_ms"].update(p50=p50)  # type: ignore[index]
        old["summary"]["latency_ms"]["se"]["p50"] = se  # type: ignore[index]
        return old

    def p50(old: dict[str, object]) -> str | None:
        return next((c.verdict for c in compare(report, old) if c.name == "p50_ms"), None)

    assert p50(previous(3611.1, 150.0)) is None          # 3611.1 -> 3611.2 ms: the same
    assert p50(previous(3400.0, 0.0)) is None            # within the relative margin
    assert p50(previous(3000.0, 300.0)) is None          # beyond it, but within the noise
    assert p50(previous(3000.0, 50.0)) == "regressed"    # beyond both
    assert p50(previous(4500.0, 50.0)) == "improved"
    # an old record without standard errors is judged by the relative margin alone
    old = previous(3000.0, 0.0)
    del old["summary"]["latency_ms"]["se"]  # type: ignore[index]
    assert p50(old) == "regressed"
