"""The study dashboard (Panel): Pareto front, optimization history, parameter importances and
the trial table of a workbook's Optuna studies.

Inline in a notebook: ``study_dashboard("wb.ipynb")`` returns a Panel layout. Standalone:
``nux-dashboard wb.ipynb`` serves it on 127.0.0.1. Studies are read from the storage beside the
workbook (``.nux/studies.db``) unless ``--storage`` names another Optuna RDB URL.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import optuna
import pandas as pd
import panel as pn
from optuna import visualization as vis
from optuna.trial import FrozenTrial, TrialState

from nux_kernel.tune.loop import holdout_line
from nux_runtime.errors import NuxError, Problem

__all__ = ["default_storage_url", "main", "study_dashboard", "trial_frame"]


def default_storage_url(workbook: str | Path) -> str:
    """The SQLite study storage beside a workbook: ``<folder>/.nux/studies.db``."""
    return f"sqlite:///{Path(workbook).resolve().parent / '.nux' / 'studies.db'}"


def _storage_problem(storage: str) -> NuxError:
    return NuxError(problems=[Problem(
        code="study-missing", message=f"no tuning study in {storage}",
        fix="tune the workbook first (`nux tune wb.ipynb`) or pass --storage")])


def _load_studies(storage: str, names: Sequence[str] = ()) -> list[optuna.Study]:
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        raise _storage_problem(storage)
    summaries = optuna.get_all_study_summaries(storage)
    known = [s.study_name for s in summaries]
    if not known:
        raise _storage_problem(storage)
    wanted = list(names) or known
    missing = [n for n in wanted if n not in known]
    if missing:
        raise NuxError(problems=[Problem(code="study-missing",
                                         message=f"no study {missing[0]!r} in {storage}",
                                         fix=f"studies: {', '.join(known)}")])
    return [optuna.load_study(study_name=n, storage=storage) for n in wanted]


def _objective_names(study: optuna.Study) -> list[str]:
    names = study.user_attrs.get("objectives")
    if isinstance(names, list) and len(names) == len(study.directions):
        return [str(n) for n in names]
    return [f"objective {i}" for i in range(len(study.directions))]


def trial_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, each objective by name, each parameter."""
    names = _objective_names(study)
    rows: list[dict[str, Any]] = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name.lower()}
        for name, value in zip(names, trial.values or [None] * len(names), strict=False):
            row[name] = value
        row.update(trial.params)
        rows.append(row)
    return pd.DataFrame(rows)


def _objective(index: int) -> Callable[[FrozenTrial], float]:
    def value(trial: FrozenTrial) -> float:
        return float(trial.values[index])

    return value


def _study_view(study: optuna.Study) -> pn.viewable.Viewable:
    names = _objective_names(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    panes: list[tuple[str, Any]] = []
    if len(study.directions) > 1:
        if complete:
            panes.append(("Pareto front", pn.pane.Plotly(
                vis.plot_pareto_front(study, target_names=names), sizing_mode="stretch_width")))
        for index, name in enumerate(names):
            if complete:
                panes.append((f"History: {name}", pn.pane.Plotly(vis.plot_optimization_history(
                    study, target=_objective(index), target_name=name),
                    sizing_mode="stretch_width")))
    elif complete:
        panes.append(("History", pn.pane.Plotly(vis.plot_optimization_history(
            study, target_name=names[0]), sizing_mode="stretch_width")))
    if len(complete) >= 2 and study.best_trials and complete[0].params:
        try:
            figure = vis.plot_param_importances(
                study, target=_objective(0) if len(names) > 1 else None,
                target_name=names[0])
            panes.append(("Importances", pn.pane.Plotly(figure, sizing_mode="stretch_width")))
        except (RuntimeError, ValueError):
            pass  # too few distinct trials to measure importance
    panes.append(("Trials", pn.widgets.Tabulator(trial_frame(study), disabled=True,
                                                 pagination="local", page_size=20,
                                                 sizing_mode="stretch_width")))
    header = pn.pane.Markdown(
        f"### {study.study_name}\n{len(complete)} complete trials; objectives: "
        + ", ".join(f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions,
                                                               strict=True))
        + (f"\n\n{held}" if (held := holdout_line(study)) else ""))
    return pn.Column(header, pn.Tabs(*panes, dynamic=True), sizing_mode="stretch_width")


def study_dashboard(workbook: str | Path, *, storage: str | None = None,
                    studies: Sequence[str] = ()) -> pn.viewable.Viewable:
    """The dashboard of a workbook's studies (every study in the storage by default)."""
    pn.extension("plotly", "tabulator")
    url = storage or default_storage_url(workbook)
    views = [(s.study_name, _study_view(s)) for s in _load_studies(url, studies)]
    title = pn.pane.Markdown(f"## Tuning: {Path(workbook).name}")
    body = views[0][1] if len(views) == 1 else pn.Tabs(*views)
    return pn.Column(title, body, sizing_mode="stretch_width")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("workbook", type=click.Path(dir_okay=False))
@click.option("--storage", help="Optuna storage URL (default: .nux/studies.db beside the "
              "workbook).")
@click.option("--study", "studies", multiple=True, help="Show only this study (repeatable).")
@click.option("--port", default=5006, show_default=True, type=click.IntRange(1, 65535),
              help="Port on 127.0.0.1.")
@click.option("--show/--no-show", default=False, help="Open a browser.")
def main(workbook: str, storage: str | None, studies: tuple[str, ...], port: int,
         show: bool) -> None:
    """Serve the study dashboard of WORKBOOK's tuning runs on 127.0.0.1."""
    try:
        view = study_dashboard(workbook, storage=storage, studies=studies)
    except NuxError as exc:
        for problem in exc.problems:
            click.echo(problem.render(), err=True)
        sys.exit(2)
    click.echo(f"NUX study dashboard: http://127.0.0.1:{port}/", err=True)
    pn.serve(view, port=port, address="127.0.0.1", show=show, title="NUX tuning",
             websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"])
