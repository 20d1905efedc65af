"""Chunking as a search dimension: the ``tune:`` entries of the ingest notebook that fills a
collection join ``nux tune`` of the workbook that reads it. Each configuration is ingested once
into its own store, trials read it, the user's collection is never written, and ``nux pin``
writes the chosen configuration into the ingest notebook.

Real parts: qdrant.ingest and qdrant.search on the embedded store, MiniLM, Optuna's SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState

from nux_kernel import Workbook
from nux_kernel.cli import main
from nux_kernel.compiler import compile_notebook
from nux_kernel.evaluate.bank import load_bank
from nux_kernel.tune.storage import record
from nux_kernel.tune.trials import TrialRunner

pytestmark = pytest.mark.slow

DOCS = {
    "ferries.md": "# Ferries\n\n" + " ".join(
        f"Ferry {i} leaves the north pier at {7 + i % 10} o'clock and carries {20 + i} cars."
        for i in range(12)),
    "bakery.md": "# Bakery\n\n" + " ".join(
        f"The bakery sells {i + 3} kinds of rye bread on day {i} of the festival."
        for i in range(12)),
}
TOP = ("def top(retrieve: list[dict]) -> str:\n"
       "    return str(retrieve[0]['text']) if retrieve else ''\n")


def _project(folder: Path) -> Path:
    (folder / "docs").mkdir(parents=True)
    for name, text in DOCS.items():
        (folder / "docs" / name).write_text(text, encoding="utf-8")
    ingest = Workbook("docs-ingest", output="ingest", base_dir=folder)
    ingest.data("ingest", uses="qdrant.ingest", params={
        "folder": "docs", "collection": "notes", "chunk_size": 128, "chunk_overlap": 0},
        tune={"chunk_size": {"choice": [32, 128]}})
    ingest.save(folder / "ingest.ipynb")
    (folder / "bank.jsonl").write_text("".join(json.dumps(case) + "\n" for case in [
        {"inputs": {"question": "When does ferry 3 leave?"}, "expected": "Ferry 3"},
        {"inputs": {"question": "How many kinds of rye bread on day 5?"}, "expected": "day 5"},
        {"inputs": {"question": "Which ferry carries 29 cars?"}, "expected": "29 cars"},
        {"inputs": {"question": "Rye bread on day 2?"}, "expected": "day 2", "split": "holdout"},
    ]), encoding="utf-8")
    wb = Workbook("notes", inputs={"question": "string"}, output="top",
                  test_bank="bank.jsonl", criteria=[{"type": "contains", "name": "found"}],
                  base_dir=folder)
    wb.data("retrieve", uses="qdrant.search", inputs=["question"],
            params={"collection": "notes", "top_k": 1})
    wb.code("top", TOP)
    return wb.save(folder / "notes.ipynb")


def test_chunking_is_tuned_with_the_reader_built_once_per_config_and_pinned(
        tmp_path: Path) -> None:
    path = _project(tmp_path)
    runner = CliRunner()
    done = runner.invoke(main, ["tune", str(path), "--trials", "5", "--seed", "2",
                                "--objective", "found.pass_rate", "--no-prune", "--no-plots"])
    assert done.exit_code == 0, done.output
    storage = f"sqlite:///{tmp_path / '.nux' / 'studies.db'}"
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0],
                              storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 5
    sizes = {t.params["notes:ingest.chunk_size"] for t in complete}
    assert sizes == {32, 128}, "the sampler never tried both chunk sizes in 5 trials"
    for trial in complete:
        recorded = record(trial)["overrides"]
        assert recorded["notes:ingest"] == {"chunk_size": trial.params[
            "notes:ingest.chunk_size"]}
        assert "path" not in recorded.get("retrieve", {}), "a trial's store is not a param"

    # one store per configuration, each built once; the user's store was never written
    stores = sorted(p for p in (tmp_path / ".nux" / "tune" / "ingests").glob("notes-*")
                    if p.is_dir())
    assert len(stores) == 2
    built = {json.loads((s / "nux-ingest.json").read_text())["params"]["chunk_size"]
             for s in stores}
    assert built == {32, 128}
    assert not (tmp_path / ".nux" / "qdrant").exists()

    # the trials really read their configuration's store: small chunks answer with less text
    spec = compile_notebook(path)
    trials = TrialRunner(spec, tmp_path, load_bank(tmp_path / "bank.jsonl"), notebook=path)
    try:
        lengths = {}
        for size in (32, 128):
            prepared = trials.prepare({"notes:ingest": {"chunk_size": size}})
            report = trials.evaluate(prepared.spec, cases=prepared.cases)
            lengths[size] = max(len(str(c.actual)) for c in report.cases)
        assert lengths[32] < lengths[128]
        assert trials.ingests.builds == 0, "a configuration was ingested twice"
    finally:
        trials.close()

    best = max(complete, key=lambda t: (t.values[0], -t.number))
    pinned = runner.invoke(main, ["pin", str(path), "--trial", str(best.number)])
    assert pinned.exit_code == 0, pinned.output
    assert "ingest.ipynb" in pinned.output and "nux run ingest.ipynb" in pinned.output
    ingest = compile_notebook(tmp_path / "ingest.ipynb")
    assert ingest.stage("ingest").params["chunk_size"] == best.params[
        "notes:ingest.chunk_size"]
    served = compile_notebook(path)
    assert served.stage("retrieve").params.get("path", ".nux/qdrant") == ".nux/qdrant"
    assert "tune/ingests" not in path.read_text(), "a trial's store was pinned"
    cell = next(c for c in json.loads((tmp_path / "ingest.ipynb").read_text())["cells"]
                if "".join(c["source"]).startswith("%%nux data ingest"))
    body = yaml.safe_load("".join(cell["source"]).split("\n", 1)[1])
    assert body["tune"] == {"chunk_size": {"choice": [32, 128]}}
    assert cell["metadata"]["nux"]["pin"]["workbook"] == "notes.ipynb"

    # the export's ingest job ingests the pinned configuration in production
    exported = runner.invoke(main, ["export", str(path), "--out", str(tmp_path / "deploy")])
    assert exported.exit_code == 0, exported.output
    job = json.loads((tmp_path / "deploy" / "jobs" / "ingest-notes.json").read_text())
    stage = next(s for s in job["spec"]["stages"] if s["id"] == "ingest")
    assert stage["params"]["chunk_size"] == best.params["notes:ingest.chunk_size"]
