"""``nux tune --ray``: trials run as Ray actor calls on a local Ray.

The command runs in its own process, which starts a private local Ray and shuts it down, so it
never competes with the session's Ray Serve cluster.
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
from nux_kernel.tune import best_trial

NUX = str(Path(sys.executable).parent / "nux")

pytestmark = pytest.mark.slow


def test_trials_run_on_local_ray(tmp_path: Path) -> None:
    (tmp_path / "bank.jsonl").write_text("".join(
        json.dumps({"inputs": {"question": f"q{i}"}}) + "\n" for i in range(3)))
    wb = Workbook("onray", inputs={"question": "string"}, output="answer",
                  criteria=[{"type": "metric", "name": "close", "stage": "closeness"}],
                  test_bank="bank.jsonl", base_dir=tmp_path)
    wb.code("answer", "def answer(question: str, *, k: int = 0) -> str:\n"
                      "    return f'{question}|{k}'\n", tune={"k": {"int": [0, 6]}})
    wb.code("closeness", "def closeness(answer: str) -> float:\n"
                         "    return 1.0 - abs(int(answer.split('|')[1]) - 4) / 6\n")
    path = wb.save(tmp_path / "onray.ipynb")
    proc = subprocess.Popen([NUX, "tune", str(path), "--trials", "12", "--seed", "2", "--ray",
                             "--objective", "close.mean", "--no-plots"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    stdout, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, (stdout[-1000:], stderr[-3000:])
    assert "feasible best trial" in stdout
    storage = f"sqlite:///{tmp_path / '.nux' / 'studies.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 12
    workers = {t.user_attrs["nux"]["worker"] for t in complete}
    assert all(w.startswith("ray:") for w in workers)
    # the stages ran in the Ray actors' processes, not in the driver
    assert all(int(w.rsplit(":", 1)[1]) != proc.pid for w in workers)
    best = best_trial(study)
    assert best is not None and best.params["answer.k"] == 4
    assert sum(t.user_attrs["nux"]["executions"] for t in complete) > 0
