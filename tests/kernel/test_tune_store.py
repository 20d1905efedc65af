"""Tuning the flagship in several processes while they all read the embedded Qdrant store:
``--workers 2`` and ``--ray`` finish every trial of the budget (a process that finds the store
held reads a snapshot of it), the tuner searches on the tuning part of the bank only and scores
the best trial on the held-out part; an ingest while another process holds the store fails with
a problem naming that process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

NUX = str(Path(sys.executable).parent / "nux")
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def flagship(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The flagship on a 4-case slice of its bank (one case held out), ingested."""
    folder = tmp_path_factory.mktemp("store") / "rag_qa"
    shutil.copytree(REPO / "examples" / "rag_qa", folder,
                    ignore=shutil.ignore_patterns(".nux", "build"))
    lines = (folder / "cases.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    cases = [json.loads(line) for line in lines]
    cases[-1]["split"] = "holdout"
    (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases),
                                        encoding="utf-8")
    done = subprocess.run([NUX, "run", "ingest.ipynb"], cwd=folder, env=ENV, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def _study(folder: Path, name: str) -> optuna.Study:
    storage = f"sqlite:///{folder / '.nux' / name}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _tune(folder: Path, db: str, *args: str) -> optuna.Study:
    done = subprocess.run(
        [NUX, "tune", "rag_qa.ipynb", "--trials", "2", "--stage", "retrieve", "--seed", "3",
         "--objective", "correct.pass_rate", "--no-prune", "--no-plots",
         "--storage", f"sqlite:///{folder / '.nux' / db}", *args],
        cwd=folder, env=ENV, text=True, capture_output=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-1000:], done.stderr[-3000:])
    assert "already accessed" not in done.stdout + done.stderr
    study = _study(folder, db)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, [
        t.user_attrs.get("nux", {}).get("error") for t in trials]
    # searched on the three tuning cases, scored the best on the held-out one
    assert all(t.user_attrs["nux"]["cases"] == 3 for t in trials)
    held = study.user_attrs["holdout"]
    assert held["cases"] == 1 and held["tuning"]["cases"] == 3
    return study


def test_two_workers_read_the_store_and_finish_every_trial(flagship: Path) -> None:
    study = _tune(flagship, "workers.db", "--workers", "2")
    workers = {t.user_attrs["nux"]["worker"] for t in study.get_trials()}
    assert len(workers) == 2, workers


def test_ray_actors_read_the_store_and_finish_every_trial(flagship: Path) -> None:
    study = _tune(flagship, "ray.db", "--ray")
    assert all(t.user_attrs["nux"]["worker"].startswith("ray:") for t in study.get_trials())


@pytest.fixture
def holder(flagship: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that holds the store, as a kernel or `nux serve` does."""
    code = ("import sys, time\n"
            "from nux_runtime.components.qdrant_store import get_client\n"
            f"get_client(path={str((flagship / '.nux' / 'qdrant').resolve())!r})\n"
            "print('holding', flush=True)\n"
            "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    yield proc
    proc.kill()
    proc.wait()


def test_an_ingest_beside_a_holder_names_it_and_a_search_reads_a_snapshot(
        flagship: Path, holder: subprocess.Popen[str]) -> None:
    done = subprocess.run([NUX, "run", "ingest.ipynb", "--json"], cwd=flagship, env=ENV,
                          text=True, capture_output=True, timeout=600)
    assert done.returncode == 1, done.stderr[-2000:]
    text = json.dumps(json.loads(done.stdout)[0]["errors"]) + done.stderr
    assert f"process {holder.pid}" in text and "stop that process" in text, text[-2000:]
    assert "Traceback" not in text
    search = subprocess.run(
        [NUX, "run", "rag_qa.ipynb", "-i", "question=Which tool sends on-call pages?",
         "--stage", "retrieve", "--json", "--no-cache"],
        cwd=flagship, env=ENV, text=True, capture_output=True, timeout=600)
    (retrieve,) = json.loads(search.stdout)[0]["traces"]
    assert retrieve["status"] == "ok", (retrieve, search.stderr[-2000:])
    assert "'chunk'" in retrieve["output_preview"]
