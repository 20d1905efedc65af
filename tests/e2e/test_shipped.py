"""Every template and example compiles cleanly, and `nux new` copies templates that do too."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from nux_kernel.catalog import load_catalog
from nux_kernel.cli import main
from nux_kernel.cli.new import available_templates
from nux_kernel.evaluate.bank import load_bank
from nux_kernel.notebook import read_notebook
from tests.e2e.workbooks import (
    EXAMPLES,
    INGEST_NOTEBOOKS,
    ROOT,
    SHIPPED,
    TEMPLATE_NAMES,
    TEMPLATES,
    Shipped,
)

IDS = [s.name for s in SHIPPED]


@pytest.mark.parametrize("shipped", SHIPPED, ids=IDS)
def test_shipped_workbook_validates(shipped: Shipped) -> None:
    result = CliRunner().invoke(main, ["validate", str(shipped.path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["problems"] == []
    catalog = load_catalog()
    used = {c.stage: c for c in read_notebook(shipped.path).cells}
    assert set(report["stages"]) == set(used)
    for component in shipped.components:
        assert catalog.get(component) is not None


@pytest.mark.parametrize("notebook", INGEST_NOTEBOOKS,
                         ids=[str(p.relative_to(ROOT)) for p in INGEST_NOTEBOOKS])
def test_ingest_workbook_validates_and_feeds_the_searched_collections(notebook: Path) -> None:
    result = CliRunner().invoke(main, ["spec", str(notebook)])
    assert result.exit_code == 0, result.output
    written = {s["params"]["collection"] for s in json.loads(result.stdout)["stages"]
               if s["component"]["id"] == "qdrant.ingest"}
    served = CliRunner().invoke(main, ["spec", str(notebook.parent / "rag_qa.ipynb")])
    searched = set()
    for stage in json.loads(served.stdout)["stages"]:
        if stage["component"]["id"] == "qdrant.search":
            searched.add(stage["params"]["collection"])
            searched.update(stage["tune"].get("collection", {}).get("choices") or ())
    assert searched and searched == written


@pytest.mark.parametrize("shipped", SHIPPED, ids=IDS)
def test_shipped_workbook_explains_itself_and_has_its_bank(shipped: Shipped) -> None:
    notebook = nbformat.read(str(shipped.path), as_version=4)
    markdown = [c for c in notebook.cells if c.cell_type == "markdown"]
    assert markdown and markdown[0].source.startswith("# "), "opens with a titled explanation"
    assert sum(len(c.source.split()) for c in markdown) > 150
    meta = notebook.metadata["nux"]
    assert meta["criteria"] and meta["acceptance"]
    spec = CliRunner().invoke(main, ["spec", str(shipped.path)])
    assert spec.exit_code == 0, spec.output
    stages = json.loads(spec.stdout)["stages"]
    assert any(stage["tune"] for stage in stages), "a search space to tune"
    cases = load_bank(shipped.folder / meta["test_bank"])
    minimum = 40 if shipped.folder.parent == EXAMPLES else 25
    assert len(cases) >= minimum
    inputs = set(meta["inputs"])
    assert all(set(case.inputs) == inputs and case.expected not in (None, "") for case in cases)


def test_flagship_answers_are_in_its_corpus() -> None:
    corpus = " ".join(p.read_text(encoding="utf-8") for p in
                      (EXAMPLES / "rag_qa" / "corpus").iterdir()).casefold()
    cases = load_bank(EXAMPLES / "rag_qa" / "cases.jsonl")
    assert [c.expected for c in cases if str(c.expected).casefold() not in corpus] == []
    assert len(list((EXAMPLES / "rag_qa" / "corpus").iterdir())) >= 30


def test_every_template_folder_is_offered() -> None:
    offered = available_templates()
    assert set(TEMPLATE_NAMES) <= set(offered)
    assert {p.name for p in TEMPLATES.iterdir() if p.is_dir()} == set(TEMPLATE_NAMES)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_nux_new_copies_a_template_that_validates(name: str, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    result = CliRunner().invoke(main, ["new", "--template", name, str(target)])
    assert result.exit_code == 0, result.output
    source = TEMPLATES / name
    expected = sorted(str(p.relative_to(source)) for p in source.rglob("*")
                      if p.is_file() and ".nux" not in p.parts)
    copied = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert copied == expected
    for notebook in target.glob("*.ipynb"):
        assert f"nux validate {notebook}" in result.output
        validated = CliRunner().invoke(main, ["validate", str(notebook)])
        assert validated.exit_code == 0, validated.output


def test_nux_new_unknown_template_names_the_available_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new", "--template", "rag_qa", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "there is no template 'rag_qa'" in result.output
    assert "did you mean 'rag-qa'?" in result.output
    for name in TEMPLATE_NAMES:
        assert name in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_nux_new_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(main, ["new", "--template", "summarize", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a folder that is not empty" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert CliRunner().invoke(main, ["new", "-t", "summarize", str(empty)]).exit_code == 0
    assert (empty / "summarize.ipynb").is_file()


def test_sql_qa_database_is_built_from_its_sql(tmp_path: Path) -> None:
    import sqlite3

    folder = TEMPLATES / "sql-qa"
    built = sqlite3.connect(tmp_path / "fresh.db")
    built.executescript((folder / "shop.sql").read_text(encoding="utf-8"))
    shipped = sqlite3.connect(f"file:{folder / 'data.db'}?mode=ro", uri=True)
    query = ("SELECT o.id, c.name, c.city, p.name, o.quantity, o.status, o.ordered_on "
             "FROM orders o JOIN customers c ON c.id = o.customer_id "
             "JOIN products p ON p.id = o.product_id ORDER BY o.id")
    assert shipped.execute(query).fetchall() == built.execute(query).fetchall()


def test_demo_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(EXAMPLES / "rag_qa" / "demo.sh")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "examples/rag_qa/demo.sh" in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_wheel_installs_every_template_file(tmp_path: Path) -> None:
    """The root setup.cfg's data_files list every file of templates/ (and nothing else)."""
    import shutil
    import sys
    import zipfile

    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, source / name)
    (source / "README.md").touch()
    ignore = shutil.ignore_patterns(".nux", "__pycache__")
    shutil.copytree(ROOT / "nux_kernel", source / "nux_kernel", ignore=ignore)
    shutil.copytree(TEMPLATES, source / "templates", ignore=ignore)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("nux-*.whl"))
    prefix = next(n for n in zipfile.ZipFile(wheel).namelist() if ".data/data/" in n)
    prefix = prefix[:prefix.index(".data/data/")] + ".data/data/share/nux/templates/"
    shipped = sorted(n.removeprefix(prefix) for n in zipfile.ZipFile(wheel).namelist()
                     if n.startswith(prefix))
    expected = sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*")
                      if p.is_file() and ".nux" not in p.parts and "__pycache__" not in p.parts)
    assert shipped == expected
