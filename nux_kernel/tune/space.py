"""The search space: the cells' ``tune:`` entries as Optuna distributions, sampled by run.

A parameter is named ``<stage>.<param>`` in the study. A dimension with ``enabled_if`` (the
cell's ``if:``) is sampled only when the params it names hold those values in the same trial (a
choice that enables other parameters); otherwise the stage keeps its own value. A trial is a new
`WorkbookSpec` whose stages carry the sampled params: their hashes change, every other stage
keeps its hash, so the stage cache answers every unchanged upstream stage.

Two kinds of dimension are not a plain param. A model stage's ``few_shot: {demos: [low, high]}``
samples how many demonstrations to draw from the tuning part of the bank and which candidate
draw (``<stage>.few_shot`` and ``<stage>.few_shot.draw``); the trial's value is a
:func:`demo_draw` marker that the trial runner turns into the examples (``tune/demos.py``). The
``tune:`` entries of the ingest stage that fills a collection the workbook reads join the space
under the pseudo-stage ``<collection>:<ingest stage>`` (``tune/ingests.py``).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import Dimension, StageSpec, WorkbookSpec, canonical_json

__all__ = ["DEMOS", "Overrides", "SearchSpace", "apply_params", "demo_draw", "split_name",
           "study_key"]

#: Stage id -> param -> value.
Overrides = dict[str, dict[str, Any]]

#: The key of a :func:`demo_draw` marker.
DEMOS = "nux:demos"


def demo_draw(count: int, draw: int) -> dict[str, list[int]]:
    """The value a ``demos`` dimension samples: ``count`` examples of candidate draw ``draw``."""
    return {DEMOS: [int(count), int(draw)]}


def split_name(name: str) -> tuple[str, str]:
    stage, _, param = name.partition(".")
    return stage, param


@dataclass(frozen=True)
class SearchSpace:
    """The tunable dimensions of the chosen stages, in the workbook's topological order."""

    dimensions: tuple[tuple[str, str, Dimension], ...]
    #: the params of stages that are not the workbook's (an ingest's pseudo-stage)
    outside: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: WorkbookSpec, stages: Sequence[str] | None = None, *,
           ingests: Mapping[str, StageSpec] | None = None) -> SearchSpace:
        """The space of ``stages`` (all by default); ``ingests`` maps the pseudo-stage of each
        tuned ingest (``<collection>:<stage>``) to its stage, searched first."""
        ingests = ingests or {}
        if stages:
            unknown = [s for s in stages if s not in spec.by_id and s not in ingests]
            if unknown:
                raise NuxError(problems=[Problem(
                    code="tune", message=f"no stage {unknown[0]!r} in the workbook",
                    fix=f"stages: {', '.join([*ingests, *spec.by_id])}")])
        chosen = set(stages) if stages else None
        outside = [(key, stage) for key, stage in ingests.items()
                   if chosen is None or key in chosen]
        dims = tuple((key, name, dim) for key, stage in outside for name, dim in
                     stage.tune.items()) + tuple(
            (s.id, name, dim) for s in spec.stages
            if chosen is None or s.id in chosen for name, dim in s.tune.items())
        space = cls(dims, {key: dict(stage.params) for key, stage in outside})
        if not dims:
            where = f"stage {', '.join(stages)}" if stages else "the workbook"
            raise NuxError(problems=[Problem(
                code="tune", message=f"{where} has nothing to tune",
                fix="add a `tune:` entry to a cell, e.g. `tune: {top_k: {int: [1, 8]}}`")])
        return space

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for s, _, _ in self.dimensions))

    def names(self) -> list[str]:
        return [f"{s}.{p}" for s, p, _ in self.dimensions]

    def sample(self, trial: optuna.Trial, spec: WorkbookSpec) -> Overrides:
        """Suggest every enabled dimension (conditions resolved to a fixed point)."""
        chosen: Overrides = {}
        pending = list(self.dimensions)
        progressed = True
        while pending and progressed:
            progressed = False
            for item in list(pending):
                stage_id, param, dim = item
                own = (self.outside[stage_id] if stage_id in self.outside
                       else spec.stage(stage_id).params)
                current = {**own, **chosen.get(stage_id, {})}
                condition = dim.enabled_if or {}
                waiting = [k for k in condition if any(
                    s == stage_id and p == k for s, p, _ in pending if (s, p) != (stage_id, param))]
                if waiting:
                    continue
                pending.remove(item)
                progressed = True
                if all(current.get(k) == v for k, v in condition.items()):
                    chosen.setdefault(stage_id, {})[param] = suggest(trial, f"{stage_id}.{param}",
                                                                     dim)
        return chosen


def suggest(trial: optuna.Trial, name: str, dim: Dimension) -> Any:
    """One Optuna suggestion for a dimension."""
    if dim.type == "demos":
        count = trial.suggest_int(name, int(dim.low or 0), int(dim.high or 0))
        draw = trial.suggest_categorical(f"{name}.draw", list(dim.choices or (0,)))
        return demo_draw(count, int(draw))
    if dim.type == "choice":
        choices = list(dim.choices or ())
        plain = all(c is None or isinstance(c, bool | int | float | str) for c in choices)
        if plain:
            return trial.suggest_categorical(name, choices)
        # Optuna stores only plain values: pick an index, return the structured choice.
        index = trial.suggest_categorical(name, list(range(len(choices))))
        return choices[int(index)]
    low, high = float(dim.low or 0), float(dim.high or 0)
    if dim.type == "int":
        return trial.suggest_int(name, int(low), int(high), step=int(dim.step or 1))
    if dim.type == "log":
        return trial.suggest_float(name, low, high, log=True)
    return trial.suggest_float(name, low, high, step=dim.step)


def apply_params(spec: WorkbookSpec, overrides: Mapping[str, Mapping[str, Any]]) -> WorkbookSpec:
    """A new spec whose stages carry ``overrides`` (only those stages change hash)."""
    if not any(overrides.values()):
        return spec
    stages: list[StageSpec] = []
    for stage in spec.stages:
        new = overrides.get(stage.id)
        if new:
            body = stage.model_dump()
            body["params"] = {**stage.params, **new}
            stages.append(StageSpec.model_validate(body))
        else:
            stages.append(stage)
    body = spec.model_dump(exclude={"stages"})
    return WorkbookSpec.model_validate({**body, "stages": stages})


def _code_shape(source: str, function: str | None, tuned: set[str]) -> str:
    """A code cell's source without comments and without the defaults of its tuned params."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            args = node.args
            args.kw_defaults = [ast.Constant(None) if a.arg in tuned else d
                                for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    return ast.unparse(tree)


def study_key(spec: WorkbookSpec, extra: Iterable[Any] = ()) -> str:
    """What identifies a study: the workbook minus the values of its tuned params.

    Pinning a trial changes those values, not the study the workbook belongs to.
    """
    stages = []
    for stage in spec.stages:
        body = stage.body()
        body["params"] = {k: v for k, v in stage.params.items() if k not in stage.tune}
        if stage.source is not None:
            body["source"] = _code_shape(stage.source, stage.function, set(stage.tune))
        stages.append(body)
    body = {"stages": stages, "criteria": [c.model_dump(mode="json") for c in spec.criteria],
            "acceptance": spec.acceptance, "test_bank": spec.test_bank, "extra": list(extra)}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:10]
