"""The production rehearsal: the exported folder alone, in a fresh virtualenv holding only what
the image installs, runs its ingest job, serves its Serve config (unchanged but for the port)
and answers the whole test bank exactly as ``nux run`` does in-process.

Two workbooks with data: the flagship (``examples/rag_qa``: a Qdrant collection filled by its
ingest workbook, run as the exported job) and the ``sql-qa`` template (a SQLite file shipped in
``data/``). The folder is copied away from the checkout first, and the venv comes from
``tests/fixtures/export_venv.py`` (the Dockerfile's install line, nothing editable).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from nux_exporters import export
from nux_kernel.cli import main
from tests.exporters.test_parity import SERVE_RUN, _post, _wait_ready
from tests.exporters.workbooks import REPO, TEMPLATES, notebook
from tests.fixtures.export_venv import ExportVenv, export_copy
from tests.fixtures.ray_serve import free_port

pytestmark = pytest.mark.slow

WORKBOOKS = {
    "rag-qa": (REPO / "examples" / "rag_qa", "rag_qa.ipynb", "ingest.ipynb"),
    "sql-qa": (TEMPLATES / "sql-qa", "sql_qa.ipynb", None),
}


def _nux_run(workbook: Path, bank: Path | None = None) -> list[Any]:
    args = ["run", str(workbook), "--json", "--no-cache"]
    if bank is not None:
        args += ["--inputs", str(bank)]
    ran = CliRunner().invoke(main, args)
    assert ran.exit_code == 0, ran.output
    return [r.get("output") for r in json.loads(ran.stdout)]


def _serve(venv: ExportVenv, folder: Path, tmp_path: Path, cases: list[dict[str, Any]]
           ) -> list[dict[str, Any]]:
    config = yaml.safe_load((folder / "serve_config.yaml").read_text(encoding="utf-8"))
    port = free_port()
    config["http_options"]["port"] = port
    local = tmp_path / "serve_config.yaml"  # the exported config, only the port changed
    local.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    script = tmp_path / "serve_run.py"
    script.write_text(SERVE_RUN, encoding="utf-8")
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        child = subprocess.Popen([str(venv.python), str(script), str(local)], cwd=folder,
                                 env=venv.env(), stdout=sink, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/healthz", child, log, limit_s=600)
        return [_post(f"{base}/v1/run", c["inputs"]) for c in cases]
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGINT)
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=30)


@pytest.mark.parametrize("name", sorted(WORKBOOKS))
def test_exported_folder_alone_answers_the_bank_as_nux_run(
        name: str, export_venv: Any, tmp_path: Path) -> None:
    source, served_name, ingest_name = WORKBOOKS[name]
    work = tmp_path / "workbook"
    shutil.copytree(source, work, ignore=shutil.ignore_patterns(".nux"))
    bank = work / "cases.jsonl"
    cases = [json.loads(line) for line in bank.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    # In-process, as the data scientist runs it: ingest (if any), then the whole bank.
    if ingest_name is not None:
        _nux_run(work / ingest_name)
    expected = _nux_run(work / served_name, bank)
    assert len(expected) == len(cases) and all(e is not None for e in expected)

    spec, sources = notebook(work / served_name)
    exported = export(spec, tmp_path / "export" / name, sources=sources).out_dir
    folder = export_copy(exported, tmp_path / "elsewhere")  # the folder alone
    shutil.rmtree(work)  # nothing of the notebook's folder is left to lean on
    venv: ExportVenv = export_venv(folder)
    for job in sorted((folder / "jobs").glob("*.json")) if (folder / "jobs").is_dir() else []:
        ran = venv.run(["python", "-m", "nux_runtime.jobs", "run",
                        job.relative_to(folder).as_posix()], cwd=folder, timeout=900)
        report = json.loads(ran.stdout.strip().splitlines()[-1])
        assert report["output"]["chunks"] > 0, ran.stdout
    served = _serve(venv, folder, tmp_path, cases)
    assert [s["output"] for s in served] == expected
    assert {s["spec_hash"] for s in served} == {spec.hash}
