"""Table-driven compile tests: cells in; order, edges or problems (code, cell, line) out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nux_kernel.compiler import check_workbook
from nux_kernel.notebook import read_notebook
from nux_runtime.walker import graph_of

META = {"name": "t", "inputs": {"question": {"type": "string"}}, "output": "answer"}

ANSWER = "%%nux code answer\ndef answer(question: str) -> str:\n    return question\n"


@dataclass
class Case:
    name: str
    cells: list[str]
    meta: dict[str, Any] = field(default_factory=lambda: dict(META))
    order: list[str] | None = None
    edges: set[tuple[str, str]] | None = None
    problems: list[tuple[str, str | None, int | None]] | None = None  # (code, cell, line)


def code(stage: str, args: str, body: str = "return 1", ret: str = "int",
         options: str = "") -> str:
    return f"%%nux code {stage}\n{options}def {stage}({args}) -> {ret}:\n    {body}\n"


CASES = [
    Case("single code stage", [ANSWER], order=["answer"], edges=set()),
    Case(
        "chain and fan-in",
        [code("a", "question: str"), code("b", "a: int"), code("c", "a: int"),
         code("answer", "b: int, c: int", ret="int")],
        order=["a", "b", "c", "answer"],
        edges={("a", "b"), ("a", "c"), ("b", "answer"), ("c", "answer")},
    ),
    Case(
        "declaration order does not matter",
        [code("answer", "b: int"), code("b", "question: str")],
        order=["b", "answer"], edges={("b", "answer")},
    ),
    Case(
        "template stage reads code output",
        [code("clean", "question: str", "return question", "str"),
         "%%nux code answer\nuses: text.template\ninputs: [clean]\n"
         "params: {template: 'Q: {clean}'}\n"],
        order=["clean", "answer"], edges={("clean", "answer")},
    ),
    Case(
        "when condition adds an edge",
        [code("route", "question: str", "return 'hard'", "str"),
         code("answer", "question: str", "return question", "str",
              options="#| when: route == 'hard'\n")],
        order=["route", "answer"], edges={("route", "answer")},
    ),
    Case("unknown input", [code("answer", "questoin: str")],
         problems=[("unknown-input", "answer", 2)]),
    Case(
        "cycle names its stages",
        [code("a", "b: int"), code("b", "a: int"), code("answer", "a: int")],
        problems=[("cycle", "a", 2)],
    ),
    Case("self loop", [code("answer", "answer: int")], problems=[("cycle", "answer", 2)]),
    Case("duplicate stage id", [ANSWER, ANSWER.replace("return question", "return 'x'")],
         problems=[("duplicate-stage", "answer#1", 1)]),
    Case("missing output", [code("other", "question: str")],
         problems=[("missing-output", None, None)]),
    Case("no output declared", [ANSWER], meta={**META, "output": None},
         problems=[("missing-output", None, None)]),
    Case(
        "malformed yaml",
        ["%%nux model answer\nuses: llm.x\ninputs: [question\nparams: {}\n"],
        problems=[("yaml", "answer", 4)],
    ),
    Case(
        "unvetted component",
        ["%%nux model answer\nuses: llm.unvetted/giant\ninputs: [question]\n"],
        problems=[("unvetted-component", "answer", 2)],
    ),
    Case(
        "kind mismatch",
        ["%%nux data answer\nuses: text.template\ninputs: [question]\n"
         "params: {template: '{question}'}\n"],
        problems=[("kind-mismatch", "answer", 2)],
    ),
    Case(
        "param of the wrong type",
        ["%%nux code answer\nuses: text.template\ninputs: [question]\nparams:\n  template: 3\n"],
        problems=[("param-type", "answer", 5)],
    ),
    Case(
        "unknown param",
        ["%%nux code answer\nuses: text.template\ninputs: [question]\n"
         "params: {templat: 'x'}\n"],
        problems=[("unknown-param", "answer", 4)],
    ),
    Case(
        "syntax error line",
        ["%%nux code answer\ndef answer(question: str) -> str:\n    return (\n"],
        problems=[("code-syntax", "answer", 3)],
    ),
    Case(
        "import outside the allow-list",
        ["%%nux code answer\nimport json\nimport subprocess\n"
         "def answer(question: str) -> str:\n    return question\n"],
        problems=[("code-import", "answer", 3)],
    ),
    Case(
        "template reads a missing variable",
        ["%%nux code answer\nuses: text.template\ninputs: [question]\n"
         "params: {template: '{question} {context}'}\n"],
        problems=[("template-variable", "answer", 3)],
    ),
    Case(
        "tune outside a code param",
        [code("answer", "question: str, *, k: int = 2", options="#| tune: {j: {int: [1, 3]}}\n")],
        problems=[("tune", "answer", 2)],
    ),
    Case(
        "bad header kind",
        ["%%nux widget answer\nuses: x\n"],
        problems=[("header-kind", "answer", 1), ("missing-output", None, None)],
    ),
    Case(
        "scale min above max",
        [code("answer", "question: str",
              options="#| scale: {min_replicas: 3, max_replicas: 1}\n")],
        problems=[("scale", "answer", 2)],
    ),
    Case(
        "type mismatch between stages",
        [code("a", "question: str", "return 1", "int"),
         code("answer", "a: str", "return a", "str")],
        problems=[("type-mismatch", "answer", 1)],
    ),
    Case(
        "every problem at once",
        [code("a", "nope: str"), "%%nux model answer\nuses: llm.nothing\ninputs: [a]\n",
         "%%nux code b\nimport os\ndef b(question: str) -> str:\n    return ''\n"],
        problems=[("unknown-input", "a", 2), ("unvetted-component", "answer", 2),
                  ("code-import", "b", 2)],
    ),
]


def write_notebook(directory: Path, cells: list[str], meta: dict[str, Any]) -> Path:
    seen: dict[str, int] = {}
    nb_cells: list[dict[str, Any]] = []
    for text in cells:
        stage = text.split("\n", 1)[0].split()[-1]
        n = seen.get(stage, 0)
        seen[stage] = n + 1
        nb_cells.append({"cell_type": "code", "id": stage if n == 0 else f"{stage}#{n}",
                         "metadata": {}, "outputs": [], "execution_count": None,
                         "source": text})
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"nux": meta}, "cells": nb_cells}
    path = directory / "wb.ipynb"
    path.write_text(json.dumps(nb))
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_compile(case: Case, tmp_path: Path) -> None:
    source = read_notebook(write_notebook(tmp_path, case.cells, case.meta))
    spec, problems = check_workbook(source)
    if case.problems is not None:
        assert spec is None
        got = {(p.code, p.cell, p.line) for p in problems}
        assert set(case.problems) <= got, problems
        assert all(p.message and (p.fix or p.code.startswith("header")) for p in problems)
        return
    assert not problems, [p.render() for p in problems]
    assert spec is not None
    graph = graph_of(spec)
    if case.order is not None:
        assert graph.order() == case.order
    if case.edges is not None:
        assert {(u, d) for d, ups in graph.upstream.items() for u in ups} == case.edges


# `nux validate` over broken metadata and cells: each problem reported once, where it is (the
# metadata field, or the cell and line), with no false companion, and exit status 2.

OPENAI = ("%%nux model answer\nuses: llm.openai\ninputs: [question]\nparams:\n"
          "  base_url: {url}\n  model: m\n  template: 'Q: {{question}}'\n"
          "  temperature: {temperature}\n"
          "tune:\n  temperature: {{float: [0.0, 1.0]}}\n  max_tokens: {{int: [8, 64]}}\n")


def openai(url: str = "http://127.0.0.1:8000", temperature: float = 0.1,
           extra: str = "") -> str:
    return OPENAI.format(url=url, temperature=temperature) + extra


def with_meta(**extra: Any) -> dict[str, Any]:
    return {**META, "test_bank": "bank.jsonl", **extra}


@dataclass
class ValidateCase:
    name: str
    cells: list[str]
    meta: dict[str, Any]
    # (code, field or None, cell or None, line or None, a text the message or fix holds)
    problems: list[tuple[str, str | None, str | None, int | None, str]]
    warnings: list[tuple[str, str | None, str | None, int | None, str]] = field(
        default_factory=list)


VALIDATE_CASES = [
    ValidateCase("clean", [ANSWER], with_meta(criteria=[{"type": "exact", "name": "same"}],
                                              acceptance={"same.pass_rate": 0.5}), []),
    ValidateCase("misspelled criterion type", [ANSWER],
                 with_meta(criteria=[{"type": "exakt"}]),
                 [("criterion", "metadata.nux.criteria[0]", None, None, "'exact'")]),
    ValidateCase("criterion with an unknown param", [ANSWER],
                 with_meta(criteria=[{"type": "regex", "patern": "x"}]),
                 [("criterion", "metadata.nux.criteria[0]", None, None, "'pattern'")]),
    ValidateCase("criterion naming no stage", [ANSWER],
                 with_meta(criteria=[{"type": "contains", "stage": "answr"}]),
                 [("criterion", "metadata.nux.criteria[0]", None, None, "'answer'")]),
    ValidateCase("criterion with a bad regex", [ANSWER],
                 with_meta(criteria=[{"type": "regex", "pattern": "(unclosed"}]),
                 [("criterion", "metadata.nux.criteria[0]", None, None, "invalid regex")]),
    ValidateCase("acceptance key naming no criterion", [ANSWER],
                 with_meta(criteria=[{"type": "exact", "name": "category"}],
                           acceptance={"categroy.pass_rate": 0.8}),
                 [("acceptance", "metadata.nux.acceptance.categroy.pass_rate", None, None,
                   "'category.pass_rate'")]),
    ValidateCase("missing test bank file", [ANSWER], {**with_meta(), "test_bank": "nope.jsonl"},
                 [("test-bank", "metadata.nux.test_bank", None, None, "does not exist")]),
    ValidateCase("test bank case with a wrong input", [ANSWER],
                 {**with_meta(), "test_bank": "wrong.jsonl"},
                 [("test-bank", "metadata.nux.test_bank", None, None,
                   "'question' is a required property")]),
    ValidateCase("an unknown key does not hide a template typo",
                 ["%%nux code answer\nuses: text.template\ninputs: [question]\n"
                  "timeout: 5\nparams: {template: 'Q: {questoin}'}\n"], with_meta(),
                 [("unknown-key", None, "answer", 4, "'timeout_s'"),
                  ("template-variable", None, "answer", 3, "questoin")]),
    ValidateCase("a bad base_url is reported once, not on every tuned param",
                 [openai(url="localhost:8000")], with_meta(),
                 [("param-range", "params.base_url", "answer", 5, "base_url")]),
    ValidateCase("a bad temperature is reported once, not on max_tokens",
                 [openai(temperature=5)], with_meta(),
                 [("param-range", "params.temperature", "answer", 8, "temperature")]),
    ValidateCase("base_url ending in /v1", [openai(url="http://127.0.0.1:8000/v1")],
                 with_meta(), [("base-url", "params.base_url", "answer", 5, "/v1")]),
    ValidateCase("an unset api_key_env is a warning",
                 [openai().replace("  model: m\n", "  model: m\n  api_key_env: NUX_TEST_UNSET\n")],
                 with_meta(), [],
                 [("api-key-env", "params.api_key_env", "answer", 7, "NUX_TEST_UNSET")]),
]


@pytest.mark.parametrize("case", VALIDATE_CASES, ids=[c.name for c in VALIDATE_CASES])
def test_validate_reports_each_problem_once(case: ValidateCase, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from nux_kernel.cli import main

    monkeypatch.delenv("NUX_TEST_UNSET", raising=False)
    (tmp_path / "bank.jsonl").write_text('{"inputs": {"question": "q"}, "expected": "q"}\n')
    (tmp_path / "wrong.jsonl").write_text('{"inputs": {"questoin": "q"}, "expected": "q"}\n')
    path = write_notebook(tmp_path, case.cells, case.meta)
    result = CliRunner().invoke(main, ["validate", "--json", str(path)])
    payload = json.loads(result.stdout)

    def where(p: dict[str, Any]) -> tuple[Any, ...]:
        return (p["code"], p.get("field"), p.get("cell"), p.get("line"))

    found = sorted(payload["problems"], key=lambda p: str(where(p)))
    expected = sorted(case.problems, key=lambda p: str(p[:4]))
    assert [where(p) for p in found] == [p[:4] for p in expected], payload["problems"]
    for (*_, text), problem in zip(expected, found, strict=True):
        assert text in problem["message"] + problem.get("fix", ""), problem
    assert len(payload["warnings"]) == len(case.warnings), payload["warnings"]
    for (code, fld, cell, line, text), warning in zip(case.warnings, payload["warnings"],
                                                      strict=True):
        assert (warning["code"], warning.get("field"), warning.get("cell"),
                warning.get("line")) == (code, fld, cell, line)
        assert text in warning["message"]
    assert result.exit_code == (2 if case.problems else 0), result.output
    plain = CliRunner().invoke(main, ["validate", str(path)])
    assert plain.exit_code == result.exit_code and "Traceback" not in plain.output
    for code, *_ in [*case.problems, *case.warnings]:
        assert plain.output.count(f"[{code}]") == sum(
            p[0] == code for p in [*case.problems, *case.warnings])
    if case.warnings and not case.problems:
        assert "warning: " in plain.stderr and "no problems, 1 warning" in plain.stdout
