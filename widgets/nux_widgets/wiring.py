"""Which background job kinds this server offers.

``run-batch`` is always there. ``tune`` and ``export`` appear when their packages are
installed (``nux_kernel.tune``, ``nux_exporters``): a server without them still starts, and
asking for the job names what is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nux_widgets.jobs import JobFunction
from nux_widgets.runs import batch_job
from nux_widgets.workers import WorkerPool

__all__ = ["job_kinds"]


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def job_kinds(pool: WorkerPool, root: str | Path) -> dict[str, JobFunction]:
    base = Path(root)
    kinds: dict[str, JobFunction] = {"run-batch": batch_job(pool, base)}
    if _available("nux_kernel.tune") and _available("optuna"):
        from nux_widgets.tuning import tune_job

        kinds["tune"] = tune_job(pool, base)
    if _available("nux_exporters"):
        from nux_widgets.exports import export_job

        kinds["export"] = export_job(pool, base)
    return kinds
