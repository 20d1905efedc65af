"""Demonstrations as a search dimension: ``few_shot: {demos: [low, high]}`` draws a model stage's
examples from the tuning part of the bank, computed by the chain, and ``nux pin`` writes them.

Runs the real local gemma model through ``nux tune`` and ``nux pin`` (the CLI a user runs).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState

from nux_kernel import Workbook
from nux_kernel.cli import main
from nux_kernel.compiler import compile_notebook
from nux_kernel.tune.storage import record

pytestmark = pytest.mark.slow

CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
            ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Norway", "Oslo")]
HELD_OUT = {"Peru", "Kenya"}
HINT = "def hint(country: str) -> str:\n    return f'The country is {country}.'\n"


def _workbook(folder: Path, demos: dict[str, object] | None = None) -> Path:
    (folder / "bank.jsonl").write_text("".join(json.dumps({
        "id": country.lower(), "inputs": {"country": country}, "expected": capital,
        **({"split": "holdout"} if country in HELD_OUT else {})}) + "\n"
        for country, capital in CAPITALS), encoding="utf-8")
    wb = Workbook("capitals", inputs={"country": "string"}, output="answer",
                  test_bank="bank.jsonl", criteria=[{"type": "contains", "name": "correct"}],
                  base_dir=folder)
    wb.code("hint", HINT)
    wb.model("answer", uses="llm.local/gemma-3-270m", inputs=["country", "hint"], params={
        "template": "{hint} Its capital city is", "max_tokens": 6, "stop": ["\n", "."],
        "few_shot": [{"country": "Chile", "hint": "The country is Chile.",
                      "output": "Santiago"}]},
        tune={"few_shot": demos or {"demos": [0, 2], "sets": 3}})
    return wb.save(folder / "capitals.ipynb")


def _study(folder: Path) -> optuna.Study:
    storage = f"sqlite:///{folder / '.nux' / 'studies.db'}"
    name = optuna.get_all_study_names(storage)[0]
    return optuna.load_study(study_name=name, storage=storage)


def test_demos_come_from_the_tuning_part_through_the_chain_and_are_pinned(
        tmp_path: Path) -> None:
    path = _workbook(tmp_path)
    runner = CliRunner()
    done = runner.invoke(main, ["tune", str(path), "--trials", "6", "--seed", "3",
                                "--objective", "correct.pass_rate", "--no-prune",
                                "--no-plots"])
    assert done.exit_code == 0, done.output
    study = _study(tmp_path)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6
    tuning = {c.lower(): (c, cap) for c, cap in CAPITALS if c not in HELD_OUT}
    drawn = 0
    for trial in complete:
        count = trial.params["answer.few_shot"]
        examples = record(trial)["overrides"].get("answer", {}).get("few_shot")
        if count == 0:  # the cell's own example
            assert examples is None
            assert record(trial)["cases"] == len(tuning)
            continue
        drawn += 1
        assert isinstance(examples, list) and len(examples) == count
        for example in examples:
            country = example["country"]
            assert country not in HELD_OUT, "a held-out case was shown as a demonstration"
            assert example["output"] == dict(tuning.values())[country]
            assert example["hint"] == f"The country is {country}."  # computed by the chain
        # a trial is never scored on the cases it shows
        assert record(trial)["cases"] == len(tuning) - count
    assert drawn, "no trial drew demonstrations"
    # the same count and draw always name the same examples
    by_draw: dict[tuple[int, int], list[str]] = {}
    for trial in complete:
        key = (trial.params["answer.few_shot"], trial.params["answer.few_shot.draw"])
        shown = [e["country"] for e in
                 record(trial)["overrides"].get("answer", {}).get("few_shot") or []]
        assert by_draw.setdefault(key, shown) == shown

    best = max((t for t in complete if t.params["answer.few_shot"] > 0),
               key=lambda t: (t.values[0], -t.number))
    pinned = runner.invoke(main, ["pin", str(path), "--trial", str(best.number)])
    assert pinned.exit_code == 0, pinned.output
    assert "examples]" in pinned.output
    spec = compile_notebook(path)
    assert list(spec.stage("answer").params["few_shot"]) == \
        record(best)["overrides"]["answer"]["few_shot"]
    cell = next(c for c in json.loads(path.read_text())["cells"]
                if "".join(c["source"]).startswith("%%nux model answer"))
    body = "".join(cell["source"]).split("\n", 1)[1]
    assert yaml.safe_load(body)["tune"] == {"few_shot": {"demos": [0, 2], "sets": 3}}


@pytest.mark.parametrize(("entry", "message"), [
    ({"demos": [0, 40]}, "0 <= low < high <= 16"),
    ({"demos": [0, 2], "sets": 0}, "`sets`"),
    ({"demos": [0, 2], "extra": 1}, "0 <= low < high <= 16"),
])
def test_a_bad_demos_entry_is_a_clear_problem(tmp_path: Path, entry: dict[str, object],
                                              message: str) -> None:
    path = _workbook(tmp_path, entry)
    done = CliRunner().invoke(main, ["validate", str(path)])
    assert done.exit_code == 2
    assert message in done.output and "few_shot" in done.output
    assert "Traceback" not in done.output


def test_demos_tune_few_shot_of_a_model_stage_only(tmp_path: Path) -> None:
    wb = Workbook("plain", inputs={"text": "string"}, output="shout", base_dir=tmp_path)
    wb.code("shout", "def shout(text: str, *, k: int = 1) -> str:\n    return text * k\n",
            tune={"k": {"demos": [0, 2]}})
    problems = wb.check()
    assert any("few_shot" in p.message or "few_shot" in (p.fix or "") for p in problems)
