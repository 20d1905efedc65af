"""Several processes on one study: ``--workers`` on the default SQLite file and on a real
PostgreSQL server on loopback. Together they run exactly the budget, never the same trial twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nux_kernel import Workbook

pytestmark = pytest.mark.slow

NUX = str(Path(sys.executable).parent / "nux")


def workbook(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bank.jsonl").write_text("".join(
        json.dumps({"inputs": {"question": f"q{i}"}}) + "\n" for i in range(4)))
    wb = Workbook("pair", inputs={"question": "string"}, output="answer",
                  criteria=[{"type": "metric", "name": "close", "stage": "closeness"}],
                  test_bank="bank.jsonl", base_dir=folder)
    wb.code("answer", "def answer(question: str, *, x: float = 0.0) -> str:\n"
                      "    total = sum(i * i for i in range(2_500_000))\n"
                      "    return f'{question}|{x}|{total % 2}'\n",
            tune={"x": {"float": [0.0, 1.0]}})
    wb.code("closeness", "def closeness(answer: str) -> float:\n"
                         "    return 1.0 - abs(float(answer.split('|')[1]) - 0.3)\n")
    return wb.save(folder / "pair.ipynb")


def _check(study: optuna.Study, budget: int) -> None:
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == budget
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    params = [t.params["answer.x"] for t in complete]
    assert len(params) == len(set(params)), "two trials evaluated the same params"
    workers = {t.user_attrs["nux"]["worker"] for t in complete}
    assert len(workers) == 2, f"one process did every trial: {workers}"


def _run(path: Path, *args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([NUX, "tune", str(path), "--trials", "10", "--workers", "2",
                           "--objective", "close.mean", "--no-prune", "--seed", "5",
                           "--no-plots", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_two_workers_on_the_sqlite_study(tmp_path: Path) -> None:
    path = workbook(tmp_path)
    _run(path)
    storage = f"sqlite:///{tmp_path / '.nux' / 'studies.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    _check(optuna.load_study(study_name=summary.study_name, storage=storage), 10)


def test_two_workers_on_one_postgresql_study(tmp_path: Path, postgres_url: str) -> None:
    path = workbook(tmp_path)
    _run(path, "--storage", postgres_url, "--study", "shared")
    _check(optuna.load_study(study_name="shared", storage=postgres_url), 10)
    assert not (tmp_path / ".nux" / "studies.db").exists()
