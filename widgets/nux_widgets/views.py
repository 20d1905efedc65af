"""Notebook views (ipywidgets): they work in JupyterLab, classic Notebook and VS Code.

- :func:`trace_table`: one run's stages (status, latency, tokens, cost, cache, output preview),
  shown after each stage run by the ``%%nux`` magics;
- :func:`playground`: controls bound to a stage's tunable parameters; changing one re-runs that
  stage and what depends on it (the stage cache answers everything upstream).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets

from nux_kernel.executor import Executor, RunResult
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import Dimension, StageSpec, WorkbookSpec

__all__ = ["Playground", "playground", "trace_table", "trace_table_html", "with_params"]

_STATUS_COLOR = {"ok": "#2e7d32", "error": "#c62828", "skipped": "#9e9e9e"}


def _money(value: float) -> str:
    return f"${value:.6f}" if value else "-"


def trace_table_html(result: RunResult) -> str:
    """The trace table as HTML (what :func:`trace_table` shows)."""
    rows = []
    for trace in result.trace_list():
        color = _STATUS_COLOR.get(trace.status, "inherit")
        status = trace.status + (f": {trace.reason}" if trace.reason else "")
        cells = [trace.stage, f'<span style="color:{color}">{html.escape(status)}</span>',
                 f"{trace.latency_ms:.1f}", f"{trace.tokens_in}/{trace.tokens_out}",
                 _money(trace.cost_usd), "hit" if trace.cache_hit else "",
                 html.escape(trace.output_preview)]
        cells[0] = html.escape(cells[0])
        rows.append(f'<tr data-stage="{html.escape(trace.stage)}">'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in (
        "stage", "status", "latency ms", "tokens in/out", "cost", "cache", "output"))
    tokens_in, tokens_out = result.tokens
    summary = (f"run {html.escape(result.run_id)}: {'ok' if result.ok else 'failed'}, "
               f"{result.latency_ms:.1f} ms, tokens {tokens_in}/{tokens_out}, "
               f"cost {_money(result.cost_usd)}")
    return (f'<table class="nux-trace-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table><div>{summary}</div>')


def trace_table(run_result: RunResult) -> widgets.HTML:
    """A widget showing one run's per-stage trace."""
    return widgets.HTML(value=trace_table_html(run_result))


def with_params(spec: WorkbookSpec, stage_id: str, params: Mapping[str, Any]) -> WorkbookSpec:
    """A new spec whose stage ``stage_id`` carries ``params`` (only that stage changes hash)."""
    if stage_id not in spec.by_id:
        raise NuxError(problems=[Problem(code="stage", message=f"no stage {stage_id!r}",
                                         fix=f"stages: {', '.join(spec.by_id)}")])
    stages = []
    for stage in spec.stages:
        if stage.id == stage_id:
            body = stage.model_dump()
            body["params"] = {**stage.params, **params}
            stages.append(StageSpec.model_validate(body))
        else:
            stages.append(stage)
    return WorkbookSpec.model_validate({**spec.model_dump(exclude={"stages"}),
                                        "stages": stages})


def _control(name: str, dim: Dimension, value: Any) -> widgets.ValueWidget:
    style = {"description_width": "initial"}
    if dim.type == "choice":
        options = list(dim.choices or ())
        return widgets.Dropdown(options=options, value=value if value in options else options[0],
                                description=name, style=style)
    low, high = dim.low or 0.0, dim.high if dim.high is not None else 1.0
    if dim.type == "int":
        start = int(value) if isinstance(value, int | float) else int(low)
        return widgets.IntSlider(value=start, min=int(low), max=int(high),
                                 step=int(dim.step or 1), description=name, style=style,
                                 continuous_update=False)
    start_f = float(value) if isinstance(value, int | float) else float(low)
    if dim.type == "log":
        return widgets.FloatLogSlider(value=start_f, min=_log10(low), max=_log10(high),
                                      description=name, style=style, continuous_update=False)
    return widgets.FloatSlider(value=start_f, min=float(low), max=float(high),
                               step=dim.step or (float(high) - float(low)) / 100,
                               description=name, style=style, continuous_update=False)


def _log10(value: float) -> float:
    import math

    return math.log10(value) if value > 0 else -6.0


class Playground(widgets.VBox):  # type: ignore[misc]
    """Controls for one stage's tunable parameters over a live run of the workbook."""

    def __init__(self, spec: WorkbookSpec, stage_id: str, inputs: Mapping[str, Any], *,
                 executor: Executor | None = None) -> None:
        if stage_id not in spec.by_id:
            raise NuxError(problems=[Problem(code="stage", message=f"no stage {stage_id!r}",
                                             fix=f"stages: {', '.join(spec.by_id)}")])
        stage = spec.by_id[stage_id]
        if not stage.tune:
            raise NuxError(problems=[Problem(
                code="tune", message=f"stage {stage_id!r} has no tunable parameters",
                fix="add `tune:` to the cell (e.g. `tune: {temperature: {float: [0, 1]}}`)",
                stage=stage_id)])
        self.spec, self.stage_id, self.inputs = spec, stage_id, dict(inputs)
        self.executor = executor or Executor(spec)
        self.controls = {name: _control(name, dim, stage.params.get(name))
                         for name, dim in stage.tune.items() if dim.enabled_if is None}
        self.output = widgets.HTML()
        self.answer = widgets.HTML()
        self.last: RunResult | None = None
        super().__init__([widgets.HTML(f"<b>{html.escape(stage_id)}</b>"),
                          *self.controls.values(), self.output, self.answer])
        for control in self.controls.values():
            control.observe(lambda _change: self.rerun(), names="value")
        self.rerun()

    @property
    def params(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def rerun(self) -> RunResult:
        """Run the workbook with the controls' values (upstream stages come from the cache)."""
        spec = with_params(self.spec, self.stage_id, self.params)
        self.executor.spec = spec
        result = self.executor.run(self.inputs)
        self.last = result
        self.output.value = trace_table_html(result)
        answer = result.output if result.ok else "; ".join(e.cause for e in result.errors)
        self.answer.value = f"<pre>{html.escape(str(answer))}</pre>"
        return result


def playground(spec: WorkbookSpec, stage_id: str, inputs: Mapping[str, Any], *,
               executor: Executor | None = None) -> Playground:
    """Sliders and menus for ``stage_id``'s tunable params; each change re-runs the chain."""
    return Playground(spec, stage_id, inputs, executor=executor)
