"""Demonstrations drawn from the test bank: a model stage's ``few_shot`` as a search dimension.

A cell's ``tune: {few_shot: {demos: [low, high], sets: N}}`` lets a trial replace the stage's
``few_shot`` examples with ``count`` cases of the tuning part of the bank, taken in the order of
one of ``N`` candidate draws (each draw a fixed shuffle of the cases that have an expected
answer, so a draw and a count always name the same examples). A count of 0 keeps the cell's own
examples. This is the labeled few-shot random search of DSPy's ``BootstrapFewShotWithRandomSearch``
as two Optuna params, so the sampler learns which draws and counts score.

An example shows the model its stage's inputs as the chain computes them for that case (the
upstream stages run with the trial's params, through the stage cache) and the case's expected
answer as ``output``. A trial is scored on the tuning cases other than its own demonstrations,
so no case is answered with its answer in the prompt; the held-out part is never drawn from.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

from nux_kernel.evaluate.bank import Case
from nux_kernel.executor import Executor
from nux_kernel.tune.space import DEMOS, Overrides, apply_params
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import StageSpec, WorkbookSpec

__all__ = ["is_draw", "resolve_demos"]


def is_draw(value: Any) -> bool:
    """Whether ``value`` is a ``demos`` dimension's sampled marker."""
    return isinstance(value, Mapping) and DEMOS in value


def _answer(expected: Any) -> str | None:
    """The text a demonstration shows as its output, from a case's expected answer."""
    if expected is None:
        return None
    if isinstance(expected, list):  # alternatives: show the first
        return _answer(expected[0]) if expected else None
    if isinstance(expected, str):
        return expected
    return json.dumps(expected, ensure_ascii=False)


def _order(stage: str, draw: int, pool: Sequence[Case]) -> list[Case]:
    """Candidate draw ``draw`` of ``stage``: a fixed shuffle of the pool (by case id)."""
    ordered = sorted(pool, key=lambda c: c.id)
    random.Random(f"{stage}:{draw}").shuffle(ordered)
    return ordered


def _example(executor: Executor, spec: WorkbookSpec, stage: StageSpec, case: Case,
             output: str) -> dict[str, Any] | None:
    """``stage``'s inputs for ``case`` as the chain computes them, plus ``output``; None when an
    upstream stage fails or is skipped for that case."""
    upstream = [name for name in stage.inputs if name in spec.by_id]
    values: dict[str, Any] = {}
    if upstream:
        executor.spec = spec
        run = executor.run(case.inputs, targets=upstream)
        for name in upstream:
            outcome = run.walk.outcomes.get(name)
            if outcome is None or outcome.status != "ok":
                return None
            values[name] = outcome.value
    for name in stage.inputs:
        if name not in values:
            if name not in case.inputs:
                return None
            values[name] = case.inputs[name]
    return {**{name: values[name] for name in stage.inputs}, "output": output}


def resolve_demos(spec: WorkbookSpec, overrides: Overrides, cases: Sequence[Case],
                  executor: Executor) -> tuple[WorkbookSpec, Overrides, set[str]]:
    """The spec and overrides with every ``demos`` marker turned into examples, and the ids of
    the cases shown as examples (left out of the trial's score)."""
    draws = [(stage, param, value) for stage, params in overrides.items()
             for param, value in params.items() if is_draw(value)]
    if not draws:
        return apply_params(spec, overrides), overrides, set()
    resolved: Overrides = {s: dict(p) for s, p in overrides.items()}
    shown: set[str] = set()
    for stage_id, param, _ in draws:  # the upstream stages run without any drawn examples
        resolved[stage_id].pop(param)
    base = apply_params(spec, resolved)
    pool = [c for c in cases if _answer(c.expected) is not None]
    for stage_id, param, value in draws:
        count, draw = (int(v) for v in value[DEMOS])
        if count == 0:  # the cell's own examples
            continue
        if not pool:
            raise NuxError(problems=[Problem(
                code="tune", stage=stage_id, field=f"tune.{param}",
                message="no case of the tuning part has an expected answer to show as a "
                        "demonstration", fix="give the bank's cases an `expected` answer")])
        stage = base.stage(stage_id)
        examples: list[dict[str, Any]] = []
        for case in _order(stage_id, draw, pool):
            if len(examples) == count:
                break
            example = _example(executor, base, stage, case, str(_answer(case.expected)))
            if example is not None:
                examples.append(example)
                shown.add(case.id)
        resolved[stage_id][param] = examples
    return apply_params(spec, resolved), resolved, shown
