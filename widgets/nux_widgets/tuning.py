"""The ``tune`` job: an Optuna study over the workbook's search space, on the server.

Each finished trial is reported as a progress event (trial number, state, params by
``stage.param``, objective values by name) for the tune panel's live table and Pareto plot.
A stop request takes effect after the running trial: what was found so far stays in the study
(SQLite beside the workbook, or the storage the request names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nux_runtime.errors import NuxError, Problem
from nux_widgets.jobs import JobContext, JobFunction
from nux_widgets.runs import compiled

__all__ = ["tune_job"]


class _StopTuning(BaseException):
    """Raised from the trial callback to end the study loop early (not an error)."""


def _int(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise NuxError(problems=[Problem(code="request", message=f"`{key}` must be a whole "
                                         f"number from {low} to {high}", fix=f"send e.g. "
                                         f"{{\"{key}\": {default}}}", field=key)])
    return value


def tune_job(root: Path) -> JobFunction:
    def run(ctx: JobContext, body: dict[str, Any]) -> dict[str, Any]:
        from optuna import Study
        from optuna.trial import FrozenTrial

        from nux_kernel.tune import pareto_front, tune_workbook

        spec, base_dir = compiled(root, body)
        trials = _int(body, "trials", 20, 1, 10_000)
        stage = body.get("stage") or None
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
            study = tune_workbook(spec, base_dir=base_dir, trials=trials, stage=stage,
                                  seed=body.get("seed"), on_trial=on_trial)
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

    return run
