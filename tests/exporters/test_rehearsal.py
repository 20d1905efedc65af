"""The production rehearsal: the exported folder alone, in a fresh virtualenv holding only what
the image installs, runs its ingest job, serves its Serve config (unchanged but for the port)
and answers the test bank exactly as ``nux run`` does in-process (the flagship's first
``FLAGSHIP_CASES`` cases: every one is a model call on each side), and serving changes nothing
the export wrote.

Two workbooks with data: the flagship (``examples/rag_qa``: a Qdrant collection filled by its
ingest workbook, run as the exported job) and the ``sql-qa`` template (a SQLite file shipped in
``data/``). The folder is copied away from the checkout first, and the venv comes from
``tests/fixtures/export_venv.py`` (the Dockerfile's install line, nothing editable).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nux_exporters import export
from nux_kernel.cli import main
from tests.exporters.workbooks import REPO, TEMPLATES, notebook
from tests.fixtures.export_venv import ExportVenv, export_copy, image_env
from tests.fixtures.serve_child import post, serve_exported

pytestmark = pytest.mark.slow

WORKBOOKS = {
    "rag-qa": (REPO / "examples" / "rag_qa", "rag_qa.ipynb", "ingest.ipynb", 8),
    "sql-qa": (TEMPLATES / "sql-qa", "sql_qa.ipynb", None, None),
}


def _nux_run(workbook: Path, bank: Path | None = None) -> list[Any]:
    args = ["run", str(workbook), "--json", "--no-cache"]
    if bank is not None:
        args += ["--inputs", str(bank)]
    ran = CliRunner().invoke(main, args)
    assert ran.exit_code == 0, ran.output
    return [r.get("output") for r in json.loads(ran.stdout)]


@pytest.mark.parametrize("name", sorted(WORKBOOKS))
def test_exported_folder_alone_answers_the_bank_as_nux_run(
        name: str, export_venv: Any, tmp_path: Path) -> None:
    source, served_name, ingest_name, limit = WORKBOOKS[name]
    work = tmp_path / "workbook"
    shutil.copytree(source, work, ignore=shutil.ignore_patterns(".nux"))
    lines = [line for line in (work / "cases.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()][:limit]
    bank = tmp_path / "cases.jsonl"
    bank.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    cases = [json.loads(line) for line in lines]
    # In-process, as the data scientist runs it: ingest (if any), then the bank.
    if ingest_name is not None:
        _nux_run(work / ingest_name)
    expected = _nux_run(work / served_name, bank)
    assert len(expected) == len(cases) and all(e is not None for e in expected)

    spec, sources = notebook(work / served_name)
    exported = export(spec, tmp_path / "export" / name, sources=sources).out_dir
    folder = export_copy(exported, tmp_path / "elsewhere")  # the folder alone
    written = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    shutil.rmtree(work)  # nothing of the notebook's folder is left to lean on
    venv: ExportVenv = export_venv(folder)
    for job in sorted((folder / "jobs").glob("*.json")) if (folder / "jobs").is_dir() else []:
        ran = venv.run(["python", "-m", "nux_runtime.jobs", "run",
                        job.relative_to(folder).as_posix()], cwd=folder, timeout=900)
        report = json.loads(ran.stdout.strip().splitlines()[-1])
        assert report["output"]["chunks"] > 0, ran.stdout
    with serve_exported(venv.python, folder, tmp_path, env=venv.env(**image_env(folder))) as base:
        served = [post(f"{base}/v1/run", c["inputs"]) for c in cases]
    assert [s["output"] for s in served] == expected
    assert {s["spec_hash"] for s in served} == {spec.hash}
    changed = sorted(str(p.relative_to(folder)) for p, data in written.items()
                     if not p.is_file() or p.read_bytes() != data)
    assert not changed, f"the job or serving changed what the export wrote: {changed}"
