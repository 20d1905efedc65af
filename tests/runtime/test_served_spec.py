"""What exists only for evaluation: ``WorkbookSpec.evaluation_stages``, ``evaluation_inputs``
and ``served``, the workbook as production serves it. One table of graphs, one test over it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from nux_kernel import Workbook
from nux_runtime.spec import WorkbookSpec
from tests.exporters.workbooks import scored


def _code(stage: str, *reads: str) -> str:
    params = ", ".join(f"{name}: str" for name in reads)
    return f"def {stage}({params}) -> str:\n    return ''\n"


@dataclass(frozen=True)
class Case:
    """Stages (id -> names read), the output, the criteria; what is evaluation-only."""

    name: str
    stages: dict[str, tuple[str, ...]]
    criteria: tuple[dict[str, Any], ...]
    stages_out: tuple[str, ...]
    inputs_out: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ("question", "expected")
    output: str = "answer"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


def metric(stage: str) -> dict[str, Any]:
    return {"type": "metric", "name": stage, "stage": stage}


CASES = [
    Case("no criterion", {"answer": ("question",)}, (), (), inputs=("question",)),
    Case("a criterion on the output", {"answer": ("question",)},
         ({"type": "contains", "name": "c", "value": "x"},), (), inputs=("question",)),
    Case("a metric reading the answer and expected",
         {"answer": ("question",), "near": ("answer", "expected")}, (metric("near"),),
         ("near",), ("expected",)),
    Case("several metrics, one over an intermediate evaluation stage, one over an input the "
         "chain reads too",
         {"clean": ("question",), "answer": ("clean",), "gold": ("expected",),
          "near": ("answer", "gold"), "long": ("answer", "question")},
         (metric("near"), metric("long")), ("gold", "near", "long"), ("expected",)),
    Case("a metric on a stage of the chain stays",
         {"clean": ("question",), "answer": ("clean", "expected")}, (metric("clean"),), (),
         inputs=("question", "expected")),
    Case("an input both the chain and a metric read stays",
         {"answer": ("question", "expected"), "near": ("answer", "expected")},
         (metric("near"),), ("near",), ()),
    Case("a stage the chain falls back to stays",
         {"answer": ("question",), "canned": ("question",),
          "near": ("answer", "canned", "expected")},
         (metric("near"),), ("near",), ("expected",),
         options={"answer": {"fallback": "canned"}}),
    Case("a scored stage an output falls back to is served",
         {"answer": ("question",), "near": ("question",)}, (metric("near"),), (),
         inputs=("question",), options={"answer": {"fallback": "near"}}),
    Case("a stage no criterion scores and no output reads is left as it is",
         {"answer": ("question",), "stray": ("expected",)}, (), (), ()),
]


def _compile(case: Case) -> WorkbookSpec:
    wb = Workbook("graph", inputs={n: "string" for n in case.inputs}, output=case.output,
                  criteria=list(case.criteria))
    for stage, reads in case.stages.items():
        wb.code(stage, _code(stage, *reads), **case.options.get(stage, {}))
    return wb.compile()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_evaluation_only_stages_and_inputs(case: Case) -> None:
    spec = _compile(case)
    assert spec.evaluation_stages == case.stages_out
    assert spec.evaluation_inputs == case.inputs_out
    served = spec.served
    assert [s.id for s in served.stages] == [s.id for s in spec.stages
                                             if s.id not in case.stages_out]
    assert served.input_names == tuple(n for n in spec.input_names if n not in case.inputs_out)
    assert served.inputs["required"] == list(served.input_names)
    assert all(c.stage not in case.stages_out for c in served.criteria)
    if not case.stages_out:
        assert served is spec


def test_served_spec_keeps_the_workbook_and_drops_only_evaluation() -> None:
    spec = scored().compile()
    served = spec.served
    assert served.inputs == {"type": "object", "properties": {"question": {"type": "string"}},
                             "required": ["question"], "additionalProperties": False}
    assert [c.name for c in served.criteria] == ["has_a"]
    assert (served.name, served.output, served.acceptance) == (
        spec.name, spec.output, spec.acceptance)
    assert served.hash != spec.hash and served.served is served
    # the whole workbook is untouched: nux eval still runs every stage
    assert [s.id for s in spec.stages] == ["clean", "answer", "gold_answer", "score_close",
                                           "score_long"]
    assert "expected" in spec.inputs["required"]
