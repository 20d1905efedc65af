"""Run a workbook over its test bank and score every case: the core of ``nux eval``.

Cases run through one :class:`~nux_kernel.executor.Executor` with bounded concurrency and the
stage cache on; every criterion scores every case; the summary carries pass rates, mean scores,
latency percentiles, tokens and cost per request, and the acceptance verdicts. A case's latency
is the critical path of its stages' warm compute times (a cache hit counts the warm compute of
the answer it returns, never the lookup and never a model load), so a warm cache measures the
chain, not the cache. What the run itself took with the cache is reported apart (``served_ms``),
and so is the time spent loading components (``cold_start_ms``). Latency, tokens and cost are
those of the request production serves: a stage that exists only for evaluation (a ``metric``
cell, ``WorkbookSpec.evaluation_stages``) is run and scored, never counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from nux_kernel.evaluate.bank import HOLDOUT, Case, as_cases, bank_digest, resolve_bank
from nux_kernel.evaluate.criteria import Score, Scorer, Scoring, build_scorers
from nux_kernel.evaluate.summary import (
    Verdict,
    check_acceptance,
    percentile,
    percentile_se,
    verdicts,
)
from nux_kernel.executor import Executor, RunResult
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import WorkbookSpec
from nux_runtime.trace import StageTrace

__all__ = ["CaseResult", "EvalReport", "evaluate_spec", "evaluate_workbook", "prepare_evaluation"]


@dataclass
class CaseResult:
    """One case: what the chain answered, each criterion's score, and the stage traces."""

    case: Case
    actual: Any
    ok: bool
    error: str
    scores: dict[str, Score]
    latency_ms: float
    tokens_in: int
    tokens_out: int
    cost_usd: float
    traces: list[StageTrace] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.ok and all(s.passed for s in self.scores.values())

    def to_dict(self) -> dict[str, Any]:
        return {**self.case.to_dict(), "actual": self.actual, "ok": self.ok, "error": self.error,
                "passed": self.passed,
                "scores": {k: s.to_dict() for k, s in self.scores.items()},
                "latency_ms": self.latency_ms, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cost_usd": self.cost_usd,
                "traces": [t.to_dict() for t in self.traces]}


@dataclass
class EvalReport:
    """An evaluation: per-case results, the summary and whether the acceptance gate passed."""

    workbook: str
    spec_hash: str
    cases: list[CaseResult]
    summary: dict[str, Any]
    verdicts: list[Verdict]
    started_at: float = field(default_factory=time.time)
    #: sha256 of the test bank file the cases came from (None: cases given directly)
    bank_digest: str | None = None
    #: the versions of the external state the stages read (collections, database files), the
    #: same before and after the run (None: some state has no version, or it changed meanwhile)
    data_state: dict[str, str] | None = None

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {"workbook": self.workbook, "spec_hash": self.spec_hash,
                "bank_digest": self.bank_digest, "data_state": self.data_state,
                "started_at": self.started_at, "passed": self.passed, "summary": self.summary,
                "cases": [c.to_dict() for c in self.cases]}


def _latency(spec: WorkbookSpec, traces: Mapping[str, StageTrace], *, served: bool = False
             ) -> float:
    """Critical path of one run: of the stages' warm compute times, or with ``served`` of what
    each call took (cache lookups included)."""
    finish: dict[str, float] = {}
    for stage in spec.served.stages:  # stored in a topological order by the compiler
        trace = traces.get(stage.id)
        if trace is None:
            continue
        before = [finish[u] for u in stage.dependencies() if u in finish]
        took = trace.latency_ms if served or trace.status != "ok" else (
            trace.compute_ms or trace.latency_ms)
        finish[stage.id] = took + max(before, default=0.0)
    return max(finish.values(), default=0.0)


def _case_inputs(spec: WorkbookSpec, case: Case) -> dict[str, Any]:
    inputs = dict(case.inputs)
    if "expected" in spec.input_names and "expected" not in inputs:
        inputs["expected"] = case.expected
    return inputs


def _check_cases(spec: WorkbookSpec, cases: Sequence[Case]) -> None:
    validator = Draft202012Validator(spec.inputs)
    problems = []
    for case in cases:
        error = next(iter(validator.iter_errors(_case_inputs(spec, case))), None)
        if error is not None:
            problems.append(Problem(
                code="test-bank", message=f"case {case.id}: {error.message}",
                fix=f"the workbook takes: {', '.join(spec.input_names) or 'no inputs'}",
                field="metadata.nux.test_bank"))
    if problems:
        raise NuxError(problems=problems[:20])


def setup_stages(spec: WorkbookSpec, targets: Sequence[str]) -> tuple[str, ...]:
    """Stages that read nothing and feed none of ``targets`` (an ingest job): run once before
    the cases, so what the cases read (a vector collection) exists."""
    needed: set[str] = set()
    todo = list(targets)
    while todo:
        stage_id = todo.pop()
        if stage_id in needed or stage_id not in spec.by_id:
            continue
        needed.add(stage_id)
        todo.extend(spec.stage(stage_id).dependencies())
    return tuple(s.id for s in spec.stages if s.id not in needed and not s.dependencies())


async def _run_all(executor: Executor, spec: WorkbookSpec, cases: Sequence[Case],
                   targets: tuple[str, ...], concurrency: int) -> list[RunResult]:
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def one(case: Case) -> RunResult:
        async with semaphore:
            return await executor.arun(_case_inputs(spec, case), targets=targets, inline=False)

    return list(await asyncio.gather(*(one(c) for c in cases)))


def _blocking(coro_factory: Any) -> Any:
    """Run a coroutine to completion, also from inside a running loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()


def _mean_se(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return float((sum((v - mean) ** 2 for v in values) / (n - 1) / n) ** 0.5)


def summarize(spec: WorkbookSpec, results: Sequence[CaseResult], scorers: Sequence[Scorer]
              ) -> dict[str, Any]:
    n = len(results) or 1
    latencies = [r.latency_ms for r in results]
    criteria: dict[str, dict[str, Any]] = {}
    for scorer in scorers:
        scores = [r.scores[scorer.name] for r in results]
        criteria[scorer.name] = {
            "type": scorer.criterion.type,
            "pass_rate": sum(s.passed for s in scores) / n,
            "mean": sum(s.value for s in scores) / n,
        }
    answered = sum(r.ok for r in results)
    pass_rate = sum(r.passed for r in results) / n
    quality = (sum(c["mean"] for c in criteria.values()) / len(criteria)) if criteria else (
        answered / n)
    return {
        "cases": len(results),
        "answered": answered,
        "error_rate": 1.0 - answered / n,
        "pass_rate": pass_rate,
        "quality": quality,
        "criteria": criteria,
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "p99": percentile(latencies, 99),
                       "mean": sum(latencies) / n,
                       "se": {"p50": percentile_se(latencies, 50),
                              "p95": percentile_se(latencies, 95),
                              "p99": percentile_se(latencies, 99),
                              "mean": _mean_se(latencies)}},
        "tokens_per_request": {"in": sum(r.tokens_in for r in results) / n,
                               "out": sum(r.tokens_out for r in results) / n},
        "cost_per_request": sum(r.cost_usd for r in results) / n,
        "cost_total": sum(r.cost_usd for r in results),
    }


def _part(spec: WorkbookSpec, results: Sequence[CaseResult], scorers: Sequence[Scorer]
          ) -> dict[str, Any]:
    """The headline figures of one part of the bank (the tuning or the held-out part)."""
    part = summarize(spec, results, scorers)
    found = verdicts(spec, part)
    return {"cases": part["cases"], "pass_rate": part["pass_rate"], "quality": part["quality"],
            "error_rate": part["error_rate"],
            "criteria": {k: v["pass_rate"] for k, v in part["criteria"].items()},
            "p95_ms": part["latency_ms"]["p95"], "passed": all(v.passed for v in found)}


def evaluate_spec(spec: WorkbookSpec, cases: Iterable[Case | Mapping[str, Any]], *,
                  executor: Executor, scorers: Sequence[Scorer] | None = None,
                  concurrency: int = 4) -> EvalReport:
    """Evaluate ``spec`` on ``cases`` with an existing executor (its spec is replaced)."""
    case_list = as_cases(cases)
    check_acceptance(spec)
    _check_cases(spec, case_list)
    if scorers is None:
        scorers = build_scorers(spec, executor.base_dir)
    executor.spec = spec
    targets = tuple(dict.fromkeys((*spec.output, *(s for sc in scorers for s in sc.stages()))))
    started = time.time()
    executions_before = executor.executions
    setup = setup_stages(spec, targets)
    setup_runs: list[RunResult] = []
    if setup:
        prepared: RunResult = _blocking(lambda: executor.arun({}, targets=setup))
        setup_runs.append(prepared)
        if prepared.errors:
            raise NuxError(problems=[Problem(
                code="setup-stage", message=f"stage {e.stage} (run once before the cases) "
                f"failed: {e.cause}", stage=e.stage, fix="fix the stage, then evaluate again")
                for e in prepared.errors])
    runs: list[RunResult] = _blocking(
        lambda: _run_all(executor, spec, case_list, targets, concurrency))
    items: dict[str, list[Scoring]] = {}
    for scorer in scorers:
        stage = scorer.criterion.stage
        column = []
        for case, run in zip(case_list, runs, strict=True):
            if stage is None:
                answered, actual = run.ok, run.walk.output
                reason = "; ".join(f"{e.stage}: {e.cause}" for e in run.errors) or "no answer"
            else:
                outcome = run.walk.outcomes.get(stage)
                answered = outcome is not None and outcome.status == "ok"
                actual = outcome.value if outcome is not None else None
                reason = f"stage {stage} {outcome.status if outcome else 'did not run'}" + (
                    f": {outcome.reason}" if outcome is not None and outcome.reason else "")
            column.append(scorer.pick(Scoring(case, actual, run, answered, reason)))
        items[scorer.name] = column
    scored = {s.name: s.score_many(items[s.name]) for s in scorers}
    results = []
    evaluation = set(spec.evaluation_stages)
    for i, (case, run) in enumerate(zip(case_list, runs, strict=True)):
        paid = [t for t in run.traces.values() if t.stage not in evaluation]
        results.append(CaseResult(
            case=case, actual=run.walk.output, ok=run.ok,
            error="; ".join(f"{e.stage}: {e.cause}" for e in run.errors),
            scores={name: column[i] for name, column in scored.items()},
            latency_ms=_latency(spec, run.traces), tokens_in=sum(t.tokens_in for t in paid),
            tokens_out=sum(t.tokens_out for t in paid), cost_usd=sum(t.cost_usd for t in paid),
            traces=run.trace_list()))
    summary = summarize(spec, results, scorers)
    traces = [t for r in results for t in r.traces if t.status == "ok"]
    summary["stage_runs"] = len(traces)
    summary["cache_hits"] = sum(t.cache_hit for t in traces)
    served = [_latency(spec, run.traces, served=True) for run in runs]
    summary["served_ms"] = {"p50": percentile(served, 50), "p95": percentile(served, 95)}
    summary["cold_start_ms"] = sum(t.cold_start_ms for r in (*runs, *setup_runs)
                                   for t in r.traces.values())
    summary["executions"] = executor.executions - executions_before
    held = [r for r in results if r.case.split == HOLDOUT]
    if held and len(held) < len(results):
        summary["splits"] = {
            "tune": _part(spec, [r for r in results if r.case.split != HOLDOUT], scorers),
            "holdout": _part(spec, held, scorers)}
    found = verdicts(spec, summary)
    summary["acceptance"] = [v.to_dict() for v in found]
    summary["passed"] = all(v.passed for v in found)
    return EvalReport(workbook=spec.name, spec_hash=spec.hash, cases=results, summary=summary,
                      verdicts=found, started_at=started)


def prepare_evaluation(spec: WorkbookSpec, base_dir: str | Path,
                       cases: Iterable[Case | Mapping[str, Any]] | None = None
                       ) -> tuple[list[Case], list[Scorer]]:
    """The cases (the workbook's test bank unless given) and the built scorers, after every
    check ``nux eval`` makes before a case runs; all problems raised at once.

    ``nux validate`` calls this too (and closes the scorers): nothing is run or loaded.
    """
    base = Path(base_dir)
    problems: list[Problem] = []
    case_list: list[Case] = []
    try:
        case_list = as_cases(cases) if cases is not None else resolve_bank(spec, base)
        _check_cases(spec, case_list)
    except NuxError as exc:
        problems += exc.problems
    try:
        check_acceptance(spec)
    except NuxError as exc:
        problems += exc.problems
    scorers: list[Scorer] = []
    try:
        scorers = build_scorers(spec, base)
    except NuxError as exc:
        problems += exc.problems
    if problems:
        for scorer in scorers:
            scorer.close()
        raise NuxError(problems=problems)
    return case_list, scorers


def evaluate_workbook(spec: WorkbookSpec, *, base_dir: str | Path,
                      cases: Iterable[Case | Mapping[str, Any]] | None = None,
                      concurrency: int = 4, cache: bool = True,
                      executor: Executor | None = None) -> EvalReport:
    """Run the workbook over its test bank (or ``cases``) and score it against its criteria.

    ``report.passed`` is the acceptance gate; ``report.summary`` holds the aggregates.
    """
    base = Path(base_dir)
    case_list, scorers = prepare_evaluation(spec, base, cases)
    digest = bank_digest(spec, base) if cases is None else None
    own = executor is None
    runner = executor or Executor(spec, base_dir=base, cache=cache)
    try:
        before = runner.data_state()
        report = evaluate_spec(spec, case_list, executor=runner, scorers=scorers,
                               concurrency=concurrency)
        report.bank_digest = digest
        report.data_state = before if before == runner.data_state() else None
        return report
    finally:
        for scorer in scorers:
            scorer.close()
        if own:
            runner.close()
