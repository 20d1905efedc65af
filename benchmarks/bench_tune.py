"""Tuning: NUX's study against the Optuna objective a user writes by hand.

The baseline is what one writes without NUX: an Optuna objective that applies the trial's params
and re-runs the whole chain on every case, each trial (a fresh executor, no stage cache). NUX
tunes the same workbook through ``tune_workbook`` (SQLite storage, one executor and one stage
cache for all trials). Both use the same sampler (TPE), seed, suggestions, trial count and test
bank, in the same run, and report the wall time, the stage executions and the best score.

Two chains: one whose expensive upstream stage (a CPU-bound preprocessing step standing in for
embedding or retrieval) does not depend on the tuned params, and the flagship ``rag_qa``
example (hybrid retrieval over the ingested handbook, context, gemma-3-270m answer) on the first
cases of its bank.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from benchmarks.report import Row
from nux_kernel import Executor, Workbook
from nux_kernel.compiler import compile_notebook
from nux_kernel.evaluate import build_scorers, evaluate_spec, resolve_bank
from nux_kernel.evaluate.bank import Case, tuning_part
from nux_kernel.tune import SearchSpace, apply_params, tune_workbook
from nux_runtime.spec import WorkbookSpec

TOPIC = "tune"
SEED = 7
# Trial for trial: NUX scores every trial on the whole bank, as the baseline does (no pruning)
PRUNE = False
ROOT = Path(__file__).resolve().parent.parent


def _cases(spec: WorkbookSpec, base_dir: Path, cases: int) -> list[Case]:
    """The first ``cases`` cases of the bank's tuning part: what both sides score every trial
    on (``nux tune`` never searches on held-out cases)."""
    return tuning_part(resolve_bank(spec, base_dir))[:cases]


def _baseline(spec: WorkbookSpec, base_dir: Path, trials: int, cases: int) -> tuple[float, int,
                                                                                     float]:
    """The hand-written objective: wall seconds, stage executions, best quality."""
    bank = _cases(spec, base_dir, cases)
    space = SearchSpace.of(spec)
    executions = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal executions
        trial_spec = apply_params(spec, space.sample(trial, spec))
        executor = Executor(trial_spec, base_dir=base_dir, cache=False)
        try:
            report = evaluate_spec(trial_spec, bank, executor=executor,
                                   scorers=build_scorers(trial_spec, base_dir))
            executions += executor.executions
        finally:
            executor.close()
        return float(report.summary["quality"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=SEED))
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - start, executions, study.best_value


def _nux(spec: WorkbookSpec, base_dir: Path, trials: int, cases: int) -> tuple[float, int, float,
                                                                                float]:
    """NUX's study: wall seconds, stage executions, best quality, cache hit ratio."""
    bank = [c.to_dict() for c in _cases(spec, base_dir, cases)]
    start = time.perf_counter()
    study = tune_workbook(spec, base_dir=base_dir, trials=trials, seed=SEED,
                          objectives=["quality"], prune=PRUNE, cases=bank,
                          storage=f"sqlite:///{base_dir / 'bench-studies.db'}",
                          study_name=f"bench-{time.time_ns()}")
    wall = time.perf_counter() - start
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    executions = sum(int(t.user_attrs["nux"]["executions"]) for t in done)
    hits = sum(int(t.user_attrs["nux"]["cache_hits"]) for t in done)
    runs = sum(int(t.user_attrs["nux"]["stage_runs"]) for t in done)
    # the baseline knows no acceptance constraints: compare the best value over every trial
    best = max((t.values[0] for t in done), default=0.0)
    return wall, executions, best, hits / runs if runs else 0.0


def _rows(name: str, make: Callable[[Path], tuple[WorkbookSpec, Path]], trials: int,
          cases: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        spec, base_dir = make(Path(tmp))
        # warm the process-wide models both sides share, outside the timings
        evaluate_spec(spec, resolve_bank(spec, base_dir)[:1],
                      executor=Executor(spec, base_dir=base_dir, cache=False))
        base_wall, base_exec, base_best = _baseline(spec, base_dir, trials, cases)
        # NUX starts with an empty stage cache (the baseline ran without one); the rest of .nux
        # (the flagship's Qdrant store) stays: both sides read the same ingested collection
        shutil.rmtree(base_dir / ".nux" / "cache", ignore_errors=True)
        wall, executions, best, ratio = _nux(spec, base_dir, trials, cases)
    label = f"{name}, {trials} trials x {cases} cases"
    return [
        Row(TOPIC, f"{label}: wall time", wall, "s", "hand-written Optuna objective",
            base_wall, "at most half the baseline", wall <= base_wall / 2),
        Row(TOPIC, f"{label}: stage executions", executions, "calls",
            "hand-written Optuna objective", base_exec, "fewer than the baseline",
            executions < base_exec),
        Row(TOPIC, f"{label}: best quality", best, "", "hand-written Optuna objective",
            base_best, "same or better", best >= base_best - 1e-9),
        Row(TOPIC, f"{label}: stage cache hit ratio", ratio, "", goal="reported"),
    ]


PREP = ("def prep(question: str) -> str:\n"
        "    total = sum(i * i for i in range(800_000))\n"
        "    return f'{question}:{total % 3}'\n")
ANSWER = ("def answer(prep: str, *, k: int = 0, mode: str = 'a', boost: float = 0.0) -> str:\n"
          "    return f'{prep}|{k}|{mode}|{boost}'\n")
SCORE = ("def score(answer: str) -> float:\n"
         "    _, k, mode, boost = answer.split('|')\n"
         "    bonus = 0.1 * float(boost) if mode == 'b' else 0.0\n"
         "    return max(0.0, 1 - abs(int(k) - 7) / 10 - 0.1 + bonus)\n")


def synthetic(folder: Path) -> tuple[WorkbookSpec, Path]:
    (folder / "bank.jsonl").write_text("".join(
        json.dumps({"inputs": {"question": f"q{i}"}}) + "\n" for i in range(10)))
    wb = Workbook("bench-chain", inputs={"question": "string"}, output="answer",
                  criteria=[{"type": "metric", "name": "score", "stage": "score"}],
                  test_bank="bank.jsonl", base_dir=folder)
    wb.code("prep", PREP)
    wb.code("answer", ANSWER, tune={"k": {"int": [0, 10]}, "mode": {"choice": ["a", "b"]},
                                    "boost": {"float": [0.0, 1.0], "if": {"mode": "b"}}})
    wb.code("score", SCORE)
    return wb.compile(), folder


def flagship(folder: Path) -> tuple[WorkbookSpec, Path]:
    target = folder / "rag_qa"
    shutil.copytree(ROOT / "examples" / "rag_qa", target,
                    ignore=shutil.ignore_patterns(".nux", ".ipynb_checkpoints"))
    # the handbook is ingested once by its own batch workbook, as `nux run ingest.ipynb` does
    ingest = Executor(compile_notebook(target / "ingest.ipynb"), base_dir=target, cache=False)
    try:
        ingest.run({}).walk.raise_for_output()
    finally:
        ingest.close()
    return compile_notebook(target / "rag_qa.ipynb"), target


def run() -> list[Row]:
    rows = _rows("chain with an expensive upstream stage", synthetic, trials=20, cases=10)
    # the flagship at `nux tune`'s default budget of 20 trials, on the first 8 cases
    rows += _rows("flagship rag_qa", flagship, trials=20, cases=8)
    return rows



