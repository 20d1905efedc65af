"""Untrusted notebooks: `nux validate`, `nux spec` and `nux export` read them and run nothing.

Each notebook of the hostile corpus (tests/kernel/hostile.py) goes through the real CLI in a
subprocess watched by an audit hook: no file written, no socket, no process, no traceback, and
the problem NUX names. The watcher itself is shown to catch a write.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.hostile import BANK_CASES, corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("hostile")
    expected = {}
    for name, (data, code) in corpus(folder / "pwned").items():
        (folder / f"{name}.ipynb").write_bytes(data)
        expected[name] = code
    return folder, expected


def watched(command: str, paths: list[Path], *extra: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-B", "-m", "tests.kernel.hostile", command, *map(str, paths), "--",
         *extra], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("command", ["validate", "spec", "export"])
def test_hostile_notebooks_run_nothing_and_get_a_clear_problem(
        command: str, hostile: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    folder, expected = hostile
    if command == "spec":
        expected = {n: c for n, c in expected.items() if n not in BANK_CASES}
    extra = ["--out", str(tmp_path / "out")] if command == "export" else []
    results = watched(command, [folder / f"{n}.ipynb" for n in expected], *extra)
    assert len(results) == len(expected)
    for name, result in zip(expected, results, strict=True):
        where = f"{command} {name}: {result['output'][-600:]}"
        assert result["violations"] == [], where
        assert result["exception"] is None, where
        assert "Traceback" not in result["output"], where
        assert result["exit"] == 2, where
        assert f"[{expected[name]}]" in result["output"], where
    assert not (folder / "pwned").exists()
    assert not (tmp_path / "out").exists()


def test_the_watcher_sees_a_write(tmp_path: Path) -> None:
    # the same hook, around a command that does write: `nux new` lays out a template
    results = watched("new", [tmp_path / "made"], "--template", "summarize")
    assert results[0]["exit"] == 0, results[0]["output"]
    assert any(v.startswith(("open", "os.mkdir")) for v in results[0]["violations"])
