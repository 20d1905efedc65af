"""nux_widgets: the JupyterLab extension's Python side and the notebook views.

- a Jupyter server extension (:mod:`nux_widgets.routes`): catalog, validate, run and background
  jobs (batch runs, tuning, export), enabled on install; the notebook's code runs in worker
  processes (:mod:`nux_widgets.workers`), never in the server;
- ipywidgets views for the kernel (:mod:`nux_widgets.views`): the trace table and the
  parameter playground;
- the Panel study dashboard (:mod:`nux_widgets.dashboard`, ``nux-dashboard wb.ipynb``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "_jupyter_labextension_paths",
    "_jupyter_server_extension_points",
    "_load_jupyter_server_extension",
]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "nux-widgets"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nux_widgets"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the routes, the job runner and the worker processes on the server."""
    import atexit

    from nux_widgets.jobs import JobRunner
    from nux_widgets.routes import setup_routes
    from nux_widgets.wiring import job_kinds
    from nux_widgets.workers import NuxWorkers, WorkerPool

    settings = server_app.web_app.settings
    root = server_app.root_dir
    pool = WorkerPool(NuxWorkers(config=server_app.config))
    atexit.register(pool.close)
    settings["nux_workers"] = pool
    settings["nux_jobs"] = JobRunner(job_kinds(pool, root))
    setup_routes(server_app.web_app)
    server_app.log.info("nux_widgets: NUX routes at %snux/", settings["base_url"])
