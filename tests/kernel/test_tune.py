"""``nux tune`` on real workbooks, the real executor and real Optuna SQLite storage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from nux_kernel import Workbook
from nux_kernel.cli import main
from nux_kernel.compiler import compile_notebook
from nux_kernel.tune import best_trial, pareto_front, tune_workbook
from nux_kernel.tune.space import SearchSpace, apply_params

PREP = ("def prep(question: str, *, salt: int = 0) -> str:\n"
        "    total = sum(i * i for i in range(20000))\n"
        "    return f'{question}:{total % 3}:{salt}'\n")
ANSWER = ("def answer(prep: str, *, k: int = 0, mode: str = 'a', boost: float = 0.0) -> str:\n"
          "    return f'{prep}|{k}|{mode}|{boost}'\n")
CLOSENESS = ("def closeness(answer: str) -> float:\n"
             "    prep, k, mode, boost = answer.split('|')\n"
             "    salt = int(prep.split(':')[-1])\n"
             "    return max(0.0, 1 - abs(int(k) - 7) / 10 - abs(salt - 2) / 10)\n")
SMALL = "def small(answer: str) -> bool:\n    return int(answer.split('|')[1]) <= 5\n"


def knob(folder: Path, *, cases: int = 6, acceptance: dict[str, float] | None = None,
         tune_prep: bool = False, small: bool = False) -> Workbook:
    """A chain whose score peaks at k=7 (and salt=2): prep (expensive) -> answer -> metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bank.jsonl").write_text("".join(
        json.dumps({"inputs": {"question": f"q{i}"}}) + "\n" for i in range(cases)))
    criteria: list[dict[str, Any]] = [{"type": "metric", "name": "close", "stage": "closeness"}]
    if small:
        criteria.append({"type": "metric", "name": "small", "stage": "small"})
    wb = Workbook("knob", inputs={"question": "string"}, output="answer", criteria=criteria,
                  acceptance=acceptance, test_bank="bank.jsonl", base_dir=folder)
    wb.code("prep", PREP, tune={"salt": {"int": [0, 3]}} if tune_prep else None)
    wb.code("answer", ANSWER, tune={"k": {"int": [0, 10]}, "mode": {"choice": ["a", "b"]},
                                    "boost": {"float": [0.0, 1.0], "if": {"mode": "b"}}})
    wb.code("closeness", CLOSENESS)
    if small:
        wb.code("small", SMALL)
    return wb


def _param_sets(study: optuna.Study) -> set[tuple[Any, ...]]:
    return {tuple(sorted(t.params.items())) for t in study.trials
            if t.state == TrialState.COMPLETE}


def test_reaches_the_best_value_and_reuses_the_expensive_upstream(tmp_path: Path) -> None:
    spec = knob(tmp_path).compile()
    study = tune_workbook(spec, base_dir=tmp_path, trials=25, seed=3)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 25
    best = best_trial(study)
    assert best is not None and best.params["answer.k"] == 7
    assert best.values[0] == pytest.approx(0.8)  # salt stays 0: 1 - 0.2
    # prep never changes: it ran once per case; answer and closeness once per case and new params
    executions = sum(t.user_attrs["nux"]["executions"] for t in complete)
    assert executions == 6 + 2 * 6 * len(_param_sets(study))
    hits = sum(t.user_attrs["nux"]["cache_hits"] for t in complete)
    runs = sum(t.user_attrs["nux"]["stage_runs"] for t in complete)
    assert runs == 25 * 3 * 6 and hits == runs - executions


def test_seeded_study_is_reproducible(tmp_path: Path) -> None:
    spec_a = knob(tmp_path / "a").compile()
    spec_b = knob(tmp_path / "b").compile()
    a = tune_workbook(spec_a, base_dir=tmp_path / "a", trials=8, seed=11)
    b = tune_workbook(spec_b, base_dir=tmp_path / "b", trials=8, seed=11)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]


def test_conditional_dimension_sampled_only_when_enabled(tmp_path: Path) -> None:
    spec = knob(tmp_path).compile()
    study = tune_workbook(spec, base_dir=tmp_path, trials=12, seed=5)
    modes = {t.params["answer.mode"] for t in study.trials}
    assert modes == {"a", "b"}
    for t in study.trials:
        assert ("answer.boost" in t.params) == (t.params["answer.mode"] == "b")


def test_constraints_exclude_infeasible_trials(tmp_path: Path) -> None:
    # k <= 5 is required (acceptance on the `small` criterion); the unconstrained best is k=7
    spec = knob(tmp_path, acceptance={"small": 1.0}, small=True).compile()
    study = tune_workbook(spec, base_dir=tmp_path, trials=25, seed=2,
                          objectives=["close.mean"], prune=False)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    infeasible = [t for t in trials if t.params["answer.k"] > 5]
    assert infeasible, "the sampler never tried an infeasible k"
    assert all(t.user_attrs["nux"]["constraints"][0] > 0 for t in infeasible)
    front = pareto_front(study)
    assert front and all(t.params["answer.k"] <= 5 for t in front)
    best = best_trial(study)
    assert best is not None and best.params["answer.k"] == 5
    # the raw optimum by value alone is infeasible: constraints are what moved the answer
    assert max(t.values[0] for t in trials) > best.values[0]


def test_multi_objective_front_holds_only_feasible_trials(tmp_path: Path) -> None:
    spec = knob(tmp_path, acceptance={"small": 1.0}, small=True).compile()
    study = tune_workbook(spec, base_dir=tmp_path, trials=15, seed=4)
    front = pareto_front(study)
    assert front
    assert all(all(c <= 0 for c in t.user_attrs["nux"]["constraints"]) for t in front)


def test_single_objective_prunes_on_growing_slices(tmp_path: Path) -> None:
    spec = knob(tmp_path, cases=8).compile()
    study = tune_workbook(spec, base_dir=tmp_path, trials=20, seed=7, objectives=["quality"])
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "no trial was pruned"
    for t in pruned:
        assert t.intermediate_values and t.user_attrs["nux"]["cases"] < 8
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert t.user_attrs["nux"]["cases"] == 8


def test_staged_mode_pins_upstream_to_its_best(tmp_path: Path) -> None:
    spec = knob(tmp_path, tune_prep=True).compile()
    study = tune_workbook(spec, base_dir=tmp_path, trials=8, seed=1, mode="staged",
                          objectives=["quality"], prune=False)
    assert study.study_name.endswith(".answer")
    storage = f"sqlite:///{tmp_path / '.nux' / 'studies.db'}"
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    first = optuna.load_study(study_name=study.study_name.replace(".answer", ".prep"),
                              storage=storage)
    assert first.study_name in names
    assert all(set(t.params) == {"prep.salt"} for t in first.trials)
    pinned = best_trial(first)
    assert pinned is not None
    for t in study.trials:
        assert set(t.params) <= {"answer.k", "answer.mode", "answer.boost"}
        assert t.user_attrs["nux"]["overrides"]["prep"] == {"salt": pinned.params["prep.salt"]}


def test_apply_params_changes_only_the_tuned_stage_hash(tmp_path: Path) -> None:
    spec = knob(tmp_path).compile()
    trial = apply_params(spec, {"answer": {"k": 3}})
    assert trial.stage("answer").params["k"] == 3
    assert trial.stage("answer").hash != spec.stage("answer").hash
    assert trial.stage("prep").hash == spec.stage("prep").hash
    assert set(SearchSpace.of(spec).names()) == {"answer.k", "answer.mode", "answer.boost"}


def test_cli_tune_show_and_pin(tmp_path: Path) -> None:
    wb = knob(tmp_path)
    wb.template("reply", inputs=["answer"], template="A: {answer}",
                tune={"template": {"choice": ["A: {answer}", "Answer: {answer}"]}})
    path = wb.save(tmp_path / "knob.ipynb")
    before = nbformat.read(str(path), as_version=4)
    runner = CliRunner()
    result = runner.invoke(main, ["tune", str(path), "--trials", "10", "--seed", "3",
                                  "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "feasible Pareto front" in result.output and "cache hit ratio" in result.output
    shown = runner.invoke(main, ["tune", str(path), "--show", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)[0]
    assert data["states"]["complete"] == 10 and data["cache_hit_ratio"] > 0
    page, *images = (Path(p) for p in data["plots"])
    assert page.suffix == ".html" and "plotly" in page.read_text()
    # the Pareto front, the history and the importances rendered offline with local Chromium
    assert len(images) == 3
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in images)
    trial = data["front"][0]["trial"]
    pinned = runner.invoke(main, ["pin", str(path), "--trial", str(trial)])
    assert pinned.exit_code == 0, pinned.output
    after = nbformat.read(str(path), as_version=4)
    params = data["front"][0]["params"]
    spec = compile_notebook(path)
    assert spec.stage("answer").params["k"] == params["answer.k"]
    assert spec.stage("reply").params["template"] == params["reply.template"]
    changed = [i for i, (a, b) in enumerate(zip(before.cells, after.cells, strict=True))
               if a != b]
    names = [after.cells[i].source.split("\n", 1)[0] for i in changed]
    assert names == ["%%nux code answer", "%%nux code reply"]
    for i in changed:
        prov = after.cells[i].metadata["nux"]["pin"]
        assert prov["trial"] == trial and prov["study"] == data["study"]
        assert set(prov["values"]) == {"quality", "p95_ms", "cost_per_request"}
        assert f"trial {trial}" in after.cells[i].source
    assert before.metadata == after.metadata
    # pinning does not change which study the workbook belongs to
    again = runner.invoke(main, ["tune", str(path), "--show", "--json", "--no-plots"])
    assert json.loads(again.output)[0]["study"] == data["study"]


def test_timeout_stops_asking(tmp_path: Path) -> None:
    path = knob(tmp_path).save(tmp_path / "knob.ipynb")
    result = CliRunner().invoke(main, ["tune", str(path), "--trials", "10000", "--timeout", "3",
                                       "--no-plots", "--json"])
    assert result.exit_code == 0, result.output
    states = json.loads(result.stdout)[0]["states"]
    assert 1 <= states["complete"] < 10000


def test_cli_user_errors(tmp_path: Path) -> None:
    path = knob(tmp_path).save(tmp_path / "knob.ipynb")
    runner = CliRunner()
    bad_stage = runner.invoke(main, ["tune", str(path), "--stage", "nope", "--trials", "1"])
    assert bad_stage.exit_code == 2 and "no stage 'nope'" in bad_stage.output
    nothing = runner.invoke(main, ["tune", str(path), "--stage", "prep", "--trials", "1"])
    assert nothing.exit_code == 2 and "nothing to tune" in nothing.output
    objective = runner.invoke(main, ["tune", str(path), "--objective", "speed"])
    assert objective.exit_code == 2 and "unknown objective 'speed'" in objective.output
    no_study = runner.invoke(main, ["pin", str(path), "--trial", "0"])
    assert no_study.exit_code == 2 and "no study" in no_study.output
    storage = runner.invoke(main, ["tune", str(path), "--storage", "nosuch://x", "--trials", "1"])
    assert storage.exit_code == 2 and "cannot open the study storage" in storage.output
