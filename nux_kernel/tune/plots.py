"""Study plots as one self-contained HTML page: Pareto front, history, parameter importances.

Built with ``optuna.visualization`` (plotly). PNG files are rendered by kaleido with the local
Chromium (offline); when either is missing they are skipped and the reason is returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

__all__ = ["write_plots"]


def _figures(study: optuna.Study) -> list[tuple[str, Any]]:
    from optuna import visualization as vis
    from optuna.importance import FanovaImportanceEvaluator

    names = list(study.user_attrs.get("objectives") or [])
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figures: list[tuple[str, Any]] = []
    if len(study.directions) > 1:
        labels = names if len(names) == len(study.directions) else None
        figures.append(("pareto_front", vis.plot_pareto_front(study, target_names=labels)))
        figures.append(("optimization_history", vis.plot_optimization_history(
            study, target=lambda t: t.values[0], target_name=names[0] if names else "quality")))
        if len(complete) >= 2 and any(t.params for t in complete):
            figures.append(("param_importances", vis.plot_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=0), target=lambda t: t.values[0],
                target_name=names[0] if names else "quality")))
    else:
        figures.append(("optimization_history", vis.plot_optimization_history(study)))
        if len(complete) >= 2 and any(t.params for t in complete):
            figures.append(("param_importances", vis.plot_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=0))))
    return figures


def write_plots(study: optuna.Study, directory: str | Path, *, png: bool = True
                ) -> tuple[list[Path], str]:
    """Write ``<study>.html`` (and PNGs when possible); the files and a note on PNG."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(study)
    page = out / f"{study.study_name}.html"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{study.study_name}"
             "</title></head><body>"]
    for i, (name, fig) in enumerate(figures):
        parts.append(f"<h2>{name.replace('_', ' ')}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>\n")
    page.write_text("".join(parts), encoding="utf-8")
    files = [page]
    note = ""
    if png:
        try:
            import kaleido  # noqa: F401
        except ImportError:
            note = "PNG skipped: kaleido is not installed (the HTML page holds every plot)"
        else:
            import plotly.io as pio

            targets = [out / f"{study.study_name}.{name}.png" for name, _ in figures]
            try:  # one browser session for every figure
                pio.write_images([fig for _, fig in figures], [str(t) for t in targets])
                files.extend(targets)
            except Exception as exc:  # kaleido present but no browser it can start
                note = f"PNG skipped: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    return files, note
