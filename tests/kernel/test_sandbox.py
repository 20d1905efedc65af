"""A code stage reaches only what the catalog allows, in `nux run` and in the served app alike.

One probe stage tries, by the question it is asked, each way out of the allow-list that its
text does not show (so compiling accepts it): a dynamic import, importlib, a builtin's
attributes, a module an allowed module holds, a withheld builtin, a format string reading
attributes. Each is a StageError naming the stage and what was refused; an ordinary question
still gets its answer. tests/runtime/serve/test_sandbox.py asks the served app the same.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from nux_kernel import Workbook
from nux_kernel.cli import main

PROBE = '''import typing


def probe(question: str) -> str:
    if question == "import":
        return str(__import__("o" + "s").getcwd())
    if question == "importlib":
        return str(__import__("import" + "lib").import_module("o" + "s"))
    if question == "builtin":
        return str(getattr(print, "__se" + "lf__"))
    if question == "held":
        return str(typing.sys.modules)
    if question == "open":
        return open("/etc/hostname").read()
    if question == "exec":
        exec("x = 1")
        return "ran"
    if question == "format":
        return ("{0.__cl" + "ass__}").format(question)
    return question.upper()
'''
REFUSED = {
    "import": "import of `os` refused",
    "importlib": "import of `importlib` refused",
    "builtin": "`.__self__` is not allowed",
    "held": "`typing.sys` is the module `sys`",
    "open": "the builtin `open` is withheld",
    "exec": "the builtin `exec` is withheld",
    "format": "reads an attribute",
}


def probe_workbook(directory: Path) -> Workbook:
    wb = Workbook("sandbox", inputs={"question": "string"}, output="probe", base_dir=directory)
    wb.code("probe", PROBE)
    return wb


def test_nux_run_refuses_what_the_allow_list_does_not_hold(tmp_path: Path) -> None:
    path = probe_workbook(tmp_path).save(tmp_path / "sandbox.ipynb")
    runner = CliRunner()
    ok = runner.invoke(main, ["run", str(path), "--input", "question=hello", "--no-cache"])
    assert ok.exit_code == 0, ok.output
    assert "HELLO" in ok.output
    for question, refusal in REFUSED.items():
        result = runner.invoke(main, ["run", str(path), "--input", f"question={question}",
                                      "--no-cache"])
        assert result.exit_code != 0, (question, result.output)
        assert "probe" in result.output and refusal in result.output, (question, result.output)
        assert "Traceback" not in result.output
