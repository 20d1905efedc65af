"""Kill -9 in the middle of ``nux tune``, run the same command again: nothing completed is
lost, the interrupted trial is marked failed and retried with the same params, and the study
ends with exactly the budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from nux_kernel import Workbook

pytestmark = pytest.mark.slow

NUX = str(Path(sys.executable).parent / "nux")
BUDGET = 8


def workbook(folder: Path) -> Path:
    (folder / "bank.jsonl").write_text("".join(
        json.dumps({"inputs": {"question": f"q{i}"}}) + "\n" for i in range(3)))
    wb = Workbook("resume", inputs={"question": "string"}, output="answer",
                  criteria=[{"type": "metric", "name": "close", "stage": "closeness"}],
                  test_bank="bank.jsonl", base_dir=folder)
    wb.code("answer", "def answer(question: str, *, k: int = 0) -> str:\n"
                      "    total = sum(i * i for i in range(12_000_000))\n"
                      "    return f'{question}|{k}|{total % 2}'\n",
            tune={"k": {"int": [0, 50]}})
    wb.code("closeness", "def closeness(answer: str) -> float:\n"
                         "    return 1.0 - abs(int(answer.split('|')[1]) - 30) / 50\n")
    return wb.save(folder / "resume.ipynb")


def test_kill_then_rerun_resumes(tmp_path: Path) -> None:
    path = workbook(tmp_path)
    command = [NUX, "tune", str(path), "--trials", str(BUDGET), "--seed", "4", "--objective",
               "close.mean", "--no-prune", "--heartbeat", "1", "--no-plots"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    storage = f"sqlite:///{tmp_path / '.nux' / 'studies.db'}"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    study = None
    deadline = time.monotonic() + 240
    # a trial answered from the stage cache (params seen before) completes at once: kill while
    # one has been running a while, so the kill lands inside it and not between two trials
    running_since: dict[int, float] = {}
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if not (tmp_path / ".nux" / "studies.db").exists():
                continue
            try:  # the command may still be creating the tables
                summaries = optuna.get_all_study_summaries(storage)
                if not summaries:
                    continue
                study = optuna.load_study(study_name=summaries[0].study_name, storage=storage)
                trials = study.get_trials(deepcopy=False)
            except SQLAlchemyError:
                continue
            now = time.monotonic()
            running = [t.number for t in trials if t.state == TrialState.RUNNING]
            for number in running:
                running_since.setdefault(number, now)
            complete = sum(t.state == TrialState.COMPLETE for t in trials)
            if complete >= 2 and any(now - running_since[n] >= 0.4 for n in running):
                break
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert study is not None, "the study never started"
    before = {t.number: (t.params, t.values) for t in study.get_trials()
              if t.state == TrialState.COMPLETE}
    interrupted = [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    assert 2 <= len(before) < BUDGET and len(interrupted) == 1
    lost = interrupted[0]

    time.sleep(4)  # past the grace period (3 heartbeats of 1 s): the trial is now stale
    try:
        again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        states = [(t.number, t.state.name, t.params) for t in
                  optuna.load_study(study_name=study.study_name, storage=storage).get_trials()]
        pytest.fail(f"the rerun did not finish; trials: {states}")
    assert again.returncode == 0, again.stderr[-2000:]

    study = optuna.load_study(study_name=study.study_name, storage=storage)
    trials = {t.number: t for t in study.get_trials()}
    for number, (params, values) in before.items():  # nothing completed was lost
        assert trials[number].state == TrialState.COMPLETE
        assert (trials[number].params, trials[number].values) == (params, values)
    assert trials[lost.number].state == TrialState.FAIL
    retries = [t for t in trials.values()
               if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == lost.params
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == BUDGET


def test_a_trial_killed_before_its_first_beat_goes_stale(tmp_path: Path) -> None:
    """The window between creating a running trial and its first heartbeat: a process killed
    there left a trial that never beat. The next process to look gives it a first beat, and a
    grace period later it is failed and enqueued again like any other lost trial."""
    from nux_kernel.tune.storage import open_storage

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    plain = optuna.storages.RDBStorage(url)  # creates trials without beating, like a kill
    study = optuna.create_study(study_name="s", storage=plain)
    lost = study.ask({"k": optuna.distributions.IntDistribution(0, 9)})

    storage = open_storage(url, heartbeat_s=1)
    study = optuna.load_study(study_name="s", storage=storage)
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials()[0].state == TrialState.RUNNING  # beaten once, not yet stale
    time.sleep(4.5)  # past the grace period of 3 s
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert [t.state for t in trials[1:]] == [TrialState.WAITING]
    assert trials[1].params == lost.params
