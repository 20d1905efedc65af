"""Tuning: Optuna studies over the workbook's search space (``nux tune``, ``nux pin``)."""

from nux_kernel.tune.driver import run_worker, tune_workbook
from nux_kernel.tune.loop import TuneOptions, TuningLoop, study_names
from nux_kernel.tune.objectives import DEFAULT_OBJECTIVES, Objectives
from nux_kernel.tune.pin import pin_trial
from nux_kernel.tune.space import SearchSpace, apply_params
from nux_kernel.tune.storage import best_trial, default_storage, load_study, pareto_front

__all__ = [
    "DEFAULT_OBJECTIVES",
    "Objectives",
    "SearchSpace",
    "TuneOptions",
    "TuningLoop",
    "apply_params",
    "best_trial",
    "default_storage",
    "load_study",
    "pareto_front",
    "pin_trial",
    "run_worker",
    "study_names",
    "tune_workbook",
]
