"""``nux tune``'s entry point: the tuning loop run here, in K processes, or on Ray.

:func:`tune_workbook` picks how the trials of :mod:`nux_kernel.tune.loop` are dispatched: one
after the other in this process (:func:`~nux_kernel.tune.loop.optimize_local`), in ``workers``
processes on one shared study (:mod:`nux_kernel.tune.workers`), or as Ray actor calls
(:mod:`nux_kernel.tune.ray_trials`). Every dispatcher drives the same
:class:`~nux_kernel.tune.loop.TuningLoop`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from nux_kernel.evaluate.bank import Case
from nux_kernel.tune.loop import (
    Dispatcher,
    Mode,
    TrialReport,
    TuneOptions,
    optimize_local,
    run_studies,
)
from nux_kernel.tune.objectives import DEFAULT_OBJECTIVES
from nux_kernel.tune.workers import run_workers
from nux_runtime.spec import WorkbookSpec

__all__ = ["dispatcher", "run_worker", "tune_workbook"]


def dispatcher(options: TuneOptions) -> Dispatcher:
    """Ray actor calls with ``--ray``; otherwise trials scored here, one after the other."""
    if options.ray:
        from nux_kernel.tune.ray_trials import optimize_ray  # imports Ray only for --ray

        return optimize_ray
    return optimize_local


def run_worker(spec: WorkbookSpec, base_dir: str | Path, options: TuneOptions, *,
               cases: Sequence[Case | Mapping[str, Any]] | None = None,
               on_trial: TrialReport | None = None) -> optuna.Study:
    """One process's share of a tuning run; the last study it worked on."""
    return run_studies(spec, base_dir, options, dispatcher(options), cases=cases,
                       on_trial=on_trial)


def tune_workbook(spec: WorkbookSpec, *, base_dir: str | Path, trials: int = 20,
                  stage: str | Sequence[str] | None = None, mode: Mode = "joint",
                  timeout: float | None = None, storage: str | None = None,
                  study_name: str | None = None, workers: int = 1, ray: bool = False,
                  ray_address: str | None = None, seed: int | None = None,
                  objectives: Sequence[str] = DEFAULT_OBJECTIVES, prune: bool = True,
                  cases: Sequence[Case | Mapping[str, Any]] | None = None,
                  concurrency: int = 4, heartbeat_s: float = 5.0,
                  on_trial: TrialReport | None = None,
                  notebook: str | Path | None = None) -> optuna.Study:
    """Tune the workbook's stages with Optuna; the (last) study.

    ``trials`` is the number of finished trials the study should hold: a rerun after an
    interruption completes it. ``workers`` > 1 starts that many processes on one study (the
    storage must be shared: the default SQLite file or any RDB URL); ``ray`` runs the trials as
    Ray actors instead. ``notebook`` is the notebook the spec was compiled from, when there is
    one: its metadata may name the ingest workbooks whose ``tune:`` entries join the search.
    """
    stages = (stage,) if isinstance(stage, str) else tuple(stage or ())
    options = TuneOptions(trials=trials, stages=stages, mode=mode, timeout_s=timeout,
                          storage=storage, study_name=study_name, workers=max(1, workers),
                          ray=ray, ray_address=ray_address, seed=seed,
                          objectives=tuple(objectives), prune=prune, concurrency=concurrency,
                          heartbeat_s=heartbeat_s,
                          notebook=str(notebook) if notebook is not None else None)
    if options.workers > 1 and not options.ray:
        return run_workers(spec, Path(base_dir), options, cases=cases, on_trial=on_trial)
    return run_worker(spec, base_dir, options, cases=cases, on_trial=on_trial)
