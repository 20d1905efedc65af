"""Property-based tests: random DAGs compile and run in a valid order; mangled notebooks either
compile or fail with a NuxError, never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nux_kernel import Executor, Workbook
from nux_kernel.compiler import check_workbook
from nux_kernel.notebook import read_notebook
from nux_runtime.errors import NuxError
from nux_runtime.walker import graph_of

FAST = settings(deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def dags(draw: st.DrawFn) -> list[list[int]]:
    """Stage i reads a subset of stages before it (always acyclic)."""
    n = draw(st.integers(min_value=1, max_value=12))
    return [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
            for i in range(n)]


def build(parents: list[list[int]], order: list[int]) -> Workbook:
    wb = Workbook("dag", inputs={"x": "integer"}, output=f"s{len(parents) - 1}")
    for i in order:
        args = [f"s{p}: int" for p in parents[i]] or ["x: int"]
        body = " + ".join([f"s{p}" for p in parents[i]] or ["x"])
        wb.code(f"s{i}", f"def s{i}({', '.join(args)}) -> int:\n    return {body} + {i}\n")
    return wb


@FAST
@given(dags(), st.randoms(use_true_random=False), st.integers(-5, 5))
def test_random_dags_compile_and_run_in_order(parents: list[list[int]], rnd: Any, x: int
                                              ) -> None:
    order = list(range(len(parents)))
    rnd.shuffle(order)
    spec = build(parents, order).compile()
    ranks = {s: i for i, s in enumerate(graph_of(spec).order())}
    for i, ps in enumerate(parents):
        assert all(ranks[f"s{p}"] < ranks[f"s{i}"] for p in ps)
    expected: dict[int, int] = {}
    for i, ps in enumerate(parents):
        expected[i] = (sum(expected[p] for p in ps) if ps else x) + i
    with tempfile.TemporaryDirectory() as tmp:
        result = Executor(spec, base_dir=tmp, cache=False).run({"x": x})
    assert result.ok
    assert result.output == expected[len(parents) - 1]


@FAST
@given(dags(), st.data())
def test_a_back_edge_is_reported_as_a_cycle(parents: list[list[int]], data: st.DataObject
                                            ) -> None:
    if len(parents) < 2:
        return
    low = data.draw(st.integers(0, len(parents) - 2))
    high = data.draw(st.integers(low + 1, len(parents) - 1))
    # make a path low -> ... -> high, then add the back edge high -> low
    for i in range(low + 1, high + 1):
        if i - 1 not in parents[i]:
            parents[i] = sorted({*parents[i], i - 1})
    parents[low] = sorted({*parents[low], high})
    problems = build(parents, list(range(len(parents)))).check()
    cycles = [p for p in problems if p.code == "cycle"]
    assert cycles and "->" in cycles[0].message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

cell_sources = st.one_of(
    st.text(max_size=120),
    st.builds(lambda k, i, b: f"%%nux {k} {i}\n{b}",
              st.sampled_from(["model", "data", "code", "bogus", ""]),
              st.text(max_size=12), st.text(max_size=200)),
    st.builds(lambda b: "%%nux code f\n" + b, st.text(alphabet="def():\n ->x[]{}#|=", max_size=80)),
    st.builds(lambda b: "%%nux model m\n" + b,
              st.text(alphabet="uses: llm.local/gemma{}[],\n -params", max_size=80)),
)


def notebooks() -> st.SearchStrategy[Any]:
    cell = st.fixed_dictionaries({
        "cell_type": st.sampled_from(["code", "markdown", "raw", 3]),
        "source": st.one_of(cell_sources, st.lists(cell_sources, max_size=3), json_values),
    }, optional={"id": st.one_of(st.text(max_size=6), st.integers()), "metadata": json_values})
    meta = st.one_of(
        json_values,
        st.fixed_dictionaries({}, optional={
            "name": json_values, "inputs": json_values, "output": json_values,
            "criteria": json_values, "acceptance": json_values, "prompts": json_values}),
    )
    return st.fixed_dictionaries({"cells": st.one_of(st.lists(cell, max_size=5), json_values),
                                  "metadata": st.one_of(json_values,
                                                        st.fixed_dictionaries({"nux": meta}))})


def compile_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wb.ipynb"
        path.write_bytes(data)
        try:
            spec, problems = check_workbook(read_notebook(path))
        except NuxError as exc:
            assert exc.problems and all(p.message for p in exc.problems)
            return
        assert (spec is None) == bool(problems)


@settings(deadline=None)
@given(notebooks())
def test_mangled_notebooks_fail_cleanly(nb: Any) -> None:
    compile_bytes(json.dumps(nb).encode())


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_binary_junk_fails_cleanly(data: bytes) -> None:
    compile_bytes(data)
