"""Export time of workbooks of 10, 100 and 900 stages (goal: 900 stages in under 5 s).

900 is about the largest workbook of this shape that deploys: its frozen spec travels in a
ConfigMap, which holds at most 1 MiB, and the export refuses a larger one (at 1000 stages it is
1.01 MiB).

Each figure is a whole ``nux_exporters.export`` call (plan, render, Ray Serve + KubeRay CRD +
Kubernetes validation, atomic write) against a baseline measured in the same run: compiling the
same workbook from its cells to the frozen spec and dumping it as JSON.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.report import Row, median_time
from nux_kernel import Workbook
from nux_runtime.spec import WorkbookSpec

SIZES = (10, 100, 900)
LARGEST = SIZES[-1]
GOAL_S = 5.0


def chain(n: int) -> Workbook:
    """A workbook of ``n`` stages: alternating code and text.template stages in a chain."""
    wb = Workbook(f"chain-{n}", inputs={"question": "string"}, output=f"s{n - 1}")
    previous = "question"
    for i in range(n):
        if i % 2:
            wb.template(f"s{i}", inputs=[previous], template=f"Q: {{{previous}}}")
        else:
            wb.code(f"s{i}", f"def s{i}({previous}: str) -> str:\n    return {previous}.strip()\n")
        previous = f"s{i}"
    return wb


def run() -> list[Row]:
    from nux_exporters import export

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export(chain(3).compile(), Path(tmp) / "warm")
        rows.append(Row("export", "first export in a process (imports Ray's schemas)",
                        time.perf_counter() - start, "s"))
        for n in SIZES:
            wb = chain(n)
            spec = wb.compile()
            repeat = 3 if n == LARGEST else 5
            target = Path(tmp) / f"chain-{n}"

            def compile_once(wb: Workbook = wb) -> None:
                wb.compile().to_json()

            def export_once(spec: WorkbookSpec = spec, target: Path = target) -> None:
                export(spec, target)

            baseline = median_time(compile_once, repeat=repeat)
            value = median_time(export_once, repeat=repeat)
            rows.append(Row("export", f"export {n} stages", value, "s",
                            baseline_name="compile + JSON of the same workbook",
                            baseline=baseline,
                            goal=f"< {GOAL_S:g} s" if n == LARGEST else "",
                            met=value < GOAL_S if n == LARGEST else None))
    return rows
