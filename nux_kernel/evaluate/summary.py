"""Aggregates over an evaluation and the acceptance verdicts that gate CI.

Acceptance thresholds name a metric and a bound; the direction is the metric's own: rates and
scores must reach the threshold (``>=``), latency, cost, tokens and errors must stay under it
(``<=``). Metric names: ``pass_rate``, ``quality``, ``error_rate``, ``p50_ms``, ``p95_ms``,
``p99_ms``, ``mean_ms``, ``cost_per_request``, ``tokens_per_request``, and per criterion
``<name>`` (its pass rate), ``<name>.pass_rate`` and ``<name>.mean``.
"""

from __future__ import annotations

import difflib
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import WorkbookSpec

__all__ = ["HIGHER", "LOWER", "Verdict", "acceptance_metrics", "acceptance_problems",
           "check_acceptance", "metric", "percentile", "verdicts"]

HIGHER = ("pass_rate", "quality")
LOWER = ("error_rate", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "cost_per_request",
         "tokens_per_request")


@dataclass(frozen=True)
class Verdict:
    """One acceptance threshold against the measured value."""

    name: str
    op: str
    threshold: float
    value: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "threshold": self.threshold,
                "value": self.value, "passed": self.passed}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentile_se(values: Sequence[float], q: float, *, resamples: int = 200) -> float:
    """The bootstrap standard error of the q-th percentile: how much the figure moves when the
    same chain answers the same kind of cases again (seeded, so deterministic)."""
    if len(values) < 2:
        return 0.0
    rng = random.Random(0)
    draws = [percentile(rng.choices(values, k=len(values)), q) for _ in range(resamples)]
    mean = sum(draws) / resamples
    return math.sqrt(sum((d - mean) ** 2 for d in draws) / (resamples - 1))


def acceptance_metrics(criteria: Iterable[str]) -> dict[str, str]:
    """Every metric an acceptance threshold may name, with its direction (``>=`` or ``<=``)."""
    names = {m: ">=" for m in HIGHER} | {m: "<=" for m in LOWER}
    for c in criteria:
        names |= {c: ">=", f"{c}.pass_rate": ">=", f"{c}.mean": ">="}
    return names


def acceptance_problems(acceptance: Iterable[str], criteria: Iterable[str]) -> list[Problem]:
    """Thresholds naming no known metric (the compiler and ``nux eval`` both ask this)."""
    known = acceptance_metrics(criteria)
    problems = []
    for key in acceptance:
        if key in known:
            continue
        close = difflib.get_close_matches(key, list(known), n=1)
        problems.append(Problem(
            code="acceptance", message=f"acceptance names unknown metric {key!r}",
            fix=f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(known)}",
            field=f"metadata.nux.acceptance.{key}"))
    return problems


def check_acceptance(spec: WorkbookSpec) -> None:
    """Reject thresholds naming no known metric (before anything runs)."""
    problems = acceptance_problems(spec.acceptance, (c.name for c in spec.criteria))
    if problems:
        raise NuxError(problems=problems)


def metric(summary: Mapping[str, Any], name: str) -> float:
    """A metric's value from an evaluation summary."""
    if name in HIGHER or name in ("error_rate", "cost_per_request"):
        return float(summary[name])
    if name.endswith("_ms"):
        return float(summary["latency_ms"][name.removesuffix("_ms")])
    if name == "tokens_per_request":
        tokens = summary["tokens_per_request"]
        return float(tokens["in"] + tokens["out"])
    crit, _, part = name.partition(".")
    return float(summary["criteria"][crit]["mean" if part == "mean" else "pass_rate"])


def verdicts(spec: WorkbookSpec, summary: Mapping[str, Any]) -> list[Verdict]:
    known = acceptance_metrics(c.name for c in spec.criteria)
    out = []
    for name, threshold in spec.acceptance.items():
        op = known[name]
        value = metric(summary, name)
        ok = value >= threshold if op == ">=" else value <= threshold
        out.append(Verdict(name, op, threshold, value, ok))
    return out
