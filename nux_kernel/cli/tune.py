"""``nux tune`` (Optuna studies over the workbook's search space) and ``nux pin``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nux_kernel.cli.main import err, load_spec, main, out, user_errors
from nux_kernel.tune import (
    DEFAULT_OBJECTIVES,
    TuneOptions,
    best_trial,
    default_storage,
    pareto_front,
    pin_trial,
    study_names,
    tune_workbook,
)
from nux_kernel.tune.ingests import tuned_ingests
from nux_kernel.tune.loop import holdout_line
from nux_kernel.tune.plots import write_plots
from nux_kernel.tune.storage import finished, open_storage, record
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import WorkbookSpec


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _find_studies(spec: WorkbookSpec, storage: str, options: TuneOptions) -> list[optuna.Study]:
    """The studies of this run; else this workbook's most recent ones in the storage."""
    store = open_storage(storage)
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(store)}
    ingests = {} if options.notebook is None else {
        key: tuned.stage for key, tuned in tuned_ingests(
            spec, Path(options.notebook).parent, options.notebook).items()}
    names = [n for n, _ in study_names(spec, options, ingests)]
    if options.study_name and options.study_name not in summaries:
        raise NuxError(problems=[Problem(
            code="study", message=f"no study {options.study_name!r} in {storage}",
            fix=f"studies there: {', '.join(summaries) or 'none'}")])
    if not all(n in summaries for n in names):
        mine = [s for s in summaries.values() if s.user_attrs.get("workbook") == spec.name]
        if not mine:
            raise NuxError(problems=[Problem(
                code="study", message=f"no study of workbook {spec.name!r} in {storage}",
                fix="run `nux tune` first (or give --storage/--study)")])
        latest = max(mine, key=lambda s: (s.datetime_start is not None, s.datetime_start))
        names = [latest.study_name]
    return [optuna.load_study(study_name=n, storage=store) for n in names]


def _ratio(trials: list[FrozenTrial]) -> tuple[int, int, int]:
    runs = sum(int(record(t).get("stage_runs", 0)) for t in trials)
    hits = sum(int(record(t).get("cache_hits", 0)) for t in trials)
    executions = sum(int(record(t).get("executions", 0)) for t in trials)
    return hits, runs, executions


def show_study(study: optuna.Study, *, every: bool = False) -> dict[str, Any]:
    """Print the study's feasible Pareto front (``every``: all its trials, with their state)
    and the cache figures."""
    trials = study.get_trials(deepcopy=False)
    names = list(study.user_attrs.get("objectives") or ["value"])
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    hits, runs, executions = _ratio(trials)
    front = pareto_front(study)
    best = best_trial(study)
    on_front = {t.number for t in front}
    shown = trials if every else front
    what = "every trial" if every else (
        f"feasible {'Pareto front' if len(names) > 1 else 'best trial'}")
    table = Table(title=f"study {study.study_name}: {what}", title_justify="left")
    table.add_column("trial", no_wrap=True)
    if every:
        table.add_column("state", no_wrap=True)
    for name in names:
        table.add_column(name, no_wrap=True, justify="right")
    table.add_column("params", overflow="fold", ratio=1)
    for t in sorted(shown, key=lambda t: t.number):
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        mark = " *" if best is not None and t.number == best.number else (
            " +" if every and t.number in on_front else "")
        values = [_fmt(v) for v in t.values or []] + ["-"] * (len(names) - len(t.values or []))
        state = [t.state.name.lower()] if every else []
        table.add_row(f"{t.number}{mark}", *state, *values, params)
    out.print(table)
    if every:
        out.print("* best trial, + on the feasible Pareto front", markup=False)
    counts = ", ".join(f"{n} {s}" for s, n in states.items() if n)
    ratio = hits / runs if runs else 0.0
    out.print(f"trials: {counts or 'none'}; cache hit ratio {ratio:.1%} ({hits}/{runs} stage "
              f"runs), stage executions {executions}", markup=False)
    if best is not None:
        out.print(f"best: trial {best.number} (pin it with `nux pin <workbook> --trial "
                  f"{best.number}`)", markup=False)
    elif trials:
        out.print("no feasible trial yet: every complete trial breaks an acceptance threshold",
                  markup=False)
    held = study.user_attrs.get("holdout")
    line = holdout_line(study)
    if line is not None:
        out.print(line, markup=False)
    return {"study": study.study_name, "states": states, "cache_hit_ratio": ratio,
            "holdout": held,
            "stage_runs": runs, "cache_hits": hits, "executions": executions,
            "best": best.number if best is not None else None,
            "front": [{"trial": t.number, "values": t.values, "params": t.params}
                      for t in front]}


class _Progress:
    """A progress bar with the best value so far (one line per trial when not a terminal)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.live = err.is_terminal
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[best]}"),
                            console=err, disable=not self.live)
        self.task = self.bar.add_task("tuning", total=total, best="")

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        best = best_trial(study)
        names = list(study.user_attrs.get("objectives") or ["value"])
        text = "" if best is None else "best " + ", ".join(
            f"{n} {_fmt(v)}" for n, v in zip(names, best.values or [], strict=False))
        done = finished(study.get_trials(deepcopy=False))
        self.bar.update(self.task, completed=min(done, self.total), best=text,
                        description=study.study_name.rsplit(".", 1)[-1]
                        if "." in study.study_name else "tuning")
        if not self.live:
            values = ", ".join(_fmt(v) for v in trial.values or [])
            err.print(f"trial {trial.number} {trial.state.name.lower()}"
                      f"{' (' + values + ')' if values else ''}; {text}", markup=False)


@main.command()
@click.argument("workbook", type=click.Path(dir_okay=False))
@click.option("--trials", default=20, show_default=True,
              help="Finished trials the study should hold (per stage in staged mode).")
@click.option("--stage", "stages", multiple=True, help="Tune only this stage (repeatable).")
@click.option("--mode", type=click.Choice(["joint", "staged"]), default="joint",
              show_default=True, help="Whole space at once, or stage after stage.")
@click.option("--timeout", type=float, help="Stop asking for trials after this many seconds.")
@click.option("--storage", help="Optuna RDB URL (default: .nux/studies.db beside the workbook).")
@click.option("--study", "study_name", help="Study name (default: workbook name + space hash).")
@click.option("--workers", default=1, show_default=True,
              help="Processes on one study (with --ray: Ray actors, at least 2).")
@click.option("--ray", "use_ray", is_flag=True, help="Run trials as Ray tasks.")
@click.option("--address", help="Ray cluster address (default: a local Ray).")
@click.option("--seed", type=int, help="Sampler seed (a fresh study replays exactly).")
@click.option("--objective", "objectives", multiple=True,
              help=f"Objective metric (repeatable; default {', '.join(DEFAULT_OBJECTIVES)}). "
                   "One objective enables pruning on growing slices of the bank.")
@click.option("--no-prune", is_flag=True, help="Score every trial on the whole bank.")
@click.option("--heartbeat", type=float, default=5.0, show_default=True,
              help="Seconds between trial heartbeats (a dead trial is retried after 3).")
@click.option("--show", is_flag=True, help="Show the study (Pareto front) and write plots.")
@click.option("--all", "every", is_flag=True,
              help="List every trial with its state, not only the Pareto front.")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Write the plots (HTML) under .nux/plots.")
@click.option("--png/--no-png", default=True, show_default=True,
              help="Also render the plots as PNG (kaleido + Chromium).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--catalog", type=click.Path(dir_okay=False), help="Catalog file (NUX_CATALOG).")
@user_errors
def tune(workbook: str, trials: int, stages: tuple[str, ...], mode: str, timeout: float | None,
         storage: str | None, study_name: str | None, workers: int, use_ray: bool,
         address: str | None, seed: int | None, objectives: tuple[str, ...], no_prune: bool,
         heartbeat: float, show: bool, every: bool, plots: bool, png: bool, as_json: bool,
         catalog: str | None) -> None:
    """Tune the workbook's stages with Optuna (quality up, p95 latency and cost down)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, base_dir = load_spec(workbook, catalog)
    url = storage or default_storage(base_dir)
    options = TuneOptions(trials=trials, stages=stages, mode=mode,  # type: ignore[arg-type]
                          storage=url, study_name=study_name, workers=workers,
                          objectives=objectives or DEFAULT_OBJECTIVES, seed=seed,
                          notebook=workbook)
    if not show:
        progress = _Progress(trials)
        with progress.bar:
            tune_workbook(spec, base_dir=base_dir, trials=trials, stage=stages,
                          mode=mode,  # type: ignore[arg-type]
                          timeout=timeout, storage=url, study_name=study_name, workers=workers,
                          ray=use_ray, ray_address=address, seed=seed,
                          objectives=objectives or DEFAULT_OBJECTIVES, prune=not no_prune,
                          heartbeat_s=heartbeat, on_trial=progress, notebook=workbook)
    studies = _find_studies(spec, url, options)
    results = []
    for study in studies:
        shown: dict[str, Any] = (show_study(study, every=every) if not as_json
                                 else {"study": study.study_name})
        if as_json:
            trials_all = study.get_trials(deepcopy=False)
            hits, runs, executions = _ratio(trials_all)
            best = best_trial(study)
            shown = {"study": study.study_name,
                     "states": {s.name.lower(): sum(t.state == s for t in trials_all)
                                for s in TrialState},
                     "cache_hit_ratio": hits / runs if runs else 0.0, "executions": executions,
                     "best": None if best is None else {"trial": best.number,
                                                        "values": best.values,
                                                        "params": best.params},
                     "front": [{"trial": t.number, "values": t.values, "params": t.params}
                               for t in pareto_front(study)],
                     "holdout": study.user_attrs.get("holdout")}
            if every:
                shown["trials"] = [{"trial": t.number, "state": t.state.name.lower(),
                                    "values": t.values, "params": t.params}
                                   for t in trials_all]
        if plots and study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            files, note = write_plots(study, base_dir / ".nux" / "plots", png=png)
            shown["plots"] = [str(f) for f in files]
            if not as_json:
                err.print(f"plots: {', '.join(str(f) for f in files)}", markup=False)
                if note:
                    err.print(note, markup=False)
        results.append(shown)
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str, ensure_ascii=False))
    sys.exit(0)


@main.command()
@click.argument("workbook", type=click.Path(dir_okay=False, exists=False))
@click.option("--trial", "trial_number", type=int,
              help="Trial number to pin (default: the best feasible trial).")
@click.option("--study", "study_name", help="Study name (default: the workbook's latest).")
@click.option("--storage", help="Optuna RDB URL (default: .nux/studies.db beside the workbook).")
@click.option("--catalog", type=click.Path(dir_okay=False), help="Catalog file (NUX_CATALOG).")
@user_errors
def pin(workbook: str, trial_number: int | None, study_name: str | None, storage: str | None,
        catalog: str | None) -> None:
    """Write a trial's params into the notebook cells, with its provenance."""
    spec, base_dir = load_spec(workbook, catalog)
    url = storage or default_storage(base_dir)
    studies = _find_studies(spec, url, TuneOptions(storage=url, study_name=study_name,
                                                   notebook=workbook))
    study = studies[-1]
    if trial_number is None:
        best = best_trial(study)
        if best is None:
            raise NuxError(problems=[Problem(
                code="pin", message=f"study {study.study_name!r} has no feasible complete trial",
                fix="give --trial N, or tune further")])
        trial_number = best.number
    prov = pin_trial(Path(workbook), study, trial_number)
    params = "; ".join(f"{stage}: " + ", ".join(f"{k}={_shown(v)}" for k, v in p.items())
                       for stage, p in prov["params"].items())
    written = [Path(n) for n in prov.get("notebooks", [workbook])]
    out.print(f"pinned trial {trial_number} of {study.study_name} into "
              f"{', '.join(n.name for n in written)}: {params}", markup=False)
    for notebook in written:
        load_spec(str(notebook), catalog)  # every pinned notebook still compiles
    for notebook in written[1:]:
        out.print(f"{notebook.name} now ingests the pinned configuration: run `nux run "
                  f"{notebook.name}` to rebuild its collection here (the export's ingest job "
                  "runs it in production)", markup=False)


def _shown(value: Any) -> str:
    """A pinned value in one short line (drawn examples are counted, not printed)."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return f"[{len(value)} examples]"
    return _fmt(value)


__all__ = ["pin", "show_study", "tune"]
