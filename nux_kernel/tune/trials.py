"""Scoring one trial: the workbook with the trial's params, over the test bank or a slice of it.

A :class:`TrialRunner` keeps one executor (components loaded once, one stage cache) and one set
of scorers for every trial it runs, so a trial recomputes only the stages whose params changed
and what they feed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nux_kernel.evaluate.bank import Case
from nux_kernel.evaluate.criteria import build_scorers
from nux_kernel.evaluate.run import EvalReport, evaluate_spec
from nux_kernel.executor import Executor
from nux_kernel.tune.space import apply_params
from nux_runtime.spec import WorkbookSpec

__all__ = ["TrialOutcome", "TrialRunner", "slice_sizes"]


def slice_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Growing slice sizes of a bank of ``n`` cases (each at least one case, the last ``n``)."""
    sizes = sorted({max(1, min(n, round(n * f))) for f in fractions} | {n})
    return sizes


@dataclass
class TrialOutcome:
    """What a trial measured: the summary of its last slice and the work it took."""

    summary: dict[str, Any]
    cases: int
    stage_runs: int = 0
    cache_hits: int = 0
    executions: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "cases": self.cases, "stage_runs": self.stage_runs,
                "cache_hits": self.cache_hits, "executions": self.executions}


class TrialRunner:
    """Runs trials of one workbook on one bank with one executor and one set of scorers."""

    def __init__(self, spec: WorkbookSpec, base_dir: str | Path, cases: Sequence[Case], *,
                 concurrency: int = 4, cache: bool = True) -> None:
        self.spec = spec
        self.base_dir = Path(base_dir)
        self.cases = list(cases)
        self.concurrency = concurrency
        self.executor = Executor(spec, base_dir=self.base_dir, cache=cache)
        self.scorers = build_scorers(spec, self.base_dir)

    def evaluate(self, spec: WorkbookSpec, n: int | None = None) -> EvalReport:
        cases = self.cases if n is None else self.cases[:n]
        return evaluate_spec(spec, cases, executor=self.executor, scorers=self.scorers,
                             concurrency=self.concurrency)

    def evaluate_cases(self, spec: WorkbookSpec, cases: Sequence[Case]) -> EvalReport:
        """``spec`` on other cases than the runner's (the held-out part)."""
        return evaluate_spec(spec, cases, executor=self.executor, scorers=self.scorers,
                             concurrency=self.concurrency)

    def run(self, overrides: Mapping[str, Mapping[str, Any]]) -> TrialOutcome:
        """The whole bank with ``overrides`` (no pruning)."""
        report = self.evaluate(apply_params(self.spec, overrides))
        return outcome_of([report])

    def close(self) -> None:
        for scorer in self.scorers:
            scorer.close()
        self.executor.close()


def outcome_of(reports: Sequence[EvalReport]) -> TrialOutcome:
    last = reports[-1]
    outcome = TrialOutcome(summary=last.summary, cases=len(last.cases))
    for report in reports:
        outcome.stage_runs += int(report.summary["stage_runs"])
        outcome.cache_hits += int(report.summary["cache_hits"])
        outcome.executions += int(report.summary["executions"])
    return outcome
