"""What an export records about the workbook it ships: the acceptance verdict and the tuning.

``nux export`` and JupyterLab's "Export to production" both call these two functions, so a
workbook is gated and described the same way from either:

- :func:`acceptance_verdict`: the verdict of ``nux eval`` for this exact spec on this exact test
  bank and this exact data (the versions of the collections and database files its stages
  read), taken from the evaluation history beside the workbook when there is one (cached), and
  computed (with the stage cache, then recorded) otherwise. A collection that does not hold what
  its ingest workbook writes now (:func:`~nux_kernel.datasources.stale_collections`) is named in
  the verdict's ``stale_data``: the export refuses such a verdict unless forced;
- :func:`tuning_provenance`: for each tuned param, the trial that set it, from the ``nux pin``
  records in the notebook's cell metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nux_kernel.datasources import WorkbookSources, stale_collections
from nux_kernel.evaluate import evaluate_workbook
from nux_kernel.evaluate.bank import bank_digest
from nux_kernel.evaluate.history import record_run
from nux_kernel.executor import Executor
from nux_runtime.spec import WorkbookSpec

__all__ = ["acceptance_verdict", "cached_verdict", "tuning_provenance"]

#: The summary figures a verdict keeps.
VERDICT_FIELDS = ("pass_rate", "cases", "p95_ms", "cost_usd", "acceptance", "splits")
#: What a stage's tuning provenance keeps of a ``nux pin`` record.
PIN_FIELDS = ("study", "trial", "values", "feasible", "holdout", "pinned_at")


def cached_verdict(spec: WorkbookSpec, base_dir: Path) -> dict[str, Any] | None:
    """The latest recorded ``nux eval`` of exactly this spec on exactly this test bank and
    data; None when there is none, or when some state the stages read has no version."""
    index = base_dir / ".nux" / "evals" / "history.jsonl"
    digest = bank_digest(spec, base_dir)
    if not index.is_file() or digest is None:
        return None
    executor = Executor(spec, base_dir=base_dir, cache=False)
    try:
        state = executor.data_state()
    finally:
        executor.close()
    if state is None:
        return None
    latest = None
    for line in index.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("spec_hash") == spec.hash and (
                entry.get("bank_digest") == digest) and entry.get("data_state") == state and (
                latest is None or entry.get("at", 0) >= latest.get("at", 0)):
            latest = entry
    return latest


def _verdict_record(passed: bool, summary: Mapping[str, Any], source: str) -> dict[str, Any]:
    return {"passed": passed, "source": source,
            **{k: summary[k] for k in VERDICT_FIELDS if k in summary}}


def acceptance_verdict(spec: WorkbookSpec, base_dir: Path,
                       sources: WorkbookSources | None = None) -> dict[str, Any] | None:
    """The acceptance verdict for ``spec`` (None when the workbook has no test bank).

    With ``sources`` (:func:`~nux_kernel.datasources.find_sources`), the collections that do
    not hold what their ingest workbooks write now are listed under ``stale_data``."""
    if not spec.test_bank:
        return None
    cached = cached_verdict(spec, base_dir)
    if cached is not None:
        record = _verdict_record(bool(cached.get("passed")), cached.get("summary") or {},
                                 "nux eval (cached)")
    else:
        report = evaluate_workbook(spec, base_dir=base_dir)
        record_run(report, base_dir)
        record = _verdict_record(report.passed, report.summary, "nux eval")
    stale = stale_collections(sources) if sources is not None else []
    if stale:
        record["stale_data"] = [problem.to_dict() for problem in stale]
    return record


def tuning_provenance(workbook: str | Path, spec: WorkbookSpec) -> dict[str, dict[str, Any]]:
    """Stage -> param -> the trial that set it, from the ``nux pin`` records in the notebook."""
    try:
        notebook = json.loads(Path(workbook).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    by_cell = {s.origin.cell: s.id for s in spec.stages if s.origin is not None}
    found: dict[str, dict[str, Any]] = {}
    for cell in notebook.get("cells", []):
        pin = (cell.get("metadata") or {}).get("nux", {}).get("pin")
        stage = by_cell.get(str(cell.get("id")))
        if not isinstance(pin, dict) or stage is None:
            continue
        record = {k: pin[k] for k in PIN_FIELDS if k in pin}
        for param in sorted(pin.get("params") or {}):
            found.setdefault(stage, {})[param] = record
    return found
