"""Tuning and export as background jobs of the server, through HTTP: real Optuna storage beside
the workbook, the real exporters writing real files."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import optuna
import pytest

from tests.widgets.conftest import build_knob as knob

pytestmark = pytest.mark.usefixtures("jp_serverapp")

async def _start(jp_fetch: Any, kind: str, body: dict[str, Any]) -> str:
    response = await jp_fetch("nux", "jobs", kind, method="POST", body=json.dumps(body))
    assert response.code == 202
    return str(json.loads(response.body)["id"])


async def _wait(jp_fetch: Any, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        job = json.loads((await jp_fetch("nux", "jobs", job_id)).body)
        if job["status"] not in ("queued", "running"):
            return dict(job)
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


async def test_tune_job_reports_every_trial_and_the_pareto_front(
        jp_fetch: Any, jp_root_dir: Path) -> None:
    knob(jp_root_dir / "knob")
    kinds = json.loads((await jp_fetch("nux", "jobs")).body)["kinds"]
    assert {"tune", "export", "run-batch"} <= set(kinds)
    job = await _wait(jp_fetch, await _start(jp_fetch, "tune", {
        "path": "knob/knob.ipynb", "trials": 6, "seed": 3}))
    assert job["status"] == "done", job["problems"]
    trials = [e for e in job["events"] if "trial" in e]
    assert [e["trial"] for e in trials] == list(range(6))
    assert all(set(e["params"]) == {"answer.k", "answer.mode"} for e in trials)
    assert all(set(e["values"]) == {"quality", "p95_ms", "cost_per_request"} for e in trials)
    result = job["result"]
    assert result["trials"] == 6 and result["pareto"]
    assert result["directions"] == ["maximize", "minimize", "minimize"]
    storage = f"sqlite:///{jp_root_dir / 'knob' / '.nux' / 'studies.db'}"
    study = optuna.load_study(study_name=result["study"], storage=storage)
    assert len(study.trials) == 6


async def test_stopping_a_tune_job_keeps_what_it_found(jp_fetch: Any, jp_root_dir: Path
                                                       ) -> None:
    knob(jp_root_dir / "knob")
    job_id = await _start(jp_fetch, "tune", {"path": "knob/knob.ipynb", "trials": 2000})
    for _ in range(600):
        job = json.loads((await jp_fetch("nux", "jobs", job_id)).body)
        if any("trial" in e for e in job["events"]):
            break
        await asyncio.sleep(0.05)
    stopped = json.loads((await jp_fetch("nux", "jobs", job_id, "stop", method="POST",
                                         body="{}")).body)
    assert stopped["stop_requested"] is True
    job = await _wait(jp_fetch, job_id)
    assert job["status"] == "stopped", job["problems"]
    assert job["result"]["stopped"] is True
    assert 1 <= job["result"]["trials"] < 2000


async def test_tune_job_names_a_bad_request(jp_fetch: Any, jp_root_dir: Path) -> None:
    knob(jp_root_dir / "knob")
    job = await _wait(jp_fetch, await _start(jp_fetch, "tune", {
        "path": "knob/knob.ipynb", "trials": 0}))
    assert job["status"] == "error"
    assert job["problems"][0]["field"] == "trials"


async def test_export_job_writes_the_project_and_offers_a_zip(
        jp_fetch: Any, jp_root_dir: Path) -> None:
    knob(jp_root_dir / "knob")
    job = await _wait(jp_fetch, await _start(jp_fetch, "export", {
        "path": "knob/knob.ipynb", "out_dir": "deploy", "stack": "dev"}), timeout_s=300)
    assert job["status"] == "done", job["problems"]
    result = job["result"]
    assert result["out_dir"] == "knob/deploy"
    assert result["acceptance"]["passed"] is True
    written = {p.relative_to(jp_root_dir / "knob" / "deploy").as_posix()
               for p in (jp_root_dir / "knob" / "deploy").rglob("*") if p.is_file()}
    assert set(result["files"]) == written
    assert {"Pulumi.yaml", "Pulumi.dev.yaml", "__main__.py", "serve_config.yaml",
            "kubernetes.yaml", "README.md"} <= written
    assert result["next_steps"][-1] == "pulumi up"
    steps = [e["step"] for e in job["events"]]
    assert steps == ["evaluate", "export", "done"]
    archive = await jp_fetch("nux", "jobs", job["id"], "archive")
    assert archive.headers["Content-Type"] == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(archive.body)).namelist())
    assert written <= names


async def test_export_job_refuses_a_workbook_failing_its_acceptance(
        jp_fetch: Any, jp_root_dir: Path) -> None:
    knob(jp_root_dir / "knob", acceptance={"close": 0.99})
    job = await _wait(jp_fetch, await _start(jp_fetch, "export", {
        "path": "knob/knob.ipynb"}), timeout_s=300)
    assert job["status"] == "error"
    problem = job["problems"][0]
    assert problem["code"] == "export-acceptance" and "force" in problem["fix"]
    assert not (jp_root_dir / "knob" / "deploy").exists()
    outside = await _wait(jp_fetch, await _start(jp_fetch, "export", {
        "path": "knob/knob.ipynb", "out_dir": "../../elsewhere", "evaluate": False}))
    assert outside["status"] == "error" and outside["problems"][0]["code"] == "path"


async def test_a_workbooks_export_jobs_are_listed_for_a_reopened_page(
        jp_fetch: Any, jp_root_dir: Path) -> None:
    """A page that reopens a workbook finds that workbook's export jobs, newest first, and no
    other workbook's or other kind's jobs, with their progress and result."""
    knob(jp_root_dir / "one")
    knob(jp_root_dir / "two")
    first = await _wait(jp_fetch, await _start(jp_fetch, "export", {
        "path": "one/knob.ipynb", "evaluate": False}))
    second = await _wait(jp_fetch, await _start(jp_fetch, "export", {
        "path": "/one/knob.ipynb", "evaluate": False, "force": True}))
    other = await _wait(jp_fetch, await _start(jp_fetch, "export", {
        "path": "two/knob.ipynb", "evaluate": False}))
    batch = await _wait(jp_fetch, await _start(jp_fetch, "run-batch", {
        "path": "one/knob.ipynb"}))
    assert {first["status"], second["status"], other["status"], batch["status"]} == {"done"}

    async def listed(**params: str) -> list[dict[str, Any]]:
        body = json.loads((await jp_fetch("nux", "jobs", params=params)).body)
        return list(body["jobs"])

    mine = await listed(kind="export", path="one/knob.ipynb")
    assert [j["id"] for j in mine] == [second["id"], first["id"]]
    assert mine[0]["result"]["out_dir"] == "one/deploy"
    assert [e["step"] for e in mine[0]["events"]] == ["export", "done"]
    assert [j["id"] for j in await listed(kind="export", path="two/knob.ipynb")] == [other["id"]]
    assert [j["id"] for j in await listed(path="one/knob.ipynb")] == [
        batch["id"], second["id"], first["id"]]
    assert await listed(kind="tune", path="one/knob.ipynb") == []
    assert len(await listed()) == 4
