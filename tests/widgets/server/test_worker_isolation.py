"""A DAG-panel run executes the notebook's code in the workbook's worker process, never in the
Jupyter server: a code cell that segfaults, loops forever or exhausts memory costs its run (failed
on its stage, through the same route the panel uses) while the server keeps answering, and the
next run gets a fresh worker that still answers from the stage cache on disk."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from nux_kernel.catalog import DEFAULT_CATALOG
from tests.widgets.conftest import build_workbook

pytestmark = pytest.mark.usefixtures("jp_serverapp")

CRASH = ("%%nux code shout\nimport os\nimport signal\n\n"
         "def shout(clean: str) -> str:\n"
         "    os.kill(os.getpid(), signal.SIGSEGV)\n"
         "    return clean\n")
SPIN = ("%%nux code shout\ndef shout(clean: str) -> str:\n"
        "    while True:\n"
        "        pass\n")
# Bounded (4 GiB) so that a missing limit cannot take the machine down: the worker's limit
# (1.5 GiB, below) stops it first.
HOG = ("%%nux code shout\ndef shout(clean: str) -> str:\n"
       "    blocks = []\n"
       "    for _ in range(64):\n"
       "        blocks.append(bytearray(1 << 26))\n"
       "    return 'no memory limit'\n")


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nux_widgets": True}},
            "NuxWorkers": {"run_timeout_s": 6.0, "memory_limit_mb": 1536}}


def _catalog(root: Path) -> str:
    """The default catalog, with `os` and `signal` allowed so a cell can crash its process."""
    catalog = yaml.safe_load(Path(DEFAULT_CATALOG).read_text())
    catalog["allow_imports"] = [*catalog["allow_imports"], "os", "signal"]
    (root / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    return "catalog.yaml"


def _with_shout(workbook: Path, source: str) -> dict[str, Any]:
    notebook = json.loads(workbook.read_text())
    next(c for c in notebook["cells"] if c["id"] == "shout")["source"] = source
    return dict(notebook)


async def test_a_crash_a_hang_and_a_memory_hog_cost_their_run_not_the_server(
        jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> None:
    workbook = build_workbook(jp_root_dir / "books")
    catalog = _catalog(jp_root_dir)
    pool = jp_serverapp.web_app.settings["nux_workers"]

    async def run(notebook: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"path": "books/shout.ipynb", "catalog": catalog,
                                "inputs": {"question": " hi "}}
        if notebook is not None:
            body["notebook"] = notebook
        response = await jp_fetch("nux", "run", method="POST", body=json.dumps(body))
        return dict(json.loads(response.body))

    first = await run()
    assert first["ok"] is True and first["output"] == "Q: hi\nA: HIHI"
    worker = pool.for_workbook((jp_root_dir / "books" / "shout.ipynb").resolve())
    assert worker.starts == 1 and worker.pid != os.getpid()

    # 1. A segfault: the run fails on the stage that crashed, the rest was not run.
    crashed = await run(_with_shout(workbook, CRASH))
    assert crashed["ok"] is False and crashed["output"] is None
    traces = {t["stage"]: t for t in crashed["traces"]}
    assert traces["clean"]["status"] == "ok"
    assert traces["shout"]["status"] == "error"
    assert "crashed (SIGSEGV)" in traces["shout"]["reason"]
    assert traces["answer"]["status"] == "skipped"
    assert [(e["stage"], e["category"]) for e in crashed["errors"]] == [("shout", "error")]
    assert "Traceback" not in json.dumps(crashed)

    # The server answers, and the next run gets a fresh worker that reuses the stage cache.
    assert (await jp_fetch("nux", "catalog")).code == 200
    again = await run()
    assert again["output"] == first["output"]
    assert [t["stage"] for t in again["traces"]] == ["clean", "shout", "answer"]
    assert all(t["status"] == "ok" and t["cache_hit"] for t in again["traces"])
    assert worker.starts == 2

    # 2. An endless loop: the server keeps answering while it spins; the run times out.
    spinning = asyncio.ensure_future(run(_with_shout(workbook, SPIN)))
    await asyncio.sleep(1.0)
    assert not spinning.done()
    validated = await jp_fetch("nux", "validate", method="POST",
                               body=json.dumps({"path": "books/shout.ipynb"}))
    assert json.loads(validated.body)["ok"] is True
    assert not spinning.done()
    hung = await spinning
    assert hung["ok"] is False
    shout = next(t for t in hung["traces"] if t["stage"] == "shout")
    assert shout["status"] == "error" and "did not finish in 6 s" in shout["reason"]
    assert [(e["stage"], e["category"]) for e in hung["errors"]] == [("shout", "timeout")]

    # 3. Memory: the worker's limit stops the cell with a MemoryError on its stage.
    hog = await run(_with_shout(workbook, HOG))
    assert hog["ok"] is False
    assert [e["stage"] for e in hog["errors"]] == ["shout"]
    assert "MemoryError" in hog["errors"][0]["cause"]

    # Every failure was the run's: the server still runs the workbook as before.
    last = await run()
    assert last["output"] == first["output"] and all(t["cache_hit"] for t in last["traces"])
