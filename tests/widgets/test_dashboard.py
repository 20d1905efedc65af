"""The Panel study dashboard over a real Optuna SQLite storage, inline and served."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import panel as pn
import pytest
from click.testing import CliRunner

from nux_widgets.dashboard import default_storage_url, main, study_dashboard, trial_frame


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    """A workbook folder with a two-objective study of 8 trials in .nux/studies.db."""
    path = tmp_path / "wb.ipynb"
    path.write_text("{}")
    (tmp_path / ".nux").mkdir()
    study = optuna.create_study(study_name="wb-joint", storage=default_storage_url(path),
                                directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.set_user_attr("objectives", ["pass_rate", "p95_ms"])

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        t = trial.suggest_float("answer.temperature", 0.0, 1.0)
        k = trial.suggest_int("retrieve.top_k", 1, 8)
        return 1.0 - abs(t - 0.3) + k / 100, 100.0 + 20 * k

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=8)
    # what `nux tune` records when the bank has a held-out part
    study.set_user_attr("holdout", {"trial": 3, "cases": 4, "pass_rate": 0.75,
                                    "tuning": {"cases": 12, "pass_rate": 0.9167}})
    return path


def test_inline_dashboard_shows_pareto_history_importances_and_trials(workbook: Path) -> None:
    view = study_dashboard(workbook)
    tabs = [o for o in view.select(pn.Tabs)]
    titles = [t for tab in tabs for t in tab._names]
    assert titles == ["Pareto front", "History: pass_rate", "History: p95_ms", "Importances",
                      "Trials"]
    table = view.select(pn.widgets.Tabulator)[0]
    assert len(table.value) == 8
    assert {"trial", "state", "pass_rate", "p95_ms", "answer.temperature",
            "retrieve.top_k"} <= set(table.value.columns)
    header = "\n".join(str(pane.object) for pane in view.select(pn.pane.Markdown))
    assert ("held-out: trial 3 pass rate 0.75 on 4 held-out cases (tuning part: 0.9167 on 12 "
            "cases)") in header
    frame = trial_frame(optuna.load_study(study_name="wb-joint",
                                          storage=default_storage_url(workbook)))
    assert list(frame["trial"]) == list(range(8))


def test_missing_study_is_one_clear_line(tmp_path: Path) -> None:
    from nux_kernel.cli import main as nux

    result = CliRunner().invoke(main, [str(tmp_path / "none.ipynb")])
    assert result.exit_code == 2
    # the same command as `nux dashboard`, which nux-widgets adds to the nux CLI
    via_nux = CliRunner().invoke(nux, ["dashboard", str(tmp_path / "none.ipynb")])
    assert via_nux.exit_code == 2 and via_nux.output == result.output
    assert "no tuning study" in result.output and "nux tune" in result.output
    assert "Traceback" not in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_nux_dashboard_serves_on_loopback(workbook: Path) -> None:
    port = _free_port()
    script = Path(sys.executable).parent / "nux"
    process = subprocess.Popen([str(script), "dashboard", str(workbook), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "BOKEH_ALLOW_WS_ORIGIN": f"127.0.0.1:{port}"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    out = process.stdout.read().decode() if process.stdout else ""
                    raise AssertionError(f"nux dashboard did not serve: {out}") from None
                time.sleep(0.3)
        assert "NUX tuning" in page
    finally:
        process.terminate()
        process.wait(timeout=20)
