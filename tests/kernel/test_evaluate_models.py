"""Criteria that run real models: MiniLM semantic similarity and the gemma LLM judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nux_kernel import Workbook
from nux_kernel.cli import main
from nux_kernel.evaluate import evaluate_workbook
from nux_kernel.judge import parse_score

pytestmark = pytest.mark.slow

ANSWERS = {
    "cat": "A cat is a small domesticated feline animal.",
    "car": "Quarterly revenue grew by four percent.",
}


def _workbook(tmp_path: Path, criteria: list[dict[str, object]]) -> Workbook:
    bank = [{"inputs": {"topic": "cat"}, "expected": "Cats are small furry pets (felines)."},
            {"inputs": {"topic": "car"}, "expected": "A car is a motor vehicle with wheels."}]
    (tmp_path / "bank.jsonl").write_text("".join(json.dumps(c) + "\n" for c in bank))
    wb = Workbook("define", inputs={"topic": "string"}, output="answer", criteria=criteria,
                  test_bank="bank.jsonl", base_dir=tmp_path)
    wb.code("answer", f"ANSWERS = {ANSWERS!r}\n\n"
                      "def answer(topic: str) -> str:\n    return ANSWERS[topic]\n")
    return wb


def test_semantic_similarity_with_minilm(tmp_path: Path, minilm: object) -> None:
    wb = _workbook(tmp_path, [{"type": "semantic", "name": "similar", "threshold": 0.5}])
    report = evaluate_workbook(wb.compile(), base_dir=tmp_path)
    by_topic = {c.case.inputs["topic"]: c.scores["similar"] for c in report.cases}
    assert by_topic["cat"].passed and by_topic["cat"].value > 0.5
    assert not by_topic["car"].passed and by_topic["car"].value < by_topic["cat"].value
    assert "cosine" in by_topic["cat"].detail


def test_semantic_threshold_out_of_range_is_a_user_error(tmp_path: Path) -> None:
    wb = _workbook(tmp_path, [{"type": "semantic", "threshold": 3}])
    path = wb.save(tmp_path / "wb.ipynb")
    result = CliRunner().invoke(main, ["eval", str(path)])
    assert result.exit_code == 2 and "not a cosine" in result.output


def test_parse_score_is_bounded() -> None:
    assert parse_score("7", 10) == 0.7
    assert parse_score(" 15 out of 10", 10) == 1.0
    assert parse_score("-3", 10) == 0.0
    assert parse_score("great", 10) is None


def test_llm_judge_with_local_gemma(tmp_path: Path, gemma: object) -> None:
    wb = _workbook(tmp_path, [{"type": "judge", "name": "judged",
                               "rubric": "The answer defines the topic correctly."}])
    report = evaluate_workbook(wb.compile(), base_dir=tmp_path)
    for case in report.cases:
        score = case.scores["judged"]
        assert 0.0 <= score.value <= 1.0
        # the judge either gave a number (shown) or said why it could not be parsed
        assert score.detail.startswith(("judge: ", "the judge gave no score"))
    assert any(c.scores["judged"].detail.startswith("judge: ") for c in report.cases)


def test_llm_judge_must_be_vetted(tmp_path: Path) -> None:
    wb = _workbook(tmp_path, [{"type": "judge", "rubric": "correct", "uses": "llm.unvetted/x"}])
    path = wb.save(tmp_path / "wb.ipynb")
    result = CliRunner().invoke(main, ["eval", str(path)])
    assert result.exit_code == 2, result.output
    assert "judge model cannot be used" in result.output
