"""Commands other distributions add under ``nux.commands``: ``nux export`` from nux-exporters.

The kernel holds no export code: ``nux export`` is nux-exporters' command, found through its
entry point. Without nux-exporters (no entry point, or one whose module cannot be imported) the
command says what to install, with status 2 and no traceback.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points

import pytest
from click.testing import CliRunner

from nux_kernel.cli import main

main_module = sys.modules["nux_kernel.cli.main"]  # the module (``main`` is the group)


def test_export_is_the_exporters_command() -> None:
    [plugin] = [ep for ep in entry_points(group="nux.commands") if ep.name == "export"]
    assert plugin.dist is not None and plugin.dist.name == "nux-exporters"
    assert "export" not in main.commands  # not one of the kernel's own
    result = CliRunner().invoke(main, ["export", "--help"])
    assert result.exit_code == 0, result.output
    assert "--out" in result.output and "--force" in result.output
    assert "export" in CliRunner().invoke(main, ["--help"]).output


def _without_exporters(monkeypatch: pytest.MonkeyPatch) -> None:
    real = entry_points

    def filtered(*, group: str) -> list[EntryPoint]:
        return [ep for ep in real(group=group)
                if not (ep.dist is not None and ep.dist.name == "nux-exporters")]

    monkeypatch.setattr(main_module, "entry_points", filtered)


@pytest.mark.parametrize("args", [["export", "wb.ipynb", "--out", "deploy"],
                                  ["export", "--help"]])
def test_without_nux_exporters_export_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    _without_exporters(monkeypatch)
    result = CliRunner().invoke(main, args)
    text = result.output + result.stderr
    if args[-1] == "--help":
        assert result.exit_code == 0, text
        assert "comes with nux-exporters, which is not installed" in text, text
        return
    assert result.exit_code == 2, text
    assert "`nux export` comes with nux-exporters, which is not installed" in text
    assert "pip install nux-exporters" in text and "Traceback" not in text
    assert "export" in CliRunner().invoke(main, ["--help"]).output


def test_an_exporters_that_cannot_be_imported_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as a broken installation would
    monkeypatch.setitem(sys.modules, "nux_exporters", None)
    monkeypatch.setitem(sys.modules, "nux_exporters.cli", None)
    result = CliRunner().invoke(main, ["export", "wb.ipynb", "--out", "deploy"])
    text = result.output + result.stderr
    assert result.exit_code == 2, text
    assert "`nux export` comes with nux-exporters, which cannot be imported" in text
    assert "pip install nux-exporters" in text and "Traceback" not in text
