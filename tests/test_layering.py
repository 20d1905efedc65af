"""Imports point one way: widgets > exporters > kernel > runtime, and no package has a cycle.

nux_kuberay (the Pulumi program's package, copied into each exported folder) imports nothing
else of NUX, and only the exporters and the widgets import it.

The contracts are import-linter's, in ``pyproject.toml`` (``[tool.importlinter]``); this test
runs them on the checkout, and on a copy of the four packages with one bad import planted, to
show that each kind of bad import breaks them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"
#: Each package, and the folder that holds it.
PACKAGES = {"nux_runtime": REPO / "runtime", "nux_kernel": REPO,
            "nux_exporters": REPO / "exporters", "nux_kuberay": REPO / "exporters",
            "nux_widgets": REPO / "widgets"}


def lint(root: Path, folders: list[Path]) -> subprocess.CompletedProcess[str]:
    """import-linter with the project's contracts over the packages found in ``folders``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(f) for f in folders)}
    return subprocess.run([str(LINT), "--no-cache", "--no-logo",
                           "--config", str(REPO / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_imports_point_one_way_and_no_package_has_a_cycle() -> None:
    result = lint(REPO, sorted(set(PACKAGES.values())))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def _python_only(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n in ("__pycache__", "labextension", "node_modules")
            or ((Path(folder) / n).is_file() and not n.endswith(".py"))]


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("nux_runtime/spec.py", "import nux_kernel.catalog",
     "nux_runtime is not allowed to import nux_kernel"),
    ("nux_runtime/dag.py", "import nux_widgets.jobs",
     "nux_runtime is not allowed to import nux_widgets"),
    ("nux_kernel/compiler.py", "from nux_exporters import plan",
     "nux_kernel is not allowed to import nux_exporters"),
    ("nux_exporters/plan.py", "import nux_widgets.routes",
     "nux_exporters is not allowed to import nux_widgets"),
    ("nux_runtime/walker.py", "import optuna",
     "nux_runtime is not allowed to import optuna"),
    ("nux_kernel/executor.py", "import nux_kuberay.objects",
     "nux_kernel is not allowed to import nux_kuberay"),
    ("nux_kuberay/objects.py", "from nux_runtime import spec",
     "nux_kuberay is not allowed to import nux_runtime"),
    ("nux_kernel/tune/storage.py", "from nux_kernel.tune import driver",
     "No cycles are allowed in nux_kernel.tune"),
    ("nux_kernel/catalog.py", "import nux_kernel.compiler",
     "No cycles are allowed in nux_kernel"),
], ids=["runtime-kernel", "runtime-widgets", "kernel-exporters", "exporters-widgets",
        "runtime-optuna", "kernel-kuberay", "kuberay-runtime", "tune-cycle", "kernel-cycle"])
def test_a_planted_bad_import_breaks_the_contracts(tmp_path: Path, module: str, line: str,
                                                   broken: str) -> None:
    for name, folder in PACKAGES.items():
        shutil.copytree(folder / name, tmp_path / name, ignore=_python_only)
    planted = tmp_path / module
    planted.write_text(planted.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    result = lint(tmp_path, [tmp_path])
    assert result.returncode != 0, result.stdout
    assert broken in result.stdout, result.stdout
