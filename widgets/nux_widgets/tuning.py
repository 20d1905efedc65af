"""The ``tune`` job: an Optuna study over the workbook's search space, run in a worker process
of the job's own (the trials run the notebook's code; the server only follows them).

Each finished trial is reported as a progress event (trial number, state, params by
``stage.param``, objective values by name) for the tune panel's live table and Pareto plot.
A stop request takes effect after the running trial (a trial that does not end within
``NuxWorkers.stop_grace_s`` ends with its worker): what was found so far stays in the study
(SQLite beside the workbook, or the storage the request names). A trial that crashes its worker
ends the job with that problem; the finished trials stay in the study too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nux_runtime.errors import NuxError, Problem
from nux_widgets.jobs import JobContext, JobFunction
from nux_widgets.runs import compiled
from nux_widgets.workbooks import resolve_path
from nux_widgets.workers import WorkerContext, WorkerEnded, WorkerPool

__all__ = ["tune_in_worker", "tune_job"]


class _StopTuning(BaseException):
    """Raised from the trial callback to end the study loop early (not an error)."""


def _int(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise NuxError(problems=[Problem(code="request", message=f"`{key}` must be a whole "
                                         f"number from {low} to {high}", fix=f"send e.g. "
                                         f"{{\"{key}\": {default}}}", field=key)])
    return value


def tune_in_worker(ctx: WorkerContext, args: dict[str, Any]) -> dict[str, Any]:
    """In the job's worker process: the study, each finished trial reported as it ends."""
    from optuna import Study
    from optuna.trial import FrozenTrial

    from nux_kernel.tune import pareto_front, tune_workbook

    seen: dict[str, Study] = {}

    def on_trial(study: Study, trial: FrozenTrial) -> None:
        seen["study"] = study
        names = study.user_attrs.get("objectives") or [
            f"objective{i}" for i in range(len(trial.values or []))]
        ctx.report(trial=trial.number, state=trial.state.name.lower(),
                   params=dict(trial.params),
                   values=dict(zip(names, trial.values or [], strict=False)),
                   study=study.study_name)
        if ctx.stopping:
            raise _StopTuning

    try:
        study = tune_workbook(args["spec"], base_dir=args["base_dir"], trials=args["trials"],
                              stage=args["stage"], seed=args["seed"], on_trial=on_trial)
    except _StopTuning:
        study = seen["study"]
    front = pareto_front(study)
    return {
        "study": study.study_name,
        "objectives": study.user_attrs.get("objectives", []),
        "directions": [d.name.lower() for d in study.directions],
        "trials": len(study.trials),
        "pareto": [t.number for t in front],
        "stopped": ctx.stopping,
    }


def tune_job(pool: WorkerPool, root: Path) -> JobFunction:
    def run(ctx: JobContext, body: dict[str, Any]) -> dict[str, Any]:
        spec, base_dir = compiled(root, body)
        trials = _int(body, "trials", 20, 1, 10_000)
        path = resolve_path(root, str(body["path"]))
        args = {"spec": spec, "base_dir": base_dir, "trials": trials,
                "stage": body.get("stage") or None, "seed": body.get("seed")}
        with pool.for_job(f"tune {path.name}") as worker:
            try:
                result: dict[str, Any] = worker.call(
                    tune_in_worker, args, on_event=lambda event: ctx.report(**event),
                    stop=ctx.stop_event)
            except WorkerEnded as ended:
                raise NuxError(problems=[Problem(
                    code="tune-ended", message=f"tuning ended: {ended.reason}",
                    fix="the finished trials are kept in the study; look for the stage "
                        "that crashes or hangs in a run from the DAG panel")]) from None
        return result

    return run
