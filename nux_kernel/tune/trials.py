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
from nux_kernel.tune.demos import resolve_demos
from nux_kernel.tune.ingests import IngestBuilder, TunedIngest, tuned_ingests
from nux_kernel.tune.space import Overrides
from nux_runtime.spec import WorkbookSpec

__all__ = ["PreparedTrial", "TrialOutcome", "TrialRunner", "slice_sizes"]


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
    #: the trial's params as they ran (drawn demonstrations written out), when they differ
    #: from what was sampled
    overrides: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "cases": self.cases, "stage_runs": self.stage_runs,
                "cache_hits": self.cache_hits, "executions": self.executions,
                "overrides": self.overrides}


@dataclass(frozen=True)
class PreparedTrial:
    """A trial ready to score: its spec, its params as they run, the cases it is scored on."""

    spec: WorkbookSpec
    overrides: Overrides
    cases: list[Case]


class TrialRunner:
    """Runs trials of one workbook on one bank with one executor and one set of scorers."""

    def __init__(self, spec: WorkbookSpec, base_dir: str | Path, cases: Sequence[Case], *,
                 concurrency: int = 4, cache: bool = True,
                 notebook: str | Path | None = None,
                 ingests: Mapping[str, TunedIngest] | None = None) -> None:
        self.spec = spec
        self.base_dir = Path(base_dir)
        self.cases = list(cases)
        self.concurrency = concurrency
        self.notebook = notebook
        self.executor = Executor(spec, base_dir=self.base_dir, cache=cache)
        self.scorers = build_scorers(spec, self.base_dir)
        self._ingests: IngestBuilder | None = None
        self._tuned = ingests  # None: found on first use (a Ray actor finds its own)

    @property
    def ingests(self) -> IngestBuilder:
        """The stores of the ingest configurations trials ask for."""
        if self._ingests is None:
            tuned = self._tuned if self._tuned is not None else tuned_ingests(
                self.spec, self.base_dir, self.notebook)
            self._ingests = IngestBuilder(self.spec, self.base_dir, tuned)
        return self._ingests

    def prepare(self, overrides: Mapping[str, Mapping[str, Any]]) -> PreparedTrial:
        """The trial as it runs: each ingest configuration built (once) and read, each
        ``demos`` draw turned into examples, which are left out of the cases it is scored on."""
        wanted: Overrides = {k: dict(v) for k, v in overrides.items()}
        served = self.ingests.apply(wanted) if any(
            k not in self.spec.by_id for k in wanted) else wanted
        spec, resolved, shown = resolve_demos(self.spec, served, self.cases, self.executor)
        recorded: Overrides = {}
        for key, params in wanted.items():
            if key not in self.spec.by_id:  # an ingest's configuration
                recorded[key] = params
                continue
            recorded[key] = {  # the store a trial reads is the trial's, not a param to pin
                k: v for k, v in resolved.get(key, {}).items() if k != "path" or k in params}
        return PreparedTrial(spec, recorded, [c for c in self.cases if c.id not in shown])

    def evaluate(self, spec: WorkbookSpec, n: int | None = None,
                 cases: Sequence[Case] | None = None) -> EvalReport:
        chosen = list(self.cases if cases is None else cases)
        chosen = chosen if n is None else chosen[:n]
        return evaluate_spec(spec, chosen, executor=self.executor, scorers=self.scorers,
                             concurrency=self.concurrency)

    def evaluate_cases(self, spec: WorkbookSpec, cases: Sequence[Case]) -> EvalReport:
        """``spec`` on other cases than the runner's (the held-out part)."""
        return evaluate_spec(spec, cases, executor=self.executor, scorers=self.scorers,
                             concurrency=self.concurrency)

    def run(self, overrides: Mapping[str, Mapping[str, Any]]) -> TrialOutcome:
        """The whole bank with ``overrides`` (no pruning)."""
        trial = self.prepare(overrides)
        outcome = outcome_of([self.evaluate(trial.spec, cases=trial.cases)])
        outcome.overrides = trial.overrides
        return outcome

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
