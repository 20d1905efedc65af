"""One table of reference-free criteria, judged the same by the served app's response
validation and by ``nux eval``'s scorers (both call nux_runtime.answer_checks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nux_kernel import Workbook
from nux_kernel.evaluate.bank import Case
from nux_kernel.evaluate.criteria import Scoring, build_scorers
from nux_runtime.answer_checks import reference_free_checks
from nux_runtime.spec import Criterion

SCHEMA = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}


@dataclass
class Row:
    name: str
    type: str
    params: dict[str, Any]
    answer: Any
    passes: bool


ROWS = [
    Row("json text", "json", {}, '{"a": 1}', True),
    Row("not json", "json", {}, "{a: 1", False),
    Row("structured value", "json", {}, {"a": [1, 2]}, True),
    Row("regex search", "regex", {"pattern": "[0-9]+ days"}, "You get 25 days.", True),
    Row("regex case", "regex", {"pattern": "PARIS"}, "paris", False),
    Row("regex ignore_case", "regex", {"pattern": "PARIS", "ignore_case": True}, "paris", True),
    Row("regex fullmatch", "regex", {"pattern": "P[1-4]", "fullmatch": True}, "P2 urgent", False),
    Row("regex on a structure", "regex", {"pattern": '"city": "Zürich"'}, {"city": "Zürich"},
        True),
    Row("schema mapping", "json_schema", {"schema": SCHEMA}, '{"total": 12.5}', True),
    Row("schema violated", "json_schema", {"schema": SCHEMA}, {"total": "12"}, False),
    Row("schema as text", "json_schema", {"schema": '{"type": "array", "maxItems": 1}'},
        "[1, 2]", False),
    Row("string schema keeps text", "json_schema", {"schema": {"type": "string"}}, "hello",
        True),
    Row("field of a JSON answer", "regex", {"pattern": "^P[1-4]$", "field": "priority"},
        '{"priority": "P3", "note": "x"}', True),
    Row("JSON pointer field", "json_schema",
        {"schema": {"type": "number"}, "field": "/items/0/total"}, {"items": [{"total": 3}]},
        True),
    Row("missing field", "json", {"field": "nope"}, {"a": 1}, False),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_served_validation_and_eval_agree(row: Row, tmp_path: Path) -> None:
    criterion = {"type": row.type, "name": "c", **row.params}
    checks = reference_free_checks([Criterion(name="c", type=row.type, params=row.params)])
    assert len(checks) == 1
    served, _ = checks[0].score(row.answer)
    wb = Workbook("t", inputs={"q": "string"}, output="a", criteria=[criterion])
    wb.code("a", "def a(q: str) -> str:\n    return q\n")
    scorer, = build_scorers(wb.compile(), tmp_path)
    item = scorer.pick(Scoring(Case(id="1", inputs={"q": ""}), row.answer, None))  # type: ignore[arg-type]
    scored = scorer.score(item).passed if item.answered else False
    assert (served, scored) == (row.passes, row.passes)
