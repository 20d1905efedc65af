"""The Python API as a script uses it: the README's example, and code cells built from
functions that read their module's imports."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from difflib import get_close_matches
from pathlib import Path

import pytest

from nux_kernel import Executor, Workbook
from nux_runtime.errors import StageError, WorkbookError

README = Path(__file__).resolve().parents[2] / "README.md"
LIMIT = 3


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no Python example"
    return blocks[0]


def run_script(source: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(directory)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "README.md", "exec"), {"__name__": "__readme__"})
    return printed.getvalue()


def test_readme_example_prints_the_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    assert run_script(readme_example(), tmp_path, monkeypatch) == "Q: why?\nA:\n"


def test_readme_example_fails_loudly_when_a_stage_fails(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    source = readme_example()
    assert '"  why?  "' in source
    with pytest.raises(StageError) as failed:
        run_script(source.replace('"  why?  "', "None"), tmp_path, monkeypatch)
    assert failed.value.stage == "clean"
    assert "AttributeError" in failed.value.cause


def test_a_skipped_output_stage_raises_instead_of_none(tmp_path: Path) -> None:
    wb = Workbook("gate", inputs={"question": "string"}, output="answer", base_dir=tmp_path)
    wb.code("answer", "def answer(question: str) -> str:\n    return question\n",
            when="question == 'go'")
    result = Executor(wb.compile(), base_dir=tmp_path, cache=False).run({"question": "stop"})
    assert not result.ok and result.walk.output is None
    with pytest.raises(StageError, match="skipped"):
        _ = result.output


def dump(question: str) -> str:
    return json.dumps({"q": question, "close": get_close_matches(question, ["why"]),
                       "limit": LIMIT})


def helper(text: str) -> str:
    return text.upper()


def shout(question: str) -> str:
    return helper(question)


def shell(question: str) -> str:
    return subprocess.run(["echo", question], capture_output=True, text=True).stdout


def test_code_cell_carries_the_functions_imports(tmp_path: Path) -> None:
    wb = Workbook("dump", inputs={"question": "string"}, output="dump", base_dir=tmp_path)
    wb.code("dump", dump)
    assert wb.check() == []
    result = Executor(wb.compile(), base_dir=tmp_path, cache=False).run({"question": "why"})
    assert json.loads(result.output) == {"q": "why", "close": ["why"], "limit": 3}
    cell = wb.cells[0].body
    assert "import json\n" in cell and "from difflib import get_close_matches\n" in cell


def test_check_reports_what_a_code_cell_cannot_carry(tmp_path: Path) -> None:
    wb = Workbook("shout", inputs={"question": "string"}, output="shout", base_dir=tmp_path)
    wb.code("shout", shout)
    problems = wb.check()
    assert [(p.code, p.cell) for p in problems] == [("code-global", "shout")]
    assert "'helper'" in problems[0].message and problems[0].fix
    with pytest.raises(WorkbookError):
        wb.compile()
    banned = Workbook("shell", inputs={"question": "string"}, output="shell", base_dir=tmp_path)
    banned.code("shell", shell)
    assert [p.code for p in banned.check()] == ["code-import"]
