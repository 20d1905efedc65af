"""Objectives and constraints of a study, read from the workbook's acceptance criteria.

Objectives: ``quality`` (mean criterion score, maximized), ``p95_ms`` and ``cost_per_request``
(minimized), or any acceptance metric. The acceptance thresholds become Optuna constraints
(``c <= 0`` is feasible, set with ``Trial.set_constraint``), so samplers favour feasible trials
and the Pareto front holds only feasible ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nux_kernel.evaluate.summary import acceptance_metrics, metric
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import WorkbookSpec

__all__ = ["DEFAULT_OBJECTIVES", "Objectives"]

DEFAULT_OBJECTIVES = ("quality", "p95_ms", "cost_per_request")


@dataclass(frozen=True)
class Objectives:
    """What a study optimizes and which thresholds it must respect."""

    names: tuple[str, ...]
    directions: tuple[str, ...]
    thresholds: tuple[tuple[str, str, float], ...]

    @classmethod
    def of(cls, spec: WorkbookSpec, names: Sequence[str] = DEFAULT_OBJECTIVES) -> Objectives:
        known = acceptance_metrics(c.name for c in spec.criteria)
        bad = [n for n in names if n not in known]
        if bad or not names:
            raise NuxError(problems=[Problem(
                code="tune", message=f"unknown objective {bad[0] if bad else '(none)'!r}",
                fix=f"use metrics such as: {', '.join(known)}")])
        unknown = [k for k in spec.acceptance if k not in known]
        if unknown:
            raise NuxError(problems=[Problem(
                code="acceptance", message=f"acceptance names unknown metric {unknown[0]!r}",
                fix=f"use one of: {', '.join(known)}",
                field=f"metadata.nux.acceptance.{unknown[0]}")])
        directions = tuple("maximize" if known[n] == ">=" else "minimize" for n in names)
        thresholds = tuple((k, known[k], v) for k, v in spec.acceptance.items())
        return cls(tuple(names), directions, thresholds)

    @property
    def multi(self) -> bool:
        return len(self.names) > 1

    def values(self, summary: Mapping[str, Any]) -> list[float]:
        return [metric(summary, n) for n in self.names]

    def constraints(self, summary: Mapping[str, Any]) -> list[float]:
        """One value per threshold; ``<= 0`` when the threshold holds."""
        out = []
        for name, op, threshold in self.thresholds:
            value = metric(summary, name)
            out.append(threshold - value if op == ">=" else value - threshold)
        return out

    def quality_index(self) -> int:
        """The objective that says how good answers are (the first maximized one)."""
        return next((i for i, d in enumerate(self.directions) if d == "maximize"), 0)

    def better(self, a: float, b: float) -> bool:
        """Is ``a`` better than ``b`` on the quality objective."""
        return a > b if self.directions[self.quality_index()] == "maximize" else a < b
