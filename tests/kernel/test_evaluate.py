"""``nux eval``: test banks, criteria, aggregates, the acceptance gate, reports and history.

Every test builds a real workbook, runs it through the real executor and the CLI a user types.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nux_kernel import Workbook
from nux_kernel.cli import main
from nux_kernel.compiler import compile_notebook
from nux_kernel.evaluate import evaluate_workbook, load_bank
from nux_kernel.executor import Executor
from nux_runtime.errors import NuxError

BANK = [
    {"inputs": {"question": "paris"}, "expected": "PARIS", "tags": ["city"]},
    {"inputs": {"question": "rome"}, "expected": "ROME", "tags": ["city"]},
    {"inputs": {"question": " oslo "}, "expected": "OSLO", "tags": ["city", "spaces"]},
    {"inputs": {"question": "lima"}, "expected": "QUITO", "tags": ["wrong"]},
]

SHOUT = ("def answer(question: str, *, times: int = 1) -> str:\n"
         "    return question.strip().upper() * times\n")


def write_bank(folder: Path, cases: list[dict[str, Any]], name: str = "bank.jsonl") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")


def shout_workbook(folder: Path, *, criteria: list[dict[str, Any]],
                   acceptance: dict[str, float] | None = None, times: int = 1,
                   bank: str = "bank.jsonl") -> Path:
    wb = Workbook("shout", inputs={"question": "string"}, output="answer", criteria=criteria,
                  acceptance=acceptance, test_bank=bank, base_dir=folder)
    wb.code("answer", SHOUT.replace("times: int = 1", f"times: int = {times}"),
            tune={"times": {"int": [1, 3]}})
    wb.code("brevity", "def brevity(answer: str) -> float:\n    return 4 / max(4, len(answer))\n")
    return wb.save(folder / "shout.ipynb")


def test_criteria_score_each_case(tmp_path: Path) -> None:
    write_bank(tmp_path, BANK)
    path = shout_workbook(tmp_path, criteria=[
        {"type": "exact", "name": "exact"},
        {"type": "contains", "name": "has", "value": "O"},
        {"type": "regex", "name": "caps", "pattern": "^[A-Z]+$"},
        {"type": "metric", "name": "short", "stage": "brevity", "threshold": 0.9},
    ], acceptance={"exact": 0.7})
    spec = compile_notebook(path)
    report = evaluate_workbook(spec, base_dir=tmp_path)
    by_id = {c.case.id: c for c in report.cases}
    assert [by_id[i].scores["exact"].passed for i in "1234"] == [True, True, True, False]
    assert [by_id[i].scores["has"].passed for i in "1234"] == [False, True, True, False]
    assert all(c.scores["caps"].passed for c in report.cases)
    # brevity = 4 / len: PARIS (5) scores 0.8 and fails the 0.9 threshold, ROME passes
    assert by_id["1"].scores["short"].value == pytest.approx(0.8)
    assert not by_id["1"].scores["short"].passed and by_id["2"].scores["short"].passed
    s = report.summary
    assert s["criteria"]["exact"]["pass_rate"] == 0.75
    assert s["criteria"]["has"]["mean"] == 0.5
    assert s["pass_rate"] == 0.5  # ROME and OSLO pass every criterion
    assert s["cases"] == 4 and s["error_rate"] == 0.0
    assert set(s["latency_ms"]) >= {"p50", "p95", "p99"}
    assert s["latency_ms"]["p50"] <= s["latency_ms"]["p95"] <= s["latency_ms"]["p99"]
    assert s["cost_per_request"] >= 0 and "in" in s["tokens_per_request"]
    assert report.passed is True  # exact 0.75 >= 0.7
    assert s["acceptance"] == [{"name": "exact", "op": ">=", "threshold": 0.7, "value": 0.75,
                                "passed": True}]


def test_json_and_json_schema_use_the_stage_output_type(tmp_path: Path) -> None:
    write_bank(tmp_path, [{"question": "a"}, {"question": "bb"}, {"question": "ccc"}])
    wb = Workbook("js", inputs={"question": "string"}, output="shape", test_bank="bank.jsonl",
                  criteria=[{"type": "json", "stage": "raw"},
                            {"type": "json_schema", "name": "typed", "stage": "raw",
                             "schema": {"type": "object", "required": ["n"],
                                        "properties": {"n": {"type": "integer", "maximum": 1}}}},
                            {"type": "json_schema", "name": "output_type"}],
                  base_dir=tmp_path)
    wb.code("raw", "def raw(question: str) -> str:\n"
                   "    return '{\"n\": %d}' % len(question) if len(question) < 3 else 'nope'\n")
    wb.code("shape", "def shape(raw: str) -> dict[str, int]:\n    return {'len': len(raw)}\n")
    spec = wb.compile()
    # the raw answers, scored without the response validation production applies
    raw = Executor(spec, base_dir=tmp_path, validate=False)
    report = evaluate_workbook(spec, base_dir=tmp_path, executor=raw)
    raw.close()
    crit = report.summary["criteria"]
    assert crit["json"]["pass_rate"] == pytest.approx(2 / 3)
    assert crit["typed"]["pass_rate"] == pytest.approx(1 / 3)  # n=2 breaks the maximum
    assert crit["output_type"]["pass_rate"] == 1.0  # the code stage's dict[str, int] schema
    failing = next(c for c in report.cases if c.case.inputs["question"] == "ccc")
    assert "not JSON" in failing.scores["json"].detail

    # As served (the default): an answer failing a reference-free criterion is retried once,
    # then the case fails naming the criterion, as the app would answer it.
    report = evaluate_workbook(spec, base_dir=tmp_path)
    by_question = {c.case.inputs["question"]: c for c in report.cases}
    assert by_question["a"].ok
    for question, criterion in (("bb", "typed"), ("ccc", "json")):
        case = by_question[question]
        assert not case.ok and f"criterion {criterion!r}" in case.error, case.error
        trace = next(t for t in case.traces if t.stage == "raw")
        assert trace.status == "error" and f"criterion {criterion!r}" in trace.reason


def test_csv_bank_and_tags(tmp_path: Path) -> None:
    (tmp_path / "bank.csv").write_text(
        "id,question,expected,tags\nq1,paris,PARIS,city;easy\nq2,7,7,number\n", encoding="utf-8")
    cases = load_bank(tmp_path / "bank.csv", ["question"])
    assert [c.id for c in cases] == ["q1", "q2"]
    assert cases[0].tags == ("city", "easy")
    assert cases[1].inputs == {"question": "7"} and cases[1].expected == "7"


def test_html_report_shows_markup_from_the_bank_and_answers_as_text(tmp_path: Path) -> None:
    write_bank(tmp_path, [{"inputs": {"question": "<script>alert(1)</script>"},
                           "expected": "<b>bold</b>", "tags": ["<i>x</i>"]}])
    path = shout_workbook(tmp_path, criteria=[{"type": "exact"}], acceptance={"pass_rate": 1})
    ran = CliRunner().invoke(main, ["eval", str(path), "--html", str(tmp_path / "r.html")])
    assert ran.exit_code == 1, ran.output  # the answer is the question, shouted
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "<b>bold" not in page and "<i>x" not in page
    assert "&lt;SCRIPT&gt;ALERT(1)&lt;/SCRIPT&gt;" in page  # the answer
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "&lt;i&gt;x&lt;/i&gt;" in page
    assert '<span class="fail">FAIL</span>' in page  # the report's own markup stays markup


def test_cli_gate_exit_codes_html_and_compare(tmp_path: Path) -> None:
    write_bank(tmp_path, BANK)
    path = shout_workbook(tmp_path, criteria=[{"type": "exact"}],
                          acceptance={"pass_rate": 0.7, "p95_ms": 60_000})
    runner = CliRunner()
    first = runner.invoke(main, ["eval", str(path), "--html", str(tmp_path / "r.html")])
    assert first.exit_code == 0, first.output
    assert "PASS pass_rate = 0.75" in first.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "QUITO" in page and "LIMA" in page and "lima" in page  # expected, actual, input
    assert "<td>answer</td>" in page  # the per-stage trace table
    # doubling the answer breaks exact match: the gate fails and --compare names the regression
    shout_workbook(tmp_path, criteria=[{"type": "exact"}],
                   acceptance={"pass_rate": 0.7, "p95_ms": 60_000}, times=2)
    second = runner.invoke(main, ["eval", str(path), "--compare", "--json"])
    assert second.exit_code == 1, second.output
    data = json.loads(second.output)
    assert data["passed"] is False
    changes = {c["name"]: c for c in data["changes"]}
    assert changes["pass_rate"]["verdict"] == "regressed"
    assert changes["case 1"]["before"] == "pass" and changes["case 1"]["after"] == "fail"
    history = (tmp_path / ".nux" / "evals" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2
    assert json.loads(history[0])["spec_hash"] != json.loads(history[1])["spec_hash"]


def test_latency_threshold_fails_the_gate(tmp_path: Path) -> None:
    write_bank(tmp_path, BANK[:2])
    path = shout_workbook(tmp_path, criteria=[{"type": "exact"}],
                          acceptance={"p95_ms": 0.000001, "cost_per_request": 1.0})
    result = CliRunner().invoke(main, ["eval", str(path), "--no-cases"])
    assert result.exit_code == 1
    assert "FAIL p95_ms" in result.output and "PASS cost_per_request" in result.output


@pytest.mark.parametrize(("change", "message"), [
    ({"criteria": [{"type": "fuzzy"}]}, "unknown type 'fuzzy'"),
    ({"criteria": [{"type": "regex", "pattern": "("}]}, "invalid regex"),
    ({"criteria": [{"type": "exact"}], "acceptance": {"p96_ms": 1}}, "unknown metric 'p96_ms'"),
    ({"criteria": [{"type": "exact"}], "bank": "missing.jsonl"}, "does not exist"),
    ({"criteria": [{"type": "metric"}]}, "names the code stage"),
])
def test_user_errors_exit_2(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    write_bank(tmp_path, BANK)
    path = shout_workbook(tmp_path, criteria=change["criteria"],
                          acceptance=change.get("acceptance"),
                          bank=change.get("bank", "bank.jsonl"))
    result = CliRunner().invoke(main, ["eval", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_bank_inputs_checked_against_workbook_inputs(tmp_path: Path) -> None:
    write_bank(tmp_path, [{"inputs": {"query": "x"}, "expected": "X"}])
    path = shout_workbook(tmp_path, criteria=[{"type": "exact"}])
    with pytest.raises(NuxError, match="case 1"):
        evaluate_workbook(compile_notebook(path), base_dir=tmp_path)


def test_stage_failure_counts_as_error_not_crash(tmp_path: Path) -> None:
    write_bank(tmp_path, [{"question": "ok"}, {"question": "boom"}])
    wb = Workbook("err", inputs={"question": "string"}, output="answer", test_bank="bank.jsonl",
                  criteria=[{"type": "json"}], acceptance={"error_rate": 0.0}, base_dir=tmp_path)
    wb.code("answer", "def answer(question: str) -> str:\n"
                      "    if question == 'boom':\n        raise ValueError('exploded')\n"
                      "    return '1'\n")
    report = evaluate_workbook(wb.compile(), base_dir=tmp_path)
    assert report.summary["error_rate"] == 0.5 and not report.passed
    bad = next(c for c in report.cases if c.case.inputs["question"] == "boom")
    assert not bad.ok and "exploded" in bad.error and not bad.scores["json"].passed


def test_stage_feeding_nothing_runs_once_before_the_cases(tmp_path: Path) -> None:
    # an ingest-like stage reads nothing and feeds no answer: it runs once, not once per case
    write_bank(tmp_path, BANK)
    wb = Workbook("setup", inputs={"question": "string"}, output="answer", test_bank="bank.jsonl",
                  criteria=[{"type": "exact"}], base_dir=tmp_path)
    wb.code("prepare", "def prepare() -> int:\n    return 42\n")
    wb.code("answer", SHOUT)
    report = evaluate_workbook(wb.compile(), base_dir=tmp_path, cache=False)
    assert report.summary["executions"] == len(BANK) + 1
    assert all("prepare" not in [t.stage for t in c.traces] for c in report.cases)
    broken = Workbook("setup", inputs={"question": "string"}, output="answer",
                      test_bank="bank.jsonl", criteria=[{"type": "exact"}], base_dir=tmp_path)
    broken.code("prepare", "def prepare() -> int:\n    return 1 // 0\n")
    broken.code("answer", SHOUT)
    with pytest.raises(NuxError, match=r"stage prepare .*ZeroDivisionError"):
        evaluate_workbook(broken.compile(), base_dir=tmp_path, cache=False)
