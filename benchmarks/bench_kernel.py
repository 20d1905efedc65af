"""Workbook kernel: `nux validate` on a 200-cell workbook, executor overhead per stage."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks.report import Row, median_time
from nux_kernel import Executor, Workbook
from nux_kernel.catalog import load_catalog
from nux_kernel.compiler import check_workbook
from nux_kernel.notebook import read_notebook

TOPIC = "kernel"


def wide_workbook(stages: int) -> Workbook:
    """A workbook of code and template stages, each reading the one or two before it."""
    wb = Workbook("wide", inputs={"question": "string"}, output=f"s{stages - 1}")
    for i in range(stages):
        ups = [f"s{j}" for j in (i - 1, i - 2) if j >= 0] or ["question"]
        if i % 4 == 3:
            wb.template(f"s{i}", inputs=ups, template=" ".join("{" + u + "}" for u in ups))
        else:
            args = ", ".join(f"{u}: str" for u in ups)
            wb.code(f"s{i}", f"def s{i}({args}, *, limit: int = 40) -> str:\n"
                             f"    return ({' + '.join(ups)})[:limit]\n",
                    tune={"limit": {"int": [10, 80]}})
    return wb


def validate_rows() -> list[Row]:
    load_catalog()  # warm: the catalog is read once per process
    with tempfile.TemporaryDirectory() as tmp:
        path = wide_workbook(200).save(Path(tmp) / "wide.ipynb")
        read_json = median_time(lambda: json.loads(path.read_bytes()), repeat=9)
        validate = median_time(lambda: check_workbook(read_notebook(path)), repeat=9)
    return [Row(TOPIC, "nux validate, 200-cell workbook", validate * 1000, "ms",
                "json.loads of the same file", read_json * 1000, "under 300 ms",
                validate < 0.3)]


CHAIN = 10


def overhead_rows() -> list[Row]:
    wb = Workbook("chain", inputs={"x": "integer"}, output=f"s{CHAIN - 1}")
    source = []
    for i in range(CHAIN):
        arg = f"s{i - 1}" if i else "x"
        text = f"def s{i}({arg}: int) -> int:\n    return {arg} + 1\n"
        wb.code(f"s{i}", text)
        source.append(text)
    namespace: dict[str, object] = {}
    exec("\n".join(source), namespace)
    functions = [namespace[f"s{i}"] for i in range(CHAIN)]

    def plain() -> None:
        value = 0
        for fn in functions:
            value = fn(value)  # type: ignore[operator]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = wb.compile()
        for cached, label in ((False, "no cache"), (True, "memory+disk cache, all hits")):
            executor = Executor(spec, base_dir=tmp, cache=cached)
            executor.run({"x": 0})
            run = median_time(lambda ex=executor: ex.run({"x": 0}), repeat=9, number=50)
            base = median_time(plain, repeat=9, number=50)
            per_stage_us = (run - base) / CHAIN * 1e6
            rows.append(Row(TOPIC, f"executor overhead per stage, 10-stage chain ({label})",
                            per_stage_us, "µs", "plain Python calls, per stage",
                            base / CHAIN * 1e6, "under 50 µs per stage" if not cached else "",
                            per_stage_us < 50 if not cached else None))
            executor.close()
    return rows


def run() -> list[Row]:
    return validate_rows() + overhead_rows()
