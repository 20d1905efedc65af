"""The tuning loop: Optuna ask/tell over trials of the workbook (``nux tune``).

:class:`TuningLoop` is the one interface every dispatcher drives: :meth:`~TuningLoop.ask` a
trial, score it (:meth:`~TuningLoop.score` here, or elsewhere), then :meth:`~TuningLoop.tell`
its outcome or :meth:`~TuningLoop.fail` it, with :meth:`~TuningLoop.heartbeat` beating while it
runs. :func:`optimize_local` scores trials one after the other in this process (``--workers``
runs it in each process, ``tune/workers.py``); ``tune/ray_trials.py`` scores them on Ray actors.
:func:`run_studies` fills the run's studies with a given dispatcher; ``tune/driver.py`` picks it.

Joint mode searches the chosen stages' space at once; staged mode tunes the stages one after the
other in topological order, each study with every upstream stage pinned to its best trial. A
single objective is scored on growing slices of the bank and pruned early (Optuna cannot prune a
multi-objective trial, so several objectives score the whole bank). ``trials`` counts finished
trials in the study: running the same command again after an interruption finishes the budget,
and ``--workers`` processes share one budget.

Trials are scored on the tuning part of the test bank only (cases whose ``split`` is not
``holdout``); when the bank holds a held-out part, the best trial of each study is scored on it
once at the end, and the study records both figures (user attribute ``holdout``) for
``nux tune --show``. The sampler is Optuna's TPE, multivariate (the stages' params are
modelled together) and constrained: each trial sets the acceptance thresholds with
``Trial.set_constraint`` (Optuna 5's constraint API, which its samplers read).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from nux_kernel.evaluate.bank import Case, as_cases, holdout_part, resolve_bank, tuning_part
from nux_kernel.evaluate.criteria import build_scorers
from nux_kernel.evaluate.summary import check_acceptance
from nux_kernel.tune.ingests import TunedIngest, tuned_ingests
from nux_kernel.tune.objectives import DEFAULT_OBJECTIVES, Objectives
from nux_kernel.tune.space import Overrides, SearchSpace, apply_params, study_key
from nux_kernel.tune.storage import (
    RECORD,
    Heartbeat,
    best_trial,
    default_storage,
    finished,
    open_storage,
    quiet,
    record,
)
from nux_kernel.tune.trials import TrialOutcome, TrialRunner, outcome_of, slice_sizes
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import StageSpec, WorkbookSpec

__all__ = [
    "Dispatcher",
    "Mode",
    "TrialReport",
    "TuneOptions",
    "TuningLoop",
    "holdout_line",
    "optimize_local",
    "run_studies",
    "study_names",
]

Mode = Literal["joint", "staged"]
TrialReport = Callable[[optuna.Study, FrozenTrial], None]


@dataclass(frozen=True)
class TuneOptions:
    """Everything a tuning run (and each of its worker processes) needs to know."""

    trials: int = 20
    stages: tuple[str, ...] = ()
    mode: Mode = "joint"
    timeout_s: float | None = None
    storage: str | None = None
    study_name: str | None = None
    workers: int = 1
    ray: bool = False
    ray_address: str | None = None
    seed: int | None = None
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    prune: bool = True
    slices: tuple[float, ...] = (0.25, 0.5, 1.0)
    concurrency: int = 4
    heartbeat_s: float = 5.0
    worker_index: int = 0
    #: the notebook tuned, when there is one (its metadata may name its ingest workbooks)
    notebook: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TuneOptions:
        values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v)
                                  for k, v in data.items()}
        return cls(**values)


def study_names(spec: WorkbookSpec, options: TuneOptions,
                ingests: Mapping[str, StageSpec] | None = None
                ) -> list[tuple[str, tuple[str, ...]]]:
    """(study name, stages it tunes) for each study the run fills (one, or one per stage)."""
    space = SearchSpace.of(spec, options.stages or None, ingests=ingests)
    key = study_key(spec, (options.objectives, options.mode, space.stages))
    base = options.study_name or f"{spec.name}-{key}"
    if options.mode == "joint":
        return [(base, space.stages)]
    return [(f"{base}.{stage}", (stage,)) for stage in space.stages]


@dataclass
class TuningLoop:
    """One process's side of a tuning run: asks trials of a study, tells their outcomes."""

    spec: WorkbookSpec
    base_dir: Path
    cases: list[Case]
    options: TuneOptions
    objectives: Objectives
    storage: RDBStorage
    on_trial: TrialReport | None = None
    deadline: float | None = None
    runner: TrialRunner | None = None
    fixed: Overrides = field(default_factory=dict)
    #: the pseudo-stage of each tuned ingest (``tune/ingests.py``) -> the ingest
    ingests: dict[str, TunedIngest] = field(default_factory=dict)
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def patience_s(self) -> float:
        """How long to wait for other processes' running trials before leaving them the rest
        of the budget (a trial that stopped beating is failed and retried well before)."""
        return max(120.0, 40.0 * (self.storage.get_heartbeat_interval() or 5))

    def time_left(self) -> bool:
        return self.deadline is None or time.monotonic() < self.deadline

    @property
    def pruning(self) -> bool:
        return self.options.prune and not self.objectives.multi and not self.options.ray

    def trial_runner(self) -> TrialRunner:
        if self.runner is None:
            self.runner = TrialRunner(self.spec, self.base_dir, self.cases,
                                      concurrency=self.options.concurrency,
                                      notebook=self.options.notebook, ingests=self.ingests)
        return self.runner

    def create_study(self, name: str, stages: tuple[str, ...]) -> optuna.Study:
        existing = 0
        with contextlib.suppress(KeyError):
            existing = len(optuna.load_study(study_name=name, storage=self.storage)
                           .get_trials(deepcopy=False))
        seed = self.options.seed
        if seed is not None:  # a fresh study replays exactly; a resumed one draws new points
            seed = seed + 7919 * self.options.worker_index + existing
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        pruner: optuna.pruners.BasePruner = (
            optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
            if self.pruning else optuna.pruners.NopPruner())
        study = optuna.create_study(study_name=name, storage=self.storage, sampler=sampler,
                                    pruner=pruner, directions=list(self.objectives.directions),  # type: ignore[arg-type]
                                    load_if_exists=True)
        if existing == 0:
            study.set_user_attr("workbook", self.spec.name)
            study.set_user_attr("objectives", list(self.objectives.names))
            study.set_user_attr("mode", self.options.mode)
            study.set_user_attr("stages", list(stages))
        if [d.name.lower() for d in study.directions] != list(self.objectives.directions):
            raise NuxError(problems=[Problem(
                code="study", message=f"study {name!r} optimizes other objectives "
                f"({', '.join(study.user_attrs.get('objectives', []))})",
                fix="use the same --objective options, or a new --study name")])
        study.set_user_attr("fixed", self.fixed)
        return study

    # -- one trial -------------------------------------------------------------------------

    def ask(self, study: optuna.Study, space: SearchSpace, *, block: bool = True
            ) -> tuple[optuna.Trial, Overrides] | None:
        """The next trial and its params; None when the budget is spent (or, with ``block``
        False, when the rest of the budget is running)."""
        target = self.options.trials
        waited_since: float | None = None
        while self.time_left():
            with quiet():
                optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            done = finished(trials)
            if done >= target:
                return None
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if done + running >= target:  # others are finishing (or will be found stale)
                if not block:
                    return None
                waited_since = waited_since or time.monotonic()
                if time.monotonic() - waited_since > self.patience_s():
                    return None  # the rest of the budget is someone else's, still running
                time.sleep(min(1.0, self.storage.get_heartbeat_interval() or 1))
                continue
            waited_since = None
            with quiet():
                trial = study.ask()
            before = sum(t.state != TrialState.FAIL for t in study.get_trials(deepcopy=False)
                         if t.number < trial.number)
            if before >= target:  # another worker took the last slot meanwhile
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=TrialState.FAIL)
                continue
            chosen = space.sample(trial, apply_params(self.spec, self.fixed))
            overrides: Overrides = {s: dict(p) for s, p in self.fixed.items()}
            for stage, params in chosen.items():
                overrides.setdefault(stage, {}).update(params)
            return trial, overrides
        return None

    def tell(self, study: optuna.Study, trial: optuna.Trial, overrides: Overrides,
             outcome: TrialOutcome, state: TrialState = TrialState.COMPLETE,
             worker: str | None = None) -> None:
        """Record what the trial measured (its constraints, metrics and costs) and finish it."""
        s = outcome.summary
        overrides = outcome.overrides if outcome.overrides is not None else overrides
        constraints = self.objectives.constraints(s)
        for (name, _, _), value in zip(self.objectives.thresholds, constraints, strict=True):
            trial.set_constraint(name, value)  # what samplers and plots read
        # one attribute, one storage write: what the trial measured and what it took
        trial.set_user_attr(RECORD, {
            "overrides": overrides, "worker": worker or self.worker, "constraints": constraints,
            "metrics": {
                "quality": s["quality"], "pass_rate": s["pass_rate"],
                "error_rate": s["error_rate"], "p50_ms": s["latency_ms"]["p50"],
                "p95_ms": s["latency_ms"]["p95"], "cost_per_request": s["cost_per_request"],
                "tokens_per_request": s["tokens_per_request"]["in"]
                + s["tokens_per_request"]["out"]},
            "cases": outcome.cases, "stage_runs": outcome.stage_runs,
            "cache_hits": outcome.cache_hits, "executions": outcome.executions})
        if state == TrialState.PRUNED:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        else:
            frozen = study.tell(trial, self.objectives.values(s))
        if self.on_trial is not None:
            self.on_trial(study, frozen)

    def fail(self, study: optuna.Study, trial: optuna.Trial, exc: BaseException,
             overrides: Overrides | None = None) -> None:
        """Finish the trial as failed, with the error that ended it."""
        trial.set_user_attr(RECORD, {"overrides": overrides or {}, "worker": self.worker,
                                     "error": f"{type(exc).__name__}: {exc}"[:2000]})
        frozen = study.tell(trial, state=TrialState.FAIL)
        if self.on_trial is not None:
            self.on_trial(study, frozen)

    def heartbeat(self, trial: optuna.Trial) -> Heartbeat:
        """Beats for ``trial`` until closed, so other processes see it is alive (Optuna gives a
        live trial's storage id no public name)."""
        return Heartbeat(self.storage, trial._trial_id)

    def score(self, trial: optuna.Trial, overrides: Overrides) -> tuple[TrialOutcome, bool]:
        """The trial's outcome here, on growing slices when pruning; whether it was pruned."""
        runner = self.trial_runner()
        prepared = runner.prepare(overrides)
        sizes = slice_sizes(len(prepared.cases), self.options.slices) if self.pruning else [
            len(prepared.cases)]
        reports = []
        pruned = False
        for step, n in enumerate(sizes):
            report = runner.evaluate(prepared.spec, n, cases=prepared.cases)
            reports.append(report)
            if step < len(sizes) - 1:
                trial.report(self.objectives.values(report.summary)[0], step)
                if trial.should_prune():
                    pruned = True
                    break
        outcome = outcome_of(reports)
        outcome.overrides = prepared.overrides
        return outcome, pruned

    def score_holdout(self, study: optuna.Study, holdout: Sequence[Case]) -> None:
        """Score the study's best trial on the held-out cases; recorded on the study."""
        best = best_trial(study, self.objectives)
        feasible = best is not None
        if best is None:  # no feasible trial: the best quality among the complete ones
            q, sign = self.objectives.quality_index(), self.objectives.better(1.0, 0.0)
            complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                        if t.values]
            best = max(complete, key=lambda t: (t.values[q] if sign else -t.values[q],
                                                -t.number), default=None)
        if best is None or not holdout:
            return
        overrides = dict(record(best).get("overrides", {}))
        runner = self.trial_runner()
        held = runner.evaluate_cases(runner.prepare(overrides).spec, list(holdout)).summary
        tuned = record(best).get("metrics", {})
        study.set_user_attr("holdout", {
            "trial": best.number, "feasible": feasible, "cases": held["cases"],
            "pass_rate": held["pass_rate"],
            "quality": held["quality"], "error_rate": held["error_rate"],
            "p95_ms": held["latency_ms"]["p95"],
            "tuning": {"cases": len(self.cases), "pass_rate": tuned.get("pass_rate"),
                       "quality": tuned.get("quality")}})

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()


def optimize_local(loop: TuningLoop, study: optuna.Study, space: SearchSpace) -> None:
    """The local dispatcher: ask, score and tell one trial after the other, here."""
    while True:
        asked = loop.ask(study, space)
        if asked is None:
            return
        trial, overrides = asked
        with loop.heartbeat(trial):
            try:
                outcome, pruned = loop.score(trial, overrides)
            except (KeyboardInterrupt, SystemExit) as exc:
                loop.fail(study, trial, exc, overrides)
                # interrupted, not broken: the next run retries the same params first
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                raise
            except NuxError as exc:
                loop.fail(study, trial, exc, overrides)
                raise
            except Exception as exc:
                loop.fail(study, trial, exc, overrides)
                continue
            loop.tell(study, trial, overrides, outcome,
                       TrialState.PRUNED if pruned else TrialState.COMPLETE)


Dispatcher = Callable[[TuningLoop, optuna.Study, SearchSpace], None]
"""How a study's trials are run: :func:`optimize_local` or ``ray_trials.optimize_ray``."""


def _prepare(spec: WorkbookSpec, base_dir: Path, options: TuneOptions,
             cases: Sequence[Case | Mapping[str, Any]] | None,
             ingests: Mapping[str, StageSpec]) -> tuple[list[Case], Objectives]:
    if options.trials < 1:
        raise NuxError(problems=[Problem(code="usage", message="--trials must be at least 1",
                                         fix="write e.g. --trials 20")])
    check_acceptance(spec)
    objectives = Objectives.of(spec, options.objectives)
    case_list = tuning_part(as_cases(cases) if cases is not None else resolve_bank(spec, base_dir))
    if not case_list:
        raise NuxError(problems=[Problem(
            code="test-bank", message="every case of the test bank is held out (`split: "
            "holdout`); there is nothing to tune on", field="metadata.nux.test_bank",
            fix="mark some cases `split: tune` (or leave their split out)")])
    for scorer in build_scorers(spec, base_dir):  # a bad criterion fails before any trial
        scorer.close()
    SearchSpace.of(spec, options.stages or None, ingests=ingests)
    return case_list, objectives


def run_studies(spec: WorkbookSpec, base_dir: str | Path, options: TuneOptions,
                dispatch: Dispatcher, *, cases: Sequence[Case | Mapping[str, Any]] | None = None,
                on_trial: TrialReport | None = None) -> optuna.Study:
    """One process's share of a tuning run, its trials run by ``dispatch``; the last study it
    worked on."""
    base = Path(base_dir)
    tuned = tuned_ingests(spec, base, options.notebook)
    ingests = {key: t.stage for key, t in tuned.items()}
    case_list, objectives = _prepare(spec, base, options, cases, ingests)
    holdout = holdout_part(as_cases(cases) if cases is not None else resolve_bank(spec, base))
    storage = open_storage(options.storage or default_storage(base),
                           heartbeat_s=options.heartbeat_s)
    deadline = (time.monotonic() + options.timeout_s) if options.timeout_s else None
    loop = TuningLoop(spec=spec, base_dir=base, cases=case_list, options=options,
                      objectives=objectives, storage=storage, on_trial=on_trial,
                      deadline=deadline, ingests=tuned)
    study: optuna.Study | None = None
    try:
        for name, stages in study_names(spec, options, ingests):
            space = SearchSpace.of(spec, stages, ingests=ingests)
            study = loop.create_study(name, stages)
            dispatch(loop, study, space)
            if options.worker_index == 0:
                loop.score_holdout(study, holdout)
            best = best_trial(study, objectives)
            if best is not None:
                loop.fixed = dict(record(best).get("overrides", {}))
            if not loop.time_left():
                break
    finally:
        loop.close()
    assert study is not None
    return study


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def holdout_line(study: optuna.Study) -> str | None:
    """The study's held-out figures beside the tuning ones, as ``nux tune --show`` prints them."""
    held = study.user_attrs.get("holdout")
    if not isinstance(held, dict):
        return None
    tuned = held.get("tuning") or {}
    return (f"held-out: trial {held.get('trial')} pass rate {_fmt(held.get('pass_rate'))} on "
            f"{held.get('cases')} held-out cases (tuning part: {_fmt(tuned.get('pass_rate'))} "
            f"on {tuned.get('cases')} cases)")
