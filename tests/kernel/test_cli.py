"""The `nux` command line as a user runs it: validate, run, spec, catalog."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nux_kernel import Workbook
from nux_kernel.catalog import DEFAULT_CATALOG
from nux_kernel.cli import main
from nux_runtime.spec import WorkbookSpec


def good_workbook(directory: Path) -> Path:
    wb = Workbook("faq", inputs={"question": "string"}, output="answer")
    wb.code("clean", "def clean(question: str) -> str:\n    return question.strip()\n")
    wb.code("words", "def words(clean: str) -> int:\n    return len(clean.split())\n")
    wb.template("answer", inputs=["clean", "words"], template="{clean} ({words} words)")
    return wb.save(directory / "faq.ipynb")


def broken_workbook(directory: Path) -> Path:
    wb = Workbook("broken", inputs={"question": "string"}, output="answr")
    wb.code("clean", "import os\ndef clean(questoin: str) -> str:\n    return questoin\n")
    wb.model("answer", uses="llm.local/gpt-99", inputs=["clean"])
    return wb.save(directory / "broken.ipynb")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_validate_clean_workbook(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["validate", str(good_workbook(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "faq: 3 stages, no problems" in result.output


def test_validate_reports_every_problem_once_with_cell_line_and_fix(
        runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["validate", str(broken_workbook(tmp_path))])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "4 problems found"
    text = "\n".join(lines)
    assert "cell clean, line 2: [code-import] `os`" in text
    assert "cell clean, line 3: [unknown-input] 'questoin'" in text
    assert "did you mean 'question'?" in text
    assert "cell answer, line 2: [unvetted-component]" in text
    assert "[missing-output] the output stage 'answr' does not exist -- fix: did you mean " \
           "'answer'?" in text
    assert "Traceback" not in result.output


def test_validate_json_for_machines(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["validate", "--json", str(broken_workbook(tmp_path))])
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    codes = {(p["code"], p.get("cell")) for p in payload["problems"]}
    assert ("unvetted-component", "answer") in codes
    assert all({"code", "message"} <= set(p) for p in payload["problems"])


@pytest.mark.parametrize("content", [b"", b"{not json", b"\x00\xff\xfe", b"[1, 2]",
                                     b'{"cells": 3}'])
def test_validate_unreadable_files_without_traceback(runner: CliRunner, tmp_path: Path,
                                                     content: bytes) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content)
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "bad.ipynb" in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_validate_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["validate", str(tmp_path / "nope.ipynb")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_run_prints_trace_table_and_writes_jsonl(runner: CliRunner, tmp_path: Path) -> None:
    path = good_workbook(tmp_path)
    trace = tmp_path / "trace.jsonl"
    result = runner.invoke(main, ["run", str(path), "--input", "question=  why is the sky blue ",
                                  "--trace", str(trace)])
    assert result.exit_code == 0, result.output
    assert "output: why is the sky blue (5 words)" in result.stdout
    for column in ("stage", "status", "ms", "cost", "cache"):
        assert column in result.stdout
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["stage"] for r in records] == ["clean", "words", "answer"]
    assert all(r["status"] == "ok" and r["latency_ms"] >= 0 for r in records)
    again = runner.invoke(main, ["run", str(path), "-i", "question=  why is the sky blue ",
                                 "--json"])
    payload = json.loads(again.stdout)
    assert all(t["cache_hit"] for t in payload[0]["traces"])
    fresh = runner.invoke(main, ["run", str(path), "-i", "question=  why is the sky blue ",
                                 "--json", "--no-cache"])
    assert not any(t["cache_hit"] for t in json.loads(fresh.stdout)[0]["traces"])


def test_run_batch_from_jsonl(runner: CliRunner, tmp_path: Path) -> None:
    path = good_workbook(tmp_path)
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps(c) for c in [
        {"inputs": {"question": "one two"}, "expected": "x"},
        {"question": "a b c"},
    ]))
    result = runner.invoke(main, ["run", str(path), "--inputs", str(cases), "--json"])
    assert result.exit_code == 0, result.output
    assert [r["output"] for r in json.loads(result.stdout)] == ["one two (2 words)",
                                                                "a b c (3 words)"]
    assert list((tmp_path / ".nux" / "runs").glob("*.jsonl"))


def test_run_rejects_bad_inputs_with_the_field(runner: CliRunner, tmp_path: Path) -> None:
    path = good_workbook(tmp_path)
    missing = runner.invoke(main, ["run", str(path)])
    assert missing.exit_code == 2
    assert "'question' is a required property" in missing.stderr
    extra = runner.invoke(main, ["run", str(path), "-i", "question=x", "-i", "topic=y"])
    assert extra.exit_code == 2 and "topic" in extra.stderr
    malformed = runner.invoke(main, ["run", str(path), "-i", "question"])
    assert malformed.exit_code == 2 and "name=value" in malformed.stderr
    bad_file = tmp_path / "cases.jsonl"
    bad_file.write_text('{"question": "ok"}\nnot json\n')
    batch = runner.invoke(main, ["run", str(path), "--inputs", str(bad_file)])
    assert batch.exit_code == 2 and "cases.jsonl:2" in batch.stderr


def test_run_names_the_failing_stage(runner: CliRunner, tmp_path: Path) -> None:
    wb = Workbook("div", inputs={"x": "integer"}, output="b")
    wb.code("a", "def a(x: int) -> int:\n    return 10 // x\n")
    wb.code("b", "def b(a: int) -> int:\n    return a + 1\n")
    path = wb.save(tmp_path / "div.ipynb")
    ok = runner.invoke(main, ["run", str(path), "-i", "x=5"])
    assert ok.exit_code == 0 and "output: 3" in ok.stdout
    failed = runner.invoke(main, ["run", str(path), "-i", "x=0"])
    assert failed.exit_code == 1
    assert "stage a failed: ZeroDivisionError: integer division or modulo by zero" in failed.stderr
    assert "Traceback" not in failed.output


def test_spec_prints_frozen_json_and_builder_matches_notebook(runner: CliRunner,
                                                              tmp_path: Path) -> None:
    path = good_workbook(tmp_path)
    result = runner.invoke(main, ["spec", str(path)])
    spec = WorkbookSpec.from_json(result.stdout)
    wb = Workbook("faq", inputs={"question": "string"}, output="answer")
    wb.code("clean", "def clean(question: str) -> str:\n    return question.strip()\n")
    wb.code("words", "def words(clean: str) -> int:\n    return len(clean.split())\n")
    wb.template("answer", inputs=["clean", "words"], template="{clean} ({words} words)")
    assert spec.hash == wb.compile().hash
    assert spec.stage("words").output_schema == {"type": "integer"}
    assert spec.stage("answer").component.hash == spec.stage("answer").component.hash
    assert len(spec.stage("answer").component.hash) == 64


def test_catalog_lists_components_and_honours_nux_catalog(runner: CliRunner,
                                                          tmp_path: Path) -> None:
    listed = runner.invoke(main, ["catalog", "--json"])
    assert listed.exit_code == 0
    assert {"code", "text.template"} <= set(json.loads(listed.stdout)["components"])
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text())
    raw["name"] = "acme"
    del raw["components"]["text.template"]
    custom = tmp_path / "acme.yaml"
    custom.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "NUX_CATALOG": str(custom)}
    result = runner.invoke(main, ["catalog", "--json"], env=env)
    assert json.loads(result.stdout)["name"] == "acme"
    path = good_workbook(tmp_path)
    refused = runner.invoke(main, ["validate", str(path)], env=env)
    assert refused.exit_code == 2 and "not in the vetted catalog 'acme'" in refused.stderr
    missing = runner.invoke(main, ["catalog"], env={**os.environ,
                                                   "NUX_CATALOG": str(tmp_path / "x.yaml")})
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_param_outside_vetted_range(runner: CliRunner, tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text())
    raw["components"]["text.template"]["params"]["template"]["maxLength"] = 10
    custom = tmp_path / "strict.yaml"
    custom.write_text(yaml.safe_dump(raw))
    path = good_workbook(tmp_path)
    result = runner.invoke(main, ["validate", "--catalog", str(custom), str(path)])
    assert result.exit_code == 2
    assert "[param-range] param 'template'" in result.stderr
    assert "allows maxLength 10" in result.stderr
