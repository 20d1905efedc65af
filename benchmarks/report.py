"""Benchmark rows, timing helpers and the table `make bench` prints."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Row", "machine", "median_time", "render"]


@dataclass
class Row:
    """One figure against its baseline from the same run.

    ``ratio`` is value / baseline (for times: below 1 is faster). ``goal`` states the target in
    words and ``met`` whether this run reached it.
    """

    topic: str
    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    goal: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline  # type: ignore[operator]


def median_time(fn: Callable[[], object], *, repeat: int = 7, number: int = 1) -> float:
    """Median seconds per call of ``fn`` over ``repeat`` rounds of ``number`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def render(rows: list[Row]) -> str:
    """A Markdown table of every row."""
    lines = [
        "| topic | measure | value | baseline (same run) | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = f"{r.baseline_name}: {_fmt(r.baseline)} {r.unit}" if r.baseline_name else "-"
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        met = "-" if r.met is None else ("yes" if r.met else "no")
        lines.append(f"| {r.topic} | {r.name} | {_fmt(r.value)} {r.unit} | {base} | {ratio} | "
                     f"{r.goal or '-'} | {met} |")
    return "\n".join(lines)
