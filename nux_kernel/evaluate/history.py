"""Run history: every evaluation recorded under ``.nux/evals`` beside the workbook.

Each run is one JSON file ``.nux/evals/<spec hash>/<time>.json`` (the full report) plus a line
in ``.nux/evals/history.jsonl`` (when, which spec, which bank, the summary). ``--compare`` diffs a
run against the previous one: which metrics and which cases improved or regressed.

A metric moved only beyond what repeated runs vary: a latency figure by more than
``LATENCY_RELATIVE`` of its value and more than ``NOISE_SIGMAS`` standard errors of the
difference (each run records the bootstrap standard error of its percentiles), cost and tokens
by more than ``RELATIVE``. Rates count cases, so they move when a case flips, and each flipped
case is listed.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nux_kernel.evaluate.run import EvalReport
from nux_kernel.evaluate.summary import acceptance_metrics, metric

__all__ = ["LATENCY_RELATIVE", "NOISE_SIGMAS", "RELATIVE", "Change", "compare", "history_dir",
           "previous_run", "record_run"]

LATENCY_RELATIVE = 0.10
RELATIVE = 0.05
NOISE_SIGMAS = 2.0


def history_dir(base_dir: str | Path) -> Path:
    return Path(base_dir) / ".nux" / "evals"


def record_run(report: EvalReport, base_dir: str | Path) -> Path:
    """Store the report and append it to the history index; the report's path."""
    root = history_dir(base_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(report.started_at)) + (
        f"-{int(report.started_at * 1000) % 1000:03d}")
    path = root / report.spec_hash[:16] / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), default=str, indent=1), encoding="utf-8")
    entry = {"at": report.started_at, "spec_hash": report.spec_hash, "workbook": report.workbook,
             "bank_digest": report.bank_digest, "data_state": report.data_state,
             "passed": report.passed, "summary": report.summary,
             "report": str(path.relative_to(root))}
    with (root / "history.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")
    return path


def _entries(base_dir: str | Path) -> list[dict[str, Any]]:
    index = history_dir(base_dir) / "history.jsonl"
    if not index.exists():
        return []
    return [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def previous_run(base_dir: str | Path, workbook: str, before: float) -> dict[str, Any] | None:
    """The last recorded run of this workbook before ``before`` (full report)."""
    earlier = [e for e in _entries(base_dir) if e["workbook"] == workbook and e["at"] < before]
    if not earlier:
        return None
    entry = max(earlier, key=lambda e: e["at"])
    path = history_dir(base_dir) / entry["report"]
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@dataclass(frozen=True)
class Change:
    """A metric or a case that moved between two runs."""

    name: str
    before: Any
    after: Any
    verdict: str  # "improved", "regressed" or "same"


def _noise(name: str, before: float, old: dict[str, Any], new: dict[str, Any]) -> float:
    """How far ``name`` may move between two runs and still be the same."""
    if name.endswith("_ms"):
        key = name.removesuffix("_ms")
        errors = [float((s.get("latency_ms", {}).get("se") or {}).get(key, 0.0))
                  for s in (old, new)]
        spread = NOISE_SIGMAS * math.sqrt(sum(e * e for e in errors))
        return max(LATENCY_RELATIVE * abs(before), spread)
    if name in ("cost_per_request", "tokens_per_request"):
        return RELATIVE * abs(before)
    return 1e-9 * max(1.0, abs(before))


def compare(report: EvalReport, previous: dict[str, Any]) -> list[Change]:
    """Metrics and cases that changed since ``previous`` (a recorded report)."""
    changes: list[Change] = []
    directions = acceptance_metrics(report.summary["criteria"])
    old_summary = previous["summary"]
    for name, op in directions.items():
        try:
            before, after = metric(old_summary, name), metric(report.summary, name)
        except KeyError:
            continue
        if name in report.summary["criteria"]:
            continue  # the same figure as `<name>.pass_rate`
        if abs(after - before) <= _noise(name, before, old_summary, report.summary):
            continue
        better = after > before if op == ">=" else after < before
        changes.append(Change(name, before, after, "improved" if better else "regressed"))
    old_cases = {c["id"]: c for c in previous.get("cases", [])}
    for case in report.cases:
        old = old_cases.get(case.case.id)
        if old is None or bool(old["passed"]) == case.passed:
            continue
        changes.append(Change(f"case {case.case.id}", "pass" if old["passed"] else "fail",
                              "pass" if case.passed else "fail",
                              "improved" if case.passed else "regressed"))
    return changes
