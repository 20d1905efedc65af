"""Golden trees: the exported folder of each workbook in ``GOLDEN``, byte for byte; the generated
Python passes ruff and mypy --strict.

A change to what ``nux export`` writes shows up here as a diff to review. After an intended
change, ``NUX_UPDATE_GOLDEN=1 pytest tests/exporters/test_golden.py`` rewrites the trees. Content
hashes (spec, catalog, components, stages) are replaced by named placeholders first, so that an
edit elsewhere in the catalog does not churn every tree; the determinism test compares raw bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nux_exporters import export
from nux_kernel import Workbook
from nux_runtime.spec import WorkbookSpec
from tests.exporters.workbooks import CLEAN, GOLDEN, REPO, built

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("NUX_UPDATE_GOLDEN") == "1"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _placeholders(spec: WorkbookSpec) -> dict[str, str]:
    names = {spec.hash: "<spec-hash>", spec.hash[:12]: "<spec-hash-12>"}
    if spec.catalog is not None:
        names[spec.catalog.hash] = "<catalog-hash>"
    for stage in spec.stages:
        names[stage.component.hash] = f"<component-hash:{stage.component.id}>"
        names[stage.hash] = f"<stage-hash:{stage.id}>"
    return names


# The wheels are binary and change with every runtime edit: the tree records their names, the
# determinism tests compare their bytes. The lock's versions are this machine's installed ones:
# tests/exporters/test_image.py checks them against importlib.metadata.
WHEEL_PLACEHOLDER = b"<wheel built at export time; bytes checked by the determinism tests>\n"
# The program's package is copied as it is: its source is reviewed where it lives
# (exporters/nux_kuberay/), and tests/exporters/test_kuberay.py checks the copy byte for byte.
PACKAGE_PLACEHOLDER = b"<exporters/nux_kuberay/ copied as it is>\n"
_LOCKED = re.compile(r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+$")


def _normalized(root: Path, spec: WorkbookSpec) -> dict[str, bytes]:
    names = sorted(_placeholders(spec).items(), key=lambda kv: -len(kv[0]))
    tree = {}
    for path, content in _tree(root).items():
        if path.startswith("wheels/"):
            tree[path] = WHEEL_PLACEHOLDER
            continue
        if path.startswith("nux_kuberay/"):
            tree[path] = PACKAGE_PLACEHOLDER
            continue
        if path.startswith("data/"):  # shipped as they are (a SQLite file is binary)
            tree[path] = content
            continue
        text = content.decode("utf-8")
        if path.endswith(".yaml"):  # YAML quotes a hash only when it starts with a digit
            for value, _ in names:
                text = text.replace(f': "{value}"', f": {value}")
        for value, name in names:
            text = text.replace(value, name)
        if path == "requirements.lock":
            text = _LOCKED.sub(r"\1==<installed>", text)
        tree[path] = text.encode("utf-8")
    return tree


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_export_matches_golden_tree(name: str, tmp_path: Path) -> None:
    spec, sources = built(name)
    result = export(spec, tmp_path / name, sources=sources)
    got = _normalized(result.out_dir, spec)
    golden = GOLDEN_DIR / name
    if UPDATE:
        shutil.rmtree(golden, ignore_errors=True)
        for path, content in got.items():
            (golden / path).parent.mkdir(parents=True, exist_ok=True)
            (golden / path).write_bytes(content)
    assert golden.is_dir(), f"no golden tree for {name}: run with NUX_UPDATE_GOLDEN=1"
    want = _tree(golden)
    assert sorted(got) == sorted(want)
    for path, content in want.items():
        assert got[path] == content, f"{name}/{path} differs from the golden file"


def test_same_workbook_gives_byte_identical_files(tmp_path: Path) -> None:
    spec = GOLDEN["faq-bot"]()
    first = _tree(export(spec, tmp_path / "a").out_dir)
    again = _tree(export(GOLDEN["faq-bot"](), tmp_path / "b").out_dir)
    assert first == again
    # A re-export over the same folder replaces it whole, with the same bytes.
    assert _tree(export(spec, tmp_path / "a").out_dir) == first


def _longest_name() -> WorkbookSpec:
    wb = Workbook("a-workbook-whose-name-takes-all-47-characters-x", inputs=["question"],
                  output="clean")
    wb.code("clean", CLEAN, scale={"min_replicas": 2, "max_replicas": 12})
    return wb.compile()


def test_generated_python_is_formatted_and_lint_clean(tmp_path: Path) -> None:
    config = REPO / "pyproject.toml"
    long_title = ("A workbook whose title runs on for quite a while, as titles that are "
                  "written for people and not machines often do")
    cases = {**{n: (lambda n=n: built(n), {}) for n in GOLDEN},
             "longest-name": (lambda: (_longest_name(), None), {}),
             "long-title": (lambda: (Workbook(long_title, inputs=["question"], output="clean")
                                     .code("clean", CLEAN).compile(), None), {"name": "titled"})}
    for name, (build, settings) in cases.items():
        spec, sources = build()
        program = export(spec, tmp_path / name, sources=sources,
                         **settings).out_dir / "__main__.py"
        for args in (["format", "--check"], ["check"]):
            done = subprocess.run([sys.executable, "-m", "ruff", *args, "--config", str(config),
                                   str(program)], capture_output=True, text=True, check=False)
            assert done.returncode == 0, f"{name}: ruff {args[0]}: {done.stdout}{done.stderr}"


def test_generated_program_passes_mypy_strict(tmp_path: Path) -> None:
    """``__main__.py`` and the package beside it, as a platform engineer's mypy reads them."""
    spec, sources = built("rag-bot")
    out = export(spec, tmp_path / "rag", sources=sources, targets=("pulumi",)).out_dir
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                           "--cache-dir", str(REPO / ".mypy_cache" / "exported"),
                           "__main__.py", "nux_kuberay"], cwd=out, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_value_names_its_cell(tmp_path: Path) -> None:
    result = export(GOLDEN["faq-bot"](), tmp_path / "faq")
    program = (result.out_dir / "workbook.yaml").read_text(encoding="utf-8")
    for stage in result.plan.stages:
        cell = f'cell "{stage.id}", line 1'
        for field in ("scale.min_replicas", "scale.max_replicas", "resources.num_cpus",
                      "params"):
            assert f"{cell}: {field}" in program, (stage.id, field)


def test_identical_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    script = ("import sys\n"
              "from nux_exporters import export, parse_override\n"
              "from tests.exporters.workbooks import rag_bot\n"
              "spec, sources = rag_bot()\n"
              "export(spec, sys.argv[1], sources=sources, secrets=('B_KEY', 'A_KEY'),\n"
              "       overrides=(parse_override('answer.max_replicas=5'),))\n")
    trees = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed-{seed}"
        subprocess.run([sys.executable, "-c", script, str(out)], cwd=REPO, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        trees.append(_tree(out))
    assert trees[0] == trees[1]
